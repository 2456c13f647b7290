//! The `#[procedure]` attribute of the ordo guest SDK.
//!
//! Use it through `ordo_sdk::procedure`; the generated code refers to
//! `::ordo_sdk`, so the crate using it must depend on `ordo-sdk` under that
//! name. See the `ordo-sdk` documentation for what it generates.

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ItemFn, Pat, ReturnType, Token, Type};

/// Longest procedure name the engine accepts (docs/ABI.md).
const NAME_MAX: usize = 64;

/// Turns a plain function into an ordo stored procedure.
///
/// ```ignore
/// #[ordo_sdk::procedure]
/// fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> { ... }
///
/// #[ordo_sdk::procedure(read_only)]
/// fn balance(id: u64) -> i64 { ... }
/// ```
///
/// The function is kept as written. Next to it the macro generates, inside
/// an anonymous `const _: () = { ... };` block:
///
/// * a private struct deriving `Deserialize` whose fields are the
///   parameters, in order (postcard decodes it as a tuple, JSON as an
///   object keyed by parameter name; unknown JSON fields are rejected);
/// * the export `ordo_proc_<name>(args_len: i32, encoding: i32) -> i32`,
///   which decodes the arguments from the SDK's argument buffer, calls the
///   function and hands the encoded result to the host;
/// * a `#[used]` static in the custom section `ordo.procedures` holding one
///   JSON line that describes the procedure.
///
/// Supported: owned parameter types that implement `Deserialize`, and a
/// return type that is `()`, any `T: Serialize`, or `Result<T, E>` (or a
/// one-argument `Result<T>` alias) with `T: Serialize` and `E: Display`.
/// An `Err(e)` aborts the transaction with `e.to_string()` as the reason.
/// Not supported (compile error): `self`, generics, `impl Trait`, `async`,
/// `unsafe`, an explicit ABI, variadics, reference parameters or return
/// types, and parameters that are not plain identifiers.
#[proc_macro_attribute]
pub fn procedure(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = TokenStream2::from(item);
    match expand(attr.into(), item2.clone()) {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            // Keep the function itself so the error is the only one shown.
            let mut out = err.to_compile_error();
            out.extend(item2);
            out.into()
        }
    }
}

struct Options {
    read_only: bool,
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let mut options = Options { read_only: false };
    let idents = Punctuated::<Ident, Token![,]>::parse_terminated.parse2(attr)?;
    for ident in idents {
        if ident == "read_only" {
            if options.read_only {
                return Err(syn::Error::new(
                    ident.span(),
                    "duplicate option `read_only`",
                ));
            }
            options.read_only = true;
        } else {
            return Err(syn::Error::new(
                ident.span(),
                format!("unknown #[procedure] option `{ident}`; the only option is `read_only`"),
            ));
        }
    }
    Ok(options)
}

struct Param {
    ident: Ident,
    ty: Type,
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let options = parse_options(attr)?;
    let func: ItemFn = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("#[procedure] must be placed on a plain function: {e}"),
        )
    })?;
    let sig = &func.sig;

    if let Some(t) = &sig.asyncness {
        return Err(syn::Error::new(t.span(), "a procedure cannot be `async`"));
    }
    if let Some(t) = &sig.unsafety {
        return Err(syn::Error::new(t.span(), "a procedure cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        return Err(syn::Error::new(
            abi.span(),
            "a procedure cannot declare an ABI; #[procedure] generates the `extern \"C\"` export itself",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a procedure cannot be generic: its parameter and return types must be concrete",
        ));
    }
    if let Some(v) = &sig.variadic {
        return Err(syn::Error::new(v.span(), "a procedure cannot be variadic"));
    }

    let name = sig.ident.unraw().to_string();
    check_name(&name, sig.ident.span())?;

    let mut params = Vec::new();
    for input in &sig.inputs {
        let typed = match input {
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(
                    r.span(),
                    "a procedure cannot take `self`: it must be a free function",
                ));
            }
            FnArg::Typed(t) => t,
        };
        let ident = match &*typed.pat {
            Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => p.ident.clone(),
            Pat::Wild(_) => {
                return Err(syn::Error::new(
                    typed.pat.span(),
                    "procedure parameters need a name (it is the argument's JSON field name); use e.g. `_unused`",
                ));
            }
            other => {
                return Err(syn::Error::new(
                    other.span(),
                    "procedure parameters must be plain identifiers such as `amount: i64` (no patterns)",
                ));
            }
        };
        check_owned(&typed.ty, "parameter")?;
        params.push(Param {
            ident,
            ty: (*typed.ty).clone(),
        });
    }

    // Type errors about the result (not `Serialize`, not `Display`) point
    // at the return type.
    let ret_span = match &sig.output {
        ReturnType::Default => Span::call_site(),
        ReturnType::Type(_, ty) => ty.span(),
    };
    let ret = match &sig.output {
        ReturnType::Default => Return::Unit,
        ReturnType::Type(_, ty) => {
            check_owned(ty, "return")?;
            if matches!(&**ty, Type::Tuple(t) if t.elems.is_empty()) {
                Return::Unit
            } else if is_result(ty) {
                Return::Result
            } else {
                Return::Value
            }
        }
    };

    let fn_ident = &sig.ident;
    let export_name = format!("ordo_proc_{name}");
    let field_idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let field_types: Vec<&Type> = params.iter().map(|p| &p.ty).collect();

    let call = quote! { #fn_ident( #( __ordo_args.#field_idents ),* ) };
    let finish = match ret {
        Return::Unit => quote! {
            #call;
            ::ordo_sdk::__private::finish(&(), __ordo_encoding)
        },
        Return::Value => {
            let finish = quote_spanned! {ret_span=>
                ::ordo_sdk::__private::finish(&__ordo_ret, __ordo_encoding)
            };
            quote! {
                let __ordo_ret = #call;
                #finish
            }
        }
        Return::Result => {
            let finish = quote_spanned! {ret_span=>
                ::ordo_sdk::__private::finish_result(__ordo_ret, __ordo_encoding)
            };
            quote! {
                let __ordo_ret = #call;
                #finish
            }
        }
    };

    let meta = metadata_line(&name, &params, options.read_only);
    let meta_len = meta.len();
    let meta_bytes = syn::LitByteStr::new(meta.as_bytes(), Span::call_site());

    Ok(quote! {
        #func

        const _: () = {
            #[derive(::ordo_sdk::__private::serde::Deserialize)]
            #[serde(crate = "::ordo_sdk::__private::serde", deny_unknown_fields)]
            struct __OrdoArgs {
                #( #field_idents: #field_types, )*
            }

            #[unsafe(export_name = #export_name)]
            extern "C" fn __ordo_export(args_len: i32, encoding: i32) -> i32 {
                ::ordo_sdk::__private::enter();
                let (__ordo_args, __ordo_encoding) =
                    match ::ordo_sdk::__private::decode_args::<__OrdoArgs>(args_len, encoding) {
                        ::core::result::Result::Ok(decoded) => decoded,
                        ::core::result::Result::Err(status) => return status,
                    };
                #finish
            }

            #[used]
            #[cfg_attr(target_arch = "wasm32", unsafe(link_section = "ordo.procedures"))]
            static __ORDO_PROCEDURE_METADATA: [u8; #meta_len] = *#meta_bytes;
        };
    })
}

enum Return {
    Unit,
    Value,
    Result,
}

fn check_name(name: &str, span: Span) -> syn::Result<()> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= NAME_MAX
        && (bytes[0].is_ascii_lowercase() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new(
            span,
            format!(
                "procedure name `{name}` is not allowed: it must match [a-z_][a-z0-9_]* and be at most {NAME_MAX} bytes"
            ),
        ))
    }
}

/// Rejects types the generated code cannot own: references (the arguments
/// are decoded into an owned struct) and `impl Trait`.
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    fn walk(tokens: TokenStream2, what: &str) -> syn::Result<()> {
        for tt in tokens {
            match tt {
                TokenTree::Punct(p) if p.as_char() == '&' => {
                    return Err(syn::Error::new(
                        p.span(),
                        format!(
                            "procedure {what} types must be owned: use `String` instead of `&str`, `Vec<T>` instead of `&[T]`"
                        ),
                    ));
                }
                TokenTree::Ident(i) if i == "impl" || i == "dyn" => {
                    return Err(syn::Error::new(
                        i.span(),
                        format!(
                            "procedure {what} types must be concrete (no `impl Trait` or `dyn Trait`)"
                        ),
                    ));
                }
                TokenTree::Group(g) => walk(g.stream(), what)?,
                _ => {}
            }
        }
        Ok(())
    }
    walk(ty.to_token_stream(), what)
}

/// `Result<T, E>`, `std::result::Result<T, E>`, or a one-argument alias
/// such as `io::Result<T>`: anything whose last path segment is `Result`
/// with one or two type arguments.
fn is_result(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident != "Result" {
        return false;
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => matches!(args.args.len(), 1 | 2),
        _ => false,
    }
}

/// The procedure's line in the `ordo.procedures` custom section.
fn metadata_line(name: &str, params: &[Param], read_only: bool) -> String {
    let mut line = String::new();
    line.push_str("{\"name\":");
    push_json_string(&mut line, name);
    line.push_str(",\"params\":[");
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str("{\"name\":");
        push_json_string(&mut line, &p.ident.unraw().to_string());
        line.push_str(",\"type\":");
        push_json_string(&mut line, &type_to_string(&p.ty));
        line.push('}');
    }
    line.push_str("],\"read_only\":");
    line.push_str(if read_only { "true" } else { "false" });
    line.push_str("}\n");
    line
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Prints a type the way people write it: `Option<i64>`, `Vec<u8>`,
/// `(u64, String)`, `[u8; 32]` (rather than `quote`'s `Option < i64 >`).
fn type_to_string(ty: &Type) -> String {
    let mut out = String::new();
    print_tokens(ty.to_token_stream(), &mut out);
    out
}

fn print_tokens(tokens: TokenStream2, out: &mut String) {
    // Whether the previous token was a word (identifier or literal), so two
    // words in a row get a space between them (`dyn Trait`, `mut T`).
    let mut prev_word = false;
    for tt in tokens {
        match tt {
            TokenTree::Ident(i) => {
                if prev_word {
                    out.push(' ');
                }
                out.push_str(&i.to_string());
                prev_word = true;
            }
            TokenTree::Literal(l) => {
                if prev_word {
                    out.push(' ');
                }
                out.push_str(&l.to_string());
                prev_word = true;
            }
            TokenTree::Punct(p) => {
                match p.as_char() {
                    ',' | ';' => {
                        out.push(p.as_char());
                        out.push(' ');
                    }
                    '=' => out.push_str(" = "),
                    c => out.push(c),
                }
                prev_word = false;
            }
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                print_tokens(g.stream(), out);
                // `(u64,)` printed as `(u64, )`: drop the trailing space.
                if out.ends_with(", ") && !close.is_empty() {
                    out.pop();
                }
                out.push_str(close);
                prev_word = false;
            }
        }
    }
}

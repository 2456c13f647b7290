//! The `#[procedure]` attribute of the ordo guest SDK.
//!
//! Use it through `ordo_sdk::procedure`; the generated code refers to
//! `::ordo_sdk`, so the crate using it must depend on `ordo-sdk` under that
//! name. See the `ordo-sdk` documentation for what it generates.

use proc_macro::TokenStream;
use proc_macro2::{Delimiter, Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Token, Type};

// The literals the generated code needs where Rust takes no constant
// (`export_name`, `link_section`). The values live in `ordo_schema::abi`,
// which the engine uses too; this crate does not depend on it (a new
// dependency of the SDK's build would change the symbol hashes in every
// module's name section, and so its bytes), so the generated code checks
// each literal against it at compile time (`abi_checks`), along with the
// name rule.
const PROCEDURE_EXPORT_PREFIX: &str = "ordo_proc_";
const DECLARATION_EXPORT_PREFIX: &str = "ordo_keys_";
const SCHEMA_EXPORT_PREFIX: &str = "ordo_schema_";
const TABLE_EXPORT_PREFIX: &str = "ordo_table_";
const METADATA_SECTION: &str = "ordo.procedures";

/// Turns a plain function into an ordo stored procedure.
///
/// ```ignore
/// #[ordo_sdk::procedure]
/// fn transfer(from: u64, to: u64, amount: i64) -> Result<(), String> { ... }
///
/// #[ordo_sdk::procedure(read_only, partitions(id))]
/// fn balance(id: u64) -> i64 { ... }
/// ```
///
/// Options, comma-separated, in any order, each at most once:
///
/// * `read_only`: the procedure does not write; the engine aborts it (kind
///   `read_only`) if it calls `put` or `delete`, and lets clients read it
///   locally;
/// * `partitions(expr, ...)`: the partitions the procedure touches, as
///   expressions over its parameters whose types implement
///   `ordo_sdk::Partitions` (see the `ordo-sdk` documentation).
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
/// * with `partitions(...)`, the export `ordo_keys_<name>(args_len: i32,
///   encoding: i32) -> i32`, which decodes the arguments the same way,
///   binds each parameter to a local of its name, evaluates the
///   expressions into an `ordo_sdk::PartitionSet` and hands the encoded
///   list of partition keys to the host;
/// * a `#[used]` static in the custom section `ordo.procedures` holding one
///   JSON line that describes the procedure.
///
/// Supported: owned parameter types that implement `Deserialize`, and a
/// return type that is `()`, any `T: Serialize`, or
/// `core::result::Result<T, E>` with `T: Serialize` and `E: Display`,
/// however it is spelled (`io::Result<T>`, `type Res<T> = Result<T,
/// String>`; the generated code tells by the type, not the name). An
/// `Err(e)` aborts the transaction with `e.to_string()` as the reason and
/// drops its writes. A type of one's own named `Result` is refused.
/// Not supported (compile error): `self`, generics, `impl Trait`, `async`,
/// `unsafe`, an explicit ABI, variadics, reference parameters or return
/// types, and parameters that are not plain identifiers.
#[proc_macro_attribute]
pub fn procedure(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = TokenStream2::from(item);
    emit(expand(attr.into(), item2.clone()), item2)
}

/// The expansion, or its error followed by the item as written (so the
/// error is the only one shown).
fn emit(expanded: syn::Result<TokenStream2>, item: TokenStream2) -> TokenStream {
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(err) => {
            let mut out = err.to_compile_error();
            out.extend(item);
            out.into()
        }
    }
}

struct Options {
    read_only: bool,
    /// Set by `#[migration]`, never by an option of `#[procedure]`.
    migration: bool,
    /// The expressions of `partitions(...)`, if given (never empty).
    partitions: Option<Vec<Expr>>,
}

const OPTIONS_HELP: &str = "the options are `read_only` and `partitions(expr, ...)`";

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let parser = |input: ParseStream<'_>| -> syn::Result<Options> {
        let mut options = Options {
            read_only: false,
            migration: false,
            partitions: None,
        };
        while !input.is_empty() {
            let ident = input.call(Ident::parse_any)?;
            if ident == "read_only" {
                if options.read_only {
                    return Err(syn::Error::new(
                        ident.span(),
                        "duplicate option `read_only`",
                    ));
                }
                if !(input.is_empty() || input.peek(Token![,])) {
                    return Err(input.error("`read_only` takes no arguments"));
                }
                options.read_only = true;
            } else if ident == "partitions" {
                if options.partitions.is_some() {
                    return Err(syn::Error::new(
                        ident.span(),
                        "duplicate option `partitions`: list every declaration in one `partitions(a, b, ...)`",
                    ));
                }
                if !input.peek(syn::token::Paren) {
                    return Err(syn::Error::new(
                        ident.span(),
                        "expected `partitions(expr, ...)`: a parenthesized list of expressions over the procedure's parameters",
                    ));
                }
                let content;
                let paren = syn::parenthesized!(content in input);
                let exprs = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
                if exprs.is_empty() {
                    return Err(syn::Error::new(
                        paren.span.join(),
                        "`partitions()` is empty: list the partitions the procedure touches, e.g. `partitions(id)`; \
                         leave `partitions` out to run over all partitions",
                    ));
                }
                options.partitions = Some(exprs.into_iter().collect());
            } else {
                return Err(syn::Error::new(
                    ident.span(),
                    format!("unknown #[procedure] option `{ident}`; {OPTIONS_HELP}"),
                ));
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(options)
    };
    parser.parse2(attr)
}

struct Param {
    ident: Ident,
    ty: Type,
}

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    expand_with(parse_options(attr)?, item)
}

/// Marks a function as its module's migration (docs/PROCEDURES.md,
/// "Upgrades and stored data"): the engine runs it once, when the module
/// is deployed, at the deploy's position in the log, over every
/// partition, as one transaction with a large fuel budget. If it returns
/// `Err` or aborts, the deploy does not happen and nothing changes. It
/// takes no parameters and cannot be called by clients. A module with a
/// migration may change the types of its tables: reading the old data as
/// the new type is the migration's job.
///
/// ```ignore
/// #[ordo_sdk::migration]
/// fn add_prices() -> Result<(), String> { ... }
/// ```
#[proc_macro_attribute]
pub fn migration(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = TokenStream2::from(item);
    let attr2 = TokenStream2::from(attr);
    let expanded = if attr2.is_empty() {
        expand_with(
            Options {
                read_only: false,
                migration: true,
                partitions: None,
            },
            item2.clone(),
        )
    } else {
        Err(syn::Error::new(
            attr2.span(),
            "#[migration] takes no options",
        ))
    };
    emit(expanded, item2)
}

fn expand_with(options: Options, item: TokenStream2) -> syn::Result<TokenStream2> {
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
    let name_check = check_name(
        &name,
        sig.ident.span(),
        format!(
            "procedure name `{name}` is not allowed: it must match [a-z_][a-z0-9_]* and be at most `ordo_sdk::__private::abi::NAME_BYTES_MAX` bytes"
        ),
    );

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

    if options.migration && !params.is_empty() {
        return Err(syn::Error::new(
            sig.inputs.span(),
            "a migration takes no parameters: the engine runs it once, at the deploy",
        ));
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
    let export_name = format!("{PROCEDURE_EXPORT_PREFIX}{name}");
    let field_idents: Vec<&Ident> = params.iter().map(|p| &p.ident).collect();
    let field_types: Vec<&Type> = params.iter().map(|p| &p.ty).collect();

    let call = quote! { #fn_ident( #( __ordo_args.#field_idents ),* ) };
    let finish = match ret {
        Return::Unit => quote! {
            #call;
            ::ordo_sdk::__private::finish(&(), __ordo_encoding)
        },
        // Whether the value is a `Result` (and `Err` aborts) is decided by
        // its type, not its spelling, so aliases work: see
        // `ordo_sdk::__private::Returned`.
        Return::Value | Return::Result => {
            // A type spelled `Result<..>` must really be one.
            let expect_result = matches!(ret, Return::Result).then(|| {
                quote_spanned! {ret_span=>
                    ::ordo_sdk::__private::expect_core_result(&__ordo_ret);
                }
            });
            let finish = quote_spanned! {ret_span=>
                (&&::ordo_sdk::__private::Returned(&__ordo_ret))
                    .__ordo_kind()
                    .finish(&__ordo_ret, __ordo_encoding)
            };
            quote! {
                let __ordo_ret = #call;
                #expect_result
                #[allow(unused_imports)]
                use ::ordo_sdk::__private::{ReturnsResult as _, ReturnsValue as _};
                #finish
            }
        }
    };

    // The partition declaration: the same argument decoding as the
    // procedure, then the expressions with the parameters as locals.
    let keys_export = options.partitions.as_ref().map(|exprs| {
        let keys_export_name = format!("{DECLARATION_EXPORT_PREFIX}{name}");
        let declares = exprs.iter().map(|expr| {
            // Spanned so that "does not implement Partitions" points at
            // the expression.
            quote_spanned! {expr.span()=>
                ::ordo_sdk::__private::Partitions::declare(&(#expr), &mut __ordo_set);
            }
        });
        quote! {
            #[unsafe(export_name = #keys_export_name)]
            extern "C" fn __ordo_keys_export(args_len: i32, encoding: i32) -> i32 {
                ::ordo_sdk::__private::enter();
                let (__ordo_args, _) =
                    match ::ordo_sdk::__private::decode_args::<__OrdoArgs>(args_len, encoding) {
                        ::core::result::Result::Ok(decoded) => decoded,
                        ::core::result::Result::Err(status) => return status,
                    };
                #[allow(unused_variables)]
                let __OrdoArgs { #( #field_idents ),* } = __ordo_args;
                let mut __ordo_set = ::ordo_sdk::__private::PartitionSet::new();
                #( #declares )*
                ::ordo_sdk::__private::finish_partitions(__ordo_set)
            }
        }
    });

    // When every declaration is a bare parameter, the host can read the
    // partition keys from the arguments itself, without calling the
    // declaration (it still calls it for types it does not decode).
    let partition_params: Option<Vec<usize>> = options.partitions.as_ref().and_then(|exprs| {
        exprs
            .iter()
            .map(|expr| match expr {
                Expr::Path(path) if path.qself.is_none() && path.path.segments.len() == 1 => {
                    let segment = &path.path.segments[0];
                    if !segment.arguments.is_empty() {
                        return None;
                    }
                    params
                        .iter()
                        .position(|param| param.ident.unraw() == segment.ident.unraw())
                }
                _ => None,
            })
            .collect()
    });
    let mut meta = metadata_line(
        &name,
        &params,
        options.read_only,
        options.partitions.is_some(),
        partition_params.as_deref(),
    );
    if options.migration {
        // Before the closing `}\n`.
        meta.truncate(meta.len() - 2);
        meta.push_str(",\"migration\":true}\n");
    }
    let meta_len = meta.len();
    let metadata_section = METADATA_SECTION;
    let meta_bytes = syn::LitByteStr::new(meta.as_bytes(), Span::call_site());
    let schema_export = schema_export(&name, &func, &params, options.read_only);

    let mut abi_checks = vec![
        name_check,
        check_literal("PROCEDURE_EXPORT_PREFIX", PROCEDURE_EXPORT_PREFIX),
        check_literal("SCHEMA_EXPORT_PREFIX", SCHEMA_EXPORT_PREFIX),
        check_literal("METADATA_SECTION", METADATA_SECTION),
    ];
    if options.partitions.is_some() {
        abi_checks.push(check_literal(
            "DECLARATION_EXPORT_PREFIX",
            DECLARATION_EXPORT_PREFIX,
        ));
    }

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

            #keys_export

            #schema_export

            #[used]
            #[cfg_attr(target_arch = "wasm32", unsafe(link_section = #metadata_section))]
            static __ORDO_PROCEDURE_METADATA: [u8; #meta_len] = *#meta_bytes;

            // Named, not `const _`: another anonymous item here would
            // renumber serde's, changing symbol names in the module.
            #( #abi_checks )*
        };
    })
}

enum Return {
    Unit,
    Value,
    Result,
}

/// The export `ordo_schema_<name>() -> i32`: builds the procedure's
/// `ProcedureSchema` (parameters, result, doc comment, every named type
/// they use) and hands it to the host, which reads it at deploy time
/// (docs/ABI.md, "Schemas"). Parameter types must implement
/// `ordo_sdk::Schema`; errors point at the parameter's type.
fn schema_export(name: &str, func: &ItemFn, params: &[Param], read_only: bool) -> TokenStream2 {
    let export_name = format!("{SCHEMA_EXPORT_PREFIX}{name}");
    let doc = doc_comment(&func.attrs);
    let names: Vec<String> = params.iter().map(|p| p.ident.unraw().to_string()).collect();
    let shapes = params.iter().map(|p| {
        let ty = &p.ty;
        quote_spanned! {ty.span()=>
            __ordo_types.shape_of::<#ty>()
        }
    });
    let result_type: Type = match &func.sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    let result_shape = quote_spanned! {result_type.span()=>
        {
            #[allow(unused_imports)]
            use ::ordo_sdk::__private::{ShapeOfResult as _, ShapeOfValue as _};
            (&&::ordo_sdk::__private::ReturnShape::<#result_type>::new()).shape(&mut __ordo_types)
        }
    };
    quote! {
        #[unsafe(export_name = #export_name)]
        extern "C" fn __ordo_schema_export() -> i32 {
            let mut __ordo_types = ::ordo_sdk::schema::Registry::new();
            let __ordo_params = ::ordo_sdk::__private::vec![
                #( ::ordo_sdk::schema::Param {
                    name: ::ordo_sdk::__private::String::from(#names),
                    shape: #shapes,
                }, )*
            ];
            let __ordo_result = #result_shape;
            ::ordo_sdk::__private::finish_schema(&::ordo_sdk::schema::ProcedureSchema {
                name: ::ordo_sdk::__private::String::from(#name),
                doc: ::ordo_sdk::__private::String::from(#doc),
                params: __ordo_params,
                result: __ordo_result,
                read_only: #read_only,
                types: __ordo_types,
            })
        }
    }
}

/// The `///` comments among `attrs`, one line each, with the one leading
/// space rustdoc also drops.
fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) = &nv.value
        {
            let text = text.value();
            lines.push(text.strip_prefix(' ').unwrap_or(&text).to_string());
        }
    }
    lines.join("\n").trim().to_string()
}

/// Declares a table, so that its key and value types are part of the
/// module's schema (docs/PROCEDURES.md, "The procedure contract"):
///
/// ```ignore
/// /// Balances by account id.
/// #[ordo_sdk::table]
/// const ACCOUNTS: Table<u64, Account> = Table::new("acct");
/// ```
///
/// The constant is kept as written. Next to it the macro generates the
/// export `ordo_table_<constant name in lower case>() -> i32`, which hands
/// the table's name, doc comment and key and value schemas to the host.
/// The host refuses a redeploy that would read the table's stored data as
/// an incompatible type. The key and value types must implement
/// `ordo_sdk::Schema`.
#[proc_macro_attribute]
pub fn table(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item2 = TokenStream2::from(item);
    emit(expand_table(attr.into(), item2.clone()), item2)
}

fn expand_table(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    if !attr.is_empty() {
        return Err(syn::Error::new(attr.span(), "#[table] takes no options"));
    }
    let item: syn::ItemConst = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!(
                "#[table] must be placed on a constant such as `const ACCOUNTS: Table<u64, i64> = Table::new(\"acct\");`: {e}"
            ),
        )
    })?;
    let ident = &item.ident;
    let export_suffix = ident.unraw().to_string().to_lowercase();
    let name_check = check_name(
        &export_suffix,
        ident.span(),
        format!(
            "#[table] constant `{ident}` cannot name an export: `{export_suffix}` must match [a-z_][a-z0-9_]* and be at most `ordo_sdk::__private::abi::NAME_BYTES_MAX` bytes"
        ),
    );
    let prefix_check = check_literal("TABLE_EXPORT_PREFIX", TABLE_EXPORT_PREFIX);
    let export_name = format!("{TABLE_EXPORT_PREFIX}{export_suffix}");
    let doc = doc_comment(&item.attrs);
    let finish = quote_spanned! {item.ty.span()=>
        ::ordo_sdk::__private::finish_table(&#ident, #doc)
    };
    Ok(quote! {
        #item

        const _: () = {
            #[unsafe(export_name = #export_name)]
            extern "C" fn __ordo_table_export() -> i32 {
                #finish
            }

            #name_check
            #prefix_check
        };
    })
}

/// A compile-time check, pointing at `span`, that `name` may follow an
/// export prefix by the engine's rule (`ordo_schema::abi::is_valid_name`).
fn check_name(name: &str, span: Span, message: String) -> TokenStream2 {
    quote_spanned! {span=>
        #[allow(dead_code)]
        const __ORDO_VALID_NAME: () =
            ::core::assert!(::ordo_sdk::__private::abi::is_valid_name(#name), #message);
    }
}

/// A compile-time check that one of the literals above is the engine's.
fn check_literal(constant: &str, literal: &str) -> TokenStream2 {
    let check = Ident::new(&format!("__ORDO_SAME_{constant}"), Span::call_site());
    let constant = Ident::new(constant, Span::call_site());
    let message = format!(
        "ordo-sdk-macros' `{constant}` is not `ordo_sdk::__private::abi::{constant}`: the SDK and its macros are out of step"
    );
    quote! {
        #[allow(dead_code)]
        const #check: () = ::core::assert!(
            ::ordo_sdk::__private::abi::str_eq(::ordo_sdk::__private::abi::#constant, #literal),
            #message
        );
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

/// Spelled like a `Result`: `Result<T, E>`, `std::result::Result<T, E>`,
/// `io::Result<T>`, `fmt::Result`: anything whose last path segment is
/// `Result`. The generated code checks that such a type is
/// `core::result::Result`, so a type of one's own named `Result` is a
/// compile error rather than a value committed whatever it holds. Whether
/// `Err` aborts is decided by the type itself (so `type Res<T> =
/// Result<T, String>` aborts on `Err` too), not by this.
fn is_result(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    path.qself.is_none()
        && path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Result")
}

/// The procedure's line in the `ordo.procedures` custom section.
/// `"partitions":true` is added only for a procedure that declares its
/// partitions, so undeclared procedures keep the original line; and
/// `"partition_params":[i, ...]` when every declaration is a bare
/// parameter (by index), which lets the host skip calling the declaration.
fn metadata_line(
    name: &str,
    params: &[Param],
    read_only: bool,
    partitions: bool,
    partition_params: Option<&[usize]>,
) -> String {
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
    if partitions {
        line.push_str(",\"partitions\":true");
    }
    if let Some(indices) = partition_params {
        line.push_str(",\"partition_params\":[");
        for (i, index) in indices.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            line.push_str(&index.to_string());
        }
        line.push(']');
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_spellings_are_checked_to_be_core_results() {
        let spelled = |ty: &str| is_result(&syn::parse_str(ty).unwrap());
        for ty in [
            "Result<(), String>",
            "std::result::Result<u64, E>",
            "io::Result<u64>",
            "fmt::Result",
            "Result",
        ] {
            assert!(spelled(ty), "{ty}");
        }
        // Decided by the type at compile time instead.
        for ty in [
            "Res<()>",
            "Option<Result<u64, String>>",
            "u64",
            "(Result<(), String>,)",
        ] {
            assert!(!spelled(ty), "{ty}");
        }
    }

    fn options(attr: &str) -> syn::Result<Options> {
        parse_options(attr.parse().unwrap())
    }

    fn error(attr: &str) -> String {
        match options(attr) {
            Ok(_) => panic!("`{attr}` parsed"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn options_combine_in_any_order() {
        let o = options("").unwrap();
        assert!(!o.read_only && o.partitions.is_none());
        let o = options("read_only, partitions(a, b.c(), { 1 })").unwrap();
        assert!(o.read_only);
        assert_eq!(o.partitions.unwrap().len(), 3);
        let o = options("partitions(id,), read_only,").unwrap();
        assert!(o.read_only);
        assert_eq!(o.partitions.unwrap().len(), 1);
    }

    #[test]
    fn bad_options_are_explained() {
        assert!(error("partitions()").contains("`partitions()` is empty"));
        assert!(error("partitions(a), partitions(b)").contains("duplicate option `partitions`"));
        assert!(error("read_only, read_only").contains("duplicate option `read_only`"));
        assert!(error("partitions").contains("expected `partitions(expr, ...)`"));
        assert!(error("read_only = true").contains("takes no arguments"));
        let unknown = error("writes");
        assert!(
            unknown.contains("`writes`")
                && unknown.contains("`read_only` and `partitions(expr, ...)`"),
            "{unknown}"
        );
    }

    #[test]
    fn declarations_get_their_own_export_and_metadata_flag() {
        let item: TokenStream2 = "fn transfer(from: u64, to: u64, amount: i64) {}"
            .parse()
            .unwrap();
        let with = expand("partitions(from, to)".parse().unwrap(), item.clone())
            .unwrap()
            .to_string();
        assert!(with.contains("\"ordo_keys_transfer\""));
        assert!(with.contains("\"ordo_proc_transfer\""));
        assert!(with.contains("finish_partitions"));
        let without = expand(TokenStream2::new(), item).unwrap().to_string();
        assert!(!without.contains("ordo_keys_"));

        let params = [Param {
            ident: Ident::new("id", Span::call_site()),
            ty: syn::parse_str("u64").unwrap(),
        }];
        assert_eq!(
            metadata_line("balance", &params, true, true, None),
            "{\"name\":\"balance\",\"params\":[{\"name\":\"id\",\"type\":\"u64\"}],\"read_only\":true,\"partitions\":true}\n"
        );
        assert_eq!(
            metadata_line("balance", &params, true, true, Some(&[0])),
            "{\"name\":\"balance\",\"params\":[{\"name\":\"id\",\"type\":\"u64\"}],\"read_only\":true,\"partitions\":true,\"partition_params\":[0]}\n"
        );
        assert_eq!(
            metadata_line("balance", &params, false, false, None),
            "{\"name\":\"balance\",\"params\":[{\"name\":\"id\",\"type\":\"u64\"}],\"read_only\":false}\n"
        );
    }
}

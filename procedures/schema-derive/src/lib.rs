//! `#[derive(Schema)]` for `ordo-schema`: describes a struct or enum as
//! serde's derive serializes it.
//!
//! Serde attributes change the serialized form, so every `#[serde(...)]`
//! attribute is read: the ones that only rename (`rename`, `rename_all`,
//! `rename_all_fields`) are applied, the ones that change nothing in the
//! data model (`crate`, `bound`, `deny_unknown_fields`, `expecting`,
//! `borrow`) are accepted, and everything else is a compile error naming
//! it, because a schema that disagreed with serde would make the checks
//! pass wrong data or refuse right data.
//!
//! `#[schema(crate = "::path")]` sets where the `ordo_schema` API is
//! (default `::ordo_schema`; `ordo_sdk` re-exports it).

extern crate proc_macro;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{
    Attribute, Data, DeriveInput, Expr, ExprLit, GenericParam, Lit, LitStr, Meta, Path, Token,
    parse_macro_input, parse_quote,
};

#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Serde's `rename_all` rules, applied exactly as serde applies them.
#[derive(Clone, Copy)]
enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    fn parse(lit: &LitStr) -> syn::Result<Self> {
        Ok(match lit.value().as_str() {
            "lowercase" => RenameRule::Lower,
            "UPPERCASE" => RenameRule::Upper,
            "PascalCase" => RenameRule::Pascal,
            "camelCase" => RenameRule::Camel,
            "snake_case" => RenameRule::Snake,
            "SCREAMING_SNAKE_CASE" => RenameRule::ScreamingSnake,
            "kebab-case" => RenameRule::Kebab,
            "SCREAMING-KEBAB-CASE" => RenameRule::ScreamingKebab,
            other => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("unknown serde rename_all rule \"{other}\""),
                ));
            }
        })
    }

    /// For variant names (written in PascalCase).
    fn apply_to_variant(self, variant: &str) -> String {
        match self {
            RenameRule::Pascal => variant.to_owned(),
            RenameRule::Lower => variant.to_ascii_lowercase(),
            RenameRule::Upper => variant.to_ascii_uppercase(),
            RenameRule::Camel => {
                let mut chars = variant.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::Snake => {
                let mut snake = String::new();
                for (i, ch) in variant.char_indices() {
                    if i > 0 && ch.is_uppercase() {
                        snake.push('_');
                    }
                    snake.push(ch.to_ascii_lowercase());
                }
                snake
            }
            RenameRule::ScreamingSnake => RenameRule::Snake
                .apply_to_variant(variant)
                .to_ascii_uppercase(),
            RenameRule::Kebab => RenameRule::Snake
                .apply_to_variant(variant)
                .replace('_', "-"),
            RenameRule::ScreamingKebab => RenameRule::ScreamingSnake
                .apply_to_variant(variant)
                .replace('_', "-"),
        }
    }

    /// For field names (written in snake_case).
    fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::Lower | RenameRule::Snake => field.to_owned(),
            RenameRule::Upper | RenameRule::ScreamingSnake => field.to_ascii_uppercase(),
            RenameRule::Pascal => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::Camel => {
                let pascal = RenameRule::Pascal.apply_to_field(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => String::new(),
                }
            }
            RenameRule::Kebab => field.replace('_', "-"),
            RenameRule::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// Where the attribute sits, for the set of serde keys accepted there.
#[derive(Clone, Copy, PartialEq)]
enum Site {
    Container,
    Variant,
    Field,
}

#[derive(Default)]
struct SerdeAttrs {
    rename: Option<String>,
    rename_all: Option<RenameRule>,
    rename_all_fields: Option<RenameRule>,
}

fn unsupported(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Error {
    let why = match name {
        "flatten" => {
            "it merges a struct's fields into its parent's, which postcard cannot do and the schema cannot describe"
        }
        "tag" | "content" | "untagged" => {
            "only externally tagged enums (serde's default) are modelled"
        }
        "default" => "a missing field would be filled in, but the checks require every field",
        "skip" | "skip_serializing" | "skip_deserializing" | "skip_serializing_if" => {
            "a skipped field is absent from the encoding, which the schema cannot describe"
        }
        "with" | "serialize_with" | "deserialize_with" | "remote" => {
            "custom (de)serialization has a data model the derive cannot see"
        }
        "transparent" | "from" | "try_from" | "into" => {
            "the encoding is another type's; describe that type instead"
        }
        "alias" => "the checks accept only the serialized name",
        "other" => "an unknown variant would be accepted",
        _ => "it is not one the schema models",
    };
    meta.error(format!(
        "ordo's Schema derive does not support #[serde({name})]: {why}"
    ))
}

/// A string value: `key = "x"`, or `key(serialize = "x", deserialize = "x")`
/// with both the same (different names per direction are not modelled).
fn same_both_ways(meta: &ParseNestedMeta<'_>, name: &str) -> syn::Result<LitStr> {
    if meta.input.peek(Token![=]) {
        return meta.value()?.parse();
    }
    let mut serialize: Option<LitStr> = None;
    let mut deserialize: Option<LitStr> = None;
    meta.parse_nested_meta(|inner| {
        let lit: LitStr = inner.value()?.parse()?;
        if inner.path.is_ident("serialize") {
            serialize = Some(lit);
        } else if inner.path.is_ident("deserialize") {
            deserialize = Some(lit);
        } else {
            return Err(inner.error("expected `serialize` or `deserialize`"));
        }
        Ok(())
    })?;
    match (serialize, deserialize) {
        (Some(a), Some(b)) if a.value() == b.value() => Ok(a),
        _ => Err(meta.error(format!(
            "ordo's Schema derive does not support #[serde({name}(...))] with different (or one-sided) serialize and deserialize names"
        ))),
    }
}

/// Skips a `key = "..."` or `key(...)` value that does not matter here.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

fn serde_attrs(attrs: &[Attribute], site: Site) -> syn::Result<SerdeAttrs> {
    let mut out = SerdeAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let name = meta
                .path
                .get_ident()
                .map(|i| i.unraw().to_string())
                .unwrap_or_else(|| {
                    let path = &meta.path;
                    quote!(#path).to_string()
                });
            match (name.as_str(), site) {
                ("rename", _) => out.rename = Some(same_both_ways(&meta, "rename")?.value()),
                ("rename_all", Site::Container | Site::Variant) => {
                    out.rename_all = Some(RenameRule::parse(&same_both_ways(&meta, "rename_all")?)?)
                }
                ("rename_all_fields", Site::Container) => {
                    out.rename_all_fields = Some(RenameRule::parse(&same_both_ways(
                        &meta,
                        "rename_all_fields",
                    )?)?)
                }
                // These change nothing in the data model.
                ("crate" | "bound" | "expecting", Site::Container) => skip_value(&meta)?,
                ("bound", Site::Field | Site::Variant) => skip_value(&meta)?,
                ("deny_unknown_fields", Site::Container) => {}
                ("borrow", Site::Field) => skip_value(&meta)?,
                _ => return Err(unsupported(&meta, &name)),
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// Where the `ordo_schema` API is, seen from the crate being compiled:
/// through `ordo-sdk` or `ordo-client` if it depends on one of them and
/// not on `ordo-schema` itself, so procedure and client crates need no
/// extra dependency (read from their Cargo.toml by `proc-macro-crate`).
fn default_crate() -> Path {
    use proc_macro_crate::{FoundCrate, crate_name};
    let named = |name: &str| syn::Ident::new(name, proc_macro2::Span::call_site());
    let through = |krate: &str| match crate_name(krate) {
        Ok(FoundCrate::Name(name)) => {
            let ident = named(&name);
            Some(parse_quote!(::#ident::schema))
        }
        _ => None,
    };
    match crate_name("ordo-schema") {
        Ok(FoundCrate::Name(name)) => {
            let ident = named(&name);
            parse_quote!(::#ident)
        }
        // ordo-schema's own tests; the crate names itself `ordo_schema`.
        Ok(FoundCrate::Itself) => parse_quote!(::ordo_schema),
        Err(_) => through("ordo-sdk")
            .or_else(|| through("ordo-client"))
            .unwrap_or_else(|| parse_quote!(::ordo_schema)),
    }
}

/// `#[schema(crate = "...")]`.
fn schema_crate(attrs: &[Attribute]) -> syn::Result<Path> {
    let mut krate: Path = default_crate();
    for attr in attrs.iter().filter(|a| a.path().is_ident("schema")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let lit: LitStr = meta.value()?.parse()?;
                krate = lit.parse()?;
                Ok(())
            } else {
                Err(meta.error("unknown schema attribute (the only one is `crate = \"...\"`)"))
            }
        })?;
    }
    Ok(krate)
}

/// The `///` comments: each line trimmed, joined with `\n`.
fn doc_of(attrs: &[Attribute]) -> String {
    let mut lines: Vec<String> = Vec::new();
    for attr in attrs {
        if let Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
        {
            lines.extend(s.value().lines().map(|l| l.trim().to_owned()));
        }
    }
    lines.join("\n").trim().to_owned()
}

struct Ctx {
    krate: Path,
}

impl Ctx {
    fn string(&self, s: &str) -> TokenStream {
        let krate = &self.krate;
        quote!(#krate::__private::StdString::from(#s))
    }

    fn shape_of(&self, ty: &syn::Type) -> TokenStream {
        let krate = &self.krate;
        quote!(<#ty as #krate::Schema>::shape(registry))
    }

    fn fields(&self, fields: &syn::Fields, rule: Option<RenameRule>) -> syn::Result<TokenStream> {
        let krate = &self.krate;
        Ok(match fields {
            syn::Fields::Unit => quote!(#krate::Fields::Unit),
            syn::Fields::Unnamed(unnamed) => {
                for field in &unnamed.unnamed {
                    serde_attrs(&field.attrs, Site::Field)?;
                }
                let shapes: Vec<TokenStream> = unnamed
                    .unnamed
                    .iter()
                    .map(|f| self.shape_of(&f.ty))
                    .collect();
                if shapes.len() == 1 {
                    let shape = &shapes[0];
                    quote!(#krate::Fields::Newtype(#shape))
                } else {
                    quote!(#krate::Fields::Tuple(#krate::__private::StdVec::from([#(#shapes),*])))
                }
            }
            syn::Fields::Named(named) => {
                let mut out = Vec::new();
                for field in &named.named {
                    let attrs = serde_attrs(&field.attrs, Site::Field)?;
                    let ident = field
                        .ident
                        .as_ref()
                        .expect("named field")
                        .unraw()
                        .to_string();
                    let name = match (attrs.rename, rule) {
                        (Some(renamed), _) => renamed,
                        (None, Some(rule)) => rule.apply_to_field(&ident),
                        (None, None) => ident,
                    };
                    let name = self.string(&name);
                    let doc = self.string(&doc_of(&field.attrs));
                    let shape = self.shape_of(&field.ty);
                    out.push(quote!(#krate::Field { name: #name, doc: #doc, shape: #shape }));
                }
                quote!(#krate::Fields::Named(#krate::__private::StdVec::from([#(#out),*])))
            }
        })
    }
}

/// The derive, as a function of its input (unit-testable).
fn expand(mut input: DeriveInput) -> syn::Result<TokenStream> {
    let krate = schema_crate(&input.attrs)?;
    let ctx = Ctx {
        krate: krate.clone(),
    };
    let container = serde_attrs(&input.attrs, Site::Container)?;
    let ident = &input.ident;
    let rust_name = ident.unraw().to_string();
    let doc = ctx.string(&doc_of(&input.attrs));

    let body = match &input.data {
        Data::Struct(data) => {
            if container.rename_all_fields.is_some() {
                return Err(syn::Error::new(
                    Span::call_site(),
                    "#[serde(rename_all_fields)] applies to enums only",
                ));
            }
            let fields = ctx.fields(&data.fields, container.rename_all)?;
            quote!(#krate::TypeBody::Struct(#fields))
        }
        Data::Enum(data) => {
            let mut variants = Vec::new();
            for variant in &data.variants {
                let attrs = serde_attrs(&variant.attrs, Site::Variant)?;
                let vident = variant.ident.unraw().to_string();
                let name = match (attrs.rename, container.rename_all) {
                    (Some(renamed), _) => renamed,
                    (None, Some(rule)) => rule.apply_to_variant(&vident),
                    (None, None) => vident,
                };
                let field_rule = attrs.rename_all.or(container.rename_all_fields);
                let fields = ctx.fields(&variant.fields, field_rule)?;
                let name = ctx.string(&name);
                let vdoc = ctx.string(&doc_of(&variant.attrs));
                variants.push(quote!(#krate::Variant { name: #name, doc: #vdoc, fields: #fields }));
            }
            quote!(#krate::TypeBody::Enum(#krate::__private::StdVec::from([#(#variants),*])))
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span(),
                "ordo's Schema derive does not support unions (serde does not either)",
            ));
        }
    };

    // Generic arguments take part in the id (`Page<u64>` and `Page<String>`
    // are different types), and every type parameter must be `Schema`.
    let mut args = Vec::new();
    for param in &input.generics.params {
        match param {
            GenericParam::Type(t) => {
                let t = &t.ident;
                args.push(quote!(#krate::__private::GenericArg::Type(<#t as #krate::Schema>::shape(registry))));
            }
            GenericParam::Const(c) => {
                let c = &c.ident;
                args.push(quote!(#krate::__private::const_arg(#c)));
            }
            GenericParam::Lifetime(_) => {}
        }
    }
    let type_params: Vec<syn::Ident> = input
        .generics
        .type_params()
        .map(|t| t.ident.clone())
        .collect();
    let where_clause = input.generics.make_where_clause();
    for t in &type_params {
        where_clause
            .predicates
            .push(parse_quote!(#t: #krate::Schema));
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let base_id = quote!(::core::concat!(::core::module_path!(), "::", #rust_name));
    let naming = if args.is_empty() {
        quote! {
            let id = #krate::__private::StdString::from(#base_id);
            let name = #krate::__private::StdString::from(#rust_name);
        }
    } else {
        let args_var = format_ident!("generic_args");
        quote! {
            let #args_var = [#(#args),*];
            let id = #krate::__private::generic_name(#base_id, &#args_var, registry, true);
            let name = #krate::__private::generic_name(#rust_name, &#args_var, registry, false);
        }
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Schema for #ident #ty_generics #where_clause {
            fn shape(registry: &mut #krate::Registry) -> #krate::Shape {
                #naming
                #krate::__private::register_type(registry, id, |registry| #krate::TypeDef {
                    name,
                    doc: #doc,
                    body: #body,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_err(input: DeriveInput) -> String {
        match expand(input) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_model_changing_serde_attributes() {
        for attr in [
            "flatten",
            "default",
            "skip",
            "skip_serializing_if = \"Option::is_none\"",
            "with = \"m\"",
            "serialize_with = \"f\"",
            "deserialize_with = \"f\"",
            "alias = \"b\"",
        ] {
            let attr: TokenStream = attr.parse().unwrap();
            let input: DeriveInput = parse_quote! {
                struct S { #[serde(#attr)] a: u32 }
            };
            let err = expand_err(input);
            let key = attr.to_string();
            let key = key.split([' ', '=']).next().unwrap();
            assert!(
                err.contains(&format!("does not support #[serde({key})]")),
                "{attr}: {err}"
            );
        }
        for attr in [
            "tag = \"t\"",
            "untagged",
            "tag = \"t\", content = \"c\"",
            "transparent",
            "from = \"u32\"",
            "try_from = \"u32\"",
            "into = \"u32\"",
            "default",
            "something_new",
        ] {
            let attr: TokenStream = attr.parse().unwrap();
            let input: DeriveInput = parse_quote! {
                #[serde(#attr)]
                enum E { A }
            };
            let err = expand_err(input);
            assert!(
                err.starts_with("ordo's Schema derive does not support #[serde("),
                "{err}"
            );
        }
        let input: DeriveInput = parse_quote! {
            #[serde(flatten)]
            struct S { a: u32 }
        };
        assert_eq!(
            expand_err(input),
            "ordo's Schema derive does not support #[serde(flatten)]: it merges a struct's fields into its parent's, which postcard cannot do and the schema cannot describe"
        );
        let input: DeriveInput = parse_quote! {
            enum E { #[serde(other)] A }
        };
        assert!(expand_err(input).contains("#[serde(other)]"));
        let input: DeriveInput = parse_quote! {
            struct S { #[serde(rename(serialize = "a"))] a: u32 }
        };
        assert!(expand_err(input).contains("different (or one-sided)"));
        let input: DeriveInput = parse_quote! {
            #[serde(rename_all = "Title Case")]
            struct S { a: u32 }
        };
        assert!(expand_err(input).contains("unknown serde rename_all rule"));
        let input: DeriveInput = parse_quote! {
            union U { a: u32 }
        };
        assert!(expand_err(input).contains("unions"));
        let input: DeriveInput = parse_quote! {
            #[schema(krate = "x")]
            struct S;
        };
        assert!(expand_err(input).contains("unknown schema attribute"));
    }

    #[test]
    fn accepts_attributes_that_do_not_change_the_model() {
        let input: DeriveInput = parse_quote! {
            #[serde(crate = "::x::serde", deny_unknown_fields, bound = "T: Clone", expecting = "e")]
            #[serde(rename = "Other", rename_all = "camelCase")]
            struct S<'a, T> {
                #[serde(borrow)]
                a: &'a str,
                #[serde(rename(serialize = "bee", deserialize = "bee"))]
                b: T,
            }
        };
        let out = expand(input).unwrap().to_string();
        assert!(out.contains("\"bee\""), "{out}");
        assert!(out.contains("T : :: ordo_schema :: Schema"), "{out}");
    }

    #[test]
    fn crate_path_is_configurable() {
        let input: DeriveInput = parse_quote! {
            #[schema(crate = "::ordo_sdk::schema")]
            struct S(u32);
        };
        let out = expand(input).unwrap().to_string();
        assert!(
            out.contains(":: ordo_sdk :: schema :: Schema for S"),
            "{out}"
        );
        assert!(!out.contains("ordo_schema"), "{out}");
    }

    #[test]
    fn rename_rules_match_serde() {
        use RenameRule::*;
        let variant_cases = [
            (Lower, "outcome"),
            (Upper, "OUTCOME"),
            (Pascal, "OutCome"),
            (Camel, "outCome"),
            (Snake, "out_come"),
            (ScreamingSnake, "OUT_COME"),
            (Kebab, "out-come"),
            (ScreamingKebab, "OUT-COME"),
        ];
        for (rule, expected) in variant_cases {
            assert_eq!(rule.apply_to_variant("OutCome"), expected);
        }
        let field_cases = [
            (Lower, "out_come"),
            (Upper, "OUT_COME"),
            (Pascal, "OutCome"),
            (Camel, "outCome"),
            (Snake, "out_come"),
            (ScreamingSnake, "OUT_COME"),
            (Kebab, "out-come"),
            (ScreamingKebab, "OUT-COME"),
        ];
        for (rule, expected) in field_cases {
            assert_eq!(rule.apply_to_field("out_come"), expected);
        }
    }

    #[test]
    fn docs_are_trimmed_and_joined() {
        let input: DeriveInput = parse_quote! {
            /// First line.
            ///   Second line.
            struct S;
        };
        assert_eq!(doc_of(&input.attrs), "First line.\nSecond line.");
    }
}

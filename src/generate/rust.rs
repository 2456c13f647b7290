//! Rust bindings over `ordo-client`: a type per struct and enum deriving
//! serde and `Schema` (so a call's fingerprint is the procedure's), and an
//! `async fn` per procedure taking its parameters with their Rust types.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use anyhow::{Context, bail};
use ordo_client::ModuleDescription;
use ordo_client::schema::{Fields, ProcedureSchema, Shape, TypeBody, TypeDef, render};

use super::{
    ModuleTypes, assign_names, camel_case, doc_lines, field_shapes, for_each_fields,
    rust_keyword_safe, snake_case, unique,
};

/// The most parameters a binding can take: `Schema` is implemented for
/// tuples of up to 12 items.
const PARAMS_MAX: usize = 12;
/// serde (de)serializes arrays of up to 32 items.
const ARRAY_LEN_MAX: u32 = 32;

/// Names a generated type must not take: they would shadow the prelude or
/// the derives' own names inside the module.
const RESERVED: &[&str] = &[
    "Self",
    "Option",
    "Some",
    "None",
    "Result",
    "Ok",
    "Err",
    "Vec",
    "String",
    "Box",
    "Clone",
    "Copy",
    "Debug",
    "Default",
    "PartialEq",
    "Eq",
    "PartialOrd",
    "Ord",
    "Hash",
    "Send",
    "Sync",
    "Sized",
    "Drop",
    "Fn",
    "FnMut",
    "FnOnce",
    "From",
    "Into",
    "Iterator",
    "ToString",
    "ToOwned",
    "Serialize",
    "Deserialize",
    "Schema",
    "Unpin",
];

const PRIMITIVES: &[&str] = &[
    "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize", "f32",
    "f64", "bool", "char", "str",
];

struct Types {
    names: BTreeMap<String, String>,
    /// Ids reachable from each type's fields.
    reach: BTreeMap<String, BTreeSet<String>>,
    /// Types without floats anywhere inside, which derive `Eq`, `Ord` and
    /// `Hash` too (and so may be map keys).
    orderable: BTreeSet<String>,
}

/// Where a shape is written: for whom (a type's own fields box the types
/// that contain it again), and with what prefix for named types.
#[derive(Clone, Copy)]
struct Site<'s> {
    owner: Option<&'s str>,
    prefix: &'s str,
    on_heap: bool,
}

impl Types {
    fn rust_type(&self, shape: &Shape, site: Site<'_>) -> anyhow::Result<String> {
        let heap = Site {
            on_heap: true,
            ..site
        };
        Ok(match shape {
            Shape::Unit => "()".into(),
            Shape::Bool => "bool".into(),
            Shape::U8 => "u8".into(),
            Shape::U16 => "u16".into(),
            Shape::U32 => "u32".into(),
            Shape::U64 => "u64".into(),
            Shape::U128 => "u128".into(),
            Shape::I8 => "i8".into(),
            Shape::I16 => "i16".into(),
            Shape::I32 => "i32".into(),
            Shape::I64 => "i64".into(),
            Shape::I128 => "i128".into(),
            Shape::F32 => "f32".into(),
            Shape::F64 => "f64".into(),
            Shape::Char => "char".into(),
            Shape::String => "::std::string::String".into(),
            // The fingerprint and postcard treat a byte string and a
            // `Vec<u8>` alike.
            Shape::Bytes => "::std::vec::Vec<u8>".into(),
            Shape::Option(inner) => {
                format!("::core::option::Option<{}>", self.rust_type(inner, site)?)
            }
            Shape::Seq(item) => format!("::std::vec::Vec<{}>", self.rust_type(item, heap)?),
            Shape::Map { key, value } => {
                if !self.shape_orderable(key) {
                    bail!(
                        "a map keyed by {}, which holds floats, cannot be a BTreeMap",
                        render(key, &Default::default())
                    );
                }
                format!(
                    "::std::collections::BTreeMap<{}, {}>",
                    self.rust_type(key, heap)?,
                    self.rust_type(value, heap)?
                )
            }
            Shape::Tuple(items) => match items.len() {
                0 => "()".into(),
                1 => format!("({},)", self.rust_type(&items[0], site)?),
                n if n > PARAMS_MAX => {
                    bail!("a tuple of {n} items (Schema covers tuples of up to {PARAMS_MAX})")
                }
                _ => {
                    let items = items
                        .iter()
                        .map(|item| self.rust_type(item, site))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    format!("({})", items.join(", "))
                }
            },
            Shape::Array { item, len } => {
                if *len > ARRAY_LEN_MAX {
                    bail!("an array of {len} items (serde covers arrays of up to {ARRAY_LEN_MAX})");
                }
                format!("[{}; {len}]", self.rust_type(item, site)?)
            }
            Shape::Named(id) => {
                let name = self
                    .names
                    .get(id)
                    .with_context(|| format!("type `{id}` is not defined in the schema"))?;
                let named = format!("{}{name}", site.prefix);
                let recursive = site.owner.is_some_and(|owner| {
                    owner == id || self.reach.get(id).is_some_and(|r| r.contains(owner))
                });
                if recursive && !site.on_heap {
                    format!("::std::boxed::Box<{named}>")
                } else {
                    named
                }
            }
        })
    }

    fn shape_orderable(&self, shape: &Shape) -> bool {
        match shape {
            Shape::F32 | Shape::F64 => false,
            Shape::Option(inner) | Shape::Seq(inner) => self.shape_orderable(inner),
            Shape::Array { item, .. } => self.shape_orderable(item),
            Shape::Map { key, value } => self.shape_orderable(key) && self.shape_orderable(value),
            Shape::Tuple(items) => items.iter().all(|item| self.shape_orderable(item)),
            Shape::Named(id) => self.orderable.contains(id),
            _ => true,
        }
    }
}

fn reach(types: &BTreeMap<String, TypeDef>) -> BTreeMap<String, BTreeSet<String>> {
    fn direct(shape: &Shape, out: &mut BTreeSet<String>) {
        match shape {
            Shape::Option(inner) | Shape::Seq(inner) => direct(inner, out),
            Shape::Array { item, .. } => direct(item, out),
            Shape::Map { key, value } => {
                direct(key, out);
                direct(value, out);
            }
            Shape::Tuple(items) => items.iter().for_each(|item| direct(item, out)),
            Shape::Named(id) => {
                out.insert(id.clone());
            }
            _ => {}
        }
    }
    let edges: BTreeMap<String, BTreeSet<String>> = types
        .iter()
        .map(|(id, def)| {
            let mut out = BTreeSet::new();
            for_each_fields(def, |fields| {
                field_shapes(fields)
                    .into_iter()
                    .for_each(|shape| direct(shape, &mut out))
            });
            (id.clone(), out)
        })
        .collect();
    edges
        .keys()
        .map(|id| {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<&String> = edges[id].iter().collect();
            while let Some(next) = stack.pop() {
                if seen.insert(next.clone())
                    && let Some(more) = edges.get(next)
                {
                    stack.extend(more.iter());
                }
            }
            (id.clone(), seen)
        })
        .collect()
}

fn orderable(types: &BTreeMap<String, TypeDef>) -> BTreeSet<String> {
    let mut orderable: BTreeSet<String> = types.keys().cloned().collect();
    loop {
        let context = Types {
            names: BTreeMap::new(),
            reach: BTreeMap::new(),
            orderable: orderable.clone(),
        };
        let next: BTreeSet<String> = orderable
            .iter()
            .filter(|id| {
                let mut ok = true;
                for_each_fields(&types[*id], |fields| {
                    ok &= field_shapes(fields)
                        .into_iter()
                        .all(|shape| context.shape_orderable(shape))
                });
                ok
            })
            .cloned()
            .collect();
        if next == orderable {
            return orderable;
        }
        orderable = next;
    }
}

fn push_doc(out: &mut String, doc: &str, indent: &str) {
    for line in doc_lines(doc) {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}///");
        } else {
            let _ = writeln!(out, "{indent}/// {line}");
        }
    }
}

/// A string literal for `text`.
fn literal(text: &str) -> String {
    format!("{text:?}")
}

/// The fields of a struct or variant, after the name: ` { a: A, }`,
/// `(A, B)`, or nothing. `public` for struct fields.
fn write_fields(
    out: &mut String,
    context: &Types,
    owner: &str,
    fields: &Fields,
    indent: &str,
    public: bool,
) -> anyhow::Result<()> {
    let site = Site {
        owner: Some(owner),
        prefix: "",
        on_heap: false,
    };
    let vis = if public { "pub " } else { "" };
    match fields {
        Fields::Unit => {}
        Fields::Newtype(shape) => {
            let _ = write!(out, "({vis}{})", context.rust_type(shape, site)?);
        }
        Fields::Tuple(shapes) => {
            let items = shapes
                .iter()
                .map(|shape| Ok(format!("{vis}{}", context.rust_type(shape, site)?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let _ = write!(out, "({})", items.join(", "));
        }
        Fields::Named(named) => {
            out.push_str(" {\n");
            let mut taken = BTreeSet::new();
            for field in named {
                let ident = rust_keyword_safe(unique(snake_case(&field.name), &mut taken));
                push_doc(out, &field.doc, &format!("{indent}    "));
                if ident.trim_start_matches("r#") != field.name {
                    let _ = writeln!(
                        out,
                        "{indent}    #[serde(rename = {})]",
                        literal(&field.name)
                    );
                }
                let _ = writeln!(
                    out,
                    "{indent}    {vis}{ident}: {},",
                    context
                        .rust_type(&field.shape, site)
                        .with_context(|| format!("field `{}`", field.name))?
                );
            }
            let _ = write!(out, "{indent}}}");
        }
    }
    Ok(())
}

fn write_type(out: &mut String, context: &Types, id: &str, def: &TypeDef) -> anyhow::Result<()> {
    let name = &context.names[id];
    push_doc(out, &def.doc, "");
    let mut derives = String::from("Clone, Debug, PartialEq");
    if context.orderable.contains(id) {
        derives.push_str(", Eq, PartialOrd, Ord, Hash");
    }
    let _ = writeln!(
        out,
        "#[derive({derives}, ::serde::Serialize, ::serde::Deserialize, ::ordo_client::Schema)]"
    );
    let _ = writeln!(out, "#[schema(crate = \"::ordo_client::schema\")]");
    let _ = writeln!(out, "#[allow(dead_code)]");
    match &def.body {
        TypeBody::Struct(fields) => {
            let _ = write!(out, "pub struct {name}");
            write_fields(out, context, id, fields, "", true)?;
            match fields {
                Fields::Named(_) => out.push('\n'),
                _ => out.push_str(";\n"),
            }
        }
        TypeBody::Enum(variants) => {
            let _ = writeln!(out, "#[allow(clippy::large_enum_variant)]");
            let _ = writeln!(out, "pub enum {name} {{");
            let mut taken = BTreeSet::new();
            for variant in variants {
                push_doc(out, &variant.doc, "    ");
                let ident = unique(camel_case(&variant.name), &mut taken);
                let ident = if ident == "Self" {
                    "Self_".to_string()
                } else {
                    ident
                };
                if ident != variant.name {
                    let _ = writeln!(out, "    #[serde(rename = {})]", literal(&variant.name));
                }
                let _ = write!(out, "    {ident}");
                write_fields(out, context, id, &variant.fields, "    ", false)
                    .with_context(|| format!("variant `{}`", variant.name))?;
                out.push_str(",\n");
            }
            out.push_str("}\n");
        }
    }
    Ok(())
}

/// A procedure's binding, ready to write.
struct Binding<'a> {
    procedure: &'a ProcedureSchema,
    function: String,
    stale: Option<String>,
    alias: String,
    params: Vec<(String, String)>,
    /// The parameters' Rust types, from the aliases' module.
    params_in_module: Vec<String>,
    result: String,
    result_in_module: String,
}

fn tuple_of(items: &[String]) -> String {
    match items.len() {
        0 => "()".to_string(),
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

/// The bindings of one module.
pub fn generate(module: &ModuleDescription) -> anyhow::Result<String> {
    let module_types = ModuleTypes::of(module);
    let types = &module_types.types;
    let context = Types {
        names: assign_names(types, RESERVED, |def| camel_case(&def.name)),
        reach: reach(types),
        orderable: orderable(types),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Typed client bindings for the ordo module `{}` (sha256 {}),\n\
         // written by `ordo generate rust`. Do not edit: regenerate instead.\n\
         //\n\
         // Use this file as a module of your crate, either with\n\
         //     #[path = \"PATH/TO/THIS/FILE.rs\"] mod {stem};\n\
         // or with\n\
         //     mod {stem} {{ include!(\"PATH/TO/THIS/FILE.rs\"); }}\n\
         // The crate needs the dependencies `ordo-client` and `serde` (with its\n\
         // `derive` feature). Every function takes the procedure's parameters with\n\
         // their Rust types, so the wrong type is a compile error, and calls through\n\
         // `Client::call` with the fingerprint of those types: a redeployed module\n\
         // whose parameters changed refuses the call (ClientError::SignatureMismatch)\n\
         // before it is logged.",
        module.name,
        module.sha256,
        stem = super::file_stem(&module.name),
    );

    let mut skipped = Vec::new();
    let mut bindings = Vec::new();
    let mut functions = BTreeSet::new();
    let mut aliases: BTreeSet<String> = PRIMITIVES.iter().map(|p| p.to_string()).collect();
    for procedure in &module_types.procedures {
        if procedure.params.len() > PARAMS_MAX {
            skipped.push(format!(
                "`{}`: {} parameters (Schema covers tuples of up to {PARAMS_MAX}); call it with `Client::call_json`",
                procedure.name,
                procedure.params.len()
            ));
            continue;
        }
        let context_of = || format!("procedure `{}`", procedure.name);
        let top = Site {
            owner: None,
            prefix: "",
            on_heap: false,
        };
        let in_module = Site {
            prefix: "super::",
            ..top
        };
        let mut taken = BTreeSet::new();
        let mut params = Vec::new();
        let mut params_in_module = Vec::new();
        for param in &procedure.params {
            let ident = rust_keyword_safe(unique(snake_case(&param.name), &mut taken));
            let ty = context
                .rust_type(&param.shape, top)
                .with_context(|| format!("parameter `{}`", param.name))
                .with_context(context_of)?;
            params.push((ident, ty));
            params_in_module.push(context.rust_type(&param.shape, in_module)?);
        }
        let result = context
            .rust_type(&procedure.result, top)
            .with_context(|| "the result".to_string())
            .with_context(context_of)?;
        let result_in_module = context.rust_type(&procedure.result, in_module)?;
        let base = snake_case(&procedure.name);
        let function = rust_keyword_safe(unique(base.clone(), &mut functions));
        let stale = procedure
            .read_only
            .then(|| rust_keyword_safe(unique(format!("{base}_stale"), &mut functions)));
        let alias = rust_keyword_safe(unique(base, &mut aliases));
        bindings.push(Binding {
            procedure,
            function,
            stale,
            alias,
            params,
            params_in_module,
            result,
            result_in_module,
        });
    }
    if !skipped.is_empty() || !module.unchecked.is_empty() {
        out.push_str("//\n// Left out:\n");
        for line in &skipped {
            let _ = writeln!(out, "// - {line}");
        }
        for name in &module.unchecked {
            let _ = writeln!(
                out,
                "// - `{name}`: no schema (a raw-ABI procedure); call it with `Client::call_raw`"
            );
        }
    }

    for (id, def) in types {
        out.push('\n');
        write_type(&mut out, &context, id, def).with_context(|| format!("type `{}`", def.name))?;
    }

    for binding in &bindings {
        out.push('\n');
        write_binding(&mut out, binding);
    }

    out.push_str(
        "\n/// Each procedure's argument tuple, as `Client::call` takes it (named\n\
         /// after the procedure).\n\
         #[allow(non_camel_case_types, dead_code)]\n\
         pub mod args {\n",
    );
    for binding in &bindings {
        let _ = writeln!(
            out,
            "    pub type {} = {};",
            binding.alias,
            tuple_of(&binding.params_in_module)
        );
    }
    out.push_str(
        "}\n\n/// Each procedure's result type (named after the procedure).\n\
         #[allow(non_camel_case_types, dead_code)]\n\
         pub mod results {\n",
    );
    for binding in &bindings {
        let _ = writeln!(
            out,
            "    pub type {} = {};",
            binding.alias, binding.result_in_module
        );
    }
    out.push_str("}\n");
    Ok(out)
}

fn write_binding(out: &mut String, binding: &Binding<'_>) {
    let procedure = binding.procedure;
    let client = if binding.params.iter().any(|(name, _)| name == "client") {
        "ordo_client_"
    } else {
        "client"
    };
    let signature = format!(
        "`{}`{}",
        procedure.signature(),
        if procedure.read_only {
            ", read-only"
        } else {
            ""
        }
    );
    let params: String = binding
        .params
        .iter()
        .map(|(name, ty)| format!(", {name}: {ty}"))
        .collect();
    let args_type = tuple_of(
        &binding
            .params
            .iter()
            .map(|(_, ty)| ty.clone())
            .collect::<Vec<_>>(),
    );
    let args_value = format!(
        "&{}",
        tuple_of(
            &binding
                .params
                .iter()
                .map(|(name, _)| name.clone())
                .collect::<Vec<_>>()
        )
    );
    let many = if binding.params.len() >= 6 {
        "#[allow(dead_code, clippy::too_many_arguments, clippy::type_complexity)]\n"
    } else {
        "#[allow(dead_code, clippy::type_complexity)]\n"
    };
    push_doc(out, &procedure.doc, "");
    if !procedure.doc.is_empty() {
        out.push_str("///\n");
    }
    let _ = writeln!(
        out,
        "/// {signature}: a call through the log, answered once it committed."
    );
    let _ = write!(
        out,
        "{many}pub async fn {}({client}: &::ordo_client::Client{params}) -> ::core::result::Result<::ordo_client::Called<{result}>, ::ordo_client::ClientError> {{\n    {client}.call::<{args_type}, {result}>({name}, {args_value}).await\n}}\n",
        binding.function,
        result = binding.result,
        name = literal(&procedure.name),
    );
    if let Some(stale) = &binding.stale {
        out.push('\n');
        push_doc(out, &procedure.doc, "");
        if !procedure.doc.is_empty() {
            out.push_str("///\n");
        }
        let _ = writeln!(
            out,
            "/// {signature}: a stale read (`ReadConsistency::Stale`), answered by the\n/// connected node at its own position without a log entry; it may miss\n/// recent commits."
        );
        let _ = write!(
            out,
            "{many}pub async fn {stale}({client}: &::ordo_client::Client{params}) -> ::core::result::Result<::ordo_client::ReadValue<{result}>, ::ordo_client::ClientError> {{\n    {client}.read::<{args_type}, {result}>({name}, {args_value}, ::ordo_client::ReadConsistency::Stale).await\n}}\n",
            result = binding.result,
            name = literal(&procedure.name),
        );
    }
}

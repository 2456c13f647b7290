//! `ordo generate rust|python|typescript`: typed client bindings from a
//! module's contract (its [`ModuleDescription`], from a server or a `.wasm`
//! file), one file per module.
//!
//! Every generator emits one type per struct or enum the module's
//! procedures use and one typed function or method per procedure:
//!
//! - [`rust`]: types deriving serde and `Schema`, and `async fn`s over
//!   [`ordo_client::Client::call`], so a call with the wrong argument
//!   types does not compile and its fingerprint matches the procedure's.
//! - [`python`]: standard-library Python (3.9+) over ordo's JSON call path,
//!   checking types and integer ranges before a call.
//! - [`typescript`]: TypeScript without dependencies over the JSON call
//!   path, with `bigint` for 64- and 128-bit integers, read and written
//!   textually so no precision is lost.
//!
//! [`write_generation`] writes the files and a marker file listing them,
//! and refuses a non-empty directory without that marker, so it never
//! overwrites files it did not write.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ordo_client::ModuleDescription;
use ordo_client::schema::{Fields, ProcedureSchema, Registry, Shape, TypeBody, TypeDef};

pub mod python;
pub mod rust;
pub mod typescript;

/// The languages `ordo generate` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    TypeScript,
}

impl Language {
    pub fn name(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::TypeScript => "typescript",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Language::Rust => "rs",
            Language::Python => "py",
            Language::TypeScript => "ts",
        }
    }
}

/// One file of a generation, named relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFile {
    pub name: String,
    pub contents: String,
}

/// The name of the file that marks a directory as written by
/// `ordo generate` and lists the files it wrote.
pub const MARKER: &str = ".ordo-generated";

/// Keeps the module named `name` (all of them for `None`); an unknown
/// name is an error listing the modules there are.
pub fn select_module(
    modules: Vec<ModuleDescription>,
    name: Option<&str>,
) -> anyhow::Result<Vec<ModuleDescription>> {
    let Some(name) = name else {
        if modules.is_empty() {
            bail!("no module is deployed: deploy one first, or generate from a file with --wasm");
        }
        return Ok(modules);
    };
    let names: Vec<String> = modules.iter().map(|m| format!("`{}`", m.name)).collect();
    let selected: Vec<ModuleDescription> = modules.into_iter().filter(|m| m.name == name).collect();
    if selected.is_empty() {
        bail!(
            "no module named `{name}` is deployed (the modules are {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(selected)
}

/// The bindings for `modules` in `language`: one file per module, named
/// after it.
pub fn generate(
    language: Language,
    modules: &[ModuleDescription],
) -> anyhow::Result<Vec<GeneratedFile>> {
    let mut files: Vec<GeneratedFile> = Vec::new();
    for module in modules {
        let stem = file_stem(&module.name);
        let name = format!("{stem}.{}", language.extension());
        if files.iter().any(|f| f.name == name) {
            bail!("two modules would both be written to {name}; choose one with --module");
        }
        let contents = match language {
            Language::Rust => rust::generate(module),
            Language::Python => python::generate(module),
            Language::TypeScript => typescript::generate(module),
        }
        .with_context(|| {
            format!(
                "generating {} bindings for module `{}`",
                language.name(),
                module.name
            )
        })?;
        files.push(GeneratedFile { name, contents });
    }
    Ok(files)
}

/// Writes `files` into `out` (created if missing) with the [`MARKER`] file
/// listing them. A directory that is not empty must hold a marker: its
/// previous generation's files are removed first, anything else in it is
/// left alone. Returns the paths written, the marker last.
pub fn write_generation(
    out: &Path,
    language: Language,
    files: &[GeneratedFile],
) -> anyhow::Result<Vec<PathBuf>> {
    if out.exists() && !out.is_dir() {
        bail!("--out {} is not a directory", out.display());
    }
    let marker = out.join(MARKER);
    if out.is_dir() {
        let not_empty = std::fs::read_dir(out)
            .with_context(|| format!("reading {}", out.display()))?
            .next()
            .is_some();
        if not_empty && !marker.is_file() {
            bail!(
                "refusing to write into {}: it is not empty and holds no {MARKER} file from an earlier `ordo generate`; choose an empty or new directory",
                out.display()
            );
        }
        if marker.is_file() {
            let previous = std::fs::read_to_string(&marker)
                .with_context(|| format!("reading {}", marker.display()))?;
            for name in previous
                .lines()
                .filter_map(|line| line.strip_prefix("file "))
            {
                // Only plain names: a marker never sends us elsewhere.
                if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                    continue;
                }
                let path = out.join(name);
                if path.is_file() {
                    std::fs::remove_file(&path)
                        .with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();
    let mut listing = format!(
        "# Written by `ordo generate {}`: the files it wrote here. While this file\n# is here, `ordo generate --out` replaces them; it leaves other files alone.\n",
        language.name()
    );
    for file in files {
        let path = out.join(&file.name);
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("writing {}", path.display()))?;
        listing.push_str(&format!("file {}\n", file.name));
        written.push(path);
    }
    std::fs::write(&marker, listing).with_context(|| format!("writing {}", marker.display()))?;
    written.push(marker);
    Ok(written)
}

/// A module's name as a file stem that is also an identifier in all three
/// languages (`my-module.v2` -> `my_module_v2`).
fn file_stem(module: &str) -> String {
    let mut stem: String = module
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() || stem.starts_with(|c: char| c.is_ascii_digit()) {
        stem.insert(0, 'm');
    }
    if RUST_KEYWORDS.contains(&stem.as_str()) || PYTHON_KEYWORDS.contains(&stem.as_str()) {
        stem.push('_');
    }
    stem
}

/// The module's procedures with a schema, in name order, and the
/// definitions of every named type they use (directly or through other
/// types), by id.
pub(crate) struct ModuleTypes<'a> {
    pub procedures: Vec<&'a ProcedureSchema>,
    pub types: BTreeMap<String, TypeDef>,
}

impl<'a> ModuleTypes<'a> {
    pub fn of(module: &'a ModuleDescription) -> ModuleTypes<'a> {
        let mut procedures: Vec<&ProcedureSchema> = module.procedures.iter().collect();
        procedures.sort_by(|a, b| a.name.cmp(&b.name));
        let mut registry = Registry::new();
        for procedure in &procedures {
            for (id, def) in &procedure.types.types {
                registry
                    .types
                    .entry(id.clone())
                    .or_insert_with(|| def.clone());
            }
        }
        let mut used = BTreeSet::new();
        for procedure in &procedures {
            for param in &procedure.params {
                used_ids(&param.shape, &registry, &mut used);
            }
            used_ids(&procedure.result, &registry, &mut used);
        }
        let types = used
            .iter()
            .filter_map(|id| registry.get(id).map(|def| (id.clone(), def.clone())))
            .collect();
        ModuleTypes { procedures, types }
    }
}

/// Adds the ids of the named types `shape` refers to, transitively.
pub(crate) fn used_ids(shape: &Shape, registry: &Registry, out: &mut BTreeSet<String>) {
    match shape {
        Shape::Option(inner) | Shape::Seq(inner) => used_ids(inner, registry, out),
        Shape::Array { item, .. } => used_ids(item, registry, out),
        Shape::Map { key, value } => {
            used_ids(key, registry, out);
            used_ids(value, registry, out);
        }
        Shape::Tuple(items) => items.iter().for_each(|item| used_ids(item, registry, out)),
        Shape::Named(id) => {
            if !out.insert(id.clone()) {
                return;
            }
            if let Some(def) = registry.get(id) {
                for_each_fields(def, |fields| {
                    for shape in field_shapes(fields) {
                        used_ids(shape, registry, out);
                    }
                });
            }
        }
        _ => {}
    }
}

/// Calls `f` with the struct's fields or each variant's.
pub(crate) fn for_each_fields(def: &TypeDef, mut f: impl FnMut(&Fields)) {
    match &def.body {
        TypeBody::Struct(fields) => f(fields),
        TypeBody::Enum(variants) => variants.iter().for_each(|v| f(&v.fields)),
    }
}

pub(crate) fn field_shapes(fields: &Fields) -> Vec<&Shape> {
    match fields {
        Fields::Unit => Vec::new(),
        Fields::Newtype(shape) => vec![shape],
        Fields::Tuple(shapes) => shapes.iter().collect(),
        Fields::Named(named) => named.iter().map(|f| &f.shape).collect(),
    }
}

/// A type name in UpperCamelCase from a Rust type name, generic arguments
/// folded in (`Page<u64>` -> `PageU64`, `my_type` -> `MyType`).
pub(crate) fn camel_case(name: &str) -> String {
    let mut out = String::new();
    for word in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'T');
    }
    out
}

/// A name in snake_case (`aisleNumber` -> `aisle_number`, `bin-label` ->
/// `bin_label`), never empty, never starting with a digit.
pub(crate) fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut previous: Option<char> = None;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            if previous.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else {
            out.push('_');
        }
        previous = Some(c);
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Gives each type (by id, in id order) a distinct name from `name_of`
/// its definition, none of them in `reserved`: a name already taken gets
/// the first free number appended (`Item`, `Item2`, ...).
pub(crate) fn assign_names(
    types: &BTreeMap<String, TypeDef>,
    reserved: &[&str],
    name_of: impl Fn(&TypeDef) -> String,
) -> BTreeMap<String, String> {
    let mut taken: BTreeSet<String> = reserved.iter().map(|s| s.to_string()).collect();
    let mut names = BTreeMap::new();
    for (id, def) in types {
        let name = unique(name_of(def), &mut taken);
        names.insert(id.clone(), name);
    }
    names
}

/// `base`, or `base` with the first free number from 2 appended; marks
/// the result taken.
pub(crate) fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// Rust's strict and reserved keywords (2024 edition).
pub(crate) const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// Python's keywords (the soft ones, `match` and `case`, are fine as names).
pub(crate) const PYTHON_KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A Rust identifier for a field, parameter or function named `name`:
/// snake_case, a keyword written raw (`r#type`), and the four that cannot
/// be raw (`self`, `Self`, `super`, `crate`) and `_` with a `_` appended.
pub fn rust_ident(name: &str) -> String {
    let snake = snake_case(name);
    rust_keyword_safe(snake)
}

pub(crate) fn rust_keyword_safe(ident: String) -> String {
    match ident.as_str() {
        "self" | "Self" | "super" | "crate" | "_" => format!("{ident}_"),
        keyword if RUST_KEYWORDS.contains(&keyword) => format!("r#{ident}"),
        _ => ident,
    }
}

/// Doc comment lines, with Markdown code fences marked `text` so that
/// rustdoc and other tools never run the examples of another language's
/// docs (a fence that already names a language other than Rust keeps it).
pub(crate) fn doc_lines(doc: &str) -> Vec<String> {
    let mut in_fence = false;
    doc.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if let Some(info) = trimmed.strip_prefix("```") {
                if in_fence {
                    in_fence = false;
                    return line.to_string();
                }
                in_fence = true;
                let info = info.trim();
                if info.is_empty() || info.starts_with("rust") {
                    return "```text".to_string();
                }
            }
            line.to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_idiomatic_and_never_keywords() {
        assert_eq!(camel_case("Page<u64>"), "PageU64");
        assert_eq!(camel_case("Pair<String, Vec<u8>>"), "PairStringVecU8");
        assert_eq!(camel_case("my_type"), "MyType");
        assert_eq!(camel_case("<>"), "T");
        assert_eq!(snake_case("aisleNumber"), "aisle_number");
        assert_eq!(snake_case("bin-label"), "bin_label");
        assert_eq!(snake_case("9lives"), "_9lives");
        assert_eq!(rust_ident("type"), "r#type");
        assert_eq!(rust_ident("self"), "self_");
        assert_eq!(rust_ident("count"), "count");
        assert_eq!(file_stem("my-module.v2"), "my_module_v2");
        assert_eq!(file_stem("2fa"), "m2fa");
        assert_eq!(file_stem("async"), "async_");
    }

    #[test]
    fn colliding_names_get_numbers() {
        let def = |name: &str| TypeDef {
            name: name.into(),
            doc: String::new(),
            body: TypeBody::Struct(Fields::Unit),
        };
        let types: BTreeMap<String, TypeDef> = [
            ("a::Item".to_string(), def("Item")),
            ("b::Item".to_string(), def("Item")),
            ("c::Result".to_string(), def("Result")),
        ]
        .into_iter()
        .collect();
        let names = assign_names(&types, &["Result"], |d| camel_case(&d.name));
        assert_eq!(names["a::Item"], "Item");
        assert_eq!(names["b::Item"], "Item2");
        assert_eq!(names["c::Result"], "Result2");
    }

    #[test]
    fn code_fences_in_docs_are_not_examples() {
        let doc = "Example:\n```\nlet x = 1;\n```\n```python\nx = 1\n```";
        assert_eq!(
            doc_lines(doc),
            [
                "Example:",
                "```text",
                "let x = 1;",
                "```",
                "```python",
                "x = 1",
                "```"
            ]
        );
    }
}

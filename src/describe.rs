//! `ordo describe`: a module's contract (procedures, tables and the types
//! they use, with their doc comments) as text or JSON, from a server or
//! from a `.wasm` file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use ordo_client::ModuleDescription;
use ordo_client::schema::{Fields, Registry, Shape, TypeBody, TypeDef, render};
use ordo_engine::contract::DeployedModule;

/// The wire form of a deployed module's contract.
pub fn module_description(module: &DeployedModule) -> ModuleDescription {
    ModuleDescription {
        name: module.name.clone(),
        sha256: module.sha256.clone(),
        procedures: module
            .contract
            .procedures
            .values()
            .map(|contract| contract.schema.clone())
            .collect(),
        unchecked: module
            .procedures
            .iter()
            .filter(|name| !module.contract.procedures.contains_key(*name))
            .cloned()
            .collect(),
        tables: module.contract.tables.values().cloned().collect(),
        deployed_at: module.deployed_at,
        wasm_bytes: module.wasm_bytes,
    }
}

/// Keeps only the procedure or table named `name`, or the procedures and
/// tables that use the type named `name` (and the modules holding them);
/// `None` if nothing has that name.
pub fn select(modules: Vec<ModuleDescription>, name: &str) -> Option<Vec<ModuleDescription>> {
    let uses_type = |shapes: &[&Shape], registry: &Registry| {
        let mut used = BTreeSet::new();
        used_types(shapes, registry, &mut used);
        used.iter().any(|id| {
            registry
                .get(id)
                .is_some_and(|def| def.name == name || base_name(&def.name) == name)
        })
    };
    let selected: Vec<ModuleDescription> = modules
        .into_iter()
        .filter_map(|mut module| {
            module.procedures.retain(|p| {
                let mut shapes: Vec<&Shape> = p.params.iter().map(|p| &p.shape).collect();
                shapes.push(&p.result);
                p.name == name || uses_type(&shapes, &p.types)
            });
            module
                .tables
                .retain(|t| t.name == name || uses_type(&[&t.key, &t.value], &t.types));
            module.unchecked.retain(|p| p == name);
            let found = !module.procedures.is_empty()
                || !module.tables.is_empty()
                || !module.unchecked.is_empty();
            found.then_some(module)
        })
        .collect();
    (!selected.is_empty()).then_some(selected)
}

fn base_name(name: &str) -> &str {
    name.split('<').next().unwrap_or(name)
}

/// Every named type the module's procedures and tables use, by id.
fn module_types(module: &ModuleDescription) -> BTreeMap<String, TypeDef> {
    let mut types = BTreeMap::new();
    let registries = module
        .procedures
        .iter()
        .map(|p| &p.types)
        .chain(module.tables.iter().map(|t| &t.types));
    for registry in registries {
        for (id, def) in &registry.types {
            types.entry(id.clone()).or_insert_with(|| def.clone());
        }
    }
    types
}

/// The ids of the named types `shapes` refer to, directly or through
/// other named types.
fn used_types(shapes: &[&Shape], registry: &Registry, out: &mut BTreeSet<String>) {
    for shape in shapes {
        crate::generate::used_ids(shape, registry, out);
    }
}

fn push_doc(out: &mut String, doc: &str, indent: &str) {
    for line in doc.lines() {
        let _ = writeln!(out, "{indent}/// {line}");
    }
}

fn render_fields(fields: &Fields, registry: &Registry, indent: &str, out: &mut String) {
    match fields {
        Fields::Unit => {}
        Fields::Newtype(shape) => {
            let _ = write!(out, "({})", render(shape, registry));
        }
        Fields::Tuple(shapes) => {
            let items: Vec<String> = shapes.iter().map(|s| render(s, registry)).collect();
            let _ = write!(out, "({})", items.join(", "));
        }
        Fields::Named(named) => {
            out.push_str(" {\n");
            for field in named {
                push_doc(out, &field.doc, &format!("{indent}    "));
                let _ = writeln!(
                    out,
                    "{indent}    {}: {},",
                    field.name,
                    render(&field.shape, registry)
                );
            }
            let _ = write!(out, "{indent}}}");
        }
    }
}

fn render_type(def: &TypeDef, registry: &Registry, out: &mut String) {
    push_doc(out, &def.doc, "  ");
    match &def.body {
        TypeBody::Struct(fields) => {
            let _ = write!(out, "  struct {}", def.name);
            render_fields(fields, registry, "  ", out);
            out.push('\n');
        }
        TypeBody::Enum(variants) => {
            let _ = writeln!(out, "  enum {} {{", def.name);
            for variant in variants {
                push_doc(out, &variant.doc, "      ");
                let _ = write!(out, "      {}", variant.name);
                render_fields(&variant.fields, registry, "      ", out);
                out.push_str(",\n");
            }
            out.push_str("  }\n");
        }
    }
}

/// The modules' contracts as Rust-like text.
pub fn render_text(modules: &[ModuleDescription]) -> String {
    let mut out = String::new();
    for (index, module) in modules.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "module {} (sha256 {})", module.name, module.sha256);
        let mut used = BTreeSet::new();
        let mut registry = Registry::new();
        for procedure in &module.procedures {
            push_doc(&mut out, &procedure.doc, "  ");
            let _ = writeln!(
                out,
                "  procedure {}{}",
                procedure.signature(),
                if procedure.read_only {
                    "  [read-only]"
                } else {
                    ""
                }
            );
            let mut shapes: Vec<&Shape> = procedure.params.iter().map(|p| &p.shape).collect();
            shapes.push(&procedure.result);
            used_types(&shapes, &procedure.types, &mut used);
            let _ = registry.merge(procedure.types.clone());
        }
        for name in &module.unchecked {
            let _ = writeln!(
                out,
                "  procedure {name}(?)  [no schema: calls are not checked]"
            );
        }
        for table in &module.tables {
            push_doc(&mut out, &table.doc, "  ");
            let _ = writeln!(
                out,
                "  table {}: Table<{}, {}>",
                table.name,
                render(&table.key, &table.types),
                render(&table.value, &table.types)
            );
            used_types(&[&table.key, &table.value], &table.types, &mut used);
            let _ = registry.merge(table.types.clone());
        }
        let all = module_types(module);
        for id in &used {
            if let Some(def) = all.get(id) {
                render_type(def, &registry, &mut out);
            }
        }
    }
    out
}

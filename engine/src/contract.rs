//! A module's contract: the schemas its procedures and tables declare
//! (docs/PROCEDURES.md, "The procedure contract"), read out of the module
//! at deploy time and checked before anything trusts them.
//!
//! The SDK's `#[procedure]` exports `ordo_schema_<procedure>` and
//! `#[table]` exports `ordo_table_<name>`: functions of type `() -> i32`
//! that hand a postcard-encoded [`ProcedureSchema`] / [`TableSchema`] to
//! the host through `set_result`. The host runs them once per compile, in
//! a fresh sandbox with a small fuel budget and no state, so a module's
//! contract depends on its bytes alone (every replica reads the same one).
//! The bytes are hostile until checked: sizes, counts, nesting depth,
//! names, and that every named type they refer to is defined.
//!
//! A procedure without a schema export (a module written against the raw
//! ABI) has no contract: its calls are not checked beyond the argument
//! size, which is the documented raw path.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_schema::{Fields, Fingerprint, ProcedureSchema, Registry, Shape, TableSchema, TypeBody};

use crate::module::DeployError;

/// Most bytes one schema export may hand back.
pub const SCHEMA_BYTES_MAX: usize = 1 << 20;
/// Most named types one procedure's or table's schema may define.
pub const SCHEMA_TYPES_MAX: usize = 4_096;
/// Deepest nesting of shapes inside one type definition or parameter.
pub const SCHEMA_DEPTH_MAX: usize = 64;
/// Longest name (type, field, variant, parameter, table) in bytes.
pub const SCHEMA_NAME_BYTES_MAX: usize = 256;
/// Longest doc comment in bytes.
pub const SCHEMA_DOC_BYTES_MAX: usize = 16 * 1024;
/// Most tables one module may declare.
pub const TABLES_MAX: usize = 1_024;
/// Longest fixed-size array (`[T; N]`) a schema may declare: checking a
/// value walks every element, even zero-sized ones.
pub const SCHEMA_ARRAY_LEN_MAX: u32 = 65_536;
/// Most elements of one tuple, or fields of one struct or variant.
pub const SCHEMA_ITEMS_MAX: usize = 1_024;
/// Fuel for one schema export: building a schema is a few allocations.
pub const SCHEMA_FUEL: u64 = 50_000_000;

/// One procedure's checked contract, with what the call path needs
/// precomputed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcedureContract {
    pub schema: ProcedureSchema,
    /// The parameters' shapes, in order (what a call's arguments are
    /// checked against).
    pub param_shapes: Vec<Shape>,
    /// [`ordo_schema::args_fingerprint`] of `param_shapes`.
    pub fingerprint: Fingerprint,
}

impl ProcedureContract {
    fn new(schema: ProcedureSchema) -> ProcedureContract {
        let param_shapes: Vec<Shape> = schema.params.iter().map(|p| p.shape.clone()).collect();
        let fingerprint = ordo_schema::args_fingerprint(&param_shapes, &schema.types);
        ProcedureContract {
            schema,
            param_shapes,
            fingerprint,
        }
    }

    /// `transfer(from: u64, to: u64, amount: i64) -> ()`.
    pub fn signature(&self) -> String {
        self.schema.signature()
    }

    /// The parameter names, in order.
    pub fn param_names(&self) -> Vec<String> {
        self.schema.params.iter().map(|p| p.name.clone()).collect()
    }
}

/// A deployed module and its contract (what `ordo describe` shows).
#[derive(Clone, Debug)]
pub struct DeployedModule {
    pub name: String,
    /// Hex of the module's SHA-256.
    pub sha256: String,
    /// Every procedure, in name order (with a schema or not).
    pub procedures: Vec<String>,
    pub contract: Arc<ModuleContract>,
    /// The sequence number of the deploy that installed this version;
    /// `None` for a module restored from a snapshot written before
    /// snapshots recorded it (format version 2 or older).
    pub deployed_at: Option<u64>,
    /// Size of the module's `.wasm` bytes.
    pub wasm_bytes: u64,
}

/// Everything a module declares, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleContract {
    /// By procedure name; procedures without a schema are absent.
    pub procedures: BTreeMap<String, Arc<ProcedureContract>>,
    /// By table name.
    pub tables: BTreeMap<String, TableSchema>,
}

/// Decodes and checks what `ordo_schema_<procedure>` returned.
pub(crate) fn procedure_contract(
    procedure: &str,
    read_only: bool,
    bytes: &[u8],
) -> Result<ProcedureContract, DeployError> {
    let bad = |reason: String| DeployError::BadSchema {
        export: format!("{}{procedure}", crate::module::SCHEMA_EXPORT_PREFIX),
        reason,
    };
    let schema: ProcedureSchema = decode(bytes).map_err(&bad)?;
    if schema.name != procedure {
        return Err(bad(format!(
            "it describes a procedure named `{}`",
            truncated(&schema.name)
        )));
    }
    if schema.read_only != read_only {
        return Err(bad(
            "its read_only flag disagrees with the module's procedure metadata".to_string(),
        ));
    }
    check_doc(&schema.doc).map_err(&bad)?;
    check_registry(&schema.types).map_err(&bad)?;
    check_items(schema.params.len()).map_err(&bad)?;
    let mut names = std::collections::BTreeSet::new();
    for param in &schema.params {
        check_name(&param.name, "parameter").map_err(&bad)?;
        if !names.insert(param.name.as_str()) {
            return Err(bad(format!("parameter `{}` appears twice", param.name)));
        }
        check_shape(&param.shape, &schema.types, 0)
            .map_err(|reason| bad(format!("parameter `{}`: {reason}", param.name)))?;
    }
    check_shape(&schema.result, &schema.types, 0)
        .map_err(|reason| bad(format!("result: {reason}")))?;
    let mut roots: Vec<&Shape> = schema.params.iter().map(|p| &p.shape).collect();
    roots.push(&schema.result);
    schema.types.validate_with_roots(&roots).map_err(&bad)?;
    Ok(ProcedureContract::new(schema))
}

/// Decodes and checks what an `ordo_table_*` export returned.
pub(crate) fn table_schema(export: &str, bytes: &[u8]) -> Result<TableSchema, DeployError> {
    let bad = |reason: String| DeployError::BadSchema {
        export: export.to_string(),
        reason,
    };
    let schema: TableSchema = decode(bytes).map_err(&bad)?;
    if schema.name.is_empty()
        || schema.name.len() > SCHEMA_NAME_BYTES_MAX
        || schema.name.as_bytes().contains(&0)
    {
        return Err(bad(format!(
            "table name must be 1 to {SCHEMA_NAME_BYTES_MAX} bytes without NUL"
        )));
    }
    check_doc(&schema.doc).map_err(&bad)?;
    check_registry(&schema.types).map_err(&bad)?;
    check_shape(&schema.key, &schema.types, 0).map_err(|reason| bad(format!("key: {reason}")))?;
    check_shape(&schema.value, &schema.types, 0)
        .map_err(|reason| bad(format!("value: {reason}")))?;
    schema
        .types
        .validate_with_roots(&[&schema.key, &schema.value])
        .map_err(&bad)?;
    Ok(schema)
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > SCHEMA_BYTES_MAX {
        return Err(format!(
            "it is {} bytes, over the {SCHEMA_BYTES_MAX}-byte limit",
            bytes.len()
        ));
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!("{} trailing bytes", rest.len())),
        Err(err) => Err(format!("it does not decode: {err}")),
    }
}

fn truncated(name: &str) -> String {
    name.chars().take(64).collect()
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > SCHEMA_NAME_BYTES_MAX || name.chars().any(char::is_control) {
        return Err(format!(
            "{what} name `{}` must be 1 to {SCHEMA_NAME_BYTES_MAX} bytes without control characters",
            truncated(name)
        ));
    }
    Ok(())
}

fn check_doc(doc: &str) -> Result<(), String> {
    if doc.len() > SCHEMA_DOC_BYTES_MAX {
        return Err(format!(
            "a doc comment is {} bytes, over the {SCHEMA_DOC_BYTES_MAX}-byte limit",
            doc.len()
        ));
    }
    Ok(())
}

fn check_registry(types: &Registry) -> Result<(), String> {
    if types.types.len() > SCHEMA_TYPES_MAX {
        return Err(format!(
            "it defines {} types, over the limit of {SCHEMA_TYPES_MAX}",
            types.types.len()
        ));
    }
    for (id, def) in &types.types {
        check_name(id, "type id")?;
        check_name(&def.name, "type")?;
        check_doc(&def.doc)?;
        let in_type = |reason: String| format!("type `{}`: {reason}", def.name);
        match &def.body {
            TypeBody::Struct(fields) => check_fields(fields, types).map_err(in_type)?,
            TypeBody::Enum(variants) => {
                check_items(variants.len()).map_err(in_type)?;
                let mut names = std::collections::BTreeSet::new();
                for variant in variants {
                    check_name(&variant.name, "variant").map_err(in_type)?;
                    check_doc(&variant.doc).map_err(in_type)?;
                    if !names.insert(variant.name.as_str()) {
                        return Err(in_type(format!("variant `{}` appears twice", variant.name)));
                    }
                    check_fields(&variant.fields, types).map_err(in_type)?;
                }
            }
        }
    }
    Ok(())
}

fn check_items(count: usize) -> Result<(), String> {
    if count > SCHEMA_ITEMS_MAX {
        return Err(format!(
            "{count} elements or fields are over the limit of {SCHEMA_ITEMS_MAX}"
        ));
    }
    Ok(())
}

fn check_fields(fields: &Fields, types: &Registry) -> Result<(), String> {
    match fields {
        Fields::Unit => Ok(()),
        Fields::Newtype(shape) => check_shape(shape, types, 1),
        Fields::Tuple(shapes) => {
            check_items(shapes.len())?;
            shapes.iter().try_for_each(|s| check_shape(s, types, 1))
        }
        Fields::Named(fields) => {
            check_items(fields.len())?;
            let mut names = std::collections::BTreeSet::new();
            for field in fields {
                check_name(&field.name, "field")?;
                check_doc(&field.doc)?;
                if !names.insert(field.name.as_str()) {
                    return Err(format!("field `{}` appears twice", field.name));
                }
                check_shape(&field.shape, types, 1)?;
            }
            Ok(())
        }
    }
}

/// Depth-limited walk: every `Named` resolves. Named types are checked
/// once each by `check_registry`, so recursion stops at them.
fn check_shape(shape: &Shape, types: &Registry, depth: usize) -> Result<(), String> {
    if depth > SCHEMA_DEPTH_MAX {
        return Err(format!("shapes nest deeper than {SCHEMA_DEPTH_MAX}"));
    }
    match shape {
        Shape::Option(inner) | Shape::Seq(inner) => check_shape(inner, types, depth + 1),
        Shape::Array { item, len } => {
            if *len > SCHEMA_ARRAY_LEN_MAX {
                return Err(format!(
                    "an array of {len} elements is over the limit of {SCHEMA_ARRAY_LEN_MAX}"
                ));
            }
            check_shape(item, types, depth + 1)
        }
        Shape::Map { key, value } => {
            check_shape(key, types, depth + 1)?;
            check_shape(value, types, depth + 1)
        }
        Shape::Tuple(items) => {
            check_items(items.len())?;
            items
                .iter()
                .try_for_each(|item| check_shape(item, types, depth + 1))
        }
        Shape::Named(id) => {
            if types.get(id).is_none() {
                return Err(format!("type `{}` is used but not defined", truncated(id)));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

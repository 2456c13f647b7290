//! Deploy-time checks and compilation of procedure modules.
//!
//! A module is checked against docs/ABI.md before it can reach the log and
//! again when its deploy entry executes (the second check is the one that
//! counts: it is deterministic, so every replica accepts or rejects the
//! same modules). Compiled code is a per-node cache keyed by the SHA-256 of
//! the bytes; the bytes are what replicas agree on.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::wasmparser::{Parser, Payload};
use wasmtime::{ExternType, FuncType, ValType};

use crate::config::EngineConfig;
use crate::partition::FastDeclaration;

pub const MODULE_NAME_BYTES_MAX: usize = 64;
pub const PROCEDURE_NAME_BYTES_MAX: usize = 64;
pub const PROCEDURE_EXPORT_PREFIX: &str = "ordo_proc_";
/// A procedure's partition declaration (docs/ABI.md, "Partitions").
pub const DECLARATION_EXPORT_PREFIX: &str = "ordo_keys_";
pub const ARGS_BUFFER_EXPORT: &str = "ordo_args_buffer";
pub const METADATA_SECTION: &str = "ordo.procedures";
pub const HOST_MODULE: &str = "ordo";

/// A procedure parameter as declared in the module's metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// A procedure as users see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureInfo {
    pub name: String,
    pub module: String,
    /// `None` if the module carries no metadata for this procedure.
    pub params: Option<Vec<ParamInfo>>,
    pub read_only: bool,
    /// Whether the module exports a partition declaration for it. If not,
    /// the procedure runs over all partitions.
    #[serde(default)]
    pub declares_partitions: bool,
}

#[derive(Deserialize)]
struct MetadataLine {
    name: String,
    #[serde(default)]
    params: Vec<ParamInfo>,
    #[serde(default)]
    read_only: bool,
    /// The parameters declared as partitions, when every declaration is
    /// a bare parameter (see `partition::FastDeclaration`).
    #[serde(default)]
    partition_params: Option<Vec<usize>>,
}

/// Why a module cannot be deployed. Messages are deterministic (they are
/// part of a replicated outcome) and say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeployError {
    #[error(
        "module name `{0}` is invalid: use 1 to {MODULE_NAME_BYTES_MAX} characters from [A-Za-z0-9_.-]"
    )]
    BadModuleName(String),
    #[error("module is {bytes} bytes, over the {max}-byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("not a valid wasm module: {0}")]
    Invalid(String),
    #[error(
        "import `{module}::{name}` is not part of ordo's host ABI (modules may import only `ordo::{{get,put,delete,scan,set_result,abort,sequence,now_ms,random_seed}}`, see docs/ABI.md)"
    )]
    ForbiddenImport { module: String, name: String },
    #[error("import `ordo::{name}` has type {found}, expected {expected}")]
    WrongImportType {
        name: String,
        found: String,
        expected: String,
    },
    #[error("export `{name}` has type {found}, expected {expected}")]
    WrongExportType {
        name: String,
        found: String,
        expected: String,
    },
    #[error(
        "export `{0}` is not part of ordo's ABI: a module exports only `memory`, `ordo_args_buffer` and `ordo_proc_*` functions"
    )]
    UnexpectedExport(String),
    #[error(
        "procedure export `{0}` has an invalid name: after `ordo_proc_` use 1 to {PROCEDURE_NAME_BYTES_MAX} characters from [a-z0-9_], starting with a letter or `_`"
    )]
    BadProcedureName(String),
    #[error("module does not export `{0}` (build it with the ordo-sdk)")]
    MissingExport(&'static str),
    #[error("module exports no procedures (mark functions with #[ordo_sdk::procedure])")]
    NoProcedures,
    #[error("module has a start function; ordo modules must not run code at instantiation")]
    StartFunction,
    #[error("module memory is invalid: {0}")]
    BadMemory(String),
    #[error("metadata section `{METADATA_SECTION}` is malformed: {0}")]
    BadMetadata(String),
    #[error(
        "procedure `{procedure}` is already provided by module `{owner}`; rename it, or redeploy `{owner}` without it first"
    )]
    ProcedureClash { procedure: String, owner: String },
    #[error(
        "export `{0}` declares partitions for a procedure the module does not export; export the procedure too, or remove the declaration"
    )]
    DeclarationWithoutProcedure(String),
}

/// A validated, compiled module.
#[derive(Clone)]
pub struct CompiledModule {
    pub name: String,
    pub sha256: [u8; 32],
    pub wasm: Arc<[u8]>,
    /// Procedures in name order.
    pub procedures: Vec<ProcedureInfo>,
    /// For each procedure, a declaration the host evaluates itself, if
    /// the module's metadata allows one.
    pub(crate) fast_declarations: Vec<Option<FastDeclaration>>,
    pub module: wasmtime::Module,
}

impl CompiledModule {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// The expected type of each host import, by name.
pub(crate) fn host_import_type(name: &str) -> Option<(&'static [ValType], &'static [ValType])> {
    use ValType::{I32, I64};
    Some(match name {
        "get" => (&[I32, I32, I32, I32], &[I64]),
        "put" => (&[I32, I32, I32, I32], &[]),
        "delete" => (&[I32, I32], &[]),
        "scan" => (&[I32, I32, I32, I32, I32, I32, I32], &[I64]),
        "set_result" => (&[I32, I32], &[]),
        "abort" => (&[I32, I32], &[]),
        "sequence" | "now_ms" | "random_seed" => (&[], &[I64]),
        _ => return None,
    })
}

fn describe(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| {
        types
            .iter()
            .map(|ty| format!("{ty}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(params), list(results))
}

fn describe_func(ty: &FuncType) -> String {
    let params: Vec<ValType> = ty.params().collect();
    let results: Vec<ValType> = ty.results().collect();
    describe(&params, &results)
}

fn func_matches(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |found: &mut dyn ExactSizeIterator<Item = ValType>, expected: &[ValType]| {
        found.len() == expected.len() && found.zip(expected).all(|(a, b)| ValType::eq(&a, b))
    };
    same(&mut ty.params(), params) && same(&mut ty.results(), results)
}

fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MODULE_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn valid_procedure_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_lowercase() || first == b'_' => {}
        _ => return false,
    }
    name.len() <= PROCEDURE_NAME_BYTES_MAX
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compiles modules and caches the results by content hash. Shared by the
/// submit path (which rejects bad modules before they reach the log) and
/// the executor (whose check is authoritative).
pub struct ModuleCompiler {
    engine: wasmtime::Engine,
    config: EngineConfig,
    cache: Mutex<HashMap<[u8; 32], wasmtime::Module>>,
}

/// Compiled modules kept in the per-node cache at most.
const COMPILED_CACHE_ENTRIES_MAX: usize = 64;

impl ModuleCompiler {
    pub fn new(engine: wasmtime::Engine, config: EngineConfig) -> ModuleCompiler {
        ModuleCompiler {
            engine,
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    /// Checks `wasm` against the ABI and compiles it. Deterministic: the
    /// same bytes give the same answer on every node running the same
    /// ordo build.
    pub fn compile(&self, name: &str, wasm: &[u8]) -> Result<CompiledModule, DeployError> {
        if !valid_module_name(name) {
            return Err(DeployError::BadModuleName(name.to_string()));
        }
        if wasm.len() > self.config.module_bytes_max {
            return Err(DeployError::TooLarge {
                bytes: wasm.len(),
                max: self.config.module_bytes_max,
            });
        }
        let metadata = scan_sections(wasm)?;
        let sha256 = sha256(wasm);
        let cached = self.cache.lock().get(&sha256).cloned();
        let module = match cached {
            Some(module) => module,
            None => {
                let module = wasmtime::Module::new(&self.engine, wasm)
                    .map_err(|err| DeployError::Invalid(root_message(&err)))?;
                let mut cache = self.cache.lock();
                if cache.len() >= COMPILED_CACHE_ENTRIES_MAX {
                    cache.clear();
                }
                cache.insert(sha256, module.clone());
                module
            }
        };
        let (procedure_names, declarations) = check_imports_and_exports(&module, &self.config)?;
        let fast_declarations = procedure_names
            .iter()
            .map(|procedure| {
                if declarations.binary_search(procedure).is_err() {
                    return None;
                }
                let described = metadata.iter().find(|line| &line.name == procedure)?;
                let params: Vec<(String, String)> = described
                    .params
                    .iter()
                    .map(|param| (param.name.clone(), param.ty.clone()))
                    .collect();
                FastDeclaration::new(&params, described.partition_params.as_deref()?)
            })
            .collect();
        let procedures = procedure_names
            .into_iter()
            .map(|procedure| {
                let declares_partitions = declarations.binary_search(&procedure).is_ok();
                let described = metadata.iter().find(|line| line.name == procedure);
                ProcedureInfo {
                    module: name.to_string(),
                    params: described.map(|line| line.params.clone()),
                    read_only: described.is_some_and(|line| line.read_only),
                    declares_partitions,
                    name: procedure,
                }
            })
            .collect();
        Ok(CompiledModule {
            name: name.to_string(),
            sha256,
            wasm: Arc::from(wasm),
            procedures,
            fast_declarations,
            module,
        })
    }
}

/// The innermost message of a wasmtime error: stable text such as a
/// validation failure, without context that might name host details.
fn root_message(err: &wasmtime::Error) -> String {
    let root = err.root_cause().to_string();
    let outer = err.to_string();
    let message = if root == outer {
        outer
    } else {
        format!("{outer}: {root}")
    };
    one_line(&message)
}

/// Some validator messages pretty-print byte arrays over many lines; an
/// outcome message stays on one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads what wasmtime's `Module` does not expose: the start section and
/// our metadata custom section.
fn scan_sections(wasm: &[u8]) -> Result<Vec<MetadataLine>, DeployError> {
    let mut metadata = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|err| DeployError::Invalid(one_line(&err.to_string())))?;
        match payload {
            Payload::StartSection { .. } => return Err(DeployError::StartFunction),
            Payload::CustomSection(reader) if reader.name() == METADATA_SECTION => {
                let text = std::str::from_utf8(reader.data())
                    .map_err(|_| DeployError::BadMetadata("not UTF-8".to_string()))?;
                for line in text.lines().filter(|line| !line.trim().is_empty()) {
                    let parsed: MetadataLine = serde_json::from_str(line)
                        .map_err(|err| DeployError::BadMetadata(err.to_string()))?;
                    metadata.push(parsed);
                }
            }
            _ => {}
        }
    }
    Ok(metadata)
}

/// Returns the module's procedure names and the names of the procedures
/// that declare partitions, both sorted.
fn check_imports_and_exports(
    module: &wasmtime::Module,
    config: &EngineConfig,
) -> Result<(Vec<String>, Vec<String>), DeployError> {
    for import in module.imports() {
        let forbidden = || DeployError::ForbiddenImport {
            module: import.module().to_string(),
            name: import.name().to_string(),
        };
        if import.module() != HOST_MODULE {
            return Err(forbidden());
        }
        let (params, results) = host_import_type(import.name()).ok_or_else(forbidden)?;
        match import.ty() {
            ExternType::Func(ty) if func_matches(&ty, params, results) => {}
            ExternType::Func(ty) => {
                return Err(DeployError::WrongImportType {
                    name: import.name().to_string(),
                    found: describe_func(&ty),
                    expected: describe(params, results),
                });
            }
            _ => return Err(forbidden()),
        }
    }

    let mut procedures = Vec::new();
    let mut declarations = Vec::new();
    let mut saw_memory = false;
    let mut saw_args_buffer = false;
    for export in module.exports() {
        let name = export.name();
        match export.ty() {
            ExternType::Memory(memory) => {
                if name != "memory" {
                    return Err(DeployError::UnexpectedExport(name.to_string()));
                }
                if memory.is_64() || memory.is_shared() {
                    return Err(DeployError::BadMemory(
                        "memory must be 32-bit and not shared".to_string(),
                    ));
                }
                let initial_bytes = memory.minimum().saturating_mul(65536);
                if initial_bytes > config.instance_memory_bytes_max as u64 {
                    return Err(DeployError::BadMemory(format!(
                        "initial size {initial_bytes} bytes exceeds the {}-byte instance memory limit",
                        config.instance_memory_bytes_max
                    )));
                }
                saw_memory = true;
            }
            ExternType::Global(_) => {}
            ExternType::Func(ty) => {
                if name == ARGS_BUFFER_EXPORT {
                    use ValType::I32;
                    if !func_matches(&ty, &[I32], &[I32]) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(&[I32], &[I32]),
                        });
                    }
                    saw_args_buffer = true;
                } else if let Some(procedure) = name.strip_prefix(PROCEDURE_EXPORT_PREFIX) {
                    use ValType::I32;
                    if !valid_procedure_name(procedure) {
                        return Err(DeployError::BadProcedureName(name.to_string()));
                    }
                    if !func_matches(&ty, &[I32, I32], &[I32]) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(&[I32, I32], &[I32]),
                        });
                    }
                    procedures.push(procedure.to_string());
                } else if let Some(procedure) = name.strip_prefix(DECLARATION_EXPORT_PREFIX) {
                    use ValType::I32;
                    if !func_matches(&ty, &[I32, I32], &[I32]) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(&[I32, I32], &[I32]),
                        });
                    }
                    declarations.push(procedure.to_string());
                } else {
                    return Err(DeployError::UnexpectedExport(name.to_string()));
                }
            }
            _ => return Err(DeployError::UnexpectedExport(name.to_string())),
        }
    }
    // An imported memory would also be caught above as a forbidden import.
    if !saw_memory {
        return Err(DeployError::MissingExport("memory"));
    }
    if !saw_args_buffer {
        return Err(DeployError::MissingExport(ARGS_BUFFER_EXPORT));
    }
    if procedures.is_empty() {
        return Err(DeployError::NoProcedures);
    }
    procedures.sort();
    declarations.sort();
    for declared in &declarations {
        if procedures.binary_search(declared).is_err() {
            return Err(DeployError::DeclarationWithoutProcedure(format!(
                "{DECLARATION_EXPORT_PREFIX}{declared}"
            )));
        }
    }
    Ok((procedures, declarations))
}

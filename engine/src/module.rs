//! Deploy-time checks and compilation of procedure modules.
//!
//! A module is checked against docs/ABI.md before it can reach the log and
//! again when its deploy entry executes (the second check is the one that
//! counts: it is deterministic, so every replica accepts or rejects the
//! same modules). Compiled code is a per-node cache keyed by the SHA-256 of
//! the bytes; the bytes are what replicas agree on.
//!
//! # Compile limits
//!
//! Cranelift's time and memory grow with the number of functions, the
//! size of each body and how deeply blocks nest, and a module of a few
//! megabytes can make it take seconds and gigabytes. So before any byte
//! reaches the compiler, `scan_sections` checks the cheap structural
//! limits of [`EngineConfig`] (`functions_count_max`,
//! `function_body_bytes_max`, `nesting_depth_max`) with one pass of
//! wasmparser, which costs milliseconds even for a bomb. After compiling,
//! the machine code is checked against `compiled_code_bytes_max`. Every
//! check is a pure function of the bytes, the limits and the compiler
//! build (see [`ModuleCompiler::compile`]), never of time: a deploy is a
//! log entry every replica decides on its own.
//!
//! Compiles run one at a time (`ModuleCompiler::compiling`), so concurrent
//! deploys cannot add up their compile memory, under a wall-clock
//! watchdog ([`CompileWatchdog`]) that can only stop the node, never
//! change a deploy's outcome.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ordo_schema::abi;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::wasmparser::{Operator, Parser, Payload};
use wasmtime::{ExternType, FuncType, ValType};

use crate::config::EngineConfig;
use crate::contract::{ModuleContract, SCHEMA_FUEL, TABLES_MAX};
use crate::partition::FastDeclaration;
use crate::sandbox::{HostLinker, run_schema_exports};

pub const MODULE_NAME_BYTES_MAX: usize = 64;
// What a module must look like (docs/ABI.md) is shared with the guest SDK
// and its macros: `ordo_schema::abi`.
pub use ordo_schema::abi::{
    ARGS_BUFFER_EXPORT, DECLARATION_EXPORT_PREFIX, HOST_MODULE, MEMORY_EXPORT, METADATA_SECTION,
    NAME_BYTES_MAX as PROCEDURE_NAME_BYTES_MAX, PROCEDURE_EXPORT_PREFIX, SCHEMA_EXPORT_PREFIX,
    TABLE_EXPORT_PREFIX,
};

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
    /// A `#[migration]`: run once, when its module is deployed, and never
    /// by a call.
    #[serde(default)]
    pub migration: bool,
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
    #[serde(default)]
    migration: bool,
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
        "export `{0}` is not part of ordo's ABI: a module exports only `memory`, `ordo_args_buffer` and `ordo_proc_*`, `ordo_keys_*`, `ordo_schema_*` and `ordo_table_*` functions"
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
    #[error(
        "module defines {count} functions, over the functions_count_max limit of {max}; split it into smaller modules"
    )]
    TooManyFunctions { count: u64, max: usize },
    #[error(
        "function {function} (counting the module's own functions from 0) has a {bytes}-byte body, the largest in the module and over the function_body_bytes_max limit of {max}; split the function"
    )]
    FunctionBodyTooLarge {
        function: u64,
        bytes: usize,
        max: usize,
    },
    #[error(
        "function {function} (counting the module's own functions from 0) nests blocks, loops and ifs {depth} deep, the deepest in the module and over the nesting_depth_max limit of {max}; flatten its control flow"
    )]
    NestingTooDeep {
        function: u64,
        depth: usize,
        max: usize,
    },
    #[error(
        "module compiles to {bytes} bytes of machine code, over the compiled_code_bytes_max limit of {max}; make it smaller"
    )]
    CompiledCodeTooLarge { bytes: usize, max: usize },
    #[error(
        "the module has {} migrations ({}); a module may carry at most one",
        .0.len(),
        .0.join(", ")
    )]
    TooManyMigrations(Vec<String>),
    #[error(
        "migration `{procedure}` aborted ({kind}): {message}; the module was not deployed and nothing changed"
    )]
    MigrationFailed {
        procedure: String,
        kind: &'static str,
        message: String,
    },
    #[error("schema export `{export}` is invalid: {reason}")]
    BadSchema { export: String, reason: String },
    #[error(
        "export `{0}` describes a procedure the module does not export; export the procedure too, or remove the schema"
    )]
    SchemaWithoutProcedure(String),
    #[error("table `{table}` is declared by two exports of the module, `{first}` and `{second}`")]
    TableDeclaredTwice {
        table: String,
        first: String,
        second: String,
    },
    #[error(
        "table `{table}` holds data written as {old}, which this module's {new} cannot read: {changes}; keep the stored type (docs/PROCEDURES.md lists the compatible changes), or empty the table first"
    )]
    IncompatibleTable {
        table: String,
        old: String,
        new: String,
        changes: String,
    },
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
    /// The schemas the module declares (empty for a raw-ABI module).
    pub contract: Arc<ModuleContract>,
    pub module: wasmtime::Module,
}

impl CompiledModule {
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// The expected type of each host import, by name (`ordo_schema::abi`).
pub(crate) fn host_import_type(name: &str) -> Option<abi::FuncType> {
    abi::host_import(name)
}

fn val_type(ty: abi::ValType) -> ValType {
    match ty {
        abi::ValType::I32 => ValType::I32,
        abi::ValType::I64 => ValType::I64,
    }
}

fn describe(ty: abi::FuncType) -> String {
    let list = |types: &[abi::ValType]| {
        types
            .iter()
            .map(|&ty| format!("{}", val_type(ty)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("({}) -> ({})", list(ty.params), list(ty.results))
}

fn describe_func(ty: &FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = ValType>| {
        types
            .map(|ty| format!("{ty}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "({}) -> ({})",
        list(&mut ty.params()),
        list(&mut ty.results())
    )
}

fn func_matches(ty: &FuncType, expected: abi::FuncType) -> bool {
    let same = |found: &mut dyn ExactSizeIterator<Item = ValType>, expected: &[abi::ValType]| {
        found.len() == expected.len()
            && found
                .zip(expected)
                .all(|(a, &b)| ValType::eq(&a, &val_type(b)))
    };
    same(&mut ty.params(), expected.params) && same(&mut ty.results(), expected.results)
}

pub fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MODULE_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

pub fn valid_procedure_name(name: &str) -> bool {
    abi::is_valid_name(name)
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// How long one compile may take before the node is stopped. A compile
/// cannot be interrupted, and a deploy's outcome must not depend on time,
/// so this is only a watchdog: the structural limits keep real compiles
/// far below it (see docs/BENCHMARKS.md), and a compile that still
/// overruns means something is badly wrong with this node.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// Called, on a watchdog thread, with a one-line description when a
/// compile overruns its timeout. It must stop the node: the compile
/// itself goes on, and whatever it decides stays deterministic.
pub type OverrunHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// The wall-clock bound on one compile. See [`COMPILE_TIMEOUT`].
#[derive(Clone)]
pub struct CompileWatchdog {
    pub timeout: Duration,
    pub on_overrun: OverrunHandler,
}

impl Default for CompileWatchdog {
    /// [`COMPILE_TIMEOUT`], and on overrun an abort of the whole process
    /// with the reason on stderr: there is no way to stop a compile short
    /// of that, and a node stuck in one must not look alive.
    fn default() -> CompileWatchdog {
        CompileWatchdog {
            timeout: COMPILE_TIMEOUT,
            on_overrun: Arc::new(|reason: &str| {
                eprintln!("ordo: {reason}; stopping the node");
                std::process::abort();
            }),
        }
    }
}

/// What a compiled module is cached under on disk: its wasm and the
/// compiler's settings (wasmtime version, configuration, target CPU
/// features). A cached artifact is reused only if both match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArtifactKey {
    pub wasm_sha256: [u8; 32],
    pub compatibility: u64,
}

impl ArtifactKey {
    /// A file name for the artifact: the two hashes in hex.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{:016x}.cwasm",
            hex::encode(self.wasm_sha256),
            self.compatibility
        )
    }
}

/// Persistent storage for compiled code, outside the engine (which does
/// no I/O). Everything it returns is treated as untrusted: the compiler
/// checks the framing and checksum ([`decode_artifact`]) before it hands
/// the bytes to wasmtime, and discards what fails. Errors are the store's
/// to report; a store that cannot read or write simply makes the node
/// compile again.
pub trait ArtifactStore: Send + Sync {
    /// The bytes stored under `key`, if any.
    fn load(&self, key: &ArtifactKey) -> Option<Vec<u8>>;
    /// Keeps `bytes` under `key`, replacing what was there.
    fn store(&self, key: &ArtifactKey, bytes: &[u8]);
    /// Deletes what is stored under `key`: it failed its checks for
    /// `reason`.
    fn discard(&self, key: &ArtifactKey, reason: &str);
}

/// Counts of how modules were obtained, since this compiler was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompileStats {
    /// Compiled by cranelift.
    pub compiled: u64,
    /// Loaded from the artifact store instead.
    pub loaded_from_cache: u64,
    /// Artifacts found but discarded (corrupt, truncated, refused by
    /// wasmtime), each followed by a compile.
    pub cache_discarded: u64,
}

#[derive(Default)]
struct CompileCounters {
    compiled: AtomicU64,
    loaded_from_cache: AtomicU64,
    cache_discarded: AtomicU64,
}

/// Compiles modules and caches the results by content hash. Shared by the
/// submit path (which rejects bad modules before they reach the log) and
/// the executor (whose check is authoritative).
pub struct ModuleCompiler {
    engine: wasmtime::Engine,
    config: EngineConfig,
    cache: Mutex<HashMap<[u8; 32], wasmtime::Module>>,
    /// Held for the whole of a compile or cache load: one at a time, so
    /// that the memory concurrent compiles take never adds up.
    compiling: Mutex<()>,
    watchdog: CompileWatchdog,
    artifacts: Option<Arc<dyn ArtifactStore>>,
    compatibility: u64,
    counters: CompileCounters,
    /// Host functions, for running a module's schema exports.
    linker: HostLinker,
}

/// Compiled modules kept in the per-node cache at most.
const COMPILED_CACHE_ENTRIES_MAX: usize = 64;

impl ModuleCompiler {
    pub fn new(engine: wasmtime::Engine, config: EngineConfig) -> ModuleCompiler {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ModuleCompiler {
            compatibility: hasher.finish(),
            linker: HostLinker::new(&engine),
            engine,
            config,
            cache: Mutex::new(HashMap::new()),
            compiling: Mutex::new(()),
            watchdog: CompileWatchdog::default(),
            artifacts: None,
            counters: CompileCounters::default(),
        }
    }

    /// Keeps compiled code in `store` and looks there before compiling.
    pub fn with_artifact_store(mut self, store: Arc<dyn ArtifactStore>) -> ModuleCompiler {
        self.artifacts = Some(store);
        self
    }

    /// Replaces the default watchdog ([`CompileWatchdog::default`]).
    pub fn with_watchdog(mut self, watchdog: CompileWatchdog) -> ModuleCompiler {
        self.watchdog = watchdog;
        self
    }

    pub fn engine(&self) -> &wasmtime::Engine {
        &self.engine
    }

    pub fn stats(&self) -> CompileStats {
        CompileStats {
            compiled: self.counters.compiled.load(Ordering::Relaxed),
            loaded_from_cache: self.counters.loaded_from_cache.load(Ordering::Relaxed),
            cache_discarded: self.counters.cache_discarded.load(Ordering::Relaxed),
        }
    }

    /// Checks `wasm` against the ABI and the compile limits and compiles
    /// it (or loads its compiled code from the artifact store).
    ///
    /// Deterministic: the same bytes give the same answer on every node
    /// running the same ordo build on the same kind of CPU. The structural
    /// limits depend on the bytes alone; the compiled code size also
    /// depends on the CPU features cranelift compiles for, so members of a
    /// cluster must run on CPUs with the same features (a module within a
    /// few bytes of `compiled_code_bytes_max` could otherwise be accepted
    /// by some members and refused by others, which the divergence check
    /// would catch and stop). Never of time: the watchdog can stop the
    /// node, not change the answer.
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
        let metadata = scan_sections(wasm, &self.config)?;
        let sha256 = sha256(wasm);
        let cached = self.cache.lock().get(&sha256).cloned();
        let module = match cached {
            Some(module) => module,
            None => {
                let module = self.compile_or_load(name, sha256, wasm)?;
                let mut cache = self.cache.lock();
                if cache.len() >= COMPILED_CACHE_ENTRIES_MAX {
                    cache.clear();
                }
                cache.insert(sha256, module.clone());
                module
            }
        };
        let Exports {
            procedures: procedure_names,
            declarations,
            schemas,
            tables,
        } = check_imports_and_exports(&module, &self.config)?;
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
        let procedures: Vec<ProcedureInfo> = procedure_names
            .into_iter()
            .map(|procedure| {
                let declares_partitions = declarations.binary_search(&procedure).is_ok();
                let described = metadata.iter().find(|line| line.name == procedure);
                ProcedureInfo {
                    module: name.to_string(),
                    params: described.map(|line| line.params.clone()),
                    read_only: described.is_some_and(|line| line.read_only),
                    migration: described.is_some_and(|line| line.migration),
                    declares_partitions,
                    name: procedure,
                }
            })
            .collect();
        let contract = self.read_contract(&module, &procedures, &schemas, &tables)?;
        Ok(CompiledModule {
            name: name.to_string(),
            sha256,
            wasm: Arc::from(wasm),
            procedures,
            fast_declarations,
            contract: Arc::new(contract),
            module,
        })
    }

    /// Runs the module's schema exports and checks what they return.
    fn read_contract(
        &self,
        module: &wasmtime::Module,
        procedures: &[ProcedureInfo],
        schemas: &[String],
        tables: &[String],
    ) -> Result<ModuleContract, DeployError> {
        let mut contract = ModuleContract::default();
        if schemas.is_empty() && tables.is_empty() {
            return Ok(contract);
        }
        let mut exports: Vec<String> = schemas
            .iter()
            .map(|procedure| format!("{SCHEMA_EXPORT_PREFIX}{procedure}"))
            .collect();
        exports.extend(
            tables
                .iter()
                .map(|table| format!("{TABLE_EXPORT_PREFIX}{table}")),
        );
        let results = run_schema_exports(&self.linker, &self.config, module, &exports, SCHEMA_FUEL)
            .map_err(|(export, reason)| DeployError::BadSchema { export, reason })?;
        let (procedure_results, table_results) = results.split_at(schemas.len());
        for (procedure, bytes) in schemas.iter().zip(procedure_results) {
            let info = procedures
                .iter()
                .find(|info| &info.name == procedure)
                .expect("check_imports_and_exports pairs every schema with a procedure");
            let checked = crate::contract::procedure_contract(procedure, info.read_only, bytes)?;
            contract
                .procedures
                .insert(procedure.clone(), Arc::new(checked));
        }
        let mut declared_by: BTreeMap<String, String> = BTreeMap::new();
        for (export, bytes) in exports[schemas.len()..].iter().zip(table_results) {
            let table = crate::contract::table_schema(export, bytes)?;
            if let Some(first) = declared_by.insert(table.name.clone(), export.clone()) {
                return Err(DeployError::TableDeclaredTwice {
                    table: table.name,
                    first,
                    second: export.clone(),
                });
            }
            contract.tables.insert(table.name.clone(), table);
        }
        Ok(contract)
    }

    /// The compiled module for `wasm`: from the artifact store if it holds
    /// a good copy, else compiled (and then stored). Either way its
    /// machine code is checked against `compiled_code_bytes_max`.
    fn compile_or_load(
        &self,
        name: &str,
        sha256: [u8; 32],
        wasm: &[u8],
    ) -> Result<wasmtime::Module, DeployError> {
        let _one_at_a_time = self.compiling.lock();
        // Another caller may have compiled it while this one waited.
        if let Some(module) = self.cache.lock().get(&sha256).cloned() {
            return Ok(module);
        }
        let key = ArtifactKey {
            wasm_sha256: sha256,
            compatibility: self.compatibility,
        };
        if let Some(module) = self.load_artifact(&key) {
            self.counters
                .loaded_from_cache
                .fetch_add(1, Ordering::Relaxed);
            self.check_compiled_size(&module)?;
            return Ok(module);
        }
        let module = {
            let _watchdog = Watch::start(
                &self.watchdog,
                format!(
                    "compiling module `{name}` (sha256 {}) has taken longer than {:?}",
                    hex::encode(sha256),
                    self.watchdog.timeout
                ),
            );
            wasmtime::Module::new(&self.engine, wasm)
                .map_err(|err| DeployError::Invalid(root_message(&err)))?
        };
        self.counters.compiled.fetch_add(1, Ordering::Relaxed);
        self.check_compiled_size(&module)?;
        if let Some(store) = &self.artifacts
            && let Ok(artifact) = module.serialize()
        {
            store.store(&key, &encode_artifact(&key, &artifact));
        }
        Ok(module)
    }

    fn check_compiled_size(&self, module: &wasmtime::Module) -> Result<(), DeployError> {
        let bytes = module.text().len();
        if bytes > self.config.compiled_code_bytes_max {
            return Err(DeployError::CompiledCodeTooLarge {
                bytes,
                max: self.config.compiled_code_bytes_max,
            });
        }
        Ok(())
    }

    /// A module from the artifact store, if it holds one that passes every
    /// check; anything else found there is discarded.
    fn load_artifact(&self, key: &ArtifactKey) -> Option<wasmtime::Module> {
        let store = self.artifacts.as_ref()?;
        let file = store.load(key)?;
        let loaded = decode_artifact(key, &file).and_then(|artifact| {
            // SAFETY: `decode_artifact` checked that these bytes are, to
            // the checksum's strength, exactly what `Module::serialize`
            // gave for this wasm under an engine with this compatibility
            // hash (and wasmtime checks its own header and settings too).
            // Only someone who can write the node's data directory could
            // forge them, and such a party controls the node anyway.
            unsafe { wasmtime::Module::deserialize(&self.engine, artifact) }
                .map_err(|err| format!("wasmtime refused it: {}", root_message(&err)))
        });
        match loaded {
            Ok(module) => Some(module),
            Err(reason) => {
                self.counters
                    .cache_discarded
                    .fetch_add(1, Ordering::Relaxed);
                store.discard(key, &reason);
                None
            }
        }
    }
}

/// A running watchdog: calls the overrun handler if not dropped within the
/// timeout.
struct Watch {
    done: Option<crossbeam_channel::Sender<()>>,
}

impl Watch {
    fn start(watchdog: &CompileWatchdog, reason: String) -> Watch {
        let (done, finished) = crossbeam_channel::bounded::<()>(0);
        let timeout = watchdog.timeout;
        let on_overrun = watchdog.on_overrun.clone();
        let spawned = std::thread::Builder::new()
            .name("ordo-compile-watchdog".into())
            .spawn(move || {
                if let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    finished.recv_timeout(timeout)
                {
                    on_overrun(&reason);
                }
            });
        // Without a thread there is no watchdog; the compile is bounded by
        // the structural limits all the same.
        Watch {
            done: spawned.ok().map(|_| done),
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Dropping the sender wakes the watchdog thread, which then ends.
        self.done.take();
    }
}

/// Magic at the start of an artifact file: ordo compiled wasm, format 1.
const ARTIFACT_MAGIC: &[u8; 8] = b"ordocwm1";
/// magic, wasm sha256, compatibility hash, artifact length, xxh3-128.
const ARTIFACT_HEADER_BYTES: usize = 8 + 32 + 8 + 8 + 16;

/// Frames a serialized module for the artifact store: a header naming
/// what it was compiled from and a checksum of the rest.
pub fn encode_artifact(key: &ArtifactKey, artifact: &[u8]) -> Vec<u8> {
    let mut file = Vec::with_capacity(ARTIFACT_HEADER_BYTES + artifact.len());
    file.extend_from_slice(ARTIFACT_MAGIC);
    file.extend_from_slice(&key.wasm_sha256);
    file.extend_from_slice(&key.compatibility.to_le_bytes());
    file.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    file.extend_from_slice(&xxhash_rust::xxh3::xxh3_128(artifact).to_le_bytes());
    file.extend_from_slice(artifact);
    file
}

/// The serialized module inside an artifact file, if the file is whole
/// and was made for `key`; else why not.
pub fn decode_artifact<'a>(key: &ArtifactKey, file: &'a [u8]) -> Result<&'a [u8], String> {
    if file.len() < ARTIFACT_HEADER_BYTES {
        return Err(format!(
            "it is {} bytes, shorter than its {ARTIFACT_HEADER_BYTES}-byte header",
            file.len()
        ));
    }
    let (header, artifact) = file.split_at(ARTIFACT_HEADER_BYTES);
    if &header[0..8] != ARTIFACT_MAGIC {
        return Err("its magic is wrong".to_string());
    }
    if header[8..40] != key.wasm_sha256 {
        return Err("it was compiled from another module".to_string());
    }
    let field = |range: std::ops::Range<usize>| {
        u64::from_le_bytes(header[range].try_into().expect("8 bytes"))
    };
    if field(40..48) != key.compatibility {
        return Err("it was compiled under other compiler settings".to_string());
    }
    if field(48..56) != artifact.len() as u64 {
        return Err(format!(
            "its header says {} bytes of code follow, but {} do (truncated?)",
            field(48..56),
            artifact.len()
        ));
    }
    let checksum = u128::from_le_bytes(header[56..72].try_into().expect("16 bytes"));
    if checksum != xxhash_rust::xxh3::xxh3_128(artifact) {
        return Err("its checksum does not match its contents".to_string());
    }
    Ok(artifact)
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

/// The structural measures the compile limits apply to, as
/// [`measure`] finds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleShape {
    /// Functions the module defines (imports not counted).
    pub functions: u64,
    /// The largest function body in bytes, and its function (counting the
    /// module's own functions from 0).
    pub largest_body: (u64, usize),
    /// The deepest nesting of blocks, loops and ifs, and its function.
    pub deepest_nesting: (u64, usize),
}

/// Measures `wasm`'s functions without compiling anything, for tools and
/// tests that want to see how far a module is from the compile limits.
pub fn measure(wasm: &[u8]) -> Result<ModuleShape, DeployError> {
    scan(wasm, None).map(|(_, shape)| shape)
}

/// Reads what wasmtime's `Module` does not expose (the start section and
/// our metadata custom section) and checks the structural compile limits,
/// in one pass that never compiles anything.
fn scan_sections(wasm: &[u8], config: &EngineConfig) -> Result<Vec<MetadataLine>, DeployError> {
    let (metadata, shape) = scan(wasm, Some(config.functions_count_max))?;
    let (function, bytes) = shape.largest_body;
    if bytes > config.function_body_bytes_max {
        return Err(DeployError::FunctionBodyTooLarge {
            function,
            bytes,
            max: config.function_body_bytes_max,
        });
    }
    let (function, depth) = shape.deepest_nesting;
    if depth > config.nesting_depth_max {
        return Err(DeployError::NestingTooDeep {
            function,
            depth,
            max: config.nesting_depth_max,
        });
    }
    Ok(metadata)
}

/// One pass over `wasm`. With `functions_count_max`, refuses a module
/// over it as soon as a section gives the count, before reading bodies.
fn scan(
    wasm: &[u8],
    functions_count_max: Option<usize>,
) -> Result<(Vec<MetadataLine>, ModuleShape), DeployError> {
    let invalid = |err: wasmtime::wasmparser::BinaryReaderError| {
        DeployError::Invalid(one_line(&err.to_string()))
    };
    let too_many_functions = |count: u32| -> Result<(), DeployError> {
        match functions_count_max {
            Some(max) if count as usize > max => Err(DeployError::TooManyFunctions {
                count: count.into(),
                max,
            }),
            _ => Ok(()),
        }
    };
    let mut metadata = Vec::new();
    let mut shape = ModuleShape::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(invalid)? {
            Payload::StartSection { .. } => return Err(DeployError::StartFunction),
            // The function and code sections each give the count before
            // any body is read; a valid module has the same in both.
            Payload::FunctionSection(reader) => too_many_functions(reader.count())?,
            Payload::CodeSectionStart { count, .. } => too_many_functions(count)?,
            Payload::CodeSectionEntry(body) => {
                let function = shape.functions;
                let bytes = body.range().len();
                if bytes > shape.largest_body.1 {
                    shape.largest_body = (function, bytes);
                }
                let depth = nesting_depth(&body).map_err(invalid)?;
                if depth > shape.deepest_nesting.1 {
                    shape.deepest_nesting = (function, depth);
                }
                shape.functions += 1;
            }
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
    Ok((metadata, shape))
}

/// The deepest nesting of blocks, loops, ifs and try blocks in `body` (the
/// body itself is depth 0). Reads every operator; the body's size is
/// already bounded.
fn nesting_depth(
    body: &wasmtime::wasmparser::FunctionBody<'_>,
) -> Result<usize, wasmtime::wasmparser::BinaryReaderError> {
    let mut reader = body.get_operators_reader()?;
    let mut depth = 0usize;
    let mut deepest = 0usize;
    while !reader.eof() {
        match reader.read()? {
            Operator::Block { .. }
            | Operator::Loop { .. }
            | Operator::If { .. }
            | Operator::Try { .. }
            | Operator::TryTable { .. } => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            // The body's own `end` takes it below zero; validation, later,
            // refuses anything after it.
            Operator::End => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(deepest)
}

/// Returns the module's procedure names and the names of the procedures
/// that declare partitions, both sorted.
/// What a module exports, by kind (names without their prefixes, sorted).
struct Exports {
    procedures: Vec<String>,
    declarations: Vec<String>,
    schemas: Vec<String>,
    tables: Vec<String>,
}

fn check_imports_and_exports(
    module: &wasmtime::Module,
    config: &EngineConfig,
) -> Result<Exports, DeployError> {
    for import in module.imports() {
        let forbidden = || DeployError::ForbiddenImport {
            module: import.module().to_string(),
            name: import.name().to_string(),
        };
        if import.module() != HOST_MODULE {
            return Err(forbidden());
        }
        let expected = host_import_type(import.name()).ok_or_else(forbidden)?;
        match import.ty() {
            ExternType::Func(ty) if func_matches(&ty, expected) => {}
            ExternType::Func(ty) => {
                return Err(DeployError::WrongImportType {
                    name: import.name().to_string(),
                    found: describe_func(&ty),
                    expected: describe(expected),
                });
            }
            _ => return Err(forbidden()),
        }
    }

    let mut procedures = Vec::new();
    let mut declarations = Vec::new();
    let mut schemas = Vec::new();
    let mut tables = Vec::new();
    let mut saw_memory = false;
    let mut saw_args_buffer = false;
    for export in module.exports() {
        let name = export.name();
        match export.ty() {
            ExternType::Memory(memory) => {
                if name != MEMORY_EXPORT {
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
                    if !func_matches(&ty, abi::ARGS_BUFFER_TYPE) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(abi::ARGS_BUFFER_TYPE),
                        });
                    }
                    saw_args_buffer = true;
                } else if let Some(procedure) = name.strip_prefix(PROCEDURE_EXPORT_PREFIX) {
                    if !valid_procedure_name(procedure) {
                        return Err(DeployError::BadProcedureName(name.to_string()));
                    }
                    if !func_matches(&ty, abi::PROCEDURE_TYPE) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(abi::PROCEDURE_TYPE),
                        });
                    }
                    procedures.push(procedure.to_string());
                } else if let Some(procedure) = name.strip_prefix(DECLARATION_EXPORT_PREFIX) {
                    if !func_matches(&ty, abi::PROCEDURE_TYPE) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(abi::PROCEDURE_TYPE),
                        });
                    }
                    declarations.push(procedure.to_string());
                } else if let Some(suffix) = name
                    .strip_prefix(SCHEMA_EXPORT_PREFIX)
                    .map(|procedure| (procedure, &mut schemas))
                    .or_else(|| {
                        name.strip_prefix(TABLE_EXPORT_PREFIX)
                            .map(|table| (table, &mut tables))
                    })
                {
                    let (suffix, list) = suffix;
                    if !func_matches(&ty, abi::SCHEMA_TYPE) {
                        return Err(DeployError::WrongExportType {
                            name: name.to_string(),
                            found: describe_func(&ty),
                            expected: describe(abi::SCHEMA_TYPE),
                        });
                    }
                    if !valid_procedure_name(suffix) {
                        return Err(DeployError::BadSchema {
                            export: name.to_string(),
                            reason: format!(
                                "after the prefix use 1 to {PROCEDURE_NAME_BYTES_MAX} characters from [a-z0-9_]"
                            ),
                        });
                    }
                    list.push(suffix.to_string());
                } else {
                    return Err(DeployError::UnexpectedExport(name.to_string()));
                }
            }
            _ => return Err(DeployError::UnexpectedExport(name.to_string())),
        }
    }
    // An imported memory would also be caught above as a forbidden import.
    if !saw_memory {
        return Err(DeployError::MissingExport(MEMORY_EXPORT));
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
    schemas.sort();
    tables.sort();
    for described in &schemas {
        if procedures.binary_search(described).is_err() {
            return Err(DeployError::SchemaWithoutProcedure(format!(
                "{SCHEMA_EXPORT_PREFIX}{described}"
            )));
        }
    }
    if tables.len() > TABLES_MAX {
        return Err(DeployError::BadSchema {
            export: format!("{TABLE_EXPORT_PREFIX}*"),
            reason: format!(
                "the module declares {} tables, over the limit of {TABLES_MAX}",
                tables.len()
            ),
        });
    }
    Ok(Exports {
        procedures,
        declarations,
        schemas,
        tables,
    })
}

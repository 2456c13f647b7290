//! Hostile module bytes through exactly what a deploy runs before a
//! module is accepted: `ModuleCompiler::compile` (the submit path's check:
//! size and structure scan, wasmtime's parse, validation and compile, the
//! ABI's imports, exports and memory, compiled size, the schema exports)
//! and then a deploy entry executed by a fresh `Executor` (the same
//! checks again, migrations, procedure clashes, linking).
//!
//! The first byte picks how the rest becomes a module:
//!
//! - `0`: the bytes are the module (libFuzzer's own mutations; the seed
//!   corpus holds real ABI modules to start from);
//! - `1`: wasm-smith builds a valid module that imports only ordo's host
//!   functions and exports what an ordo module exports, so most inputs
//!   get past wasmtime's validation to the ABI and schema checks;
//! - `2`: the bytes are a [`Plan`] of an ABI-shaped module (imports,
//!   memory, procedure, declaration, schema and table exports, metadata
//!   lines, schema contents), each part right or wrong in chosen ways.
//!
//! Checks: no panic; a refusal is an error value, and the executor's
//! deploy refuses with the same message as the submit path; two compiles
//! of the same bytes agree; an accepted module without a migration can
//! be deployed again under its name, and not under another while its
//! procedures are routed. Time and memory per input are bounded by the
//! engine's own limits; run with `-timeout` and `-rss_limit_mb` (see
//! docs/SECURITY.md, "Fuzzing").
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use ordo_engine::schema::{
    Field, Fields, Param, ProcedureSchema, Registry, Shape, TableSchema, TypeBody, TypeDef,
    Variant, encode_schema,
};
use ordo_engine::{AbortKind, EngineConfig, Executor, ModuleCompiler, Outcome, measure};
use ordo_entry::{Batch, Deploy, Entry};
use wasm_encoder::{
    CodeSection, ConstExpr, CustomSection, DataSection, EntityType, ExportKind, ExportSection,
    Function, FunctionSection, GlobalSection, GlobalType, ImportSection, Instruction,
    MemorySection, MemoryType, Module, StartSection, TypeSection, ValType,
};

struct Setup {
    config: EngineConfig,
    /// One wasmtime engine and compiled-module cache for every input, as
    /// a node has.
    compiler: Arc<ModuleCompiler>,
    /// What wasm-smith may import: every host function with its type.
    smith_imports: Vec<u8>,
    /// What wasm-smith modules must export, from bare to full.
    smith_exports: Vec<Vec<u8>>,
    /// `ORDO_FUZZ_DEBUG` set: print each input's outcomes (to check what
    /// a seed reaches).
    debug: bool,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = EngineConfig::default();
        Setup {
            compiler: Executor::compiler(&config),
            config,
            smith_imports: smith_imports(),
            smith_exports: smith_exports(),
            debug: std::env::var_os("ORDO_FUZZ_DEBUG").is_some(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wasm = match mode % 3 {
        0 => rest.to_vec(),
        1 => match smith_module(rest) {
            Some(wasm) => wasm,
            None => return,
        },
        _ => match Plan::arbitrary_take_rest(Unstructured::new(rest)) {
            Ok(plan) => plan.encode(),
            Err(_) => return,
        },
    };
    if setup().debug {
        let _ = std::fs::write("module_validation-last.wasm", &wasm);
    }
    deploy(&wasm);
});

const NAME: &str = "fuzz";

fn deploy(wasm: &[u8]) {
    let setup = setup();
    // Tools measure modules with this; it must refuse, not panic.
    let _ = measure(wasm);

    let submitted = setup.compiler.compile(NAME, wasm);
    let again = setup.compiler.compile(NAME, wasm);
    match (&submitted, &again) {
        (Ok(first), Ok(second)) => {
            assert_eq!(first.procedures, second.procedures);
            assert_eq!(first.contract, second.contract);
        }
        (Err(first), Err(second)) => assert_eq!(first, second),
        _ => panic!(
            "two compiles of the same bytes disagree: {:?} then {:?}",
            submitted.as_ref().err(),
            again.as_ref().err()
        ),
    }

    let mut executor = Executor::new(setup.compiler.clone(), setup.config.clone());
    let outcome = execute(&mut executor, NAME, wasm);
    if setup.debug {
        eprintln!("{} bytes, deploy: {outcome:?}", wasm.len());
    }
    let compiled = match submitted {
        Err(refused) => {
            let abort = outcome
                .abort()
                .expect("the executor deployed a refused module");
            assert_eq!(abort.kind, AbortKind::DeployRejected);
            assert_eq!(abort.message, refused.to_string());
            return;
        }
        Ok(compiled) => compiled,
    };
    match &outcome {
        Outcome::Deployed(_) => {}
        Outcome::Aborted(abort) => {
            // Only what the submit path does not check: migrations and
            // linking.
            assert_eq!(abort.kind, AbortKind::DeployRejected, "{abort:?}");
            return;
        }
        Outcome::Committed { .. } => panic!("a deploy committed as a call"),
    }
    let migrates = compiled.procedures.iter().any(|p| p.migration);
    let routed = compiled.procedures.iter().any(|p| !p.migration);
    let upgrade = execute(&mut executor, NAME, wasm);
    if !migrates {
        assert!(
            matches!(upgrade, Outcome::Deployed(_)),
            "redeploying an accepted module failed: {upgrade:?}"
        );
    }
    let clash = execute(&mut executor, "fuzz2", wasm);
    if routed && matches!(upgrade, Outcome::Deployed(_)) {
        let abort = clash
            .abort()
            .expect("a second module with the same procedures was deployed");
        assert!(abort.message.contains("already provided"), "{abort:?}");
    }
}

fn execute(executor: &mut Executor, name: &str, wasm: &[u8]) -> Outcome {
    let position = executor.status().position;
    let batch = Batch {
        first_seq: position + 1,
        timestamp_ms: 1_700_000_000_000,
        entries: vec![Entry::Deploy(Deploy {
            client_id: 1,
            request_id: position + 1,
            name: name.to_string(),
            wasm: wasm.to_vec(),
        })],
    };
    let mut outcomes = executor.execute(&batch);
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).outcome
}

// ---------------------------------------------------------------------
// wasm-smith

/// The host functions a module may import (docs/ABI.md), with the types
/// `host_import_type` expects.
const HOST_IMPORTS: &[(&str, &[ValType], &[ValType])] = {
    use ValType::{I32, I64};
    &[
        ("get", &[I32, I32, I32, I32], &[I64]),
        ("put", &[I32, I32, I32, I32], &[]),
        ("delete", &[I32, I32], &[]),
        ("scan", &[I32, I32, I32, I32, I32, I32, I32], &[I64]),
        ("set_result", &[I32, I32], &[]),
        ("abort", &[I32, I32], &[]),
        ("panic", &[I32, I32], &[]),
        ("log", &[I32, I32, I32], &[]),
        ("sequence", &[], &[I64]),
        ("now_ms", &[], &[I64]),
        ("random_seed", &[], &[I64]),
    ]
};

fn smith_imports() -> Vec<u8> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    for (index, (name, params, results)) in HOST_IMPORTS.iter().enumerate() {
        types
            .ty()
            .function(params.iter().copied(), results.iter().copied());
        imports.import("ordo", name, EntityType::Function(index as u32));
    }
    let mut module = Module::new();
    module.section(&types).section(&imports);
    module.finish()
}

/// Modules whose exports wasm-smith copies: the ABI's minimum, then with
/// a partition declaration, a schema and a table.
fn smith_exports() -> Vec<Vec<u8>> {
    use ValType::I32;
    let sets: [&[&str]; 4] = [
        &["ordo_args_buffer", "ordo_proc_p"],
        &["ordo_args_buffer", "ordo_proc_p", "ordo_keys_p"],
        &["ordo_args_buffer", "ordo_proc_p", "ordo_schema_p"],
        &[
            "ordo_args_buffer",
            "ordo_proc_p",
            "ordo_proc_q",
            "ordo_schema_q",
            "ordo_table_t",
        ],
    ];
    sets.iter()
        .map(|names| {
            let mut types = TypeSection::new();
            types.ty().function([I32], [I32]);
            types.ty().function([I32, I32], [I32]);
            types.ty().function([], [I32]);
            let mut functions = FunctionSection::new();
            let mut exports = ExportSection::new();
            let mut code = CodeSection::new();
            for (index, name) in names.iter().enumerate() {
                let ty = if *name == "ordo_args_buffer" {
                    0
                } else if name.starts_with("ordo_schema_") || name.starts_with("ordo_table_") {
                    2
                } else {
                    1
                };
                functions.function(ty);
                exports.export(name, ExportKind::Func, index as u32);
                let mut body = Function::new([]);
                body.instruction(&Instruction::I32Const(0))
                    .instruction(&Instruction::End);
                code.function(&body);
            }
            let mut memories = MemorySection::new();
            memories.memory(MemoryType {
                minimum: 1,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
            exports.export("memory", ExportKind::Memory, 0);
            let mut module = Module::new();
            module
                .section(&types)
                .section(&functions)
                .section(&memories)
                .section(&exports)
                .section(&code);
            module.finish()
        })
        .collect()
}

fn smith_module(bytes: &[u8]) -> Option<Vec<u8>> {
    let setup = setup();
    let mut u = Unstructured::new(bytes);
    let choice = usize::from(u.arbitrary::<u8>().ok()?) % setup.smith_exports.len();
    let config = wasm_smith::Config {
        available_imports: Some(setup.smith_imports.clone()),
        exports: Some(setup.smith_exports[choice].clone()),
        // The required `memory` export brings its own memory.
        max_memories: 0,
        max_memory32_bytes: 4 << 20,
        memory64_enabled: false,
        threads_enabled: false,
        relaxed_simd_enabled: false,
        simd_enabled: u.arbitrary().ok()?,
        exceptions_enabled: false,
        gc_enabled: false,
        // `externref` needs wasmtime's GC, which ordo does not build.
        reference_types_enabled: false,
        // Newer than the wasmparser that wasmtime is built with.
        compact_imports_enabled: false,
        custom_page_sizes_enabled: false,
        wide_arithmetic_enabled: false,
        allow_start_export: false,
        max_funcs: 24,
        max_instructions: 400,
        max_data_segments: 8,
        max_tables: 1,
        ..wasm_smith::Config::default()
    };
    let module = wasm_smith::Module::new(config, &mut u).ok()?;
    Some(module.to_bytes())
}

// ---------------------------------------------------------------------
// ABI-shaped plans

/// Procedure and table names: a few that fit the grammar, some that
/// clash, and text that may not fit it.
#[derive(Arbitrary, Debug)]
enum Name {
    Known(u8),
    Text(String),
}

const KNOWN_NAMES: &[&str] = &[
    "p", "q", "transfer", "_x", "a1", "t", "P", "", "9a", "a-b", "é",
];

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Known(index) => KNOWN_NAMES[usize::from(*index) % KNOWN_NAMES.len()].to_string(),
            Name::Text(text) => text.chars().take(80).collect(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Val {
    I32,
    I64,
    F32,
    F64,
}

impl Val {
    fn ty(self) -> ValType {
        match self {
            Val::I32 => ValType::I32,
            Val::I64 => ValType::I64,
            Val::F32 => ValType::F32,
            Val::F64 => ValType::F64,
        }
    }

    fn zero(self) -> Instruction<'static> {
        match self {
            Val::I32 => Instruction::I32Const(0),
            Val::I64 => Instruction::I64Const(0),
            Val::F32 => Instruction::F32Const(0.0.into()),
            Val::F64 => Instruction::F64Const(0.0.into()),
        }
    }
}

/// A function type: the one the export needs, or another.
#[derive(Arbitrary, Debug)]
enum Sig {
    Expected,
    Other { params: Vec<Val>, results: Vec<Val> },
}

impl Sig {
    fn resolve(&self, expected: (&[Val], &[Val])) -> (Vec<Val>, Vec<Val>) {
        match self {
            Sig::Expected => (expected.0.to_vec(), expected.1.to_vec()),
            Sig::Other { params, results } => (
                params.iter().take(8).copied().collect(),
                results.iter().take(3).copied().collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ImportModule {
    Ordo,
    Env,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum ImportKind {
    Func(Sig),
    Memory,
    Global,
}

#[derive(Arbitrary, Debug)]
struct ImportPlan {
    module: ImportModule,
    /// An index into [`HOST_IMPORTS`] (past its end: `name`).
    host: u8,
    name: String,
    kind: ImportKind,
}

#[derive(Arbitrary, Debug)]
struct MemoryPlan {
    minimum: u16,
    maximum: Option<u16>,
    shared: bool,
    memory64: bool,
    /// Exported as `memory` unless this names it otherwise.
    export_as: Option<String>,
}

/// What a procedure (or a declaration) does if it runs: only a migration
/// runs at deploy, and never with a loop (a migration's fuel is meant
/// for millions of rows, so a looping one takes minutes by design).
#[derive(Arbitrary, Debug)]
enum ProcBody {
    Status(i32),
    Trap,
    /// `put` a key and a value from memory, then return 0.
    Put {
        key: u16,
        len: u16,
    },
    /// `set_result` a range of memory, then return a status.
    SetResult {
        ptr: u32,
        len: u32,
        status: i32,
    },
}

#[derive(Arbitrary, Debug)]
struct ProcPlan {
    name: Name,
    sig: Sig,
    body: ProcBody,
    declaration: Option<Sig>,
}

#[derive(Arbitrary, Debug)]
enum SimpleShape {
    Unit,
    Bool,
    U8,
    U32,
    U64,
    I64,
    U128,
    I128,
    F64,
    Char,
    String,
    Bytes,
}

impl SimpleShape {
    fn shape(&self) -> Shape {
        match self {
            SimpleShape::Unit => Shape::Unit,
            SimpleShape::Bool => Shape::Bool,
            SimpleShape::U8 => Shape::U8,
            SimpleShape::U32 => Shape::U32,
            SimpleShape::U64 => Shape::U64,
            SimpleShape::I64 => Shape::I64,
            SimpleShape::U128 => Shape::U128,
            SimpleShape::I128 => Shape::I128,
            SimpleShape::F64 => Shape::F64,
            SimpleShape::Char => Shape::Char,
            SimpleShape::String => Shape::String,
            SimpleShape::Bytes => Shape::Bytes,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ShapePlan {
    Simple(SimpleShape),
    Option(SimpleShape),
    Seq(SimpleShape),
    Map(SimpleShape, SimpleShape),
    Tuple(Vec<SimpleShape>),
    Array(SimpleShape, u16),
    /// One of the plan's named types (or a dangling name past them).
    Named(u8),
    OptionNamed(u8),
}

#[derive(Arbitrary, Debug)]
struct TypePlan {
    id: Name,
    fields: Vec<(Name, ShapePlan)>,
    is_enum: bool,
}

fn type_ids(types: &[TypePlan]) -> Vec<String> {
    types
        .iter()
        .take(4)
        .map(|ty| format!("m::{}", ty.id.text()))
        .collect()
}

impl ShapePlan {
    fn shape(&self, ids: &[String]) -> Shape {
        let named = |index: u8| {
            ids.get(usize::from(index))
                .cloned()
                .unwrap_or_else(|| "m::Missing".to_string())
        };
        match self {
            ShapePlan::Simple(simple) => simple.shape(),
            ShapePlan::Option(simple) => Shape::Option(Box::new(simple.shape())),
            ShapePlan::Seq(simple) => Shape::Seq(Box::new(simple.shape())),
            ShapePlan::Map(key, value) => Shape::Map {
                key: Box::new(key.shape()),
                value: Box::new(value.shape()),
            },
            ShapePlan::Tuple(items) => {
                Shape::Tuple(items.iter().take(6).map(SimpleShape::shape).collect())
            }
            ShapePlan::Array(item, len) => Shape::Array {
                item: Box::new(item.shape()),
                len: u32::from(*len),
            },
            ShapePlan::Named(index) => Shape::Named(named(*index)),
            ShapePlan::OptionNamed(index) => Shape::Option(Box::new(Shape::Named(named(*index)))),
        }
    }
}

fn registry(types: &[TypePlan]) -> Registry {
    let ids = type_ids(types);
    let mut registry = Registry::new();
    for (ty, id) in types.iter().zip(&ids) {
        let fields: Vec<(String, Shape)> = ty
            .fields
            .iter()
            .take(6)
            .map(|(name, shape)| (name.text(), shape.shape(&ids)))
            .collect();
        let body = if ty.is_enum {
            TypeBody::Enum(
                fields
                    .into_iter()
                    .map(|(name, shape)| Variant {
                        name,
                        doc: String::new(),
                        fields: Fields::Newtype(shape),
                    })
                    .collect(),
            )
        } else {
            TypeBody::Struct(Fields::Named(
                fields
                    .into_iter()
                    .map(|(name, shape)| Field {
                        name,
                        doc: String::new(),
                        shape,
                    })
                    .collect(),
            ))
        };
        registry.types.insert(
            id.clone(),
            TypeDef {
                name: ty.id.text(),
                doc: String::new(),
                body,
            },
        );
    }
    registry
}

/// What a schema export hands the host.
#[derive(Arbitrary, Debug)]
enum SchemaContent {
    Raw(Vec<u8>),
    Procedure {
        name: Name,
        params: Vec<(Name, ShapePlan)>,
        result: ShapePlan,
        read_only: bool,
        types: Vec<TypePlan>,
    },
    Table {
        name: Name,
        key: ShapePlan,
        value: ShapePlan,
        types: Vec<TypePlan>,
    },
}

impl SchemaContent {
    fn bytes(&self) -> Vec<u8> {
        match self {
            SchemaContent::Raw(bytes) => bytes.iter().take(4096).copied().collect(),
            SchemaContent::Procedure {
                name,
                params,
                result,
                read_only,
                types,
            } => {
                let ids = type_ids(types);
                encode_schema(&ProcedureSchema {
                    name: name.text(),
                    doc: String::new(),
                    params: params
                        .iter()
                        .take(8)
                        .map(|(name, shape)| Param {
                            name: name.text(),
                            shape: shape.shape(&ids),
                        })
                        .collect(),
                    result: result.shape(&ids),
                    read_only: *read_only,
                    types: registry(types),
                })
            }
            SchemaContent::Table {
                name,
                key,
                value,
                types,
            } => {
                let ids = type_ids(types);
                encode_schema(&TableSchema {
                    name: name.text(),
                    doc: String::new(),
                    key: key.shape(&ids),
                    value: value.shape(&ids),
                    types: registry(types),
                })
            }
        }
    }
}

/// What a schema export does when the host runs it at deploy.
#[derive(Arbitrary, Debug)]
enum SchemaBody {
    /// `set_result` its content, then return 0.
    Returns,
    /// `set_result` its content twice, then return 0.
    ReturnsTwice,
    Status(i32),
    Trap,
    /// Runs until its fuel is gone.
    Loop,
    /// Touches state, which a schema export cannot see.
    Get,
    /// Hands back a range of memory of its choosing.
    Range {
        ptr: u32,
        len: u32,
    },
}

#[derive(Arbitrary, Debug)]
struct SchemaPlan {
    /// `ordo_table_<name>` rather than `ordo_schema_<name>`.
    table: bool,
    name: Name,
    sig: Sig,
    body: SchemaBody,
    content: SchemaContent,
}

#[derive(Arbitrary, Debug)]
enum ParamType {
    Known(u8),
    Text(String),
}

const KNOWN_TYPES: &[&str] = &[
    "u64",
    "i64",
    "u32",
    "i32",
    "u8",
    "u16",
    "i8",
    "i16",
    "bool",
    "String",
    "&str",
    "Vec<u8>",
    "u128",
    "f64",
    "Option<u64>",
];

#[derive(Arbitrary, Debug)]
struct MetadataLine {
    name: Name,
    params: Vec<(Name, ParamType)>,
    read_only: bool,
    partition_params: Option<Vec<u8>>,
    migration: bool,
}

#[derive(Arbitrary, Debug)]
enum Metadata {
    None,
    Lines(Vec<MetadataLine>),
    Raw(Vec<u8>),
}

impl Metadata {
    fn bytes(&self) -> Option<Vec<u8>> {
        match self {
            Metadata::None => None,
            Metadata::Raw(bytes) => Some(bytes.iter().take(4096).copied().collect()),
            Metadata::Lines(lines) => {
                let mut text = String::new();
                for line in lines.iter().take(8) {
                    let params: Vec<serde_json::Value> = line
                        .params
                        .iter()
                        .take(8)
                        .map(|(name, ty)| {
                            let ty = match ty {
                                ParamType::Known(index) => {
                                    KNOWN_TYPES[usize::from(*index) % KNOWN_TYPES.len()].to_string()
                                }
                                ParamType::Text(text) => text.clone(),
                            };
                            serde_json::json!({ "name": name.text(), "type": ty })
                        })
                        .collect();
                    let mut object = serde_json::json!({
                        "name": line.name.text(),
                        "params": params,
                        "read_only": line.read_only,
                        "migration": line.migration,
                    });
                    if let Some(declared) = &line.partition_params {
                        object["partition_params"] =
                            serde_json::json!(declared.iter().take(8).collect::<Vec<_>>());
                    }
                    text.push_str(&object.to_string());
                    text.push('\n');
                }
                Some(text.into_bytes())
            }
        }
    }
}

/// An ABI-shaped module, each part right or wrong in a chosen way.
#[derive(Arbitrary, Debug)]
struct Plan {
    /// Imports `set_result`, `put` and `get` with their right types
    /// first (the bodies below call them); otherwise the bodies that
    /// would call them do nothing.
    host: bool,
    imports: Vec<ImportPlan>,
    memory: Option<MemoryPlan>,
    args_buffer: Option<Sig>,
    procedures: Vec<ProcPlan>,
    schemas: Vec<SchemaPlan>,
    /// Other exports: a function, a global or a table under any name.
    stray_exports: Vec<(String, u8)>,
    /// A start function, if 255 (rarely: it is refused at once).
    start: u8,
    metadata: Metadata,
    /// Where the metadata section goes: before the other sections, or
    /// after them.
    metadata_first: bool,
}

/// Offset of the first schema content in memory.
const CONTENT_BASE: u32 = 1024;

impl Plan {
    fn encode(&self) -> Vec<u8> {
        use Val::I32;
        let mut types = TypeSection::new();
        let mut type_count = 0u32;
        let mut new_type = |types: &mut TypeSection, (params, results): (Vec<Val>, Vec<Val>)| {
            types.ty().function(
                params.iter().map(|v| v.ty()),
                results.iter().map(|v| v.ty()),
            );
            type_count += 1;
            type_count - 1
        };

        // Imports, functions first: their indices come before our own.
        let mut imports = ImportSection::new();
        let mut imported_functions = 0u32;
        let mut set_result = None;
        let mut put = None;
        let mut get = None;
        if self.host {
            for (name, slot) in [
                ("set_result", &mut set_result),
                ("put", &mut put),
                ("get", &mut get),
            ] {
                let (_, params, results) = HOST_IMPORTS
                    .iter()
                    .find(|(host, ..)| *host == name)
                    .expect("a host import");
                let params = params.iter().map(|ty| val_of(*ty)).collect();
                let results = results.iter().map(|ty| val_of(*ty)).collect();
                let ty = new_type(&mut types, (params, results));
                imports.import("ordo", name, EntityType::Function(ty));
                *slot = Some(imported_functions);
                imported_functions += 1;
            }
        }
        for import in self.imports.iter().take(8) {
            let module = match &import.module {
                ImportModule::Ordo => "ordo".to_string(),
                ImportModule::Env => "env".to_string(),
                ImportModule::Text(text) => text.clone(),
            };
            let (name, expected) = match HOST_IMPORTS.get(usize::from(import.host)) {
                Some((name, params, results)) => (
                    name.to_string(),
                    (
                        params.iter().map(|ty| val_of(*ty)).collect::<Vec<_>>(),
                        results.iter().map(|ty| val_of(*ty)).collect::<Vec<_>>(),
                    ),
                ),
                None => (import.name.clone(), (Vec::new(), Vec::new())),
            };
            let entity = match &import.kind {
                ImportKind::Func(sig) => {
                    let ty = new_type(&mut types, sig.resolve((&expected.0, &expected.1)));
                    imported_functions += 1;
                    EntityType::Function(ty)
                }
                ImportKind::Memory => EntityType::Memory(MemoryType {
                    minimum: 1,
                    maximum: None,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                }),
                ImportKind::Global => EntityType::Global(GlobalType {
                    val_type: ValType::I32,
                    mutable: false,
                    shared: false,
                }),
            };
            imports.import(&module, &name, entity);
        }

        let mut functions = FunctionSection::new();
        let mut code = CodeSection::new();
        let mut exports = ExportSection::new();
        let mut data = DataSection::new();
        let mut next_function = imported_functions;
        let mut define =
            |functions: &mut FunctionSection, code: &mut CodeSection, ty: u32, body: &Function| {
                functions.function(ty);
                code.function(body);
                next_function += 1;
                next_function - 1
            };

        if let Some(sig) = &self.args_buffer {
            let (params, results) = sig.resolve((&[I32], &[I32]));
            let body = returning(&results, Some(CONTENT_BASE as i32));
            let ty = new_type(&mut types, (params, results));
            let index = define(&mut functions, &mut code, ty, &body);
            exports.export("ordo_args_buffer", ExportKind::Func, index);
        }

        for procedure in self.procedures.iter().take(6) {
            let (params, results) = procedure.sig.resolve((&[I32, I32], &[I32]));
            let mut body = Function::new([]);
            match &procedure.body {
                ProcBody::Status(status) => {
                    body.instruction(&Instruction::I32Const(*status));
                }
                ProcBody::Trap => {
                    body.instruction(&Instruction::Unreachable);
                }
                ProcBody::Put { key, len } => {
                    if let Some(put) = put {
                        for value in [0, i32::from(*key), 0, i32::from(*len)] {
                            body.instruction(&Instruction::I32Const(value));
                        }
                        body.instruction(&Instruction::Call(put));
                    }
                    body.instruction(&Instruction::I32Const(0));
                }
                ProcBody::SetResult { ptr, len, status } => {
                    if let Some(set_result) = set_result {
                        body.instruction(&Instruction::I32Const(*ptr as i32))
                            .instruction(&Instruction::I32Const(*len as i32))
                            .instruction(&Instruction::Call(set_result));
                    }
                    body.instruction(&Instruction::I32Const(*status));
                }
            }
            // Whatever the type, the body must leave its results: a
            // procedure of the wrong type gets plain zeroes instead.
            let body = if results.len() == 1 && matches!(results[0], Val::I32) {
                body.instruction(&Instruction::End);
                body
            } else {
                returning(&results, None)
            };
            let ty = new_type(&mut types, (params, results));
            let index = define(&mut functions, &mut code, ty, &body);
            let name = procedure.name.text();
            exports.export(&format!("ordo_proc_{name}"), ExportKind::Func, index);
            if let Some(sig) = &procedure.declaration {
                let (params, results) = sig.resolve((&[I32, I32], &[I32]));
                let body = returning(&results, Some(0));
                let ty = new_type(&mut types, (params, results));
                let index = define(&mut functions, &mut code, ty, &body);
                exports.export(&format!("ordo_keys_{name}"), ExportKind::Func, index);
            }
        }

        let mut offset = CONTENT_BASE;
        for schema in self.schemas.iter().take(4) {
            let content = schema.content.bytes();
            let ptr = offset;
            offset += content.len() as u32 + 16;
            data.active(
                0,
                &ConstExpr::i32_const(ptr as i32),
                content.iter().copied(),
            );
            let (params, results) = schema.sig.resolve((&[], &[I32]));
            let mut body = Function::new([]);
            let set = |body: &mut Function, ptr: i32, len: i32| {
                if let Some(set_result) = set_result {
                    body.instruction(&Instruction::I32Const(ptr))
                        .instruction(&Instruction::I32Const(len))
                        .instruction(&Instruction::Call(set_result));
                }
            };
            let status = match &schema.body {
                SchemaBody::Returns => {
                    set(&mut body, ptr as i32, content.len() as i32);
                    0
                }
                SchemaBody::ReturnsTwice => {
                    set(&mut body, ptr as i32, content.len() as i32);
                    set(&mut body, ptr as i32, content.len() as i32);
                    0
                }
                SchemaBody::Status(status) => *status,
                SchemaBody::Trap => {
                    body.instruction(&Instruction::Unreachable);
                    0
                }
                SchemaBody::Loop => {
                    body.instruction(&Instruction::Loop(wasm_encoder::BlockType::Empty))
                        .instruction(&Instruction::Br(0))
                        .instruction(&Instruction::End);
                    0
                }
                SchemaBody::Get => {
                    if let Some(get) = get {
                        for value in [0, 1, 0, 0] {
                            body.instruction(&Instruction::I32Const(value));
                        }
                        body.instruction(&Instruction::Call(get))
                            .instruction(&Instruction::Drop);
                    }
                    0
                }
                SchemaBody::Range { ptr, len } => {
                    set(&mut body, *ptr as i32, *len as i32);
                    0
                }
            };
            let body = if params.is_empty() && results.len() == 1 && matches!(results[0], Val::I32)
            {
                body.instruction(&Instruction::I32Const(status))
                    .instruction(&Instruction::End);
                body
            } else {
                returning(&results, None)
            };
            let ty = new_type(&mut types, (params, results));
            let index = define(&mut functions, &mut code, ty, &body);
            let prefix = if schema.table {
                "ordo_table_"
            } else {
                "ordo_schema_"
            };
            exports.export(
                &format!("{prefix}{}", schema.name.text()),
                ExportKind::Func,
                index,
            );
        }

        let mut globals = GlobalSection::new();
        let mut defined_globals = 0;
        let mut start = None;
        if self.start == 255 || !self.stray_exports.is_empty() {
            let body = returning(&[], None);
            let ty = new_type(&mut types, (Vec::new(), Vec::new()));
            let index = define(&mut functions, &mut code, ty, &body);
            if self.start == 255 {
                start = Some(index);
            }
            for (name, kind) in self.stray_exports.iter().take(4) {
                if kind % 2 == 0 {
                    exports.export(name, ExportKind::Func, index);
                } else {
                    globals.global(
                        GlobalType {
                            val_type: ValType::I32,
                            mutable: false,
                            shared: false,
                        },
                        &ConstExpr::i32_const(0),
                    );
                    exports.export(name, ExportKind::Global, defined_globals);
                    defined_globals += 1;
                }
            }
        }

        let mut memories = MemorySection::new();
        if let Some(memory) = &self.memory {
            memories.memory(MemoryType {
                minimum: u64::from(memory.minimum % 2048),
                maximum: memory.maximum.map(u64::from),
                memory64: memory.memory64,
                shared: memory.shared,
                page_size_log2: None,
            });
            let name = memory.export_as.as_deref().unwrap_or("memory");
            exports.export(name, ExportKind::Memory, 0);
        }

        let metadata = self.metadata.bytes().map(|bytes| CustomSection {
            name: "ordo.procedures".into(),
            data: bytes.into(),
        });
        let mut module = Module::new();
        if self.metadata_first
            && let Some(metadata) = &metadata
        {
            module.section(metadata);
        }
        module.section(&types).section(&imports).section(&functions);
        if self.memory.is_some() {
            module.section(&memories);
        }
        module.section(&globals).section(&exports);
        if let Some(function_index) = start {
            module.section(&StartSection { function_index });
        }
        module.section(&code);
        if self.memory.is_some() {
            module.section(&data);
        }
        if !self.metadata_first
            && let Some(metadata) = &metadata
        {
            module.section(metadata);
        }
        module.finish()
    }
}

fn val_of(ty: ValType) -> Val {
    match ty {
        ValType::I64 => Val::I64,
        ValType::F32 => Val::F32,
        ValType::F64 => Val::F64,
        _ => Val::I32,
    }
}

/// A body that returns zeroes for `results` (the first an `i32` of
/// `first`, if given and it is one).
fn returning(results: &[Val], first: Option<i32>) -> Function {
    let mut body = Function::new([]);
    for (index, result) in results.iter().enumerate() {
        match (index, result, first) {
            (0, Val::I32, Some(value)) => body.instruction(&Instruction::I32Const(value)),
            _ => body.instruction(&result.zero()),
        };
    }
    body.instruction(&Instruction::End);
    body
}

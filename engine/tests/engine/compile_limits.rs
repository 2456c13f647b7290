//! Compile limits and the compiled-code cache, through the engine's public
//! API: every structural limit refuses one over and accepts the limit
//! itself, a bomb is refused before cranelift runs, the compiled code size
//! is checked, a cache hit skips the compile, and any damaged cache entry
//! is discarded and compiled again with the same result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ordo_engine::module::{decode_artifact, encode_artifact};
use ordo_engine::{
    ArtifactKey, ArtifactStore, CompileStats, CompileWatchdog, DeployError, EngineConfig,
    ModuleCompiler, measure,
};

/// An ABI-valid module (memory, `ordo_args_buffer`, one procedure) with
/// `extra` appended inside `(module ...)`.
fn module(extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (memory (export "memory") 1)
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
  (func (export "ordo_proc_ping") (param i32 i32) (result i32) i32.const 0)
  {extra})"#
    ))
    .expect("the test module parses")
}

/// `count` empty functions.
fn functions(count: usize) -> String {
    "(func)".repeat(count)
}

/// A function whose blocks nest `depth` deep.
fn nested(depth: usize) -> String {
    format!("(func {}{})", "block ".repeat(depth), "end ".repeat(depth))
}

/// A function whose body (locals and code) is exactly `bytes` long: one
/// byte for the empty locals vector, `nop`s, and the final `end`.
fn body_of(bytes: usize) -> String {
    format!("(func {})", "nop ".repeat(bytes - 2))
}

fn compiler(config: &EngineConfig) -> ModuleCompiler {
    ModuleCompiler::new(
        ordo_engine::sandbox::wasmtime_engine(config),
        config.clone(),
    )
}

fn small_limits() -> EngineConfig {
    EngineConfig {
        functions_count_max: 50,
        function_body_bytes_max: 1_000,
        nesting_depth_max: 20,
        ..EngineConfig::default()
    }
}

fn refusal(compiler: &ModuleCompiler, wasm: &[u8]) -> String {
    match compiler.compile("m", wasm) {
        Ok(_) => panic!("the module was accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn each_structural_limit_accepts_the_limit_and_refuses_one_more() {
    let config = small_limits();
    let compiler = compiler(&config);
    // Two functions are the ABI's; the rest fill up to the limit.
    compiler.compile("m", &module(&functions(48))).unwrap();
    let message = refusal(&compiler, &module(&functions(49)));
    assert!(
        message.contains("51 functions") && message.contains("functions_count_max limit of 50"),
        "{message}"
    );

    compiler.compile("m", &module(&body_of(1_000))).unwrap();
    let message = refusal(&compiler, &module(&body_of(1_001)));
    assert!(
        message.contains("1001-byte body")
            && message.contains("function_body_bytes_max limit of 1000")
            && message.contains("function 2"),
        "{message}"
    );

    compiler.compile("m", &module(&nested(20))).unwrap();
    let message = refusal(&compiler, &module(&nested(21)));
    assert!(
        message.contains("21 deep") && message.contains("nesting_depth_max limit of 20"),
        "{message}"
    );
    // Loops and ifs count like blocks.
    let loops = format!("(func {}{})", "loop ".repeat(21), "end ".repeat(21));
    assert!(refusal(&compiler, &module(&loops)).contains("nesting_depth_max"));
    let ifs = format!(
        "(func {}{})",
        "i32.const 1 if ".repeat(21),
        "end ".repeat(21)
    );
    assert!(refusal(&compiler, &module(&ifs)).contains("nesting_depth_max"));
    for message in [
        refusal(&compiler, &module(&functions(49))),
        refusal(&compiler, &module(&nested(21))),
    ] {
        assert!(!message.contains('\n'), "one line: {message}");
    }
}

#[test]
fn bombs_are_refused_before_anything_is_compiled() {
    let config = EngineConfig::default();
    let compiler = compiler(&config);
    let bombs = [
        ("250,000 empty functions", module(&functions(250_000))),
        ("80,000 nested blocks", module(&nested(80_000))),
        ("a 1 MiB body", module(&body_of(1 << 20))),
    ];
    for (what, wasm) in &bombs {
        assert!(wasm.len() <= config.module_bytes_max, "{what}");
        let err = compiler.compile("bomb", wasm).err().unwrap();
        assert!(
            matches!(
                err,
                DeployError::TooManyFunctions { .. }
                    | DeployError::NestingTooDeep { .. }
                    | DeployError::FunctionBodyTooLarge { .. }
            ),
            "{what}: {err}"
        );
    }
    assert_eq!(compiler.stats().compiled, 0, "cranelift never ran");
}

#[test]
fn measure_reports_what_the_limits_apply_to() {
    let shape = measure(&module(&format!("{}{}", nested(7), body_of(300)))).unwrap();
    assert_eq!(shape.functions, 4);
    assert_eq!(shape.deepest_nesting, (2, 7));
    assert_eq!(shape.largest_body, (3, 300));
}

#[test]
fn compiled_code_over_its_limit_is_refused_with_its_size() {
    let config = EngineConfig {
        compiled_code_bytes_max: 64,
        ..EngineConfig::default()
    };
    let message = refusal(&compiler(&config), &module(&functions(40)));
    assert!(
        message.contains("bytes of machine code")
            && message.contains("compiled_code_bytes_max limit of 64"),
        "{message}"
    );
}

/// An artifact store in memory, whose contents a test can damage.
#[derive(Default)]
struct MemoryStore {
    files: Mutex<HashMap<ArtifactKey, Vec<u8>>>,
    discarded: Mutex<Vec<String>>,
}

impl ArtifactStore for MemoryStore {
    fn load(&self, key: &ArtifactKey) -> Option<Vec<u8>> {
        self.files.lock().unwrap().get(key).cloned()
    }
    fn store(&self, key: &ArtifactKey, bytes: &[u8]) {
        self.files.lock().unwrap().insert(*key, bytes.to_vec());
    }
    fn discard(&self, key: &ArtifactKey, reason: &str) {
        self.files.lock().unwrap().remove(key);
        self.discarded.lock().unwrap().push(reason.to_string());
    }
}

impl MemoryStore {
    fn only_key(&self) -> ArtifactKey {
        let files = self.files.lock().unwrap();
        assert_eq!(files.len(), 1);
        *files.keys().next().unwrap()
    }

    fn damage(&self, change: impl FnOnce(&mut Vec<u8>)) {
        let key = self.only_key();
        change(self.files.lock().unwrap().get_mut(&key).unwrap());
    }
}

fn cached_compiler(store: &Arc<MemoryStore>) -> ModuleCompiler {
    compiler(&EngineConfig::default()).with_artifact_store(store.clone())
}

fn stats(compiled: u64, loaded_from_cache: u64, cache_discarded: u64) -> CompileStats {
    CompileStats {
        compiled,
        loaded_from_cache,
        cache_discarded,
    }
}

#[test]
fn a_cached_artifact_replaces_the_compile_and_damaged_ones_are_recompiled() {
    let store = Arc::new(MemoryStore::default());
    let wasm = module(&functions(20));
    let first = cached_compiler(&store).compile("m", &wasm).unwrap();
    let key = store.only_key();
    assert_eq!(key.wasm_sha256, first.sha256);

    // A fresh compiler (a restarted node) loads instead of compiling.
    let restarted = cached_compiler(&store);
    let loaded = restarted.compile("m", &wasm).unwrap();
    assert_eq!(restarted.stats(), stats(0, 1, 0));
    assert_eq!(loaded.procedures, first.procedures);
    assert_eq!(loaded.module.text(), first.module.text());

    type Damage = Box<dyn FnOnce(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        (
            "a flipped byte",
            Box::new(|file| *file.last_mut().unwrap() ^= 1),
        ),
        ("truncation", Box::new(|file| file.truncate(file.len() / 2))),
        ("an empty file", Box::new(|file| file.clear())),
        ("another module's header", Box::new(|file| file[8] ^= 0xff)),
    ];
    for (what, damage) in damages {
        store.damage(damage);
        let recompiling = cached_compiler(&store);
        let again = recompiling.compile("m", &wasm).unwrap();
        assert_eq!(recompiling.stats(), stats(1, 0, 1), "{what}");
        assert_eq!(again.module.text(), first.module.text(), "{what}");
        // And the store holds a good copy again.
        let file = store.load(&key).unwrap();
        assert!(decode_artifact(&key, &file).is_ok(), "{what}");
    }
    assert_eq!(store.discarded.lock().unwrap().len(), 4);
}

#[test]
fn an_artifact_wasmtime_refuses_is_discarded_even_with_a_good_checksum() {
    let store = Arc::new(MemoryStore::default());
    let wasm = module(&functions(3));
    cached_compiler(&store).compile("m", &wasm).unwrap();
    let key = store.only_key();
    store.store(&key, &encode_artifact(&key, b"not machine code at all"));
    let recompiling = cached_compiler(&store);
    recompiling.compile("m", &wasm).unwrap();
    assert_eq!(recompiling.stats(), stats(1, 0, 1));
    let reasons = store.discarded.lock().unwrap();
    assert!(reasons[0].contains("wasmtime refused"), "{reasons:?}");
}

#[test]
fn the_watchdog_reports_an_overrun_without_changing_the_outcome() {
    let overruns = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = overruns.clone();
    let compiler = compiler(&EngineConfig::default()).with_watchdog(CompileWatchdog {
        timeout: Duration::from_millis(1),
        on_overrun: Arc::new(move |reason: &str| seen.lock().unwrap().push(reason.to_string())),
    });
    // Thousands of functions take far longer than a millisecond.
    let compiled = compiler.compile("slow", &module(&functions(5_000)));
    assert!(compiled.is_ok());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while overruns.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watchdog never fired"
        );
        std::thread::yield_now();
    }
    let reasons = overruns.lock().unwrap();
    assert!(reasons[0].contains("`slow`"), "{reasons:?}");
}

//! Limits and settings of the engine. Every limit that can change an
//! outcome (fuel, memory, sizes) must be the same on every replica, so a
//! cluster's nodes must be started with the same `EngineConfig`.

/// Fuel (roughly, wasm instructions) one transaction may burn.
pub const TX_FUEL_MAX_DEFAULT: u64 = 100_000_000;
/// Linear memory one module instance may grow to.
pub const INSTANCE_MEMORY_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// wasm stack one call may use. Stack-overflow depth depends on this and on
/// the pinned wasmtime version.
pub const WASM_STACK_BYTES_MAX_DEFAULT: usize = 512 << 10;
pub const KEY_BYTES_MAX_DEFAULT: usize = 4 << 10;
pub const VALUE_BYTES_MAX_DEFAULT: usize = 1 << 20;
pub const TX_WRITES_MAX_DEFAULT: usize = 100_000;
pub const TX_WRITE_BYTES_MAX_DEFAULT: usize = 16 << 20;
pub const ARGS_BYTES_MAX_DEFAULT: usize = 1 << 20;
pub const RESULT_BYTES_MAX_DEFAULT: usize = 1 << 20;
pub const MODULE_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Clients whose results are remembered for exactly-once.
pub const SESSIONS_MAX_DEFAULT: usize = 100_000;
/// Results remembered per client (its requests in flight must fit).
pub const SESSION_RESULTS_MAX_DEFAULT: usize = 1 << 17;

/// Fuel charged for any host call, plus per byte moved across the
/// boundary. Makes a loop of host calls as bounded as a loop of wasm.
pub const HOST_CALL_FUEL: u64 = 50;
pub const HOST_BYTE_FUEL_DIVISOR: u64 = 16;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    pub tx_fuel_max: u64,
    pub instance_memory_bytes_max: usize,
    pub wasm_stack_bytes_max: usize,
    pub key_bytes_max: usize,
    pub value_bytes_max: usize,
    pub tx_writes_max: usize,
    pub tx_write_bytes_max: usize,
    pub args_bytes_max: usize,
    pub result_bytes_max: usize,
    pub module_bytes_max: usize,
    pub sessions_max: usize,
    pub session_results_max: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            tx_fuel_max: TX_FUEL_MAX_DEFAULT,
            instance_memory_bytes_max: INSTANCE_MEMORY_BYTES_MAX_DEFAULT,
            wasm_stack_bytes_max: WASM_STACK_BYTES_MAX_DEFAULT,
            key_bytes_max: KEY_BYTES_MAX_DEFAULT,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            tx_writes_max: TX_WRITES_MAX_DEFAULT,
            tx_write_bytes_max: TX_WRITE_BYTES_MAX_DEFAULT,
            args_bytes_max: ARGS_BYTES_MAX_DEFAULT,
            result_bytes_max: RESULT_BYTES_MAX_DEFAULT,
            module_bytes_max: MODULE_BYTES_MAX_DEFAULT,
            sessions_max: SESSIONS_MAX_DEFAULT,
            session_results_max: SESSION_RESULTS_MAX_DEFAULT,
        }
    }
}

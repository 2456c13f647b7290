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
/// Functions a module may define (imports not counted). Compile time and
/// memory grow with the number of functions even when they are empty: a
/// 1 MB module of 250,000 empty functions took 8.8 s and 1.2 GiB.
pub const FUNCTIONS_COUNT_MAX_DEFAULT: usize = 10_000;
/// Bytes of one function body, locals included.
pub const FUNCTION_BODY_BYTES_MAX_DEFAULT: usize = 256 << 10;
/// Blocks, loops and ifs open at once anywhere in a function body (the
/// body itself not counted). Deep nesting is what makes the compiler's
/// per-function memory explode: 1M nested blocks took 800 MiB.
pub const NESTING_DEPTH_MAX_DEFAULT: usize = 1_024;
/// Machine code (the text section) a module may compile to.
pub const COMPILED_CODE_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// Unregistered clients (no `Register` entry: logs from before sessions,
/// raw protocol clients) whose results are remembered for exactly-once.
/// Past it the least recently active eighth is dropped; it never touches
/// registered sessions.
pub const SESSIONS_MAX_DEFAULT: usize = 100_000;
/// Results remembered per client (its requests in flight must fit). A
/// request id this far past the oldest remembered one forgets the oldest.
pub const SESSION_RESULTS_MAX_DEFAULT: usize = 1 << 17;
/// Registered sessions open at once. A registration past it expires the
/// least recently active eighth (by the sequence number of their last
/// entry).
pub const REGISTERED_SESSIONS_MAX_DEFAULT: usize = 100_000;
/// Largest outcome (result, abort message or deploy summary) kept for a
/// retry; a larger one is kept as a `result_not_retained` marker.
pub const STORED_RESULT_BYTES_MAX_DEFAULT: usize = 64 << 10;
/// Budget for every stored outcome together, each charged its payload
/// plus `sessions::STORED_RESULT_OVERHEAD_BYTES`. See sessions.rs for the
/// policy when it is reached.
pub const STORED_RESULTS_TOTAL_BYTES_MAX_DEFAULT: u64 = 64 << 20;
/// Sequence numbers per instance epoch (see sandbox.rs): wasm instances are
/// dropped at the start of every batch that holds a sequence number
/// `k * instance_epoch + 1`, and snapshots are taken just before such a
/// batch.
pub const INSTANCE_EPOCH_DEFAULT: u64 = 1 << 16;

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
    /// Sequence numbers per instance epoch; see [`INSTANCE_EPOCH_DEFAULT`].
    /// Missing from configs recorded before it existed, which ran with the
    /// default.
    #[serde(default = "default_instance_epoch")]
    pub instance_epoch: u64,
    /// See [`REGISTERED_SESSIONS_MAX_DEFAULT`]. Like the two below, missing
    /// from configs recorded before sessions were registered.
    #[serde(default = "default_registered_sessions_max")]
    pub registered_sessions_max: usize,
    /// See [`STORED_RESULT_BYTES_MAX_DEFAULT`].
    #[serde(default = "default_stored_result_bytes_max")]
    pub stored_result_bytes_max: usize,
    /// See [`STORED_RESULTS_TOTAL_BYTES_MAX_DEFAULT`].
    #[serde(default = "default_stored_results_total_bytes_max")]
    pub stored_results_total_bytes_max: u64,
    /// Compile limits (module.rs). Like the other limits they decide
    /// outcomes (whether a deploy is refused), so they must be equal on
    /// every replica. Configs recorded before they existed load with the
    /// defaults.
    #[serde(default = "default_functions_count_max")]
    pub functions_count_max: usize,
    #[serde(default = "default_function_body_bytes_max")]
    pub function_body_bytes_max: usize,
    #[serde(default = "default_nesting_depth_max")]
    pub nesting_depth_max: usize,
    #[serde(default = "default_compiled_code_bytes_max")]
    pub compiled_code_bytes_max: usize,
}

fn default_functions_count_max() -> usize {
    FUNCTIONS_COUNT_MAX_DEFAULT
}

fn default_function_body_bytes_max() -> usize {
    FUNCTION_BODY_BYTES_MAX_DEFAULT
}

fn default_nesting_depth_max() -> usize {
    NESTING_DEPTH_MAX_DEFAULT
}

fn default_compiled_code_bytes_max() -> usize {
    COMPILED_CODE_BYTES_MAX_DEFAULT
}

fn default_instance_epoch() -> u64 {
    INSTANCE_EPOCH_DEFAULT
}

fn default_registered_sessions_max() -> usize {
    REGISTERED_SESSIONS_MAX_DEFAULT
}

fn default_stored_result_bytes_max() -> usize {
    STORED_RESULT_BYTES_MAX_DEFAULT
}

fn default_stored_results_total_bytes_max() -> u64 {
    STORED_RESULTS_TOTAL_BYTES_MAX_DEFAULT
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
            instance_epoch: INSTANCE_EPOCH_DEFAULT,
            registered_sessions_max: REGISTERED_SESSIONS_MAX_DEFAULT,
            stored_result_bytes_max: STORED_RESULT_BYTES_MAX_DEFAULT,
            stored_results_total_bytes_max: STORED_RESULTS_TOTAL_BYTES_MAX_DEFAULT,
            functions_count_max: FUNCTIONS_COUNT_MAX_DEFAULT,
            function_body_bytes_max: FUNCTION_BODY_BYTES_MAX_DEFAULT,
            nesting_depth_max: NESTING_DEPTH_MAX_DEFAULT,
            compiled_code_bytes_max: COMPILED_CODE_BYTES_MAX_DEFAULT,
        }
    }
}

impl EngineConfig {
    /// Checks the settings the engine cannot run with. An executor panics
    /// on an invalid config, so check it first where a config comes from
    /// outside (a flag, a file).
    pub fn validate(&self) -> Result<(), String> {
        if self.instance_epoch == 0 {
            return Err("instance_epoch must be at least 1".to_string());
        }
        if self.sessions_max == 0 {
            return Err("sessions_max must be at least 1".to_string());
        }
        if self.session_results_max == 0 {
            return Err("session_results_max must be at least 1".to_string());
        }
        if self.registered_sessions_max == 0 {
            return Err("registered_sessions_max must be at least 1".to_string());
        }
        // A budget of fewer than a few whole outcomes would expire every
        // session that stores one at the end of every batch.
        let whole =
            self.stored_result_bytes_max as u64 + crate::sessions::STORED_RESULT_OVERHEAD_BYTES;
        if self.stored_results_total_bytes_max < 8 * whole {
            return Err(format!(
                "stored_results_total_bytes_max ({}) must be at least 8 times stored_result_bytes_max plus {} ({})",
                self.stored_results_total_bytes_max,
                crate::sessions::STORED_RESULT_OVERHEAD_BYTES,
                8 * whole
            ));
        }
        Ok(())
    }

    /// Whether the batch `first_seq..=last_seq` opens an instance epoch
    /// under this config: see [`opens_instance_epoch`].
    pub fn opens_instance_epoch(&self, first_seq: u64, last_seq: u64) -> bool {
        opens_instance_epoch(self.instance_epoch, first_seq, last_seq)
    }
}

/// Whether the batch `first_seq..=last_seq` holds a sequence number
/// `k * epoch + 1`, that is, whether executing it starts with fresh wasm
/// instances. A snapshot restores correctly only if the next batch
/// executed after it is such a batch, so take snapshots just before one.
///
/// # Panics
///
/// If `epoch` is 0 or the range is empty or starts at 0.
pub fn opens_instance_epoch(epoch: u64, first_seq: u64, last_seq: u64) -> bool {
    assert!(epoch > 0, "the instance epoch must be at least 1");
    assert!(
        1 <= first_seq && first_seq <= last_seq,
        "a batch holds sequence numbers 1 <= first <= last, not {first_seq}..={last_seq}"
    );
    // The last epoch start at or before `last_seq`.
    let start = (last_seq - 1) / epoch * epoch + 1;
    start >= first_seq
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_open_at_one_past_each_multiple() {
        for e in [1, 2, 8, INSTANCE_EPOCH_DEFAULT] {
            assert!(opens_instance_epoch(e, 1, 1));
            assert!(opens_instance_epoch(e, 1, 5));
            assert!(opens_instance_epoch(e, 2, e + 1));
            assert!(opens_instance_epoch(e, e + 1, e + 1));
            assert!(opens_instance_epoch(e, e, 3 * e));
            if e > 1 {
                assert!(!opens_instance_epoch(e, 2, e));
                assert!(!opens_instance_epoch(e, e + 2, 2 * e));
            }
        }
        // With an epoch of 1 every batch opens one.
        assert!(opens_instance_epoch(1, 7, 7));
    }

    #[test]
    fn recorded_configs_without_the_newer_fields_still_load() {
        let mut json = serde_json::to_value(EngineConfig::default()).unwrap();
        for field in [
            "instance_epoch",
            "registered_sessions_max",
            "stored_result_bytes_max",
            "stored_results_total_bytes_max",
            "functions_count_max",
            "function_body_bytes_max",
            "nesting_depth_max",
            "compiled_code_bytes_max",
        ] {
            json.as_object_mut().unwrap().remove(field);
        }
        let loaded: EngineConfig = serde_json::from_value(json).unwrap();
        assert_eq!(loaded, EngineConfig::default());
    }

    #[test]
    fn validation_refuses_a_zero_epoch() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let config = EngineConfig {
            instance_epoch: 0,
            ..EngineConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("instance_epoch"));
        let config = EngineConfig {
            stored_results_total_bytes_max: 8 * (1 << 16) + 1,
            ..EngineConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("stored_results_total_bytes_max")
        );
    }
}

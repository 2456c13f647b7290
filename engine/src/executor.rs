//! The executor: a deterministic state machine from log batches to state
//! and outcomes. It does no I/O; its only inputs are batches, in order.
//!
//! For each entry it (1) consults the exactly-once table, (2) runs the
//! deploy or the procedure in the sandbox, (3) commits or drops the write
//! set, and (4) folds the outcome into the batch digest. After the batch
//! it chains `(previous chain, batch range, content hash, outcome digest)`
//! into the chain hash that replicas compare to detect divergence.

use std::collections::BTreeMap;
use std::sync::Arc;

use ordo_sequencer::entry::{Batch, Deploy, Entry, Invocation};
use xxhash_rust::xxh3::Xxh3;

use crate::LookupMap;
use crate::config::EngineConfig;
use crate::module::{DeployError, ModuleCompiler, ProcedureInfo};
use crate::outcome::{AbortKind, ModuleSummary, Outcome, TxOutcome};
use crate::sandbox::{Call, CallResult, LoadedModule, Sandbox, wasmtime_engine};
use crate::sessions::{Check, Sessions};
use crate::state::StateStore;

/// Where an executor stands: its log position and hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineStatus {
    /// The sequence number of the last executed entry (0 before any).
    pub position: u64,
    /// Order-independent hash of the state's contents.
    pub state_hash: u128,
    /// Hash chained over every batch executed, including outcomes.
    pub chain_hash: u128,
    /// Number of keys stored.
    pub keys: u64,
}

impl EngineStatus {
    pub fn state_hash_hex(&self) -> String {
        format!("{:032x}", self.state_hash)
    }

    pub fn chain_hash_hex(&self) -> String {
        format!("{:032x}", self.chain_hash)
    }
}

pub struct Executor {
    sandbox: Sandbox,
    compiler: Arc<ModuleCompiler>,
    /// Deployed modules by name.
    modules: BTreeMap<String, Arc<LoadedModule>>,
    /// Procedure name to the module that provides it. Only looked up.
    routes: LookupMap<String, Arc<LoadedModule>>,
    sessions: Sessions,
    position: u64,
    chain_hash: u128,
    config: EngineConfig,
}

impl Executor {
    /// An executor at position 0 with empty state, sharing `compiler`'s
    /// wasmtime engine and compiled-module cache.
    pub fn new(compiler: Arc<ModuleCompiler>, config: EngineConfig) -> Executor {
        let sandbox = Sandbox::new(compiler.engine().clone(), config.clone(), StateStore::new());
        Executor {
            sandbox,
            compiler,
            modules: BTreeMap::new(),
            routes: LookupMap::default(),
            sessions: Sessions::new(config.sessions_max, config.session_results_max),
            position: 0,
            chain_hash: 0,
            config,
        }
    }

    /// A compiler configured for `config`, to share between the submit
    /// path and the executor.
    pub fn compiler(config: &EngineConfig) -> Arc<ModuleCompiler> {
        Arc::new(ModuleCompiler::new(wasmtime_engine(config), config.clone()))
    }

    pub fn status(&self) -> EngineStatus {
        let state = self.sandbox.state();
        EngineStatus {
            position: self.position,
            state_hash: state.content_hash(),
            chain_hash: self.chain_hash,
            keys: state.len() as u64,
        }
    }

    pub fn state(&self) -> &StateStore {
        self.sandbox.state()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Every procedure, in name order.
    pub fn procedures(&self) -> Vec<ProcedureInfo> {
        let mut all: Vec<ProcedureInfo> = self
            .modules
            .values()
            .flat_map(|module| module.compiled.procedures.iter().cloned())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn modules(&self) -> Vec<ModuleSummary> {
        self.modules
            .values()
            .map(|module| summary(&module.compiled))
            .collect()
    }

    /// Executes one batch. Batches must arrive in log order, without gaps:
    /// anything else would break the total order, so it panics.
    pub fn execute(&mut self, batch: &Batch) -> Vec<TxOutcome> {
        let mut outcomes = Vec::with_capacity(batch.entries.len());
        self.execute_each(batch, |tx| outcomes.push(tx));
        outcomes
    }

    /// Like [`Executor::execute`], but hands each transaction's outcome
    /// to `each` as soon as it is known, in log order, so that a caller
    /// can answer the front of a large batch while the rest runs. The
    /// executor's position, state hash and chain hash move to the end of
    /// the batch only when this returns.
    pub fn execute_each(&mut self, batch: &Batch, mut each: impl FnMut(TxOutcome)) {
        assert_eq!(
            batch.first_seq,
            self.position + 1,
            "batches must be executed in order, without gaps"
        );
        assert!(
            !batch.entries.is_empty(),
            "the sequencer never logs empty batches"
        );
        // Instances never live across a batch boundary (see sandbox.rs).
        self.sandbox.reset();
        let mut digest = Xxh3::new();
        for (offset, entry) in batch.entries.iter().enumerate() {
            let seq = batch.first_seq + offset as u64;
            let (client, request_id) = entry.client();
            let acked_below = match entry {
                Entry::Invoke(invocation) => invocation.acked_below,
                Entry::Deploy(_) => 0,
            };
            let tx = match self.sessions.check(client, request_id, acked_below) {
                Check::Duplicate { seq, outcome } => TxOutcome {
                    seq,
                    outcome,
                    duplicate: true,
                },
                Check::Forgotten => TxOutcome {
                    seq,
                    outcome: Outcome::aborted(
                        AbortKind::RequestForgotten,
                        format!(
                            "request {request_id} of client {client:032x} cannot be answered exactly once: its result was acknowledged and dropped, or the client's session expired; a retry is never run twice. Start a new session for new requests"
                        ),
                    ),
                    duplicate: false,
                },
                Check::New => {
                    let outcome = match entry {
                        Entry::Invoke(invocation) => {
                            self.invoke(invocation, seq, batch.timestamp_ms)
                        }
                        Entry::Deploy(deploy) => self.deploy(deploy),
                    };
                    self.sessions.record(client, request_id, seq, &outcome);
                    TxOutcome {
                        seq,
                        outcome,
                        duplicate: false,
                    }
                }
            };
            hash_outcome(&mut digest, seq, &tx);
            each(tx);
        }
        self.position = batch.last_seq();
        let mut chain = Xxh3::new();
        chain.update(&self.chain_hash.to_le_bytes());
        chain.update(&batch.first_seq.to_le_bytes());
        chain.update(&self.position.to_le_bytes());
        chain.update(&batch.timestamp_ms.to_le_bytes());
        chain.update(&self.sandbox.state().content_hash().to_le_bytes());
        chain.update(&digest.digest128().to_le_bytes());
        self.chain_hash = chain.digest128();
    }

    fn invoke(&mut self, invocation: &Invocation, seq: u64, now_ms: u64) -> Outcome {
        if invocation.args.len() > self.config.args_bytes_max {
            return Outcome::aborted(
                AbortKind::LimitExceeded,
                format!(
                    "arguments of {} bytes are over the {}-byte limit",
                    invocation.args.len(),
                    self.config.args_bytes_max
                ),
            );
        }
        let Some(module) = self.routes.get(&invocation.procedure).cloned() else {
            return Outcome::aborted(
                AbortKind::UnknownProcedure,
                format!(
                    "no deployed module provides procedure `{}`",
                    invocation.procedure
                ),
            );
        };
        let call = Call {
            procedure: &invocation.procedure,
            args: &invocation.args,
            encoding: invocation.encoding.abi_code(),
            seq,
            now_ms,
            fuel: self.config.tx_fuel_max,
        };
        match self.sandbox.call(&module, &call) {
            CallResult::Ok => {
                self.sandbox.commit_writes();
                Outcome::Committed {
                    result: self.sandbox.take_result(),
                }
            }
            CallResult::Aborted(abort) => Outcome::Aborted(abort),
        }
    }

    fn deploy(&mut self, deploy: &Deploy) -> Outcome {
        match self.try_deploy(deploy) {
            Ok(summary) => Outcome::Deployed(summary),
            Err(err) => Outcome::aborted(AbortKind::DeployRejected, err.to_string()),
        }
    }

    fn try_deploy(&mut self, deploy: &Deploy) -> Result<ModuleSummary, DeployError> {
        let compiled = self.compiler.compile(&deploy.name, &deploy.wasm)?;
        for procedure in &compiled.procedures {
            if let Some(owner) = self.routes.get(&procedure.name)
                && owner.compiled.name != compiled.name
            {
                return Err(DeployError::ProcedureClash {
                    procedure: procedure.name.clone(),
                    owner: owner.compiled.name.clone(),
                });
            }
        }
        let loaded = Arc::new(self.sandbox.load(compiled).map_err(DeployError::Invalid)?);
        if let Some(previous) = self.modules.remove(&deploy.name) {
            for procedure in &previous.compiled.procedures {
                self.routes.remove(&procedure.name);
            }
        }
        for procedure in &loaded.compiled.procedures {
            self.routes.insert(procedure.name.clone(), loaded.clone());
        }
        let summary = summary(&loaded.compiled);
        self.modules.insert(deploy.name.clone(), loaded);
        // The upgraded module's old instance must not serve another call.
        self.sandbox.reset();
        Ok(summary)
    }
}

fn summary(compiled: &crate::module::CompiledModule) -> ModuleSummary {
    ModuleSummary {
        name: compiled.name.clone(),
        sha256: compiled.sha256_hex(),
        procedures: compiled
            .procedures
            .iter()
            .map(|procedure| procedure.name.clone())
            .collect(),
    }
}

/// Folds an outcome into the batch digest with an unambiguous framing.
fn hash_outcome(digest: &mut Xxh3, seq: u64, tx: &TxOutcome) {
    digest.update(&seq.to_le_bytes());
    digest.update(&tx.seq.to_le_bytes());
    digest.update(&[tx.duplicate as u8]);
    match &tx.outcome {
        Outcome::Committed { result } => {
            digest.update(&[0]);
            digest.update(&(result.len() as u64).to_le_bytes());
            digest.update(result);
        }
        Outcome::Deployed(summary) => {
            digest.update(&[1]);
            digest.update(summary.sha256.as_bytes());
            digest.update(summary.name.as_bytes());
        }
        Outcome::Aborted(abort) => {
            digest.update(&[2]);
            digest.update(abort.kind.as_str().as_bytes());
            digest.update(&(abort.message.len() as u64).to_le_bytes());
            digest.update(abort.message.as_bytes());
        }
    }
}

//! The wasm sandbox: wasmtime configured for determinism, ordo's host
//! functions, and the lifetime of module instances.
//!
//! Instance lifetime is where speed and determinism meet. A fresh instance
//! per transaction costs ~10 µs; a warm one ~1 µs. But a warm instance's
//! behaviour (fuel used, allocator layout, whether a memory grow fails)
//! depends on what ran in it before. So instances are reused only between
//! points the log defines: every instance is dropped at the start of each
//! batch that opens an *instance epoch* (one that holds a sequence number
//! `k * E + 1`, where `E` is `EngineConfig::instance_epoch`), after any
//! trap, and after any deploy. Every replica executes the same batches,
//! so every replica sees the same instance history, and a replica that
//! starts at such a batch (replaying from the start, or from a snapshot
//! taken just before it) starts with fresh instances exactly as the others
//! did. Epochs rather than single batches, because dropping instances
//! costs an munmap, a TLB shootdown and fresh page faults per instance,
//! and there is an instance per slot.
//!
//! Local reads (`Executor::read`) run in a sandbox of their own, never in
//! the instances logged transactions use: running guest code changes an
//! instance's memory, so a read there could change this replica's later
//! outcomes.
//!
//! Each of the engine's slots (see partition.rs) has its own sandbox, and
//! a transaction runs in the sandbox of the lowest slot it declared. So an
//! instance serves the same transactions, in the same order, whatever the
//! number of executor threads. A transaction reaches the state through a
//! `StateView`: the locked stores of its slots and what it declared.

use crate::LookupMap;

use parking_lot::{ArcMutexGuard, RawMutex};
use smallvec::SmallVec;
use wasmtime::{
    Caller, Config, Engine, InstancePre, Linker, Memory, OptLevel, ResourceLimiter, Store, Trap,
    TypedFunc,
};

use crate::config::{EngineConfig, HOST_BYTE_FUEL_DIVISOR, HOST_CALL_FUEL};
use crate::module::{CompiledModule, DECLARATION_EXPORT_PREFIX, HOST_MODULE, MEMORY_EXPORT};
use crate::outcome::{
    Abort, AbortKind, LogLevel, LogLine, PROCEDURE_LOG_BYTES_PER_CALL_MAX,
    PROCEDURE_LOG_LINES_PER_CALL_MAX,
};
use crate::partition::{Declared, SLOTS, partition_key, undeclared};
use crate::state::{Bytes, StateStore};
use crate::trace::{HostCall, TxTrace};
use ordo_entry::ArgsEncoding;
use ordo_schema::abi;

/// Table elements one instance may grow to (Rust modules use a small,
/// fixed table for indirect calls).
const INSTANCE_TABLE_ELEMENTS_MAX: usize = 100_000;
/// Fuel for instantiation. With copy-on-write memory initialisation and no
/// start function this is barely touched, but it must be bounded.
const INSTANTIATE_FUEL: u64 = 10_000_000;
/// The default number of sequence numbers per instance epoch (see the
/// module docs). The epoch in force is `EngineConfig::instance_epoch`.
#[deprecated(note = "the epoch is `EngineConfig::instance_epoch`; this is only its default")]
pub const INSTANCE_EPOCH: u64 = crate::config::INSTANCE_EPOCH_DEFAULT;

pub use crate::config::opens_instance_epoch;

/// Entries a single `scan` host call may return at most.
const SCAN_ENTRIES_PER_CALL_MAX: usize = 4096;
/// When a write set grows past this many keys, lookups switch from a
/// linear search to a hash index.
const WRITE_SET_LINEAR_MAX: usize = 16;

/// Builds the wasmtime engine with the settings that keep execution
/// deterministic: NaN canonicalisation, no threads, deterministic relaxed
/// SIMD, fuel (never epochs) for outcomes, memory limits that trap. Shared-memory
/// threads are impossible: wasmtime is built without its `threads` feature.
pub fn wasmtime_engine(config: &EngineConfig) -> Engine {
    let mut wasm = Config::new();
    wasm.consume_fuel(true)
        .cranelift_nan_canonicalization(true)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_relaxed_simd(false)
        .wasm_multi_memory(false)
        .wasm_memory64(false)
        .wasm_backtrace_max_frames(None)
        .memory_init_cow(true)
        .max_wasm_stack(config.wasm_stack_bytes_max);
    Engine::new(&wasm).expect("ordo's fixed wasmtime configuration is valid")
}

/// An error raised by a host function or the resource limiter. It traps
/// the guest; the executor turns it into an abort.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HostAbort(pub Abort);

/// Most bytes of an abort reason or panic message read from the guest.
const GUEST_TEXT_BYTES_MAX: i32 = 4096;

/// UTF-8 text (lossily) from guest memory, at most
/// [`GUEST_TEXT_BYTES_MAX`] bytes of it.
fn guest_text(
    caller: &Caller<'_, HostCtx>,
    ptr: i32,
    len: i32,
    what: &str,
) -> wasmtime::Result<String> {
    let memory = current_memory(caller);
    let guest = memory.data(caller);
    let range = guest_range(guest, ptr, len.min(GUEST_TEXT_BYTES_MAX), what)?;
    Ok(String::from_utf8_lossy(&guest[range]).into_owned())
}

fn host_abort(kind: AbortKind, message: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(HostAbort(Abort::new(kind, message)))
}

/// A transaction's buffered writes, in first-write order. Later writes to
/// the same key replace the earlier value in place, so applying them in
/// order is deterministic and each key is applied once.
#[derive(Default)]
pub(crate) struct WriteSet {
    writes: Vec<(Bytes, Option<Bytes>)>,
    /// Only built once the set outgrows a linear search. Used for lookups
    /// only, never iterated, so its hash order cannot reach an outcome.
    index: Option<LookupMap<Bytes, usize>>,
    bytes: usize,
}

impl WriteSet {
    fn position(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.writes.iter().position(|(k, _)| k.as_slice() == key),
        }
    }

    /// `Some(None)` means deleted in this transaction.
    fn lookup(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.position(key)
            .map(|position| self.writes[position].1.as_deref())
    }

    fn record(&mut self, key: &[u8], value: Option<Bytes>) {
        self.bytes += key.len() + value.as_ref().map_or(0, |value| value.len());
        match self.position(key) {
            Some(position) => self.writes[position].1 = value,
            None => {
                if let Some(index) = &mut self.index {
                    index.insert(Bytes::from_slice(key), self.writes.len());
                }
                self.writes.push((Bytes::from_slice(key), value));
                if self.index.is_none() && self.writes.len() > WRITE_SET_LINEAR_MAX {
                    self.index = Some(
                        self.writes
                            .iter()
                            .enumerate()
                            .map(|(position, (key, _))| (key.clone(), position))
                            .collect(),
                    );
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.writes.len()
    }

    fn clear(&mut self) {
        self.writes.clear();
        self.index = None;
        self.bytes = 0;
    }

    /// This transaction's writes with `start <= key < end`, sorted by key.
    fn in_range(&self, start: &[u8], end: Option<&[u8]>) -> Vec<(&[u8], Option<&[u8]>)> {
        let mut matching: Vec<_> = self
            .writes
            .iter()
            .filter(|(key, _)| {
                key.as_slice() >= start && end.is_none_or(|end| key.as_slice() < end)
            })
            .map(|(key, value)| (key.as_slice(), value.as_deref()))
            .collect();
        matching.sort_unstable_by(|a, b| a.0.cmp(b.0));
        matching
    }
}

/// Per-transaction context visible to host functions.
#[derive(Default)]
pub(crate) struct TxContext {
    pub seq: u64,
    pub now_ms: u64,
    pub writes: WriteSet,
    pub result: Vec<u8>,
    /// This call's write limits: the engine config's, or a migration's.
    pub limits: WriteLimits,
    /// Set only for the one call the replay debugger traces
    /// ([`Sandbox::start_trace`]); host functions record into it.
    pub trace: Option<Box<TxTrace>>,
    /// The call's fuel used and log lines, taken after it returns.
    pub notes: CallNotes,
    /// Bytes of log text in `notes.lines`, against
    /// [`PROCEDURE_LOG_BYTES_PER_CALL_MAX`].
    pub log_bytes: usize,
}

/// What a call did besides its outcome: the fuel it used and the lines it
/// logged (`ordo.log`). Deterministic, outside every hash.
#[derive(Debug, Default)]
pub(crate) struct CallNotes {
    pub fuel_used: u64,
    pub lines: Vec<LogLine>,
    /// Lines over the per-call limits.
    pub dropped: u32,
}

/// How much one call may write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct WriteLimits {
    pub writes_max: usize,
    pub bytes_max: usize,
}

/// Limits the growth of each instance's memory and tables. Returning an
/// error (rather than refusing the grow) makes the limit a clear,
/// deterministic abort instead of whatever the guest's allocator does
/// when `memory.grow` fails.
struct InstanceLimiter {
    memory_bytes_max: usize,
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            return Err(host_abort(
                AbortKind::MemoryLimit,
                format!(
                    "procedure tried to grow its memory to {desired} bytes, over the {}-byte limit",
                    self.memory_bytes_max
                ),
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > INSTANCE_TABLE_ELEMENTS_MAX {
            return Err(host_abort(
                AbortKind::MemoryLimit,
                format!(
                    "procedure tried to grow a table to {desired} elements, over the {INSTANCE_TABLE_ELEMENTS_MAX}-element limit"
                ),
            ));
        }
        Ok(true)
    }
}

/// A slot's store, locked for one transaction. Owned (not borrowed) so it
/// can live in the wasmtime store's data for the length of a call.
pub(crate) type SlotGuard = ArcMutexGuard<RawMutex, StateStore>;

/// The state one call may see: its slots' stores, locked, and the
/// partitions it declared. A declaration's own call sees no state.
#[derive(Default)]
pub(crate) struct StateView {
    /// `(slot, store)`, in slot order.
    stores: SmallVec<[(usize, SlotGuard); 2]>,
    /// For each slot, its index in `stores` (`u8::MAX`: not locked).
    store_of_slot: [u8; SLOTS],
    declared: Option<Declared>,
    /// Set for procedures marked `#[procedure(read_only)]`, logged or read
    /// locally: any write or delete aborts with `read_only`.
    read_only: bool,
}

impl StateView {
    /// A view of `stores` (in slot order) limited to `declared`.
    pub fn new(stores: SmallVec<[(usize, SlotGuard); 2]>, declared: Declared) -> StateView {
        debug_assert!(stores.windows(2).all(|pair| pair[0].0 < pair[1].0));
        let mut store_of_slot = [u8::MAX; SLOTS];
        for (index, (slot, _)) in stores.iter().enumerate() {
            store_of_slot[*slot] = index as u8;
        }
        StateView {
            stores,
            store_of_slot,
            declared: Some(declared),
            read_only: false,
        }
    }

    /// Like [`StateView::new`], for a procedure marked read-only (a logged
    /// call or a local read): every write or delete aborts with
    /// [`AbortKind::ReadOnly`].
    pub fn read_only(stores: SmallVec<[(usize, SlotGuard); 2]>, declared: Declared) -> StateView {
        StateView {
            read_only: true,
            ..StateView::new(stores, declared)
        }
    }

    /// The store a write to `key` goes to, if the call may write it.
    fn writable_store_index(&self, key: &[u8], what: &str) -> wasmtime::Result<usize> {
        if self.read_only {
            return Err(host_abort(
                AbortKind::ReadOnly,
                format!(
                    "called ordo.{what}, but it is marked #[procedure(read_only)], which forbids writes and deletes; remove `read_only` if it must write"
                ),
            ));
        }
        self.store_index(key)
    }

    /// The store `key` lives in, if the call may touch it.
    fn store_index(&self, key: &[u8]) -> wasmtime::Result<usize> {
        let Some(declared) = &self.declared else {
            return Err(declaration_touched_store());
        };
        let Some(slot) = declared.slot_if_allowed(partition_key(key)) else {
            return Err(wasmtime::Error::new(HostAbort(undeclared(key))));
        };
        let index = self.store_of_slot[slot];
        assert_ne!(
            index,
            u8::MAX,
            "the executor locks the slot of every declared partition"
        );
        Ok(index as usize)
    }

    fn store(&self, key: &[u8]) -> wasmtime::Result<&StateStore> {
        let index = self.store_index(key)?;
        Ok(&self.stores[index].1)
    }

    /// Committed entries with `start <= key < end`, in key order, from
    /// every slot in the view, limited to the declared partitions.
    fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> wasmtime::Result<impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a> {
        let Some(declared) = &self.declared else {
            return Err(declaration_touched_store());
        };
        let sources = self
            .stores
            .iter()
            .map(|(_, store)| store.range(start, end).peekable())
            .collect();
        Ok(MergedRange { sources }.filter(move |(key, _)| {
            matches!(declared, Declared::All) || declared.allows(partition_key(key))
        }))
    }
}

/// The abort for a partition declaration that reads, writes or scans.
fn declaration_touched_store() -> wasmtime::Error {
    host_abort(
        AbortKind::Trap,
        "a partition declaration touched the store; a declaration may only look at the procedure's arguments",
    )
}

/// A merge of per-slot ranges. Every key lives in exactly one slot, so
/// the sources never share a key.
pub(crate) struct MergedRange<I: Iterator> {
    sources: SmallVec<[std::iter::Peekable<I>; 2]>,
}

impl<I: Iterator> MergedRange<I> {
    pub(crate) fn new(sources: SmallVec<[std::iter::Peekable<I>; 2]>) -> Self {
        MergedRange { sources }
    }
}

impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])>> Iterator for MergedRange<I> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let mut smallest: Option<(usize, &'a [u8])> = None;
        for (index, source) in self.sources.iter_mut().enumerate() {
            if let Some(&(key, _)) = source.peek()
                && smallest.is_none_or(|(_, best)| key < best)
            {
                smallest = Some((index, key));
            }
        }
        self.sources[smallest?.0].next()
    }
}

/// Everything a host function can reach.
pub(crate) struct HostCtx {
    pub view: StateView,
    pub tx: TxContext,
    /// The memory of the instance being called, set before every call so
    /// host functions need not look it up.
    memory: Option<Memory>,
    limiter: InstanceLimiter,
    config: EngineConfig,
}

impl HostCtx {
    fn lookup(&self, key: &[u8]) -> wasmtime::Result<Option<&[u8]>> {
        let store = self.view.store(key)?;
        Ok(match self.tx.writes.lookup(key) {
            Some(buffered) => buffered,
            None => store.get(key),
        })
    }
}

fn guest_range(
    memory: &[u8],
    ptr: i32,
    len: i32,
    what: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let (Ok(start), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return Err(host_abort(
            AbortKind::Trap,
            format!("procedure passed a negative pointer or length for {what}"),
        ));
    };
    match start.checked_add(len) {
        Some(end) if end <= memory.len() => Ok(start..end),
        _ => Err(host_abort(
            AbortKind::Trap,
            format!("procedure passed an out-of-bounds buffer for {what}"),
        )),
    }
}

/// Charges a host call's fuel: a fixed cost plus one unit per
/// `HOST_BYTE_FUEL_DIVISOR` bytes moved.
fn charge(caller: &mut Caller<'_, HostCtx>, bytes: usize) -> wasmtime::Result<()> {
    let cost = HOST_CALL_FUEL + bytes as u64 / HOST_BYTE_FUEL_DIVISOR;
    let fuel = caller.get_fuel()?;
    if fuel < cost {
        caller.set_fuel(0)?;
        return Err(wasmtime::Error::new(Trap::OutOfFuel));
    }
    caller.set_fuel(fuel - cost)
}

fn current_memory(caller: &Caller<'_, HostCtx>) -> Memory {
    caller
        .data()
        .memory
        .expect("the executor sets the instance memory before every call")
}

fn check_key(ctx: &HostCtx, key_len: usize) -> wasmtime::Result<()> {
    if key_len > ctx.config.key_bytes_max {
        return Err(host_abort(
            AbortKind::LimitExceeded,
            format!(
                "key of {key_len} bytes is over the {}-byte limit",
                ctx.config.key_bytes_max
            ),
        ));
    }
    Ok(())
}

fn check_write_budget(ctx: &HostCtx, added_bytes: usize) -> wasmtime::Result<()> {
    let writes = &ctx.tx.writes;
    let limits = ctx.tx.limits;
    if writes.len() >= limits.writes_max {
        return Err(host_abort(
            AbortKind::LimitExceeded,
            format!("transaction made more than {} writes", limits.writes_max),
        ));
    }
    if writes.bytes + added_bytes > limits.bytes_max {
        return Err(host_abort(
            AbortKind::LimitExceeded,
            format!("transaction wrote more than {} bytes", limits.bytes_max),
        ));
    }
    Ok(())
}

fn define_host_functions(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        HOST_MODULE,
        abi::import::GET,
        |mut caller: Caller<'_, HostCtx>,
         key_ptr: i32,
         key_len: i32,
         dst_ptr: i32,
         dst_cap: i32|
         -> wasmtime::Result<i64> {
            let memory = current_memory(&caller);
            let (guest, ctx) = memory.data_and_store_mut(&mut caller);
            let key = guest_range(guest, key_ptr, key_len, "the key of ordo.get")?;
            check_key(ctx, key.len())?;
            let found = ctx.lookup(&guest[key.clone()])?;
            let traced = ctx.tx.trace.is_some().then(|| HostCall::Get {
                key: guest[key.clone()].to_vec(),
                value: found.map(<[u8]>::to_vec),
            });
            let (answer, moved) = match found {
                None => (abi::GET_ABSENT, key.len()),
                Some(value) => {
                    let dst = guest_range(guest, dst_ptr, dst_cap, "the value buffer of ordo.get")?;
                    if value.len() <= dst.len() {
                        guest[dst.start..dst.start + value.len()].copy_from_slice(value);
                    }
                    (value.len() as i64, key.len() + value.len())
                }
            };
            if let (Some(trace), Some(call)) = (&mut ctx.tx.trace, traced) {
                trace.record(call);
            }
            charge(&mut caller, moved)?;
            Ok(answer)
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::PUT,
        |mut caller: Caller<'_, HostCtx>,
         key_ptr: i32,
         key_len: i32,
         value_ptr: i32,
         value_len: i32|
         -> wasmtime::Result<()> {
            let memory = current_memory(&caller);
            let (guest, ctx) = memory.data_and_store_mut(&mut caller);
            let key = guest_range(guest, key_ptr, key_len, "the key of ordo.put")?;
            let value = guest_range(guest, value_ptr, value_len, "the value of ordo.put")?;
            check_key(ctx, key.len())?;
            if value.len() > ctx.config.value_bytes_max {
                return Err(host_abort(
                    AbortKind::LimitExceeded,
                    format!(
                        "value of {} bytes is over the {}-byte limit",
                        value.len(),
                        ctx.config.value_bytes_max
                    ),
                ));
            }
            ctx.view.writable_store_index(&guest[key.clone()], "put")?;
            let moved = key.len() + value.len();
            check_write_budget(ctx, moved)?;
            if let Some(trace) = &mut ctx.tx.trace {
                let (key, value) = (guest[key.clone()].to_vec(), guest[value.clone()].to_vec());
                trace.record(HostCall::Put { key, value });
            }
            ctx.tx
                .writes
                .record(&guest[key], Some(Bytes::from_slice(&guest[value])));
            charge(&mut caller, moved)
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::DELETE,
        |mut caller: Caller<'_, HostCtx>, key_ptr: i32, key_len: i32| -> wasmtime::Result<()> {
            let memory = current_memory(&caller);
            let (guest, ctx) = memory.data_and_store_mut(&mut caller);
            let key = guest_range(guest, key_ptr, key_len, "the key of ordo.delete")?;
            check_key(ctx, key.len())?;
            ctx.view
                .writable_store_index(&guest[key.clone()], "delete")?;
            let moved = key.len();
            check_write_budget(ctx, moved)?;
            if let Some(trace) = &mut ctx.tx.trace {
                let key = guest[key.clone()].to_vec();
                trace.record(HostCall::Delete { key });
            }
            ctx.tx.writes.record(&guest[key], None);
            charge(&mut caller, moved)
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::SCAN,
        |mut caller: Caller<'_, HostCtx>,
         start_ptr: i32,
         start_len: i32,
         end_ptr: i32,
         end_len: i32,
         limit: i32,
         dst_ptr: i32,
         dst_cap: i32|
         -> wasmtime::Result<i64> {
            let memory = current_memory(&caller);
            let (guest, ctx) = memory.data_and_store_mut(&mut caller);
            let start = guest_range(guest, start_ptr, start_len, "the start key of ordo.scan")?;
            let end = if end_len == abi::SCAN_NO_END {
                None
            } else {
                Some(guest_range(
                    guest,
                    end_ptr,
                    end_len,
                    "the end key of ordo.scan",
                )?)
            };
            let dst = guest_range(guest, dst_ptr, dst_cap, "the buffer of ordo.scan")?;
            let limit = usize::try_from(limit)
                .unwrap_or(0)
                .min(SCAN_ENTRIES_PER_CALL_MAX);
            let start_key = guest[start].to_vec();
            let end_key = end.map(|end| guest[end].to_vec());

            // Merge committed state with this transaction's own writes,
            // both in key order; a buffered write shadows the stored value.
            let mut stored = ctx.view.range(&start_key, end_key.as_deref())?.peekable();
            let buffered = ctx.tx.writes.in_range(&start_key, end_key.as_deref());
            let mut buffered = buffered.into_iter().peekable();
            let mut out: Vec<u8> = Vec::new();
            let mut traced_rows = ctx.tx.trace.as_ref().map(|_| Vec::new());
            let mut entries = 0;
            let mut needed_for_first = 0;
            while entries < limit {
                let next = match (stored.peek(), buffered.peek()) {
                    (None, None) => break,
                    (Some(_), None) => stored.next().map(|(k, v)| (k, Some(v))),
                    (None, Some(_)) => buffered.next(),
                    (Some((stored_key, _)), Some((buffered_key, _))) => {
                        match stored_key.cmp(buffered_key) {
                            std::cmp::Ordering::Less => stored.next().map(|(k, v)| (k, Some(v))),
                            std::cmp::Ordering::Equal => {
                                stored.next();
                                buffered.next()
                            }
                            std::cmp::Ordering::Greater => buffered.next(),
                        }
                    }
                };
                let Some((key, value)) = next else { break };
                let Some(value) = value else { continue }; // deleted in this transaction
                let entry_bytes = 8 + key.len() + value.len();
                if out.len() + entry_bytes > dst.len() {
                    if entries == 0 {
                        needed_for_first = entry_bytes;
                    }
                    break;
                }
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
                if let Some(rows) = &mut traced_rows {
                    rows.push((key.to_vec(), value.to_vec()));
                }
                entries += 1;
            }
            drop(stored);
            if let (Some(trace), Some(rows)) = (&mut ctx.tx.trace, traced_rows) {
                trace.record(HostCall::Scan {
                    start: start_key.clone(),
                    end: end_key.clone(),
                    limit: limit as u32,
                    rows,
                });
            }
            guest[dst.start..dst.start + out.len()].copy_from_slice(&out);
            charge(&mut caller, out.len() + 8 * entries)?;
            if needed_for_first > 0 {
                return Ok(-(needed_for_first as i64));
            }
            Ok(out.len() as i64)
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::SET_RESULT,
        |mut caller: Caller<'_, HostCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let memory = current_memory(&caller);
            let (guest, ctx) = memory.data_and_store_mut(&mut caller);
            let range = guest_range(guest, ptr, len, "the result of ordo.set_result")?;
            if range.len() > ctx.config.result_bytes_max {
                return Err(host_abort(
                    AbortKind::LimitExceeded,
                    format!(
                        "result of {} bytes is over the {}-byte limit",
                        range.len(),
                        ctx.config.result_bytes_max
                    ),
                ));
            }
            let moved = range.len();
            ctx.tx.result.clear();
            ctx.tx.result.extend_from_slice(&guest[range]);
            charge(&mut caller, moved)
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::ABORT,
        |caller: Caller<'_, HostCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let reason = guest_text(&caller, ptr, len, "the reason of ordo.abort")?;
            Err(host_abort(AbortKind::User, reason))
        },
    )?;

    // `ordo_sdk::log!`: a line for the node's procedure log. Fuel is
    // charged for every byte passed, kept or not, so that the limits below
    // change nothing but what is kept.
    linker.func_wrap(
        HOST_MODULE,
        abi::import::LOG,
        |mut caller: Caller<'_, HostCtx>, level: i32, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let Some(level) = LogLevel::from_abi(level) else {
                return Err(host_abort(
                    AbortKind::Trap,
                    format!("ordo.log was given level {level}; levels are 1 (error) to 5 (trace)"),
                ));
            };
            charge(&mut caller, usize::try_from(len).unwrap_or(0))?;
            let tx = &caller.data().tx;
            let room = PROCEDURE_LOG_BYTES_PER_CALL_MAX - tx.log_bytes;
            if tx.notes.lines.len() >= PROCEDURE_LOG_LINES_PER_CALL_MAX || room == 0 {
                caller.data_mut().tx.notes.dropped += 1;
                return Ok(());
            }
            let mut message = guest_text(&caller, ptr, len, "the message of ordo.log")?;
            if message.len() > room {
                let mut cut = room;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            let tx = &mut caller.data_mut().tx;
            tx.log_bytes += message.len();
            tx.notes.lines.push(LogLine { level, message });
            Ok(())
        },
    )?;

    // The SDK's panic hook: the panic's message and place, then a trap.
    linker.func_wrap(
        HOST_MODULE,
        abi::import::PANIC,
        |caller: Caller<'_, HostCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let message = guest_text(&caller, ptr, len, "the message of ordo.panic")?;
            Err(host_abort(
                AbortKind::Trap,
                format!("procedure panicked at {message}"),
            ))
        },
    )?;

    linker.func_wrap(
        HOST_MODULE,
        abi::import::SEQUENCE,
        |caller: Caller<'_, HostCtx>| caller.data().tx.seq as i64,
    )?;
    linker.func_wrap(
        HOST_MODULE,
        abi::import::NOW_MS,
        |caller: Caller<'_, HostCtx>| caller.data().tx.now_ms as i64,
    )?;
    linker.func_wrap(
        HOST_MODULE,
        abi::import::RANDOM_SEED,
        |caller: Caller<'_, HostCtx>| random_seed(caller.data().tx.seq) as i64,
    )?;
    Ok(())
}

/// The seed a transaction's randomness starts from: SplitMix64 of its
/// sequence number, so it is the same on every replica yet differs between
/// neighbouring transactions.
pub fn random_seed(seq: u64) -> u64 {
    let mut z = seq.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A live instance of one module inside the current store.
struct LiveInstance {
    memory: Memory,
    args_buffer: TypedFunc<i32, i32>,
    /// The last buffer `ordo_args_buffer` returned and its size. The ABI
    /// keeps it valid until the next `ordo_args_buffer` call, so arguments
    /// that fit are copied without a call into the guest.
    args_area: Option<(usize, usize)>,
    /// The `ordo_proc_*` exports, in the order of the module's procedures.
    procedures: Vec<TypedFunc<(i32, i32), i32>>,
    /// The `ordo_keys_*` exports, likewise; `None` if not declared.
    declarations: Vec<Option<TypedFunc<(i32, i32), i32>>>,
}

/// A module ready to be instantiated quickly (imports pre-resolved), in
/// any sandbox of the same wasmtime engine.
pub(crate) struct LoadedModule {
    pub compiled: CompiledModule,
    pre: InstancePre<HostCtx>,
}

/// ordo's host functions, to resolve modules' imports against. One per
/// engine is enough: every sandbox instantiates through the result.
pub(crate) struct HostLinker(Linker<HostCtx>);

impl HostLinker {
    pub fn new(engine: &Engine) -> HostLinker {
        let mut linker = Linker::new(engine);
        define_host_functions(&mut linker)
            .expect("host functions are defined once, without clashes");
        HostLinker(linker)
    }

    pub fn load(&self, compiled: CompiledModule) -> Result<LoadedModule, String> {
        let pre = self
            .0
            .instantiate_pre(&compiled.module)
            .map_err(|err| err.to_string())?;
        Ok(LoadedModule { compiled, pre })
    }
}

/// Which export of a procedure a call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Export {
    /// `ordo_proc_*`: the transaction itself.
    Procedure,
    /// `ordo_keys_*`: the partition declaration.
    Declaration,
}

/// The `encoding` argument a guest's `ordo_proc_*` export gets for
/// arguments encoded as `encoding` (docs/ABI.md).
pub(crate) fn abi_encoding(encoding: ArgsEncoding) -> i32 {
    match encoding {
        ArgsEncoding::Postcard => abi::ENCODING_POSTCARD,
        ArgsEncoding::Json => abi::ENCODING_JSON,
    }
}

/// One procedure call: what to run and the log-derived context it sees.
pub(crate) struct Call<'a> {
    /// The procedure's index in its module's procedure list.
    pub procedure: usize,
    pub export: Export,
    pub args: &'a [u8],
    /// The ABI encoding code (`abi_encoding`).
    pub encoding: i32,
    pub seq: u64,
    pub now_ms: u64,
    pub fuel: u64,
}

/// One set of instances (a wasmtime store), for one slot, or for running
/// declarations. The committed state is not here: calls see it through
/// the [`StateView`] they are given.
pub(crate) struct Sandbox {
    engine: Engine,
    store: Store<HostCtx>,
    config: EngineConfig,
    /// Instances alive in `store`, by module name.
    instances: LookupMap<String, LiveInstance>,
    /// The last call's notes ([`Sandbox::take_notes`]).
    last_notes: CallNotes,
}

impl Sandbox {
    pub fn new(engine: Engine, config: EngineConfig) -> Sandbox {
        let store = Self::new_store(&engine, &config);
        Sandbox {
            engine,
            store,
            config,
            instances: LookupMap::default(),
            last_notes: CallNotes::default(),
        }
    }

    /// The fuel used and the lines logged by the last call this sandbox
    /// ran (whatever its outcome).
    pub fn take_notes(&mut self) -> CallNotes {
        std::mem::take(&mut self.last_notes)
    }

    fn new_store(engine: &Engine, config: &EngineConfig) -> Store<HostCtx> {
        let ctx = HostCtx {
            view: StateView::default(),
            tx: TxContext::default(),
            memory: None,
            limiter: InstanceLimiter {
                memory_bytes_max: config.instance_memory_bytes_max,
            },
            config: config.clone(),
        };
        let mut store = Store::new(engine, ctx);
        store.limiter(|ctx| &mut ctx.limiter);
        store
    }

    /// Makes the next calls record their host calls, until
    /// [`Sandbox::take_trace`]. Only the replay debugger does this.
    pub(crate) fn start_trace(&mut self) {
        self.store.data_mut().tx.trace = Some(Box::default());
    }

    /// Ends tracing and returns what was recorded since
    /// [`Sandbox::start_trace`].
    pub(crate) fn take_trace(&mut self) -> Option<TxTrace> {
        self.store.data_mut().tx.trace.take().map(|trace| *trace)
    }

    /// Drops every instance (and the store that holds them). Called at
    /// log-defined points only; see the module docs.
    pub fn reset(&mut self) {
        if self.instances.is_empty() {
            return;
        }
        self.instances.clear();
        // A traced call that traps resets its sandbox; its trace survives.
        let trace = self.store.data_mut().tx.trace.take();
        self.store = Self::new_store(&self.engine, &self.config);
        self.store.data_mut().tx.trace = trace;
    }

    fn instance(&mut self, module: &LoadedModule) -> Result<&mut LiveInstance, Abort> {
        let name = &module.compiled.name;
        if !self.instances.contains_key(name) {
            self.store
                .set_fuel(INSTANTIATE_FUEL)
                .expect("fuel is enabled in the engine config");
            let instance = module.pre.instantiate(&mut self.store).map_err(|err| {
                let abort = classify(&err);
                Abort::new(
                    abort.kind,
                    format!("module `{name}` failed to instantiate: {}", abort.message),
                )
            })?;
            let memory = instance
                .get_memory(&mut self.store, MEMORY_EXPORT)
                .expect("validated at deploy: the module exports its memory");
            let args_buffer = instance
                .get_typed_func::<i32, i32>(&mut self.store, crate::module::ARGS_BUFFER_EXPORT)
                .expect("validated at deploy: ordo_args_buffer has type (i32) -> i32");
            let mut procedures = Vec::with_capacity(module.compiled.procedures.len());
            let mut declarations = Vec::with_capacity(module.compiled.procedures.len());
            for procedure in &module.compiled.procedures {
                let export = format!(
                    "{}{}",
                    crate::module::PROCEDURE_EXPORT_PREFIX,
                    procedure.name
                );
                procedures.push(
                    instance
                        .get_typed_func::<(i32, i32), i32>(&mut self.store, &export)
                        .expect("validated at deploy: procedures have type (i32, i32) -> i32"),
                );
                declarations.push(procedure.declares_partitions.then(|| {
                    let export = format!("{DECLARATION_EXPORT_PREFIX}{}", procedure.name);
                    instance
                        .get_typed_func::<(i32, i32), i32>(&mut self.store, &export)
                        .expect("validated at deploy: declarations have type (i32, i32) -> i32")
                }));
            }
            self.instances.insert(
                name.clone(),
                LiveInstance {
                    memory,
                    args_buffer,
                    args_area: None,
                    procedures,
                    declarations,
                },
            );
        }
        Ok(self
            .instances
            .get_mut(name)
            .expect("inserted above if missing"))
    }

    /// Runs a transaction against `view`: on success its writes are
    /// applied to the view's stores and its result is returned. The view's
    /// locks are released before this returns. A trap resets every
    /// instance of this sandbox.
    pub fn execute(
        &mut self,
        module: &LoadedModule,
        call: &Call<'_>,
        view: StateView,
    ) -> Result<Vec<u8>, Abort> {
        let limits = self.config_write_limits();
        self.execute_with_limits(module, call, view, limits)
    }

    fn config_write_limits(&self) -> WriteLimits {
        WriteLimits {
            writes_max: self.config.tx_writes_max,
            bytes_max: self.config.tx_write_bytes_max,
        }
    }

    /// [`Sandbox::execute`] with other write limits (a migration's).
    pub fn execute_with_limits(
        &mut self,
        module: &LoadedModule,
        call: &Call<'_>,
        view: StateView,
        limits: WriteLimits,
    ) -> Result<Vec<u8>, Abort> {
        debug_assert_eq!(call.export, Export::Procedure);
        self.store.data_mut().view = view;
        self.store.data_mut().tx.limits = limits;
        let result = self.call(module, call);
        let ctx = self.store.data_mut();
        if result.is_ok() {
            let writes = std::mem::take(&mut ctx.tx.writes);
            let mut writes_vec = writes.writes;
            for (key, value) in writes_vec.drain(..) {
                let index = ctx
                    .view
                    .store_index(&key)
                    .expect("a write was allowed, so its slot is locked");
                let store = &mut ctx.view.stores[index].1;
                match value {
                    Some(value) => store.put(key, value),
                    None => store.delete(&key),
                }
            }
            // Keep the allocation for the next transaction.
            ctx.tx.writes.writes = writes_vec;
        }
        ctx.view = StateView::default();
        result.map(|()| std::mem::take(&mut self.store.data_mut().tx.result))
    }

    /// Runs a read-only procedure against `view` (built with
    /// [`StateView::read_only`]) and returns its result. Nothing is written.
    pub fn read(
        &mut self,
        module: &LoadedModule,
        call: &Call<'_>,
        view: StateView,
    ) -> Result<Vec<u8>, Abort> {
        debug_assert_eq!(call.export, Export::Procedure);
        debug_assert!(view.read_only);
        self.store.data_mut().view = view;
        self.store.data_mut().tx.limits = self.config_write_limits();
        let result = self.call(module, call);
        let ctx = self.store.data_mut();
        debug_assert_eq!(ctx.tx.writes.len(), 0, "a read-only view refuses writes");
        ctx.tx.writes.clear();
        ctx.view = StateView::default();
        result.map(|()| std::mem::take(&mut ctx.tx.result))
    }

    /// Runs a procedure's partition declaration, which sees no state.
    pub fn declare(&mut self, module: &LoadedModule, call: &Call<'_>) -> Result<Declared, Abort> {
        debug_assert_eq!(call.export, Export::Declaration);
        self.store.data_mut().view = StateView::default();
        self.store.data_mut().tx.limits = self.config_write_limits();
        self.call(module, call)?;
        let name = &module.compiled.procedures[call.procedure].name;
        Declared::decode(&self.store.data().tx.result, self.config.key_bytes_max).map_err(|abort| {
            Abort::new(
                abort.kind,
                format!("partition declaration of `{name}`: {}", abort.message),
            )
        })
    }

    /// Runs one export. On `Ok` the write set and result are waiting in
    /// the context; on abort they have been cleared.
    fn call(&mut self, module: &LoadedModule, call: &Call<'_>) -> Result<(), Abort> {
        let result = self.call_inner(module, call);
        let ctx = self.store.data_mut();
        // Taken before a trap's reset replaces the store.
        self.last_notes = std::mem::take(&mut ctx.tx.notes);
        match result {
            Ok(()) => Ok(()),
            Err((abort, trapped)) => {
                ctx.tx.writes.clear();
                ctx.tx.result.clear();
                ctx.view = StateView::default();
                if trapped {
                    // A trap can leave guest memory in any state (a half-done
                    // allocation, a poisoned lock): never run in it again.
                    self.reset();
                }
                Err(abort)
            }
        }
    }

    fn call_inner(&mut self, module: &LoadedModule, call: &Call<'_>) -> Result<(), (Abort, bool)> {
        let Call {
            procedure,
            export,
            args,
            encoding,
            seq,
            now_ms,
            fuel,
        } = *call;
        let warm = self.instances.contains_key(&module.compiled.name);
        if let Some(trace) = &mut self.store.data_mut().tx.trace {
            trace.warm_instance = warm;
        }
        // Borrow the instance and the store as disjoint fields: cloning a
        // `TypedFunc` clones its type, which showed up in profiles.
        self.instance(module).map_err(|abort| (abort, true))?;
        let live = self
            .instances
            .get_mut(&module.compiled.name)
            .expect("instance() just ensured it");
        let memory = live.memory;
        {
            let ctx = self.store.data_mut();
            ctx.memory = Some(memory);
            ctx.tx.seq = seq;
            ctx.tx.now_ms = now_ms;
            ctx.tx.writes.clear();
            ctx.tx.result.clear();
            ctx.tx.notes.fuel_used = 0;
            if !ctx.tx.notes.lines.is_empty() || ctx.tx.notes.dropped != 0 {
                ctx.tx.notes.lines.clear();
                ctx.tx.notes.dropped = 0;
            }
            ctx.tx.log_bytes = 0;
        }
        self.store
            .set_fuel(fuel)
            .expect("fuel is enabled in the engine config");
        let trap = |err: wasmtime::Error| (classify(&err), true);
        let args_len = args.len() as i32;
        let start = match live.args_area {
            Some((start, len)) if args.len() <= len => start,
            _ => {
                let ptr = live
                    .args_buffer
                    .call(&mut self.store, args_len)
                    .map_err(trap)?;
                let start = usize::try_from(ptr).unwrap_or(usize::MAX);
                live.args_area = Some((start, args.len()));
                start
            }
        };
        let data = memory.data_mut(&mut self.store);
        let range = start
            .checked_add(args.len())
            .map(|end| start..end)
            .filter(|range| range.end <= data.len())
            .ok_or_else(|| {
                (
                    Abort::new(
                        AbortKind::Trap,
                        "ordo_args_buffer returned an out-of-bounds buffer",
                    ),
                    true,
                )
            })?;
        data[range].copy_from_slice(args);
        let func = match export {
            Export::Procedure => &live.procedures[procedure],
            Export::Declaration => live.declarations[procedure]
                .as_ref()
                .expect("the executor only runs declarations the module exports"),
        };
        let called = func.call(&mut self.store, (args_len, encoding));
        let fuel_used = fuel.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let tx = &mut self.store.data_mut().tx;
        tx.notes.fuel_used = fuel_used;
        if let Some(trace) = &mut tx.trace {
            trace.fuel_used = fuel_used;
        }
        let status = called.map_err(|err| {
            let (abort, trapped) = trap(err);
            match export {
                // The view cannot name the procedure; the abort must.
                Export::Procedure if abort.kind == AbortKind::ReadOnly => (
                    Abort::new(
                        abort.kind,
                        format!(
                            "procedure `{}` {}",
                            module.compiled.procedures[procedure].name, abort.message
                        ),
                    ),
                    trapped,
                ),
                Export::Procedure => (abort, trapped),
                Export::Declaration => (
                    Abort::new(
                        abort.kind,
                        format!(
                            "partition declaration of `{}` failed: {}",
                            module.compiled.procedures[procedure].name, abort.message
                        ),
                    ),
                    trapped,
                ),
            }
        })?;
        let message = || String::from_utf8_lossy(&self.store.data().tx.result).into_owned();
        match status {
            abi::STATUS_OK => Ok(()),
            abi::STATUS_ABORTED => Err((Abort::new(AbortKind::User, message()), false)),
            abi::STATUS_BAD_ARGUMENTS => {
                Err((Abort::new(AbortKind::BadArguments, message()), false))
            }
            other => Err((
                Abort::new(
                    AbortKind::Trap,
                    format!("procedure returned unknown status {other}"),
                ),
                true,
            )),
        }
    }
}

/// Runs each of `exports` (functions `() -> i32`, the schema exports of
/// docs/ABI.md) once in a fresh store that sees no state, with `fuel`
/// each, and returns what each handed to `set_result`. The first export
/// that traps, runs out of fuel or returns a status other than 0 ends it
/// with that export's name and the reason.
pub(crate) fn run_schema_exports(
    linker: &HostLinker,
    config: &EngineConfig,
    module: &wasmtime::Module,
    exports: &[String],
    fuel: u64,
) -> Result<Vec<Vec<u8>>, (String, String)> {
    if exports.is_empty() {
        return Ok(Vec::new());
    }
    let mut store = Sandbox::new_store(module.engine(), config);
    store
        .set_fuel(INSTANTIATE_FUEL)
        .expect("fuel is enabled in the engine config");
    let failed = |export: &str, err: &wasmtime::Error| (export.to_string(), classify(err).message);
    let instance = linker
        .0
        .instantiate(&mut store, module)
        .map_err(|err| failed("(instantiation)", &err))?;
    let memory = instance
        .get_memory(&mut store, MEMORY_EXPORT)
        .expect("validated at deploy: the module exports its memory");
    store.data_mut().memory = Some(memory);
    let mut results = Vec::with_capacity(exports.len());
    for export in exports {
        let func = instance
            .get_typed_func::<(), i32>(&mut store, export)
            .map_err(|err| failed(export, &err))?;
        store
            .set_fuel(fuel)
            .expect("fuel is enabled in the engine config");
        store.data_mut().tx.result.clear();
        let status = func
            .call(&mut store, ())
            .map_err(|err| failed(export, &err))?;
        let result = std::mem::take(&mut store.data_mut().tx.result);
        if status != abi::STATUS_OK {
            return Err((
                export.clone(),
                format!(
                    "returned status {status}: {}",
                    String::from_utf8_lossy(&result[..result.len().min(512)])
                ),
            ));
        }
        results.push(result);
    }
    Ok(results)
}

/// Turns a wasmtime error into a deterministic abort. Only stable facts go
/// into the message: never backtraces, addresses or host error text.
pub(crate) fn classify(err: &wasmtime::Error) -> Abort {
    if let Some(HostAbort(abort)) = err.downcast_ref::<HostAbort>() {
        return abort.clone();
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => Abort::new(
                AbortKind::OutOfFuel,
                "procedure ran out of fuel (an endless loop, or more work than one transaction may do)",
            ),
            Trap::StackOverflow => Abort::new(
                AbortKind::StackOverflow,
                "procedure overflowed its stack (unbounded recursion?)",
            ),
            Trap::UnreachableCodeReached => Abort::new(
                AbortKind::Trap,
                "procedure trapped: wasm `unreachable` executed (a panic in the procedure?)",
            ),
            other => Abort::new(AbortKind::Trap, format!("procedure trapped: {other}")),
        };
    }
    Abort::new(
        AbortKind::Trap,
        "procedure failed with an unclassified error",
    )
}

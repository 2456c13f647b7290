//! The state store alone (issue 19: state that fits, without losing
//! point-read speed).
//!
//! First it prints the heap bytes per account of the bank's accounts
//! spread over the engine's 16 slot stores the way the executor spreads
//! them, built both ways the engine builds stores: one `put` per account
//! (accounts opened by transactions) and `from_sorted` (a snapshot
//! restored). Heap is counted by this binary's global allocator, so it is
//! exact: every byte the stores asked for. Then criterion measures point
//! reads, in-place updates and 100-row scans at 100,000 and 1,000,000
//! accounts, and the pause of a key creation that rebuilds a slot's
//! sorted index (`merge_pause`) at 1M and 10M accounts.
//!
//! Run: `cargo bench --bench state`
//! (`STATE_BENCH_ACCOUNTS=1000000,10000000` picks the memory sizes,
//! `STATE_BENCH_MEMORY_ONLY=1` skips the timings).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ordo::workload::bank_account_key;
use ordo_engine::{SLOTS, StateStore};

/// The system allocator, counting the bytes currently allocated.
struct CountingAllocator;

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on the sizes the caller passes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// A balance as the bank stores it (postcard varint of an i64 of about
/// a million: 3 bytes).
fn balance() -> Vec<u8> {
    postcard::to_stdvec(&1_000_000i64).expect("an i64 encodes")
}

/// `accounts` accounts in the 16 slot stores, one `put` each, in
/// account order (as `open_many` creates them).
fn stores_by_put(accounts: u64) -> Vec<StateStore> {
    let mut stores: Vec<StateStore> = (0..SLOTS).map(|_| StateStore::new()).collect();
    let value = balance();
    for id in 0..accounts {
        let key = bank_account_key(id);
        let slot = ordo_engine::partition::slot_of_key(&key);
        stores[slot].put(key.as_slice().into(), value.as_slice().into());
    }
    stores
}

/// The same accounts, each slot's built in one go from its sorted
/// entries (as a snapshot restore builds them).
fn stores_by_restore(accounts: u64) -> Vec<StateStore> {
    let value = balance();
    let mut keys_by_slot: Vec<Vec<Vec<u8>>> = vec![Vec::new(); SLOTS];
    for id in 0..accounts {
        let key = bank_account_key(id);
        keys_by_slot[ordo_engine::partition::slot_of_key(&key)].push(key);
    }
    keys_by_slot
        .into_iter()
        .map(|mut keys| {
            keys.sort();
            let entries: Vec<(&[u8], &[u8])> = keys
                .iter()
                .map(|key| (key.as_slice(), value.as_slice()))
                .collect();
            StateStore::from_sorted(&entries)
        })
        .collect()
}

/// Heap bytes per account of what `build` returns.
fn heap_bytes_per_account(accounts: u64, build: fn(u64) -> Vec<StateStore>) -> f64 {
    let before = HEAP_BYTES.load(Ordering::Relaxed);
    let stores = build(accounts);
    let held = HEAP_BYTES.load(Ordering::Relaxed) - before;
    assert_eq!(
        stores.iter().map(StateStore::len).sum::<usize>() as u64,
        accounts
    );
    drop(stores);
    held as f64 / accounts as f64
}

fn report_memory() {
    let sizes = std::env::var("STATE_BENCH_ACCOUNTS").unwrap_or_else(|_| "1000000".into());
    for accounts in sizes.split(',') {
        let accounts: u64 = accounts
            .trim()
            .parse()
            .expect("STATE_BENCH_ACCOUNTS is a comma-separated list of counts");
        let by_put = heap_bytes_per_account(accounts, stores_by_put);
        let by_restore = heap_bytes_per_account(accounts, stores_by_restore);
        println!(
            "state memory: {accounts} accounts in {SLOTS} slot stores: \
             {by_put:.1} heap bytes/account opened by puts, {by_restore:.1} restored from sorted entries"
        );
    }
}

fn point_operations(c: &mut Criterion) {
    report_memory();
    if std::env::var_os("STATE_BENCH_MEMORY_ONLY").is_some() {
        return;
    }
    let mut group = c.benchmark_group("state");
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for accounts in [100_000u64, 1_000_000] {
        // One slot store, holding what a slot holds at this size.
        let store = stores_by_put(accounts).swap_remove(3);
        let keys: Vec<Vec<u8>> = store.iter().map(|(key, _)| key.to_vec()).collect();
        let missing: Vec<Vec<u8>> = (accounts..accounts + 4096).map(bank_account_key).collect();
        // A fixed pseudo-random walk over the keys, so lookups miss the
        // cache as they do under a uniform workload.
        let order: Vec<usize> = (0..4096u64)
            .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as usize % keys.len())
            .collect();
        group.bench_function(BenchmarkId::new("get_hit", accounts), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % order.len();
                black_box(store.get(&keys[order[i]]))
            })
        });
        group.bench_function(BenchmarkId::new("get_miss", accounts), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % missing.len();
                black_box(store.get(&missing[i]))
            })
        });
        let mut updated = store.clone();
        let value = balance();
        group.bench_function(BenchmarkId::new("put_same_size", accounts), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % order.len();
                updated.put(keys[order[i]].as_slice().into(), value.as_slice().into());
            })
        });
        group.bench_function(BenchmarkId::new("range_100", accounts), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % order.len();
                black_box(store.range(&keys[order[i]], None).take(100).count())
            })
        });
    }
    group.finish();
}

/// One slot's store of `accounts` accounts whose next key creation
/// merges its recent keys into the sorted index, and that key. The
/// accounts go straight into the index (they come in order); then keys
/// just after existing accounts' keys (so below the last indexed key)
/// go to the recent B-tree, as many as the store takes before the merge
/// is due.
fn store_at_the_brink_of_a_merge(accounts: u64) -> (StateStore, Vec<u8>) {
    let value = balance();
    let mut store = StateStore::new();
    let mut ids = Vec::new();
    for id in 0..accounts {
        let key = bank_account_key(id);
        if ordo_engine::partition::slot_of_key(&key) == 3 {
            store.put(key.as_slice().into(), value.as_slice().into());
            ids.push(id);
        }
    }
    let between = |id: u64| {
        let mut key = bank_account_key(id);
        key.push(0);
        key
    };
    // `StateStore::key_changed`: due once the changes exceed
    // max(1024, indexed keys / 8).
    let due = (ids.len() / 8).max(1024);
    for &id in ids.iter().step_by(ids.len() / due).take(due) {
        store.put(between(id).as_slice().into(), value.as_slice().into());
    }
    assert_eq!(store.recent_keys(), due, "no merge before the brink");
    let key = between(ids[1]);
    let mut merged = store.clone();
    merged.put(key.as_slice().into(), value.as_slice().into());
    assert_eq!(merged.recent_keys(), 0, "the next key creation merges");
    (store, key)
}

/// The executor's pause when a key creation rebuilds a slot's sorted
/// index: `merge_pause/N` is that one `put` in one slot's store (1/16 of
/// N accounts), with an eighth as many keys waiting in the B-tree.
fn merge_pause(c: &mut Criterion) {
    if std::env::var_os("STATE_BENCH_MEMORY_ONLY").is_some() {
        return;
    }
    let mut group = c.benchmark_group("state");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for accounts in [1_000_000u64, 10_000_000] {
        let (brink, key) = store_at_the_brink_of_a_merge(accounts);
        let value = balance();
        group.bench_function(BenchmarkId::new("merge_pause", accounts), |b| {
            b.iter_batched(
                || brink.clone(),
                |mut store| {
                    store.put(key.as_slice().into(), value.as_slice().into());
                    store
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, point_operations, merge_pause);
criterion_main!(benches);

//! Misbehaving procedures, for the engine's tests. Each one breaks a rule
//! or a limit on purpose; none of them is an example to follow.
//!
//! Raw keys written here start with `hostile/`, except where the caller
//! chooses the key, and the partition-declaration procedures, which write
//! the table `hostile_p` (`u64` -> `u64`; a key's partition is the key).
//! Procedures that write nothing are marked `read_only`.

use core::hint::black_box;

use ordo_sdk::{Bytes, Table, get_raw, now_ms, procedure, put_raw, random_u64, sequence};

/// Written by the partition-declaration procedures: key -> 1.
#[ordo_sdk::table]
const PARTITIONED: Table<u64, u64> = Table::new("hostile_p");

/// Written by the procedure-contract probes (`contract_*`, `alias_*`,
/// `sneaky_*`): key -> value.
const CONTRACT: Table<u64, u64> = Table::new("hostile_c");

/// An alias of `Result`, as users write them: `Err` must abort through it
/// exactly as through `Result` itself.
type Res<T> = Result<T, String>;

/// Loops forever (until the engine runs out of fuel for it).
#[procedure(read_only)]
fn spin() {
    let mut i = 0u64;
    loop {
        i = black_box(i.wrapping_add(1));
    }
}

/// Allocates memory and writes to it forever, keeping all of it, until the
/// engine's memory limit stops it.
#[procedure(read_only)]
fn bomb() {
    const CHUNK: usize = 1 << 20;
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        // Touch every page so the memory is really used.
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = (i >> 12) as u8 | 1;
        }
        hoard.push(black_box(chunk));
    }
}

/// Recurses `depth` levels deep (non-tail: every level combines its
/// callee's result) and returns a value computed from all levels. A large
/// `depth` overflows the stack.
#[procedure(read_only)]
fn recurse(depth: u64) -> u64 {
    descend(black_box(depth))
}

#[inline(never)]
fn descend(n: u64) -> u64 {
    if n == 0 {
        return 1;
    }
    let below = descend(n - 1);
    // A combination that is neither associative nor commutative, so the
    // recursion cannot be turned into a loop.
    (below.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (below >> 3)
}

/// Panics: the transaction aborts with kind `trap` and the panic's
/// place and message.
#[procedure(read_only)]
fn panic() {
    panic!("hostile: deliberate panic");
}

/// Executes the wasm `unreachable` instruction.
#[procedure(read_only)]
fn trap() {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    unreachable!("hostile: trap");
}

/// Returns `bytes` bytes (plus the encoding's length prefix). Encoded
/// exactly like a `Vec<u8>`, but as [`Bytes`] so that producing a result
/// past the size limit costs little fuel.
#[procedure(read_only)]
fn huge_result(bytes: u32) -> Bytes {
    Bytes(pattern(bytes))
}

/// Writes one raw value of exactly `bytes` bytes under `hostile/huge`.
#[procedure]
fn huge_value(bytes: u32) {
    put_raw(b"hostile/huge", &pattern(bytes));
}

/// Writes `n` distinct raw keys `hostile/w/<i as 4 big-endian bytes>`,
/// each with a 1-byte value.
#[procedure]
fn many_writes(n: u32) {
    let mut key = b"hostile/w/\0\0\0\0".to_vec();
    let at = key.len() - 4;
    for i in 0..n {
        key[at..].copy_from_slice(&i.to_be_bytes());
        put_raw(&key, &[1]);
    }
}

/// Writes raw key `key` (value `x`), then aborts by returning `Err`: the
/// write must not survive. The key is bytes, not a string, so it can take
/// a table's class byte (docs/ABI.md); postcard sends a string the same way.
#[procedure]
fn write_then_abort(key: Vec<u8>) -> Result<(), String> {
    put_raw(&key, b"x");
    Err(format!("hostile: aborting after writing {key:?}"))
}

/// Writes raw key `key` (value `x`), then panics: the write must not
/// survive.
#[procedure]
fn write_then_panic(key: Vec<u8>) {
    put_raw(&key, b"x");
    panic!("hostile: panicking after writing {key:?}");
}

/// Computes NaNs from its inputs in several ways, stores their raw bits
/// under `hostile/nan` and returns the bits of the first, `(a - a) / (b - b)`.
///
/// With finite inputs every one of these is a NaN whose sign and payload
/// are up to the hardware unless the engine canonicalises NaNs; the stored
/// value (and so the state hash) shows whether it does. The value is the
/// concatenation of these little-endian `u64`s (`f32` bits zero-extended):
///
/// 0. `(a - a) / (b - b)` (f64)
/// 1. `sqrt(-(a * a) - 1)` (f64)
/// 2. `(a' - a') / (b' - b')` with `a' = a as f32`, `b' = b as f32` (f32)
/// 3. `sqrt(-(a' * a') - 1)` (f32)
/// 4. `inf - inf`, with `inf = 1 / (b - b)` (f64, NaN when `b - b == 0`)
/// 5. value 0 plus value 1 (f64: NaN propagation)
/// 6. value 2 times `a'` (f32: NaN propagation)
/// 7. value 2 converted to f64
/// 8. value 0 converted to f32
/// 9. `value 0 * 0 + a` (f64)
#[procedure]
#[allow(clippy::eq_op)] // `a - a` is the point: it is not 0 for NaN or infinity.
fn nan(a: f64, b: f64) -> u64 {
    let (a, b) = (black_box(a), black_box(b));
    let (af, bf) = (black_box(a as f32), black_box(b as f32));

    let n0 = (a - a) / (b - b);
    let n1 = (-(a * a) - 1.0).sqrt();
    let n2 = (af - af) / (bf - bf);
    let n3 = (-(af * af) - 1.0).sqrt();
    let inf = 1.0 / (b - b);
    let n4 = black_box(inf) - inf;
    let n5 = black_box(n0) + black_box(n1);
    let n6 = black_box(n2) * af;
    let n7 = black_box(n2) as f64;
    let n8 = black_box(n0) as f32;
    let n9 = black_box(n0) * 0.0 + a;

    let bits: [u64; 10] = [
        n0.to_bits(),
        n1.to_bits(),
        n2.to_bits() as u64,
        n3.to_bits() as u64,
        n4.to_bits(),
        n5.to_bits(),
        n6.to_bits() as u64,
        n7.to_bits(),
        n8.to_bits() as u64,
        n9.to_bits(),
    ];
    let value: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    put_raw(b"hostile/nan", &value);
    bits[0]
}

/// The transaction's context: `(sequence, now_ms, random_u64)`.
#[procedure(read_only)]
fn context() -> (u64, u64, u64) {
    (sequence(), now_ms(), random_u64())
}

/// Returns its argument.
#[procedure(read_only)]
fn echo(data: Vec<u8>) -> Vec<u8> {
    data
}

/// `len` bytes of a fixed pattern: 0, 1, ..., 250, 0, 1, ...
fn pattern(len: u32) -> Vec<u8> {
    let block: Vec<u8> = (0..251u8).collect();
    let len = len as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let n = (len - out.len()).min(block.len());
        out.extend_from_slice(&block[..n]);
    }
    out
}

/// Not misbehaviour but a probe of the host's `scan`: in one transaction,
/// writes `puts` and deletes `deletes` under the raw prefix `scan/`, then
/// scans the prefix and returns each key (without the prefix) with its
/// value's length. The scan must see this transaction's own writes and
/// deletes merged into the committed state, in key order, and must cope
/// with values larger than the SDK's first scan buffer.
#[procedure]
fn scan_merge(puts: Vec<(String, u32)>, deletes: Vec<String>) -> Vec<(String, u32)> {
    for (key, bytes) in &puts {
        let value = vec![0x5a_u8; *bytes as usize];
        put_raw(format!("scan/{key}").as_bytes(), &value);
    }
    for key in &deletes {
        ordo_sdk::delete_raw(format!("scan/{key}").as_bytes());
    }
    ordo_sdk::scan_prefix_raw(b"scan/")
        .map(|(key, value)| {
            let key = String::from_utf8_lossy(&key["scan/".len()..]).into_owned();
            (key, value.len() as u32)
        })
        .collect()
}

/// Declares partition `declared` only, then writes `hostile_p[declared] = 1`
/// and `hostile_p[other] = 1`: the second write is outside the
/// declaration (unless `other == declared`), so the engine must abort the
/// transaction and drop the first write too.
#[procedure(partitions(declared))]
fn undeclared_write(declared: u64, other: u64) {
    PARTITIONED.put(&declared, &1);
    PARTITIONED.put(&other, &1);
}

/// Its partition declaration reads the store (raw key `hostile/x`), which
/// a declaration may not do: the engine must abort the transaction before
/// running it. If it ran, it would write `hostile_p[id] = 1`.
#[procedure(partitions({
    let _ = get_raw(b"hostile/x");
    id
}))]
fn keys_read_store(id: u64) {
    PARTITIONED.put(&id, &1);
}

/// Its partition declaration panics: the engine must abort the
/// transaction before running it. If it ran, it would write
/// `hostile_p[id] = 1`.
#[procedure(partitions(declaration_panics(id)))]
fn keys_panic(id: u64) {
    PARTITIONED.put(&id, &1);
}

fn declaration_panics(id: u64) -> u64 {
    panic!("hostile: deliberate panic while declaring the partitions of {id}")
}

/// Declares no partitions at all (an empty set, unlike a procedure without
/// a declaration, which runs over all partitions), then writes
/// `hostile_p[id] = 1`: every access is undeclared, so the engine must
/// abort the transaction.
#[procedure(partitions(Option::<u64>::None))]
fn declared_nothing(id: u64) {
    PARTITIONED.put(&id, &1);
}

/// Sets `hostile_c[id] = value` (an honest write, to read back).
#[procedure(partitions(id))]
fn contract_set(id: u64, value: u64) {
    CONTRACT.put(&id, &value);
}

/// `hostile_c[id]`, if set.
#[procedure(read_only, partitions(id))]
fn contract_get(id: u64) -> Option<u64> {
    CONTRACT.get(&id)
}

/// Sets `hostile_c[id] = value` and returns `Ok(value)` through the alias
/// `Res`: commits, with the plain value as its result (not `{"Ok": ..}`).
#[procedure(partitions(id))]
fn alias_ok(id: u64, value: u64) -> Res<u64> {
    CONTRACT.put(&id, &value);
    Ok(value)
}

/// Sets `hostile_c[id] = value`, then returns `Err` through the alias
/// `Res`: the transaction must abort (kind `user`, the reason as its
/// message) and the write must not survive.
#[procedure(partitions(id))]
fn alias_err(id: u64, value: u64) -> Res<()> {
    CONTRACT.put(&id, &value);
    Err(format!("should abort: alias_err wrote {value} to {id}"))
}

/// Marked read-only, yet sets `hostile_c[id] = value`: the engine must
/// abort it (kind `read_only`), logged or read locally. Declares nothing,
/// so it runs over every partition.
#[procedure(read_only)]
fn sneaky_put(id: u64, value: u64) {
    CONTRACT.put(&id, &value);
}

/// Marked read-only, yet deletes `hostile_c[id]`: the engine must abort it
/// (kind `read_only`).
#[procedure(read_only, partitions(id))]
fn sneaky_delete(id: u64) {
    CONTRACT.delete(&id);
}

/// Logs `lines` info lines of `bytes` bytes each (over the per-call limits
/// of 16 lines and 2 KiB when large), then one line at every level, writes
/// `hostile/chatty` and returns how many lines it asked for.
#[procedure]
fn chatty(lines: u32, bytes: u32) -> u32 {
    let filler = "x".repeat(bytes as usize);
    for line in 0..lines {
        ordo_sdk::info!("line {line}: {filler}");
    }
    ordo_sdk::error!("an error line");
    ordo_sdk::warn!("a warn line");
    ordo_sdk::info!("an info line");
    ordo_sdk::debug!("a debug line");
    ordo_sdk::trace!("a trace line");
    put_raw(b"hostile/chatty", &sequence().to_le_bytes());
    lines + 5
}

/// Logs a line, then panics: both reach the node's procedure log.
#[procedure(read_only)]
fn log_then_panic(tag: String) {
    ordo_sdk::warn!("about to panic ({tag})");
    panic!("hostile: panicking after logging {tag}");
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "ordo")]
unsafe extern "C" {
    #[link_name = "log"]
    fn raw_log(level: i32, ptr: *const u8, len: i32);
}

/// Calls `ordo.log` with a level the ABI does not have (9).
#[procedure(read_only)]
fn bad_log_level() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the slice is valid; the host refuses the level.
    unsafe {
        raw_log(9, b"level nine".as_ptr(), 10)
    };
}

/// Calls `ordo.log` with a buffer that runs past the end of memory.
#[procedure(read_only)]
fn log_out_of_bounds() {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: deliberately not; the host checks the range and traps.
    unsafe {
        raw_log(3, (i32::MAX - 8) as usize as *const u8, 4096)
    };
}

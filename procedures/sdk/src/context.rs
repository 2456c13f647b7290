//! What a transaction knows about itself: its sequence number, its
//! timestamp, deterministic randomness, and how to abort.

use core::cell::Cell;
use core::fmt::Display;

use crate::host;

/// Aborts the transaction now with `reason`. Every write it made is
/// dropped, and the client sees the reason.
///
/// Returning `Err(e)` from a procedure does the same with `e.to_string()`;
/// `abort` is for when unwinding to the procedure's return is awkward
/// (deep in a helper, or in a function that returns a plain value).
pub fn abort(reason: impl Display) -> ! {
    let reason = reason.to_string();
    // SAFETY: the slice is valid for reads of its length; `abort` never
    // returns.
    unsafe { host::abort(reason.as_ptr(), host::len_i32(reason.len())) }
}

/// This transaction's sequence number: its position in the log. Strictly
/// increasing from one transaction to the next, so it can be used as a
/// fencing token or a unique id.
pub fn sequence() -> u64 {
    // SAFETY: no arguments.
    unsafe { host::sequence() as u64 }
}

/// The log entry's timestamp in milliseconds since the Unix epoch, as
/// assigned by the sequencer. The same on every replica and on replay;
/// not necessarily increasing between transactions.
pub fn now_ms() -> u64 {
    // SAFETY: no arguments.
    unsafe { host::now_ms() as u64 }
}

thread_local! {
    /// SplitMix64 state; `None` until the first `random_u64` of a call.
    static RNG: Cell<Option<u64>> = const { Cell::new(None) };
}

/// Forgets the random state so that the next [`random_u64`] reseeds from
/// this transaction's seed. Called at the start of every procedure call.
pub(crate) fn reset_random() {
    RNG.with(|rng| rng.set(None));
}

/// A deterministic pseudo-random number.
///
/// Each transaction's sequence starts from a seed the host derives from its
/// sequence number (the `random_seed` import), so every replica, and every
/// replay, sees the same numbers in the same order, and two transactions see
/// different ones. The generator is SplitMix64, started from a scrambled
/// seed: fine for sampling and ids, not for cryptography (the seed is
/// predictable).
///
/// The state is reset at the start of every procedure call, so re-running
/// a transaction (on a replica, or on replay) yields the same numbers even
/// if the engine reuses the instance.
pub fn random_u64() -> u64 {
    RNG.with(|rng| {
        let state = match rng.get() {
            Some(state) => state,
            // SAFETY: no arguments.
            None => seed_state(unsafe { host::random_seed() as u64 }),
        };
        let (next, out) = splitmix64(state);
        rng.set(Some(next));
        out
    })
}

/// The generator's first state for a transaction's seed. The seed is
/// scrambled first (MurmurHash3's 64-bit finaliser, a bijection) so that
/// seeds that differ by SplitMix64's own increment, as consecutive seeds
/// derived linearly from sequence numbers might, do not yield overlapping
/// streams.
pub(crate) fn seed_state(seed: u64) -> u64 {
    let mut k = seed;
    k ^= k >> 33;
    k = k.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    k ^= k >> 33;
    k = k.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    k ^ (k >> 33)
}

/// One SplitMix64 step: returns the new state and the output.
pub(crate) fn splitmix64(state: u64) -> (u64, u64) {
    let state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (state, z ^ (z >> 31))
}

//! Lease locks with fencing tokens.
//!
//! `acquire` grants a lock for `lease_ms` milliseconds and returns a
//! fencing token: the granting transaction's sequence number, so tokens
//! only ever grow. A holder that stalls past its lease may still believe it
//! holds the lock; `write_with_token` protects the data from it by refusing
//! any token older than the newest one granted for that lock.
//!
//! Time is the log entry's timestamp (`now_ms`), so every replica agrees on
//! whether a lease has expired.
//!
//! Every procedure declares the lock and data keys it touches
//! (`partitions(...)`): a string key's partition is the string itself.

use ordo_sdk::{Table, now_ms, procedure, sequence};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, ordo_sdk::Schema)]
struct Lock {
    /// The current holder, `None` once released.
    holder: Option<String>,
    /// When the current lease ends (ms since the Unix epoch).
    expires_at_ms: u64,
    /// The newest fencing token granted for this lock.
    token: u64,
}

/// Lock name -> state.
#[ordo_sdk::table]
const LOCKS: Table<String, Lock> = Table::new("lock");
/// Data protected by fencing tokens: key -> value.
#[ordo_sdk::table]
const DATA: Table<String, String> = Table::new("lock_data");

/// Grants lock `name` to `owner` for `lease_ms` milliseconds and returns
/// the new fencing token. Aborts if another owner holds an unexpired
/// lease. The holder may call it again to renew (with a new token).
#[procedure(partitions(name))]
fn acquire(name: String, owner: String, lease_ms: u64) -> Result<u64, String> {
    let now = now_ms();
    if let Some(lock) = LOCKS.get(&name)
        && let Some(holder) = &lock.holder
        && *holder != owner
        && now < lock.expires_at_ms
    {
        return Err(format!(
            "lock {name:?} is held by {holder:?} until {} ms ({} ms from now)",
            lock.expires_at_ms,
            lock.expires_at_ms - now
        ));
    }
    let token = sequence();
    LOCKS.put(
        &name,
        &Lock {
            holder: Some(owner),
            expires_at_ms: now.saturating_add(lease_ms),
            token,
        },
    );
    Ok(token)
}

/// Releases lock `name`. Aborts unless `owner` is its current holder
/// (even an expired one, as long as nobody else has acquired it since).
#[procedure(partitions(name))]
fn release(name: String, owner: String) -> Result<(), String> {
    let mut lock = LOCKS
        .get(&name)
        .ok_or_else(|| format!("no such lock: {name:?}"))?;
    match &lock.holder {
        Some(holder) if *holder == owner => {}
        Some(holder) => {
            return Err(format!(
                "lock {name:?} is held by {holder:?}, not {owner:?}"
            ));
        }
        None => return Err(format!("lock {name:?} is not held")),
    }
    lock.holder = None;
    LOCKS.put(&name, &lock);
    Ok(())
}

/// Stores `value` under `key` on behalf of the holder of `token` for lock
/// `name`. Aborts if `token` is older than the newest token granted for
/// that lock (its holder has been superseded) or was never granted.
#[procedure(partitions(name, key))]
fn write_with_token(name: String, token: u64, key: String, value: String) -> Result<(), String> {
    let lock = LOCKS
        .get(&name)
        .ok_or_else(|| format!("no such lock: {name:?}"))?;
    if token < lock.token {
        return Err(format!(
            "stale fencing token {token} for lock {name:?}: the newest is {}",
            lock.token
        ));
    }
    if token > lock.token {
        return Err(format!(
            "fencing token {token} was never granted for lock {name:?}"
        ));
    }
    DATA.put(&key, &value);
    Ok(())
}

/// The value stored under `key` by `write_with_token`, if any.
#[procedure(read_only, partitions(key))]
fn read(key: String) -> Option<String> {
    DATA.get(&key)
}

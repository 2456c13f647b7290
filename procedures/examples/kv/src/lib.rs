//! A string-keyed store of `i64` values with compare-and-swap and atomic
//! increments.
//!
//! Every procedure touches one key and declares it (`partitions(key)`), so
//! operations on different keys can run in parallel.

use ordo_sdk::{Table, procedure};

/// Key -> value.
#[ordo_sdk::table]
const VALUES: Table<String, i64> = Table::new("kv");

/// The value stored under `key`, or `null` if there is none.
#[procedure(read_only, partitions(key))]
fn get(key: String) -> Option<i64> {
    VALUES.get(&key)
}

/// Stores `value` under `key`.
#[procedure(partitions(key))]
fn put(key: String, value: i64) {
    VALUES.put(&key, &value);
}

/// Deletes `key`; returns whether it existed.
#[procedure(partitions(key))]
fn delete(key: String) -> bool {
    let existed = VALUES.contains(&key);
    VALUES.delete(&key);
    existed
}

/// Sets `key` to `new` if its current value is `expected` (`null`: if it
/// is absent). Returns whether it did.
#[procedure(partitions(key))]
fn cas(key: String, expected: Option<i64>, new: i64) -> bool {
    if VALUES.get(&key) != expected {
        return false;
    }
    VALUES.put(&key, &new);
    true
}

/// Adds `by` to `key`'s value (an absent key counts as 0) and returns the
/// new value.
#[procedure(partitions(key))]
fn incr(key: String, by: i64) -> Result<i64, String> {
    let value = VALUES
        .get(&key)
        .unwrap_or(0)
        .checked_add(by)
        .ok_or_else(|| format!("incrementing {key:?} by {by} overflows i64"))?;
    VALUES.put(&key, &value);
    Ok(value)
}

//! Append-only lists of integers: the list-append workload that
//! consistency checkers (Elle, and `ordo-sim`) use. Every append returns
//! the whole list after it, so a checker sees exactly where in the serial
//! order the append took effect and which appends came before it.
//!
//! Every procedure touches one list and declares it (`partitions(key)`).

use ordo_sdk::{Table, procedure};

/// The most values one list holds; an append past it aborts, so a list
/// (and so an answer) stays well inside one row's size limit.
const LIST_VALUES_MAX: usize = 4_096;

/// List key -> its values, oldest first.
#[ordo_sdk::table]
const LISTS: Table<u64, Vec<u64>> = Table::new("lists");

/// Appends `value` to list `key` (an absent list is empty) and returns the
/// list after the append.
#[procedure(partitions(key))]
fn append(key: u64, value: u64) -> Result<Vec<u64>, String> {
    let mut values = LISTS.get(&key).unwrap_or_default();
    if values.len() >= LIST_VALUES_MAX {
        return Err(format!(
            "list {key} already holds {LIST_VALUES_MAX} values, the most a list holds"
        ));
    }
    values.push(value);
    LISTS.put(&key, &values);
    Ok(values)
}

/// List `key`'s values, oldest first (empty if it does not exist).
#[procedure(read_only, partitions(key))]
fn read(key: u64) -> Vec<u64> {
    LISTS.get(&key).unwrap_or_default()
}

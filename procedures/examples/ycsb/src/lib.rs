//! The operations of the YCSB core workloads (Cooper et al., "Benchmarking
//! Cloud Serving Systems with YCSB", SoCC 2010) as ordo procedures, over
//! one `usertable` of records keyed by `u64`.
//!
//! # Record layout
//!
//! A record is `field_count` fields of bytes (YCSB's default: 10 fields of
//! 100 bytes), stored as **one value per record**: table `usertable`, key
//! the record's `u64`, value the postcard encoding of the list of fields
//! (`Vec<Bytes>`). YCSB reads and scans whole records, so one value makes a
//! read one host call and a scan one entry per record; the price is that
//! an update of one field rewrites the whole record (about 1 KB by
//! default), which is what most key-value bindings of YCSB do too. Fields
//! are [`Bytes`], which postcard copies in one go: a `Vec<u8>` would cost
//! fuel per byte. On the wire a field is a byte string either way.
//!
//! # Loaded contents
//!
//! `ycsb_load` fills field `f` of record `k` with `field_bytes` lowercase
//! letters cycling through the alphabet from letter `(k + f) mod 26`
//! (`k = 0, f = 0`: `abcd…`), so a client can tell what a record held
//! before it was updated.
//!
//! # Partitions
//!
//! A record's partition is its key. The point operations (read, update,
//! insert, read-modify-write) declare it, so operations on different
//! records can run in parallel; `ycsb_scan` reads a range of keys and the
//! loader `ycsb_load` writes one, so they declare nothing and run over all
//! partitions.

use ordo_sdk::{Bytes, Table, abort, procedure};

/// Record key -> its fields.
#[ordo_sdk::table]
const USERTABLE: Table<u64, Vec<Bytes>> = Table::new("usertable");

/// Loads records `first .. first + count`, each of `field_count` fields of
/// `field_bytes` bytes (see the crate documentation for the contents).
/// Aborts, loading none, if any exists.
#[procedure]
fn ycsb_load(first: u64, count: u64, field_count: u32, field_bytes: u32) -> Result<(), String> {
    let end = first.checked_add(count).ok_or("record keys overflow u64")?;
    for key in first..end {
        if USERTABLE.contains(&key) {
            return Err(format!("record {key} already exists"));
        }
        let fields = (0..field_count)
            .map(|field| loaded_field(key, field, field_bytes as usize))
            .collect();
        USERTABLE.put(&key, &fields);
    }
    Ok(())
}

/// Reads record `key` (all its fields).
#[procedure(read_only, partitions(key))]
fn ycsb_read(key: u64) -> Vec<Bytes> {
    record(key)
}

/// Replaces field `field` (from 0) of record `key` with `value`.
#[procedure(partitions(key))]
fn ycsb_update(key: u64, field: u32, value: Bytes) {
    let mut fields = record(key);
    set_field(key, &mut fields, field, value);
    USERTABLE.put(&key, &fields);
}

/// Inserts a new record `key` with `fields`. Aborts if it exists.
#[procedure(partitions(key))]
fn ycsb_insert(key: u64, fields: Vec<Bytes>) -> Result<(), String> {
    if USERTABLE.contains(&key) {
        return Err(format!("record {key} already exists"));
    }
    USERTABLE.put(&key, &fields);
    Ok(())
}

/// Reads up to `count` records in key order, from the first key `>=
/// start`, as `(key, fields)` pairs.
#[procedure(read_only)]
fn ycsb_scan(start: u64, count: u32) -> Vec<(u64, Vec<Bytes>)> {
    USERTABLE.scan(start..).take(count as usize).collect()
}

/// Workload F's read-modify-write: reads record `key`, replaces field
/// `field` with `value`, writes it back, and returns the record as it was
/// read.
#[procedure(partitions(key))]
fn ycsb_read_modify_write(key: u64, field: u32, value: Bytes) -> Vec<Bytes> {
    let read = record(key);
    let mut fields = read.clone();
    set_field(key, &mut fields, field, value);
    USERTABLE.put(&key, &fields);
    read
}

fn record(key: u64) -> Vec<Bytes> {
    USERTABLE
        .get(&key)
        .unwrap_or_else(|| abort(format_args!("no such record: {key}")))
}

fn set_field(key: u64, fields: &mut [Bytes], field: u32, value: Bytes) {
    let count = fields.len();
    let slot = fields.get_mut(field as usize).unwrap_or_else(|| {
        abort(format_args!(
            "record {key} has {count} fields, so there is no field {field}"
        ))
    });
    *slot = value;
}

/// Field `field` of record `key` as loaded: `len` letters cycling through
/// the alphabet, from letter `(key + field) mod 26`.
fn loaded_field(key: u64, field: u32, len: usize) -> Bytes {
    const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz";
    let mut start = ((key % 26 + field as u64 % 26) % 26) as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let take = (len - out.len()).min(26);
        out.extend_from_slice(&LETTERS[start..start + take]);
        start = (start + take) % 26;
    }
    Bytes(out)
}

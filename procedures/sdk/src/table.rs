//! Typed tables over the raw key-value store.

use alloc::vec::Vec;
use core::borrow::Borrow;
use core::cell::RefCell;
use core::marker::PhantomData;
use core::ops::{Bound, RangeBounds};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::key::{EncodeKey, KeyPrefix, OrderedKey};
use crate::raw::{RawScan, delete_raw, put_raw, scan_raw};

/// A typed view of the part of the store that belongs to one table.
///
/// Keys are stored as `name` bytes, a `0x00` separator, then the key's
/// order-preserving encoding ([`OrderedKey`]); values are postcard-encoded.
/// Table names may not be empty or contain `0x00`, so no two tables share a
/// key. Declare tables as constants:
///
/// ```
/// use ordo_sdk::Table;
///
/// const ACCOUNTS: Table<u64, i64> = Table::new("acct");
/// const ORDERS: Table<(String, u64), Vec<u8>> = Table::new("orders");
/// ```
///
/// Reads see the transaction's own earlier writes. Every method that
/// touches the store must run inside a procedure (it calls the host).
///
/// Postcard encodes a `Vec<u8>` value one element at a time, which costs
/// fuel per byte on both ends; for large blobs use [`Bytes`](crate::Bytes)
/// as the value type.
pub struct Table<K, V> {
    name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K, V> Copy for Table<K, V> {}

impl<K, V> core::fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table").field("name", &self.name).finish()
    }
}

impl<K, V> Table<K, V> {
    /// A table named `name`.
    ///
    /// # Panics
    ///
    /// If `name` is empty or contains a `0x00` byte. In a `const` item
    /// this is a compile error.
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        assert!(!bytes.is_empty(), "table name must not be empty");
        let mut i = 0;
        while i < bytes.len() {
            assert!(bytes[i] != 0, "table name must not contain a NUL byte");
            i += 1;
        }
        Table {
            name,
            _types: PhantomData,
        }
    }

    /// The table's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The bytes every key of this table starts with: the name and `0x00`.
    pub fn prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(self.name.len() + 1);
        prefix.extend_from_slice(self.name.as_bytes());
        prefix.push(0);
        prefix
    }

    /// The raw store key under which `key` lives in this table.
    pub fn raw_key<Q: EncodeKey + ?Sized>(&self, key: &Q) -> Vec<u8> {
        let mut raw = self.prefix();
        key.encode_key(&mut raw);
        raw
    }

    /// Runs `f` on the raw key, built in a reused scratch buffer so point
    /// operations allocate nothing.
    fn with_raw_key<Q: EncodeKey + ?Sized, R>(&self, key: &Q, f: impl FnOnce(&[u8]) -> R) -> R {
        with_scratch(&KEY_SCRATCH, |raw| {
            raw.extend_from_slice(self.name.as_bytes());
            raw.push(0);
            key.encode_key(raw);
            f(raw)
        })
    }
}

thread_local! {
    // wasm32 has no threads, so these are plain statics in practice.
    static KEY_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static VALUE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Lends a cleared scratch buffer. Taking it out of the cell (rather than
/// borrowing) keeps a nested use safe: it just starts from a new buffer.
fn with_scratch<R>(
    cell: &'static std::thread::LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    let mut buffer = cell.with(|cell| cell.take());
    buffer.clear();
    let result = f(&mut buffer);
    cell.with(|cell| cell.replace(buffer));
    result
}

impl<K: OrderedKey, V: Serialize + DeserializeOwned> Table<K, V> {
    /// Reads the value stored under `key`.
    ///
    /// `key` may be anything `K` borrows as, e.g. a `&str` for a
    /// `Table<String, _>`. Aborts the transaction if the stored bytes do
    /// not decode as a `V`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: EncodeKey + ?Sized,
    {
        self.with_raw_key(key, |raw| {
            with_scratch(&VALUE_SCRATCH, |value| {
                crate::raw::get_into(raw, value).then(|| self.decode_value(value))
            })
        })
    }

    /// Stores `value` under `key`, replacing any previous value.
    pub fn put<Q>(&self, key: &Q, value: &V)
    where
        K: Borrow<Q>,
        Q: EncodeKey + ?Sized,
    {
        with_scratch(&VALUE_SCRATCH, |bytes| {
            let encoded = postcard::to_extend(value, core::mem::take(bytes)).unwrap_or_else(|e| {
                crate::abort(format_args!(
                    "table `{}`: value could not be encoded: {e}",
                    self.name
                ))
            });
            *bytes = encoded;
            self.with_raw_key(key, |raw| put_raw(raw, bytes));
        })
    }

    /// Deletes `key` (a no-op if it is absent).
    pub fn delete<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: EncodeKey + ?Sized,
    {
        self.with_raw_key(key, delete_raw);
    }

    /// Whether `key` has a value. (Costs the same as [`get`](Self::get)
    /// minus decoding the value.)
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: EncodeKey + ?Sized,
    {
        self.with_raw_key(key, |raw| {
            with_scratch(&VALUE_SCRATCH, |value| crate::raw::get_into(raw, value))
        })
    }

    /// Every entry of the table, in key order.
    pub fn iter(&self) -> Iter<K, V> {
        self.scan(..)
    }

    /// The entries whose keys lie in `range`, in key order:
    /// `ACCOUNTS.scan(10..20)`, `ACCOUNTS.scan(100..)`, `T.scan(..)`.
    pub fn scan<R: RangeBounds<K>>(&self, range: R) -> Iter<K, V> {
        let prefix = self.prefix();
        let start = match range.start_bound() {
            Bound::Included(k) => self.raw_key(k),
            Bound::Excluded(k) => {
                let mut raw = self.raw_key(k);
                raw.push(0);
                raw
            }
            Bound::Unbounded => prefix.clone(),
        };
        let end = match range.end_bound() {
            Bound::Included(k) => {
                let mut raw = self.raw_key(k);
                raw.push(0);
                raw
            }
            Bound::Excluded(k) => self.raw_key(k),
            // The name followed by 0x01: just past every key of the table.
            Bound::Unbounded => {
                let mut end = prefix.clone();
                *end.last_mut().unwrap() = 1;
                end
            }
        };
        Iter {
            raw: scan_raw(&start, Some(&end)),
            prefix_len: prefix.len(),
            name: self.name,
            _types: PhantomData,
        }
    }

    /// The entries whose keys start with `prefix`, in key order. `prefix`
    /// is a leading part of a tuple key: for a `Table<(u64, String), V>`,
    /// `scan_prefix(&7)` yields every key `(7, _)`.
    pub fn scan_prefix<P>(&self, prefix: &P) -> Iter<K, V>
    where
        K: KeyPrefix<P>,
        P: EncodeKey,
    {
        let start = self.raw_key(prefix);
        let raw = crate::raw::scan_prefix_raw(&start);
        Iter {
            raw,
            prefix_len: self.name.len() + 1,
            name: self.name,
            _types: PhantomData,
        }
    }

    fn decode_value(&self, bytes: &[u8]) -> V {
        decode_value(self.name, bytes)
    }
}

fn decode_value<V: DeserializeOwned>(table: &str, bytes: &[u8]) -> V {
    match postcard::from_bytes(bytes) {
        Ok(value) => value,
        Err(e) => crate::abort(format_args!(
            "table `{table}`: stored value does not decode: {e}"
        )),
    }
}

/// Iterator over a [`Table`]'s entries, in key order. Yields `(K, V)`.
///
/// Aborts the transaction if it meets a key or value in the table's range
/// that does not decode (something other than this `Table` wrote it).
pub struct Iter<K, V> {
    raw: RawScan,
    prefix_len: usize,
    name: &'static str,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K: OrderedKey, V: DeserializeOwned> Iterator for Iter<K, V> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        let (raw_key, raw_value) = self.raw.next()?;
        let key = raw_key
            .get(self.prefix_len..)
            .and_then(crate::key::decode_key::<K>)
            .unwrap_or_else(|| {
                crate::abort(format_args!(
                    "table `{}`: stored key {raw_key:02x?} does not decode",
                    self.name
                ))
            });
        Some((key, decode_value(self.name, &raw_value)))
    }
}

impl<K: OrderedKey, V: DeserializeOwned> core::iter::FusedIterator for Iter<K, V> {}

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
/// Keys are stored as `name` bytes, a `0x00` separator, the key type's
/// class byte ([`EncodeKey::KEY_CLASS`]), then the key's order-preserving
/// encoding ([`OrderedKey`]); values are postcard-encoded. Table names may
/// not be empty or contain `0x00`, so no two tables share a key. The class
/// byte is the same for every key of the table, so it does not change the
/// key order; it is there for the host, which reads from it where the
/// key's first component ends: that component is the key's partition key
/// (see [`partition`](crate::partition)). For example the key 5 of a
/// `Table<u64, _>` named `acct` is `acct 0x00 0x08 <5 as 8 big-endian
/// bytes>`, in the partition of those 8 bytes, and every key `(w, ..)` of a
/// `Table<(u32, ..), _>` is in the partition of `w`'s 4 bytes. Declare
/// tables as constants:
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
}

impl<K: EncodeKey, V> Table<K, V> {
    /// The bytes every key of this table starts with: the name, `0x00`,
    /// and `K`'s class byte ([`EncodeKey::KEY_CLASS`]).
    pub fn prefix(&self) -> Vec<u8> {
        let mut prefix = Vec::with_capacity(self.name.len() + 2);
        self.push_prefix(&mut prefix);
        prefix
    }

    /// The raw store key under which `key` lives in this table: the
    /// [`prefix`](Self::prefix), then `key`'s encoding. (Always with `K`'s
    /// class, whatever `Q` is: `K` and the types it borrows as encode
    /// alike.)
    pub fn raw_key<Q: EncodeKey + ?Sized>(&self, key: &Q) -> Vec<u8> {
        let mut raw = self.prefix();
        key.encode_key(&mut raw);
        raw
    }

    fn push_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.push(0);
        out.push(K::KEY_CLASS);
    }

    /// Length of [`prefix`](Self::prefix): where the encoded key starts.
    fn prefix_len(&self) -> usize {
        self.name.len() + 2
    }

    /// Runs `f` on the raw key, built in a reused scratch buffer so point
    /// operations allocate nothing.
    fn with_raw_key<Q: EncodeKey + ?Sized, R>(&self, key: &Q, f: impl FnOnce(&[u8]) -> R) -> R {
        with_scratch(&KEY_SCRATCH, |raw| {
            self.push_prefix(raw);
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
            // Just past every key that starts with the prefix: the name,
            // 0x00 and the class byte plus one (or, for class 0xFF, the
            // name and 0x01). A name is UTF-8, so it contains no 0xFF and
            // there always is such a key.
            Bound::Unbounded => crate::raw::prefix_end(&prefix)
                .unwrap_or_else(|| crate::abort("table prefix has no end")),
        };
        Iter {
            raw: scan_raw(&start, Some(&end)),
            prefix_len: self.prefix_len(),
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
            prefix_len: self.prefix_len(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds<K: OrderedKey, V: DeserializeOwned>(iter: &Iter<K, V>) -> (Vec<u8>, Option<Vec<u8>>) {
        let (start, end) = iter.raw.bounds();
        (start.to_vec(), end.map(<[u8]>::to_vec))
    }

    #[test]
    fn scans_cover_exactly_the_tables_keys() {
        // Building a scan asks the host for nothing until it is iterated.
        const T: Table<u64, u64> = Table::new("t");
        assert_eq!(
            bounds(&T.iter()),
            (b"t\0\x08".to_vec(), Some(b"t\0\x09".to_vec()))
        );
        assert_eq!(
            bounds(&T.scan(5..7)),
            (
                b"t\0\x08\0\0\0\0\0\0\0\x05".to_vec(),
                Some(b"t\0\x08\0\0\0\0\0\0\0\x07".to_vec())
            )
        );
        assert_eq!(
            bounds(&T.scan((Bound::Excluded(5), Bound::Included(7)))),
            (
                b"t\0\x08\0\0\0\0\0\0\0\x05\0".to_vec(),
                Some(b"t\0\x08\0\0\0\0\0\0\0\x07\0".to_vec())
            )
        );
        assert_eq!(T.iter().prefix_len, 3);

        const S: Table<(String, u8), ()> = Table::new("s");
        assert_eq!(
            bounds(&S.iter()),
            (b"s\0\x80".to_vec(), Some(b"s\0\x81".to_vec()))
        );
        assert_eq!(
            bounds(&S.scan_prefix(&"ab".to_string())),
            (b"s\0\x80ab\0\0".to_vec(), Some(b"s\0\x80ab\0\x01".to_vec()))
        );
        assert_eq!(S.scan_prefix(&"ab".to_string()).prefix_len, 3);

        // Class 0xFF: the end is past the name and 0x00.
        struct Whole(u8);
        impl EncodeKey for Whole {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.push(self.0);
            }
        }
        impl OrderedKey for Whole {
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                let (&b, rest) = input.split_first()?;
                *input = rest;
                Some(Whole(b))
            }
        }
        const W: Table<Whole, ()> = Table::new("w");
        assert_eq!(
            bounds(&W.iter()),
            (b"w\0\xff".to_vec(), Some(b"w\x01".to_vec()))
        );
    }
}

//! Partition keys, and declaring which partitions a procedure touches.
//!
//! The engine is partitioned: every raw key belongs to a *partition key*,
//! a byte string the host derives from the key's bytes alone by the rule
//! of [`partition_of`]. For a [`Table`](crate::Table) key the partition key
//! is the first component of the key (the whole key for a scalar key, the
//! first element for a tuple), found through the class byte the table
//! stores after its name (see [key classes](crate::key#key-classes)). So
//! every row of every table whose key starts with the same warehouse id
//! `w` is in the partition of `w`.
//!
//! A procedure may declare, from its arguments alone and before it runs,
//! the partitions it will touch: `#[procedure(partitions(from, to))]`. The
//! engine runs the declaration first, and then, in log order, schedules
//! the transaction on those partitions only, so transactions on disjoint
//! partitions can run in parallel (Calvin-style: locks are taken in log
//! order, so the outcome is the same on every replica). A transaction that
//! touches a key outside its declared partitions is aborted, the same way
//! on every replica (abort kind `undeclared_partition`). A procedure that
//! declares nothing runs over all partitions, serially with respect to
//! every other transaction.
//!
//! A declaration is an expression over the procedure's arguments whose type
//! implements [`Partitions`]; the macro evaluates it into a
//! [`PartitionSet`]. Integers, `bool`, strings and [`Bytes`](crate::Bytes)
//! declare the partition of a table key equal to them; vectors, slices,
//! arrays and `Option`s declare each of their elements. Tuples are not
//! declarable: the partition of a tuple key is its first element's, so
//! declare that (the warehouse id, not `(w_id, d_id)`), or wrap the tuple
//! in [`Key`] if you mean exactly "the partition of this table key".

use alloc::string::String;
use alloc::vec::Vec;

use crate::key::{CLASS_BYTES, CLASS_FIXED_MAX, CLASS_WHOLE, EncodeKey};

/// The partition key of a raw store key: exactly the host's rule.
///
/// Let `i` be the index of the first `0x00` byte (the end of a table's
/// name) and `class` the byte after it; `rest` is everything after the
/// class. Then the partition key is:
///
/// * `class` in `0..=32`: the first `class` bytes of `rest`;
/// * `class == 0x80`: `rest` up to and including the first `0x00 0x00`
///   (skipping escaped `0x00 0xFF` pairs);
/// * `class == 0xFF`: all of `rest`;
///
/// and the whole `raw_key` when the key does not follow that layout: no
/// `0x00`, nothing after it, another class, `rest` too short, a byte
/// string without its terminator or with a `0x00` followed by anything
/// but `0x00` or `0xFF`. So a raw key written with
/// [`put_raw`](crate::put_raw) that is not in table layout is a partition
/// of its own.
///
/// ```
/// use ordo_sdk::{Table, partition_of};
///
/// const ACCOUNTS: Table<u64, i64> = Table::new("acct");
/// assert_eq!(partition_of(&ACCOUNTS.raw_key(&5u64)), 5u64.to_be_bytes());
/// assert_eq!(partition_of(b"hostile/huge"), b"hostile/huge");
/// ```
pub fn partition_of(raw_key: &[u8]) -> &[u8] {
    let Some(separator) = raw_key.iter().position(|&b| b == 0) else {
        return raw_key;
    };
    partition_of_classified(&raw_key[separator + 1..]).unwrap_or(raw_key)
}

/// The partition key of the part of a raw key after the table name's
/// `0x00` (a class byte, then the encoded key), or `None`: the host's code
/// (`ordo_schema::abi`), copied; see `the_host_and_the_guest_agree`.
fn partition_of_classified(classified: &[u8]) -> Option<&[u8]> {
    let (&class, rest) = classified.split_first()?;
    match class {
        0..=CLASS_FIXED_MAX => rest.get(..usize::from(class)),
        CLASS_BYTES => {
            let mut j = 0;
            while j < rest.len() {
                if rest[j] == 0 {
                    match *rest.get(j + 1)? {
                        0 => return Some(&rest[..j + 2]),
                        0xFF => {
                            j += 2;
                            continue;
                        }
                        _ => return None,
                    }
                }
                j += 1;
            }
            None
        }
        CLASS_WHOLE => Some(rest),
        _ => None,
    }
}

/// The partition key of every table key equal to `key`: what
/// [`partition_of`] returns for `table.raw_key(key)`, whatever the table's
/// name. `None` if `K`'s [`KEY_CLASS`](EncodeKey::KEY_CLASS) does not
/// describe its encoding (a bug in a hand-written [`EncodeKey`]: the host
/// would then take the whole raw key, table name included).
///
/// ```
/// use ordo_sdk::partition::partition_of_key;
///
/// // A tuple is in its first element's partition.
/// assert_eq!(partition_of_key(&(7u32, 3u32)), Some(7u32.to_be_bytes().to_vec()));
/// assert_eq!(partition_of_key("ab"), Some(b"ab\0\0".to_vec()));
/// ```
pub fn partition_of_key<K: EncodeKey + ?Sized>(key: &K) -> Option<Vec<u8>> {
    let mut classified = Vec::with_capacity(16);
    classified.push(K::KEY_CLASS);
    key.encode_key(&mut classified);
    partition_of_classified(&classified).map(<[u8]>::to_vec)
}

/// The partitions a procedure declares: a set of partition keys.
///
/// `#[procedure(partitions(...))]` builds one from its expressions through
/// [`Partitions`]; call [`key`](Self::key) and [`raw`](Self::raw) directly
/// when implementing [`Partitions`] for your own types.
///
/// The keys are written straight into the list the host receives (see
/// [`encode`](Self::encode)), one buffer for the whole declaration: a
/// declaration runs before every call of its procedure, so it must be
/// cheap. The host sorts the keys and drops duplicates, so the order of
/// declarations does not matter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionSet {
    /// `u32 LE count`, then per key `u32 LE length` and its bytes.
    encoded: Vec<u8>,
    count: u32,
    error: Option<String>,
}

impl Default for PartitionSet {
    fn default() -> Self {
        Self::new()
    }
}

impl PartitionSet {
    pub fn new() -> Self {
        let mut encoded = Vec::with_capacity(64);
        encoded.extend_from_slice(&[0; 4]);
        PartitionSet {
            encoded,
            count: 0,
            error: None,
        }
    }

    /// Declares the partition of `key`: the partition every table key
    /// equal to `key` is in (for a tuple, its first element's).
    pub fn key<K: EncodeKey + ?Sized>(&mut self, key: &K) {
        let length_at = self.encoded.len();
        self.encoded.extend_from_slice(&[0; 4]);
        let class_at = self.encoded.len();
        self.encoded.push(K::KEY_CLASS);
        key.encode_key(&mut self.encoded);
        // The partition key always starts right after the class byte.
        match partition_of_classified(&self.encoded[class_at..]).map(<[u8]>::len) {
            Some(len) => {
                self.encoded
                    .copy_within(class_at + 1..class_at + 1 + len, class_at);
                self.encoded.truncate(class_at + len);
                self.finish_key(length_at, len);
            }
            None => {
                let encoded = self.encoded[class_at + 1..].to_vec();
                self.encoded.truncate(length_at);
                if self.error.is_none() {
                    self.error = Some(format!(
                        "cannot declare the partition of key {encoded:02x?}: its class {:#04x} \
                         does not describe its encoding (check EncodeKey::KEY_CLASS)",
                        K::KEY_CLASS
                    ));
                }
            }
        }
    }

    /// Declares a partition key verbatim. For a raw key that does not
    /// follow the table layout, its partition key is the whole raw key;
    /// [`raw_key`](Self::raw_key) works that out for any raw key.
    pub fn raw(&mut self, partition_key: &[u8]) {
        let length_at = self.encoded.len();
        self.encoded.extend_from_slice(&[0; 4]);
        self.encoded.extend_from_slice(partition_key);
        self.finish_key(length_at, partition_key.len());
    }

    /// Declares the partition of the raw key `raw_key` ([`partition_of`]).
    pub fn raw_key(&mut self, raw_key: &[u8]) {
        self.raw(partition_of(raw_key));
    }

    fn finish_key(&mut self, length_at: usize, len: usize) {
        match (u32::try_from(len), self.count.checked_add(1)) {
            (Ok(len), Some(count)) => {
                self.encoded[length_at..length_at + 4].copy_from_slice(&len.to_le_bytes());
                self.count = count;
            }
            _ => {
                self.encoded.truncate(length_at);
                if self.error.is_none() {
                    self.error = Some("the partition list is too large".into());
                }
            }
        }
    }

    /// The declared partition keys, sorted and without duplicates (as the
    /// host will see them), or why the declaration failed.
    pub fn into_keys(self) -> Result<Vec<Vec<u8>>, String> {
        let encoded = self.encode()?;
        let mut rest = &encoded[4..];
        let mut keys = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_at(4);
            let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
            keys.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// The list the `ordo_keys_*` export hands to the host: `u32 LE
    /// count`, then per key `u32 LE length` and its bytes, in declaration
    /// order (the host sorts them and drops duplicates).
    pub fn encode(mut self) -> Result<Vec<u8>, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.encoded[..4].copy_from_slice(&self.count.to_le_bytes());
        Ok(self.encoded)
    }
}

/// A value that names partitions: what the expressions of
/// `#[procedure(partitions(...))]` must be.
///
/// | type | declares |
/// | --- | --- |
/// | `u8` … `u128`, `i8` … `i128`, `bool` | the partition of a table key equal to it (the key's bytes) |
/// | `String`, `str`, [`Bytes`](crate::Bytes) | the partition of a byte-string table key equal to it |
/// | [`Key<K>`] | the partition of the table key `K` (for tuples: its first element's) |
/// | `&T`, `Vec<T>`, `[T]`, `[T; N]` | each element's |
/// | `Option<T>` | `Some`: the value's; `None`: nothing |
///
/// Tuples are deliberately not declarable: `partitions((w_id, d_id))`
/// might read as "both", but the partition of a `(w_id, d_id)` table key is
/// `w_id`'s alone. Declare the first key component (`partitions(w_id)`),
/// each id separately (`partitions(from, to)`), or say exactly what you
/// mean with [`Key`].
///
/// Beware that a `Vec<u8>` or `[u8]` is a list of `u8`s here (one
/// partition per byte, as for any vector): to declare a byte-string key,
/// use [`Bytes`](crate::Bytes) or `Key(bytes)`.
///
/// `usize`, `isize`, `char` and floats are not key types, so they declare
/// nothing and do not implement this trait.
///
/// Implement it for your own argument types by calling
/// [`PartitionSet::key`] (or [`raw`](PartitionSet::raw)) for each
/// partition they name.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not name partitions (it does not implement `ordo_sdk::Partitions`)",
    label = "not a partition declaration",
    note = "declare key values such as `w_id` or `from, to`; for a tuple key declare its first element, or wrap the key in `ordo_sdk::Key`"
)]
pub trait Partitions {
    /// Adds the partitions `self` names to `set`.
    fn declare(&self, set: &mut PartitionSet);
}

/// Declares the partition of the table key it wraps, whatever its type
/// (any [`EncodeKey`], tuples included): `Key((w_id, d_id))` declares
/// `w_id`'s partition, and `Key(bytes)` for a `Vec<u8>` declares one
/// byte-string key rather than one key per byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key<K>(pub K);

impl<K: EncodeKey> Partitions for Key<K> {
    fn declare(&self, set: &mut PartitionSet) {
        set.key(&self.0);
    }
}

macro_rules! scalar_partitions {
    ($($t:ty),*) => {$(
        impl Partitions for $t {
            fn declare(&self, set: &mut PartitionSet) {
                set.key(self);
            }
        }
    )*};
}
scalar_partitions!(
    u8,
    u16,
    u32,
    u64,
    u128,
    i8,
    i16,
    i32,
    i64,
    i128,
    bool,
    str,
    String,
    crate::Bytes
);

impl<T: Partitions + ?Sized> Partitions for &T {
    fn declare(&self, set: &mut PartitionSet) {
        (**self).declare(set);
    }
}

impl<T: Partitions> Partitions for [T] {
    fn declare(&self, set: &mut PartitionSet) {
        for item in self {
            item.declare(set);
        }
    }
}

impl<T: Partitions, const N: usize> Partitions for [T; N] {
    fn declare(&self, set: &mut PartitionSet) {
        self.as_slice().declare(set);
    }
}

impl<T: Partitions> Partitions for Vec<T> {
    fn declare(&self, set: &mut PartitionSet) {
        self.as_slice().declare(set);
    }
}

impl<T: Partitions> Partitions for Option<T> {
    fn declare(&self, set: &mut PartitionSet) {
        if let Some(value) = self {
            value.declare(set);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bytes, Table};

    fn declared<P: Partitions + ?Sized>(p: &P) -> Vec<Vec<u8>> {
        let mut set = PartitionSet::new();
        p.declare(&mut set);
        set.into_keys().unwrap()
    }

    /// Every raw key up to 7 bytes over the bytes the rule looks at: the
    /// guest's partition key is the host's (`ordo_schema::abi`).
    ///
    /// The guest keeps its own copy of the code rather than calling the
    /// host's: moving it into `ordo_schema` changed the compiled example
    /// modules (code placement and the line numbers in their panic
    /// locations), and with them every module's fingerprint and the state
    /// hash of any log that deploys one. Lines above the partition code
    /// in this file are part of those bytes too.
    #[test]
    fn the_host_and_the_guest_agree() {
        const ALPHABET: [u8; 7] = [0x00, 0x01, 0x02, 0x20, 0x80, 0xFF, b'a'];
        let mut raw = Vec::new();
        let mut checked = 0u64;
        for len in 0..=7u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                raw.clear();
                for _ in 0..len {
                    raw.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                assert_eq!(
                    partition_of(&raw),
                    ordo_schema::abi::partition_key(&raw),
                    "{raw:02x?}"
                );
                assert_eq!(
                    partition_of_classified(&raw),
                    ordo_schema::abi::partition_key_of_classified(&raw),
                    "{raw:02x?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, (7u64.pow(8) - 1) / 6);
        // Past the alphabet: a fixed class at its widest and every class.
        for class in 0..=u8::MAX {
            let mut raw = b"t\0".to_vec();
            raw.push(class);
            raw.extend_from_slice(&[7; 40]);
            raw.extend_from_slice(b"\0\0");
            assert_eq!(partition_of(&raw), ordo_schema::abi::partition_key(&raw));
        }
    }

    #[test]
    fn partition_of_fixed_classes() {
        assert_eq!(
            partition_of(b"acct\0\x08\0\0\0\0\0\0\0\x05"),
            b"\0\0\0\0\0\0\0\x05"
        );
        // Longer keys: only the first component.
        assert_eq!(
            partition_of(b"t\0\x04\0\0\0\x07\0\0\0\x01\x02"),
            b"\0\0\0\x07"
        );
        assert_eq!(partition_of(b"t\0\x01\x01"), b"\x01");
        // Class 0: the empty partition key.
        assert_eq!(partition_of(b"t\0\x00"), b"");
        assert_eq!(partition_of(b"t\0\x00abc"), b"");
        // The largest fixed width.
        let mut raw = b"t\0\x20".to_vec();
        raw.extend_from_slice(&[7; 40]);
        assert_eq!(partition_of(&raw), &[7; 32]);
        // Too short: the whole raw key.
        assert_eq!(partition_of(b"t\0\x08\0\0\0"), b"t\0\x08\0\0\0");
        assert_eq!(partition_of(b"t\0\x20\x01"), b"t\0\x20\x01");
    }

    #[test]
    fn partition_of_byte_string_class() {
        assert_eq!(partition_of(b"kv\0\x80ab\0\0"), b"ab\0\0");
        assert_eq!(partition_of(b"kv\0\x80ab\0\0\0\0\0\x09"), b"ab\0\0");
        // Escaped NULs are part of the string.
        assert_eq!(partition_of(b"kv\0\x80a\0\xffb\0\0xyz"), b"a\0\xffb\0\0");
        assert_eq!(
            partition_of(b"kv\0\x80\0\xff\0\xff\0\0"),
            b"\0\xff\0\xff\0\0"
        );
        assert_eq!(partition_of(b"kv\0\x80\0\0"), b"\0\0");
        // Malformed: the whole raw key.
        for raw in [
            &b"kv\0\x80"[..],
            b"kv\0\x80ab",
            b"kv\0\x80ab\0",
            b"kv\0\x80ab\0\x01\0\0",
            b"kv\0\x80a\0\xff",
            b"kv\0\x80a\0\xff\0",
        ] {
            assert_eq!(partition_of(raw), raw, "{raw:02x?}");
        }
    }

    #[test]
    fn partition_of_whole_class_and_other_layouts() {
        assert_eq!(partition_of(b"t\0\xffabc"), b"abc");
        assert_eq!(partition_of(b"t\0\xff"), b"");
        assert_eq!(partition_of(b"t\0\xff\0\0\x01"), b"\0\0\x01");
        // No 0x00, nothing after it, or an unknown class: the whole key.
        for raw in [
            &b""[..],
            b"hostile/huge",
            b"t\0",
            b"\0",
            b"t\0\x21abcdefghijklmnopqrstuvwxyzabcdefghijkl",
            b"t\0\x7fabc",
            b"t\0\x81abc",
            b"t\0\xfeabc",
        ] {
            assert_eq!(partition_of(raw), raw, "{raw:02x?}");
        }
        // An empty table name is not a table, but the rule still applies.
        assert_eq!(partition_of(b"\0\x01\x05"), b"\x05");
    }

    #[test]
    fn tuples_are_in_their_first_elements_partition() {
        let mut tuple = PartitionSet::new();
        tuple.key(&(7u32, 3u32, 9u64));
        let mut first = PartitionSet::new();
        first.key(&7u32);
        assert_eq!(tuple.into_keys(), first.into_keys());
        assert_eq!(
            declared(&Key(("ab".to_string(), 1u64))),
            declared(&"ab".to_string())
        );
        assert_eq!(
            declared(&Key((7u32, 3u32))),
            vec![7u32.to_be_bytes().to_vec()]
        );
        assert_eq!(declared(&Key(((), 3u32))), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn table_keys_and_declarations_agree() {
        fn check<K: EncodeKey + Partitions + ?Sized>(table_raw_key: Vec<u8>, key: &K) {
            let class = K::KEY_CLASS;
            let separator = table_raw_key.iter().position(|&b| b == 0).unwrap();
            assert_eq!(table_raw_key[separator + 1], class, "{table_raw_key:02x?}");
            let partition = partition_of(&table_raw_key).to_vec();
            assert_eq!(Some(partition.clone()), partition_of_key(key));
            assert_eq!(declared(key), vec![partition]);
        }
        const U32: Table<u32, ()> = Table::new("u32");
        const U64: Table<u64, ()> = Table::new("u64");
        const STRING: Table<String, ()> = Table::new("string");
        const BYTES: Table<Bytes, ()> = Table::new("bytes");
        const TUPLE: Table<(u32, u32, u64), ()> = Table::new("tuple");
        const STRING_TUPLE: Table<(String, u64), ()> = Table::new("string_tuple");
        const SIGNED: Table<i64, ()> = Table::new("signed");

        check(U32.raw_key(&5u32), &5u32);
        assert_eq!(partition_of(&U32.raw_key(&5u32)), 5u32.to_be_bytes());
        check(U64.raw_key(&u64::MAX), &u64::MAX);
        check(U64.raw_key(&0u64), &0u64);
        check(SIGNED.raw_key(&-3i64), &-3i64);
        for s in ["", "a", "a\0b", "\0", "\u{ff}"] {
            check(STRING.raw_key(s), s);
            check(STRING.raw_key(s), &s.to_string());
            check(
                BYTES.raw_key(&Bytes(s.as_bytes().to_vec())),
                &Bytes(s.into()),
            );
        }
        // Tuples: the first element's partition, the same for every row
        // of one warehouse.
        let row = TUPLE.raw_key(&(7u32, 2u32, 99u64));
        assert_eq!(row[6], 4, "class byte of a tuple keyed by u32");
        assert_eq!(partition_of(&row), 7u32.to_be_bytes());
        assert_eq!(declared(&7u32), vec![partition_of(&row).to_vec()]);
        assert_eq!(
            partition_of(&TUPLE.raw_key(&(7u32, 9u32, 0u64))),
            partition_of(&U32.raw_key(&7u32))
        );
        let row = STRING_TUPLE.raw_key(&("a\0b".to_string(), 5u64));
        assert_eq!(partition_of(&row), b"a\0\xffb\0\0");
        assert_eq!(declared("a\0b"), vec![partition_of(&row).to_vec()]);
    }

    #[test]
    fn containers_declare_each_element() {
        assert_eq!(
            declared(&vec![3u64, 1, 3]),
            vec![1u64.to_be_bytes().to_vec(), 3u64.to_be_bytes().to_vec()]
        );
        assert_eq!(declared(&[2u8, 1]), vec![vec![1u8], vec![2u8]]);
        assert_eq!(declared(&[2u16][..]), vec![vec![0u8, 2]]);
        assert_eq!(declared(&Some(1u8)), vec![vec![1u8]]);
        assert!(declared(&Option::<u64>::None).is_empty());
        assert!(declared(&Vec::<u64>::new()).is_empty());
        assert_eq!(declared(&&true), vec![vec![1u8]]);
        assert_eq!(declared(&Key(vec![1u8, 2])), vec![b"\x01\x02\0\0".to_vec()]);
        assert_eq!(declared(&Bytes(vec![1, 2])), vec![b"\x01\x02\0\0".to_vec()]);
    }

    #[test]
    fn raw_declarations() {
        let mut set = PartitionSet::new();
        set.raw(b"hostile/huge");
        set.raw_key(b"acct\0\x08\0\0\0\0\0\0\0\x05");
        set.raw_key(b"plain");
        assert_eq!(
            set.into_keys().unwrap(),
            vec![
                b"\0\0\0\0\0\0\0\x05".to_vec(),
                b"hostile/huge".to_vec(),
                b"plain".to_vec()
            ]
        );
    }

    #[test]
    fn the_list_is_length_prefixed_in_declaration_order() {
        let mut set = PartitionSet::new();
        set.raw(b"bb");
        set.raw(b"a");
        set.raw(b"");
        set.raw(b"bb");
        assert_eq!(
            set.clone().encode().unwrap(),
            b"\x04\0\0\0\
              \x02\0\0\0bb\
              \x01\0\0\0a\
              \0\0\0\0\
              \x02\0\0\0bb"
                .to_vec()
        );
        // The host sorts and deduplicates; into_keys shows what it sees.
        assert_eq!(
            set.into_keys().unwrap(),
            vec![b"".to_vec(), b"a".to_vec(), b"bb".to_vec()]
        );
        assert_eq!(PartitionSet::new().encode().unwrap(), b"\0\0\0\0".to_vec());
        let mut set = PartitionSet::new();
        set.key(&258u16);
        assert_eq!(
            set.encode().unwrap(),
            b"\x01\0\0\0\x02\0\0\0\x01\x02".to_vec()
        );
    }

    /// A key type whose class lies about its encoding.
    struct Liar;

    impl EncodeKey for Liar {
        const KEY_CLASS: u8 = 8;
        fn encode_key(&self, out: &mut Vec<u8>) {
            out.extend_from_slice(&[1, 2]);
        }
    }

    #[test]
    fn a_key_whose_class_does_not_match_fails_the_declaration() {
        assert_eq!(partition_of_key(&Liar), None);
        let mut set = PartitionSet::new();
        set.key(&1u64);
        set.key(&Liar);
        let error = set.encode().unwrap_err();
        assert!(error.contains("[01, 02]"), "{error}");
        assert!(error.contains("0x08"), "{error}");
    }

    #[test]
    fn user_keys_default_to_whole() {
        struct Whole(u32);
        impl EncodeKey for Whole {
            fn encode_key(&self, out: &mut Vec<u8>) {
                (self.0, 1u8).encode_key(out)
            }
        }
        assert_eq!(Whole::KEY_CLASS, CLASS_WHOLE);
        assert_eq!(partition_of_key(&Whole(2)), Some(vec![0, 0, 0, 2, 1]));
        const T: Table<Whole, ()> = Table::new("w");
        let raw = T.raw_key(&Whole(2));
        assert_eq!(raw, b"w\0\xff\0\0\0\x02\x01");
        assert_eq!(partition_of(&raw), &[0, 0, 0, 2, 1]);
    }
}

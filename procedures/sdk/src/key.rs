//! Order-preserving key encodings.
//!
//! A [`Table`](crate::Table) stores each key as bytes whose lexicographic
//! order is the key's natural order, so scans come back in key order and
//! ranges select what they look like they select:
//!
//! | type | encoding |
//! | --- | --- |
//! | `()` | nothing |
//! | `bool` | one byte, `0` or `1` |
//! | `u8`, `u16`, `u32`, `u64`, `u128` | big-endian |
//! | `i8`, `i16`, `i32`, `i64`, `i128` | big-endian with the sign bit flipped |
//! | `String`, `str`, `Vec<u8>`, `[u8]` | bytes with `0x00` escaped as `0x00 0xFF`, then the terminator `0x00 0x00` |
//! | tuples of 1 to 4 keys | the elements' encodings, concatenated |
//!
//! Every encoding is self-delimiting (no key's encoding is a proper prefix
//! of another's of the same type), which is what makes the tuple encoding
//! order-preserving, and lets a tuple's leading elements act as a prefix
//! (see [`Table::scan_prefix`](crate::Table::scan_prefix)). Strings sort
//! by bytes, which for UTF-8 is code point order.
//!
//! To use your own type as a key, implement [`EncodeKey`] and
//! [`OrderedKey`], usually by delegating to a tuple of the above.
//!
//! # Key classes
//!
//! Each key type also has a *class*, [`EncodeKey::KEY_CLASS`]: one byte
//! that tells the host how long the first component of the encoding is.
//! A table stores it between its name and the encoded key
//! (`name 0x00 CLASS encoded_key`), so that the host, which knows nothing
//! about Rust types, can find a key's *partition key* (the first
//! component) from the raw bytes alone; see [`crate::partition`]. The
//! classes are:
//!
//! | class | meaning | types |
//! | --- | --- | --- |
//! | `0..=32` ([`CLASS_FIXED_MAX`]) | the first component is that many bytes | `()` 0, `bool`/`u8`/`i8` 1, `u16`/`i16` 2, `u32`/`i32` 4, `u64`/`i64` 8, `u128`/`i128` 16 |
//! | `0x80` ([`CLASS_BYTES`]) | the first component is an escaped byte string, up to and including its `0x00 0x00` terminator | `String`, `str`, `Vec<u8>`, `[u8]`, [`Bytes`](crate::Bytes) |
//! | `0xFF` ([`CLASS_WHOLE`]) | the whole encoding is the first component | the default, for your own types |
//!
//! A tuple has its first element's class, so all keys of a
//! `Table<(u32, u64), _>` with the same `u32` share a partition. `&T` has
//! `T`'s class.

use alloc::string::String;
use alloc::vec::Vec;

/// A key that can be encoded, order-preservingly, into bytes.
///
/// Implementations must be order-preserving (`a < b` if and only if
/// `encode(a) < encode(b)` bytewise) and self-delimiting (no encoding is a
/// proper prefix of another encoding of the same type). Types related by
/// [`Borrow`](core::borrow::Borrow) (`String` and `str`) must encode alike
/// (and should have the same class: a [`Table`](crate::Table) uses its key
/// type's class for every lookup).
///
/// [`KEY_CLASS`](Self::KEY_CLASS) says how long the first component of the
/// encoding is (see [key classes](crate::key#key-classes)); the
/// default, [`CLASS_WHOLE`], is always correct but puts every key of the
/// type in a partition of its own. A type that encodes as another key type
/// (say a tuple) should copy that type's class:
///
/// ```
/// use ordo_sdk::EncodeKey;
///
/// struct OrderId { warehouse: u32, number: u64 }
///
/// impl EncodeKey for OrderId {
///     // Partitioned by warehouse, like the tuple it encodes as.
///     const KEY_CLASS: u8 = <(u32, u64) as EncodeKey>::KEY_CLASS;
///     fn encode_key(&self, out: &mut Vec<u8>) {
///         (self.warehouse, self.number).encode_key(out)
///     }
/// }
/// ```
///
/// A class must describe the encoding truthfully: a fixed width no longer
/// than every encoding, or [`CLASS_BYTES`] only for an encoding that starts
/// with an escaped, terminated byte string.
pub trait EncodeKey {
    /// The key's class: how long the first component of its encoding is.
    /// [`CLASS_WHOLE`] unless overridden.
    const KEY_CLASS: u8 = CLASS_WHOLE;

    /// Appends this key's encoding to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);
}

/// The classes, as the host reads them (`ordo_schema::abi`): `0..=CLASS_FIXED_MAX`
/// a fixed width; [`CLASS_BYTES`] for byte-string keys (`String`, `str`,
/// `Vec<u8>`, `[u8]`, [`Bytes`](crate::Bytes)); [`CLASS_WHOLE`], the
/// default of [`EncodeKey::KEY_CLASS`].
pub use ordo_schema::abi::{CLASS_BYTES, CLASS_FIXED_MAX, CLASS_WHOLE};

/// A key that can also be decoded, for scans. See [`EncodeKey`].
pub trait OrderedKey: EncodeKey + Sized {
    /// Decodes one key from the front of `input` and advances `input` past
    /// it. Returns `None` if `input` does not start with a valid encoding.
    fn decode_key(input: &mut &[u8]) -> Option<Self>;
}

/// Marks `P` as a leading part of the key type `Self`: every key whose
/// leading elements equal `p` has an encoding starting with `p`'s. Used by
/// [`Table::scan_prefix`](crate::Table::scan_prefix).
///
/// Implemented for `(A, B)` with prefix `A`, for `(A, B, C)` with prefixes
/// `A` and `(A, B)`, and for `(A, B, C, D)` with prefixes `A`, `(A, B)` and
/// `(A, B, C)`.
pub trait KeyPrefix<P> {}

impl<T: EncodeKey + ?Sized> EncodeKey for &T {
    const KEY_CLASS: u8 = T::KEY_CLASS;
    fn encode_key(&self, out: &mut Vec<u8>) {
        (**self).encode_key(out)
    }
}

impl EncodeKey for () {
    const KEY_CLASS: u8 = 0;
    fn encode_key(&self, _out: &mut Vec<u8>) {}
}

impl OrderedKey for () {
    fn decode_key(_input: &mut &[u8]) -> Option<Self> {
        Some(())
    }
}

impl EncodeKey for bool {
    const KEY_CLASS: u8 = 1;
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

impl OrderedKey for bool {
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        match take(input, 1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if input.len() < n {
        return None;
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Some(head)
}

macro_rules! unsigned_key {
    ($($t:ty),*) => {$(
        impl EncodeKey for $t {
            const KEY_CLASS: u8 = core::mem::size_of::<$t>() as u8;
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
        impl OrderedKey for $t {
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                let bytes = take(input, core::mem::size_of::<$t>())?;
                Some(<$t>::from_be_bytes(bytes.try_into().ok()?))
            }
        }
    )*};
}
unsigned_key!(u8, u16, u32, u64, u128);

macro_rules! signed_key {
    ($($t:ty => $u:ty),*) => {$(
        impl EncodeKey for $t {
            const KEY_CLASS: u8 = core::mem::size_of::<$t>() as u8;
            fn encode_key(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit maps MIN..=MAX onto 0..=MAX-as-unsigned
                // in order.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
        }
        impl OrderedKey for $t {
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                let flipped = <$u>::decode_key(input)?;
                Some((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_key!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

/// Escapes `0x00` as `0x00 0xFF` and terminates with `0x00 0x00`.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

fn decode_bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let b = *input.get(i)?;
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match *input.get(i + 1)? {
            0xFF => {
                out.push(0);
                i += 2;
            }
            0 => {
                *input = &input[i + 2..];
                return Some(out);
            }
            _ => return None,
        }
    }
}

impl EncodeKey for str {
    const KEY_CLASS: u8 = CLASS_BYTES;
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
}

impl EncodeKey for String {
    const KEY_CLASS: u8 = CLASS_BYTES;
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
}

impl OrderedKey for String {
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        String::from_utf8(decode_bytes(input)?).ok()
    }
}

impl EncodeKey for [u8] {
    const KEY_CLASS: u8 = CLASS_BYTES;
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
}

impl EncodeKey for Vec<u8> {
    const KEY_CLASS: u8 = CLASS_BYTES;
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
}

impl OrderedKey for Vec<u8> {
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        decode_bytes(input)
    }
}

macro_rules! tuple_key {
    (@first $first:ident $(, $rest:ident)*) => {
        <$first as EncodeKey>::KEY_CLASS
    };
    ($($name:ident),+) => {
        impl<$($name: EncodeKey),+> EncodeKey for ($($name,)+) {
            // The first element's: its encoding is a prefix of the tuple's.
            const KEY_CLASS: u8 = tuple_key!(@first $($name),+);
            #[allow(non_snake_case)]
            fn encode_key(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode_key(out);)+
            }
        }
        impl<$($name: OrderedKey),+> OrderedKey for ($($name,)+) {
            fn decode_key(input: &mut &[u8]) -> Option<Self> {
                Some(($($name::decode_key(input)?,)+))
            }
        }
    };
}
tuple_key!(A);
tuple_key!(A, B);
tuple_key!(A, B, C);
tuple_key!(A, B, C, D);

impl<A, B> KeyPrefix<A> for (A, B) {}
impl<A, B, C> KeyPrefix<A> for (A, B, C) {}
impl<A, B, C> KeyPrefix<(A, B)> for (A, B, C) {}
impl<A, B, C, D> KeyPrefix<A> for (A, B, C, D) {}
impl<A, B, C, D> KeyPrefix<(A, B)> for (A, B, C, D) {}
impl<A, B, C, D> KeyPrefix<(A, B, C)> for (A, B, C, D) {}

/// Encodes `key` alone (without a table prefix). Mostly for tests and
/// tools that need to know the bytes a [`Table`](crate::Table) stores.
pub fn encode_key<K: EncodeKey + ?Sized>(key: &K) -> Vec<u8> {
    let mut out = Vec::new();
    key.encode_key(&mut out);
    out
}

/// Decodes a whole key encoded by [`encode_key`]; `None` if `bytes` is not
/// exactly one valid encoding.
pub fn decode_key<K: OrderedKey>(mut bytes: &[u8]) -> Option<K> {
    let key = K::decode_key(&mut bytes)?;
    bytes.is_empty().then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_order<K: OrderedKey + Ord + core::fmt::Debug + Clone>(mut keys: Vec<K>) {
        keys.sort();
        keys.dedup();
        let encoded: Vec<Vec<u8>> = keys.iter().map(|k| encode_key(k)).collect();
        for (k, e) in keys.iter().zip(&encoded) {
            assert_eq!(decode_key::<K>(e).as_ref(), Some(k), "round trip {k:?}");
        }
        for w in encoded.windows(2) {
            assert!(w[0] < w[1], "order broken: {:?} !< {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn integers_keep_order() {
        assert_order(vec![0u8, 1, 127, 128, 255]);
        assert_order(vec![0u64, 1, 255, 256, u64::MAX - 1, u64::MAX]);
        assert_order(vec![i64::MIN, i64::MIN + 1, -256, -1, 0, 1, 255, i64::MAX]);
        assert_order(vec![i32::MIN, -1, 0, 1, i32::MAX]);
        assert_order(vec![i8::MIN, -1, 0, 1, i8::MAX]);
        assert_order(vec![i128::MIN, -1, 0, 1, i128::MAX]);
        assert_order(vec![0u128, 1, u128::MAX]);
        assert_order(vec![false, true]);
    }

    #[test]
    fn strings_keep_order_with_prefixes_and_nuls() {
        let strings = [
            "",
            "\0",
            "\0\0",
            "\0a",
            "\u{1}",
            "a",
            "a\0",
            "a\0\0",
            "a\0b",
            "a\u{1}",
            "aa",
            "ab",
            "b",
            "\u{ff}",
            "\u{10000}",
        ];
        assert_order(strings.iter().map(|s| s.to_string()).collect());
        assert_order(vec![
            vec![],
            vec![0u8],
            vec![0, 0xFF],
            vec![0xFF],
            vec![0xFF, 0],
        ]);
        assert_eq!(encode_key("a\0b"), b"a\0\xffb\0\0");
        assert_eq!(encode_key("abc"), encode_key(&"abc".to_string()));
    }

    #[test]
    fn tuples_keep_order() {
        let mut keys = Vec::new();
        for a in ["", "a", "a\0", "ab"] {
            for b in [-1i64, 0, 7] {
                for c in [0u8, 9] {
                    keys.push((a.to_string(), b, c));
                }
            }
        }
        assert_order(keys);
        assert_order(vec![(1u64, 2u64), (1, 3), (2, 0)]);
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(decode_key::<u64>(&[1, 2, 3]), None);
        assert_eq!(decode_key::<u32>(&[0, 0, 0, 1, 9]), None);
        assert_eq!(decode_key::<String>(b"abc"), None);
        assert_eq!(decode_key::<String>(b"a\0\x01"), None);
        assert_eq!(decode_key::<String>(b"\xff\xfe\0\0"), None);
        assert_eq!(decode_key::<bool>(&[2]), None);
    }
}

//! A byte string with a cheap encoding.

use alloc::vec::Vec;
use core::fmt;
use core::ops::{Deref, DerefMut};

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::{EncodeKey, OrderedKey};

impl ordo_schema::Schema for Bytes {
    fn shape(_: &mut ordo_schema::Registry) -> ordo_schema::Shape {
        ordo_schema::Shape::Bytes
    }
}

/// A `Vec<u8>` that serde treats as a byte string.
///
/// Its encodings are the same as a `Vec<u8>`'s (postcard: a length, then
/// the bytes; JSON: an array of numbers, and a JSON string is accepted as
/// its UTF-8 bytes), so clients cannot tell them apart. But postcard
/// encodes and decodes it with one copy instead of one call per byte, which
/// makes large arguments, results and values many times cheaper in fuel.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    /// Unwraps the vector.
    pub fn into_vec(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Deref for Bytes {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Bytes {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes(v)
    }
}

impl From<&[u8]> for Bytes {
    fn from(v: &[u8]) -> Bytes {
        Bytes(v.to_vec())
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(b: Bytes) -> Vec<u8> {
        b.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string or an array of bytes")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(v.to_vec()))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes(v.as_bytes().to_vec()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(Bytes(out))
    }
}

impl EncodeKey for Bytes {
    const KEY_CLASS: u8 = crate::key::CLASS_BYTES;
    fn encode_key(&self, out: &mut Vec<u8>) {
        self.0.encode_key(out)
    }
}

impl OrderedKey for Bytes {
    fn decode_key(input: &mut &[u8]) -> Option<Self> {
        Vec::<u8>::decode_key(input).map(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_a_vec() {
        let v = alloc::vec![0u8, 1, 200, 255];
        let b = Bytes(v.clone());
        assert_eq!(
            postcard::to_allocvec(&b).unwrap(),
            postcard::to_allocvec(&v).unwrap()
        );
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            serde_json::to_string(&v).unwrap()
        );
        let from_postcard: Bytes =
            postcard::from_bytes(&postcard::to_allocvec(&v).unwrap()).unwrap();
        assert_eq!(from_postcard, b);
        let from_json: Bytes = serde_json::from_str("[0,1,200,255]").unwrap();
        assert_eq!(from_json, b);
        let from_str: Bytes = serde_json::from_str("\"hi\"").unwrap();
        assert_eq!(from_str.as_ref(), b"hi");
        assert!(serde_json::from_str::<Bytes>("[256]").is_err());
    }
}

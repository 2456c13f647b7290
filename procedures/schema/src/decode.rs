//! Shape-directed decoding of stored and logged bytes into JSON, for
//! people reading them (`ordo replay`): postcard values (arguments,
//! results, table values) and order-preserving table keys.
//!
//! The JSON is what `serde_json` would write for the same value with
//! serde's derive: structs are objects, enums externally tagged, `Option`
//! is `null` or the value, byte strings are arrays of numbers, and map
//! keys are strings. Integers beyond the 64-bit range (which a
//! `serde_json::Value` cannot hold) are written as decimal strings.
//!
//! The bytes are hostile: postcard input is checked with
//! [`check_postcard`](crate::check_postcard) before anything is decoded,
//! and the output is bounded by [`DECODE_NODES_MAX`] JSON values, so a
//! four-byte `Vec<()>` of length 2^32 cannot make a reader allocate four
//! billion `null`s.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde_json::{Map, Number, Value};

use crate::{CheckError, Failure, Fields, Param, Registry, Shape, Step, TypeBody};

/// The most JSON values (every number, string, array and object counts
/// one) one decoded value may hold.
pub const DECODE_NODES_MAX: usize = 1 << 20;

/// Decodes `bytes`, exactly one postcard-encoded value of `shape`, into
/// JSON. Bytes that are not such a value get the check's error.
pub fn postcard_to_json(
    shape: &Shape,
    registry: &Registry,
    bytes: &[u8],
) -> Result<Value, CheckError> {
    crate::check_postcard(shape, registry, bytes)?;
    let mut decoder = Decoder::new(bytes);
    decoder.value(shape, registry).map_err(Failure::into_error)
}

/// Decodes postcard-encoded procedure arguments (one value per parameter,
/// in order) into an object keyed by parameter name: the JSON a client
/// would send for the same call.
pub fn postcard_params_to_json(
    params: &[Param],
    registry: &Registry,
    bytes: &[u8],
) -> Result<Value, CheckError> {
    crate::check_postcard_params(params, registry, bytes)?;
    let mut decoder = Decoder::new(bytes);
    let mut object = Map::new();
    for param in params {
        let value = decoder
            .value(&param.shape, registry)
            .map_err(|f| f.at(Step::Name(param.name.clone())).into_error())?;
        object.insert(param.name.clone(), value);
    }
    Ok(Value::Object(object))
}

/// Decodes a table key's order-preserving encoding (the bytes after the
/// table name, its `0x00` and the class byte) as a key of `shape`: `()`,
/// `bool`, integers, `String`, byte strings, and tuples of those. `None`
/// for any other shape (a type with its own `OrderedKey` encoding, which
/// its schema cannot describe) and for bytes that are not exactly one
/// such key.
pub fn ordered_key_to_json(shape: &Shape, registry: &Registry, bytes: &[u8]) -> Option<Value> {
    let mut input = bytes;
    let value = key(shape, registry, &mut input, 0)?;
    input.is_empty().then_some(value)
}

/// How deep tuple keys may nest (`((a, b), c)`): a key's own types are
/// at most four wide and rarely nested at all.
const KEY_DEPTH_MAX: usize = 8;

fn key(shape: &Shape, registry: &Registry, input: &mut &[u8], depth: usize) -> Option<Value> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, tail) = input.split_at(n);
        *input = tail;
        Some(head)
    }
    fn big_endian(input: &mut &[u8], n: usize) -> Option<u128> {
        Some(
            take(input, n)?
                .iter()
                .fold(0u128, |acc, &b| acc << 8 | u128::from(b)),
        )
    }
    // Signed keys are big-endian with the sign bit flipped.
    fn signed(input: &mut &[u8], n: usize) -> Option<i128> {
        let flipped = big_endian(input, n)? ^ (1u128 << (8 * n - 1));
        // Sign-extend from n bytes.
        let shift = 128 - 8 * n as u32;
        Some(((flipped << shift) as i128) >> shift)
    }
    // Escaped bytes: 0x00 is 0x00 0xFF; the end is 0x00 0x00.
    fn escaped(input: &mut &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            match *input.get(i)? {
                0 => match *input.get(i + 1)? {
                    0xFF => {
                        out.push(0);
                        i += 2;
                    }
                    0 => {
                        *input = &input[i + 2..];
                        return Some(out);
                    }
                    _ => return None,
                },
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
    }
    if depth > KEY_DEPTH_MAX {
        return None;
    }
    Some(match shape {
        Shape::Unit => Value::Null,
        Shape::Bool => match take(input, 1)? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        Shape::U8 => unsigned_json(big_endian(input, 1)?),
        Shape::U16 => unsigned_json(big_endian(input, 2)?),
        Shape::U32 => unsigned_json(big_endian(input, 4)?),
        Shape::U64 => unsigned_json(big_endian(input, 8)?),
        Shape::U128 => unsigned_json(big_endian(input, 16)?),
        Shape::I8 => signed_json(signed(input, 1)?),
        Shape::I16 => signed_json(signed(input, 2)?),
        Shape::I32 => signed_json(signed(input, 4)?),
        Shape::I64 => signed_json(signed(input, 8)?),
        Shape::I128 => signed_json(signed(input, 16)?),
        Shape::String => Value::String(String::from_utf8(escaped(input)?).ok()?),
        Shape::Bytes => bytes_json(&escaped(input)?),
        Shape::Seq(item) if **item == Shape::U8 => bytes_json(&escaped(input)?),
        Shape::Tuple(items) if (1..=4).contains(&items.len()) => Value::Array(
            items
                .iter()
                .map(|item| key(item, registry, input, depth + 1))
                .collect::<Option<Vec<_>>>()?,
        ),
        // A newtype struct is its inner type on the wire; serde writes it
        // as the inner value. Its key encoding is whatever the type's own
        // `OrderedKey` says, which is usually (not always) the inner
        // type's: decoding then must also consume the key exactly.
        Shape::Named(id) => match &registry.get(id)?.body {
            TypeBody::Struct(Fields::Newtype(inner)) => key(inner, registry, input, depth + 1)?,
            _ => return None,
        },
        _ => return None,
    })
}

fn unsigned_json(n: u128) -> Value {
    match u64::try_from(n) {
        Ok(n) => Value::Number(n.into()),
        Err(_) => Value::String(n.to_string()),
    }
}

fn signed_json(n: i128) -> Value {
    match i64::try_from(n) {
        Ok(n) => Value::Number(n.into()),
        Err(_) => Value::String(n.to_string()),
    }
}

fn bytes_json(bytes: &[u8]) -> Value {
    Value::Array(bytes.iter().map(|&b| Value::Number(b.into())).collect())
}

fn float_json(f: f64) -> Value {
    // serde_json writes non-finite floats as null.
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Reads postcard that [`crate::check_postcard`] has accepted; every read
/// is still bounds-checked, so a disagreement between the two is an error,
/// never a panic.
struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    nodes_left: usize,
}

fn malformed() -> Failure {
    Failure::new(String::from("malformed postcard (the check accepted it)"))
}

fn too_large() -> Failure {
    Failure::new(format!(
        "the value has more than {DECODE_NODES_MAX} parts, too many to show"
    ))
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Decoder {
            bytes,
            pos: 0,
            nodes_left: DECODE_NODES_MAX,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Failure> {
        let end = self.pos.checked_add(n).ok_or_else(malformed)?;
        let out = self.bytes.get(self.pos..end).ok_or_else(malformed)?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, Failure> {
        Ok(self.take(1)?[0])
    }

    fn varint(&mut self) -> Result<u128, Failure> {
        let mut out: u128 = 0;
        for i in 0..19 {
            let b = self.byte()?;
            out |= u128::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(malformed())
    }

    fn zigzag(&mut self) -> Result<i128, Failure> {
        let n = self.varint()?;
        Ok((n >> 1) as i128 ^ -((n & 1) as i128))
    }

    fn length(&mut self) -> Result<usize, Failure> {
        usize::try_from(self.varint()?).map_err(|_| malformed())
    }

    /// Accounts for `n` more JSON values before they are built.
    fn spend(&mut self, n: usize) -> Result<(), Failure> {
        self.nodes_left = self.nodes_left.checked_sub(n).ok_or_else(too_large)?;
        Ok(())
    }

    fn value(&mut self, shape: &Shape, registry: &Registry) -> Result<Value, Failure> {
        self.spend(1)?;
        Ok(match shape {
            Shape::Unit => Value::Null,
            Shape::Bool => Value::Bool(self.byte()? == 1),
            Shape::U8 => Value::Number(self.byte()?.into()),
            Shape::I8 => Value::Number((self.byte()? as i8).into()),
            Shape::U16 | Shape::U32 | Shape::U64 | Shape::U128 => unsigned_json(self.varint()?),
            Shape::I16 | Shape::I32 | Shape::I64 | Shape::I128 => signed_json(self.zigzag()?),
            Shape::F32 => {
                let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| malformed())?;
                float_json(f64::from(f32::from_le_bytes(raw)))
            }
            Shape::F64 => {
                let raw: [u8; 8] = self.take(8)?.try_into().map_err(|_| malformed())?;
                float_json(f64::from_le_bytes(raw))
            }
            Shape::Char | Shape::String => {
                let len = self.length()?;
                let text = core::str::from_utf8(self.take(len)?).map_err(|_| malformed())?;
                Value::String(String::from(text))
            }
            Shape::Bytes => {
                let len = self.length()?;
                self.spend(len)?;
                bytes_json(self.take(len)?)
            }
            Shape::Option(inner) => match self.byte()? {
                0 => Value::Null,
                _ => self.value(inner, registry)?,
            },
            Shape::Seq(item) => {
                let len = self.length()?;
                self.items(len, item, registry)?
            }
            Shape::Array { item, len } => self.items(*len as usize, item, registry)?,
            Shape::Tuple(items) => self.tuple(items, registry)?,
            Shape::Map { key, value } => {
                let len = self.length()?;
                self.spend(len)?;
                let mut object = Map::new();
                for i in 0..len {
                    let name = match self
                        .value(key, registry)
                        .map_err(|f| f.at(Step::Index(i)))?
                    {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    let value = self
                        .value(value, registry)
                        .map_err(|f| f.at(Step::Index(i)))?;
                    object.insert(name, value);
                }
                Value::Object(object)
            }
            Shape::Named(id) => {
                let def = registry.get(id).ok_or_else(malformed)?;
                match &def.body {
                    TypeBody::Struct(fields) => self.fields(fields, registry)?,
                    TypeBody::Enum(variants) => {
                        let tag = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                        let variant = variants.get(tag).ok_or_else(malformed)?;
                        match &variant.fields {
                            Fields::Unit => Value::String(variant.name.clone()),
                            fields => {
                                let inner = self
                                    .fields(fields, registry)
                                    .map_err(|f| f.at(Step::Name(variant.name.clone())))?;
                                let mut object = Map::new();
                                object.insert(variant.name.clone(), inner);
                                Value::Object(object)
                            }
                        }
                    }
                }
            }
        })
    }

    fn items(&mut self, len: usize, item: &Shape, registry: &Registry) -> Result<Value, Failure> {
        // Checked before the vector is sized, so a zero-width item type
        // with a huge length is refused instead of allocated.
        self.spend(len)?;
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            out.push(
                self.value(item, registry)
                    .map_err(|f| f.at(Step::Index(i)))?,
            );
        }
        Ok(Value::Array(out))
    }

    fn tuple(&mut self, items: &[Shape], registry: &Registry) -> Result<Value, Failure> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(
                self.value(item, registry)
                    .map_err(|f| f.at(Step::Position(i)))?,
            );
        }
        Ok(Value::Array(out))
    }

    fn fields(&mut self, fields: &Fields, registry: &Registry) -> Result<Value, Failure> {
        Ok(match fields {
            Fields::Unit => Value::Null,
            Fields::Newtype(inner) => self.value(inner, registry)?,
            Fields::Tuple(items) => self.tuple(items, registry)?,
            Fields::Named(fields) => {
                let mut object = Map::new();
                for field in fields {
                    let value = self
                        .value(&field.shape, registry)
                        .map_err(|f| f.at(Step::Name(field.name.clone())))?;
                    object.insert(field.name.clone(), value);
                }
                Value::Object(object)
            }
        })
    }
}

/// The key class byte a table stores between its name and a key of
/// `shape` (the SDK's `EncodeKey::KEY_CLASS`: the first component's width,
/// `0x80` for a byte string), for the shapes [`ordered_key_to_json`]
/// reads; `None` for others (a type with its own key encoding).
pub fn key_class(shape: &Shape, registry: &Registry) -> Option<u8> {
    key_class_at(shape, registry, 0)
}

fn key_class_at(shape: &Shape, registry: &Registry, depth: usize) -> Option<u8> {
    if depth > KEY_DEPTH_MAX {
        return None;
    }
    Some(match shape {
        Shape::Unit => 0,
        Shape::Bool | Shape::U8 | Shape::I8 => 1,
        Shape::U16 | Shape::I16 => 2,
        Shape::U32 | Shape::I32 => 4,
        Shape::U64 | Shape::I64 => 8,
        Shape::U128 | Shape::I128 => 16,
        Shape::String | Shape::Bytes => 0x80,
        Shape::Seq(item) if **item == Shape::U8 => 0x80,
        Shape::Tuple(items) if (1..=4).contains(&items.len()) => {
            key_class_at(&items[0], registry, depth + 1)?
        }
        Shape::Named(id) => match &registry.get(id)?.body {
            TypeBody::Struct(Fields::Newtype(inner)) => key_class_at(inner, registry, depth + 1)?,
            _ => return None,
        },
        _ => return None,
    })
}

/// The order-preserving encoding of `value` as a key of `shape`, or of a
/// prefix of one: for a tuple key, an array of its first elements (or the
/// first element alone) encodes those. The inverse of
/// [`ordered_key_to_json`]; `None` where the value does not fit the shape
/// or the shape has no known key encoding.
pub fn ordered_key_prefix_from_json(
    shape: &Shape,
    registry: &Registry,
    value: &Value,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match (shape, value) {
        (Shape::Tuple(items), Value::Array(given)) if given.len() <= items.len() => {
            for (item, value) in items.iter().zip(given) {
                encode_key(item, registry, value, &mut out, 1)?;
            }
        }
        (Shape::Tuple(items), scalar) if !items.is_empty() => {
            encode_key(&items[0], registry, scalar, &mut out, 1)?;
        }
        _ => encode_key(shape, registry, value, &mut out, 0)?,
    }
    Some(out)
}

fn encode_key(
    shape: &Shape,
    registry: &Registry,
    value: &Value,
    out: &mut Vec<u8>,
    depth: usize,
) -> Option<()> {
    fn escaped(bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            out.push(b);
            if b == 0 {
                out.push(0xFF);
            }
        }
        out.extend_from_slice(&[0, 0]);
    }
    fn unsigned(value: &Value, width: usize) -> Option<u128> {
        let n = match value {
            Value::Number(n) => u128::from(n.as_u64()?),
            Value::String(text) => text.parse().ok()?,
            _ => return None,
        };
        (width == 16 || n < 1u128 << (8 * width)).then_some(n)
    }
    fn signed(value: &Value, width: usize) -> Option<i128> {
        let n = match value {
            Value::Number(n) => i128::from(n.as_i64()?),
            Value::String(text) => text.parse().ok()?,
            _ => return None,
        };
        let bits = 8 * width as u32;
        (bits == 128 || (n >= -(1i128 << (bits - 1)) && n < 1i128 << (bits - 1))).then_some(n)
    }
    fn big_endian(n: u128, width: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&n.to_be_bytes()[16 - width..]);
    }
    if depth > KEY_DEPTH_MAX {
        return None;
    }
    let width = |shape: &Shape| match shape {
        Shape::U8 | Shape::I8 => 1,
        Shape::U16 | Shape::I16 => 2,
        Shape::U32 | Shape::I32 => 4,
        Shape::U64 | Shape::I64 => 8,
        _ => 16,
    };
    match shape {
        Shape::Unit => matches!(value, Value::Null).then_some(())?,
        Shape::Bool => out.push(u8::from(value.as_bool()?)),
        Shape::U8 | Shape::U16 | Shape::U32 | Shape::U64 | Shape::U128 => {
            big_endian(unsigned(value, width(shape))?, width(shape), out)
        }
        Shape::I8 | Shape::I16 | Shape::I32 | Shape::I64 | Shape::I128 => {
            let w = width(shape);
            let n = signed(value, w)? as u128 ^ (1u128 << (8 * w - 1));
            big_endian(n, w, out)
        }
        Shape::String => escaped(value.as_str()?.as_bytes(), out),
        Shape::Bytes => escaped(&json_bytes(value)?, out),
        Shape::Seq(item) if **item == Shape::U8 => escaped(&json_bytes(value)?, out),
        Shape::Tuple(items) if (1..=4).contains(&items.len()) => {
            let given = value.as_array()?;
            if given.len() != items.len() {
                return None;
            }
            for (item, value) in items.iter().zip(given) {
                encode_key(item, registry, value, out, depth + 1)?;
            }
        }
        Shape::Named(id) => match &registry.get(id)?.body {
            TypeBody::Struct(Fields::Newtype(inner)) => {
                encode_key(inner, registry, value, out, depth + 1)?
            }
            _ => return None,
        },
        _ => return None,
    }
    Some(())
}

fn json_bytes(value: &Value) -> Option<Vec<u8>> {
    value
        .as_array()?
        .iter()
        .map(|b| u8::try_from(b.as_u64()?).ok())
        .collect()
}

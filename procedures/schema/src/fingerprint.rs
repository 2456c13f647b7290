//! Structural fingerprints of argument lists.

use alloc::vec;
use alloc::vec::Vec;

use crate::{Fields, Registry, Schema, Shape, TypeBody, Variant};

/// A 128-bit structural hash (xxh3-128, little-endian).
pub type Fingerprint = [u8; 16];

/// Named types are followed at most this deep while hashing or comparing;
/// deeper (only a hostile registry nests that far) is hashed as a marker.
pub(crate) const STRUCTURE_DEPTH_MAX: usize = 256;
/// Shape nodes visited at most per fingerprint or comparison, so a hostile
/// registry whose types refer to each other many times over cannot make
/// the expansion exponential.
pub(crate) const STRUCTURE_NODES_MAX: usize = 1 << 20;

/// One level of a shape as a client sees it on the wire: names resolved,
/// and the wire-identical spellings merged (newtype struct = its inner
/// shape, unit struct = `()`, tuple struct = tuple, `Bytes` = `Vec<u8>`).
pub(crate) enum Node<'a> {
    /// A primitive other than `Bytes`, including `()`.
    Leaf(&'a Shape),
    Option(&'a Shape),
    Seq(&'a Shape),
    Map(&'a Shape, &'a Shape),
    Tuple(&'a [Shape]),
    Array(&'a Shape, u32),
    Struct(&'a [crate::Field]),
    Enum(&'a [Variant]),
    /// A type already being expanded, this many named types up.
    BackRef(usize),
    /// An id the registry does not define.
    Unknown(&'a str),
    /// Too deep (hostile registry).
    TooDeep,
}

static U8: Shape = Shape::U8;
static UNIT: Shape = Shape::Unit;

/// Resolves `shape` to its wire node, pushing the ids of the named types it
/// passes through onto `stack` (the caller truncates it afterwards).
pub(crate) fn resolve<'a>(
    shape: &'a Shape,
    registry: &'a Registry,
    stack: &mut Vec<&'a str>,
) -> Node<'a> {
    let mut shape = shape;
    loop {
        return match shape {
            Shape::Bytes => Node::Seq(&U8),
            Shape::Option(inner) => Node::Option(inner),
            Shape::Seq(inner) => Node::Seq(inner),
            Shape::Map { key, value } => Node::Map(key, value),
            Shape::Tuple(items) => Node::Tuple(items),
            Shape::Array { item, len } => Node::Array(item, *len),
            Shape::Named(id) => {
                if let Some(pos) = stack.iter().rposition(|s| *s == id.as_str()) {
                    return Node::BackRef(stack.len() - 1 - pos);
                }
                if stack.len() >= STRUCTURE_DEPTH_MAX {
                    return Node::TooDeep;
                }
                let Some(def) = registry.get(id) else {
                    return Node::Unknown(id);
                };
                stack.push(id);
                match &def.body {
                    TypeBody::Enum(variants) => Node::Enum(variants),
                    TypeBody::Struct(Fields::Unit) => Node::Leaf(&UNIT),
                    TypeBody::Struct(Fields::Tuple(items)) => Node::Tuple(items),
                    TypeBody::Struct(Fields::Named(fields)) => Node::Struct(fields),
                    TypeBody::Struct(Fields::Newtype(inner)) => {
                        shape = inner;
                        continue;
                    }
                }
            }
            primitive => Node::Leaf(primitive),
        };
    }
}

/// The fingerprint of a call's argument list: the positional shapes of
/// the parameters, resolved structurally (see the crate docs for what is
/// in and out). Recursive types end in back-references by depth.
pub fn args_fingerprint(params: &[Shape], registry: &Registry) -> Fingerprint {
    let mut hasher = Encoder {
        out: vec![1], // format version of the hashed encoding
        registry,
        stack: Vec::new(),
        nodes_left: STRUCTURE_NODES_MAX,
    };
    hasher.u32(params.len());
    for param in params {
        hasher.stack.clear();
        hasher.shape(param);
    }
    xxhash_rust::xxh3::xxh3_128(&hasher.out).to_le_bytes()
}

/// The fingerprint, parameter shapes and registry of a client's Rust type
/// used as the whole argument list: a tuple `(A, B, C)` is three
/// parameters, `()` none, and any other `T` one (postcard encodes `(x,)`
/// and `x` alike). Equal to [`args_fingerprint`] of a procedure's
/// parameters when the types match.
pub fn fingerprint_of_args<T: Schema + ?Sized>() -> (Fingerprint, Vec<Shape>, Registry) {
    let mut registry = Registry::new();
    let params = match T::shape(&mut registry) {
        Shape::Unit => Vec::new(),
        Shape::Tuple(items) => items,
        other => vec![other],
    };
    (args_fingerprint(&params, &registry), params, registry)
}

struct Encoder<'a> {
    out: Vec<u8>,
    registry: &'a Registry,
    stack: Vec<&'a str>,
    nodes_left: usize,
}

// Tags of the hashed encoding. Leaves use 1..=16 (see `leaf_tag`).
const OPTION: u8 = 20;
const SEQ: u8 = 21;
const MAP: u8 = 22;
const TUPLE: u8 = 23;
const ARRAY: u8 = 24;
const STRUCT: u8 = 25;
const ENUM: u8 = 26;
const BACK_REF: u8 = 27;
const UNKNOWN: u8 = 28;
const TRUNCATED: u8 = 29;
const VARIANT_UNIT: u8 = 30;
const VARIANT_NEWTYPE: u8 = 31;
const VARIANT_TUPLE: u8 = 32;
const VARIANT_STRUCT: u8 = 33;

fn leaf_tag(shape: &Shape) -> u8 {
    match shape {
        Shape::Unit => 1,
        Shape::Bool => 2,
        Shape::U8 => 3,
        Shape::U16 => 4,
        Shape::U32 => 5,
        Shape::U64 => 6,
        Shape::U128 => 7,
        Shape::I8 => 8,
        Shape::I16 => 9,
        Shape::I32 => 10,
        Shape::I64 => 11,
        Shape::I128 => 12,
        Shape::F32 => 13,
        Shape::F64 => 14,
        Shape::Char => 15,
        Shape::String => 16,
        _ => 0,
    }
}

impl<'a> Encoder<'a> {
    fn u32(&mut self, n: usize) {
        self.out.extend_from_slice(&(n as u32).to_le_bytes());
    }

    fn name(&mut self, name: &str) {
        self.u32(name.len());
        self.out.extend_from_slice(name.as_bytes());
    }

    fn shape(&mut self, shape: &'a Shape) {
        if self.nodes_left == 0 {
            self.out.push(TRUNCATED);
            return;
        }
        self.nodes_left -= 1;
        let mark = self.stack.len();
        match resolve(shape, self.registry, &mut self.stack) {
            Node::Leaf(leaf) => self.out.push(leaf_tag(leaf)),
            Node::Option(inner) => {
                self.out.push(OPTION);
                self.shape(inner);
            }
            Node::Seq(inner) => {
                self.out.push(SEQ);
                self.shape(inner);
            }
            Node::Map(key, value) => {
                self.out.push(MAP);
                self.shape(key);
                self.shape(value);
            }
            Node::Tuple(items) => {
                self.out.push(TUPLE);
                self.u32(items.len());
                for item in items {
                    self.shape(item);
                }
            }
            Node::Array(item, len) => {
                self.out.push(ARRAY);
                self.u32(len as usize);
                self.shape(item);
            }
            Node::Struct(fields) => {
                self.out.push(STRUCT);
                self.u32(fields.len());
                for field in fields {
                    self.name(&field.name);
                    self.shape(&field.shape);
                }
            }
            Node::Enum(variants) => {
                self.out.push(ENUM);
                self.u32(variants.len());
                for variant in variants {
                    self.name(&variant.name);
                    self.fields(&variant.fields);
                }
            }
            Node::BackRef(distance) => {
                self.out.push(BACK_REF);
                self.u32(distance);
            }
            Node::Unknown(id) => {
                // Not structure, but two undefined ids must not hash alike.
                self.out.push(UNKNOWN);
                self.name(id);
            }
            Node::TooDeep => self.out.push(TRUNCATED),
        }
        self.stack.truncate(mark);
    }

    fn fields(&mut self, fields: &'a Fields) {
        match fields {
            Fields::Unit => self.out.push(VARIANT_UNIT),
            Fields::Newtype(inner) => {
                self.out.push(VARIANT_NEWTYPE);
                self.shape(inner);
            }
            Fields::Tuple(items) => {
                self.out.push(VARIANT_TUPLE);
                self.u32(items.len());
                for item in items {
                    self.shape(item);
                }
            }
            Fields::Named(fields) => {
                self.out.push(VARIANT_STRUCT);
                self.u32(fields.len());
                for field in fields {
                    self.name(&field.name);
                    self.shape(&field.shape);
                }
            }
        }
    }
}

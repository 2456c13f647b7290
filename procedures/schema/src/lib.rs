//! The procedure contract: schemas of ordo procedures and tables, and the
//! checks that keep clients, stored data and procedures agreeing on them.
//!
//! # The model
//!
//! A [`Shape`] is a type as serde's data model (and so postcard and JSON)
//! sees it: primitives, `Option`, sequences, maps, tuples, fixed arrays, and
//! [`Shape::Named`] for a struct or enum, whose definition ([`TypeDef`]) is
//! kept once in a [`Registry`] under a unique id (module path + name +
//! generic arguments). Types implement [`Schema`] to describe themselves;
//! `#[derive(Schema)]` (feature `derive`, or through `ordo_sdk`) does it for
//! structs and enums and refuses serde attributes that change the data model
//! in ways a `Shape` cannot say. A module records a [`ProcedureSchema`] per
//! procedure and a [`TableSchema`] per table.
//!
//! # Checks
//!
//! [`check_postcard`] and [`check_json`] (feature `json`) verify data against
//! a shape *exactly*: a postcard byte string must be the canonical encoding
//! of one value of the shape with nothing left over; JSON must be what
//! `serde_json` with serde's derive would read, with no unknown or missing
//! fields at any depth. Neither allocates in proportion to lengths the input
//! declares, and both stop at [`CHECK_DEPTH_MAX`] levels of nesting.
//!
//! # Fingerprints
//!
//! [`args_fingerprint`] hashes the positional shapes of a procedure's
//! parameters as a client encodes them: parameter names are left out (a
//! client's tuple has none), and so are type names and doc comments (a
//! client may mirror a type under another name). What changes the encoding
//! or its meaning is in: field names and order, variant names and order,
//! integer widths and signs. A few wire-identical spellings hash alike: a
//! newtype struct is its inner shape, a unit struct is `()`, a tuple struct
//! is a tuple, and `Bytes` is `Vec<u8>`. [`fingerprint_of_args`] gives the
//! same hash for a client's Rust argument tuple, so a client and a node can
//! compare 16 bytes instead of schemas; [`describe_args_mismatch`] explains
//! a difference.
//!
//! # Stored compatibility
//!
//! [`stored_compatibility`] says whether postcard data written with one
//! shape still decodes (to the same meaning, as far as names can tell) as
//! another: layouts must be the same except for renamed fields, variants
//! and types, changed docs, enum variants appended at the end, and integers
//! widened within one varint family (`u16 -> u32 -> u64 -> u128`, likewise
//! signed; never from `u8`/`i8`, which are raw bytes). A field or variant
//! that keeps its name but changes position is a change, not a rename.
//!
//! # The ABI
//!
//! [`abi`] holds the values the engine and the guest SDK must agree on
//! (docs/ABI.md): status codes, import and export names, argument
//! encodings, log levels, the key layout and [`abi::partition_key`]. It
//! lives here because both sides already depend on this crate.

#![no_std]

extern crate alloc;
// So `::ordo_schema` paths (what the derive emits) resolve in this crate too.
extern crate self as ordo_schema;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

pub mod abi;
mod compat;
#[cfg(feature = "json")]
mod decode;
mod describe;
mod fingerprint;
mod impls;
#[cfg(feature = "json")]
mod json;
mod postcard_check;
mod render;
mod stored;
mod validate;

#[doc(hidden)]
pub mod __private;

pub use compat::stored_compatibility;
#[cfg(feature = "json")]
pub use decode::{
    DECODE_NODES_MAX, key_class, ordered_key_prefix_from_json, ordered_key_to_json,
    postcard_params_to_json, postcard_to_json,
};
pub use describe::describe_args_mismatch;
pub use fingerprint::{Fingerprint, args_fingerprint, fingerprint_of_args};
#[cfg(feature = "json")]
pub use json::{check_json, check_json_args, parse_json};
pub use postcard_check::{check_postcard, check_postcard_args, check_postcard_params};
pub use render::{render, render_id};
pub use stored::{decode_schema, encode_schema};

#[cfg(feature = "derive")]
pub use ordo_schema_derive::Schema;

/// How deep [`check_postcard`] and [`check_json`] follow nested shapes
/// before refusing the input, so hostile input cannot exhaust the stack.
pub const CHECK_DEPTH_MAX: usize = 128;

/// A type as the serde data model (and so postcard and JSON) sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Shape {
    Unit,
    Bool,
    U8,
    U16,
    U32,
    U64,
    U128,
    I8,
    I16,
    I32,
    I64,
    I128,
    F32,
    F64,
    Char,
    String,
    /// A byte string (`serialize_bytes`: `ordo_sdk::Bytes`, `serde_bytes`).
    Bytes,
    Option(Box<Shape>),
    /// `Vec<T>`, `VecDeque<T>`, `BTreeSet<T>`, `[T]`: a length, then the items.
    Seq(Box<Shape>),
    Map {
        key: Box<Shape>,
        value: Box<Shape>,
    },
    /// `(A, B, ...)`: the elements in order, no length.
    Tuple(Vec<Shape>),
    /// `[T; N]`: serde serializes it as a tuple of N items.
    Array {
        item: Box<Shape>,
        len: u32,
    },
    /// A struct or enum, by its id in the [`Registry`].
    Named(String),
}

/// The definition of a struct or enum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDef {
    /// The short Rust name, e.g. `NewItem` (with generic arguments rendered,
    /// e.g. `Page<u64>`, for a generic type).
    pub name: String,
    pub doc: String,
    pub body: TypeBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TypeBody {
    Struct(Fields),
    Enum(Vec<Variant>),
}

/// The fields of a struct or of an enum variant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fields {
    /// `struct S;` / `V`
    Unit,
    /// `struct S(T);` / `V(T)`: serde passes the inner value through.
    Newtype(Shape),
    /// `struct S(A, B);` / `V(A, B)`
    Tuple(Vec<Shape>),
    /// `struct S { a: A }` / `V { a: A }`
    Named(Vec<Field>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    /// The name serde uses (after `rename` / `rename_all`).
    pub name: String,
    pub doc: String,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// The name serde uses (after `rename` / `rename_all`).
    pub name: String,
    pub doc: String,
    pub fields: Fields,
}

/// Definitions of the named types that shapes refer to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registry {
    /// Unique id (e.g. `inventory::NewItem`) -> definition.
    pub types: BTreeMap<String, TypeDef>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `T` (and every type it refers to) and returns its shape.
    pub fn shape_of<T: Schema + ?Sized>(&mut self) -> Shape {
        T::shape(self)
    }

    pub fn get(&self, id: &str) -> Option<&TypeDef> {
        self.types.get(id)
    }

    /// Adds `other`'s definitions. An id defined differently on both sides
    /// (docs included: the two registries describe different code) is an
    /// error naming the id, and then nothing is added.
    pub fn merge(&mut self, other: Registry) -> Result<(), String> {
        for (id, def) in &other.types {
            if let Some(existing) = self.types.get(id)
                && existing != def
            {
                return Err(alloc::format!("type `{id}` has two different definitions"));
            }
        }
        self.types.extend(other.types);
        Ok(())
    }

    /// Checks that a registry (e.g. one read from a module that may be
    /// hostile) is safe and meaningful to check data against: every id that
    /// a definition refers to is defined, and no type contains itself
    /// without an `Option`, sequence, map or enum in between (such a type
    /// has no finite value, and checking it would recurse without consuming
    /// input).
    pub fn validate(&self) -> Result<(), String> {
        validate::validate(self, None)
    }

    /// Like [`validate`](Self::validate), also requiring the shapes in
    /// `roots` (a procedure's parameters and result, a table's key and
    /// value) to refer only to defined types.
    pub fn validate_with_roots(&self, roots: &[&Shape]) -> Result<(), String> {
        validate::validate(self, Some(roots))
    }
}

/// A type that can describe its serde data model.
pub trait Schema {
    /// Registers the named types this type refers to and returns its shape.
    fn shape(registry: &mut Registry) -> Shape;
}

/// A procedure parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub shape: Shape,
}

/// What a procedure takes and returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcedureSchema {
    pub name: String,
    pub doc: String,
    pub params: Vec<Param>,
    /// The shape of a successful result (for `Result<T, E>`, of `T`).
    pub result: Shape,
    pub read_only: bool,
    pub types: Registry,
}

impl ProcedureSchema {
    /// The parameters' shapes, in order.
    pub fn param_shapes(&self) -> Vec<Shape> {
        self.params.iter().map(|p| p.shape.clone()).collect()
    }

    /// `transfer(from: u64, to: u64, amount: i64) -> ()`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| alloc::format!("{}: {}", p.name, render(&p.shape, &self.types)))
            .collect();
        alloc::format!(
            "{}({}) -> {}",
            self.name,
            params.join(", "),
            render(&self.result, &self.types)
        )
    }

    /// The parameters' names, in order.
    pub fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }

    /// [`args_fingerprint`] of the parameters.
    pub fn args_fingerprint(&self) -> Fingerprint {
        args_fingerprint(&self.param_shapes(), &self.types)
    }
}

/// What a table maps from and to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub doc: String,
    pub key: Shape,
    pub value: Shape,
    pub types: Registry,
}

/// Data that does not fit a shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckError {
    /// Where, e.g. `item.bin` or `lines[3]`; empty for the whole input.
    pub path: String,
    pub message: String,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "at `{}`: {}", self.path, self.message)
        }
    }
}

impl core::error::Error for CheckError {}

/// One step of a [`CheckError`] path, collected innermost first while an
/// error unwinds so the happy path never builds one.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// A struct field, a JSON object key or a variant name: `.name`.
    Name(String),
    /// A tuple element: `.0`.
    Position(usize),
    /// A sequence item or map entry: `[3]`.
    Index(usize),
}

pub(crate) struct Failure {
    /// Innermost step first.
    pub(crate) steps: Vec<Step>,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(message: String) -> Self {
        Failure {
            steps: Vec::new(),
            message,
        }
    }

    pub(crate) fn at(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub(crate) fn into_error(self) -> CheckError {
        let mut path = String::new();
        for step in self.steps.iter().rev() {
            match step {
                Step::Name(name) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(name);
                }
                Step::Position(i) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&alloc::format!("{i}"));
                }
                Step::Index(i) => path.push_str(&alloc::format!("[{i}]")),
            }
        }
        CheckError {
            path,
            message: self.message,
        }
    }
}

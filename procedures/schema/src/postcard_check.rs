//! Exact checking of postcard bytes against a shape.
//!
//! The rules are postcard's own decoding rules made canonical: anything
//! accepted here decodes with postcard into a value of the shape, and
//! encoding that value gives back exactly these bytes. Nothing here
//! allocates on the happy path; lengths are compared with the bytes left
//! before anything is iterated.

use alloc::format;
use alloc::string::String;

use crate::{CHECK_DEPTH_MAX, CheckError, Failure, Fields, Param, Registry, Shape, Step, TypeBody};

/// Checks that `bytes` are exactly one postcard-encoded value of `shape`.
pub fn check_postcard(shape: &Shape, registry: &Registry, bytes: &[u8]) -> Result<(), CheckError> {
    let mut reader = Reader::new(bytes);
    check(&mut reader, shape, registry, 0).map_err(Failure::into_error)?;
    match reader.remaining() {
        0 => Ok(()),
        n => Err(CheckError {
            path: String::new(),
            message: format!("{} after the end of the value", plural(n, "byte")),
        }),
    }
}

/// Checks that `bytes` are postcard-encoded arguments: one value of each
/// parameter shape, in order (a tuple), then the end of the input. Error
/// paths start with the argument's position in that tuple, e.g. `2.qty`.
pub fn check_postcard_args(
    params: &[Shape],
    registry: &Registry,
    bytes: &[u8],
) -> Result<(), CheckError> {
    let mut reader = Reader::new(bytes);
    for (i, shape) in params.iter().enumerate() {
        check(&mut reader, shape, registry, 0).map_err(|f| f.at(Step::Position(i)).into_error())?;
    }
    trailing_after_args(params.len(), reader.remaining())
}

/// Like [`check_postcard_args`], with error paths starting with the
/// parameter's name, e.g. `item.qty`.
pub fn check_postcard_params(
    params: &[Param],
    registry: &Registry,
    bytes: &[u8],
) -> Result<(), CheckError> {
    let mut reader = Reader::new(bytes);
    for param in params {
        check(&mut reader, &param.shape, registry, 0)
            .map_err(|f| f.at(Step::Name(param.name.clone())).into_error())?;
    }
    trailing_after_args(params.len(), reader.remaining())
}

fn trailing_after_args(params: usize, remaining: usize) -> Result<(), CheckError> {
    let message = match (params, remaining) {
        (_, 0) => return Ok(()),
        (0, n) => format!(
            "the procedure takes no arguments, but {} were given",
            plural(n, "byte")
        ),
        (_, n) => format!("{} after the last argument", plural(n, "byte")),
    };
    Err(CheckError {
        path: String::new(),
        message,
    })
}

pub(crate) fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Shape nodes left to visit. Every node but the zero-width ones
    /// (unit, tuples, structs) consumes input, so this only bites on
    /// hostile schemas that nest zero-width products exponentially.
    steps_left: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            pos: 0,
            steps_left: 4096usize.saturating_add(bytes.len().saturating_mul(64)),
        }
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    #[inline]
    fn byte(&mut self, what: &str) -> Result<u8, Failure> {
        match self.bytes.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(ends_inside(what)),
        }
    }

    #[inline]
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Failure> {
        if n > self.remaining() {
            return Err(ends_inside(what));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Validates a varint of at most `max_len` bytes whose last byte, at
    /// that length, is at most `last_max` (the bits the type has left).
    /// The value itself is not needed, only its validity.
    #[inline]
    fn skip_varint(&mut self, max_len: usize, last_max: u8, what: &str) -> Result<(), Failure> {
        for i in 0..max_len {
            let b = self.byte(what)?;
            if b & 0x80 == 0 {
                if i == max_len - 1 && b > last_max {
                    return Err(out_of_range(what));
                }
                if i > 0 && b == 0 {
                    return Err(not_canonical(what));
                }
                return Ok(());
            }
        }
        Err(out_of_range(what))
    }

    /// A u32 varint (postcard's enum tags, and lengths as a wasm32
    /// procedure decodes them: usize is 32 bits there).
    #[inline]
    fn u32_varint(&mut self, what: &str) -> Result<u32, Failure> {
        let mut out: u32 = 0;
        for i in 0..5 {
            let b = self.byte(what)?;
            out |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 4 && b > 0x0f {
                    return Err(out_of_range(what));
                }
                if i > 0 && b == 0 {
                    return Err(not_canonical(what));
                }
                return Ok(out);
            }
        }
        Err(out_of_range(what))
    }

    /// A length, refused when its items cannot fit in what is left.
    fn byte_length(&mut self, what: &str) -> Result<usize, Failure> {
        let len = self.u32_varint("a length")? as usize;
        if len > self.remaining() {
            return Err(Failure::new(format!(
                "{what} of length {len} goes beyond the input ({} left)",
                plural(self.remaining(), "byte")
            )));
        }
        Ok(len)
    }
}

// The error constructors are cold and out of line, so that the checking
// code stays small and fast on the happy path.
#[cold]
#[inline(never)]
fn out_of_range(what: &str) -> Failure {
    Failure::new(format!("varint out of range for {what}"))
}

#[cold]
#[inline(never)]
fn ends_inside(what: &str) -> Failure {
    Failure::new(format!("the input ends inside {what}"))
}

#[cold]
#[inline(never)]
fn not_canonical(what: &str) -> Failure {
    Failure::new(format!(
        "a varint for {what} with redundant zero bytes (not the canonical encoding)"
    ))
}

/// Leaves inline (the common argument lists are all leaves), composites
/// out of line with the depth and step accounting.
#[inline]
fn check(
    r: &mut Reader<'_>,
    shape: &Shape,
    registry: &Registry,
    depth: usize,
) -> Result<(), Failure> {
    match shape {
        Shape::Unit => Ok(()),
        Shape::Bool => match r.byte("a bool")? {
            0 | 1 => Ok(()),
            b => Err(Failure::new(format!(
                "invalid bool byte {b} (expected 0 or 1)"
            ))),
        },
        Shape::U8 => r.byte("a u8").map(drop),
        Shape::I8 => r.byte("an i8").map(drop),
        Shape::U16 => r.skip_varint(3, 0x03, "a u16"),
        Shape::I16 => r.skip_varint(3, 0x03, "an i16"),
        Shape::U32 => r.skip_varint(5, 0x0f, "a u32"),
        Shape::I32 => r.skip_varint(5, 0x0f, "an i32"),
        Shape::U64 => r.skip_varint(10, 0x01, "a u64"),
        Shape::I64 => r.skip_varint(10, 0x01, "an i64"),
        Shape::U128 => r.skip_varint(19, 0x03, "a u128"),
        Shape::I128 => r.skip_varint(19, 0x03, "an i128"),
        Shape::F32 => r.take(4, "an f32").map(drop),
        Shape::F64 => r.take(8, "an f64").map(drop),
        Shape::Char => {
            let len = r.u32_varint("the length of a char")? as usize;
            if len > 4 {
                return Err(Failure::new(format!("a char of {len} bytes (at most 4)")));
            }
            let bytes = r.take(len, "a char")?;
            let mut chars = core::str::from_utf8(bytes)
                .map_err(|_| Failure::new(String::from("invalid UTF-8 in a char")))?
                .chars();
            match (chars.next(), chars.next()) {
                (Some(_), None) => Ok(()),
                _ => Err(Failure::new(String::from(
                    "a char must be exactly one character",
                ))),
            }
        }
        Shape::String => {
            let len = r.byte_length("a string")?;
            let bytes = r.take(len, "a string")?;
            core::str::from_utf8(bytes)
                .map(drop)
                .map_err(|e| Failure::new(format!("invalid UTF-8 in a string ({e})")))
        }
        Shape::Bytes => {
            let len = r.byte_length("a byte string")?;
            r.take(len, "a byte string").map(drop)
        }
        _ => check_composite(r, shape, registry, depth),
    }
}

#[cold]
#[inline(never)]
fn too_deep() -> Failure {
    Failure::new(format!("nesting deeper than {CHECK_DEPTH_MAX} levels"))
}

#[cold]
#[inline(never)]
fn too_many_steps() -> Failure {
    Failure::new(String::from(
        "the schema needs too many steps for this input (it nests empty structs excessively)",
    ))
}

#[inline(never)]
fn check_composite(
    r: &mut Reader<'_>,
    shape: &Shape,
    registry: &Registry,
    depth: usize,
) -> Result<(), Failure> {
    if depth >= CHECK_DEPTH_MAX {
        return Err(too_deep());
    }
    if r.steps_left == 0 {
        return Err(too_many_steps());
    }
    r.steps_left -= 1;
    let depth = depth + 1;
    match shape {
        Shape::Option(inner) => match r.byte("an Option tag")? {
            0 => Ok(()),
            1 => check(r, inner, registry, depth),
            b => Err(Failure::new(format!(
                "invalid Option tag {b} (expected 0 or 1)"
            ))),
        },
        Shape::Seq(item) => {
            let len = r.u32_varint("a length")?;
            repeated(r, len, "a sequence", |r, i| {
                check(r, item, registry, depth).map_err(|f| f.at(Step::Index(i)))
            })
        }
        Shape::Map { key, value } => {
            let len = r.u32_varint("a length")?;
            repeated(r, len, "a map", |r, i| {
                check(r, key, registry, depth)
                    .and_then(|()| check(r, value, registry, depth))
                    .map_err(|f| f.at(Step::Index(i)))
            })
        }
        Shape::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                check(r, item, registry, depth).map_err(|f| f.at(Step::Position(i)))?;
            }
            Ok(())
        }
        Shape::Array { item, len } => {
            if *len == 0 {
                return Ok(());
            }
            let before = r.pos;
            check(r, item, registry, depth).map_err(|f| f.at(Step::Index(0)))?;
            if r.pos == before {
                // Zero-width items: all are the same (empty) encoding.
                return Ok(());
            }
            for i in 1..*len as usize {
                check(r, item, registry, depth).map_err(|f| f.at(Step::Index(i)))?;
            }
            Ok(())
        }
        Shape::Named(id) => {
            let Some(def) = registry.get(id) else {
                return Err(Failure::new(format!(
                    "type `{id}` is not defined in the schema"
                )));
            };
            match &def.body {
                TypeBody::Struct(fields) => check_fields(r, fields, registry, depth),
                TypeBody::Enum(variants) => {
                    let tag = r.u32_varint("an enum variant index")?;
                    let Some(variant) = variants.get(tag as usize) else {
                        return Err(Failure::new(format!(
                            "variant index {tag} out of range: `{}` has {}",
                            def.name,
                            plural(variants.len(), "variant")
                        )));
                    };
                    check_fields(r, &variant.fields, registry, depth)
                        .map_err(|f| f.at(Step::Name(variant.name.clone())))
                }
            }
        }
        leaf => check(r, leaf, registry, depth),
    }
}

/// `len` items (sequence items or map entries), never iterating further
/// than the input can hold: after the first item, each further one must
/// consume at least a byte, unless items are zero-width (`Vec<()>`), in
/// which case every item is the same empty encoding and valid.
fn repeated(
    r: &mut Reader<'_>,
    len: u32,
    what: &str,
    mut item: impl FnMut(&mut Reader<'_>, usize) -> Result<(), Failure>,
) -> Result<(), Failure> {
    if len == 0 {
        return Ok(());
    }
    let before = r.pos;
    item(r, 0)?;
    if r.pos == before {
        return Ok(());
    }
    let further = len as usize - 1;
    if further > r.remaining() {
        return Err(Failure::new(format!(
            "{what} of length {len} goes beyond the input ({} left after its first item)",
            plural(r.remaining(), "byte")
        )));
    }
    for i in 1..len as usize {
        item(r, i)?;
    }
    Ok(())
}

fn check_fields(
    r: &mut Reader<'_>,
    fields: &Fields,
    registry: &Registry,
    depth: usize,
) -> Result<(), Failure> {
    match fields {
        Fields::Unit => Ok(()),
        Fields::Newtype(inner) => check(r, inner, registry, depth),
        Fields::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                check(r, item, registry, depth).map_err(|f| f.at(Step::Position(i)))?;
            }
            Ok(())
        }
        Fields::Named(fields) => {
            for field in fields {
                check(r, &field.shape, registry, depth)
                    .map_err(|f| f.at(Step::Name(field.name.clone())))?;
            }
            Ok(())
        }
    }
}

//! Rust-like names of shapes, for messages.

use alloc::string::String;
use core::fmt::Write;

use crate::{Registry, Shape};

/// Renders a shape the way a Rust programmer would write the type:
/// `u64`, `Option<Vec<String>>`, `NewItem`, `(u64, String)`, `[u8; 32]`,
/// `BTreeMap<String, u64>`, `Bytes`. Named types use their short name (or
/// their id when the registry does not define them).
pub fn render(shape: &Shape, registry: &Registry) -> String {
    let mut out = String::new();
    write_shape(&mut out, shape, registry, false);
    out
}

/// Like [`render`], but named types by their unique id, e.g.
/// `inventory::NewItem` (used for the ids of generic instantiations).
pub fn render_id(shape: &Shape, registry: &Registry) -> String {
    let mut out = String::new();
    write_shape(&mut out, shape, registry, true);
    out
}

pub(crate) fn primitive_name(shape: &Shape) -> Option<&'static str> {
    Some(match shape {
        Shape::Unit => "()",
        Shape::Bool => "bool",
        Shape::U8 => "u8",
        Shape::U16 => "u16",
        Shape::U32 => "u32",
        Shape::U64 => "u64",
        Shape::U128 => "u128",
        Shape::I8 => "i8",
        Shape::I16 => "i16",
        Shape::I32 => "i32",
        Shape::I64 => "i64",
        Shape::I128 => "i128",
        Shape::F32 => "f32",
        Shape::F64 => "f64",
        Shape::Char => "char",
        Shape::String => "String",
        Shape::Bytes => "Bytes",
        _ => return None,
    })
}

fn write_shape(out: &mut String, shape: &Shape, registry: &Registry, by_id: bool) {
    if let Some(name) = primitive_name(shape) {
        out.push_str(name);
        return;
    }
    match shape {
        Shape::Option(inner) => {
            out.push_str("Option<");
            write_shape(out, inner, registry, by_id);
            out.push('>');
        }
        Shape::Seq(inner) => {
            out.push_str("Vec<");
            write_shape(out, inner, registry, by_id);
            out.push('>');
        }
        Shape::Map { key, value } => {
            out.push_str("BTreeMap<");
            write_shape(out, key, registry, by_id);
            out.push_str(", ");
            write_shape(out, value, registry, by_id);
            out.push('>');
        }
        Shape::Tuple(items) => {
            out.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_shape(out, item, registry, by_id);
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Shape::Array { item, len } => {
            out.push('[');
            write_shape(out, item, registry, by_id);
            let _ = write!(out, "; {len}]");
        }
        Shape::Named(id) => match registry.get(id) {
            Some(def) if !by_id && !def.name.is_empty() => out.push_str(&def.name),
            _ => out.push_str(id),
        },
        _ => unreachable!("primitives are handled above"),
    }
}

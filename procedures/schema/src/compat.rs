//! Whether stored postcard data stays readable when its type changes.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::fingerprint::STRUCTURE_NODES_MAX;
use crate::{CHECK_DEPTH_MAX, Field, Fields, Registry, Shape, TypeBody, Variant, render};

/// Whether postcard data written with `old` still decodes as `new`.
///
/// Compatible: identical layouts; renamed fields, variants and types;
/// changed docs; enum variants appended at the end; integers widened
/// within one varint family of the same sign (`u16 -> u32 -> u64 -> u128`,
/// `i16 -> ... -> i128`, never from `u8`/`i8`, which are raw bytes); and
/// wire-identical spellings (a newtype struct and its inner shape, a
/// tuple, tuple struct, struct or array of the same items, `Bytes` and
/// `Vec<u8>`, `String` read as bytes, `char` read as `String`).
///
/// Anything else is an `Err` with one line per change, naming the path,
/// e.g. "`Item.qty`: u32 -> String", "`Item`: field `bin` added",
/// "`Kind`: variant `B` removed". A field or variant that keeps its name
/// but moves is reported as moved (its data would be read as another's).
pub fn stored_compatibility(
    old: (&Shape, &Registry),
    new: (&Shape, &Registry),
) -> Result<(), Vec<String>> {
    let mut walk = Walk {
        old: old.1,
        new: new.1,
        assumed: BTreeSet::new(),
        changes: Vec::new(),
        nodes_left: STRUCTURE_NODES_MAX,
    };
    let root = match old.0 {
        Shape::Named(id) => match old.1.get(id) {
            Some(def) => def.name.clone(),
            None => id.clone(),
        },
        _ => String::new(),
    };
    walk.shape(old.0, new.0, &root, 0);
    if walk.changes.is_empty() {
        Ok(())
    } else {
        Err(walk.changes)
    }
}

/// One level of a shape as postcard lays it out.
enum Wire<'a> {
    /// A primitive other than `()` and `Bytes`.
    Leaf(&'a Shape),
    Option(&'a Shape),
    /// `Bytes` is a sequence of `u8` on the wire.
    Seq(&'a Shape),
    Map(&'a Shape, &'a Shape),
    Product(Product<'a>),
    Enum(&'a [Variant]),
    /// A newtype struct: exactly its inner shape.
    Transparent(&'a Shape),
    Unknown(&'a str),
}

#[derive(Clone, Copy)]
enum Product<'a> {
    Empty,
    Items(&'a [Shape]),
    Fields(&'a [Field]),
    Array(&'a Shape, u32),
}

impl<'a> Product<'a> {
    fn len(self) -> usize {
        match self {
            Product::Empty => 0,
            Product::Items(items) => items.len(),
            Product::Fields(fields) => fields.len(),
            Product::Array(_, len) => len as usize,
        }
    }

    fn item(self, i: usize) -> &'a Shape {
        match self {
            Product::Empty => unreachable!("an empty product has no items"),
            Product::Items(items) => &items[i],
            Product::Fields(fields) => &fields[i].shape,
            Product::Array(item, _) => item,
        }
    }

    fn names(self) -> Option<Vec<&'a str>> {
        match self {
            Product::Fields(fields) => Some(fields.iter().map(|f| f.name.as_str()).collect()),
            _ => None,
        }
    }

    fn render(self, registry: &Registry) -> String {
        match self {
            Product::Empty => String::from("()"),
            Product::Array(item, len) => format!("[{}; {len}]", render(item, registry)),
            _ => {
                let items: Vec<String> = (0..self.len())
                    .map(|i| render(self.item(i), registry))
                    .collect();
                match self {
                    Product::Fields(fields) => {
                        let named: Vec<String> = fields
                            .iter()
                            .zip(&items)
                            .map(|(f, r)| format!("{}: {r}", f.name))
                            .collect();
                        format!("{{ {} }}", named.join(", "))
                    }
                    _ => format!("({})", items.join(", ")),
                }
            }
        }
    }
}

static U8: Shape = Shape::U8;

fn wire<'a>(shape: &'a Shape, registry: &'a Registry) -> Wire<'a> {
    match shape {
        Shape::Unit => Wire::Product(Product::Empty),
        Shape::Bytes => Wire::Seq(&U8),
        Shape::Option(inner) => Wire::Option(inner),
        Shape::Seq(inner) => Wire::Seq(inner),
        Shape::Map { key, value } => Wire::Map(key, value),
        Shape::Tuple(items) => Wire::Product(Product::Items(items)),
        Shape::Array { item, len } => Wire::Product(Product::Array(item, *len)),
        Shape::Named(id) => match registry.get(id) {
            None => Wire::Unknown(id),
            Some(def) => match &def.body {
                TypeBody::Enum(variants) => Wire::Enum(variants),
                TypeBody::Struct(fields) => fields_wire(fields),
            },
        },
        primitive => Wire::Leaf(primitive),
    }
}

fn fields_wire(fields: &Fields) -> Wire<'_> {
    match fields {
        Fields::Unit => Wire::Product(Product::Empty),
        Fields::Newtype(inner) => Wire::Transparent(inner),
        Fields::Tuple(items) => Wire::Product(Product::Items(items)),
        Fields::Named(fields) => Wire::Product(Product::Fields(fields)),
    }
}

fn widens(old: &Shape, new: &Shape) -> bool {
    use Shape::*;
    matches!(
        (old, new),
        (U16, U32 | U64 | U128) | (U32, U64 | U128) | (U64, U128)
            | (I16, I32 | I64 | I128) | (I32, I64 | I128) | (I64, I128)
            // postcard: a length and UTF-8 bytes, read as bytes or a string
            | (Char, String)
    )
}

struct Walk<'o, 'n> {
    old: &'o Registry,
    new: &'n Registry,
    /// Pairs of named types already being compared (or compared): a
    /// recursive type is compatible if it is, assuming its recursion is.
    assumed: BTreeSet<(&'o str, &'n str)>,
    changes: Vec<String>,
    nodes_left: usize,
}

fn join(path: &str, step: &str) -> String {
    if path.is_empty() {
        String::from(step.trim_start_matches('.'))
    } else {
        format!("{path}{step}")
    }
}

impl<'o, 'n> Walk<'o, 'n> {
    fn change(&mut self, path: &str, what: String) {
        if path.is_empty() {
            self.changes.push(what);
        } else {
            self.changes.push(format!("`{path}`: {what}"));
        }
    }

    fn shape(&mut self, old: &'o Shape, new: &'n Shape, path: &str, depth: usize) {
        if depth >= CHECK_DEPTH_MAX || self.nodes_left == 0 {
            self.change(
                path,
                String::from("too deeply nested or too large to compare"),
            );
            return;
        }
        self.nodes_left -= 1;
        if let (Shape::Named(a), Shape::Named(b)) = (old, new)
            && !self.assumed.insert((a.as_str(), b.as_str()))
        {
            return;
        }
        let depth = depth + 1;
        match (wire(old, self.old), wire(new, self.new)) {
            (Wire::Transparent(inner), _) => self.shape(inner, new, path, depth),
            (_, Wire::Transparent(inner)) => self.shape(old, inner, path, depth),
            (Wire::Unknown(id), _) => self.change(path, format!("type `{id}` is not defined")),
            (_, Wire::Unknown(id)) => self.change(path, format!("type `{id}` is not defined")),
            (Wire::Leaf(a), Wire::Leaf(b)) if a == b || widens(a, b) => {}
            // A string's UTF-8 bytes read as a byte string.
            (Wire::Leaf(Shape::String), Wire::Seq(Shape::U8)) => {}
            (Wire::Option(a), Wire::Option(b)) => self.shape(a, b, path, depth),
            (Wire::Seq(a), Wire::Seq(b)) => self.shape(a, b, &join(path, "[_]"), depth),
            (Wire::Map(ak, av), Wire::Map(bk, bv)) => {
                self.shape(ak, bk, &join(path, ".<key>"), depth);
                self.shape(av, bv, &join(path, "[_]"), depth);
            }
            (Wire::Product(a), Wire::Product(b)) => self.product(a, b, path, depth),
            (Wire::Enum(a), Wire::Enum(b)) => self.variants(a, b, path, depth),
            _ => {
                let what = format!("{} -> {}", render(old, self.old), render(new, self.new));
                self.change(path, what);
            }
        }
    }

    fn product(&mut self, old: Product<'o>, new: Product<'n>, path: &str, depth: usize) {
        let (old_names, new_names) = (old.names(), new.names());
        if let (Some(a), Some(b)) = (&old_names, &new_names) {
            let moves = moved(a, b);
            if !moves.is_empty() {
                for (name, from, to) in moves {
                    self.change(
                        path,
                        format!("field `{name}` moved from position {from} to {to}"),
                    );
                }
                return;
            }
            if a.len() != b.len() {
                for name in a.iter().skip(b.len()) {
                    self.change(path, format!("field `{name}` removed"));
                }
                for name in b.iter().skip(a.len()) {
                    self.change(path, format!("field `{name}` added"));
                }
                return;
            }
        }
        if old.len() != new.len() {
            let what = format!("{} -> {}", old.render(self.old), new.render(self.new));
            self.change(path, what);
            return;
        }
        if let (Product::Array(a, _), Product::Array(b, _)) = (old, new) {
            return self.shape(a, b, &join(path, "[_]"), depth);
        }
        for i in 0..old.len() {
            let step = match &old_names {
                Some(names) => format!(".{}", names[i]),
                None => format!(".{i}"),
            };
            self.shape(old.item(i), new.item(i), &join(path, &step), depth);
        }
    }

    fn variants(&mut self, old: &'o [Variant], new: &'n [Variant], path: &str, depth: usize) {
        let old_names: Vec<&str> = old.iter().map(|v| v.name.as_str()).collect();
        let new_names: Vec<&str> = new.iter().map(|v| v.name.as_str()).collect();
        let moves = moved(&old_names, &new_names);
        if !moves.is_empty() {
            for (name, from, to) in moves {
                self.change(
                    path,
                    format!("variant `{name}` moved from position {from} to {to}"),
                );
            }
            return;
        }
        for v in old.iter().skip(new.len()) {
            self.change(path, format!("variant `{}` removed", v.name));
        }
        for (a, b) in old.iter().zip(new) {
            let step = format!(".{}", a.name);
            let sub = join(path, &step);
            match (fields_wire(&a.fields), fields_wire(&b.fields)) {
                (Wire::Transparent(x), Wire::Transparent(y)) => self.shape(x, y, &sub, depth),
                (Wire::Product(x), Wire::Product(y)) => self.product(x, y, &sub, depth),
                (Wire::Transparent(x), Wire::Product(y)) if y.len() == 1 => {
                    self.shape(x, y.item(0), &sub, depth)
                }
                (Wire::Product(x), Wire::Transparent(y)) if x.len() == 1 => {
                    self.shape(x.item(0), y, &sub, depth)
                }
                _ => {
                    let what = format!(
                        "{} -> {}",
                        render_fields(&a.fields, self.old),
                        render_fields(&b.fields, self.new)
                    );
                    self.change(&sub, what)
                }
            }
        }
    }
}

fn render_fields(fields: &Fields, registry: &Registry) -> String {
    match fields_wire(fields) {
        Wire::Transparent(inner) => render(inner, registry),
        Wire::Product(product) => product.render(registry),
        _ => unreachable!("fields are a product or a newtype"),
    }
}

/// Names present on both sides at different positions.
fn moved<'a>(old: &[&'a str], new: &[&str]) -> Vec<(&'a str, usize, usize)> {
    let mut out = Vec::new();
    for (from, name) in old.iter().enumerate() {
        if let Some(to) = new.iter().position(|n| n == name)
            && to != from
        {
            out.push((*name, from, to));
        }
    }
    out
}

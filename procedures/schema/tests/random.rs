//! Property tests: random shapes (with registries of random structs and
//! enums), random values of them encoded by serde itself (postcard and
//! serde_json, through a shape-driven `Serialize`), and random corruptions.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ordo_schema::{
    Field, Fields, Registry, Shape, TypeBody, TypeDef, Variant, args_fingerprint, check_json,
    check_postcard, check_postcard_args, describe_args_mismatch, postcard_to_json,
    stored_compatibility,
};
use proptest::prelude::*;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde::ser::{
    SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant, SerializeTuple,
    SerializeTupleStruct, SerializeTupleVariant, Serializer,
};
use serde::{Serialize, de::IntoDeserializer};
use serde_json::{Value as Json, json};

// ------------------------------------------------------------------ shapes

const TYPES_MAX: usize = 5;

fn id(i: usize) -> String {
    format!("random::T{i}")
}

fn leaf(named: bool) -> BoxedStrategy<Shape> {
    use Shape::*;
    let prims = prop_oneof![
        Just(Unit),
        Just(Bool),
        Just(U8),
        Just(U16),
        Just(U32),
        Just(U64),
        Just(U128),
        Just(I8),
        Just(I16),
        Just(I32),
        Just(I64),
        Just(I128),
        Just(F32),
        Just(F64),
        Just(Char),
        Just(String),
        Just(Bytes),
    ];
    if named {
        prop_oneof![3 => prims, 1 => (0..TYPES_MAX).prop_map(|i| Named(id(i)))].boxed()
    } else {
        prims.boxed()
    }
}

/// Map keys that JSON can write as object keys.
fn key_shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::String),
        Just(Shape::U32),
        Just(Shape::I64),
        Just(Shape::U8),
        Just(Shape::Bool),
        Just(Shape::Char),
    ]
}

fn shape(named: bool) -> BoxedStrategy<Shape> {
    leaf(named)
        .prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|s| Shape::Option(Box::new(s))),
                inner.clone().prop_map(|s| Shape::Seq(Box::new(s))),
                (key_shape(), inner.clone()).prop_map(|(k, v)| Shape::Map {
                    key: Box::new(k),
                    value: Box::new(v)
                }),
                prop::collection::vec(inner.clone(), 0..4).prop_map(Shape::Tuple),
                (inner, 0..4u32).prop_map(|(s, len)| Shape::Array {
                    item: Box::new(s),
                    len
                }),
            ]
        })
        .boxed()
}

fn fields() -> impl Strategy<Value = Fields> {
    prop_oneof![
        Just(Fields::Unit),
        shape(true).prop_map(Fields::Newtype),
        prop::collection::vec(shape(true), 2..4).prop_map(Fields::Tuple),
        prop::collection::vec(shape(true), 0..4).prop_map(|shapes| Fields::Named(
            shapes
                .into_iter()
                .enumerate()
                .map(|(i, shape)| Field {
                    name: format!("f{i}"),
                    doc: String::new(),
                    shape
                })
                .collect()
        )),
    ]
}

fn body() -> impl Strategy<Value = TypeBody> {
    prop_oneof![
        fields().prop_map(TypeBody::Struct),
        prop::collection::vec(fields(), 1..4).prop_map(|fs| TypeBody::Enum(
            fs.into_iter()
                .enumerate()
                .map(|(i, fields)| Variant {
                    name: format!("V{i}"),
                    doc: String::new(),
                    fields
                })
                .collect()
        )),
    ]
}

/// Type `i` may refer only to types `< i` (values stay finite); later
/// references become `u16`.
fn acyclic(shape: &mut Shape, i: usize) {
    match shape {
        Shape::Named(target) => {
            let j: usize = target.trim_start_matches("random::T").parse().unwrap();
            if j >= i {
                *shape = Shape::U16;
            }
        }
        Shape::Option(s) | Shape::Seq(s) => acyclic(s, i),
        Shape::Array { item, .. } => acyclic(item, i),
        Shape::Map { key, value } => {
            acyclic(key, i);
            acyclic(value, i);
        }
        Shape::Tuple(items) => items.iter_mut().for_each(|s| acyclic(s, i)),
        _ => {}
    }
}

fn acyclic_fields(fields: &mut Fields, i: usize) {
    match fields {
        Fields::Unit => {}
        Fields::Newtype(s) => acyclic(s, i),
        Fields::Tuple(items) => items.iter_mut().for_each(|s| acyclic(s, i)),
        Fields::Named(fs) => fs.iter_mut().for_each(|f| acyclic(&mut f.shape, i)),
    }
}

fn universe() -> impl Strategy<Value = (Shape, Registry)> {
    (prop::collection::vec(body(), TYPES_MAX), shape(true)).prop_map(|(bodies, root)| {
        let mut registry = Registry::new();
        for (i, mut body) in bodies.into_iter().enumerate() {
            match &mut body {
                TypeBody::Struct(f) => acyclic_fields(f, i),
                TypeBody::Enum(vs) => vs.iter_mut().for_each(|v| acyclic_fields(&mut v.fields, i)),
            }
            registry.types.insert(
                id(i),
                TypeDef {
                    name: format!("T{i}"),
                    doc: format!("type {i}"),
                    body,
                },
            );
        }
        // A sequence of zero-width items can claim billions of them in a
        // few bytes; the check accepts that without iterating (unit tests
        // cover it), but the decoder of these tests would iterate.
        let ids: Vec<String> = registry.types.keys().cloned().collect();
        for id in ids {
            let mut body = registry.types[&id].body.clone();
            match &mut body {
                TypeBody::Struct(f) => fields_no_zero_width_seqs(f, &registry),
                TypeBody::Enum(vs) => vs
                    .iter_mut()
                    .for_each(|v| fields_no_zero_width_seqs(&mut v.fields, &registry)),
            }
            registry.types.get_mut(&id).unwrap().body = body;
        }
        let mut root = root;
        no_zero_width_seqs(&mut root, &registry);
        (root, registry)
    })
}

fn zero_width(shape: &Shape, r: &Registry) -> bool {
    let fields = |f: &Fields| match f {
        Fields::Unit => true,
        Fields::Newtype(s) => zero_width(s, r),
        Fields::Tuple(items) => items.iter().all(|s| zero_width(s, r)),
        Fields::Named(fs) => fs.iter().all(|f| zero_width(&f.shape, r)),
    };
    match shape {
        Shape::Unit => true,
        Shape::Tuple(items) => items.iter().all(|s| zero_width(s, r)),
        Shape::Array { item, len } => *len == 0 || zero_width(item, r),
        Shape::Named(id) => match &r.get(id).unwrap().body {
            TypeBody::Struct(f) => fields(f),
            TypeBody::Enum(_) => false,
        },
        _ => false,
    }
}

fn no_zero_width_seqs(shape: &mut Shape, r: &Registry) {
    match shape {
        Shape::Seq(item) if zero_width(item, r) => *shape = Shape::Seq(Box::new(Shape::U8)),
        Shape::Option(s) | Shape::Seq(s) => no_zero_width_seqs(s, r),
        Shape::Array { item, .. } => no_zero_width_seqs(item, r),
        Shape::Map { key, value } => {
            no_zero_width_seqs(key, r);
            no_zero_width_seqs(value, r);
        }
        Shape::Tuple(items) => items.iter_mut().for_each(|s| no_zero_width_seqs(s, r)),
        _ => {}
    }
}

fn fields_no_zero_width_seqs(fields: &mut Fields, r: &Registry) {
    match fields {
        Fields::Unit => {}
        Fields::Newtype(s) => no_zero_width_seqs(s, r),
        Fields::Tuple(items) => items.iter_mut().for_each(|s| no_zero_width_seqs(s, r)),
        Fields::Named(fs) => fs
            .iter_mut()
            .for_each(|f| no_zero_width_seqs(&mut f.shape, r)),
    }
}

// ------------------------------------------------------------------ values

/// A dynamic value; what it means depends on the shape it goes with.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Unit,
    Bool(bool),
    U(u128),
    I(i128),
    F32(u32),
    F64(u64),
    Char(char),
    Str(String),
    Bytes(Vec<u8>),
    Opt(Option<Box<V>>),
    /// Sequence items, tuple / array / struct items in order.
    List(Vec<V>),
    Map(Vec<(V, V)>),
    Variant(u32, Box<V>),
}

/// splitmix64: a deterministic source, seeded by proptest. The flag keeps
/// 128-bit integers within 64 bits (a `serde_json::Value` holds no more).
struct Rng(u64, bool);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Mostly small numbers, sometimes extremes: varint lengths vary.
    fn bits(&mut self, width: u32) -> u128 {
        let raw = (u128::from(self.next()) << 64) | u128::from(self.next());
        let keep = match self.below(4) {
            0 => 7,
            1 => 14,
            2 => width / 2,
            _ => width,
        };
        let mask = if keep >= 128 {
            u128::MAX
        } else {
            (1u128 << keep) - 1
        };
        let width_mask = if width >= 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        raw & mask & width_mask
    }
}

fn def<'r>(registry: &'r Registry, shape: &Shape) -> &'r TypeDef {
    match shape {
        Shape::Named(id) => registry.get(id).unwrap(),
        _ => unreachable!(),
    }
}

fn gen_value(shape: &Shape, r: &Registry, rng: &mut Rng, depth: u32) -> V {
    let count = |rng: &mut Rng| if depth > 3 { 0 } else { rng.below(4) as usize };
    match shape {
        Shape::Unit => V::Unit,
        Shape::Bool => V::Bool(rng.below(2) == 1),
        Shape::U8 => V::U(rng.bits(8)),
        Shape::U16 => V::U(rng.bits(16)),
        Shape::U32 => V::U(rng.bits(32)),
        Shape::U64 => V::U(rng.bits(64)),
        Shape::U128 if rng.1 => V::U(rng.bits(64)),
        Shape::U128 => V::U(rng.bits(128)),
        Shape::I128 if rng.1 => V::I(rng.bits(64) as u64 as i64 as i128),
        Shape::I8 => V::I(rng.bits(8) as u8 as i8 as i128),
        Shape::I16 => V::I(rng.bits(16) as u16 as i16 as i128),
        Shape::I32 => V::I(rng.bits(32) as u32 as i32 as i128),
        Shape::I64 => V::I(rng.bits(64) as u64 as i64 as i128),
        Shape::I128 => V::I(rng.bits(128) as i128),
        // Finite floats (JSON has no NaN or infinity).
        Shape::F32 => V::F32((rng.below(2_000_000) as f32 / 7.0 - 1000.0).to_bits()),
        Shape::F64 => V::F64((rng.below(2_000_000) as f64 / 7.0 - 1000.0).to_bits()),
        Shape::Char => {
            V::Char(['a', 'Z', '0', 'é', '€', '𝄞', '\u{7f}', '"'][rng.below(8) as usize])
        }
        Shape::String => {
            let n = count(rng);
            V::Str(
                (0..n)
                    .map(|_| ['x', 'ü', '字', ' '][rng.below(4) as usize])
                    .collect(),
            )
        }
        Shape::Bytes => V::Bytes((0..count(rng)).map(|_| rng.next() as u8).collect()),
        Shape::Option(inner) => {
            if rng.below(2) == 0 {
                V::Opt(None)
            } else {
                V::Opt(Some(Box::new(gen_value(inner, r, rng, depth + 1))))
            }
        }
        Shape::Seq(item) => V::List(
            (0..count(rng))
                .map(|_| gen_value(item, r, rng, depth + 1))
                .collect(),
        ),
        Shape::Map { key, value } => {
            // Unique keys, in key order (as a BTreeMap would hold them).
            let mut entries: BTreeMap<String, (V, V)> = BTreeMap::new();
            for _ in 0..count(rng) {
                let k = gen_value(key, r, rng, depth + 1);
                let v = gen_value(value, r, rng, depth + 1);
                entries.insert(format!("{k:?}"), (k, v));
            }
            V::Map(entries.into_values().collect())
        }
        Shape::Tuple(items) => V::List(
            items
                .iter()
                .map(|s| gen_value(s, r, rng, depth + 1))
                .collect(),
        ),
        Shape::Array { item, len } => V::List(
            (0..*len)
                .map(|_| gen_value(item, r, rng, depth + 1))
                .collect(),
        ),
        Shape::Named(_) => match &def(r, shape).body {
            TypeBody::Struct(fields) => gen_fields(fields, r, rng, depth),
            TypeBody::Enum(variants) => {
                let i = rng.below(variants.len() as u64) as usize;
                V::Variant(
                    i as u32,
                    Box::new(gen_fields(&variants[i].fields, r, rng, depth)),
                )
            }
        },
    }
}

fn gen_fields(fields: &Fields, r: &Registry, rng: &mut Rng, depth: u32) -> V {
    match fields {
        Fields::Unit => V::Unit,
        Fields::Newtype(inner) => gen_value(inner, r, rng, depth + 1),
        Fields::Tuple(items) => V::List(
            items
                .iter()
                .map(|s| gen_value(s, r, rng, depth + 1))
                .collect(),
        ),
        Fields::Named(fs) => V::List(
            fs.iter()
                .map(|f| gen_value(&f.shape, r, rng, depth + 1))
                .collect(),
        ),
    }
}

// --------------------------------------------- serde, driven by the shape

thread_local! {
    static NAMES: RefCell<HashMap<String, &'static str>> = RefCell::new(HashMap::new());
}

/// serde wants `&'static str` names; intern (leak once per distinct name).
fn st(s: &str) -> &'static str {
    NAMES.with_borrow_mut(|names| {
        *names
            .entry(s.to_string())
            .or_insert_with(|| Box::leak(s.to_string().into_boxed_str()))
    })
}

/// Field names as serde wants them (postcard takes a struct's length from
/// the number of names).
fn field_names(fields: &[Field]) -> &'static [&'static str] {
    let names: Vec<&'static str> = fields.iter().map(|f| st(&f.name)).collect();
    Box::leak(names.into_boxed_slice())
}

struct Ser<'a> {
    v: &'a V,
    shape: &'a Shape,
    r: &'a Registry,
}

fn ser<'a>(v: &'a V, shape: &'a Shape, r: &'a Registry) -> Ser<'a> {
    Ser { v, shape, r }
}

impl Serialize for Ser<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r;
        match (self.shape, self.v) {
            (Shape::Unit, V::Unit) => s.serialize_unit(),
            (Shape::Bool, V::Bool(b)) => s.serialize_bool(*b),
            (Shape::U8, V::U(n)) => s.serialize_u8(*n as u8),
            (Shape::U16, V::U(n)) => s.serialize_u16(*n as u16),
            (Shape::U32, V::U(n)) => s.serialize_u32(*n as u32),
            (Shape::U64, V::U(n)) => s.serialize_u64(*n as u64),
            (Shape::U128, V::U(n)) => s.serialize_u128(*n),
            (Shape::I8, V::I(n)) => s.serialize_i8(*n as i8),
            (Shape::I16, V::I(n)) => s.serialize_i16(*n as i16),
            (Shape::I32, V::I(n)) => s.serialize_i32(*n as i32),
            (Shape::I64, V::I(n)) => s.serialize_i64(*n as i64),
            (Shape::I128, V::I(n)) => s.serialize_i128(*n),
            (Shape::F32, V::F32(bits)) => s.serialize_f32(f32::from_bits(*bits)),
            (Shape::F64, V::F64(bits)) => s.serialize_f64(f64::from_bits(*bits)),
            (Shape::Char, V::Char(c)) => s.serialize_char(*c),
            (Shape::String, V::Str(x)) => s.serialize_str(x),
            (Shape::Bytes, V::Bytes(b)) => s.serialize_bytes(b),
            (Shape::Option(_), V::Opt(None)) => s.serialize_none(),
            (Shape::Option(inner), V::Opt(Some(v))) => s.serialize_some(&ser(v, inner, r)),
            (Shape::Seq(item), V::List(items)) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&ser(v, item, r))?;
                }
                seq.end()
            }
            (Shape::Map { key, value }, V::Map(entries)) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(&ser(k, key, r), &ser(v, value, r))?;
                }
                map.end()
            }
            (Shape::Tuple(shapes), V::List(items)) => {
                let mut t = s.serialize_tuple(items.len())?;
                for (v, shape) in items.iter().zip(shapes) {
                    t.serialize_element(&ser(v, shape, r))?;
                }
                t.end()
            }
            (Shape::Array { item, .. }, V::List(items)) => {
                let mut t = s.serialize_tuple(items.len())?;
                for v in items {
                    t.serialize_element(&ser(v, item, r))?;
                }
                t.end()
            }
            (Shape::Named(_), v) => {
                let d = def(r, self.shape);
                let name = st(&d.name);
                match (&d.body, v) {
                    (TypeBody::Struct(Fields::Unit), V::Unit) => s.serialize_unit_struct(name),
                    (TypeBody::Struct(Fields::Newtype(inner)), v) => {
                        s.serialize_newtype_struct(name, &ser(v, inner, r))
                    }
                    (TypeBody::Struct(Fields::Tuple(shapes)), V::List(items)) => {
                        let mut t = s.serialize_tuple_struct(name, items.len())?;
                        for (v, shape) in items.iter().zip(shapes) {
                            t.serialize_field(&ser(v, shape, r))?;
                        }
                        t.end()
                    }
                    (TypeBody::Struct(Fields::Named(fs)), V::List(items)) => {
                        let mut t = s.serialize_struct(name, items.len())?;
                        for (v, f) in items.iter().zip(fs) {
                            t.serialize_field(st(&f.name), &ser(v, &f.shape, r))?;
                        }
                        t.end()
                    }
                    (TypeBody::Enum(variants), V::Variant(i, v)) => {
                        let variant = &variants[*i as usize];
                        let vname = st(&variant.name);
                        match (&variant.fields, &**v) {
                            (Fields::Unit, V::Unit) => s.serialize_unit_variant(name, *i, vname),
                            (Fields::Newtype(inner), v) => {
                                s.serialize_newtype_variant(name, *i, vname, &ser(v, inner, r))
                            }
                            (Fields::Tuple(shapes), V::List(items)) => {
                                let mut t =
                                    s.serialize_tuple_variant(name, *i, vname, items.len())?;
                                for (v, shape) in items.iter().zip(shapes) {
                                    t.serialize_field(&ser(v, shape, r))?;
                                }
                                t.end()
                            }
                            (Fields::Named(fs), V::List(items)) => {
                                let mut t =
                                    s.serialize_struct_variant(name, *i, vname, items.len())?;
                                for (v, f) in items.iter().zip(fs) {
                                    t.serialize_field(st(&f.name), &ser(v, &f.shape, r))?;
                                }
                                t.end()
                            }
                            other => panic!("value does not fit its variant: {other:?}"),
                        }
                    }
                    other => panic!("value does not fit its type: {other:?}"),
                }
            }
            other => panic!("value does not fit its shape: {other:?}"),
        }
    }
}

/// Decodes a `V` of a shape from postcard (a shape-driven `Deserialize`).
#[derive(Clone, Copy)]
struct Seed<'a> {
    shape: &'a Shape,
    r: &'a Registry,
}

fn seed<'a>(shape: &'a Shape, r: &'a Registry) -> Seed<'a> {
    Seed { shape, r }
}

/// What is being decoded, for the visitor.
#[derive(Clone, Copy)]
enum Want<'a> {
    Shape(&'a Shape),
    List(&'a [Shape]),
    Array(&'a Shape, u32),
    Fields(&'a [Field]),
    Enum(&'a [Variant]),
}

struct Vis<'a> {
    want: Want<'a>,
    r: &'a Registry,
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = V;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        let r = self.r;
        let vis = Vis {
            want: Want::Shape(self.shape),
            r,
        };
        match self.shape {
            Shape::Unit => d.deserialize_unit(vis),
            Shape::Bool => d.deserialize_bool(vis),
            Shape::U8 => d.deserialize_u8(vis),
            Shape::U16 => d.deserialize_u16(vis),
            Shape::U32 => d.deserialize_u32(vis),
            Shape::U64 => d.deserialize_u64(vis),
            Shape::U128 => d.deserialize_u128(vis),
            Shape::I8 => d.deserialize_i8(vis),
            Shape::I16 => d.deserialize_i16(vis),
            Shape::I32 => d.deserialize_i32(vis),
            Shape::I64 => d.deserialize_i64(vis),
            Shape::I128 => d.deserialize_i128(vis),
            Shape::F32 => d.deserialize_f32(vis),
            Shape::F64 => d.deserialize_f64(vis),
            Shape::Char => d.deserialize_char(vis),
            Shape::String => d.deserialize_string(vis),
            Shape::Bytes => d.deserialize_byte_buf(vis),
            Shape::Option(_) => d.deserialize_option(vis),
            Shape::Seq(_) => d.deserialize_seq(vis),
            Shape::Map { .. } => d.deserialize_map(vis),
            Shape::Tuple(items) => d.deserialize_tuple(
                items.len(),
                Vis {
                    want: Want::List(items),
                    r,
                },
            ),
            Shape::Array { item, len } => d.deserialize_tuple(
                *len as usize,
                Vis {
                    want: Want::Array(item, *len),
                    r,
                },
            ),
            Shape::Named(_) => {
                let def = def(r, self.shape);
                let name = st(&def.name);
                match &def.body {
                    TypeBody::Struct(Fields::Unit) => d.deserialize_unit_struct(name, vis),
                    TypeBody::Struct(Fields::Newtype(_)) => d.deserialize_newtype_struct(name, vis),
                    TypeBody::Struct(Fields::Tuple(items)) => d.deserialize_tuple_struct(
                        name,
                        items.len(),
                        Vis {
                            want: Want::List(items),
                            r,
                        },
                    ),
                    TypeBody::Struct(Fields::Named(fs)) => d.deserialize_struct(
                        name,
                        field_names(fs),
                        Vis {
                            want: Want::Fields(fs),
                            r,
                        },
                    ),
                    TypeBody::Enum(vs) => d.deserialize_enum(
                        name,
                        &[],
                        Vis {
                            want: Want::Enum(vs),
                            r,
                        },
                    ),
                }
            }
        }
    }
}

impl<'de> Visitor<'de> for Vis<'_> {
    type Value = V;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value of the shape")
    }
    fn visit_unit<E: de::Error>(self) -> Result<V, E> {
        Ok(V::Unit)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V, E> {
        Ok(V::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V, E> {
        Ok(V::U(v.into()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<V, E> {
        Ok(V::U(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V, E> {
        Ok(V::I(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<V, E> {
        Ok(V::I(v))
    }
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<V, E> {
        Ok(V::F32(v.to_bits()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V, E> {
        Ok(V::F64(v.to_bits()))
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<V, E> {
        Ok(V::Char(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<V, E> {
        Ok(V::Str(v.to_string()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V, E> {
        Ok(V::Bytes(v.to_vec()))
    }
    fn visit_none<E: de::Error>(self) -> Result<V, E> {
        Ok(V::Opt(None))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        let Want::Shape(Shape::Option(inner)) = self.want else {
            unreachable!()
        };
        Ok(V::Opt(Some(Box::new(seed(inner, self.r).deserialize(d)?))))
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V, D::Error> {
        let Want::Shape(shape) = self.want else {
            unreachable!()
        };
        let TypeBody::Struct(Fields::Newtype(inner)) = &def(self.r, shape).body else {
            unreachable!()
        };
        seed(inner, self.r).deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<V, A::Error> {
        let r = self.r;
        let mut out = Vec::new();
        let missing = || de::Error::custom("too few items");
        match self.want {
            Want::Shape(Shape::Seq(item)) => {
                while let Some(v) = seq.next_element_seed(seed(item, r))? {
                    out.push(v);
                }
            }
            Want::List(items) => {
                for s in items {
                    out.push(seq.next_element_seed(seed(s, r))?.ok_or_else(missing)?);
                }
            }
            Want::Array(item, len) => {
                for _ in 0..len {
                    out.push(seq.next_element_seed(seed(item, r))?.ok_or_else(missing)?);
                }
            }
            Want::Fields(fs) => {
                for f in fs {
                    out.push(
                        seq.next_element_seed(seed(&f.shape, r))?
                            .ok_or_else(missing)?,
                    );
                }
            }
            _ => unreachable!(),
        }
        Ok(V::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<V, A::Error> {
        let Want::Shape(Shape::Map { key, value }) = self.want else {
            unreachable!()
        };
        let mut out = Vec::new();
        while let Some(k) = map.next_key_seed(seed(key, self.r))? {
            out.push((k, map.next_value_seed(seed(value, self.r))?));
        }
        Ok(V::Map(out))
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V, A::Error> {
        let Want::Enum(variants) = self.want else {
            unreachable!()
        };
        let (index, access) = data.variant_seed(IndexSeed)?;
        let Some(variant) = variants.get(index as usize) else {
            return Err(de::Error::custom("variant index out of range"));
        };
        let r = self.r;
        let content = match &variant.fields {
            Fields::Unit => access.unit_variant().map(|()| V::Unit)?,
            Fields::Newtype(inner) => access.newtype_variant_seed(seed(inner, r))?,
            Fields::Tuple(items) => access.tuple_variant(
                items.len(),
                Vis {
                    want: Want::List(items),
                    r,
                },
            )?,
            Fields::Named(fs) => access.struct_variant(
                field_names(fs),
                Vis {
                    want: Want::Fields(fs),
                    r,
                },
            )?,
        };
        Ok(V::Variant(index, Box::new(content)))
    }
}

struct IndexSeed;

impl<'de> DeserializeSeed<'de> for IndexSeed {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        struct Index;
        impl Visitor<'_> for Index {
            type Value = u32;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a variant index")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
                u32::try_from(v).map_err(E::custom)
            }
        }
        d.deserialize_u32(Index)
    }
}

/// Decodes all of `bytes` as a `V` of `shape` with postcard.
fn decode(shape: &Shape, r: &Registry, bytes: &[u8]) -> Option<V> {
    let mut d = postcard::Deserializer::from_bytes(bytes);
    let v = seed(shape, r).deserialize(&mut d).ok()?;
    d.finalize().ok().filter(|rest| rest.is_empty()).map(|_| v)
}

fn encode(v: &V, shape: &Shape, r: &Registry) -> Vec<u8> {
    postcard::to_allocvec(&ser(v, shape, r)).unwrap()
}

// ------------------------------------------------------ JSON corruption sites

/// Kinds of JSON a shape can accept at its top.
fn accepted_kinds(shape: &Shape, r: &Registry) -> Vec<&'static str> {
    match shape {
        Shape::Unit => vec!["null"],
        Shape::Bool => vec!["bool"],
        Shape::Char | Shape::String => vec!["string"],
        Shape::Bytes => vec!["array", "string"],
        Shape::Option(inner) => {
            let mut k = accepted_kinds(inner, r);
            k.push("null");
            k
        }
        Shape::Seq(_) | Shape::Tuple(_) | Shape::Array { .. } => vec!["array"],
        Shape::Map { .. } => vec!["object"],
        Shape::Named(_) => match &def(r, shape).body {
            TypeBody::Struct(Fields::Unit) => vec!["null"],
            TypeBody::Struct(Fields::Newtype(inner)) => accepted_kinds(inner, r),
            TypeBody::Struct(Fields::Tuple(_)) => vec!["array"],
            TypeBody::Struct(Fields::Named(_)) => vec!["object"],
            TypeBody::Enum(_) => vec!["string", "object"],
        },
        _ => vec!["number"],
    }
}

fn json_of_kind(kind: &str) -> Json {
    match kind {
        "null" => Json::Null,
        "bool" => json!(true),
        "string" => json!("s"),
        "array" => json!([]),
        "object" => json!({}),
        _ => json!(1),
    }
}

enum Site {
    /// A JSON object that is a struct with these field names.
    Struct(Vec<String>),
    /// An integer of a shape: a float or string there is refused.
    Integer,
    /// Any value, and the JSON kinds its shape accepts.
    Value(Vec<&'static str>),
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Collects corruption sites of `value` (JSON pointers).
/// `also` are the kinds an enclosing shape at the same place accepts (an
/// `Option` around it accepts null).
fn sites(
    shape: &Shape,
    r: &Registry,
    value: &Json,
    at: String,
    also: &[&'static str],
    out: &mut Vec<(String, Site)>,
) {
    let mut accepted = accepted_kinds(shape, r);
    accepted.extend(also);
    out.push((at.clone(), Site::Value(accepted)));
    let items = |shapes: &mut dyn Iterator<Item = &Shape>, out: &mut Vec<(String, Site)>| {
        if let Json::Array(values) = value {
            for (i, (s, v)) in shapes.zip(values).enumerate() {
                sites(s, r, v, format!("{at}/{i}"), &[], out);
            }
        }
    };
    match shape {
        Shape::U8
        | Shape::U16
        | Shape::U32
        | Shape::U64
        | Shape::U128
        | Shape::I8
        | Shape::I16
        | Shape::I32
        | Shape::I64
        | Shape::I128 => out.push((at.clone(), Site::Integer)),
        Shape::Option(inner) if !value.is_null() => {
            let mut also = also.to_vec();
            also.push("null");
            sites(inner, r, value, at, &also, out)
        }
        Shape::Seq(item) => items(&mut std::iter::repeat(&**item), out),
        Shape::Array { item, .. } => items(&mut std::iter::repeat(&**item), out),
        Shape::Tuple(shapes) => items(&mut shapes.iter(), out),
        Shape::Map { value: item, .. } => {
            if let Json::Object(map) = value {
                for (k, v) in map {
                    sites(item, r, v, format!("{at}/{}", pointer_escape(k)), &[], out);
                }
            }
        }
        Shape::Named(_) => match &def(r, shape).body {
            TypeBody::Struct(fields) => field_sites(fields, r, value, &at, also, out),
            TypeBody::Enum(variants) => {
                if let Json::Object(map) = value {
                    let (tag, content) = map.iter().next().unwrap();
                    let variant = variants.iter().find(|v| &v.name == tag).unwrap();
                    field_sites(
                        &variant.fields,
                        r,
                        content,
                        &format!("{at}/{tag}"),
                        &[],
                        out,
                    );
                }
            }
        },
        _ => {}
    }
}

fn field_sites(
    fields: &Fields,
    r: &Registry,
    value: &Json,
    at: &str,
    also: &[&'static str],
    out: &mut Vec<(String, Site)>,
) {
    match fields {
        Fields::Unit => {}
        Fields::Newtype(inner) => sites(inner, r, value, at.to_string(), also, out),
        Fields::Tuple(shapes) => {
            if let Json::Array(values) = value {
                for (i, (s, v)) in shapes.iter().zip(values).enumerate() {
                    sites(s, r, v, format!("{at}/{i}"), &[], out);
                }
            }
        }
        Fields::Named(fs) => {
            out.push((
                at.to_string(),
                Site::Struct(fs.iter().map(|f| f.name.clone()).collect()),
            ));
            for f in fs {
                sites(
                    &f.shape,
                    r,
                    &value[&f.name],
                    format!("{at}/{}", f.name),
                    &[],
                    out,
                );
            }
        }
    }
}

// -------------------------------------------------------------- properties

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// serde's postcard passes the check and round-trips; corruptions are
    /// refused, or are exactly the canonical encoding of another value.
    #[test]
    fn postcard_values_and_corruptions((shape, registry) in universe(), seed_value in any::<u64>()) {
        let mut rng = Rng(seed_value, false);
        let value = gen_value(&shape, &registry, &mut rng, 0);
        let bytes = encode(&value, &shape, &registry);
        prop_assert!(check_postcard(&shape, &registry, &bytes).is_ok(),
            "{:?}", check_postcard(&shape, &registry, &bytes));
        prop_assert_eq!(decode(&shape, &registry, &bytes), Some(value.clone()));

        // Postcard is prefix-free for a fixed shape: no proper prefix and
        // no extension of a valid encoding is valid.
        for len in 0..bytes.len() {
            prop_assert!(check_postcard(&shape, &registry, &bytes[..len]).is_err());
        }
        for extra in 1..4 {
            let mut longer = bytes.clone();
            longer.extend((0..extra).map(|_| rng.next() as u8));
            prop_assert!(check_postcard(&shape, &registry, &longer).is_err());
        }
        // Flips and insertions: whatever the check accepts decodes, and
        // re-encodes to the same bytes (the encoding is canonical); and
        // whatever decodes canonically, the check accepts.
        for _ in 0..32 {
            let mut corrupt = bytes.clone();
            match rng.below(3) {
                0 if !corrupt.is_empty() => {
                    let i = rng.below(corrupt.len() as u64) as usize;
                    corrupt[i] ^= 1 << rng.below(8);
                }
                1 if !corrupt.is_empty() => {
                    let i = rng.below(corrupt.len() as u64) as usize;
                    corrupt[i] = rng.next() as u8;
                }
                _ => {
                    let i = rng.below(corrupt.len() as u64 + 1) as usize;
                    corrupt.insert(i, rng.next() as u8);
                }
            }
            let checked = check_postcard(&shape, &registry, &corrupt).is_ok();
            let canonical = decode(&shape, &registry, &corrupt)
                .map(|v| encode(&v, &shape, &registry) == corrupt)
                .unwrap_or(false);
            prop_assert_eq!(checked, canonical, "corrupt bytes {:?} of {:?}", corrupt, bytes);
        }
    }

    /// Decoding postcard for display gives exactly the JSON serde_json
    /// writes for the same value.
    #[test]
    fn postcard_decodes_to_serde_jsons_json((shape, registry) in universe(), seed_value in any::<u64>()) {
        let mut rng = Rng(seed_value, true);
        let value = gen_value(&shape, &registry, &mut rng, 0);
        let json = serde_json::to_value(ser(&value, &shape, &registry)).unwrap();
        let bytes = encode(&value, &shape, &registry);
        prop_assert_eq!(postcard_to_json(&shape, &registry, &bytes).unwrap(), json);
    }

    /// Several values back to back are an argument list.
    #[test]
    fn postcard_argument_lists((shape, registry) in universe(), extra in shape(false), seed_value in any::<u64>()) {
        let mut rng = Rng(seed_value, false);
        let params = vec![shape.clone(), extra.clone(), shape];
        let mut bytes = Vec::new();
        for p in &params {
            bytes.extend(encode(&gen_value(p, &registry, &mut rng, 0), p, &registry));
        }
        prop_assert!(check_postcard_args(&params, &registry, &bytes).is_ok());
        bytes.push(0);
        let err = check_postcard_args(&params, &registry, &bytes).unwrap_err();
        prop_assert_eq!(err.to_string(), "1 byte after the last argument");
    }

    /// serde_json's output passes the JSON check; removed, unknown and
    /// renamed fields, wrong-kind values and non-integers are refused.
    #[test]
    fn json_values_and_corruptions((shape, registry) in universe(), seed_value in any::<u64>()) {
        let mut rng = Rng(seed_value, true);
        let value = gen_value(&shape, &registry, &mut rng, 0);
        let json = serde_json::to_value(ser(&value, &shape, &registry)).unwrap();
        prop_assert!(check_json(&shape, &registry, &json).is_ok(),
            "{:?} for {}", check_json(&shape, &registry, &json), json);
        // Through text too (what a client sends).
        let reparsed: Json = serde_json::from_str(&json.to_string()).unwrap();
        prop_assert!(check_json(&shape, &registry, &reparsed).is_ok());

        let mut found = Vec::new();
        sites(&shape, &registry, &json, String::new(), &[], &mut found);
        for (pointer, site) in found {
            let mut corrupt = json.clone();
            match site {
                Site::Struct(names) => {
                    let mut unknown = json.clone();
                    unknown.pointer_mut(&pointer).unwrap().as_object_mut().unwrap()
                        .insert("zz_unknown".into(), Json::Null);
                    prop_assert!(check_json(&shape, &registry, &unknown).is_err(), "unknown field at {}", pointer);
                    if let Some(name) = names.first() {
                        let object = corrupt.pointer_mut(&pointer).unwrap().as_object_mut().unwrap();
                        let removed = object.remove(name).unwrap();
                        prop_assert!(check_json(&shape, &registry, &corrupt).is_err(), "missing field at {}", pointer);
                        corrupt.pointer_mut(&pointer).unwrap().as_object_mut().unwrap()
                            .insert(format!("{name}x"), removed);
                        prop_assert!(check_json(&shape, &registry, &corrupt).is_err(), "renamed field at {}", pointer);
                    }
                }
                Site::Integer => {
                    *corrupt.pointer_mut(&pointer).unwrap() = json!(0.5);
                    prop_assert!(check_json(&shape, &registry, &corrupt).is_err(), "float at {}", pointer);
                    *corrupt.pointer_mut(&pointer).unwrap() = json!("7");
                    prop_assert!(check_json(&shape, &registry, &corrupt).is_err(), "string at {}", pointer);
                }
                Site::Value(kinds) => {
                    let all = ["null", "bool", "number", "string", "array", "object"];
                    let wrong: Vec<&str> = all.into_iter().filter(|k| !kinds.contains(k)).collect();
                    let kind = wrong[rng.below(wrong.len() as u64) as usize];
                    *corrupt.pointer_mut(&pointer).unwrap() = json_of_kind(kind);
                    prop_assert!(check_json(&shape, &registry, &corrupt).is_err(),
                        "{} at {} accepted for {:?}", kind, pointer, kinds);
                }
            }
        }
    }

    /// Ids, type names and docs do not change fingerprints, comparisons or
    /// compatibility.
    #[test]
    fn renaming_types_changes_nothing((shape, registry) in universe()) {
        let rename = |s: &str| s.replace("random::", "elsewhere::");
        let mut renamed = Registry::new();
        for (id, def) in &registry.types {
            let mut def = def.clone();
            def.name = format!("Other{}", def.name);
            def.doc = String::from("other docs");
            let text = serde_json::to_string(&def).unwrap();
            renamed.types.insert(rename(id), serde_json::from_str(&rename(&text)).unwrap());
        }
        let renamed_shape: Shape = serde_json::from_str(&rename(&serde_json::to_string(&shape).unwrap())).unwrap();
        let params = [shape.clone()];
        let other = [renamed_shape.clone()];
        prop_assert_eq!(args_fingerprint(&params, &registry), args_fingerprint(&other, &renamed));
        prop_assert_eq!(
            describe_args_mismatch(&[], (&params, &registry), (&other, &renamed)),
            "the argument types match"
        );
        prop_assert!(stored_compatibility((&shape, &registry), (&renamed_shape, &renamed)).is_ok());
        // And a changed integer somewhere is seen by all three, or by none
        // if the shape has no integer.
        let mut changed = shape.clone();
        if widen_first_u16(&mut changed) {
            let changed_params = [changed.clone()];
            prop_assert_ne!(args_fingerprint(&params, &registry), args_fingerprint(&changed_params, &registry));
            let description = describe_args_mismatch(&[], (&params, &registry), (&changed_params, &registry));
            prop_assert!(description.contains("expected u16, given u32"), "{}", description);
            prop_assert!(stored_compatibility((&shape, &registry), (&changed, &registry)).is_ok());
            prop_assert!(stored_compatibility((&changed, &registry), (&shape, &registry)).is_err());
        }
    }
}

/// Changes the first `u16` outside named types to `u32`.
fn widen_first_u16(shape: &mut Shape) -> bool {
    match shape {
        Shape::U16 => {
            *shape = Shape::U32;
            true
        }
        Shape::Option(s) | Shape::Seq(s) => widen_first_u16(s),
        Shape::Array { item, len } => *len > 0 && widen_first_u16(item),
        Shape::Map { key, value } => widen_first_u16(key) || widen_first_u16(value),
        Shape::Tuple(items) => items.iter_mut().any(widen_first_u16),
        _ => false,
    }
}

#[test]
fn into_deserializer_is_used() {
    // Keeps the IntoDeserializer import honest: postcard hands the variant
    // index to IndexSeed through a u32 deserializer like this one.
    let d: de::value::U32Deserializer<de::value::Error> = 3u32.into_deserializer();
    assert_eq!(IndexSeed.deserialize(d).unwrap(), 3);
}

//! Strict checking of JSON against a shape, as serde_json with serde's
//! derive reads it, but stricter where serde is lenient in ways that store
//! wrong data silently: unknown fields are refused at every depth, missing
//! fields are refused (an `Option` field must be written as `null`), and a
//! struct must be an object (serde would also take an array, positionally).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use serde_json::{Map, Number, Value};

use crate::{
    CHECK_DEPTH_MAX, CheckError, Failure, Field, Fields, Param, Registry, Shape, Step, TypeBody,
    Variant, render,
};

/// Checks that `value` is what serde_json would read as a value of
/// `shape`, strictly (see the module docs).
///
/// 128-bit integers: a `serde_json::Value` holds integers beyond 64 bits
/// as floats, indistinguishable from float literals serde would refuse for
/// a `u128`, so `u128`/`i128` values beyond the 64-bit range are refused
/// in JSON (postcard carries them).
pub fn check_json(shape: &Shape, registry: &Registry, value: &Value) -> Result<(), CheckError> {
    check(shape, registry, value, 0).map_err(Failure::into_error)
}

/// Checks a procedure's JSON arguments: an object keyed by parameter name,
/// with exactly those keys.
pub fn check_json_args(
    params: &[Param],
    registry: &Registry,
    value: &Value,
) -> Result<(), CheckError> {
    let Value::Object(object) = value else {
        return Err(CheckError {
            path: String::new(),
            message: format!(
                "expected an object keyed by parameter name, found {}",
                kind(value)
            ),
        });
    };
    let names = || {
        params
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for key in object.keys() {
        if !params.iter().any(|p| &p.name == key) {
            let message = if params.is_empty() {
                format!("unknown parameter `{key}` (the procedure takes no arguments)")
            } else {
                format!("unknown parameter `{key}` (the parameters are {})", names())
            };
            return Err(CheckError {
                path: String::new(),
                message,
            });
        }
    }
    for param in params {
        let Some(arg) = object.get(&param.name) else {
            return Err(CheckError {
                path: String::new(),
                message: format!("missing parameter `{}`", param.name),
            });
        };
        check(&param.shape, registry, arg, 0)
            .map_err(|f| f.at(Step::Name(param.name.clone())).into_error())?;
    }
    Ok(())
}

fn kind(value: &Value) -> String {
    match value {
        Value::Null => String::from("null"),
        Value::Bool(_) => String::from("a boolean"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => String::from("a string"),
        Value::Array(items) => format!(
            "an array of {}",
            crate::postcard_check::plural(items.len(), "item")
        ),
        Value::Object(_) => String::from("an object"),
    }
}

fn expected(shape: &Shape, registry: &Registry, found: &Value) -> Failure {
    Failure::new(format!(
        "expected {}, found {}",
        render(shape, registry),
        kind(found)
    ))
}

/// An integer of the range `min..=max`.
fn integer(
    shape: &Shape,
    registry: &Registry,
    value: &Value,
    min: i128,
    max: u128,
) -> Result<(), Failure> {
    let Value::Number(n) = value else {
        return Err(expected(shape, registry, value));
    };
    let fits = if let Some(u) = n.as_u64() {
        u128::from(u) <= max
    } else if let Some(i) = n.as_i64() {
        i128::from(i) >= min
    } else {
        return wide_float(shape, registry, n, min, max);
    };
    if fits {
        Ok(())
    } else {
        Err(Failure::new(format!(
            "{n} is out of range for {}",
            render(shape, registry)
        )))
    }
}

fn wide_float(
    shape: &Shape,
    registry: &Registry,
    n: &Number,
    min: i128,
    max: u128,
) -> Result<(), Failure> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    let f = n.as_f64().unwrap_or(f64::NAN);
    let wide = matches!(shape, Shape::U128 | Shape::I128);
    // No floor/abs in core without std: compare with the truncation.
    let integral = f.is_finite() && (f as i128) as f64 == f;
    let magnitude_ok = f >= TWO_POW_63 || f <= -TWO_POW_63;
    if wide && integral && magnitude_ok {
        // A `Value` holds both `369209037460743200000000` and
        // `3.692090374607432e24` as the same float, but serde reads only
        // the first as a u128: refuse both rather than accept what the
        // procedure would then refuse (found by the json_args fuzzer).
        let _ = (min, max);
        return Err(Failure::new(format!(
            "{n} is beyond 64 bits, which a JSON argument cannot carry exactly for {}; send this call with postcard",
            render(shape, registry)
        )));
    }
    Err(Failure::new(format!(
        "expected {}, found the non-integer number {n}",
        render(shape, registry)
    )))
}

fn check(shape: &Shape, registry: &Registry, value: &Value, depth: usize) -> Result<(), Failure> {
    if depth >= CHECK_DEPTH_MAX {
        return Err(Failure::new(format!(
            "nesting deeper than {CHECK_DEPTH_MAX} levels"
        )));
    }
    let depth = depth + 1;
    match shape {
        Shape::Unit => match value {
            Value::Null => Ok(()),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Bool => match value {
            Value::Bool(_) => Ok(()),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::U8 => integer(shape, registry, value, 0, u8::MAX.into()),
        Shape::U16 => integer(shape, registry, value, 0, u16::MAX.into()),
        Shape::U32 => integer(shape, registry, value, 0, u32::MAX.into()),
        Shape::U64 => integer(shape, registry, value, 0, u64::MAX.into()),
        Shape::U128 => integer(shape, registry, value, 0, u128::MAX),
        Shape::I8 => integer(shape, registry, value, i8::MIN.into(), i8::MAX as u128),
        Shape::I16 => integer(shape, registry, value, i16::MIN.into(), i16::MAX as u128),
        Shape::I32 => integer(shape, registry, value, i32::MIN.into(), i32::MAX as u128),
        Shape::I64 => integer(shape, registry, value, i64::MIN.into(), i64::MAX as u128),
        Shape::I128 => integer(shape, registry, value, i128::MIN, i128::MAX as u128),
        Shape::F32 | Shape::F64 => match value {
            Value::Number(_) => Ok(()),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Char => match value {
            Value::String(s) => one_char(s),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::String => match value {
            Value::String(_) => Ok(()),
            _ => Err(expected(shape, registry, value)),
        },
        // serde_json reads a byte string from an array of numbers, or
        // (visit_str) from a string's UTF-8 bytes.
        Shape::Bytes => match value {
            Value::String(_) => Ok(()),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                integer(&Shape::U8, registry, item, 0, 255).map_err(|f| f.at(Step::Index(i)))
            }),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Option(inner) => match value {
            Value::Null => Ok(()),
            _ => check(inner, registry, value, depth),
        },
        Shape::Seq(item) => match value {
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| {
                check(item, registry, v, depth).map_err(|f| f.at(Step::Index(i)))
            }),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Map { key, value: item } => match value {
            Value::Object(object) => object.iter().try_for_each(|(k, v)| {
                check_key(key, registry, k, depth)?;
                check(item, registry, v, depth).map_err(|f| f.at(Step::Name(k.clone())))
            }),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Tuple(items) => tuple(items, registry, value, depth, || {
            expected(shape, registry, value)
        }),
        Shape::Array { item, len } => match value {
            Value::Array(items) if items.len() == *len as usize => {
                items.iter().enumerate().try_for_each(|(i, v)| {
                    check(item, registry, v, depth).map_err(|f| f.at(Step::Index(i)))
                })
            }
            Value::Array(items) => Err(Failure::new(format!(
                "expected an array of {len} items, found {}",
                items.len()
            ))),
            _ => Err(expected(shape, registry, value)),
        },
        Shape::Named(id) => {
            let Some(def) = registry.get(id) else {
                return Err(Failure::new(format!(
                    "type `{id}` is not defined in the schema"
                )));
            };
            match &def.body {
                TypeBody::Struct(fields) => check_fields(fields, registry, value, depth, || {
                    expected(shape, registry, value)
                }),
                TypeBody::Enum(variants) => check_enum(&def.name, variants, registry, value, depth),
            }
        }
    }
}

fn one_char(s: &str) -> Result<(), Failure> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(_), None) => Ok(()),
        _ => Err(Failure::new(format!(
            "expected a single character, found a string of {} characters",
            s.chars().count()
        ))),
    }
}

fn tuple(
    items: &[Shape],
    registry: &Registry,
    value: &Value,
    depth: usize,
    mismatch: impl FnOnce() -> Failure,
) -> Result<(), Failure> {
    match value {
        Value::Array(values) if values.len() == items.len() => items
            .iter()
            .zip(values)
            .enumerate()
            .try_for_each(|(i, (shape, v))| {
                check(shape, registry, v, depth).map_err(|f| f.at(Step::Position(i)))
            }),
        Value::Array(values) => Err(Failure::new(format!(
            "expected an array of {} items, found {}",
            items.len(),
            values.len()
        ))),
        _ => Err(mismatch()),
    }
}

fn check_fields(
    fields: &Fields,
    registry: &Registry,
    value: &Value,
    depth: usize,
    mismatch: impl FnOnce() -> Failure,
) -> Result<(), Failure> {
    match fields {
        Fields::Unit => match value {
            Value::Null => Ok(()),
            _ => Err(mismatch()),
        },
        Fields::Newtype(inner) => check(inner, registry, value, depth),
        Fields::Tuple(items) => tuple(items, registry, value, depth, mismatch),
        Fields::Named(fields) => match value {
            Value::Object(object) => named_fields(fields, registry, object, depth),
            _ => Err(mismatch()),
        },
    }
}

fn named_fields(
    fields: &[Field],
    registry: &Registry,
    object: &Map<String, Value>,
    depth: usize,
) -> Result<(), Failure> {
    for key in object.keys() {
        if !fields.iter().any(|f| &f.name == key) {
            let names: Vec<String> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
            return Err(Failure::new(format!(
                "unknown field `{key}` (the fields are {})",
                if names.is_empty() {
                    String::from("none")
                } else {
                    names.join(", ")
                }
            )));
        }
    }
    for field in fields {
        let Some(v) = object.get(&field.name) else {
            return Err(Failure::new(format!("missing field `{}`", field.name)));
        };
        check(&field.shape, registry, v, depth)
            .map_err(|f| f.at(Step::Name(field.name.clone())))?;
    }
    Ok(())
}

fn variant_names(variants: &[Variant]) -> String {
    variants
        .iter()
        .map(|v| format!("`{}`", v.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_enum(
    name: &str,
    variants: &[Variant],
    registry: &Registry,
    value: &Value,
    depth: usize,
) -> Result<(), Failure> {
    let find = |tag: &str| {
        variants.iter().find(|v| v.name == tag).ok_or_else(|| {
            Failure::new(format!(
                "unknown variant `{tag}` of `{name}` (the variants are {})",
                variant_names(variants)
            ))
        })
    };
    match value {
        Value::String(tag) => {
            let variant = find(tag)?;
            match variant.fields {
                Fields::Unit => Ok(()),
                _ => Err(Failure::new(format!(
                    "variant `{tag}` of `{name}` has fields: write {{\"{tag}\": ...}}"
                ))),
            }
        }
        Value::Object(object) if object.len() == 1 => {
            let (tag, content) = object.iter().next().expect("one entry");
            let variant = find(tag)?;
            let mismatch = || {
                Failure::new(format!(
                    "the content of variant `{tag}` does not fit: found {}",
                    kind(content)
                ))
            };
            check_fields(&variant.fields, registry, content, depth, mismatch)
                .map_err(|f| f.at(Step::Name(tag.clone())))
        }
        Value::Object(object) => Err(Failure::new(format!(
            "expected `{name}` as \"Variant\" or {{\"Variant\": ...}} (one key), found an object of {} keys",
            object.len()
        ))),
        _ => Err(Failure::new(format!(
            "expected `{name}` as \"Variant\" or {{\"Variant\": ...}}, found {}",
            kind(value)
        ))),
    }
}

/// A JSON integer literal: `-`? then `0` or a nonzero digit and digits.
/// (serde_json parses integer map keys as JSON numbers.)
fn is_json_integer(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    match digits.as_bytes() {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// An object key, as serde_json's map-key deserializer reads it.
fn check_key(shape: &Shape, registry: &Registry, key: &str, depth: usize) -> Result<(), Failure> {
    if depth >= CHECK_DEPTH_MAX {
        return Err(Failure::new(format!(
            "nesting deeper than {CHECK_DEPTH_MAX} levels"
        )));
    }
    macro_rules! int_key {
        ($ty:ty) => {
            if is_json_integer(key) && key.parse::<$ty>().is_ok() {
                Ok(())
            } else {
                Err(Failure::new(format!(
                    "map key `{key}` is not a {}",
                    render(shape, registry)
                )))
            }
        };
    }
    match shape {
        Shape::String => Ok(()),
        Shape::Char => {
            one_char(key).map_err(|f| Failure::new(format!("map key `{key}`: {}", f.message)))
        }
        Shape::Bool => match key {
            "true" | "false" => Ok(()),
            _ => Err(Failure::new(format!("map key `{key}` is not a bool"))),
        },
        Shape::U8 => int_key!(u8),
        Shape::U16 => int_key!(u16),
        Shape::U32 => int_key!(u32),
        Shape::U64 => int_key!(u64),
        Shape::U128 => int_key!(u128),
        Shape::I8 => int_key!(i8),
        Shape::I16 => int_key!(i16),
        Shape::I32 => int_key!(i32),
        Shape::I64 => int_key!(i64),
        Shape::I128 => int_key!(i128),
        Shape::F32 | Shape::F64 => {
            let numeric = key.starts_with(|c: char| c == '-' || c.is_ascii_digit());
            if numeric && key.parse::<f64>().is_ok() {
                Ok(())
            } else {
                Err(Failure::new(format!("map key `{key}` is not a number")))
            }
        }
        Shape::Named(id) => match registry.get(id).map(|d| &d.body) {
            Some(TypeBody::Struct(Fields::Newtype(inner))) => {
                check_key(inner, registry, key, depth + 1)
            }
            Some(TypeBody::Enum(variants)) => match variants.iter().find(|v| v.name == key) {
                Some(Variant {
                    fields: Fields::Unit,
                    ..
                }) => Ok(()),
                Some(_) => Err(Failure::new(format!(
                    "map key `{key}`: a variant with fields cannot be a JSON key"
                ))),
                None => Err(Failure::new(format!(
                    "map key `{key}` is not a variant of `{}` (the variants are {})",
                    render(shape, registry),
                    variant_names(variants)
                ))),
            },
            _ => Err(Failure::new(format!(
                "a map key of type {} cannot be written in JSON",
                render(shape, registry)
            ))),
        },
        _ => Err(Failure::new(format!(
            "a map key of type {} cannot be written in JSON",
            render(shape, registry)
        ))),
    }
}

/// Parses JSON arguments the way the node checks them: like
/// `serde_json::from_slice::<Value>`, but a key that appears twice in one
/// object is an error. (`Value` keeps the last of duplicate keys, while
/// serde's derive refuses a duplicate field, so a check of the parsed
/// value could pass arguments the procedure then refuses; found by the
/// json_args fuzzer.)
pub fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    use serde::de::DeserializeSeed;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = UniqueKeys
        .deserialize(&mut deserializer)
        .map_err(|err| format!("{err}"))?;
    deserializer.end().map_err(|err| format!("{err}"))?;
    Ok(value)
}

/// A `Value` whose objects may not repeat a key.
struct UniqueKeys;

impl<'de> serde::de::DeserializeSeed<'de> for UniqueKeys {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueKeys {
    type Value = Value;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(String::from(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(UniqueKeys)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            let value = map.next_value_seed(UniqueKeys)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

//! Unit tests of every check, fingerprint rule, rendering, mismatch
//! description and compatibility rule.

use ordo_schema::{
    CHECK_DEPTH_MAX, Field, Fields, Param, ProcedureSchema, Registry, Schema, Shape, TypeBody,
    TypeDef, Variant, args_fingerprint, check_json, check_json_args, check_postcard,
    check_postcard_args, check_postcard_params, decode_schema, describe_args_mismatch,
    encode_schema, fingerprint_of_args, ordered_key_to_json, postcard_params_to_json,
    postcard_to_json, render, stored_compatibility,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

fn shapes<T: Schema>() -> (Shape, Registry) {
    let mut registry = Registry::new();
    let shape = T::shape(&mut registry);
    (shape, registry)
}

fn postcard_err(shape: &Shape, registry: &Registry, bytes: &[u8]) -> String {
    check_postcard(shape, registry, bytes)
        .unwrap_err()
        .to_string()
}

fn json_err(shape: &Shape, registry: &Registry, value: serde_json::Value) -> String {
    check_json(shape, registry, &value).unwrap_err().to_string()
}

mod inventory {
    use super::*;

    #[derive(Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
    pub struct Bin {
        pub aisle: u32,
        pub shelf: u32,
    }

    #[derive(Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
    pub struct NewItem {
        pub name: String,
        pub qty: u32,
        pub bin: Option<Bin>,
        pub lines: Vec<u64>,
    }

    #[derive(Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
    pub enum Kind {
        A,
        B(u32),
        C { x: u8 },
    }

    #[derive(Serialize, Deserialize, Schema, Debug, Clone, PartialEq)]
    pub struct Tree {
        pub value: u32,
        pub children: Vec<Tree>,
    }
}

/// Client-side mirrors: other names, other docs, same structure.
mod client {
    use super::*;

    #[derive(Serialize, Schema)]
    pub struct Place {
        pub aisle: u32,
        pub shelf: u32,
    }

    #[derive(Serialize, Schema)]
    pub struct Item {
        /// The docs differ too.
        pub name: String,
        pub qty: u32,
        pub bin: Option<Place>,
        pub lines: Vec<u64>,
    }

    #[derive(Serialize, Schema)]
    pub struct SwappedBin {
        pub shelf: u32,
        pub aisle: u32,
    }

    #[derive(Serialize, Schema)]
    pub struct RenamedFieldBin {
        pub aisle: u32,
        pub rack: u32,
    }

    #[derive(Serialize, Schema)]
    pub struct Node {
        pub value: u32,
        pub children: Vec<Node>,
    }

    #[derive(Serialize, Schema)]
    pub struct Id(pub u64);
}

// ---------------------------------------------------------------- postcard

#[test]
fn postcard_argument_lists() {
    let registry = Registry::new();
    let params = [Shape::U64, Shape::U64, Shape::I64];
    let bytes = postcard::to_allocvec(&(1u64, 2u64, 10i64)).unwrap();
    check_postcard_args(&params, &registry, &bytes).unwrap();

    let mut longer = bytes.clone();
    longer.extend([0, 0, 0]);
    let err = check_postcard_args(&params, &registry, &longer).unwrap_err();
    assert_eq!(err.path, "");
    assert_eq!(err.to_string(), "3 bytes after the last argument");
    longer.truncate(bytes.len() + 1);
    assert_eq!(
        check_postcard_args(&params, &registry, &longer)
            .unwrap_err()
            .to_string(),
        "1 byte after the last argument"
    );
    assert_eq!(
        check_postcard_args(&[], &registry, &[7])
            .unwrap_err()
            .to_string(),
        "the procedure takes no arguments, but 1 byte were given"
    );
    check_postcard_args(&[], &registry, &[]).unwrap();

    let err = check_postcard_args(&params, &registry, &bytes[..2]).unwrap_err();
    assert_eq!(err.path, "2");
    assert_eq!(err.to_string(), "at `2`: the input ends inside an i64");

    let named = [
        Param {
            name: "from".into(),
            shape: Shape::U64,
        },
        Param {
            name: "amount".into(),
            shape: Shape::String,
        },
    ];
    let err = check_postcard_params(&named, &registry, &[1, 5, b'a']).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at `amount`: a string of length 5 goes beyond the input (1 byte left)"
    );
    assert_eq!(
        check_postcard(&Shape::U8, &registry, &[1, 2])
            .unwrap_err()
            .to_string(),
        "1 byte after the end of the value"
    );
}

#[test]
fn postcard_varints() {
    let r = Registry::new();
    // u8/i8 are raw bytes: anything goes, exactly one.
    check_postcard(&Shape::U8, &r, &[0xff]).unwrap();
    check_postcard(&Shape::I8, &r, &[0x80]).unwrap();
    assert!(check_postcard(&Shape::U8, &r, &[]).is_err());
    // u16: at most 3 bytes, the last at most 0b11.
    check_postcard(&Shape::U16, &r, &[0xff, 0xff, 0x03]).unwrap();
    assert_eq!(
        postcard_err(&Shape::U16, &r, &[0xff, 0xff, 0x04]),
        "varint out of range for a u16"
    );
    assert_eq!(
        postcard_err(&Shape::U16, &r, &[0x80, 0x80, 0x80, 0x01]),
        "varint out of range for a u16"
    );
    // Redundant zero bytes decode in postcard but are not the canonical
    // encoding (each value has one encoding).
    assert_eq!(
        postcard_err(&Shape::U32, &r, &[0x80, 0x00]),
        "a varint for a u32 with redundant zero bytes (not the canonical encoding)"
    );
    check_postcard(&Shape::U32, &r, &postcard::to_allocvec(&u32::MAX).unwrap()).unwrap();
    assert!(
        check_postcard(
            &Shape::U32,
            &r,
            &postcard::to_allocvec(&(u32::MAX as u64 + 1)).unwrap()
        )
        .is_err()
    );
    check_postcard(&Shape::U64, &r, &postcard::to_allocvec(&u64::MAX).unwrap()).unwrap();
    check_postcard(&Shape::I64, &r, &postcard::to_allocvec(&i64::MIN).unwrap()).unwrap();
    check_postcard(
        &Shape::U128,
        &r,
        &postcard::to_allocvec(&u128::MAX).unwrap(),
    )
    .unwrap();
    check_postcard(
        &Shape::I128,
        &r,
        &postcard::to_allocvec(&i128::MIN).unwrap(),
    )
    .unwrap();
    let mut too_big = postcard::to_allocvec(&u128::MAX).unwrap();
    *too_big.last_mut().unwrap() = 0x04;
    assert!(check_postcard(&Shape::U128, &r, &too_big).is_err());
    assert_eq!(
        postcard_err(&Shape::U64, &r, &[0x80]),
        "the input ends inside a u64"
    );
    check_postcard(&Shape::F32, &r, &[0; 4]).unwrap();
    assert!(check_postcard(&Shape::F64, &r, &[0; 7]).is_err());
}

#[test]
fn postcard_tags_strings_and_lengths() {
    let r = Registry::new();
    assert_eq!(
        postcard_err(&Shape::Bool, &r, &[2]),
        "invalid bool byte 2 (expected 0 or 1)"
    );
    let opt = Shape::Option(Box::new(Shape::U8));
    check_postcard(&opt, &r, &[0]).unwrap();
    check_postcard(&opt, &r, &[1, 9]).unwrap();
    assert_eq!(
        postcard_err(&opt, &r, &[2, 9]),
        "invalid Option tag 2 (expected 0 or 1)"
    );
    check_postcard(&Shape::String, &r, &[2, b'h', b'i']).unwrap();
    assert!(
        postcard_err(&Shape::String, &r, &[2, 0xc3, 0x28]).starts_with("invalid UTF-8 in a string")
    );
    assert_eq!(
        postcard_err(&Shape::Bytes, &r, &[200, 1, 1]),
        "a byte string of length 200 goes beyond the input (1 byte left)"
    );
    check_postcard(&Shape::Char, &r, &postcard::to_allocvec(&'€').unwrap()).unwrap();
    assert_eq!(
        postcard_err(&Shape::Char, &r, &[2, b'a', b'b']),
        "a char must be exactly one character"
    );
    assert_eq!(
        postcard_err(&Shape::Char, &r, &[3, 0xed, 0xa0, 0x80]),
        "invalid UTF-8 in a char"
    );
    assert_eq!(
        postcard_err(&Shape::Char, &r, &[5, 1, 1, 1, 1, 1]),
        "a char of 5 bytes (at most 4)"
    );
    // A hostile length is refused before anything is iterated...
    let seq = Shape::Seq(Box::new(Shape::U64));
    let err = check_postcard(&seq, &r, &[0xff, 0xff, 0xff, 0xff, 0x0f, 1]).unwrap_err();
    assert_eq!(
        err.message,
        "a sequence of length 4294967295 goes beyond the input (0 bytes left after its first item)"
    );
    // ...but a sequence of zero-width items has no bytes to compare with.
    let units = Shape::Seq(Box::new(Shape::Unit));
    check_postcard(&units, &r, &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap();
    // Lengths are u32 varints (usize on wasm32).
    assert!(check_postcard(&units, &r, &[0xff, 0xff, 0xff, 0xff, 0x10]).is_err());
    let map = Shape::Map {
        key: Box::new(Shape::String),
        value: Box::new(Shape::U32),
    };
    let bytes =
        postcard::to_allocvec(&std::collections::BTreeMap::from([("a", 1u32), ("b", 2)])).unwrap();
    check_postcard(&map, &r, &bytes).unwrap();
    let arr = Shape::Array {
        item: Box::new(Shape::U8),
        len: 3,
    };
    check_postcard(&arr, &r, &[1, 2, 3]).unwrap();
    assert!(check_postcard(&arr, &r, &[1, 2]).is_err());
}

#[test]
fn postcard_named_types_and_paths() {
    let (shape, r) = shapes::<inventory::NewItem>();
    let item = inventory::NewItem {
        name: "bolt".into(),
        qty: 3,
        bin: Some(inventory::Bin { aisle: 1, shelf: 2 }),
        lines: vec![1, 2, 3, 4],
    };
    let bytes = postcard::to_allocvec(&item).unwrap();
    check_postcard(&shape, &r, &bytes).unwrap();
    let err = check_postcard(&shape, &r, &bytes[..8]).unwrap_err();
    assert_eq!(err.path, "bin.shelf");
    let mut bad = bytes.clone();
    let last = bad.len() - 1;
    bad[last] = 0x80; // lines[3] now runs off the end
    let err = check_postcard(&shape, &r, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "at `lines[3]`: the input ends inside a u64"
    );

    let (kind, r) = shapes::<inventory::Kind>();
    check_postcard(
        &kind,
        &r,
        &postcard::to_allocvec(&inventory::Kind::C { x: 9 }).unwrap(),
    )
    .unwrap();
    assert_eq!(
        postcard_err(&kind, &r, &[3]),
        "variant index 3 out of range: `Kind` has 3 variants"
    );
    assert_eq!(
        postcard_err(&kind, &r, &[1]),
        "at `B`: the input ends inside a u32"
    );
    assert_eq!(
        postcard_err(&Shape::Named("nope::X".into()), &r, &[]),
        "type `nope::X` is not defined in the schema"
    );

    let (tree, r) = shapes::<inventory::Tree>();
    let value = inventory::Tree {
        value: 1,
        children: vec![inventory::Tree {
            value: 2,
            children: vec![],
        }],
    };
    check_postcard(&tree, &r, &postcard::to_allocvec(&value).unwrap()).unwrap();
}

#[test]
fn nesting_is_limited() {
    let r = Registry::new();
    let mut deep = Shape::U8;
    for _ in 0..CHECK_DEPTH_MAX + 10 {
        deep = Shape::Option(Box::new(deep));
    }
    let mut bytes = vec![1u8; CHECK_DEPTH_MAX + 10];
    bytes.push(0);
    assert_eq!(
        postcard_err(&deep, &r, &bytes).rsplit(": ").next().unwrap(),
        "nesting deeper than 128 levels"
    );
    // A recursive type with hostile input: depth, not the stack, ends it.
    let (tree, r) = shapes::<inventory::Tree>();
    let hostile: Vec<u8> = std::iter::repeat_n([0u8, 1], 100_000).flatten().collect();
    assert!(postcard_err(&tree, &r, &hostile).contains("nesting deeper than 128 levels"));
    let mut value = json!(null);
    for _ in 0..200 {
        value = json!({"value": 1, "children": [value]});
    }
    assert!(json_err(&tree, &r, value).contains("nesting deeper than 128 levels"));
}

#[test]
fn exponential_zero_width_schemas_are_cut_off() {
    // T0 = (T1, T1), T1 = (T2, T2), ...: 2^60 nodes, no bytes.
    let mut r = Registry::new();
    for i in 0..60 {
        let next = if i == 59 {
            Shape::Unit
        } else {
            Shape::Named(format!("t{}", i + 1))
        };
        r.types.insert(
            format!("t{i}"),
            TypeDef {
                name: format!("T{i}"),
                doc: String::new(),
                body: TypeBody::Struct(Fields::Tuple(vec![next.clone(), next])),
            },
        );
    }
    let err = postcard_err(&Shape::Named("t0".into()), &r, &[]);
    assert!(err.contains("too many steps"), "{err}");
    // Fingerprints and comparisons stay bounded too.
    let _ = args_fingerprint(&[Shape::Named("t0".into())], &r);
    let _ = stored_compatibility(
        (&Shape::Named("t0".into()), &r),
        (&Shape::Named("t0".into()), &r),
    );
}

// -------------------------------------------------------------------- JSON

#[test]
fn json_numbers() {
    let r = Registry::new();
    check_json(&Shape::U8, &r, &json!(255)).unwrap();
    assert_eq!(
        json_err(&Shape::U8, &r, json!(256)),
        "256 is out of range for u8"
    );
    assert_eq!(
        json_err(&Shape::U64, &r, json!(-1)),
        "-1 is out of range for u64"
    );
    check_json(&Shape::I8, &r, &json!(-128)).unwrap();
    assert_eq!(
        json_err(&Shape::I8, &r, json!(-129)),
        "-129 is out of range for i8"
    );
    assert_eq!(
        json_err(&Shape::U32, &r, json!(1.5)),
        "expected u32, found the non-integer number 1.5"
    );
    let thousand: serde_json::Value = serde_json::from_str("1e3").unwrap();
    assert!(check_json(&Shape::U32, &r, &thousand).is_err());
    assert!(check_json(&Shape::U128, &r, &thousand).is_err());
    assert_eq!(
        json_err(&Shape::U32, &r, json!("5")),
        "expected u32, found a string"
    );
    check_json(&Shape::I64, &r, &json!(i64::MIN)).unwrap();
    check_json(&Shape::U64, &r, &json!(u64::MAX)).unwrap();
    // Beyond 64 bits a Value holds a float, the same for the literal
    // `100000000000000000000000` (a u128 to serde) and `1e23` (not one), so
    // 128-bit values beyond 64 bits are refused in JSON: never accept what
    // the procedure would refuse.
    let big: serde_json::Value = serde_json::from_str("100000000000000000000000").unwrap();
    let refused = json_err(&Shape::U128, &r, big.clone());
    assert!(
        refused.contains("beyond 64 bits") && refused.contains("postcard"),
        "{refused}"
    );
    assert!(check_json(&Shape::I128, &r, &big).is_err());
    assert!(check_json(&Shape::U64, &r, &big).is_err());
    check_json(&Shape::U128, &r, &json!(u64::MAX)).unwrap();
    check_json(&Shape::I128, &r, &json!(i64::MIN)).unwrap();
    let negative: serde_json::Value = serde_json::from_str("-100000000000000000000000").unwrap();
    assert!(check_json(&Shape::U128, &r, &negative).is_err());
    check_json(&Shape::F64, &r, &json!(3)).unwrap();
    check_json(&Shape::F32, &r, &json!(-0.5)).unwrap();
    assert!(check_json(&Shape::F64, &r, &json!(null)).is_err());
}

#[test]
fn json_scalars_and_containers() {
    let r = Registry::new();
    check_json(&Shape::Unit, &r, &json!(null)).unwrap();
    assert!(check_json(&Shape::Unit, &r, &json!(0)).is_err());
    check_json(&Shape::Bool, &r, &json!(true)).unwrap();
    check_json(&Shape::Char, &r, &json!("€")).unwrap();
    assert_eq!(
        json_err(&Shape::Char, &r, json!("ab")),
        "expected a single character, found a string of 2 characters"
    );
    check_json(&Shape::Bytes, &r, &json!([0, 255])).unwrap();
    check_json(&Shape::Bytes, &r, &json!("text")).unwrap();
    assert_eq!(
        json_err(&Shape::Bytes, &r, json!([0, 256])),
        "at `[1]`: 256 is out of range for u8"
    );
    let vec_u8 = Shape::Seq(Box::new(Shape::U8));
    check_json(&vec_u8, &r, &json!([1, 2])).unwrap();
    assert!(check_json(&vec_u8, &r, &json!("text")).is_err());
    let opt = Shape::Option(Box::new(Shape::String));
    check_json(&opt, &r, &json!(null)).unwrap();
    check_json(&opt, &r, &json!("x")).unwrap();
    let tuple = Shape::Tuple(vec![Shape::U8, Shape::String]);
    check_json(&tuple, &r, &json!([1, "a"])).unwrap();
    assert_eq!(
        json_err(&tuple, &r, json!([1])),
        "expected an array of 2 items, found 1"
    );
    assert_eq!(
        json_err(&tuple, &r, json!([1, 2])),
        "at `1`: expected String, found the number 2"
    );
    let arr = Shape::Array {
        item: Box::new(Shape::U8),
        len: 2,
    };
    check_json(&arr, &r, &json!([1, 2])).unwrap();
    assert!(check_json(&arr, &r, &json!([1, 2, 3])).is_err());
    let map = |key: Shape| Shape::Map {
        key: Box::new(key),
        value: Box::new(Shape::Bool),
    };
    check_json(&map(Shape::String), &r, &json!({"a": true})).unwrap();
    check_json(
        &map(Shape::U32),
        &r,
        &json!({"0": true, "4294967295": false}),
    )
    .unwrap();
    check_json(&map(Shape::I8), &r, &json!({"-128": true})).unwrap();
    for bad in ["4294967296", "+1", "01", "1.0", "1e3", "", "-1", " 1"] {
        let err = json_err(&map(Shape::U32), &r, json!({ bad: true }));
        assert_eq!(err, format!("map key `{bad}` is not a u32"));
    }
    check_json(&map(Shape::Bool), &r, &json!({"true": true})).unwrap();
    check_json(&map(Shape::Char), &r, &json!({"x": true})).unwrap();
    assert!(check_json(&map(Shape::Tuple(vec![])), &r, &json!({"x": true})).is_err());
    assert_eq!(
        json_err(&map(Shape::String), &r, json!({"k": 1})),
        "at `k`: expected bool, found the number 1"
    );
}

#[test]
fn json_structs_and_enums() {
    let (shape, r) = shapes::<inventory::NewItem>();
    let good = json!({"name": "bolt", "qty": 3, "bin": {"aisle": 1, "shelf": 2}, "lines": [1]});
    check_json(&shape, &r, &good).unwrap();
    check_json(
        &shape,
        &r,
        &json!({"name": "bolt", "qty": 3, "bin": null, "lines": []}),
    )
    .unwrap();
    // The typo of issue 14: serde would have stored `bin: None`...
    let typo = json!({"name": "b", "qty": 3, "bin": {"aisle": 1, "shlf": 2}, "lines": []});
    assert_eq!(
        json_err(&shape, &r, typo),
        "at `bin`: unknown field `shlf` (the fields are `aisle`, `shelf`)"
    );
    // ...and a missing Option field too.
    assert_eq!(
        json_err(&shape, &r, json!({"name": "b", "qty": 3, "lines": []})),
        "missing field `bin`"
    );
    assert_eq!(
        json_err(
            &shape,
            &r,
            json!({"name": "b", "qty": "3", "bin": null, "lines": []})
        ),
        "at `qty`: expected u32, found a string"
    );
    // Positional arrays for structs are refused (serde would take them).
    assert!(check_json(&shape, &r, &json!(["b", 3, null, []])).is_err());
    assert_eq!(
        json_err(
            &shape,
            &r,
            json!({"name": "b", "qty": 1, "bin": null, "lines": [1, 2, 3, -4]})
        ),
        "at `lines[3]`: -4 is out of range for u64"
    );

    let (kind, r) = shapes::<inventory::Kind>();
    for ok in [
        json!("A"),
        json!({"A": null}),
        json!({"B": 7}),
        json!({"C": {"x": 1}}),
    ] {
        check_json(&kind, &r, &ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    assert_eq!(
        json_err(&kind, &r, json!("D")),
        "unknown variant `D` of `Kind` (the variants are `A`, `B`, `C`)"
    );
    assert_eq!(
        json_err(&kind, &r, json!("B")),
        "variant `B` of `Kind` has fields: write {\"B\": ...}"
    );
    assert_eq!(
        json_err(&kind, &r, json!({"B": "7"})),
        "at `B`: expected u32, found a string"
    );
    assert_eq!(
        json_err(&kind, &r, json!({"C": {"x": 1, "y": 2}})).as_str(),
        "at `C`: unknown field `y` (the fields are `x`)"
    );
    assert!(json_err(&kind, &r, json!({"A": null, "B": 1})).contains("one key"));
    assert!(check_json(&kind, &r, &json!({"A": 1})).is_err());
    assert!(check_json(&kind, &r, &json!(0)).is_err());
    let (id, r) = shapes::<client::Id>();
    check_json(&id, &r, &json!(5)).unwrap();
    assert!(check_json(&id, &r, &json!([5])).is_err());
}

#[test]
fn json_arguments() {
    let (item, r) = shapes::<inventory::NewItem>();
    let params = vec![
        Param {
            name: "id".into(),
            shape: Shape::U64,
        },
        Param {
            name: "item".into(),
            shape: item,
        },
    ];
    let item = json!({"name": "b", "qty": 3, "bin": null, "lines": []});
    check_json_args(&params, &r, &json!({"id": 1, "item": item})).unwrap();
    let err = check_json_args(&params, &r, &json!({"id": 1})).unwrap_err();
    assert_eq!(err.to_string(), "missing parameter `item`");
    let err = check_json_args(&params, &r, &json!({"id": 1, "item": item, "x": 0})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown parameter `x` (the parameters are `id`, `item`)"
    );
    let err = check_json_args(&params, &r, &json!([1, item])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected an object keyed by parameter name, found an array of 2 items"
    );
    let bad = json!({"id": 1, "item": {"name": "b", "qty": 3, "bin": {"aisle": 1, "shelf": -1}, "lines": []}});
    let err = check_json_args(&params, &r, &bad).unwrap_err();
    assert_eq!(err.path, "item.bin.shelf");
    assert_eq!(
        err.to_string(),
        "at `item.bin.shelf`: -1 is out of range for u32"
    );
    check_json_args(&[], &r, &json!({})).unwrap();
}

// ------------------------------------------------------------ fingerprints

#[test]
fn fingerprints() {
    let r = Registry::new();
    let fp = |params: &[Shape]| args_fingerprint(params, &r);
    assert_ne!(
        fp(&[Shape::U64, Shape::U64, Shape::I64]),
        fp(&[Shape::U64, Shape::U64, Shape::U64])
    );
    assert_ne!(fp(&[Shape::U32]), fp(&[Shape::U64]));
    assert_ne!(
        fp(&[Shape::U8, Shape::U8]),
        fp(&[Shape::Tuple(vec![Shape::U8, Shape::U8])])
    );
    assert_ne!(fp(&[]), fp(&[Shape::Unit]));

    // The client's tuple matches the procedure's parameters.
    let (client, params, _) = fingerprint_of_args::<(u64, u64, i64)>();
    assert_eq!(params, [Shape::U64, Shape::U64, Shape::I64]);
    assert_eq!(client, fp(&[Shape::U64, Shape::U64, Shape::I64]));
    assert_ne!(fingerprint_of_args::<(u64, u64, u64)>().0, client);
    assert_eq!(fingerprint_of_args::<()>().0, fp(&[]));
    assert_eq!(fingerprint_of_args::<u32>().0, fp(&[Shape::U32]));
    assert_eq!(fingerprint_of_args::<(u32,)>().0, fp(&[Shape::U32]));

    // Type names and docs do not count; field names and order do.
    let (item, item_r) = shapes::<inventory::NewItem>();
    let (mirror, mirror_r) = shapes::<client::Item>();
    assert_eq!(
        args_fingerprint(std::slice::from_ref(&item), &item_r),
        args_fingerprint(&[mirror], &mirror_r)
    );
    let (bin, bin_r) = shapes::<inventory::Bin>();
    let bin_fp = args_fingerprint(&[bin], &bin_r);
    assert_eq!(bin_fp, fingerprint_of_args::<client::Place>().0);
    assert_ne!(bin_fp, fingerprint_of_args::<client::SwappedBin>().0);
    assert_ne!(bin_fp, fingerprint_of_args::<client::RenamedFieldBin>().0);
    // A positional tuple is not a struct (JSON tells them apart).
    assert_ne!(bin_fp, fingerprint_of_args::<(u32, u32)>().0);

    // A newtype is its inner shape on the wire.
    assert_eq!(fingerprint_of_args::<client::Id>().0, fp(&[Shape::U64]));
    // Bytes is Vec<u8> on the wire.
    assert_eq!(fp(&[Shape::Bytes]), fp(&[Shape::Seq(Box::new(Shape::U8))]));

    // Recursive types terminate, and mirror each other structurally.
    let (tree, tree_r) = shapes::<inventory::Tree>();
    let (node, node_r) = shapes::<client::Node>();
    assert_eq!(
        args_fingerprint(&[tree], &tree_r),
        args_fingerprint(&[node], &node_r)
    );

    // Variant names and order count.
    let kind = |names: &[&str]| {
        let mut r = Registry::new();
        r.types.insert(
            "k".into(),
            TypeDef {
                name: "K".into(),
                doc: String::new(),
                body: TypeBody::Enum(
                    names
                        .iter()
                        .map(|n| Variant {
                            name: n.to_string(),
                            doc: String::new(),
                            fields: Fields::Unit,
                        })
                        .collect(),
                ),
            },
        );
        args_fingerprint(&[Shape::Named("k".into())], &r)
    };
    assert_eq!(kind(&["A", "B"]), kind(&["A", "B"]));
    assert_ne!(kind(&["A", "B"]), kind(&["B", "A"]));
    assert_ne!(kind(&["A", "B"]), kind(&["A", "C"]));
    assert_ne!(kind(&["A", "B"]), kind(&["A", "B", "C"]));
}

// --------------------------------------------------------------- rendering

#[test]
fn rendering() {
    let (item, r) = shapes::<inventory::NewItem>();
    let cases: Vec<(Shape, &str)> = vec![
        (Shape::U64, "u64"),
        (
            Shape::Option(Box::new(Shape::Seq(Box::new(Shape::String)))),
            "Option<Vec<String>>",
        ),
        (item, "NewItem"),
        (
            Shape::Tuple(vec![Shape::U64, Shape::String]),
            "(u64, String)",
        ),
        (Shape::Tuple(vec![Shape::U64]), "(u64,)"),
        (
            Shape::Array {
                item: Box::new(Shape::U8),
                len: 32,
            },
            "[u8; 32]",
        ),
        (
            Shape::Map {
                key: Box::new(Shape::String),
                value: Box::new(Shape::U64),
            },
            "BTreeMap<String, u64>",
        ),
        (Shape::Bytes, "Bytes"),
        (Shape::Unit, "()"),
        (Shape::Named("x::Unknown".into()), "x::Unknown"),
    ];
    for (shape, expected) in cases {
        assert_eq!(render(&shape, &r), expected);
    }
}

// ---------------------------------------------------------------- mismatch

#[test]
fn mismatch_descriptions() {
    let names: Vec<String> = ["from", "to", "amount"].map(String::from).to_vec();
    let r = Registry::new();
    assert_eq!(
        describe_args_mismatch(
            &names,
            (&[Shape::U64, Shape::U64, Shape::I64], &r),
            (&[Shape::U64, Shape::U64, Shape::U64], &r)
        ),
        "parameter 3 (`amount`): expected i64, given u64"
    );
    assert_eq!(
        describe_args_mismatch(
            &names,
            (&[Shape::U64, Shape::U64, Shape::I64], &r),
            (&[Shape::U64, Shape::U64], &r)
        ),
        "expected 3 arguments, given 2"
    );
    assert_eq!(
        describe_args_mismatch(
            &names,
            (&[Shape::U64, Shape::U64, Shape::I64], &r),
            (&[Shape::U64, Shape::U64, Shape::I64], &r)
        ),
        "the argument types match"
    );

    #[derive(Schema)]
    struct Item {
        #[allow(dead_code)]
        qty: String,
    }
    #[derive(Schema)]
    struct Expected {
        #[allow(dead_code)]
        qty: u32,
    }
    let (expected, er) = shapes::<Expected>();
    let (given, gr) = shapes::<Item>();
    assert_eq!(
        describe_args_mismatch(
            &["item".to_string()],
            (std::slice::from_ref(&expected), &er),
            (&[given], &gr)
        ),
        "parameter 1 (`item`): at `item.qty`: expected u32, given String"
    );
    let (swapped, sr) = shapes::<client::SwappedBin>();
    let (bin, br) = shapes::<inventory::Bin>();
    assert_eq!(
        describe_args_mismatch(&["bin".to_string()], (&[bin], &br), (&[swapped], &sr)),
        "parameter 1 (`bin`): at `bin`: expected field `aisle`, given field `shelf`"
    );
    // Whatever differs by fingerprint has a description, and vice versa.
    let (tree, tr) = shapes::<inventory::Tree>();
    let (node, nr) = shapes::<client::Node>();
    assert_eq!(
        describe_args_mismatch(&[], (std::slice::from_ref(&tree), &tr), (&[node], &nr)),
        "the argument types match"
    );
    assert_eq!(
        describe_args_mismatch(&[], (&[tree], &tr), (&[expected], &er)),
        "parameter 1: at `0`: expected field `value`, given field `qty`"
    );
}

// ----------------------------------------------------------- compatibility

fn compat(old: (&Shape, &Registry), new: (&Shape, &Registry)) -> Result<(), Vec<String>> {
    stored_compatibility(old, new)
}

fn item_def(name: &str, fields: &[(&str, Shape)]) -> (Shape, Registry) {
    let mut r = Registry::new();
    r.types.insert(
        "m::Item".into(),
        TypeDef {
            name: name.into(),
            doc: String::new(),
            body: TypeBody::Struct(Fields::Named(
                fields
                    .iter()
                    .map(|(n, s)| Field {
                        name: n.to_string(),
                        doc: String::new(),
                        shape: s.clone(),
                    })
                    .collect(),
            )),
        },
    );
    (Shape::Named("m::Item".into()), r)
}

fn enum_def(variants: &[(&str, Fields)]) -> (Shape, Registry) {
    let mut r = Registry::new();
    r.types.insert(
        "m::Kind".into(),
        TypeDef {
            name: "Kind".into(),
            doc: String::new(),
            body: TypeBody::Enum(
                variants
                    .iter()
                    .map(|(n, f)| Variant {
                        name: n.to_string(),
                        doc: String::new(),
                        fields: f.clone(),
                    })
                    .collect(),
            ),
        },
    );
    (Shape::Named("m::Kind".into()), r)
}

#[test]
fn compatible_changes() {
    let e = Registry::new();
    let (old, or) = item_def("Item", &[("qty", Shape::U32), ("bin", Shape::String)]);
    compat((&old, &or), (&old, &or)).unwrap();
    // Renamed fields and type, changed docs.
    let (mut new, mut nr) = item_def("Thing", &[("quantity", Shape::U32), ("bin", Shape::String)]);
    nr.types.get_mut("m::Item").unwrap().doc = "new docs".into();
    compat((&old, &or), (&new, &nr)).unwrap();
    // Under another id too.
    let def = nr.types.remove("m::Item").unwrap();
    nr.types.insert("n::Thing".into(), def);
    new = Shape::Named("n::Thing".into());
    compat((&old, &or), (&new, &nr)).unwrap();
    // Widening within a varint family.
    let (wide, wr) = item_def("Item", &[("qty", Shape::U128), ("bin", Shape::String)]);
    compat((&old, &or), (&wide, &wr)).unwrap();
    for (a, b) in [
        (Shape::U16, Shape::U32),
        (Shape::U32, Shape::U64),
        (Shape::U64, Shape::U128),
        (Shape::I16, Shape::I32),
        (Shape::I32, Shape::I64),
        (Shape::I64, Shape::I128),
        (Shape::I16, Shape::I128),
        (Shape::Bytes, Shape::Seq(Box::new(Shape::U8))),
        (Shape::String, Shape::Bytes),
        (Shape::Char, Shape::String),
    ] {
        compat((&a, &e), (&b, &e)).unwrap_or_else(|c| panic!("{a:?} -> {b:?}: {c:?}"));
    }
    // Variants appended at the end, renamed variants.
    let (k1, k1r) = enum_def(&[("A", Fields::Unit), ("B", Fields::Newtype(Shape::U32))]);
    let (k2, k2r) = enum_def(&[
        ("A", Fields::Unit),
        ("Bee", Fields::Newtype(Shape::U64)),
        ("C", Fields::Tuple(vec![Shape::U8, Shape::U8])),
    ]);
    compat((&k1, &k1r), (&k2, &k2r)).unwrap();
    // Wire-identical spellings: a newtype and its inner shape, a tuple and
    // a struct of the same items.
    let (id, ir) = shapes::<client::Id>();
    compat((&Shape::U64, &e), (&id, &ir)).unwrap();
    compat((&id, &ir), (&Shape::U64, &e)).unwrap();
    compat(
        (&Shape::Tuple(vec![Shape::U32, Shape::U32]), &e),
        shapes::<inventory::Bin>().as_pair(),
    )
    .unwrap();
    // Recursive types compare without looping.
    let (tree, tr) = shapes::<inventory::Tree>();
    let (node, nr) = shapes::<client::Node>();
    compat((&tree, &tr), (&node, &nr)).unwrap();
}

trait AsPair {
    fn as_pair(&self) -> (&Shape, &Registry);
}

impl AsPair for (Shape, Registry) {
    fn as_pair(&self) -> (&Shape, &Registry) {
        (&self.0, &self.1)
    }
}

#[test]
fn incompatible_changes() {
    let e = Registry::new();
    let (old, or) = item_def("Item", &[("qty", Shape::U32), ("bin", Shape::String)]);
    let (new, nr) = item_def("Item", &[("qty", Shape::String), ("bin", Shape::String)]);
    assert_eq!(
        compat((&old, &or), (&new, &nr)).unwrap_err(),
        ["`Item.qty`: u32 -> String"]
    );
    let (new, nr) = item_def(
        "Item",
        &[
            ("qty", Shape::U32),
            ("bin", Shape::String),
            ("extra", Shape::U8),
        ],
    );
    assert_eq!(
        compat((&old, &or), (&new, &nr)).unwrap_err(),
        ["`Item`: field `extra` added"]
    );
    let (new, nr) = item_def("Item", &[("qty", Shape::U32)]);
    assert_eq!(
        compat((&old, &or), (&new, &nr)).unwrap_err(),
        ["`Item`: field `bin` removed"]
    );
    let (new, nr) = item_def("Item", &[("bin", Shape::String), ("qty", Shape::U32)]);
    assert_eq!(
        compat((&old, &or), (&new, &nr)).unwrap_err(),
        [
            "`Item`: field `qty` moved from position 0 to 1",
            "`Item`: field `bin` moved from position 1 to 0"
        ]
    );
    let (new, nr) = item_def("Item", &[("qty", Shape::U16), ("bin", Shape::Bytes)]);
    assert_eq!(
        compat((&old, &or), (&new, &nr)).unwrap_err(),
        ["`Item.qty`: u32 -> u16"]
    );
    for (a, b) in [
        (Shape::U8, Shape::U16),
        (Shape::I8, Shape::I16),
        (Shape::U32, Shape::I64),
        (Shape::I32, Shape::U64),
        (Shape::U64, Shape::U32),
        (Shape::F32, Shape::F64),
        (Shape::Bytes, Shape::String),
        (Shape::U32, Shape::Option(Box::new(Shape::U32))),
        (
            Shape::Seq(Box::new(Shape::U8)),
            Shape::Seq(Box::new(Shape::U16)),
        ),
        (
            Shape::Tuple(vec![Shape::U8]),
            Shape::Tuple(vec![Shape::U8, Shape::U8]),
        ),
    ] {
        assert!(compat((&a, &e), (&b, &e)).is_err(), "{a:?} -> {b:?}");
    }
    assert_eq!(
        compat(
            (&Shape::Seq(Box::new(Shape::U8)), &e),
            (&Shape::Seq(Box::new(Shape::U16)), &e)
        )
        .unwrap_err(),
        ["`[_]`: u8 -> u16"]
    );
    let (k1, k1r) = enum_def(&[("A", Fields::Unit), ("B", Fields::Newtype(Shape::U32))]);
    let (k2, k2r) = enum_def(&[("A", Fields::Unit)]);
    assert_eq!(
        compat((&k1, &k1r), (&k2, &k2r)).unwrap_err(),
        ["`Kind`: variant `B` removed"]
    );
    let (k3, k3r) = enum_def(&[
        ("X", Fields::Unit),
        ("A", Fields::Unit),
        ("B", Fields::Newtype(Shape::U32)),
    ]);
    assert_eq!(
        compat((&k1, &k1r), (&k3, &k3r)).unwrap_err(),
        [
            "`Kind`: variant `A` moved from position 0 to 1",
            "`Kind`: variant `B` moved from position 1 to 2"
        ]
    );
    let (k4, k4r) = enum_def(&[("A", Fields::Unit), ("B", Fields::Newtype(Shape::String))]);
    assert_eq!(
        compat((&k1, &k1r), (&k4, &k4r)).unwrap_err(),
        ["`Kind.B`: u32 -> String"]
    );
    let (k5, k5r) = enum_def(&[
        ("A", Fields::Newtype(Shape::U8)),
        ("B", Fields::Newtype(Shape::U32)),
    ]);
    assert_eq!(
        compat((&k1, &k1r), (&k5, &k5r)).unwrap_err(),
        ["`Kind.A`: () -> u8"]
    );
    // Several changes, one line each.
    let (new, nr) = item_def("Item", &[("qty", Shape::I32), ("bin", Shape::U8)]);
    assert_eq!(compat((&old, &or), (&new, &nr)).unwrap_err().len(), 2);
}

// ---------------------------------------------------- registry and storage

#[test]
fn merge_refuses_conflicting_definitions() {
    let (_, mut a) = item_def("Item", &[("qty", Shape::U32)]);
    let (_, same) = item_def("Item", &[("qty", Shape::U32)]);
    a.merge(same).unwrap();
    let (_, mut other) = item_def("Item", &[("qty", Shape::U64)]);
    other.types.insert(
        "m::Extra".into(),
        TypeDef {
            name: "Extra".into(),
            doc: String::new(),
            body: TypeBody::Struct(Fields::Unit),
        },
    );
    assert_eq!(
        a.merge(other).unwrap_err(),
        "type `m::Item` has two different definitions"
    );
    assert!(a.get("m::Extra").is_none(), "a failed merge adds nothing");
    let (_, b) = shapes::<inventory::Bin>();
    a.merge(b).unwrap();
    assert_eq!(a.types.len(), 2);
}

#[test]
fn validate_finds_undefined_and_infinite_types() {
    let (_, r) = shapes::<inventory::NewItem>();
    r.validate().unwrap();
    let (_, mut bad) = item_def("Item", &[("qty", Shape::Named("m::Gone".into()))]);
    assert_eq!(
        bad.validate().unwrap_err(),
        "type `m::Item` refers to `m::Gone`, which is not defined"
    );
    bad.types.get_mut("m::Item").unwrap().body = TypeBody::Struct(Fields::Tuple(vec![
        Shape::U8,
        Shape::Named("m::Item".into()),
    ]));
    assert!(bad.validate().unwrap_err().contains("contains itself"));
    bad.types.get_mut("m::Item").unwrap().body = TypeBody::Struct(Fields::Newtype(Shape::Option(
        Box::new(Shape::Named("m::Item".into())),
    )));
    bad.validate().unwrap();
    assert!(
        bad.validate_with_roots(&[&Shape::Named("x".into())])
            .is_err()
    );
}

#[test]
fn schemas_encode_and_decode_safely() {
    let (item, types) = shapes::<inventory::NewItem>();
    let schema = ProcedureSchema {
        name: "add".into(),
        doc: "Adds an item.".into(),
        params: vec![Param {
            name: "item".into(),
            shape: item,
        }],
        result: Shape::Option(Box::new(Shape::U64)),
        read_only: false,
        types,
    };
    let bytes = encode_schema(&schema);
    let back: ProcedureSchema = decode_schema(&bytes).unwrap();
    assert_eq!(back, schema);
    back.validate().unwrap();
    // The schema of schemas accepts what serde emits for them.
    let (meta, meta_r) = shapes::<ProcedureSchema>();
    check_json(&meta, &meta_r, &serde_json::to_value(&schema).unwrap()).unwrap();
    // Shapes nested 100 000 deep: refused, not a stack overflow in serde.
    let option_tag = 17u8; // Shape::Option
    let mut hostile = vec![option_tag; 100_000];
    hostile.push(0);
    assert!(
        decode_schema::<Shape>(&hostile)
            .unwrap_err()
            .contains("nesting deeper")
    );
    assert!(decode_schema::<Shape>(&[option_tag, 0]).is_ok());
    assert!(decode_schema::<ProcedureSchema>(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn json_arguments_may_not_repeat_a_key() {
    use ordo_schema::parse_json;
    let parsed = parse_json(br#"{"a": {"b": [1, {"c": null}]}, "d": "x"}"#).unwrap();
    assert_eq!(
        parsed,
        serde_json::json!({"a": {"b": [1, {"c": null}]}, "d": "x"})
    );
    // serde_json's Value would keep the last `count`; serde's derive
    // refuses the duplicate, so the check must too, at any depth.
    for text in [
        r#"{"count": 1, "count": 2}"#,
        r#"{"item": {"sku": "a", "sku": "b"}}"#,
        r#"[{"x": 1}, {"y": 2, "y": 3}]"#,
    ] {
        let err = parse_json(text.as_bytes()).unwrap_err();
        assert!(err.contains("appears twice"), "{text}: {err}");
    }
    assert!(parse_json(b"{} trailing").is_err());
    assert!(parse_json(b"").is_err());
}

// ------------------------------------------------------------ decoding

#[test]
fn postcard_decodes_to_the_json_serde_writes() {
    use inventory::{Bin, Kind, NewItem};
    let item = NewItem {
        name: "bolt".into(),
        qty: 7,
        bin: Some(Bin { aisle: 3, shelf: 1 }),
        lines: vec![1, u64::MAX],
    };
    let (shape, registry) = shapes::<NewItem>();
    let bytes = postcard::to_allocvec(&item).unwrap();
    assert_eq!(
        postcard_to_json(&shape, &registry, &bytes).unwrap(),
        serde_json::to_value(&item).unwrap()
    );
    let (shape, registry) = shapes::<Vec<Kind>>();
    let kinds = vec![Kind::A, Kind::B(9), Kind::C { x: 2 }];
    let bytes = postcard::to_allocvec(&kinds).unwrap();
    assert_eq!(
        postcard_to_json(&shape, &registry, &bytes).unwrap(),
        json!(["A", {"B": 9}, {"C": {"x": 2}}])
    );
    // Wide integers a JSON number cannot hold are decimal strings.
    let (shape, registry) = shapes::<(u128, i128, i64)>();
    let bytes = postcard::to_allocvec(&(u128::MAX, i128::MIN, -5i64)).unwrap();
    assert_eq!(
        postcard_to_json(&shape, &registry, &bytes).unwrap(),
        json!([u128::MAX.to_string(), i128::MIN.to_string(), -5])
    );
    // Bad bytes get the check's error, not a guess.
    let (shape, registry) = shapes::<NewItem>();
    let err = postcard_to_json(&shape, &registry, &bytes[..3]).unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[test]
fn arguments_decode_to_an_object_keyed_by_parameter_name() {
    let registry = Registry::new();
    let params = vec![
        Param {
            name: "from".into(),
            shape: Shape::U64,
        },
        Param {
            name: "to".into(),
            shape: Shape::U64,
        },
        Param {
            name: "amount".into(),
            shape: Shape::I64,
        },
    ];
    let bytes = postcard::to_allocvec(&(1u64, 2u64, -5i64)).unwrap();
    assert_eq!(
        postcard_params_to_json(&params, &registry, &bytes).unwrap(),
        json!({"from": 1, "to": 2, "amount": -5})
    );
    let err = postcard_params_to_json(&params, &registry, &[1, 2]).unwrap_err();
    assert_eq!(err.path, "amount", "{err}");
}

#[test]
fn a_huge_zero_width_sequence_is_refused_not_allocated() {
    // Four bytes that declare 2^32 - 1 units: valid postcard (every item is
    // empty), but four billion JSON nulls.
    let (shape, registry) = shapes::<Vec<()>>();
    let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(check_postcard(&shape, &registry, &bytes).is_ok());
    let err = postcard_to_json(&shape, &registry, &bytes).unwrap_err();
    assert!(err.to_string().contains("too many to show"), "{err}");
}

#[test]
fn table_keys_decode_from_their_order_preserving_encoding() {
    let registry = Registry::new();
    // u64 big-endian; i64 with the sign bit flipped.
    assert_eq!(
        ordered_key_to_json(&Shape::U64, &registry, &5u64.to_be_bytes()),
        Some(json!(5))
    );
    let minus_two = ((-2i64 as u64) ^ (1 << 63)).to_be_bytes();
    assert_eq!(
        ordered_key_to_json(&Shape::I64, &registry, &minus_two),
        Some(json!(-2))
    );
    assert_eq!(
        ordered_key_to_json(&Shape::I8, &registry, &[0x7f]),
        Some(json!(-1))
    );
    // Strings: 0x00 escaped as 0x00 0xFF, ended by 0x00 0x00; in a tuple.
    let shape = Shape::Tuple(vec![Shape::String, Shape::U32]);
    let mut bytes = b"a\x00\xffb\x00\x00".to_vec();
    bytes.extend_from_slice(&9u32.to_be_bytes());
    assert_eq!(
        ordered_key_to_json(&shape, &registry, &bytes),
        Some(json!(["a\u{0}b", 9]))
    );
    // Left-over bytes, a short key, a bad escape, or a shape a key
    // encoding cannot be read from: not decoded.
    assert_eq!(
        ordered_key_to_json(&Shape::U32, &registry, &[0, 0, 0, 1, 2]),
        None
    );
    assert_eq!(ordered_key_to_json(&Shape::U64, &registry, &[0, 1]), None);
    assert_eq!(
        ordered_key_to_json(&Shape::String, &registry, b"a\x00\x07"),
        None
    );
    assert_eq!(ordered_key_to_json(&Shape::F64, &registry, &[0; 8]), None);
    let (shape, registry) = shapes::<inventory::Bin>();
    assert_eq!(ordered_key_to_json(&shape, &registry, &[0; 8]), None);
}

#[test]
fn key_prefixes_encode_as_the_sdk_does_and_decode_back() {
    let registry = Registry::new();
    let shape = Shape::Tuple(vec![Shape::String, Shape::U32, Shape::I64]);
    assert_eq!(ordo_schema::key_class(&shape, &registry), Some(0x80));
    assert_eq!(ordo_schema::key_class(&Shape::U64, &registry), Some(8));
    assert_eq!(ordo_schema::key_class(&Shape::F32, &registry), None);
    let full =
        ordo_schema::ordered_key_prefix_from_json(&shape, &registry, &json!(["a\u{0}b", 9, -2]))
            .unwrap();
    let mut expected = b"a\x00\xffb\x00\x00".to_vec();
    expected.extend_from_slice(&9u32.to_be_bytes());
    expected.extend_from_slice(&((-2i64 as u64) ^ (1 << 63)).to_be_bytes());
    assert_eq!(full, expected);
    assert_eq!(
        ordered_key_to_json(&shape, &registry, &full),
        Some(json!(["a\u{0}b", 9, -2]))
    );
    // Leading elements, as an array or the first alone, are a prefix.
    let two = ordo_schema::ordered_key_prefix_from_json(&shape, &registry, &json!(["a\u{0}b", 9]));
    assert_eq!(two.as_deref(), Some(&full[..full.len() - 8]));
    let one = ordo_schema::ordered_key_prefix_from_json(&shape, &registry, &json!("a\u{0}b"));
    assert_eq!(one.as_deref(), Some(&expected[..6]));
    // Values that do not fit: refused, not truncated.
    for bad in [
        json!([1]),
        json!(["a", -1]),
        json!(["a", 1, 2, 3]),
        json!(["a", 4294967296u64]),
    ] {
        assert_eq!(
            ordo_schema::ordered_key_prefix_from_json(&shape, &registry, &bad),
            None,
            "{bad}"
        );
    }
    assert_eq!(
        ordo_schema::ordered_key_prefix_from_json(&Shape::U8, &registry, &json!(256)),
        None
    );
}

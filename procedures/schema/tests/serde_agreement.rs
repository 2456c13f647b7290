//! Derived schemas agree with what serde's derive actually emits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ordo_schema::{Registry, Schema, Shape, TypeBody, check_json, check_postcard};
use serde::{Deserialize, Serialize};

/// A bin in the warehouse.
#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct Bin {
    /// Aisle letter.
    aisle: char,
    shelf: u8,
}

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct Sku(u64);

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct Pair(i16, String);

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct Marker;

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
enum Kind {
    Plain,
    Weighted(f64),
    Sized(u32, u32, u32),
    Boxed {
        inner: Box<Kind>,
        label: Option<String>,
    },
}

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct NewItem {
    sku: Sku,
    item_name: String,
    qty: u32,
    bin: Option<Bin>,
    tags: Vec<String>,
    #[serde(rename = "attrs")]
    attributes: BTreeMap<String, i64>,
    by_id: BTreeMap<u32, Pair>,
    kinds: Vec<Kind>,
    marker: Marker,
    grid: [u16; 3],
    pair: (u8, bool),
    big: (u128, i128),
    set: BTreeSet<i32>,
    queue: VecDeque<i8>,
    nothing: (),
    floats: (f32, f64),
}

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Event {
    ItemAdded(Box<NewItem>),
    ItemRemoved { sku: Sku },
    Cleared,
}

#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u64>,
}

/// A recursive list.
#[derive(Serialize, Deserialize, Schema, Clone, Debug, PartialEq)]
struct List {
    head: u32,
    tail: Option<Box<List>>,
}

fn sample() -> NewItem {
    NewItem {
        sku: Sku(77),
        item_name: "bolt".into(),
        qty: 300,
        bin: Some(Bin {
            aisle: 'Ж',
            shelf: 200,
        }),
        tags: vec!["a".into(), "".into()],
        attributes: [("w".to_string(), -5i64), ("h".to_string(), i64::MIN)].into(),
        by_id: [
            (1u32, Pair(-3, "x".into())),
            (u32::MAX, Pair(i16::MIN, "y".into())),
        ]
        .into(),
        kinds: vec![
            Kind::Plain,
            Kind::Weighted(1.5),
            Kind::Sized(1, 2, u32::MAX),
            Kind::Boxed {
                inner: Box::new(Kind::Plain),
                label: None,
            },
        ],
        marker: Marker,
        grid: [1, 300, u16::MAX],
        pair: (255, true),
        big: (u64::MAX as u128, i64::MIN as i128), // serde_json::Value holds 64 bits
        set: [-1, 0, 1].into(),
        queue: [i8::MIN, 0, i8::MAX].into(),
        nothing: (),
        floats: (0.25, -1e300),
    }
}

fn both<T: Serialize + Schema>(value: &T) {
    let mut registry = Registry::new();
    let shape = T::shape(&mut registry);
    let bytes = postcard::to_allocvec(value).unwrap();
    check_postcard(&shape, &registry, &bytes).unwrap_or_else(|e| panic!("postcard: {e}"));
    let json = serde_json::to_value(value).unwrap();
    check_json(&shape, &registry, &json).unwrap_or_else(|e| panic!("json: {e}\n{json}"));
    // The bytes are exact: dropping or adding a byte is refused.
    assert!(check_postcard(&shape, &registry, &bytes[..bytes.len() - 1]).is_err());
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(check_postcard(&shape, &registry, &longer).is_err());
}

#[test]
fn derived_schemas_accept_what_serde_emits() {
    both(&sample());
    both(&Event::ItemAdded(Box::new(sample())));
    both(&Event::ItemRemoved { sku: Sku(1) });
    both(&(Event::Cleared, 5u8));
    both(&Page {
        items: vec![sample(), sample()],
        next: Some(9),
    });
    both(&Page::<Bin> {
        items: vec![],
        next: None,
    });
    both(&List {
        head: 1,
        tail: Some(Box::new(List {
            head: 2,
            tail: None,
        })),
    });
}

#[test]
fn derived_definitions_are_as_serde_names_them() {
    let mut registry = Registry::new();
    let shape = NewItem::shape(&mut registry);
    assert_eq!(shape, Shape::Named("serde_agreement::NewItem".into()));
    let def = registry.get("serde_agreement::NewItem").unwrap();
    assert_eq!(def.name, "NewItem");
    let TypeBody::Struct(ordo_schema::Fields::Named(fields)) = &def.body else {
        panic!("{def:?}")
    };
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sku", "itemName", "qty", "bin", "tags", "attrs", "byId", "kinds", "marker", "grid",
            "pair", "big", "set", "queue", "nothing", "floats"
        ]
    );
    let bin = registry.get("serde_agreement::Bin").unwrap();
    assert_eq!(bin.doc, "A bin in the warehouse.");
    let TypeBody::Struct(ordo_schema::Fields::Named(bin_fields)) = &bin.body else {
        panic!()
    };
    assert_eq!(bin_fields[0].doc, "Aisle letter.");

    let mut registry = Registry::new();
    Event::shape(&mut registry);
    let TypeBody::Enum(variants) = &registry.get("serde_agreement::Event").unwrap().body else {
        panic!()
    };
    let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["item_added", "item_removed", "cleared"]);

    let mut registry = Registry::new();
    let page = Page::<Bin>::shape(&mut registry);
    assert_eq!(
        page,
        Shape::Named("serde_agreement::Page<serde_agreement::Bin>".into())
    );
    assert_eq!(
        registry
            .get("serde_agreement::Page<serde_agreement::Bin>")
            .unwrap()
            .name,
        "Page<Bin>"
    );
    let other = Page::<u64>::shape(&mut registry);
    assert_eq!(other, Shape::Named("serde_agreement::Page<u64>".into()));

    // A recursive type refers to itself and terminates.
    let mut registry = Registry::new();
    List::shape(&mut registry);
    assert_eq!(registry.types.len(), 1);
    assert_eq!(
        registry.get("serde_agreement::List").unwrap().doc,
        "A recursive list."
    );
    registry.validate().unwrap();
}

#[test]
fn postcard_of_serde_round_trips_only_when_checked() {
    // The check refuses a wrong-typed payload that serde would misread: a
    // u8 field given a varint above 127 continues into the next field.
    let mut registry = Registry::new();
    let shape = Bin::shape(&mut registry);
    let good = postcard::to_allocvec(&Bin {
        aisle: 'a',
        shelf: 3,
    })
    .unwrap();
    check_postcard(&shape, &registry, &good).unwrap();
    let decoded: Bin = postcard::from_bytes(&good).unwrap();
    assert_eq!(decoded.shelf, 3);
    // A JSON typo in a nested struct is refused (serde would store null).
    let mut json = serde_json::to_value(sample()).unwrap();
    let bin = json["bin"].as_object_mut().unwrap();
    let shelf = bin.remove("shelf").unwrap();
    bin.insert("shelff".into(), shelf);
    let mut registry = Registry::new();
    let shape = NewItem::shape(&mut registry);
    let err = check_json(&shape, &registry, &json).unwrap_err();
    assert_eq!(err.path, "bin");
    assert!(err.message.starts_with("unknown field `shelff`"), "{err}");
}

/// The derive through a re-export (as `ordo_sdk::schema` will be).
mod sdk {
    pub use ordo_schema as schema;
}

#[derive(Serialize, Schema)]
#[schema(crate = "crate::sdk::schema")]
struct ThroughReexport<'a, const N: usize> {
    fixed: [u8; 4],
    marker: std::marker::PhantomData<u64>,
    text: &'a str,
    cow: std::borrow::Cow<'a, str>,
}

#[test]
fn reexported_const_generic_and_borrowed() {
    let mut registry = Registry::new();
    let shape = ThroughReexport::<4>::shape(&mut registry);
    assert_eq!(
        shape,
        Shape::Named("serde_agreement::ThroughReexport<4>".into())
    );
    both(&ThroughReexport::<4> {
        fixed: [1, 2, 3, 4],
        marker: std::marker::PhantomData,
        text: "borrowed",
        cow: "cow".into(),
    });
}

//! A client's JSON arguments against a fixed, realistic contract (nested
//! structs, an enum of every variant kind, options, sequences, maps,
//! integers of every width): `check_json_args` must never panic, and what
//! it accepts must be exactly what serde then decodes (serde_json into the
//! same Rust types), so a check that passes can never be followed by a
//! decode that fails or means something else.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use ordo_schema::{Param, Registry, Schema};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Schema)]
#[serde(deny_unknown_fields)]
struct Location {
    aisle: u32,
    bin: String,
}

#[derive(Serialize, Deserialize, Schema)]
enum Kind {
    Tool,
    Part { grade: u8 },
    Kit(Vec<String>),
    Pair(i16, u64),
}

#[derive(Serialize, Deserialize, Schema)]
#[serde(deny_unknown_fields)]
struct Item {
    sku: String,
    count: u32,
    reserved: i64,
    location: Option<Location>,
    kind: Kind,
    tags: BTreeMap<String, u8>,
    big: u128,
}

/// The procedure's arguments, as the SDK's macro decodes them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Args {
    item: Item,
    quantity: u16,
    note: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    // Parsed the way the node parses JSON arguments before checking them.
    let Ok(value) = ordo_schema::parse_json(data) else {
        return;
    };
    let mut types = Registry::new();
    let params = vec![
        Param {
            name: "item".into(),
            shape: types.shape_of::<Item>(),
        },
        Param {
            name: "quantity".into(),
            shape: types.shape_of::<u16>(),
        },
        Param {
            name: "note".into(),
            shape: types.shape_of::<Option<String>>(),
        },
    ];
    if ordo_schema::check_json_args(&params, &types, &value).is_ok() {
        // Accepted by the check (on the parsed value, as the node checks
        // it): the guest's decoding of the same bytes must accept it too.
        if let Err(err) = serde_json::from_slice::<Args>(data) {
            panic!("checked JSON does not decode: {err}: {value}");
        }
    }
});

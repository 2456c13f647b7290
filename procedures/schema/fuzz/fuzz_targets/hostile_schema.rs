//! A hostile module's schema export, then hostile arguments against it:
//! the first byte says how many of the next bytes are the schema (as a
//! module hands it to the host), the rest are a call's arguments, checked
//! as postcard and, if they are text, as JSON. Nothing may panic, hang or
//! recurse without bound; whatever decodes and validates must check
//! arguments without crashing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_schema::{ProcedureSchema, Shape, TableSchema};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = (split as usize * 4).min(rest.len());
    let (schema_bytes, args) = rest.split_at(split);
    if let Ok(schema) = ordo_schema::decode_schema::<ProcedureSchema>(schema_bytes) {
        let mut roots: Vec<&Shape> = schema.params.iter().map(|p| &p.shape).collect();
        roots.push(&schema.result);
        if schema.types.validate_with_roots(&roots).is_ok() {
            let shapes = schema.param_shapes();
            let _ = ordo_schema::check_postcard_args(&shapes, &schema.types, args);
            let _ = ordo_schema::check_postcard_params(&schema.params, &schema.types, args);
            let _ = ordo_schema::args_fingerprint(&shapes, &schema.types);
            let _ = schema.signature();
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(args) {
                let _ = ordo_schema::check_json_args(&schema.params, &schema.types, &value);
            }
        }
    }
    if let Ok(table) = ordo_schema::decode_schema::<TableSchema>(schema_bytes)
        && table
            .types
            .validate_with_roots(&[&table.key, &table.value])
            .is_ok()
    {
        let _ = ordo_schema::stored_compatibility(
            (&table.key, &table.types),
            (&table.value, &table.types),
        );
        let _ = ordo_schema::check_postcard(&table.value, &table.types, args);
    }
});

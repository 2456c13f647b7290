//! A module's schema exports are hostile input: hand-written modules whose
//! `ordo_schema_*` / `ordo_table_*` exports loop, trap, touch state, return
//! garbage or return well-formed schemas that break the limits. Each is
//! refused at compile time (so before a deploy is logged), naming the
//! export; a good one yields the contract the call path checks against.

use ordo_engine::module::DeployError;
use ordo_engine::schema::{
    Field, Fields, Param, ProcedureSchema, Registry, Shape, TableSchema, TypeBody, TypeDef,
    encode_schema,
};
use ordo_engine::{EngineConfig, Executor};

/// `bytes` as a WAT string literal.
fn wat_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\{b:02x}")).collect()
}

/// A module with procedure `p` and the export `schema_export` whose body
/// is `body` (it may use `$set_result`, `$get` and the bytes at offset
/// 1024, which are `data`).
fn module(schema_export: &str, body: &str, data: &[u8]) -> Vec<u8> {
    let text = format!(
        r#"(module
  (import "ordo" "set_result" (func $set_result (param i32 i32)))
  (import "ordo" "get" (func $get (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 64)
  (data (i32.const 1024) "{}")
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
  (func (export "ordo_proc_p") (param i32 i32) (result i32) i32.const 0)
  (func (export "{schema_export}") (result i32) {body})
)"#,
        wat_bytes(data)
    );
    wat::parse_str(&text).expect("test module parses")
}

/// A schema export that hands `bytes` to the host.
fn returning(export: &str, bytes: &[u8]) -> Vec<u8> {
    module(
        export,
        &format!(
            "(call $set_result (i32.const 1024) (i32.const {})) i32.const 0",
            bytes.len()
        ),
        bytes,
    )
}

fn schema_of_p(params: Vec<Param>, types: Registry) -> ProcedureSchema {
    ProcedureSchema {
        name: "p".into(),
        doc: "A procedure.".into(),
        params,
        result: Shape::Unit,
        read_only: false,
        types,
    }
}

fn param(name: &str, shape: Shape) -> Param {
    Param {
        name: name.into(),
        shape,
    }
}

fn compile(wasm: &[u8]) -> Result<ordo_engine::module::CompiledModule, DeployError> {
    let config = EngineConfig::default();
    Executor::compiler(&config).compile("m", wasm)
}

#[track_caller]
fn refused(wasm: &[u8], needles: &[&str]) {
    match compile(wasm) {
        Ok(_) => panic!("the module was accepted"),
        Err(err) => {
            let message = err.to_string();
            for needle in needles {
                assert!(message.contains(needle), "`{message}` lacks `{needle}`");
            }
        }
    }
}

#[test]
fn a_good_schema_becomes_the_procedures_contract() {
    let schema = schema_of_p(vec![param("amount", Shape::I64)], Registry::new());
    let compiled = compile(&returning("ordo_schema_p", &encode_schema(&schema))).unwrap();
    let contract = &compiled.contract.procedures["p"];
    assert_eq!(contract.signature(), "p(amount: i64) -> ()");
    assert_eq!(contract.schema.doc, "A procedure.");
    assert_eq!(
        contract.fingerprint,
        ordo_engine::schema::fingerprint_of_args::<(i64,)>().0
    );
    assert_ne!(
        contract.fingerprint,
        ordo_engine::schema::fingerprint_of_args::<(u64,)>().0
    );
}

#[test]
fn schema_exports_that_misbehave_are_refused_naming_the_export() {
    // Garbage, and a schema followed by trailing bytes.
    refused(
        &returning("ordo_schema_p", b"\xff\xff\xff\xff\xff"),
        &["ordo_schema_p", "does not decode"],
    );
    let mut trailing = encode_schema(&schema_of_p(Vec::new(), Registry::new()));
    trailing.push(0);
    refused(&returning("ordo_schema_p", &trailing), &["ordo_schema_p"]);
    // Runs forever: stopped by its fuel.
    refused(
        &module("ordo_schema_p", "(loop $l (br $l)) i32.const 0", &[]),
        &["ordo_schema_p", "fuel"],
    );
    // Touches state, which a schema export cannot see.
    refused(
        &module(
            "ordo_schema_p",
            "(drop (call $get (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0))) i32.const 0",
            &[],
        ),
        &["ordo_schema_p"],
    );
    // Traps, or returns a failure status.
    refused(
        &module("ordo_schema_p", "unreachable", &[]),
        &["ordo_schema_p"],
    );
    refused(
        &module("ordo_schema_p", "i32.const 1", &[]),
        &["ordo_schema_p", "status 1"],
    );
    // Hands back more than the result limit.
    refused(
        &module(
            "ordo_schema_p",
            "(call $set_result (i32.const 0) (i32.const 2000000)) i32.const 0",
            &[],
        ),
        &["ordo_schema_p"],
    );
    // Describes a procedure the module does not export, or has the wrong type.
    refused(
        &module("ordo_schema_q", "i32.const 0", &[]),
        &["ordo_schema_q", "does not export"],
    );
    let wrong_type = wat::parse_str(
        r#"(module
  (memory (export "memory") 1)
  (func (export "ordo_args_buffer") (param i32) (result i32) i32.const 0)
  (func (export "ordo_proc_p") (param i32 i32) (result i32) i32.const 0)
  (func (export "ordo_schema_p") (param i32) (result i32) i32.const 0))"#,
    )
    .unwrap();
    refused(&wrong_type, &["ordo_schema_p"]);
}

#[test]
fn well_formed_schemas_that_break_the_rules_are_refused() {
    let encoded = |schema: &ProcedureSchema| returning("ordo_schema_p", &encode_schema(schema));
    // Names another procedure.
    let mut other = schema_of_p(Vec::new(), Registry::new());
    other.name = "q".into();
    refused(&encoded(&other), &["ordo_schema_p", "`q`"]);
    // Disagrees with the metadata about read_only (this module has none,
    // so p is not read-only).
    let mut read_only = schema_of_p(Vec::new(), Registry::new());
    read_only.read_only = true;
    refused(&encoded(&read_only), &["read_only"]);
    // A parameter name twice.
    refused(
        &encoded(&schema_of_p(
            vec![param("a", Shape::U8), param("a", Shape::U8)],
            Registry::new(),
        )),
        &["`a`"],
    );
    // A type used but not defined.
    refused(
        &encoded(&schema_of_p(
            vec![param("item", Shape::Named("m::Item".into()))],
            Registry::new(),
        )),
        &["m::Item"],
    );
    // Nested deeper than the limit.
    let mut deep = Shape::U8;
    for _ in 0..200 {
        deep = Shape::Option(Box::new(deep));
    }
    refused(
        &encoded(&schema_of_p(vec![param("deep", deep)], Registry::new())),
        &["ordo_schema_p"],
    );
    // A huge array of nothing: checking a value would loop for ever.
    refused(
        &encoded(&schema_of_p(
            vec![param(
                "many",
                Shape::Array {
                    item: Box::new(Shape::Unit),
                    len: u32::MAX,
                },
            )],
            Registry::new(),
        )),
        &["array"],
    );
    // A struct that contains itself, with nothing in between: no value of
    // it is finite.
    let mut types = Registry::new();
    types.types.insert(
        "m::Loop".into(),
        TypeDef {
            name: "Loop".into(),
            doc: String::new(),
            body: TypeBody::Struct(Fields::Named(vec![Field {
                name: "again".into(),
                doc: String::new(),
                shape: Shape::Named("m::Loop".into()),
            }])),
        },
    );
    refused(
        &encoded(&schema_of_p(
            vec![param("loop", Shape::Named("m::Loop".into()))],
            types,
        )),
        &["ordo_schema_p"],
    );
}

#[test]
fn table_schemas_are_checked_too() {
    let table = |name: &str, key: Shape| TableSchema {
        name: name.into(),
        doc: String::new(),
        key,
        value: Shape::String,
        types: Registry::new(),
    };
    let good = compile(&returning(
        "ordo_table_accounts",
        &encode_schema(&table("acct", Shape::U64)),
    ))
    .unwrap();
    assert_eq!(good.contract.tables["acct"].key, Shape::U64);
    refused(
        &returning(
            "ordo_table_accounts",
            &encode_schema(&table("", Shape::U64)),
        ),
        &["ordo_table_accounts", "table name"],
    );
    refused(
        &returning(
            "ordo_table_accounts",
            &encode_schema(&table("acct", Shape::Named("m::Missing".into()))),
        ),
        &["m::Missing"],
    );
    refused(
        &returning("ordo_table_Bad", &encode_schema(&table("acct", Shape::U64))),
        &["ordo_table_Bad"],
    );
}

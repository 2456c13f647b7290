//! `ordo generate rust|python|typescript` end to end: the Rust bindings
//! compile in a crate of their own and call a real `ordo serve`, a wrong
//! argument type in code using them does not compile, their types carry
//! the procedures' fingerprints (edge cases included), the Python bindings
//! call a server through `ordo call` and check arguments before sending,
//! the TypeScript bindings type-check and run where `tsc` and `node` are
//! installed, and `--out` never overwrites files it did not write.
//!
//! The generated crates live under `target/generated-bindings/` and share
//! one target directory there, so only the first run compiles their
//! dependencies.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{ADMIN, Server, fails_with_all, runtime, stdout};
use ordo_client::schema::{
    Field, Fields, Param, ProcedureSchema, Registry, Shape, TypeBody, TypeDef, Variant,
    args_fingerprint,
};
use ordo_client::{Client, ClientConfig, ModuleDescription};

const ORDO: &str = env!("CARGO_BIN_EXE_ordo");

fn ordo(args: &[&str]) -> Output {
    common::run_ordo(None, args)
}

fn wasm_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn deploy(server: &Server, modules: &[(&str, &[u8])]) {
    let mut config = ClientConfig::new(server.addr.to_string());
    config.admin_token = Some(ADMIN.to_string());
    let client = Client::connect_with(config).await.unwrap();
    for (name, wasm) in modules {
        client.deploy(name, wasm).await.unwrap();
    }
}

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Where the generated crates are, reused across runs.
fn bindings_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/generated-bindings")
}

/// A crate under `target/generated-bindings/NAME` depending on
/// `ordo-client`, `serde` and `tokio`, with `main` as its `src/main.rs`;
/// returns its directory (the bindings go into `src/bindings`).
fn bindings_crate(name: &str) -> PathBuf {
    let dir = bindings_root().join(name);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let manifest = format!(
        r#"[package]
name = "ordo-bindings-{name}"
version = "0.0.0"
edition = "2024"
publish = false

# Its own workspace, not a member of ordo's.
[workspace]

[dependencies]
ordo-client = {{ path = {client:?} }}
serde = {{ version = "1", features = ["derive"] }}
tokio = {{ version = "1", features = ["rt", "macros"] }}
"#,
        client = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("client")
            .display()
            .to_string(),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // ordo's lock file: the same versions as ordo's own build, and no
    // registry look-up once they are downloaded.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"),
            dir.join("Cargo.lock"),
        )
        .unwrap();
    }
    dir
}

/// `cargo build` of the crate in `dir`, into the shared target directory.
fn cargo_build(dir: &Path) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = std::time::Instant::now();
    let output = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", bindings_root().join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    eprintln!(
        "cargo build of {} took {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    output
}

fn binary(name: &str) -> PathBuf {
    bindings_root()
        .join("target/debug")
        .join(format!("ordo-bindings-{name}"))
}

const CALL_MAIN: &str = r#"
#[path = "bindings/inventory.rs"]
mod inventory;
#[path = "bindings/bank.rs"]
mod bank;

use inventory::{Item, Kind, Location};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ordo_client::ClientError> {
    let addr = std::env::args().nth(1).expect("the server's address");
    let client = ordo_client::Client::connect(addr).await?;
    let item = Item {
        sku: "S-1".to_string(),
        count: 10,
        reserved: 3,
        location: Some(Location { aisle: 4, bin: "A-9".to_string() }),
        kind: Kind::Kit(vec!["S-2".to_string(), "S-3".to_string()]),
    };
    let added = inventory::add_item(&client, item.clone()).await?;
    println!("added at seq {}", added.seq);
    let read = inventory::item(&client, "S-1".to_string()).await?;
    println!("read back equal: {}", read.value.as_ref() == Some(&item));
    let stale = inventory::item_stale(&client, "S-1".to_string()).await?;
    println!("stale read equal: {}", stale.value == Some(item));
    println!("released: {}", inventory::release(&client, "S-1".to_string(), 2).await?.value);
    println!("skus: {:?}", inventory::skus(&client).await?.value);
    match inventory::release(&client, "S-9".to_string(), 1).await {
        Err(ordo_client::ClientError::Aborted { message, .. }) => println!("aborted: {message}"),
        other => println!("unexpected: {other:?}"),
    }
    bank::open(&client, 1, 100).await?;
    bank::open(&client, 2, 0).await?;
    bank::transfer(&client, 1, 2, 30).await?;
    println!("balance 1: {}", bank::balance(&client, 1).await?.value);
    println!("balance 2: {}", bank::balance_stale(&client, 2).await?.value);
    println!("total: {}", bank::total(&client).await?.value);
    Ok(())
}
"#;

#[test]
fn rust_bindings_compile_and_call_a_server() {
    let server = Server::start(&[]);
    runtime().block_on(deploy(
        &server,
        &[
            ("inventory", ordo::modules::INVENTORY),
            ("bank", ordo::modules::BANK),
        ],
    ));
    let dir = bindings_crate("call");
    let out = dir.join("src/bindings");
    let addr = server.addr.to_string();
    let written = stdout(&ordo(&[
        "generate",
        "rust",
        "--out",
        out.to_str().unwrap(),
        "--server",
        &addr,
    ]));
    for file in ["inventory.rs", "bank.rs", ".ordo-generated"] {
        assert!(written.contains(file), "{written}");
    }
    std::fs::write(dir.join("src/main.rs"), CALL_MAIN).unwrap();
    let built = cargo_build(&dir);
    assert!(
        built.status.success(),
        "the bindings do not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(binary("call")).arg(&addr).output().unwrap();
    let text = stdout(&ran);
    for line in [
        "read back equal: true",
        "stale read equal: true",
        "released: 1",
        "skus: [\"S-1\"]",
        "aborted: no item S-9",
        "balance 1: 70",
        "balance 2: 30",
        "total: 100",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

#[test]
fn a_wrong_argument_type_does_not_compile() {
    let files = tempfile::tempdir().unwrap();
    let wasm = wasm_file(files.path(), "bank", ordo::modules::BANK);
    let dir = bindings_crate("mistyped");
    let out = dir.join("src/bindings");
    stdout(&ordo(&[
        "generate",
        "rust",
        "--out",
        out.to_str().unwrap(),
        "--wasm",
        wasm.to_str().unwrap(),
    ]));
    let main = |amount: &str| {
        format!(
            r#"
#[path = "bindings/bank.rs"]
mod bank;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), ordo_client::ClientError> {{
    let client = ordo_client::Client::connect("127.0.0.1:1").await?;
    let amount = {amount};
    bank::open(&client, 1, amount).await?;
    Ok(())
}}
"#
        )
    };
    // The right type builds (so the failure below is the type's alone).
    std::fs::write(dir.join("src/main.rs"), main("5i64")).unwrap();
    let built = cargo_build(&dir);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    std::fs::write(dir.join("src/main.rs"), main("5u64")).unwrap();
    let built = cargo_build(&dir);
    assert!(!built.status.success(), "a u64 balance compiled");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(
        stderr.contains("expected `i64`, found `u64`"),
        "the error does not name the mismatch:\n{stderr}"
    );
}

// ---------------------------------------------------------------------
// A contract with the edge cases: keywords, renamed fields and variants,
// equal short names, names of prelude types, generics, recursion, every
// shape.

fn named(fields: &[(&str, Shape)]) -> Fields {
    Fields::Named(
        fields
            .iter()
            .map(|(name, shape)| Field {
                name: name.to_string(),
                doc: format!("The `{name}` field."),
                shape: shape.clone(),
            })
            .collect(),
    )
}

fn id(name: &str) -> Shape {
    Shape::Named(name.to_string())
}

fn edge_case_module() -> ModuleDescription {
    let b = Box::new;
    let types: Vec<(&str, &str, TypeBody)> = vec![
        (
            "edge::Item",
            "Item",
            TypeBody::Struct(named(&[
                ("type", Shape::String),
                ("aisleNumber", Shape::U32),
                ("bin-label", Shape::Option(b(Shape::Char))),
                ("self", Shape::Bool),
                ("raw", Shape::Bytes),
                ("other", id("other::Item")),
            ])),
        ),
        (
            "other::Item",
            "Item",
            TypeBody::Struct(named(&[("wide", Shape::U128), ("signed", Shape::I128)])),
        ),
        (
            "edge::Result",
            "Result",
            TypeBody::Enum(vec![
                Variant {
                    name: "part-two".into(),
                    doc: "A renamed variant.".into(),
                    fields: Fields::Unit,
                },
                Variant {
                    name: "Pair".into(),
                    doc: String::new(),
                    fields: Fields::Tuple(vec![Shape::I8, Shape::String]),
                },
                Variant {
                    name: "Boxed".into(),
                    doc: String::new(),
                    fields: named(&[("inner", id("edge::Result"))]),
                },
            ]),
        ),
        (
            "edge::Page<u64>",
            "Page<u64>",
            TypeBody::Struct(named(&[
                ("items", Shape::Seq(b(Shape::U64))),
                ("next", Shape::Option(b(Shape::U64))),
            ])),
        ),
        (
            "edge::Tree",
            "Tree",
            TypeBody::Struct(named(&[
                ("children", Shape::Seq(b(id("edge::Tree")))),
                ("parent", Shape::Option(b(id("edge::Tree")))),
                (
                    "labels",
                    Shape::Map {
                        key: b(Shape::U64),
                        value: b(Shape::String),
                    },
                ),
            ])),
        ),
        (
            "edge::Meters",
            "Meters",
            TypeBody::Struct(Fields::Newtype(Shape::F64)),
        ),
        ("edge::Marker", "Marker", TypeBody::Struct(Fields::Unit)),
        (
            "edge::Pair",
            "Pair",
            TypeBody::Struct(Fields::Tuple(vec![Shape::U8, Shape::String])),
        ),
        (
            "edge::Colour",
            "Colour",
            TypeBody::Enum(
                ["Red", "Green"]
                    .iter()
                    .map(|name| Variant {
                        name: name.to_string(),
                        doc: String::new(),
                        fields: Fields::Unit,
                    })
                    .collect(),
            ),
        ),
    ];
    let registry = Registry {
        types: types
            .into_iter()
            .map(|(type_id, name, body)| {
                (
                    type_id.to_string(),
                    TypeDef {
                        name: name.to_string(),
                        doc: format!("The type `{name}`.\n\n```\nlet not_a_doctest = 1;\n```"),
                        body,
                    },
                )
            })
            .collect(),
    };
    let procedure =
        |name: &str, params: &[(&str, Shape)], result: Shape, read_only: bool| ProcedureSchema {
            name: name.to_string(),
            doc: format!("The procedure `{name}`."),
            params: params
                .iter()
                .map(|(name, shape)| Param {
                    name: name.to_string(),
                    shape: shape.clone(),
                })
                .collect(),
            result,
            read_only,
            types: registry.clone(),
        };
    let thirteen: Vec<(String, Shape)> = (0..13).map(|i| (format!("p{i}"), Shape::U8)).collect();
    let thirteen: Vec<(&str, Shape)> = thirteen
        .iter()
        .map(|(name, shape)| (name.as_str(), shape.clone()))
        .collect();
    ModuleDescription {
        name: "edge-cases".into(),
        sha256: "0".repeat(64),
        procedures: vec![
            procedure(
                "type",
                &[
                    ("client", id("edge::Item")),
                    ("self", id("edge::Result")),
                    ("page", id("edge::Page<u64>")),
                ],
                id("edge::Tree"),
                false,
            ),
            procedure("nothing", &[], Shape::Unit, true),
            procedure(
                "shapes",
                &[
                    ("meters", id("edge::Meters")),
                    ("marker", id("edge::Marker")),
                    ("pair", id("edge::Pair")),
                    (
                        "array",
                        Shape::Array {
                            item: b(Shape::U8),
                            len: 4,
                        },
                    ),
                    ("tuple", Shape::Tuple(vec![Shape::U32, Shape::I128])),
                    (
                        "by_colour",
                        Shape::Map {
                            key: b(id("edge::Colour")),
                            value: b(Shape::F32),
                        },
                    ),
                    ("unit", Shape::Unit),
                ],
                Shape::Option(b(Shape::Tuple(vec![id("other::Item"), Shape::I16]))),
                true,
            ),
            procedure("thirteen", &thirteen, Shape::Unit, false),
        ],
        unchecked: vec!["raw_one".into()],
        tables: Vec::new(),
        deployed_at: None,
        wasm_bytes: 0,
    }
}

#[test]
fn rust_types_carry_the_procedures_fingerprints() {
    use ordo::generate::{Language, generate, rust_ident};

    let module = edge_case_module();
    let files = generate(Language::Rust, std::slice::from_ref(&module)).unwrap();
    assert_eq!(files[0].name, "edge_cases.rs");
    let text = &files[0].contents;
    for needle in [
        "pub r#type: ::std::string::String,",
        "#[serde(rename = \"aisleNumber\")]",
        "pub aisle_number: u32,",
        "#[serde(rename = \"bin-label\")]",
        "pub self_: bool,",
        "pub struct Item2 {",
        "pub enum Result2 {",
        "#[serde(rename = \"part-two\")]",
        "inner: ::std::boxed::Box<Result2>,",
        "pub struct PageU64 {",
        "pub parent: ::core::option::Option<::std::boxed::Box<Tree>>,",
        "pub children: ::std::vec::Vec<Tree>,",
        "pub struct Meters(pub f64);",
        "pub struct Marker;",
        "pub async fn r#type(ordo_client_: &::ordo_client::Client, client: Item, self_: Result2, page: PageU64)",
        "pub async fn nothing_stale(",
        "```text",
        "`thirteen`: 13 parameters",
        "`raw_one`: no schema",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    assert!(!text.contains("pub async fn thirteen("), "{text}");

    let dir = bindings_crate("fingerprints");
    std::fs::create_dir_all(dir.join("src/bindings")).unwrap();
    std::fs::write(dir.join("src/bindings/edge_cases.rs"), text).unwrap();
    let mut main = String::from(
        "#[path = \"bindings/edge_cases.rs\"]\nmod edge_cases;\n\nfn hex(bytes: [u8; 16]) -> String {\n    bytes.iter().map(|b| format!(\"{b:02x}\")).collect()\n}\n\nfn main() {\n",
    );
    for procedure in module.procedures.iter().filter(|p| p.name != "thirteen") {
        let alias = rust_ident(&procedure.name);
        main.push_str(&format!(
            "    println!(\"{name} {{}} {{}}\", hex(ordo_client::schema::fingerprint_of_args::<edge_cases::args::{alias}>().0), hex(ordo_client::schema::fingerprint_of_args::<(edge_cases::results::{alias},)>().0));\n",
            name = procedure.name,
        ));
    }
    main.push_str("}\n");
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    let built = cargo_build(&dir);
    assert!(
        built.status.success(),
        "the edge cases do not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let printed = stdout(&Command::new(binary("fingerprints")).output().unwrap());
    let hex = |bytes: [u8; 16]| -> String { bytes.iter().map(|b| format!("{b:02x}")).collect() };
    for procedure in module.procedures.iter().filter(|p| p.name != "thirteen") {
        let expected = format!(
            "{} {} {}",
            procedure.name,
            hex(procedure.args_fingerprint()),
            hex(args_fingerprint(
                std::slice::from_ref(&procedure.result),
                &procedure.types
            ))
        );
        assert!(
            printed.lines().any(|line| line == expected),
            "the bindings' types differ from `{}`'s: expected {expected:?} in\n{printed}",
            procedure.name
        );
    }

    // The other languages take the same contract.
    let python = generate(Language::Python, std::slice::from_ref(&module)).unwrap();
    let typescript = generate(Language::TypeScript, std::slice::from_ref(&module)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    if on_path("python3") {
        std::fs::write(scratch.path().join("edge_cases.py"), &python[0].contents).unwrap();
        let script = r#"
import edge_cases as e
item = e.Item(type="t", aisle_number=1, bin_label="x", self_=True, raw=b"\x00\xff", other=e.Item2(wide=2**100, signed=-(2**120)))
assert item.to_json() == {"type": "t", "aisleNumber": 1, "bin-label": "x", "self": True, "raw": [0, 255], "other": {"wide": 2**100, "signed": -(2**120)}}, item.to_json()
assert e.Item.from_json(item.to_json()) == item
r = e.Result.Boxed(inner=e.Result.PartTwo())
assert r.to_json() == {"Boxed": {"inner": "part-two"}}, r.to_json()
assert e.Result.from_json(r.to_json()) == r
assert e.Result.Pair(f0=-3, f1="x").to_json() == {"Pair": [-3, "x"]}
assert e.Meters(value=2.5).to_json() == 2.5 and e.Marker().to_json() is None and e.Pair(f0=1, f1="a").to_json() == [1, "a"]
calls = []
def transport(procedure, args):
    calls.append((procedure, args))
    return '[{"wide": 340282366920938463463374607431768211455, "signed": -1}, -2]'
p = e.Procedures(transport)
got = p.shapes(e.Meters(1.0), e.Marker(), e.Pair(2, "b"), [1, 2, 3, 4], (5, -6), {e.Colour.Red(): 0.5}, None)
assert got == (e.Item2(wide=2**128 - 1, signed=-1), -2), got
assert calls[0][1] == '{"meters":1.0,"marker":null,"pair":[2,"b"],"array":[1,2,3,4],"tuple":[5,-6],"by_colour":{"Red":0.5},"unit":null}', calls[0][1]
for bad in ([1, 2, 3], [1, 2, 3, 256]):
    try:
        p.shapes(e.Meters(1.0), e.Marker(), e.Pair(2, "b"), bad, (5, -6), {}, None)
        raise SystemExit("accepted " + repr(bad))
    except (TypeError, ValueError) as err:
        assert "array" in str(err), err
assert len(calls) == 1
print("edge cases ok")
"#;
        let ran = Command::new("python3")
            .args(["-c", script])
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(stdout(&ran).contains("edge cases ok"));
    } else {
        eprintln!("note: python3 is not installed; the Python edge cases were not run");
    }
    if on_path("tsc") {
        let path = scratch.path().join("edge_cases.ts");
        std::fs::write(&path, &typescript[0].contents).unwrap();
        let checked = Command::new("tsc")
            .args(["--strict", "--target", "es2020", "--noEmit"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "tsc refuses the edge cases:\n{}",
            String::from_utf8_lossy(&checked.stdout)
        );
    } else {
        eprintln!("note: tsc is not installed; the TypeScript edge cases were not type-checked");
    }
}

// ---------------------------------------------------------------------

const PYTHON_SCRIPT: &str = r#"
import sys
import inventory, bank

ordo, server = sys.argv[1], sys.argv[2]
calls = []
transport = inventory.cli_transport(server, ordo=ordo)
def counting(procedure, args):
    calls.append(procedure)
    return transport(procedure, args)

inv = inventory.Procedures(counting)
item = inventory.Item(sku="S-1", count=10, reserved=3,
                      location=inventory.Location(aisle=4, bin="A-9"),
                      kind=inventory.Kind.Part(grade=2))
assert inv.add_item(item) is None
assert inv.item("S-1") == item, inv.item("S-1")
assert inv.item("nothing") is None
assert inv.release("S-1", 2) == 1
assert inv.skus() == ["S-1"]
made = len(calls)

def refused(call, error, needles):
    try:
        call()
    except error as err:
        for needle in needles:
            assert needle in str(err), (needle, str(err))
        print(f"refused: {err}")
    else:
        raise SystemExit(f"not refused: {needles}")

refused(lambda: inv.release("S-1", "2"), TypeError, ["amount", "u32", "str"])
refused(lambda: inv.release("S-1", 2**32), ValueError, ["amount", "out of range for u32"])
refused(lambda: inv.release("S-1", -1), ValueError, ["u32"])
refused(lambda: inv.release("S-1", True), TypeError, ["u32"])
big = inventory.Item(sku="S-2", count=1, reserved=0, location=None,
                     kind=inventory.Kind.Part(grade=256))
refused(lambda: inv.add_item(big), ValueError, ["item.kind.Part.grade", "u8"])
refused(lambda: inv.add_item("S-3"), TypeError, ["item", "Item"])
assert len(calls) == made, "a refused argument was sent"

greedy = inventory.Item(sku="S-4", count=1, reserved=2, location=None, kind=inventory.Kind.Tool())
refused(lambda: inv.add_item(greedy), inventory.OrdoError, ["reserves 2 of 1"])

accounts = bank.Procedures(bank.cli_transport(server, ordo=ordo))
accounts.open(1, 100)
accounts.open(2, 0)
accounts.transfer(1, 2, 30)
assert accounts.balance(2) == 30
refused(lambda: accounts.transfer(1, 2, 2**63), ValueError, ["amount", "i64"])
print("python ok")
"#;

#[test]
fn python_bindings_call_a_server() {
    if !on_path("python3") {
        eprintln!("note: python3 is not installed; skipping the Python bindings test");
        return;
    }
    let server = Server::start(&[]);
    runtime().block_on(deploy(
        &server,
        &[
            ("inventory", ordo::modules::INVENTORY),
            ("bank", ordo::modules::BANK),
        ],
    ));
    let out = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    stdout(&ordo(&[
        "generate",
        "python",
        "--out",
        out.path().to_str().unwrap(),
        "--server",
        &addr,
    ]));
    let ran = Command::new("python3")
        .args(["-c", PYTHON_SCRIPT, ORDO, &addr])
        .current_dir(out.path())
        .output()
        .unwrap();
    let text = stdout(&ran);
    assert!(text.contains("python ok"), "{text}");
}

const TYPESCRIPT_MAIN: &str = r#"
import * as inventory from "./inventory";
import * as bank from "./bank";

declare const process: { argv: string[]; exit(code: number): never };
declare function require(name: string): any;
const { execFile } = require("child_process");
const [ordo, server] = process.argv.slice(2);
let calls = 0;
function callJson(procedure: string, args: string): Promise<string> {
  calls++;
  return new Promise((resolve, reject) => {
    execFile(ordo, ["call", "--server", server, "--", procedure, args], (error: unknown, stdout: string, stderr: string) => {
      if (error) reject(new Error(String(stderr).trim()));
      else resolve(String(stdout).trim() || "null"); // `ordo call` prints nothing for null
    });
  });
}

async function refused(call: () => Promise<unknown>, needle: string): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (!String(err).includes(needle)) throw new Error("wrong error: " + err);
    console.log("refused: " + err);
    return;
  }
  throw new Error("not refused: " + needle);
}

async function main(): Promise<void> {
  const inv = new inventory.Procedures(callJson);
  const item: inventory.Item = {
    sku: "S-1", count: 10, reserved: 3, location: { aisle: 4, bin: "A-9" }, kind: { Kit: ["S-2"] },
  };
  await inv.add_item(item);
  const read = await inv.item("S-1");
  if (JSON.stringify(read) !== JSON.stringify(item)) throw new Error("read back " + JSON.stringify(read));
  const made = calls;
  await refused(() => inv.release("S-1", 2 ** 32), "out of range for u32");
  await refused(() => inv.release("S-1", 1.5), "u32");
  if (calls !== made) throw new Error("a refused argument was sent");
  const accounts = new bank.Procedures(callJson);
  await accounts.open(BigInt("1"), BigInt("100"));
  await accounts.open(BigInt("2"), BigInt("0"));
  await accounts.transfer(BigInt("1"), BigInt("2"), BigInt("30"));
  const balance: bigint = await accounts.balance(BigInt("2"));
  if (balance !== BigInt(30)) throw new Error("balance " + balance);
  await refused(() => accounts.transfer(BigInt("1"), BigInt("2"), BigInt(2) ** BigInt(63)), "out of range for i64");
  console.log("typescript ok");
}

main().catch((err) => {
  console.log("failed: " + err);
  process.exit(1);
});
"#;

#[test]
fn typescript_bindings_type_check_and_call_a_server() {
    let files = tempfile::tempdir().unwrap();
    let inventory = wasm_file(files.path(), "inventory", ordo::modules::INVENTORY);
    let bank = wasm_file(files.path(), "bank", ordo::modules::BANK);
    let out = tempfile::tempdir().unwrap();
    for wasm in [&inventory, &bank] {
        // Two generations into one directory: the marker lists only the
        // last one's file, so write each into its own and gather them.
        let one = tempfile::tempdir().unwrap();
        stdout(&ordo(&[
            "generate",
            "typescript",
            "--out",
            one.path().to_str().unwrap(),
            "--wasm",
            wasm.to_str().unwrap(),
        ]));
        let name = format!("{}.ts", wasm.file_stem().unwrap().to_str().unwrap());
        std::fs::copy(one.path().join(&name), out.path().join(&name)).unwrap();
    }
    let text = std::fs::read_to_string(out.path().join("inventory.ts")).unwrap();
    for needle in [
        "export interface Item {",
        "  count: number;",
        "  location: Location | null;",
        "export type Kind =\n  | \"Tool\"",
        "  | { Kit: Array<string> };",
        "export class Procedures {",
        "constructor(callJson: (procedure: string, args: string) => Promise<string>)",
        "async add_item(item: Item): Promise<void> {",
        "async item(sku: string): Promise<Item | null> {",
        "async release(sku: string, amount: number): Promise<number> {",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    let bank_text = std::fs::read_to_string(out.path().join("bank.ts")).unwrap();
    assert!(
        bank_text
            .contains("async transfer(from: bigint, to: bigint, amount: bigint): Promise<void> {"),
        "{bank_text}"
    );
    assert!(
        bank_text.contains("async balance(id: bigint): Promise<bigint> {"),
        "{bank_text}"
    );
    if !(on_path("tsc") && on_path("node")) {
        eprintln!(
            "note: tsc or node is not installed; the TypeScript bindings were checked as text only"
        );
        return;
    }
    std::fs::write(out.path().join("main.ts"), TYPESCRIPT_MAIN).unwrap();
    let compiled = Command::new("tsc")
        .args([
            "--strict", "--target", "es2020", "--module", "commonjs", "--outDir",
        ])
        .arg(out.path().join("js"))
        .arg(out.path().join("main.ts"))
        .output()
        .unwrap();
    assert!(
        compiled.status.success(),
        "tsc refuses the bindings:\n{}",
        String::from_utf8_lossy(&compiled.stdout)
    );
    let server = Server::start(&[]);
    runtime().block_on(deploy(
        &server,
        &[
            ("inventory", ordo::modules::INVENTORY),
            ("bank", ordo::modules::BANK),
        ],
    ));
    let ran = Command::new("node")
        .arg(out.path().join("js/main.js"))
        .args([ORDO, &server.addr.to_string()])
        .output()
        .unwrap();
    let text = stdout(&ran);
    assert!(text.contains("typescript ok"), "{text}");
}

#[test]
fn generate_refuses_foreign_directories_and_unknown_modules() {
    let files = tempfile::tempdir().unwrap();
    let bank = wasm_file(files.path(), "bank", ordo::modules::BANK);
    let bank = bank.to_str().unwrap();

    // A directory holding someone's files is never written into.
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("bank.rs"), "// mine").unwrap();
    fails_with_all(
        &ordo(&[
            "generate",
            "rust",
            "--out",
            foreign.path().to_str().unwrap(),
            "--wasm",
            bank,
        ]),
        &["refusing to write into", "not empty", ".ordo-generated"],
    );
    assert_eq!(
        std::fs::read_to_string(foreign.path().join("bank.rs")).unwrap(),
        "// mine"
    );

    // An earlier generation is replaced, with its stale files; other files stay.
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    stdout(&ordo(&[
        "generate", "rust", "--out", out_dir, "--wasm", bank, "--module", "old",
    ]));
    std::fs::write(out.path().join("notes.txt"), "mine").unwrap();
    let written = stdout(&ordo(&[
        "generate", "rust", "--out", out_dir, "--wasm", bank,
    ]));
    assert!(written.contains("bank.rs"), "{written}");
    assert!(out.path().join("bank.rs").is_file());
    assert!(!out.path().join("old.rs").exists(), "the stale file stayed");
    assert!(out.path().join("notes.txt").is_file());

    // An unknown module, a file that is not a module, a bad language.
    let server = Server::start(&[]);
    runtime().block_on(deploy(&server, &[("bank", ordo::modules::BANK)]));
    let empty = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    fails_with_all(
        &ordo(&[
            "generate",
            "python",
            "--out",
            empty.path().to_str().unwrap(),
            "--server",
            &addr,
            "--module",
            "nope",
        ]),
        &["no module named `nope` is deployed", "`bank`"],
    );
    let not_wasm = files.path().join("junk.wasm");
    std::fs::write(&not_wasm, b"not wasm").unwrap();
    fails_with_all(
        &ordo(&[
            "generate",
            "typescript",
            "--out",
            empty.path().to_str().unwrap(),
            "--wasm",
            not_wasm.to_str().unwrap(),
        ]),
        &["is not a deployable module"],
    );
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "a failed generation wrote files"
    );
    let bad = ordo(&["generate", "cobol", "--out", out_dir, "--wasm", bank]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cobol"));
}

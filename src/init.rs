//! `ordo init`: scaffolds a procedure crate that `ordo build` builds as it
//! is, outside this repository.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The SDK of the source tree this binary was built from: the default
/// path dependency of a new crate (`ordo-sdk` is not on crates.io).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/procedures/sdk");

/// The versions the SDK's dependencies are built and tested with; a new
/// crate starts from them (cargo drops what it does not use).
const SDK_LOCK: &str = include_str!("../procedures/Cargo.lock");

/// The repository's toolchain pin, for the channel the SDK is tested with.
const TOOLCHAIN: &str = include_str!("../rust-toolchain.toml");

/// Longest crate name accepted: the module name limit (docs/ABI.md).
const NAME_BYTES_MAX: usize = 64;

/// Creates the crate `name` in `path` (default `./name`), depending on the
/// SDK at `sdk_path` (default [`BUILT_SDK`]). Returns the crate's
/// directory.
pub fn init(name: &str, path: Option<&Path>, sdk_path: Option<&Path>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = path.map_or_else(|| PathBuf::from(name), Path::to_path_buf);
    check_target(&dir)?;
    let sdk = find_sdk(sdk_path)?;

    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk, sdk_path.is_some())),
        ("Cargo.lock", SDK_LOCK.to_string()),
        ("rust-toolchain.toml", toolchain_toml()),
        (".gitignore", "/target\n".to_string()),
        ("README.md", readme(name, &sdk)),
        ("src/lib.rs", LIB_RS.replace("{name}", name)),
    ];
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.join("src").display()))?;
    for (file, contents) in files {
        let path = dir.join(file);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(dir)
}

/// A crate name that is also a valid module name (`[A-Za-z0-9_.-]`, at
/// most 64 bytes) and that cargo accepts as a package name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let module_name = !name.is_empty()
        && name.len() <= NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !module_name {
        bail!(
            "`{name}` is not a valid name: use 1 to {NAME_BYTES_MAX} characters from [a-z0-9_-], starting with a letter (it names the crate and, by default, the module you deploy)"
        );
    }
    if name.contains('.') {
        bail!(
            "`{name}` is a valid module name but not a crate name: cargo does not allow `.`; use `-` or `_`"
        );
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        bail!("`{name}` must start with a letter (cargo's rule for crate names)");
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        bail!(
            "`{name}` has upper-case letters; use lower case (cargo's convention for crate names)"
        );
    }
    let crate_name = name.replace('-', "_");
    if RESERVED.contains(&crate_name.as_str()) {
        bail!(
            "`{name}` is a Rust keyword or the name of a built-in crate, which cargo refuses as a crate name; choose another"
        );
    }
    Ok(())
}

/// Keywords (strict and reserved) and the names of the crates every
/// program sees, as cargo refuses them.
const RESERVED: &[&str] = &[
    "abstract",
    "alloc",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "core",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc_macro",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
];

/// The directory must not exist, or be empty.
fn check_target(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; choose another --path, or remove it",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => bail!(
            "{} already exists and is not a directory; choose another --path",
            dir.display()
        ),
        Err(err) => Err(err).with_context(|| format!("reading {}", dir.display())),
    }
}

/// The SDK directory, absolute, checked to hold `ordo-sdk`.
fn find_sdk(sdk_path: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (sdk, hint) = match sdk_path {
        Some(path) => (path.to_path_buf(), "check --sdk-path"),
        None => (
            PathBuf::from(BUILT_SDK),
            "this ordo was built from a source tree that is no longer there; pass --sdk-path DIR, the procedures/sdk directory of an ordo checkout",
        ),
    };
    let manifest = sdk.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("no ordo SDK at {} ({hint})", sdk.display()))?;
    if !text
        .lines()
        .any(|line| line.trim() == r#"name = "ordo-sdk""#)
    {
        bail!(
            "{} is not the ordo SDK's manifest (no `name = \"ordo-sdk\"`); {hint}",
            manifest.display()
        );
    }
    sdk.canonicalize()
        .with_context(|| format!("resolving {}", sdk.display()))
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn cargo_toml(name: &str, sdk: &Path, overridden: bool) -> String {
    let sdk_line = toml_string(&sdk.to_string_lossy());
    let origin = if overridden {
        "# The SDK given to `ordo init --sdk-path`."
    } else {
        "# The SDK of the ordo source tree the `ordo` that made this crate was\n\
         # built from (`ordo init --sdk-path DIR` picks another)."
    };
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A .wasm module for `ordo build`; `cargo test` still runs the unit tests
# on the host.
crate-type = ["cdylib"]

[dependencies]
# `ordo-sdk` is not on crates.io: it is a path dependency on a checkout of
# ordo (its procedures/sdk directory). Point `path` elsewhere to move.
{origin}
ordo-sdk = {{ path = {sdk_line} }}

# Its own workspace, so it builds wherever it is (even inside another
# workspace's directory).
[workspace]

# What procedure modules need: small, fast code under a fuel meter, and a
# panic that traps (the engine aborts the transaction) instead of
# unwinding.
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"

[profile.dev]
panic = "abort"
"#
    )
}

fn toolchain_toml() -> String {
    let channel = TOOLCHAIN
        .lines()
        .find_map(|line| line.trim().strip_prefix("channel = "))
        .unwrap_or("\"stable\"");
    format!(
        "# The toolchain the ordo SDK is built and tested with, and the wasm target\n\
         # `ordo build` needs. Any toolchain the SDK supports will do.\n\
         [toolchain]\n\
         channel = {channel}\n\
         targets = [\"wasm32-unknown-unknown\"]\n\
         profile = \"minimal\"\n"
    )
}

fn readme(name: &str, sdk: &Path) -> String {
    let module = name;
    let wasm = name.replace('-', "_");
    format!(
        r#"# {name}

ordo stored procedures, made by `ordo init`.

```sh
ordo build .                 # prints the path of the module: target/wasm32-unknown-unknown/release/{wasm}.wasm
ordo deploy --admin-token TOKEN {module} target/wasm32-unknown-unknown/release/{wasm}.wasm
ordo call counter_add '{{"key": "a", "amount": 5}}'
ordo call counter_get '{{"key": "a"}}'
cargo test                   # the unit tests, on the host
```

The procedures are in `src/lib.rs`. The SDK's documentation is the guide:
`cargo doc --open -p ordo-sdk`.

`ordo-sdk` is not published on crates.io, so `Cargo.toml` depends on it by
path: `{sdk}`, the SDK of the ordo source tree that built the `ordo` which
made this crate (or the one given to `ordo init --sdk-path`). If that
checkout moves, change the path.
"#,
        sdk = sdk.display()
    )
}

const LIB_RS: &str = r#"//! `{name}`: ordo stored procedures.
//!
//! Each `#[procedure]` becomes a procedure of the module, called by name
//! with its parameters as a JSON object (`ordo call counter_add '{"key":
//! "a", "amount": 5}'`) or postcard. Returning `Err` aborts the
//! transaction: none of its writes are kept.

use ordo_sdk::{Table, procedure};

/// Counters by name.
const COUNTERS: Table<String, i64> = Table::new("counters");

/// Adds `amount` to the counter `key` (a new counter starts at 0) and
/// returns the new value. An overflow aborts, so nothing is written.
///
/// `partitions(key)` declares the one partition it touches, so calls on
/// different keys can run in parallel.
#[procedure(partitions(key))]
fn counter_add(key: String, amount: i64) -> Result<i64, String> {
    let value = added(COUNTERS.get(&key).unwrap_or(0), amount)?;
    COUNTERS.put(&key, &value);
    Ok(value)
}

/// The counter `key` (0 if it was never added to). `read_only`: it may
/// also be read locally, without the log; a write from it would abort.
#[procedure(read_only, partitions(key))]
fn counter_get(key: String) -> i64 {
    COUNTERS.get(&key).unwrap_or(0)
}

/// The pure logic, apart from the store, so that `cargo test` can check
/// it on the host (the store exists only inside the engine).
fn added(current: i64, amount: i64) -> Result<i64, String> {
    current
        .checked_add(amount)
        .ok_or_else(|| format!("adding {amount} to {current} would overflow"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_refuses_to_overflow() {
        assert_eq!(added(40, 2), Ok(42));
        assert_eq!(added(0, -5), Ok(-5));
        assert!(added(i64::MAX, 1).is_err());
    }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_module_grammar_and_cargo() {
        for good in ["demo", "my-procs", "bank_2", "a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "has space",
            "dot.ted",
            "1st",
            "-x",
            "Upper",
            "test",
            "std",
            "fn",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }
}

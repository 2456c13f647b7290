//! Builds the example procedure modules in `procedures/` (a separate cargo
//! workspace, compiled for wasm32-unknown-unknown) so that `src/modules.rs`
//! can embed them, and tells it where they are through `ORDO_WASM_DIR`.
//!
//! The nested build always uses the procedures workspace's release profile
//! and its committed `Cargo.lock` (`--locked`), writes to
//! `target/wasm-procedures/`, and sees none of the outer build's flags.

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

const MISSING_TARGET: &str = "the Rust target wasm32-unknown-unknown is not installed; \
     ordo's procedure modules are compiled to it. Install it with:\n\n    \
     rustup target add wasm32-unknown-unknown\n";

fn main() -> ExitCode {
    let root = PathBuf::from(
        env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"),
    );
    let procedures = root.join("procedures");
    let target_dir = root.join("target").join("wasm-procedures");

    // The procedures' sources and manifests, but not procedures/target (a
    // stray local build there must not make this script rerun forever).
    // The schema crates' sources too (not schema/fuzz, which has a target
    // directory of its own): the SDK builds them into every module, and
    // `schema/src/abi.rs` holds the values host and guest agree on.
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "sdk",
        "sdk-macros",
        "schema/Cargo.toml",
        "schema/src",
        "schema-derive/Cargo.toml",
        "schema-derive/src",
        "examples",
    ] {
        println!("cargo:rerun-if-changed={}", procedures.join(path).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    if !target_installed(&rustc) {
        eprintln!("error: {MISSING_TARGET}");
        return ExitCode::FAILURE;
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--locked")
        .arg("--workspace")
        .args(["--target", WASM_TARGET])
        .arg("--manifest-path")
        .arg(procedures.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Cargo reads configuration from the working directory upwards.
        .current_dir(&procedures);
    for (key, _) in env::vars_os() {
        if leaks_into_nested_build(&key) {
            cmd.env_remove(&key);
        }
    }

    let output = match cmd.output() {
        Ok(output) => output,
        Err(e) => {
            eprintln!("error: could not run cargo to build the procedure modules: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{stderr}");
        if stderr.contains("can't find crate for `core`")
            || stderr.contains("can't find crate for `std`")
            || stderr.contains("target may not be installed")
        {
            eprintln!("error: {MISSING_TARGET}");
        }
        let mut command = cmd.get_program().to_string_lossy().into_owned();
        for arg in cmd.get_args() {
            command.push(' ');
            command.push_str(&arg.to_string_lossy());
        }
        eprintln!(
            "error: building the procedure modules failed ({}); the command was:\n    {command}",
            output.status
        );
        return ExitCode::FAILURE;
    }

    let wasm_dir = target_dir.join(WASM_TARGET).join("release");
    println!("cargo:rustc-env=ORDO_WASM_DIR={}", wasm_dir.display());
    ExitCode::SUCCESS
}

/// Whether `rustc`'s sysroot has the wasm32 standard library. If the
/// sysroot cannot be asked for, says yes and lets the build itself fail.
fn target_installed(rustc: &OsString) -> bool {
    let Ok(output) = Command::new(rustc).args(["--print", "sysroot"]).output() else {
        return true;
    };
    if !output.status.success() {
        return true;
    }
    let sysroot = String::from_utf8_lossy(&output.stdout);
    Path::new(sysroot.trim())
        .join("lib")
        .join("rustlib")
        .join(WASM_TARGET)
        .exists()
}

/// Environment variables that cargo sets for build scripts, or that
/// configure the outer build, and that would change (or break) the nested
/// build: flags, wrappers (clippy's among them), target and target-dir
/// overrides, profile settings, and the outer package's metadata. Kept:
/// `CARGO_HOME`, network/registry/terminal settings, and `CARGO_MAKEFLAGS`
/// (so the nested cargo shares the outer jobserver instead of starting as
/// many jobs again).
fn leaks_into_nested_build(key: &OsString) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    const KEEP_PREFIXES: &[&str] = &[
        "CARGO_HOME",
        "CARGO_MAKEFLAGS",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    const REMOVE: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_LINKER",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "NUM_JOBS",
    ];
    if REMOVE.contains(&key) || key.starts_with("__CARGO") {
        return true;
    }
    key.starts_with("CARGO") && !KEEP_PREFIXES.iter().any(|p| key.starts_with(p))
}

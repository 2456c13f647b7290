//! The engine's integration tests, in one binary (each binary links
//! wasmtime). Run one group with `cargo test -p ordo-engine --test engine snapshot::`.

mod common;

mod compile_limits;
mod contract;
mod panics;
mod read;
mod sandbox;
mod snapshot;

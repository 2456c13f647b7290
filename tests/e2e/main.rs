//! The end-to-end tests: real `ordo` processes on loopback, real files,
//! real sockets. One test binary rather than one per file: each binary
//! links wasmtime, and linking sixteen of them cost CI minutes.
//!
//! Run one group with `cargo test --test e2e cluster::` (or any name filter).

mod common;

mod backup;
mod bench;
mod cli;
mod cluster;
mod contract;
mod determinism;
mod examples;
mod generate;
mod hostile_clients;
mod http;
mod logs;
mod module_limits;
mod modules;
mod partitions;
mod recovery;
mod replay;
mod scan;
mod server;
mod sessions;
mod snapshots;
mod tls;

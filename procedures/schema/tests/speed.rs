//! How long the hot checks take. Run with
//! `cargo test --release -p ordo-schema --test speed -- --ignored --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use ordo_schema::{Registry, Shape, check_postcard_args};

#[test]
#[ignore = "a measurement, not a test: run it in --release"]
fn check_three_u64_arguments() {
    let registry = Registry::new();
    let params = [Shape::U64, Shape::U64, Shape::I64];
    let bytes = postcard::to_allocvec(&(1u64, 1_000_000u64, -5_000i64)).unwrap();
    let rounds = 20_000_000u32;
    for _ in 0..1_000_000 {
        check_postcard_args(black_box(&params), &registry, black_box(&bytes)).unwrap();
    }
    let start = Instant::now();
    for _ in 0..rounds {
        check_postcard_args(black_box(&params), &registry, black_box(&bytes)).unwrap();
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(rounds);
    println!(
        "check_postcard_args (u64, u64, i64), {} bytes: {ns:.1} ns/call",
        bytes.len()
    );
}

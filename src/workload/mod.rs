//! Load generation for `ordo quickstart`, `ordo bench` and the criterion
//! benches: what to deploy, how to load the data, which requests to send,
//! and how to check the data afterwards.
//!
//! Everything here is seeded and runs on the client side. Randomness here
//! only chooses which requests to send; inside a transaction, randomness
//! comes from the log.

mod keys;
mod smallbank;
mod tpcc;
mod transfer;
mod ycsb;

pub use keys::{KeyChooser, SplitMix64};
pub use smallbank::Smallbank;
pub use tpcc::Tpcc;
pub use transfer::{Transfer, TransferPicker, bank_account_key};
pub use ycsb::{Ycsb, YcsbMix};

/// One call to send: a procedure and its postcard-encoded arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub procedure: &'static str,
    pub args: Vec<u8>,
    /// The fingerprint of the argument types (a checked call, as the SDK
    /// makes them).
    pub signature: [u8; 16],
}

impl Request {
    /// A request with `args` encoded with postcard.
    pub fn new<A: serde::Serialize + ordo_client::Schema>(
        procedure: &'static str,
        args: &A,
    ) -> Request {
        Request {
            procedure,
            args: postcard::to_stdvec(args).expect("encoding into a Vec cannot fail"),
            signature: ordo_client::schema_cache::args_signature::<A>(),
        }
    }
}

/// A call made after the run to check the data, and what it must answer.
#[derive(Clone, Debug)]
pub struct Check {
    /// What the check verifies, for the report ("money is conserved").
    pub what: String,
    pub request: Request,
    /// The postcard bytes the call must return; `None`: committing is
    /// enough (the procedure aborts when the check fails).
    pub expect: Option<Vec<u8>>,
}

/// A benchmark workload. The driver deploys [`Workload::modules`], runs
/// [`Workload::load`] to completion, then sends requests from one
/// [`Workload::generator`] per worker until the run ends, and finally runs
/// [`Workload::checks`].
pub trait Workload: Send + Sync {
    /// The workload's name, as `ordo bench` takes it.
    fn name(&self) -> &'static str;
    /// Modules to deploy first, as `(module name, wasm bytes)`.
    fn modules(&self) -> Vec<(&'static str, &'static [u8])>;
    /// The calls that load the initial data. Each must commit; they may run
    /// concurrently, in any order.
    fn load(&self) -> Vec<Request>;
    /// A request stream seeded by `stream`: workers use distinct streams,
    /// so a run is reproducible for a given worker count.
    fn generator(&self, stream: u64) -> Box<dyn Generator>;
    /// Calls that check the data once the run has ended.
    fn checks(&self) -> Vec<Check>;
}

/// An endless, seeded stream of requests.
pub trait Generator: Send {
    fn next_request(&mut self) -> Request;
}

/// Splits `0..total` into consecutive `(first, count)` chunks of at most
/// `chunk` items, for load procedures that take a range (a transaction has
/// a fuel and write budget, so a big load is many transactions).
pub fn chunks(total: u64, chunk: u64) -> impl Iterator<Item = (u64, u64)> {
    assert!(chunk > 0, "chunks must hold at least one item");
    (0..total.div_ceil(chunk)).map(move |index| {
        let first = index * chunk;
        (first, chunk.min(total - first))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_range_once() {
        let got: Vec<_> = chunks(25, 10).collect();
        assert_eq!(got, vec![(0, 10), (10, 10), (20, 5)]);
        assert_eq!(chunks(0, 10).count(), 0);
        assert_eq!(chunks(10, 10).collect::<Vec<_>>(), vec![(0, 10)]);
    }
}

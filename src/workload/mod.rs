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

/// Calls made after the run to check the data, and what they must answer.
#[derive(Clone, Debug)]
pub struct Check {
    /// What the check verifies, for the report ("money is conserved").
    pub what: String,
    /// The calls, made one after another. Most checks are one call; a
    /// check over more data than one transaction's fuel covers is a call
    /// per page.
    pub requests: Vec<Request>,
    pub expect: Expect,
}

/// What the calls of a [`Check`] must answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Every call commits (the procedure aborts when the check fails).
    Commits,
    /// Every call answers a page's postcard `(i64 sum, u64 count)`; the
    /// sums add up to `sum` and the counts to `count`.
    PagedSum { sum: i64, count: u64 },
}

impl Check {
    /// A check that `request` commits.
    pub fn commits(what: String, request: Request) -> Check {
        Check {
            what,
            requests: vec![request],
            expect: Expect::Commits,
        }
    }

    /// Judges the answers (postcard results) of this check's requests, in
    /// order: `Err` says what is wrong, on one line.
    pub fn judge(&self, answers: &[Vec<u8>]) -> Result<(), String> {
        if answers.len() != self.requests.len() {
            return Err(format!(
                "{} of {} calls answered",
                answers.len(),
                self.requests.len()
            ));
        }
        match &self.expect {
            Expect::Commits => Ok(()),
            &Expect::PagedSum { sum, count } => {
                let (mut got_sum, mut got_count) = (0i128, 0u64);
                for (request, answer) in self.requests.iter().zip(answers) {
                    let (page_sum, page_count): (i64, u64) =
                        postcard::from_bytes(answer).map_err(|err| {
                            format!(
                                "{} answered {answer:?}, not a (sum, count) pair: {err}",
                                request.procedure
                            )
                        })?;
                    got_sum += i128::from(page_sum);
                    got_count += page_count;
                }
                if got_sum == i128::from(sum) && got_count == count {
                    Ok(())
                } else {
                    Err(format!(
                        "the {} pages sum to {got_sum} over {got_count} entries, expected {sum} over {count}",
                        self.requests.len()
                    ))
                }
            }
        }
    }
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
    /// Read-only calls that commit only if this workload's data is
    /// loaded (the first and the last of its records, say): what
    /// `ordo bench --reuse` checks before running on data already there.
    fn probes(&self) -> Vec<Request>;
    /// What [`Workload::load`] loads, for messages ("100000 accounts").
    fn data(&self) -> String;
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

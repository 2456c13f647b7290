//! The exactly-once table: for each client, the outcomes of its recent
//! requests, so a retried request returns its original outcome instead of
//! running again.
//!
//! The table is replicated state, rebuilt by replaying the log, so it
//! survives restarts. It is bounded two ways: a client's `acked_below`
//! watermark lets it forget answers the client has received, and hard caps
//! on results per client and on clients evict the oldest entries, chosen by
//! sequence number so every replica evicts the same ones. A retry of an
//! evicted request gets a `RequestForgotten` abort, never a second run.

use std::collections::BTreeMap;

use ordo_sequencer::entry::ClientId;

use crate::LookupMap;
use crate::outcome::Outcome;

#[derive(Clone, Debug)]
struct StoredResult {
    seq: u64,
    outcome: Outcome,
}

#[derive(Default, Clone, Debug)]
struct Session {
    results: BTreeMap<u64, StoredResult>,
    /// Request ids below this were acknowledged by the client or evicted.
    forgotten_below: u64,
    last_seq: u64,
}

/// What the table says about an incoming request.
pub(crate) enum Check {
    /// Never seen: run it.
    New,
    /// Already ran at `seq` with this outcome.
    Duplicate { seq: u64, outcome: Outcome },
    /// Its result was forgotten; it cannot be answered exactly once.
    Forgotten,
}

pub(crate) struct Sessions {
    by_client: LookupMap<ClientId, Session>,
    /// Clients by the sequence number of their latest request, for
    /// deterministic least-recently-used eviction.
    by_last_seq: BTreeMap<u64, ClientId>,
    sessions_max: usize,
    session_results_max: usize,
}

impl Sessions {
    pub fn new(sessions_max: usize, session_results_max: usize) -> Sessions {
        assert!(sessions_max > 0 && session_results_max > 0);
        Sessions {
            by_client: LookupMap::default(),
            by_last_seq: BTreeMap::new(),
            sessions_max,
            session_results_max,
        }
    }

    /// Looks a request up and applies the client's watermark.
    pub fn check(&mut self, client: ClientId, request_id: u64, acked_below: u64) -> Check {
        let Some(session) = self.by_client.get_mut(&client) else {
            return Check::New;
        };
        if acked_below > session.forgotten_below {
            session.forgotten_below = acked_below;
            while let Some(entry) = session.results.first_entry() {
                if *entry.key() >= acked_below {
                    break;
                }
                entry.remove();
            }
        }
        if let Some(stored) = session.results.get(&request_id) {
            return Check::Duplicate {
                seq: stored.seq,
                outcome: stored.outcome.clone(),
            };
        }
        if request_id < session.forgotten_below {
            return Check::Forgotten;
        }
        Check::New
    }

    /// Remembers the outcome of a request that ran at `seq`.
    pub fn record(&mut self, client: ClientId, request_id: u64, seq: u64, outcome: &Outcome) {
        let session = self.by_client.entry(client).or_default();
        if session.last_seq != 0 {
            self.by_last_seq.remove(&session.last_seq);
        }
        session.last_seq = seq;
        self.by_last_seq.insert(seq, client);
        session.results.insert(
            request_id,
            StoredResult {
                seq,
                outcome: outcome.clone(),
            },
        );
        if session.results.len() > self.session_results_max {
            let (evicted, _) = session
                .results
                .pop_first()
                .expect("over the limit, so not empty");
            session.forgotten_below = session.forgotten_below.max(evicted + 1);
        }
        if self.by_client.len() > self.sessions_max {
            let (_, oldest) = self
                .by_last_seq
                .pop_first()
                .expect("as many index entries as sessions");
            self.by_client.remove(&oldest);
        }
        debug_assert_eq!(self.by_client.len(), self.by_last_seq.len());
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(byte: u8) -> Outcome {
        Outcome::Committed { result: vec![byte] }
    }

    #[test]
    fn duplicate_returns_the_original() {
        let mut sessions = Sessions::new(10, 10);
        assert!(matches!(sessions.check(1, 5, 0), Check::New));
        sessions.record(1, 5, 42, &committed(7));
        match sessions.check(1, 5, 0) {
            Check::Duplicate { seq, outcome } => {
                assert_eq!(seq, 42);
                assert_eq!(outcome, committed(7));
            }
            _ => panic!("expected a duplicate"),
        }
        assert!(matches!(sessions.check(2, 5, 0), Check::New));
    }

    #[test]
    fn watermark_forgets_and_refuses_reruns() {
        let mut sessions = Sessions::new(10, 10);
        sessions.record(1, 1, 1, &committed(1));
        sessions.record(1, 2, 2, &committed(2));
        assert!(matches!(sessions.check(1, 3, 2), Check::New));
        assert!(matches!(sessions.check(1, 1, 2), Check::Forgotten));
        assert!(matches!(sessions.check(1, 2, 2), Check::Duplicate { .. }));
    }

    #[test]
    fn caps_evict_oldest_deterministically() {
        let mut sessions = Sessions::new(2, 2);
        sessions.record(1, 1, 1, &committed(1));
        sessions.record(1, 2, 2, &committed(2));
        sessions.record(1, 3, 3, &committed(3));
        assert!(matches!(sessions.check(1, 1, 0), Check::Forgotten));
        sessions.record(2, 1, 4, &committed(4));
        sessions.record(3, 1, 5, &committed(5));
        assert_eq!(sessions.len(), 2);
        // Client 1 was least recently used, so it went.
        assert!(matches!(sessions.check(1, 3, 0), Check::New));
        assert!(matches!(sessions.check(2, 1, 0), Check::Duplicate { .. }));
    }
}

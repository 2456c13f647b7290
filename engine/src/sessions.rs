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
//!
//! An evicted client's id goes to a graveyard (ids only, FIFO, bounded at
//! `GRAVEYARD_CLIENTS_MAX`), so its later requests are refused as expired
//! instead of being mistaken for a new client's and run again. Only a
//! client evicted and then pushed out of the graveyard too (a million
//! evictions later) could have a retry run twice; the Raft thesis (section
//! 6.3) closes that last gap by registering clients through the log.

use std::collections::VecDeque;

use ordo_sequencer::entry::ClientId;

use crate::LookupMap;
use crate::outcome::Outcome;

#[derive(Clone, Debug)]
struct StoredResult {
    seq: u64,
    /// `None` while the request's batch is still executing.
    outcome: Option<Outcome>,
}

/// One client's remembered results. Request ids are per-client counters,
/// so the results live in a window indexed by `request_id - base`: O(1)
/// lookups with no tree to walk on every request.
#[derive(Default, Clone, Debug)]
struct Session {
    /// Request ids below `base` were acknowledged by the client or evicted.
    base: u64,
    /// Slot `i` holds request `base + i`; `None` if it has not run.
    window: VecDeque<Option<StoredResult>>,
    last_seq: u64,
}

impl Session {
    /// Forgets every result below `request_id`.
    fn forget_below(&mut self, request_id: u64) {
        while self.base < request_id {
            if self.window.pop_front().is_none() {
                self.base = request_id;
                break;
            }
            self.base += 1;
        }
    }
}

/// What the table says about an incoming request.
pub(crate) enum Check {
    /// Never seen: run it.
    New,
    /// Already ran at `seq` with this outcome; `None` if that was earlier
    /// in the batch now executing and its outcome is not filled in yet.
    Duplicate { seq: u64, outcome: Option<Outcome> },
    /// Its result was forgotten; it cannot be answered exactly once.
    Forgotten,
}

/// Evicted client ids remembered, so their retries are refused rather
/// than run again.
pub const GRAVEYARD_CLIENTS_MAX: usize = 1_000_000;

pub(crate) struct Sessions {
    by_client: LookupMap<ClientId, Session>,
    /// Evicted clients, for lookups, plus their eviction order.
    graveyard: LookupMap<ClientId, ()>,
    graveyard_order: VecDeque<ClientId>,
    sessions_max: usize,
    session_results_max: usize,
}

impl Sessions {
    pub fn new(sessions_max: usize, session_results_max: usize) -> Sessions {
        assert!(sessions_max > 0 && session_results_max > 0);
        Sessions {
            by_client: LookupMap::default(),
            graveyard: LookupMap::default(),
            graveyard_order: VecDeque::new(),
            sessions_max,
            session_results_max,
        }
    }

    /// Looks a request up and applies the client's watermark.
    pub fn check(&mut self, client: ClientId, request_id: u64, acked_below: u64) -> Check {
        let Some(session) = self.by_client.get_mut(&client) else {
            if self.graveyard.contains_key(&client) {
                return Check::Forgotten;
            }
            return Check::New;
        };
        session.forget_below(acked_below);
        if request_id < session.base {
            return Check::Forgotten;
        }
        match session.window.get((request_id - session.base) as usize) {
            Some(Some(stored)) => Check::Duplicate {
                seq: stored.seq,
                outcome: stored.outcome.clone(),
            },
            _ => Check::New,
        }
    }

    /// Remembers the outcome of a request that ran at `seq`.
    #[cfg(test)]
    pub fn record(&mut self, client: ClientId, request_id: u64, seq: u64, outcome: &Outcome) {
        self.record_pending(client, request_id, seq);
        self.fill(client, request_id, seq, outcome);
    }

    /// Fills in the outcome of a request recorded as pending. Does nothing
    /// if the request was evicted since, exactly as if its outcome had
    /// been recorded and then evicted.
    pub fn fill(&mut self, client: ClientId, request_id: u64, seq: u64, outcome: &Outcome) {
        let Some(session) = self.by_client.get_mut(&client) else {
            return;
        };
        let Some(index) = request_id.checked_sub(session.base) else {
            return;
        };
        if let Some(Some(stored)) = session.window.get_mut(index as usize)
            && stored.seq == seq
        {
            stored.outcome = Some(outcome.clone());
        }
    }

    /// Remembers that a request runs at `seq`, before its outcome is
    /// known. Everything [`Sessions::check`] decides (windows, eviction)
    /// depends on ids and sequence numbers, never on outcomes, so
    /// recording in log order before executing gives the same answers as
    /// recording after each transaction: that is what lets the partitions
    /// execute a batch in parallel.
    pub fn record_pending(&mut self, client: ClientId, request_id: u64, seq: u64) {
        let session = self.by_client.entry(client).or_default();
        session.last_seq = seq;
        debug_assert!(request_id >= session.base, "check() refuses forgotten ids");
        // Keep at most `session_results_max` ids: a request far ahead of
        // the window pushes the oldest results out.
        let results_max = self.session_results_max as u64;
        if request_id >= session.base + results_max {
            session.forget_below(request_id + 1 - results_max);
        }
        let slot = (request_id - session.base) as usize;
        if session.window.len() <= slot {
            session.window.resize(slot + 1, None);
        }
        session.window[slot] = Some(StoredResult { seq, outcome: None });
        if self.by_client.len() > self.sessions_max {
            self.evict_least_recent();
        }
    }

    /// Drops the least recently active eighth of the clients, ordered by
    /// their last sequence number (then id), so every replica drops the
    /// same ones. Done in bulk so the common path keeps no LRU index.
    fn evict_least_recent(&mut self) {
        let mut by_age: Vec<(u64, ClientId)> = self
            .by_client
            .iter()
            .map(|(client, session)| (session.last_seq, *client))
            .collect();
        by_age.sort_unstable();
        let evict = (self.sessions_max / 8).max(1).min(by_age.len());
        for (_, client) in &by_age[..evict] {
            self.by_client.remove(client);
            self.graveyard.insert(*client, ());
            self.graveyard_order.push_back(*client);
        }
        while self.graveyard_order.len() > GRAVEYARD_CLIENTS_MAX {
            let oldest = self
                .graveyard_order
                .pop_front()
                .expect("longer than the limit, so not empty");
            self.graveyard.remove(&oldest);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Everything the table holds, in a deterministic order: clients by
    /// id (eviction orders them by `(last_seq, id)`, never by map order)
    /// and the graveyard in eviction order.
    pub fn snapshot(&self) -> SessionsSnapshot {
        let mut clients: Vec<ClientSnapshot> = self
            .by_client
            .iter()
            .map(|(client, session)| ClientSnapshot {
                client: *client,
                base: session.base,
                last_seq: session.last_seq,
                window: session
                    .window
                    .iter()
                    .map(|stored| {
                        stored
                            .as_ref()
                            .map(|stored| (stored.seq, stored.outcome.clone()))
                    })
                    .collect(),
            })
            .collect();
        clients.sort_unstable_by_key(|client| client.client);
        SessionsSnapshot {
            clients,
            graveyard: self.graveyard_order.iter().copied().collect(),
        }
    }

    /// The table `snapshot` describes, under these limits; an error says
    /// what is inconsistent.
    pub fn restore(
        snapshot: SessionsSnapshot,
        sessions_max: usize,
        session_results_max: usize,
    ) -> Result<Sessions, String> {
        let mut sessions = Sessions::new(sessions_max, session_results_max);
        if snapshot.clients.len() > sessions_max {
            return Err(format!(
                "{} clients, over the limit of {sessions_max}",
                snapshot.clients.len()
            ));
        }
        if snapshot.graveyard.len() > GRAVEYARD_CLIENTS_MAX {
            return Err(format!(
                "{} evicted clients, over the limit of {GRAVEYARD_CLIENTS_MAX}",
                snapshot.graveyard.len()
            ));
        }
        let mut previous = None;
        for client in snapshot.clients {
            if previous.is_some_and(|previous| previous >= client.client) {
                return Err("clients are not in ascending id order".to_string());
            }
            previous = Some(client.client);
            if client.window.len() > session_results_max {
                return Err(format!(
                    "client {:032x} has {} results, over the limit of {session_results_max}",
                    client.client,
                    client.window.len()
                ));
            }
            let window = client
                .window
                .into_iter()
                .map(|stored| stored.map(|(seq, outcome)| StoredResult { seq, outcome }))
                .collect();
            sessions.by_client.insert(
                client.client,
                Session {
                    base: client.base,
                    window,
                    last_seq: client.last_seq,
                },
            );
        }
        for client in snapshot.graveyard {
            if sessions.by_client.contains_key(&client)
                || sessions.graveyard.insert(client, ()).is_some()
            {
                return Err(format!(
                    "client {client:032x} is evicted twice, or both evicted and live"
                ));
            }
            sessions.graveyard_order.push_back(client);
        }
        Ok(sessions)
    }
}

/// The exactly-once table, as a snapshot holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionsSnapshot {
    /// In ascending id order.
    clients: Vec<ClientSnapshot>,
    /// Evicted clients, oldest eviction first.
    graveyard: Vec<ClientId>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ClientSnapshot {
    client: ClientId,
    base: u64,
    last_seq: u64,
    /// Request `base + i`'s sequence number and outcome (`None` while
    /// pending, which never outlives a batch).
    window: Vec<Option<(u64, Option<Outcome>)>>,
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
                assert_eq!(outcome, Some(committed(7)));
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
        assert!(matches!(sessions.check(1, 2, 0), Check::Duplicate { .. }));
        // An id far ahead pushes the whole window out.
        sessions.record(1, 10, 4, &committed(9));
        assert!(matches!(sessions.check(1, 3, 0), Check::Forgotten));
        assert!(matches!(sessions.check(1, 9, 0), Check::New));
        sessions.record(2, 1, 5, &committed(4));
        sessions.record(3, 1, 6, &committed(5));
        assert_eq!(sessions.len(), 2);
        // Client 1 was least recently active, so it went; its retries and
        // new requests are refused as expired, never run again.
        assert!(matches!(sessions.check(1, 3, 0), Check::Forgotten));
        assert!(matches!(sessions.check(1, 11, 0), Check::Forgotten));
        assert!(matches!(sessions.check(2, 1, 0), Check::Duplicate { .. }));
    }

    /// Two tables that answer the same way to everything.
    fn assert_same(left: &mut Sessions, right: &mut Sessions, clients: u128, ids: u64) {
        for client in 0..clients {
            for id in 0..ids {
                let answer = |check: Check| match check {
                    Check::New => (0, 0, None),
                    Check::Duplicate { seq, outcome } => (1, seq, outcome),
                    Check::Forgotten => (2, 0, None),
                };
                assert_eq!(
                    answer(left.check(client, id, 0)),
                    answer(right.check(client, id, 0)),
                    "client {client} request {id}"
                );
            }
        }
    }

    #[test]
    fn snapshots_restore_windows_graveyard_and_eviction_order() {
        let mut sessions = Sessions::new(4, 3);
        let mut seq = 0;
        for round in 0..5u64 {
            for client in [3u128, 1, 7, 2, 9, 5] {
                if round > 1 && client % 2 == 0 {
                    continue;
                }
                seq += 1;
                if let Check::New = sessions.check(client, round * 2, round) {
                    sessions.record(client, round * 2, seq, &committed(seq as u8));
                }
            }
        }
        let snapshot = sessions.snapshot();
        let bytes = postcard::to_stdvec(&snapshot).unwrap();
        let decoded: SessionsSnapshot = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(decoded, snapshot);
        let mut restored = Sessions::restore(decoded, 4, 3).unwrap();
        assert_eq!(
            postcard::to_stdvec(&restored.snapshot()).unwrap(),
            bytes,
            "same table, same bytes"
        );
        // Both evict the same clients from here on.
        for (offset, client) in [11u128, 12, 13, 1, 14].into_iter().enumerate() {
            let seq = 100 + offset as u64;
            if let Check::New = sessions.check(client, 20, 0) {
                sessions.record(client, 20, seq, &committed(1));
            }
            if let Check::New = restored.check(client, 20, 0) {
                restored.record(client, 20, seq, &committed(1));
            }
        }
        assert_same(&mut sessions, &mut restored, 16, 24);
    }

    #[test]
    fn inconsistent_snapshots_are_refused() {
        let mut sessions = Sessions::new(2, 2);
        sessions.record(1, 1, 1, &committed(1));
        sessions.record(2, 1, 2, &committed(2));
        sessions.record(3, 1, 3, &committed(3));
        let snapshot = sessions.snapshot();
        assert!(Sessions::restore(snapshot.clone(), 2, 2).is_ok());
        let mut twice = snapshot.clone();
        twice.graveyard.push(twice.graveyard[0]);
        assert!(Sessions::restore(twice, 2, 2).is_err());
        let mut unordered = snapshot.clone();
        unordered.clients.reverse();
        assert!(Sessions::restore(unordered, 2, 2).is_err());
        assert!(Sessions::restore(snapshot, 1, 2).is_err());
    }
}

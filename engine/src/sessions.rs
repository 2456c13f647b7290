//! The exactly-once table: for each client session, the outcomes of its
//! recent requests, so a retried request returns its original outcome
//! instead of running again.
//!
//! The table is replicated state, rebuilt by replaying the log, so it
//! survives restarts. Everything it decides depends only on the log: ids,
//! sequence numbers, batch boundaries and outcome sizes, never on time,
//! on thread timing or on hash-map order.
//!
//! # Sessions
//!
//! A *registered* session is opened by an `Entry::Session` `Register`
//! entry and ended by an `End` entry (Raft thesis, section 6.3). Its id
//! carries `SESSION_CLIENT_ID_TAG` in its high 64 bits, so a request under
//! a registered id that has no open session is refused as
//! `session_expired` without remembering anything about the id.
//!
//! An *unregistered* client (any other id: logs written before sessions
//! existed, raw protocol clients, the embedded `Node` API) gets an
//! implicit session at its first entry, exactly as before sessions were
//! registered, so an old log replays to the same table. Unregistered
//! sessions live in their own pool (`sessions_max`): however many of them
//! come and go, they never push out a registered session.
//!
//! # Memory
//!
//! A session stores only the results it holds, so its memory is
//! proportional to what it stores, never to the value of a request id:
//! a queue in request-id order, appended at the back, for ids that arrive
//! in order (the usual case: a hash lookup plus one comparison with the
//! newest stored id, and no allocation once the queue has grown), and an
//! ordered map for ids that arrive below the newest (a reordered pipeline,
//! resends after a leader change), so that no request ever costs a shift
//! of the queue, whatever order a hostile client picks.
//!
//! Bounds, all counted in log terms:
//! - `acked_below` in each request forgets what the client has received;
//! - at most `session_results_max` request ids of one session are kept: a
//!   request id that far past the oldest forgets the oldest;
//! - an outcome larger than `stored_result_bytes_max` is stored as a
//!   `result_not_retained` marker (a retry learns its seq, not its bytes);
//! - every stored outcome is charged its payload plus
//!   [`STORED_RESULT_OVERHEAD_BYTES`] against `stored_results_total_bytes_max`:
//!   1. within a batch, an outcome that would take the batch's running
//!      total (stored bytes at the batch's start plus every outcome filled
//!      in since, in log order) over the budget is stored as a marker;
//!   2. after a batch, if the stored bytes are over 7/8 of the budget, the
//!      least recently active sessions holding results (by the sequence
//!      number of their last entry, then id) expire until at most 3/4 is
//!      used. Expired registered sessions answer `session_expired`;
//!      expired unregistered clients go to the graveyard below.
//! - registering past `registered_sessions_max` expires the least recently
//!   active eighth of the registered sessions; an unregistered client past
//!   `sessions_max` drops the least recently active eighth of the
//!   unregistered ones. Both in bulk, so the common path keeps no LRU
//!   index.
//!
//! An evicted unregistered client's id goes to a graveyard (ids only,
//! FIFO, bounded at [`GRAVEYARD_CLIENTS_MAX`]), so its later requests are
//! refused instead of being mistaken for a new client's and run again.
//! Only such a client pushed out of the graveyard too (a million evictions
//! later) could have a retry run twice; registered sessions have no such
//! gap.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, VecDeque};

use ordo_entry::{ClientId, SessionChange, is_session_client_id};

use crate::LookupMap;
use crate::config::EngineConfig;
use crate::outcome::{AbortKind, Outcome};

/// Charged per stored outcome on top of its payload: its slot in the
/// session's queue, the payload allocation's header and a share of the
/// map. Makes a flood of empty results cost budget too.
pub const STORED_RESULT_OVERHEAD_BYTES: u64 = 128;

/// Evicted unregistered client ids remembered, so their retries are
/// refused rather than run again.
pub const GRAVEYARD_CLIENTS_MAX: usize = 1_000_000;

/// The table's limits, from the engine config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionLimits {
    pub sessions_max: usize,
    pub registered_sessions_max: usize,
    pub session_results_max: usize,
    pub stored_result_bytes_max: usize,
    pub stored_results_total_bytes_max: u64,
}

impl SessionLimits {
    pub fn of(config: &EngineConfig) -> SessionLimits {
        SessionLimits {
            sessions_max: config.sessions_max,
            registered_sessions_max: config.registered_sessions_max,
            session_results_max: config.session_results_max,
            stored_result_bytes_max: config.stored_result_bytes_max,
            stored_results_total_bytes_max: config.stored_results_total_bytes_max,
        }
    }
}

#[derive(Clone, Debug)]
struct StoredResult {
    request_id: u64,
    seq: u64,
    /// `None` while the request's batch is still executing.
    outcome: Option<Outcome>,
    /// Its charge against the budget (0 while pending).
    charged: u64,
}

/// One client's remembered results.
#[derive(Default, Clone, Debug)]
struct Session {
    /// Request ids below `base` were acknowledged by the client or pushed
    /// out; a retry of one is refused.
    base: u64,
    /// In ascending request-id order, every id at least `base`.
    results: VecDeque<StoredResult>,
    /// Results whose id came below the newest in `results`, by id; every
    /// one is below `results`' newest, and no id is in both.
    stragglers: BTreeMap<u64, StoredResult>,
    last_seq: u64,
    /// The sum of `charged` over `results` and `stragglers`.
    stored_bytes: u64,
}

impl Session {
    /// Forgets every result below `request_id`; returns the bytes freed.
    fn forget_below(&mut self, request_id: u64) -> u64 {
        if request_id <= self.base {
            return 0;
        }
        self.base = request_id;
        let mut freed = 0;
        while let Some(front) = self.results.front()
            && front.request_id < request_id
        {
            freed += front.charged;
            self.results.pop_front();
        }
        while let Some(oldest) = self.stragglers.first_entry()
            && *oldest.key() < request_id
        {
            freed += oldest.remove().charged;
        }
        self.stored_bytes -= freed;
        freed
    }

    /// Where `request_id` is in `results` (`Ok`), or `Err` if it is not
    /// there. Request ids mostly grow, and the newest is the one being
    /// filled in, so the newest is compared first.
    fn find(&self, request_id: u64) -> Result<usize, usize> {
        match self.results.back() {
            None => Err(0),
            Some(newest) if request_id > newest.request_id => Err(self.results.len()),
            Some(newest) if request_id == newest.request_id => Ok(self.results.len() - 1),
            Some(_) => self
                .results
                .binary_search_by_key(&request_id, |stored| stored.request_id),
        }
    }

    fn get(&self, request_id: u64) -> Option<&StoredResult> {
        match self.find(request_id) {
            Ok(index) => Some(&self.results[index]),
            Err(_) => self.stragglers.get(&request_id),
        }
    }

    fn get_mut(&mut self, request_id: u64) -> Option<&mut StoredResult> {
        match self.find(request_id) {
            Ok(index) => Some(&mut self.results[index]),
            Err(_) => self.stragglers.get_mut(&request_id),
        }
    }

    /// Stores `stored` (not yet charged); returns what it replaced, if
    /// anything, already uncharged from this session.
    fn insert(&mut self, stored: StoredResult) -> Option<StoredResult> {
        let replaced = match self.results.back() {
            Some(newest) if stored.request_id <= newest.request_id => {
                match self.find(stored.request_id) {
                    Ok(index) => Some(std::mem::replace(&mut self.results[index], stored)),
                    Err(_) => self.stragglers.insert(stored.request_id, stored),
                }
            }
            _ => {
                self.results.push_back(stored);
                None
            }
        };
        if let Some(replaced) = &replaced {
            self.stored_bytes -= replaced.charged;
        }
        replaced
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.results.len() + self.stragglers.len()
    }

    /// Every stored result, in ascending request-id order.
    fn sorted(&self) -> Vec<&StoredResult> {
        let mut all: Vec<&StoredResult> = self
            .results
            .iter()
            .chain(self.stragglers.values())
            .collect();
        all.sort_unstable_by_key(|stored| stored.request_id);
        all
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
    /// A registered id without an open session: refuse it.
    Expired,
}

pub(crate) struct Sessions {
    by_client: LookupMap<ClientId, Session>,
    /// How many of `by_client` are registered sessions.
    registered: usize,
    /// Evicted unregistered clients, for lookups, plus their eviction order.
    graveyard: LookupMap<ClientId, ()>,
    graveyard_order: VecDeque<ClientId>,
    limits: SessionLimits,
    /// Every stored outcome's charge.
    stored_bytes: u64,
    /// The budget as the batch being executed sees it: `stored_bytes` at
    /// its start plus every charge filled in since, in log order. Only
    /// this decides whether an outcome is kept whole, so the decision is
    /// the same whatever order the partition threads finish in.
    batch_budget_used: u64,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        assert!(
            limits.sessions_max > 0
                && limits.registered_sessions_max > 0
                && limits.session_results_max > 0
        );
        Sessions {
            by_client: LookupMap::default(),
            registered: 0,
            graveyard: LookupMap::default(),
            graveyard_order: VecDeque::new(),
            limits,
            stored_bytes: 0,
            batch_budget_used: 0,
        }
    }

    /// Looks a request up and applies the client's watermark.
    pub fn check(&mut self, client: ClientId, request_id: u64, acked_below: u64) -> Check {
        let Some(session) = self.by_client.get_mut(&client) else {
            if is_session_client_id(client) {
                return Check::Expired;
            }
            if self.graveyard.contains_key(&client) {
                return Check::Forgotten;
            }
            return Check::New;
        };
        self.stored_bytes -= session.forget_below(acked_below);
        if request_id < session.base {
            return Check::Forgotten;
        }
        match session.get(request_id) {
            Some(stored) => Check::Duplicate {
                seq: stored.seq,
                outcome: stored.outcome.clone(),
            },
            None => Check::New,
        }
    }

    /// Remembers the outcome of a request that ran at `seq`.
    #[cfg(test)]
    pub fn record(&mut self, client: ClientId, request_id: u64, seq: u64, outcome: &Outcome) {
        self.record_pending(client, request_id, seq);
        self.fill(client, request_id, seq, outcome);
    }

    /// Remembers that a request runs at `seq`, before its outcome is
    /// known. Call it only for a request [`Sessions::check`] found
    /// [`Check::New`]. Everything `check` decides (windows, eviction)
    /// depends on ids and sequence numbers, never on outcomes, so
    /// recording in log order before executing gives the same answers as
    /// recording after each transaction: that is what lets the partitions
    /// execute a batch in parallel.
    pub fn record_pending(&mut self, client: ClientId, request_id: u64, seq: u64) {
        let registered = is_session_client_id(client);
        let (session, created) = match self.by_client.entry(client) {
            MapEntry::Occupied(occupied) => (occupied.into_mut(), false),
            MapEntry::Vacant(vacant) => (vacant.insert(Session::default()), true),
        };
        session.last_seq = seq;
        debug_assert!(request_id >= session.base, "check() refuses forgotten ids");
        // Keep at most `session_results_max` ids: a request far ahead of
        // the oldest pushes the oldest results out.
        let results_max = self.limits.session_results_max as u64;
        if request_id >= session.base.saturating_add(results_max) {
            self.stored_bytes -= session.forget_below(request_id - results_max + 1);
        }
        let pending = StoredResult {
            request_id,
            seq,
            outcome: None,
            charged: 0,
        };
        // check() answers a stored id from the table, so only a caller
        // that skipped it replaces one: the newer slot wins.
        if let Some(replaced) = session.insert(pending) {
            self.stored_bytes -= replaced.charged;
        }
        if created {
            // Only check()'s caller bugs could create a registered session
            // here; count it honestly all the same.
            if registered {
                self.registered += 1;
            }
            if self.unregistered() > self.limits.sessions_max {
                self.evict_least_recent(false);
            }
        }
    }

    /// Fills in the outcome of a request recorded as pending, whole or as
    /// a marker (see the module docs). Call it for every request that ran,
    /// in log order. Does nothing to the table if the request was evicted
    /// since, exactly as if its outcome had been recorded and then evicted.
    pub fn fill(&mut self, client: ClientId, request_id: u64, seq: u64, outcome: &Outcome) {
        let charge = charge_of(outcome);
        let whole_max = STORED_RESULT_OVERHEAD_BYTES + self.limits.stored_result_bytes_max as u64;
        let over = if charge > whole_max {
            Some(Unkept::TooLarge)
        } else if self.batch_budget_used + charge > self.limits.stored_results_total_bytes_max {
            Some(Unkept::OverBudget)
        } else {
            None
        };
        let stored = match over {
            None => outcome.clone(),
            Some(why) => self.marker(request_id, seq, outcome, why),
        };
        let charge = charge_of(&stored);
        // Counted whether or not the slot is still there: whether a later
        // entry evicted it yet depends on thread timing.
        self.batch_budget_used += charge;
        let Some(session) = self.by_client.get_mut(&client) else {
            return;
        };
        if let Some(slot) = session.get_mut(request_id)
            && slot.seq == seq
        {
            debug_assert!(slot.outcome.is_none(), "filled once");
            slot.outcome = Some(stored);
            slot.charged = charge;
            session.stored_bytes += charge;
            self.stored_bytes += charge;
        }
    }

    fn marker(&self, request_id: u64, seq: u64, outcome: &Outcome, why: Unkept) -> Outcome {
        let what = match outcome {
            Outcome::Committed { .. } => "committed".to_string(),
            Outcome::Deployed(_) => "deployed".to_string(),
            Outcome::Aborted(abort) => format!("aborted, {}", abort.kind.as_str()),
        };
        let bytes = charge_of(outcome) - STORED_RESULT_OVERHEAD_BYTES;
        let why = match why {
            Unkept::TooLarge => format!(
                "is over the {}-byte limit on a stored outcome (stored_result_bytes_max)",
                self.limits.stored_result_bytes_max
            ),
            Unkept::OverBudget => format!(
                "came while the stored outcomes were at their {}-byte budget (stored_results_total_bytes_max)",
                self.limits.stored_results_total_bytes_max
            ),
        };
        Outcome::aborted(
            AbortKind::ResultNotRetained,
            format!(
                "request {request_id} ran once, at seq {seq}; its outcome ({what}, {bytes} bytes) {why}, so it was not kept for retries and nothing ran again: read the data the request changed instead"
            ),
        )
    }

    /// Starts a batch's budget decisions from what is stored now.
    pub fn begin_batch(&mut self) {
        self.batch_budget_used = self.stored_bytes;
    }

    /// Ends a batch: if the stored outcomes are over 7/8 of the budget,
    /// expires the least recently active sessions holding results until at
    /// most 3/4 is used, so the next batch has room for its own. Every
    /// outcome is filled in by now, so this sees the same table on every
    /// replica.
    pub fn end_batch(&mut self) {
        let budget = self.limits.stored_results_total_bytes_max;
        if self.stored_bytes <= budget / 8 * 7 {
            return;
        }
        let mut holding: Vec<(u64, ClientId)> = self
            .by_client
            .iter()
            .filter(|(_, session)| session.stored_bytes > 0)
            .map(|(client, session)| (session.last_seq, *client))
            .collect();
        holding.sort_unstable();
        let target = budget / 4 * 3;
        for (_, client) in holding {
            if self.stored_bytes <= target {
                break;
            }
            self.expire(client);
        }
    }

    /// Applies a session entry at `seq`; the outcome to answer it with.
    pub fn change(&mut self, client: ClientId, change: SessionChange, seq: u64) -> Outcome {
        if !is_session_client_id(client) {
            return Outcome::aborted(
                AbortKind::BadArguments,
                format!(
                    "client id {client:032x} cannot hold a registered session: session ids carry `ordosess` in their high 64 bits (SESSION_CLIENT_ID_TAG)"
                ),
            );
        }
        match change {
            SessionChange::Register => {
                match self.by_client.entry(client) {
                    MapEntry::Occupied(mut occupied) => occupied.get_mut().last_seq = seq,
                    MapEntry::Vacant(vacant) => {
                        vacant.insert(Session {
                            last_seq: seq,
                            ..Session::default()
                        });
                        self.registered += 1;
                        if self.registered > self.limits.registered_sessions_max {
                            self.evict_least_recent(true);
                        }
                    }
                }
                Outcome::Committed { result: Vec::new() }
            }
            SessionChange::End => {
                if self.by_client.contains_key(&client) {
                    self.expire(client);
                }
                Outcome::Committed { result: Vec::new() }
            }
        }
    }

    fn unregistered(&self) -> usize {
        self.by_client.len() - self.registered
    }

    /// Drops a session: a registered one is simply gone (its tagged id
    /// says the rest), an unregistered one goes to the graveyard.
    fn expire(&mut self, client: ClientId) {
        let Some(session) = self.by_client.remove(&client) else {
            return;
        };
        self.stored_bytes -= session.stored_bytes;
        if is_session_client_id(client) {
            self.registered -= 1;
            return;
        }
        self.graveyard.insert(client, ());
        self.graveyard_order.push_back(client);
        while self.graveyard_order.len() > GRAVEYARD_CLIENTS_MAX {
            let oldest = self
                .graveyard_order
                .pop_front()
                .expect("longer than the limit, so not empty");
            self.graveyard.remove(&oldest);
        }
    }

    /// Drops the least recently active eighth of one pool (registered or
    /// not), ordered by their last sequence number (then id), so every
    /// replica drops the same ones. Done in bulk so the common path keeps
    /// no LRU index.
    fn evict_least_recent(&mut self, registered: bool) {
        let mut by_age: Vec<(u64, ClientId)> = self
            .by_client
            .iter()
            .filter(|(client, _)| is_session_client_id(**client) == registered)
            .map(|(client, session)| (session.last_seq, *client))
            .collect();
        by_age.sort_unstable();
        let pool_max = if registered {
            self.limits.registered_sessions_max
        } else {
            self.limits.sessions_max
        };
        let evict = (pool_max / 8).max(1).min(by_age.len());
        for (_, client) in &by_age[..evict] {
            self.expire(*client);
        }
    }

    /// Open sessions, registered or not.
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    /// What every stored outcome is charged, together.
    pub fn stored_bytes(&self) -> u64 {
        self.stored_bytes
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
                results: session
                    .sorted()
                    .into_iter()
                    .map(|stored| (stored.request_id, stored.seq, stored.outcome.clone()))
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
    pub fn restore(snapshot: SessionsSnapshot, limits: SessionLimits) -> Result<Sessions, String> {
        let mut sessions = Sessions::new(limits);
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
            if client.results.len() > limits.session_results_max {
                return Err(format!(
                    "client {:032x} has {} results, over the limit of {}",
                    client.client,
                    client.results.len(),
                    limits.session_results_max
                ));
            }
            let mut session = Session {
                base: client.base,
                results: VecDeque::with_capacity(client.results.len()),
                stragglers: BTreeMap::new(),
                last_seq: client.last_seq,
                stored_bytes: 0,
            };
            for (request_id, seq, outcome) in client.results {
                if request_id < session.base
                    || session
                        .results
                        .back()
                        .is_some_and(|newest| newest.request_id >= request_id)
                {
                    return Err(format!(
                        "client {:032x}'s results are not in ascending request-id order at or above its watermark",
                        client.client
                    ));
                }
                let charged = outcome.as_ref().map_or(0, charge_of);
                session.stored_bytes += charged;
                session.results.push_back(StoredResult {
                    request_id,
                    seq,
                    outcome,
                    charged,
                });
            }
            sessions.stored_bytes += session.stored_bytes;
            if is_session_client_id(client.client) {
                sessions.registered += 1;
            }
            sessions.by_client.insert(client.client, session);
        }
        if sessions.registered > limits.registered_sessions_max {
            return Err(format!(
                "{} registered sessions, over the limit of {}",
                sessions.registered, limits.registered_sessions_max
            ));
        }
        if sessions.unregistered() > limits.sessions_max {
            return Err(format!(
                "{} clients, over the limit of {}",
                sessions.unregistered(),
                limits.sessions_max
            ));
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

/// Why an outcome was stored as a marker.
#[derive(Clone, Copy)]
enum Unkept {
    TooLarge,
    OverBudget,
}

/// What storing `outcome` costs against the budget.
fn charge_of(outcome: &Outcome) -> u64 {
    let payload = match outcome {
        Outcome::Committed { result } => result.len(),
        Outcome::Aborted(abort) => abort.message.len(),
        Outcome::Deployed(summary) => {
            summary.name.len()
                + summary.sha256.len()
                + summary.procedures.iter().map(String::len).sum::<usize>()
        }
    };
    STORED_RESULT_OVERHEAD_BYTES + payload as u64
}

/// The exactly-once table, as a snapshot (format version 2) holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SessionsSnapshot {
    /// In ascending id order.
    clients: Vec<ClientSnapshot>,
    /// Evicted unregistered clients, oldest eviction first.
    graveyard: Vec<ClientId>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ClientSnapshot {
    client: ClientId,
    base: u64,
    last_seq: u64,
    /// `(request id, seq, outcome)` in ascending request-id order; the
    /// outcome is `None` while pending, which never outlives a batch.
    results: Vec<(u64, u64, Option<Outcome>)>,
}

/// The table as snapshot format version 1 held it: a dense window per
/// client. Read only, to restore images taken before version 2 (tests
/// write it, to check that).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct SessionsSnapshotV1 {
    clients: Vec<ClientSnapshotV1>,
    graveyard: Vec<ClientId>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct ClientSnapshotV1 {
    client: ClientId,
    base: u64,
    last_seq: u64,
    /// Request `base + i`'s sequence number and outcome.
    window: Vec<Option<(u64, Option<Outcome>)>>,
}

impl SessionsSnapshotV1 {
    /// The same table in the sparse layout.
    pub fn upgrade(self) -> SessionsSnapshot {
        SessionsSnapshot {
            clients: self
                .clients
                .into_iter()
                .map(|client| ClientSnapshot {
                    client: client.client,
                    base: client.base,
                    last_seq: client.last_seq,
                    results: client
                        .window
                        .into_iter()
                        .enumerate()
                        .filter_map(|(offset, stored)| {
                            let (seq, outcome) = stored?;
                            Some((client.base + offset as u64, seq, outcome))
                        })
                        .collect(),
                })
                .collect(),
            graveyard: self.graveyard,
        }
    }
}

#[cfg(test)]
impl SessionsSnapshot {
    /// The same table in version 1's dense layout.
    pub fn downgrade(&self) -> SessionsSnapshotV1 {
        SessionsSnapshotV1 {
            clients: self
                .clients
                .iter()
                .map(|client| {
                    let length = client
                        .results
                        .last()
                        .map_or(0, |(request_id, _, _)| request_id - client.base + 1);
                    let mut window = vec![None; length as usize];
                    for (request_id, seq, outcome) in &client.results {
                        window[(request_id - client.base) as usize] = Some((*seq, outcome.clone()));
                    }
                    ClientSnapshotV1 {
                        client: client.client,
                        base: client.base,
                        last_seq: client.last_seq,
                        window,
                    }
                })
                .collect(),
            graveyard: self.graveyard.clone(),
        }
    }
}

#[cfg(test)]
mod tests;

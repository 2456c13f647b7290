use ordo_entry::session_client_id;
use proptest::prelude::*;

use super::*;

fn committed(byte: u8) -> Outcome {
    Outcome::Committed { result: vec![byte] }
}

fn sized(bytes: usize) -> Outcome {
    Outcome::Committed {
        result: vec![7; bytes],
    }
}

fn limits(sessions_max: usize, session_results_max: usize) -> SessionLimits {
    SessionLimits {
        sessions_max,
        registered_sessions_max: sessions_max,
        session_results_max,
        stored_result_bytes_max: 1 << 20,
        stored_results_total_bytes_max: 1 << 30,
    }
}

fn table(sessions_max: usize, session_results_max: usize) -> Sessions {
    Sessions::new(limits(sessions_max, session_results_max))
}

fn kind(check: Check) -> &'static str {
    match check {
        Check::New => "new",
        Check::Duplicate { .. } => "duplicate",
        Check::Forgotten => "forgotten",
        Check::Expired => "expired",
    }
}

fn abort_kind(check: Check) -> Option<AbortKind> {
    match check {
        Check::Duplicate {
            outcome: Some(Outcome::Aborted(abort)),
            ..
        } => Some(abort.kind),
        _ => None,
    }
}

#[test]
fn duplicate_returns_the_original() {
    let mut sessions = table(10, 10);
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
    let mut sessions = table(10, 10);
    sessions.record(1, 1, 1, &committed(1));
    sessions.record(1, 2, 2, &committed(2));
    let before = sessions.stored_bytes();
    assert!(matches!(sessions.check(1, 3, 2), Check::New));
    assert!(before > sessions.stored_bytes(), "the ack freed request 1");
    assert!(matches!(sessions.check(1, 1, 2), Check::Forgotten));
    assert!(matches!(sessions.check(1, 2, 2), Check::Duplicate { .. }));
}

#[test]
fn caps_evict_oldest_deterministically() {
    let mut sessions = table(2, 2);
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

#[test]
fn a_huge_request_id_costs_one_slot() {
    let mut sessions = table(10, 1 << 17);
    for request_id in [131_071, 1 << 40, u64::MAX - 1, u64::MAX] {
        let client = request_id as u128;
        assert!(matches!(sessions.check(client, request_id, 0), Check::New));
        sessions.record(client, request_id, 1, &committed(1));
        let session = &sessions.by_client[&client];
        assert_eq!(session.len(), 1, "request id {request_id}");
        assert!(matches!(
            sessions.check(client, request_id, 0),
            Check::Duplicate { seq: 1, .. }
        ));
    }
    assert_eq!(
        sessions.stored_bytes(),
        4 * (STORED_RESULT_OVERHEAD_BYTES + 1)
    );
    // Ids below a huge one stay answerable while within the window.
    let client = 99;
    sessions.record(client, 1_000_000, 2, &committed(2));
    sessions.record(client, 999_999, 3, &committed(3));
    assert!(matches!(
        sessions.check(client, 999_999, 0),
        Check::Duplicate { seq: 3, .. }
    ));
    assert!(matches!(
        sessions.check(client, 1_000_000, 0),
        Check::Duplicate { seq: 2, .. }
    ));
    assert!(matches!(sessions.check(client, 999_998, 0), Check::New));
}

#[test]
fn registered_sessions_open_expire_and_end_through_entries() {
    let mut sessions = table(2, 10);
    let live = session_client_id(1);
    assert_eq!(
        kind(sessions.check(live, 2, 0)),
        "expired",
        "not registered"
    );
    let outcome = sessions.change(live, SessionChange::Register, 1);
    assert!(outcome.is_committed());
    sessions.record(live, 2, 2, &committed(2));
    // Registering again (a resent registration) keeps what is stored.
    sessions.change(live, SessionChange::Register, 3);
    assert_eq!(kind(sessions.check(live, 2, 0)), "duplicate");
    // Unregistered clients come and go in their own pool.
    for client in 0..100u128 {
        sessions.record(client, 1, 10 + client as u64, &committed(1));
    }
    assert_eq!(kind(sessions.check(live, 2, 0)), "duplicate");
    assert_eq!(sessions.registered, 1);
    assert!(sessions.len() <= 3);
    sessions.change(live, SessionChange::End, 200);
    assert_eq!(kind(sessions.check(live, 2, 0)), "expired");
    assert_eq!(kind(sessions.check(live, 3, 0)), "expired");
    assert_eq!(sessions.registered, 0);
    // Only tagged ids hold registered sessions.
    let refused = sessions.change(5, SessionChange::Register, 201);
    assert_eq!(refused.abort().unwrap().kind, AbortKind::BadArguments);
}

#[test]
fn registering_past_the_limit_expires_the_least_recently_active() {
    let mut sessions = Sessions::new(SessionLimits {
        registered_sessions_max: 8,
        ..limits(8, 10)
    });
    let id = |n: u64| session_client_id(n);
    let mut seq = 0;
    for n in 0..8 {
        seq += 1;
        sessions.change(id(n), SessionChange::Register, seq);
    }
    // Session 0 stays active; 1 is now the least recently active.
    seq += 1;
    sessions.record(id(0), 2, seq, &committed(1));
    seq += 1;
    sessions.change(id(8), SessionChange::Register, seq);
    assert_eq!(sessions.registered, 8);
    assert_eq!(kind(sessions.check(id(1), 2, 0)), "expired");
    assert_eq!(kind(sessions.check(id(0), 2, 0)), "duplicate");
    assert_eq!(kind(sessions.check(id(8), 2, 0)), "new");
}

#[test]
fn an_outcome_over_the_size_limit_is_kept_as_a_marker() {
    let mut sessions = Sessions::new(SessionLimits {
        stored_result_bytes_max: 100,
        ..limits(10, 10)
    });
    sessions.record(1, 1, 5, &sized(101));
    sessions.record(1, 2, 6, &sized(100));
    match sessions.check(1, 1, 0) {
        Check::Duplicate {
            seq: 5,
            outcome: Some(Outcome::Aborted(abort)),
        } => {
            assert_eq!(abort.kind, AbortKind::ResultNotRetained);
            assert!(abort.message.contains("ran once, at seq 5"), "{abort}");
            assert!(abort.message.contains("101 bytes"), "{abort}");
            assert!(abort.message.contains("stored_result_bytes_max"), "{abort}");
        }
        _ => panic!("expected a marker"),
    }
    assert!(matches!(
        sessions.check(1, 2, 0),
        Check::Duplicate { seq: 6, outcome: Some(outcome) } if outcome == sized(100)
    ));
}

#[test]
fn the_budget_expires_the_least_recently_active_sessions_first() {
    let per_result = STORED_RESULT_OVERHEAD_BYTES + 1_000;
    let mut sessions = Sessions::new(SessionLimits {
        stored_results_total_bytes_max: 80 * per_result,
        ..limits(1_000, 10)
    });
    let live = session_client_id(7);
    sessions.change(live, SessionChange::Register, 1);
    let mut seq = 1;
    for client in 0..200u128 {
        sessions.begin_batch();
        seq += 1;
        sessions.record(client, 1, seq, &sized(1_000));
        if client % 10 == 0 {
            // The live client stays active.
            seq += 1;
            sessions.record(live, client as u64 + 2, seq, &sized(1_000));
        }
        sessions.end_batch();
        assert!(
            sessions.stored_bytes() <= 80 * per_result,
            "{}",
            sessions.stored_bytes()
        );
    }
    // The most recent clients and the live one kept their results; the
    // oldest were expired, so their retries are refused, never rerun.
    assert_eq!(kind(sessions.check(199, 1, 0)), "duplicate");
    assert_eq!(kind(sessions.check(live, 192, 0)), "duplicate");
    assert_eq!(kind(sessions.check(0, 1, 0)), "forgotten");
    // An idle registered session expires like any other.
    let idle = session_client_id(8);
    seq += 1;
    sessions.change(idle, SessionChange::Register, seq);
    seq += 1;
    sessions.record(idle, 2, seq, &sized(1_000));
    for client in 1_000..1_100u128 {
        sessions.begin_batch();
        seq += 1;
        sessions.record(client, 1, seq, &sized(1_000));
        sessions.end_batch();
    }
    assert_eq!(kind(sessions.check(idle, 2, 0)), "expired");
}

#[test]
fn within_a_batch_the_budget_keeps_markers() {
    let per_result = STORED_RESULT_OVERHEAD_BYTES + 1_000;
    let mut sessions = Sessions::new(SessionLimits {
        stored_results_total_bytes_max: 10 * per_result,
        ..limits(1_000, 10)
    });
    sessions.begin_batch();
    for client in 0..20u128 {
        sessions.record(client, 1, client as u64 + 1, &sized(1_000));
    }
    assert_eq!(abort_kind(sessions.check(9, 1, 0)), None);
    assert_eq!(
        abort_kind(sessions.check(10, 1, 0)),
        Some(AbortKind::ResultNotRetained)
    );
    sessions.end_batch();
    assert!(sessions.stored_bytes() <= 10 * per_result);
}

/// Two tables that answer the same way to everything.
fn assert_same(left: &mut Sessions, right: &mut Sessions, clients: &[u128], ids: u64) {
    for &client in clients {
        for id in 0..ids {
            let answer = |check: Check| match check {
                Check::New => (0, 0, None),
                Check::Duplicate { seq, outcome } => (1, seq, outcome),
                Check::Forgotten => (2, 0, None),
                Check::Expired => (3, 0, None),
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
fn snapshots_restore_results_graveyard_and_eviction_order() {
    let mut sessions = table(4, 3);
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
    let registered = session_client_id(3);
    sessions.change(registered, SessionChange::Register, 50);
    sessions.record(registered, 2, 51, &committed(3));
    let snapshot = sessions.snapshot();
    let bytes = postcard::to_stdvec(&snapshot).unwrap();
    let decoded: SessionsSnapshot = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, snapshot);
    let mut restored = Sessions::restore(decoded, limits(4, 3)).unwrap();
    assert_eq!(
        postcard::to_stdvec(&restored.snapshot()).unwrap(),
        bytes,
        "same table, same bytes"
    );
    assert_eq!(restored.stored_bytes(), sessions.stored_bytes());
    assert_eq!(restored.registered, 1);
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
    let clients: Vec<u128> = (0..16).chain([registered]).collect();
    assert_same(&mut sessions, &mut restored, &clients, 24);
}

#[test]
fn version_1_windows_upgrade_to_the_same_answers() {
    let v1 = SessionsSnapshotV1 {
        clients: vec![ClientSnapshotV1 {
            client: 4,
            base: 10,
            last_seq: 9,
            window: vec![
                Some((7, Some(committed(1)))),
                None,
                Some((9, Some(committed(2)))),
            ],
        }],
        graveyard: vec![2],
    };
    let mut restored = Sessions::restore(v1.upgrade(), limits(4, 3)).unwrap();
    assert_eq!(kind(restored.check(4, 9, 0)), "forgotten");
    assert!(matches!(
        restored.check(4, 10, 0),
        Check::Duplicate { seq: 7, .. }
    ));
    assert_eq!(kind(restored.check(4, 11, 0)), "new");
    assert!(matches!(
        restored.check(4, 12, 0),
        Check::Duplicate { seq: 9, .. }
    ));
    assert_eq!(kind(restored.check(2, 1, 0)), "forgotten");
    assert_eq!(
        restored.stored_bytes(),
        2 * (STORED_RESULT_OVERHEAD_BYTES + 1)
    );
}

#[test]
fn inconsistent_snapshots_are_refused() {
    let mut sessions = table(2, 2);
    sessions.record(1, 1, 1, &committed(1));
    sessions.record(2, 1, 2, &committed(2));
    sessions.record(3, 1, 3, &committed(3));
    let snapshot = sessions.snapshot();
    assert!(Sessions::restore(snapshot.clone(), limits(2, 2)).is_ok());
    let mut twice = snapshot.clone();
    twice.graveyard.push(twice.graveyard[0]);
    assert!(Sessions::restore(twice, limits(2, 2)).is_err());
    let mut unordered = snapshot.clone();
    unordered.clients.reverse();
    assert!(Sessions::restore(unordered, limits(2, 2)).is_err());
    let mut below = snapshot.clone();
    below.clients[0].results[0].0 = 0;
    below.clients[0].base = 1;
    assert!(Sessions::restore(below, limits(2, 2)).is_err());
    assert!(Sessions::restore(snapshot, limits(1, 2)).is_err());
}

/// One entry of a generated batch.
#[derive(Clone, Debug)]
enum Op {
    Call {
        client: u8,
        request_id: u64,
        acked_below: u64,
        result_bytes: usize,
    },
    Register(u8),
    End(u8),
}

fn client_id(client: u8) -> ClientId {
    if client.is_multiple_of(2) {
        session_client_id(client as u64)
    } else {
        client as u128
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..12, prop_oneof![0u64..40, Just(u64::MAX), 1u64 << 40..1u64 << 41], 0u64..20, 0usize..700)
            .prop_map(|(client, request_id, acked_below, result_bytes)| Op::Call {
                client,
                request_id,
                acked_below,
                result_bytes,
            }),
        1 => (0u8..12).prop_map(Op::Register),
        1 => (0u8..12).prop_map(Op::End),
    ]
}

/// Runs `batches` through a table the way the executor does: every
/// entry checked and recorded in log order, outcomes filled in log order,
/// but `fill_late` decides how far the fills lag behind the records (the
/// partition threads' timing). Returns every answer and the table.
fn run(batches: &[Vec<Op>], fill_late: bool, limits: SessionLimits) -> (Vec<String>, Sessions) {
    let mut sessions = Sessions::new(limits);
    let mut answers = Vec::new();
    let mut seq = 0;
    for batch in batches {
        sessions.begin_batch();
        let mut to_fill = Vec::new();
        for op in batch {
            seq += 1;
            match *op {
                Op::Call {
                    client,
                    request_id,
                    acked_below,
                    result_bytes,
                } => {
                    let client = client_id(client);
                    let check = sessions.check(client, request_id, acked_below);
                    answers.push(match &check {
                        Check::Duplicate { seq, outcome } => {
                            format!("dup {seq} {:?}", outcome.as_ref().map(charge_of))
                        }
                        other => kind_ref(other).to_string(),
                    });
                    if let Check::New = check {
                        sessions.record_pending(client, request_id, seq);
                        to_fill.push((client, request_id, seq, sized(result_bytes)));
                        if !fill_late {
                            let (client, request_id, seq, outcome) = to_fill.pop().unwrap();
                            sessions.fill(client, request_id, seq, &outcome);
                        }
                    }
                }
                Op::Register(client) => {
                    let outcome = sessions.change(client_id(client), SessionChange::Register, seq);
                    answers.push(format!("{outcome:?}"));
                }
                Op::End(client) => {
                    let outcome = sessions.change(client_id(client), SessionChange::End, seq);
                    answers.push(format!("{outcome:?}"));
                }
            }
        }
        for (client, request_id, seq, outcome) in to_fill {
            sessions.fill(client, request_id, seq, &outcome);
        }
        sessions.end_batch();
    }
    (answers, sessions)
}

fn kind_ref(check: &Check) -> &'static str {
    match check {
        Check::New => "new",
        Check::Duplicate { .. } => "duplicate",
        Check::Forgotten => "forgotten",
        Check::Expired => "expired",
    }
}

proptest! {
    /// Whatever the partition threads' timing, the table ends every batch
    /// the same, and it stays within its limits: memory follows what is
    /// stored, never request-id values.
    #[test]
    fn timing_never_changes_the_table(
        batches in prop::collection::vec(prop::collection::vec(op(), 1..12), 1..12)
    ) {
        let limits = SessionLimits {
            sessions_max: 4,
            registered_sessions_max: 3,
            session_results_max: 6,
            stored_result_bytes_max: 500,
            stored_results_total_bytes_max: 4_000,
        };
        let (early_answers, early) = run(&batches, false, limits);
        let (late_answers, late) = run(&batches, true, limits);
        prop_assert_eq!(early.snapshot(), late.snapshot());
        prop_assert_eq!(early.stored_bytes(), late.stored_bytes());
        // Within a batch, a duplicate of an unfilled original is answered
        // from the batch by the executor, so only the seqs must agree.
        let strip = |answers: Vec<String>| -> Vec<String> {
            answers.into_iter().map(|answer| answer.split(' ').take(2).collect::<Vec<_>>().join(" ")).collect()
        };
        prop_assert_eq!(strip(early_answers), strip(late_answers));
        prop_assert!(early.registered <= limits.registered_sessions_max);
        prop_assert!(early.unregistered() <= limits.sessions_max);
        prop_assert!(early.stored_bytes() <= limits.stored_results_total_bytes_max);
        let mut stored = 0;
        for session in early.by_client.values() {
            prop_assert!(session.len() <= limits.session_results_max);
            prop_assert!(session
                .stragglers
                .keys()
                .all(|id| session.results.back().is_some_and(|newest| *id < newest.request_id)));
            stored += session.stored_bytes;
        }
        prop_assert_eq!(stored, early.stored_bytes());
        let mut restored = Sessions::restore(early.snapshot(), limits).unwrap();
        prop_assert_eq!(restored.stored_bytes(), early.stored_bytes());
        let mut early = early;
        let clients: Vec<u128> = (0..12).map(client_id).collect();
        assert_same(&mut early, &mut restored, &clients, 45);
    }
}

/// Ids below the newest go to the ordered map, never into the middle of
/// the queue (which would shift it: a hostile order would cost the serial
/// executor up to a whole window's move per request), and stay answerable.
#[test]
fn ids_below_the_newest_are_kept_apart_and_answered() {
    let mut sessions = table(10, 1 << 17);
    let mut seq = 0;
    sessions.record(1, 100_000, 1, &committed(0));
    let mut state = 12_345u64;
    let mut ids = Vec::new();
    for _ in 0..1_000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let id = 1 + (state >> 33) % 99_999;
        if let Check::New = sessions.check(1, id, 0) {
            seq += 1;
            sessions.record(1, id, seq + 1, &committed(seq as u8));
            ids.push((id, seq + 1));
        }
    }
    let session = &sessions.by_client[&1];
    assert_eq!(session.results.len(), 1, "only in-order ids are queued");
    assert_eq!(session.stragglers.len(), ids.len());
    for (id, seq) in ids {
        assert!(matches!(
            sessions.check(1, id, 0),
            Check::Duplicate { seq: found, outcome: Some(_) } if found == seq
        ));
    }
    // A watermark drops stragglers and queue alike, and frees their bytes.
    assert!(matches!(sessions.check(1, 100_001, 100_001), Check::New));
    assert_eq!(sessions.by_client[&1].len(), 0);
    assert_eq!(sessions.stored_bytes(), 0);
}

//! The Raft log store through openraft's storage API: what it promises
//! survives a reopen (entries, conflict truncation, purge point, vote),
//! and a torn journal tail is cut off, not fatal.

use std::io::Write;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};
use ordo_sequencer::raft::store::LogStore;
use ordo_sequencer::raft::{Proposal, ProposalId, TypeConfig};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Proposal {
            id: ProposalId {
                node: 1,
                boot: 7,
                counter: index,
            },
            timestamp_ms: index * 10,
            entries: vec![index as u8; 3].into(),
            checkpoints: Vec::new(),
        }),
    }
}

async fn all(store: &mut LogStore) -> Vec<(u64, u64)> {
    store
        .try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| (entry.log_id.leader_id.term, entry.log_id.index))
        .collect()
}

#[test]
fn entries_truncation_purge_and_vote_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = LogStore::open(dir.path()).unwrap();
        store
            .blocking_append((1..=10).map(|index| entry(1, index)))
            .await
            .unwrap();
        // A new leader overwrites the uncommitted tail from 8 on.
        store.truncate(log_id(1, 8)).await.unwrap();
        store
            .blocking_append((8..=9).map(|index| entry(2, index)))
            .await
            .unwrap();
        store.purge(log_id(1, 5)).await.unwrap();
        store.save_vote(&Vote::new(2, 3)).await.unwrap();
        let expected: Vec<(u64, u64)> = (6..=7)
            .map(|index| (1, index))
            .chain((8..=9).map(|index| (2, index)))
            .collect();
        assert_eq!(all(&mut store).await, expected);
        drop(store);

        let mut reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut reopened).await, expected);
        let state = reopened.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(state.last_log_id, Some(log_id(2, 9)));
        assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new(2, 3)));
        // The payload is intact, not just the ids.
        let eighth = reopened.try_get_log_entries(8..9).await.unwrap();
        match &eighth[0].payload {
            EntryPayload::Normal(proposal) => {
                assert_eq!(proposal.entries, vec![8u8; 3]);
                assert_eq!(proposal.timestamp_ms, 80);
            }
            other => panic!("entry 8 is {other:?}"),
        }
    });
}

#[test]
fn a_purged_log_reports_its_purge_point_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = LogStore::open(dir.path()).unwrap();
        store
            .blocking_append((1..=4).map(|index| entry(1, index)))
            .await
            .unwrap();
        store.purge(log_id(1, 4)).await.unwrap();
        drop(store);
        let mut reopened = LogStore::open(dir.path()).unwrap();
        assert!(all(&mut reopened).await.is_empty());
        let state = reopened.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 4)));
        assert_eq!(state.last_log_id, Some(log_id(1, 4)));
    });
}

#[test]
fn a_torn_journal_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    runtime().block_on(async {
        let mut store = LogStore::open(dir.path()).unwrap();
        store
            .blocking_append((1..=3).map(|index| entry(1, index)))
            .await
            .unwrap();
        drop(store);
        // Half a record at the end, as a crash mid-write leaves it.
        let segment = std::fs::read_dir(dir.path().join("journal"))
            .unwrap()
            .map(|item| item.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .max()
            .unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(segment)
            .unwrap();
        file.write_all(b"ORDL\x01\x00half a header").unwrap();
        drop(file);

        let mut reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(all(&mut reopened).await, vec![(1, 1), (1, 2), (1, 3)]);
        reopened.blocking_append([entry(1, 4)]).await.unwrap();
        assert_eq!(all(&mut reopened).await.len(), 4);
    });
}

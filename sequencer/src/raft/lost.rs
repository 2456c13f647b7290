//! A member whose Raft journal lost entries it may have acknowledged.
//!
//! Raft's safety assumes a voter's log and vote are durable: an entry is
//! committed once a majority has written it, and a candidate that lacks
//! it cannot collect a majority of votes because some voter in every
//! majority still has it. A member that lost the newest segments of its
//! journal (accepted with `ordo repair --accept-loss`) may have counted
//! toward the majority of an entry it no longer holds; if it voted as
//! before, a candidate without that entry could win and the committed
//! entry would be gone from the cluster.
//!
//! So the repair leaves a marker, `lost-entries` in the member's Raft
//! directory, naming the term of the member's vote at the time (every
//! entry it ever acknowledged is of that term or older). While the marker
//! is there the member neither stands for election nor grants a vote
//! (`network.rs` answers every vote request with "not granted"); it still
//! takes entries from the leader, and its acknowledgements of what it
//! holds now count as usual. It has caught up once it has applied an
//! entry of a later term: that entry's leader was elected without this
//! member's vote, so (the usual Raft argument, over the other members)
//! its log holds every entry committed before, and so does this member's
//! log up to there. Then the marker is deleted and the member votes again.
//!
//! `ordo restore --member` (a member seeded from a backup, in place of
//! one whose data is gone) writes the same marker, since the member it
//! replaces may have acknowledged entries the backup does not hold. Its
//! term is the highest the other members reported when the restore asked
//! them, and `caught_up_at` the highest last log index they reported: an
//! entry committed with the lost member's acknowledgement is held by one
//! of them (every majority that included it meets the members asked), so
//! its index is at most that. Having applied up to there, the seeded
//! member holds every such entry, and votes again without waiting for a
//! later term.

use std::io;
use std::path::{Path, PathBuf};

use openraft::LogId;
use serde::{Deserialize, Serialize};

/// The marker's file name in the member's Raft directory.
pub const LOST_ENTRIES_FILE: &str = "lost-entries";

/// What the marker says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostEntries {
    /// The term of the member's vote when the loss was accepted.
    pub term: u64,
    /// The last Raft index the journal still held after the repair.
    pub kept_up_to: u64,
    /// What was lost, as the repair reported it.
    pub detail: String,
    /// Also caught up once an entry at or after this Raft index is
    /// applied (a seeded member's; `None` from a repair, and in markers
    /// written before the field existed).
    pub caught_up_at: Option<u64>,
}

/// The marker as written before `caught_up_at` existed (postcard has no
/// optional trailing fields: such a file is one byte shorter).
#[derive(Deserialize)]
struct LostEntriesV1 {
    term: u64,
    kept_up_to: u64,
    detail: String,
}

impl LostEntries {
    /// Whether a member that has applied up to `applied` holds again
    /// everything it may have acknowledged before the loss.
    pub fn caught_up(&self, applied: Option<LogId<u64>>) -> bool {
        applied.is_some_and(|applied| {
            applied.leader_id.term > self.term
                || self.caught_up_at.is_some_and(|at| applied.index >= at)
        })
    }

    fn decode(bytes: &[u8]) -> Result<LostEntries, postcard::Error> {
        match postcard::from_bytes::<LostEntries>(bytes) {
            Ok(marker) => Ok(marker),
            Err(err) => match postcard::from_bytes::<LostEntriesV1>(bytes) {
                Ok(old) => Ok(LostEntries {
                    term: old.term,
                    kept_up_to: old.kept_up_to,
                    detail: old.detail,
                    caught_up_at: None,
                }),
                Err(_) => Err(err),
            },
        }
    }
}

fn path(dir: &Path) -> PathBuf {
    dir.join(LOST_ENTRIES_FILE)
}

/// The marker in the Raft directory `dir`, if there is one.
pub fn read(dir: &Path) -> io::Result<Option<LostEntries>> {
    let path = path(dir);
    match std::fs::read(&path) {
        Ok(bytes) => LostEntries::decode(&bytes).map(Some).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is damaged ({err}); it marks a member that lost entries: restore it, or remove the member's data directory and add it back", path.display()),
            )
        }),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(io::Error::new(
            err.kind(),
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

/// Writes the marker durably (temporary file, fsync, rename, fsync the
/// directory): a crash leaves either no marker or a whole one. An older
/// marker's term is kept if it is higher: the member may have
/// acknowledged entries of any term up to the later of the two, and the
/// older marker's `caught_up_at` too unless both have one (then the
/// higher).
pub fn write(dir: &Path, marker: &LostEntries) -> io::Result<()> {
    let mut marker = marker.clone();
    if let Some(older) = read(dir)? {
        marker.term = marker.term.max(older.term);
        marker.caught_up_at = match (marker.caught_up_at, older.caught_up_at) {
            (Some(new), Some(old)) => Some(new.max(old)),
            // A repair's marker (no index) must not lose its term rule
            // to an index, nor an index rule be added to it.
            _ => None,
        };
    }
    let bytes = postcard::to_stdvec(&marker).expect("the marker serializes");
    crate::storage::replace_file(&path(dir), &bytes)
}

/// Deletes the marker durably.
pub fn clear(dir: &Path) -> io::Result<()> {
    match std::fs::remove_file(path(dir)) {
        Ok(()) => std::fs::File::open(dir)?.sync_all(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log_id(term: u64, index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    #[test]
    fn caught_up_only_past_the_term_of_the_loss() {
        let marker = LostEntries {
            term: 3,
            kept_up_to: 40,
            detail: "x".into(),
            caught_up_at: None,
        };
        assert!(!marker.caught_up(None));
        assert!(!marker.caught_up(Some(log_id(2, 100))));
        // The same term, however far: its leader may hold more.
        assert!(!marker.caught_up(Some(log_id(3, 1_000))));
        assert!(marker.caught_up(Some(log_id(4, 41))));
    }

    #[test]
    fn a_seeded_member_is_caught_up_at_its_index_or_past_its_term() {
        let marker = LostEntries {
            term: 3,
            kept_up_to: 40,
            detail: "seeded".into(),
            caught_up_at: Some(500),
        };
        assert!(!marker.caught_up(None));
        assert!(!marker.caught_up(Some(log_id(3, 499))));
        assert!(marker.caught_up(Some(log_id(3, 500))));
        assert!(marker.caught_up(Some(log_id(2, 501))));
        assert!(marker.caught_up(Some(log_id(4, 41))));
    }

    #[test]
    fn a_marker_from_before_caught_up_at_still_reads() {
        #[derive(Serialize)]
        struct Old {
            term: u64,
            kept_up_to: u64,
            detail: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let old = Old {
            term: 7,
            kept_up_to: 12,
            detail: "segment 2 missing".into(),
        };
        std::fs::write(
            dir.path().join(LOST_ENTRIES_FILE),
            postcard::to_stdvec(&old).unwrap(),
        )
        .unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            Some(LostEntries {
                term: 7,
                kept_up_to: 12,
                detail: "segment 2 missing".into(),
                caught_up_at: None,
            })
        );
        // An index never joins a repair's marker: its term rule stays.
        write(
            dir.path(),
            &LostEntries {
                term: 2,
                kept_up_to: 0,
                detail: "seeded".into(),
                caught_up_at: Some(9),
            },
        )
        .unwrap();
        let merged = read(dir.path()).unwrap().unwrap();
        assert_eq!((merged.term, merged.caught_up_at), (7, None));
    }

    #[test]
    fn the_marker_is_written_read_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let marker = LostEntries {
            term: 5,
            kept_up_to: 9,
            detail: "segment 3 missing".into(),
            caught_up_at: None,
        };
        write(dir.path(), &marker).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(marker.clone()));
        // A second loss before catching up keeps the higher term.
        write(
            dir.path(),
            &LostEntries {
                term: 2,
                ..marker.clone()
            },
        )
        .unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().term, 5);
        clear(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        clear(dir.path()).unwrap();
        std::fs::write(dir.path().join(LOST_ENTRIES_FILE), b"\x05").unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("lost-entries is damaged"), "{err}");
    }
}

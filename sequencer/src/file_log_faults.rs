//! The file log over [`SimStorage`]: failed fsyncs, torn writes at every
//! byte of the last record, crashes that lose unsynced writes, rotten
//! sectors and misdirected writes. The same cases on real files, byte
//! for byte, are in `tests/file_log.rs`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use crate::file_log::{Corruption, FileLog, FileLogConfig, HEADER_BYTES, LogError, RecordFault};
use crate::storage::sim::{SECTOR_BYTES, SimStorage};

const DIR: &str = "/data/log";

fn config(segment_bytes_max: u64) -> FileLogConfig {
    FileLogConfig {
        segment_bytes_max,
        ..FileLogConfig::new(DIR)
    }
}

fn open(disk: &SimStorage, segment_bytes_max: u64) -> Result<FileLog, LogError> {
    FileLog::open_with(config(segment_bytes_max), disk.shared())
}

fn payload(index: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|at| (index as usize * 31 + at * 7) as u8)
        .collect()
}

fn read_all(log: &FileLog) -> Vec<(u64, Vec<u8>)> {
    log.read_from(log.first_index())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn expected(lens: &[usize], last_index: u64) -> Vec<(u64, Vec<u8>)> {
    (1..=last_index)
        .map(|index| (index, payload(index, lens[index as usize - 1])))
        .collect()
}

fn first_segment() -> PathBuf {
    Path::new(DIR).join("00000000000000000001.log")
}

fn record_bytes(len: usize) -> u64 {
    (HEADER_BYTES + len) as u64
}

const BIG: u64 = 1 << 20;

/// Appends records `1..=lens.len()`, syncing after the first `synced`.
fn write(log: &mut FileLog, lens: &[usize], synced: usize) {
    for (position, &len) in lens.iter().enumerate() {
        let index = position as u64 + 1;
        assert_eq!(log.append(&payload(index, len)).unwrap(), index);
        if index as usize == synced {
            log.sync().unwrap();
        }
    }
}

#[test]
fn a_failed_fsync_is_an_error_and_the_log_stops() {
    let disk = SimStorage::new(1);
    let lens = [10, 20, 30, 40, 50];
    let mut log = open(&disk, BIG).unwrap();
    write(&mut log, &lens, 3);
    disk.fail_next_sync(None);
    let error = log.sync().unwrap_err();
    assert!(
        matches!(&error, LogError::Io { action: "fdatasync segment", path, .. } if *path == first_segment()),
        "{error}"
    );
    assert_eq!(log.synced_index(), 3, "nothing past the last good sync");
    assert!(log.is_poisoned());
    // Fail stop: a retried fsync would "succeed" (the kernel dropped the
    // pages it could not write), so nothing more is accepted.
    assert!(matches!(log.append(b"more"), Err(LogError::Poisoned)));
    assert!(matches!(log.sync(), Err(LogError::Poisoned)));
    assert!(matches!(log.begin_sync(), Err(LogError::Poisoned)));
    let writes = disk.stats().writes;
    assert!(matches!(log.append(b"more"), Err(LogError::Poisoned)));
    assert_eq!(disk.stats().writes, writes, "a poisoned log writes nothing");
    drop(log);
    disk.crash();
    let log = open(&disk, BIG).unwrap();
    assert_eq!(log.last_index(), 3);
    assert_eq!(read_all(&log), expected(&lens, 3));
}

#[test]
fn a_failed_group_commit_sync_stops_the_log_too() {
    let disk = SimStorage::new(2);
    let mut log = open(&disk, BIG).unwrap();
    log.append(b"one").unwrap();
    let pending = log.begin_sync().unwrap().expect("a record to sync");
    // Appends go on while the disk works.
    log.append(b"two").unwrap();
    disk.fail_next_sync(Some(&first_segment()));
    let ran = pending.run();
    assert!(ran.is_err());
    assert!(log.finish_sync(pending.up_to_index(), ran).is_err());
    assert_eq!(log.synced_index(), 0);
    assert!(matches!(log.begin_sync(), Err(LogError::Poisoned)));
    drop(log);
    disk.crash();
    assert_eq!(open(&disk, BIG).unwrap().last_index(), 0);
}

/// A reopen in the same OS lifetime (a supervisor restarting the
/// process, no reboot) would see the records a failed fsync dropped,
/// still in the page cache, and its own fsync would succeed; after a later
/// power loss they would leave a hole. The failed fsync is recorded
/// (`FAILED-SYNC`), so the reopen cuts them: they were never acknowledged.
/// Found by `ordo-sim --process-restart-after-failed-fsync`.
#[test]
fn a_reopen_after_a_failed_fsync_cuts_what_it_may_have_dropped() {
    let disk = SimStorage::new(3);
    let lens = [100; 5];
    let mut log = open(&disk, BIG).unwrap();
    write(&mut log, &lens, 3);
    disk.fail_next_sync(None);
    assert!(log.sync().is_err());
    drop(log);
    let marker = Path::new(DIR).join(crate::file_log::FAILED_SYNC_FILE_NAME);
    assert!(disk.contents(&marker).is_some(), "the failure is recorded");
    let mut log = open(&disk, BIG).unwrap();
    assert_eq!(log.last_index(), 3, "4 and 5 came after the failed fsync");
    let recovery = log.recovery().expect("the cut is reported").clone();
    assert_eq!(
        recovery.fault,
        RecordFault::AfterFailedSync { durable_index: 3 }
    );
    assert_eq!(recovery.offset, 3 * record_bytes(100));
    assert_eq!(recovery.truncated_bytes, 2 * record_bytes(100));
    assert!(
        recovery
            .to_string()
            .contains("None of them was acknowledged")
    );
    assert!(disk.contents(&marker).is_none(), "the marker is removed");
    log.append(&payload(4, 100)).unwrap();
    log.sync().unwrap();
    drop(log);
    disk.crash();
    let log = open(&disk, BIG).unwrap();
    assert_eq!(read_all(&log), expected(&lens, 4));
    assert!(log.recovery().is_none());
}

/// Records after the failed fsync in later segments go with the segments.
#[test]
fn a_reopen_after_a_failed_fsync_removes_later_segments_too() {
    let disk = SimStorage::new(4);
    // Two records per segment.
    let lens = [100; 6];
    let segment_bytes = 2 * record_bytes(100) + 8;
    let mut log = open(&disk, segment_bytes).unwrap();
    write(&mut log, &lens[..3], 3);
    // Roll-over syncs: make the failure hit the sealing of segment 3's
    // predecessor by failing the next sync, after record 4 is appended.
    log.append(&payload(4, 100)).unwrap();
    disk.fail_next_sync(None);
    assert!(log.sync().is_err());
    drop(log);
    let log = open(&disk, segment_bytes).unwrap();
    assert_eq!(log.last_index(), 3);
    assert_eq!(read_all(&log), expected(&lens, 3));
    drop(log);
    disk.crash();
    assert_eq!(open(&disk, segment_bytes).unwrap().last_index(), 3);
}

#[test]
fn a_damaged_failed_fsync_record_is_refused() {
    let disk = SimStorage::new(5);
    let mut log = open(&disk, BIG).unwrap();
    write(&mut log, &[10, 10], 2);
    drop(log);
    let marker = Path::new(DIR).join(crate::file_log::FAILED_SYNC_FILE_NAME);
    disk.put_durable(&marker, b"ordofsf1 not a record").unwrap();
    match open(&disk, BIG) {
        Err(LogError::Corrupt {
            path,
            corruption: Corruption::BadFailedSyncRecord,
            ..
        }) => assert_eq!(path, marker),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_directory_sync_at_roll_over_stops_the_log() {
    let disk = SimStorage::new(4);
    let mut log = open(&disk, 256).unwrap();
    log.append(&[1; 150]).unwrap();
    disk.fail_next_dir_sync(Some(Path::new(DIR)));
    let error = log.append(&[2; 150]).unwrap_err();
    assert!(error.to_string().contains("fsync directory"), "{error}");
    assert!(matches!(log.append(b"x"), Err(LogError::Poisoned)));
    drop(log);
    disk.crash();
    let log = open(&disk, 256).unwrap();
    assert_eq!(log.last_index(), 1, "roll-over synced record 1 first");
}

/// Record 4 torn at every byte, by a crash that keeps part of its write
/// and by a write that fails part way: a reopen keeps 1 to 3 and names
/// the cut, or keeps all 4 when the whole record made it.
#[test]
fn a_tear_at_every_byte_of_the_last_record_is_cut_and_named() {
    let lens = [7, 300, 64, 100];
    let last_offset: u64 = lens[..3].iter().map(|len| record_bytes(*len)).sum();
    let last_bytes = record_bytes(lens[3]);
    for keep in 0..=last_bytes {
        for crash in [true, false] {
            let disk = SimStorage::new(keep);
            let mut log = open(&disk, BIG).unwrap();
            write(&mut log, &lens[..3], 3);
            if crash {
                log.append(&payload(4, lens[3])).unwrap();
                drop(log);
                disk.crash_keeping_unsynced(&first_segment(), keep);
            } else {
                if keep == last_bytes {
                    continue;
                }
                disk.tear_next_write(Some(&first_segment()), keep as usize);
                let error = log.append(&payload(4, lens[3])).unwrap_err();
                assert!(matches!(
                    error,
                    LogError::Io {
                        action: "write segment",
                        ..
                    }
                ));
                assert!(log.is_poisoned());
                drop(log);
            }
            let case = format!("keep {keep} bytes, crash {crash}");
            let mut log = open(&disk, BIG).unwrap();
            let whole = keep == last_bytes;
            assert_eq!(log.last_index(), if whole { 4 } else { 3 }, "{case}");
            match log.recovery() {
                None => assert!(keep == 0 || whole, "{case}"),
                Some(recovery) => {
                    assert!(keep > 0 && !whole, "{case}");
                    assert_eq!(recovery.path, first_segment(), "{case}");
                    assert_eq!(recovery.offset, last_offset, "{case}");
                    assert_eq!(recovery.truncated_bytes, keep, "{case}");
                    assert_eq!(recovery.last_index, 3, "{case}");
                    let message = recovery.to_string();
                    assert!(
                        message.contains(&format!(
                            "{} at byte offset {last_offset}",
                            first_segment().display()
                        )),
                        "{message}"
                    );
                }
            }
            assert_eq!(read_all(&log), expected(&lens, log.last_index()), "{case}");
            // The log goes on from the cut.
            let next = log.last_index() + 1;
            log.append(&payload(next, 5)).unwrap();
            log.sync().unwrap();
            drop(log);
            disk.crash();
            let log = open(&disk, BIG).unwrap();
            assert!(log.recovery().is_none(), "{case}");
            assert_eq!(log.last_index(), next, "{case}");
        }
    }
}

#[test]
fn a_crash_keeps_exactly_the_synced_prefix() {
    for seed in 0..40 {
        let disk = SimStorage::new(seed);
        let lens: Vec<usize> = (0..30)
            .map(|at| (at * 37 + seed as usize * 11) % 300)
            .collect();
        let mut log = open(&disk, 1024).unwrap();
        write(&mut log, &lens, 10 + seed as usize % 15);
        let synced = log.synced_index();
        assert!(synced >= 10);
        drop(log);
        if seed % 2 == 0 {
            disk.crash();
            let log = open(&disk, 1024).unwrap();
            assert_eq!(
                log.last_index(),
                synced,
                "seed {seed}: exactly what was synced"
            );
            assert!(log.recovery().is_none(), "seed {seed}");
            assert_eq!(read_all(&log), expected(&lens, synced));
        } else {
            // Some unsynced writes may make it too, and the last of them
            // torn: at least the synced prefix, and only whole records.
            disk.crash_randomly();
            let log = open(&disk, 1024).unwrap();
            assert!(log.last_index() >= synced, "seed {seed}");
            assert_eq!(read_all(&log), expected(&lens, log.last_index()));
        }
    }
}

#[test]
fn a_rotten_sector_is_refused_naming_the_file_and_offset() {
    let lens = [100; 40];
    let disk = SimStorage::new(5);
    let mut log = open(&disk, BIG).unwrap();
    write(&mut log, &lens, 40);
    let rotten_at = 3 * SECTOR_BYTES;
    // The record the sector starts in.
    let record_offset = rotten_at / record_bytes(100) * record_bytes(100);
    disk.corrupt_sector(&first_segment(), 3).unwrap();
    // A reader of the open log finds it too.
    let error = log
        .read_from(1)
        .unwrap()
        .find_map(Result::err)
        .expect("a verified read fails");
    assert!(
        matches!(&error, LogError::Corrupt { path, offset, .. } if *path == first_segment() && *offset == record_offset),
        "{error}"
    );
    drop(log);
    let error = open(&disk, BIG).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "{} at byte offset {record_offset}",
            first_segment().display()
        )),
        "{message}"
    );
    assert!(
        matches!(
            error,
            LogError::Corrupt {
                corruption: Corruption::BadRecordBeforeValid { .. },
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_rotten_sector_in_a_sealed_segment_is_refused() {
    let disk = SimStorage::new(6);
    let mut log = open(&disk, 2048).unwrap();
    write(&mut log, &[400; 12], 12);
    assert!(log.segment_paths().count() > 2);
    drop(log);
    // The last sector of the first segment: its last record, which no
    // valid record follows in that file.
    let first_bytes = disk.contents(&first_segment()).unwrap().len() as u64;
    disk.corrupt(&first_segment(), first_bytes - SECTOR_BYTES, SECTOR_BYTES)
        .unwrap();
    match open(&disk, 2048) {
        Err(LogError::Corrupt {
            path,
            corruption: Corruption::BadRecordInSealedSegment { .. },
            ..
        }) => assert_eq!(path, first_segment()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_misdirected_write_is_found_by_readers_and_at_open() {
    let lens = [50; 5];
    let record = record_bytes(50);
    // Onto record 2 (a valid record in the wrong place), into the middle
    // of record 3, and past the end (leaving a hole).
    for (landing, expected_offset) in [
        (record, record),
        (2 * record + 9, 2 * record),
        (5 * record + 4096, 5 * record),
    ] {
        let disk = SimStorage::new(landing);
        let mut log = open(&disk, BIG).unwrap();
        write(&mut log, &lens, 5);
        disk.misdirect_next_write(Some(&first_segment()), landing);
        log.append(&payload(6, 50)).unwrap();
        // The disk says yes; only the checks can tell.
        log.sync().unwrap();
        let read = log.read_from(1).unwrap().find_map(Result::err);
        assert!(
            matches!(&read, Some(LogError::Corrupt { offset, .. }) if *offset == expected_offset),
            "landing {landing}: {read:?}"
        );
        drop(log);
        match open(&disk, BIG) {
            Err(LogError::Corrupt { path, offset, .. }) => {
                assert_eq!(path, first_segment(), "landing {landing}");
                assert_eq!(offset, expected_offset, "landing {landing}");
            }
            other => panic!("landing {landing}: {other:?}"),
        }
    }
}

#[test]
fn truncate_prefix_and_the_manifest_survive_crashes() {
    let disk = SimStorage::new(7);
    let lens = [200; 20];
    let mut log = open(&disk, 1024).unwrap();
    write(&mut log, &lens, 20);
    let removed = log.truncate_prefix(10).unwrap();
    assert!(removed > 0);
    let first = log.first_index();
    drop(log);
    disk.crash();
    let log = open(&disk, 1024).unwrap();
    assert_eq!(log.first_index(), first);
    assert_eq!(log.last_index(), 20);
    // A lost newest segment is still refused: the manifest, written
    // through `Storage::replace`, survived the crash.
    let newest = log.segment_paths().last().unwrap().to_path_buf();
    drop(log);
    crate::storage::Storage::remove_file(&disk, &newest).unwrap();
    assert!(matches!(
        open(&disk, 1024),
        Err(LogError::MissingSegments { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random records, a random synced prefix, then a crash that keeps a
    /// random number of the unsynced bytes: the reopened log holds the
    /// synced records and every whole record after them that made it, and
    /// names the cut when one was cut.
    #[test]
    fn torn_tails_at_random_offsets_keep_every_whole_record(
        lens in prop::collection::vec(0usize..700, 1..30),
        synced_fraction in 0.0f64..=1.0,
        keep_fraction in 0.0f64..=1.0,
        segment_bytes_max in prop::sample::select(vec![512u64, 4096, BIG]),
        seed in any::<u64>(),
    ) {
        let disk = SimStorage::new(seed);
        let mut log = open(&disk, segment_bytes_max).unwrap();
        let synced = (lens.len() as f64 * synced_fraction) as usize;
        write(&mut log, &lens, synced);
        let synced_index = log.synced_index();
        let last_segment = log.segment_paths().last().unwrap().to_path_buf();
        drop(log);
        let unsynced = disk.unsynced_bytes(&last_segment);
        let keep = (unsynced as f64 * keep_fraction) as u64;
        disk.crash_keeping_unsynced(&last_segment, keep);

        // Only the last segment holds unsynced records (roll-over syncs).
        let mut whole = synced_index;
        let mut left = keep;
        while (whole as usize) < lens.len() && left >= record_bytes(lens[whole as usize]) {
            left -= record_bytes(lens[whole as usize]);
            whole += 1;
        }
        let log = open(&disk, segment_bytes_max).unwrap();
        prop_assert_eq!(log.last_index(), whole);
        prop_assert_eq!(log.recovery().is_some(), left > 0);
        if let Some(recovery) = log.recovery() {
            prop_assert_eq!(&recovery.path, &last_segment);
            prop_assert_eq!(recovery.truncated_bytes, left);
            prop_assert_eq!(recovery.last_index, whole);
        }
        prop_assert_eq!(read_all(&log), expected(&lens, whole));
    }
}

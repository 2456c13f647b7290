//! The file log through its public API: round trips, torn tails, corruption,
//! prefix truncation, and a property test over sizes, syncs and reopens.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ordo_sequencer::file_log::{
    CHAIN_GENESIS, Corruption, FileLog, FileLogConfig, HEADER_BYTES, LogError, RecordFault,
};
use proptest::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

const PAYLOAD_BYTES: usize = 100;
const RECORD_BYTES: u64 = HEADER_BYTES as u64 + PAYLOAD_BYTES as u64;
/// Six 164-byte records fit in a segment; the seventh starts a new one.
const SEGMENT_BYTES_MAX_SMALL: u64 = 1024;
const RECORDS_PER_SEGMENT: u64 = 6;

fn config(dir: &Path, segment_bytes_max: u64) -> FileLogConfig {
    FileLogConfig {
        segment_bytes_max,
        ..FileLogConfig::new(dir)
    }
}

fn open(dir: &Path) -> Result<FileLog, LogError> {
    FileLog::open(config(dir, SEGMENT_BYTES_MAX_SMALL))
}

/// Distinct, deterministic payload bytes for record `index`.
fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn read_all(log: &FileLog) -> Vec<(u64, Vec<u8>)> {
    log.read_from(log.first_index())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A log of `records` records of `PAYLOAD_BYTES`, synced, closed.
fn write_log(dir: &Path, records: u64) -> Vec<(u64, Vec<u8>)> {
    let mut log = open(dir).unwrap();
    let mut expected = Vec::new();
    for index in 1..=records {
        let bytes = payload(index, PAYLOAD_BYTES);
        assert_eq!(log.append(&bytes).unwrap(), index);
        expected.push((index, bytes));
    }
    log.sync().unwrap();
    expected
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// The byte offsets of the records in a segment file, parsed by the
/// documented format: the payload length is the u32 at header byte 8.
fn record_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut offsets = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        offsets.push(offset as u64);
        let len = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap());
        offset += HEADER_BYTES + len as usize;
    }
    assert_eq!(offset, bytes.len());
    offsets
}

/// A record encoded by hand from the format in the module docs.
fn encode_record(index: u64, chain_prev: u128, chain: u128, payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(b"ORDL");
    record.extend_from_slice(&1u16.to_le_bytes());
    record.extend_from_slice(&[0; 2]);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    record.extend_from_slice(&index.to_le_bytes());
    record.extend_from_slice(&chain_prev.to_le_bytes());
    record.extend_from_slice(&chain.to_le_bytes());
    assert_eq!(record.len(), 56);
    let mut checked = record.clone();
    checked.extend_from_slice(payload);
    record.extend_from_slice(&xxh3_64(&checked).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn chain_of(chain_prev: u128, index: u64, payload: &[u8]) -> u128 {
    let mut input = Vec::new();
    input.extend_from_slice(&chain_prev.to_le_bytes());
    input.extend_from_slice(&index.to_le_bytes());
    input.extend_from_slice(payload);
    xxh3_128(&input)
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn cut_bytes(path: &Path, cut: u64) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - cut).unwrap();
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    fs::write(path, bytes).unwrap();
}

/// Asserts that opening fails with corruption at `path` and `offset`, with
/// both in the message, and returns what was found.
fn expect_corrupt(dir: &Path, path: &Path, offset: u64) -> Corruption {
    let error = open(dir).expect_err("a corrupt log must not open");
    let message = error.to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(message.contains(name), "{message}");
    assert!(
        message.contains(&format!("byte offset {offset}")),
        "{message}"
    );
    assert!(message.contains("restore"), "{message}");
    match error {
        LogError::Corrupt {
            path: error_path,
            offset: error_offset,
            corruption,
        } => {
            assert_eq!(error_path, path);
            assert_eq!(error_offset, offset);
            corruption
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Appends one more record after recovery, reopens, and checks the lot.
fn check_keeps_working(dir: &Path, mut expected: Vec<(u64, Vec<u8>)>) {
    let mut log = open(dir).unwrap();
    assert!(
        log.recovery().is_none(),
        "recovery must be needed once only"
    );
    assert_eq!(read_all(&log), expected);
    let index = expected.len() as u64 + 1;
    let bytes = payload(index + 1000, PAYLOAD_BYTES);
    assert_eq!(log.append(&bytes).unwrap(), index);
    log.sync().unwrap();
    let chain = log.last_chain();
    drop(log);
    expected.push((index, bytes));
    let log = open(dir).unwrap();
    assert!(log.recovery().is_none());
    assert_eq!(log.last_chain(), chain);
    assert_eq!(read_all(&log), expected);
}

#[test]
fn round_trip_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path()).unwrap();
    assert_eq!(log.last_index(), 0);
    assert_eq!(log.last_chain(), CHAIN_GENESIS);
    let mut expected = Vec::new();
    for index in 1..=50u64 {
        let bytes = payload(index, (index as usize * 37) % 700);
        assert_eq!(log.append(&bytes).unwrap(), index);
        expected.push((index, bytes));
        if index % 7 == 0 {
            log.sync().unwrap();
            assert_eq!(log.synced_index(), index);
        }
    }
    // A batch that spans several segments, and a record larger than a segment.
    let batch: Vec<Vec<u8>> = (51..=70u64).map(|index| payload(index, 300)).collect();
    let batch_refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    assert_eq!(log.append_batch(&batch_refs).unwrap(), 51..71);
    expected.extend((51..=70u64).zip(batch));
    let big = payload(71, 5000);
    assert_eq!(log.append(&big).unwrap(), 71);
    expected.push((71, big));
    assert_eq!(log.append_batch(&[]).unwrap(), 72..72);
    assert_eq!(read_all(&log), expected, "unsynced records read back too");
    log.sync().unwrap();
    let chain = log.last_chain();
    drop(log);

    let files = segment_files(dir.path());
    assert!(files.len() > 10, "{files:?}");
    assert!(files[0].ends_with("00000000000000000001.log"));
    let log = open(dir.path()).unwrap();
    assert!(log.recovery().is_none());
    assert_eq!(log.last_index(), 71);
    assert_eq!(log.last_chain(), chain);
    assert_eq!(log.segment_paths().collect::<Vec<_>>(), files);
    assert_eq!(read_all(&log), expected);
    for start in [1, 2, 13, 50, 51, 70, 71, 72] {
        let records: Vec<_> = log
            .read_from(start)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records, expected[start as usize - 1..], "from {start}");
    }
}

#[test]
fn empty_log_opens_and_reads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("log");
    let log = FileLog::open(FileLogConfig::new(&path)).unwrap();
    assert_eq!(log.dir(), path);
    assert_eq!(log.read_from(1).unwrap().count(), 0);
    drop(log);
    let mut log = FileLog::open(FileLogConfig::new(&path)).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1, 0));
    assert_eq!(log.last_chain(), CHAIN_GENESIS);
    log.sync().unwrap();
}

#[test]
fn read_from_outside_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3);
    let log = open(dir.path()).unwrap();
    assert!(matches!(
        log.read_from(0),
        Err(LogError::OutOfRange { index: 0, .. })
    ));
    assert!(matches!(
        log.read_from(5),
        Err(LogError::OutOfRange { index: 5, .. })
    ));
    assert_eq!(log.read_from(4).unwrap().count(), 0);
}

#[test]
fn torn_tail_cut_inside_the_last_record_is_truncated() {
    // 13 records leave the last one alone in its segment, so cutting it
    // empties the segment; 12 leave it behind others.
    for records in [12, 13] {
        for cut in [1, 2, 50, 99, 100, 101, 130, RECORD_BYTES - 1] {
            let dir = tempfile::tempdir().unwrap();
            let mut expected = write_log(dir.path(), records);
            expected.pop();
            let last = segment_files(dir.path()).pop().unwrap();
            let last_offset = *record_offsets(&last).last().unwrap();
            cut_bytes(&last, cut);

            let log = open(dir.path()).unwrap();
            let recovery = log.recovery().expect("a torn tail").clone();
            assert_eq!(recovery.path, last);
            assert_eq!(recovery.offset, last_offset, "records {records} cut {cut}");
            assert_eq!(recovery.truncated_bytes, RECORD_BYTES - cut);
            assert_eq!(recovery.last_index, records - 1);
            if cut > PAYLOAD_BYTES as u64 {
                assert!(matches!(
                    recovery.fault,
                    RecordFault::HeaderIncomplete { .. }
                ));
            } else {
                assert!(matches!(
                    recovery.fault,
                    RecordFault::PayloadIncomplete { .. }
                ));
            }
            assert!(recovery.to_string().contains("torn tail"));
            assert_eq!(log.last_index(), records - 1);
            assert_eq!(fs::metadata(&last).unwrap().len(), last_offset);
            drop(log);
            check_keeps_working(dir.path(), expected);
        }
    }
}

#[test]
fn cutting_exactly_one_record_needs_no_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = write_log(dir.path(), 10);
    expected.pop();
    cut_bytes(&segment_files(dir.path()).pop().unwrap(), RECORD_BYTES);
    let log = open(dir.path()).unwrap();
    assert!(log.recovery().is_none());
    drop(log);
    check_keeps_working(dir.path(), expected);
}

#[test]
fn torn_tail_of_zeros_is_truncated() {
    for zeros in [1usize, 63, 64, 65, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let expected = write_log(dir.path(), 10);
        let last = segment_files(dir.path()).pop().unwrap();
        let end = fs::metadata(&last).unwrap().len();
        append_bytes(&last, &vec![0; zeros]);
        let log = open(dir.path()).unwrap();
        let recovery = log.recovery().expect("a torn tail");
        assert_eq!(
            (recovery.offset, recovery.truncated_bytes),
            (end, zeros as u64)
        );
        assert_eq!(recovery.last_index, 10);
        drop(log);
        check_keeps_working(dir.path(), expected);
    }
}

#[test]
fn torn_tail_of_garbage_smaller_than_a_header_is_truncated() {
    for garbage in 1..HEADER_BYTES as u64 {
        let dir = tempfile::tempdir().unwrap();
        let expected = write_log(dir.path(), 8);
        let last = segment_files(dir.path()).pop().unwrap();
        append_bytes(&last, &payload(garbage + 7777, garbage as usize));
        let log = open(dir.path()).unwrap();
        let recovery = log.recovery().expect("a torn tail");
        assert_eq!(recovery.truncated_bytes, garbage);
        assert!(matches!(
            recovery.fault,
            RecordFault::HeaderIncomplete { .. }
        ));
        drop(log);
        check_keeps_working(dir.path(), expected);
    }
}

#[test]
fn torn_record_followed_by_zeros_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = write_log(dir.path(), 9);
    expected.pop();
    let last = segment_files(dir.path()).pop().unwrap();
    cut_bytes(&last, 40);
    append_bytes(&last, &[0; 1000]);
    let log = open(dir.path()).unwrap();
    let recovery = log.recovery().expect("a torn tail");
    assert_eq!(recovery.truncated_bytes, RECORD_BYTES - 40 + 1000);
    assert!(matches!(
        recovery.fault,
        RecordFault::ChecksumMismatch { .. }
    ));
    drop(log);
    check_keeps_working(dir.path(), expected);
}

#[test]
fn torn_record_whose_header_page_was_lost_is_truncated() {
    // Pages of one write can reach the disk in any order: the header may be
    // zeros while the payload landed. Nothing valid follows, so it is torn.
    let dir = tempfile::tempdir().unwrap();
    let mut expected = write_log(dir.path(), 9);
    expected.pop();
    let last = segment_files(dir.path()).pop().unwrap();
    let last_offset = *record_offsets(&last).last().unwrap();
    let mut bytes = fs::read(&last).unwrap();
    bytes[last_offset as usize..last_offset as usize + HEADER_BYTES].fill(0);
    fs::write(&last, bytes).unwrap();
    let log = open(dir.path()).unwrap();
    let recovery = log.recovery().expect("a torn tail");
    assert_eq!(
        (recovery.offset, recovery.truncated_bytes),
        (last_offset, RECORD_BYTES)
    );
    assert_eq!(recovery.fault, RecordFault::BadMagic);
    drop(log);
    check_keeps_working(dir.path(), expected);
}

#[test]
fn flipped_byte_before_valid_records_is_corruption() {
    // Header fields (magic, version, length, index, chain, checksum) and the
    // payload of a record that has valid records after it.
    for within in [0u64, 4, 8, 9, 16, 30, 50, 60, 64, 114, RECORD_BYTES - 1] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 11);
        let last = segment_files(dir.path()).pop().unwrap();
        let offsets = record_offsets(&last);
        assert!(offsets.len() >= 3);
        let offset = offsets[1];
        flip_byte(&last, offset + within);
        match expect_corrupt(dir.path(), &last, offset) {
            Corruption::BadRecordBeforeValid {
                valid_record_offset,
                ..
            } => assert_eq!(valid_record_offset, offsets[2], "flip at {within}"),
            other => panic!("flip at {within}: {other:?}"),
        }
    }
}

#[test]
fn flipped_byte_in_a_sealed_segment_is_corruption() {
    // The last record of a segment that is not the last one: nothing follows
    // it in its own file, yet it was synced before the next segment existed.
    for within in [0u64, 8, 70] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 20);
        let files = segment_files(dir.path());
        let sealed = &files[1];
        let offset = *record_offsets(sealed).last().unwrap();
        flip_byte(sealed, offset + within);
        let corruption = expect_corrupt(dir.path(), sealed, offset);
        assert!(
            matches!(corruption, Corruption::BadRecordInSealedSegment { .. }),
            "{corruption:?}"
        );
    }
}

#[test]
fn torn_tail_in_a_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 20);
    let first = &segment_files(dir.path())[0];
    let offset = *record_offsets(first).last().unwrap();
    cut_bytes(first, 10);
    let corruption = expect_corrupt(dir.path(), first, offset);
    assert!(matches!(
        corruption,
        Corruption::BadRecordInSealedSegment {
            fault: RecordFault::PayloadIncomplete { .. }
        }
    ));
}

#[test]
fn deleted_middle_segment_is_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let files = segment_files(dir.path());
    assert!(files.len() >= 4);
    fs::remove_file(&files[1]).unwrap();
    // The manifest names the missing file...
    let message = open(dir.path()).unwrap_err().to_string();
    let name = files[1].file_name().unwrap().to_str().unwrap();
    assert!(
        message.contains(name) && message.contains("missing"),
        "{message}"
    );
    // ...and without a manifest (a log from before manifests) the
    // segments' own names still show the gap.
    remove_manifests(dir.path());
    let corruption = expect_corrupt(dir.path(), &files[2], 0);
    assert_eq!(
        corruption,
        Corruption::SegmentStartMismatch {
            named: 2 * RECORDS_PER_SEGMENT + 1,
            expected: RECORDS_PER_SEGMENT + 1,
        }
    );
    let message = open(dir.path()).unwrap_err().to_string();
    assert!(message.contains("gap"), "{message}");
}

fn remove_manifests(dir: &Path) {
    for name in ["MANIFEST-0", "MANIFEST-1"] {
        let _ = fs::remove_file(dir.join(name));
    }
}

fn open_accepting_loss(dir: &Path) -> Result<FileLog, LogError> {
    FileLog::open(FileLogConfig {
        accept_lost_segments: true,
        ..config(dir, SEGMENT_BYTES_MAX_SMALL)
    })
}

#[test]
fn a_deleted_newest_or_first_segment_is_refused_naming_it() {
    for which in ["newest", "first"] {
        let dir = tempfile::tempdir().unwrap();
        write_log(dir.path(), 30);
        let files = segment_files(dir.path());
        let gone = if which == "newest" {
            files.last().unwrap().clone()
        } else {
            files[0].clone()
        };
        fs::remove_file(&gone).unwrap();
        let error = open(dir.path()).unwrap_err();
        assert!(
            matches!(error, LogError::MissingSegments { .. }),
            "{which}: {error:?}"
        );
        let message = error.to_string();
        let name = gone.file_name().unwrap().to_str().unwrap();
        assert!(message.contains(name), "{which}: {message}");
        assert!(message.contains("ordo repair --accept-loss"), "{message}");
        if which == "newest" {
            assert!(
                message.contains("on)"),
                "the open segment's end is unknown: {message}"
            );
        } else {
            assert!(message.contains("indexes 1 to"), "{message}");
        }
    }
}

#[test]
fn accepting_the_loss_of_the_newest_segment_opens_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 30);
    let files = segment_files(dir.path());
    let newest = files.last().unwrap();
    let first_lost = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    fs::remove_file(newest).unwrap();
    let log = open_accepting_loss(dir.path()).unwrap();
    assert_eq!(log.last_index(), first_lost - 1);
    drop(log);
    // The manifest now records what is there: a plain open works, and the
    // log goes on from there.
    let kept: Vec<_> = expected
        .into_iter()
        .filter(|(index, _)| *index < first_lost)
        .collect();
    check_keeps_working(dir.path(), kept);
}

#[test]
fn a_gap_in_the_middle_is_refused_even_when_accepting_loss() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 30);
    let files = segment_files(dir.path());
    fs::remove_file(&files[1]).unwrap();
    let message = open_accepting_loss(dir.path()).unwrap_err().to_string();
    assert!(message.contains("only a loss at the end"), "{message}");
}

#[test]
fn a_log_without_a_manifest_gets_one_and_is_then_protected() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 30);
    remove_manifests(dir.path());
    // As a log written before manifests: opens, and writes one.
    let log = open(dir.path()).unwrap();
    assert_eq!(read_all(&log), expected);
    drop(log);
    assert!(dir.path().join("MANIFEST-0").exists() || dir.path().join("MANIFEST-1").exists());
    let newest = segment_files(dir.path()).pop().unwrap();
    fs::remove_file(&newest).unwrap();
    assert!(matches!(
        open(dir.path()),
        Err(LogError::MissingSegments { .. })
    ));
}

#[test]
fn one_damaged_manifest_copy_is_survived_and_two_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 30);
    let copies = [dir.path().join("MANIFEST-0"), dir.path().join("MANIFEST-1")];
    assert!(copies.iter().all(|copy| copy.exists()));
    fs::write(&copies[0], b"rotten").unwrap();
    let log = open(dir.path()).unwrap();
    assert_eq!(read_all(&log), expected);
    drop(log);
    fs::write(&copies[0], b"rotten").unwrap();
    fs::write(&copies[1], b"rotten too").unwrap();
    let message = open(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains("both copies of the manifest are damaged"),
        "{message}"
    );
}

#[test]
fn segments_an_interrupted_truncate_prefix_left_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 30);
    let files = segment_files(dir.path());
    let saved: Vec<Vec<u8>> = files[..2]
        .iter()
        .map(|file| fs::read(file).unwrap())
        .collect();
    let mut log = open(dir.path()).unwrap();
    let removed = log.truncate_prefix(2 * RECORDS_PER_SEGMENT).unwrap();
    assert_eq!(removed, 2);
    drop(log);
    // A crash after the manifest was written but before the deletions:
    // the old segments are still there.
    for (file, bytes) in files[..2].iter().zip(&saved) {
        fs::write(file, bytes).unwrap();
    }
    let log = open(dir.path()).unwrap();
    assert_eq!(log.first_index(), 2 * RECORDS_PER_SEGMENT + 1);
    assert!(!files[0].exists() && !files[1].exists());
    let kept: Vec<_> = expected
        .into_iter()
        .filter(|(index, _)| *index > 2 * RECORDS_PER_SEGMENT)
        .collect();
    assert_eq!(read_all(&log), kept);
}

#[test]
fn segment_from_another_history_is_a_chain_break() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    write_log(ours.path(), 20);
    // Same sizes and indexes, a different first record: every chain differs.
    let mut log = open(theirs.path()).unwrap();
    log.append(&payload(999, PAYLOAD_BYTES)).unwrap();
    for index in 2..=20 {
        log.append(&payload(index, PAYLOAD_BYTES)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let second = segment_files(ours.path())[1].clone();
    fs::copy(&segment_files(theirs.path())[1], &second).unwrap();
    let corruption = expect_corrupt(ours.path(), &second, 0);
    assert!(
        matches!(corruption, Corruption::ChainBreak { index, .. } if index == RECORDS_PER_SEGMENT + 1),
        "{corruption:?}"
    );
}

#[test]
fn checksummed_record_with_wrong_chain_or_index_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 3);
    let log = open(dir.path()).unwrap();
    let chain = log.last_chain();
    drop(log);
    let last = segment_files(dir.path()).pop().unwrap();
    let end = fs::metadata(&last).unwrap().len();
    let bytes = payload(4, 10);

    append_bytes(
        &last,
        &encode_record(4, chain, chain_of(chain, 4, &bytes) ^ 1, &bytes),
    );
    let corruption = expect_corrupt(dir.path(), &last, end);
    assert!(matches!(
        corruption,
        Corruption::ChainMismatch { index: 4, .. }
    ));

    cut_bytes(&last, HEADER_BYTES as u64 + 10);
    append_bytes(
        &last,
        &encode_record(5, chain, chain_of(chain, 5, &bytes), &bytes),
    );
    let corruption = expect_corrupt(dir.path(), &last, end);
    assert_eq!(
        corruption,
        Corruption::IndexMismatch {
            expected: 4,
            found: 5
        }
    );

    // The hand-made record, done right, is accepted: the format is as documented.
    cut_bytes(&last, HEADER_BYTES as u64 + 10);
    append_bytes(
        &last,
        &encode_record(4, chain, chain_of(chain, 4, &bytes), &bytes),
    );
    let log = open(dir.path()).unwrap();
    assert_eq!(log.last_index(), 4);
    assert_eq!(log.last_chain(), chain_of(chain, 4, &bytes));
    assert_eq!(read_all(&log).pop().unwrap(), (4, bytes));
}

#[test]
fn on_disk_bytes_match_the_documented_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path()).unwrap();
    log.append(b"ordo").unwrap();
    log.append(b"").unwrap();
    log.sync().unwrap();
    let chain_1 = chain_of(CHAIN_GENESIS, 1, b"ordo");
    let chain_2 = chain_of(chain_1, 2, b"");
    assert_eq!(log.last_chain(), chain_2);
    drop(log);
    let mut expected = encode_record(1, CHAIN_GENESIS, chain_1, b"ordo");
    expected.extend(encode_record(2, chain_1, chain_2, b""));
    let file = dir.path().join("00000000000000000001.log");
    assert_eq!(fs::read(file).unwrap(), expected);
    assert_eq!(CHAIN_GENESIS.to_le_bytes(), *b"ordo-log-genesis");
}

#[test]
fn empty_last_segment_from_a_crash_during_roll_over_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 6);
    fs::File::create(dir.path().join("00000000000000000007.log")).unwrap();
    let log = open(dir.path()).unwrap();
    assert!(log.recovery().is_none());
    assert_eq!(log.last_index(), 6);
    drop(log);
    check_keeps_working(dir.path(), expected);
    assert_eq!(segment_files(dir.path()).len(), 2);

    // An empty segment with the wrong name is a gap, not a place to write.
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 6);
    let wrong = dir.path().join("00000000000000000009.log");
    fs::File::create(&wrong).unwrap();
    expect_corrupt(dir.path(), &wrong, 0);
}

#[test]
fn truncate_prefix_deletes_whole_segments_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 40);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 7);
    let mut log = open(dir.path()).unwrap();
    let chain = log.last_chain();

    // Index 14 is inside the third segment (13..=18): only two go.
    assert_eq!(log.truncate_prefix(14).unwrap(), 2);
    assert_eq!(log.first_index(), 13);
    assert!(!files[0].exists() && !files[1].exists() && files[2].exists());
    assert!(matches!(
        log.read_from(12),
        Err(LogError::Compacted {
            index: 12,
            first_index: 13
        })
    ));
    assert_eq!(read_all(&log), expected[12..]);
    assert_eq!(log.truncate_prefix(14).unwrap(), 0);
    drop(log);

    let mut log = open(dir.path()).unwrap();
    assert!(log.recovery().is_none());
    assert_eq!((log.first_index(), log.last_index()), (13, 40));
    assert_eq!(log.last_chain(), chain);
    assert_eq!(read_all(&log), expected[12..]);
    let records: Vec<_> = log
        .read_from(20)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records, expected[19..]);

    // Everything: the last segment stays, so the chain stays on disk.
    assert_eq!(log.truncate_prefix(u64::MAX).unwrap(), 4);
    assert_eq!(log.first_index(), 37);
    let index = log.append(b"after").unwrap();
    assert_eq!(index, 41);
    log.sync().unwrap();
    let chain = log.last_chain();
    drop(log);
    let log = open(dir.path()).unwrap();
    assert_eq!(log.last_chain(), chain);
    let mut tail = expected[36..].to_vec();
    tail.push((41, b"after".to_vec()));
    assert_eq!(read_all(&log), tail);
}

#[test]
fn torn_tail_after_truncate_prefix_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = write_log(dir.path(), 20);
    let mut log = open(dir.path()).unwrap();
    assert_eq!(log.truncate_prefix(12).unwrap(), 2);
    drop(log);
    cut_bytes(&segment_files(dir.path()).pop().unwrap(), 3);
    let log = open(dir.path()).unwrap();
    assert_eq!(log.recovery().unwrap().last_index, 19);
    drop(log);
    expected.pop();
    let mut log = open(dir.path()).unwrap();
    assert_eq!(read_all(&log), expected[12..]);
    log.append(b"x").unwrap();
    log.sync().unwrap();
}

#[test]
fn payload_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = FileLog::open(FileLogConfig {
        record_bytes_max: 100,
        ..FileLogConfig::new(dir.path())
    })
    .unwrap();
    log.append(&[1; 100]).unwrap();
    assert!(matches!(
        log.append(&[1; 101]),
        Err(LogError::RecordTooLarge {
            payload_bytes: 101,
            record_bytes_max: 100
        })
    ));
    let batch: [&[u8]; 2] = [&[2; 10], &[3; 101]];
    assert!(log.append_batch(&batch).is_err());
    assert_eq!(log.last_index(), 1, "a refused batch appends nothing");
    log.sync().unwrap();
}

#[test]
fn record_over_a_lowered_limit_is_refused_not_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let expected = write_log(dir.path(), 3);
    let lowered = FileLogConfig {
        record_bytes_max: 50,
        ..config(dir.path(), SEGMENT_BYTES_MAX_SMALL)
    };
    let error = FileLog::open(lowered).unwrap_err();
    assert!(
        matches!(
            error,
            LogError::RecordOverLimit {
                payload_bytes: 100,
                offset: 0,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("reopen with record_bytes_max of at least 100")
    );
    let log = open(dir.path()).unwrap();
    assert_eq!(read_all(&log), expected);
}

#[test]
fn a_directory_opens_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path()).unwrap();
    assert!(matches!(open(dir.path()), Err(LogError::Locked { .. })));
    drop(log);
    open(dir.path()).unwrap();
}

#[derive(Clone, Debug)]
struct Step {
    payload_bytes: usize,
    sync: bool,
    reopen: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..2000,
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(payload_bytes, sync, reopen)| Step {
            payload_bytes,
            sync,
            reopen,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn everything_appended_reads_back_after_reopen(
        steps in prop::collection::vec(step(), 1..60),
        segment_bytes_max in prop::sample::select(vec![512u64, 4096, 65536]),
        read_start in 1u64..61,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), segment_bytes_max);
        let mut log = FileLog::open(config.clone()).unwrap();
        let mut expected = Vec::new();
        for (position, step) in steps.iter().enumerate() {
            let index = position as u64 + 1;
            let bytes = payload(index, step.payload_bytes);
            prop_assert_eq!(log.append(&bytes).unwrap(), index);
            expected.push((index, bytes));
            if step.sync {
                log.sync().unwrap();
            }
            if step.reopen {
                let chain = log.last_chain();
                log.sync().unwrap();
                drop(log);
                log = FileLog::open(config.clone()).unwrap();
                prop_assert!(log.recovery().is_none());
                prop_assert_eq!(log.last_index(), index);
                prop_assert_eq!(log.last_chain(), chain);
            }
        }
        log.sync().unwrap();
        let chain = log.last_chain();
        drop(log);
        let log = FileLog::open(config).unwrap();
        prop_assert!(log.recovery().is_none());
        prop_assert_eq!(log.last_chain(), chain);
        prop_assert_eq!(read_all(&log), expected.clone());
        let start = read_start.min(expected.len() as u64 + 1);
        let records: Vec<_> = log.read_from(start).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&records[..], &expected[start as usize - 1..]);
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

/// Prints append+sync latencies on this machine's disk. Run with
/// `cargo test -p ordo-sequencer --test file_log -- --ignored --nocapture`
/// (set `ORDO_BENCH_DIR` to measure a disk other than the temp dir's).
#[test]
#[ignore = "a measurement, not a check"]
fn measure_append_sync_latency() {
    let parent = std::env::var_os("ORDO_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tempfile::tempdir_in(parent).unwrap();
    let mut log = FileLog::open(FileLogConfig::new(dir.path())).unwrap();
    for (record_bytes, records_per_sync) in [(64 * 1024, 1), (4096, 1), (4096, 64), (64 * 1024, 16)]
    {
        let bytes = payload(1, record_bytes);
        let mut samples = Vec::new();
        for _ in 0..200 {
            let start = Instant::now();
            for _ in 0..records_per_sync {
                log.append(&bytes).unwrap();
            }
            log.sync().unwrap();
            samples.push(start.elapsed());
        }
        samples.sort();
        let total: Duration = samples.iter().sum();
        println!(
            "{records_per_sync} x {record_bytes} B then sync: p50 {:?} p99 {:?} mean {:?}, {:.0} records/s",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            total / samples.len() as u32,
            (samples.len() * records_per_sync) as f64 / total.as_secs_f64(),
        );
    }
    let start = Instant::now();
    drop(log);
    let log = FileLog::open(FileLogConfig::new(dir.path())).unwrap();
    println!(
        "reopen (verify) of {} records, {} MiB: {:?}",
        log.last_index(),
        log.segment_paths()
            .map(|path| fs::metadata(path).unwrap().len())
            .sum::<u64>()
            >> 20,
        start.elapsed()
    );
}

/// Prints the CPU cost of the log's own path: appends that reach the page
/// cache but are synced only once at the end, then a verified read of
/// everything and a reopen. Compare builds with
/// `cargo test --release -p ordo-sequencer --test file_log -- --ignored --nocapture measure_append_cpu`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_append_cpu() {
    let parent = std::env::var_os("ORDO_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    for (record_bytes, records_per_batch) in [(100, 1), (100, 64), (4096, 16)] {
        let dir = tempfile::tempdir_in(&parent).unwrap();
        let config = config(dir.path(), 8 << 20);
        let mut log = FileLog::open(config.clone()).unwrap();
        let bytes = payload(1, record_bytes);
        let batch: Vec<&[u8]> = vec![&bytes; records_per_batch];
        let records = 200_000 / records_per_batch * records_per_batch;
        let start = Instant::now();
        for _ in 0..records / records_per_batch {
            log.append_batch(&batch).unwrap();
            // The group-commit handshake without its fdatasync.
            let pending = log.begin_sync().unwrap().unwrap();
            log.finish_sync(pending.up_to_index(), Ok(())).unwrap();
        }
        let appended = start.elapsed();
        log.sync().unwrap();
        let start = Instant::now();
        let read = log.read_from(1).unwrap().count();
        let read_time = start.elapsed();
        assert_eq!(read, records);
        drop(log);
        let start = Instant::now();
        let log = FileLog::open(config).unwrap();
        let reopen = start.elapsed();
        assert_eq!(log.last_index(), records as u64);
        println!(
            "{records} x {record_bytes} B in batches of {records_per_batch}: append {:.0} records/s, \
             read {:.0} records/s, reopen {reopen:?}",
            records as f64 / appended.as_secs_f64(),
            records as f64 / read_time.as_secs_f64(),
        );
    }
}

//! A log directory whose only segment holds arbitrary bytes (and, when
//! the input says so, arbitrary manifest bytes): opening must refuse,
//! truncate a torn tail or read back records, never panic; and whatever
//! it accepts must read back to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_sequencer::{FileLog, FileLogConfig};

fuzz_target!(|data: &[u8]| {
    // The first byte picks what the rest is: a segment, or a manifest
    // next to a valid one-record log.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let config = FileLogConfig {
        segment_bytes_max: 1 << 16,
        record_bytes_max: 1 << 16,
        ..FileLogConfig::new(dir.path())
    };
    if selector % 2 == 0 {
        std::fs::write(dir.path().join("00000000000000000001.log"), rest).unwrap();
    } else {
        {
            let mut log = FileLog::open(config.clone()).unwrap();
            log.append(b"a record").unwrap();
            log.sync().unwrap();
        }
        std::fs::write(dir.path().join("MANIFEST-1"), rest).unwrap();
        std::fs::write(dir.path().join("MANIFEST-0"), rest).unwrap();
    }
    if let Ok(log) = FileLog::open(config) {
        let first = log.first_index();
        let read = log
            .read_from(first)
            .unwrap()
            .map(|record| record.unwrap())
            .count() as u64;
        assert_eq!(read, log.last_index() + 1 - first);
    }
});

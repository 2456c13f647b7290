//! Bytes that a member decodes from a peer or its disk: snapshot images
//! and batches of log entries. Decoding must refuse or succeed, never
//! panic; a decoded batch must encode back to bytes that decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_sequencer::entry::{Batch, Entry};
use ordo_sequencer::raft::SnapshotImage;

fuzz_target!(|data: &[u8]| {
    let _ = SnapshotImage::decode(data);
    if let Ok(batch) = Batch::decode(data) {
        let again = Batch::decode(&batch.encode()).expect("a batch re-encodes");
        assert_eq!(again.encode(), batch.encode());
    }
    let _ = postcard::from_bytes::<Vec<Entry>>(data);
});

//! The accepting side of the replication handshake fed arbitrary bytes:
//! it must refuse or accept without panicking, and never accept without
//! the secret (which the input cannot know).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_sequencer::raft::ClusterSecret;
use ordo_sequencer::raft::auth;
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (acceptor_end, mut attacker) = tokio::io::duplex(1 << 16);
        let secret = ClusterSecret::new(b"fuzzing-cluster-secret".to_vec()).unwrap();
        let bytes = data.to_vec();
        let feeding = async move {
            let _ = attacker.write_all(&bytes).await;
            // Closing ends every read the acceptor is waiting on.
            drop(attacker);
        };
        let accepting = auth::accept(Box::new(acceptor_end), &secret, 1, |node| node == 2);
        let (_, accepted) = tokio::join!(feeding, accepting);
        assert!(accepted.is_err(), "accepted a peer that cannot know the secret");
    });
});

//! Arbitrary bytes on an authenticated replication link, after a real
//! handshake: every frame must fail its tag (the input cannot know the
//! session key), without a panic and without reading a frame body over
//! the limit it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_sequencer::raft::ClusterSecret;
use ordo_sequencer::raft::auth::{self, ChannelError};
use tokio::io::AsyncWriteExt;

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let secret = ClusterSecret::new(b"fuzzing-cluster-secret".to_vec()).unwrap();
        let (acceptor_io, mut acceptor_far) = tokio::io::duplex(1 << 16);
        let (connector_io, mut connector_far) = tokio::io::duplex(1 << 16);
        // Relay the handshake between the two, then take over the
        // acceptor's incoming side.
        let handshake = async {
            tokio::join!(
                auth::accept(Box::new(acceptor_io), &secret, 1, |node| node == 2),
                auth::connect(Box::new(connector_io), &secret, 2, 1)
            )
        };
        let (accepted, connected) = tokio::select! {
            done = handshake => done,
            _ = tokio::io::copy_bidirectional(&mut acceptor_far, &mut connector_far) => {
                panic!("the relay ended before the handshake did")
            }
        };
        let (mut acceptor, member) = accepted.unwrap();
        assert_eq!(member, 2);
        drop(connected);
        let _ = acceptor_far.write_all(data).await;
        drop(acceptor_far);
        loop {
            match acceptor.recv::<Vec<u8>>(1 << 20).await {
                Ok(_) => panic!("a frame the input could not have tagged was accepted"),
                Err(ChannelError::Closed) => break,
                Err(_) => break,
            }
        }
    });
});

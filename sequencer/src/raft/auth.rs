//! Member authentication on the replication port, and the MAC'd frames
//! that follow it.
//!
//! Both ends hold the cluster key (derived from the cluster secret). The
//! handshake, over three small frames:
//!
//! ```text
//! connector -> acceptor   Greeting { magic, version, from, to, nonce_c }
//! acceptor  -> connector  Challenge { nonce_a, proof_a }
//! connector -> acceptor   Proof { proof_c }
//! ```
//!
//! `proof_a` and `proof_c` are keyed BLAKE3 hashes of the whole transcript
//! (magic, version, both ids, both nonces) under the cluster key, each
//! with its own role label, so neither side can be made to answer its own
//! challenge and a proof for one connection is worthless on another. The
//! acceptor reads nothing else until `proof_c` checks out, and checks the
//! `from` id against the configured members before it sends anything.
//!
//! After the handshake each direction has its own key, derived from the
//! transcript. Every frame is `length (u32 LE) | body | tag (16 bytes)`,
//! where the tag is the keyed hash of a per-direction frame counter, the
//! length and the body. A frame that was forged, replayed, reordered,
//! reflected or cut fails its tag and ends the connection.

use ordo_frame::{FrameTooLarge, ReadFrameError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ClusterSecret;

type NodeId = u64;

/// Largest handshake frame (the real ones are under 100 bytes): nothing
/// larger is read from a peer that has not authenticated.
pub const HANDSHAKE_FRAME_BYTES_MAX: usize = 4 << 10;
const MAGIC: [u8; 8] = *b"ordopeer";
const VERSION: u16 = 1;
const NONCE_BYTES: usize = 32;
const TAG_BYTES: usize = 16;

/// A byte stream to a peer: TCP, or TLS over TCP.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> PeerIo for T {}

#[derive(Serialize, Deserialize)]
struct Greeting {
    magic: [u8; 8],
    version: u16,
    from: NodeId,
    to: NodeId,
    nonce: [u8; NONCE_BYTES],
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    nonce: [u8; NONCE_BYTES],
    proof: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Proof {
    proof: [u8; 32],
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("handshake frame of {0} bytes is over the {HANDSHAKE_FRAME_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    #[error("handshake message does not decode: {0}")]
    Malformed(postcard::Error),
    #[error("not an ordo replication handshake (bad magic or version)")]
    NotOrdo,
    #[error("node {0} is not a member of this cluster")]
    NotAMember(NodeId),
    #[error("the peer meant to reach node {to}, this is node {me}")]
    WrongNode { to: NodeId, me: NodeId },
    #[error("the peer does not hold the cluster secret (its proof is wrong)")]
    BadProof,
    #[error("could not draw a random nonce: {0}")]
    Random(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {bytes} bytes is over the {max}-byte limit")]
    TooLarge { bytes: usize, max: usize },
    #[error("frame failed its authentication tag (forged, replayed or corrupt)")]
    BadTag,
    #[error("frame does not decode: {0}")]
    Malformed(postcard::Error),
    #[error("frame does not encode: {0}")]
    Encode(postcard::Error),
}

fn nonce() -> Result<[u8; NONCE_BYTES], HandshakeError> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|err| HandshakeError::Random(err.to_string()))?;
    Ok(nonce)
}

fn transcript(greeting: &Greeting, acceptor_nonce: &[u8; NONCE_BYTES]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + 2 + 16 + 2 * NONCE_BYTES);
    bytes.extend_from_slice(&greeting.magic);
    bytes.extend_from_slice(&greeting.version.to_le_bytes());
    bytes.extend_from_slice(&greeting.from.to_le_bytes());
    bytes.extend_from_slice(&greeting.to.to_le_bytes());
    bytes.extend_from_slice(&greeting.nonce);
    bytes.extend_from_slice(acceptor_nonce);
    bytes
}

fn labelled(key: &[u8; 32], label: &[u8], transcript: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(label);
    hasher.update(transcript);
    hasher.finalize()
}

async fn write_handshake(io: &mut Box<dyn PeerIo>, value: &impl Serialize) -> std::io::Result<()> {
    let body = postcard::to_stdvec(value).map_err(std::io::Error::other)?;
    let frame = ordo_frame::encode_frame(&body, HANDSHAKE_FRAME_BYTES_MAX)
        .map_err(std::io::Error::other)?;
    io.write_all(&frame).await?;
    io.flush().await
}

async fn read_handshake<V: DeserializeOwned>(
    io: &mut Box<dyn PeerIo>,
) -> Result<V, HandshakeError> {
    let mut body = Vec::new();
    match ordo_frame::read_frame_into(io, HANDSHAKE_FRAME_BYTES_MAX, &mut body).await {
        Ok(()) => {}
        Err(ReadFrameError::TooLarge(err)) => return Err(HandshakeError::TooLarge(err.bytes)),
        Err(ReadFrameError::Closed) => {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        Err(ReadFrameError::Io(err)) => return Err(err.into()),
    }
    postcard::from_bytes(&body).map_err(HandshakeError::Malformed)
}

/// The accepting side: returns the channel and the authenticated member,
/// which `is_member` must accept before anything is sent back.
pub async fn accept(
    mut io: Box<dyn PeerIo>,
    secret: &ClusterSecret,
    me: NodeId,
    is_member: impl Fn(NodeId) -> bool,
) -> Result<(PeerChannel, NodeId), HandshakeError> {
    let greeting: Greeting = read_handshake(&mut io).await?;
    if greeting.magic != MAGIC || greeting.version != VERSION {
        return Err(HandshakeError::NotOrdo);
    }
    if greeting.to != me {
        return Err(HandshakeError::WrongNode {
            to: greeting.to,
            me,
        });
    }
    if !is_member(greeting.from) {
        return Err(HandshakeError::NotAMember(greeting.from));
    }
    let own_nonce = nonce()?;
    let transcript = transcript(&greeting, &own_nonce);
    let key = secret.key();
    let challenge = Challenge {
        nonce: own_nonce,
        proof: *labelled(key, b"ordo peer acceptor", &transcript).as_bytes(),
    };
    write_handshake(&mut io, &challenge).await?;
    let proof: Proof = read_handshake(&mut io).await?;
    if labelled(key, b"ordo peer connector", &transcript) != proof.proof {
        return Err(HandshakeError::BadProof);
    }
    let channel = PeerChannel::new(io, key, &transcript, Role::Acceptor);
    Ok((channel, greeting.from))
}

/// The connecting side: this node (`me`) opens a link to `to`.
pub async fn connect(
    mut io: Box<dyn PeerIo>,
    secret: &ClusterSecret,
    me: NodeId,
    to: NodeId,
) -> Result<PeerChannel, HandshakeError> {
    let greeting = Greeting {
        magic: MAGIC,
        version: VERSION,
        from: me,
        to,
        nonce: nonce()?,
    };
    write_handshake(&mut io, &greeting).await?;
    let challenge: Challenge = read_handshake(&mut io).await?;
    let transcript = transcript(&greeting, &challenge.nonce);
    let key = secret.key();
    // The acceptor proves it holds the secret too: this node sends
    // nothing to an impostor.
    if labelled(key, b"ordo peer acceptor", &transcript) != challenge.proof {
        return Err(HandshakeError::BadProof);
    }
    let proof = Proof {
        proof: *labelled(key, b"ordo peer connector", &transcript).as_bytes(),
    };
    write_handshake(&mut io, &proof).await?;
    Ok(PeerChannel::new(io, key, &transcript, Role::Connector))
}

#[derive(Clone, Copy)]
enum Role {
    Connector,
    Acceptor,
}

struct Direction {
    key: [u8; 32],
    counter: u64,
}

impl Direction {
    fn tag(&mut self, body: &[u8]) -> [u8; TAG_BYTES] {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&self.counter.to_le_bytes());
        hasher.update(&(body.len() as u64).to_le_bytes());
        hasher.update(body);
        self.counter += 1;
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_BYTES]);
        tag
    }
}

/// Compares tags in time independent of where they differ.
fn tags_equal(a: &[u8; TAG_BYTES], b: &[u8; TAG_BYTES]) -> bool {
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn too_large(err: FrameTooLarge) -> ChannelError {
    ChannelError::TooLarge {
        bytes: err.bytes,
        max: err.frame_bytes_max,
    }
}

/// An authenticated link: postcard messages in MAC'd frames.
pub struct PeerChannel {
    io: Box<dyn PeerIo>,
    send: Direction,
    recv: Direction,
    buffer: Vec<u8>,
}

impl PeerChannel {
    fn new(io: Box<dyn PeerIo>, key: &[u8; 32], transcript: &[u8], role: Role) -> PeerChannel {
        let to_acceptor = *labelled(key, b"ordo peer frames to acceptor", transcript).as_bytes();
        let to_connector = *labelled(key, b"ordo peer frames to connector", transcript).as_bytes();
        let (send, recv) = match role {
            Role::Connector => (to_acceptor, to_connector),
            Role::Acceptor => (to_connector, to_acceptor),
        };
        PeerChannel {
            io,
            send: Direction {
                key: send,
                counter: 0,
            },
            recv: Direction {
                key: recv,
                counter: 0,
            },
            buffer: Vec::new(),
        }
    }

    pub async fn send(&mut self, value: &impl Serialize) -> Result<(), ChannelError> {
        self.buffer.clear();
        let start = ordo_frame::begin_frame(&mut self.buffer);
        let mut buffer = postcard::to_extend(value, std::mem::take(&mut self.buffer))
            .map_err(ChannelError::Encode)?;
        // A length prefix says at most 4 GiB; the receiver's limit is its own.
        ordo_frame::finish_frame(&mut buffer, start, usize::MAX).map_err(too_large)?;
        let tag = self.send.tag(&buffer[ordo_frame::HEADER_BYTES..]);
        buffer.extend_from_slice(&tag);
        let written = self.io.write_all(&buffer).await;
        self.buffer = buffer;
        written?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next message; frames over `frame_bytes_max` end the link
    /// before their body is read.
    pub async fn recv<V: DeserializeOwned>(
        &mut self,
        frame_bytes_max: usize,
    ) -> Result<V, ChannelError> {
        let mut body = Vec::new();
        match ordo_frame::read_frame_into(&mut self.io, frame_bytes_max, &mut body).await {
            Ok(()) => {}
            Err(ReadFrameError::Closed) => return Err(ChannelError::Closed),
            Err(ReadFrameError::TooLarge(err)) => return Err(too_large(err)),
            Err(ReadFrameError::Io(err)) => return Err(err.into()),
        }
        let mut tag = [0u8; TAG_BYTES];
        self.io.read_exact(&mut tag).await?;
        if !tags_equal(&self.recv.tag(&body), &tag) {
            return Err(ChannelError::BadTag);
        }
        postcard::from_bytes(&body).map_err(ChannelError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(text: &str) -> ClusterSecret {
        ClusterSecret::new(text.as_bytes().to_vec()).unwrap()
    }

    async fn pair(
        acceptor_secret: ClusterSecret,
        connector_secret: ClusterSecret,
        from: NodeId,
    ) -> (
        Result<(PeerChannel, NodeId), HandshakeError>,
        Result<PeerChannel, HandshakeError>,
    ) {
        // Larger than any message below: each side writes whole
        // messages before the other reads.
        let (a, b) = tokio::io::duplex(1 << 20);
        let accepting = accept(Box::new(a), &acceptor_secret, 1, |node| {
            node == 2 || node == 3
        });
        let connecting = connect(Box::new(b), &connector_secret, from, 1);
        tokio::join!(accepting, connecting)
    }

    /// An authenticated link between node 2 (connector) and node 1.
    async fn linked(shared: &ClusterSecret) -> (PeerChannel, PeerChannel) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (accepted, connected) = tokio::join!(
            accept(Box::new(a), shared, 1, |node| node == 2),
            connect(Box::new(b), shared, 2, 1)
        );
        (accepted.unwrap().0, connected.unwrap())
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn members_with_the_secret_authenticate_and_exchange_frames() {
        runtime().block_on(async {
            let shared = secret("a cluster secret of some length");
            let (accepted, connected) = pair(shared.clone(), shared, 2).await;
            let (mut acceptor, member) = accepted.unwrap();
            let mut connector = connected.unwrap();
            assert_eq!(member, 2);
            connector.send(&(7u64, "hello".to_string())).await.unwrap();
            let got: (u64, String) = acceptor.recv(1 << 20).await.unwrap();
            assert_eq!(got, (7, "hello".to_string()));
            acceptor.send(&vec![1u8; 100_000]).await.unwrap();
            let got: Vec<u8> = connector.recv(1 << 20).await.unwrap();
            assert_eq!(got.len(), 100_000);
        });
    }

    #[test]
    fn a_wrong_secret_is_refused_on_both_sides() {
        runtime().block_on(async {
            let (accepted, connected) = pair(
                secret("the real cluster secret!!"),
                secret("a guessed cluster secret!"),
                2,
            )
            .await;
            // The connector checks the acceptor's proof first and stops.
            assert!(matches!(connected, Err(HandshakeError::BadProof)));
            assert!(accepted.is_err());
        });
    }

    #[test]
    fn a_non_member_is_refused_before_any_proof_is_sent() {
        runtime().block_on(async {
            let shared = secret("a cluster secret of some length");
            let (accepted, connected) = pair(shared.clone(), shared, 9).await;
            assert!(matches!(accepted, Err(HandshakeError::NotAMember(9))));
            assert!(connected.is_err());
        });
    }

    #[test]
    fn an_oversized_first_frame_is_refused_without_reading_it() {
        runtime().block_on(async {
            let (a, mut b) = tokio::io::duplex(1 << 16);
            b.write_all(&(1u32 << 30).to_le_bytes()).await.unwrap();
            let shared = secret("a cluster secret of some length");
            let accepted = accept(Box::new(a), &shared, 1, |_| true).await;
            assert!(matches!(accepted, Err(HandshakeError::TooLarge(_))));
        });
    }

    #[test]
    fn tampered_replayed_and_oversized_frames_are_refused() {
        runtime().block_on(async {
            let shared = secret("a cluster secret of some length");
            let (mut acceptor, mut connector) = linked(&shared).await;
            // A frame sent with the wrong counter (a replay of frame 0 as
            // frame 1) fails its tag.
            connector.send(&1u64).await.unwrap();
            let _: u64 = acceptor.recv(1 << 20).await.unwrap();
            connector.send.counter = 0;
            connector.send(&1u64).await.unwrap();
            assert!(matches!(
                acceptor.recv::<u64>(1 << 20).await,
                Err(ChannelError::BadTag)
            ));
            // The limit is checked on the length prefix.
            let (mut acceptor, mut connector) = linked(&shared).await;
            connector.send(&vec![0u8; 5000]).await.unwrap();
            assert!(matches!(
                acceptor.recv::<Vec<u8>>(4096).await,
                Err(ChannelError::TooLarge { .. })
            ));
        });
    }

    #[test]
    fn a_flipped_bit_in_a_frame_fails_its_tag() {
        runtime().block_on(async {
            let shared = secret("a cluster secret of some length");
            let (mut acceptor, connector) = linked(&shared).await;
            // Write a frame by hand with a correct length but a body the
            // tag does not cover.
            let mut send = Direction {
                key: connector.send.key,
                counter: 0,
            };
            let body = postcard::to_stdvec(&42u64).unwrap();
            let tag = send.tag(&body);
            let mut tampered = body.clone();
            tampered[0] ^= 1;
            let mut io = connector.io;
            io.write_all(&(tampered.len() as u32).to_le_bytes())
                .await
                .unwrap();
            io.write_all(&tampered).await.unwrap();
            io.write_all(&tag).await.unwrap();
            assert!(matches!(
                acceptor.recv::<u64>(1 << 20).await,
                Err(ChannelError::BadTag)
            ));
        });
    }
}

//! `ordo-client`: how programs talk to an ordo server.
//!
//! [`Client`] is the async client (tokio): connect, call procedures
//! (typed with postcard, as JSON, or raw), deploy modules, read the node's
//! status, read at the consistency you choose. Calls from many tasks are
//! pipelined on one connection, and a lost connection is re-established
//! with every waiting request resent under the same client id and request
//! id, so the server runs each at most once. Given a cluster's servers
//! (`"A,B,C"`), the client finds the leader and follows it through
//! failovers the same way, leaving a leader that has gone silent (frozen
//! or hung) after [`ClientConfig::stall_timeout`] (see [`client`]).
//!
//! ```no_run
//! use ordo_client::Client;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), ordo_client::ClientError> {
//! let client = Client::connect("127.0.0.1:7878").await?;
//! let transfer = client.call::<_, ()>("transfer", &(1u64, 2u64, 100i64)).await?;
//! println!("transferred at seq {}", transfer.seq);
//! let (balance, _) = client.call_json("balance", r#"{"id": 2}"#).await?;
//! println!("account 2 holds {balance}");
//! # Ok(())
//! # }
//! ```
//!
//! [`protocol`] is the wire protocol both sides speak: the handshake,
//! request and response messages and their framing, as pure code with no
//! I/O.
//!
//! [`tls`] builds the rustls configuration for a server's TLS port
//! ([`ClientConfig::tls`]; `ordo --tls-ca FILE`).
//!
//! This crate must never depend on wasmtime, openraft or another `ordo-*`
//! crate: applications link it, and they should not pay for the engine.
//!
//! ```
//! use ordo_client::protocol::{
//!     decode_payload, encode_frame, Encoding, FrameDecoder, Request, RequestBody,
//!     FRAME_BYTES_MAX_DEFAULT,
//! };
//!
//! let request = Request {
//!     request_id: 1,
//!     acked_below: 1,
//!     body: RequestBody::Call {
//!         procedure: "balance".into(),
//!         encoding: Encoding::Json,
//!         args: br#"{"id": 7}"#.to_vec(),
//!         signature: None,
//!     },
//! };
//! let frame = encode_frame(&request, FRAME_BYTES_MAX_DEFAULT)?;
//! let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT);
//! decoder.extend(&frame);
//! let payload = decoder.next_payload()?.expect("a whole frame");
//! assert_eq!(decode_payload::<Request>(&payload)?, request);
//! # Ok::<(), ordo_client::protocol::ProtocolError>(())
//! ```

pub mod client;
pub mod protocol;
pub mod schema_cache;
pub mod tls;

/// The schema model: derive [`Schema`](schema::Schema) on the types you
/// pass to [`Client::call`], so each call carries the fingerprint of its
/// argument types and a mismatch is refused before it is logged.
pub use ordo_schema as schema;
pub use ordo_schema::Schema;
/// The TLS crates this one is built on, so that servers and tools reuse
/// exactly the same versions (and the `ring` provider).
pub use rustls;
pub use tokio_rustls;

pub use client::{
    CONNECT_TIMEOUT_DEFAULT, CallOutcome, Called, Client, ClientConfig, ClientError, Deployed,
    LogPage, RECONNECT_ATTEMPTS_DEFAULT, REQUEST_TIMEOUT_DEFAULT, ReadConsistency, ReadOutcome,
    ReadValue, STALL_TIMEOUT_DEFAULT,
};
pub use protocol::{
    Encoding, ModuleDescription, ProcedureDescription, ProcedureLogLine, StatusInfo,
};

//! `ordo-client`: how programs talk to an ordo server.
//!
//! Today this crate holds the wire protocol ([`protocol`]): the handshake,
//! request and response messages and their framing, as pure code with no
//! I/O. The async client (`Client::connect`, typed `call`, reconnect and
//! retry with the same request id) and the server that speaks the other
//! side are issue #3.
//!
//! This crate must never depend on wasmtime or openraft: applications link
//! it, and they should not pay for the engine.
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
//!     },
//! };
//! let frame = encode_frame(&request, FRAME_BYTES_MAX_DEFAULT)?;
//! let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX_DEFAULT);
//! decoder.extend(&frame);
//! let payload = decoder.next_payload()?.expect("a whole frame");
//! assert_eq!(decode_payload::<Request>(&payload)?, request);
//! # Ok::<(), ordo_client::protocol::ProtocolError>(())
//! ```

pub mod protocol;

//! Length-prefixed frames: a 4-byte little-endian payload length, then the
//! payload. The client protocol (`ordo-client`, whose payloads are postcard
//! messages) and the replication port (`ordo-sequencer`'s Raft network,
//! whose frames carry an authentication tag after the payload) both frame
//! their streams this way, through this crate.
//!
//! Every reader takes a limit, `frame_bytes_max` (bytes of payload), and
//! checks a frame's length against it before it reserves any memory for
//! the payload; [`read_frame_into`] then grows its buffer with what
//! arrives, not with what the length claims.

use std::fmt;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes in a frame's length prefix.
pub const HEADER_BYTES: usize = 4;

/// Bytes of a payload read per step: a frame's memory grows with what
/// arrives, not with what its length prefix claims.
const READ_STEP_BYTES: usize = 64 << 10;

/// A frame whose payload is over the limit (or over the 4 GiB a length
/// prefix can say).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameTooLarge {
    /// The payload's length.
    pub bytes: usize,
    /// The limit it broke.
    pub frame_bytes_max: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame of {} bytes is over the {}-byte limit",
            self.bytes, self.frame_bytes_max
        )
    }
}

impl std::error::Error for FrameTooLarge {}

/// The payload length a frame header announces, checked against
/// `frame_bytes_max` before any payload memory is reserved (so a hostile
/// length cannot make the receiver allocate).
pub fn payload_bytes(
    header: [u8; HEADER_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, FrameTooLarge> {
    let bytes = u32::from_le_bytes(header) as usize;
    if bytes > frame_bytes_max {
        return Err(FrameTooLarge {
            bytes,
            frame_bytes_max,
        });
    }
    Ok(bytes)
}

/// Starts a frame at the end of `out`: appends a placeholder header and
/// returns where the frame starts. Append the payload, then call
/// [`finish_frame`].
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_BYTES]);
    start
}

/// Ends the frame [`begin_frame`] started at `start`: everything after its
/// header is the payload. A payload over `frame_bytes_max` (or over
/// `u32::MAX`) is taken off again, leaving `out` as it was before
/// [`begin_frame`].
pub fn finish_frame(
    out: &mut Vec<u8>,
    start: usize,
    frame_bytes_max: usize,
) -> Result<(), FrameTooLarge> {
    let bytes = out.len() - start - HEADER_BYTES;
    let max = frame_bytes_max.min(u32::MAX as usize);
    if bytes > max {
        out.truncate(start);
        return Err(FrameTooLarge {
            bytes,
            frame_bytes_max: max,
        });
    }
    out[start..start + HEADER_BYTES].copy_from_slice(&(bytes as u32).to_le_bytes());
    Ok(())
}

/// One frame holding `payload`.
pub fn encode_frame(payload: &[u8], frame_bytes_max: usize) -> Result<Vec<u8>, FrameTooLarge> {
    let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
    let start = begin_frame(&mut frame);
    frame.extend_from_slice(payload);
    finish_frame(&mut frame, start, frame_bytes_max)?;
    Ok(frame)
}

/// Why [`read_frame_into`] read no frame.
#[derive(Debug)]
pub enum ReadFrameError {
    /// The stream ended before a whole header: between frames, a clean end.
    Closed,
    /// The header announced a payload over the limit; nothing after the
    /// header was read.
    TooLarge(FrameTooLarge),
    /// Reading failed, or the stream ended inside the payload
    /// (`UnexpectedEof`).
    Io(io::Error),
}

impl fmt::Display for ReadFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadFrameError::Closed => f.write_str("the connection closed"),
            ReadFrameError::TooLarge(err) => err.fmt(f),
            ReadFrameError::Io(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for ReadFrameError {}

/// Reads a frame from `reader`: its header, then its payload into
/// `payload` (cleared first), growing it as bytes arrive.
pub async fn read_frame_into<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    frame_bytes_max: usize,
    payload: &mut Vec<u8>,
) -> Result<(), ReadFrameError> {
    let mut header = [0u8; HEADER_BYTES];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ReadFrameError::Closed);
        }
        Err(err) => return Err(ReadFrameError::Io(err)),
    }
    read_payload_into(reader, header, frame_bytes_max, payload).await
}

/// Like [`read_frame_into`], for a header already read.
pub async fn read_payload_into<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    header: [u8; HEADER_BYTES],
    frame_bytes_max: usize,
    payload: &mut Vec<u8>,
) -> Result<(), ReadFrameError> {
    let bytes = payload_bytes(header, frame_bytes_max).map_err(ReadFrameError::TooLarge)?;
    payload.clear();
    payload.reserve(bytes.min(READ_STEP_BYTES));
    let read = (&mut *reader)
        .take(bytes as u64)
        .read_to_end(payload)
        .await
        .map_err(ReadFrameError::Io)?;
    if read != bytes {
        return Err(ReadFrameError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// Reads one frame's payload (see [`read_frame_into`]).
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    frame_bytes_max: usize,
) -> Result<Vec<u8>, ReadFrameError> {
    let mut payload = Vec::new();
    read_frame_into(reader, frame_bytes_max, &mut payload).await?;
    Ok(payload)
}

/// Splits complete frames off the front of a receive buffer: the pure core
/// of a connection's reader, for readers that take whatever one `read`
/// brings. Taking a frame costs O(frame), not O(buffer): consumed bytes are
/// only dropped when more arrive.
#[derive(Debug)]
pub struct FrameDecoder {
    frame_bytes_max: usize,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already returned as frames.
    consumed: usize,
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: usize) -> FrameDecoder {
        FrameDecoder {
            frame_bytes_max,
            buffer: Vec::new(),
            consumed: 0,
        }
    }

    /// Adds received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            self.buffer.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame's payload, `Ok(None)` if more bytes are
    /// needed, or an error that must close the connection.
    pub fn next_payload(&mut self) -> Result<Option<Vec<u8>>, FrameTooLarge> {
        Ok(self.next_payload_slice()?.map(<[u8]>::to_vec))
    }

    /// Like [`FrameDecoder::next_payload`], but borrows the payload from
    /// the buffer instead of copying it.
    pub fn next_payload_slice(&mut self) -> Result<Option<&[u8]>, FrameTooLarge> {
        let pending = &self.buffer[self.consumed..];
        let Some(header) = pending.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        let bytes = payload_bytes(*header, self.frame_bytes_max)?;
        if pending.len() < HEADER_BYTES + bytes {
            return Ok(None);
        }
        let start = self.consumed + HEADER_BYTES;
        self.consumed = start + bytes;
        Ok(Some(&self.buffer[start..start + bytes]))
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len() - self.consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_format_is_a_little_endian_length_then_the_payload() {
        assert_eq!(encode_frame(b"abc", 3).unwrap(), b"\x03\0\0\0abc");
        assert_eq!(encode_frame(b"", 0).unwrap(), b"\0\0\0\0");
        assert_eq!(
            encode_frame(b"abcd", 3),
            Err(FrameTooLarge {
                bytes: 4,
                frame_bytes_max: 3
            })
        );
    }

    #[test]
    fn an_oversized_frame_leaves_the_buffer_as_it_was() {
        let mut out = b"kept".to_vec();
        let start = begin_frame(&mut out);
        out.extend_from_slice(&[1; 10]);
        assert!(finish_frame(&mut out, start, 9).is_err());
        assert_eq!(out, b"kept");
    }

    #[test]
    fn lengths_over_the_limit_are_refused_from_the_header_alone() {
        let mut decoder = FrameDecoder::new(16);
        decoder.extend(&u32::MAX.to_le_bytes());
        assert_eq!(
            decoder.next_payload(),
            Err(FrameTooLarge {
                bytes: u32::MAX as usize,
                frame_bytes_max: 16
            })
        );
        assert_eq!(payload_bytes(16u32.to_le_bytes(), 16), Ok(16));
    }

    #[tokio::test]
    async fn streams_read_frames_and_tell_a_clean_end_from_a_cut_one() {
        let mut stream: &[u8] = b"\x02\0\0\0hi\x01\0\0\0!";
        assert_eq!(read_frame(&mut stream, 2).await.unwrap(), b"hi");
        assert_eq!(read_frame(&mut stream, 2).await.unwrap(), b"!");
        assert!(matches!(
            read_frame(&mut stream, 2).await,
            Err(ReadFrameError::Closed)
        ));
        let mut cut: &[u8] = b"\x05\0\0\0abc";
        assert!(matches!(
            read_frame(&mut cut, 8).await,
            Err(ReadFrameError::Io(err)) if err.kind() == io::ErrorKind::UnexpectedEof
        ));
        let mut huge: &[u8] = b"\xff\xff\xff\x7fabc";
        assert!(matches!(
            read_frame(&mut huge, 8).await,
            Err(ReadFrameError::TooLarge(FrameTooLarge {
                bytes: 0x7fff_ffff,
                ..
            }))
        ));
        // Nothing after the header was read.
        assert_eq!(huge, b"abc");
    }

    proptest! {
        #[test]
        fn frames_survive_arbitrary_read_boundaries(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            piece in 1usize..64,
        ) {
            let mut stream = Vec::new();
            for payload in &payloads {
                let start = begin_frame(&mut stream);
                stream.extend_from_slice(payload);
                finish_frame(&mut stream, start, 300).unwrap();
            }
            let mut decoder = FrameDecoder::new(300);
            let mut decoded = Vec::new();
            for chunk in stream.chunks(piece) {
                decoder.extend(chunk);
                while let Some(payload) = decoder.next_payload().unwrap() {
                    decoded.push(payload);
                }
            }
            prop_assert_eq!(decoder.buffered_bytes(), 0);
            prop_assert_eq!(decoded, payloads);
        }
    }
}

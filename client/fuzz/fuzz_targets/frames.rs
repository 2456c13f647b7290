//! A byte stream arriving in arbitrary pieces: the frame decoder must
//! never buffer past its limit, and every payload it yields must decode
//! to a request, a hello, a response or a welcome, or be refused, never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ordo_client::protocol::{FrameDecoder, Hello, Request, Response, Welcome, decode_payload};

const FRAME_BYTES_MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece).max(1);
    let mut decoder = FrameDecoder::new(FRAME_BYTES_MAX);
    for chunk in stream.chunks(piece) {
        decoder.extend(chunk);
        loop {
            match decoder.next_payload_slice() {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= FRAME_BYTES_MAX);
                    let _ = decode_payload::<Request>(payload);
                    let _ = decode_payload::<Hello>(payload).map(|hello| hello.check());
                    let _ = decode_payload::<Response>(payload);
                    let _ = decode_payload::<Welcome>(payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});

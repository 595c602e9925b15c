//! The relay's framing: many TCP connections carried over one byte stream (the relay
//! container's stdin and stdout, through the engine's attach API).
//!
//! Every frame is `kind: u8, connection: u32 BE, length: u32 BE, payload`. Both directions use
//! the same frames; only the agent sends `Open` and `Ready`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest payload one frame carries. Bigger lengths mean the stream is not ours (or is
/// corrupted), so decoding stops there instead of buffering whatever the length says.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;

const HEADER: usize = 9;

/// What the agent says once it listens, so the host knows the protocol matches.
pub(crate) const HELLO: &[u8] = b"glci-relay 1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Agent to host: it listens, speaking [`HELLO`].
    Ready(Bytes),
    /// Agent to host: a job opened connection `conn`.
    Open(u32),
    /// Bytes of `conn`, in order.
    Data(u32, Bytes),
    /// The sender read end-of-file on its socket of `conn`: shut down writing on the other end
    /// (TCP half-close, which HTTP clients use to end a request body).
    Eof(u32),
    /// The receiver wrote this many bytes of `conn` to its socket: the sender may send as many
    /// more (the per-connection window, see `mux`).
    Ack(u32, u32),
    /// `conn` is gone (connect refused, socket error): drop it at once.
    Reset(u32),
}

impl Frame {
    const READY: u8 = 0;
    const OPEN: u8 = 1;
    const DATA: u8 = 2;
    const EOF: u8 = 3;
    const ACK: u8 = 4;
    const RESET: u8 = 5;

    /// Appends the frame's bytes to `out`.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let (kind, conn, payload): (u8, u32, &[u8]) = match self {
            Frame::Ready(hello) => (Self::READY, 0, hello),
            Frame::Open(c) => (Self::OPEN, *c, &[]),
            Frame::Data(c, data) => (Self::DATA, *c, data),
            Frame::Eof(c) => (Self::EOF, *c, &[]),
            Frame::Ack(c, _) => (Self::ACK, *c, &[]),
            Frame::Reset(c) => (Self::RESET, *c, &[]),
        };
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        out.reserve(HEADER + payload.len() + 4);
        out.put_u8(kind);
        out.put_u32(conn);
        if let Frame::Ack(_, n) = self {
            out.put_u32(4);
            out.put_u32(*n);
        } else {
            out.put_u32(payload.len() as u32);
            out.put_slice(payload);
        }
    }
}

/// Why a stream cannot be decoded any further.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("relay stream: unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("relay stream: frame of {0} bytes is larger than {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("relay stream: malformed acknowledgement")]
    BadAck,
}

/// Turns bytes, as they arrive in chunks of any size, into frames.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until more bytes arrive.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let conn = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        let len = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        if !(Frame::READY..=Frame::RESET).contains(&kind) {
            return Err(FrameError::UnknownKind(kind));
        }
        if self.buf.len() < HEADER + len {
            self.buf.reserve(HEADER + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(HEADER);
        let mut payload = self.buf.split_to(len).freeze();
        Ok(Some(match kind {
            Frame::READY => Frame::Ready(payload),
            Frame::OPEN => Frame::Open(conn),
            Frame::DATA => Frame::Data(conn, payload),
            Frame::EOF => Frame::Eof(conn),
            Frame::ACK => {
                if payload.len() != 4 {
                    return Err(FrameError::BadAck);
                }
                Frame::Ack(conn, payload.get_u32())
            }
            _ => Frame::Reset(conn),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_any_chunking() {
        let frames = vec![
            Frame::Ready(Bytes::from_static(HELLO)),
            Frame::Open(7),
            Frame::Data(7, Bytes::from(vec![1u8; 70_000 / 2])),
            Frame::Ack(7, 35_000),
            Frame::Eof(7),
            Frame::Reset(9),
            Frame::Data(9, Bytes::new()),
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        for chunk in [1, 2, 9, 10, 4096, wire.len()] {
            let mut dec = Decoder::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                dec.push(piece);
                while let Some(f) = dec.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, frames, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_stream_that_is_not_ours_stops_decoding() {
        let mut dec = Decoder::default();
        dec.push(b"HTTP/1.1 200 OK\r\n");
        assert!(dec.next_frame().is_err());
        let mut dec = Decoder::default();
        dec.push(&[2, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            dec.next_frame(),
            Err(FrameError::TooLarge(u32::MAX as usize))
        );
    }
}

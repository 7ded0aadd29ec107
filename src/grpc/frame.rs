//! gRPC length-prefixed messages (gRPC over HTTP/2, "Length-Prefixed-Message"):
//! a compressed flag byte, a 32-bit big-endian length, the message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::GrpcError;

const HEADER: usize = 5;

/// The one message of a unary or server-streaming request body, which must
/// hold exactly one uncompressed message of at most `limit` bytes.
pub fn single(body: &[u8], limit: usize) -> Result<&[u8], GrpcError> {
    let (len, start) = header(body, limit)?.ok_or(GrpcError::MalformedFrame(
        "the request holds no complete message",
    ))?;
    if body.len() != start + len {
        return Err(GrpcError::MalformedFrame(
            "the request holds more than one message",
        ));
    }
    Ok(&body[start..])
}

/// `message` with its length prefix, uncompressed.
pub fn encode(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(HEADER + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    // Encoding into a buffer reserved for `encoded_len` bytes cannot fail.
    let _ = message.encode(&mut out);
    out.freeze()
}

/// An already-encoded message with its length prefix, uncompressed.
pub fn encode_raw(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

/// Splits a byte stream into messages as they complete.
#[derive(Debug)]
pub struct Deframer {
    buffer: BytesMut,
    limit: usize,
}

impl Deframer {
    pub fn new(limit: usize) -> Deframer {
        Deframer {
            buffer: BytesMut::new(),
            limit,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buffer.extend_from_slice(chunk);
    }

    /// The next complete message, `None` until one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, GrpcError> {
        let Some((len, start)) = header(&self.buffer, self.limit)? else {
            return Ok(None);
        };
        self.buffer.advance(start);
        Ok(Some(self.buffer.split_to(len).freeze()))
    }

    /// True when bytes of an unfinished message are buffered.
    pub fn is_partial(&self) -> bool {
        !self.buffer.is_empty()
    }
}

/// Length and offset of the first message in `bytes`, once complete.
fn header(bytes: &[u8], limit: usize) -> Result<Option<(usize, usize)>, GrpcError> {
    let Some(head) = bytes.get(..HEADER) else {
        return Ok(None);
    };
    match head[0] {
        0 => {}
        // Compression is never negotiated: firegate re-encodes every
        // message it judges, and advertises no `grpc-accept-encoding`.
        1 => return Err(GrpcError::CompressedMessage),
        _ => return Err(GrpcError::MalformedFrame("unknown flag")),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > limit {
        return Err(GrpcError::MessageTooLarge { limit });
    }
    Ok((bytes.len() >= HEADER + len).then_some((len, HEADER)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(flag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn one_message_is_unwrapped() {
        assert_eq!(single(&framed(0, b"abc"), 10), Ok(&b"abc"[..]));
        assert_eq!(single(&framed(0, b""), 10), Ok(&b""[..]));
    }

    #[test]
    fn anything_but_one_plain_message_is_refused() {
        let two = [framed(0, b"a"), framed(0, b"b")].concat();
        let cases: [(&[u8], &str); 6] = [
            (b"", "grpc_malformed_frame"),
            (&[0, 0, 0, 0, 3, b'a'], "grpc_malformed_frame"),
            (&two, "grpc_malformed_frame"),
            (&framed(1, b"abc"), "grpc_compressed_message"),
            (&framed(7, b"abc"), "grpc_malformed_frame"),
            (&framed(0, &[0; 11]), "grpc_message_too_large"),
        ];
        for (body, reason) in cases {
            assert_eq!(single(body, 10).map_err(|e| e.reason()), Err(reason));
        }
    }

    #[test]
    fn a_stream_yields_messages_as_they_complete() {
        let bytes = [framed(0, b"one"), framed(0, b"two")].concat();
        let mut d = Deframer::new(100);
        d.push(&bytes[..6]);
        assert_eq!(d.next_message(), Ok(None));
        d.push(&bytes[6..]);
        assert_eq!(d.next_message(), Ok(Some(Bytes::from_static(b"one"))));
        assert_eq!(d.next_message(), Ok(Some(Bytes::from_static(b"two"))));
        assert_eq!(d.next_message(), Ok(None));
        assert!(!d.is_partial());
    }
}

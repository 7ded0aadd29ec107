//! The one rustls crypto provider firegate uses, for the listener and the
//! upstream client alike, and the hex form digests and ids are written in.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// aws-lc-rs, passed explicitly so no process-wide default is ever consulted.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Lower-case hex of `bytes`: a table lookup per byte (`hex::encode` goes
/// through a `char` iterator, and this runs for every request's id and
/// every audit line's hash).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.extend_from_slice(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]);
    }
    // Hex digits are ASCII: this is never the empty fallback.
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_lower_is_hex_encode() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::hex_lower(&bytes), hex::encode(&bytes));
        assert_eq!(super::hex_lower(&[]), "");
        assert_eq!(super::hex_lower(&[0x0a, 0xf0]), "0af0");
    }
}

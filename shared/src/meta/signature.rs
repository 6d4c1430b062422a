//! `X-Hub-Signature-256: sha256=<hex>`: HMAC-SHA256 of the raw body, keyed
//! by the app secret (B21), checked in constant time before any parsing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 must be sha256=<64 hex digits>")]
    Malformed,
    #[error("signature does not match the body")]
    Mismatch,
}

/// The header value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `header` against the raw `body` bytes.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNICODE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/meta/inbound-unicode.json"
    ));

    #[test]
    fn b21_signature_round_trips_over_raw_unicode_bytes() {
        let header = sign(b"app-secret", UNICODE);
        assert_eq!(verify(b"app-secret", UNICODE, Some(&header)), Ok(()));
        // Uppercase hex is the same digest.
        let upper = format!("sha256={}", header[7..].to_uppercase());
        assert_eq!(verify(b"app-secret", UNICODE, Some(&upper)), Ok(()));
    }

    #[test]
    fn b21_rejects_missing_malformed_and_wrong_signatures() {
        let body = b"{}";
        assert_eq!(verify(b"s", body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"s", body, Some("sha1=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"s", body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"s", body, Some(&format!("sha256={}", "g".repeat(64)))),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"other", body, Some(&sign(b"s", body))),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s", b"{ }", Some(&sign(b"s", body))),
            Err(SignatureError::Mismatch)
        );
    }
}

//! HS256 tokens accepted by the local API (B51).

use serde_json::json;

/// A token for `subject` with `scopes`, expiring `expires_in` seconds from
/// now (negative: already expired), signed with `secret`.
pub fn mint(subject: &str, scopes: &[&str], expires_in: i64, secret: &[u8]) -> String {
    let exp = chrono::Utc::now().timestamp() + expires_in;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": subject, "scope": scopes.join(" "), "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap_or_default()
}

//! Keyset cursors shared by the paginated lists: a timestamp and a row id,
//! opaque to clients (URL-safe base64).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The cursor after the row at (`at`, `id`).
pub fn encode_cursor(at: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{id}", at.to_rfc3339()))
}

/// The position a cursor names; `None` for anything this API did not issue.
pub fn decode_cursor(text: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((
        DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc),
        id.parse().ok()?,
    ))
}

//! Signed, expiring acknowledge links: `{public_url}/ack/{token}`, where
//! the token is the incident id and an expiry signed with HMAC-SHA256
//! under the aggregator's ack key. Whoever holds a link (it went to the
//! check's channels) may acknowledge that one incident until it expires;
//! an altered or expired token is refused. Pure: the time comes in.
//!
//! Token layout, base64url without padding: 16 bytes of incident id, 8 of
//! expiry (Unix seconds, big-endian), 32 of HMAC over the first 24.

use base64::Engine;
use chrono::{DateTime, Utc};
use uuid::Uuid;

const SIGNED_BYTES: usize = 24;
const MAC_BYTES: usize = 32;
/// The longest token text: 56 bytes in base64url.
pub const TOKEN_CHARS_MAX: usize = 80;

/// The key acknowledge links are signed with.
#[derive(Clone)]
pub struct AckKey(ring::hmac::Key);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(****)")
    }
}

impl AckKey {
    pub fn new(secret: &[u8]) -> AckKey {
        AckKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// A token for `incident`, good until `expires`.
    pub fn sign(&self, incident: Uuid, expires: DateTime<Utc>) -> String {
        let mut bytes = Vec::with_capacity(SIGNED_BYTES + MAC_BYTES);
        bytes.extend_from_slice(incident.as_bytes());
        bytes.extend_from_slice(&expires.timestamp().to_be_bytes());
        let mac = ring::hmac::sign(&self.0, &bytes);
        bytes.extend_from_slice(mac.as_ref());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The incident a token acknowledges, if it is ours, unaltered and not
    /// expired at `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Verified, LinkRefused> {
        if token.len() > TOKEN_CHARS_MAX {
            return Err(LinkRefused::Malformed);
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| LinkRefused::Malformed)?;
        if bytes.len() != SIGNED_BYTES + MAC_BYTES {
            return Err(LinkRefused::Malformed);
        }
        let (signed, mac) = bytes.split_at(SIGNED_BYTES);
        ring::hmac::verify(&self.0, signed, mac).map_err(|_| LinkRefused::Forged)?;
        let (id, expiry) = signed.split_at(16);
        let incident = Uuid::from_slice(id).map_err(|_| LinkRefused::Malformed)?;
        let mut secs = [0u8; 8];
        secs.copy_from_slice(expiry);
        let expires = DateTime::<Utc>::from_timestamp(i64::from_be_bytes(secs), 0)
            .ok_or(LinkRefused::Malformed)?;
        if now >= expires {
            return Err(LinkRefused::Expired);
        }
        Ok(Verified { incident, expires })
    }
}

/// What a good token says.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub incident: Uuid,
    pub expires: DateTime<Utc>,
}

/// Why a link is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    #[error("this is not an acknowledge link")]
    Malformed,
    #[error("this acknowledge link was not made by this Lookout or was altered")]
    Forged,
    #[error("this acknowledge link has expired")]
    Expired,
}

/// The acknowledge link of `incident` under `public_url`, good until
/// `expires`.
pub fn link(
    public_url: &url::Url,
    key: &AckKey,
    incident: Uuid,
    expires: DateTime<Utc>,
) -> Option<String> {
    public_url
        .join(&format!("ack/{}", key.sign(incident, expires)))
        .ok()
        .map(|u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn tokens_verify_until_they_expire_and_not_once_altered() {
        let key = AckKey::new(b"0123456789abcdef0123456789abcdef");
        let incident = Uuid::from_u128(42);
        let token = key.sign(incident, t(100));
        assert_eq!(key.verify(&token, t(99)).map(|v| v.incident), Ok(incident));
        assert_eq!(key.verify(&token, t(100)), Err(LinkRefused::Expired));
        // Another key, or any character changed, is refused.
        let other = AckKey::new(b"another key entirely, 32 bytes..");
        assert_eq!(other.verify(&token, t(0)), Err(LinkRefused::Forged));
        for i in 0..token.len() {
            let mut altered: Vec<u8> = token.clone().into_bytes();
            altered[i] = if altered[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(altered).unwrap_or_default();
            assert!(key.verify(&altered, t(0)).is_err(), "altered at {i}");
        }
        // A later expiry cannot be grafted on.
        let later = key.sign(incident, t(10_000));
        let graft = format!("{}{}", &later[..32], &token[32..]);
        assert!(key.verify(&graft, t(200)).is_err());
        for junk in ["", "!!!", "AAAA", &"A".repeat(TOKEN_CHARS_MAX + 1)] {
            assert_eq!(
                key.verify(junk, t(0)),
                Err(LinkRefused::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn links_sit_under_the_public_url() {
        let key = AckKey::new(b"k");
        let base = url::Url::parse("https://status.example.com/lookout/").ok();
        let link = base.and_then(|b| link(&b, &key, Uuid::from_u128(1), t(5)));
        assert!(link.is_some_and(|l| l.starts_with("https://status.example.com/lookout/ack/")));
    }
}

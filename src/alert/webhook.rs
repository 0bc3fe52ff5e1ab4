//! Webhook delivery: one POST per attempt, signed, with a delivery id that is
//! the same on every retry so receivers can drop duplicates (DESIGN.md,
//! "Webhook delivery").
//!
//! Signature: `X-Lookout-Signature: sha256=<hex of HMAC-SHA256(secret,
//! timestamp + "." + body)>` with `X-Lookout-Timestamp` in unix seconds, so a
//! receiver can refuse replays outside its own tolerance window.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use uuid::Uuid;

use super::{AlertEvent, DeliveryError, format};
use crate::config::WebhookChannel;
use crate::limits;

/// The HMAC-SHA256 signature header value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// A client for webhooks: no redirects (a redirect would replay the body to
/// a place nobody configured), bounded time.
pub fn client() -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(limits::ALERT_SEND_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the webhook client: {e}"))
}

/// Sends `event` to `channel` once.
/// Sends `events` (one, or several folded by a `group_window`) to `channel`
/// once, as delivery `delivery`.
pub async fn send(
    client: &reqwest::Client,
    channel: &WebhookChannel,
    events: &[AlertEvent],
    delivery: Uuid,
) -> Result<(), DeliveryError> {
    let body = serde_json::to_vec(&format::webhook_group_body(channel.format, events, channel))
        .map_err(|e| DeliveryError::Permanent {
            reason: format!("cannot encode the payload: {e}"),
        })?;
    let kind = match events {
        [single] => single.event.as_str(),
        _ => "group",
    };
    let timestamp = Utc::now().timestamp();
    let mut request = client
        .post(channel.url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, format!("Lookout/{}", env!("CARGO_PKG_VERSION")))
        .header("X-Lookout-Delivery", delivery.to_string())
        .header("X-Lookout-Timestamp", timestamp.to_string())
        .header("X-Lookout-Event", kind);
    if let Some(secret) = &channel.secret {
        request = request.header("X-Lookout-Signature", signature(secret, timestamp, &body));
    }
    for (name, value) in &channel.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.body(body).send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else {
            "could not connect"
        };
        DeliveryError::Retryable {
            reason: format!("webhook {what}: {}", innermost(&e)),
            retry_after: None,
        }
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let reason = format!("webhook answered {status}");
    if status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
    {
        Err(DeliveryError::Retryable {
            reason,
            retry_after,
        })
    } else {
        Err(DeliveryError::Permanent { reason })
    }
}

/// `Retry-After` as seconds or an HTTP date, bounded so a receiver cannot
/// park an alert forever.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let wait = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
            (at.with_timezone(&Utc) - Utc::now())
                .to_std()
                .unwrap_or_default()
        }
    };
    Some(wait.min(limits::ALERT_RETRY_AFTER_MAX))
}

fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = error;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently (Python's hmac module):
        // hmac.new(b"s3cret", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("s3cret", 1_700_000_000, b"{}"),
            "sha256=97926816e98fbb41ccb1673225ff29a2f35369099990e1b1561651e7bd097ebf"
        );
        assert_ne!(
            signature("s3cret", 1_700_000_001, b"{}"),
            signature("s3cret", 1_700_000_000, b"{}")
        );
    }

    #[test]
    fn retry_after_in_seconds_or_a_date_and_bounded() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("999999999"),
            Some(limits::ALERT_RETRY_AFTER_MAX)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}

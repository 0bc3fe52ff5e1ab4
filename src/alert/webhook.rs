//! Webhook delivery: one POST per attempt, signed, with a delivery id that is
//! the same on every retry so receivers can drop duplicates (DESIGN.md,
//! "Webhook delivery"). `format: alertmanager` posts to every URL's
//! `/api/v2/alerts`; `format: template` sends the request its templates
//! render (`alert::template`), with the same headers and answer handling.
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
use crate::config::{WebhookChannel, WebhookFormat};
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

/// Sends `events` (one, or several folded by a `group_window`) to `channel`
/// once, as delivery `delivery`: a POST of the format's body to the URL, to
/// every Alertmanager for `format: alertmanager`, or the request the
/// templates render for `format: template`.
pub async fn send(
    client: &reqwest::Client,
    channel: &WebhookChannel,
    events: &[AlertEvent],
    delivery: Uuid,
) -> Result<(), DeliveryError> {
    let kind = match events {
        [single] => single.event.as_str(),
        _ => "group",
    };
    if channel.format == WebhookFormat::Template {
        let Some(template) = &channel.template else {
            return Err(DeliveryError::Permanent {
                reason: "the channel has no templates".to_string(),
            });
        };
        let Some(request) = super::template::render(template, events)
            .map_err(|reason| DeliveryError::Permanent { reason })?
        else {
            // `lookout alert test` must not report a message nobody got.
            if kind == "test" {
                return Err(DeliveryError::Permanent {
                    reason: "the channel's `body` has no template for `test` events (nor a `default`); nothing was sent".to_string(),
                });
            }
            // No body for this kind of event: the channel does not want it.
            tracing::debug!(kind, "no template body for this event; not sent");
            return Ok(());
        };
        return post(
            client,
            channel,
            Outgoing {
                method: request.method,
                url: request.url,
                headers: request.headers,
                body: request.body.map(String::into_bytes),
                content_type: None,
            },
            delivery,
            kind,
        )
        .await;
    }
    let body = serde_json::to_vec(&format::webhook_group_body(channel.format, events, channel))
        .map_err(|e| DeliveryError::Permanent {
            reason: format!("cannot encode the payload: {e}"),
        })?;
    let targets: Vec<reqwest::Url> = if channel.format == WebhookFormat::Alertmanager {
        channel.urls.iter().map(alertmanager_route).collect()
    } else {
        vec![channel.url.clone()]
    };
    // An Alertmanager HA cluster gets each alert at every member; a retry
    // resends to all of them (Alertmanager takes the same alert twice as one).
    let mut failures = Vec::new();
    let members = targets.len();
    for url in targets {
        let outgoing = Outgoing {
            method: reqwest::Method::POST,
            url,
            headers: channel.headers.clone(),
            body: Some(body.clone()),
            content_type: Some("application/json"),
        };
        if let Err(error) = post(client, channel, outgoing, delivery, kind).await {
            failures.push(error);
        }
    }
    // One member that took it notifies (the cluster deduplicates
    // notifications, not alerts); the resend brings the others along.
    if members > 1 && failures.len() < members {
        for failure in &failures {
            tracing::warn!(reason = %failure, "an Alertmanager did not take the alert; the others did, and the resend tries it again");
        }
        return Ok(());
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        _ => {
            let retryable = failures
                .iter()
                .any(|f| matches!(f, DeliveryError::Retryable { .. }));
            let reason = failures
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            Err(if retryable {
                DeliveryError::Retryable {
                    reason,
                    retry_after: None,
                }
            } else {
                DeliveryError::Permanent { reason }
            })
        }
    }
}

/// Alertmanager's alerts route under `url`: `url` itself when it names it,
/// else `api/v2/alerts` under the base URL (a path prefix such as
/// `/alertmanager/` kept).
pub fn alertmanager_route(url: &reqwest::Url) -> reqwest::Url {
    if url.path().trim_end_matches('/').ends_with("/api/v2/alerts") {
        return url.clone();
    }
    let mut base = url.clone();
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("api/v2/alerts").unwrap_or_else(|_| url.clone())
}

/// One request, as `post` sends it.
struct Outgoing {
    method: reqwest::Method,
    url: reqwest::Url,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// Set unless the headers say (templates set their own).
    content_type: Option<&'static str>,
}

/// Sends one request with Lookout's delivery headers (and signature), and
/// sorts the answer into success, retryable or permanent.
async fn post(
    client: &reqwest::Client,
    channel: &WebhookChannel,
    outgoing: Outgoing,
    delivery: Uuid,
    kind: &str,
) -> Result<(), DeliveryError> {
    let timestamp = Utc::now().timestamp();
    let body = outgoing.body.unwrap_or_default();
    let mut request = client
        .request(outgoing.method, outgoing.url)
        .header(USER_AGENT, format!("Lookout/{}", env!("CARGO_PKG_VERSION")))
        .header("X-Lookout-Delivery", delivery.to_string())
        .header("X-Lookout-Timestamp", timestamp.to_string())
        .header("X-Lookout-Event", kind);
    if let Some(content_type) = outgoing.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(secret) = &channel.secret {
        request = request.header("X-Lookout-Signature", signature(secret, timestamp, &body));
    }
    for (name, value) in &outgoing.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if !body.is_empty() {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| {
        let what = if e.is_builder() {
            "request is invalid"
        } else if e.is_timeout() {
            "timed out"
        } else {
            "could not connect"
        };
        if e.is_builder() {
            return DeliveryError::Permanent {
                reason: format!("webhook {what}: {}", innermost(&e)),
            };
        }
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
    fn alertmanager_route_from_a_base_or_the_full_route() {
        let route = |u: &str| {
            reqwest::Url::parse(u)
                .map(|u| alertmanager_route(&u).to_string())
                .unwrap_or_default()
        };
        assert_eq!(route("http://am:9093"), "http://am:9093/api/v2/alerts");
        assert_eq!(route("http://am:9093/"), "http://am:9093/api/v2/alerts");
        assert_eq!(
            route("http://h/alertmanager"),
            "http://h/alertmanager/api/v2/alerts"
        );
        assert_eq!(
            route("http://am:9093/api/v2/alerts"),
            "http://am:9093/api/v2/alerts"
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

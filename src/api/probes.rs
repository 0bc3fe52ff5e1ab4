//! The aggregator's routes for remote probes (DESIGN.md): the check specs of
//! a region, long-polled; the checks it should run now; and result batches.
//!
//! Every route takes a probe token (`Authorization: Bearer T`). A token is
//! bound to its region: asking for another region's specs, or posting
//! results stamped with another region, is refused with 403; a missing or
//! unknown token with 401, from the headers, before a byte of a body is
//! kept. Bodies are bounded (`limits`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::shared::{ApiState, discard_body, read_body};
use crate::aggregator::Aggregator;
use crate::limits;
use crate::transport::{ResultBatch, RunNow};

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/v1/probe/checks", get(specs))
        .route("/api/v1/probe/run-now", get(run_now))
        // The body is read by the handler, after the token, bounded by
        // RESULTS_BODY_BYTES_MAX (api::read_body).
        .route("/api/v1/results", post(results))
}

#[derive(Deserialize)]
struct RegionQuery {
    region: Option<String>,
    /// Seconds to hold the request open waiting for news (long-poll).
    wait: Option<u64>,
}

impl RegionQuery {
    fn wait(&self) -> Duration {
        Duration::from_secs(self.wait.unwrap_or(0)).min(limits::PROBE_LONG_POLL_MAX)
    }
}

/// Why a probe request is refused.
enum Refusal {
    /// No token, or one of no region.
    Unauthorized,
    /// The token belongs to another region than the one asked for.
    WrongRegion { token_region: String, asked: String },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => {
                tracing::debug!("probe request with a missing or unknown token");
                let mut response = (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({ "error": "a probe token is required (Authorization: Bearer ...), one of probes.yaml" })),
                )
                    .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"lookout probes\""),
                );
                response
            }
            Refusal::WrongRegion {
                token_region,
                asked,
            } => {
                tracing::warn!(
                    token_region,
                    asked,
                    "a probe asked for another region than its token's; refused"
                );
                (
                    StatusCode::FORBIDDEN,
                    Json(json!({
                        "error": format!("this token belongs to region `{token_region}`, not `{asked}`")
                    })),
                )
                    .into_response()
            }
        }
    }
}

/// The spool backlog a probe reports (`uplink::SPOOL_PENDING_HEADER`).
fn spool_pending(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(crate::uplink::SPOOL_PENDING_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The region the request's token belongs to.
fn authenticate(aggregator: &Aggregator, headers: &HeaderMap) -> Result<String, Refusal> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    aggregator
        .hub()
        .authenticate(token)
        .ok_or(Refusal::Unauthorized)
}

/// The token's region, checked against `?region=` when given.
fn region_of(
    aggregator: &Aggregator,
    headers: &HeaderMap,
    query: &RegionQuery,
) -> Result<String, Refusal> {
    let region = authenticate(aggregator, headers)?;
    match &query.region {
        Some(asked) if *asked != region => Err(Refusal::WrongRegion {
            token_region: region,
            asked: asked.clone(),
        }),
        _ => Ok(region),
    }
}

/// A long-poll's probe: its token's region (checked against `?region=`),
/// noted as in contact, with the spool backlog it reports.
fn contact(
    aggregator: &Aggregator,
    headers: &HeaderMap,
    query: &RegionQuery,
) -> Result<String, Refusal> {
    let region = region_of(aggregator, headers, query)?;
    aggregator.note_probe_contact(&region, spool_pending(headers));
    Ok(region)
}

/// `GET /api/v1/probe/checks?region=R[&wait=S]`: the region's check specs.
/// With `If-None-Match` naming the current version, waits up to `wait`
/// seconds for a change and answers 304 if none came.
async fn specs(
    State(aggregator): State<Arc<Aggregator>>,
    headers: HeaderMap,
    Query(query): Query<RegionQuery>,
) -> Response {
    let region = match contact(&aggregator, &headers, &query) {
        Ok(region) => region,
        Err(refused) => return refused.into_response(),
    };
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_string());
    let mut changes = aggregator.hub().subscribe();
    let deadline = tokio::time::Instant::now() + query.wait();
    loop {
        let Some(current) = aggregator.hub().specs(&region) else {
            // The token's region was just removed by a reload.
            return (
                StatusCode::FORBIDDEN,
                Json(json!({ "error": format!("region `{region}` is no longer in probes.yaml") })),
            )
                .into_response();
        };
        if known.as_deref() != Some(current.version.as_str()) {
            let etag = HeaderValue::from_str(&format!("\"{}\"", current.version))
                .unwrap_or(HeaderValue::from_static("\"\""));
            return (
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                    (header::ETAG, etag),
                ],
                current.body.clone(),
            )
                .into_response();
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => continue,
            _ => return StatusCode::NOT_MODIFIED.into_response(),
        }
    }
}

/// `GET /api/v1/probe/run-now?region=R[&wait=S]`: the checks the aggregator
/// wants run at once (to confirm a failure or a recovery seen elsewhere).
async fn run_now(
    State(aggregator): State<Arc<Aggregator>>,
    headers: HeaderMap,
    Query(query): Query<RegionQuery>,
) -> Response {
    let region = match contact(&aggregator, &headers, &query) {
        Ok(region) => region,
        Err(refused) => return refused.into_response(),
    };
    let checks = aggregator.hub().take_run_now(&region, query.wait()).await;
    Json(RunNow { run_now: checks }).into_response()
}

/// `POST /api/v1/results`: a batch `{"results": [...], "sent_at": ...}`.
/// Every result must carry the token's region. Idempotent by result id
/// (on SQLite, by the run: check, region, millisecond; see `ResultKey`).
/// The token is checked from the headers before a byte of the body is
/// read: an unauthenticated upload is answered 401 and costs no memory.
async fn results(
    State(aggregator): State<Arc<Aggregator>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let region = match authenticate(&aggregator, &headers) {
        Ok(region) => region,
        Err(refused) => {
            discard_body(body);
            return refused.into_response();
        }
    };
    let body = match read_body(&headers, body, limits::RESULTS_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    aggregator.note_probe_contact(&region, spool_pending(&headers));
    let received_at = aggregator.clock().now();
    let batch: ResultBatch = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": format!("not a result batch: {error}") })),
            )
                .into_response();
        }
    };
    if batch.results.len() > limits::RESULT_BATCH_MAX * limits::SPOOL_DRAIN_FILES_MAX {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "error": "too many results in one batch" })),
        )
            .into_response();
    }
    let (results, skew) = match batch.on_clock_of(received_at) {
        Ok(admitted) => admitted,
        Err(error) => {
            tracing::warn!(%region, %error, "refused a result batch");
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": error.to_string(), "field": error.field })),
            )
                .into_response();
        }
    };
    // After admission, so the name echoed back is bounded.
    if let Some(other) = results.iter().find(|r| r.region != region) {
        return Refusal::WrongRegion {
            token_region: region,
            asked: other.region.clone(),
        }
        .into_response();
    }
    match aggregator.ingest_from_probe(&region, results, skew).await {
        Ok(report) => Json(json!({
            "accepted": report.accepted,
            "duplicates": report.duplicates,
            "refused": report.refused,
        }))
        .into_response(),
        Err(error) => {
            tracing::error!(%error, "storing a result batch failed; the probe will resend it");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "storage is failing; send again later" })),
            )
                .into_response()
        }
    }
}

//! The aggregator's HTTP surface (DESIGN.md, "HTTP surface of the aggregator"):
//! the JSON API and `/health`. Handlers only translate between HTTP and the
//! `Aggregator`; they hold no state of their own.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::aggregator::Aggregator;
use crate::alert::silence::NewSilence;
use crate::heartbeat::Ping;
use crate::limits;
use crate::storage::DeliveryState;

mod acks;
mod announcements;
mod history;
mod probes;
mod rendered;
mod shared;
mod status_page;

pub use shared::{ApiState, BodyError, discard_body, read_body};

/// Every route of the aggregator. `probe_routes`: the routes of remote
/// probes (`probes.rs`), for the `aggregator` with its probes file; a mode
/// without remote probes does not have them at all (404), so nothing there
/// can be reached, authenticated or not.
pub fn router(
    aggregator: Arc<Aggregator>,
    admin_token: Option<String>,
    probe_routes: bool,
) -> Router {
    let metrics = aggregator.metrics().clone();
    let state = ApiState {
        aggregator,
        admin_token: admin_token.map(Arc::from),
        rendered: Arc::default(),
    };
    let routes = Router::new()
        .route("/health", get(health))
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/checks/{name}/results", get(check_results))
        .route("/api/v1/checks/{name}/events", get(check_events))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route(
            "/api/v1/silences/{id}",
            axum::routing::delete(delete_silence),
        )
        .route("/ping/{token}", get(ping).post(ping))
        .route("/ping/{token}/{action}", get(ping_action).post(ping_action))
        .route("/api/v1/probes", get(list_probes))
        .route("/api/v1/aggregators", get(list_aggregators))
        .route(
            "/api/v1/incidents/{id}/ack",
            axum::routing::post(acks::by_api),
        )
        .route("/ack/{token}", get(acks::confirm).post(acks::acknowledge))
        .route("/metrics", get(scrape))
        // The page, its JSON, feed, badges and announcements: behind
        // `status_page.access`.
        .merge(status_page::routes(state.clone()));
    let routes = if probe_routes {
        routes.merge(probes::routes())
    } else {
        routes
    };
    routes
        .layer(axum::extract::DefaultBodyLimit::max(
            limits::API_BODY_BYTES_MAX,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits::API_REQUEST_TIMEOUT,
        ))
        // The status page and its JSON are megabytes for a large fleet, and
        // compress tenfold; images (screenshots) are left as they are.
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track_http,
        ))
        .with_state(state)
}

#[derive(Deserialize)]
struct PageQuery {
    refresh: Option<u64>,
    /// One group's checks (#19: a large page shows groups rolled up).
    group: Option<String>,
    /// `failing`: only the checks down or degraded.
    status: Option<String>,
    /// 1-based page of check cards.
    page: Option<usize>,
}

impl PageQuery {
    fn refresh(&self) -> Option<u64> {
        self.refresh
            .map(|r| r.clamp(limits::STATUS_REFRESH_MIN, limits::STATUS_REFRESH_MAX))
    }
}

/// `GET /api/v1/status`: every figure of the status page, as JSON, encoded
/// and gzipped once per report (`rendered.rs`).
async fn status_json(
    State(aggregator): State<Arc<Aggregator>>,
    State(cache): State<Arc<rendered::RenderCache>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let report = match aggregator.status_report().await {
        Ok(report) => report,
        Err(error) => return storage_failure(error),
    };
    let config = aggregator.config();
    let written = report.clone();
    let body = cache
        .get_or_render(
            rendered::Kind::Json,
            "",
            (&report, &config, 0),
            move |out: &mut dyn std::io::Write| {
                serde_json::to_writer(out, written.as_ref()).map_err(|e| e.to_string())
            },
        )
        .await;
    let private = !matches!(config.page.access, crate::config::page::PageAccess::Public);
    match body {
        Ok(body) => body.respond(&headers, private),
        Err(error) => {
            tracing::error!(%error, "cannot render the status JSON");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /api/v1/status/{name}`: one check's figures and incidents.
async fn check_status_json(
    State(aggregator): State<Arc<Aggregator>>,
    Path(name): Path<String>,
) -> Response {
    match one_check(&aggregator, &name).await {
        Ok(Some(report)) => Json(report).into_response(),
        Ok(None) => not_found(&name),
        Err(error) => storage_failure(error),
    }
}

/// The report narrowed to the shown check `name` (`None`: no such check,
/// or hidden from the status page).
async fn one_check(
    aggregator: &Aggregator,
    name: &str,
) -> Result<Option<crate::status::StatusReport>, crate::storage::StorageError> {
    let report = aggregator.status_report().await?;
    let Some(check) = report.checks.iter().find(|c| c.name == name) else {
        return Ok(None);
    };
    Ok(Some(crate::status::StatusReport {
        checks: vec![check.clone()],
        incidents: report
            .incidents
            .iter()
            .filter(|i| i.check == name)
            .cloned()
            .collect(),
        counts: report.counts.clone(),
        groups: Vec::new(),
        ..*report
    }))
}

/// `GET /metrics`: Prometheus text (OpenMetrics when asked for); in parts
/// with `?part=lookout`, `?shard=K/N` or `?check=NAME` (`metrics/parts.rs`).
async fn scrape(
    State(aggregator): State<Arc<Aggregator>>,
    headers: axum::http::HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Some(refused) = status_page::metrics_refused(&aggregator, &headers) {
        return refused;
    }
    let scope = match crate::metrics::Scope::from_query(query.as_deref()) {
        Ok(scope) => scope,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("{error}\n")).into_response(),
    };
    let snapshot = aggregator.metrics_snapshot(&scope).await;
    match aggregator.metrics().encode_part(&snapshot, &scope) {
        Ok(text) => crate::metrics::respond(text, headers.get(axum::http::header::ACCEPT)),
        Err(error) => {
            tracing::error!(%error, "cannot encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

async fn list_checks(State(aggregator): State<Arc<Aggregator>>) -> Json<serde_json::Value> {
    Json(json!({ "checks": aggregator.views().await }))
}

#[derive(Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

impl LimitQuery {
    fn get(&self) -> usize {
        self.limit
            .unwrap_or(limits::API_RESULTS_LIMIT_DEFAULT)
            .clamp(1, limits::API_RESULTS_LIMIT_MAX)
    }
}

async fn check_results(
    State(aggregator): State<Arc<Aggregator>>,
    Path(name): Path<String>,
    Query(query): Query<LimitQuery>,
) -> Response {
    if aggregator.config().check(&name).is_none() {
        return not_found(&name);
    }
    match aggregator
        .history()
        .recent_results(name.clone(), query.get())
        .await
    {
        Ok(results) => Json(json!({ "check": name, "results": results })).into_response(),
        Err(error) => storage_failure(error),
    }
}

async fn check_events(
    State(aggregator): State<Arc<Aggregator>>,
    Path(name): Path<String>,
    Query(query): Query<LimitQuery>,
) -> Response {
    if aggregator.config().check(&name).is_none() {
        return not_found(&name);
    }
    match aggregator.recent_events(&name, query.get()).await {
        Ok(events) => Json(json!({ "check": name, "events": events })).into_response(),
        Err(error) => storage_failure(error),
    }
}

#[derive(Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    limit: Option<usize>,
}

/// The outbox: `?state=pending|delivered|dead` (default pending).
async fn list_alerts(
    State(aggregator): State<Arc<Aggregator>>,
    Query(query): Query<AlertsQuery>,
) -> Response {
    let state = match query.state.as_deref().unwrap_or("pending") {
        "pending" => DeliveryState::Pending,
        "delivered" => DeliveryState::Delivered,
        "dead" => DeliveryState::Dead,
        other => {
            let body = json!({ "error": format!("unknown state {other:?}; expected pending, delivered or dead") });
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let limit = LimitQuery { limit: query.limit }.get();
    match aggregator.history().deliveries_in_state(state, limit).await {
        Ok(deliveries) => Json(json!({ "alerts": deliveries })).into_response(),
        Err(error) => storage_failure(error),
    }
}

/// Every region's probe (last result, stale or not, clock skew) and the
/// recent stale/back events.
async fn list_probes(State(aggregator): State<Arc<Aggregator>>) -> Response {
    match aggregator
        .history()
        .recent_probe_events(limits::API_RESULTS_LIMIT_DEFAULT)
        .await
    {
        Ok(events) => {
            Json(json!({ "probes": aggregator.probes(), "events": events })).into_response()
        }
        Err(error) => storage_failure(error),
    }
}

async fn list_silences(State(aggregator): State<Arc<Aggregator>>) -> Json<serde_json::Value> {
    Json(json!({ "silences": aggregator.silences() }))
}

async fn create_silence(
    State(api): State<ApiState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Response {
    // The token first: an unauthenticated client costs no body read.
    if let Some(refused) = require_admin(&api, &headers) {
        discard_body(body);
        return refused;
    }
    let body = match read_body(&headers, body, limits::API_BODY_BYTES_MAX).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let new: NewSilence = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(error) => return bad_request(&format!("not a silence: {error}")),
    };
    let silence = match new.validate(api.aggregator.clock().now()) {
        Ok(silence) => silence,
        Err(message) => return bad_request(&message),
    };
    match api.aggregator.add_silence(silence).await {
        Ok(Ok(silence)) => {
            (StatusCode::CREATED, Json(json!({ "silence": silence }))).into_response()
        }
        Ok(Err(message)) => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "error": message })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

async fn delete_silence(
    State(api): State<ApiState>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = require_admin(&api, &headers) {
        return refused;
    }
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return bad_request("the silence id must be a UUID");
    };
    match api.aggregator.remove_silence(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such silence" })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

/// `None` when the request may change things; else the refusal to send.
fn require_admin(api: &ApiState, headers: &axum::http::HeaderMap) -> Option<Response> {
    use subtle::ConstantTimeEq;
    let expected = api.admin_token.as_deref()?;
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        None
    } else {
        Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({ "error": "this needs the admin token (Authorization: Bearer ...)" })),
            )
                .into_response(),
        )
    }
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn ping(State(aggregator): State<Arc<Aggregator>>, Path(token): Path<String>) -> Response {
    record_ping(&aggregator, &token, Ping::Success).await
}

async fn ping_action(
    State(aggregator): State<Arc<Aggregator>>,
    Path((token, action)): Path<(String, String)>,
) -> Response {
    match Ping::from_action(&action) {
        Some(ping) => record_ping(&aggregator, &token, ping).await,
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "expected /ping/TOKEN, /ping/TOKEN/start or /ping/TOKEN/fail" })),
        )
            .into_response(),
    }
}

async fn record_ping(aggregator: &Aggregator, token: &str, ping: Ping) -> Response {
    match aggregator.ping(token, ping).await {
        Ok(Some(_)) => (StatusCode::OK, "OK\n").into_response(),
        // Same answer whatever the token looked like: nothing to learn from it.
        Ok(None) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown token" })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

/// 200 when Lookout can do its job: storage really takes a write and reads
/// it back, the local scheduler (if this process has one) is running, and
/// at least one region reports. 503 naming the failing part otherwise. A
/// single stale region is listed but keeps 200: the others still see.
async fn health(State(aggregator): State<Arc<Aggregator>>) -> Response {
    let mut parts = serde_json::Map::new();
    let mut healthy = true;
    let storage = match tokio::time::timeout(
        limits::HEALTH_STORAGE_TIMEOUT,
        aggregator.storage_jobs().health_probe(),
    )
    .await
    {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(error)) => format!("failing: {error}"),
        Err(_) => format!(
            "failing: no answer within {}ms",
            limits::HEALTH_STORAGE_TIMEOUT.as_millis()
        ),
    };
    healthy &= storage == "ok";
    parts.insert("storage".into(), storage.into());
    if let Some((running, last_start)) = aggregator.metrics().scheduler() {
        let scheduler = match (running, last_start) {
            (true, Some(at)) => format!("ok; last run started {}", at.to_rfc3339()),
            (true, None) => "ok".to_string(),
            (false, _) => "failing: the scheduler has stopped".to_string(),
        };
        healthy &= running;
        parts.insert("scheduler".into(), scheduler.into());
    }
    let (regions_ok, regions) = regions_health(&aggregator.probes());
    healthy &= regions_ok;
    parts.insert("regions".into(), regions.into());
    let mut body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "checks": parts,
    });
    if let Some(replicas) = aggregator.replicas() {
        // Who this is and who leads; a listing that fails is the storage
        // failure already reported above.
        body["replica"] = json!({
            "id": replicas.id(),
            "leader": replicas.is_leader(),
            "config_hash": replicas.config_hash(),
        });
        if let Ok(Ok(all)) =
            tokio::time::timeout(limits::HEALTH_STORAGE_TIMEOUT, replicas.list()).await
        {
            let differing: Vec<&str> = all
                .iter()
                .filter(|r| r.config_differs)
                .map(|r| r.id.as_str())
                .collect();
            if !differing.is_empty() {
                body["replica"]["config_differs_from"] = json!(differing);
            }
            body["aggregators"] = json!(all);
        }
    }
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /api/v1/aggregators`: every replica seen lately, with who leads
/// and whether its config differs from this one's.
async fn list_aggregators(State(aggregator): State<Arc<Aggregator>>) -> Response {
    let Some(replicas) = aggregator.replicas() else {
        return (StatusCode::OK, Json(json!({ "aggregators": [] }))).into_response();
    };
    match replicas.list().await {
        Ok(all) => (StatusCode::OK, Json(json!({ "aggregators": all }))).into_response(),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": format!("cannot read the replicas: {error}") })),
        )
            .into_response(),
    }
}

/// Whether any region still reports, and what to say about them: the
/// service is blind only when every region that should report is stale.
fn regions_health(probes: &[crate::aggregator::ProbeStatus]) -> (bool, String) {
    let stale: Vec<&str> = probes
        .iter()
        .filter(|p| p.stale)
        .map(|p| p.region.as_str())
        .collect();
    if probes.is_empty() {
        (true, "ok; no region yet".to_string())
    } else if stale.len() == probes.len() {
        (
            false,
            format!("failing: no region reports (stale: {})", stale.join(", ")),
        )
    } else if stale.is_empty() {
        (true, "ok".to_string())
    } else {
        (true, format!("ok; stale: {}", stale.join(", ")))
    }
}

/// A browser result's screenshot: image/png, or 404.
async fn result_screenshot(
    State(aggregator): State<Arc<Aggregator>>,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<uuid::Uuid>() else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no such result" })),
        )
            .into_response();
    };
    let shown = |check: &str| {
        aggregator
            .config()
            .check(check)
            .is_some_and(|c| !c.status_page.hidden)
    };
    match aggregator.history().screenshot(id.to_string()).await {
        // A check hidden from the status page keeps its pages to itself.
        Ok(Some((check, png))) if shown(&check) => (
            [
                (axum::http::header::CONTENT_TYPE, "image/png"),
                (axum::http::header::CACHE_CONTROL, "private, max-age=3600"),
            ],
            png,
        )
            .into_response(),
        Ok(_) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "no screenshot for this result" })),
        )
            .into_response(),
        Err(error) => storage_failure(error),
    }
}

fn not_found(name: &str) -> Response {
    let body = json!({ "error": format!("no check named {name:?}") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

fn storage_failure(error: crate::storage::StorageError) -> Response {
    tracing::error!(%error, "storage failed while answering the API");
    let body = json!({ "error": "storage is failing; see the aggregator's logs" });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

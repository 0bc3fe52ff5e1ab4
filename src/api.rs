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
use crate::heartbeat::Ping;
use crate::limits;
use crate::storage::DeliveryState;

pub fn router(aggregator: Arc<Aggregator>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/checks", get(list_checks))
        .route("/api/v1/checks/{name}/results", get(check_results))
        .route("/api/v1/checks/{name}/events", get(check_events))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/ping/{token}", get(ping).post(ping))
        .route("/ping/{token}/{action}", get(ping_action).post(ping_action))
        .layer(axum::extract::DefaultBodyLimit::max(
            limits::API_BODY_BYTES_MAX,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits::API_REQUEST_TIMEOUT,
        ))
        .with_state(aggregator)
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
        .storage()
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
    match aggregator.storage().deliveries_in_state(state, limit).await {
        Ok(deliveries) => Json(json!({ "alerts": deliveries })).into_response(),
        Err(error) => storage_failure(error),
    }
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

/// 200 when storage really takes a write and reads it back; 503 naming the
/// failing part otherwise.
async fn health(State(aggregator): State<Arc<Aggregator>>) -> Response {
    let storage = match tokio::time::timeout(
        limits::HEALTH_STORAGE_TIMEOUT,
        aggregator.storage().health_probe(),
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
    let healthy = storage == "ok";
    let body = json!({
        "status": if healthy { "healthy" } else { "degraded" },
        "checks": { "storage": storage },
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
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

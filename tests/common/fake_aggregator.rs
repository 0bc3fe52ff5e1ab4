//! A fake aggregator for the cases the real one cannot misbehave in: a
//! proxy that answers the checks route with 200 and the same document every
//! time (ignoring `If-None-Match`), a 307 on the results route, and a
//! results route that accepts the request and never answers. It speaks the
//! probe routes of DESIGN.md on 127.0.0.1 and records what it was asked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

/// How the checks route answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecsMode {
    /// Like the real one: 304 after the wait while the version is known.
    Honest,
    /// 200 with the whole document at once, every time.
    AlwaysSameDocument,
    /// 200 at once with a body that is not a checks document.
    Garbage,
    /// This status at once.
    Status(u16),
    /// A document past the probe's bound (`PROBE_SPECS_BYTES_MAX` + 1 MiB)
    /// with ETag `huge`; 304 after the wait for a probe that names it.
    Huge,
}

/// How the results route answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultsMode {
    /// Stores the results (by id) and says how many were new.
    Accept,
    /// This status with `Location: URL`, nothing stored.
    Redirect(u16, String),
    /// Takes the request and never answers.
    Hang,
    /// 200 with an HTML page, nothing stored: a captive portal or a proxy
    /// that answers for the aggregator.
    ProxyPage,
    /// 400 for a batch holding this result id (a batch that is itself
    /// wrong); other batches are stored.
    RejectBatchWith(String),
    /// 200, the results of this check refused one by one (`refused` in the
    /// answer, as an aggregator does for a check the region does not run).
    RefuseCheck(String),
}

#[derive(Default)]
struct Shared {
    version: String,
    body: Bytes,
    specs_mode: Option<SpecsMode>,
    results_mode: Option<ResultsMode>,
    /// When each request to a route arrived.
    specs_requests: Vec<Instant>,
    run_now_requests: Vec<Instant>,
    results_requests: Vec<(Instant, String)>,
    /// How often each result id arrived in a stored batch.
    received: HashMap<String, usize>,
    /// Ids in the order first stored.
    stored: Vec<String>,
}

#[derive(Clone)]
pub struct FakeAggregator {
    pub base: String,
    shared: Arc<Mutex<Shared>>,
}

impl FakeAggregator {
    /// Serves `region`'s checks made from `checks_yaml` (loaded through
    /// lookout's own loader and hub, so the document is the real format).
    pub async fn start(region: &str, checks_yaml: &str) -> FakeAggregator {
        let fake = FakeAggregator {
            base: String::new(),
            shared: Arc::default(),
        };
        fake.set_checks(region, checks_yaml);
        {
            let mut shared = fake.shared.lock().unwrap();
            shared.specs_mode = Some(SpecsMode::Honest);
            shared.results_mode = Some(ResultsMode::Accept);
        }
        let app = Router::new()
            .route("/api/v1/probe/checks", get(specs))
            .route("/api/v1/probe/run-now", get(run_now))
            .route("/api/v1/results", post(results))
            .with_state(fake.shared.clone());
        let addr = super::serve_on_loopback(app).await;
        FakeAggregator {
            base: format!("http://{addr}/"),
            ..fake
        }
    }

    /// A new document (a new version) for the checks route.
    pub fn set_checks(&self, region: &str, checks_yaml: &str) {
        let dirs = super::ConfigDirs::new(checks_yaml);
        let config = dirs.load();
        let index = lookout::hub::SpecIndex::build(&config, [region].into_iter());
        let specs = index.region(region).unwrap();
        let mut shared = self.shared.lock().unwrap();
        shared.version = specs.version.clone();
        shared.body = specs.body.clone();
    }

    pub fn set_specs_mode(&self, mode: SpecsMode) {
        self.shared.lock().unwrap().specs_mode = Some(mode);
    }

    pub fn set_results_mode(&self, mode: ResultsMode) {
        self.shared.lock().unwrap().results_mode = Some(mode);
    }

    /// Requests to the checks route that arrived within `from..to`.
    pub fn specs_requests_between(&self, from: Instant, to: Instant) -> usize {
        let shared = self.shared.lock().unwrap();
        shared
            .specs_requests
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }

    pub fn run_now_requests_between(&self, from: Instant, to: Instant) -> usize {
        let shared = self.shared.lock().unwrap();
        shared
            .run_now_requests
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    }

    /// Every request to the results route: when, and what it was answered
    /// ("accepted", "307", "hung").
    pub fn results_requests(&self) -> Vec<(Instant, String)> {
        self.shared.lock().unwrap().results_requests.clone()
    }

    /// Ids stored, in the order they first arrived.
    pub fn stored(&self) -> Vec<String> {
        self.shared.lock().unwrap().stored.clone()
    }

    /// How often each id arrived in an accepted batch.
    pub fn received(&self) -> HashMap<String, usize> {
        self.shared.lock().unwrap().received.clone()
    }
}

#[derive(serde::Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
}

async fn specs(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    Query(query): Query<WaitQuery>,
) -> Response {
    let (mode, version, body) = {
        let mut shared = shared.lock().unwrap();
        shared.specs_requests.push(Instant::now());
        (
            shared.specs_mode,
            shared.version.clone(),
            shared.body.clone(),
        )
    };
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    match mode {
        Some(SpecsMode::Garbage) => {
            return (StatusCode::OK, "<html>a proxy's page</html>").into_response();
        }
        Some(SpecsMode::Status(status)) => {
            return (StatusCode::from_u16(status).unwrap(), "busy").into_response();
        }
        Some(SpecsMode::Huge) => {
            if known.as_deref() == Some("huge") {
                tokio::time::sleep(Duration::from_secs(query.wait.unwrap_or(0).min(25))).await;
                return StatusCode::NOT_MODIFIED.into_response();
            }
            const CHUNK: usize = 1024 * 1024;
            let chunks = lookout::limits::PROBE_SPECS_BYTES_MAX / CHUNK + 1;
            let chunk = Bytes::from(vec![b' '; CHUNK]);
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::convert::Infallible>(chunk.clone())),
            );
            return (
                [(header::ETAG, "\"huge\"")],
                axum::body::Body::from_stream(stream),
            )
                .into_response();
        }
        _ => {}
    }
    if mode == Some(SpecsMode::Honest) && known.as_deref() == Some(version.as_str()) {
        tokio::time::sleep(Duration::from_secs(query.wait.unwrap_or(0).min(25))).await;
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::ETAG, format!("\"{version}\"")),
        ],
        body,
    )
        .into_response()
}

/// Answers at once with nothing to run: a long-poll that never waits.
async fn run_now(State(shared): State<Arc<Mutex<Shared>>>) -> Response {
    shared.lock().unwrap().run_now_requests.push(Instant::now());
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"run_now\":[]}",
    )
        .into_response()
}

async fn results(State(shared): State<Arc<Mutex<Shared>>>, body: Bytes) -> Response {
    let mode = shared.lock().unwrap().results_mode.clone();
    match mode {
        Some(ResultsMode::Redirect(status, location)) => {
            shared
                .lock()
                .unwrap()
                .results_requests
                .push((Instant::now(), status.to_string()));
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::LOCATION, location)],
            )
                .into_response()
        }
        Some(ResultsMode::ProxyPage) => {
            shared
                .lock()
                .unwrap()
                .results_requests
                .push((Instant::now(), "proxy page".to_string()));
            (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Please log in to the network</body></html>",
            )
                .into_response()
        }
        Some(ResultsMode::Hang) => {
            shared
                .lock()
                .unwrap()
                .results_requests
                .push((Instant::now(), "hung".to_string()));
            std::future::pending::<Response>().await
        }
        _ => {
            let batch: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(batch) => batch,
                Err(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            let mut shared = shared.lock().unwrap();
            if let Some(ResultsMode::RejectBatchWith(bad)) = &mode {
                let ids = batch["results"].as_array().into_iter().flatten();
                if ids.clone().any(|r| r["id"] == bad.as_str()) {
                    shared
                        .results_requests
                        .push((Instant::now(), "400".to_string()));
                    return (
                        StatusCode::BAD_REQUEST,
                        "a result in this batch is malformed",
                    )
                        .into_response();
                }
            }
            shared
                .results_requests
                .push((Instant::now(), "accepted".to_string()));
            let (mut accepted, mut duplicates) = (0, 0);
            let mut refused = Vec::new();
            for result in batch["results"].as_array().into_iter().flatten() {
                let id = result["id"].as_str().unwrap_or("").to_string();
                if let Some(ResultsMode::RefuseCheck(check)) = &mode
                    && result["check"] == check.as_str()
                {
                    refused.push(serde_json::json!({
                        "id": id, "check": check, "reason": "this region does not run it"
                    }));
                    continue;
                }
                let seen = shared.received.entry(id.clone()).or_default();
                *seen += 1;
                if *seen == 1 {
                    accepted += 1;
                    shared.stored.push(id);
                } else {
                    duplicates += 1;
                }
            }
            axum::Json(serde_json::json!({
                "accepted": accepted, "duplicates": duplicates, "refused": refused
            }))
            .into_response()
        }
    }
}

/// A server that records every request it gets (and its Authorization
/// header): where a redirect points, to show nobody followed it.
#[derive(Clone, Default)]
pub struct Elsewhere {
    pub base: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Elsewhere {
    pub async fn start() -> Elsewhere {
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let app = Router::new().fallback(any(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(auth);
                StatusCode::OK
            }
        }));
        let addr = super::serve_on_loopback(app).await;
        Elsewhere {
            base: format!("http://{addr}"),
            requests,
        }
    }
}

//! A remote probe's side of the conversation with its aggregator: fetching
//! its region's checks (long-poll, versioned), collecting run-now requests
//! (long-poll), and delivering results from the spool.
//!
//! Every request carries the probe's token, has a connect timeout and a
//! whole-request timeout (a long-poll's is longer by its wait), and never
//! follows a redirect: the token goes to the configured address only. A 3xx
//! is a temporary failure like a 5xx or a reset. Failures are expected (the
//! aggregator restarts, a proxy misbehaves): each loop retries with capped
//! exponential backoff and says what happened, in plain words, once per
//! outage (again if the kind of failure changes), not once per attempt. The
//! long-polls keep a floor between their requests whatever the answer, so
//! a proxy that answers at once never makes them spin. Only the aggregator
//! refusing a batch itself (400, 413, 422) sets that batch aside: one
//! batch, never the backlog. The spool makes results safe meanwhile; the
//! last specs received are kept on disk so a probe restarted while the
//! aggregator is away still knows what to run.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH, LOCATION};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::Secrets;
use crate::config::remote::{WireCheck, decode_wire_checks};
use crate::limits;
use crate::result::ProbeResult;
use crate::scheduler::CheckSet;
use crate::spool::{Counts, Spool};
use crate::transport::{ResultBatch, RunNow, TransportError};

#[derive(Debug, thiserror::Error)]
pub(crate) enum UplinkError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("--aggregator {0} is not an http(s) URL")]
    Url(String),
    #[error("--aggregator {0} is given twice")]
    Duplicate(String),
    #[error("--aggregator lists {0} aggregators; at most {max} are accepted", max = limits::PROBE_AGGREGATORS_MAX)]
    TooMany(usize),
}

/// How the probe reaches its aggregator.
#[derive(Clone)]
pub(crate) struct Uplink {
    /// The aggregators, and which one is in use (shared by every loop).
    rotation: Arc<std::sync::Mutex<Rotation>>,
    /// When an aggregator last answered (for the fallback alert).
    contact: Arc<Contact>,
    region: String,
    authorization: String,
    client: reqwest::Client,
    /// A whole request (connect, send, answer) gets this long; long-polls
    /// get their wait on top.
    request_timeout: Duration,
    /// Notified when a request gets through after failures.
    link_up: Arc<tokio::sync::Notify>,
    /// The spool, whose backlog every request reports to the aggregator.
    spool: Option<Arc<Spool>>,
}

/// The header a probe reports its spool backlog in (results waiting).
pub(crate) const SPOOL_PENDING_HEADER: &str = "x-lookout-spool-pending";

/// The specs document of `GET /api/v1/probe/checks`.
#[derive(Debug, Deserialize)]
pub(crate) struct SpecsDocument {
    pub version: String,
    pub checks: Vec<WireCheck>,
    /// The channels to alert through when no aggregator answers.
    #[serde(default)]
    pub fallback_channels: Vec<crate::config::remote::WireChannel>,
}

/// What asking for specs gave.
pub(crate) enum SpecsAnswer {
    /// A document, and its bytes as received (for the cache).
    Changed(SpecsDocument, Vec<u8>),
    Unchanged,
    /// An answer that cannot be used (too large, unreadable), with its
    /// ETag: sent back in `If-None-Match`, the aggregator answers 304 until
    /// it has another document, instead of the same one again.
    Unusable(Option<String>, TransportError),
}

/// The aggregator's answer to a result batch it took (all fields optional:
/// an older aggregator says less).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct BatchAnswer {
    #[serde(default)]
    pub accepted: Option<u64>,
    /// Results it refused one by one (checks this region does not run);
    /// the rest of the batch is stored.
    #[serde(default)]
    pub refused: Vec<RefusedResult>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RefusedResult {
    #[serde(default)]
    pub id: serde_json::Value,
    #[serde(default)]
    pub check: String,
    #[serde(default)]
    pub reason: String,
}

/// Which route a refusal came from: only the results route can refuse for
/// good (a batch that is itself wrong).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    Results,
    LongPoll,
}

impl Uplink {
    /// `ca_file`: trust this CA (PEM) for the aggregator's certificate, in
    /// addition to the system's roots.
    pub(crate) fn new(
        bases: Vec<Url>,
        region: &str,
        token: &str,
        ca_file: Option<&Path>,
    ) -> Result<Uplink, UplinkError> {
        crate::install_crypto_provider();
        let bases = aggregator_list(bases)?;
        let mut builder = reqwest::Client::builder()
            .user_agent(format!(
                "Lookout/{} probe (region={region})",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(limits::PROBE_CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let certs = crate::config::ca::read_ca_file(path)
                .map_err(UplinkError::Client)?
                .iter()
                .map(|der| reqwest::Certificate::from_der(der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| UplinkError::Client(format!("{}: {e}", path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder
            .build()
            .map_err(|e| UplinkError::Client(e.to_string()))?;
        Ok(Uplink {
            rotation: Arc::new(std::sync::Mutex::new(Rotation::new(bases))),
            contact: Arc::new(Contact::new()),
            region: region.to_string(),
            authorization: format!("Bearer {token}"),
            client,
            request_timeout: limits::PROBE_REQUEST_TIMEOUT,
            link_up: Arc::default(),
            spool: None,
        })
    }

    /// Reports `spool`'s backlog with every request.
    pub(crate) fn with_spool(mut self, spool: Arc<Spool>) -> Uplink {
        self.spool = Some(spool);
        self
    }

    /// How long one request may take (the long-polls get their wait on top).
    pub(crate) fn with_request_timeout(mut self, timeout: Duration) -> Uplink {
        self.request_timeout = timeout;
        self
    }

    /// A request with the token and the spool backlog, not counting the
    /// `sending` results this request itself delivers.
    fn request(
        &self,
        method: reqwest::Method,
        url: Url,
        sending: usize,
    ) -> reqwest::RequestBuilder {
        let request = self
            .client
            .request(method, url)
            .header(AUTHORIZATION, &self.authorization);
        match &self.spool {
            Some(spool) => {
                let waiting = spool.pending().saturating_sub(sending as u64);
                request.header(SPOOL_PENDING_HEADER, waiting.to_string())
            }
            None => request,
        }
    }

    fn rotation(&self) -> std::sync::MutexGuard<'_, Rotation> {
        self.rotation.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The aggregators, in the order given.
    pub(crate) fn aggregators(&self) -> Vec<Url> {
        self.rotation().urls().to_vec()
    }

    /// The aggregator in use now, and how many times the probe moved.
    pub(crate) fn in_use(&self) -> (Url, u64) {
        let rotation = self.rotation();
        (rotation.current().clone(), rotation.failovers())
    }

    /// When an aggregator last answered.
    pub(crate) fn contact(&self) -> Arc<Contact> {
        self.contact.clone()
    }

    /// Runs `attempt` against the aggregator in use and, while it fails in
    /// a way another replica can answer, against the next ones (each once).
    async fn across<T, F, Fut>(&self, mut attempt: F) -> Result<T, TransportError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<T, TransportError>>,
    {
        let (order, bases) = {
            let rotation = self.rotation();
            let order = rotation.order();
            let bases: Vec<Url> = order.iter().map(|&at| rotation.url(at).clone()).collect();
            (order, bases)
        };
        let many = bases.len() > 1;
        let mut last = None;
        for (at, base) in order.into_iter().zip(bases) {
            match attempt(base.clone()).await {
                Err(error) if failover::fails_over(&error) => {
                    let line = self.rotation().failed(at, &failover::short_reason(&error));
                    match line {
                        Some(line) => tracing::warn!("{line}"),
                        None if many => tracing::debug!("aggregator {base}: {error}"),
                        None => {}
                    }
                    last = Some((base, error));
                }
                answer => {
                    if let Some(line) = self.rotation().succeeded(at) {
                        tracing::info!("{line}");
                    }
                    self.contact.answered();
                    return answer;
                }
            }
        }
        match last {
            Some((_, error)) if !many => Err(error),
            Some((base, error)) => Err(TransportError::Unavailable(format!(
                "no aggregator answers (the last tried, {base}: {error})"
            ))),
            None => Err(TransportError::Unavailable(
                "no aggregator configured".into(),
            )),
        }
    }

    /// The region's checks, unless still at `known_version`: waits up to
    /// `wait` for a change first.
    pub(crate) async fn fetch_specs(
        &self,
        known_version: Option<&str>,
        wait: Duration,
    ) -> Result<SpecsAnswer, TransportError> {
        self.across(|base| self.fetch_specs_at(base, known_version, wait))
            .await
    }

    async fn fetch_specs_at(
        &self,
        base: Url,
        known_version: Option<&str>,
        wait: Duration,
    ) -> Result<SpecsAnswer, TransportError> {
        let mut url = join(&base, "api/v1/probe/checks")?;
        url.query_pairs_mut()
            .append_pair("region", &self.region)
            .append_pair("wait", &wait.as_secs().to_string());
        let limit = self.request_timeout + wait;
        let mut request = self
            .request(reqwest::Method::GET, url.clone(), 0)
            .timeout(limit);
        if let Some(version) = known_version {
            request = request.header(IF_NONE_MATCH, format!("\"{version}\""));
        }
        let response = request.send().await.map_err(|e| failed(e, limit))?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(SpecsAnswer::Unchanged),
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim().trim_matches('"').to_string())
                    .filter(|v| !v.is_empty());
                let body = match read_bounded(
                    response,
                    limits::PROBE_SPECS_BYTES_MAX,
                    "a checks document",
                    limit,
                )
                .await
                {
                    Ok(body) => body,
                    Err(error @ TransportError::TooLarge { .. }) => {
                        return Ok(SpecsAnswer::Unusable(etag, error));
                    }
                    Err(error) => return Err(error),
                };
                match serde_json::from_slice::<SpecsDocument>(&body) {
                    Ok(document) => Ok(SpecsAnswer::Changed(document, body)),
                    Err(e) => Ok(SpecsAnswer::Unusable(
                        etag,
                        TransportError::BadAnswer(format!(
                            "the checks document is not readable: {e}"
                        )),
                    )),
                }
            }
            status => Err(refusal(status, response, &url, Route::LongPoll, limit).await),
        }
    }

    /// Checks the aggregator wants run now; waits up to `wait` for some.
    pub(crate) async fn run_now(&self, wait: Duration) -> Result<Vec<String>, TransportError> {
        self.across(|base| self.run_now_at(base, wait)).await
    }

    async fn run_now_at(&self, base: Url, wait: Duration) -> Result<Vec<String>, TransportError> {
        let mut url = join(&base, "api/v1/probe/run-now")?;
        url.query_pairs_mut()
            .append_pair("region", &self.region)
            .append_pair("wait", &wait.as_secs().to_string());
        let limit = self.request_timeout + wait;
        let response = self
            .request(reqwest::Method::GET, url.clone(), 0)
            .timeout(limit)
            .send()
            .await
            .map_err(|e| failed(e, limit))?;
        if response.status() != StatusCode::OK {
            return Err(refusal(response.status(), response, &url, Route::LongPoll, limit).await);
        }
        let body = read_bounded(
            response,
            limits::PROBE_ANSWER_BYTES_MAX,
            "a run-now answer",
            limit,
        )
        .await?;
        let answer: RunNow = serde_json::from_slice(&body).map_err(|e| {
            TransportError::BadAnswer(format!("the run-now answer is not readable: {e}"))
        })?;
        Ok(answer.run_now)
    }

    /// Posts one batch. A 2xx means the batch is done (what the answer
    /// says of single results aside).
    pub(crate) async fn post_results(
        &self,
        results: Vec<ProbeResult>,
    ) -> Result<BatchAnswer, TransportError> {
        let sending = results.len();
        let batch = ResultBatch {
            results,
            sent_at: Some(crate::clock::now()),
        };
        let body = serde_json::to_vec(&batch)
            .map_err(|e| TransportError::Rejected(format!("cannot encode results: {e}")))?;
        self.across(|base| self.post_results_at(base, sending, body.clone()))
            .await
    }

    async fn post_results_at(
        &self,
        base: Url,
        sending: usize,
        body: Vec<u8>,
    ) -> Result<BatchAnswer, TransportError> {
        let url = join(&base, "api/v1/results")?;
        let limit = self.request_timeout;
        let response = self
            .request(reqwest::Method::POST, url.clone(), sending)
            .header(CONTENT_TYPE, "application/json")
            .timeout(limit)
            .body(body)
            .send()
            .await
            .map_err(|e| failed(e, limit))?;
        if !response.status().is_success() {
            return Err(refusal(response.status(), response, &url, Route::Results, limit).await);
        }
        // Only Lookout's own answer says the batch is stored: a proxy or a
        // captive portal that answers 200 with a page of its own did not
        // forward it. Anything else keeps the batch to send again (a resend
        // is harmless: results are idempotent by id).
        let status = response.status().as_u16();
        let answer: Option<BatchAnswer> =
            read_bounded(response, limits::PROBE_ANSWER_BYTES_MAX, "an answer", limit)
                .await
                .ok()
                .and_then(|body| serde_json::from_slice(&body).ok());
        match answer {
            Some(answer) if answer.accepted.is_some() => Ok(answer),
            _ => Err(TransportError::BadAnswer(format!(
                "{url} answered {status} without saying it stored the batch (a proxy in the way?); the results are kept and sent again"
            ))),
        }
    }
}

fn join(base: &Url, path: &str) -> Result<Url, TransportError> {
    base.join(path)
        .map_err(|e| TransportError::Unavailable(format!("bad aggregator URL: {e}")))
}

/// A request that got no answer: timed out (`limit`), or could not reach
/// the aggregator at all.
fn failed(error: reqwest::Error, limit: Duration) -> TransportError {
    if error.is_timeout() && !error.is_connect() {
        return TransportError::TimedOut { after: limit };
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    if error.is_connect() && error.is_timeout() {
        text = format!(
            "no connection within {}s ({text})",
            limits::PROBE_CONNECT_TIMEOUT.as_secs()
        );
    }
    TransportError::Unavailable(crate::probe::one_line(&text))
}

async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
    what: &'static str,
    limit: Duration,
) -> Result<Vec<u8>, TransportError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| failed(e, limit))? {
        if body.len() + chunk.len() > max {
            return Err(TransportError::TooLarge { what, max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a non-2xx answer means: a redirect is never followed and is
/// temporary; on the results route 400, 413 and 422 say the batch itself
/// is wrong (final, for that batch); everything else (5xx, 429, 401/403
/// that a reload of probes.yaml can fix, a proxy's 404) is temporary.
async fn refusal(
    status: StatusCode,
    response: reqwest::Response,
    url: &Url,
    route: Route,
    limit: Duration,
) -> TransportError {
    if status.is_redirection() {
        let location = response
            .headers()
            .get(LOCATION)
            .map(|v| crate::probe::one_line(&String::from_utf8_lossy(v.as_bytes())))
            .unwrap_or_else(|| "nowhere".to_string());
        let mut shown = url.clone();
        shown.set_query(None);
        return TransportError::Redirected {
            status: status.as_u16(),
            url: shown.to_string(),
            location,
        };
    }
    let text = read_bounded(
        response,
        limits::PROBE_ERROR_BODY_BYTES_MAX,
        "an error",
        limit,
    )
    .await
    .map(|b| String::from_utf8_lossy(&b).into_owned())
    .unwrap_or_default();
    let body = crate::probe::one_line(&text);
    let final_for_batch = route == Route::Results
        && matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNPROCESSABLE_ENTITY
        );
    if final_for_batch {
        TransportError::Rejected(format!("HTTP {status}: {body}"))
    } else {
        TransportError::Refused {
            status: status.as_u16(),
            body,
        }
    }
}

/// Capped exponential backoff with jitter, logging the start and end of an
/// outage once rather than every attempt (and again when the failure
/// changes kind: a redirect becoming a refused connection is news).
///
/// The loops share a `LinkUp` signal: the first to get through wakes the
/// others from their backoff, so a spool drains as soon as the aggregator is
/// back rather than at the end of the longest sleep.
struct Backoff {
    what: &'static str,
    /// What goes on meanwhile, for the log line.
    meanwhile: &'static str,
    delay: Duration,
    failing_since: Option<tokio::time::Instant>,
    last_kind: Option<std::mem::Discriminant<TransportError>>,
    link_up: Arc<tokio::sync::Notify>,
}

impl Backoff {
    fn new(
        what: &'static str,
        meanwhile: &'static str,
        link_up: Arc<tokio::sync::Notify>,
    ) -> Backoff {
        Backoff {
            what,
            meanwhile,
            delay: limits::PROBE_BACKOFF_MIN,
            failing_since: None,
            last_kind: None,
            link_up,
        }
    }

    fn succeeded(&mut self) {
        if self.failing_since.is_some() {
            self.link_up.notify_waiters();
        }
        if let Some(since) = self.failing_since.take() {
            tracing::info!(
                "{}: the aggregator answers again (after {:.1}s)",
                self.what,
                since.elapsed().as_secs_f64()
            );
        }
        self.last_kind = None;
        self.delay = limits::PROBE_BACKOFF_MIN;
    }

    /// Sleeps before the next attempt; false when cancelled meanwhile.
    async fn failed(&mut self, error: &TransportError, cancel: &CancellationToken) -> bool {
        let kind = std::mem::discriminant(error);
        if self.failing_since.is_none() {
            self.failing_since = Some(tokio::time::Instant::now());
        }
        if self.last_kind != Some(kind) {
            self.last_kind = Some(kind);
            tracing::warn!("{}: {error}; {}", self.what, self.meanwhile);
        } else {
            tracing::debug!("{}: still failing: {error}", self.what);
        }
        let jitter = 0.8 + fastrand::f64() * 0.4;
        let delay = self.delay.mul_f64(jitter);
        self.delay = (self.delay * 2).min(limits::PROBE_BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.link_up.notified() => true,
            _ = cancel.cancelled() => false,
        }
    }
}

/// Waits until `PROBE_POLL_GAP_MIN` after `started`; false when cancelled.
async fn poll_gap(started: tokio::time::Instant, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(started + limits::PROBE_POLL_GAP_MIN) => true,
        _ = cancel.cancelled() => false,
    }
}

mod failover;
mod fallback;
mod ship;
mod specs;

use failover::{Rotation, aggregator_list};
pub(crate) use fallback::{Contact, FallbackChannels, Speaker, watch_contact};

pub(crate) use ship::ship_spooled;
pub(crate) use specs::{follow_run_now, follow_specs};

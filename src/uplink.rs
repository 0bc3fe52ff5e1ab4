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
use crate::transport::{ResultBatch, ResultSink, RunNow, SubmitFuture, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("--aggregator {0} is not an http(s) URL")]
    Url(String),
}

/// How the probe reaches its aggregator.
#[derive(Clone)]
pub struct Uplink {
    base: Url,
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
pub const SPOOL_PENDING_HEADER: &str = "x-lookout-spool-pending";

/// The specs document of `GET /api/v1/probe/checks`.
#[derive(Debug, Deserialize)]
pub struct SpecsDocument {
    pub version: String,
    pub region: String,
    pub checks: Vec<WireCheck>,
}

/// What asking for specs gave.
pub enum SpecsAnswer {
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
pub struct BatchAnswer {
    #[serde(default)]
    pub accepted: Option<u64>,
    #[serde(default)]
    pub duplicates: Option<u64>,
    /// Results it refused one by one (checks this region does not run);
    /// the rest of the batch is stored.
    #[serde(default)]
    pub refused: Vec<RefusedResult>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RefusedResult {
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
    pub fn new(
        base: Url,
        region: &str,
        token: &str,
        ca_file: Option<&Path>,
    ) -> Result<Uplink, UplinkError> {
        crate::install_crypto_provider();
        if !matches!(base.scheme(), "http" | "https") {
            return Err(UplinkError::Url(base.to_string()));
        }
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
            base,
            region: region.to_string(),
            authorization: format!("Bearer {token}"),
            client,
            request_timeout: limits::PROBE_REQUEST_TIMEOUT,
            link_up: Arc::default(),
            spool: None,
        })
    }

    /// Reports `spool`'s backlog with every request.
    pub fn with_spool(mut self, spool: Arc<Spool>) -> Uplink {
        self.spool = Some(spool);
        self
    }

    /// How long one request may take (the long-polls get their wait on top).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Uplink {
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

    fn url(&self, path: &str) -> Result<Url, TransportError> {
        self.base
            .join(path)
            .map_err(|e| TransportError::Unavailable(format!("bad aggregator URL: {e}")))
    }

    /// The region's checks, unless still at `known_version`: waits up to
    /// `wait` for a change first.
    pub async fn fetch_specs(
        &self,
        known_version: Option<&str>,
        wait: Duration,
    ) -> Result<SpecsAnswer, TransportError> {
        let mut url = self.url("api/v1/probe/checks")?;
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
    pub async fn run_now(&self, wait: Duration) -> Result<Vec<String>, TransportError> {
        let mut url = self.url("api/v1/probe/run-now")?;
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
    pub async fn post_results(
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
        let url = self.url("api/v1/results")?;
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

/// The uplink as a `ResultSink` (one batch, the aggregator's details of it
/// left out).
pub struct HttpSink(pub Uplink);

impl ResultSink for HttpSink {
    fn submit(&self, mut batch: Vec<ProbeResult>) -> SubmitFuture<'_> {
        crate::transport::bound_screenshots(&mut batch);
        Box::pin(async move { self.0.post_results(batch).await.map(|_| ()) })
    }
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

/// Moves results from the scheduler into the spool (or, when the spool
/// cannot be written, its memory queue), then sends them to the
/// aggregator, oldest first, until `cancel` and the channel is drained.
/// Whatever is not sent by then stays in the spool for the next start.
pub async fn ship_spooled(
    mut results: mpsc::Receiver<ProbeResult>,
    spool: Arc<Spool>,
    uplink: Uplink,
    cancel: CancellationToken,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let sender = tokio::spawn(send_spool(
        spool.clone(),
        uplink,
        wake.clone(),
        cancel.clone(),
    ));
    let mut buffer = Vec::with_capacity(limits::RESULT_BATCH_MAX);
    loop {
        let received = results
            .recv_many(&mut buffer, limits::RESULT_BATCH_MAX)
            .await;
        if received == 0 {
            break; // the scheduler stopped: every result is in
        }
        Counts::add(&spool.counts().made, received);
        let batch = std::mem::take(&mut buffer);
        let spool = spool.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || spool.append(batch)).await {
            tracing::error!("the spool writer failed: {error}");
        }
        wake.notify_one();
    }
    wake.notify_one();
    let _ = sender.await;
    let spool_at_end = spool.clone();
    let _ = tokio::task::spawn_blocking(move || spool_at_end.flush_at_shutdown()).await;
}

/// Runs a blocking spool operation off the runtime's threads.
async fn blocking<T: Send + 'static>(
    spool: &Arc<Spool>,
    op: impl FnOnce(&Spool) -> T + Send + 'static,
) -> Option<T> {
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || op(&spool)).await.ok()
}

async fn send_spool(
    spool: Arc<Spool>,
    uplink: Uplink,
    wake: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        "sending results",
        "the results wait in the spool; trying again",
        uplink.link_up.clone(),
    );
    // After a refused drain of several files: files still to send one at
    // a time, so that only the file refused is set aside.
    let mut one_at_a_time = 0usize;
    loop {
        let max_files = if one_at_a_time > 0 {
            1
        } else {
            limits::SPOOL_DRAIN_FILES_MAX
        };
        let Some(drain) = blocking(&spool, move |s| {
            s.oldest(max_files, limits::RESULT_BATCH_MAX)
        })
        .await
        else {
            return;
        };
        if drain.results.is_empty() {
            if cancel.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = wake.notified() => {}
                // After cancellation, one more look for the last batch.
                _ = cancel.cancelled() => {}
            }
            continue;
        }
        let count = drain.results.len();
        let batches = drain.batches();
        let mut sending = drain.results.clone();
        crate::transport::bound_screenshots(&mut sending);
        // At shutdown a send gets a short grace, not the full timeout: what
        // it does not deliver stays in the spool.
        let sent = tokio::select! {
            sent = uplink.post_results(sending) => sent,
            _ = async { cancel.cancelled().await; tokio::time::sleep(limits::PROBE_FINAL_SEND_GRACE).await } => {
                Err(TransportError::Unavailable("shutting down".into()))
            }
        };
        match sent {
            Ok(answer) => {
                backoff.succeeded();
                let refused = answer.refused.len().min(count);
                log_refused(&answer.refused);
                Counts::add(&spool.counts().sent, count - refused);
                Counts::add(&spool.counts().rejected, refused);
                blocking(&spool, move |s| s.remove(drain)).await;
                one_at_a_time = one_at_a_time.saturating_sub(batches);
                tracing::debug!(results = count, "results delivered");
            }
            Err(TransportError::Rejected(reason)) if batches > 1 => {
                tracing::warn!(
                    "the aggregator refused a batch of {count} results from {batches} spool files ({reason}); sending them one file at a time, so that only a file it refuses is set aside"
                );
                one_at_a_time = batches;
                blocking(&spool, move |s| s.put_back(drain)).await;
            }
            Err(TransportError::Rejected(reason)) => {
                tracing::error!(
                    "the aggregator refused {count} results for good ({reason}); they are kept in {}/rejected/ and not sent again",
                    spool.dir().display()
                );
                Counts::add(&spool.counts().rejected, count);
                blocking(&spool, move |s| s.reject(drain)).await;
                one_at_a_time = one_at_a_time.saturating_sub(1);
            }
            Err(error) => {
                blocking(&spool, move |s| s.put_back(drain)).await;
                if cancel.is_cancelled() {
                    let figures = spool.figures();
                    let on_disk = figures.pending.saturating_sub(figures.in_memory);
                    tracing::info!(
                        "stopping with {} results not sent: {on_disk} in the spool, sent at the next start; {} in memory, written to the spool if it can take them now",
                        figures.pending,
                        figures.in_memory
                    );
                    return;
                }
                // Cancelled during the backoff: one last attempt (with the
                // shutdown grace) before leaving the rest in the spool.
                backoff.failed(&error, &cancel).await;
            }
        }
    }
}

/// Results the aggregator refused one by one within a batch it took.
fn log_refused(refused: &[RefusedResult]) {
    for one in refused.iter().take(limits::PROBE_REFUSED_LOGGED_MAX) {
        let id = match &one.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        tracing::warn!(
            "the aggregator refused result {} of check `{}`: {} (the rest of its batch is stored)",
            crate::probe::one_line(&id),
            crate::probe::one_line(&one.check),
            crate::probe::one_line(&one.reason)
        );
    }
    if refused.len() > limits::PROBE_REFUSED_LOGGED_MAX {
        tracing::warn!(
            "the aggregator refused {} more results of the same batch",
            refused.len() - limits::PROBE_REFUSED_LOGGED_MAX
        );
    }
}

/// The checks running now, to tell a new document from the same one sent
/// again.
#[derive(Default)]
struct Running {
    version: Option<String>,
    /// A hash of the checks (without the version), so the same checks under
    /// another version change nothing either.
    content: Option<u64>,
    /// Each check's fingerprint, to say what changed.
    fingerprints: BTreeMap<String, Option<u64>>,
    /// The values the secrets were made of, and the secrets: kept (the same
    /// `Arc`) while the values stay the same, so the scheduler restarts
    /// only the checks that changed.
    secret_values: BTreeSet<String>,
    secrets: Option<Arc<Secrets>>,
}

/// What became of a document received.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// New checks are running.
    Running,
    /// The checks already running: nothing changed.
    Same,
    /// They do not decode here; the previous ones keep running.
    Invalid,
}

fn content_hash(checks: &[WireCheck]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(&serde_json::to_vec(checks).unwrap_or_default());
    hasher.finish()
}

impl Running {
    fn apply(&mut self, document: SpecsDocument, checks: &watch::Sender<CheckSet>) -> Applied {
        if self.version.as_deref() == Some(document.version.as_str()) {
            return Applied::Same;
        }
        let content = content_hash(&document.checks);
        if self.content == Some(content) {
            self.version = Some(document.version);
            return Applied::Same;
        }
        let count = document.checks.len();
        let values: BTreeSet<String> = document
            .checks
            .iter()
            .flat_map(|c| c.env.values().cloned())
            .collect();
        match decode_wire_checks(document.checks) {
            Ok((decoded, secrets)) => {
                let secrets = match &self.secrets {
                    Some(kept) if values == self.secret_values => kept.clone(),
                    _ => secrets,
                };
                let fingerprints: BTreeMap<String, Option<u64>> = decoded
                    .iter()
                    .map(|c| (c.name.clone(), c.source.as_ref().map(|s| s.fingerprint)))
                    .collect();
                let changes = describe_changes(&self.fingerprints, &fingerprints);
                tracing::info!(
                    version = %document.version,
                    checks = count,
                    "running the checks the aggregator sent{changes}"
                );
                checks.send_replace(CheckSet {
                    checks: decoded,
                    secrets: secrets.clone(),
                });
                self.version = Some(document.version);
                self.content = Some(content);
                self.fingerprints = fingerprints;
                self.secret_values = values;
                self.secrets = Some(secrets);
                Applied::Running
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!("{error}");
                }
                tracing::error!(
                    version = %document.version,
                    "the checks the aggregator sent do not decode here; still running the previous ones"
                );
                // Not asked for again until the aggregator has another.
                self.version = Some(document.version);
                Applied::Invalid
            }
        }
    }
}

/// ` (added a; changed b; removed c)`, or nothing the first time.
fn describe_changes(
    before: &BTreeMap<String, Option<u64>>,
    after: &BTreeMap<String, Option<u64>>,
) -> String {
    if before.is_empty() {
        return String::new();
    }
    let list = |names: Vec<&String>| {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    let removed: Vec<&String> = before.keys().filter(|n| !after.contains_key(*n)).collect();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(n, f)| before.get(*n).is_some_and(|b| b != *f))
        .map(|(n, _)| n)
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", list(added)));
    }
    if !changed.is_empty() {
        parts.push(format!("changed {}", list(changed)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", list(removed)));
    }
    if parts.is_empty() {
        " (no check changed)".to_string()
    } else {
        format!(" ({}; the others keep running)", parts.join("; "))
    }
}

/// Keeps `checks` up to date with the aggregator's specs for this region,
/// long-polling for changes; writes each new document to `cache` and starts
/// from it when the aggregator cannot be reached at start. A document equal
/// to the running one (by version or content) changes nothing.
pub async fn follow_specs(
    uplink: Uplink,
    cache: PathBuf,
    checks: watch::Sender<CheckSet>,
    cancel: CancellationToken,
) {
    let mut running = Running::default();
    if let Some(document) = read_cached_specs(&cache).await {
        tracing::info!(version = %document.version, checks = document.checks.len(), "starting with the last checks received");
        if running.apply(document, &checks) == Applied::Invalid {
            running = Running::default();
        }
    }
    let mut backoff = Backoff::new(
        "fetching checks",
        "the current checks keep running; trying again",
        uplink.link_up.clone(),
    );
    let mut wait = Duration::ZERO;
    loop {
        let started = tokio::time::Instant::now();
        let answer = tokio::select! {
            answer = uplink.fetch_specs(running.version.as_deref(), wait) => answer,
            _ = cancel.cancelled() => return,
        };
        match answer {
            Ok(SpecsAnswer::Unchanged) => backoff.succeeded(),
            Ok(SpecsAnswer::Changed(document, raw)) => {
                backoff.succeeded();
                match running.apply(document, &checks) {
                    Applied::Running => write_cached_specs(&cache, &raw).await,
                    Applied::Same => tracing::debug!(
                        "the aggregator sent the checks already running (its If-None-Match ignored on the way?); nothing changes"
                    ),
                    Applied::Invalid => {}
                }
            }
            Ok(SpecsAnswer::Unusable(etag, error)) => {
                if etag.is_some() {
                    running.version = etag;
                }
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
            Err(error) => {
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
        }
        wait = limits::PROBE_LONG_POLL_MAX;
        if !poll_gap(started, &cancel).await {
            return;
        }
    }
}

async fn read_cached_specs(path: &Path) -> Option<SpecsDocument> {
    let bytes = tokio::fs::read(path).await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(document) => Some(document),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "ignoring an unreadable cached checks file");
            None
        }
    }
}

async fn write_cached_specs(path: &Path, body: &[u8]) {
    let tmp = path.with_extension("tmp");
    let written = async {
        tokio::fs::write(&tmp, body).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(error) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::warn!(file = %path.display(), %error, "cannot cache the checks received (a restart without the aggregator would not know them)");
    }
}

/// Passes the aggregator's run-now requests to the scheduler.
pub async fn follow_run_now(
    uplink: Uplink,
    run_now: mpsc::Sender<String>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        "waiting for run-now requests",
        "trying again",
        uplink.link_up.clone(),
    );
    loop {
        let started = tokio::time::Instant::now();
        let answer = tokio::select! {
            answer = uplink.run_now(limits::PROBE_LONG_POLL_MAX) => answer,
            _ = cancel.cancelled() => return,
        };
        match answer {
            Ok(names) => {
                backoff.succeeded();
                for name in names {
                    if run_now.send(name).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
        }
        if !poll_gap(started, &cancel).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document `checks_yaml` makes, loaded from `dir` (the file's path
    /// travels with the checks).
    fn document(dir: &tempfile::TempDir, version: &str, checks_yaml: &str) -> SpecsDocument {
        std::fs::create_dir_all(dir.path().join("checks")).unwrap();
        std::fs::write(dir.path().join("checks/c.yaml"), checks_yaml).unwrap();
        let lookup = |name: &str| (name == "TOKEN").then(|| "a-secret-token".to_string());
        let config = crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &lookup,
        )
        .unwrap();
        SpecsDocument {
            version: version.to_string(),
            region: "eu".to_string(),
            checks: config
                .checks
                .iter()
                .filter_map(|c| WireCheck::from_check(c))
                .collect(),
        }
    }

    const ONE: &str = "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/${TOKEN}\" }\n    every: 5s\n";
    const TWO: &str = "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/${TOKEN}\" }\n    every: 5s\n  - name: db\n    tcp: { address: \"127.0.0.1:9\" }\n    every: 1m\n";

    #[test]
    fn the_same_checks_again_change_nothing_and_new_ones_keep_the_secrets() {
        let (tx, rx) = watch::channel(CheckSet::default());
        let mut running = Running::default();
        let dir = tempfile::tempdir().unwrap();
        let document = |version: &str, yaml: &str| document(&dir, version, yaml);
        assert_eq!(running.apply(document("v1", ONE), &tx), Applied::Running);
        let first = rx.borrow().clone();
        assert_eq!(first.checks.len(), 1);
        // Same version, or the same checks under another version: nothing.
        assert_eq!(running.apply(document("v1", ONE), &tx), Applied::Same);
        assert_eq!(running.apply(document("v1b", ONE), &tx), Applied::Same);
        assert_eq!(running.version.as_deref(), Some("v1b"));
        assert!(Arc::ptr_eq(&rx.borrow().secrets, &first.secrets));
        // A check added: the secrets are the same values, hence the same
        // `Arc`, so the scheduler restarts nothing but what changed.
        assert_eq!(running.apply(document("v2", TWO), &tx), Applied::Running);
        let second = rx.borrow().clone();
        assert_eq!(second.checks.len(), 2);
        assert!(Arc::ptr_eq(&second.secrets, &first.secrets));
        assert_eq!(
            second.checks[0].source.as_ref().unwrap().fingerprint,
            first.checks[0].source.as_ref().unwrap().fingerprint
        );
    }

    #[test]
    fn changes_are_described_in_plain_words() {
        let before: BTreeMap<String, Option<u64>> =
            [("a".into(), Some(1)), ("b".into(), Some(2))].into();
        let after: BTreeMap<String, Option<u64>> = [
            ("a".into(), Some(1)),
            ("b".into(), Some(3)),
            ("c".into(), Some(4)),
        ]
        .into();
        assert_eq!(
            describe_changes(&before, &after),
            " (added c; changed b; the others keep running)"
        );
        assert_eq!(describe_changes(&BTreeMap::new(), &after), "");
    }
}

//! A remote probe's side of the conversation with its aggregator: fetching
//! its region's checks (long-poll, versioned), collecting run-now requests
//! (long-poll), and delivering results from the spool.
//!
//! Every request carries the probe's token. Failures are expected (the
//! aggregator restarts, the network drops): each loop retries with capped
//! exponential backoff and says so in the log once per outage, not once per
//! attempt. The spool makes results safe meanwhile; the last specs received
//! are kept on disk so a probe restarted while the aggregator is away still
//! knows what to run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, IF_NONE_MATCH};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::remote::{WireCheck, decode_wire_checks};
use crate::limits;
use crate::probe::ProbeResult;
use crate::scheduler::CheckSet;
use crate::spool::{Drain, Spool};
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
    Changed(SpecsDocument),
    Unchanged,
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
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = ca_file {
            let certs = crate::probe::read_ca_file(path)
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
            link_up: Arc::default(),
            spool: None,
        })
    }

    /// Reports `spool`'s backlog with every request.
    pub fn with_spool(mut self, spool: Arc<Spool>) -> Uplink {
        self.spool = Some(spool);
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
            .map_err(|e| TransportError::Rejected(format!("bad aggregator URL: {e}")))
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
        let mut request = self
            .request(reqwest::Method::GET, url, 0)
            .timeout(limits::PROBE_REQUEST_TIMEOUT + wait);
        if let Some(version) = known_version {
            request = request.header(IF_NONE_MATCH, format!("\"{version}\""));
        }
        let response = request.send().await.map_err(unavailable)?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(SpecsAnswer::Unchanged),
            StatusCode::OK => {
                let body = read_bounded(response, limits::PROBE_SPECS_BYTES_MAX).await?;
                let document: SpecsDocument = serde_json::from_slice(&body).map_err(|e| {
                    TransportError::Rejected(format!("unreadable specs document: {e}"))
                })?;
                Ok(SpecsAnswer::Changed(document))
            }
            status => Err(refusal(status, response).await),
        }
    }

    /// Checks the aggregator wants run now; waits up to `wait` for some.
    pub async fn run_now(&self, wait: Duration) -> Result<Vec<String>, TransportError> {
        let mut url = self.url("api/v1/probe/run-now")?;
        url.query_pairs_mut()
            .append_pair("region", &self.region)
            .append_pair("wait", &wait.as_secs().to_string());
        let response = self
            .request(reqwest::Method::GET, url, 0)
            .timeout(limits::PROBE_REQUEST_TIMEOUT + wait)
            .send()
            .await
            .map_err(unavailable)?;
        if response.status() != StatusCode::OK {
            return Err(refusal(response.status(), response).await);
        }
        let body = read_bounded(response, 1024 * 1024).await?;
        let answer: RunNow = serde_json::from_slice(&body)
            .map_err(|e| TransportError::Unavailable(format!("unreadable run-now answer: {e}")))?;
        Ok(answer.run_now)
    }

    async fn post_results(&self, results: Vec<ProbeResult>) -> Result<(), TransportError> {
        let sending = results.len();
        let batch = ResultBatch {
            results,
            sent_at: Some(Utc::now()),
        };
        let body = serde_json::to_vec(&batch)
            .map_err(|e| TransportError::Rejected(format!("cannot encode results: {e}")))?;
        let response = self
            .request(reqwest::Method::POST, self.url("api/v1/results")?, sending)
            .header(CONTENT_TYPE, "application/json")
            .timeout(limits::PROBE_REQUEST_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(refusal(response.status(), response).await)
        }
    }
}

/// The uplink is the remote probe's `ResultSink`.
pub struct HttpSink(pub Uplink);

impl HttpSink {
    fn link_up(&self) -> Arc<tokio::sync::Notify> {
        self.0.link_up.clone()
    }
}

impl ResultSink for HttpSink {
    fn submit(&self, mut batch: Vec<ProbeResult>) -> SubmitFuture<'_> {
        crate::transport::bound_screenshots(&mut batch);
        Box::pin(self.0.post_results(batch))
    }
}

fn unavailable(error: reqwest::Error) -> TransportError {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    TransportError::Unavailable(crate::probe::one_line(&text))
}

async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, TransportError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unavailable)? {
        if body.len() + chunk.len() > max {
            return Err(TransportError::Rejected(format!(
                "answer larger than {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a non-2xx answer means for the request: retry later (5xx, 429,
/// 401/403 that a reload of probes.yaml can fix), or never (other 4xx).
async fn refusal(status: StatusCode, response: reqwest::Response) -> TransportError {
    let text = read_bounded(response, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let message = format!("HTTP {status}: {}", crate::probe::one_line(&text));
    if status.is_server_error()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    {
        TransportError::Unavailable(message)
    } else {
        TransportError::Rejected(message)
    }
}

/// Backoff between attempts when the aggregator cannot be reached.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a send still in flight at shutdown may take.
const FINAL_SEND_GRACE: Duration = Duration::from_secs(2);

/// Capped exponential backoff with jitter, logging the start and end of an
/// outage once rather than every attempt.
///
/// The loops share a `LinkUp` signal: the first to get through wakes the
/// others from their backoff, so a spool drains as soon as the aggregator is
/// back rather than at the end of the longest sleep.
struct Backoff {
    what: &'static str,
    delay: Duration,
    failing_since: Option<tokio::time::Instant>,
    link_up: Arc<tokio::sync::Notify>,
}

impl Backoff {
    fn new(what: &'static str, link_up: Arc<tokio::sync::Notify>) -> Backoff {
        Backoff {
            what,
            delay: BACKOFF_MIN,
            failing_since: None,
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
        self.delay = BACKOFF_MIN;
    }

    /// Sleeps before the next attempt; false when cancelled meanwhile.
    async fn failed(&mut self, error: &TransportError, cancel: &CancellationToken) -> bool {
        if self.failing_since.is_none() {
            self.failing_since = Some(tokio::time::Instant::now());
            tracing::warn!(%error, "{}: cannot reach the aggregator; retrying", self.what);
        } else {
            tracing::debug!(%error, "{}: still failing", self.what);
        }
        let jitter = 0.8 + fastrand::f64() * 0.4;
        let delay = self.delay.mul_f64(jitter);
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = self.link_up.notified() => true,
            _ = cancel.cancelled() => false,
        }
    }
}

/// Moves results from the scheduler into the spool, then sends the spool
/// to `sink`, oldest first, until `cancel` and the channel is drained.
/// Whatever is not sent by then stays in the spool for the next start.
pub async fn ship_spooled(
    mut results: mpsc::Receiver<ProbeResult>,
    spool: Arc<Spool>,
    sink: Arc<HttpSink>,
    cancel: CancellationToken,
) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let link_up = sink.link_up();
    let sender = tokio::spawn(send_spool(
        spool.clone(),
        sink,
        link_up,
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
        let batch = std::mem::take(&mut buffer);
        let spool = spool.clone();
        match tokio::task::spawn_blocking(move || spool.append(&batch)).await {
            Ok(Ok(())) => wake.notify_one(),
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot write results to the spool; they are lost")
            }
            Err(error) => tracing::error!(%error, "spool writer failed"),
        }
    }
    wake.notify_one();
    let _ = sender.await;
}

async fn send_spool(
    spool: Arc<Spool>,
    sink: Arc<dyn ResultSink>,
    link_up: Arc<tokio::sync::Notify>,
    wake: Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new("sending results", link_up);
    loop {
        let reader = spool.clone();
        let drain: Drain = match tokio::task::spawn_blocking(move || {
            reader.oldest(limits::SPOOL_DRAIN_FILES_MAX, limits::RESULT_BATCH_MAX)
        })
        .await
        {
            Ok(Ok(drain)) => drain,
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot read the spool");
                if !backoff
                    .failed(&TransportError::Unavailable(error.to_string()), &cancel)
                    .await
                {
                    return;
                }
                continue;
            }
            Err(_) => return,
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
        // At shutdown a send gets a short grace, not the full timeout: what
        // it does not deliver stays in the spool.
        let sent = tokio::select! {
            sent = sink.submit(drain.results.clone()) => sent,
            _ = async { cancel.cancelled().await; tokio::time::sleep(FINAL_SEND_GRACE).await } => {
                Err(TransportError::Unavailable("shutting down".into()))
            }
        };
        match sent {
            Ok(()) => {
                backoff.succeeded();
                if let Err(error) = spool.remove(&drain) {
                    tracing::error!(%error, "cannot remove sent results from the spool; they will be resent (and ignored)");
                }
                tracing::debug!(results = count, "results delivered");
            }
            Err(TransportError::Rejected(reason)) => {
                tracing::error!(results = count, %reason, dir = %spool.dir().display(), "the aggregator refused results for good; kept in the spool's rejected/");
                if let Err(error) = spool.reject(&drain) {
                    tracing::error!(%error, "cannot set refused results aside");
                }
            }
            Err(error) => {
                if cancel.is_cancelled() {
                    tracing::info!(
                        results = spool.pending(),
                        "stopping with results in the spool; they are sent at the next start"
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

/// Keeps `checks` up to date with the aggregator's specs for this region,
/// long-polling for changes; writes each new document to `cache` and starts
/// from it when the aggregator cannot be reached at start.
pub async fn follow_specs(
    uplink: Uplink,
    cache: PathBuf,
    checks: watch::Sender<CheckSet>,
    cancel: CancellationToken,
) {
    let mut version: Option<String> = None;
    if let Some(document) = read_cached_specs(&cache).await {
        tracing::info!(version = %document.version, checks = document.checks.len(), "starting with the last checks received");
        version = apply_specs(document, &checks).or(version);
    }
    let mut backoff = Backoff::new("fetching checks", uplink.link_up.clone());
    let mut wait = Duration::ZERO;
    loop {
        let answer = tokio::select! {
            answer = uplink.fetch_specs(version.as_deref(), wait) => answer,
            _ = cancel.cancelled() => return,
        };
        match answer {
            Ok(SpecsAnswer::Unchanged) => backoff.succeeded(),
            Ok(SpecsAnswer::Changed(document)) => {
                backoff.succeeded();
                let raw = serde_json::json!({
                    "version": document.version,
                    "region": document.region,
                    "checks": document.checks,
                });
                let received = document.version.clone();
                match apply_specs(document, &checks) {
                    Some(v) => {
                        version = Some(v);
                        write_cached_specs(&cache, &raw).await;
                    }
                    // Invalid for us (a newer aggregator?): keep running the
                    // old ones, and do not ask for this version again.
                    None => version = Some(received),
                }
            }
            Err(error) => {
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
        }
        wait = limits::PROBE_LONG_POLL_MAX;
    }
}

/// Installs a specs document; returns its version, or `None` (with the
/// errors logged) when its checks do not decode.
fn apply_specs(document: SpecsDocument, checks: &watch::Sender<CheckSet>) -> Option<String> {
    let count = document.checks.len();
    match decode_wire_checks(document.checks) {
        Ok((decoded, secrets)) => {
            tracing::info!(version = %document.version, checks = count, "running the checks the aggregator sent");
            checks.send_replace(CheckSet {
                checks: decoded,
                secrets,
            });
            Some(document.version)
        }
        Err(errors) => {
            for error in &errors.0 {
                tracing::error!("{error}");
            }
            tracing::error!(version = %document.version, "the checks sent do not decode here; still running the previous ones");
            None
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

async fn write_cached_specs(path: &Path, document: &serde_json::Value) {
    let tmp = path.with_extension("tmp");
    let body = document.to_string();
    let written = async {
        tokio::fs::write(&tmp, body).await?;
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(error) = written {
        tracing::warn!(file = %path.display(), %error, "cannot cache the checks received");
    }
}

/// Passes the aggregator's run-now requests to the scheduler.
pub async fn follow_run_now(
    uplink: Uplink,
    run_now: mpsc::Sender<String>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new("waiting for run-now requests", uplink.link_up.clone());
    loop {
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
    }
}

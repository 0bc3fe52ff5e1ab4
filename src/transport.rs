//! How results travel from a probe to the aggregator.
//!
//! The probe side only knows a `ResultSink`. In `lookout serve` the sink is
//! `LocalSink`, a direct call into the in-process aggregator, fed by `ship`
//! (batches in memory, retried until stored). A remote probe's sink is
//! `uplink::HttpSink`, fed from the on-disk `spool` so that nothing is lost
//! while the aggregator is away or across restarts. Either way a batch is
//! resent with the same result ids until accepted, and the aggregator
//! ignores ids it already has: nothing lost, nothing counted twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::limits;
use crate::probe::ProbeResult;

/// Why a batch (or a probe's request) did not go through. Each message is
/// a plain sentence for the log; only `Rejected` means "never".
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the aggregator could not store the batch: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The aggregator could not be reached (refused, reset, DNS, TLS):
    /// sending again later can help.
    #[error("cannot reach the aggregator: {0}")]
    Unavailable(String),
    /// Connected, but no whole answer within the request's time limit.
    #[error("the aggregator did not answer within {}s", .after.as_secs_f64())]
    TimedOut { after: std::time::Duration },
    /// An answer that a later attempt can change: 5xx, 429, a token that a
    /// reload of probes.yaml can fix (401/403), a proxy's 404.
    #[error("the aggregator answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    /// A 3xx: a moved or misconfigured proxy. Never followed (the token goes
    /// to the configured address only), and temporary: it is retried.
    #[error(
        "the aggregator answered {status} to {url}, not following it (it points to {location})"
    )]
    Redirected {
        status: u16,
        url: String,
        location: String,
    },
    /// An answer that cannot be used (unreadable JSON): retried later.
    #[error("the aggregator's answer is unusable: {0}")]
    BadAnswer(String),
    /// An answer past the probe's bound for it: ignored, retried later.
    #[error("the aggregator sent {what} larger than {max} bytes; ignored")]
    TooLarge { what: &'static str, max: usize },
    /// The aggregator read the batch and refused it for good (400, 413,
    /// 422: malformed or too large): resending this batch cannot help.
    #[error("the aggregator refused the batch: {0}")]
    Rejected(String),
}

/// A result batch on the wire (`POST /api/v1/results`).
#[derive(Debug, Serialize, Deserialize)]
pub struct ResultBatch {
    pub results: Vec<ProbeResult>,
    /// The probe's clock when it sent the batch: with it the aggregator
    /// measures each result's age on the probe's own clock, which no skew
    /// between the two clocks can distort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

impl ResultBatch {
    /// The results, their `started_at` moved onto the aggregator's clock:
    /// `received_at` minus the age the probe's clock gives them. A probe
    /// whose clock is minutes off is then ordered and aged correctly, and
    /// results from two regions compare on one clock. (The error is the
    /// network latency of the request: milliseconds.)
    /// Also returns how far the probe's clock is behind ours (negative:
    /// ahead), latency included, when the batch said when it was sent.
    pub fn on_clock_of(
        self,
        received_at: DateTime<Utc>,
    ) -> (Vec<ProbeResult>, Option<chrono::Duration>) {
        let Some(sent_at) = self.sent_at else {
            return (self.results, None);
        };
        let skew = received_at.signed_duration_since(sent_at);
        let results = self
            .results
            .into_iter()
            .map(|mut result| {
                // Never in the future of its arrival, whatever was sent.
                let age = sent_at
                    .signed_duration_since(result.started_at)
                    .max(chrono::Duration::zero());
                result.started_at = received_at - age;
                result
            })
            .collect();
        (results, Some(skew))
    }
}

/// The answer to `GET /api/v1/probe/run-now`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunNow {
    pub run_now: Vec<String>,
}

pub type SubmitFuture<'a> = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>>;

pub trait ResultSink: Send + Sync {
    /// Delivers a batch. Must be idempotent per result id.
    fn submit(&self, batch: Vec<ProbeResult>) -> SubmitFuture<'_>;
}

/// The embedded transport of `lookout serve`.
pub struct LocalSink {
    pub aggregator: Arc<Aggregator>,
}

impl ResultSink for LocalSink {
    fn submit(&self, batch: Vec<ProbeResult>) -> SubmitFuture<'_> {
        Box::pin(async move {
            self.aggregator.ingest(batch).await?;
            Ok(())
        })
    }
}

/// Backoff between retries of a failed batch.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(100);
const RETRY_DELAY_MAX: Duration = Duration::from_secs(5);

/// Drains `results` into batches and delivers them until `cancel` fires and
/// the channel is empty. A failed batch is retried with backoff; results
/// wait in the bounded channel meanwhile, which slows the scheduler rather
/// than dropping anything.
pub async fn ship(
    mut results: mpsc::Receiver<ProbeResult>,
    sink: Arc<dyn ResultSink>,
    cancel: CancellationToken,
) {
    let mut buffer = Vec::with_capacity(limits::RESULT_BATCH_MAX);
    loop {
        let received = tokio::select! {
            n = results.recv_many(&mut buffer, limits::RESULT_BATCH_MAX) => n,
            _ = cancel.cancelled() => {
                // Take what is already queued, then stop.
                while let Ok(result) = results.try_recv() {
                    buffer.push(result);
                }
                0
            }
        };
        if !buffer.is_empty() {
            deliver(&*sink, std::mem::take(&mut buffer), &cancel).await;
        }
        if received == 0 {
            return;
        }
    }
}

async fn deliver(sink: &dyn ResultSink, batch: Vec<ProbeResult>, cancel: &CancellationToken) {
    let mut delay = RETRY_DELAY_MIN;
    loop {
        match sink.submit(batch.clone()).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, results = batch.len(), "delivering results failed; retrying in {delay:?}");
                if cancel.is_cancelled() {
                    tracing::error!(
                        results = batch.len(),
                        "shutting down with undelivered results"
                    );
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = cancel.cancelled() => {}
                }
                delay = (delay * 2).min(RETRY_DELAY_MAX);
            }
        }
    }
}

/// Keeps a batch's browser screenshots within `BATCH_SCREENSHOT_BYTES_MAX`
/// (base64 bytes), the newest first: older results lose theirs, with a
/// note, so a backlog of failing flows still fits the 16 MiB body bound.
pub fn bound_screenshots(results: &mut [ProbeResult]) {
    let mut total = 0usize;
    for result in results.iter_mut().rev() {
        let Some(shot) = &result.screenshot else {
            continue;
        };
        if total + shot.len() > limits::BATCH_SCREENSHOT_BYTES_MAX {
            result.screenshot = None;
            result
                .notes
                .push("screenshot left out: the batch had too many".to_string());
        } else {
            total += shot.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_newest_screenshots_within_its_bound() {
        let shot = "A".repeat(limits::BATCH_SCREENSHOT_BYTES_MAX / 3 + 1);
        let mut results: Vec<ProbeResult> = (0..4)
            .map(|_| {
                let mut r =
                    ProbeResult::for_test("flow", crate::probe::Outcome::Fail, chrono::Utc::now());
                r.screenshot = Some(shot.clone());
                r
            })
            .collect();
        results.push(ProbeResult::for_test(
            "other",
            crate::probe::Outcome::Ok,
            chrono::Utc::now(),
        ));
        bound_screenshots(&mut results);
        let kept: Vec<bool> = results.iter().map(|r| r.screenshot.is_some()).collect();
        assert_eq!(kept, [false, false, true, true, false]);
        assert_eq!(results[0].notes.len(), 1);
        assert!(results[4].notes.is_empty());
    }
}

//! How results travel from a probe to the aggregator.
//!
//! The probe side only knows a `ResultSink`. In `lookout serve` the sink is
//! `LocalSink`, a direct call into the in-process aggregator, fed by `ship`
//! (batches in memory, retried until stored). A remote probe's results go
//! into the on-disk `spool` and from it to the aggregator over HTTP
//! (`uplink::ship`), so that nothing is lost while the aggregator is away or
//! across restarts. Either way a batch is
//! resent with the same result ids until accepted, and the aggregator
//! ignores ids it already has: nothing lost, nothing counted twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::limits;
use crate::result::ProbeResult;

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

/// Why a result batch is refused as a whole (400): a value no working probe
/// sends, named by its field (`results[3].started_at`).
#[derive(Debug, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct BatchError {
    pub field: String,
    pub problem: String,
}

impl BatchError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> BatchError {
        BatchError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl ResultBatch {
    /// The results as the aggregator takes them: every value checked, every
    /// string and list bounded, and `started_at` moved onto the aggregator's
    /// clock. Also returns how far the probe's clock is behind ours
    /// (negative: ahead), latency included, when the batch said when it was
    /// sent.
    ///
    /// Dating: `received_at` minus the result's age on the probe's own
    /// clock (`sent_at - started_at`), so a probe whose clock is minutes off
    /// is aged correctly and results of two regions compare on one clock
    /// (the error is the request's latency). Without `sent_at` the probe's
    /// time is taken as it is, but never later than the arrival. Either way
    /// the age is at most `RESULT_AGE_MAX`. A timestamp more than
    /// `RESULT_TIME_SPAN_MAX` from `received_at`, or a duration that is
    /// negative or longer than `RESULT_DURATION_MAX`, refuses the batch.
    pub fn on_clock_of(
        self,
        received_at: DateTime<Utc>,
    ) -> Result<(Vec<ProbeResult>, Option<chrono::Duration>), BatchError> {
        let span = chrono::Duration::from_std(limits::RESULT_TIME_SPAN_MAX)
            .unwrap_or(chrono::Duration::MAX);
        let age_max =
            chrono::Duration::from_std(limits::RESULT_AGE_MAX).unwrap_or(chrono::Duration::MAX);
        let plausible = |at: DateTime<Utc>, field: String| {
            let off = at.signed_duration_since(received_at);
            if off > span || off < -span {
                Err(BatchError::new(
                    field,
                    format!(
                        "{} is more than {} years from the aggregator's clock",
                        at.to_rfc3339(),
                        limits::RESULT_TIME_SPAN_MAX.as_secs() / (365 * 86_400)
                    ),
                ))
            } else {
                Ok(at)
            }
        };
        let sent_at = match self.sent_at {
            Some(at) => Some(plausible(at, "sent_at".to_string())?),
            None => None,
        };
        let mut results = self.results;
        for (i, result) in results.iter_mut().enumerate() {
            let started_at = plausible(result.started_at, format!("results[{i}].started_at"))?;
            // The age on the probe's own clock (or ours, without sent_at);
            // never negative (not in the future of its arrival), never
            // older than anything we keep.
            let age = sent_at
                .unwrap_or(received_at)
                .signed_duration_since(started_at)
                .clamp(chrono::Duration::zero(), age_max);
            result.started_at = received_at - age;
            if let Some(expiry) = result.cert_expiry {
                // Certificates say "9999-12-31" for "never": clamped, kept.
                result.cert_expiry = Some(expiry.clamp(received_at - span, received_at + span));
            }
            bound_result(result, i)?;
        }
        let skew = sent_at.map(|sent_at| received_at.signed_duration_since(sent_at));
        Ok((results, skew))
    }
}

/// Checks a posted result's numbers and cuts its strings and lists to
/// their limits (noting that it did), so nothing a probe sends costs more
/// than a real result or breaks arithmetic later.
fn bound_result(result: &mut ProbeResult, i: usize) -> Result<(), BatchError> {
    let duration_ms_max = limits::RESULT_DURATION_MAX.as_millis() as f64;
    let duration = |ms: f64, field: &str| {
        if (0.0..=duration_ms_max).contains(&ms) {
            Ok(())
        } else {
            Err(BatchError::new(
                format!("results[{i}].{field}"),
                format!(
                    "{ms} ms is not a duration between 0 and {}",
                    crate::schedule::format_duration(limits::RESULT_DURATION_MAX)
                ),
            ))
        }
    };
    duration(result.duration_ms, "duration_ms")?;
    let phases = &result.phases_ms;
    for (ms, field) in [
        (phases.dns, "phases_ms.dns"),
        (phases.connect, "phases_ms.connect"),
        (phases.tls, "phases_ms.tls"),
        (phases.ttfb, "phases_ms.ttfb"),
        (phases.transfer, "phases_ms.transfer"),
    ] {
        if let Some(ms) = ms {
            duration(ms, field)?;
        }
    }
    for (s, step) in result.steps.iter().enumerate() {
        duration(step.at_ms, &format!("steps[{s}].at_ms"))?;
        duration(step.ms, &format!("steps[{s}].ms"))?;
        if let Some(ms) = step.load_ms {
            duration(ms, &format!("steps[{s}].load_ms"))?;
        }
    }
    for (name, field) in [
        (&result.check, "check"),
        (&result.region, "region"),
        (&result.probe, "probe"),
    ] {
        if name.chars().count() > limits::RESULT_NAME_CHARS_MAX {
            return Err(BatchError::new(
                format!("results[{i}].{field}"),
                format!("longer than {} characters", limits::RESULT_NAME_CHARS_MAX),
            ));
        }
    }
    let mut cut = false;
    let text = limits::RESULT_TEXT_CHARS_MAX;
    for value in [&mut result.error, &mut result.degraded]
        .into_iter()
        .flatten()
    {
        cut |= truncate_chars(value, text);
    }
    if result.notes.len() > limits::RESULT_NOTES_MAX {
        result.notes.truncate(limits::RESULT_NOTES_MAX);
        cut = true;
    }
    for note in &mut result.notes {
        cut |= truncate_chars(note, text);
    }
    if result.steps.len() > limits::BROWSER_STEPS_MAX {
        result.steps.truncate(limits::BROWSER_STEPS_MAX);
        cut = true;
    }
    for step in &mut result.steps {
        cut |= truncate_chars(&mut step.name, text);
        if let Some(error) = &mut step.error {
            cut |= truncate_chars(error, text);
        }
    }
    if let Some(page) = &mut result.page {
        if let Some(url) = &mut page.url {
            cut |= truncate_chars(url, limits::RESULT_URL_CHARS_MAX);
        }
        if let Some(title) = &mut page.title {
            cut |= truncate_chars(title, text);
        }
    }
    // What a flow's pages did: as many as a probe keeps, each bounded.
    let findings = &mut result.browser;
    for list in [&mut findings.console_errors, &mut findings.request_errors] {
        if list.len() > limits::BROWSER_PAGE_ERRORS_MAX {
            list.truncate(limits::BROWSER_PAGE_ERRORS_MAX);
            cut = true;
        }
        for error in list.iter_mut() {
            cut |= truncate_chars(&mut error.message, limits::BROWSER_PAGE_ERROR_CHARS_MAX);
            if let Some(url) = &mut error.url {
                cut |= truncate_chars(url, limits::RESULT_URL_CHARS_MAX);
            }
        }
    }
    for step in &mut result.steps {
        if let Some(url) = step.vitals.as_mut().and_then(|v| v.url.as_mut()) {
            cut |= truncate_chars(url, limits::RESULT_URL_CHARS_MAX);
        }
    }
    // Thumbnails within the film strip's bounds (base64 of the JPEG bytes).
    let strip = &mut result.browser.film_strip;
    let strip_bytes: usize = strip.iter().map(|f| f.jpeg.len() + f.name.len()).sum();
    if strip.len() > limits::BROWSER_FILM_STRIP_FRAMES_MAX
        || strip
            .iter()
            .any(|f| f.jpeg.len() > limits::BROWSER_FILM_STRIP_FRAME_BYTES_MAX / 3 * 4 + 4)
        || strip_bytes
            > limits::BROWSER_FILM_STRIP_BYTES_MAX / 3 * 4
                + 4 * limits::BROWSER_FILM_STRIP_FRAMES_MAX
                + limits::BROWSER_FILM_STRIP_FRAMES_MAX * text
    {
        strip.clear();
        result
            .notes
            .push("film strip left out: larger than a probe sends".to_string());
    }
    for frame in &mut result.browser.film_strip {
        cut |= truncate_chars(&mut frame.name, text);
    }
    // A PNG of at most BROWSER_SCREENSHOT_BYTES_MAX, in base64.
    if result
        .screenshot
        .as_ref()
        .is_some_and(|shot| shot.len() > limits::BROWSER_SCREENSHOT_BYTES_MAX / 3 * 4 + 4)
    {
        result.screenshot = None;
        result
            .notes
            .push("screenshot left out: larger than a probe sends".to_string());
    }
    if cut {
        result.notes.truncate(limits::RESULT_NOTES_MAX - 1);
        result
            .notes
            .push("some text of this result was cut to the aggregator's limits".to_string());
    }
    Ok(())
}

/// Cuts `text` to `max` characters (marking the cut with `…`); true if it did.
fn truncate_chars(text: &mut String, max: usize) -> bool {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => {
            text.truncate(at);
            text.push('…');
            true
        }
        _ => false,
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
        if received > 0 {
            gather(&mut results, &mut buffer, &cancel).await;
        }
        if !buffer.is_empty() {
            deliver(&*sink, std::mem::take(&mut buffer), &cancel).await;
        }
        if received == 0 {
            return;
        }
    }
}

/// Waits up to `LOCAL_SHIP_GATHER` for more results to join `buffer`, so
/// that checks finishing close together are stored in one transaction
/// rather than one each; a full batch or a shutdown ends the wait early.
async fn gather(
    results: &mut mpsc::Receiver<ProbeResult>,
    buffer: &mut Vec<ProbeResult>,
    cancel: &CancellationToken,
) {
    let until = tokio::time::Instant::now() + limits::LOCAL_SHIP_GATHER;
    while buffer.len() < limits::RESULT_BATCH_MAX {
        let room = limits::RESULT_BATCH_MAX - buffer.len();
        tokio::select! {
            n = results.recv_many(buffer, room) => if n == 0 {
                return; // closed: the caller sees it on its next receive
            },
            _ = tokio::time::sleep_until(until) => return,
            _ = cancel.cancelled() => return,
        }
    }
}

async fn deliver(sink: &dyn ResultSink, batch: Vec<ProbeResult>, cancel: &CancellationToken) {
    let mut delay = limits::LOCAL_SHIP_RETRY_DELAY_MIN;
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
                delay = (delay * 2).min(limits::LOCAL_SHIP_RETRY_DELAY_MAX);
            }
        }
    }
}

/// Keeps a batch's browser screenshots (and film strips) within
/// `BATCH_SCREENSHOT_BYTES_MAX` (base64 bytes), the newest first: older results lose theirs, with a
/// note, so a backlog of failing flows still fits the 16 MiB body bound.
pub fn bound_screenshots(results: &mut [ProbeResult]) {
    let mut total = 0usize;
    for result in results.iter_mut().rev() {
        // Film strips count against the same bound.
        let strip: usize = result.browser.film_strip.iter().map(|f| f.jpeg.len()).sum();
        if strip > 0 {
            if total + strip > limits::BATCH_SCREENSHOT_BYTES_MAX {
                result.browser.film_strip.clear();
                result
                    .notes
                    .push("film strip left out: the batch had too many".to_string());
            } else {
                total += strip;
            }
        }
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

    fn batch_of(results: Vec<ProbeResult>, sent_at: Option<DateTime<Utc>>) -> ResultBatch {
        ResultBatch { results, sent_at }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_result_from_the_future_without_sent_at_is_dated_at_its_arrival() {
        let received = at("2026-12-01T12:00:00Z");
        let mut result = ProbeResult::for_test("api", crate::result::Outcome::Ok, received);
        result.started_at = at("2099-01-01T00:00:00Z");
        let (results, skew) = batch_of(vec![result], None).on_clock_of(received).unwrap();
        assert_eq!(results[0].started_at, received);
        assert_eq!(skew, None);
        // And one from long ago is no older than anything kept.
        let mut result = ProbeResult::for_test("api", crate::result::Outcome::Ok, received);
        result.started_at = at("1990-01-01T00:00:00Z");
        let (results, _) = batch_of(vec![result], None).on_clock_of(received).unwrap();
        let age = received - results[0].started_at;
        assert_eq!(age.to_std().unwrap(), limits::RESULT_AGE_MAX);
    }

    #[test]
    fn extreme_values_refuse_the_batch_naming_the_field() {
        let received = at("2026-12-01T12:00:00Z");
        let ok = ProbeResult::for_test("api", crate::result::Outcome::Ok, received);
        let cases: Vec<(ResultBatch, &str)> = vec![
            (
                batch_of(vec![ok.clone()], Some(at("9999-12-31T23:59:59Z"))),
                "sent_at",
            ),
            (
                {
                    let mut r = ok.clone();
                    r.started_at = DateTime::<Utc>::MIN_UTC;
                    batch_of(vec![ok.clone(), r], Some(received))
                },
                "results[1].started_at",
            ),
            (
                {
                    let mut r = ok.clone();
                    r.duration_ms = -1.0;
                    batch_of(vec![r], None)
                },
                "results[0].duration_ms",
            ),
            (
                {
                    let mut r = ok.clone();
                    r.phases_ms.ttfb = Some(1e300);
                    batch_of(vec![r], None)
                },
                "results[0].phases_ms.ttfb",
            ),
            (
                {
                    let mut r = ok.clone();
                    r.region = "r".repeat(10_000);
                    batch_of(vec![r], None)
                },
                "results[0].region",
            ),
        ];
        for (batch, field) in cases {
            let error = batch.on_clock_of(received).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }

    #[test]
    fn long_strings_and_lists_are_cut_with_a_note() {
        let received = at("2026-12-01T12:00:00Z");
        let mut r = ProbeResult::for_test("flow", crate::result::Outcome::Fail, received);
        r.error = Some("e".repeat(1024 * 1024));
        r.notes = vec!["n".repeat(5000); 500];
        r.cert_expiry = Some(DateTime::<Utc>::MAX_UTC);
        let (results, _) = batch_of(vec![r], Some(received))
            .on_clock_of(received)
            .unwrap();
        let r = &results[0];
        assert_eq!(
            r.error.as_ref().unwrap().chars().count(),
            limits::RESULT_TEXT_CHARS_MAX
        );
        assert!(r.error.as_ref().unwrap().ends_with('…'));
        assert_eq!(r.notes.len(), limits::RESULT_NOTES_MAX);
        assert!(
            r.notes
                .last()
                .unwrap()
                .contains("cut to the aggregator's limits")
        );
        assert!(
            r.cert_expiry
                .unwrap()
                .signed_duration_since(received)
                .num_days()
                < 40_000
        );
    }

    #[test]
    fn a_batch_keeps_the_newest_screenshots_within_its_bound() {
        let shot = "A".repeat(limits::BATCH_SCREENSHOT_BYTES_MAX / 3 + 1);
        let mut results: Vec<ProbeResult> = (0..4)
            .map(|_| {
                let mut r =
                    ProbeResult::for_test("flow", crate::result::Outcome::Fail, chrono::Utc::now());
                r.screenshot = Some(shot.clone());
                r
            })
            .collect();
        results.push(ProbeResult::for_test(
            "other",
            crate::result::Outcome::Ok,
            chrono::Utc::now(),
        ));
        bound_screenshots(&mut results);
        let kept: Vec<bool> = results.iter().map(|r| r.screenshot.is_some()).collect();
        assert_eq!(kept, [false, false, true, true, false]);
        assert_eq!(results[0].notes.len(), 1);
        assert!(results[4].notes.is_empty());
    }
}

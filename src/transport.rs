//! How results travel from a probe to the aggregator.
//!
//! The probe side only knows a `ResultSink`. In `lookout serve` the sink is
//! `LocalSink`, a direct call into the in-process aggregator; a remote probe
//! gets an HTTP sink with the same contract (the regions issue). Either way
//! the shipper below batches results and retries a failed batch, with the
//! same ids, until it is accepted, so nothing is lost and nothing counted twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::limits;
use crate::probe::ProbeResult;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the aggregator could not store the batch: {0}")]
    Storage(#[from] crate::storage::StorageError),
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

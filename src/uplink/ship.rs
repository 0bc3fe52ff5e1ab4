//! Delivering the spool: oldest batches first, each removed once the
//! aggregator accepted it, set aside alone when the aggregator refuses it,
//! put back for the next attempt when it cannot be reached.

use super::*;

/// Moves results from the scheduler into the spool (or, when the spool
/// cannot be written, its memory queue), then sends them to the
/// aggregator, oldest first, until `cancel` and the channel is drained.
/// Whatever is not sent by then stays in the spool for the next start.
pub(crate) async fn ship_spooled(
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

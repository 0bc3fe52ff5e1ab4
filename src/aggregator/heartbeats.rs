//! Heartbeat checks at the aggregator: pings (coalesced above a sane rate,
//! `/start` timing the run) become results of region `push`, and pings that
//! did not come become synthetic `timeout` results.

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::config::CheckKind;
use crate::heartbeat::{self, HEARTBEAT_REGION, Ping};
use crate::limits;

use crate::result::{Outcome, ProbeResult, round_ms};
use crate::storage::StorageError;

use super::*;

impl Aggregator {
    /// Records a heartbeat ping. Returns the check's name, or `None` for a
    /// token no check has (counted in `unknown_pings`).
    pub async fn ping(&self, token: &str, ping: Ping) -> Result<Option<String>, StorageError> {
        let config = self.config();
        let Some(check) = heartbeat::find_by_token(&config, token) else {
            self.unknown_pings.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("ping with an unknown token");
            return Ok(None);
        };
        // The guard must not live across an await: scope it.
        let started = {
            let mut starts = self
                .heartbeat_starts
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if ping == Ping::Start {
                starts.insert(check.name.clone(), tokio::time::Instant::now());
                return Ok(Some(check.name.clone()));
            }
            starts.remove(&check.name)
        };
        // The run time (from /start) goes in duration_ms.
        let duration_ms = started
            .map(|clock| round_ms(clock.elapsed()))
            .unwrap_or(0.0);
        if !self.ping_is_news(&check.name, ping, duration_ms) {
            // Counted; if it changes what was last stored, it is stored
            // when its window closes (`flush_pings`), so no change is lost.
            self.coalesced_pings.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(check.name.clone()));
        }
        self.store_ping(&check.name, ping, duration_ms).await?;
        Ok(Some(check.name.clone()))
    }

    /// One ping as a result of region `push`, dated at its arrival (so a
    /// late job's success is newer than the missed-ping report before it),
    /// through the same ingest as every result.
    async fn store_ping(
        &self,
        check: &str,
        ping: Ping,
        duration_ms: f64,
    ) -> Result<(), StorageError> {
        let (outcome, error) = match ping {
            Ping::Fail => (
                Outcome::Fail,
                Some("the job reported a failure (/fail)".to_string()),
            ),
            _ => (Outcome::Ok, None),
        };
        let result = heartbeat_result(check, self.clock.now(), duration_ms, outcome, error);
        if let Err(error) = self.ingest(vec![result]).await {
            // Not stored: the job's retry must not be taken for a repeat.
            if let Some(window) = self
                .last_pings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_mut(check)
            {
                window.stored = window.stored.saturating_sub(1);
            }
            return Err(error);
        }
        Ok(())
    }

    /// Whether a ping of `kind` for `check` is stored and judged now: the
    /// first within each `HEARTBEAT_PING_GAP_MIN`, and one change of kind
    /// (a `/fail` after successes) within it. The rest are coalesced; the
    /// latest of them, if it says something else than the last stored one,
    /// waits in the window to be stored when the window closes. So a job
    /// pinging in a loop, even alternating kinds, writes about two rows a
    /// second, and the check always ends on the job's latest word.
    fn ping_is_news(&self, check: &str, kind: Ping, duration_ms: f64) -> bool {
        let mut windows = self.last_pings.lock().unwrap_or_else(|p| p.into_inner());
        let at = tokio::time::Instant::now();
        let window = windows.entry(check.to_string()).or_insert(PingWindow {
            opened: at,
            stored: 0,
            kind,
            pending: None,
        });
        if at.saturating_duration_since(window.opened) >= limits::HEARTBEAT_PING_GAP_MIN {
            // A new window; this ping supersedes any that waited.
            *window = PingWindow {
                opened: at,
                stored: 0,
                kind: window.kind,
                pending: None,
            };
        }
        let news = match window.stored {
            0 => true,
            1 => window.kind != kind,
            _ => false,
        };
        if news {
            window.stored += 1;
            window.kind = kind;
            window.pending = None;
        } else {
            window.pending = (kind != window.kind).then_some((kind, duration_ms));
        }
        news
    }

    /// Stores the pings that waited in windows now closed (the tick loop
    /// calls this every second).
    pub(super) async fn flush_pings(&self) -> Result<(), StorageError> {
        let due: Vec<(String, Ping, f64)> = {
            let mut windows = self.last_pings.lock().unwrap_or_else(|p| p.into_inner());
            let at = tokio::time::Instant::now();
            windows
                .iter_mut()
                .filter(|(_, w)| {
                    w.pending.is_some()
                        && at.saturating_duration_since(w.opened) >= limits::HEARTBEAT_PING_GAP_MIN
                })
                .filter_map(|(check, w)| {
                    let (kind, duration_ms) = w.pending.take()?;
                    *w = PingWindow {
                        opened: at,
                        stored: 1,
                        kind,
                        pending: None,
                    };
                    Some((check.clone(), kind, duration_ms))
                })
                .collect()
        };
        for (check, kind, duration_ms) in due {
            self.store_ping(&check, kind, duration_ms).await?;
        }
        Ok(())
    }

    /// Pings with unknown tokens since start.
    pub fn unknown_pings(&self) -> u64 {
        self.unknown_pings.load(Ordering::Relaxed)
    }

    /// A synthetic `timeout` result for every heartbeat overdue at `now`.
    /// The anchor is the last result of its `push` region (a ping, or the
    /// previous missed-ping report), so silence is reported once per period.
    pub(super) async fn missed_heartbeats(&self, now: DateTime<Utc>) -> Vec<ProbeResult> {
        let config = self.config();
        let mut missed = Vec::new();
        for check in &config.checks {
            let CheckKind::Heartbeat(spec) = &check.kind else {
                continue;
            };
            let (anchor, pinged_before) = self.states.read(|states| {
                let region = states
                    .get(&check.name)
                    .and_then(|s| s.state.regions.get(HEARTBEAT_REGION));
                (
                    region.map(|r| r.last_seen).unwrap_or(self.started_at),
                    region.is_some_and(|r| r.last.outcome != Outcome::Timeout),
                )
            });
            if let Some(reason) = heartbeat::overdue(spec, anchor, pinged_before, now) {
                missed.push(heartbeat_result(
                    &check.name,
                    now,
                    0.0,
                    Outcome::Timeout,
                    Some(reason),
                ));
            }
        }
        missed
    }
}

fn heartbeat_result(
    check: &str,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    outcome: Outcome,
    error: Option<String>,
) -> ProbeResult {
    ProbeResult {
        error,
        ..ProbeResult::bare(
            Uuid::now_v7(),
            check.to_string(),
            HEARTBEAT_REGION.to_string(),
            "aggregator".to_string(),
            started_at,
            duration_ms,
            outcome,
        )
    }
}

/// The pings of one heartbeat stored within the current coalescing window.
pub(super) struct PingWindow {
    opened: tokio::time::Instant,
    stored: u8,
    /// The kind of the last stored ping.
    kind: Ping,
    /// The latest coalesced ping, when it says something else than `kind`
    /// (with its run time): stored when the window closes.
    pending: Option<(Ping, f64)>,
}

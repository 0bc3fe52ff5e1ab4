//! What the API, the status page and `/metrics` read of the aggregator:
//! check views, states, events, the status report (cached) and the metrics
//! snapshot. Reads only.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::config::{Check, Secrets};
use crate::limits;
use crate::metrics;
use crate::result::Outcome;
use crate::rules::{CheckState, Status, Transition};
use crate::status::StatusReport;
use crate::storage::StorageError;

use super::*;

/// A check as the API shows it.
#[derive(Debug, Serialize)]
pub struct CheckView {
    pub name: String,
    pub kind: &'static str,
    pub target: String,
    pub schedule: String,
    pub status: Status,
    pub since: Option<DateTime<Utc>>,
    pub incident: Option<Uuid>,
    pub regions: serde_json::Value,
    /// `depends_on` of the check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Down while a dependency is down: why (`db-primary is down`); its
    /// alerts wait for the dependency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// The open incident's acknowledgement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack: Option<crate::rules::Ack>,
}

impl Aggregator {
    /// The status page's announcements written through the API (#17).
    pub fn storage_announcements(&self) -> &dyn crate::storage::AnnouncementStore {
        self.storage.announcements()
    }

    /// The status page's figures, at most `STATUS_CACHE_FOR` old.
    pub async fn status_report(&self) -> Result<Arc<StatusReport>, StorageError> {
        // Held while computing, so concurrent visitors wait for one result.
        let mut cache = self.status_cache.lock().await;
        if let Some((at, report)) = cache.as_ref()
            && at.elapsed() < limits::STATUS_CACHE_FOR
        {
            return Ok(report.clone());
        }
        let report = Arc::new(self.compute_status(self.clock.now()).await?);
        *cache = Some((tokio::time::Instant::now(), report.clone()));
        Ok(report)
    }

    /// Computes the status page's figures afresh (no cache).
    pub async fn compute_status(&self, now: DateTime<Utc>) -> Result<StatusReport, StorageError> {
        use crate::rollup::{HOUR_MS, hour_of};
        let config = self.config();
        let states = self.states.snapshot();
        let days = chrono::Duration::days(crate::status::DAYS_SHOWN as i64);
        let events = self
            .storage
            .history()
            .events_since((now - days).timestamp_millis(), limits::STATUS_EVENTS_MAX)
            .await?;
        let first_hour =
            hour_of(now.timestamp_millis()) - (crate::status::LATENCY_HOURS as i64 - 1) * HOUR_MS;
        let (rollups, rolled_until) = self.storage.history().rollups_since(first_hour).await?;
        let raw_since = rolled_until.unwrap_or(first_hour).max(first_hour);
        let raw = self
            .storage
            .history()
            .raw_latencies_since(raw_since, limits::STATUS_RAW_RESULTS_MAX)
            .await?;
        // Failing browser runs may have a screenshot to link.
        let failing_browser_runs: Vec<String> = config
            .checks
            .iter()
            .filter(|c| c.kind_name() == "browser")
            .filter_map(|c| states.get(&c.name))
            .flat_map(|s| s.regions.values())
            .filter(|r| r.last.outcome != Outcome::Ok)
            .map(|r| r.last.id.to_string())
            .collect();
        let screenshots = self
            .storage
            .history()
            .screenshots_present(failing_browser_runs)
            .await?;
        // Their latest full results: pages, errors and film strips.
        let browser: std::collections::HashSet<&str> = config
            .checks
            .iter()
            .filter(|c| c.kind_name() == "browser")
            .map(|c| c.name.as_str())
            .collect();
        let browser_results = if browser.is_empty() {
            Vec::new()
        } else {
            self.metrics
                .latest_results_of(&|check| browser.contains(check))
        };
        Ok(crate::status::compute(&crate::status::Inputs {
            config: &config,
            states: &states,
            events: &events,
            rollups: &rollups,
            rolled_until_ms: rolled_until,
            raw: &raw,
            screenshots: &screenshots,
            browser_results: &browser_results,
            now,
        }))
    }

    /// What `/metrics` reports of the present: the state and newest
    /// results of each check in `scope`, the regions, the outbox backlog.
    pub async fn metrics_snapshot(&self, scope: &metrics::Scope) -> metrics::Snapshot {
        let config = self.config();
        let checks = self.states.read(|states| {
            config
                .checks
                .iter()
                .filter(|check| scope.keeps(Some(&check.name)))
                .map(|check| metrics::CheckSnapshot {
                    name: check.name.clone(),
                    kind: check.kind_name(),
                    target: config.secrets.redact(&check.target()),
                    status: states
                        .get(&check.name)
                        .map(|s| s.state.status)
                        .unwrap_or_default(),
                })
                .collect()
        });
        let outbox_pending = match self.storage.history().pending_delivery_count().await {
            Ok(count) => Some(count),
            Err(error) => {
                tracing::error!(%error, "cannot count the alert outbox for /metrics");
                None
            }
        };
        metrics::Snapshot {
            checks,
            // Only the part's: `?part=lookout` copies no result at all.
            results: self
                .metrics
                .latest_results_of(&|check| scope.keeps(Some(check))),
            regions: self
                .probes()
                .into_iter()
                .map(|p| metrics::RegionSnapshot {
                    region: p.region,
                    last_result: p.last_result,
                    spool_pending: p.spool_pending,
                })
                .collect(),
            outbox_pending,
            unknown_pings: self.unknown_pings(),
            coalesced_pings: self.coalesced_pings.load(Ordering::Relaxed),
            browser_sessions_in_use: self.metrics.browser_sessions_in_use(),
            local_spool_pending: None,
            now: self.clock.now(),
        }
    }

    pub async fn state(&self, check: &str) -> Option<CheckState> {
        self.states.get(check)
    }

    pub async fn views(&self) -> Vec<CheckView> {
        let config = self.config();
        self.states.read(|states| {
            config
                .checks
                .iter()
                .map(|check| {
                    let mut view = view(
                        check,
                        states.get(&check.name).map(|r| &r.state),
                        &config.secrets,
                    );
                    if view.status == Status::Down {
                        view.because = check
                            .depends_on
                            .iter()
                            .find(|dep| {
                                states
                                    .get(dep.as_str())
                                    .is_some_and(|r| r.state.status == Status::Down)
                            })
                            .map(|dep| judge::dependency_hold(dep));
                    }
                    view
                })
                .collect()
        })
    }

    pub async fn recent_events(
        &self,
        check: &str,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        self.storage
            .history()
            .recent_events(check.to_string(), limit)
            .await
    }
}

fn view(check: &Check, state: Option<&CheckState>, secrets: &Secrets) -> CheckView {
    let default = CheckState::default();
    let state = state.unwrap_or(&default);
    CheckView {
        name: check.name.clone(),
        kind: check.kind_name(),
        target: secrets.redact(&check.target()),
        schedule: check.schedule.describe(),
        status: state.status,
        since: state.since,
        incident: state.incident,
        regions: serde_json::to_value(&state.regions).unwrap_or_default(),
        depends_on: check.depends_on.clone(),
        because: None,
        ack: state
            .ack
            .as_deref()
            .cloned()
            .filter(|_| crate::policy::acknowledged(state)),
    }
}

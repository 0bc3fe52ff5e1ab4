//! The aggregator's view of its probes: contact and reports (liveness),
//! clock skew and spool backlog as they say, a probe going stale or coming
//! back (its own events and alerts), and fast confirmation (asking regions
//! to run a check now).

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::alert;
use crate::config::Config;
use crate::rules::{ProbeEvent, Rules};
use crate::storage::{Batch, StorageError};

use super::*;

/// A probe claimed as back by a batch being written, with how it was.
pub(super) struct ClaimedBack {
    region: String,
    was: ProbeStatus,
}

/// The probes a batch claims as back, given back unless the batch
/// committed: a failed write, and an ingest dropped midway (the probe hung
/// up), leave them stale, and the resend tells again.
pub(super) struct BackClaim<'a> {
    pub(super) aggregator: &'a Aggregator,
    pub(super) back: Vec<ClaimedBack>,
    pub(super) committed: bool,
}

impl Drop for BackClaim<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.aggregator.unclaim_probes_back(&self.back);
        }
    }
}

/// A region's probe as the aggregator sees it (`GET /api/v1/probes`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeStatus {
    pub region: String,
    /// When its latest result arrived (the aggregator's clock).
    pub last_result: Option<DateTime<Utc>>,
    /// When it last asked for checks or run-now requests.
    pub last_contact: Option<DateTime<Utc>>,
    /// No result within its staleness window: its checks are judged by the
    /// other regions, and an alert said so.
    pub stale: bool,
    /// When it went stale or came back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// How far its clock is behind the aggregator's (negative: ahead), as
    /// measured on its last batch; corrected for, shown for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_ms: Option<i64>,
    /// Results waiting in its spool, as it last reported (saturation: a
    /// growing backlog means it cannot deliver).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spool_pending: Option<u64>,
    #[serde(skip)]
    pub(super) incident: Option<Uuid>,
}

impl Aggregator {
    /// A probe asked for something: it is alive, whatever its results say.
    /// It reports its spool backlog with every request.
    pub fn note_probe_contact(&self, region: &str, spool_pending: Option<u64>) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let probe = probes
            .entry(region.to_string())
            .or_insert_with(|| ProbeStatus {
                region: region.to_string(),
                ..ProbeStatus::default()
            });
        probe.last_contact = Some(self.clock.now());
        if spool_pending.is_some() {
            probe.spool_pending = spool_pending;
        }
    }

    /// Every region's probe: those with a token and those that reported.
    pub fn probes(&self) -> Vec<ProbeStatus> {
        let mut probes = self
            .probes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for region in self.hub.regions() {
            probes.entry(region.clone()).or_insert_with(|| ProbeStatus {
                region,
                ..ProbeStatus::default()
            });
        }
        probes.into_values().collect()
    }

    /// Back events (with their alerts) for the stale probes among
    /// `regions`, added to `batch`. Each is claimed (marked as reporting
    /// again) at once, so that a concurrent batch from the same probe does
    /// not send the recovery twice; `unclaim_probes_back` undoes the claim
    /// if the batch is not written.
    pub(super) fn claim_probes_back(
        &self,
        config: &Config,
        regions: &[String],
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) -> Vec<ClaimedBack> {
        // Only the leader judges liveness: another replica's flags may be
        // left from when it led, and the leader sees the report through the
        // shared contact (`probes_back_elsewhere`).
        if self.replicas.as_ref().is_some_and(|r| !r.is_leader()) {
            return Vec::new();
        }
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let mut back = Vec::new();
        for region in regions {
            let Some(probe) = probes.get_mut(region).filter(|p| p.stale) else {
                continue;
            };
            let was = probe.clone();
            // Claimed as reporting now, so that neither a concurrent batch
            // nor a tick's staleness check acts on the old silence.
            probe.stale = false;
            probe.last_result = Some(now);
            let lasted = probe
                .since
                .and_then(|since| (now - since).to_std().ok())
                .unwrap_or_default();
            let summary = format!(
                "probe {region} is reporting again after {} without results",
                crate::schedule::format_duration_approx(lasted)
            );
            let incident = probe.incident.unwrap_or_else(Uuid::now_v7);
            let event = ProbeEvent {
                id: Uuid::now_v7(),
                region: region.clone(),
                stale: false,
                at: now,
                incident,
                summary: summary.clone(),
            };
            let alert = alert::for_probe(
                region,
                false,
                summary,
                now,
                incident,
                Some(lasted.as_secs()),
            );
            queue_alert_to(
                batch,
                &channels_for_region(config, region),
                config,
                event.id,
                alert,
                now,
            );
            batch.probe_events.push(event);
            back.push(ClaimedBack {
                region: region.clone(),
                was,
            });
        }
        back
    }

    /// Undoes `claim_probes_back`: the batch was not written.
    pub(super) fn unclaim_probes_back(&self, back: &[ClaimedBack]) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for claimed in back {
            if let Some(probe) = probes.get_mut(&claimed.region) {
                probe.stale = true;
                probe.since = claimed.was.since;
                probe.incident = claimed.was.incident;
                probe.last_result = claimed.was.last_result;
            }
        }
    }

    /// Once a batch is stored: its regions reported at `at`.
    pub(super) fn note_probes_reported(
        &self,
        regions: &[String],
        at: DateTime<Utc>,
        back: &[ClaimedBack],
    ) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for region in regions {
            let probe = probes.entry(region.clone()).or_insert_with(|| ProbeStatus {
                region: region.clone(),
                ..ProbeStatus::default()
            });
            probe.last_result = Some(at);
            if back.iter().any(|claimed| &claimed.region == region) {
                tracing::info!(%region, "probe {region} is reporting again");
                probe.stale = false;
                probe.since = Some(at);
                probe.incident = None;
            }
        }
    }

    /// Fast confirmation: a result that starts to move a region towards a
    /// new verdict asks the regions that have not moved yet to run the check
    /// now, instead of at their next tick; a recovery seen while the check
    /// is down asks the regions still failing. A failure seen in one region
    /// is then confirmed (or cleared) by the others in about one round-trip,
    /// and so is a recovery; the reporting region re-runs to reach its own
    /// count. Who is asked is the pure `rules::confirmation_targets`, which
    /// also bounds how often (`rules::Asked`, `limits::RUN_NOW_ASKS_MAX`).
    pub(super) fn ask_for_confirmation(
        &self,
        config: &Config,
        results: &[(String, String, bool)],
        now: DateTime<Utc>,
    ) {
        if !self.fast_confirmation {
            return;
        }
        for (check_name, region, ok) in results {
            let Some(check) = config.check(check_name) else {
                continue;
            };
            let rules = Rules::for_check(check, now);
            // The state read in place, the memory locked inside the cache's
            // read (nothing takes them the other way round).
            let targets = self.states.read_state(check_name, |state| {
                let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(memory) = asked.get_mut(check_name) {
                    return rules::confirmation_targets(state, &rules, region, *ok, now, memory);
                }
                // Most results ask nobody and leave the memory as it was:
                // a check gets an entry only once something was asked.
                let mut memory = rules::Asked::default();
                let targets =
                    rules::confirmation_targets(state, &rules, region, *ok, now, &mut memory);
                if memory != rules::Asked::default() {
                    asked.insert(check_name.clone(), memory);
                }
                targets
            });
            let Some(targets) = targets else {
                continue;
            };
            for target in targets {
                self.hub.request_run_now(&target, check_name);
                self.share_run_now(&target, check_name);
            }
        }
    }

    /// Stale events (with their alerts) for probes silent past their
    /// window: the shortest staleness window (`3 x interval + timeout`) of
    /// the checks their region runs, since their last result.
    pub(super) async fn probes_gone_stale(&self, now: DateTime<Utc>) -> Result<(), StorageError> {
        let config = self.config();
        let mut regions: Vec<String> = self.hub.regions();
        {
            let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            regions.extend(probes.keys().cloned());
        }
        regions.sort();
        regions.dedup();
        let mut batch = Batch::default();
        let mut gone = Vec::new();
        for region in regions {
            let Some(window) = probe_window(&config, &region, now) else {
                continue; // it runs nothing: nothing is expected of it
            };
            let (last, stale) = {
                let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
                let probe = probes.get(&region);
                (
                    probe.and_then(|p| p.last_result),
                    probe.is_some_and(|p| p.stale),
                )
            };
            let anchor = last.unwrap_or(self.started_at).max(self.started_at);
            let silent = (now - anchor).to_std().unwrap_or_default();
            if stale || silent <= window {
                continue;
            }
            let summary = match last {
                Some(last) => format!(
                    "probe {region} stopped reporting: no result since {} ({} ago; expected within {}); its checks are judged by the other regions",
                    last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    crate::schedule::format_duration_approx(silent),
                    crate::schedule::format_duration(window)
                ),
                None => format!(
                    "probe {region} stopped reporting: no result for {} (expected within {}); its checks are judged by the other regions",
                    crate::schedule::format_duration_approx(silent),
                    crate::schedule::format_duration(window)
                ),
            };
            let incident = Uuid::now_v7();
            let event = ProbeEvent {
                id: Uuid::now_v7(),
                region: region.clone(),
                stale: true,
                at: now,
                incident,
                summary: summary.clone(),
            };
            tracing::warn!(%region, "{summary}");
            let alert = alert::for_probe(&region, true, summary, now, incident, None);
            queue_alert_to(
                &mut batch,
                &channels_for_region(&config, &region),
                &config,
                event.id,
                alert,
                now,
            );
            batch.probe_events.push(event);
            gone.push((region, incident));
        }
        if gone.is_empty() {
            return Ok(());
        }
        let alerts_queued = !batch.deliveries.is_empty();
        self.storage.ingest().write_batch(batch).await?;
        if alerts_queued {
            self.alert_wake.notify_one();
        }
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for (region, incident) in gone {
            let probe = probes.entry(region.clone()).or_insert_with(|| ProbeStatus {
                region: region.clone(),
                ..ProbeStatus::default()
            });
            probe.stale = true;
            probe.since = Some(now);
            probe.incident = Some(incident);
        }
        Ok(())
    }
}

/// Who hears about a region's probe: every channel of a check it runs
/// (those people lose a vantage point), else `defaults.channels`.
fn channels_for_region(config: &Config, region: &str) -> Vec<String> {
    let mut channels: Vec<String> = Vec::new();
    for check in config.checks.iter().filter(|c| runs_in(c, region)) {
        for channel in config.channels_for(check) {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
    }
    if channels.is_empty() {
        config.default_channels.clone()
    } else {
        channels
    }
}

/// How long `region`'s probe may be silent before it is stale: the
/// shortest staleness window of the checks it runs; `None` if it runs none.
fn probe_window(config: &Config, region: &str, now: DateTime<Utc>) -> Option<std::time::Duration> {
    config
        .checks
        .iter()
        .filter(|c| runs_in(c, region))
        .map(|c| Rules::for_check(c, now).stale_after)
        .min()
}

//! The aggregator's core: takes result batches, stores them, runs the rule
//! engine and the alert policy, and records every state change as an
//! incident event with its alerts, in one transaction.
//!
//! It does not run checks and does not speak HTTP; probes reach it through a
//! `transport::ResultSink`, the API through `api.rs`. Ingestion is serialised
//! by one lock so that results of a check are judged in arrival order.
//! One concern per file: this one ingest, ticks and the commit; `probes`
//! the probes' liveness, skew, backlog and fast confirmation; `heartbeats`
//! pings and missed pings; `holds` maintenance windows and silences;
//! `latency` the `p95_above_baseline` judgement; `views` what the API, the
//! status page and `/metrics` read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::alert::silence::Silence;
use crate::alert::{self, AlertEvent};
use crate::clock::Clock;
use crate::config::probes::ProbeTokens;
use crate::config::{Check, Config};
use crate::heartbeat::HEARTBEAT_REGION;
use crate::hub::ProbeHub;
use crate::limits;
use crate::metrics::Metrics;
use crate::policy::{self, OnTick, Told};
use crate::result::{Outcome, ProbeResult};
use crate::rules::{self, CheckState, Effect, Input, Rules, Status};
use crate::status::StatusReport;
use crate::storage::{
    Batch, Delivery, DeliveryState, HistoryStore, JobStore, Storage, StorageError,
};

pub use probes::ProbeStatus;
pub use views::CheckView;

pub struct Aggregator {
    config: std::sync::RwLock<Arc<Config>>,
    storage: Storage,
    states: Mutex<HashMap<String, CheckState>>,
    /// When this aggregator started: a heartbeat never pinged counts from here.
    started_at: DateTime<Utc>,
    /// Heartbeat checks whose job said `/start`, with when (monotonic).
    heartbeat_starts: std::sync::Mutex<HashMap<String, tokio::time::Instant>>,
    /// Pings with a token no check has; counted, never logged with the token.
    unknown_pings: AtomicU64,
    /// Each heartbeat's pings stored in its current coalescing window.
    last_pings: std::sync::Mutex<HashMap<String, heartbeats::PingWindow>>,
    /// Pings coalesced since start.
    coalesced_pings: AtomicU64,
    /// Where the status page is reachable, for links in alerts.
    public_url: Option<url::Url>,
    /// Woken when new deliveries are committed to the outbox.
    alert_wake: Arc<tokio::sync::Notify>,
    /// Silences made through the API; the table is the truth, this a cache.
    silences: std::sync::RwLock<Vec<Silence>>,
    /// Tokens, check specs and run-now requests of the remote probes.
    hub: ProbeHub,
    /// Each region's probe: when it last reported, whether it is stale.
    probes: std::sync::Mutex<BTreeMap<String, ProbeStatus>>,
    /// Ask regions to run a check now to confirm a change (on by default).
    fast_confirmation: bool,
    /// Counters and histograms of the results it accepts, for `/metrics`.
    metrics: Arc<Metrics>,
    /// Where `now` comes from for every decision and date.
    clock: Clock,
    /// The status page's latest figures, and when they were computed: a
    /// burst of visitors costs one computation per `STATUS_CACHE_FOR`.
    status_cache: Mutex<Option<(tokio::time::Instant, Arc<StatusReport>)>>,
}

/// What one ingest did, for the caller's logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub unknown_checks: usize,
    /// Results stored as history only: older than `RESULT_JUDGED_AGE_MAX`.
    pub history: usize,
    pub transitions: usize,
    /// Results of a probe's batch that were not taken (neither stored nor
    /// judged), each with why; the rest of the batch was.
    pub refused: Vec<Refused>,
}

/// A result a probe may not post, answered per result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub id: Uuid,
    pub check: String,
    pub reason: String,
}

impl Aggregator {
    /// Restores every check's state from storage.
    pub async fn new(config: Arc<Config>, storage: Storage) -> Result<Aggregator, StorageError> {
        let mut states: HashMap<String, CheckState> =
            storage.ingest().load_states().await?.into_iter().collect();
        // Time stood still while we were down: give every region a fresh
        // staleness window from now, or a restart would report them all stale.
        let clock = storage.clock().clone();
        let now = clock.now();
        let silences = storage.ingest().live_silences(now).await?;
        for state in states.values_mut() {
            // Not heartbeats: their anchor is the last ping, and a job that
            // died must not be forgiven by every restart.
            for (name, region) in state.regions.iter_mut() {
                if name != HEARTBEAT_REGION {
                    region.last_seen = region.last_seen.max(now);
                }
            }
        }
        let mut probes = BTreeMap::new();
        for event in storage.ingest().last_probe_events().await? {
            if event.stale {
                // Still stale as far as anyone was told: it stays so (without
                // a second alert) until it reports, which sends the recovery.
                probes.insert(
                    event.region.clone(),
                    ProbeStatus {
                        region: event.region.clone(),
                        stale: true,
                        since: Some(event.at),
                        incident: Some(event.incident),
                        ..ProbeStatus::default()
                    },
                );
            }
        }
        let hub = ProbeHub::new(ProbeTokens::default(), &config);
        Ok(Aggregator {
            config: std::sync::RwLock::new(config),
            hub,
            probes: std::sync::Mutex::new(probes),
            fast_confirmation: true,
            storage,
            states: Mutex::new(states),
            started_at: now,
            heartbeat_starts: std::sync::Mutex::new(HashMap::new()),
            unknown_pings: AtomicU64::new(0),
            last_pings: std::sync::Mutex::new(HashMap::new()),
            coalesced_pings: AtomicU64::new(0),
            public_url: None,
            alert_wake: Arc::new(tokio::sync::Notify::new()),
            silences: std::sync::RwLock::new(silences),
            metrics: Arc::new(Metrics::new()),
            status_cache: Mutex::new(None),
            clock,
        })
    }

    /// The process's metrics: results accepted here are counted in them.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Links in alerts point at `url` (the status page's public address).
    pub fn with_public_url(mut self, url: Option<url::Url>) -> Aggregator {
        self.public_url = url;
        self
    }

    /// Accepts remote probes with these tokens (probes.yaml); `serve` gives
    /// its own region, whose probe is in-process.
    pub fn with_probe_tokens(self, tokens: ProbeTokens) -> Aggregator {
        self.hub.update(&self.config(), Some(tokens));
        self
    }

    /// Whether a change seen in one region makes the others run the check
    /// at once (`ask_for_confirmation`).
    pub fn with_fast_confirmation(mut self, enabled: bool) -> Aggregator {
        self.fast_confirmation = enabled;
        self
    }

    pub fn hub(&self) -> &ProbeHub {
        &self.hub
    }

    /// Swaps in a reloaded config (and probes.yaml, when given). Checks keep
    /// their state; new ones start unknown; probes are sent the new specs.
    pub fn replace_config(&self, config: Arc<Config>, tokens: Option<ProbeTokens>) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config.clone();
        self.metrics
            .retain_checks(&|name| config.check(name).is_some());
        self.hub.update(&config, tokens);
    }

    /// A batch from a remote probe of `region` (authenticated by the API),
    /// with how far its clock is off.
    pub async fn ingest_from_probe(
        &self,
        region: &str,
        results: Vec<ProbeResult>,
        skew: Option<chrono::Duration>,
    ) -> Result<IngestReport, StorageError> {
        if let Some(skew) = skew {
            let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(probe) = probes.get_mut(region) {
                probe.clock_skew_ms = Some(skew.num_milliseconds());
            }
        }
        // A token speaks for its region's checks only: a result for a
        // check the region does not run, a heartbeat or an unknown check
        // would page (or fill storage) on a probe's word alone.
        let config = self.config();
        let mut admitted = Vec::with_capacity(results.len());
        let mut refused = Vec::new();
        for result in results {
            let reason = match config.check(&result.check) {
                None => Some("no check of that name".to_string()),
                Some(check) if !check.is_probed() => {
                    Some("a heartbeat check: only its pings count".to_string())
                }
                Some(check) if !runs_in(check, region) => Some(format!(
                    "region {region} does not run this check (its `regions` leave it out)"
                )),
                Some(_) => None,
            };
            match reason {
                Some(reason) => refused.push(Refused {
                    id: result.id,
                    check: result.check,
                    reason,
                }),
                None => admitted.push(result),
            }
        }
        if !refused.is_empty() {
            tracing::warn!(
                %region,
                refused = refused.len(),
                first = %refused[0].check,
                "refused results for checks region {region} does not run"
            );
        }
        let mut report = self.ingest(admitted).await?;
        report.refused = refused;
        Ok(report)
    }

    /// Notified whenever deliveries are added to the outbox.
    pub fn alert_wake(&self) -> Arc<tokio::sync::Notify> {
        self.alert_wake.clone()
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The clock it judges and dates by (its storage's).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The reads the API and the status page make.
    pub fn history(&self) -> &dyn HistoryStore {
        self.storage.history()
    }

    /// Storage's own checks, for `/health` and the tick loop.
    pub fn storage_jobs(&self) -> &dyn JobStore {
        self.storage.jobs()
    }

    /// Stores a batch of results and applies the rules to them. Safe to call
    /// again with the same results: ids already stored are skipped.
    pub async fn ingest(&self, results: Vec<ProbeResult>) -> Result<IngestReport, StorageError> {
        let config = self.config();
        let mut states = self.states.lock().await;
        let ids: Vec<String> = results.iter().map(|r| r.id.to_string()).collect();
        let known = self.storage.ingest().known_result_ids(ids).await?;
        let received_at = self.clock.now();
        let mut report = IngestReport::default();
        let mut working: HashMap<String, CheckState> = HashMap::new();
        let mut batch = Batch::default();
        let mut effects = Vec::new();
        let mut seen_in_batch = std::collections::HashSet::new();
        for mut result in results {
            let id = result.id.to_string();
            if known.contains(&id) || !seen_in_batch.insert(id) {
                report.duplicates += 1;
                continue;
            }
            report.accepted += 1;
            take_screenshot(&mut result, &mut batch);
            // A result from long ago (a spool leftover, a set-aside batch
            // sent again after its id was pruned) is history: stored, never
            // taken for the region's latest.
            let judged_age = chrono::Duration::from_std(limits::RESULT_JUDGED_AGE_MAX)
                .unwrap_or(chrono::Duration::MAX);
            let history = received_at.signed_duration_since(result.started_at) > judged_age;
            match config.check(&result.check) {
                Some(_) if history => report.history += 1,
                Some(check) => {
                    let state = working
                        .entry(check.name.clone())
                        .or_insert_with(|| states.get(&check.name).cloned().unwrap_or_default());
                    let rules = Rules::for_check(check, received_at);
                    let input = Input::Result {
                        result: &result,
                        received_at,
                    };
                    effects.extend(rules::step(
                        &check.name,
                        state,
                        &rules,
                        input,
                        &mut Uuid::now_v7,
                    ));
                }
                None => report.unknown_checks += 1,
            }
            batch.results.push((result, received_at));
        }
        // Probes that were stale and report again.
        let reporting: Vec<String> = {
            let mut regions: Vec<String> = batch
                .results
                .iter()
                .map(|(r, _)| r.region.clone())
                .filter(|r| r != HEARTBEAT_REGION)
                .collect();
            regions.sort();
            regions.dedup();
            regions
        };
        let back = self.probes_back(&config, &reporting, received_at, &mut batch);
        let confirm: Vec<(String, String, bool)> = batch
            .results
            .iter()
            .filter(|(r, at)| {
                r.region != HEARTBEAT_REGION
                    && at.signed_duration_since(r.started_at)
                        <= chrono::Duration::from_std(limits::RESULT_JUDGED_AGE_MAX)
                            .unwrap_or(chrono::Duration::MAX)
            })
            .map(|(r, _)| (r.check.clone(), r.region.clone(), r.outcome == Outcome::Ok))
            .collect();
        let accepted: Vec<ProbeResult> = batch
            .results
            .iter()
            .filter(|(r, _)| config.check(&r.check).is_some())
            .map(|(r, _)| r.clone())
            .collect();
        self.commit(&mut states, working, batch, effects, &mut report)
            .await?;
        for result in accepted {
            self.metrics.observe_result(result);
        }
        self.note_probes_reported(&reporting, received_at, &back);
        self.ask_for_confirmation(&config, &states, &confirm);
        Ok(report)
    }

    /// Lets time pass for every check: regions that went silent become stale.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
        self.flush_pings().await?;
        let missed = self.missed_heartbeats(now).await;
        if !missed.is_empty() {
            self.ingest(missed).await?;
        }
        self.probes_gone_stale(now).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.expires_at > now);
        let config = self.config();
        let mut states = self.states.lock().await;
        let mut working = HashMap::new();
        let mut effects = Vec::new();
        let mut reminders = Batch::default();
        for check in &config.checks {
            let Some(current) = states.get(&check.name) else {
                continue;
            };
            let held_now = self.muted(&config, check, now).is_some();
            match policy::on_tick(current, held_now, check.alert.remind_every, now) {
                OnTick::Update { state, alert } => {
                    if let Some(alert) = alert {
                        let event = alert::for_state(
                            check,
                            &state,
                            alert.kind,
                            alert.previously,
                            self.public_url.as_ref(),
                            &config.secrets,
                        );
                        queue_alert(&mut reminders, check, &config, Uuid::now_v7(), event, now);
                    }
                    working.insert(check.name.clone(), state);
                    continue;
                }
                OnTick::Judge => {}
            }
            let rules = Rules::for_check(check, now);
            if !rules::tick_due(current, &rules, now) {
                continue;
            }
            let mut state = current.clone();
            let produced = rules::step(
                &check.name,
                &mut state,
                &rules,
                Input::Tick { now },
                &mut Uuid::now_v7,
            );
            if !produced.is_empty() {
                working.insert(check.name.clone(), state);
                effects.extend(produced);
            }
        }
        let mut report = IngestReport::default();
        if !working.is_empty() {
            self.commit(&mut states, working, reminders, effects, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn commit(
        &self,
        states: &mut HashMap<String, CheckState>,
        mut working: HashMap<String, CheckState>,
        mut batch: Batch,
        effects: Vec<Effect>,
        report: &mut IngestReport,
    ) -> Result<(), StorageError> {
        let config = self.config();
        let now = self.clock.now();
        for effect in &effects {
            let Effect::StateChanged(transition) = effect else {
                continue;
            };
            batch.events.push(transition.clone());
            let Some(check) = config.check(&transition.check) else {
                continue;
            };
            let Some(state) = working.get_mut(&transition.check) else {
                continue;
            };
            let hold = self.muted(&config, check, now);
            let decided = policy::on_change(state, transition, hold.as_deref());
            if decided.flapping_alert {
                let event = alert::for_state(
                    check,
                    state,
                    alert::AlertKind::Flapping,
                    state.alerted,
                    self.public_url.as_ref(),
                    &config.secrets,
                );
                tracing::warn!(check = %check.name, "{}", event.summary);
                queue_alert(&mut batch, check, &config, transition.id, event, now);
            }
            match decided.told {
                Told::Nothing => {}
                Told::Held(why) => {
                    tracing::info!(check = %check.name, to = %transition.to, "alert held back: {why}");
                }
                Told::Alert(kind) => {
                    let mut event = alert::from_transition(
                        check,
                        transition,
                        kind,
                        self.public_url.as_ref(),
                        &config.secrets,
                    );
                    // A browser check going down shows the page it failed on.
                    if !event.event.is_recovery()
                        && let Some(shot) = batch
                            .screenshots
                            .iter()
                            .filter(|s| s.check == check.name && s.failed)
                            .max_by_key(|s| s.at)
                    {
                        event.screenshot_result = Some(shot.result_id);
                        event.screenshot =
                            alert::screenshot_url(self.public_url.as_ref(), shot.result_id);
                    }
                    queue_alert(&mut batch, check, &config, transition.id, event, now);
                }
            }
        }
        batch.states = working
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let alerts_queued = !batch.deliveries.is_empty();
        // Memory changes only once the batch is durable: a failed write
        // leaves the old state, and the probe's resend is judged afresh.
        // The alerts are in the same transaction as the events they report.
        self.storage.ingest().write_batch(batch).await?;
        if alerts_queued {
            self.alert_wake.notify_one();
        }
        states.extend(working);
        for effect in effects {
            log_effect(&effect);
            if matches!(effect, Effect::StateChanged(_)) {
                report.transitions += 1;
            }
        }
        Ok(())
    }
}

fn log_effect(effect: &Effect) {
    match effect {
        Effect::StateChanged(t) => {
            let incident = t
                .incident
                .map_or_else(|| "none".to_string(), |id| id.to_string());
            if t.to == Status::Up || t.to == Status::Unknown {
                tracing::info!(check = %t.check, from = %t.from, to = %t.to, %incident, "{}", t.summary);
            } else {
                tracing::warn!(check = %t.check, from = %t.from, to = %t.to, %incident, "{}", t.summary);
            }
        }
        // Per check; the probe as a whole is reported by `probes_gone_stale`.
        Effect::RegionStale { region, last_seen } => {
            tracing::debug!(%region, %last_seen, "a check's results from {region} are stale");
        }
        Effect::RegionBack { region } => {
            tracing::debug!(%region, "a check's results from {region} arrive again")
        }
    }
}

/// Adds one delivery per channel of `check` for `event`.
fn queue_alert(
    batch: &mut Batch,
    check: &Check,
    config: &Config,
    event_id: Uuid,
    event: AlertEvent,
    now: DateTime<Utc>,
) {
    queue_alert_to(
        batch,
        &config.channels_for(check),
        config,
        event_id,
        event,
        now,
    );
}

fn runs_in(check: &Check, region: &str) -> bool {
    check.is_probed()
        && check
            .regions
            .as_ref()
            .is_none_or(|r| r.iter().any(|n| n == region))
}

/// Adds one delivery per channel in `channels` for `event`.
fn queue_alert_to(
    batch: &mut Batch,
    channels: &[String],
    config: &Config,
    event_id: Uuid,
    event: AlertEvent,
    now: DateTime<Utc>,
) {
    for channel in channels.iter().cloned() {
        // A grouping channel waits out its window to gather company.
        let wait = config
            .channels
            .get(&channel)
            .filter(|c| c.groups())
            .and_then(|c| chrono::Duration::from_std(c.group_window).ok())
            .unwrap_or_default();
        batch.deliveries.push(Delivery {
            id: Uuid::now_v7(),
            event_id,
            channel,
            event: event.clone(),
            state: DeliveryState::Pending,
            attempts: 0,
            created_at: now,
            next_attempt_at: now + wait,
            last_error: None,
            group_id: None,
        });
    }
}

/// Moves a browser result's screenshot out of it (stored apart, see
/// `storage::Screenshot`), leaving a note where to fetch it. Anything that
/// is not a PNG is dropped.
fn take_screenshot(result: &mut ProbeResult, batch: &mut Batch) {
    use base64::Engine;
    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let Some(encoded) = result.screenshot.take() else {
        return;
    };
    match base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()) {
        Ok(png)
            if png.starts_with(PNG_SIGNATURE)
                && png.len() <= limits::BROWSER_SCREENSHOT_BYTES_MAX =>
        {
            result.notes.push(format!(
                "screenshot: /api/v1/results/{}/screenshot",
                result.id
            ));
            batch.screenshots.push(crate::storage::Screenshot {
                result_id: result.id,
                check: result.check.clone(),
                at: result.started_at,
                failed: result.outcome != Outcome::Ok,
                png,
            });
        }
        _ => result
            .notes
            .push("screenshot dropped: not a PNG within the size limit".to_string()),
    }
}

mod heartbeats;
mod holds;
mod latency;
mod probes;
mod views;

#[cfg(test)]
mod tests;

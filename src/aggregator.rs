//! The aggregator's core: takes result batches, stores them, runs the rule
//! engine, records every state change as an incident event, and answers what
//! the API asks about checks.
//!
//! It does not run checks and does not speak HTTP; probes reach it through a
//! `transport::ResultSink`, the API through `api.rs`. Ingestion is serialised
//! by one lock so that results of a check are judged in arrival order.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::alert::silence::Silence;
use crate::alert::{self, AlertEvent};
use crate::clock::Clock;
use crate::config::probes::ProbeTokens;
use crate::config::{Check, CheckKind, Config, Secrets};
use crate::heartbeat::{self, HEARTBEAT_REGION, Ping};
use crate::hub::ProbeHub;
use crate::limits;
use crate::metrics::{self, Metrics};
use crate::policy::{self, OnTick, Told};
use crate::probe::ProbeResult;
use crate::probe::{Outcome, Phases, round_ms};
use crate::rules::{
    self, CheckState, Effect, Input, ProbeEvent, Rules, Status, Transition, Verdict,
};
use crate::status::StatusReport;
use crate::storage::{Batch, Delivery, DeliveryState, Storage, StorageError};

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
    /// Each heartbeat's last stored ping (monotonic) and its kind: pings
    /// of the same kind closer than `HEARTBEAT_PING_GAP_MIN` are coalesced.
    last_pings: std::sync::Mutex<HashMap<String, (tokio::time::Instant, Ping)>>,
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
    incident: Option<Uuid>,
}

/// What one ingest did, for the caller's logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub unknown_checks: usize,
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
}

impl Aggregator {
    /// Restores every check's state from storage.
    pub async fn new(config: Arc<Config>, storage: Storage) -> Result<Aggregator, StorageError> {
        let mut states: HashMap<String, CheckState> =
            storage.load_states().await?.into_iter().collect();
        // Time stood still while we were down: give every region a fresh
        // staleness window from now, or a restart would report them all stale.
        let clock = storage.clock().clone();
        let now = clock.now();
        let silences = storage.live_silences(now).await?;
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
        for event in storage.last_probe_events().await? {
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

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Stores a batch of results and applies the rules to them. Safe to call
    /// again with the same results: ids already stored are skipped.
    pub async fn ingest(&self, results: Vec<ProbeResult>) -> Result<IngestReport, StorageError> {
        let config = self.config();
        let mut states = self.states.lock().await;
        let ids: Vec<String> = results.iter().map(|r| r.id.to_string()).collect();
        let known = self.storage.known_result_ids(ids).await?;
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
            match config.check(&result.check) {
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
            .filter(|(r, _)| r.region != HEARTBEAT_REGION)
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

    /// Back events (with their alerts) for the stale probes among `regions`.
    fn probes_back(
        &self,
        config: &Config,
        regions: &[String],
        now: DateTime<Utc>,
        batch: &mut Batch,
    ) -> Vec<String> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        let mut back = Vec::new();
        for region in regions {
            let Some(probe) = probes.get(region).filter(|p| p.stale) else {
                continue;
            };
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
            back.push(region.clone());
        }
        back
    }

    /// Once a batch is stored: its regions reported at `at`.
    fn note_probes_reported(&self, regions: &[String], at: DateTime<Utc>, back: &[String]) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        for region in regions {
            let probe = probes.entry(region.clone()).or_insert_with(|| ProbeStatus {
                region: region.clone(),
                ..ProbeStatus::default()
            });
            probe.last_result = Some(at);
            if back.contains(region) {
                tracing::info!(%region, "probe {region} is reporting again");
                probe.stale = false;
                probe.since = Some(at);
                probe.incident = None;
            }
        }
    }

    /// Fast confirmation: a result that starts to move a region towards a
    /// new verdict asks the regions that have not moved yet to run the check
    /// now, instead of at their next tick. A failure seen in one region is
    /// then confirmed (or cleared) by the others in about one round-trip,
    /// and the reporting region re-runs to reach its own `failures` count.
    ///
    /// It stops by itself: a region that has reached its verdict no longer
    /// asks, so a region that keeps failing on its own (its network, not the
    /// target) costs nothing extra once it counts as failing.
    fn ask_for_confirmation(
        &self,
        config: &Config,
        states: &HashMap<String, CheckState>,
        results: &[(String, String, bool)],
    ) {
        if !self.fast_confirmation {
            return;
        }
        for (check, region, ok) in results {
            let (Some(state), Some(_)) = (states.get(check), config.check(check)) else {
                continue;
            };
            let Some(reporter) = state.regions.get(region) else {
                continue;
            };
            let targets: Vec<&String> = if !ok && reporter.verdict != Verdict::Failing {
                // A failure on its way to counting: everyone not yet failing.
                state
                    .regions
                    .iter()
                    .filter(|(_, r)| !r.stale && r.verdict != Verdict::Failing)
                    .map(|(name, _)| name)
                    .collect()
            } else if *ok && state.status == Status::Down {
                // A recovery seen somewhere: the regions still failing.
                state
                    .regions
                    .iter()
                    .filter(|(_, r)| !r.stale && r.verdict == Verdict::Failing)
                    .map(|(name, _)| name)
                    .collect()
            } else {
                continue;
            };
            for target in targets {
                self.hub.request_run_now(target, check);
            }
        }
    }

    /// Lets time pass for every check: regions that went silent become stale.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
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

    /// Stale events (with their alerts) for probes silent past their
    /// window: the shortest staleness window (`3 x interval + timeout`) of
    /// the checks their region runs, since their last result.
    async fn probes_gone_stale(&self, now: DateTime<Utc>) -> Result<(), StorageError> {
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
        self.storage.write_batch(batch).await?;
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
                Told::Alert(_) => {
                    let Some(mut event) = alert::from_transition(
                        check,
                        transition,
                        self.public_url.as_ref(),
                        &config.secrets,
                    ) else {
                        continue;
                    };
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
        self.storage.write_batch(batch).await?;
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

    /// Why alerts for `check` are held back at `now`, if they are: an
    /// active maintenance window or silence.
    fn muted(&self, config: &Config, check: &Check, now: DateTime<Utc>) -> Option<String> {
        if let Some(window) = config.maintenance_for(check, now) {
            return Some(format!("maintenance window `{}`", window.name));
        }
        let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
        silences
            .iter()
            .find(|s| s.active_at(now) && s.matches(check))
            .map(|s| {
                format!(
                    "silenced by {} until {}: {}",
                    s.author,
                    s.expires_at.to_rfc3339(),
                    s.reason
                )
            })
    }

    /// Adds a silence (stored, so it survives restarts).
    pub async fn add_silence(
        &self,
        silence: Silence,
    ) -> Result<Result<Silence, String>, StorageError> {
        let now = self.clock.now();
        {
            let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
            if silences.iter().filter(|s| s.active_at(now)).count() >= limits::SILENCES_ACTIVE_MAX {
                return Ok(Err(format!(
                    "at most {} silences at once",
                    limits::SILENCES_ACTIVE_MAX
                )));
            }
        }
        self.storage.insert_silence(&silence).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(silence.clone());
        tracing::info!(silence = %silence.id, author = %silence.author, reason = %silence.reason, until = %silence.expires_at, "silence added");
        Ok(Ok(silence))
    }

    /// Ends a silence early; false when none had that id.
    pub async fn remove_silence(&self, id: Uuid) -> Result<bool, StorageError> {
        let removed = self.storage.delete_silence(id).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.id != id);
        Ok(removed)
    }

    /// Silences still in force.
    pub fn silences(&self) -> Vec<Silence> {
        let now = self.clock.now();
        let silences = self.silences.read().unwrap_or_else(|p| p.into_inner());
        silences
            .iter()
            .filter(|s| s.active_at(now) || s.created_at > now)
            .cloned()
            .collect()
    }

    /// Records a heartbeat ping. Returns the check's name, or `None` for a
    /// token no check has (counted in `unknown_pings`).
    pub async fn ping(&self, token: &str, ping: Ping) -> Result<Option<String>, StorageError> {
        let config = self.config();
        let Some(check) = heartbeat::find_by_token(&config, token) else {
            self.unknown_pings.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("ping with an unknown token");
            return Ok(None);
        };
        let now = self.clock.now();
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
        {
            let mut last = self.last_pings.lock().unwrap_or_else(|p| p.into_inner());
            let at = tokio::time::Instant::now();
            if let Some((previous, kind)) = last.get(&check.name)
                && *kind == ping
                && at.saturating_duration_since(*previous) < limits::HEARTBEAT_PING_GAP_MIN
            {
                // Says nothing the stored one did not: counted only.
                self.coalesced_pings.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(check.name.clone()));
            }
            last.insert(check.name.clone(), (at, ping));
        }
        // The result is dated at its arrival, so a late job's success is
        // newer than the missed-ping report before it; the run time (from
        // /start) goes in duration_ms.
        let duration_ms = started
            .map(|clock| round_ms(clock.elapsed()))
            .unwrap_or(0.0);
        let started_at = now;
        let (outcome, error) = match ping {
            Ping::Fail => (
                Outcome::Fail,
                Some("the job reported a failure (/fail)".to_string()),
            ),
            _ => (Outcome::Ok, None),
        };
        let result = heartbeat_result(&check.name, started_at, duration_ms, outcome, error);
        if let Err(error) = self.ingest(vec![result]).await {
            // Not stored: the job's retry must not be taken for a repeat.
            self.last_pings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&check.name);
            return Err(error);
        }
        Ok(Some(check.name.clone()))
    }

    /// Pings with unknown tokens since start.
    pub fn unknown_pings(&self) -> u64 {
        self.unknown_pings.load(Ordering::Relaxed)
    }

    /// A synthetic `timeout` result for every heartbeat overdue at `now`.
    /// The anchor is the last result of its `push` region (a ping, or the
    /// previous missed-ping report), so silence is reported once per period.
    async fn missed_heartbeats(&self, now: DateTime<Utc>) -> Vec<ProbeResult> {
        let config = self.config();
        let states = self.states.lock().await;
        let mut missed = Vec::new();
        for check in &config.checks {
            let CheckKind::Heartbeat(spec) = &check.kind else {
                continue;
            };
            let region = states
                .get(&check.name)
                .and_then(|s| s.regions.get(HEARTBEAT_REGION));
            let anchor = region.map(|r| r.last_seen).unwrap_or(self.started_at);
            let pinged_before = region.is_some_and(|r| r.last.outcome != Outcome::Timeout);
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
        let states = self.states.lock().await.clone();
        let days = chrono::Duration::days(crate::status::DAYS_SHOWN as i64);
        let events = self
            .storage
            .events_since((now - days).timestamp_millis(), limits::STATUS_EVENTS_MAX)
            .await?;
        let first_hour =
            hour_of(now.timestamp_millis()) - (crate::status::LATENCY_HOURS as i64 - 1) * HOUR_MS;
        let (rollups, rolled_until) = self.storage.rollups_since(first_hour).await?;
        let raw_since = rolled_until.unwrap_or(first_hour).max(first_hour);
        let raw = self
            .storage
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
            .screenshots_present(failing_browser_runs)
            .await?;
        Ok(crate::status::compute(&crate::status::Inputs {
            config: &config,
            states: &states,
            events: &events,
            rollups: &rollups,
            rolled_until_ms: rolled_until,
            raw: &raw,
            screenshots: &screenshots,
            now,
        }))
    }

    /// The `p95_above_baseline` rule: for each check that has it, compares
    /// the p95 of its ok runs over `LATENCY_RECENT_WINDOW` with its own p95
    /// over the `LATENCY_BASELINE_WINDOW` before (from the roll-ups), and
    /// makes the check degraded while the recent one is above the factor.
    pub async fn judge_latency(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
        use crate::rollup::hour_of;
        let config = self.config();
        let mut verdicts = Vec::new();
        for check in config.checks.iter() {
            let Some(factor) = check.alert.p95_above_baseline else {
                // The rule may have been removed by a reload: an anomaly it
                // left must not keep the check degraded.
                verdicts.push((check.clone(), None));
                continue;
            };
            let recent_from =
                now - chrono::Duration::from_std(limits::LATENCY_RECENT_WINDOW).unwrap_or_default();
            let mut recent = self
                .storage
                .recent_ok_latencies(check.name.clone(), recent_from.timestamp_millis(), 100_000)
                .await?;
            let baseline_to = hour_of(recent_from.timestamp_millis());
            let baseline_from = baseline_to
                - i64::try_from(limits::LATENCY_BASELINE_WINDOW.as_millis()).unwrap_or(i64::MAX);
            let baseline = self
                .storage
                .check_latency(check.name.clone(), baseline_from, baseline_to)
                .await?;
            let anomaly = match baseline.quantile(0.95) {
                Some(base)
                    if recent.len() >= limits::LATENCY_RECENT_MIN_RESULTS
                        && baseline.count() >= limits::LATENCY_BASELINE_MIN_RESULTS =>
                {
                    recent.sort_by(f64::total_cmp);
                    let rank =
                        ((recent.len() as f64 * 0.95).ceil() as usize).clamp(1, recent.len());
                    let p95 = recent[rank - 1];
                    // Hysteresis: once degraded, it takes a clear drop (not
                    // a p95 hovering at the line) to be up again.
                    let anomalous_now = self
                        .states
                        .lock()
                        .await
                        .get(&check.name)
                        .is_some_and(|s| s.latency_anomaly.is_some());
                    let line = if anomalous_now {
                        base * factor * limits::LATENCY_RECOVERY_RATIO
                    } else {
                        base * factor
                    };
                    (p95 > line).then(|| {
                        format!(
                            "p95 {p95:.0}ms over the last {} is above {factor}x its 7-day p95 ({base:.0}ms)",
                            crate::schedule::format_duration(limits::LATENCY_RECENT_WINDOW)
                        )
                    })
                }
                _ => None,
            };
            verdicts.push((check.clone(), anomaly));
        }
        let mut states = self.states.lock().await;
        let mut working = HashMap::new();
        let mut effects = Vec::new();
        for (check, anomaly) in verdicts {
            let Some(current) = states.get(&check.name) else {
                continue;
            };
            if current.latency_anomaly == anomaly {
                continue;
            }
            let mut state = current.clone();
            let rules = Rules::for_check(&check, now);
            effects.extend(rules::step(
                &check.name,
                &mut state,
                &rules,
                Input::Latency { now, anomaly },
                &mut Uuid::now_v7,
            ));
            working.insert(check.name.clone(), state);
        }
        let mut report = IngestReport::default();
        if !working.is_empty() {
            self.commit(&mut states, working, Batch::default(), effects, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// What `/metrics` reports of the present: every check's state, the
    /// newest results, the regions, the outbox backlog.
    pub async fn metrics_snapshot(&self) -> metrics::Snapshot {
        let config = self.config();
        let checks = {
            let states = self.states.lock().await;
            config
                .checks
                .iter()
                .map(|check| metrics::CheckSnapshot {
                    name: check.name.clone(),
                    kind: check.kind_name(),
                    target: config.secrets.redact(&check.target()),
                    status: states
                        .get(&check.name)
                        .map(|s| s.status)
                        .unwrap_or_default(),
                })
                .collect()
        };
        let outbox_pending = match self.storage.pending_delivery_count().await {
            Ok(count) => Some(count),
            Err(error) => {
                tracing::error!(%error, "cannot count the alert outbox for /metrics");
                None
            }
        };
        metrics::Snapshot {
            checks,
            results: self.metrics.latest_results(),
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
        self.states.lock().await.get(check).cloned()
    }

    pub async fn views(&self) -> Vec<CheckView> {
        let config = self.config();
        let states = self.states.lock().await;
        config
            .checks
            .iter()
            .map(|check| view(check, states.get(&check.name), &config.secrets))
            .collect()
    }

    pub async fn recent_events(
        &self,
        check: &str,
        limit: usize,
    ) -> Result<Vec<Transition>, StorageError> {
        self.storage.recent_events(check.to_string(), limit).await
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
    }
}

fn log_effect(effect: &Effect) {
    match effect {
        Effect::StateChanged(t) => {
            if t.to == Status::Up || t.to == Status::Unknown {
                tracing::info!(check = %t.check, from = %t.from, to = %t.to, incident = ?t.incident, "{}", t.summary);
            } else {
                tracing::warn!(check = %t.check, from = %t.from, to = %t.to, incident = ?t.incident, "{}", t.summary);
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

fn runs_in(check: &Check, region: &str) -> bool {
    check.is_probed()
        && check
            .regions
            .as_ref()
            .is_none_or(|r| r.iter().any(|n| n == region))
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

fn heartbeat_result(
    check: &str,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    outcome: Outcome,
    error: Option<String>,
) -> ProbeResult {
    ProbeResult {
        id: Uuid::now_v7(),
        check: check.to_string(),
        region: HEARTBEAT_REGION.to_string(),
        probe: "aggregator".to_string(),
        started_at,
        duration_ms,
        outcome,
        status: None,
        phases_ms: Phases::default(),
        error,
        cert_expiry: None,
        degraded: None,
        notes: Vec::new(),
        steps: Vec::new(),
        screenshot: None,
        page: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;

    fn config() -> Arc<Config> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::write(
            dir.path().join("checks/c.yaml"),
            "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1s\n",
        )
        .unwrap();
        let env = |_: &str| None;
        Arc::new(
            crate::config::load_with_env(
                &dir.path().join("checks"),
                &dir.path().join("alerts"),
                &env,
            )
            .unwrap(),
        )
    }

    /// Pending check alerts: the region's probe going stale when a test
    /// lets hours pass without results is not what these tests are about.
    async fn pending_check_alerts(storage: &Storage, limit: usize) -> Vec<Delivery> {
        storage
            .deliveries_in_state(DeliveryState::Pending, limit)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.event.region.is_none())
            .collect()
    }

    fn result(outcome: Outcome) -> ProbeResult {
        ProbeResult::for_test("api", outcome, Utc::now())
    }

    /// An hour's silence on check `api`, added through the aggregator.
    async fn silence_api(aggregator: &Aggregator) -> Silence {
        let silence = alert::silence::NewSilence {
            check: Some("api".into()),
            labels: Default::default(),
            reason: "deploy".into(),
            author: "ops".into(),
            expires_at: None,
            duration: Some("1h".into()),
        }
        .validate(Utc::now())
        .unwrap();
        aggregator.add_silence(silence).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_resent_batch_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
            .await
            .unwrap();
        let batch = vec![
            result(Outcome::Ok),
            result(Outcome::Fail),
            result(Outcome::Fail),
        ];
        let first = aggregator.ingest(batch.clone()).await.unwrap();
        assert_eq!(
            first,
            IngestReport {
                accepted: 3,
                duplicates: 0,
                unknown_checks: 0,
                transitions: 2,
                refused: vec![],
            }
        );
        let again = aggregator.ingest(batch).await.unwrap();
        assert_eq!(
            again,
            IngestReport {
                accepted: 0,
                duplicates: 3,
                unknown_checks: 0,
                transitions: 0,
                refused: vec![],
            }
        );
        assert_eq!(aggregator.state("api").await.unwrap().status, Status::Down);
        assert_eq!(aggregator.recent_events("api", 10).await.unwrap().len(), 2);

        let mut stranger = result(Outcome::Ok);
        stranger.check = "gone".into();
        let report = aggregator.ingest(vec![stranger]).await.unwrap();
        assert_eq!(
            (report.accepted, report.unknown_checks),
            (1, 1),
            "stored, but judged by no rule"
        );
    }

    /// Six ok runs of `api` taking `ms`, in the minute before `end`.
    fn ok_runs(end: DateTime<Utc>, ms: f64) -> Vec<ProbeResult> {
        (0..6)
            .map(|i| {
                let mut r = ProbeResult::for_test(
                    "api",
                    Outcome::Ok,
                    end - chrono::Duration::seconds(60 - i),
                );
                r.duration_ms = ms;
                r
            })
            .collect()
    }

    #[tokio::test]
    async fn a_p95_far_above_the_checks_own_baseline_is_degraded_until_it_settles() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let config = config_with("    alert: { p95_above_baseline: 2x }\n", "");
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        let now = Utc::now();
        // Two days of a steady 100 ms, then the last minutes at 500 ms.
        let mut history: Vec<ProbeResult> = (0..200)
            .map(|i| {
                let mut r = ProbeResult::for_test(
                    "api",
                    Outcome::Ok,
                    now - chrono::Duration::hours(48) + chrono::Duration::minutes(10 * i),
                );
                r.duration_ms = 100.0;
                r
            })
            .collect();
        history.sort_by_key(|r| r.started_at);
        aggregator.ingest(history).await.unwrap();
        while storage.roll_up(now, 24).await.unwrap() > 0 {}
        assert_eq!(aggregator.state("api").await.unwrap().status, Status::Up);
        aggregator.ingest(ok_runs(now, 500.0)).await.unwrap();
        aggregator.judge_latency(Utc::now()).await.unwrap();
        let state = aggregator.state("api").await.unwrap();
        assert_eq!(state.status, Status::Degraded);
        let events = aggregator.recent_events("api", 1).await.unwrap();
        assert!(
            events[0].summary.contains("above 2x its 7-day p95"),
            "{}",
            events[0].summary
        );
        // Just under the line it crossed: still degraded (hysteresis).
        let hovering_at = now + chrono::Duration::minutes(20);
        aggregator
            .ingest(ok_runs(hovering_at, 190.0))
            .await
            .unwrap();
        aggregator.judge_latency(hovering_at).await.unwrap();
        assert_eq!(
            aggregator.state("api").await.unwrap().status,
            Status::Degraded
        );
        // Fast again: judged on the runs of the next window, it recovers.
        let later = now + chrono::Duration::minutes(40);
        aggregator.ingest(ok_runs(later, 110.0)).await.unwrap();
        aggregator.judge_latency(later).await.unwrap();
        let state = aggregator.state("api").await.unwrap();
        assert_eq!((state.status, state.latency_anomaly), (Status::Up, None));
        let events = aggregator.recent_events("api", 1).await.unwrap();
        assert_eq!(events[0].to, Status::Up, "{}", events[0].summary);
    }

    #[tokio::test]
    async fn state_is_restored_from_storage() {
        let dir = tempfile::tempdir().unwrap();
        {
            let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
                .await
                .unwrap();
            aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
        }
        let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
            .await
            .unwrap();
        let views = aggregator.views().await;
        assert_eq!(
            (views[0].name.as_str(), views[0].status),
            ("api", Status::Up)
        );
    }

    fn config_with_channels(extra_check: &str) -> Arc<Config> {
        config_with(extra_check, "")
    }

    fn config_with(extra_check: &str, extra_alerts: &str) -> Arc<Config> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::create_dir(dir.path().join("alerts")).unwrap();
        std::fs::write(
            dir.path().join("checks/c.yaml"),
            format!("checks:\n  - name: api\n    http: {{ url: \"http://127.0.0.1:9/\" }}\n    every: 1s\n{extra_check}"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("alerts/a.yaml"),
            format!("channels:\n  a: {{ webhook: {{ url: \"http://127.0.0.1:9/a\" }} }}\n  b: {{ webhook: {{ url: \"http://127.0.0.1:9/b\" }} }}\ndefaults:\n  channels: [a, b]\n{extra_alerts}"),
        )
        .unwrap();
        let env = |_: &str| None;
        Arc::new(
            crate::config::load_with_env(
                &dir.path().join("checks"),
                &dir.path().join("alerts"),
                &env,
            )
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn state_changes_queue_one_delivery_per_channel() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
            .await
            .unwrap();
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        assert!(pending.is_empty(), "a first verdict is not news");

        aggregator
            .ingest(vec![result(Outcome::Fail), result(Outcome::Fail)])
            .await
            .unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        let mut channels: Vec<&str> = pending.iter().map(|d| d.channel.as_str()).collect();
        channels.sort();
        assert_eq!(channels, vec!["a", "b"]);
        assert!(
            pending
                .iter()
                .all(|d| d.event.event == alert::AlertKind::Down && d.event.check == "api")
        );
        assert_eq!(
            pending[0].event_id, pending[1].event_id,
            "one event, two deliveries"
        );
        let events = aggregator.recent_events("api", 10).await.unwrap();
        assert_eq!(events[0].id, pending[0].event_id);
    }

    #[tokio::test]
    async fn a_check_still_down_is_reminded() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let config =
            config_with_channels("    alert: { failures: 1, channels: [a], remind_every: 1h }\n");
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        aggregator
            .ingest(vec![result(Outcome::Fail)])
            .await
            .unwrap();
        let now = Utc::now();
        aggregator
            .tick(now + chrono::Duration::minutes(30))
            .await
            .unwrap();
        assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1, "not yet");
        aggregator
            .tick(now + chrono::Duration::minutes(61))
            .await
            .unwrap();
        aggregator
            .tick(now + chrono::Duration::minutes(62))
            .await
            .unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        let kinds: Vec<alert::AlertKind> = pending.iter().map(|d| d.event.event).collect();
        assert_eq!(
            kinds,
            vec![alert::AlertKind::Reminder, alert::AlertKind::Down],
            "one reminder an hour"
        );
    }

    #[tokio::test]
    async fn maintenance_holds_alerts_and_announces_what_is_still_true_after() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let now = Utc::now();
        let window = format!(
            "maintenance:\n  - name: upgrade\n    labels: {{ team: payments }}\n    from: {}\n    until: {}\n",
            (now - chrono::Duration::hours(1)).to_rfc3339(),
            (now + chrono::Duration::hours(1)).to_rfc3339()
        );
        let config = config_with(
            "    labels: { team: payments }\n    alert: { failures: 1, channels: [a] }\n",
            &window,
        );
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        aggregator
            .ingest(vec![result(Outcome::Fail)])
            .await
            .unwrap();
        assert_eq!(
            aggregator.state("api").await.unwrap().status,
            Status::Down,
            "results still count"
        );
        let pending = pending_check_alerts(&storage, 10).await;
        assert!(pending.is_empty(), "held back during maintenance");
        aggregator
            .tick(now + chrono::Duration::minutes(30))
            .await
            .unwrap();
        assert!(pending_check_alerts(&storage, 10).await.is_empty());
        aggregator
            .tick(now + chrono::Duration::hours(2))
            .await
            .unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        assert_eq!(
            pending.len(),
            1,
            "still down when the window ends: alert now"
        );
        assert_eq!(pending[0].event.event, alert::AlertKind::Down);
        assert!(
            pending[0].event.summary.contains("held back"),
            "{}",
            pending[0].event.summary
        );
        aggregator
            .tick(now + chrono::Duration::hours(3))
            .await
            .unwrap();
        assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1, "once");
    }

    #[tokio::test]
    async fn a_silenced_blip_that_recovers_alerts_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        let silence = silence_api(&aggregator).await;
        aggregator
            .ingest(vec![
                result(Outcome::Ok),
                result(Outcome::Fail),
                result(Outcome::Ok),
            ])
            .await
            .unwrap();
        assert!(aggregator.remove_silence(silence.id).await.unwrap());
        aggregator.tick(Utc::now()).await.unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        assert!(
            pending.is_empty(),
            "down and up again inside the silence: nothing to say"
        );
        assert!(aggregator.silences().is_empty());
    }

    #[tokio::test]
    async fn labels_route_alerts_to_their_team() {
        let config = config_with(
            "    labels: { team: payments }\n",
            "routes:\n  - match: { team: payments }\n    channels: [b]\n",
        );
        assert_eq!(config.channels_for(&config.checks[0]), vec!["b"]);
        let other = config_with(
            "    labels: { team: web }\n",
            "routes:\n  - match: { team: payments }\n    channels: [b]\n",
        );
        assert_eq!(
            other.channels_for(&other.checks[0]),
            vec!["a", "b"],
            "no route matched: defaults"
        );
    }

    #[tokio::test]
    async fn a_flapping_check_is_reported_once_then_settles() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap(); // unknown -> up: 1 change
        for _ in 0..5 {
            aggregator
                .ingest(vec![result(Outcome::Fail)])
                .await
                .unwrap();
            aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
        }
        let kinds = |deliveries: Vec<Delivery>| -> Vec<alert::AlertKind> {
            let mut kinds: Vec<_> = deliveries
                .into_iter()
                .map(|d| (d.created_at, d.id, d.event.event))
                .collect();
            kinds.sort_by_key(|(at, id, _)| (*at, *id));
            kinds.into_iter().map(|(_, _, k)| k).collect()
        };
        use alert::AlertKind::{Down, Flapping, Up};
        let pending = kinds(pending_check_alerts(&storage, 50).await);
        // Changes 2..5 alert (down, up, down, up); the 6th makes it flapping.
        assert_eq!(pending, vec![Down, Up, Down, Up, Flapping]);
        aggregator
            .ingest(vec![result(Outcome::Fail)])
            .await
            .unwrap();
        assert_eq!(pending_check_alerts(&storage, 50).await.len(), 5, "paused");
        // Stable (down) for a whole window: the current state is announced.
        aggregator
            .tick(Utc::now() + chrono::Duration::minutes(61))
            .await
            .unwrap();
        let pending = kinds(pending_check_alerts(&storage, 50).await);
        assert_eq!(pending, vec![Down, Up, Down, Up, Flapping, Down]);
        assert!(!aggregator.state("api").await.unwrap().flapping);
    }

    #[tokio::test]
    async fn a_recovery_during_a_silence_closes_the_incident_that_was_paged() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
        let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
        aggregator
            .ingest(vec![result(Outcome::Ok), result(Outcome::Fail)])
            .await
            .unwrap();
        let paged = pending_check_alerts(&storage, 10).await;
        let incident = paged[0].event.incident.expect("down names its incident");
        let silence = silence_api(&aggregator).await;
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap(); // recovers, held
        assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1);
        aggregator.remove_silence(silence.id).await.unwrap();
        aggregator.tick(Utc::now()).await.unwrap();
        let pending = pending_check_alerts(&storage, 10).await;
        let up = pending
            .iter()
            .find(|d| d.event.event == alert::AlertKind::Up)
            .expect("the recovery is announced");
        assert_eq!(
            up.event.incident,
            Some(incident),
            "so PagerDuty resolves what it opened"
        );
    }

    fn from_region(region: &str, outcome: Outcome) -> ProbeResult {
        let mut result = result(outcome);
        result.region = region.to_string();
        result
    }

    async fn queued(aggregator: &Aggregator, region: &str) -> Vec<String> {
        aggregator
            .hub()
            .take_run_now(region, std::time::Duration::ZERO)
            .await
    }

    #[tokio::test]
    async fn a_first_failure_asks_the_regions_that_have_not_moved_to_run_now() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_with_channels("    alert: { failures: 2 }\n");
        let aggregator = Aggregator::new(config, Storage::open(dir.path()).unwrap())
            .await
            .unwrap();
        for region in ["a", "b", "c"] {
            aggregator
                .ingest(vec![from_region(region, Outcome::Ok)])
                .await
                .unwrap();
        }
        for region in ["a", "b", "c"] {
            assert!(queued(&aggregator, region).await.is_empty(), "all is well");
        }
        // Region a sees a first failure: everyone not failing runs it now,
        // the reporter too (it needs a second failure to count).
        aggregator
            .ingest(vec![from_region("a", Outcome::Fail)])
            .await
            .unwrap();
        for region in ["a", "b", "c"] {
            assert_eq!(queued(&aggregator, region).await, ["api"], "{region}");
        }
        // a's second failure makes it failing: it asks nobody.
        aggregator
            .ingest(vec![from_region("a", Outcome::Fail)])
            .await
            .unwrap();
        for region in ["a", "b", "c"] {
            assert!(queued(&aggregator, region).await.is_empty(), "{region}");
        }
        // b and c confirm: down. Then one recovery asks the failing regions.
        for region in ["b", "c"] {
            for _ in 0..2 {
                aggregator
                    .ingest(vec![from_region(region, Outcome::Fail)])
                    .await
                    .unwrap();
            }
        }
        assert_eq!(aggregator.state("api").await.unwrap().status, Status::Down);
        for region in ["a", "b", "c"] {
            let _ = queued(&aggregator, region).await;
        }
        aggregator
            .ingest(vec![from_region("b", Outcome::Ok)])
            .await
            .unwrap();
        assert_eq!(queued(&aggregator, "a").await, ["api"]);
        assert_eq!(queued(&aggregator, "c").await, ["api"]);
        assert!(queued(&aggregator, "b").await.is_empty());
    }

    #[tokio::test]
    async fn without_fast_confirmation_nobody_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
            .await
            .unwrap()
            .with_fast_confirmation(false);
        for region in ["a", "b"] {
            aggregator
                .ingest(vec![from_region(region, Outcome::Ok)])
                .await
                .unwrap();
        }
        aggregator
            .ingest(vec![from_region("a", Outcome::Fail)])
            .await
            .unwrap();
        assert!(queued(&aggregator, "b").await.is_empty());
    }

    #[tokio::test]
    async fn a_silent_probe_goes_stale_once_and_comes_back_once() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
            .await
            .unwrap()
            .with_probe_tokens(crate::config::probes::ProbeTokens::single(
                "local",
                "0123456789abcdef0123",
            ));
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
        let start = Utc::now();
        // every: 1s, timeout 10s: the window is 13s.
        aggregator
            .tick(start + chrono::Duration::seconds(5))
            .await
            .unwrap();
        assert!(!aggregator.probes()[0].stale);
        for later in [20, 21, 40] {
            aggregator
                .tick(start + chrono::Duration::seconds(later))
                .await
                .unwrap();
        }
        let probes = aggregator.probes();
        assert!(probes[0].stale, "{probes:?}");
        let events = storage.recent_probe_events(10).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0]
                .summary
                .starts_with("probe local stopped reporting"),
            "{}",
            events[0].summary
        );
        let alerts = storage
            .deliveries_in_state(DeliveryState::Pending, 10)
            .await
            .unwrap();
        assert_eq!(alerts.len(), 2, "one per channel of its checks");
        assert!(
            alerts
                .iter()
                .all(|d| d.event.event == alert::AlertKind::ProbeStale)
        );

        // A restart remembers it is stale: no second alert, and the return
        // closes the same incident.
        drop(aggregator);
        let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
            .await
            .unwrap();
        aggregator
            .tick(Utc::now() + chrono::Duration::seconds(60))
            .await
            .unwrap();
        assert_eq!(storage.recent_probe_events(10).await.unwrap().len(), 1);
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
        let events = storage.recent_probe_events(10).await.unwrap();
        assert_eq!(events.len(), 2);
        // (The test's ticks ran ahead of the clock: find them by kind.)
        let stale = events.iter().find(|e| e.stale).unwrap();
        let back = events.iter().find(|e| !e.stale).unwrap();
        assert_eq!(stale.incident, back.incident);
        assert!(!aggregator.probes()[0].stale);
    }

    #[test]
    fn results_are_dated_by_their_age_on_the_probe_s_clock() {
        use crate::transport::ResultBatch;
        let received = Utc::now();
        // The probe's clock is 7 minutes behind: its started_at and sent_at
        // are both 7 minutes early, the result is 2 seconds old.
        let probe_now = received - chrono::Duration::minutes(7);
        let mut old = result(Outcome::Ok);
        old.started_at = probe_now - chrono::Duration::seconds(2);
        let batch = ResultBatch {
            results: vec![old],
            sent_at: Some(probe_now),
        };
        let (results, skew) = batch.on_clock_of(received).unwrap();
        assert_eq!(
            results[0].started_at,
            received - chrono::Duration::seconds(2)
        );
        assert_eq!(skew, Some(chrono::Duration::minutes(7)));
        // A result "from the future" of its own send time is dated at arrival.
        let mut future = result(Outcome::Ok);
        future.started_at = probe_now + chrono::Duration::seconds(30);
        let (results, _) = ResultBatch {
            results: vec![future],
            sent_at: Some(probe_now),
        }
        .on_clock_of(received)
        .unwrap();
        assert_eq!(results[0].started_at, received);
    }
}

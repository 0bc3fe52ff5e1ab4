//! The aggregator's core: takes result batches, stores them, runs the rule
//! engine and the alert policy, and records every state change as an
//! incident event with its alerts, in one transaction.
//!
//! It does not run checks and does not speak HTTP; probes reach it through a
//! `transport::ResultSink`, the API through `api.rs`. Each ingest, tick and
//! latency judgement is one storage decision (`IngestStore::decide`): the
//! checks' stored states are loaded in the transaction, judged in pure code
//! (`judge`), and written back with everything they raised, so results of a
//! check are judged in the order they commit, whichever process (or task)
//! ingests them; no lock in memory is held across it.
//! One concern per file: this one what is taken before a decision and
//! learnt after it; `judge` the decision; `cache` the states' copy for
//! reads; `probes` the probes' liveness, skew, backlog and fast
//! confirmation; `heartbeats` pings and missed pings; `holds` maintenance
//! windows and silences; `latency` the `p95_above_baseline` judgement;
//! `views` what the API, the status page and `/metrics` read; `replicas`
//! what replicas on one database share (probe contact, states, silences).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::alert::silence::Silence;
use crate::clock::Clock;
use crate::config::probes::ProbeTokens;
use crate::config::{Check, Config};
use crate::heartbeat::HEARTBEAT_REGION;
use crate::hub::ProbeHub;
use crate::limits;
use crate::metrics::Metrics;
use crate::policy::{self, OnTick};
use crate::result::{Outcome, ProbeResult};
use crate::rules::{self, CheckState, Effect, Rules, Status};
use crate::status::StatusReport;
use crate::storage::{
    Batch, Committed, HistoryStore, JobStore, Load, Revised, Screenshot, Storage, StorageError,
    Stored,
};
use cache::StateCache;
use judge::{Judge, Judged, queue_alert_to};

pub use acks::Acked;
pub use probes::ProbeStatus;
pub use views::CheckView;

pub struct Aggregator {
    config: std::sync::RwLock<Arc<Config>>,
    storage: Storage,
    /// Every check's state as last committed here: for reads, never the
    /// ground of a decision (see `cache.rs`).
    states: StateCache,
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
    /// Fast confirmation's memory per check: who was asked how often.
    asked: std::sync::Mutex<HashMap<String, rules::Asked>>,
    /// Counters and histograms of the results it accepts, for `/metrics`.
    metrics: Arc<Metrics>,
    /// Where `now` comes from for every decision and date.
    clock: Clock,
    /// Signs and checks acknowledge links (`alert::ack`).
    ack_key: Option<crate::alert::ack::AckKey>,
    /// The status page's latest figures, and when they were computed: a
    /// burst of visitors costs one computation per `STATUS_CACHE_FOR`.
    status_cache: Mutex<Option<(tokio::time::Instant, Arc<StatusReport>)>>,
    /// This process among the replicas on its database (the API's
    /// `/api/v1/aggregators` and `/health`); none in tests that build an
    /// aggregator alone.
    replicas: Option<Arc<crate::replica::Replicas>>,
    /// Fast-confirmation requests made here, for the other replicas (whose
    /// probes long-poll them), and those of theirs already taken.
    shared_run_now: std::sync::Mutex<replicas::SharedRunNow>,
    /// Woken when there is something to share at once.
    share_wake: Arc<tokio::sync::Notify>,
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
        let stored = storage.ingest().load_states().await?;
        let clock = storage.clock().clone();
        let now = clock.now();
        let silences = storage.ingest().live_silences(now).await?;
        // Time stood still while we were down: give every region a fresh
        // staleness window from now, or a restart would report them all
        // stale. Written back, so that the stored state is what is judged;
        // decided on the state the transaction reads (another aggregator
        // on the same database may have changed it since `load_states`).
        let states = StateCache::new(stored.iter().cloned());
        let load = Load {
            checks: stored
                .iter()
                .filter(|(_, revised)| needs_forgiving(&revised.state, now))
                .map(|(name, revised)| (name.clone(), Some(revised.revision)))
                .collect(),
            results: Vec::new(),
        };
        if !load.checks.is_empty() {
            let copies: HashMap<String, CheckState> = stored
                .into_iter()
                .map(|(name, revised)| (name, revised.state))
                .collect();
            let (mut committed, refreshed) = storage
                .decide(load, move |loaded| {
                    let mut batch = Batch::default();
                    let mut refreshed = Vec::new();
                    for (name, found) in loaded.states {
                        let mut state = match found {
                            Stored::Changed(revised) => {
                                refreshed.push((name.clone(), revised.clone()));
                                revised.state
                            }
                            Stored::Current => match copies.get(&name) {
                                Some(state) => state.clone(),
                                None => continue,
                            },
                            Stored::Absent => continue,
                        };
                        if needs_forgiving(&state, now) {
                            forgive(&mut state, now);
                            batch.states.push((name, state));
                        }
                    }
                    (batch, refreshed)
                })
                .await?;
            states.merge(refreshed);
            states.merge(committed_states(&mut committed));
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
            asked: std::sync::Mutex::new(HashMap::new()),
            storage,
            states,
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
            replicas: None,
            shared_run_now: std::sync::Mutex::new(replicas::SharedRunNow::default()),
            share_wake: Arc::new(tokio::sync::Notify::new()),
            ack_key: None,
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

    /// The key acknowledge links are signed with (none: no links).
    pub fn with_ack_key(mut self, key: Option<crate::alert::ack::AckKey>) -> Aggregator {
        self.ack_key = key;
        self
    }

    /// Accepts remote probes with these tokens (probes.yaml); `serve` gives
    /// its own region, whose probe is in-process.
    pub fn with_probe_tokens(self, tokens: ProbeTokens) -> Aggregator {
        self.hub.update(&self.config(), Some(tokens));
        self
    }

    /// The replicas' registry this aggregator is part of.
    pub fn with_replicas(mut self, replicas: Arc<crate::replica::Replicas>) -> Aggregator {
        self.replicas = Some(replicas);
        self
    }

    pub fn replicas(&self) -> Option<&Arc<crate::replica::Replicas>> {
        self.replicas.as_ref()
    }

    /// Woken when this replica has something to share at once (a
    /// fast-confirmation request for a probe another replica may hold).
    pub fn share_wake(&self) -> Arc<tokio::sync::Notify> {
        self.share_wake.clone()
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
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|name, _| config.check(name).is_some());
        self.hub.update(&config, tokens);
        if let Some(replicas) = &self.replicas {
            replicas.set_config_hash(config.source_hash.clone());
        }
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

    /// Stores a batch of results and applies the rules to them, in one
    /// transaction with the states they change. Safe to call again with
    /// the same results: ids already stored are skipped.
    pub async fn ingest(
        &self,
        mut results: Vec<ProbeResult>,
    ) -> Result<IngestReport, StorageError> {
        let config = self.config();
        let received_at = self.clock.now();
        // Outside the transaction: everything that needs no stored state.
        let screenshots: HashMap<Uuid, Screenshot> = results
            .iter_mut()
            .filter_map(|r| judge::take_screenshot(r).map(|shot| (r.id, shot)))
            .collect();
        let mut checks: Vec<String> = results
            .iter()
            .filter(|r| config.check(&r.check).is_some())
            .map(|r| r.check.clone())
            .collect();
        checks.sort();
        checks.dedup();
        let reporting: Vec<String> = {
            let mut regions: Vec<String> = results
                .iter()
                .map(|r| r.region.clone())
                .filter(|r| r != HEARTBEAT_REGION)
                .collect();
            regions.sort();
            regions.dedup();
            regions
        };
        let mut batch = Batch::default();
        let mut claim = probes::BackClaim {
            back: self.claim_probes_back(&config, &reporting, received_at, &mut batch),
            aggregator: self,
            committed: false,
        };
        let keys = results.iter().map(crate::storage::ResultKey::of).collect();
        let judge = self.judge(&config, &checks, received_at);
        let (load, judge) = self.load_for(checks, keys, judge);
        let committed = self
            .storage
            .decide(load, move |loaded| {
                judge.results(loaded, results, batch, screenshots)
            })
            .await;
        // On an error nothing was written: `claim`, dropped, gives the
        // probes that came back their old state, and the resend tells again.
        let (committed, judged) = committed?;
        claim.committed = true;
        let judged_age = chrono::Duration::from_std(limits::RESULT_JUDGED_AGE_MAX)
            .unwrap_or(chrono::Duration::MAX);
        let confirm: Vec<(String, String, bool)> = committed
            .batch
            .results
            .iter()
            .filter(|(r, at)| {
                r.region != HEARTBEAT_REGION && at.signed_duration_since(r.started_at) <= judged_age
            })
            .map(|(r, _)| (r.check.clone(), r.region.clone(), r.outcome == Outcome::Ok))
            .collect();
        let report = self.committed(committed, judged, |results| {
            for (result, _) in results {
                if config.check(&result.check).is_some() {
                    self.metrics.observe_result(result);
                }
            }
        });
        self.note_probes_reported(&reporting, received_at, &claim.back);
        self.ask_for_confirmation(&config, &confirm, received_at);
        Ok(report)
    }

    /// What a decision at `now` about `checks` is given: the config, the
    /// holds in force, where alerts link to.
    fn judge(&self, config: &Arc<Config>, checks: &[String], now: DateTime<Utc>) -> Judge {
        let holds = checks
            .iter()
            .filter_map(|name| {
                let check = config.check(name)?;
                self.muted(config, check, now)
                    .map(|why| (name.clone(), why))
            })
            .collect();
        let notices = checks
            .iter()
            .filter_map(|name| {
                let check = config.check(name)?;
                announcing_window(config, check, now).map(|w| (name.clone(), w))
            })
            .collect();
        Judge {
            notices,
            config: config.clone(),
            public_url: self.public_url.clone(),
            ack_key: self.ack_key.clone(),
            now,
            holds,
            cached: HashMap::new(),
        }
    }

    /// What storage loads for a decision about `checks`, and the judge
    /// with the cached copies it uses where they are current.
    fn load_for(
        &self,
        checks: Vec<String>,
        results: Vec<crate::storage::ResultKey>,
        mut judge: Judge,
    ) -> (Load, Judge) {
        let held = self.states.for_decision(checks);
        judge.cached = held.copies;
        (
            Load {
                checks: held.revisions,
                results,
            },
            judge,
        )
    }

    /// Once a decision is committed: the cache, the alert dispatcher, the
    /// logs and the caller's report learn of it.
    fn committed(
        &self,
        mut committed: Committed,
        judged: Judged,
        also: impl FnOnce(Vec<(ProbeResult, DateTime<Utc>)>),
    ) -> IngestReport {
        self.states.merge(committed_states(&mut committed));
        self.states.merge(judged.refreshed);
        if !committed.batch.deliveries.is_empty() {
            self.alert_wake.notify_one();
        }
        also(std::mem::take(&mut committed.batch.results));
        for effect in &judged.effects {
            log_effect(effect);
        }
        judged.report
    }

    /// Lets time pass for every check: regions that went silent become stale.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
        self.flush_pings().await?;
        let missed = self.missed_heartbeats(now).await;
        if !missed.is_empty() {
            self.ingest(missed).await?;
        }
        self.probes_back_elsewhere(now).await?;
        self.probes_gone_stale(now).await?;
        self.silences
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| s.expires_at > now);
        let config = self.config();
        // The cached copies say which checks have anything to do; the
        // decision itself reads each one's stored state.
        // Holds first: a dependency's hold reads the cache itself.
        let held: std::collections::HashSet<&str> = config
            .checks
            .iter()
            .filter(|check| self.muted(&config, check, now).is_some())
            .map(|check| check.name.as_str())
            .collect();
        let due: Vec<String> = self.states.read(|states| {
            config
                .checks
                .iter()
                .filter(|check| {
                    states.get(&check.name).is_some_and(|current| {
                        let held_now = held.contains(check.name.as_str());
                        let open = announcing_window(&config, check, now);
                        tick_candidate(&current.state, check, held_now, now)
                            || policy::maintenance_notice(&current.state, open.as_ref()).is_some()
                    })
                })
                .map(|check| check.name.clone())
                .collect()
        });
        if due.is_empty() {
            return Ok(IngestReport::default());
        }
        let judge = self.judge(&config, &due, now);
        let (load, judge) = self.load_for(due.clone(), Vec::new(), judge);
        let (committed, judged) = self
            .storage
            .decide(load, move |loaded| judge.tick(loaded, &due))
            .await?;
        Ok(self.committed(committed, judged, |_| {}))
    }
}

/// The `announce: true` maintenance window covering `check` open at `now`.
fn announcing_window(
    config: &Config,
    check: &Check,
    now: DateTime<Utc>,
) -> Option<rules::AnnouncedWindow> {
    config
        .maintenance
        .iter()
        .filter(|m| m.announce && m.applies_to(check))
        .find_map(|m| {
            m.started_at(now).map(|started| rules::AnnouncedWindow {
                name: m.name.clone(),
                started,
            })
        })
}

/// Whether a tick may do anything for `check` in `state`: a reminder or a
/// catch-up (the alert policy), or a rule's time-driven step.
fn tick_candidate(state: &CheckState, check: &Check, held_now: bool, now: DateTime<Utc>) -> bool {
    matches!(
        policy::on_tick(state, held_now, &policy::Settings::of(&check.alert), now),
        OnTick::Update { .. }
    ) || rules::tick_due(state, &Rules::for_check(check, now), now)
}

/// Whether a region of `state` (heartbeats aside: their anchor is the last
/// ping, and a job that died must not be forgiven by every restart) was
/// last seen before `now`.
fn needs_forgiving(state: &CheckState, now: DateTime<Utc>) -> bool {
    state
        .regions
        .iter()
        .any(|(name, region)| name != HEARTBEAT_REGION && region.last_seen < now)
}

/// Moves every region's last sighting (heartbeats aside) up to `now`.
fn forgive(state: &mut CheckState, now: DateTime<Utc>) {
    for (name, region) in state.regions.iter_mut() {
        if name != HEARTBEAT_REGION {
            region.last_seen = region.last_seen.max(now);
        }
    }
}

/// The states a commit wrote, at their new revisions.
fn committed_states(committed: &mut Committed) -> Vec<(String, Revised)> {
    let revisions = &committed.revisions;
    std::mem::take(&mut committed.batch.states)
        .into_iter()
        .filter_map(|(name, state)| {
            let revision = *revisions.get(&name)?;
            Some((name, Revised { state, revision }))
        })
        .collect()
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

fn runs_in(check: &Check, region: &str) -> bool {
    check.is_probed()
        && check
            .regions
            .as_ref()
            .is_none_or(|r| r.iter().any(|n| n == region))
}

mod acks;
mod cache;
mod heartbeats;
mod holds;
mod judge;
mod latency;
mod probes;
mod replicas;
mod views;

#[cfg(test)]
mod tests;

//! The aggregator's core: takes result batches, stores them, runs the rule
//! engine, records every state change as an incident event, and answers what
//! the API asks about checks.
//!
//! It does not run checks and does not speak HTTP; probes reach it through a
//! `transport::ResultSink`, the API through `api.rs`. Ingestion is serialised
//! by one lock so that results of a check are judged in arrival order.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::{Check, Config};
use crate::probe::ProbeResult;
use crate::rules::{self, CheckState, Effect, Input, Rules, Status, Transition};
use crate::storage::{Batch, Storage, StorageError};

pub struct Aggregator {
    config: std::sync::RwLock<Arc<Config>>,
    storage: Storage,
    states: Mutex<HashMap<String, CheckState>>,
}

/// What one ingest did, for the caller's logs and tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub accepted: usize,
    pub duplicates: usize,
    pub unknown_checks: usize,
    pub transitions: usize,
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
        let states: HashMap<String, CheckState> =
            storage.load_states().await?.into_iter().collect();
        Ok(Aggregator {
            config: std::sync::RwLock::new(config),
            storage,
            states: Mutex::new(states),
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        let received_at = Utc::now();
        let mut report = IngestReport::default();
        let mut working: HashMap<String, CheckState> = HashMap::new();
        let mut batch = Batch::default();
        let mut effects = Vec::new();
        let mut seen_in_batch = std::collections::HashSet::new();
        for result in results {
            let id = result.id.to_string();
            if known.contains(&id) || !seen_in_batch.insert(id) {
                report.duplicates += 1;
                continue;
            }
            report.accepted += 1;
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
        self.commit(&mut states, working, batch, effects, &mut report)
            .await?;
        Ok(report)
    }

    /// Lets time pass for every check: regions that went silent become stale.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<IngestReport, StorageError> {
        let config = self.config();
        let mut states = self.states.lock().await;
        let mut working = HashMap::new();
        let mut effects = Vec::new();
        for check in &config.checks {
            let Some(current) = states.get(&check.name) else {
                continue;
            };
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
            self.commit(&mut states, working, Batch::default(), effects, &mut report)
                .await?;
        }
        Ok(report)
    }

    async fn commit(
        &self,
        states: &mut HashMap<String, CheckState>,
        working: HashMap<String, CheckState>,
        mut batch: Batch,
        effects: Vec<Effect>,
        report: &mut IngestReport,
    ) -> Result<(), StorageError> {
        batch.states = working
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for effect in &effects {
            if let Effect::StateChanged(transition) = effect {
                batch.events.push(transition.clone());
            }
        }
        // Memory changes only once the batch is durable: a failed write
        // leaves the old state, and the probe's resend is judged afresh.
        self.storage.write_batch(batch).await?;
        states.extend(working);
        for effect in effects {
            log_effect(&effect);
            if matches!(effect, Effect::StateChanged(_)) {
                report.transitions += 1;
            }
        }
        Ok(())
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
            .map(|check| view(check, states.get(&check.name)))
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

fn view(check: &Check, state: Option<&CheckState>) -> CheckView {
    let default = CheckState::default();
    let state = state.unwrap_or(&default);
    CheckView {
        name: check.name.clone(),
        kind: check.kind_name(),
        target: check.target(),
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
        Effect::RegionStale { region, last_seen } => {
            tracing::warn!(%region, %last_seen, "region {region} stopped reporting: its probe, not the target, is in doubt");
        }
        Effect::RegionBack { region } => {
            tracing::info!(%region, "region {region} is reporting again")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{Outcome, Phases};

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

    fn result(outcome: Outcome) -> ProbeResult {
        ProbeResult {
            id: Uuid::now_v7(),
            check: "api".into(),
            region: "local".into(),
            probe: "p".into(),
            started_at: Utc::now(),
            duration_ms: 3.0,
            outcome,
            status: None,
            phases_ms: Phases::default(),
            error: None,
            notes: vec![],
        }
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
                transitions: 2
            }
        );
        let again = aggregator.ingest(batch).await.unwrap();
        assert_eq!(
            again,
            IngestReport {
                accepted: 0,
                duplicates: 3,
                unknown_checks: 0,
                transitions: 0
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
}

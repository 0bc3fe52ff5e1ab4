//! What an ingest transaction decides: from the checks' stored states and
//! what just happened (results, a tick, latency verdicts) to the batch to
//! write: the new states, the incident events, the alerts to deliver.
//!
//! Pure: the time, the holds in force, the config and the aggregator's
//! cached copies come in as data, taken before the transaction, so the
//! decision runs inside it (`storage::IngestStore::decide`) with no I/O and
//! no clock reads, on any backend. The rules (`rules.rs`) judge a check;
//! the alert policy (`policy.rs`) says what people are told; this module
//! strings the two together and turns their answers into rows.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::IngestReport;
use crate::alert::{self, AlertEvent};
use crate::config::{Check, Config};
use crate::limits;
use crate::policy::{self, OnTick, Told};
use crate::result::{Outcome, ProbeResult};
use crate::rules::{self, CheckState, Effect, Input, Rules};
use crate::storage::{Batch, Delivery, DeliveryState, Loaded, Revised, Screenshot, Stored};

/// Everything a decision needs besides the stored states.
pub(super) struct Judge {
    pub(super) config: Arc<Config>,
    pub(super) public_url: Option<url::Url>,
    /// Signs acknowledge links (with `public_url`: none without it).
    pub(super) ack_key: Option<alert::ack::AckKey>,
    /// The time of the decision: when the results arrived, or the tick.
    pub(super) now: DateTime<Utc>,
    /// Why each check about to be judged is held back, for those that are.
    pub(super) holds: HashMap<String, String>,
    /// The `announce: true` maintenance window open now, per check.
    pub(super) notices: HashMap<String, rules::AnnouncedWindow>,
    /// The aggregator's copies, used where storage finds them current.
    pub(super) cached: HashMap<String, CheckState>,
}

/// What a decision did besides its batch.
#[derive(Default)]
pub(super) struct Judged {
    pub(super) effects: Vec<Effect>,
    pub(super) report: IngestReport,
    /// Stored states newer than the aggregator's copy that the decision
    /// read and left as they were: the copy catches up with them.
    pub(super) refreshed: Vec<(String, Revised)>,
}

/// The states a decision works on: each read once, from storage or the
/// cached copy; only those it changes are written.
struct Working<'a> {
    judge: &'a Judge,
    loaded: Loaded,
    read: HashMap<String, CheckState>,
    changed: HashMap<String, CheckState>,
    judged: Judged,
}

impl Working<'_> {
    /// `check`'s state as stored (the cached copy when storage found it
    /// current); `None` if it was never stored.
    fn stored(&mut self, check: &str) -> Option<CheckState> {
        match self.loaded.states.remove(check)? {
            Stored::Changed(revised) => {
                let state = revised.state.clone();
                self.judged.refreshed.push((check.to_string(), revised));
                Some(state)
            }
            Stored::Current => self.judge.cached.get(check).cloned(),
            Stored::Absent => None,
        }
    }

    /// The state `check` is in now, as this decision left it so far.
    fn current(&mut self, check: &str) -> Option<&CheckState> {
        if !self.changed.contains_key(check)
            && !self.read.contains_key(check)
            && let Some(state) = self.stored(check)
        {
            self.read.insert(check.to_string(), state);
        }
        self.changed.get(check).or_else(|| self.read.get(check))
    }

    /// The state `check` is in now, to change (a new one if it has none).
    fn modify(&mut self, check: &str) -> &mut CheckState {
        if !self.changed.contains_key(check) {
            let state = match self.read.remove(check) {
                Some(state) => Some(state),
                None => self.stored(check),
            };
            self.changed
                .insert(check.to_string(), state.unwrap_or_default());
        }
        self.changed.entry(check.to_string()).or_default()
    }

    fn put(&mut self, check: &str, state: CheckState) {
        self.read.remove(check);
        self.changed.insert(check.to_string(), state);
    }
}

impl Judge {
    /// Judges results in arrival order. Ids already stored (or seen twice
    /// in `results`) are skipped; results older than
    /// `RESULT_JUDGED_AGE_MAX` are stored as history only. `batch` may
    /// hold what was decided before (probes coming back); `screenshots`
    /// are the results' PNGs, stored with the results that are new.
    pub(super) fn results(
        self,
        loaded: Loaded,
        results: Vec<ProbeResult>,
        mut batch: Batch,
        mut screenshots: HashMap<Uuid, Screenshot>,
    ) -> (Batch, Judged) {
        let mut work = self.working(loaded);
        let received_at = self.now;
        let mut seen_in_batch = std::collections::HashSet::new();
        let judged_age = chrono::Duration::from_std(limits::RESULT_JUDGED_AGE_MAX)
            .unwrap_or(chrono::Duration::MAX);
        for result in results {
            let id = result.id.to_string();
            if work.loaded.known_ids.contains(&id) || !seen_in_batch.insert(id) {
                work.judged.report.duplicates += 1;
                continue;
            }
            work.judged.report.accepted += 1;
            if let Some(shot) = screenshots.remove(&result.id) {
                batch.screenshots.push(shot);
            }
            // A result from long ago (a spool leftover, a set-aside batch
            // sent again after its id was pruned) is history: stored, never
            // taken for the region's latest.
            let history = received_at.signed_duration_since(result.started_at) > judged_age;
            match self.config.check(&result.check) {
                Some(_) if history => work.judged.report.history += 1,
                Some(check) => {
                    let rules = Rules::for_check(check, received_at);
                    let input = Input::Result {
                        result: &result,
                        received_at,
                    };
                    let effects = rules::step(
                        &check.name,
                        work.modify(&check.name),
                        &rules,
                        input,
                        &mut Uuid::now_v7,
                    );
                    work.judged.effects.extend(effects);
                }
                None => work.judged.report.unknown_checks += 1,
            }
            batch.results.push((result, received_at));
        }
        self.settle(work, batch)
    }

    /// Lets time pass for `checks`: reminders of open incidents, catch-up
    /// after a hold, regions gone silent.
    pub(super) fn tick(self, loaded: Loaded, checks: &[String]) -> (Batch, Judged) {
        let mut work = self.working(loaded);
        let mut batch = Batch::default();
        let now = self.now;
        for name in checks {
            let Some(check) = self.config.check(name) else {
                continue;
            };
            let held_now = self.holds.contains_key(name);
            let Some(mut current) = work.current(name).cloned() else {
                continue;
            };
            if let Some((kind, window, keep)) =
                policy::maintenance_notice(&current, self.notices.get(name))
            {
                current.announced_window = keep.map(Box::new);
                let event = alert::for_maintenance(
                    check,
                    &current,
                    kind,
                    &window,
                    now,
                    self.public_url.as_ref(),
                    &self.config.secrets,
                );
                tracing::info!(check = %name, "{}", event.summary);
                queue_alert(
                    &mut batch,
                    check,
                    &current,
                    &self.config,
                    Uuid::now_v7(),
                    event,
                    now,
                );
                work.put(name, current.clone());
            }
            let settings = policy::Settings::of(&check.alert);
            match policy::on_tick(&current, held_now, &settings, now) {
                OnTick::Update { state, alert } => {
                    if let Some(alert) = alert {
                        let mut event = alert::for_state(
                            check,
                            &state,
                            alert.kind,
                            alert.previously,
                            self.public_url.as_ref(),
                            &self.config.secrets,
                        );
                        self.link_ack(&mut event);
                        let channels = alert.channels.unwrap_or_else(|| {
                            paged_channels(check, &current, &self.config, event.incident)
                        });
                        queue_alert_to(
                            &mut batch,
                            &channels,
                            &self.config,
                            Uuid::now_v7(),
                            event,
                            now,
                        );
                    }
                    work.put(name, state);
                    continue;
                }
                OnTick::Judge => {}
            }
            let rules = Rules::for_check(check, now);
            if !rules::tick_due(&current, &rules, now) {
                continue;
            }
            // A tick that changes nothing worth an effect leaves the state
            // as stored.
            let mut state = current;
            let effects = rules::step(
                &check.name,
                &mut state,
                &rules,
                Input::Tick { now },
                &mut Uuid::now_v7,
            );
            if !effects.is_empty() {
                work.put(name, state);
                work.judged.effects.extend(effects);
            }
        }
        self.settle(work, batch)
    }

    /// Applies the latency verdicts (check, anomaly) that differ from the
    /// stored ones.
    pub(super) fn latency(
        self,
        loaded: Loaded,
        verdicts: Vec<(String, Option<String>)>,
    ) -> (Batch, Judged) {
        let mut work = self.working(loaded);
        let now = self.now;
        for (name, anomaly) in verdicts {
            let Some(check) = self.config.check(&name) else {
                continue;
            };
            let Some(current) = work.current(&name).cloned() else {
                continue;
            };
            if current.latency_anomaly == anomaly {
                continue;
            }
            let rules = Rules::for_check(check, now);
            let mut state = current;
            let effects = rules::step(
                &name,
                &mut state,
                &rules,
                Input::Latency { now, anomaly },
                &mut Uuid::now_v7,
            );
            work.put(&name, state);
            work.judged.effects.extend(effects);
        }
        self.settle(work, Batch::default())
    }

    /// Puts the signed acknowledge link into an alert that pages about an
    /// open incident (down, degraded, reminders, escalations).
    fn link_ack(&self, event: &mut AlertEvent) {
        use alert::AlertKind::{Degraded, Down, Reminder};
        let (Some(base), Some(key), Some(incident)) =
            (&self.public_url, &self.ack_key, event.incident)
        else {
            return;
        };
        if !matches!(event.event, Down | Degraded | Reminder) || !event.status.is_incident() {
            return;
        }
        let valid = chrono::Duration::from_std(limits::ACK_LINK_VALID_FOR)
            .unwrap_or(chrono::Duration::days(7));
        event.ack_url = alert::ack::link(base, key, incident, self.now + valid);
    }

    fn working(&self, loaded: Loaded) -> Working<'_> {
        Working {
            judge: self,
            loaded,
            read: HashMap::new(),
            changed: HashMap::new(),
            judged: Judged::default(),
        }
    }

    /// What the rules' state changes tell people (the alert policy), as
    /// events and deliveries; and the states that changed, to store.
    fn settle(&self, work: Working<'_>, mut batch: Batch) -> (Batch, Judged) {
        let Working {
            mut changed,
            mut judged,
            ..
        } = work;
        let now = self.now;
        let deps_changed: HashMap<String, rules::Status> = changed
            .iter()
            .map(|(name, state)| (name.clone(), state.status))
            .collect();
        for effect in &judged.effects {
            let rules::Effect::StateChanged(transition) = effect else {
                continue;
            };
            batch.events.push(transition.clone());
            judged.report.transitions += 1;
            let Some(check) = self.config.check(&transition.check) else {
                continue;
            };
            // A dependency that went down in this same decision holds too.
            let hold = self.holds.get(&check.name).cloned().or_else(|| {
                check
                    .depends_on
                    .iter()
                    .find(|dep| {
                        deps_changed
                            .get(dep.as_str())
                            .is_some_and(|s| *s == rules::Status::Down)
                    })
                    .map(|dep| dependency_hold(dep))
            });
            let Some(state) = changed.get_mut(&transition.check) else {
                continue;
            };
            let decided =
                policy::on_change(state, transition, hold.as_deref(), check.alert.flapping);
            if decided.flapping_alert {
                let event = alert::for_state(
                    check,
                    state,
                    alert::AlertKind::Flapping,
                    state.alerted,
                    self.public_url.as_ref(),
                    &self.config.secrets,
                );
                tracing::warn!(check = %check.name, "{}", event.summary);
                queue_alert(
                    &mut batch,
                    check,
                    state,
                    &self.config,
                    transition.id,
                    event,
                    now,
                );
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
                        &self.config.secrets,
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
                    self.link_ack(&mut event);
                    queue_alert(
                        &mut batch,
                        check,
                        state,
                        &self.config,
                        transition.id,
                        event,
                        now,
                    );
                }
            }
        }
        // A state read and left alone is not written (it keeps its
        // revision); one written is no longer merely refreshed.
        judged
            .refreshed
            .retain(|(name, _)| !changed.contains_key(name));
        batch.states = changed.into_iter().collect();
        batch.states.sort_by(|a, b| a.0.cmp(&b.0));
        (batch, judged)
    }
}

/// Why a dependent's alerts wait: the reason the API and logs show.
pub(super) fn dependency_hold(dependency: &str) -> String {
    format!("{dependency} is down")
}

/// Adds one delivery per channel of `check` for `event`.
#[allow(clippy::too_many_arguments)]
fn queue_alert(
    batch: &mut Batch,
    check: &Check,
    state: &CheckState,
    config: &Config,
    event_id: Uuid,
    event: AlertEvent,
    now: DateTime<Utc>,
) {
    let channels = paged_channels(check, state, config, event.incident);
    queue_alert_to(batch, &channels, config, event_id, event, now);
}

/// Where news of `incident` goes: the check's channels, and the channels
/// of the escalation steps already paged about it (those people hear the
/// recovery too, and a PagerDuty or Alertmanager escalation is resolved).
fn paged_channels(
    check: &Check,
    state: &CheckState,
    config: &Config,
    incident: Option<Uuid>,
) -> Vec<String> {
    let mut channels = config.channels_for(check);
    let steps = match (&state.escalated, incident) {
        (Some(escalated), Some(incident)) if escalated.incident == incident => {
            usize::try_from(escalated.steps).unwrap_or(usize::MAX)
        }
        _ => 0,
    };
    for step in check.alert.escalate.iter().take(steps) {
        for channel in &step.channels {
            if !channels.contains(channel) {
                channels.push(channel.clone());
            }
        }
    }
    channels
}

/// Adds one delivery per channel in `channels` for `event`.
pub(super) fn queue_alert_to(
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
pub(super) fn take_screenshot(result: &mut ProbeResult) -> Option<Screenshot> {
    use base64::Engine;
    const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let encoded = result.screenshot.take()?;
    match base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes()) {
        Ok(png)
            if png.starts_with(PNG_SIGNATURE)
                && png.len() <= limits::BROWSER_SCREENSHOT_BYTES_MAX =>
        {
            result.notes.push(format!(
                "screenshot: /api/v1/results/{}/screenshot",
                result.id
            ));
            Some(Screenshot {
                result_id: result.id,
                check: result.check.clone(),
                at: result.started_at,
                failed: result.outcome != Outcome::Ok,
                png,
            })
        }
        _ => {
            result
                .notes
                .push("screenshot dropped: not a PNG within the size limit".to_string());
            None
        }
    }
}

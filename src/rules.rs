//! The rule engine: results and time in, state changes out. Pure: no I/O, no
//! clock, no randomness (ids come from the caller), so every rule is tested
//! with tables of inputs.
//!
//! DESIGN.md's rules:
//! - a region is *failing* after `failures` consecutive non-ok results and
//!   *passing* after `successes` consecutive ok results;
//! - a region with no result for `3 x interval + timeout` is *stale*: it
//!   counts for neither side (the probe, not the target, is then in doubt);
//! - a check is **down** when failing regions >= quorum (default: a majority
//!   of the live regions), **degraded** when ok but slower than `max_latency`
//!   in a quorum of regions, **up** otherwise, **unknown** before any verdict.
//!
//! Staleness is judged on the aggregator's own receive time, never on the
//! probe's `started_at`, so a probe whose clock is off cannot make itself
//! look fresh or stale. Per region, results are judged in the order they
//! arrive, never by their timestamps: a probe's clock (or a wall-clock step)
//! cannot reorder them or freeze a region. The spool sends oldest first, and
//! a resent result is skipped by id before it gets here.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Check;
use crate::result::{Outcome, ProbeResult};
use crate::schedule::format_duration;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Unknown,
    Up,
    Degraded,
    Down,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Up, Status::Degraded, Status::Down, Status::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Degraded => "degraded",
            Status::Down => "down",
        }
    }

    /// Down and degraded are incidents; up and unknown are not.
    pub fn is_incident(self) -> bool {
        matches!(self, Status::Down | Status::Degraded)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    #[default]
    Unknown,
    Passing,
    Failing,
}

/// The thresholds that apply to one check.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    pub failures: u32,
    pub successes: u32,
    pub quorum: Option<u32>,
    pub max_latency: Option<Duration>,
    pub stale_after: Duration,
}

impl Rules {
    pub fn for_check(check: &Check, now: DateTime<Utc>) -> Rules {
        let interval = check.schedule.nominal_interval(now);
        Rules {
            failures: check.alert.failures,
            successes: check.alert.successes,
            quorum: check.alert.quorum,
            max_latency: check.expect.max_latency,
            // A heartbeat's silence is judged by its own deadline, not staleness.
            stale_after: if check.is_probed() {
                interval.saturating_mul(3).saturating_add(check.timeout)
            } else {
                Duration::MAX
            },
        }
    }
}

/// The latest result of a region, as shown in the API and in alerts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastResult {
    pub id: Uuid,
    pub started_at: DateTime<Utc>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<&ProbeResult> for LastResult {
    fn from(r: &ProbeResult) -> Self {
        LastResult {
            id: r.id,
            started_at: r.started_at,
            outcome: r.outcome,
            status: r.status,
            duration_ms: r.duration_ms,
            error: r.error.clone(),
        }
    }
}

/// Each region's state, sorted by region (a flat vector: a check has a few).
pub type RegionStates = litemap::LiteMap<String, RegionState>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionState {
    pub verdict: Verdict,
    pub consecutive_failures: u32,
    pub consecutive_successes: u32,
    /// Why the latest ok result was degraded (slower than `max_latency`, a
    /// certificate expiring soon); `None` when it was not.
    #[serde(default)]
    pub degraded: Option<String>,
    pub stale: bool,
    /// The aggregator's clock when the latest result arrived.
    pub last_seen: DateTime<Utc>,
    pub last: LastResult,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    pub status: Status,
    pub since: Option<DateTime<Utc>>,
    /// The open incident, while down or degraded.
    pub incident: Option<Uuid>,
    pub regions: RegionStates,
    /// When the last `remind_every` reminder went out for the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_at: Option<DateTime<Utc>>,
    /// The status the last alert sent announced (`None`: never alerted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerted: Option<Status>,
    /// The incident the last down/degraded alert announced, so a recovery
    /// announced later (after a hold) closes that same incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerted_incident: Option<Uuid>,
    /// A change happened while alerts were held back (maintenance, silence):
    /// when the hold ends, the current state is announced if it still matters.
    #[serde(default)]
    pub held: bool,
    /// Recent state changes (at most `FLAP_CHANGES_MAX + 1`), for flapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<DateTime<Utc>>,
    /// Changing too often: alerts pause until stable for `FLAP_WINDOW`.
    #[serde(default)]
    pub flapping: bool,
    /// Why the check's recent latency is anomalous against its own
    /// baseline (`p95_above_baseline`), making it degraded; `None` when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_anomaly: Option<String>,
    /// The open incident's acknowledgement: no more escalation or
    /// reminders for it (`policy::acknowledge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<Box<Ack>>,
    /// How many `alert.escalate` steps went out for which incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated: Option<Box<Escalated>>,
    /// The `announce: true` maintenance window whose start was announced
    /// and whose end is not yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announced_window: Option<Box<AnnouncedWindow>>,
}

/// One occurrence of a maintenance window: its name and when it began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedWindow {
    pub name: String,
    pub started: DateTime<Utc>,
}

/// Someone has seen an incident and is on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub incident: Uuid,
    pub at: DateTime<Utc>,
    /// How it was acknowledged: `api` or `link`.
    pub via: String,
}

/// The escalation steps already paged for `incident`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalated {
    pub incident: Uuid,
    pub steps: u32,
    /// When people were first paged about it: the steps' `after` counts
    /// from here (a page held back by a dependency starts late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged_at: Option<DateTime<Utc>>,
}

pub enum Input<'a> {
    /// A result, with the aggregator's clock when it arrived.
    Result {
        result: &'a ProbeResult,
        received_at: DateTime<Utc>,
    },
    /// Time passes: regions may go stale.
    Tick { now: DateTime<Utc> },
    /// The latency-baseline judgement (`p95_above_baseline`): why the
    /// recent p95 is anomalous, or `None` when it is not (any more).
    Latency {
        now: DateTime<Utc>,
        anomaly: Option<String>,
    },
}

/// A state change of a check: an incident event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub id: Uuid,
    pub check: String,
    pub from: Status,
    pub to: Status,
    pub at: DateTime<Utc>,
    /// When the previous state began, to say how long it lasted.
    pub previous_since: Option<DateTime<Utc>>,
    pub incident: Option<Uuid>,
    pub summary: String,
    pub regions: BTreeMap<String, RegionSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionSummary {
    pub verdict: Verdict,
    pub stale: bool,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why its latest ok result was degraded (slower than `max_latency`, a
    /// certificate expiring soon), so alerts can count and name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// A region's probe stopped reporting (`stale`) or reports again: stored
/// with the incident events, alerted on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeEvent {
    pub id: Uuid,
    pub region: String,
    pub stale: bool,
    pub at: DateTime<Utc>,
    /// Shared by a stale event and the back event that ends it.
    pub incident: Uuid,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    StateChanged(Transition),
    RegionStale {
        region: String,
        last_seen: DateTime<Utc>,
    },
    RegionBack {
        region: String,
    },
}

/// Feeds one input to a check's state; returns what changed.
pub fn step(
    check: &str,
    state: &mut CheckState,
    rules: &Rules,
    input: Input<'_>,
    new_id: &mut dyn FnMut() -> Uuid,
) -> Vec<Effect> {
    let mut effects = Vec::new();
    let now = match input {
        Input::Result {
            result,
            received_at,
        } => {
            apply_result(state, rules, result, received_at, &mut effects);
            received_at
        }
        Input::Tick { now } => {
            for (name, region) in &mut state.regions {
                if goes_stale(region, rules, now) {
                    region.stale = true;
                    effects.push(Effect::RegionStale {
                        region: name.clone(),
                        last_seen: region.last_seen,
                    });
                }
            }
            now
        }
        Input::Latency { now, anomaly } => {
            state.latency_anomaly = anomaly;
            now
        }
    };
    let next = evaluate(state, rules);
    if next != state.status {
        let from = state.status;
        let incident = match (from.is_incident(), next.is_incident()) {
            (false, true) => Some(new_id()),
            _ => state.incident,
        };
        let transition = Transition {
            id: new_id(),
            check: check.to_string(),
            from,
            to: next,
            at: now,
            previous_since: state.since,
            incident,
            summary: summarize(check, state, next, now),
            regions: region_summaries(state),
        };
        state.status = next;
        state.since = Some(now);
        state.reminded_at = None;
        state.incident = if next.is_incident() { incident } else { None };
        effects.push(Effect::StateChanged(transition));
    }
    effects
}

/// Why an ok result counts as degraded (the probe said so, or it was slower
/// than `max_latency`), or `None`.
pub fn degraded_reason(result: &ProbeResult, max_latency: Option<Duration>) -> Option<String> {
    if result.outcome != Outcome::Ok {
        return None;
    }
    if let Some(reason) = &result.degraded {
        return Some(reason.clone());
    }
    max_latency
        .filter(|max| result.duration_ms > max.as_secs_f64() * 1000.0)
        .map(|max| {
            format!(
                "slower than {} ({:.0}ms)",
                format_duration(max),
                result.duration_ms
            )
        })
}

/// Whether a tick at `now` would change anything: lets the caller skip
/// checks with nothing to do without cloning their state.
pub fn tick_due(state: &CheckState, rules: &Rules, now: DateTime<Utc>) -> bool {
    state
        .regions
        .values()
        .any(|region| goes_stale(region, rules, now))
}

fn goes_stale(region: &RegionState, rules: &Rules, now: DateTime<Utc>) -> bool {
    let silent = now
        .signed_duration_since(region.last_seen)
        .to_std()
        .unwrap_or_default();
    !region.stale && silent > rules.stale_after
}

fn apply_result(
    state: &mut CheckState,
    rules: &Rules,
    result: &ProbeResult,
    received_at: DateTime<Utc>,
    effects: &mut Vec<Effect>,
) {
    let ok = result.outcome == Outcome::Ok;
    let degraded = degraded_reason(result, rules.max_latency);
    let region = state
        .regions
        .entry(result.region.clone())
        .or_insert_with(|| RegionState {
            verdict: Verdict::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            degraded: None,
            stale: false,
            last_seen: received_at,
            last: LastResult::from(result),
        });
    if region.stale {
        region.stale = false;
        effects.push(Effect::RegionBack {
            region: result.region.clone(),
        });
    }
    region.last_seen = region.last_seen.max(received_at);
    region.last = LastResult::from(result);
    if ok {
        region.consecutive_successes = region.consecutive_successes.saturating_add(1);
        region.consecutive_failures = 0;
        region.degraded = degraded;
        if region.consecutive_successes >= rules.successes {
            region.verdict = Verdict::Passing;
        }
    } else {
        region.consecutive_failures = region.consecutive_failures.saturating_add(1);
        region.consecutive_successes = 0;
        if region.consecutive_failures >= rules.failures {
            region.verdict = Verdict::Failing;
            region.degraded = None;
        }
    }
}

/// The live regions' verdicts folded into the check's status. A region is
/// live when it reports (is not stale), even before its first verdict: a
/// region still counting its first failures is part of the majority.
fn evaluate(state: &CheckState, rules: &Rules) -> Status {
    let live: Vec<&RegionState> = state.regions.values().filter(|r| !r.stale).collect();
    let quorum = quorum(rules, live.len());
    let failing = live
        .iter()
        .filter(|r| r.verdict == Verdict::Failing)
        .count();
    let passing = live
        .iter()
        .filter(|r| r.verdict == Verdict::Passing)
        .count();
    let slow = live
        .iter()
        .filter(|r| r.verdict == Verdict::Passing && r.degraded.is_some())
        .count();
    if failing + passing == 0 {
        // Nobody can say (all stale, or no verdict yet): keep what we knew.
        state.status
    } else if failing >= quorum {
        Status::Down
    } else if slow >= quorum || (passing > 0 && state.latency_anomaly.is_some()) {
        Status::Degraded
    } else if passing > 0 {
        Status::Up
    } else {
        // Some regions failing, too few for a quorum, none passing yet.
        state.status
    }
}

/// The configured quorum, but never more than the live regions: with fewer
/// regions reporting than `quorum`, all of them failing is still an outage
/// (a check run by one local probe with `quorum: 2` must still go down).
fn quorum(rules: &Rules, live: usize) -> usize {
    match rules.quorum {
        Some(q) => (q as usize).min(live).max(1),
        None => live / 2 + 1,
    }
}

/// Every region's verdict and latest result, as events and alerts show them.
pub fn region_summaries(state: &CheckState) -> BTreeMap<String, RegionSummary> {
    state
        .regions
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                RegionSummary {
                    verdict: r.verdict,
                    stale: r.stale,
                    outcome: r.last.outcome,
                    status: r.last.status,
                    duration_ms: r.last.duration_ms,
                    error: r.last.error.clone(),
                    degraded: r.degraded.clone(),
                },
            )
        })
        .collect()
}

fn summarize(check: &str, state: &CheckState, next: Status, now: DateTime<Utc>) -> String {
    let live: Vec<(&String, &RegionState)> =
        state.regions.iter().filter(|(_, r)| !r.stale).collect();
    match next {
        Status::Down => {
            let failing: Vec<&(&String, &RegionState)> = live
                .iter()
                .filter(|(_, r)| r.verdict == Verdict::Failing)
                .collect();
            let reason = failing
                .iter()
                .find_map(|(_, r)| r.last.error.clone())
                .unwrap_or_else(|| "failing".to_string());
            let names: Vec<&str> = failing.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "{check} is DOWN in {} of {} regions ({}): {reason}",
                failing.len(),
                live.len(),
                names.join(", ")
            )
        }
        Status::Degraded => {
            let degraded: Vec<&String> = live
                .iter()
                .filter_map(|(_, r)| r.degraded.as_ref())
                .collect();
            match (&state.latency_anomaly, degraded.first()) {
                (Some(anomaly), None) => format!("{check} is DEGRADED: {anomaly}"),
                (_, first) => format!(
                    "{check} is DEGRADED in {} of {} regions: {}",
                    degraded.len(),
                    live.len(),
                    first.map(|r| r.as_str()).unwrap_or("degraded")
                ),
            }
        }
        Status::Up => match (state.status, state.since) {
            (from, Some(since)) if from.is_incident() => {
                let lasted = now
                    .signed_duration_since(since)
                    .to_std()
                    .unwrap_or_default();
                format!(
                    "{check} is UP again after {} {}",
                    crate::schedule::format_duration_approx(lasted),
                    from
                )
            }
            _ => format!("{check} is UP"),
        },
        Status::Unknown => format!("{check} is UNKNOWN"),
    }
}

/// Which way a fast-confirmation request pushes a region: to count a
/// failure seen elsewhere, or a recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Toward {
    Failing,
    Passing,
}

/// Fast confirmation's memory of one check: how often each region was
/// asked to run it now, each way, since `since` (when the check had
/// `status`). It starts again when the status changes or after the
/// check's staleness window, so each region is asked at most `failures`
/// times towards failing and `successes` times towards passing (each at
/// most `limits::RUN_NOW_ASKS_MAX`) per status and window, however the
/// results come.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Asked {
    status: Status,
    since: Option<DateTime<Utc>>,
    counts: BTreeMap<(String, Toward), u32>,
}

/// Fast confirmation: once `reporter`'s result (`ok` or not) is judged
/// into `state`, the regions to ask to run the check now, instead of at
/// their next tick.
///
/// - A failure on its way to counting (the reporter is not failing yet):
///   every live region not failing, the reporter included (it needs its
///   own `failures` in a row), so an outage is confirmed or cleared in
///   about one round-trip.
/// - A recovery while the check is down: every live region still failing
///   (the reporter too while it counts its `successes`), so the up alert
///   follows the recovery in about one round-trip too.
///
/// Anything else asks nobody: a region that has reached its verdict does
/// not ask again, and `asked` bounds the requests per region.
pub fn confirmation_targets(
    state: &CheckState,
    rules: &Rules,
    reporter: &str,
    ok: bool,
    now: DateTime<Utc>,
    asked: &mut Asked,
) -> Vec<String> {
    let Some(reporting) = state.regions.get(reporter) else {
        return Vec::new();
    };
    let toward = if !ok && reporting.verdict != Verdict::Failing {
        Toward::Failing
    } else if ok && state.status == Status::Down {
        Toward::Passing
    } else {
        return Vec::new();
    };
    let window = chrono::Duration::from_std(rules.stale_after).unwrap_or(chrono::Duration::MAX);
    let expired = asked
        .since
        .is_none_or(|since| now < since || now.signed_duration_since(since) >= window);
    if asked.status != state.status || expired {
        *asked = Asked {
            status: state.status,
            since: Some(now),
            counts: BTreeMap::new(),
        };
    }
    let bound = match toward {
        Toward::Failing => rules.failures,
        Toward::Passing => rules.successes,
    }
    .clamp(1, crate::limits::RUN_NOW_ASKS_MAX);
    let mut targets = Vec::new();
    for (name, region) in &state.regions {
        let wanted = match toward {
            Toward::Failing => region.verdict != Verdict::Failing,
            Toward::Passing => region.verdict == Verdict::Failing,
        };
        if region.stale || !wanted {
            continue;
        }
        let count = asked.counts.entry((name.clone(), toward)).or_insert(0);
        if *count < bound {
            *count += 1;
            targets.push(name.clone());
        }
    }
    targets
}

#[cfg(test)]
mod tests;

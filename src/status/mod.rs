//! The status page's figures: overall state, uptime over 24 h / 7 d / 30 d,
//! 90 days of daily status, latency percentiles per region, recent
//! incidents. `GET /` renders them as HTML (`page.rs`), `GET /api/v1/status`
//! as JSON: the same [`StatusReport`], so every figure the page shows has a
//! machine-readable twin.
//!
//! Everything here is pure: storage gathers the inputs ([`Inputs`]), and
//! [`compute`] turns them into a report. Uptime and daily status come from
//! the incident events (the aggregated verdict across regions, not single
//! results), so a one-region blip that never made the check go down does
//! not dent the uptime. Time in `unknown` (before the first verdict) counts
//! on neither side. Latency comes from hourly roll-ups (`rollup.rs`) plus the
//! raw results of the hour not rolled up yet, so a 30-day page reads a few
//! rows per check and hour, never every result.

pub mod badge;
pub mod check_page;
pub mod feed;
pub mod groups;
pub mod markdown;
pub mod overview;
pub mod page;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::config::{Check, Config};
use crate::rollup::{HOUR_MS, HourRollup, LatencyHistogram, hour_of};
use crate::rules::{CheckState, Status, Transition, Verdict};

/// Days in the daily status bar.
pub const DAYS_SHOWN: usize = 90;
/// Hours in the latency chart.
pub const LATENCY_HOURS: usize = 24;
/// Incidents listed.
pub const INCIDENTS_SHOWN: usize = 20;

/// What the page says at a glance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overall {
    /// Every check up (or not judged yet).
    Operational,
    /// Nothing down, something degraded.
    DegradedPerformance,
    /// Some checks down, fewer than half.
    PartialOutage,
    /// Half of the checks or more down.
    MajorOutage,
}

impl Overall {
    pub fn as_str(self) -> &'static str {
        match self {
            Overall::Operational => "operational",
            Overall::DegradedPerformance => "degraded_performance",
            Overall::PartialOutage => "partial_outage",
            Overall::MajorOutage => "major_outage",
        }
    }

    pub fn headline(self) -> &'static str {
        match self {
            Overall::Operational => "All systems operational",
            Overall::DegradedPerformance => "Degraded performance",
            Overall::PartialOutage => "Partial outage",
            Overall::MajorOutage => "Major outage",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub overall: Overall,
    pub generated_at: DateTime<Utc>,
    pub counts: Counts,
    pub checks: Vec<CheckStatus>,
    pub incidents: Vec<Incident>,
    /// The page's groups in their configured order, each with its roll-up,
    /// and "Other" last for the checks in none; empty without groups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<groups::GroupStatus>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub up: usize,
    pub degraded: usize,
    pub down: usize,
    pub unknown: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckStatus {
    pub name: String,
    /// What the page calls it (`status_page.display_name`), else `name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `None` when the check hides it (`status_page.hide_target`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub status: Status,
    pub since: Option<DateTime<Utc>>,
    /// Percent of the judged time the check was not down, per window;
    /// `None` when nothing was judged in it.
    pub uptime: Uptime,
    /// Oldest first, `DAYS_SHOWN` of them, today last.
    pub days: Vec<Day>,
    /// Per region: percentiles over the last 24 h and the hourly series.
    pub latency: BTreeMap<String, RegionLatency>,
    /// Per region: what the latest result said.
    pub regions: BTreeMap<String, RegionNow>,
    /// `depends_on`, those the page shows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Down while a dependency (shown on the page) is down: `db is down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub because: Option<String>,
    /// When the open incident was acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Uptime {
    #[serde(rename = "24h")]
    pub day: Option<f64>,
    #[serde(rename = "7d")]
    pub week: Option<f64>,
    #[serde(rename = "30d")]
    pub month: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DayStatus {
    Up,
    Degraded,
    Down,
    /// Nothing judged that day.
    None,
}

#[derive(Clone, Debug, Serialize)]
pub struct Day {
    pub date: NaiveDate,
    pub status: DayStatus,
    #[serde(skip_serializing_if = "is_zero")]
    pub down_s: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub degraded_s: i64,
    /// Seconds of the day with a verdict (up, degraded or down).
    #[serde(skip_serializing_if = "is_zero")]
    pub judged_s: i64,
}

fn is_zero(seconds: &i64) -> bool {
    *seconds == 0
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RegionLatency {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Ok results in the window.
    pub samples: u64,
    /// `LATENCY_HOURS` points, oldest first; empty hours have no figures.
    pub hours: Vec<HourPoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct HourPoint {
    pub hour: DateTime<Utc>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegionNow {
    pub verdict: Verdict,
    pub stale: bool,
    pub outcome: crate::result::Outcome,
    pub duration_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub result_id: Uuid,
    /// A browser check's screenshot of its failing latest run, when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
    /// browser: the latest run's pages with their Web Vitals, by the step
    /// (1-based) that opened each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<(usize, crate::result::WebVitals)>,
    /// browser: the latest run's console errors and failed requests.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_errors: Vec<crate::result::PageError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub request_errors: Vec<crate::result::PageError>,
    /// browser: the failing latest run's film strip; shown on the check's
    /// own page, left out of the JSON (it has the result's API).
    #[serde(skip)]
    pub film_strip: Vec<crate::result::FilmFrame>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Incident {
    pub check: String,
    pub id: Uuid,
    /// The worst state it reached.
    pub status: Status,
    pub started: DateTime<Utc>,
    /// `None` while it lasts.
    pub ended: Option<DateTime<Utc>>,
    pub duration_s: i64,
    pub summary: String,
}

/// What `compute` reads, gathered by the caller.
pub struct Inputs<'a> {
    pub config: &'a Config,
    pub states: &'a HashMap<String, CheckState>,
    /// Incident events of the last `DAYS_SHOWN` days, oldest first.
    pub events: &'a [Transition],
    /// Hourly roll-ups of the last `LATENCY_HOURS` hours.
    pub rollups: &'a [HourRollup],
    /// How far roll-ups reach: later hours come from `raw`.
    pub rolled_until_ms: Option<i64>,
    /// Raw results (check, region, started_at_ms, ok, duration_ms) of the
    /// hours not rolled up.
    pub raw: &'a [(String, String, i64, bool, f64)],
    /// Result ids (of latest runs) whose screenshot is kept.
    pub screenshots: &'a std::collections::HashSet<String>,
    /// The latest full results of browser checks (pages, errors, film
    /// strips), found by their ids.
    pub browser_results: &'a [crate::result::ProbeResult],
    pub now: DateTime<Utc>,
}

/// Which checks a public page shows.
pub fn visible(check: &Check) -> bool {
    !check.status_page.hidden
}

pub fn compute(inputs: &Inputs<'_>) -> StatusReport {
    let now = inputs.now;
    let mut events_by_check: HashMap<&str, Vec<&Transition>> = HashMap::new();
    for event in inputs.events {
        events_by_check
            .entry(event.check.as_str())
            .or_default()
            .push(event);
    }
    let latency = latency_by_check(inputs);
    let default_state = CheckState::default();
    let mut counts = Counts::default();
    let mut checks = Vec::new();
    for check in inputs.config.checks.iter().filter(|c| visible(c)) {
        let state = inputs.states.get(&check.name).unwrap_or(&default_state);
        match state.status {
            Status::Up => counts.up += 1,
            Status::Degraded => counts.degraded += 1,
            Status::Down => counts.down += 1,
            Status::Unknown => counts.unknown += 1,
        }
        let events = events_by_check
            .get(check.name.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let window_start = now - Duration::days(DAYS_SHOWN as i64);
        let segments = segments(events, state, window_start, now);
        let shown_deps: Vec<String> = check
            .depends_on
            .iter()
            .filter(|dep| inputs.config.check(dep).is_some_and(|c| visible(c)))
            .cloned()
            .collect();
        let because = (state.status == Status::Down)
            .then(|| {
                shown_deps.iter().find(|dep| {
                    inputs
                        .states
                        .get(dep.as_str())
                        .is_some_and(|s| s.status == Status::Down)
                })
            })
            .flatten()
            .map(|dep| format!("{dep} is down"));
        let acknowledged_at = state
            .ack
            .as_ref()
            .filter(|_| crate::policy::acknowledged(state))
            .map(|ack| ack.at);
        checks.push(CheckStatus {
            depends_on: shown_deps,
            because,
            acknowledged_at,
            name: check.name.clone(),
            display_name: check.status_page.display_name.clone(),
            kind: check.kind_name(),
            description: check.description.clone(),
            target: (!check.status_page.hide_target)
                .then(|| inputs.config.secrets.redact(&check.target())),
            status: state.status,
            since: state.since,
            uptime: Uptime {
                day: uptime(&segments, now - Duration::hours(24), now),
                week: uptime(&segments, now - Duration::days(7), now),
                month: uptime(&segments, now - Duration::days(30), now),
            },
            days: days(&segments, now),
            latency: latency
                .get(check.name.as_str())
                .cloned()
                .unwrap_or_default(),
            regions: state
                .regions
                .iter()
                .map(|(name, region)| {
                    let full = inputs
                        .browser_results
                        .iter()
                        .find(|r| r.id == region.last.id)
                        // A hidden target is not shown through its pages' URLs.
                        .filter(|_| !check.status_page.hide_target);
                    (
                        name.clone(),
                        RegionNow {
                            verdict: region.verdict,
                            stale: region.stale,
                            outcome: region.last.outcome,
                            duration_ms: region.last.duration_ms,
                            error: region.last.error.as_ref().map(|error| {
                                if check.status_page.hide_target {
                                    hide_target_in(error, &check.target())
                                } else {
                                    inputs.config.secrets.redact(error)
                                }
                            }),
                            result_id: region.last.id,
                            screenshot: inputs
                                .screenshots
                                .contains(&region.last.id.to_string())
                                .then(|| format!("/api/v1/results/{}/screenshot", region.last.id)),
                            pages: full
                                .map(|r| {
                                    r.steps
                                        .iter()
                                        .enumerate()
                                        .filter_map(|(i, s)| Some((i + 1, s.vitals.clone()?)))
                                        .collect()
                                })
                                .unwrap_or_default(),
                            console_errors: full
                                .map(|r| r.browser.console_errors.clone())
                                .unwrap_or_default(),
                            request_errors: full
                                .map(|r| r.browser.request_errors.clone())
                                .unwrap_or_default(),
                            film_strip: full
                                .map(|r| r.browser.film_strip.clone())
                                .unwrap_or_default(),
                        },
                    )
                })
                .collect(),
        });
    }
    // Worst first, so what is broken is at the top.
    checks.sort_by_key(|c| (severity_rank(c.status), c.name.clone()));
    let shown: std::collections::HashSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    let incidents = incidents(inputs.events, &shown, now, INCIDENTS_SHOWN);
    let groups = groups::arrange(inputs.config, &checks);
    StatusReport {
        overall: overall(&counts),
        generated_at: now,
        counts,
        checks,
        incidents,
        groups,
    }
}

/// `text` without the target or its host, for checks whose target the
/// page must not show (`status_page.hide_target`).
pub fn hide_target_in(text: &str, target: &str) -> String {
    let mut hidden = vec![target.to_string()];
    match url::Url::parse(target) {
        Ok(url) if url.host_str().is_some() => {
            hidden.extend(url.host_str().map(str::to_string));
        }
        // host:port (tcp, tls) and "TYPE name" (dns).
        _ => {
            if let Some((_, name)) = target.split_once(' ') {
                hidden.push(name.to_string());
            } else if let Some((host, _)) = target.rsplit_once(':') {
                hidden.push(host.trim_matches(|c| c == '[' || c == ']').to_string());
            }
        }
    }
    hidden.sort_by_key(|h| std::cmp::Reverse(h.len()));
    let mut out = text.to_string();
    for needle in hidden.iter().filter(|h| h.len() >= 3) {
        out = out.replace(needle.as_str(), "[hidden]");
    }
    out
}

fn severity_rank(status: Status) -> u8 {
    match status {
        Status::Down => 0,
        Status::Degraded => 1,
        Status::Up => 2,
        Status::Unknown => 3,
    }
}

pub fn overall(counts: &Counts) -> Overall {
    let judged = counts.up + counts.degraded + counts.down;
    if counts.down > 0 && counts.down * 2 >= judged {
        Overall::MajorOutage
    } else if counts.down > 0 {
        Overall::PartialOutage
    } else if counts.degraded > 0 {
        Overall::DegradedPerformance
    } else {
        Overall::Operational
    }
}

/// A stretch of time in one state: [start, end) in unix ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Segment {
    pub start: i64,
    pub end: i64,
    pub status: Status,
}

/// The check's states over [from, now], from its events (oldest first)
/// and its current state.
pub fn segments(
    events: &[&Transition],
    state: &CheckState,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Segment> {
    let (from, now) = (from.timestamp_millis(), now.timestamp_millis());
    let mut out = Vec::new();
    let mut push = |start: i64, end: i64, status: Status| {
        let (start, end) = (start.max(from), end.min(now));
        if end > start {
            out.push(Segment { start, end, status });
        }
    };
    match events.first() {
        None => match state.since.map(|s| s.timestamp_millis()) {
            // No change in the window: the current state held all along,
            // from when it began.
            Some(since) => {
                push(from, since, Status::Unknown);
                push(since, now, state.status);
            }
            None => push(from, now, state.status),
        },
        Some(first) => {
            let mut cursor = from;
            let mut status = first.from;
            for event in events {
                let at = event.at.timestamp_millis();
                push(cursor, at, status);
                cursor = cursor.max(at);
                status = event.to;
            }
            push(cursor, now, status);
        }
    }
    out
}

/// Seconds (down, degraded, not down) within [from, to).
fn time_in(segments: &[Segment], from: i64, to: i64) -> (i64, i64, i64) {
    let (mut down, mut degraded, mut fine) = (0, 0, 0);
    for s in segments {
        let overlap = (s.end.min(to) - s.start.max(from)).max(0);
        match s.status {
            Status::Down => down += overlap,
            Status::Degraded => degraded += overlap,
            Status::Up => fine += overlap,
            Status::Unknown => {}
        }
    }
    (down / 1000, degraded / 1000, (fine + degraded) / 1000)
}

/// Percent of the judged time in [from, to) that was not down.
pub fn uptime(segments: &[Segment], from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
    let (down, _, not_down) = time_in(segments, from.timestamp_millis(), to.timestamp_millis());
    let judged = down + not_down;
    (judged > 0).then(|| not_down as f64 * 100.0 / judged as f64)
}

/// One `Day` per UTC day, `DAYS_SHOWN` of them ending today.
pub fn days(segments: &[Segment], now: DateTime<Utc>) -> Vec<Day> {
    let today = now.date_naive();
    (0..DAYS_SHOWN as i64)
        .rev()
        .map(|back| {
            let date = today - Duration::days(back);
            let start = Utc
                .from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
                .timestamp_millis();
            let end = (start + 86_400_000).min(now.timestamp_millis());
            let (down_s, degraded_s, not_down_s) = time_in(segments, start, end);
            let status = if down_s > 0 {
                DayStatus::Down
            } else if degraded_s > 0 {
                DayStatus::Degraded
            } else if not_down_s > 0 {
                DayStatus::Up
            } else {
                DayStatus::None
            };
            Day {
                date,
                status,
                down_s,
                degraded_s,
                judged_s: down_s + not_down_s,
            }
        })
        .collect()
}

/// Per check, per region: the last `LATENCY_HOURS` hours of ok run times.
fn latency_by_check<'a>(
    inputs: &'a Inputs<'_>,
) -> HashMap<&'a str, BTreeMap<String, RegionLatency>> {
    let current_hour = hour_of(inputs.now.timestamp_millis());
    let first_hour = current_hour - (LATENCY_HOURS as i64 - 1) * HOUR_MS;
    let rolled_until = inputs.rolled_until_ms.unwrap_or(i64::MIN);
    // (check, region) -> (hour index, what it holds), merged below into
    // two reused histograms: at 10,000 checks, a histogram per check and
    // hour was 24 x 10,000 allocations of 600 bytes per report (#19).
    enum Source<'h> {
        Rolled(&'h LatencyHistogram),
        Raw(f64),
    }
    let mut sources: HashMap<(&str, &str), Vec<(usize, Source<'a>)>> = HashMap::new();
    let index_of = |hour: i64| -> Option<usize> {
        (first_hour..=current_hour)
            .contains(&hour)
            .then(|| ((hour - first_hour) / HOUR_MS) as usize)
    };
    for rollup in inputs.rollups {
        // Hours at or past the mark are taken from the raw results.
        if rollup.hour_ms >= rolled_until {
            continue;
        }
        if let Some(index) = index_of(rollup.hour_ms) {
            sources
                .entry((&rollup.check, &rollup.region))
                .or_default()
                .push((index, Source::Rolled(&rollup.latency)));
        }
    }
    for (check, region, at, ok, ms) in inputs.raw {
        let hour = hour_of(*at);
        if !*ok || hour < rolled_until {
            continue;
        }
        if let Some(index) = index_of(hour) {
            sources
                .entry((check, region))
                .or_default()
                .push((index, Source::Raw(*ms)));
        }
    }
    let mut out: HashMap<&str, BTreeMap<String, RegionLatency>> = HashMap::new();
    let mut hour = LatencyHistogram::new();
    let mut total = LatencyHistogram::new();
    for ((check, region), mut list) in sources {
        list.sort_by_key(|(index, _)| *index);
        total.clear();
        let mut list = list.into_iter().peekable();
        let points = (0..LATENCY_HOURS)
            .map(|index| {
                hour.clear();
                while let Some((_, source)) = list.next_if(|(i, _)| *i == index) {
                    match source {
                        Source::Rolled(histogram) => hour.merge(histogram),
                        Source::Raw(ms) => hour.record(ms),
                    }
                }
                total.merge(&hour);
                HourPoint {
                    hour: DateTime::from_timestamp_millis(first_hour + index as i64 * HOUR_MS)
                        .unwrap_or_default(),
                    p50_ms: hour.quantile(0.5),
                    p95_ms: hour.quantile(0.95),
                }
            })
            .collect();
        out.entry(check).or_default().insert(
            region.to_string(),
            RegionLatency {
                p50_ms: total.quantile(0.5),
                p95_ms: total.quantile(0.95),
                samples: total.count(),
                hours: points,
            },
        );
    }
    out
}

/// Incidents of the shown checks, newest first: the events that share an
/// incident id, from the first to the one that closed it.
pub fn incidents(
    events: &[Transition],
    shown: &std::collections::HashSet<&str>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<Incident> {
    let mut by_id: BTreeMap<Uuid, Incident> = BTreeMap::new();
    for event in events {
        let Some(id) = event.incident else { continue };
        if !shown.contains(event.check.as_str()) {
            continue;
        }
        let incident = by_id.entry(id).or_insert_with(|| Incident {
            check: event.check.clone(),
            id,
            status: event.to,
            started: event.at,
            ended: None,
            duration_s: 0,
            summary: event.summary.clone(),
        });
        if event.to == Status::Down && incident.status != Status::Down {
            incident.status = Status::Down;
            incident.summary = event.summary.clone();
        }
        if !event.to.is_incident() {
            incident.ended = Some(event.at);
        }
    }
    let mut list: Vec<Incident> = by_id
        .into_values()
        .map(|mut incident| {
            let end = incident.ended.unwrap_or(now);
            incident.duration_s = (end - incident.started).num_seconds().max(0);
            incident
        })
        .collect();
    list.sort_by_key(|incident| std::cmp::Reverse(incident.started));
    list.truncate(limit);
    list
}

#[cfg(test)]
mod tests;

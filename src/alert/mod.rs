//! Telling people: alert events built from state changes, rendered per
//! channel (`format`; `template` for `format: template` channels), and
//! delivered by email (`email`) or webhook (`webhook`) from the durable
//! outbox (`outbox`); `resend` keeps Alertmanager's firing alerts alive.
//!
//! An `AlertEvent` is channel-agnostic and is what the outbox stores; each
//! delivery renders it for its channel at send time. Secrets never enter an
//! event: errors and targets in it were redacted when the results were made.

pub mod ack;
pub mod email;
pub mod format;
pub mod outbox;
pub mod resend;
pub mod silence;
pub mod template;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::{Check, Secrets};
use crate::rules::{CheckState, Status, Transition};

/// What happened, as the `event` field of every payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Down,
    Degraded,
    /// Recovery.
    Up,
    /// Still down, `remind_every` later.
    Reminder,
    /// Changing state too often: reported once, then per-change alerts
    /// pause until it has been stable for the flapping window.
    Flapping,
    /// Sent by `lookout alert test`.
    Test,
    /// A region's probe stopped reporting: its checks are judged by the
    /// other regions, and the probe (not the targets) needs a look.
    #[serde(rename = "probe_stale")]
    ProbeStale,
    /// That probe reports again.
    #[serde(rename = "probe_back")]
    ProbeBack,
    /// An `announce: true` maintenance window covering the check began.
    #[serde(rename = "maintenance_start")]
    MaintenanceStart,
    /// That window ended.
    #[serde(rename = "maintenance_end")]
    MaintenanceEnd,
    /// Sent by a probe itself, through the fallback channels: it has reached
    /// no aggregator for `--aggregator-down-after`, so nothing is judged.
    #[serde(rename = "aggregators_unreachable")]
    AggregatorsUnreachable,
    /// That probe reaches an aggregator again.
    #[serde(rename = "aggregators_back")]
    AggregatorsBack,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Down => "down",
            AlertKind::Degraded => "degraded",
            AlertKind::Up => "up",
            AlertKind::Reminder => "reminder",
            AlertKind::Flapping => "flapping",
            AlertKind::Test => "test",
            AlertKind::ProbeStale => "probe_stale",
            AlertKind::ProbeBack => "probe_back",
            AlertKind::MaintenanceStart => "maintenance_start",
            AlertKind::MaintenanceEnd => "maintenance_end",
            AlertKind::AggregatorsUnreachable => "aggregators_unreachable",
            AlertKind::AggregatorsBack => "aggregators_back",
        }
    }

    /// Ends what an earlier alert started (receivers resolve it).
    pub fn is_recovery(self) -> bool {
        matches!(
            self,
            AlertKind::Up | AlertKind::ProbeBack | AlertKind::AggregatorsBack
        )
    }
}

/// One region's latest result, as alerts show it: the rule engine's own
/// summary (verdict, stale, outcome, status, duration, error).
pub use crate::rules::RegionSummary as RegionDetail;

/// An alert, before it is rendered for a channel. Its JSON form is the
/// `format: json` webhook payload of DESIGN.md.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Payload version: "1".
    pub version: String,
    pub event: AlertKind,
    pub check: String,
    pub status: Status,
    pub previous_status: Status,
    /// When the check entered `status`.
    pub since: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Uuid>,
    /// One line a person can triage from.
    pub summary: String,
    /// Failing and passing regions alike, with their latest result.
    pub regions: BTreeMap<String, RegionDetail>,
    /// The check on the status page, when a public URL is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `up`: how long the incident lasted, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// What the check looks at (secrets masked).
    pub target: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// For `probe_stale` / `probe_back`: the region whose probe it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// browser checks: the failing run's screenshot
    /// (`GET /api/v1/results/{id}/screenshot`), when a public URL is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
    /// The result whose screenshot that is (emails attach it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot_result: Option<Uuid>,
    /// A signed link that acknowledges the incident (`alert::ack`), when a
    /// public URL is set: it stops escalation and reminders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<String>,
}

/// The link to a result's screenshot.
pub fn screenshot_url(public_url: Option<&url::Url>, result: Uuid) -> Option<String> {
    public_url
        .and_then(|base| {
            base.join(&format!("api/v1/results/{result}/screenshot"))
                .ok()
        })
        .map(|u| u.to_string())
}

/// Why a delivery did not go through, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// A connection error, a timeout, a 5xx or 429, an SMTP 4xx: try again,
    /// not before `retry_after` when the receiver said so.
    #[error("{reason}")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The receiver refused for good (a 4xx other than 429, an SMTP 5xx,
    /// an invalid address): retrying cannot help.
    #[error("{reason}")]
    Permanent { reason: String },
}

/// The link to a check on the status page.
pub fn check_url(public_url: Option<&url::Url>, check: &str) -> Option<String> {
    public_url
        .and_then(|base| base.join(&format!("checks/{check}")).ok())
        .map(|u| u.to_string())
}

/// The alert of `kind` (the policy's decision) for a state change.
pub fn from_transition(
    check: &Check,
    transition: &Transition,
    kind: AlertKind,
    public_url: Option<&url::Url>,
    secrets: &Secrets,
) -> AlertEvent {
    let duration_s = (kind == AlertKind::Up)
        .then(|| {
            transition
                .previous_since
                .map(|since| (transition.at - since).num_seconds().max(0) as u64)
        })
        .flatten();
    let regions = transition.regions.clone();
    AlertEvent {
        version: "1".to_string(),
        event: kind,
        check: check.name.clone(),
        status: transition.to,
        previous_status: transition.from,
        since: transition.at,
        incident: transition.incident,
        summary: secrets.redact(&transition.summary),
        regions,
        url: check_url(public_url, &check.name),
        duration_s,
        target: secrets.redact(&check.target()),
        labels: check.labels.clone(),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

/// An alert about `check`'s current state, not tied to a transition: a
/// reminder, what a maintenance window or silence held back, or flapping.
/// `previously`: what people had last heard.
pub fn for_state(
    check: &Check,
    state: &CheckState,
    kind: AlertKind,
    previously: Option<Status>,
    public_url: Option<&url::Url>,
    secrets: &Secrets,
) -> AlertEvent {
    let regions = crate::rules::region_summaries(state);
    let since = state.since.unwrap_or_default();
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let status = state.status.as_str().to_uppercase();
    let summary = match kind {
        AlertKind::Reminder => format!("{} is still {status} since {since_text}", check.name),
        AlertKind::Flapping => format!(
            "{} is FLAPPING: {} state changes within {}; alerts pause until it is stable that long",
            check.name,
            state.changes.len(),
            crate::schedule::format_duration(check.alert.flapping.within)
        ),
        AlertKind::Up => format!(
            "{} is UP again (recovered while alerts were held back)",
            check.name
        ),
        _ => format!(
            "{} is {status} since {since_text} (alerts were held back until now)",
            check.name
        ),
    };
    AlertEvent {
        version: "1".to_string(),
        event: kind,
        check: check.name.clone(),
        status: state.status,
        previous_status: previously.unwrap_or(state.status),
        since,
        // A recovery after a hold closes the incident people were paged for.
        incident: state.incident.or(state.alerted_incident),
        summary,
        regions,
        url: check_url(public_url, &check.name),
        duration_s: None,
        target: secrets.redact(&check.target()),
        labels: check.labels.clone(),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

/// A maintenance notice (`announce: true`): `window` opened (`kind`
/// `MaintenanceStart`) or closed (`MaintenanceEnd`) for `check`.
pub fn for_maintenance(
    check: &Check,
    state: &CheckState,
    kind: AlertKind,
    window: &crate::rules::AnnouncedWindow,
    at: DateTime<Utc>,
    public_url: Option<&url::Url>,
    secrets: &Secrets,
) -> AlertEvent {
    let summary = if kind == AlertKind::MaintenanceStart {
        format!(
            "{}: maintenance window `{}` started; alerts are held back until it ends",
            check.name, window.name
        )
    } else {
        format!(
            "{}: maintenance window `{}` ended; alerts are on again (now {})",
            check.name,
            window.name,
            state.status.as_str().to_uppercase()
        )
    };
    AlertEvent {
        version: "1".to_string(),
        event: kind,
        check: check.name.clone(),
        status: state.status,
        previous_status: state.status,
        since: at,
        incident: None,
        summary,
        regions: crate::rules::region_summaries(state),
        url: check_url(public_url, &check.name),
        duration_s: None,
        target: secrets.redact(&check.target()),
        labels: check.labels.clone(),
        region: None,
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

/// The subject of a probe alert: `probe:ap-south`.
pub fn probe_subject(region: &str) -> String {
    format!("probe:{region}")
}

/// The alert for a region's probe going stale (`stale`) or coming back.
/// Its status is `degraded` while stale: the monitoring, not a service, is
/// impaired. Stale and back share an incident, so receivers pair them.
pub fn for_probe(
    region: &str,
    stale: bool,
    summary: String,
    at: DateTime<Utc>,
    incident: Uuid,
    duration_s: Option<u64>,
) -> AlertEvent {
    let (event, status, previous_status) = if stale {
        (AlertKind::ProbeStale, Status::Degraded, Status::Up)
    } else {
        (AlertKind::ProbeBack, Status::Up, Status::Degraded)
    };
    AlertEvent {
        version: "1".to_string(),
        event,
        check: probe_subject(region),
        status,
        previous_status,
        since: at,
        incident: Some(incident),
        summary,
        regions: BTreeMap::new(),
        url: None,
        duration_s,
        target: format!("probe in region {region}"),
        labels: BTreeMap::from([("region".to_string(), region.to_string())]),
        region: Some(region.to_string()),
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

/// The subject of a probe's own alert about its aggregators:
/// `aggregators:eu-west`.
pub fn aggregators_subject(region: &str) -> String {
    format!("aggregators:{region}")
}

/// What a probe says when it has reached none of `aggregators` since
/// `since` (`back_at`: None while lost; the time contact returned for the
/// note). `probe` is its host name. Both share `incident`, so receivers pair
/// them. The status is `down`: nothing is being judged meanwhile.
pub fn for_aggregators(
    region: &str,
    probe: &str,
    aggregators: &[String],
    since: DateTime<Utc>,
    back_at: Option<DateTime<Utc>>,
    incident: Uuid,
) -> AlertEvent {
    let list = aggregators.join(", ");
    let since_text = since.format("%Y-%m-%d %H:%M:%S UTC");
    let (event, status, previous_status, summary, duration_s) = match back_at {
        None => (
            AlertKind::AggregatorsUnreachable,
            Status::Down,
            Status::Up,
            format!(
                "Probe {probe} in region {region} has reached no aggregator since {since_text} ({list}); no check is judged and no other alert is sent until one answers"
            ),
            None,
        ),
        Some(at) => {
            let secs = (at - since).num_seconds().max(0) as u64;
            (
                AlertKind::AggregatorsBack,
                Status::Up,
                Status::Down,
                format!(
                    "Probe {probe} in region {region} reaches an aggregator again ({list}; lost since {since_text}, for {})",
                    crate::schedule::format_duration_approx(Duration::from_secs(secs))
                ),
                Some(secs),
            )
        }
    };
    AlertEvent {
        version: "1".to_string(),
        event,
        check: aggregators_subject(region),
        status,
        previous_status,
        since: back_at.unwrap_or(since),
        incident: Some(incident),
        summary,
        regions: BTreeMap::new(),
        url: None,
        duration_s,
        target: list,
        labels: BTreeMap::from([
            ("region".to_string(), region.to_string()),
            ("probe".to_string(), probe.to_string()),
        ]),
        region: Some(region.to_string()),
        screenshot: None,
        screenshot_result: None,
        ack_url: None,
    }
}

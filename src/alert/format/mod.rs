//! Rendering an alert for a channel: the webhook bodies of every
//! `WebhookFormat`, and the subject, text and HTML parts of an email. One
//! file per format (`json`, `slack`, `discord`, `teams`, `pagerduty`,
//! `alertmanager_webhook`, `alertmanager_api`, `email`), each with its single and grouped body and its
//! snapshot tests; this file dispatches and holds what formats share.
//!
//! Everything here is pure (no I/O, no clock): the same event renders to the
//! same bytes, so an outbox retry sends what the first attempt sent, and
//! every format has a snapshot test.
//!
//! Text that came from users or targets (check names, errors, summaries,
//! labels) is escaped for the markup of each destination: Slack mrkdwn
//! (`&`, `<`, `>`), HTML (`& < > " '`), and it is cut to each service's
//! documented limits, with an ellipsis, so a long error cannot get a message
//! rejected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::Hasher;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::{AlertEvent, AlertKind, RegionDetail};
use crate::config::{WebhookChannel, WebhookFormat};
use crate::result::Outcome;
use crate::rules::Status;

mod alertmanager;
mod alertmanager_api;
mod discord;
mod email;
mod json;
mod pagerduty;
mod slack;
mod teams;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod notice_tests;

pub use email::{
    email_html, email_subject, email_text, group_email_html, group_email_text, group_subject,
};

/// The longest subject `email_subject` makes (it is also Slack's fallback
/// text and Discord's `content`): what a phone lock screen shows.
const SUBJECT_CHARS_MAX: usize = 100;

/// The body of a webhook delivery in `format`, for `event` sent to `channel`.
///
/// - `Json`: the event's own serde form, DESIGN.md's versioned payload.
/// - `Slack`: an incoming-webhook message with Block Kit blocks.
/// - `Discord`: an execute-webhook message with one embed, within Discord's
///   limits, and with mentions disabled (an error cannot ping `@everyone`).
/// - `Teams`: a message carrying an Adaptive Card (Workflows / webhooks).
/// - `PagerDuty`: an Events API v2 event whose `dedup_key` is the incident,
///   so the recovery resolves the incident the outage opened.
/// - `Alertmanager`: the alerts to post to Alertmanager's API v2.
/// - `AlertmanagerWebhook`: Alertmanager's webhook payload, version 4.
/// - `Template`: rendered by `alert::template` (its request is templates);
///   here, the `json` payload.
pub fn webhook_body(format: WebhookFormat, event: &AlertEvent, channel: &WebhookChannel) -> Value {
    match format {
        WebhookFormat::Alertmanager => alertmanager_api::alerts(std::slice::from_ref(event)),
        WebhookFormat::AlertmanagerWebhook => alertmanager::body(event),
        WebhookFormat::Template => json::body(event),
        WebhookFormat::Json => json::body(event),
        WebhookFormat::Slack => slack::body(event),
        WebhookFormat::Discord => discord::body(event),
        WebhookFormat::Teams => teams::body(event),
        WebhookFormat::PagerDuty => pagerduty::body(event, channel),
    }
}

/// One message for several alerts to a channel with a `group_window`. Each
/// format folds the alerts its own way; PagerDuty channels never group.
pub fn webhook_group_body(
    format: WebhookFormat,
    events: &[AlertEvent],
    channel: &WebhookChannel,
) -> Value {
    if let [single] = events {
        return webhook_body(format, single, channel);
    }
    match format {
        WebhookFormat::Json => json::group(events),
        WebhookFormat::Slack => slack::group(events),
        WebhookFormat::Discord => discord::group(events),
        WebhookFormat::Teams => teams::group(events),
        WebhookFormat::Alertmanager => alertmanager_api::alerts(events),
        WebhookFormat::AlertmanagerWebhook => alertmanager::group(events),
        WebhookFormat::Template => json::group(events),
        WebhookFormat::PagerDuty => pagerduty::group(events, channel),
    }
}

fn kind_word(event: &AlertEvent) -> &'static str {
    match event.event {
        AlertKind::Down => "DOWN",
        AlertKind::Degraded => "DEGRADED",
        AlertKind::Up => "UP",
        AlertKind::Reminder => "STILL DOWN",
        AlertKind::Flapping => "FLAPPING",
        AlertKind::Test => "TEST",
        AlertKind::ProbeStale => "PROBE STALE",
        AlertKind::ProbeBack => "PROBE BACK",
        AlertKind::MaintenanceStart => "MAINTENANCE",
        AlertKind::MaintenanceEnd => "MAINTENANCE OVER",
        AlertKind::AggregatorsUnreachable => "AGGREGATORS UNREACHABLE",
        AlertKind::AggregatorsBack => "AGGREGATORS BACK",
    }
}

// ---------------------------------------------------------------- groups

// ---------------------------------------------------------------- shared

/// `critical` while down, `warning` while degraded, `info` for a test.
fn severity(event: &AlertEvent) -> &'static str {
    match event.event {
        AlertKind::Test => "info",
        AlertKind::Down | AlertKind::AggregatorsUnreachable => "critical",
        AlertKind::AggregatorsBack => "info",
        AlertKind::Degraded | AlertKind::Flapping | AlertKind::ProbeStale => "warning",
        AlertKind::ProbeBack | AlertKind::MaintenanceStart | AlertKind::MaintenanceEnd => "info",
        // Same as the alert it repeats, so receivers keep one alert.
        AlertKind::Reminder | AlertKind::Up => status_severity(event.status),
    }
}

fn status_severity(status: Status) -> &'static str {
    match status {
        Status::Down => "critical",
        Status::Degraded => "warning",
        Status::Up | Status::Unknown => "info",
    }
}

/// Red down, orange degraded, green up, blue test and reminder.
fn status_color(event: &AlertEvent) -> u32 {
    match event.event {
        AlertKind::Down | AlertKind::AggregatorsUnreachable => 0xE0_1E_3C,
        AlertKind::AggregatorsBack => 0x2E_A0_43,
        AlertKind::Degraded => 0xF5_8B_00,
        AlertKind::Up | AlertKind::ProbeBack => 0x2E_A0_43,
        AlertKind::Flapping => 0x8E_44_AD,
        AlertKind::ProbeStale => 0xF5_8B_00,
        AlertKind::Test | AlertKind::Reminder => 0x1F_6F_EB,
        AlertKind::MaintenanceStart | AlertKind::MaintenanceEnd => 0x1F_6F_EB,
    }
}

/// A short title: `api-health is DOWN`.
fn headline(event: &AlertEvent) -> String {
    let check = one_line(&event.check);
    match event.event {
        AlertKind::Down => format!("{check} is DOWN"),
        AlertKind::Degraded => format!("{check} is DEGRADED"),
        AlertKind::Up => format!("{check} is UP again"),
        AlertKind::Reminder => format!(
            "{check} is still {}",
            event.status.as_str().to_ascii_uppercase()
        ),
        AlertKind::Flapping => format!("{check} is FLAPPING"),
        AlertKind::Test => "Lookout test notification".to_string(),
        AlertKind::ProbeStale => format!("{check} stopped reporting"),
        AlertKind::ProbeBack => format!("{check} is reporting again"),
        AlertKind::MaintenanceStart => format!("{check}: maintenance started"),
        AlertKind::MaintenanceEnd => format!("{check}: maintenance over"),
        AlertKind::AggregatorsUnreachable => format!(
            "Probe {} reaches no aggregator",
            one_line(event.labels.get("probe").map_or(&event.check, |p| p))
        ),
        AlertKind::AggregatorsBack => format!(
            "Probe {} reaches an aggregator again",
            one_line(event.labels.get("probe").map_or(&event.check, |p| p))
        ),
    }
}

/// The headline a template sees (`api is DOWN`).
pub fn headline_of(event: &AlertEvent) -> String {
    headline(event)
}

/// The per-region lines a template sees (as in Alertmanager's
/// `description`).
pub fn description_of(event: &AlertEvent) -> String {
    region_description(event)
}

/// `DOWN (was up)`.
fn state_change(event: &AlertEvent) -> String {
    format!(
        "{} (was {})",
        event.status.as_str().to_ascii_uppercase(),
        event.previous_status
    )
}

/// The key-value lines under the summary in both email parts.
fn detail_rows(event: &AlertEvent) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Status", state_change(event)),
        ("Since", human_time(event.since)),
    ];
    if let Some(secs) = event.duration_s {
        rows.push(("Lasted", human_duration(secs)));
    }
    if !event.target.is_empty() {
        rows.push(("Target", one_line(&event.target)));
    }
    if let Some(incident) = event.incident {
        rows.push(("Incident", incident.to_string()));
    }
    rows
}

/// `fail · HTTP 500 · 31 ms`.
fn region_line(r: &RegionDetail) -> String {
    let mut line = r.outcome.as_str().to_string();
    if let Some(status) = r.status {
        let _ = write!(line, " · HTTP {status}");
    }
    let _ = write!(line, " · {}", format_ms(r.duration_ms));
    line
}

/// One line per region, for Alertmanager's `description`.
fn region_description(event: &AlertEvent) -> String {
    event
        .regions
        .iter()
        .map(|(name, r)| {
            let mut line = format!("{name}: {}", region_line(r));
            if let Some(error) = &r.error {
                let _ = write!(line, ": {}", one_line(error));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The subject's reason and its count suffix (` in 2/3 regions`).
fn reason_text(event: &AlertEvent) -> (String, String) {
    let failing: Vec<&RegionDetail> = event
        .regions
        .values()
        .filter(|r| r.outcome != Outcome::Ok)
        .collect();
    if event.status == Status::Down && !failing.is_empty() {
        // The most common reason; ties go to the first region by name.
        let mut counts: Vec<(String, usize)> = Vec::new();
        for r in &failing {
            let reason = region_reason(r);
            match counts.iter_mut().find(|(c, _)| *c == reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((reason, 1)),
            }
        }
        let best = counts
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, n))| (*n, std::cmp::Reverse(*i)))
            .map(|(_, (reason, _))| reason.clone())
            .unwrap_or_default();
        return (
            best,
            format!(" in {}/{} regions", failing.len(), event.regions.len()),
        );
    }
    // Degraded regions are ok results that were slow (or had a certificate
    // expiring soon): counted and named from the regions' facts.
    let live: Vec<&RegionDetail> = event.regions.values().filter(|r| !r.stale).collect();
    let degraded: Vec<&str> = live.iter().filter_map(|r| r.degraded.as_deref()).collect();
    if let Some(first) = degraded.first() {
        return (
            one_line(first),
            format!(" in {}/{} regions", degraded.len(), live.len()),
        );
    }
    // Degraded as a whole (its p95 against its own baseline): the reason
    // the rules gave, after the check's name.
    let summary = one_line(&event.summary);
    let reason = summary
        .split_once(": ")
        .map_or(summary.as_str(), |(_, r)| r)
        .to_string();
    (reason, String::new())
}

/// `HTTP 500` when the status is what failed, else the error, else the
/// outcome.
fn region_reason(r: &RegionDetail) -> String {
    match (r.status, r.error.as_deref()) {
        (Some(status), None) => format!("HTTP {status}"),
        (Some(status), Some(error)) if error.starts_with(&format!("status {status} ")) => {
            format!("HTTP {status}")
        }
        (_, Some(error)) => one_line(error),
        (_, None) => r.outcome.as_str().to_string(),
    }
}

fn human_duration(secs: u64) -> String {
    crate::schedule::format_duration_approx(std::time::Duration::from_secs(secs))
}

fn format_ms(ms: f64) -> String {
    if ms.is_finite() {
        format!("{ms:.0} ms")
    } else {
        "-".to_string()
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn human_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Control characters (newlines included) become spaces; trimmed.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// At most `max` characters, the last an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn is_web_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// HTML-escapes `& < > " '`, for text and quoted attribute values.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

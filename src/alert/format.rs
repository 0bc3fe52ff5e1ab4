//! Rendering an alert for a channel: the webhook bodies of every
//! `WebhookFormat`, and the subject, text and HTML parts of an email.
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
use crate::probe::Outcome;
use crate::rules::Status;

/// The longest subject `email_subject` makes (it is also Slack's fallback
/// text and Discord's `content`): what a phone lock screen shows.
const SUBJECT_CHARS_MAX: usize = 100;

/// The `alertname` label of every alert in the Alertmanager format.
const ALERTNAME: &str = "LookoutCheck";

/// The body of a webhook delivery in `format`, for `event` sent to `channel`.
///
/// - `Json`: the event's own serde form, DESIGN.md's versioned payload.
/// - `Slack`: an incoming-webhook message with Block Kit blocks.
/// - `Discord`: an execute-webhook message with one embed, within Discord's
///   limits, and with mentions disabled (an error cannot ping `@everyone`).
/// - `Teams`: a message carrying an Adaptive Card (Workflows / webhooks).
/// - `PagerDuty`: an Events API v2 event whose `dedup_key` is the incident,
///   so the recovery resolves the incident the outage opened.
/// - `Alertmanager`: Alertmanager's webhook payload, version 4.
pub fn webhook_body(format: WebhookFormat, event: &AlertEvent, channel: &WebhookChannel) -> Value {
    match format {
        WebhookFormat::Json => json_body(event),
        WebhookFormat::Slack => slack_body(event),
        WebhookFormat::Discord => discord_body(event),
        WebhookFormat::Teams => teams_body(event),
        WebhookFormat::PagerDuty => pagerduty_body(event, channel),
        WebhookFormat::Alertmanager => alertmanager_body(event),
    }
}

/// A subject a person can triage from a phone lock screen, at most 100
/// characters: `[DOWN] api-health — HTTP 500 in 2/3 regions`,
/// `[UP] api-health — recovered after 12m`,
/// `[REMINDER] api-health still down — HTTP 500 in 2/3 regions`,
/// `[TEST] ops-email — Lookout test notification`.
///
/// The reason is the most common one among the failing regions (an HTTP
/// status when the status is what failed, else the error), counted over the
/// regions with a result; for `degraded`, the reason of the summary.
pub fn email_subject(event: &AlertEvent) -> String {
    let check = one_line(&event.check);
    let (head, tail) = match event.event {
        AlertKind::Down => (format!("[DOWN] {check} — "), reason_text(event)),
        AlertKind::Degraded => (format!("[DEGRADED] {check} — "), reason_text(event)),
        AlertKind::Reminder => (
            format!("[REMINDER] {check} still {} — ", event.status),
            reason_text(event),
        ),
        AlertKind::Up => {
            let tail = match event.duration_s {
                Some(secs) => format!("recovered after {}", human_duration(secs)),
                None => "recovered".to_string(),
            };
            (format!("[UP] {check} — "), (tail, String::new()))
        }
        AlertKind::Flapping => (
            format!("[FLAPPING] {check} — "),
            (
                "changing state too often; alerts paused until it settles".to_string(),
                String::new(),
            ),
        ),
        AlertKind::Test => (
            format!("[TEST] {check} — "),
            ("Lookout test notification".to_string(), String::new()),
        ),
        AlertKind::ProbeStale => (
            format!("[PROBE STALE] {check} — "),
            ("stopped reporting".to_string(), String::new()),
        ),
        AlertKind::ProbeBack => (
            format!("[PROBE BACK] {check} — "),
            ("reporting again".to_string(), String::new()),
        ),
    };
    let (reason, counts) = tail;
    let fixed = head.chars().count() + counts.chars().count();
    let room = SUBJECT_CHARS_MAX.saturating_sub(fixed).max(12);
    let subject = format!("{head}{}{counts}", truncate(&reason, room));
    // A very long check name: cut the whole line.
    truncate(&subject, SUBJECT_CHARS_MAX)
}

/// The plain-text part of an alert email: the summary, the state change and
/// since when, the per-region table, the incident and the link.
pub fn email_text(event: &AlertEvent) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", one_line(&event.summary));
    out.push('\n');
    for (key, value) in detail_rows(event) {
        let _ = writeln!(out, "{:<10} {value}", format!("{key}:"));
    }
    if !event.regions.is_empty() {
        out.push('\n');
        let header = ["Region", "Outcome", "Status", "Time", "Error"].map(String::from);
        let rows: Vec<[String; 5]> = event
            .regions
            .iter()
            .map(|(name, r)| {
                [
                    one_line(name),
                    r.outcome.as_str().to_string(),
                    r.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
                    format_ms(r.duration_ms),
                    r.error
                        .as_deref()
                        .map_or_else(String::new, |e| truncate(&one_line(e), 300)),
                ]
            })
            .collect();
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    if event.event == AlertKind::Test {
        out.push_str(
            "\nThis is a test notification sent by `lookout alert test`; no check changed state.\n",
        );
    }
    if let Some(url) = &event.url {
        let _ = writeln!(
            out,
            "\nView {} on the status page: {url}",
            one_line(&event.check)
        );
    }
    if let Some(shot) = &event.screenshot {
        let _ = writeln!(out, "Screenshot of the failing page: {shot}");
    }
    out.push_str("\n-- \nSent by Lookout.\n");
    out
}

/// The HTML part of an alert email: the content of `email_text` as simple,
/// inline-styled HTML (tables, no CSS classes, no images) that mail clients
/// render. Every user-derived string is HTML-escaped.
pub fn email_html(event: &AlertEvent) -> String {
    const CELL: &str =
        "padding:6px 10px;border:1px solid #d0d7de;text-align:left;vertical-align:top";
    let color = format!("#{:06x}", status_color(event));
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n</head>\n\
         <body style=\"margin:0;padding:16px;background:#ffffff;color:#1f2328;\
         font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5\">\n",
        escape_html(&email_subject(event))
    );
    let _ = write!(
        out,
        "<div style=\"border-left:4px solid {color};padding:4px 12px;margin:0 0 16px\">\n\
         <h1 style=\"font-size:18px;margin:0 0 4px;color:{color}\">{}</h1>\n\
         <p style=\"margin:0\">{}</p>\n</div>\n",
        escape_html(&headline(event)),
        escape_html(&one_line(&event.summary))
    );
    out.push_str("<table style=\"border-collapse:collapse;margin:0 0 16px\">\n");
    for (key, value) in detail_rows(event) {
        let _ = writeln!(
            out,
            "<tr><th style=\"padding:2px 12px 2px 0;text-align:left;color:#57606a;font-weight:normal\">{}</th>\
             <td style=\"padding:2px 0\">{}</td></tr>",
            escape_html(key),
            escape_html(&value)
        );
    }
    out.push_str("</table>\n");
    if !event.regions.is_empty() {
        out.push_str("<table style=\"border-collapse:collapse;margin:0 0 16px\">\n<tr>");
        for title in ["Region", "Outcome", "Status", "Time", "Error"] {
            let _ = write!(out, "<th style=\"{CELL};background:#f6f8fa\">{title}</th>");
        }
        out.push_str("</tr>\n");
        for (name, r) in &event.regions {
            let outcome_color = if r.outcome == Outcome::Ok {
                "#1a7f37"
            } else {
                "#cf222e"
            };
            let _ = writeln!(
                out,
                "<tr><td style=\"{CELL}\">{}</td>\
                 <td style=\"{CELL};color:{outcome_color};font-weight:bold\">{}</td>\
                 <td style=\"{CELL}\">{}</td><td style=\"{CELL};white-space:nowrap\">{}</td>\
                 <td style=\"{CELL}\">{}</td></tr>",
                escape_html(name),
                r.outcome.as_str(),
                r.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
                format_ms(r.duration_ms),
                r.error
                    .as_deref()
                    .map_or_else(String::new, |e| escape_html(&truncate(&one_line(e), 300)))
            );
        }
        out.push_str("</table>\n");
    }
    if event.event == AlertKind::Test {
        out.push_str(
            "<p style=\"margin:0 0 16px\">This is a test notification sent by \
             <code>lookout alert test</code>; no check changed state.</p>\n",
        );
    }
    if let Some(url) = event.url.as_deref().filter(|u| is_web_url(u)) {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:#0969da\">View {} on the status page</a></p>",
            escape_html(url),
            escape_html(&event.check)
        );
    }
    if let Some(shot) = event.screenshot.as_deref().filter(|u| is_web_url(u)) {
        let _ = writeln!(
            out,
            "<p style=\"margin:0 0 16px\"><a href=\"{}\" style=\"color:#0969da\">Screenshot of the failing page</a></p>",
            escape_html(shot)
        );
    }
    out.push_str(
        "<p style=\"margin:0;color:#57606a;font-size:12px\">Sent by Lookout.</p>\n</body>\n</html>\n",
    );
    out
}

// ---------------------------------------------------------------- groups

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
        WebhookFormat::Json => json!({
            "version": "1",
            "event": "group",
            "summary": group_subject(events),
            "count": events.len(),
            "alerts": events.iter().map(json_body).collect::<Vec<_>>(),
        }),
        WebhookFormat::Slack => {
            // Slack takes 50 blocks a message: a header, then each alert's first two.
            let mut blocks = vec![
                json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&group_subject(events), 150), "emoji": true}}),
            ];
            for event in events.iter().take(24) {
                let body = slack_body(event);
                if let Some(items) = body["blocks"].as_array() {
                    blocks.extend(items.iter().skip(1).take(1).cloned());
                    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": slack_text(&headline(event), 300)}]}));
                }
            }
            json!({"text": group_subject(events), "blocks": blocks})
        }
        WebhookFormat::Discord => {
            // Discord takes 10 embeds a message.
            let embeds: Vec<Value> = events
                .iter()
                .take(10)
                .filter_map(|event| discord_body(event)["embeds"].get(0).cloned())
                .collect();
            json!({"content": truncate(&group_subject(events), 2000), "embeds": embeds, "allowed_mentions": {"parse": []}})
        }
        WebhookFormat::Teams => {
            let mut body = vec![
                json!({"type": "TextBlock", "text": group_subject(events), "size": "Large", "weight": "Bolder", "wrap": true}),
            ];
            for event in events {
                let card = teams_body(event);
                if let Some(items) = card["attachments"][0]["content"]["body"].as_array() {
                    body.push(json!({"type": "Container", "separator": true, "items": items}));
                }
            }
            json!({
                "type": "message",
                "attachments": [{
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": null,
                    "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard", "version": "1.4", "body": body},
                }],
            })
        }
        WebhookFormat::Alertmanager => {
            let bodies: Vec<Value> = events.iter().map(alertmanager_body).collect();
            let alerts: Vec<Value> = bodies
                .iter()
                .flat_map(|b| b["alerts"].as_array().cloned().unwrap_or_default())
                .collect();
            let firing = alerts.iter().any(|a| a["status"] == "firing");
            let common = |key: &str| {
                let mut common = alerts
                    .first()
                    .and_then(|a| a[key].as_object().cloned())
                    .unwrap_or_default();
                common.retain(|k, v| alerts.iter().all(|a| &a[key][k] == v));
                common
            };
            json!({
                "version": "4",
                "groupKey": format!("{{}}:{{alertname=\"{ALERTNAME}\"}}"),
                "truncatedAlerts": 0,
                "status": if firing { "firing" } else { "resolved" },
                "receiver": "lookout",
                "groupLabels": {"alertname": ALERTNAME},
                "commonLabels": common("labels"),
                "commonAnnotations": common("annotations"),
                "externalURL": bodies.first().map(|b| b["externalURL"].clone()).unwrap_or(Value::Null),
                "alerts": alerts,
            })
        }
        WebhookFormat::PagerDuty => events
            .first()
            .map(|e| webhook_body(format, e, channel))
            .unwrap_or(Value::Null),
    }
}

/// `[3 alerts] 2 DOWN, 1 UP — api, db, web`.
pub fn group_subject(events: &[AlertEvent]) -> String {
    if let [single] = events {
        return email_subject(single);
    }
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for event in events {
        *counts.entry(kind_word(event)).or_default() += 1;
    }
    let counts: Vec<String> = counts
        .iter()
        .map(|(word, n)| format!("{n} {word}"))
        .collect();
    let mut checks: Vec<&str> = Vec::new();
    for event in events {
        if !checks.contains(&event.check.as_str()) {
            checks.push(&event.check);
        }
    }
    let subject = format!(
        "[{} alerts] {} — {}",
        events.len(),
        counts.join(", "),
        checks.join(", ")
    );
    truncate(&one_line(&subject), SUBJECT_CHARS_MAX)
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
    }
}

/// Several alerts as one plain-text email.
pub fn group_email_text(events: &[AlertEvent]) -> String {
    events
        .iter()
        .map(email_text)
        .collect::<Vec<_>>()
        .join("\n----------------------------------------\n\n")
}

/// Several alerts as one HTML email: each alert's body, one after another.
pub fn group_email_html(events: &[AlertEvent]) -> String {
    if let [single] = events {
        return email_html(single);
    }
    let mut out = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n</head>\n<body style=\"margin:0;padding:16px\">\n",
        escape_html(&group_subject(events))
    );
    for event in events {
        let html = email_html(event);
        let inner = html
            .split_once("<body")
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(_, rest)| rest.rsplit_once("</body>").map_or(rest, |(inner, _)| inner))
            .unwrap_or(&html);
        out.push_str("<div style=\"border-bottom:1px solid #d0d7de;margin-bottom:16px\">\n");
        out.push_str(inner);
        out.push_str("</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

// ---------------------------------------------------------------- formats

fn json_body(event: &AlertEvent) -> Value {
    // Cannot fail: every map in an event has string keys.
    serde_json::to_value(event).expect("an AlertEvent serializes to JSON")
}

/// Block Kit limits: header text 150, section text 3000, field text 2000,
/// 50 blocks per message.
fn slack_body(event: &AlertEvent) -> Value {
    const REGION_BLOCKS_MAX: usize = 44;
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&headline(event), 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": slack_text(&event.summary, 3000)}}),
    ];
    for (name, r) in event.regions.iter().take(REGION_BLOCKS_MAX) {
        let field = |title: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{title}*\n{}", slack_text(value, 1900))});
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("*{}*", slack_text(name, 2900))},
            "fields": [
                field("Outcome", r.outcome.as_str()),
                field("Status", &r.status.map_or_else(|| "—".to_string(), |s| s.to_string())),
                field("Time", &format_ms(r.duration_ms)),
                field("Error", r.error.as_deref().unwrap_or("—")),
            ],
        }));
    }
    if event.regions.len() > REGION_BLOCKS_MAX {
        let more = event.regions.len() - REGION_BLOCKS_MAX;
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("…and {more} more regions")}]}));
    }
    let mut context = format!("{} since {}", state_change(event), slack_date(event.since));
    if let Some(incident) = event.incident {
        let _ = write!(context, " · Incident `{incident}`");
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    if let Some(url) = &event.url {
        // A mrkdwn link rather than a button: a button sends an interaction
        // payload that an incoming-webhook app cannot acknowledge.
        let link = format!(
            "<{}|View {} on the status page>",
            slack_escape(url).replace('|', "%7C"),
            slack_text(&event.check, 200)
        );
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": link}}));
    }
    json!({"text": email_subject(event), "blocks": blocks})
}

/// Discord's embed limits: title 256, description 4096, 25 fields, field
/// name 256 and value 1024, footer 2048, and 6000 characters in all.
fn discord_body(event: &AlertEvent) -> Value {
    const FIELDS_MAX: usize = 25;
    const EMBED_TOTAL_MAX: usize = 6000;
    let title = truncate(&headline(event), 256);
    let mut description = truncate(&event.summary, 4096);
    let footer = match event.incident {
        Some(incident) => format!("Lookout · incident {incident}"),
        None => "Lookout".to_string(),
    };
    let mut fields: Vec<(String, String)> = Vec::new();
    let shown = if event.regions.len() > FIELDS_MAX {
        FIELDS_MAX - 1
    } else {
        FIELDS_MAX
    };
    for (name, r) in event.regions.iter().take(shown) {
        let mut value = region_line(r);
        if let Some(error) = &r.error {
            value.push('\n');
            value.push_str(&one_line(error));
        }
        fields.push((truncate(name, 256), truncate(&value, 1024)));
    }
    if event.regions.len() > shown {
        let more = event.regions.len() - shown;
        fields.push(("…".to_string(), format!("and {more} more regions")));
    }
    // The 6000-character total: shorten the description, then drop fields.
    let len = |s: &str| s.chars().count();
    let total = |description: &str, fields: &[(String, String)]| {
        len(&title)
            + len(description)
            + len(&footer)
            + fields.iter().map(|(n, v)| len(n) + len(v)).sum::<usize>()
    };
    let excess = total(&description, &fields).saturating_sub(EMBED_TOTAL_MAX);
    if excess > 0 {
        let keep = len(&description).saturating_sub(excess).max(200);
        description = truncate(&description, keep);
    }
    while total(&description, &fields) > EMBED_TOTAL_MAX && fields.pop().is_some() {}

    let mut embed = Map::new();
    embed.insert("title".into(), json!(title));
    embed.insert("description".into(), json!(description));
    embed.insert("color".into(), json!(status_color(event)));
    embed.insert(
        "fields".into(),
        Value::Array(
            fields
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value, "inline": true}))
                .collect(),
        ),
    );
    embed.insert("timestamp".into(), json!(rfc3339(event.since)));
    embed.insert("footer".into(), json!({"text": footer}));
    if let Some(url) = &event.url {
        embed.insert("url".into(), json!(url));
    }
    json!({
        "content": truncate(&email_subject(event), 2000),
        "embeds": [Value::Object(embed)],
        "allowed_mentions": {"parse": []},
    })
}

fn teams_body(event: &AlertEvent) -> Value {
    let color = match (event.event, event.status) {
        (AlertKind::Test, _) => "Accent",
        (_, Status::Down) => "Attention",
        (_, Status::Degraded) => "Warning",
        (_, Status::Up) => "Good",
        (_, Status::Unknown) => "Default",
    };
    let mut body = vec![
        json!({"type": "TextBlock", "text": headline(event), "size": "Large", "weight": "Bolder", "color": color, "wrap": true}),
        json!({"type": "TextBlock", "text": truncate(&event.summary, 2000), "wrap": true}),
    ];
    if !event.regions.is_empty() {
        let facts: Vec<Value> = event
            .regions
            .iter()
            .map(|(name, r)| {
                let mut value = region_line(r);
                if let Some(error) = &r.error {
                    let _ = write!(value, " · {}", truncate(&one_line(error), 500));
                }
                json!({"title": name, "value": value})
            })
            .collect();
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut context = format!("{} since {}", state_change(event), human_time(event.since));
    if let Some(incident) = event.incident {
        let _ = write!(context, " · Incident {incident}");
    }
    body.push(
        json!({"type": "TextBlock", "text": context, "isSubtle": true, "size": "Small", "wrap": true}),
    );
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(url) = &event.url {
        card["actions"] =
            json!([{"type": "Action.OpenUrl", "title": "Open in Lookout", "url": url}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// PagerDuty Events API v2. A recovery is a minimal `resolve`; everything
/// else is a `trigger` deduplicated on the incident, so reminders add to the
/// open alert and the recovery resolves it.
fn pagerduty_body(event: &AlertEvent, channel: &WebhookChannel) -> Value {
    let routing_key = channel.routing_key.clone().unwrap_or_default();
    let dedup_key = match (event.event, event.incident) {
        (AlertKind::Test, _) => format!("lookout-test-{}", event.check),
        (_, Some(incident)) => incident.to_string(),
        // Not expected (incidents carry an id); still pair trigger and resolve.
        (_, None) => format!("lookout-{}", event.check),
    };
    if event.event.is_recovery() {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        });
    }
    let mut payload = Map::new();
    payload.insert("summary".into(), json!(truncate(&event.summary, 1024)));
    let source = if event.target.is_empty() {
        &event.check
    } else {
        &event.target
    };
    payload.insert("source".into(), json!(truncate(source, 1024)));
    payload.insert("severity".into(), json!(severity(event)));
    payload.insert("timestamp".into(), json!(rfc3339(event.since)));
    payload.insert("component".into(), json!(event.check));
    if let Some(team) = event.labels.get("team") {
        payload.insert("group".into(), json!(team));
    }
    payload.insert("class".into(), json!(event.event.as_str()));
    let mut details = Map::new();
    details.insert("regions".into(), json!(event.regions));
    details.insert("incident".into(), json!(event.incident));
    details.insert("url".into(), json!(event.url));
    if !event.labels.is_empty() {
        details.insert("labels".into(), json!(event.labels));
    }
    payload.insert("custom_details".into(), Value::Object(details));

    let mut body = Map::new();
    body.insert("routing_key".into(), json!(routing_key));
    body.insert("event_action".into(), json!("trigger"));
    body.insert("dedup_key".into(), json!(dedup_key));
    body.insert("client".into(), json!("Lookout"));
    if let Some(url) = &event.url {
        body.insert("client_url".into(), json!(url));
        body.insert(
            "links".into(),
            json!([{"href": url, "text": "Status page"}]),
        );
    }
    body.insert("payload".into(), Value::Object(payload));
    Value::Object(body)
}

/// Alertmanager's webhook payload, version 4. One alert per check and
/// severity, so its labels (and fingerprint) are the same when it fires and
/// when it resolves. A change between degraded and down resolves the alert
/// of the previous severity in the same message, as Alertmanager would.
fn alertmanager_body(event: &AlertEvent) -> Value {
    const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
    let url = event.url.clone().unwrap_or_default();
    let description = region_description(event);
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), one_line(&event.summary));
    annotations.insert("description".to_string(), description);
    if let Some(incident) = event.incident {
        annotations.insert("incident".to_string(), incident.to_string());
    }
    let alert =
        |status: &str, severity: &str, starts: DateTime<Utc>, ends: Option<DateTime<Utc>>| {
            let labels = alert_labels(event, severity);
            json!({
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(starts),
                "endsAt": ends.map_or_else(|| ZERO_TIME.to_string(), rfc3339),
                "generatorURL": url,
                "fingerprint": fingerprint(&labels),
            })
        };
    let mut alerts = Vec::new();
    if event.event.is_recovery() {
        // `since` is the recovery; the outage began `duration_s` earlier.
        let started = event
            .duration_s
            .and_then(|s| i64::try_from(s).ok())
            .and_then(chrono::TimeDelta::try_seconds)
            .and_then(|d| event.since.checked_sub_signed(d))
            .unwrap_or(event.since);
        alerts.push(alert(
            "resolved",
            status_severity(event.previous_status),
            started,
            Some(event.since),
        ));
    } else {
        let current = severity(event);
        alerts.push(alert("firing", current, event.since, None));
        if matches!(event.event, AlertKind::Down | AlertKind::Degraded)
            && event.previous_status.is_incident()
            && status_severity(event.previous_status) != current
        {
            // When the previous state began is not in the event.
            alerts.push(alert(
                "resolved",
                status_severity(event.previous_status),
                event.since,
                Some(event.since),
            ));
        }
    }
    let status = if alerts.iter().any(|a| a["status"] == "firing") {
        "firing"
    } else {
        "resolved"
    };
    let common = |key: &str| -> Map<String, Value> {
        let mut common = alerts[0][key].as_object().cloned().unwrap_or_default();
        common.retain(|k, v| alerts.iter().all(|a| &a[key][k] == v));
        common
    };
    let group_labels = json!({"alertname": ALERTNAME, "check": event.check});
    json!({
        "version": "4",
        "groupKey": format!(
            "{{}}:{{alertname=\"{ALERTNAME}\", check=\"{}\"}}",
            go_quote_inner(&event.check)
        ),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "lookout",
        "groupLabels": group_labels,
        "commonLabels": common("labels"),
        "commonAnnotations": common("annotations"),
        "externalURL": url,
        "alerts": alerts,
    })
}

/// The check's labels (names made valid Prometheus label names), then ours,
/// which win: `alertname`, `check`, `severity`.
fn alert_labels(event: &AlertEvent, severity: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = event
        .labels
        .iter()
        .map(|(k, v)| (prometheus_label_name(k), v.clone()))
        .collect();
    labels.insert("alertname".into(), ALERTNAME.into());
    labels.insert("check".into(), event.check.clone());
    labels.insert("severity".into(), severity.into());
    labels
}

/// Prometheus's label-set fingerprint, as Alertmanager computes it: FNV-1a
/// 64 over the sorted names and values, each followed by byte 255, printed
/// as 16 hex digits.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    const SEPARATOR: u8 = 0xff;
    let mut hasher = fnv::FnvHasher::default();
    for (name, value) in labels {
        hasher.write(name.as_bytes());
        hasher.write_u8(SEPARATOR);
        hasher.write(value.as_bytes());
        hasher.write_u8(SEPARATOR);
    }
    format!("{:016x}", hasher.finish())
}

fn prometheus_label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A string as inside Go's `%q`, enough for label values in a group key.
fn go_quote_inner(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

// ---------------------------------------------------------------- shared

/// `critical` while down, `warning` while degraded, `info` for a test.
fn severity(event: &AlertEvent) -> &'static str {
    match event.event {
        AlertKind::Test => "info",
        AlertKind::Down => "critical",
        AlertKind::Degraded | AlertKind::Flapping | AlertKind::ProbeStale => "warning",
        AlertKind::ProbeBack => "info",
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
        AlertKind::Down => 0xE0_1E_3C,
        AlertKind::Degraded => 0xF5_8B_00,
        AlertKind::Up | AlertKind::ProbeBack => 0x2E_A0_43,
        AlertKind::Flapping => 0x8E_44_AD,
        AlertKind::ProbeStale => 0xF5_8B_00,
        AlertKind::Test | AlertKind::Reminder => 0x1F_6F_EB,
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
    }
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
    // Degraded regions are ok results, so the reason is the summary's
    // (`api-health is DEGRADED in 1 of 1 regions: slower than 800ms (912ms)`).
    let summary = one_line(&event.summary);
    let reason = summary
        .split_once(": ")
        .map_or(summary.as_str(), |(_, r)| r)
        .to_string();
    let counts = summary_counts(&summary)
        .map(|(n, m)| format!(" in {n}/{m} regions"))
        .unwrap_or_default();
    (reason, counts)
}

/// `N of M regions` in a rules summary.
fn summary_counts(summary: &str) -> Option<(u32, u32)> {
    let words: Vec<&str> = summary.split_whitespace().collect();
    words.windows(4).find_map(|w| match w {
        [n, "of", m, regions] if regions.starts_with("region") => {
            Some((n.parse().ok()?, m.parse().ok()?))
        }
        _ => None,
    })
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

/// A Slack date token: shown in the reader's time zone, with a UTC fallback.
fn slack_date(at: DateTime<Utc>) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        at.timestamp(),
        human_time(at)
    )
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

/// Slack's three control characters as entities.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// User text for a mrkdwn field: escaped, then cut to `max` characters
/// without splitting an entity.
fn slack_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    let total: usize = text.chars().map(slack_escape_len).sum();
    let budget = if total <= max {
        max
    } else {
        max.saturating_sub(1)
    };
    for c in text.chars() {
        let n = slack_escape_len(c);
        if used + n > budget {
            out.push('…');
            return out;
        }
        used += n;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn slack_escape_len(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        _ => 1,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::Verdict;
    use chrono::TimeZone;
    use uuid::Uuid;

    const INCIDENT: &str = "0196f1c2-7a00-7000-8000-00000000abcd";

    fn region(outcome: Outcome, status: Option<u16>, ms: f64, error: Option<&str>) -> RegionDetail {
        let verdict = if outcome == Outcome::Ok {
            Verdict::Passing
        } else {
            Verdict::Failing
        };
        RegionDetail {
            verdict,
            stale: false,
            outcome,
            status,
            duration_ms: ms,
            error: error.map(String::from),
        }
    }

    fn down() -> AlertEvent {
        let mut regions = BTreeMap::new();
        regions.insert(
            "ap-south".to_string(),
            region(Outcome::Ok, Some(200), 41.2, None),
        );
        regions.insert(
            "eu-west".to_string(),
            region(
                Outcome::Fail,
                Some(500),
                31.0,
                Some("status 500 not in [200]"),
            ),
        );
        regions.insert(
            "us-east".to_string(),
            region(
                Outcome::Timeout,
                None,
                5000.0,
                Some("timed out after 5s waiting for the response"),
            ),
        );
        AlertEvent {
            version: "1".to_string(),
            event: AlertKind::Down,
            check: "api-health".to_string(),
            status: Status::Down,
            previous_status: Status::Up,
            since: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
            incident: Some(Uuid::parse_str(INCIDENT).unwrap()),
            summary:
                "api-health is DOWN in 2 of 3 regions (eu-west, us-east): status 500 not in [200]"
                    .to_string(),
            regions,
            url: Some("http://status.example.com/checks/api-health".to_string()),
            duration_s: None,
            target: "https://api.example.com/health".to_string(),
            labels: BTreeMap::from([("team".to_string(), "payments".to_string())]),
            region: None,
            screenshot: None,
            screenshot_result: None,
        }
    }

    fn up() -> AlertEvent {
        let mut event = down();
        event.event = AlertKind::Up;
        event.status = Status::Up;
        event.previous_status = Status::Down;
        event.since = Utc.with_ymd_and_hms(2026, 11, 24, 12, 12, 0).unwrap();
        event.summary = "api-health is UP again after 12m down".to_string();
        event.duration_s = Some(720);
        for (i, r) in event.regions.values_mut().enumerate() {
            *r = region(Outcome::Ok, Some(200), 40.0 + i as f64, None);
        }
        event
    }

    fn test_event() -> AlertEvent {
        AlertEvent {
            version: "1".to_string(),
            event: AlertKind::Test,
            check: "ops-email".to_string(),
            status: Status::Up,
            previous_status: Status::Up,
            since: Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap(),
            incident: None,
            summary: "Lookout test notification for channel ops-email".to_string(),
            regions: BTreeMap::new(),
            url: None,
            duration_s: None,
            target: String::new(),
            labels: BTreeMap::new(),
            region: None,
            screenshot: None,
            screenshot_result: None,
        }
    }

    fn channel(format: WebhookFormat) -> WebhookChannel {
        WebhookChannel {
            url: "https://hooks.example.com/lookout".parse().unwrap(),
            format,
            secret: None,
            headers: Vec::new(),
            routing_key: (format == WebhookFormat::PagerDuty)
                .then(|| "R0UT1NGKEY0000000000000000000000".to_string()),
        }
    }

    fn body(format: WebhookFormat, event: &AlertEvent) -> Value {
        webhook_body(format, event, &channel(format))
    }

    #[test]
    fn json_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::Json, &down()));
    }
    #[test]
    fn json_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::Json, &up()));
    }
    #[test]
    fn slack_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::Slack, &down()));
    }
    #[test]
    fn slack_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::Slack, &up()));
    }
    #[test]
    fn discord_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::Discord, &down()));
    }
    #[test]
    fn discord_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::Discord, &up()));
    }
    #[test]
    fn teams_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::Teams, &down()));
    }
    #[test]
    fn teams_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::Teams, &up()));
    }
    #[test]
    fn pagerduty_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::PagerDuty, &down()));
    }
    #[test]
    fn pagerduty_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::PagerDuty, &up()));
    }
    #[test]
    fn alertmanager_down() {
        insta::assert_json_snapshot!(body(WebhookFormat::Alertmanager, &down()));
    }
    #[test]
    fn alertmanager_up() {
        insta::assert_json_snapshot!(body(WebhookFormat::Alertmanager, &up()));
    }

    #[test]
    fn email_subject_down() {
        insta::assert_snapshot!(email_subject(&down()));
    }
    #[test]
    fn email_text_down() {
        insta::assert_snapshot!(email_text(&down()));
    }
    #[test]
    fn email_html_down() {
        insta::assert_snapshot!(email_html(&down()));
    }

    #[test]
    fn json_is_the_event_itself() {
        let event = down();
        let value = body(WebhookFormat::Json, &event);
        for key in [
            "version",
            "event",
            "check",
            "status",
            "previous_status",
            "since",
            "incident",
            "summary",
            "regions",
            "url",
        ] {
            assert!(value.get(key).is_some(), "missing {key}");
        }
        assert_eq!(value["since"], "2026-11-24T12:00:00Z");
        let back: AlertEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn subjects_of_each_kind() {
        assert_eq!(
            email_subject(&down()),
            "[DOWN] api-health — HTTP 500 in 2/3 regions"
        );
        assert_eq!(
            email_subject(&up()),
            "[UP] api-health — recovered after 12m"
        );
        let mut reminder = down();
        reminder.event = AlertKind::Reminder;
        reminder.previous_status = Status::Down;
        assert_eq!(
            email_subject(&reminder),
            "[REMINDER] api-health still down — HTTP 500 in 2/3 regions"
        );
        assert_eq!(
            email_subject(&test_event()),
            "[TEST] ops-email — Lookout test notification"
        );

        let mut degraded = down();
        degraded.event = AlertKind::Degraded;
        degraded.status = Status::Degraded;
        degraded.summary = "api-health is DEGRADED in 1 of 1 regions: slower than 800ms".into();
        degraded.regions = BTreeMap::from([(
            "eu-west".to_string(),
            region(Outcome::Ok, Some(200), 912.0, None),
        )]);
        assert_eq!(
            email_subject(&degraded),
            "[DEGRADED] api-health — slower than 800ms in 1/1 regions"
        );

        // Without an HTTP status, the error is the reason.
        let mut refused = down();
        for r in refused.regions.values_mut() {
            *r = region(Outcome::Error, None, 2.0, Some("connection refused"));
        }
        assert_eq!(
            email_subject(&refused),
            "[DOWN] api-health — connection refused in 3/3 regions"
        );
    }

    #[test]
    fn long_reasons_keep_the_subject_short() {
        let mut event = down();
        for r in event.regions.values_mut() {
            *r = region(Outcome::Error, None, 2.0, Some(&"x\ny".repeat(200)));
        }
        let subject = email_subject(&event);
        assert!(subject.chars().count() <= SUBJECT_CHARS_MAX, "{subject}");
        assert!(subject.ends_with("… in 3/3 regions"), "{subject}");
        assert!(!subject.contains('\n'));
    }

    #[test]
    fn up_durations_read_well() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(720), "12m");
        assert_eq!(human_duration(3_725), "1h 2m");
        assert_eq!(human_duration(90_061), "1d 1h");
        assert_eq!(human_duration(86_400 + 5), "1d");
    }

    #[test]
    fn html_escapes_user_text() {
        let mut event = down();
        event.regions.get_mut("eu-west").unwrap().error =
            Some("<script>alert('x')</script> & \"more\"".to_string());
        event.check = "a<b".to_string();
        let html = email_html(&event);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;more&quot;")
        );
        assert!(!html.contains("a<b"));
        assert!(html.contains("a&lt;b"));
    }

    #[test]
    fn html_links_only_web_urls() {
        let mut event = down();
        event.url = Some("javascript:alert(1)".to_string());
        assert!(!email_html(&event).contains("javascript:"));
        assert!(
            email_html(&down()).contains("href=\"http://status.example.com/checks/api-health\"")
        );
    }

    #[test]
    fn text_has_the_table_and_link() {
        let text = email_text(&down());
        assert!(text.contains("eu-west   fail     500     31 ms    status 500 not in [200]"));
        assert!(text.contains("http://status.example.com/checks/api-health"));
        assert!(text.contains(INCIDENT));
    }

    #[test]
    fn slack_escapes_control_characters() {
        let mut event = down();
        event.summary = "<!channel> a & b > c".to_string();
        let value = body(WebhookFormat::Slack, &event);
        let text = value["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(text, "&lt;!channel&gt; a &amp; b &gt; c");
        assert_eq!(slack_text("a&b", 4), "a…");
        assert_eq!(slack_text("a&b", 7), "a&amp;b");
    }

    #[test]
    fn discord_truncates_to_its_limits() {
        let mut event = down();
        event.summary = "x".repeat(10_000);
        event.check = "c".repeat(300);
        for i in 0..30 {
            event.regions.insert(
                format!("region-{i:02}"),
                region(Outcome::Error, None, 1.0, Some(&"e".repeat(2000))),
            );
        }
        let value = body(WebhookFormat::Discord, &event);
        let embed = &value["embeds"][0];
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(chars(&embed["title"]) <= 256);
        let description = embed["description"].as_str().unwrap();
        assert!(description.chars().count() <= 4096);
        assert!(description.ends_with('…'));
        let fields = embed["fields"].as_array().unwrap();
        assert!(fields.len() <= 25);
        let mut total = chars(&embed["title"]) + chars(&embed["description"]);
        total += chars(&embed["footer"]["text"]);
        for field in fields {
            assert!(chars(&field["name"]) <= 256);
            assert!(chars(&field["value"]) <= 1024);
            total += chars(&field["name"]) + chars(&field["value"]);
        }
        assert!(total <= 6000, "{total}");
        assert!(chars(&value["content"]) <= 2000);
    }

    #[test]
    fn discord_only_long_summary_is_cut_to_4096() {
        let mut event = down();
        event.summary = "y".repeat(5000);
        let value = body(WebhookFormat::Discord, &event);
        let description = value["embeds"][0]["description"].as_str().unwrap();
        assert_eq!(description.chars().count(), 4096);
        assert!(description.ends_with("y…"));
        assert_eq!(value["embeds"][0]["color"], 0xE0_1E_3C);
        assert_eq!(value["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn pagerduty_resolves_the_incident_it_triggered() {
        let trigger = body(WebhookFormat::PagerDuty, &down());
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], INCIDENT);
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["group"], "payments");
        assert_eq!(
            trigger["payload"]["source"],
            "https://api.example.com/health"
        );

        let resolve = body(WebhookFormat::PagerDuty, &up());
        assert_eq!(
            resolve,
            json!({
                "routing_key": "R0UT1NGKEY0000000000000000000000",
                "event_action": "resolve",
                "dedup_key": INCIDENT,
            })
        );

        let test = body(WebhookFormat::PagerDuty, &test_event());
        assert_eq!(test["event_action"], "trigger");
        assert_eq!(test["dedup_key"], "lookout-test-ops-email");
        assert_eq!(test["payload"]["severity"], "info");
        assert_eq!(test["payload"]["source"], "ops-email");
        assert!(test.get("links").is_none());
    }

    #[test]
    fn pagerduty_summary_is_capped() {
        let mut event = down();
        event.summary = "s".repeat(3000);
        let value = body(WebhookFormat::PagerDuty, &event);
        assert_eq!(
            value["payload"]["summary"]
                .as_str()
                .unwrap()
                .chars()
                .count(),
            1024
        );
    }

    #[test]
    fn alertmanager_fires_and_resolves_the_same_alert() {
        let firing = body(WebhookFormat::Alertmanager, &down());
        let resolved = body(WebhookFormat::Alertmanager, &up());
        assert_eq!(firing["version"], "4");
        assert_eq!(firing["status"], "firing");
        assert_eq!(firing["alerts"][0]["status"], "firing");
        assert_eq!(firing["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(resolved["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["status"], "resolved");
        assert_eq!(resolved["alerts"][0]["startsAt"], "2026-11-24T12:00:00Z");
        assert_eq!(resolved["alerts"][0]["endsAt"], "2026-11-24T12:12:00Z");
        assert_eq!(
            firing["groupKey"],
            "{}:{alertname=\"LookoutCheck\", check=\"api-health\"}"
        );
        assert_eq!(firing["commonLabels"]["team"], "payments");
        assert_eq!(firing["commonLabels"]["severity"], "critical");

        let print = firing["alerts"][0]["fingerprint"].as_str().unwrap();
        assert_eq!(print.len(), 16);
        assert!(print.chars().all(|c| c.is_ascii_hexdigit()));
        // Stable across calls, and the same alert when it resolves.
        assert_eq!(
            body(WebhookFormat::Alertmanager, &down())["alerts"][0]["fingerprint"],
            print
        );
        assert_eq!(resolved["alerts"][0]["fingerprint"], print);
    }

    #[test]
    fn alertmanager_fingerprint_is_prometheus_s() {
        // Prometheus: FNV-1a 64 over name, 0xff, value, 0xff; an empty set
        // hashes to the offset basis.
        assert_eq!(fingerprint(&BTreeMap::new()), "cbf29ce484222325");
        let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
        let mut expected: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in [b'a', 0xff, b'b', 0xff] {
            expected ^= u64::from(byte);
            expected = expected.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(fingerprint(&labels), format!("{expected:016x}"));
    }

    #[test]
    fn alertmanager_escalation_resolves_the_warning() {
        let mut event = down();
        event.previous_status = Status::Degraded;
        let value = body(WebhookFormat::Alertmanager, &event);
        let alerts = value["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["labels"]["severity"], "critical");
        assert_eq!(alerts[1]["labels"]["severity"], "warning");
        assert_eq!(alerts[1]["status"], "resolved");
        assert_eq!(value["status"], "firing");
        assert!(value["commonLabels"].get("severity").is_none());
        assert_eq!(value["commonLabels"]["check"], "api-health");
    }

    #[test]
    fn teams_card_shape() {
        let value = body(WebhookFormat::Teams, &down());
        let attachment = &value["attachments"][0];
        assert_eq!(value["type"], "message");
        assert_eq!(
            attachment["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(attachment["content"]["type"], "AdaptiveCard");
        assert_eq!(
            attachment["content"]["actions"][0]["type"],
            "Action.OpenUrl"
        );
        let test = body(WebhookFormat::Teams, &test_event());
        assert!(test["attachments"][0]["content"].get("actions").is_none());
    }

    fn group(format: WebhookFormat) -> Value {
        let mut other = down();
        other.check = "web".to_string();
        webhook_group_body(format, &[down(), other, up()], &channel(format))
    }

    #[test]
    fn group_json() {
        insta::assert_json_snapshot!(group(WebhookFormat::Json));
    }

    #[test]
    fn group_slack() {
        insta::assert_json_snapshot!(group(WebhookFormat::Slack));
    }

    #[test]
    fn group_discord() {
        insta::assert_json_snapshot!(group(WebhookFormat::Discord));
    }

    #[test]
    fn group_teams() {
        insta::assert_json_snapshot!(group(WebhookFormat::Teams));
    }

    #[test]
    fn group_alertmanager() {
        insta::assert_json_snapshot!(group(WebhookFormat::Alertmanager));
    }

    #[test]
    fn group_email() {
        let mut other = down();
        other.check = "web".to_string();
        let events = [down(), other, up()];
        assert_eq!(
            group_subject(&events),
            "[3 alerts] 2 DOWN, 1 UP — api-health, web"
        );
        let text = group_email_text(&events);
        assert_eq!(
            text.matches("----------------------------------------")
                .count(),
            2
        );
        let html = group_email_html(&events);
        assert_eq!(
            html.matches("<body").count(),
            1,
            "one document, three sections"
        );
        assert_eq!(html.matches("<div style=\"border-bottom").count(), 3);
        assert_eq!(
            group_subject(&events[..1]),
            email_subject(&events[0]),
            "one alert is not a group"
        );
    }
}

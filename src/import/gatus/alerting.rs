//! Gatus's `alerting:` providers as Lookout channels, and its top-level
//! `maintenance:` as a recurring maintenance window.

use std::path::Path;

use super::{Ctx, s};
use crate::config::yaml::Node;
use crate::import::{Note, Y, entries, get, items, text};

pub(super) fn provider_channel(ctx: &mut Ctx, provider: &str, spec: &Node) -> Option<Y> {
    let mut webhook = Y::Map(Vec::new());
    let mut used = vec![];
    match provider {
        "slack" | "discord" | "teams" | "mattermost" => {
            let url = get(spec, "webhook-url").and_then(s);
            let Some(url) = url else {
                ctx.note(
                    spec,
                    format!("alerting provider `{provider}` has no `webhook-url` (not converted)"),
                );
                return None;
            };
            webhook.put("url", Y::s(url));
            let format = if provider == "mattermost" {
                "slack"
            } else {
                provider
            };
            webhook.put("format", Y::s(format));
            used.push("webhook-url");
        }
        "pagerduty" => {
            let Some(key) = get(spec, "integration-key").and_then(s) else {
                ctx.note(
                    spec,
                    "alerting provider `pagerduty` has no `integration-key` (not converted)",
                );
                return None;
            };
            webhook.put("url", Y::s("https://events.pagerduty.com/v2/enqueue"));
            webhook.put("format", Y::s("pagerduty"));
            webhook.put("routing_key", Y::s(key));
            used.push("integration-key");
        }
        "custom" => {
            let Some(url) = get(spec, "url").and_then(s) else {
                ctx.note(
                    spec,
                    "alerting provider `custom` has no `url` (not converted)",
                );
                return None;
            };
            webhook.put("url", Y::s(url));
            webhook.put("format", Y::s("json"));
            if let Some(h) = get(spec, "headers") {
                let map: Vec<(String, Y)> = entries(h)
                    .into_iter()
                    .filter_map(|(k, v)| s(v).map(|v| (k.to_string(), Y::s(v))))
                    .collect();
                webhook.put("headers", Y::Map(map));
            }
            used.extend(["url", "headers"]);
        }
        "email" => {
            let host = get(spec, "host").and_then(s);
            let from = get(spec, "from").and_then(s);
            let to = get(spec, "to").and_then(s);
            let (Some(host), Some(from), Some(to)) = (host, from, to) else {
                ctx.note(
                    spec,
                    "alerting provider `email` needs `host`, `from` and `to` (not converted)",
                );
                return None;
            };
            let port = get(spec, "port")
                .and_then(s)
                .unwrap_or_else(|| "587".into());
            let scheme = if port == "465" { "smtps" } else { "smtp" };
            let mut email = Y::Map(Vec::new());
            email.put("smtp", Y::s(format!("{scheme}://{host}:{port}")));
            for key in ["username", "password"] {
                if let Some(v) = get(spec, key).and_then(s) {
                    email.put(key, Y::s(v));
                }
            }
            email.put("from", Y::s(from));
            email.put(
                "to",
                Y::List(to.split(',').map(|t| Y::s(t.trim())).collect()),
            );
            used.extend(["host", "port", "from", "to", "username", "password"]);
            for (key, value) in entries(spec) {
                if !used.contains(&key) {
                    ctx.note(
                        value,
                        format!("`alerting.email.{key}` has no Lookout equivalent"),
                    );
                }
            }
            let mut channel = Y::Map(Vec::new());
            channel.put("email", email);
            return Some(channel);
        }
        other => {
            ctx.note(
                spec,
                format!("alerting provider `{other}` has no Lookout channel (not converted)"),
            );
            return None;
        }
    }
    for (key, value) in entries(spec) {
        if !used.contains(&key) {
            ctx.note(
                value,
                format!("`alerting.{provider}.{key}` has no Lookout equivalent"),
            );
        }
    }
    let mut channel = Y::Map(Vec::new());
    channel.put("webhook", webhook);
    Some(channel)
}

/// `maintenance: {start: "23:00", duration: 1h, timezone, every: [Monday]}`
/// as a window on cron `0 23 * * 1`; `checks` is filled in by the caller.
pub(super) fn maintenance(notes: &mut Vec<Note>, file: &Path, node: &Node) -> Option<Y> {
    let mut note = |n: &Node, message: String| {
        notes.push(Note {
            file: file.to_path_buf(),
            line: n.pos.line,
            message,
        })
    };
    if get(node, "enabled")
        .is_some_and(|e| matches!(e.value, crate::config::yaml::Value::Bool(false)))
    {
        return None;
    }
    let start = get(node, "start").and_then(s).unwrap_or_default();
    let Some((hour, minute)) = start
        .split_once(':')
        .and_then(|(h, m)| Some((h.parse::<u8>().ok()?, m.parse::<u8>().ok()?)))
        .filter(|(h, m)| *h < 24 && *m < 60)
    else {
        note(
            node,
            format!("`maintenance.start` `{start}` is not HH:MM (not converted)"),
        );
        return None;
    };
    let duration = get(node, "duration").and_then(s).unwrap_or_default();
    if crate::schedule::parse_duration(&duration).is_err() {
        note(
            node,
            format!("`maintenance.duration` `{duration}` is not a duration (not converted)"),
        );
        return None;
    }
    const DAYS: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    let mut days = Vec::new();
    for d in get(node, "every").map(items).unwrap_or(&[]) {
        let name = text(d).unwrap_or_default().to_ascii_lowercase();
        match DAYS.iter().position(|x| *x == name) {
            Some(i) => days.push(i.to_string()),
            None => note(
                d,
                format!("`maintenance.every` `{name}` is not a day of the week"),
            ),
        }
    }
    let dow = if days.is_empty() {
        "*".to_string()
    } else {
        days.join(",")
    };
    let mut window = Y::Map(vec![("name".into(), Y::s("gatus-maintenance"))]);
    window.put("cron", Y::s(format!("{minute} {hour} * * {dow}")));
    window.put("duration", Y::s(duration));
    if let Some(tz) = get(node, "timezone").and_then(s) {
        window.put("tz", Y::s(tz));
    }
    for (k, v) in entries(node) {
        if !matches!(k, "start" | "duration" | "every" | "timezone" | "enabled") {
            note(v, format!("`maintenance.{k}` has no Lookout equivalent"));
        }
    }
    Some(window)
}

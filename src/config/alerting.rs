//! Who hears about what, and when not: label routes and maintenance windows
//! from `alerts/*.yaml`.
//!
//! ```yaml
//! routes:                       # a check without `alert.channels` goes to every
//!   - match: { team: payments } # route whose labels it carries (else `defaults`)
//!     channels: [payments-email]
//! maintenance:                  # alerts held back; results still recorded
//!   - name: db-upgrade
//!     checks: [api-health]      # and/or labels: { team: payments }
//!     from: 2026-11-30T22:00:00Z
//!     until: 2026-11-30T23:00:00Z
//!   - name: nightly-deploys
//!     labels: { team: web }
//!     cron: "0 2 * * *"         # recurring: starts on the schedule...
//!     duration: 30m             # ...and lasts this long
//!     tz: Europe/Paris
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::Check;
use super::decode::{self, Ctx};
use super::yaml::{Node, Pos};
use crate::schedule::CronSchedule;

/// Checks carrying every label of `labels` alert `channels`.
#[derive(Clone, Debug)]
pub struct Route {
    pub labels: BTreeMap<String, String>,
    pub channels: Vec<String>,
}

impl Route {
    pub fn matches(&self, check: &Check) -> bool {
        labels_match(&self.labels, &check.labels)
    }
}

/// A planned window in which alerts for some checks are held back.
#[derive(Clone, Debug)]
pub struct Maintenance {
    pub name: String,
    /// Checks by name; and/or by labels. At least one of the two is set.
    pub checks: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub window: Window,
    /// `announce: true`: the covered checks' channels get one message when
    /// the window starts and one when it ends.
    pub announce: bool,
}

#[derive(Clone, Debug)]
pub enum Window {
    Once {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    Recurring {
        cron: Box<CronSchedule>,
        duration: Duration,
    },
}

impl Maintenance {
    pub fn applies_to(&self, check: &Check) -> bool {
        self.checks.contains(&check.name)
            || (!self.labels.is_empty() && labels_match(&self.labels, &check.labels))
    }

    /// When the occurrence open at `now` started (`None`: not open): what
    /// tells one occurrence of a recurring window from the next.
    pub fn started_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.active_at(now) {
            return None;
        }
        match &self.window {
            Window::Once { from, .. } => Some(*from),
            Window::Recurring { cron, duration } => {
                let span = chrono::Duration::from_std(*duration).ok()?;
                cron.next_after(now.checked_sub_signed(span)?)
            }
        }
    }

    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        match &self.window {
            Window::Once { from, until } => *from <= now && now < *until,
            Window::Recurring { cron, duration } => {
                // Active when a start fell within the last `duration`.
                let Ok(span) = chrono::Duration::from_std(*duration) else {
                    return false;
                };
                let Some(earliest) = now.checked_sub_signed(span) else {
                    return false;
                };
                // A start in (now - duration, now]: the window is open.
                cron.next_after(earliest).is_some_and(|start| start <= now)
            }
        }
    }
}

/// Every `wanted` label is present with the same value in `labels`.
pub fn labels_match(wanted: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Decodes `routes:`; returns them with the channel names to cross-check.
pub(super) fn decode_routes(
    ctx: &mut Ctx,
    node: &Node,
    refs: &mut Vec<(String, Pos)>,
) -> Vec<Route> {
    let Some(items) = ctx.list(node, "`routes`") else {
        return Vec::new();
    };
    let mut routes = Vec::new();
    for item in items {
        let Some(fields) = ctx.fields(item, "a route", &["match", "channels"]) else {
            continue;
        };
        let labels = match fields.get("match") {
            Some(n) => ctx
                .string_map(n, "`match`")
                .map(|l| l.into_iter().collect::<BTreeMap<_, _>>()),
            None => {
                ctx.error(fields.pos, "a route needs `match: { label: value }`");
                None
            }
        };
        let labels = labels.filter(|l| {
            if l.is_empty() {
                ctx.error(
                    fields.pos,
                    "a route's `match` needs at least one label (use `defaults` for everything)",
                );
            }
            !l.is_empty()
        });
        let channels = match fields.get("channels") {
            Some(n) => ctx.string_list(n, "`channels`"),
            None => {
                ctx.error(fields.pos, "a route needs `channels`");
                None
            }
        };
        if let (Some(labels), Some(channels)) = (labels, channels) {
            refs.extend(channels.iter().cloned());
            routes.push(Route {
                labels,
                channels: channels.into_iter().map(|(c, _)| c).collect(),
            });
        }
    }
    routes
}

/// Decodes `maintenance:`; check names are returned for the cross-file pass.
pub(super) fn decode_maintenance(
    ctx: &mut Ctx,
    node: &Node,
    check_refs: &mut Vec<(String, Pos)>,
) -> Vec<Maintenance> {
    let Some(items) = ctx.list(node, "`maintenance`") else {
        return Vec::new();
    };
    let keys = [
        "name", "checks", "labels", "from", "until", "cron", "duration", "tz", "announce",
    ];
    let mut out = Vec::new();
    for item in items {
        let Some(fields) = ctx.fields(item, "a maintenance window", &keys) else {
            continue;
        };
        let name = match fields.get("name") {
            Some(n) => ctx.string(n, "`name`"),
            None => {
                ctx.error(fields.pos, "a maintenance window needs a `name`");
                None
            }
        };
        let checks = match fields.get("checks") {
            Some(n) => ctx.string_list(n, "`checks`").map(|list| {
                check_refs.extend(list.iter().cloned());
                list.into_iter().map(|(c, _)| c).collect::<Vec<_>>()
            }),
            None => Some(Vec::new()),
        };
        let labels = match fields.get("labels") {
            Some(n) => ctx
                .string_map(n, "`labels`")
                .map(|l| l.into_iter().collect::<BTreeMap<_, _>>()),
            None => Some(BTreeMap::new()),
        };
        if checks.as_ref().is_some_and(Vec::is_empty)
            && labels.as_ref().is_some_and(BTreeMap::is_empty)
        {
            ctx.error(
                fields.pos,
                "a maintenance window needs `checks` or `labels` to say what it covers",
            );
        }
        let window = decode_window(ctx, &fields);
        let announce = match fields.get("announce") {
            Some(n) => ctx.bool(n, "`announce`"),
            None => Some(false),
        };
        if let (Some(name), Some(checks), Some(labels), Some(window), Some(announce)) =
            (name, checks, labels, window, announce)
        {
            out.push(Maintenance {
                name,
                checks,
                labels,
                window,
                announce,
            });
        }
    }
    out
}

fn decode_window(ctx: &mut Ctx, fields: &decode::Fields) -> Option<Window> {
    let time = |ctx: &mut Ctx, key: &str| -> Option<DateTime<Utc>> {
        let n = fields.get(key)?;
        let text = ctx.string(n, &format!("`{key}`"))?;
        match DateTime::parse_from_rfc3339(&text) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                ctx.error(
                    n.pos,
                    format!("`{key}` must be an RFC 3339 time such as 2026-11-30T22:00:00Z"),
                );
                None
            }
        }
    };
    match (fields.get("from"), fields.get("cron")) {
        (Some(_), None) => {
            let from = time(ctx, "from");
            let until = match fields.get("until") {
                Some(_) => time(ctx, "until"),
                None => {
                    ctx.error(fields.pos, "a one-off maintenance window needs `until`");
                    None
                }
            };
            let (from, until) = (from?, until?);
            if until <= from {
                ctx.error(fields.pos, "`until` must be after `from`");
                return None;
            }
            Some(Window::Once { from, until })
        }
        (None, Some(cron_node)) => {
            let tz = match fields.get("tz") {
                Some(n) => {
                    let text = ctx.string(n, "`tz`")?;
                    match text.parse::<Tz>() {
                        Ok(tz) => tz,
                        Err(_) => {
                            ctx.error(n.pos, format!("unknown time zone `{text}`"));
                            return None;
                        }
                    }
                }
                None => Tz::UTC,
            };
            let cron = ctx.string(cron_node, "`cron`").and_then(|text| {
                match CronSchedule::parse(&text, tz) {
                    Ok(cron) => Some(cron),
                    Err(message) => {
                        ctx.error(cron_node.pos, message);
                        None
                    }
                }
            });
            let duration = match fields.get("duration") {
                Some(n) => ctx.duration(n, "`duration`"),
                None => {
                    ctx.error(
                        fields.pos,
                        "a recurring maintenance window needs `duration`",
                    );
                    None
                }
            };
            Some(Window::Recurring {
                cron: Box::new(cron?),
                duration: duration?,
            })
        }
        (Some(_), Some(n)) => {
            ctx.error(
                n.pos,
                "a maintenance window is either `from`/`until` or `cron`/`duration`, not both",
            );
            None
        }
        (None, None) => {
            ctx.error(
                fields.pos,
                "a maintenance window needs `from`/`until` (once) or `cron`/`duration` (recurring)",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn recurring_windows_are_active_for_their_duration() {
        let cron = CronSchedule::parse("0 2 * * *", Tz::UTC).unwrap();
        let m = Maintenance {
            name: "n".into(),
            checks: vec!["api".into()],
            labels: BTreeMap::new(),
            window: Window::Recurring {
                cron: Box::new(cron),
                duration: Duration::from_secs(1800),
            },
            announce: false,
        };
        let at = |h, mi| Utc.with_ymd_and_hms(2026, 11, 25, h, mi, 0).unwrap();
        assert!(!m.active_at(at(1, 59)));
        assert!(m.active_at(at(2, 0)));
        assert!(m.active_at(at(2, 29)));
        assert!(!m.active_at(at(2, 30)));
        assert_eq!(m.started_at(at(2, 29)), Some(at(2, 0)));
        assert_eq!(m.started_at(at(2, 30)), None);
    }
}

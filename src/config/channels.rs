//! Alert channels (`alerts/*.yaml`): `email` (SMTP URL, credentials kept
//! as secrets) and `webhook` (URL, format, signing secret, PagerDuty
//! routing key), each with its `group_window`; and the alerts file's top
//! level, which hands `routes:` and `maintenance:` to `alerting.rs` and
//! keeps `defaults:`. A channel marked `fallback: true` is also sent to the
//! probes with their checks (its tree and the `${VAR}` values it used, as
//! checks travel: `remote.rs`), for the alert a probe sends itself when it
//! reaches no aggregator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::alerting;
use super::check::is_valid_name;
use super::decode::{self, Ctx};
use super::yaml::{Node, Pos, Value};
use crate::limits;

#[derive(Clone, Debug)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Alerts raised within this window are folded into one message
    /// (0: each is sent at once).
    pub group_window: Duration,
    /// `fallback: true`: probes get this channel with their checks and
    /// alert through it when they reach no aggregator.
    pub fallback: bool,
    /// The channel as it travels to probes (fallback channels only).
    pub wire: Option<Arc<super::remote::WireChannel>>,
}

impl Channel {
    /// Whether alerts to this channel are gathered into one message.
    /// PagerDuty needs one event per incident, so it is never grouped.
    pub fn groups(&self) -> bool {
        !self.group_window.is_zero()
            && !matches!(&self.kind, ChannelKind::Webhook(w) if w.format == WebhookFormat::PagerDuty)
    }
}

#[derive(Clone, Debug)]
pub enum ChannelKind {
    Email(EmailChannel),
    Webhook(WebhookChannel),
}

#[derive(Clone, Debug)]
pub struct EmailChannel {
    pub smtp: Url,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct WebhookChannel {
    pub url: Url,
    pub format: WebhookFormat,
    pub secret: Option<String>,
    pub headers: Vec<(String, String)>,
    /// PagerDuty's integration key (Events API v2), for `format: pagerduty`.
    pub routing_key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebhookFormat {
    Json,
    Slack,
    Discord,
    Teams,
    PagerDuty,
    Alertmanager,
}

impl WebhookFormat {
    const NAMES: [(&'static str, WebhookFormat); 6] = [
        ("json", WebhookFormat::Json),
        ("slack", WebhookFormat::Slack),
        ("discord", WebhookFormat::Discord),
        ("teams", WebhookFormat::Teams),
        ("pagerduty", WebhookFormat::PagerDuty),
        ("alertmanager", WebhookFormat::Alertmanager),
    ];
}
pub(super) struct AlertsFile {
    pub(super) channels: Vec<(Channel, Pos)>,
    pub(super) defaults: Option<(Vec<(String, Pos)>, Pos)>,
    pub(super) routes: Vec<alerting::Route>,
    pub(super) maintenance: Vec<alerting::Maintenance>,
    /// Channel names routes use, and check names maintenance windows name.
    pub(super) channel_refs: Vec<(String, Pos)>,
    pub(super) check_refs: Vec<(String, Pos)>,
}

pub(super) fn decode_alerts_file(ctx: &mut Ctx, root: &Node) -> AlertsFile {
    let mut out = AlertsFile {
        channels: Vec::new(),
        defaults: None,
        routes: Vec::new(),
        maintenance: Vec::new(),
        channel_refs: Vec::new(),
        check_refs: Vec::new(),
    };
    if matches!(root.value, Value::Null) {
        return out;
    }
    let Some(top) = ctx.fields(
        root,
        "an alerts file",
        &["channels", "defaults", "routes", "maintenance"],
    ) else {
        return out;
    };
    if let Some(routes) = top
        .get("routes")
        .filter(|n| !matches!(n.value, Value::Null))
    {
        out.routes = alerting::decode_routes(ctx, routes, &mut out.channel_refs);
    }
    if let Some(windows) = top
        .get("maintenance")
        .filter(|n| !matches!(n.value, Value::Null))
    {
        out.maintenance = alerting::decode_maintenance(ctx, windows, &mut out.check_refs);
    }
    if let Some(channels) = top.get("channels") {
        if let Value::Map(entries) = &channels.value {
            for (key, spec) in entries {
                let Some(name) = ctx.string(key, "a channel name") else {
                    continue;
                };
                if !is_valid_name(&name) {
                    ctx.error(
                        key.pos,
                        format!("channel name `{name}` must match [a-z0-9_-]+"),
                    );
                    continue;
                }
                // Record the `${VAR}`s this channel uses: a fallback channel
                // travels to probes with them, and nothing else of our env.
                let used = std::cell::RefCell::new(BTreeMap::new());
                let outer = ctx.env;
                let recording = |name: &str| {
                    let value = outer(name);
                    if let Some(value) = &value {
                        used.borrow_mut().insert(name.to_string(), value.clone());
                    }
                    value
                };
                let mut channel_ctx = Ctx {
                    file: ctx.file,
                    errors: &mut *ctx.errors,
                    secrets: &mut *ctx.secrets,
                    env: &recording,
                };
                if let Some((kind, group_window, fallback)) =
                    decode_channel(&mut channel_ctx, &name, spec)
                {
                    let wire = fallback.then(|| {
                        Arc::new(super::remote::WireChannel {
                            name: name.clone(),
                            file: ctx.file.to_path_buf(),
                            spec: super::remote::WireNode::from(spec),
                            env: used.take(),
                        })
                    });
                    out.channels.push((
                        Channel {
                            name,
                            kind,
                            group_window,
                            fallback,
                            wire,
                        },
                        key.pos,
                    ));
                }
            }
        } else if !matches!(channels.value, Value::Null) {
            ctx.error(
                channels.pos,
                "`channels` must be a mapping of channel names to their settings",
            );
        }
    }
    if let Some(defaults) = top.get("defaults")
        && let Some(fields) = ctx.fields(defaults, "`defaults`", &["channels"])
        && let Some(list) = fields
            .get("channels")
            .and_then(|n| ctx.string_list(n, "`channels`"))
    {
        out.defaults = Some((list, defaults.pos));
    }
    out
}

/// A channel's kind, `group_window` and `fallback`.
pub(super) fn decode_channel(
    ctx: &mut Ctx,
    name: &str,
    node: &Node,
) -> Option<(ChannelKind, Duration, bool)> {
    let fields = ctx.fields(
        node,
        &format!("channel `{name}`"),
        &["email", "webhook", "group_window", "fallback"],
    )?;
    let fallback = match fields.get("fallback") {
        Some(n) => ctx.bool(n, "`fallback`"),
        None => Some(false),
    };
    let group_window = match fields.get("group_window") {
        Some(n) => ctx.duration(n, "`group_window`").and_then(|d| {
            if d > limits::ALERT_GROUP_WINDOW_MAX {
                ctx.error(
                    n.pos,
                    format!(
                        "`group_window` is at most {}",
                        crate::schedule::format_duration(limits::ALERT_GROUP_WINDOW_MAX)
                    ),
                );
                None
            } else {
                Some(d)
            }
        }),
        None => Some(Duration::ZERO),
    };
    let kind = match (fields.get("email"), fields.get("webhook")) {
        (Some(email), None) => decode_email(ctx, name, email).map(ChannelKind::Email),
        (None, Some(webhook)) => decode_webhook(ctx, name, webhook).map(ChannelKind::Webhook),
        (Some(_), Some(webhook)) => {
            ctx.error(
                webhook.pos,
                format!("channel `{name}` has both `email` and `webhook`; define two channels"),
            );
            None
        }
        (None, None) => {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs `email:` or `webhook:`"),
            );
            None
        }
    };
    Some((kind?, group_window?, fallback?))
}

fn decode_email(ctx: &mut Ctx, name: &str, node: &Node) -> Option<EmailChannel> {
    let fields = ctx.fields(
        node,
        &format!("`email` of channel `{name}`"),
        &["smtp", "username", "password", "from", "to"],
    )?;
    let smtp = match fields.get("smtp") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`smtp`")?;
            match Url::parse(&text) {
                Ok(url)
                    if matches!(url.scheme(), "smtp" | "smtps" | "smtp+insecure")
                        && url.host().is_some() =>
                {
                    Some(url)
                }
                _ => {
                    ctx.error(n.pos, format!(
                        "invalid `smtp` URL `{}`; expected smtp://host:587 (STARTTLS), smtps://host:465 (TLS) or smtp+insecure://host:25 (plain, local relays only)",
                        text
                    ));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, format!("channel `{name}` needs an `smtp` URL"));
            None
        }
    };
    let username = fields
        .get("username")
        .and_then(|n| ctx.string(n, "`username`"));
    let password = fields
        .get("password")
        .and_then(|n| ctx.string(n, "`password`"));
    if let Some(password) = &password {
        ctx.secrets.add(password);
    }
    let from = match fields.get("from") {
        Some(n) => ctx.string(n, "`from`"),
        None => {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs a `from` address"),
            );
            None
        }
    };
    let to = match fields.get("to") {
        Some(n) => match &n.value {
            Value::Seq(_) => ctx
                .string_list(n, "`to`")
                .map(|l| l.into_iter().map(|(s, _)| s).collect::<Vec<_>>()),
            _ => ctx.string(n, "`to`").map(|s| vec![s]),
        }
        .and_then(|list| {
            if list.is_empty() {
                ctx.error(n.pos, "`to` needs at least one address");
                None
            } else if let Some(bad) = list.iter().find(|a| !a.contains('@')) {
                ctx.error(n.pos, format!("`{bad}` is not an email address"));
                None
            } else {
                Some(list)
            }
        }),
        None => {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs `to` (a list of addresses)"),
            );
            None
        }
    };
    Some(EmailChannel {
        smtp: smtp?,
        username,
        password,
        from: from?,
        to: to?,
    })
}

fn decode_webhook(ctx: &mut Ctx, name: &str, node: &Node) -> Option<WebhookChannel> {
    let fields = ctx.fields(
        node,
        &format!("`webhook` of channel `{name}`"),
        &["url", "format", "secret", "headers", "routing_key"],
    )?;
    let url = match fields.get("url") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`url`")?;
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                _ => {
                    ctx.error(
                        n.pos,
                        format!(
                            "invalid webhook `url` `{}`; expected http:// or https://",
                            text
                        ),
                    );
                    None
                }
            }
        }),
        None => {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs a webhook `url`"),
            );
            None
        }
    };
    let format = match fields.get("format") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`format`")?;
            match WebhookFormat::NAMES.iter().find(|(k, _)| *k == text) {
                Some((_, f)) => Some(*f),
                None => {
                    let names: Vec<&str> = WebhookFormat::NAMES.iter().map(|(k, _)| *k).collect();
                    ctx.error(
                        n.pos,
                        format!(
                            "unknown webhook format `{text}`; expected one of: {}",
                            names.join(", ")
                        ),
                    );
                    None
                }
            }
        }),
        None => Some(WebhookFormat::Json),
    };
    // An empty secret (say `${WEBHOOK_SECRET:-}` left unset) means unsigned.
    let secret = fields
        .get("secret")
        .and_then(|n| ctx.string(n, "`secret`"))
        .filter(|s| !s.is_empty());
    if let Some(secret) = &secret {
        ctx.secrets.add(secret);
    }
    let headers = match fields.get("headers") {
        Some(n) => ctx.string_map(n, "`headers`"),
        None => Some(Vec::new()),
    };
    let routing_key = fields
        .get("routing_key")
        .and_then(|n| ctx.string(n, "`routing_key`"));
    if let Some(key) = &routing_key {
        ctx.secrets.add(key);
    }
    if format == Some(WebhookFormat::PagerDuty) && routing_key.is_none() {
        ctx.error(fields.pos, format!("channel `{name}` has `format: pagerduty` and needs its `routing_key` (the Events API v2 integration key)"));
        return None;
    }
    Some(WebhookChannel {
        url: url?,
        format: format?,
        secret,
        headers: headers?,
        routing_key,
    })
}

//! Alert channels (`alerts/*.yaml`): `email` (SMTP URL, credentials kept
//! as secrets) and `webhook` (URL, format, signing secret, PagerDuty
//! routing key), each with its `group_window`; and the alerts file's top
//! level, which hands `routes:` and `maintenance:` to `alerting.rs` and
//! keeps `defaults:`. `format: alertmanager` takes several `urls` and a
//! `resend_every`; `format: template` channels are decoded in
//! `channel_template.rs`. A channel marked `fallback: true` is also sent to
//! the probes with their checks (its tree and the `${VAR}` values it used,
//! as checks travel: `remote.rs`), for the alert a probe sends itself when
//! it reaches no aggregator.

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
        // Alertmanager groups by itself: Lookout sends it every alert.
        !self.group_window.is_zero()
            && !matches!(&self.kind, ChannelKind::Webhook(w) if matches!(w.format, WebhookFormat::PagerDuty | WebhookFormat::Alertmanager))
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
    /// Extra roots (PEM) trusted for the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// With a `ca_file`: trust the system's roots as well (the default), or
    /// only `ca_file`'s (`system_roots: false`).
    pub system_roots: bool,
    /// `false`: any certificate is accepted (logged as a warning at start).
    pub tls_verify: bool,
}

#[derive(Clone, Debug)]
pub struct WebhookChannel {
    /// The receiver (for `format: template`, a placeholder: the URL is
    /// rendered from `template.url`).
    pub url: Url,
    /// `format: alertmanager`: every Alertmanager (each gets every alert);
    /// the first is `url`.
    pub urls: Vec<Url>,
    /// `format: alertmanager`: how often a firing alert is sent again.
    pub resend_every: Duration,
    /// `format: template`: the request, as templates.
    pub template: Option<super::channel_template::WebhookTemplate>,
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
    /// Alertmanager's API v2: alerts pushed into Alertmanager.
    Alertmanager,
    /// The payload Alertmanager sends its own receivers (webhook v4).
    AlertmanagerWebhook,
    /// A request written as templates (`channel_template.rs`).
    Template,
}

impl WebhookFormat {
    const NAMES: [(&'static str, WebhookFormat); 8] = [
        ("json", WebhookFormat::Json),
        ("slack", WebhookFormat::Slack),
        ("discord", WebhookFormat::Discord),
        ("teams", WebhookFormat::Teams),
        ("pagerduty", WebhookFormat::PagerDuty),
        ("alertmanager", WebhookFormat::Alertmanager),
        ("alertmanager_webhook", WebhookFormat::AlertmanagerWebhook),
        ("template", WebhookFormat::Template),
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

/// `text` is the file's source: template errors are placed in it.
pub(super) fn decode_alerts_file(ctx: &mut Ctx, root: &Node, text: &str) -> AlertsFile {
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
                    decode_channel(&mut channel_ctx, &name, spec, text)
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

/// A channel's kind, `group_window` and `fallback`. `text` is the file's
/// source, where template errors are placed (empty on a probe).
pub(super) fn decode_channel(
    ctx: &mut Ctx,
    name: &str,
    node: &Node,
    text: &str,
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
        (None, Some(webhook)) => decode_webhook(ctx, name, webhook, text).map(ChannelKind::Webhook),
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
        &[
            "smtp",
            "username",
            "password",
            "from",
            "to",
            "ca_file",
            "system_roots",
            "tls_verify",
        ],
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
    let ca_file = match fields.get("ca_file") {
        Some(n) => super::ca::decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    let system_roots = match fields.get("system_roots") {
        Some(n) => ctx.bool(n, "`system_roots`"),
        None => Some(true),
    };
    let tls_verify = match fields.get("tls_verify") {
        Some(n) => ctx.bool(n, "`tls_verify`"),
        None => Some(true),
    };
    if system_roots == Some(false) && fields.get("ca_file").is_none() {
        ctx.error(
            fields.pos,
            format!(
                "channel `{name}` has `system_roots: false` and needs a `ca_file` to trust instead"
            ),
        );
        return None;
    }
    Some(EmailChannel {
        smtp: smtp?,
        username,
        password,
        from: from?,
        to: to?,
        ca_file: ca_file?,
        system_roots: system_roots?,
        tls_verify: tls_verify?,
    })
}

fn decode_webhook(ctx: &mut Ctx, name: &str, node: &Node, text: &str) -> Option<WebhookChannel> {
    let fields = ctx.fields(
        node,
        &format!("`webhook` of channel `{name}`"),
        &[
            "url",
            "urls",
            "format",
            "secret",
            "headers",
            "routing_key",
            "resend_every",
            "method",
            "body",
        ],
    )?;
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
    let format = format?;
    // Keys that only one format reads are refused elsewhere, so a typo in
    // the format does not silently drop them.
    for (key, wanted) in [
        ("urls", WebhookFormat::Alertmanager),
        ("resend_every", WebhookFormat::Alertmanager),
        ("method", WebhookFormat::Template),
        ("body", WebhookFormat::Template),
    ] {
        if let Some(n) = fields.get(key)
            && format != wanted
        {
            let wanted = WebhookFormat::NAMES
                .iter()
                .find(|(_, f)| *f == wanted)
                .map_or("", |(k, _)| *k);
            ctx.error(
                n.pos,
                format!("`{key}` is only read with `format: {wanted}`"),
            );
        }
    }
    let template = if format == WebhookFormat::Template {
        Some(super::channel_template::decode(ctx, name, &fields, text)?)
    } else {
        None
    };
    let mut urls = Vec::new();
    // Every url is looked at (and the keys after them) before giving up.
    let mut bad_url = false;
    if format != WebhookFormat::Template {
        let mut url_nodes: Vec<&Node> = Vec::new();
        if let Some(n) = fields.get("url") {
            url_nodes.push(n);
        }
        if let Some(list) = fields.get("urls") {
            match &list.value {
                Value::Seq(items) if !items.is_empty() => url_nodes.extend(items.iter()),
                _ => ctx.error(
                    list.pos,
                    "`urls` must be a list of http:// or https:// URLs",
                ),
            }
        }
        if url_nodes.is_empty() {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs a webhook `url`"),
            );
            return None;
        }
        if url_nodes.len() > limits::ALERTMANAGER_URLS_MAX {
            ctx.error(
                fields.pos,
                format!(
                    "channel `{name}` lists more than {} urls",
                    limits::ALERTMANAGER_URLS_MAX
                ),
            );
            return None;
        }
        for n in url_nodes {
            let url = decode::field(|| {
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
            });
            match url {
                Some(url) => urls.push(url),
                None => bad_url = true,
            }
        }
    }
    let resend_every = match fields.get("resend_every") {
        Some(n) => decode::field(|| {
            let d = ctx.duration(n, "`resend_every`")?;
            if d < limits::ALERTMANAGER_RESEND_MIN {
                ctx.error(
                    n.pos,
                    format!(
                        "`resend_every` is at least {}",
                        crate::schedule::format_duration(limits::ALERTMANAGER_RESEND_MIN)
                    ),
                );
                return None;
            }
            Some(d)
        }),
        None => Some(limits::ALERTMANAGER_RESEND_DEFAULT),
    };
    // An empty secret (say `${WEBHOOK_SECRET:-}` left unset) means unsigned.
    let secret = fields
        .get("secret")
        .and_then(|n| ctx.string(n, "`secret`"))
        .filter(|s| !s.is_empty());
    if let Some(secret) = &secret {
        ctx.secrets.add(secret);
    }
    let headers = match (&template, fields.get("headers")) {
        // A template's headers are templates, kept in `template`.
        (Some(_), _) => Some(Vec::new()),
        (None, Some(n)) => ctx.string_map(n, "`headers`"),
        (None, None) => Some(Vec::new()),
    };
    let routing_key = fields
        .get("routing_key")
        .and_then(|n| ctx.string(n, "`routing_key`"));
    if let Some(key) = &routing_key {
        ctx.secrets.add(key);
    }
    if format == WebhookFormat::PagerDuty && routing_key.is_none() {
        ctx.error(fields.pos, format!("channel `{name}` has `format: pagerduty` and needs its `routing_key` (the Events API v2 integration key)"));
        return None;
    }
    if bad_url {
        return None;
    }
    let url = match urls.first() {
        Some(url) => url.clone(),
        None => Url::parse("http://template.invalid/").ok()?,
    };
    Some(WebhookChannel {
        url,
        urls,
        resend_every: resend_every?,
        template,
        format,
        secret,
        headers: headers?,
        routing_key,
    })
}

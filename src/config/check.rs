//! One check's common settings and the checks file around it: `Check`
//! (name, schedule, timeout, regions, labels, description), `CheckKind`
//! with the dispatch to each kind's decoder (`http.rs`, `tcp.rs`, `tls.rs`,
//! `dns.rs`, `heartbeat.rs`, `browser/`, `icmp.rs`, `grpc.rs`,
//! `websocket.rs`), `alert:` (`AlertRules`),
//! `status_page:`, the `host:port` address the tcp and tls kinds share, and
//! the name rule checks, channels and probe regions follow.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;

use super::decode::{self, Ctx};
use super::dns::{DnsSpec, decode_dns};
use super::expect::{Expect, decode_expect};
use super::grpc::{GrpcSpec, decode_grpc};
use super::heartbeat::{HeartbeatSpec, decode_heartbeat};
use super::http::{HttpSpec, decode_http};
use super::icmp::{IcmpSpec, decode_icmp};
use super::tcp::{TcpSpec, decode_tcp};
use super::tls::{TlsSpec, decode_tls};
use super::websocket::{WebsocketSpec, decode_websocket};
use super::yaml::{Node, Pos, Value};
use super::{browser, remote};
use crate::limits;
use crate::schedule::{CronSchedule, Schedule};

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub schedule: Schedule,
    pub timeout: Duration,
    /// `None`: every region known.
    pub regions: Option<Vec<String>>,
    /// Shared by every check that sets none (`Expect::unset`): at 10,000
    /// checks a copy each was 2 MB of the same empty rules (#19).
    pub expect: Arc<Expect>,
    /// Shared likewise by the checks that leave `alert:` out.
    pub alert: Arc<AlertRules>,
    pub labels: BTreeMap<String, String>,
    pub description: Option<String>,
    /// How the public status page shows it.
    pub status_page: StatusPageOptions,
    /// The YAML it was decoded from, to send to remote probes.
    pub source: Option<Arc<remote::CheckSource>>,
    /// `depends_on:`: checks whose outage explains this one's; while one
    /// of them is down, this check's down is recorded but not paged
    /// (checked to exist and to form no cycle by `config::depends`).
    pub depends_on: Vec<String>,
}

impl Check {
    /// What the check looks at, for tables, logs and the `target` metric
    /// label. Pass it through `Secrets::redact` before showing it.
    pub fn target(&self) -> String {
        match &self.kind {
            CheckKind::Http(http) => {
                // Never show a password given in the URL itself.
                let mut url = http.url.clone();
                if url.password().is_some() {
                    let _ = url.set_password(Some("****"));
                }
                url.to_string()
            }
            CheckKind::Tcp(tcp) => tcp.address.to_string(),
            CheckKind::Tls(tls) => tls.address.to_string(),
            CheckKind::Dns(dns) => format!("{} {}", dns.record_type.as_str(), dns.name),
            CheckKind::Heartbeat(_) => "heartbeat".to_string(),
            CheckKind::Browser(spec) => match spec.first_url() {
                Some(url) => {
                    let mut url = url.clone();
                    if url.password().is_some() {
                        let _ = url.set_password(Some("****"));
                    }
                    url.to_string()
                }
                None => "browser flow".to_string(),
            },
            CheckKind::Icmp(icmp) => icmp.host.clone(),
            CheckKind::Grpc(grpc) => match grpc.service.as_str() {
                "" => grpc.address.to_string(),
                service => format!("{} {service}", grpc.address),
            },
            CheckKind::Websocket(ws) => {
                let mut url = ws.url.clone();
                if url.password().is_some() {
                    let _ = url.set_password(Some("****"));
                }
                url.to_string()
            }
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            CheckKind::Http(_) => "http",
            CheckKind::Tcp(_) => "tcp",
            CheckKind::Tls(_) => "tls",
            CheckKind::Dns(_) => "dns",
            CheckKind::Heartbeat(_) => "heartbeat",
            CheckKind::Browser(_) => "browser",
            CheckKind::Icmp(_) => "icmp",
            CheckKind::Grpc(_) => "grpc",
            CheckKind::Websocket(_) => "websocket",
        }
    }

    /// Heartbeats are pushed to the aggregator, not probed.
    pub fn is_probed(&self) -> bool {
        !matches!(self.kind, CheckKind::Heartbeat(_))
    }
}

#[derive(Clone, Debug)]
pub enum CheckKind {
    Http(HttpSpec),
    Tcp(TcpSpec),
    Tls(TlsSpec),
    Dns(DnsSpec),
    Heartbeat(HeartbeatSpec),
    Browser(browser::BrowserSpec),
    Icmp(IcmpSpec),
    Grpc(GrpcSpec),
    Websocket(WebsocketSpec),
}

/// `host:port`, with IPv6 literals in brackets (`[::1]:53`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = || format!("`{text}` is not host:port (IPv6 in brackets: [::1]:53)");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
            None if host.contains(':') => return Err(bad()),
            None => host,
        };
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}
/// `status_page:` of a check: what the public page may show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusPageOptions {
    /// Not on the status page (nor its JSON twin) at all.
    pub hidden: bool,
    /// On the page, without its URL or address.
    pub hide_target: bool,
    /// The name the page shows instead of the check's own.
    pub display_name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct AlertRules {
    /// `None`: the alert files' `defaults.channels`.
    pub channels: Option<Vec<String>>,
    pub failures: u32,
    pub successes: u32,
    /// `None`: a majority of the live regions.
    pub quorum: Option<u32>,
    pub remind_every: Option<Duration>,
    /// Degraded when the recent p95 exceeds this factor times the check's
    /// own 7-day p95 (`p95_above_baseline: 2x`).
    pub p95_above_baseline: Option<f64>,
    /// `escalate:`: further channels paged while an incident stays open
    /// and unacknowledged, in order of `after`.
    pub escalate: Vec<Escalation>,
    /// `flapping:`: how many changes within how long is flapping.
    pub flapping: Flapping,
}

impl AlertRules {
    /// The rules of every check without `alert:`, one shared copy.
    pub fn unset() -> Arc<AlertRules> {
        static UNSET: std::sync::LazyLock<Arc<AlertRules>> =
            std::sync::LazyLock::new(|| Arc::new(AlertRules::default()));
        UNSET.clone()
    }
}

/// One step of `alert.escalate`: after `after` of an open, unacknowledged
/// incident, `channels` are paged too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escalation {
    pub after: Duration,
    pub channels: Vec<String>,
}

/// `alert.flapping`: more than `changes` state changes within `within` is
/// flapping (alerts pause until the check is stable that long).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flapping {
    pub changes: usize,
    pub within: Duration,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping {
            changes: limits::FLAP_CHANGES_MAX,
            within: limits::FLAP_WINDOW,
        }
    }
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            channels: None,
            failures: limits::ALERT_FAILURES_DEFAULT,
            successes: limits::ALERT_SUCCESSES_DEFAULT,
            quorum: None,
            remind_every: None,
            p95_above_baseline: None,
            escalate: Vec::new(),
            flapping: Flapping::default(),
        }
    }
}
const CHECK_KINDS: [&str; 9] = [
    "http",
    "tcp",
    "tls",
    "dns",
    "browser",
    "heartbeat",
    "icmp",
    "grpc",
    "websocket",
];
const CHECK_KEYS: [&str; 21] = [
    "name",
    "description",
    "http",
    "tcp",
    "tls",
    "dns",
    "browser",
    "heartbeat",
    "icmp",
    "grpc",
    "websocket",
    "every",
    "cron",
    "tz",
    "timeout",
    "regions",
    "expect",
    "alert",
    "labels",
    "status_page",
    "depends_on",
];

/// Names a checks file uses, with positions, for the cross-file pass.
#[derive(Default)]
pub(super) struct Refs {
    pub(super) names: Vec<(String, Pos)>,
    pub(super) channels: Vec<(String, Pos)>,
    /// The file's `status_page:` and `announcements:`.
    pub(super) page: super::page::PageRefs,
    /// `depends_on:` edges (check, the check it depends on, position).
    pub(super) depends: Vec<(String, String, Pos)>,
}

pub(super) fn decode_checks_file(ctx: &mut Ctx, root: &Node, refs: &mut Refs) -> Vec<(Check, Pos)> {
    if matches!(root.value, Value::Null) {
        return Vec::new();
    }
    let Some(top) = ctx.fields(
        root,
        "a checks file",
        &["checks", "status_page", "announcements"],
    ) else {
        return Vec::new();
    };
    if let Some(node) = top.get("status_page") {
        super::page::decode_page(ctx, node, &mut refs.page);
    }
    if let Some(node) = top.get("announcements") {
        super::page::decode_announcements(ctx, node, &mut refs.page);
    }
    let page_only = top.get("status_page").is_some() || top.get("announcements").is_some();
    let Some(list_node) = top.get("checks") else {
        if !page_only {
            ctx.error(root.pos, "a checks file holds a list under `checks:`");
        }
        return Vec::new();
    };
    if matches!(list_node.value, Value::Null) {
        return Vec::new();
    }
    let Some(items) = ctx.list(list_node, "`checks`") else {
        return Vec::new();
    };
    let mut checks = Vec::with_capacity(items.len());
    for item in items {
        // Record the `${VAR}`s this check uses: a remote probe gets them
        // with its tree (config/remote.rs), and nothing else of our env.
        let used = std::cell::RefCell::new(BTreeMap::new());
        let outer = ctx.env;
        let recording = |name: &str| {
            let value = outer(name);
            if let Some(value) = &value {
                used.borrow_mut().insert(name.to_string(), value.clone());
            }
            value
        };
        let mut check_ctx = Ctx {
            file: ctx.file,
            errors: &mut *ctx.errors,
            secrets: &mut *ctx.secrets,
            env: &recording,
        };
        if let Some(mut check) = decode_check(&mut check_ctx, item, refs) {
            // Included browser steps travel inside the tree: a probe has
            // no `checks/` directory to read them from.
            check.source = Some(Arc::new(remote::CheckSource::new(
                ctx.file.to_path_buf(),
                browser::inline_includes(ctx.file, item),
                used.into_inner(),
            )));
            checks.push((check, item.pos));
        }
    }
    checks
}

/// Check and channel names appear in URLs, metric labels and subjects.
const NAME_CHARS_MAX: usize = 64;

pub(super) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_CHARS_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(super) fn decode_check(ctx: &mut Ctx, node: &Node, refs: &mut Refs) -> Option<Check> {
    let fields = ctx.fields(node, "a check", &CHECK_KEYS)?;
    let valid_name = match fields.get("name") {
        Some(n) => decode::field(|| {
            let name = ctx.string(n, "`name`")?;
            if !is_valid_name(&name) {
                ctx.error(
                    n.pos,
                    format!("check name `{name}` must match [a-z0-9_-]+ (at most {NAME_CHARS_MAX} characters)"),
                );
                return None;
            }
            refs.names.push((name.clone(), n.pos));
            Some(name)
        }),
        None => {
            ctx.error(fields.pos, "a check needs a `name`");
            None
        }
    };
    // Without a usable name, carry on under a stand-in so every other
    // mistake in this check is reported too.
    let name = valid_name
        .clone()
        .unwrap_or_else(|| format!("at line {}", fields.pos.line));
    let what = |s: &str| format!("`{s}` of check `{name}`");

    // Exactly one kind.
    let kinds: Vec<(&str, &Node)> = fields
        .keys()
        .filter(|(k, _)| CHECK_KINDS.contains(k))
        .collect();
    let kind = match kinds.as_slice() {
        [] => {
            ctx.error(
                fields.pos,
                format!(
                    "check `{name}` needs exactly one kind: {}",
                    CHECK_KINDS.join(", ")
                ),
            );
            None
        }
        [(kind, spec)] => decode_kind(ctx, &name, kind, spec),
        [_, (second, spec), ..] => {
            ctx.error(
                spec.pos,
                format!("check `{name}` has more than one kind (`{second}` is the second)"),
            );
            None
        }
    };

    let tz = match fields.get("tz") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, &what("tz"))?;
            match text.parse::<Tz>() {
                Ok(tz) => Some(tz),
                Err(_) => {
                    ctx.error(
                        n.pos,
                        format!(
                            "unknown time zone `{text}`; expected an IANA name such as Europe/Paris"
                        ),
                    );
                    None
                }
            }
        }),
        None => Some(Tz::UTC),
    };
    let heartbeat_period = match &kind {
        Some(CheckKind::Heartbeat(h)) => Some(h.period.clone()),
        _ => None,
    };
    let pushed = kinds.iter().any(|(k, _)| *k == "heartbeat");
    let schedule = match (fields.get("every"), fields.get("cron")) {
        (None, None) if pushed => heartbeat_period,
        (Some(n), _) | (None, Some(n)) if pushed => {
            ctx.error(
                n.pos,
                "a heartbeat is pushed, not probed: its schedule is `period` inside `heartbeat`",
            );
            None
        }
        (Some(every), None) => ctx.duration(every, &what("every")).and_then(|d| {
            if d < limits::CHECK_INTERVAL_MIN {
                ctx.error(
                    every.pos,
                    format!(
                        "`every` must be at least {}ms",
                        limits::CHECK_INTERVAL_MIN.as_millis()
                    ),
                );
                None
            } else {
                if fields.get("tz").is_some() {
                    ctx.error(every.pos, "`tz` only applies to `cron` schedules");
                }
                Some(Schedule::Every(d))
            }
        }),
        (None, Some(cron)) => decode::field(|| {
            let expression = ctx.string(cron, &what("cron"))?;
            match CronSchedule::parse(&expression, tz.unwrap_or(Tz::UTC)) {
                Ok(schedule) => Some(Schedule::Cron(Box::new(schedule))),
                Err(message) => {
                    ctx.error(cron.pos, message);
                    None
                }
            }
        }),
        (Some(_), Some(cron)) => {
            ctx.error(
                cron.pos,
                format!("check `{name}` has both `every` and `cron`; keep one"),
            );
            None
        }
        (None, None) => {
            ctx.error(
                fields.pos,
                format!("check `{name}` needs a schedule: `every: 30s` or `cron: \"*/5 * * * *\"`"),
            );
            None
        }
    };
    let timeout = match fields.get("timeout") {
        Some(n) => ctx.duration(n, &what("timeout")).and_then(|d| {
            if d.is_zero() {
                ctx.error(n.pos, "`timeout` must be more than 0");
                None
            } else {
                Some(d)
            }
        }),
        None => Some(limits::CHECK_TIMEOUT_DEFAULT),
    };
    let regions = match fields.get("regions") {
        Some(n) => ctx
            .string_list(n, &what("regions"))
            .map(|list| Some(list.into_iter().map(|(r, _)| r).collect())),
        None => Some(None),
    };
    let expect = match fields.get("expect") {
        Some(n) => decode_expect(ctx, &name, n).map(Arc::new),
        None => Some(Expect::unset()),
    };
    let mut alert = match fields.get("alert") {
        Some(n) => decode_alert_rules(ctx, &name, n, &mut refs.channels),
        None => Some(AlertRules::default()),
    };
    // A missed heartbeat is already a confirmed failure (it waited out the
    // grace period), so unless told otherwise one is enough.
    let failures_set = fields.get("alert").is_some_and(|n| match &n.value {
        Value::Map(entries) => entries
            .iter()
            .any(|(k, _)| matches!(&k.value, Value::String(s) if s == "failures")),
        _ => false,
    });
    if pushed
        && !failures_set
        && let Some(rules) = alert.as_mut()
    {
        rules.failures = 1;
    }
    let labels = match fields.get("labels") {
        Some(n) => ctx
            .string_map(n, &what("labels"))
            .map(|l| l.into_iter().collect()),
        None => Some(BTreeMap::new()),
    };
    let description = match fields.get("description") {
        Some(n) => ctx.string(n, &what("description")),
        None => None,
    };
    if let (Some(CheckKind::Icmp(spec)), Some(timeout)) = (&kind, timeout) {
        let pos = fields.get("timeout").map_or(fields.pos, |n| n.pos);
        super::icmp::check_fits_timeout(ctx, spec, timeout, pos);
    }
    let status_page = match fields.get("status_page") {
        Some(n) => decode_status_page(ctx, &name, n),
        None => Some(StatusPageOptions::default()),
    };
    let depends_on = match fields.get("depends_on") {
        Some(n) => ctx.string_list(n, &what("depends_on")).map(|list| {
            if list.len() > limits::CHECK_DEPENDS_MAX {
                ctx.error(
                    n.pos,
                    format!(
                        "`depends_on` lists at most {} checks",
                        limits::CHECK_DEPENDS_MAX
                    ),
                );
            }
            refs.depends.extend(
                list.iter()
                    .map(|(dep, pos)| (name.clone(), dep.clone(), *pos)),
            );
            list.into_iter().map(|(dep, _)| dep).collect()
        }),
        None => Some(Vec::new()),
    };
    Some(Check {
        name: valid_name?,
        kind: kind?,
        schedule: schedule?,
        timeout: timeout?,
        regions: regions?,
        expect: expect?,
        alert: match (alert?, fields.get("alert").is_some() || pushed) {
            (rules, true) => Arc::new(rules),
            (_, false) => AlertRules::unset(),
        },
        labels: labels?,
        description,
        status_page: status_page?,
        source: None,
        depends_on: depends_on?,
    })
}

fn decode_status_page(ctx: &mut Ctx, name: &str, node: &Node) -> Option<StatusPageOptions> {
    let fields = ctx.fields(
        node,
        &format!("`status_page` of check `{name}`"),
        &["hidden", "hide_target", "display_name"],
    )?;
    let mut options = StatusPageOptions::default();
    let mut ok = true;
    if let Some(n) = fields.get("display_name") {
        match ctx.string(n, "`display_name`") {
            Some(v) if !v.trim().is_empty() && v.len() <= limits::PAGE_DISPLAY_NAME_CHARS_MAX => {
                options.display_name = Some(v)
            }
            Some(_) => {
                let message = format!(
                    "`display_name` must be 1 to {} characters",
                    limits::PAGE_DISPLAY_NAME_CHARS_MAX
                );
                ctx.error(n.pos, message);
                ok = false;
            }
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("hidden", &mut options.hidden),
        ("hide_target", &mut options.hide_target),
    ] {
        if let Some(n) = fields.get(key) {
            match ctx.bool(n, &format!("`{key}`")) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    ok.then_some(options)
}

/// `2x`, `1.5x` or a bare factor: how many times its baseline a check's
/// p95 may reach. More than 1, at most 100.
fn parse_baseline_factor(text: &str) -> Result<f64, String> {
    let number = text.trim().strip_suffix('x').unwrap_or(text.trim());
    match number.trim().parse::<f64>() {
        Ok(f) if f > 1.0 && f <= 100.0 => Ok(f),
        _ => Err(format!(
            "`p95_above_baseline` must be a factor above 1 such as `2x` or `1.5x`, found `{text}`"
        )),
    }
}

fn decode_kind(ctx: &mut Ctx, name: &str, kind: &str, spec: &Node) -> Option<CheckKind> {
    match kind {
        "http" => decode_http(ctx, name, spec).map(CheckKind::Http),
        "tcp" => decode_tcp(ctx, name, spec).map(CheckKind::Tcp),
        "tls" => decode_tls(ctx, name, spec).map(CheckKind::Tls),
        "dns" => decode_dns(ctx, name, spec).map(CheckKind::Dns),
        "heartbeat" => decode_heartbeat(ctx, name, spec).map(CheckKind::Heartbeat),
        "browser" => browser::decode_browser(ctx, name, spec).map(CheckKind::Browser),
        "icmp" => decode_icmp(ctx, name, spec).map(CheckKind::Icmp),
        "grpc" => decode_grpc(ctx, name, spec).map(CheckKind::Grpc),
        "websocket" => decode_websocket(ctx, name, spec).map(CheckKind::Websocket),
        other => {
            ctx.error(
                spec.pos,
                format!("check kind `{other}` is not available in this version of Lookout yet"),
            );
            None
        }
    }
}

fn decode_alert_rules(
    ctx: &mut Ctx,
    name: &str,
    node: &Node,
    refs: &mut Vec<(String, Pos)>,
) -> Option<AlertRules> {
    let fields = ctx.fields(
        node,
        &format!("`alert` of check `{name}`"),
        &[
            "channels",
            "failures",
            "successes",
            "quorum",
            "remind_every",
            "p95_above_baseline",
            "escalate",
            "flapping",
        ],
    )?;
    let mut rules = AlertRules::default();
    let mut ok = true;
    if let Some(n) = fields.get("channels") {
        match ctx.string_list(n, "`channels`") {
            Some(list) => {
                refs.extend(list.iter().cloned());
                rules.channels = Some(list.into_iter().map(|(c, _)| c).collect());
            }
            None => ok = false,
        }
    }
    for (key, slot) in [
        ("failures", &mut rules.failures),
        ("successes", &mut rules.successes),
    ] {
        if let Some(n) = fields.get(key) {
            match ctx.positive_u32(n, &format!("`{key}`")) {
                Some(v) => *slot = v,
                None => ok = false,
            }
        }
    }
    if let Some(n) = fields.get("quorum") {
        rules.quorum = ctx.positive_u32(n, "`quorum`");
        ok &= rules.quorum.is_some();
    }
    if let Some(n) = fields.get("remind_every") {
        rules.remind_every = ctx.duration(n, "`remind_every`");
        ok &= rules.remind_every.is_some();
    }
    if let Some(n) = fields.get("escalate") {
        match super::depends::decode_escalate(ctx, n, refs) {
            Some(steps) => rules.escalate = steps,
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("flapping") {
        match super::depends::decode_flapping(ctx, n) {
            Some(flapping) => rules.flapping = flapping,
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("p95_above_baseline") {
        match ctx
            .string(n, "`p95_above_baseline`")
            .map(|text| parse_baseline_factor(&text))
        {
            Some(Ok(factor)) => rules.p95_above_baseline = Some(factor),
            Some(Err(message)) => {
                ctx.error(n.pos, message);
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(rules)
}

// What the kinds share.

/// The `key: host:port` a tcp or tls check must have.
pub(super) fn host_port(
    ctx: &mut Ctx,
    fields: &decode::Fields,
    key: &str,
    what: &str,
) -> Option<HostPort> {
    let Some(n) = fields.get(key) else {
        ctx.error(fields.pos, format!("{what} needs `{key}: host:port`"));
        return None;
    };
    let text = ctx.string(n, &format!("`{key}`"))?;
    match HostPort::parse(&text) {
        Ok(hp) => Some(hp),
        Err(message) => {
            ctx.error(n.pos, message);
            None
        }
    }
}

/// An optional string field: `Some(None)` when absent, `None` when invalid.
pub(super) fn optional_string(
    ctx: &mut Ctx,
    fields: &decode::Fields,
    key: &str,
) -> Option<Option<String>> {
    match fields.get(key) {
        Some(n) => ctx.string(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

/// `ip_family:` of a network check: which addresses of a name to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IpFamily {
    /// The resolver's order, both families.
    #[default]
    Any,
    Ipv4,
    Ipv6,
}

impl IpFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::Any => "any",
            IpFamily::Ipv4 => "ipv4",
            IpFamily::Ipv6 => "ipv6",
        }
    }

    /// Whether `ip` may be used under this setting.
    pub fn allows(self, ip: std::net::IpAddr) -> bool {
        match self {
            IpFamily::Any => true,
            IpFamily::Ipv4 => ip.is_ipv4(),
            IpFamily::Ipv6 => ip.is_ipv6(),
        }
    }
}

/// The optional `ip_family: any | ipv4 | ipv6` of a network kind.
pub(super) fn decode_ip_family(ctx: &mut Ctx, fields: &decode::Fields) -> Option<IpFamily> {
    let Some(n) = fields.get("ip_family") else {
        return Some(IpFamily::Any);
    };
    match ctx.string(n, "`ip_family`")?.as_str() {
        "any" => Some(IpFamily::Any),
        "ipv4" => Some(IpFamily::Ipv4),
        "ipv6" => Some(IpFamily::Ipv6),
        other => {
            ctx.error(
                n.pos,
                format!("`ip_family` must be any, ipv4 or ipv6, found `{other}`"),
            );
            None
        }
    }
}

/// An IP literal of the other family can never be reached under
/// `ip_family`: say so at load rather than on every run.
pub(super) fn check_literal_family(
    ctx: &mut Ctx,
    fields: &decode::Fields,
    family: IpFamily,
    host: &str,
) -> bool {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) if !family.allows(ip) => {
            let pos = fields.get("ip_family").map_or(fields.pos, |n| n.pos);
            ctx.error(
                pos,
                format!(
                    "`ip_family: {}` cannot reach the address {literal}",
                    family.as_str()
                ),
            );
            false
        }
        _ => true,
    }
}

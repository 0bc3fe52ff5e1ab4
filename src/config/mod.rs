//! The user's declarations: checks (`checks/*.yaml`) and alert channels
//! (`alerts/*.yaml`), loaded, interpolated from the environment and validated.
//!
//! Loading never stops at the first mistake: it returns a `Config` only when
//! every file is valid, and otherwise every error it found, each with its file,
//! line and column. The daemon, `lookout validate` and `lookout check` all use
//! this one loader, so what validates is exactly what runs.

pub mod alerting;
pub mod browser;
pub mod ca;
mod decode;
pub mod probes;
pub mod remote;
pub mod secrets;
pub mod yaml;

pub use secrets::Secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use regex::Regex;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use url::Url;

use crate::limits;
use crate::schedule::{CronSchedule, Schedule};
use decode::{Ctx, EnvLookup};
use yaml::{Node, Pos, Value};

/// One problem in one file, printed as `path:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message
        )
    }
}

/// All the errors of a failed load, in file and line order.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration error(s)", .0.len())]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors as they are shown: sorted by file and position, and every
    /// value that came from the environment written as `${NAME}` (an error
    /// quotes the value it refused, and that value may be a secret).
    pub fn masked(mut errors: Vec<ConfigError>, secrets: &Secrets) -> ConfigErrors {
        for error in &mut errors {
            error.message = secrets.name_masked(&error.message);
        }
        errors.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
        errors.dedup();
        ConfigErrors(errors)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub checks: Vec<Arc<Check>>,
    pub channels: BTreeMap<String, Channel>,
    pub default_channels: Vec<String>,
    pub routes: Vec<alerting::Route>,
    pub maintenance: Vec<alerting::Maintenance>,
    pub secrets: Arc<Secrets>,
}

impl Config {
    /// Where a check's alerts go: its own `alert.channels`; else every route
    /// whose labels it carries; else `defaults.channels`.
    pub fn channels_for(&self, check: &Check) -> Vec<String> {
        if let Some(channels) = &check.alert.channels {
            return channels.clone();
        }
        let mut routed: Vec<String> = Vec::new();
        for route in self.routes.iter().filter(|r| r.matches(check)) {
            for channel in &route.channels {
                if !routed.contains(channel) {
                    routed.push(channel.clone());
                }
            }
        }
        if routed.is_empty() {
            self.default_channels.clone()
        } else {
            routed
        }
    }

    /// The maintenance windows covering `check` at `now`.
    pub fn maintenance_for(
        &self,
        check: &Check,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<&alerting::Maintenance> {
        self.maintenance
            .iter()
            .find(|m| m.applies_to(check) && m.active_at(now))
    }

    pub fn check(&self, name: &str) -> Option<&Arc<Check>> {
        self.checks.iter().find(|c| c.name == name)
    }
}

#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub kind: CheckKind,
    pub schedule: Schedule,
    pub timeout: Duration,
    /// `None`: every region known.
    pub regions: Option<Vec<String>>,
    pub expect: Expect,
    pub alert: AlertRules,
    pub labels: BTreeMap<String, String>,
    pub description: Option<String>,
    /// How the public status page shows it.
    pub status_page: StatusPageOptions,
    /// The YAML it was decoded from, to send to remote probes.
    pub source: Option<Arc<remote::CheckSource>>,
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

#[derive(Clone, Debug)]
pub struct TcpSpec {
    pub address: HostPort,
    /// Written after connecting, before reading the banner.
    pub send: Option<String>,
    /// A substring the banner (what the server sends first) must contain.
    pub expect: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TlsSpec {
    pub address: HostPort,
    /// SNI and the name the certificate must be valid for; default: the host.
    pub server_name: String,
    /// Trust only these roots (PEM); default: the system's.
    pub ca_file: Option<PathBuf>,
    /// A chain expiring sooner than this makes the check degraded.
    pub expires_within: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsRecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
}

impl DnsRecordType {
    const NAMES: [(&'static str, DnsRecordType); 6] = [
        ("A", DnsRecordType::A),
        ("AAAA", DnsRecordType::Aaaa),
        ("CNAME", DnsRecordType::Cname),
        ("MX", DnsRecordType::Mx),
        ("TXT", DnsRecordType::Txt),
        ("NS", DnsRecordType::Ns),
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("A")
    }
}

#[derive(Clone, Debug)]
pub struct DnsSpec {
    pub name: String,
    pub record_type: DnsRecordType,
    /// `None`: the system's resolver configuration.
    pub resolver: Option<std::net::SocketAddr>,
    /// Every value must be in the answer.
    pub expect: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct HeartbeatSpec {
    pub token: String,
    /// How often pings are due: an interval or a cron schedule.
    pub period: Schedule,
    pub grace: Duration,
}

#[derive(Clone, Debug)]
pub struct HttpSpec {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
    pub follow_redirects: bool,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// Empty: any 2xx.
    pub status: Vec<StatusRange>,
    pub body_contains: Option<String>,
    pub body_matches: Option<Regex>,
    pub max_latency: Option<Duration>,
}

/// One accepted status: `200`, or a class such as `2xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.low..=self.high).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}xx", self.low / 100)
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
        }
    }
}

#[derive(Clone, Debug)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Alerts raised within this window are folded into one message
    /// (0: each is sent at once).
    pub group_window: Duration,
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

/// Loads `checks_dir` and `alerts_dir` (every `*.yaml` / `*.yml`, in name
/// order) with the process environment.
pub fn load(checks_dir: &Path, alerts_dir: &Path) -> Result<Config, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    load_with_env(checks_dir, alerts_dir, &env)
}

pub fn load_with_env(
    checks_dir: &Path,
    alerts_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let checks = read_dir_yaml(checks_dir, true, &mut errors);
    let alerts = read_dir_yaml(alerts_dir, false, &mut errors);
    load_texts(&checks, &alerts, alerts_dir, env, errors)
}

/// The loader on files already read: `(path, text)` of each checks file and
/// each alerts file, in load order; `alerts_dir` only names the directory in
/// messages. What `load` does after reading, for tests and the fuzzing
/// harness (`tests/fuzz_config.rs`).
pub fn load_from_texts(
    checks: &[(PathBuf, String)],
    alerts: &[(PathBuf, String)],
    alerts_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigErrors> {
    load_texts(checks, alerts, alerts_dir, env, Vec::new())
}

fn load_texts(
    checks_files: &[(PathBuf, String)],
    alerts_files: &[(PathBuf, String)],
    alerts_dir: &Path,
    env: EnvLookup<'_>,
    mut errors: Vec<ConfigError>,
) -> Result<Config, ConfigErrors> {
    let mut secrets = Secrets::default();
    let mut checks: Vec<(Check, PathBuf, Pos)> = Vec::new();
    // Channel names each check refers to, with positions, for the cross-file pass.
    let mut channel_refs: Vec<(String, Pos, PathBuf)> = Vec::new();
    // Every check name seen, even of checks with other errors, for duplicates.
    let mut names: BTreeMap<String, (PathBuf, Pos)> = BTreeMap::new();
    let mut channels: BTreeMap<String, (Channel, PathBuf, Pos)> = BTreeMap::new();
    let mut defaults: Option<(Vec<(String, Pos)>, PathBuf)> = None;
    let mut routes = Vec::new();
    let mut maintenance = Vec::new();
    // Names alert files refer to, checked once every file is read.
    let mut alert_channel_refs: Vec<(String, Pos, PathBuf)> = Vec::new();
    let mut maintenance_check_refs: Vec<(String, Pos, PathBuf)> = Vec::new();

    for (file, text) in checks_files {
        let Some(root) = parse_file(file, text, &mut errors) else {
            continue;
        };
        let mut ctx = Ctx {
            file,
            errors: &mut errors,
            secrets: &mut secrets,
            env,
        };
        let mut refs = Refs::default();
        for (check, pos) in decode_checks_file(&mut ctx, &root, &mut refs) {
            checks.push((check, file.clone(), pos));
        }
        channel_refs.extend(
            refs.channels
                .into_iter()
                .map(|(name, pos)| (name, pos, file.clone())),
        );
        for (name, pos) in refs.names {
            if let Some((other_file, other_pos)) = names.get(&name) {
                errors.push(ConfigError {
                    file: file.clone(),
                    pos,
                    message: format!(
                        "duplicate check name `{name}` (first defined at {}:{}:{})",
                        other_file.display(),
                        other_pos.line,
                        other_pos.col
                    ),
                });
            } else {
                names.insert(name, (file.clone(), pos));
            }
        }
    }
    for (file, text) in alerts_files {
        let Some(root) = parse_file(file, text, &mut errors) else {
            continue;
        };
        let mut ctx = Ctx {
            file,
            errors: &mut errors,
            secrets: &mut secrets,
            env,
        };
        let decoded = decode_alerts_file(&mut ctx, &root);
        routes.extend(decoded.routes);
        maintenance.extend(decoded.maintenance);
        alert_channel_refs.extend(
            decoded
                .channel_refs
                .into_iter()
                .map(|(n, p)| (n, p, file.clone())),
        );
        maintenance_check_refs.extend(
            decoded
                .check_refs
                .into_iter()
                .map(|(n, p)| (n, p, file.clone())),
        );
        for (channel, pos) in decoded.channels {
            if let Some((_, other_file, other_pos)) = channels.get(&channel.name) {
                let message = format!(
                    "duplicate channel `{}` (first defined at {}:{}:{})",
                    channel.name,
                    other_file.display(),
                    other_pos.line,
                    other_pos.col
                );
                ctx.error(pos, message);
            } else {
                channels.insert(channel.name.clone(), (channel, file.clone(), pos));
            }
        }
        if let Some((list, pos)) = decoded.defaults {
            if let Some((_, other)) = &defaults {
                let message = format!("`defaults` is already set in {}", other.display());
                ctx.error(pos, message);
            } else {
                defaults = Some((list, file.clone()));
            }
        }
    }

    // Heartbeat tokens must be unique: a ping must name exactly one check.
    let mut tokens: BTreeMap<&str, &str> = BTreeMap::new();
    for (check, file, pos) in &checks {
        if let CheckKind::Heartbeat(spec) = &check.kind
            && let Some(other) = tokens.insert(&spec.token, &check.name)
        {
            errors.push(ConfigError {
                file: file.clone(),
                pos: *pos,
                message: format!(
                    "heartbeat `{}` has the same token as `{other}`; each needs its own",
                    check.name
                ),
            });
        }
    }
    // Cross-file check: channels that exist.
    let channel_names: Vec<&str> = channels.keys().map(String::as_str).collect();
    let unknown_channel = |name: &str, file: &Path, pos: Pos, errors: &mut Vec<ConfigError>| {
        if !channels.contains_key(name) {
            let hint = decode::suggest(name, &channel_names)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if channel_names.is_empty() {
                        format!("; no channels are defined in {}", alerts_dir.display())
                    } else {
                        format!("; defined channels: {}", channel_names.join(", "))
                    }
                });
            errors.push(ConfigError {
                file: file.to_path_buf(),
                pos,
                message: format!("unknown channel `{name}`{hint}"),
            });
        }
    };
    for (name, pos, file) in channel_refs.iter().chain(&alert_channel_refs) {
        unknown_channel(name, file, *pos, &mut errors);
    }
    for (name, pos, file) in &maintenance_check_refs {
        if !names.contains_key(name) {
            errors.push(ConfigError {
                file: file.clone(),
                pos: *pos,
                message: format!("maintenance names unknown check `{name}`"),
            });
        }
    }
    if let Some((list, file)) = &defaults {
        for (name, pos) in list {
            unknown_channel(name, file, *pos, &mut errors);
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors::masked(errors, &secrets));
    }
    Ok(Config {
        routes,
        maintenance,
        checks: checks.into_iter().map(|(c, _, _)| Arc::new(c)).collect(),
        channels: channels.into_iter().map(|(k, (c, _, _))| (k, c)).collect(),
        default_channels: defaults
            .map(|(list, _)| list.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default(),
        secrets: Arc::new(secrets),
    })
}

fn read_dir_yaml(
    dir: &Path,
    required: bool,
    errors: &mut Vec<ConfigError>,
) -> Vec<(PathBuf, String)> {
    let file_error = |file: PathBuf, message: String| ConfigError {
        file,
        pos: Pos { line: 0, col: 0 },
        message,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Vec::new(),
        Err(e) => {
            errors.push(file_error(
                dir.to_path_buf(),
                format!("cannot read directory: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) if is_config_file_name(&entry.path()) => paths.push(entry.path()),
            Ok(_) => {}
            Err(e) => errors.push(file_error(
                dir.to_path_buf(),
                format!("cannot list directory: {e}"),
            )),
        }
        if paths.len() > limits::CONFIG_DIR_FILES_MAX {
            errors.push(file_error(
                dir.to_path_buf(),
                format!(
                    "more than {} YAML files; this is not a config directory",
                    limits::CONFIG_DIR_FILES_MAX
                ),
            ));
            return Vec::new();
        }
    }
    paths.sort();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        match read_config_file(&path) {
            Ok(text) => out.push((path, text)),
            Err(message) => errors.push(file_error(path, message)),
        }
    }
    out
}

/// `*.yaml` and `*.yml`, except an editor's lock file (Emacs keeps a
/// dangling link `.#name.yaml` while a file is being edited).
fn is_config_file_name(path: &Path) -> bool {
    let yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let lock = path
        .file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b".#"));
    yaml && !lock
}

/// A config file's text, or why it cannot be one. Whatever is named like
/// one must be a readable regular file (or a link to one): a file silently
/// skipped is checks silently gone, so a dangling link, a link loop, a
/// directory, a FIFO (which would block the reader) or a device is an error
/// naming what it is.
pub(crate) fn read_config_file(path: &Path) -> Result<String, String> {
    match file_problem(path) {
        Some(FileProblem::Unreadable(message)) => Err(message),
        Some(FileProblem::Not(what)) => Err(format!(
            "is {what}, not a YAML file: rename it or move it out of the directory"
        )),
        None => read_bounded(path).map_err(|e| format!("cannot read file: {e}")),
    }
}

/// Why `path` is not a regular file one can read without blocking.
enum FileProblem {
    /// A link to nothing, a link loop, no permission...
    Unreadable(String),
    /// It is something else: a directory, a FIFO (whose read would block),
    /// a socket, a device.
    Not(&'static str),
}

fn file_problem(path: &Path) -> Option<FileProblem> {
    use std::os::unix::fs::FileTypeExt;
    let unreadable =
        |e: std::io::Error| Some(FileProblem::Unreadable(format!("cannot read file: {e}")));
    let link = match std::fs::symlink_metadata(path) {
        Ok(link) => link,
        Err(e) => return unreadable(e),
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if link.file_type().is_symlink() => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Some(FileProblem::Unreadable(
                if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) {
                    format!("symbolic link loop (it points to `{target}`)")
                } else if e.kind() == std::io::ErrorKind::NotFound {
                    format!("dangling symbolic link: `{target}` does not exist")
                } else {
                    format!("cannot follow the symbolic link to `{target}`: {e}")
                },
            ));
        }
        Err(e) => return unreadable(e),
    };
    let kind = meta.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some(FileProblem::Not("a directory"))
    } else if kind.is_fifo() {
        Some(FileProblem::Not("a FIFO (named pipe)"))
    } else if kind.is_socket() {
        Some(FileProblem::Not("a socket"))
    } else if kind.is_block_device() || kind.is_char_device() {
        Some(FileProblem::Not("a device"))
    } else {
        Some(FileProblem::Not("not a regular file"))
    }
}

/// A config file's text, refusing files over the limit before reading them whole.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limits::CONFIG_FILE_BYTES_MAX as u64 + 1)
        .read_to_string(&mut text)?;
    if text.len() > limits::CONFIG_FILE_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {} bytes; split it into several files",
            limits::CONFIG_FILE_BYTES_MAX
        )));
    }
    Ok(text)
}

fn parse_file(file: &Path, text: &str, errors: &mut Vec<ConfigError>) -> Option<Node> {
    match yaml::parse(text) {
        Ok(node) => Some(node),
        Err(e) => {
            errors.push(ConfigError {
                file: file.to_path_buf(),
                pos: e.pos,
                message: format!("invalid YAML: {}", e.message),
            });
            None
        }
    }
}

const CHECK_KINDS: [&str; 6] = ["http", "tcp", "tls", "dns", "browser", "heartbeat"];
const CHECK_KEYS: [&str; 17] = [
    "name",
    "description",
    "http",
    "tcp",
    "tls",
    "dns",
    "browser",
    "heartbeat",
    "every",
    "cron",
    "tz",
    "timeout",
    "regions",
    "expect",
    "alert",
    "labels",
    "status_page",
];

/// Names a checks file uses, with positions, for the cross-file pass.
#[derive(Default)]
struct Refs {
    names: Vec<(String, Pos)>,
    channels: Vec<(String, Pos)>,
}

fn decode_checks_file(ctx: &mut Ctx, root: &Node, refs: &mut Refs) -> Vec<(Check, Pos)> {
    if matches!(root.value, Value::Null) {
        return Vec::new();
    }
    let Some(top) = ctx.fields(root, "a checks file", &["checks"]) else {
        return Vec::new();
    };
    let Some(list_node) = top.get("checks") else {
        ctx.error(root.pos, "a checks file holds a list under `checks:`");
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
            check.source = Some(Arc::new(remote::CheckSource::new(
                ctx.file.to_path_buf(),
                item.clone(),
                used.into_inner(),
            )));
            checks.push((check, item.pos));
        }
    }
    checks
}

/// Check and channel names appear in URLs, metric labels and subjects.
const NAME_CHARS_MAX: usize = 64;

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_CHARS_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn decode_check(ctx: &mut Ctx, node: &Node, refs: &mut Refs) -> Option<Check> {
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
        Some(n) => decode_expect(ctx, &name, n),
        None => Some(Expect::default()),
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
    let status_page = match fields.get("status_page") {
        Some(n) => decode_status_page(ctx, &name, n),
        None => Some(StatusPageOptions::default()),
    };
    Some(Check {
        name: valid_name?,
        kind: kind?,
        schedule: schedule?,
        timeout: timeout?,
        regions: regions?,
        expect: expect?,
        alert: alert?,
        labels: labels?,
        description,
        status_page: status_page?,
        source: None,
    })
}

fn decode_status_page(ctx: &mut Ctx, name: &str, node: &Node) -> Option<StatusPageOptions> {
    let fields = ctx.fields(
        node,
        &format!("`status_page` of check `{name}`"),
        &["hidden", "hide_target"],
    )?;
    let mut options = StatusPageOptions::default();
    let mut ok = true;
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
        other => {
            ctx.error(
                spec.pos,
                format!("check kind `{other}` is not available in this version of Lookout yet"),
            );
            None
        }
    }
}

fn host_port(ctx: &mut Ctx, fields: &decode::Fields, key: &str, what: &str) -> Option<HostPort> {
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

fn optional_string(ctx: &mut Ctx, fields: &decode::Fields, key: &str) -> Option<Option<String>> {
    match fields.get(key) {
        Some(n) => ctx.string(n, &format!("`{key}`")).map(Some),
        None => Some(None),
    }
}

fn decode_tcp(ctx: &mut Ctx, name: &str, node: &Node) -> Option<TcpSpec> {
    let what = format!("`tcp` of check `{name}`");
    let fields = ctx.fields(node, &what, &["address", "send", "expect"])?;
    let address = host_port(ctx, &fields, "address", &what);
    let send = optional_string(ctx, &fields, "send");
    let expect = optional_string(ctx, &fields, "expect");
    Some(TcpSpec {
        address: address?,
        send: send?,
        expect: expect?,
    })
}

/// Default `expires_within` for `tls` checks: two weeks of warning.
const TLS_EXPIRES_WITHIN_DEFAULT: Duration = Duration::from_secs(14 * 86_400);

fn decode_tls(ctx: &mut Ctx, name: &str, node: &Node) -> Option<TlsSpec> {
    let what = format!("`tls` of check `{name}`");
    let fields = ctx.fields(
        node,
        &what,
        &["address", "server_name", "ca_file", "expires_within"],
    )?;
    let address = host_port(ctx, &fields, "address", &what);
    let server_name = optional_string(ctx, &fields, "server_name");
    let ca_file = match fields.get("ca_file") {
        Some(n) => decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    let expires_within = match fields.get("expires_within") {
        Some(n) => ctx.duration(n, "`expires_within`"),
        None => Some(TLS_EXPIRES_WITHIN_DEFAULT),
    };
    let address = address?;
    let server_name = server_name?.unwrap_or_else(|| address.host.clone());
    if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
        ctx.error(
            fields.pos,
            format!("`{server_name}` is not a valid TLS server name"),
        );
        return None;
    }
    Some(TlsSpec {
        address,
        server_name,
        ca_file: ca_file?,
        expires_within: expires_within?,
    })
}

fn decode_ca_file(ctx: &mut Ctx, node: &Node) -> Option<PathBuf> {
    let path = PathBuf::from(ctx.string(node, "`ca_file`")?);
    // A FIFO is never opened: reading it would hang the loader (and a
    // reload with it). What cannot be read at all, read_ca_file says.
    if let Some(FileProblem::Not(what)) = file_problem(&path) {
        let message = format!(
            "ca_file {} is {what}, not a certificate file",
            path.display()
        );
        ctx.error(node.pos, message);
        return None;
    }
    match crate::config::ca::read_ca_file(&path) {
        Ok(_) => Some(path),
        Err(message) => {
            ctx.error(node.pos, message);
            None
        }
    }
}

fn decode_dns(ctx: &mut Ctx, name: &str, node: &Node) -> Option<DnsSpec> {
    let what = format!("`dns` of check `{name}`");
    let fields = ctx.fields(node, &what, &["name", "type", "resolver", "expect"])?;
    let query = match fields.get("name") {
        Some(n) => ctx.string(n, "`name`").and_then(|q| {
            if q.is_empty() || q.len() > 253 {
                ctx.error(n.pos, "`name` must be a domain name of 1 to 253 characters");
                None
            } else {
                Some(q)
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs the `name` to look up"));
            None
        }
    };
    let record_type = match fields.get("type") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`type`")?.to_ascii_uppercase();
            match DnsRecordType::NAMES.iter().find(|(k, _)| *k == text) {
                Some((_, t)) => Some(*t),
                None => {
                    ctx.error(n.pos, format!("unsupported record type `{text}`; expected A, AAAA, CNAME, MX, TXT or NS"));
                    None
                }
            }
        }),
        None => Some(DnsRecordType::A),
    };
    let resolver = match fields.get("resolver") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`resolver`")?;
            let parsed = text.parse::<std::net::SocketAddr>().or_else(|_| {
                text.parse::<std::net::IpAddr>()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
            });
            match parsed {
                Ok(addr) => Some(Some(addr)),
                Err(_) => {
                    ctx.error(
                        n.pos,
                        format!("`resolver` `{text}` must be ip:port (or an IP, for port 53)"),
                    );
                    None
                }
            }
        }),
        None => Some(None),
    };
    let expect = match fields.get("expect") {
        Some(n) => match &n.value {
            Value::Seq(_) => ctx
                .string_list(n, "`expect`")
                .map(|l| l.into_iter().map(|(s, _)| s).collect()),
            _ => ctx.string(n, "`expect`").map(|s| vec![s]),
        },
        None => Some(Vec::new()),
    };
    Some(DnsSpec {
        name: query?,
        record_type: record_type?,
        resolver: resolver?,
        expect: expect?,
    })
}

/// Heartbeat tokens shorter than this could be guessed from outside.
const HEARTBEAT_TOKEN_CHARS_MIN: usize = 16;

fn decode_heartbeat(ctx: &mut Ctx, name: &str, node: &Node) -> Option<HeartbeatSpec> {
    let what = format!("`heartbeat` of check `{name}`");
    let fields = ctx.fields(node, &what, &["token", "period", "grace", "tz"])?;
    let token = match fields.get("token") {
        Some(n) => ctx.string(n, "`token`").and_then(|t| {
            let valid = t.len() >= HEARTBEAT_TOKEN_CHARS_MIN
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if valid {
                ctx.secrets.add(&t);
                Some(t)
            } else {
                ctx.error(
                    n.pos,
                    format!("`token` must be at least {HEARTBEAT_TOKEN_CHARS_MIN} characters of [A-Za-z0-9_-]: it is the ping URL's only secret"),
                );
                None
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `token`"));
            None
        }
    };
    let tz = match fields.get("tz") {
        Some(n) => {
            decode::field(|| {
                let text = ctx.string(n, "`tz`")?;
                match text.parse::<Tz>() {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        ctx.error(n.pos, format!("unknown time zone `{text}`; expected an IANA name such as Europe/Paris"));
                        None
                    }
                }
            })
        }
        None => Some(Tz::UTC),
    };
    let period = match fields.get("period") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`period`")?;
            // A duration (`24h`), or a cron expression for when the job runs.
            let looks_like_cron = text.split_whitespace().count() == 5 || text.starts_with('@');
            match crate::schedule::parse_duration(&text) {
                Ok(d) if !d.is_zero() => Some(Schedule::Every(d)),
                _ if looks_like_cron => match CronSchedule::parse(&text, tz.unwrap_or(Tz::UTC)) {
                    Ok(cron) => Some(Schedule::Cron(Box::new(cron))),
                    Err(message) => {
                        ctx.error(n.pos, message);
                        None
                    }
                },
                _ => {
                    ctx.error(n.pos, format!("`period` `{text}` must be a duration (24h) or a cron expression (\"0 2 * * *\")"));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, format!("{what} needs a `period`"));
            None
        }
    };
    let grace = match fields.get("grace") {
        Some(n) => ctx.duration(n, "`grace`"),
        None => Some(Duration::ZERO),
    };
    Some(HeartbeatSpec {
        token: token?,
        period: period?,
        grace: grace?,
    })
}

const HTTP_KEYS: [&str; 7] = [
    "url",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "tls_verify",
    "ca_file",
];

fn decode_http(ctx: &mut Ctx, name: &str, node: &Node) -> Option<HttpSpec> {
    let fields = ctx.fields(node, &format!("`http` of check `{name}`"), &HTTP_KEYS)?;
    let url = match fields.get("url") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`url`")?;
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                Ok(url) => {
                    ctx.error(
                        n.pos,
                        format!(
                            "`url` must be http:// or https:// with a host, found scheme `{}`",
                            url.scheme()
                        ),
                    );
                    None
                }
                Err(e) => {
                    // Shown as typed: `ConfigErrors::masked` writes secrets as `${NAME}`.
                    let shown = &text;
                    ctx.error(n.pos, format!("invalid URL `{shown}`: {e}"));
                    None
                }
            }
        }),
        None => {
            ctx.error(fields.pos, "`http` needs a `url`");
            None
        }
    };
    let method = match fields.get("method") {
        Some(n) => decode::field(|| {
            let text = ctx.string(n, "`method`")?.to_ascii_uppercase();
            match text.as_str() {
                "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => {
                    Method::from_bytes(text.as_bytes()).ok()
                }
                _ => {
                    ctx.error(n.pos, format!("unsupported method `{text}`; expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"));
                    None
                }
            }
        }),
        None => Some(Method::GET),
    };
    let headers = match fields.get("headers") {
        Some(n) => decode::field(|| {
            let pairs = ctx.string_map(n, "`headers`")?;
            let mut headers = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                match (
                    HeaderName::from_bytes(k.as_bytes()),
                    HeaderValue::from_str(&v),
                ) {
                    (Ok(k), Ok(mut v)) => {
                        v.set_sensitive(true);
                        headers.push((k, v));
                    }
                    (Err(_), _) => ctx.error(n.pos, format!("invalid header name `{k}`")),
                    (_, Err(_)) => ctx.error(n.pos, format!("invalid value for header `{k}`")),
                }
            }
            Some(headers)
        }),
        None => Some(Vec::new()),
    };
    let body = match fields.get("body") {
        Some(n) => ctx.string(n, "`body`"),
        None => None,
    };
    let follow_redirects = match fields.get("follow_redirects") {
        Some(n) => ctx.bool(n, "`follow_redirects`"),
        None => Some(true),
    };
    let tls_verify = match fields.get("tls_verify") {
        Some(n) => ctx.bool(n, "`tls_verify`"),
        None => Some(true),
    };
    let ca_file = match fields.get("ca_file") {
        Some(n) => decode_ca_file(ctx, n).map(Some),
        None => Some(None),
    };
    Some(HttpSpec {
        url: url?,
        method: method?,
        headers: headers?,
        body,
        follow_redirects: follow_redirects?,
        tls_verify: tls_verify?,
        ca_file: ca_file?,
    })
}

fn decode_expect(ctx: &mut Ctx, name: &str, node: &Node) -> Option<Expect> {
    let fields = ctx.fields(
        node,
        &format!("`expect` of check `{name}`"),
        &["status", "body_contains", "body_matches", "max_latency"],
    )?;
    let mut expect = Expect::default();
    let mut ok = true;
    if let Some(n) = fields.get("status") {
        let items: Vec<&Node> = match &n.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![n],
        };
        for item in items {
            match parse_status(&item.value) {
                Some(range) => expect.status.push(range),
                None => {
                    ctx.error(
                        item.pos,
                        "`status` entries must be codes (100-599) or classes such as 2xx",
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(n) = fields.get("body_contains") {
        expect.body_contains = ctx.string(n, "`body_contains`");
        ok &= expect.body_contains.is_some();
    }
    if let Some(n) = fields.get("body_matches") {
        let compiled = ctx.string(n, "`body_matches`").and_then(|pattern| {
            match regex::RegexBuilder::new(&pattern)
                .size_limit(limits::REGEX_BYTES_MAX)
                .build()
            {
                Ok(re) => Some(re),
                Err(e) => {
                    let why = e.to_string().lines().last().unwrap_or_default().to_string();
                    ctx.error(
                        n.pos,
                        format!("invalid regular expression in `body_matches`: {why}"),
                    );
                    None
                }
            }
        });
        ok &= compiled.is_some();
        expect.body_matches = compiled;
    }
    if let Some(n) = fields.get("max_latency") {
        expect.max_latency = ctx.duration(n, "`max_latency`");
        ok &= expect.max_latency.is_some();
    }
    ok.then_some(expect)
}

fn parse_status(value: &Value) -> Option<StatusRange> {
    let text = match value {
        Value::Number(n) | Value::String(n) => n.trim().to_ascii_lowercase(),
        _ => return None,
    };
    if let Some(class) = text.strip_suffix("xx") {
        let class: u16 = class.parse().ok().filter(|c| (1..=5).contains(c))?;
        return Some(StatusRange {
            low: class * 100,
            high: class * 100 + 99,
        });
    }
    let code: u16 = text.parse().ok().filter(|c| (100..=599).contains(c))?;
    Some(StatusRange {
        low: code,
        high: code,
    })
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

struct AlertsFile {
    channels: Vec<(Channel, Pos)>,
    defaults: Option<(Vec<(String, Pos)>, Pos)>,
    routes: Vec<alerting::Route>,
    maintenance: Vec<alerting::Maintenance>,
    /// Channel names routes use, and check names maintenance windows name.
    channel_refs: Vec<(String, Pos)>,
    check_refs: Vec<(String, Pos)>,
}

fn decode_alerts_file(ctx: &mut Ctx, root: &Node) -> AlertsFile {
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
                if let Some((kind, group_window)) = decode_channel(ctx, &name, spec) {
                    out.channels.push((
                        Channel {
                            name,
                            kind,
                            group_window,
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

fn decode_channel(ctx: &mut Ctx, name: &str, node: &Node) -> Option<(ChannelKind, Duration)> {
    let fields = ctx.fields(
        node,
        &format!("channel `{name}`"),
        &["email", "webhook", "group_window"],
    )?;
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
    Some((kind?, group_window?))
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

#[cfg(test)]
mod tests;

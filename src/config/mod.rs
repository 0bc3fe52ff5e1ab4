//! The user's declarations: checks (`checks/*.yaml`) and alert channels
//! (`alerts/*.yaml`), loaded, interpolated from the environment and validated.
//!
//! Loading never stops at the first mistake: it returns a `Config` only when
//! every file is valid, and otherwise every error it found, each with its file,
//! line and column. The daemon, `lookout validate` and `lookout check` all use
//! this one loader, so what validates is exactly what runs.
//!
//! This file is the loader: reading the directories (regular files only,
//! bounded), parsing, the cross-file rules (unique names and tokens, channels
//! and checks that exist) and the sorted, masked errors. What each part of
//! a file means is decoded beside its model: `check.rs` a check's common
//! settings and the kind dispatch, one file per kind (`http.rs`, `tcp.rs`,
//! `tls.rs`, `dns.rs`, `heartbeat.rs`, `browser/`), `expect.rs`,
//! `channels.rs` (and the alerts file's top level), `alerting.rs` routes
//! and maintenance windows; the types are re-exported here, so every one is
//! `crate::config::Name`.

pub mod alerting;
pub mod browser;
pub mod ca;
mod channel_template;
mod channels;
mod check;
mod connection;
mod decode;
mod depends;
mod dns;
mod expect;
mod grpc;
mod heartbeat;
mod http;
mod icmp;
pub mod page;
pub mod probes;
pub mod remote;
pub mod secrets;
mod tcp;
mod tls;
mod websocket;
pub mod yaml;

pub use channel_template::{BODY_KINDS, WebhookTemplate, engine as template_engine};
pub use channels::{Channel, ChannelKind, EmailChannel, WebhookChannel, WebhookFormat};
pub use check::{AlertRules, Check, CheckKind, HostPort, IpFamily, StatusPageOptions};
pub use check::{Escalation, Flapping};
pub use connection::TlsOptions;
pub use dns::{DnsRecordType, DnsSpec};
pub use expect::{Expect, HeaderAssertion, HttpVersion, JsonAssertion, JsonOp, StatusRange};
pub use grpc::GrpcSpec;
pub use heartbeat::HeartbeatSpec;
pub use http::HttpSpec;
pub use icmp::IcmpSpec;
pub use secrets::Secrets;
pub use tcp::TcpSpec;
pub use tls::{TlsClientOptions, TlsSpec};
pub use websocket::WebsocketSpec;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::limits;
use channels::decode_alerts_file;
use check::{Refs, decode_checks_file};
use decode::{Ctx, EnvLookup};
use yaml::{Node, Pos};

/// One problem in one file, printed as `path:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // One line, whoever built the message (`Ctx::error` already
        // escapes what it quotes).
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.pos.line,
            self.pos.col,
            self.message.replace('\r', "\\r").replace('\n', "\\n")
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
    /// A checks file's `status_page:` (defaults when none has one).
    pub page: Arc<page::PageSettings>,
    /// The announcements written in the checks files (read only).
    pub announcements: Vec<page::Announcement>,
    /// A hash of the files it was loaded from (names and texts, before
    /// `${VAR}`s are filled in, so no secret goes into it): replicas of one
    /// aggregator compare theirs to see that they run the same config.
    pub source_hash: String,
    /// Where each check is in `checks`, by name, built at the first
    /// lookup: a result names its check several times on its way in, and a
    /// scan of 10,000 names each time made ingest cost O(checks) per
    /// result (#19).
    by_name: std::sync::OnceLock<HashMap<Box<str>, usize>>,
}

impl Config {
    /// Drops each check's source tree, keeping its fingerprint: for a
    /// process no remote probe fetches checks from (`serve`), where the
    /// trees would only take memory.
    pub fn forget_trees(&mut self) {
        for check in &mut self.checks {
            if let Some(source) = &check.source
                && source.node.is_some()
            {
                let light = Arc::new(source.without_tree());
                Arc::make_mut(check).source = Some(light);
            }
        }
    }

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
        let index = self.by_name.get_or_init(|| {
            let mut index = HashMap::with_capacity(self.checks.len());
            for (at, check) in self.checks.iter().enumerate() {
                // The first of a name, as the scan below finds.
                index.entry(check.name.as_str().into()).or_insert(at);
            }
            index
        });
        match index.get(name).and_then(|&at| self.checks.get(at)) {
            Some(check) if check.name == name => Some(check),
            // Not in the index, or `checks` was edited after it was built
            // (tests do): the scan is always right.
            _ => self.checks.iter().find(|c| c.name == name),
        }
    }
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
    // The status page's settings and announcements, per file.
    let mut page_refs: Vec<(page::PageRefs, PathBuf)> = Vec::new();
    // `depends_on` edges, checked once every checks file is read.
    let mut depends: Vec<(String, String, Pos, PathBuf)> = Vec::new();

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
        page_refs.push((std::mem::take(&mut refs.page), file.clone()));
        depends.extend(
            std::mem::take(&mut refs.depends)
                .into_iter()
                .map(|(check, dep, pos)| (check, dep, pos, file.clone())),
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
        let decoded = decode_alerts_file(&mut ctx, &root, text);
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

    let (page, announcements) = page_across_files(page_refs, &names, &mut errors);
    depends::check_dependencies(&depends, &names, &mut errors);

    if !errors.is_empty() {
        return Err(ConfigErrors::masked(errors, &secrets));
    }
    Ok(Config {
        page: Arc::new(page),
        announcements,
        routes,
        maintenance,
        // Collected into a new vector: an in-place collect would keep the
        // decoded checks' whole buffer (870 bytes a check) for 8-byte
        // pointers for as long as the config lives (#19).
        checks: {
            let mut arcs = Vec::with_capacity(checks.len());
            arcs.extend(checks.into_iter().map(|(c, _, _)| Arc::new(c)));
            arcs
        },
        channels: channels.into_iter().map(|(k, (c, _, _))| (k, c)).collect(),
        default_channels: defaults
            .map(|(list, _)| list.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default(),
        secrets: Arc::new(secrets),
        source_hash: source_hash(checks_files, alerts_files),
        by_name: Default::default(),
    })
}

/// SHA-256 over each file's name and text, checks files then alerts files
/// in load order (hex, the first 16 bytes: enough to tell configs apart).
fn source_hash(checks: &[(PathBuf, String)], alerts: &[(PathBuf, String)]) -> String {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for (kind, files) in [("checks", checks), ("alerts", alerts)] {
        for (path, text) in files {
            // The name only: two replicas may keep the same files at
            // different paths.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            for part in [kind.as_bytes(), name.as_bytes(), text.as_bytes()] {
                digest.update(&(part.len() as u64).to_le_bytes());
                digest.update(part);
            }
        }
    }
    hex::encode(&digest.finish().as_ref()[..16])
}

/// The cross-file rules of the status page: one `status_page:` in all the
/// checks files, groups and announcements naming checks and groups that
/// exist, announcement ids unique.
fn page_across_files(
    files: Vec<(page::PageRefs, PathBuf)>,
    names: &BTreeMap<String, (PathBuf, Pos)>,
    errors: &mut Vec<ConfigError>,
) -> (page::PageSettings, Vec<page::Announcement>) {
    let mut settings: Option<(page::PageSettings, PathBuf)> = None;
    let mut announcements: Vec<page::Announcement> = Vec::new();
    let mut group_refs = Vec::new();
    let mut error = |file: &Path, pos: Pos, message: String| {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            pos,
            message,
        })
    };
    for (refs, file) in files {
        for (found, pos) in refs.settings {
            match &settings {
                Some((_, other)) => error(
                    &file,
                    pos,
                    format!("`status_page` is already set in {}", other.display()),
                ),
                None => settings = Some((found, file.clone())),
            }
        }
        for (name, pos) in refs.check_refs {
            if !names.contains_key(&name) {
                let known: Vec<&str> = names.keys().map(String::as_str).collect();
                let hint = decode::suggest(&name, &known)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                error(
                    &file,
                    pos,
                    format!("the status page names unknown check `{name}`{hint}"),
                );
            }
        }
        group_refs.extend(
            refs.group_refs
                .into_iter()
                .map(|(g, p)| (g, p, file.clone())),
        );
        for (announcement, pos) in refs.announcements {
            if announcements.iter().any(|a| a.id == announcement.id) {
                error(
                    &file,
                    pos,
                    format!("duplicate announcement id `{}`", announcement.id),
                );
            } else {
                announcements.push(announcement);
            }
        }
    }
    let settings = settings.map(|(s, _)| s).unwrap_or_default();
    for (group, pos, file) in group_refs {
        if !settings.groups.iter().any(|g| g.name == group) {
            error(&file, pos, format!("no status page group named `{group}`"));
        }
    }
    (settings, announcements)
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
#[cfg(test)]
mod tests;

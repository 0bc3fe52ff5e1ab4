//! Gatus configuration to Lookout checks and alert channels.
//!
//! Gatus (github.com/TwiN/gatus) keeps `endpoints:` (one probe each, judged
//! by `conditions` such as `[STATUS] == 200`) and `alerting:` (providers) in
//! one file or a directory of files it merges: endpoint lists are
//! concatenated, `alerting` providers merged. Each endpoint becomes one
//! check (two when `[CERTIFICATE_EXPIRATION]` adds a `tls` check); each
//! condition, client setting and alert that Lookout judges the same way is
//! carried over, and everything else is a `Note` at its line. An endpoint
//! converts fully when it left no note behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

mod alerting;

use super::{
    Conversion, ImportError, Note, Y, entries, get, items, lookout_name, text, unique_name,
};
use crate::config::yaml::{Node, Value};

/// Expands directories (their `*.yaml`/`*.yml`, recursively, in name
/// order, as Gatus reads them), reads and converts.
pub fn convert_paths(paths: &[PathBuf]) -> Result<Conversion, ImportError> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files, 0)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|f| seen.insert(f.clone()));
    let mut docs = Vec::new();
    for f in files {
        let node = super::read(&f)?;
        docs.push((f, node));
    }
    Ok(convert(&docs))
}

fn collect(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<(), ImportError> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if depth > 8 {
        return Ok(());
    }
    let read = std::fs::read_dir(path).map_err(|e| ImportError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut children: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let yaml = child.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if child.is_dir() {
            collect(&child, out, depth + 1)?;
        } else if yaml {
            out.push(child);
        }
    }
    Ok(())
}

struct Ctx<'a> {
    file: &'a Path,
    notes: Vec<Note>,
}

impl Ctx<'_> {
    fn note(&mut self, node: &Node, message: impl Into<String>) {
        self.notes.push(Note {
            file: self.file.to_path_buf(),
            line: node.pos.line,
            message: message.into(),
        });
    }
}

/// Converts parsed documents, in the order Gatus merges them.
pub fn convert(docs: &[(PathBuf, Node)]) -> Conversion {
    let mut conversion = Conversion {
        source: "Gatus",
        unit: "endpoints",
        ..Conversion::default()
    };
    let mut channels: BTreeSet<String> = BTreeSet::new();
    let mut maintenance = Vec::new();
    // Providers first: endpoints name them in `alerts`.
    for (file, root) in docs {
        let mut ctx = Ctx {
            file,
            notes: Vec::new(),
        };
        for (key, value) in entries(root) {
            match key {
                "endpoints" | "external-endpoints" => {}
                "maintenance" => {
                    if let Some(window) = alerting::maintenance(&mut ctx.notes, file, value) {
                        maintenance.push(window);
                    }
                }
                "alerting" => {
                    for (provider, spec) in entries(value) {
                        if let Some(channel) = alerting::provider_channel(&mut ctx, provider, spec)
                        {
                            channels.insert(provider.to_string());
                            conversion.channels.push((provider.to_string(), channel));
                        }
                    }
                }
                other => ctx.note(
                    value,
                    format!("top-level `{other}` has no Lookout equivalent (not converted)"),
                ),
            }
        }
        conversion.notes.extend(ctx.notes);
    }
    let mut taken = BTreeSet::new();
    for (file, root) in docs {
        let Some(list) = get(root, "endpoints") else {
            continue;
        };
        for endpoint in items(list) {
            conversion.total += 1;
            let mut ctx = Ctx {
                file,
                notes: Vec::new(),
            };
            let made = endpoint_checks(&mut ctx, endpoint, &channels, &mut taken);
            match (made.is_empty(), ctx.notes.is_empty()) {
                (true, _) => {}
                (false, true) => conversion.full += 1,
                (false, false) => conversion.partial += 1,
            }
            conversion.checks.extend(made);
            conversion.notes.extend(ctx.notes);
        }
        for external in get(root, "external-endpoints").map(items).unwrap_or(&[]) {
            conversion.total += 1;
            let mut ctx = Ctx {
                file,
                notes: Vec::new(),
            };
            if let Some(check) = external_check(&mut ctx, external, &channels, &mut taken) {
                conversion.checks.push(check);
                if ctx.notes.is_empty() {
                    conversion.full += 1;
                } else {
                    conversion.partial += 1;
                }
            }
            conversion.notes.extend(ctx.notes);
        }
    }
    // Gatus's maintenance covers every endpoint.
    let names: Vec<Y> = conversion
        .checks
        .iter()
        .filter_map(|c| c.get("name").cloned())
        .collect();
    for mut window in maintenance {
        if names.is_empty() {
            break;
        }
        window.put("checks", Y::List(names.clone()));
        conversion.maintenance.push(window);
    }
    conversion
}

/// An `external-endpoints` entry (results pushed to Gatus) as a heartbeat
/// check: its token when Lookout accepts it, `heartbeat.interval` as the
/// period. The sender must then call Lookout's `/ping/TOKEN`, which is said.
fn external_check(
    ctx: &mut Ctx,
    node: &Node,
    channels: &BTreeSet<String>,
    taken: &mut BTreeSet<String>,
) -> Option<Y> {
    let name = get(node, "name").and_then(text).unwrap_or_default();
    let token_node = get(node, "token");
    let token = token_node.and_then(s).unwrap_or_default();
    let valid_token = token.starts_with("${")
        || (token.len() >= 16
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    if !valid_token {
        ctx.note(
            token_node.unwrap_or(node),
            format!("external endpoint `{name}`: a heartbeat token needs 16 or more characters of [A-Za-z0-9_-] (not converted)"),
        );
        return None;
    }
    let period = get(node, "heartbeat")
        .and_then(|h| get(h, "interval"))
        .and_then(s);
    let Some(period) = period.filter(|p| crate::schedule::parse_duration(p).is_ok()) else {
        ctx.note(node, format!("external endpoint `{name}` has no `heartbeat.interval`: Lookout's heartbeat needs a period (not converted)"));
        return None;
    };
    let mut heartbeat = Y::Map(Vec::new());
    heartbeat.put("token", Y::s(token));
    heartbeat.put("period", Y::s(period));
    let mut check = Y::Map(vec![(
        "name".into(),
        Y::s(unique_name(lookout_name(&name), taken)),
    )]);
    check.put("heartbeat", heartbeat);
    if let Some(g) = get(node, "group").and_then(s) {
        check.put(
            "labels",
            Y::Map(vec![("group".into(), Y::s(lookout_name(&g)))]),
        );
    }
    let mut alert = Y::Map(Vec::new());
    for (key, value) in entries(node) {
        match key {
            "name" | "token" | "heartbeat" | "group" => {}
            "alerts" => alerts(ctx, value, channels, &mut alert),
            other => ctx.note(
                value,
                format!("`{other}` of an external endpoint has no Lookout equivalent"),
            ),
        }
    }
    if let Y::Map(a) = &alert
        && !a.is_empty()
    {
        check.put("alert", alert);
    }
    ctx.note(
        node,
        format!("external endpoint `{name}`: the job must now ping Lookout's /ping/TOKEN instead of Gatus's /api/v1/endpoints/.../external"),
    );
    Some(check)
}

/// `$NAME` as Gatus expands it (os.ExpandEnv) is `${NAME}` for Lookout.
fn env(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == '$'
            && i + 1 < bytes.len()
            && (bytes[i + 1].is_ascii_alphabetic() || bytes[i + 1] == '_')
        {
            let mut j = i + 1;
            while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == '_') {
                j += 1;
            }
            let name: String = bytes[i + 1..j].iter().collect();
            out.push_str(&format!("${{{name}}}"));
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn s(node: &Node) -> Option<String> {
    text(node).map(|t| env(&t))
}

/// The kind an endpoint's URL says.
enum Target {
    Http(String),
    Tcp(String),
    Icmp(String),
    Dns(String),
    Grpc(String, bool),
    Tls(String),
    Websocket(String),
}

fn target(ctx: &mut Ctx, endpoint: &Node, url_node: &Node, url: &str) -> Option<Target> {
    let lower = url.to_ascii_lowercase();
    let rest = |p: &str| url[p.len()..].trim_end_matches('/').to_string();
    if get(endpoint, "dns").is_some() {
        let server = url
            .trim_start_matches("tcp://")
            .trim_start_matches("udp://")
            .to_string();
        let server =
            if server.contains(':') && !server.starts_with('[') && server.matches(':').count() == 1
            {
                server
            } else {
                format!("{server}:53")
            };
        return Some(Target::Dns(server));
    }
    if get(endpoint, "grpc").is_some()
        || lower.starts_with("grpc://")
        || lower.starts_with("grpcs://")
    {
        let (address, tls) = if lower.starts_with("grpcs://") {
            (rest("grpcs://"), true)
        } else if lower.starts_with("grpc://") {
            (rest("grpc://"), false)
        } else {
            (url.to_string(), url.ends_with(":443"))
        };
        return Some(Target::Grpc(address, tls));
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(Target::Http(url.to_string()));
    }
    if lower.starts_with("tcp://") {
        return Some(Target::Tcp(rest("tcp://")));
    }
    if lower.starts_with("icmp://") {
        return Some(Target::Icmp(rest("icmp://")));
    }
    if lower.starts_with("tls://") {
        return Some(Target::Tls(rest("tls://")));
    }
    if lower.starts_with("ws://") || lower.starts_with("wss://") {
        return Some(Target::Websocket(url.to_string()));
    }
    ctx.note(
        url_node,
        format!("`url` `{url}`: Lookout has no check of this kind (endpoint not converted)"),
    );
    None
}

fn endpoint_checks(
    ctx: &mut Ctx,
    endpoint: &Node,
    channels: &BTreeSet<String>,
    taken: &mut BTreeSet<String>,
) -> Vec<Y> {
    let Some(name_node) = get(endpoint, "name") else {
        ctx.note(endpoint, "an endpoint without a `name` (not converted)");
        return Vec::new();
    };
    let gatus_name = text(name_node).unwrap_or_default();
    if let Some(n) = get(endpoint, "enabled")
        && matches!(n.value, Value::Bool(false))
    {
        ctx.note(n, format!("endpoint `{gatus_name}` is disabled (`enabled: false`): left out, as Gatus leaves it"));
        return Vec::new();
    }
    let Some(url_node) = get(endpoint, "url") else {
        ctx.note(
            endpoint,
            format!("endpoint `{gatus_name}` has no `url` (not converted)"),
        );
        return Vec::new();
    };
    let url = s(url_node).unwrap_or_default();
    let Some(target) = target(ctx, endpoint, url_node, &url) else {
        return Vec::new();
    };
    let name = unique_name(lookout_name(&gatus_name), taken);
    let mut check = Y::Map(vec![("name".into(), Y::s(name.clone()))]);
    let mut kind = Y::Map(Vec::new());
    let kind_name = match &target {
        Target::Http(u) => {
            kind.put("url", Y::s(u.clone()));
            "http"
        }
        Target::Tcp(a) => {
            kind.put("address", Y::s(a.clone()));
            "tcp"
        }
        Target::Icmp(h) => {
            kind.put("host", Y::s(h.clone()));
            "icmp"
        }
        Target::Dns(server) => {
            let dns = get(endpoint, "dns");
            let query = dns
                .and_then(|d| get(d, "query-name"))
                .and_then(s)
                .unwrap_or_default();
            kind.put("name", Y::s(query));
            if let Some(t) = dns.and_then(|d| get(d, "query-type")).and_then(s) {
                kind.put("type", Y::s(t.to_ascii_uppercase()));
            }
            kind.put("resolver", Y::s(server.clone()));
            "dns"
        }
        Target::Grpc(address, tls) => {
            kind.put("address", Y::s(address.clone()));
            if *tls {
                kind.put("tls", Y::Bool(true));
            }
            "grpc"
        }
        Target::Tls(a) => {
            kind.put("address", Y::s(a.clone()));
            "tls"
        }
        Target::Websocket(u) => {
            kind.put("url", Y::s(u.clone()));
            "websocket"
        }
    };
    let mut expect = Y::Map(Vec::new());
    let mut extra = Vec::new();
    let mut labels = Y::Map(Vec::new());
    let mut alert = Y::Map(Vec::new());
    let mut page = Y::Map(Vec::new());
    let mut every = Y::s("60s");
    let mut timeout = None;
    for (key, value) in entries(endpoint) {
        match key {
            "name" | "url" | "enabled" | "dns" => {}
            "group" => {
                if let Some(g) = s(value) {
                    labels.put("group", Y::s(lookout_name(&g)));
                }
            }
            "interval" => match s(value) {
                Some(v) if crate::schedule::parse_duration(&v).is_ok() => every = Y::s(v),
                _ => ctx.note(
                    value,
                    "`interval` is not a duration Lookout reads (60s used)",
                ),
            },
            "method" | "headers" | "body" if kind_name == "http" => match key {
                "method" => {
                    if let Some(m) = s(value) {
                        kind.put("method", Y::s(m.to_ascii_uppercase()));
                    }
                }
                "headers" => {
                    let map: Vec<(String, Y)> = entries(value)
                        .into_iter()
                        .filter_map(|(k, v)| s(v).map(|v| (k.to_string(), Y::s(v))))
                        .collect();
                    kind.put("headers", Y::Map(map));
                }
                _ => {
                    if let Some(b) = s(value).filter(|b| !b.is_empty()) {
                        kind.put("body", Y::s(b));
                    }
                }
            },
            "grpc" if kind_name == "grpc" => {
                for (k, v) in entries(value) {
                    let t = s(v).unwrap_or_default();
                    match k {
                        "service" if t == "grpc.health.v1.Health" => {}
                        "method" if t == "Check" => {}
                        "body" => {
                            let service = serde_json::from_str::<serde_json::Value>(&t)
                                .ok()
                                .and_then(|j| j.get("service").and_then(|s| s.as_str()).map(String::from));
                            match service {
                                Some(svc) if !svc.is_empty() => kind.put("service", Y::s(svc)),
                                Some(_) => {}
                                None => ctx.note(v, "`grpc.body` other than a health check request has no Lookout equivalent"),
                            }
                        }
                        other => ctx.note(v, format!("`grpc.{other}`: Lookout's grpc check asks grpc.health.v1.Health/Check only")),
                    }
                }
            }
            "client" => client(ctx, value, kind_name, &mut kind, &mut timeout),
            "conditions" => {
                for cond in items(value) {
                    condition(
                        ctx,
                        cond,
                        kind_name,
                        &target,
                        &mut expect,
                        &mut kind,
                        &name,
                        &every,
                        &mut extra,
                        taken,
                    );
                }
            }
            "alerts" => alerts(ctx, value, channels, &mut alert),
            "ui" => {
                for (k, v) in entries(value) {
                    match (k, &v.value) {
                        ("hide-url" | "hide-hostname" | "hide-port", Value::Bool(true)) => {
                            if page.get("hide_target").is_none() {
                                page.put("hide_target", Y::Bool(true));
                            }
                        }
                        (_, Value::Bool(false)) => {}
                        _ => ctx.note(v, format!("`ui.{k}` has no Lookout equivalent")),
                    }
                }
            }
            other => ctx.note(value, format!("`{other}` has no Lookout equivalent")),
        }
    }
    // Carry the schedule to the certificate check too.
    for e in &mut extra {
        e.put("every", every.clone());
        if let Y::Map(l) = &labels
            && !l.is_empty()
        {
            e.put("labels", labels.clone());
        }
    }
    check.put(kind_name, kind);
    check.put("every", every);
    if let Some(t) = timeout {
        check.put("timeout", t);
    }
    if let Y::Map(l) = &labels
        && !l.is_empty()
    {
        check.put("labels", labels);
    }
    for (key, y) in [("expect", expect), ("alert", alert), ("status_page", page)] {
        if let Y::Map(m) = &y
            && !m.is_empty()
        {
            check.put(key, y);
        }
    }
    let mut out = vec![check];
    out.extend(extra);
    out
}

fn client(ctx: &mut Ctx, node: &Node, kind_name: &str, kind: &mut Y, timeout: &mut Option<Y>) {
    for (k, v) in entries(node) {
        let t = s(v).unwrap_or_default();
        match k {
            "timeout" if crate::schedule::parse_duration(&t).is_ok() => *timeout = Some(Y::s(t)),
            "insecure" if matches!(kind_name, "http" | "grpc" | "websocket") => {
                if matches!(v.value, Value::Bool(true)) {
                    kind.put("tls_verify", Y::Bool(false));
                }
            }
            "ignore-redirect" if kind_name == "http" => {
                if matches!(v.value, Value::Bool(true)) {
                    kind.put("follow_redirects", Y::Bool(false));
                }
            }
            "proxy-url" if kind_name == "http" => kind.put("proxy", Y::s(t)),
            other => ctx.note(
                v,
                format!("`client.{other}` has no Lookout equivalent for a {kind_name} check"),
            ),
        }
    }
}

fn alerts(ctx: &mut Ctx, node: &Node, channels: &BTreeSet<String>, alert: &mut Y) {
    let mut names = Vec::new();
    let mut thresholds: Option<(i64, i64)> = None;
    for a in items(node) {
        if get(a, "enabled").is_some_and(|n| matches!(n.value, Value::Bool(false))) {
            continue;
        }
        let Some(kind) = get(a, "type").and_then(text) else {
            ctx.note(a, "an alert without a `type` (not converted)");
            continue;
        };
        if channels.contains(&kind) {
            names.push(Y::s(kind.clone()));
        } else {
            ctx.note(a, format!("alert type `{kind}` has no converted channel"));
        }
        let number = |key: &str, default: i64| {
            get(a, key)
                .and_then(text)
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(default)
        };
        let these = (
            number("failure-threshold", 3),
            number("success-threshold", 2),
        );
        match thresholds {
            None => thresholds = Some(these),
            Some(t) if t != these => ctx.note(a, format!("alert `{kind}`: Lookout has one threshold per check; the first alert's ({}/{}) is kept", t.0, t.1)),
            Some(_) => {}
        }
        for (k, v) in entries(a) {
            match k {
                "type" | "enabled" | "failure-threshold" | "success-threshold" | "description" => {}
                "send-on-resolved" if !matches!(v.value, Value::Bool(false)) => {}
                other => ctx.note(v, format!("`alerts[].{other}` has no Lookout equivalent")),
            }
        }
    }
    if !names.is_empty() {
        alert.put("channels", Y::List(names));
    }
    if let Some((f, s)) = thresholds {
        alert.put("failures", Y::Int(f.max(1)));
        alert.put("successes", Y::Int(s.max(1)));
    }
}

/// `[BODY].a.b[0]` as a JSONPath: `$.a.b[0]`.
fn json_path(placeholder: &str) -> Option<String> {
    let rest = placeholder.strip_prefix("[BODY]")?;
    if rest.is_empty() {
        return None;
    }
    Some(format!("${rest}"))
}

/// A condition's right-hand side as a JSON value.
fn json_value(text: &str) -> serde_json::Value {
    match text {
        "true" => serde_json::Value::Bool(true),
        "false" => serde_json::Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(serde_json::Value::from)
            .or_else(|_| text.parse::<f64>().map(serde_json::Value::from))
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string())),
    }
}

fn yv(v: &serde_json::Value) -> Y {
    match v {
        serde_json::Value::Bool(b) => Y::Bool(*b),
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(Y::Int)
            .unwrap_or_else(|| Y::s(n.to_string())),
        other => Y::s(other.as_str().unwrap_or_default()),
    }
}

/// A Gatus `pat(...)` glob as a regular expression.
fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

#[allow(clippy::too_many_arguments)]
fn condition(
    ctx: &mut Ctx,
    node: &Node,
    kind_name: &str,
    target: &Target,
    expect: &mut Y,
    kind: &mut Y,
    name: &str,
    every: &Y,
    extra: &mut Vec<Y>,
    taken: &mut BTreeSet<String>,
) {
    let Some(cond) = text(node) else { return };
    let op = ["==", "!=", "<=", ">=", "<", ">"]
        .into_iter()
        .find(|op| cond.contains(op));
    let Some(op) = op else {
        ctx.note(node, format!("condition `{cond}` is not one Lookout reads"));
        return;
    };
    let (left, right) = cond.split_once(op).unwrap_or_default();
    let (left, right) = (left.trim(), right.trim());
    let unsupported = |ctx: &mut Ctx| {
        ctx.note(
            node,
            format!("condition `{cond}` has no Lookout equivalent"),
        )
    };
    match (left, op) {
        ("[STATUS]", "==") if kind_name == "http" => {
            let codes: Vec<Y> = match right.strip_prefix("any(").and_then(|r| r.strip_suffix(')')) {
                Some(list) => list
                    .split(',')
                    .filter_map(|c| c.trim().parse::<i64>().ok())
                    .map(Y::Int)
                    .collect(),
                None => right.parse::<i64>().ok().map(Y::Int).into_iter().collect(),
            };
            if codes.is_empty() {
                return unsupported(ctx);
            }
            expect.put("status", Y::List(codes));
        }
        ("[STATUS]", "<" | "<=" | ">" | ">=") if kind_name == "http" => {
            let Ok(n) = right.parse::<i64>() else {
                return unsupported(ctx);
            };
            let (lo, hi) = match op {
                "<" => (100, n - 1),
                "<=" => (100, n),
                ">" => (n + 1, 599),
                _ => (n, 599),
            };
            // Whole classes only: `< 400` is 1xx, 2xx and 3xx.
            if lo % 100 != 0 || (hi + 1) % 100 != 0 || lo > hi {
                return unsupported(ctx);
            }
            let classes: Vec<Y> = (lo / 100..=hi / 100)
                .map(|c| Y::s(format!("{c}xx")))
                .collect();
            expect.put("status", Y::List(classes));
        }
        ("[RESPONSE_TIME]", "<" | "<=") => match right.parse::<u64>() {
            Ok(ms) => expect.put(
                "max_latency",
                Y::s(crate::schedule::format_duration(
                    std::time::Duration::from_millis(ms),
                )),
            ),
            Err(_) => unsupported(ctx),
        },
        ("[CONNECTED]", "==")
            if right == "true" && matches!(kind_name, "tcp" | "icmp" | "tls" | "websocket") => {}
        ("[DNS_RCODE]", "==") if right == "NOERROR" && kind_name == "dns" => {}
        ("[BODY]", "==") if kind_name == "dns" => {
            let mut values = expect_list(kind).unwrap_or_default();
            values.push(Y::s(right));
            kind.put("expect", Y::List(values));
        }
        ("[BODY]", "==") if kind_name == "http" => {
            match right.strip_prefix("pat(").and_then(|r| r.strip_suffix(')')) {
                Some(p)
                    if p.starts_with('*')
                        && p.ends_with('*')
                        && p.len() > 2
                        && !p[1..p.len() - 1].contains('*') =>
                {
                    expect.put("body_contains", Y::s(&p[1..p.len() - 1]));
                }
                Some(p) => expect.put("body_matches", Y::s(format!("(?s){}", glob_regex(p)))),
                None => expect.put("body_matches", Y::s(format!("^{}$", regex::escape(right)))),
            }
        }
        ("[BODY].status", "==") if kind_name == "grpc" && right == "SERVING" => {}
        ("[CERTIFICATE_EXPIRATION]", ">" | ">=") => {
            let address = match target {
                Target::Http(u) | Target::Websocket(u) => url::Url::parse(u).ok().and_then(|u| {
                    let port = u.port_or_known_default()?;
                    Some(format!("{}:{port}", u.host_str()?))
                }),
                Target::Grpc(a, _) | Target::Tls(a) | Target::Tcp(a) => Some(a.clone()),
                _ => None,
            };
            let (Some(address), true) = (address, crate::schedule::parse_duration(right).is_ok())
            else {
                return unsupported(ctx);
            };
            if kind_name == "tls" {
                kind.put("expires_within", Y::s(right));
                return;
            }
            let tls_name = unique_name(
                format!("{name}-certificate").chars().take(64).collect(),
                taken,
            );
            let mut tls = Y::Map(Vec::new());
            tls.put("address", Y::s(address));
            tls.put("expires_within", Y::s(right));
            let mut c = Y::Map(vec![("name".into(), Y::s(tls_name))]);
            c.put("tls", tls);
            let _ = every;
            extra.push(c);
        }
        (l, _) if l.starts_with("[BODY].") && kind_name == "http" => {
            let Some(path) = json_path(l) else {
                return unsupported(ctx);
            };
            let v = json_value(right);
            let assertion = match op {
                "==" => match right.strip_prefix("pat(").and_then(|r| r.strip_suffix(')')) {
                    Some(p) => vec![("matches", Y::s(glob_regex(p)))],
                    None if right.starts_with("any(") => return unsupported(ctx),
                    None => vec![("equals", yv(&v))],
                },
                "!=" => vec![("not_equals", yv(&v))],
                "<" if v.is_number() => vec![("below", yv(&v))],
                ">" if v.is_number() => vec![("above", yv(&v))],
                _ => return unsupported(ctx),
            };
            push_json(expect, &path, assertion);
        }
        (l, "==") if l.starts_with("len([BODY]") && kind_name == "http" => {
            let inner = l.trim_start_matches("len(").trim_end_matches(')');
            match (json_path(inner), right.parse::<i64>()) {
                (Some(path), Ok(n)) => push_json(expect, &path, vec![("length", Y::Int(n))]),
                _ => unsupported(ctx),
            }
        }
        (l, "==") if l.starts_with("has([BODY]") && kind_name == "http" => {
            let inner = l.trim_start_matches("has(").trim_end_matches(')');
            match (json_path(inner), right) {
                (Some(path), "true" | "false") => {
                    push_json(expect, &path, vec![("exists", Y::Bool(right == "true"))])
                }
                _ => unsupported(ctx),
            }
        }
        _ => unsupported(ctx),
    }
}

fn expect_list(kind: &Y) -> Option<Vec<Y>> {
    match kind.get("expect") {
        Some(Y::List(v)) => Some(v.clone()),
        _ => None,
    }
}

fn push_json(expect: &mut Y, path: &str, ops: Vec<(&str, Y)>) {
    let mut a = Y::Map(vec![("path".into(), Y::s(path))]);
    for (k, v) in ops {
        a.put(k, v);
    }
    let Y::Map(entries) = expect else { return };
    match entries.iter_mut().find(|(k, _)| k == "json") {
        Some((_, Y::List(list))) => list.push(a),
        _ => entries.push(("json".into(), Y::List(vec![a]))),
    }
}

//! blackbox_exporter modules joined with Prometheus scrape jobs, to Lookout
//! checks.
//!
//! A blackbox scrape job names its targets in `static_configs` and passes
//! each as `__param_target` by relabelling (`source_labels: [__address__]`,
//! `target_label: __param_target`); its module comes from `params.module`
//! or from a target label relabelled into `__param_module`. Every pair of
//! target and module becomes one check, `every` the job's
//! `scrape_interval` (or the global one, 1m by default). A module's fields
//! that Lookout judges the same way carry over; the rest are notes at their
//! line, once per module. Jobs without the `__param_target` relabelling are
//! not probes and are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{
    Conversion, ImportError, Note, Y, entries, get, items, lookout_name, text, unique_name,
};
use crate::config::yaml::{Node, Value};

pub fn convert_paths(config: &Path, prometheus: &Path) -> Result<Conversion, ImportError> {
    let modules = super::read(config)?;
    let prom = super::read(prometheus)?;
    Ok(convert(config, &modules, prometheus, &prom))
}

struct Notes {
    file: PathBuf,
    notes: Vec<Note>,
}

impl Notes {
    fn note(&mut self, node: &Node, message: impl Into<String>) {
        self.notes.push(Note {
            file: self.file.clone(),
            line: node.pos.line,
            message: message.into(),
        });
    }
}

/// One module as Lookout sees it: the kind's settings and the check's.
struct Module {
    prober: String,
    kind: Y,
    expect: Y,
    timeout: Option<String>,
    notes: Vec<Note>,
}

pub fn convert(config_path: &Path, config: &Node, prom_path: &Path, prom: &Node) -> Conversion {
    let mut conversion = Conversion {
        source: "blackbox_exporter",
        unit: "probes (target and module)",
        ..Conversion::default()
    };
    let mut module_nodes: BTreeMap<String, &Node> = BTreeMap::new();
    if let Some(m) = get(config, "modules") {
        for (name, node) in entries(m) {
            module_nodes.insert(name.to_string(), node);
        }
    }
    let mut pn = Notes {
        file: prom_path.to_path_buf(),
        notes: Vec::new(),
    };
    let global_interval = get(prom, "global")
        .and_then(|g| get(g, "scrape_interval"))
        .and_then(text)
        .unwrap_or_else(|| "1m".to_string());
    let mut taken = BTreeSet::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let jobs = get(prom, "scrape_configs").map(items).unwrap_or(&[]);
    for job in jobs {
        let relabels = get(job, "relabel_configs").map(items).unwrap_or(&[]);
        let targets_param = relabels.iter().any(|r| {
            target_label(r) == Some("__param_target".into())
                && source_labels(r) == vec!["__address__".to_string()]
        });
        if !targets_param {
            continue;
        }
        let module_label = relabels
            .iter()
            .find(|r| target_label(r) == Some("__param_module".into()))
            .and_then(|r| source_labels(r).into_iter().next());
        let job_name = get(job, "job_name").and_then(text).unwrap_or_default();
        let every = get(job, "scrape_interval")
            .and_then(text)
            .unwrap_or_else(|| global_interval.clone());
        let param_modules: Vec<String> = get(job, "params")
            .and_then(|p| get(p, "module"))
            .map(|m| items(m).iter().filter_map(text).collect())
            .unwrap_or_default();
        if let Some(params) = get(job, "params") {
            for (k, v) in entries(params) {
                if k != "module" {
                    pn.note(
                        v,
                        format!("job `{job_name}`: `params.{k}` has no Lookout equivalent"),
                    );
                }
            }
        }
        for sc in get(job, "static_configs").map(items).unwrap_or(&[]) {
            let mut modules = param_modules.clone();
            if let Some(label) = &module_label
                && let Some(m) = get(sc, "labels").and_then(|l| get(l, label)).and_then(text)
            {
                modules = vec![m];
            }
            if modules.is_empty() {
                pn.note(sc, format!("job `{job_name}`: no module (params.module or a label relabelled to __param_module)"));
                continue;
            }
            for target_node in get(sc, "targets").map(items).unwrap_or(&[]) {
                let Some(target) = text(target_node) else {
                    continue;
                };
                for module_name in &modules {
                    conversion.total += 1;
                    let Some(node) = module_nodes.get(module_name) else {
                        pn.note(
                            target_node,
                            format!(
                                "job `{job_name}`: module `{module_name}` is not in {}",
                                config_path.display()
                            ),
                        );
                        continue;
                    };
                    let module = decode_module(config_path, module_name, node, &target);
                    let Some(module) = module else {
                        if reported.insert(module_name.clone()) {
                            conversion.notes.push(Note {
                                file: config_path.to_path_buf(),
                                line: node.pos.line,
                                message: format!("module `{module_name}`: its prober has no Lookout check (not converted)"),
                            });
                        }
                        continue;
                    };
                    let mut kind = module.kind.clone();
                    let mut prober = module.prober.as_str();
                    let mut target_notes = Vec::new();
                    if !place_target(
                        prober,
                        &target,
                        &mut kind,
                        &mut target_notes,
                        target_node,
                        prom_path,
                    ) {
                        conversion.notes.extend(target_notes);
                        continue;
                    }
                    if prober == "tcp-tls" {
                        prober = "tls";
                    }
                    let host: String = target
                        .trim_start_matches("https://")
                        .trim_start_matches("http://")
                        .split(['/', '?'])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let name =
                        unique_name(lookout_name(&format!("{module_name}-{host}")), &mut taken);
                    let mut check = Y::Map(vec![("name".into(), Y::s(name))]);
                    check.put(
                        "description",
                        Y::s(format!(
                            "blackbox module {module_name}, job {job_name}, target {target}"
                        )),
                    );
                    check.put(prober, kind);
                    check.put("every", Y::s(every.clone()));
                    if let Some(t) = &module.timeout {
                        check.put("timeout", Y::s(t.clone()));
                    }
                    if let Y::Map(e) = &module.expect
                        && !e.is_empty()
                    {
                        check.put("expect", module.expect.clone());
                    }
                    conversion.checks.push(check);
                    if module.notes.is_empty() && target_notes.is_empty() {
                        conversion.full += 1;
                    } else {
                        conversion.partial += 1;
                    }
                    if reported.insert(module_name.clone()) {
                        conversion.notes.extend(module.notes);
                    }
                    conversion.notes.extend(target_notes);
                }
            }
        }
    }
    conversion.notes.extend(pn.notes);
    conversion
}

fn target_label(r: &Node) -> Option<String> {
    get(r, "target_label").and_then(text)
}

fn source_labels(r: &Node) -> Vec<String> {
    get(r, "source_labels")
        .map(|s| items(s).iter().filter_map(text).collect())
        .unwrap_or_default()
}

/// Puts the target where the prober's kind wants it; false when it cannot
/// be (noted).
fn place_target(
    prober: &str,
    target: &str,
    kind: &mut Y,
    notes: &mut Vec<Note>,
    node: &Node,
    file: &Path,
) -> bool {
    let mut note = |message: String| {
        notes.push(Note {
            file: file.to_path_buf(),
            line: node.pos.line,
            message,
        })
    };
    match prober {
        "http" => {
            let mut url = if target.contains("://") {
                target.to_string()
            } else {
                format!("http://{target}")
            };
            if let Some(Y::Str(userinfo)) = kind.get("__userinfo").cloned()
                && let Some((scheme, rest)) = url.split_once("://")
            {
                url = format!("{scheme}://{userinfo}@{rest}");
            }
            if let Y::Map(e) = kind {
                e.retain(|(k, _)| k != "__userinfo");
                e.insert(0, ("url".into(), Y::s(url)));
            }
        }
        "icmp" => {
            let host = match target.rsplit_once(':') {
                Some((h, p)) if p.parse::<u16>().is_ok() && !h.contains(':') => h,
                _ => target,
            };
            if let Y::Map(e) = kind {
                e.insert(0, ("host".into(), Y::s(host)));
            }
        }
        "dns" => {
            let resolver = match target.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a.to_string()),
                Err(_) => target
                    .trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(|ip| std::net::SocketAddr::new(ip, 53).to_string()),
            };
            match resolver {
                Some(r) => kind.put("resolver", Y::s(r)),
                None => note(format!(
                    "target `{target}`: a Lookout dns check's resolver is an IP address; the system's resolver is used"
                )),
            }
        }
        _ => {
            if target
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                note(format!(
                    "target `{target}` has no port; Lookout's {prober} check needs host:port (not converted)"
                ));
                return false;
            }
            if let Y::Map(e) = kind {
                e.insert(0, ("address".into(), Y::s(target)));
            }
        }
    }
    true
}

fn ip_family(n: &mut Notes, spec: &Node, kind: &mut Y) {
    let Some(node) = get(spec, "preferred_ip_protocol") else {
        return;
    };
    let family = match text(node).as_deref() {
        Some("ip4") => "ipv4",
        Some("ip6") => "ipv6",
        _ => return n.note(node, "`preferred_ip_protocol` is neither ip4 nor ip6"),
    };
    let fallback =
        get(spec, "ip_protocol_fallback").is_none_or(|f| !matches!(f.value, Value::Bool(false)));
    if fallback {
        n.note(node, format!("`preferred_ip_protocol: {}` falls back to the other family; Lookout's ip_family is strict, so `any` is kept", text(node).unwrap_or_default()));
    } else {
        kind.put("ip_family", Y::s(family));
    }
}

fn tls_config(n: &mut Notes, spec: &Node, kind: &mut Y, prefix: &str) {
    let Some(tc) = get(spec, "tls_config") else {
        return;
    };
    for (k, v) in entries(tc) {
        match k {
            "insecure_skip_verify" => {
                if matches!(v.value, Value::Bool(true)) {
                    kind.put("tls_verify", Y::Bool(false));
                }
            }
            "ca_file" => kind.put("ca_file", Y::s(text(v).unwrap_or_default())),
            "cert_file" => kind.put("client_cert", Y::s(text(v).unwrap_or_default())),
            "key_file" => kind.put("client_key", Y::s(text(v).unwrap_or_default())),
            other => n.note(
                v,
                format!("`{prefix}.tls_config.{other}` has no Lookout equivalent"),
            ),
        }
    }
}

/// A regex that is a plain substring once `^` is dropped, as that text.
fn literal(regex_text: &str) -> Option<String> {
    let body = regex_text.strip_prefix('^').unwrap_or(regex_text);
    let mut out = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            // An unescaped `.` is read as itself: the substring is then
            // stricter than the regex, never looser.
            c if "[](){}*+?|$^".contains(c) => return None,
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn decode_module(file: &Path, name: &str, node: &Node, _target: &str) -> Option<Module> {
    let mut n = Notes {
        file: file.to_path_buf(),
        notes: Vec::new(),
    };
    let prober = get(node, "prober").and_then(text).unwrap_or_default();
    if !matches!(prober.as_str(), "http" | "tcp" | "dns" | "icmp" | "grpc") {
        return None;
    }
    let mut module = Module {
        prober: prober.clone(),
        kind: Y::Map(Vec::new()),
        expect: Y::Map(Vec::new()),
        timeout: None,
        notes: Vec::new(),
    };
    for (k, v) in entries(node) {
        match k {
            "prober" => {}
            "timeout" => module.timeout = text(v),
            k if k == prober => {}
            other => n.note(
                v,
                format!("module `{name}`: `{other}` has no Lookout equivalent"),
            ),
        }
    }
    let empty = Node {
        pos: node.pos,
        value: Value::Null,
    };
    let spec = get(node, &prober).unwrap_or(&empty);
    let (kind, expect) = (&mut module.kind, &mut module.expect);
    let p = format!("modules.{name}.{prober}");
    match prober.as_str() {
        "http" => {
            for (k, v) in entries(spec) {
                match k {
                    "method" => kind.put(
                        "method",
                        Y::s(text(v).unwrap_or_default().to_ascii_uppercase()),
                    ),
                    "headers" => kind.put(
                        "headers",
                        Y::Map(
                            entries(v)
                                .into_iter()
                                .filter_map(|(h, x)| text(x).map(|x| (h.to_string(), Y::s(x))))
                                .collect(),
                        ),
                    ),
                    "body" => kind.put("body", Y::s(text(v).unwrap_or_default())),
                    "valid_status_codes" => {
                        let codes: Vec<Y> = items(v)
                            .iter()
                            .filter_map(text)
                            .filter_map(|c| c.parse::<i64>().ok())
                            .map(Y::Int)
                            .collect();
                        if !codes.is_empty() {
                            expect.put("status", Y::List(codes));
                        }
                    }
                    "valid_http_versions" => {
                        let versions: Vec<String> = items(v).iter().filter_map(text).collect();
                        match versions.as_slice() {
                            [one] if one == "HTTP/1.1" => expect.put("http_version", Y::s("1.1")),
                            [one] if one == "HTTP/2.0" || one == "HTTP/2" => {
                                expect.put("http_version", Y::s("2"))
                            }
                            _ => n.note(
                                v,
                                format!(
                                    "`{p}.valid_http_versions` {}: Lookout checks one of 1.1 or 2",
                                    versions.join(", ")
                                ),
                            ),
                        }
                    }
                    "fail_if_body_matches_regexp" => {
                        let r: Vec<String> = items(v).iter().filter_map(text).collect();
                        if !r.is_empty() {
                            expect.put(
                                "body_not_matches",
                                Y::s(
                                    r.iter()
                                        .map(|x| format!("(?:{x})"))
                                        .collect::<Vec<_>>()
                                        .join("|"),
                                ),
                            );
                        }
                    }
                    "fail_if_body_not_matches_regexp" => {
                        let r: Vec<String> = items(v).iter().filter_map(text).collect();
                        match r.as_slice() {
                            [] => {}
                            [one] => expect.put("body_matches", Y::s(one.clone())),
                            [first, ..] => {
                                expect.put("body_matches", Y::s(first.clone()));
                                n.note(v, format!("`{p}.fail_if_body_not_matches_regexp`: only the first regex is kept"));
                            }
                        }
                    }
                    "fail_if_header_not_matches" => {
                        let mut headers = Vec::new();
                        for h in items(v) {
                            let (Some(name), Some(re)) = (
                                get(h, "header").and_then(text),
                                get(h, "regexp").and_then(text),
                            ) else {
                                continue;
                            };
                            let missing = get(h, "allow_missing")
                                .is_some_and(|a| matches!(a.value, Value::Bool(true)));
                            let value = if missing {
                                Y::Map(vec![
                                    ("matches".into(), Y::s(re)),
                                    ("allow_missing".into(), Y::Bool(true)),
                                ])
                            } else {
                                Y::s(re)
                            };
                            headers.push((name, value));
                        }
                        expect.put("headers", Y::Map(headers));
                    }
                    "no_follow_redirects" if matches!(v.value, Value::Bool(true)) => {
                        kind.put("follow_redirects", Y::Bool(false))
                    }
                    "follow_redirects" if matches!(v.value, Value::Bool(false)) => {
                        kind.put("follow_redirects", Y::Bool(false))
                    }
                    "no_follow_redirects" | "follow_redirects" => {}
                    "proxy_url" => kind.put("proxy", Y::s(text(v).unwrap_or_default())),
                    "basic_auth" => {
                        let user = get(v, "username").and_then(text).unwrap_or_default();
                        let pass = get(v, "password").and_then(text).unwrap_or_default();
                        kind.put("__userinfo", Y::s(format!("{user}:{pass}")));
                    }
                    "bearer_token" => {
                        let token = text(v).unwrap_or_default();
                        let mut headers =
                            kind.get("headers").cloned().unwrap_or(Y::Map(Vec::new()));
                        headers.put("Authorization", Y::s(format!("Bearer {token}")));
                        kind.put("headers", headers);
                    }
                    "tls_config" => tls_config(&mut n, spec, kind, &p),
                    "preferred_ip_protocol" => ip_family(&mut n, spec, kind),
                    "ip_protocol_fallback" => {}
                    other => n.note(v, format!("`{p}.{other}` has no Lookout equivalent")),
                }
            }
        }
        "tcp" => {
            let tls = get(spec, "tls").is_some_and(|t| matches!(t.value, Value::Bool(true)));
            for (k, v) in entries(spec) {
                match k {
                    "query_response" if !tls => query_response(&mut n, v, kind, &p),
                    "query_response" => n.note(v, format!("`{p}.query_response` over TLS: Lookout's tls check does the handshake and certificate only")),
                    "tls" => {}
                    "tls_config" => tls_config(&mut n, spec, kind, &p),
                    "preferred_ip_protocol" => ip_family(&mut n, spec, kind),
                    "ip_protocol_fallback" => {}
                    other => n.note(v, format!("`{p}.{other}` has no Lookout equivalent")),
                }
            }
            if tls {
                // TLS on connect: the handshake and chain, as a `tls` check.
                module.prober = "tcp-tls".to_string();
                if let Y::Map(e) = kind {
                    e.retain(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "ca_file" | "client_cert" | "client_key" | "ip_family"
                        )
                    });
                }
                if get(spec, "tls_config")
                    .and_then(|t| get(t, "insecure_skip_verify"))
                    .is_some_and(|v| matches!(v.value, Value::Bool(true)))
                {
                    n.note(spec, format!("`{p}.tls_config.insecure_skip_verify`: a Lookout tls check always verifies"));
                }
            }
        }
        "dns" => {
            let mut query_type = None;
            for (k, v) in entries(spec) {
                match k {
                    "query_name" => kind.put("name", Y::s(text(v).unwrap_or_default())),
                    "query_type" => query_type = text(v),
                    "valid_rcodes" => {
                        let codes: Vec<String> = items(v).iter().filter_map(text).collect();
                        if codes != ["NOERROR"] {
                            n.note(
                                v,
                                format!(
                                    "`{p}.valid_rcodes` {}: Lookout expects an answer (NOERROR)",
                                    codes.join(", ")
                                ),
                            );
                        }
                    }
                    "preferred_ip_protocol" => ip_family(&mut n, spec, kind),
                    "ip_protocol_fallback" => {}
                    other => n.note(v, format!("`{p}.{other}` has no Lookout equivalent")),
                }
            }
            match query_type
                .as_deref()
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                Some(t @ ("A" | "AAAA" | "CNAME" | "MX" | "TXT" | "NS")) => {
                    kind.put("type", Y::s(t))
                }
                other => {
                    let t = other.unwrap_or("ANY (the default)");
                    n.note(get(spec, "query_type").unwrap_or(spec), format!("`{p}.query_type` {t}: Lookout queries A, AAAA, CNAME, MX, TXT or NS; A is used"));
                }
            }
            if kind.get("name").is_none() {
                n.note(spec, format!("`{p}` has no query_name"));
                kind.put("name", Y::s("example.com"));
            }
        }
        "icmp" => {
            for (k, v) in entries(spec) {
                match k {
                    "payload_size" => {
                        if let Some(size) = text(v).and_then(|t| t.parse::<i64>().ok()) {
                            kind.put("payload_size", Y::Int(size));
                        }
                    }
                    "preferred_ip_protocol" => ip_family(&mut n, spec, kind),
                    "ip_protocol_fallback" => {}
                    other => n.note(v, format!("`{p}.{other}` has no Lookout equivalent")),
                }
            }
        }
        _ => {
            for (k, v) in entries(spec) {
                match k {
                    "service" => kind.put("service", Y::s(text(v).unwrap_or_default())),
                    "tls" => kind.put("tls", Y::Bool(matches!(v.value, Value::Bool(true)))),
                    "tls_config" => tls_config(&mut n, spec, kind, &p),
                    "preferred_ip_protocol" => ip_family(&mut n, spec, kind),
                    "ip_protocol_fallback" => {}
                    other => n.note(v, format!("`{p}.{other}` has no Lookout equivalent")),
                }
            }
        }
    }
    module.notes = n.notes;
    Some(module)
}

/// `query_response` to the tcp check's `send` and `expect`: an optional
/// `send` first, then one `expect` that is a plain substring.
fn query_response(n: &mut Notes, v: &Node, kind: &mut Y, p: &str) {
    let steps = items(v);
    let mut i = 0;
    if let Some(first) = steps.first()
        && get(first, "expect").is_none()
        && let Some(send) = get(first, "send").and_then(text)
        && entries(first).len() == 1
    {
        kind.put("send", Y::s(send));
        i = 1;
    }
    if let Some(step) = steps.get(i)
        && let Some(expect) = get(step, "expect").and_then(text)
    {
        match literal(&expect) {
            Some(lit) if entries(step).len() == 1 => {
                kind.put("expect", Y::s(lit));
                i += 1;
            }
            _ => {
                n.note(step, format!("`{p}.query_response` expect `{expect}`: Lookout's banner check is a substring, not a regex (or this step does more)"));
                return;
            }
        }
    }
    if i < steps.len() {
        n.note(&steps[i], format!("`{p}.query_response` from step {}: Lookout's tcp check sends once and reads one banner", i + 1));
    }
}

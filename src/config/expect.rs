//! `expect:` of a check: accepted statuses (codes and classes such as
//! `2xx`), what the body must contain or match (a size-bounded regex) and
//! must not, the latency above which the check is degraded, the headers
//! that must match, the HTTP version, and JSON assertions (`json:`, RFC 9535
//! JSONPath with one operator each; `probe::assertions` judges them).

use std::fmt;
use std::time::Duration;

use regex::Regex;

use super::decode::Ctx;
use super::yaml::{Node, Value};
use crate::limits;

#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// Empty: any 2xx.
    pub status: Vec<StatusRange>,
    pub body_contains: Option<String>,
    pub body_matches: Option<Regex>,
    pub max_latency: Option<Duration>,
    /// icmp: the loss (percent) must stay below this; `None`: one reply is enough.
    pub packet_loss_below: Option<f64>,
    pub body_not_contains: Option<String>,
    pub body_not_matches: Option<Regex>,
    /// `headers: {name: regex}`: each must be present (unless
    /// `allow_missing`) with a value that matches.
    pub headers: Vec<HeaderAssertion>,
    /// `json:`: each must hold for every value its path selects.
    pub json: Vec<JsonAssertion>,
    /// `http_version: "1.1"` or `"2"`: the answer must come in that version.
    pub http_version: Option<HttpVersion>,
}

impl Expect {
    /// What every check without `expect:` expects, one shared copy.
    pub fn unset() -> std::sync::Arc<Expect> {
        static UNSET: std::sync::LazyLock<std::sync::Arc<Expect>> =
            std::sync::LazyLock::new(|| std::sync::Arc::new(Expect::default()));
        UNSET.clone()
    }
}

/// One `expect.headers` entry.
#[derive(Clone, Debug)]
pub struct HeaderAssertion {
    /// Lowercase, as HTTP/2 sends names.
    pub name: String,
    pub matches: Regex,
    pub allow_missing: bool,
}

/// An HTTP version a check may require.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpVersion {
    Http11,
    Http2,
}

impl HttpVersion {
    /// `1.1` or `2`, as written in the config and shown in results.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http11 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }
}

/// One `expect.json` entry: a JSONPath and what its values must be.
#[derive(Clone, Debug)]
pub struct JsonAssertion {
    /// As the user wrote it, for failure sentences.
    pub path_text: String,
    pub path: serde_json_path::JsonPath,
    pub op: JsonOp,
}

/// What every selected value must be (`Exists` is about the selection).
#[derive(Clone, Debug)]
pub enum JsonOp {
    Equals(serde_json::Value),
    NotEquals(serde_json::Value),
    /// A string holds the substring; a list holds an equal element.
    Contains(serde_json::Value),
    /// A string (or the JSON text of a number or boolean) matches.
    Matches(Regex),
    Below(f64),
    Above(f64),
    /// `true`: the path selects something; `false`: it selects nothing.
    Exists(bool),
    /// Of a list, a string (in characters) or an object (its keys).
    Length(u64),
    LengthAbove(u64),
    LengthBelow(u64),
}

impl JsonOp {
    /// The operator names, as written under `json:`.
    pub const NAMES: [&'static str; 10] = [
        "equals",
        "not_equals",
        "contains",
        "matches",
        "below",
        "above",
        "exists",
        "length",
        "length_above",
        "length_below",
    ];
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
pub(super) fn decode_expect(ctx: &mut Ctx, name: &str, node: &Node) -> Option<Expect> {
    let fields = ctx.fields(
        node,
        &format!("`expect` of check `{name}`"),
        &[
            "status",
            "body_contains",
            "body_matches",
            "max_latency",
            "packet_loss_below",
            "body_not_contains",
            "body_not_matches",
            "headers",
            "json",
            "http_version",
        ],
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
    if let Some(n) = fields.get("packet_loss_below") {
        expect.packet_loss_below = ctx
            .string(n, "`packet_loss_below`")
            .and_then(|text| match parse_percent(&text) {
                Some(percent) => Some(percent),
                None => {
                    ctx.error(
                        n.pos,
                        format!("`packet_loss_below` must be a percentage above 0 and at most 100 such as `50%`, found `{text}`"),
                    );
                    None
                }
            });
        ok &= expect.packet_loss_below.is_some();
    }
    if let Some(n) = fields.get("body_not_contains") {
        expect.body_not_contains = ctx.string(n, "`body_not_contains`");
        ok &= expect.body_not_contains.is_some();
    }
    if let Some(n) = fields.get("body_not_matches") {
        expect.body_not_matches = regex_field(ctx, n, "`body_not_matches`");
        ok &= expect.body_not_matches.is_some();
    }
    if let Some(n) = fields.get("headers") {
        match decode_header_assertions(ctx, n) {
            Some(headers) => expect.headers = headers,
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("json") {
        match decode_json_assertions(ctx, n) {
            Some(json) => expect.json = json,
            None => ok = false,
        }
    }
    if let Some(n) = fields.get("http_version") {
        let text = match &n.value {
            Value::Number(t) | Value::String(t) => t.trim().to_string(),
            _ => String::new(),
        };
        expect.http_version = match text.as_str() {
            "1.1" => Some(HttpVersion::Http11),
            "2" | "2.0" => Some(HttpVersion::Http2),
            _ => {
                ctx.error(n.pos, "`http_version` must be \"1.1\" or \"2\"");
                None
            }
        };
        ok &= expect.http_version.is_some();
    }
    ok.then_some(expect)
}

/// `50%` or `50`: a percentage above 0, at most 100.
fn parse_percent(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim());
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 100.0)
}

/// A regex field, compiled with the size bound; errors at its position.
fn regex_field(ctx: &mut Ctx, n: &Node, what: &str) -> Option<Regex> {
    let pattern = ctx.string(n, what)?;
    match regex::RegexBuilder::new(&pattern)
        .size_limit(limits::REGEX_BYTES_MAX)
        .build()
    {
        Ok(re) => Some(re),
        Err(e) => {
            let why = e.to_string().lines().last().unwrap_or_default().to_string();
            ctx.error(
                n.pos,
                format!("invalid regular expression in {what}: {why}"),
            );
            None
        }
    }
}

/// `headers: {name: regex}` or `{name: {matches: regex, allow_missing: true}}`.
fn decode_header_assertions(ctx: &mut Ctx, node: &Node) -> Option<Vec<HeaderAssertion>> {
    let Value::Map(entries) = &node.value else {
        ctx.error(
            node.pos,
            format!(
                "`headers` must be a mapping of header name to regex, found {}",
                node.value.kind()
            ),
        );
        return None;
    };
    if entries.len() > limits::HEADER_ASSERTIONS_MAX {
        ctx.error(
            node.pos,
            format!(
                "`headers` holds more than {} entries",
                limits::HEADER_ASSERTIONS_MAX
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(entries.len());
    let mut ok = true;
    for (key, value) in entries {
        let Some(name) = ctx.string(key, "a header name") else {
            ok = false;
            continue;
        };
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            ctx.error(key.pos, format!("invalid header name `{name}`"));
            ok = false;
            continue;
        }
        let what = format!("`headers.{name}`");
        let (matches, allow_missing) = match &value.value {
            Value::Map(_) => {
                let Some(fields) = ctx.fields(value, &what, &["matches", "allow_missing"]) else {
                    ok = false;
                    continue;
                };
                let allow_missing = match fields.get("allow_missing") {
                    Some(n) => ctx.bool(n, "`allow_missing`"),
                    None => Some(false),
                };
                let matches = match fields.get("matches") {
                    Some(n) => regex_field(ctx, n, &what),
                    None => {
                        ctx.error(value.pos, format!("{what} needs `matches: regex`"));
                        None
                    }
                };
                (matches, allow_missing)
            }
            _ => (regex_field(ctx, value, &what), Some(false)),
        };
        match (matches, allow_missing) {
            (Some(matches), Some(allow_missing)) => out.push(HeaderAssertion {
                name: name.to_ascii_lowercase(),
                matches,
                allow_missing,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// `json:`, a list of `{path, <one operator>}`.
fn decode_json_assertions(ctx: &mut Ctx, node: &Node) -> Option<Vec<JsonAssertion>> {
    let items = ctx.list(node, "`json`")?;
    if items.len() > limits::JSON_ASSERTIONS_MAX {
        ctx.error(
            node.pos,
            format!(
                "`json` holds more than {} assertions",
                limits::JSON_ASSERTIONS_MAX
            ),
        );
        return None;
    }
    let mut known = vec!["path"];
    known.extend(JsonOp::NAMES);
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match decode_json_assertion(ctx, item, &known) {
            Some(assertion) => out.push(assertion),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn decode_json_assertion(ctx: &mut Ctx, item: &Node, known: &[&str]) -> Option<JsonAssertion> {
    let fields = ctx.fields(item, "a `json` assertion", known)?;
    let path = match fields.get("path") {
        Some(n) => decode_json_path(ctx, n),
        None => {
            ctx.error(
                fields.pos,
                "a `json` assertion needs a `path` such as `$.status`",
            );
            None
        }
    };
    let ops: Vec<(&str, &Node)> = fields.keys().filter(|(k, _)| *k != "path").collect();
    let op = match ops.as_slice() {
        [(name, n)] => decode_json_op(ctx, name, n),
        [] => {
            ctx.error(
                fields.pos,
                format!(
                    "a `json` assertion needs one operator: {}",
                    JsonOp::NAMES.join(", ")
                ),
            );
            None
        }
        [_, (second, n), ..] => {
            ctx.error(
                n.pos,
                format!("a `json` assertion takes one operator (`{second}` is a second); write two assertions"),
            );
            None
        }
    };
    let (path_text, path) = path?;
    Some(JsonAssertion {
        path_text,
        path,
        op: op?,
    })
}

fn decode_json_path(ctx: &mut Ctx, n: &Node) -> Option<(String, serde_json_path::JsonPath)> {
    let text = ctx.string(n, "`path`")?;
    if text.chars().count() > limits::JSON_PATH_CHARS_MAX {
        ctx.error(
            n.pos,
            format!(
                "`path` is longer than {} characters",
                limits::JSON_PATH_CHARS_MAX
            ),
        );
        return None;
    }
    if !text.trim_start().starts_with('$') {
        ctx.error(
            n.pos,
            format!("invalid JSONPath `{text}`: a path starts with `$` (RFC 9535, such as $.db.status or $.items[0].id)"),
        );
        return None;
    }
    match serde_json_path::JsonPath::parse(&text) {
        Ok(path) => Some((text, path)),
        Err(e) => {
            // The parser's generic message says nothing the position does not.
            let why = match e.message() {
                "parser error" => "unexpected or missing text here",
                other => other,
            };
            ctx.error(
                n.pos,
                format!(
                    "invalid JSONPath `{text}` at character {}: {why} (RFC 9535, such as $.db.status or $.items[0].id)",
                    e.position() + 1,
                ),
            );
            None
        }
    }
}

fn decode_json_op(ctx: &mut Ctx, name: &str, n: &Node) -> Option<JsonOp> {
    let what = format!("`{name}`");
    let count = |ctx: &mut Ctx| -> Option<u64> {
        match &n.value {
            Value::Number(t) if t.parse::<u64>().is_ok() => t.parse().ok(),
            _ => {
                ctx.error(n.pos, format!("{what} must be a whole number of 0 or more"));
                None
            }
        }
    };
    let number = |ctx: &mut Ctx| -> Option<f64> {
        match &n.value {
            Value::Number(t) => match t.parse::<f64>() {
                Ok(f) if f.is_finite() => Some(f),
                _ => {
                    ctx.error(n.pos, format!("{what} must be a number"));
                    None
                }
            },
            other => {
                ctx.error(
                    n.pos,
                    format!("{what} must be a number, found {}", other.kind()),
                );
                None
            }
        }
    };
    match name {
        "equals" => Some(JsonOp::Equals(yaml_to_json(&n.value))),
        "not_equals" => Some(JsonOp::NotEquals(yaml_to_json(&n.value))),
        "contains" => Some(JsonOp::Contains(yaml_to_json(&n.value))),
        "matches" => regex_field(ctx, n, "`matches`").map(JsonOp::Matches),
        "below" => number(ctx).map(JsonOp::Below),
        "above" => number(ctx).map(JsonOp::Above),
        "exists" => ctx.bool(n, "`exists`").map(JsonOp::Exists),
        "length" => count(ctx).map(JsonOp::Length),
        "length_above" => count(ctx).map(JsonOp::LengthAbove),
        "length_below" => count(ctx).map(JsonOp::LengthBelow),
        other => {
            ctx.error(n.pos, format!("unknown operator `{other}`"));
            None
        }
    }
}

/// A YAML value as the JSON value it stands for: numbers as numbers
/// (integers exactly), everything else as itself.
fn yaml_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Number(t) => {
            if let Ok(i) = t.parse::<i64>() {
                J::from(i)
            } else if let Ok(u) = t.parse::<u64>() {
                J::from(u)
            } else {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(J::Number)
                    .unwrap_or_else(|| J::String(t.clone()))
            }
        }
        Value::String(s) => J::String(s.clone()),
        Value::Seq(items) => J::Array(items.iter().map(|n| yaml_to_json(&n.value)).collect()),
        Value::Map(entries) => J::Object(
            entries
                .iter()
                .filter_map(|(k, v)| match &k.value {
                    Value::String(k) | Value::Number(k) => {
                        Some((k.clone(), yaml_to_json(&v.value)))
                    }
                    _ => None,
                })
                .collect(),
        ),
    }
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

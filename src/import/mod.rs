//! `lookout import`: another monitor's configuration turned into Lookout
//! checks files.
//!
//! Each converter (`gatus`, `blackbox`) reads its format into the positioned
//! tree of `config::yaml` (so every note can say file:line), builds the
//! checks as a small ordered tree (`Y`), and records a `Note` for each field
//! it could not carry over. `emit` writes the tree as the repository's
//! example files are written (block style, two-space indent, the schema
//! line on top), and the result is meant to pass `lookout validate`
//! unchanged. Conversion is pure: files are read at the edge (`read`).

pub mod blackbox;
pub mod gatus;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config::yaml::{self, Node, Value};

/// Why an import could not run at all (a field it cannot convert is a
/// `Note`, not an error).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}:{line}:{col}: invalid YAML: {message}")]
    Yaml {
        path: String,
        line: u32,
        col: u32,
        message: String,
    },
    #[error("{0}")]
    Input(String),
}

/// A field left behind, at its place in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub file: PathBuf,
    pub line: u32,
    pub message: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A YAML value to write, keys in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Y {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Y>),
    Map(Vec<(String, Y)>),
}

impl Y {
    pub fn s(text: impl Into<String>) -> Y {
        Y::Str(text.into())
    }

    /// Sets `key: value` in a mapping, in place when the key is there
    /// (no-op on other values).
    pub fn put(&mut self, key: &str, value: Y) {
        if let Y::Map(entries) = self {
            match entries.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => entries.push((key.to_string(), value)),
            }
        }
    }

    /// The mapping under `key`, created when missing.
    pub fn child(&mut self, key: &str) -> &mut Y {
        let Y::Map(entries) = self else {
            return self;
        };
        let index = match entries.iter().position(|(k, _)| k == key) {
            Some(i) => i,
            None => {
                entries.push((key.to_string(), Y::Map(Vec::new())));
                entries.len() - 1
            }
        };
        &mut entries[index].1
    }

    pub fn get(&self, key: &str) -> Option<&Y> {
        match self {
            Y::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// What a converter made: checks, channels, notes and counts.
#[derive(Debug, Default)]
pub struct Conversion {
    /// `Gatus`, `blackbox_exporter`: named in the files' first comment.
    pub source: &'static str,
    /// What is counted: "endpoints", "probes".
    pub unit: &'static str,
    pub checks: Vec<Y>,
    pub channels: Vec<(String, Y)>,
    /// Maintenance windows for the alerts file.
    pub maintenance: Vec<Y>,
    pub defaults: Vec<String>,
    pub notes: Vec<Note>,
    pub total: usize,
    pub full: usize,
    pub partial: usize,
}

/// The schema line the repository's example files start with.
pub const CHECKS_SCHEMA_LINE: &str = "# yaml-language-server: $schema=../schema/checks.schema.json";
pub const ALERTS_SCHEMA_LINE: &str = "# yaml-language-server: $schema=../schema/alerts.schema.json";

impl Conversion {
    pub fn checks_yaml(&self) -> String {
        let mut out = format!(
            "{CHECKS_SCHEMA_LINE}\n# Imported from {} by `lookout import`; check the notes it printed.\n",
            self.source
        );
        out.push_str("checks:\n");
        for check in &self.checks {
            emit_list_item(&mut out, check, 1);
            out.push('\n');
        }
        if self.checks.is_empty() {
            out = out.replace("checks:\n", "checks: []\n");
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }

    /// The alerts file, when any channel was converted.
    pub fn alerts_yaml(&self) -> Option<String> {
        if self.channels.is_empty() && self.maintenance.is_empty() {
            return None;
        }
        let mut out = format!(
            "{ALERTS_SCHEMA_LINE}\n# Alert channels imported from {} by `lookout import`.\n",
            self.source
        );
        let mut root = Y::Map(Vec::new());
        if !self.channels.is_empty() {
            root.put("channels", Y::Map(self.channels.clone()));
        }
        if !self.defaults.is_empty() {
            let mut d = Y::Map(Vec::new());
            d.put(
                "channels",
                Y::List(self.defaults.iter().map(Y::s).collect()),
            );
            root.put("defaults", d);
        }
        if !self.maintenance.is_empty() {
            root.put("maintenance", Y::List(self.maintenance.clone()));
        }
        emit_map(&mut out, &root, 0);
        Some(out)
    }

    pub fn summary(&self) -> String {
        format!(
            "{} of {} {} converted fully, {} partially ({} note(s) above)",
            self.full,
            self.total,
            self.unit,
            self.partial,
            self.notes.len()
        )
    }
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn is_scalar(y: &Y) -> bool {
    !matches!(y, Y::List(_) | Y::Map(_))
}

fn emit_map(out: &mut String, y: &Y, level: usize) {
    let Y::Map(entries) = y else { return };
    for (k, v) in entries {
        indent(out, level);
        emit_entry(out, k, v, level);
    }
}

/// `key: value` from the cursor, the value's block indented under it.
fn emit_entry(out: &mut String, key: &str, value: &Y, level: usize) {
    out.push_str(&scalar_text(&Y::s(key)));
    out.push(':');
    match value {
        Y::Map(e) if e.is_empty() => out.push_str(" {}\n"),
        Y::List(items) if items.iter().all(is_scalar) => {
            let texts: Vec<String> = items.iter().map(scalar_text).collect();
            out.push_str(&format!(" [{}]\n", texts.join(", ")));
        }
        Y::Map(_) => {
            out.push('\n');
            emit_map(out, value, level + 1);
        }
        Y::List(items) => {
            out.push('\n');
            for item in items {
                emit_list_item(out, item, level + 1);
            }
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn emit_list_item(out: &mut String, item: &Y, level: usize) {
    indent(out, level);
    out.push_str("- ");
    match item {
        Y::Map(entries) if !entries.is_empty() => {
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    indent(out, level + 1);
                }
                emit_entry(out, k, v, level + 1);
            }
        }
        Y::Map(_) => out.push_str("{}\n"),
        Y::List(_) => {
            // Not produced by the converters; written inline as JSON.
            out.push_str(&flow_json(item));
            out.push('\n');
        }
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn flow_json(y: &Y) -> String {
    serde_json::to_string(&to_json(y)).unwrap_or_default()
}

fn to_json(y: &Y) -> serde_json::Value {
    match y {
        Y::Str(s) => serde_json::Value::String(s.clone()),
        Y::Int(i) => serde_json::Value::from(*i),
        Y::Bool(b) => serde_json::Value::Bool(*b),
        Y::List(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Y::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// A scalar as YAML: plain when that reads back as the same string, else
/// double-quoted (JSON escaping is valid YAML).
fn scalar_text(y: &Y) -> String {
    match y {
        Y::Int(i) => i.to_string(),
        Y::Bool(b) => b.to_string(),
        Y::Str(s) if plain_is_safe(s) => s.clone(),
        Y::Str(s) => serde_json::to_string(s).unwrap_or_default(),
        other => flow_json(other),
    }
}

fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n",
    ];
    if reserved.contains(&s.to_ascii_lowercase().as_str()) || s.parse::<f64>().is_ok() {
        return false;
    }
    if s.starts_with("0x") || s.starts_with("0o") || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    (first.is_ascii_alphanumeric() || matches!(first, '/' | '.' | '$' | '_'))
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    ' ' | '_'
                        | '.'
                        | '/'
                        | ':'
                        | '@'
                        | '-'
                        | '+'
                        | '$'
                        | '{'
                        | '}'
                        | '='
                        | '?'
                        | '&'
                        | '%'
                        | '('
                        | ')'
                        | '~'
                )
        })
}

/// Reads and parses one YAML file (bounded as config files are).
pub fn read(path: &Path) -> Result<Node, ImportError> {
    let text = crate::config::read_config_file(path).map_err(|message| ImportError::Read {
        path: path.display().to_string(),
        message,
    })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Node, ImportError> {
    yaml::parse(text).map_err(|e| ImportError::Yaml {
        path: path.display().to_string(),
        line: e.pos.line,
        col: e.pos.col,
        message: e.message,
    })
}

/// A mapping's entries with string keys.
pub(crate) fn entries(node: &Node) -> Vec<(&str, &Node)> {
    match &node.value {
        Value::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| match &k.value {
                Value::String(s) => Some((s.as_str(), v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub(crate) fn get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    entries(node)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A scalar's text (strings, numbers, booleans).
pub(crate) fn text(node: &Node) -> Option<String> {
    match &node.value {
        Value::String(s) | Value::Number(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(crate) fn items(node: &Node) -> &[Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ => &[],
    }
}

/// A Lookout name from another tool's: lowercase, `[a-z0-9_-]`, at most 64.
pub fn lookout_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    let mut out = if out.is_empty() {
        "check".to_string()
    } else {
        out
    };
    out.truncate(64);
    out
}

/// Makes `name` unique among `taken` (`name-2`, `name-3`...).
pub fn unique_name(name: String, taken: &mut std::collections::BTreeSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        let mut base = name.clone();
        base.truncate(64 - suffix.len());
        candidate = format!("{base}{suffix}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_quoted_only_when_needed() {
        assert_eq!(
            scalar_text(&Y::s("https://example.com/")),
            "https://example.com/"
        );
        assert_eq!(scalar_text(&Y::s("30s")), "30s");
        assert_eq!(scalar_text(&Y::s("true")), "\"true\"");
        assert_eq!(scalar_text(&Y::s("200")), "\"200\"");
        assert_eq!(scalar_text(&Y::s("220 ")), "\"220 \"");
        assert_eq!(scalar_text(&Y::s("^+OK")), "\"^+OK\"");
        assert_eq!(scalar_text(&Y::s("")), "\"\"");
        assert_eq!(scalar_text(&Y::s("a: b")), "\"a: b\"");
    }

    #[test]
    fn names_become_lookout_names() {
        assert_eq!(lookout_name("Front End (prod)"), "front-end-prod");
        let mut taken = Default::default();
        assert_eq!(unique_name("a".into(), &mut taken), "a");
        assert_eq!(unique_name("a".into(), &mut taken), "a-2");
    }
}

#[cfg(test)]
mod converter_tests;

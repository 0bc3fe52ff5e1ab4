//! `lookout schema`: JSON Schemas (draft 2020-12) of the YAML files Lookout
//! reads, for editors (yaml-language-server) and validators.
//!
//! The schemas are written here, next to nothing else, with a description
//! and an example for every key, and kept true to the decoder by a test
//! (`tests/schema.rs`): it puts an unknown key into every mapping the schema
//! describes, loads the document with the real decoder, and compares the
//! keys its "expected one of" error lists with the schema's properties, both
//! ways. A key added to the decoder without the schema (or the other way
//! round) fails that test. Every string may hold `${NAME}` placeholders, so
//! the patterns below accept one anywhere.

mod browser;
mod check_alert;
mod checks;
mod files;

use serde_json::{Map, Value, json};

/// The files a schema describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    /// `checks/*.yaml`
    Checks,
    /// `alerts/*.yaml`
    Alerts,
    /// the probes file of `lookout aggregator --probes`
    Probes,
    /// the `status_page:` mapping of a checks file
    Page,
}

impl SchemaKind {
    pub const ALL: [SchemaKind; 4] = [
        SchemaKind::Checks,
        SchemaKind::Alerts,
        SchemaKind::Probes,
        SchemaKind::Page,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Checks => "checks",
            SchemaKind::Alerts => "alerts",
            SchemaKind::Probes => "probes",
            SchemaKind::Page => "page",
        }
    }

    pub fn parse(text: &str) -> Option<SchemaKind> {
        SchemaKind::ALL.into_iter().find(|k| k.name() == text)
    }
}

/// The schema of one kind of file, as a JSON value.
pub fn schema(kind: SchemaKind) -> Value {
    let (title, body) = match kind {
        SchemaKind::Checks => ("Lookout checks file", checks::checks_file()),
        SchemaKind::Alerts => ("Lookout alerts file", files::alerts_file()),
        SchemaKind::Probes => ("Lookout probes file", files::probes_file()),
        SchemaKind::Page => ("Lookout status page settings", files::page()),
    };
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("title".into(), json!(title));
    if let Value::Object(body) = body {
        root.extend(body);
    }
    Value::Object(root)
}

/// The schema as pretty-printed JSON text, as `lookout schema` prints it.
pub fn schema_text(kind: SchemaKind) -> String {
    // A `Value` always serialises.
    serde_json::to_string_pretty(&schema(kind)).unwrap_or_default()
}

/// `${NAME}` or `${NAME:-default}` somewhere in a string.
const PLACEHOLDER: &str = r".*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*";

/// A duration as `humantime` reads it: `500ms`, `30s`, `1h 30m`, `14d`.
pub const DURATION_PATTERN: &str = r"^(?:(\s*[0-9]+\s*(ns|nsec|us|usec|ms|msec|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days|w|week|weeks|M|month|months|y|year|years)\s*)+|.*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*)$";

/// Five cron fields, or a macro.
pub const CRON_PATTERN: &str = r"^(?:@(hourly|daily|weekly|monthly|yearly|annually)|\S+(\s+\S+){4}|.*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*)$";

/// A name of a check, channel, region: `[a-z0-9_-]+`.
const NAME_PATTERN: &str = r"^[a-z0-9_-]{1,64}$";

/// `host:port` (`[::1]:443` for IPv6).
const HOST_PORT_PATTERN: &str =
    r"^(?:(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):[0-9]{1,5}|.*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}.*)$";

// The building blocks. Every key gets a description and an example:
// `key(description, schema, example)`.

fn with(mut schema: Value, description: &str, example: Value) -> Value {
    if let Value::Object(map) = &mut schema {
        map.insert("description".into(), json!(description));
        map.insert("examples".into(), json!([example]));
    }
    schema
}

fn string() -> Value {
    json!({"type": "string"})
}

/// A scalar written as text: YAML numbers and booleans are read as their text.
fn text() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn boolean() -> Value {
    json!({"type": "boolean"})
}

fn integer(min: u64, max: Option<u64>) -> Value {
    let mut v = json!({"type": "integer", "minimum": min});
    if let Some(max) = max {
        v["maximum"] = json!(max);
    }
    v
}

fn number() -> Value {
    json!({"type": "number"})
}

fn duration() -> Value {
    json!({"type": "string", "pattern": DURATION_PATTERN})
}

fn cron() -> Value {
    json!({"type": "string", "pattern": CRON_PATTERN})
}

fn pattern(p: &str) -> Value {
    json!({"type": "string", "pattern": p})
}

fn name() -> Value {
    pattern(NAME_PATTERN)
}

fn host_port() -> Value {
    pattern(HOST_PORT_PATTERN)
}

/// One of `values`, or a `${NAME}` placeholder.
fn one_of(values: &[&str]) -> Value {
    json!({"anyOf": [
        {"type": "string", "enum": values},
        {"type": "string", "pattern": format!("^{PLACEHOLDER}$")},
    ]})
}

fn list(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn string_list() -> Value {
    list(text())
}

/// A mapping of free-form names to text (headers, labels, metadata).
fn string_map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}})
}

/// A mapping with exactly these keys (`(name, schema)`), `required` among them.
fn object(props: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let mut properties = Map::new();
    for (k, v) in props {
        properties.insert(k.to_string(), v);
    }
    let mut v = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": properties,
    });
    if !required.is_empty() {
        v["required"] = json!(required);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks every property of `schema`, calling `f(path, property schema)`.
    fn walk(path: &str, schema: &Value, f: &mut dyn FnMut(&str, &Value)) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                f(&p, v);
                walk(&p, v, f);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(inner) = schema.get(key).filter(|v| v.is_object()) {
                walk(&format!("{path}[]"), inner, f);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                for b in branches {
                    walk(path, b, f);
                }
            }
        }
    }

    #[test]
    fn every_key_has_a_description_and_an_example() {
        for kind in SchemaKind::ALL {
            let mut missing = Vec::new();
            walk(kind.name(), &schema(kind), &mut |path, v| {
                let described = v.get("description").and_then(Value::as_str).is_some();
                let example = v
                    .get("examples")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty());
                if !described || !example {
                    missing.push(path.to_string());
                }
            });
            assert!(
                missing.is_empty(),
                "without description or example: {missing:?}"
            );
        }
    }

    #[test]
    fn patterns_accept_what_the_decoder_accepts() {
        let duration = regex::Regex::new(DURATION_PATTERN).unwrap();
        for ok in ["500ms", "30s", "1h 30m", "14d", "${EVERY}", "${E:-30s}"] {
            assert!(duration.is_match(ok), "{ok}");
            if !ok.starts_with('$') {
                assert!(crate::schedule::parse_duration(ok).is_ok(), "{ok}");
            }
        }
        for bad in ["30", "", "soon", "5 parsecs"] {
            assert!(!duration.is_match(bad), "{bad}");
        }
        let cron = regex::Regex::new(CRON_PATTERN).unwrap();
        for ok in ["*/5 * * * *", "0 9 * * 1-5", "@daily"] {
            assert!(cron.is_match(ok), "{ok}");
        }
        for bad in ["* * *", "@sometimes"] {
            assert!(!cron.is_match(bad), "{bad}");
        }
    }
}

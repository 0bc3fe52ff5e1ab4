//! The `http` kind's assertions beyond status and body text: `expect.json`
//! (RFC 9535 JSONPath, one operator each), `expect.headers` and the
//! HTTP version, each judged to `None` (holds) or the sentence that says
//! why not: `$.db.latency_ms is 412, not below 200`, `$.status: no value at
//! this path`, `header content-type is "text/html", which does not match
//! /json/`. A path that selects several values holds only when every value
//! does; the first that does not is the one named.

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::config::{HeaderAssertion, JsonAssertion, JsonOp};
use crate::limits;

/// Why the body fails the first JSON assertion that does not hold.
pub fn judge_json(body: &[u8], assertions: &[JsonAssertion]) -> Option<String> {
    if assertions.is_empty() {
        return None;
    }
    let document: Value = match serde_json::from_slice(body) {
        Ok(document) => document,
        Err(e) => {
            return Some(format!(
                "body is not JSON (line {}, column {}: {})",
                e.line(),
                e.column(),
                json_error_kind(&e)
            ));
        }
    };
    assertions.iter().find_map(|a| judge_one(&document, a))
}

fn json_error_kind(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Eof => "it ends too soon",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Io => "could not be read",
    }
}

fn judge_one(document: &Value, assertion: &JsonAssertion) -> Option<String> {
    let located = assertion.path.query_located(document);
    let path = assertion.path_text.as_str();
    if let JsonOp::Exists(wanted) = assertion.op {
        let first = located.iter().next();
        return match (wanted, first) {
            (true, None) => Some(format!("{path}: no value at this path")),
            (false, Some(node)) => Some(format!(
                "{path} exists (it is {}), and must not",
                shown(node.node())
            )),
            _ => None,
        };
    }
    if located.is_empty() {
        return Some(format!("{path}: no value at this path"));
    }
    let several = located.len() > 1;
    for node in located.iter() {
        if let Some(why) = fails(node.node(), &assertion.op) {
            // With several values, name the one that failed by its place.
            let name = if several {
                node.location().to_string()
            } else {
                path.to_string()
            };
            return Some(format!("{name} {why}"));
        }
    }
    None
}

/// Why `value` fails `op`: the sentence after the path.
fn fails(value: &Value, op: &JsonOp) -> Option<String> {
    let is = shown(value);
    match op {
        JsonOp::Equals(expected) => {
            (!same(value, expected)).then(|| format!("is {is}, not {}", shown(expected)))
        }
        JsonOp::NotEquals(unwanted) => {
            same(value, unwanted).then(|| format!("is {is}, and must not be"))
        }
        JsonOp::Contains(needle) => match (value, needle) {
            (Value::String(text), Value::String(part)) => (!text.contains(part.as_str()))
                .then(|| format!("is {is}, which does not contain {}", shown(needle))),
            (Value::Array(items), _) => (!items.iter().any(|item| same(item, needle)))
                .then(|| format!("is {is}, which does not contain {}", shown(needle))),
            _ => Some(format!(
                "is {is}, which is not a string or a list to contain {}",
                shown(needle)
            )),
        },
        JsonOp::Matches(re) => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    return Some(format!(
                        "is {is}, which is not a string to match /{}/",
                        re.as_str()
                    ));
                }
            };
            (!re.is_match(&text))
                .then(|| format!("is {is}, which does not match /{}/", re.as_str()))
        }
        JsonOp::Below(limit) => match value.as_f64() {
            Some(n) => (n >= *limit).then(|| format!("is {is}, not below {}", number(*limit))),
            None => Some(format!("is {is}, not a number")),
        },
        JsonOp::Above(limit) => match value.as_f64() {
            Some(n) => (n <= *limit).then(|| format!("is {is}, not above {}", number(*limit))),
            None => Some(format!("is {is}, not a number")),
        },
        JsonOp::Length(wanted) => length_fails(value, |n| n == *wanted, "not", *wanted),
        JsonOp::LengthAbove(limit) => length_fails(value, |n| n > *limit, "not above", *limit),
        JsonOp::LengthBelow(limit) => length_fails(value, |n| n < *limit, "not below", *limit),
        JsonOp::Exists(_) => None,
    }
}

fn length_fails(value: &Value, holds: impl Fn(u64) -> bool, words: &str, n: u64) -> Option<String> {
    let length = match value {
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        Value::String(s) => s.chars().count(),
        _ => return Some(format!("is {}, which has no length", shown(value))),
    } as u64;
    (!holds(length)).then(|| format!("has length {length}, {words} {n}"))
}

/// Equal as JSON values, numbers by value (412 equals 412.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A number as written: 200, not 200.0.
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// A value as compact JSON, cut to a readable length.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= limits::JSON_VALUE_SHOWN_CHARS_MAX {
        return text;
    }
    let cut: String = text
        .chars()
        .take(limits::JSON_VALUE_SHOWN_CHARS_MAX - 1)
        .collect();
    format!("{cut}…")
}

/// Why the headers fail the first header assertion that does not hold. A
/// header sent several times holds when any of its values matches.
pub fn judge_headers(headers: &HeaderMap, assertions: &[HeaderAssertion]) -> Option<String> {
    assertions.iter().find_map(|a| {
        let values: Vec<String> = headers
            .get_all(a.name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if values.is_empty() {
            return (!a.allow_missing).then(|| format!("header {} is missing", a.name));
        }
        if values.iter().any(|v| a.matches.is_match(v)) {
            return None;
        }
        let value = Value::String(values.join(", "));
        Some(format!(
            "header {} is {}, which does not match /{}/",
            a.name,
            shown(&value),
            a.matches.as_str()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(path: &str, op: JsonOp) -> JsonAssertion {
        JsonAssertion {
            path_text: path.into(),
            path: serde_json_path::JsonPath::parse(path).unwrap(),
            op,
        }
    }

    fn judge(body: &str, path: &str, op: JsonOp) -> Option<String> {
        judge_json(body.as_bytes(), &[assertion(path, op)])
    }

    #[test]
    fn each_operator_holds_and_fails_in_words() {
        let body = r#"{"status":"UP","db":{"latency_ms":412},"tags":["a","b"],
            "items":[{"ok":true},{"ok":false}],"version":"2.4.1"}"#;
        let re = |p: &str| regex::Regex::new(p).unwrap();
        assert_eq!(judge(body, "$.status", JsonOp::Equals("UP".into())), None);
        assert_eq!(
            judge(body, "$.status", JsonOp::Equals("DOWN".into())).as_deref(),
            Some(r#"$.status is "UP", not "DOWN""#)
        );
        assert_eq!(
            judge(body, "$.db.latency_ms", JsonOp::Below(200.0)).as_deref(),
            Some("$.db.latency_ms is 412, not below 200")
        );
        assert_eq!(judge(body, "$.db.latency_ms", JsonOp::Above(100.0)), None);
        assert_eq!(
            judge(body, "$.db.latency_ms", JsonOp::Equals(412.into())),
            None
        );
        assert_eq!(
            judge(body, "$.nothing", JsonOp::Equals(1.into())).as_deref(),
            Some("$.nothing: no value at this path")
        );
        assert_eq!(
            judge(body, "$.items[*].ok", JsonOp::Equals(true.into())).as_deref(),
            Some("$['items'][1]['ok'] is false, not true")
        );
        assert_eq!(judge(body, "$.tags", JsonOp::Contains("b".into())), None);
        assert_eq!(
            judge(body, "$.version", JsonOp::Matches(re(r"^3\."))).as_deref(),
            Some(r#"$.version is "2.4.1", which does not match /^3\./"#)
        );
        assert_eq!(
            judge(body, "$.items", JsonOp::LengthAbove(2)).as_deref(),
            Some("$.items has length 2, not above 2")
        );
        assert_eq!(
            judge(body, "$.error", JsonOp::Exists(false)),
            None,
            "absent as required"
        );
        assert_eq!(
            judge("[1", "$", JsonOp::Exists(true)).as_deref(),
            Some("body is not JSON (line 1, column 2: it ends too soon)")
        );
    }

    #[test]
    fn headers_match_any_value_and_may_be_missing() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "text/html".parse().unwrap());
        let wanted = |name: &str, pattern: &str, allow_missing| HeaderAssertion {
            name: name.into(),
            matches: regex::Regex::new(pattern).unwrap(),
            allow_missing,
        };
        assert_eq!(
            judge_headers(&headers, &[wanted("content-type", "json", false)]).as_deref(),
            Some(r#"header content-type is "text/html", which does not match /json/"#)
        );
        assert_eq!(
            judge_headers(&headers, &[wanted("x-version", "^2", false)]).as_deref(),
            Some("header x-version is missing")
        );
        assert_eq!(
            judge_headers(&headers, &[wanted("x-version", "^2", true)]),
            None
        );
    }
}

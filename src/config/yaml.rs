//! A YAML document as a tree whose every node knows its line and column.
//!
//! serde-saphyr parses (with a resource budget, so an alias bomb or a huge
//! nesting is refused rather than expanded) and hands us `Spanned` values; we
//! keep them as a small tree so that the decoder in `decode.rs` can report
//! *every* mistake in a file with its position, instead of stopping at the
//! first one as a derived `Deserialize` would.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::limits;

/// 1-based line and column of a node in its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    /// Integers and floats keep their text so the decoder decides what they mean.
    Number(String),
    String(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

#[derive(Debug)]
pub struct ParseError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, ParseError> {
    if text.len() > limits::CONFIG_FILE_BYTES_MAX {
        return Err(ParseError {
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "file is larger than {} bytes; split it into several files",
                limits::CONFIG_FILE_BYTES_MAX
            ),
        });
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = limits::CONFIG_YAML_EVENTS_MAX;
    budget.max_aliases = limits::CONFIG_YAML_ALIASES_MAX;
    budget.max_anchors = limits::CONFIG_YAML_ALIASES_MAX;
    budget.max_recorded_anchor_events = limits::CONFIG_YAML_EVENTS_MAX;
    budget.max_depth = limits::CONFIG_YAML_DEPTH_MAX;
    budget.max_nodes = limits::CONFIG_YAML_EVENTS_MAX;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    match serde_saphyr::from_str_with_options::<Option<Spanned<Node>>>(text, options) {
        // The root's position is on its `Spanned` wrapper, like every node's.
        Ok(Some(node)) => Ok(unspan(node)),
        Ok(None) => Ok(Node {
            pos: Pos { line: 1, col: 1 },
            value: Value::Null,
        }),
        Err(error) => {
            let pos = error
                .location()
                .map(|l| Pos {
                    line: l.line() as u32,
                    col: l.column() as u32,
                })
                .unwrap_or(Pos { line: 1, col: 1 });
            Err(ParseError {
                pos,
                message: in_words(&first_line(&error.to_string())),
            })
        }
    }
}

/// serde-saphyr names a budget breach in Rust's debug notation
/// (`budget breached: Depth { depth: 33 }`); say it in words, with our limit.
fn in_words(message: &str) -> String {
    let Some(breach) = message.strip_prefix("budget breached:") else {
        return message.to_string();
    };
    let kind = breach.trim().split([' ', '{']).next().unwrap_or("");
    match kind {
        "Depth" => format!(
            "nested deeper than {} levels",
            limits::CONFIG_YAML_DEPTH_MAX
        ),
        "Aliases" | "Anchors" => format!(
            "more than {} anchors or aliases (an alias bomb?)",
            limits::CONFIG_YAML_ALIASES_MAX
        ),
        "Events" | "Nodes" => format!(
            "more than {} YAML nodes; split it into several files",
            limits::CONFIG_YAML_EVENTS_MAX
        ),
        _ => "too large or too complex for a config file".to_string(),
    }
}

/// serde-saphyr renders a multi-line snippet; a `path:line:col: message`
/// report wants the one line that says what went wrong.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim();
    let line = line.strip_prefix("error:").unwrap_or(line).trim();
    // Drop serde-saphyr's own "line X column Y:" prefix or " at line X column Y"
    // suffix: we print the position in the `path:line:col:` form ourselves.
    let line = match (line.starts_with("line "), line.find(": ")) {
        (true, Some(i)) => &line[i + 2..],
        _ => line,
    };
    match line.find(" at line ") {
        Some(i) => line[..i].trim().to_string(),
        None => line.to_string(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The position is filled in by the `Spanned` wrapper around us.
        let value = deserializer.deserialize_any(ValueVisitor)?;
        Ok(Node {
            pos: Pos::default(),
            value,
        })
    }
}

fn unspan(spanned: Spanned<Node>) -> Node {
    Node {
        pos: Pos {
            line: spanned.referenced.line() as u32,
            col: spanned.referenced.column() as u32,
        },
        value: spanned.value.value,
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(unspan(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((unspan(key), unspan(value)));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_line_and_column() {
        let node = parse("checks:\n  - name: a\n    every: 30s\n").unwrap();
        let Value::Map(entries) = node.value else {
            panic!("not a map")
        };
        let (_, checks) = &entries[0];
        let Value::Seq(items) = &checks.value else {
            panic!("not a seq")
        };
        let Value::Map(fields) = &items[0].value else {
            panic!("not a map")
        };
        assert_eq!(fields[1].0.pos, Pos { line: 3, col: 5 });
        assert_eq!(fields[1].1.pos, Pos { line: 3, col: 12 });
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }

    #[test]
    fn syntax_error_has_a_position() {
        let error = parse("checks:\n  - name: [unclosed\n").unwrap_err();
        assert!(error.pos.line >= 2, "{error:?}");
    }
}

//! Turns the positioned YAML tree into typed values, collecting every error.
//!
//! Each helper reports what is wrong at the node's position and returns
//! `None`, so the caller carries on with the next field: one run over a file
//! finds all of its mistakes.

use std::path::Path;

use super::yaml::{Node, Pos, Value};
use super::{ConfigError, Secrets};

/// Where an environment variable's value is looked up; tests pass their own.
pub(super) type EnvLookup<'e> = &'e dyn Fn(&str) -> Option<String>;

pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    pub errors: &'a mut Vec<ConfigError>,
    pub secrets: &'a mut Secrets,
    pub env: EnvLookup<'a>,
}

/// The fields of a mapping whose keys have been checked against the known ones.
pub(super) struct Fields<'n> {
    pub pos: Pos,
    entries: Vec<(&'n str, &'n Node)>,
}

impl<'n> Fields<'n> {
    pub(super) fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = (&'n str, &'n Node)> + '_ {
        self.entries.iter().copied()
    }
}

impl Ctx<'_> {
    pub(super) fn error(&mut self, pos: Pos, message: impl Into<String>) {
        // One line whatever the quoted text held: errors are read as
        // `path:line:col: message`, one per line.
        let message: String = message.into();
        let message = if message.contains(['\n', '\r']) {
            message.replace('\r', "\\r").replace('\n', "\\n")
        } else {
            message
        };
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            pos,
            message,
        });
    }

    /// A mapping with only `known` keys; unknown ones are reported with a
    /// suggestion, duplicates and non-string keys too.
    pub(super) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        known: &[&str],
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.kind()),
            );
            return None;
        };
        let mut fields = Fields {
            pos: node.pos,
            entries: Vec::with_capacity(entries.len()),
        };
        for (key, value) in entries {
            let Value::String(name) = &key.value else {
                self.error(key.pos, format!("keys of {what} must be strings"));
                continue;
            };
            if !known.contains(&name.as_str()) {
                let hint = suggest(name, known)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("; expected one of: {}", known.join(", ")));
                self.error(key.pos, format!("unknown key `{name}` in {what}{hint}"));
                continue;
            }
            if fields.get(name).is_some() {
                self.error(key.pos, format!("duplicate key `{name}` in {what}"));
                continue;
            }
            fields.entries.push((name.as_str(), value));
        }
        Some(fields)
    }

    /// A mapping of free-form string keys (headers, labels).
    pub(super) fn string_map(&mut self, node: &Node, what: &str) -> Option<Vec<(String, String)>> {
        let Value::Map(entries) = &node.value else {
            self.error(
                node.pos,
                format!("{what} must be a mapping, found {}", node.value.kind()),
            );
            return None;
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let (Some(k), Some(v)) = (self.scalar_text(key, what), self.string(value, what)) else {
                continue;
            };
            out.push((k, v));
        }
        Some(out)
    }

    /// A string, with `${NAME}` replaced from the environment. Numbers and
    /// booleans are accepted as their text.
    pub(super) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        let text = self.scalar_text(node, what)?;
        self.interpolate(&text, node.pos)
    }

    /// A scalar's text, without interpolation.
    fn scalar_text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::String(s) | Value::Number(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a string, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn bool(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn positive_u32(&mut self, node: &Node, what: &str) -> Option<u32> {
        let parsed = match &node.value {
            Value::Number(n) => n.parse::<u32>().ok().filter(|&n| n > 0),
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                node.pos,
                format!("{what} must be a whole number of at least 1"),
            );
        }
        parsed
    }

    pub(super) fn duration(&mut self, node: &Node, what: &str) -> Option<std::time::Duration> {
        let text = self.string(node, what)?;
        match crate::schedule::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(message) => {
                self.error(node.pos, format!("{what}: {message}"));
                None
            }
        }
    }

    pub(super) fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            other => {
                self.error(
                    node.pos,
                    format!("{what} must be a list, found {}", other.kind()),
                );
                None
            }
        }
    }

    pub(super) fn string_list(&mut self, node: &Node, what: &str) -> Option<Vec<(String, Pos)>> {
        let items = self.list(node, what)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            if let Some(s) = self.string(item, what) {
                out.push((s, item.pos));
            }
        }
        Some(out)
    }

    /// `${NAME}` from the environment, `${NAME:-default}` with a fallback,
    /// `$${` for a literal `${`. Every value taken from the environment is
    /// recorded as a secret so it can be masked in any output.
    pub(super) fn interpolate(&mut self, text: &str, pos: Pos) -> Option<String> {
        if !text.contains('$') {
            return Some(text.to_string());
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut ok = true;
        while let Some(i) = rest.find('$') {
            out.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(literal) = after.strip_prefix("${") {
                out.push_str("${");
                rest = literal;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(end) = body.find('}') else {
                self.error(pos, "unterminated `${` (write `$${` for a literal `${`)");
                return None;
            };
            let inner = &body[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !valid {
                self.error(
                    pos,
                    format!("invalid variable name `{name}` in `${{{inner}}}`"),
                );
                ok = false;
            } else {
                match (self.env)(name) {
                    Some(value) => {
                        self.secrets.add_named(&value, name);
                        out.push_str(&value);
                    }
                    None => match default {
                        Some(default) => out.push_str(default),
                        None => {
                            self.error(pos, format!("environment variable `{name}` is not set"));
                            ok = false;
                        }
                    },
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        ok.then_some(out)
    }
}

/// Decodes one field: a `?` inside stops only this field, so the rest of
/// the mapping is still checked and every error reported.
pub(super) fn field<T>(decode: impl FnOnce() -> Option<T>) -> Option<T> {
    decode()
}

/// The known key closest to `name`, if it is close enough to be a typo.
pub(super) fn suggest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (*k, strsim::jaro_winkler(name, k)))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn interpolate(text: &str) -> (Option<String>, Vec<String>, Secrets) {
        let file = PathBuf::from("t.yaml");
        let mut errors = Vec::new();
        let mut secrets = Secrets::default();
        let env = |name: &str| match name {
            "TOKEN" => Some("s3cret".to_string()),
            "HOST" => Some("example.test".to_string()),
            _ => None,
        };
        let mut ctx = Ctx {
            file: &file,
            errors: &mut errors,
            secrets: &mut secrets,
            env: &env,
        };
        let out = ctx.interpolate(text, Pos { line: 1, col: 1 });
        (
            out,
            errors.into_iter().map(|e| e.message).collect(),
            secrets,
        )
    }

    #[test]
    fn interpolation_table() {
        for (input, expected) in [
            ("plain", Some("plain")),
            ("Bearer ${TOKEN}", Some("Bearer s3cret")),
            (
                "https://${HOST}/x?a=${TOKEN}",
                Some("https://example.test/x?a=s3cret"),
            ),
            ("${UNSET:-fallback}", Some("fallback")),
            ("price $5 and ^ok$", Some("price $5 and ^ok$")),
            ("literal $${TOKEN}", Some("literal ${TOKEN}")),
            ("${UNSET}", None),
            ("${1BAD}", None),
            ("${TOKEN", None),
        ] {
            assert_eq!(interpolate(input).0.as_deref(), expected, "{input}");
        }
        assert_eq!(
            interpolate("${UNSET}").1,
            vec!["environment variable `UNSET` is not set"]
        );
        assert_eq!(
            interpolate("${TOKEN}").2.redact("token=s3cret"),
            "token=****"
        );
    }

    #[test]
    fn suggestions_catch_typos_only() {
        let known = ["every", "cron", "timeout", "expect"];
        assert_eq!(suggest("evry", &known), Some("every"));
        assert_eq!(suggest("timout", &known), Some("timeout"));
        assert_eq!(suggest("expects", &known), Some("expect"));
        assert_eq!(suggest("zzz", &known), None);
    }
}

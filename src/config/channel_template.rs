//! `format: template` webhooks: `url`, `method`, `headers` and `body` written
//! as minijinja templates over the alert's fields, `body` either one
//! template or one per event kind (`down`, `up`, `degraded`, `reminder`,
//! `flapping`, `test`, `probe_stale`, `probe_back`, `group`, `default`).
//!
//! Every template is compiled here, so a syntax error fails `validate`,
//! placed at its line and column in the YAML file (the engine's position
//! within the template, mapped through the scalar's style: plain, quoted or
//! block). `engine` is the one environment validation and rendering share
//! (`tojson`/`json` filters, bounded fuel, no auto-escaping), so what
//! validates is what renders.

use std::collections::BTreeMap;

use super::decode::{Ctx, Fields};
use super::yaml::{Node, Pos, Value};
use crate::limits;

/// A webhook request as templates (sources, compiled again at send time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTemplate {
    pub url: String,
    /// `GET`, `POST` (the default), `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    pub headers: Vec<(String, String)>,
    /// The body per event kind, `default` for kinds not listed. Empty: no
    /// body. A kind with no body of its own and no `default` is not sent.
    pub bodies: BTreeMap<String, String>,
}

/// The keys `body:` may list.
pub const BODY_KINDS: [&str; 10] = [
    "default",
    "down",
    "up",
    "degraded",
    "reminder",
    "flapping",
    "test",
    "probe_stale",
    "probe_back",
    "group",
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The template environment: `tojson` (and its alias `json`) for JSON
/// strings, no HTML escaping, and a fuel bound per render.
pub fn engine() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_fuel(Some(limits::TEMPLATE_FUEL));
    env.set_debug(true);
    env.add_filter("json", |value: minijinja::Value| {
        serde_json::to_string(&value).map_err(|e| {
            minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string())
        })
    });
    env
}

/// Decodes the template keys of a `format: template` webhook.
pub(super) fn decode(
    ctx: &mut Ctx,
    name: &str,
    fields: &Fields,
    text: &str,
) -> Option<WebhookTemplate> {
    let env = engine();
    let mut ok = true;
    let url = match fields.get("url") {
        Some(n) => template(ctx, &env, n, "`url`", text),
        None => {
            ctx.error(
                fields.pos,
                format!("channel `{name}` needs a `url` (a template)"),
            );
            None
        }
    };
    let method = match fields.get("method") {
        Some(n) => ctx.string(n, "`method`").and_then(|m| {
            let upper = m.to_ascii_uppercase();
            if METHODS.contains(&upper.as_str()) {
                Some(upper)
            } else {
                ctx.error(
                    n.pos,
                    format!(
                        "unknown `method` `{m}`; expected one of: {}",
                        METHODS.join(", ")
                    ),
                );
                None
            }
        }),
        None => Some("POST".to_string()),
    };
    let mut headers = Vec::new();
    if let Some(n) = fields.get("headers") {
        match &n.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    let Some(header) = ctx.string(key, "a header name") else {
                        ok = false;
                        continue;
                    };
                    match template(ctx, &env, value, "a header value", text) {
                        Some(value) => headers.push((header, value)),
                        None => ok = false,
                    }
                }
            }
            _ => {
                ctx.error(n.pos, "`headers` must be a mapping of names to templates");
                ok = false;
            }
        }
    }
    let mut bodies = BTreeMap::new();
    if let Some(n) = fields.get("body") {
        match &n.value {
            Value::Map(entries) => {
                for (key, value) in entries {
                    let Some(kind) = ctx.string(key, "an event kind") else {
                        ok = false;
                        continue;
                    };
                    if !BODY_KINDS.contains(&kind.as_str()) {
                        ctx.error(
                            key.pos,
                            format!(
                                "unknown event kind `{kind}` in `body`; expected one of: {}",
                                BODY_KINDS.join(", ")
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    match template(ctx, &env, value, "a body", text) {
                        Some(body) => {
                            bodies.insert(kind, body);
                        }
                        None => ok = false,
                    }
                }
            }
            _ => match template(ctx, &env, n, "`body`", text) {
                Some(body) => {
                    bodies.insert("default".to_string(), body);
                }
                None => ok = false,
            },
        }
    }
    if !ok {
        return None;
    }
    Some(WebhookTemplate {
        url: url?,
        method: method?,
        headers,
        bodies,
    })
}

/// One template, compiled to find its mistakes.
fn template(
    ctx: &mut Ctx,
    env: &minijinja::Environment<'static>,
    node: &Node,
    what: &str,
    text: &str,
) -> Option<String> {
    let source = ctx.string(node, what)?;
    if source.len() > limits::TEMPLATE_SOURCE_BYTES_MAX {
        ctx.error(
            node.pos,
            format!(
                "{what} is longer than {} bytes",
                limits::TEMPLATE_SOURCE_BYTES_MAX
            ),
        );
        return None;
    }
    match env.template_from_str(&source) {
        Ok(_) => Some(source),
        Err(error) => {
            let offset = error
                .range()
                .map(|r| r.start)
                .or_else(|| line_offset(&source, error.line()?))
                .unwrap_or(0);
            let pos = place(text, node.pos, &source, offset);
            let detail = error.detail().unwrap_or("invalid template");
            ctx.error(pos, format!("template error in {what}: {detail}"));
            None
        }
    }
}

/// The byte offset of 1-based `line` in `source`.
fn line_offset(source: &str, line: usize) -> Option<usize> {
    if line <= 1 {
        return Some(0);
    }
    source.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)
}

/// Where byte `offset` of a template (the value of the scalar at `at`) is
/// in the YAML `text`: a block scalar (`|`, `>`) starts on the next line at
/// its indentation, a quoted one after its quote, a plain one where it is.
/// Escapes in quoted scalars and folding are not undone: the place is
/// exact for the templates people write (one line, or a block).
pub(super) fn place(text: &str, at: Pos, source: &str, offset: usize) -> Pos {
    let before = &source[..floor_char_boundary(source, offset)];
    let line_in = before.matches('\n').count() as u32;
    let col_in = before
        .rsplit('\n')
        .next()
        .map_or(0, |l| l.chars().count() as u32);
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .get(at.line.saturating_sub(1) as usize)
        .copied()
        .unwrap_or("");
    let start: Option<char> = first.chars().nth(at.col.saturating_sub(1) as usize);
    let indent_of = |line: u32| {
        lines
            .get(line.saturating_sub(1) as usize)
            .map_or(0, |l| l.chars().take_while(|c| *c == ' ').count() as u32)
    };
    match start {
        Some('|' | '>') => {
            // The block's indentation is its first line's.
            Pos {
                line: at.line + 1 + line_in,
                col: indent_of(at.line + 1) + col_in + 1,
            }
        }
        Some('"' | '\'') if line_in == 0 => Pos {
            line: at.line,
            col: at.col + 1 + col_in,
        },
        _ if line_in == 0 => Pos {
            line: at.line,
            col: at.col + col_in,
        },
        _ => {
            let line = at.line + line_in;
            Pos {
                line,
                col: indent_of(line) + col_in + 1,
            }
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_a_template_offset_in_the_yaml() {
        let text = "a:\n  url: \"x{{ y\"\n  body: |\n    {\n      {{ oops }\n    }\n";
        // Quoted scalar at 2:8; offset 1 is its second character.
        assert_eq!(
            place(text, Pos { line: 2, col: 8 }, "x{{ y", 1),
            Pos { line: 2, col: 10 }
        );
        // Block scalar at 3:9 (`|`): template line 2, column 3.
        let body = "{\n  {{ oops }\n}\n";
        assert_eq!(
            place(text, Pos { line: 3, col: 9 }, body, 4),
            Pos { line: 5, col: 7 }
        );
        // Plain scalar.
        assert_eq!(
            place("k: ab{{\n", Pos { line: 1, col: 4 }, "ab{{", 2),
            Pos { line: 1, col: 6 }
        );
    }

    #[test]
    fn engine_has_json_filters_and_no_escaping() {
        let env = engine();
        let out = env
            .render_str(
                "{{ s | tojson }} {{ s | json }} {{ s }}",
                serde_json::json!({"s": "a\"<b>"}),
            )
            .unwrap_or_default();
        assert!(out.ends_with(" a\"<b>"), "{out}");
        assert!(out.starts_with("\"a\\\""), "{out}");
    }
}

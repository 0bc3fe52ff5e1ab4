//! Decoding one step of a browser flow: the step's single key names its
//! action, its value the element (`css`, `xpath`, `link_text`) and what
//! the action needs. Each error carries the step's number and position.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::{
    CountMatch, FrameTarget, JsExpect, KEYS, Key, STEP_KINDS, SelectBy, Step, TextMatch,
    WindowTarget, selector, text_match,
};
use crate::config::decode::{self, Ctx};
use crate::config::yaml::{Node, Value};
use crate::limits;

pub(super) fn decode_step(ctx: &mut Ctx, index: usize, node: &Node) -> Option<Step> {
    let what = format!("step {index}");
    // `- screenshot` alone is a bare string.
    if let Value::String(s) = &node.value
        && s == "screenshot"
    {
        return Some(Step::Screenshot);
    }
    let Value::Map(entries) = &node.value else {
        ctx.error(
            node.pos,
            format!(
                "{what} must be one of `goto: URL`, `click: {{css: ...}}`, ...; found {}",
                node.value.kind()
            ),
        );
        return None;
    };
    let fields = ctx.fields(node, &what, &STEP_KINDS)?;
    let mut keys = fields.keys();
    let (kind, value) = match (keys.next(), keys.next()) {
        (Some(one), None) => one,
        (None, _) => {
            // Unknown keys were reported by `fields`.
            if entries.is_empty() {
                ctx.error(
                    node.pos,
                    format!(
                        "{what} is empty; expected one of: {}",
                        STEP_KINDS.join(", ")
                    ),
                );
            }
            return None;
        }
        (Some(_), Some((second, n))) => {
            ctx.error(
                n.pos,
                format!("{what} has more than one action (`{second}` is the second); one per step"),
            );
            return None;
        }
    };
    let what = format!("`{kind}` (step {index})");
    match kind {
        "goto" => {
            let text = match &value.value {
                Value::Map(_) => {
                    let f = ctx.fields(value, &what, &["url"])?;
                    let Some(n) = f.get("url") else {
                        ctx.error(value.pos, format!("{what} needs a `url`"));
                        return None;
                    };
                    ctx.string(n, &what)?
                }
                _ => ctx.string(value, &what)?,
            };
            match Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(Step::Goto(url))
                }
                _ => {
                    // Shown as typed: `ConfigErrors::masked` writes secrets as `${NAME}`.
                    let shown = &text;
                    ctx.error(
                        value.pos,
                        format!("{what}: `{shown}` is not an http:// or https:// URL"),
                    );
                    None
                }
            }
        }
        "click" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "link_text"])?;
            selector(ctx, &f, &what).map(Step::Click)
        }
        "fill" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "link_text", "text"])?;
            let target = selector(ctx, &f, &what);
            let text = match f.get("text") {
                Some(n) => ctx.string(n, "`text`"),
                None => {
                    ctx.error(f.pos, format!("{what} needs the `text` to type"));
                    None
                }
            };
            Some(Step::Fill {
                target: target?,
                text: text?,
            })
        }
        "select" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "value", "label"])?;
            let target = selector(ctx, &f, &what);
            let by = match (f.get("value"), f.get("label")) {
                (Some(n), None) => ctx.string(n, "`value`").map(SelectBy::Value),
                (None, Some(n)) => ctx.string(n, "`label`").map(SelectBy::Label),
                _ => {
                    ctx.error(
                        f.pos,
                        format!("{what} needs exactly one of `value` (the option's value) or `label` (its text)"),
                    );
                    None
                }
            };
            Some(Step::Select {
                target: target?,
                by: by?,
            })
        }
        "press" => {
            let (target, key_node) = match &value.value {
                Value::Map(_) => {
                    let f = ctx.fields(value, &what, &["css", "xpath", "key"])?;
                    let target = if f.get("css").is_some() || f.get("xpath").is_some() {
                        Some(selector(ctx, &f, &what))
                    } else {
                        None
                    };
                    let Some(n) = f.get("key") else {
                        ctx.error(f.pos, format!("{what} needs a `key` (Enter, Tab, ...)"));
                        return None;
                    };
                    (target, n)
                }
                _ => (None, value),
            };
            let key = decode::field(|| {
                let text = ctx.string(key_node, "`key`")?;
                if let Some((name, code)) = KEYS.iter().find(|(n, _)| n.eq_ignore_ascii_case(&text))
                {
                    return Some(Key { name, code: *code });
                }
                let mut chars = text.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !c.is_control() => Some(Key {
                        name: "character",
                        code: c,
                    }),
                    _ => {
                        let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
                        ctx.error(
                            key_node.pos,
                            format!(
                                "unknown key `{text}`; expected one character or one of: {}",
                                names.join(", ")
                            ),
                        );
                        None
                    }
                }
            });
            let target = match target {
                Some(t) => Some(t?),
                None => None,
            };
            Some(Step::Press { target, key: key? })
        }
        "wait_for" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "link_text", "timeout"])?;
            let target = selector(ctx, &f, &what);
            let timeout = timeout(ctx, f.get("timeout"));
            Some(Step::WaitFor {
                target: target?,
                timeout: timeout?,
            })
        }
        "expect_text" => {
            let f = ctx.fields(
                value,
                &what,
                &["css", "xpath", "link_text", "contains", "equals", "regex"],
            )?;
            let target = selector(ctx, &f, &what);
            let text = text_match(ctx, &f, &what);
            Some(Step::ExpectText {
                target: target?,
                text: text?,
            })
        }
        "expect_url" | "expect_title" => {
            let m = match &value.value {
                Value::Map(_) => {
                    let f = ctx.fields(value, &what, &["contains", "equals", "regex"])?;
                    text_match(ctx, &f, &what)?
                }
                // A bare string: the URL or title contains it.
                _ => TextMatch::Contains(ctx.string(value, &what)?),
            };
            Some(if kind == "expect_url" {
                Step::ExpectUrl(m)
            } else {
                Step::ExpectTitle(m)
            })
        }
        "screenshot" => match &value.value {
            Value::Null => Some(Step::Screenshot),
            Value::Map(entries) if entries.is_empty() => Some(Step::Screenshot),
            _ => {
                ctx.error(
                    value.pos,
                    format!("{what} takes no settings (write `- screenshot`)"),
                );
                None
            }
        },
        "eval" => {
            let (script_node, expect) = match &value.value {
                Value::Map(_) => {
                    let f = ctx.fields(value, &what, &["script", "expect"])?;
                    let Some(n) = f.get("script") else {
                        ctx.error(f.pos, format!("{what} needs the `script` to run"));
                        return None;
                    };
                    let expect = f.get("expect").map(|e| js_expect(ctx, e, &what));
                    (n, expect)
                }
                _ => (value, None),
            };
            let script = script(ctx, script_node, &what);
            let expect = match expect {
                Some(e) => Some(e?),
                None => None,
            };
            Some(Step::Eval {
                script: script?,
                expect,
            })
        }
        "wait_for_js" => {
            let (script_node, timeout) = match &value.value {
                Value::Map(_) => {
                    let f = ctx.fields(value, &what, &["script", "timeout"])?;
                    let Some(n) = f.get("script") else {
                        ctx.error(f.pos, format!("{what} needs the `script` to wait on"));
                        return None;
                    };
                    (n, timeout(ctx, f.get("timeout")))
                }
                _ => (value, Some(limits::BROWSER_WAIT_FOR_DEFAULT)),
            };
            let script = script(ctx, script_node, &what);
            Some(Step::WaitForJs {
                script: script?,
                timeout: timeout?,
            })
        }
        "frame" => match &value.value {
            Value::Map(_) => {
                let f = ctx.fields(value, &what, &["css", "xpath"])?;
                selector(ctx, &f, &what).map(|s| Step::Frame(FrameTarget::Enter(s)))
            }
            _ => match ctx.string(value, &what)?.as_str() {
                "parent" => Some(Step::Frame(FrameTarget::Parent)),
                "top" => Some(Step::Frame(FrameTarget::Top)),
                other => {
                    ctx.error(
                        value.pos,
                        format!("{what}: `{other}` is not `parent`, `top` or `{{css: ...}}`"),
                    );
                    None
                }
            },
        },
        "window" => match &value.value {
            Value::Map(_) => {
                let f = ctx.fields(value, &what, &["title", "url"])?;
                let given: Vec<(&str, &Node)> = f.keys().collect();
                match given.as_slice() {
                    [(key, n)] => {
                        let m = match &n.value {
                            Value::Map(_) => {
                                let inner = ctx.fields(
                                    n,
                                    &format!("`{key}`"),
                                    &["contains", "equals", "regex"],
                                )?;
                                text_match(ctx, &inner, &what)?
                            }
                            _ => TextMatch::Contains(ctx.string(n, &format!("`{key}`"))?),
                        };
                        Some(Step::Window(if *key == "title" {
                            WindowTarget::Title(m)
                        } else {
                            WindowTarget::Url(m)
                        }))
                    }
                    _ => {
                        ctx.error(
                            f.pos,
                            format!("{what} needs exactly one of `title` or `url`"),
                        );
                        None
                    }
                }
            }
            _ => match ctx.string(value, &what)?.as_str() {
                "new" => Some(Step::Window(WindowTarget::New)),
                "main" => Some(Step::Window(WindowTarget::Main)),
                other => {
                    ctx.error(
                        value.pos,
                        format!("{what}: `{other}` is not `new`, `main`, `{{title: ...}}` or `{{url: ...}}`"),
                    );
                    None
                }
            },
        },
        "hover" | "scroll_to" | "clear" | "check" | "uncheck" | "expect_visible"
        | "expect_hidden" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "link_text"])?;
            let target = selector(ctx, &f, &what)?;
            Some(match kind {
                "hover" => Step::Hover(target),
                "scroll_to" => Step::ScrollTo(target),
                "clear" => Step::Clear(target),
                "check" => Step::Check(target),
                "uncheck" => Step::Uncheck(target),
                "expect_visible" => Step::ExpectVisible(target),
                _ => Step::ExpectHidden(target),
            })
        }
        "upload" => {
            let f = ctx.fields(value, &what, &["css", "xpath", "file"])?;
            let target = selector(ctx, &f, &what);
            let file = match f.get("file") {
                Some(n) => upload_file(ctx, n),
                None => {
                    ctx.error(f.pos, format!("{what} needs the `file` to give"));
                    None
                }
            };
            Some(Step::Upload {
                target: target?,
                file: file?,
            })
        }
        "expect_count" => {
            let f = ctx.fields(
                value,
                &what,
                &["css", "xpath", "link_text", "equals", "above", "below"],
            )?;
            let target = selector(ctx, &f, &what);
            let given: Vec<(&str, &Node)> = f
                .keys()
                .filter(|(k, _)| matches!(*k, "equals" | "above" | "below"))
                .collect();
            let count = match given.as_slice() {
                [(key, n)] => count(ctx, n, key).map(|c| match *key {
                    "equals" => CountMatch::Equals(c),
                    "above" => CountMatch::Above(c),
                    _ => CountMatch::Below(c),
                }),
                _ => {
                    ctx.error(
                        f.pos,
                        format!("{what} needs exactly one of `equals`, `above` or `below`"),
                    );
                    None
                }
            };
            Some(Step::ExpectCount {
                target: target?,
                count: count?,
            })
        }
        "expect_attribute" => {
            let f = ctx.fields(
                value,
                &what,
                &[
                    "css",
                    "xpath",
                    "link_text",
                    "attribute",
                    "contains",
                    "equals",
                    "regex",
                ],
            )?;
            let target = selector(ctx, &f, &what);
            let name = match f.get("attribute") {
                Some(n) => ctx.string(n, "`attribute`"),
                None => {
                    ctx.error(f.pos, format!("{what} needs the `attribute` to look at"));
                    None
                }
            };
            let text = text_match(ctx, &f, &what);
            Some(Step::ExpectAttribute {
                target: target?,
                name: name?,
                text: text?,
            })
        }
        "include" => {
            ctx.error(
                value.pos,
                format!("{what}: an included sequence cannot include another"),
            );
            None
        }
        _ => None,
    }
}

/// A step's `timeout`: more than zero; the default when not given.
fn timeout(ctx: &mut Ctx, node: Option<&Node>) -> Option<Duration> {
    match node {
        Some(n) => ctx.duration(n, "`timeout`").and_then(|d| {
            if d.is_zero() {
                ctx.error(n.pos, "`timeout` must be more than 0");
                None
            } else {
                Some(d)
            }
        }),
        None => Some(limits::BROWSER_WAIT_FOR_DEFAULT),
    }
}

/// A script for `eval` or `wait_for_js`: not empty, bounded.
fn script(ctx: &mut Ctx, node: &Node, what: &str) -> Option<String> {
    let text = ctx.string(node, what)?;
    if text.trim().is_empty() {
        ctx.error(node.pos, format!("{what}: the script is empty"));
        return None;
    }
    if text.len() > limits::BROWSER_SCRIPT_BYTES_MAX {
        ctx.error(
            node.pos,
            format!(
                "{what}: the script has {} bytes; at most {}",
                text.len(),
                limits::BROWSER_SCRIPT_BYTES_MAX
            ),
        );
        return None;
    }
    Some(text)
}

/// `expect:` of an `eval`: `truthy`, or one of equals / contains / matches.
fn js_expect(ctx: &mut Ctx, node: &Node, what: &str) -> Option<JsExpect> {
    if let Value::String(s) = &node.value
        && s == "truthy"
    {
        return Some(JsExpect::Truthy);
    }
    let f = ctx.fields(
        node,
        "`expect`",
        &["equals", "contains", "matches", "truthy"],
    )?;
    let given: Vec<(&str, &Node)> = f.keys().collect();
    match given.as_slice() {
        [("equals", n)] => ctx.string(n, "`equals`").map(JsExpect::Equals),
        [("contains", n)] => ctx.string(n, "`contains`").map(JsExpect::Contains),
        [("truthy", n)] => match ctx.bool(n, "`truthy`")? {
            true => Some(JsExpect::Truthy),
            false => {
                ctx.error(
                    n.pos,
                    "`truthy: false` checks nothing; use `equals: \"false\"`",
                );
                None
            }
        },
        [(_, n)] => {
            let pattern = ctx.string(n, "`matches`")?;
            match regex::RegexBuilder::new(&pattern)
                .size_limit(limits::REGEX_BYTES_MAX)
                .build()
            {
                Ok(re) => Some(JsExpect::Matches(re)),
                Err(e) => {
                    let why = e.to_string().lines().last().unwrap_or_default().to_string();
                    ctx.error(
                        n.pos,
                        format!("invalid regular expression in `matches`: {why}"),
                    );
                    None
                }
            }
        }
        _ => {
            ctx.error(
                f.pos,
                format!("`expect` of {what} needs exactly one of `equals`, `contains`, `matches` or `truthy`"),
            );
            None
        }
    }
}

/// A count for `expect_count`.
fn count(ctx: &mut Ctx, node: &Node, key: &str) -> Option<u64> {
    let parsed = match &node.value {
        Value::Number(n) => n.parse::<u64>().ok(),
        _ => None,
    };
    if parsed.is_none() {
        ctx.error(node.pos, format!("`{key}` must be a whole number"));
    }
    parsed
}

/// The file `upload` gives: relative to the checks file, a regular file
/// that exists now and is within the size a browser is handed.
fn upload_file(ctx: &mut Ctx, node: &Node) -> Option<PathBuf> {
    let text = ctx.string(node, "`file`")?;
    let given = PathBuf::from(&text);
    let path = if given.is_absolute() {
        given
    } else {
        ctx.file
            .parent()
            .map(|dir| dir.join(&given))
            .unwrap_or(given)
    };
    // chromedriver reads the file by its path: an absolute one.
    let path = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(e) => {
            ctx.error(node.pos, format!("`file` {}: {e}", path.display()));
            return None;
        }
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.len() <= limits::BROWSER_UPLOAD_BYTES_MAX => Some(path),
        Ok(m) if m.is_file() => {
            ctx.error(
                node.pos,
                format!(
                    "`file` {} has {} bytes; at most {}",
                    path.display(),
                    m.len(),
                    limits::BROWSER_UPLOAD_BYTES_MAX
                ),
            );
            None
        }
        Ok(_) => {
            ctx.error(
                node.pos,
                format!("`file` {} is not a regular file", path.display()),
            );
            None
        }
        Err(e) => {
            ctx.error(node.pos, format!("`file` {}: {e}", path.display()));
            None
        }
    }
}

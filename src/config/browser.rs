//! The `browser` check kind: a scripted user flow (`goto`, `fill`, `click`,
//! `wait_for`, `expect_text`...) decoded from YAML into typed steps.
//!
//! Every step is decoded on its own, so one bad step hides nothing else and
//! each error carries its `path:line:col`. Values go through the same `${ENV}`
//! interpolation as every other field, so a password given to `fill` from
//! the environment is a secret, masked wherever the result goes.

use std::fmt;
use std::time::Duration;

use regex::Regex;
use url::Url;

use super::decode::{self, Ctx};
use super::yaml::{Node, Value};
use crate::limits;

#[derive(Clone, Debug)]
pub struct BrowserSpec {
    pub steps: Vec<Step>,
}

impl BrowserSpec {
    /// The first page the flow opens, for tables and the `target` label.
    pub fn first_url(&self) -> Option<&Url> {
        self.steps.iter().find_map(|s| match s {
            Step::Goto(url) => Some(url),
            _ => None,
        })
    }
}

/// How a step finds its element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    Css(String),
    XPath(String),
    LinkText(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Selector::Css(css) => f.write_str(css),
            Selector::XPath(xpath) => write!(f, "xpath {xpath}"),
            Selector::LinkText(text) => write!(f, "link {text:?}"),
        }
    }
}

/// What a text (an element's, the URL, the title) must be.
#[derive(Clone, Debug)]
pub enum TextMatch {
    Contains(String),
    Equals(String),
    Regex(Regex),
}

impl TextMatch {
    pub fn matches(&self, text: &str) -> bool {
        match self {
            TextMatch::Contains(needle) => text.contains(needle.as_str()),
            TextMatch::Equals(expected) => text.trim() == expected.as_str(),
            TextMatch::Regex(re) => re.is_match(text),
        }
    }
}

impl fmt::Display for TextMatch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            TextMatch::Contains(s) => write!(f, "contains {s:?}"),
            TextMatch::Equals(s) => write!(f, "equals {s:?}"),
            TextMatch::Regex(re) => write!(f, "matches /{}/", re.as_str()),
        }
    }
}

/// How `select` picks its option.
#[derive(Clone, Debug)]
pub enum SelectBy {
    Value(String),
    Label(String),
}

#[derive(Clone, Debug)]
pub enum Step {
    Goto(Url),
    Click(Selector),
    Fill {
        target: Selector,
        text: String,
    },
    Select {
        target: Selector,
        by: SelectBy,
    },
    /// A key (`Enter`, `Tab`, ...) sent to an element, or to the page.
    Press {
        target: Option<Selector>,
        key: Key,
    },
    /// Wait until an element is present and visible.
    WaitFor {
        target: Selector,
        timeout: Duration,
    },
    ExpectText {
        target: Selector,
        text: TextMatch,
    },
    ExpectUrl(TextMatch),
    ExpectTitle(TextMatch),
    /// Capture the page (kept with the result).
    Screenshot,
}

/// A key `press` can send: a named key or one character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub code: char,
}

/// Named keys, with their WebDriver code points.
const KEYS: [(&str, char); 14] = [
    ("Enter", '\u{E007}'),
    ("Tab", '\u{E004}'),
    ("Escape", '\u{E00C}'),
    ("Backspace", '\u{E003}'),
    ("Delete", '\u{E017}'),
    ("Space", '\u{E00D}'),
    ("ArrowUp", '\u{E013}'),
    ("ArrowDown", '\u{E015}'),
    ("ArrowLeft", '\u{E012}'),
    ("ArrowRight", '\u{E014}'),
    ("Home", '\u{E011}'),
    ("End", '\u{E010}'),
    ("PageUp", '\u{E00E}'),
    ("PageDown", '\u{E00F}'),
];

impl Step {
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Goto(_) => "goto",
            Step::Click(_) => "click",
            Step::Fill { .. } => "fill",
            Step::Select { .. } => "select",
            Step::Press { .. } => "press",
            Step::WaitFor { .. } => "wait_for",
            Step::ExpectText { .. } => "expect_text",
            Step::ExpectUrl(_) => "expect_url",
            Step::ExpectTitle(_) => "expect_title",
            Step::Screenshot => "screenshot",
        }
    }

    /// The step in plain words, for results and logs: `fill #email`,
    /// `goto https://...`. Never the text typed (it may be a secret); pass
    /// it through `Secrets::redact` all the same (a URL may hold one).
    pub fn describe(&self) -> String {
        match self {
            Step::Goto(url) => {
                let mut url = url.clone();
                if url.password().is_some() {
                    let _ = url.set_password(Some("****"));
                }
                format!("goto {url}")
            }
            Step::Click(target)
            | Step::Fill { target, .. }
            | Step::Select { target, .. }
            | Step::WaitFor { target, .. }
            | Step::ExpectText { target, .. } => format!("{} {target}", self.kind()),
            Step::Press {
                target: Some(target),
                key,
            } => format!("press {} on {target}", key.name),
            Step::Press { target: None, key } => format!("press {}", key.name),
            Step::ExpectUrl(m) | Step::ExpectTitle(m) => format!("{} {m}", self.kind()),
            Step::Screenshot => "screenshot".to_string(),
        }
    }
}

pub const STEP_KINDS: [&str; 10] = [
    "goto",
    "click",
    "fill",
    "select",
    "press",
    "wait_for",
    "expect_text",
    "expect_url",
    "expect_title",
    "screenshot",
];

pub(super) fn decode_browser(ctx: &mut Ctx, name: &str, node: &Node) -> Option<BrowserSpec> {
    let what = format!("`browser` of check `{name}`");
    let fields = ctx.fields(node, &what, &["steps"])?;
    let Some(list) = fields.get("steps") else {
        ctx.error(fields.pos, format!("{what} needs `steps` (a list)"));
        return None;
    };
    let items = ctx.list(list, "`steps`")?;
    if items.is_empty() {
        ctx.error(list.pos, "`steps` needs at least one step");
        return None;
    }
    if items.len() > limits::BROWSER_STEPS_MAX {
        ctx.error(
            list.pos,
            format!(
                "`steps` has {} steps; at most {} (split the flow into several checks)",
                items.len(),
                limits::BROWSER_STEPS_MAX
            ),
        );
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        match decode_step(ctx, index + 1, item) {
            Some(step) => steps.push(step),
            None => ok = false,
        }
    }
    if ok && !matches!(steps.first(), Some(Step::Goto(_))) {
        ctx.error(
            items[0].pos,
            "a browser flow starts with `goto: URL` (the browser opens on a blank page)",
        );
        return None;
    }
    ok.then_some(BrowserSpec { steps })
}

fn decode_step(ctx: &mut Ctx, index: usize, node: &Node) -> Option<Step> {
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
            let timeout = match f.get("timeout") {
                Some(n) => ctx.duration(n, "`timeout`").and_then(|d| {
                    if d.is_zero() {
                        ctx.error(n.pos, "`timeout` must be more than 0");
                        None
                    } else {
                        Some(d)
                    }
                }),
                None => Some(limits::BROWSER_WAIT_FOR_DEFAULT),
            };
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
        _ => None,
    }
}

fn selector(ctx: &mut Ctx, f: &decode::Fields, what: &str) -> Option<Selector> {
    let given: Vec<(&str, &Node)> = f
        .keys()
        .filter(|(k, _)| matches!(*k, "css" | "xpath" | "link_text"))
        .collect();
    match given.as_slice() {
        [(kind, n)] => {
            let text = ctx.string(n, &format!("`{kind}`"))?;
            if text.trim().is_empty() {
                ctx.error(n.pos, format!("`{kind}` is empty"));
                return None;
            }
            Some(match *kind {
                "css" => Selector::Css(text),
                "xpath" => Selector::XPath(text),
                _ => Selector::LinkText(text),
            })
        }
        [] => {
            ctx.error(
                f.pos,
                format!("{what} needs an element: `css: \"...\"` (or `xpath`, `link_text`)"),
            );
            None
        }
        [_, (second, n), ..] => {
            ctx.error(
                n.pos,
                format!("{what} has more than one selector (`{second}` is the second); keep one"),
            );
            None
        }
    }
}

fn text_match(ctx: &mut Ctx, f: &decode::Fields, what: &str) -> Option<TextMatch> {
    let given: Vec<(&str, &Node)> = f
        .keys()
        .filter(|(k, _)| matches!(*k, "contains" | "equals" | "regex"))
        .collect();
    match given.as_slice() {
        [("contains", n)] => ctx.string(n, "`contains`").map(TextMatch::Contains),
        [("equals", n)] => ctx.string(n, "`equals`").map(TextMatch::Equals),
        [(_, n)] => {
            let pattern = ctx.string(n, "`regex`")?;
            match regex::RegexBuilder::new(&pattern)
                .size_limit(limits::REGEX_BYTES_MAX)
                .build()
            {
                Ok(re) => Some(TextMatch::Regex(re)),
                Err(e) => {
                    let why = e.to_string().lines().last().unwrap_or_default().to_string();
                    ctx.error(
                        n.pos,
                        format!("invalid regular expression in `regex`: {why}"),
                    );
                    None
                }
            }
        }
        [] => {
            ctx.error(
                f.pos,
                format!("{what} needs one of `contains`, `equals` or `regex`"),
            );
            None
        }
        [_, (second, n), ..] => {
            ctx.error(
                n.pos,
                format!("{what} has more than one of `contains`, `equals`, `regex` (`{second}` is the second)"),
            );
            None
        }
    }
}

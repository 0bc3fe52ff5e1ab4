//! The `browser` check kind: a scripted user flow (`goto`, `fill`, `click`,
//! `wait_for`, `expect_text`, `eval`, `frame`, `window`...) decoded from YAML
//! into typed steps, with the flow's settings for before the first page
//! (`cookies`, `headers`, `viewport`, `user_agent`) and what fails it
//! (`fail_on`).
//!
//! Every step is decoded on its own, so one bad step hides nothing else and
//! each error carries its `path:line:col`. Values go through the same `${ENV}`
//! interpolation as every other field, so a password given to `fill` from
//! the environment is a secret, masked wherever the result goes. The steps
//! themselves are decoded in `steps.rs`; `include.rs` splices a sequence
//! written once in another file (a login) into a flow.

mod include;
mod steps;

pub(crate) use include::inline_includes;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;
use url::Url;

use super::decode::{self, Ctx};
use super::yaml::Node;
use crate::limits;

#[derive(Clone, Debug)]
pub struct BrowserSpec {
    pub steps: Vec<Step>,
    /// What the page did that fails the run (console errors, failed requests).
    pub fail_on: Vec<FailOn>,
    /// Set before the first page.
    pub cookies: Vec<Cookie>,
    /// Extra request headers for every request of the page (an auth token).
    pub headers: Vec<(String, String)>,
    pub viewport: Option<Viewport>,
    /// Replaces the probe's own User-Agent for this flow.
    pub user_agent: Option<String>,
    /// A thumbnail after every step, kept when the run fails.
    pub film_strip: bool,
    /// Web Vitals and the page's errors are measured (both by default).
    pub capture: Capture,
}

/// What a flow measures besides its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capture {
    pub web_vitals: bool,
    pub errors: bool,
}

impl Default for Capture {
    fn default() -> Self {
        Capture {
            web_vitals: true,
            errors: true,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailOn {
    ConsoleError,
    RequestError,
}

impl FailOn {
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::ConsoleError => "console_error",
            FailOn::RequestError => "request_error",
        }
    }
}

/// A cookie set before the first page; without `domain`, the first page's host.
#[derive(Clone, Debug)]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub secure: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
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
    /// Run a script (`return` is added when it is an expression); its
    /// result, JSON-encoded, must meet `expect` when given.
    Eval {
        script: String,
        expect: Option<JsExpect>,
    },
    /// Wait until a script's result is truthy.
    WaitForJs {
        script: String,
        timeout: Duration,
    },
    Frame(FrameTarget),
    Window(WindowTarget),
    Hover(Selector),
    ScrollTo(Selector),
    /// Give a file input a file (checked to exist when the config loads).
    Upload {
        target: Selector,
        file: PathBuf,
    },
    Clear(Selector),
    Check(Selector),
    Uncheck(Selector),
    ExpectVisible(Selector),
    ExpectHidden(Selector),
    ExpectCount {
        target: Selector,
        count: CountMatch,
    },
    ExpectAttribute {
        target: Selector,
        name: String,
        text: TextMatch,
    },
}

/// What an `eval` result must be.
#[derive(Clone, Debug)]
pub enum JsExpect {
    /// The result is this string, or JSON-encodes to this text.
    Equals(String),
    Contains(String),
    Matches(Regex),
    /// Not false, 0, "", null or undefined.
    Truthy,
}

impl JsExpect {
    /// Whether a result (as WebDriver returns it) meets this.
    pub fn holds(&self, value: &serde_json::Value) -> bool {
        let text = json_text(value);
        match self {
            JsExpect::Equals(expected) => text == *expected,
            JsExpect::Contains(needle) => text.contains(needle.as_str()),
            JsExpect::Matches(re) => re.is_match(&text),
            JsExpect::Truthy => is_truthy(value),
        }
    }
}

impl fmt::Display for JsExpect {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            JsExpect::Equals(s) => write!(f, "equal {s:?}"),
            JsExpect::Contains(s) => write!(f, "contain {s:?}"),
            JsExpect::Matches(re) => write!(f, "match /{}/", re.as_str()),
            JsExpect::Truthy => f.write_str("be truthy"),
        }
    }
}

/// A script result as text: a string as it is, anything else JSON-encoded.
pub fn json_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// JavaScript's truthiness, for what WebDriver hands back.
pub fn is_truthy(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => false,
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0 && !n.is_nan()),
        serde_json::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// How many elements `expect_count` wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountMatch {
    Equals(u64),
    Above(u64),
    Below(u64),
}

impl CountMatch {
    pub fn holds(self, count: u64) -> bool {
        match self {
            CountMatch::Equals(n) => count == n,
            CountMatch::Above(n) => count > n,
            CountMatch::Below(n) => count < n,
        }
    }
}

impl fmt::Display for CountMatch {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            CountMatch::Equals(n) => write!(f, "equals {n}"),
            CountMatch::Above(n) => write!(f, "above {n}"),
            CountMatch::Below(n) => write!(f, "below {n}"),
        }
    }
}

/// Which document later steps look into.
#[derive(Clone, Debug)]
pub enum FrameTarget {
    Enter(Selector),
    Parent,
    Top,
}

/// Which window later steps drive.
#[derive(Clone, Debug)]
pub enum WindowTarget {
    /// The window a previous step opened (waiting for it a little).
    New,
    Title(TextMatch),
    Url(TextMatch),
    Main,
}

/// A key `press` can send: a named key or one character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    pub code: char,
}

/// Named keys, with their WebDriver code points.
pub(super) const KEYS: [(&str, char); 14] = [
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
            Step::Eval { .. } => "eval",
            Step::WaitForJs { .. } => "wait_for_js",
            Step::Frame(_) => "frame",
            Step::Window(_) => "window",
            Step::Hover(_) => "hover",
            Step::ScrollTo(_) => "scroll_to",
            Step::Upload { .. } => "upload",
            Step::Clear(_) => "clear",
            Step::Check(_) => "check",
            Step::Uncheck(_) => "uncheck",
            Step::ExpectVisible(_) => "expect_visible",
            Step::ExpectHidden(_) => "expect_hidden",
            Step::ExpectCount { .. } => "expect_count",
            Step::ExpectAttribute { .. } => "expect_attribute",
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
            Step::Eval { script, .. } | Step::WaitForJs { script, .. } => {
                format!("{} {}", self.kind(), one_line(script, SCRIPT_SHOWN_CHARS))
            }
            Step::Frame(FrameTarget::Enter(target)) => format!("frame {target}"),
            Step::Frame(FrameTarget::Parent) => "frame parent".to_string(),
            Step::Frame(FrameTarget::Top) => "frame top".to_string(),
            Step::Window(WindowTarget::New) => "window new".to_string(),
            Step::Window(WindowTarget::Main) => "window main".to_string(),
            Step::Window(WindowTarget::Title(m)) => format!("window title {m}"),
            Step::Window(WindowTarget::Url(m)) => format!("window url {m}"),
            Step::Hover(target)
            | Step::ScrollTo(target)
            | Step::Upload { target, .. }
            | Step::Clear(target)
            | Step::Check(target)
            | Step::Uncheck(target)
            | Step::ExpectVisible(target)
            | Step::ExpectHidden(target) => format!("{} {target}", self.kind()),
            Step::ExpectCount { target, count } => format!("expect_count {target} {count}"),
            Step::ExpectAttribute { target, name, text } => {
                format!("expect_attribute {target} {name} {text}")
            }
        }
    }
}

/// Characters of a script shown in a step's name.
const SCRIPT_SHOWN_CHARS: usize = 60;

/// `text` on one line, cut to `max` characters (marked with `…`).
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

pub const STEP_KINDS: [&str; 25] = [
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
    "eval",
    "wait_for_js",
    "frame",
    "window",
    "hover",
    "scroll_to",
    "upload",
    "clear",
    "check",
    "uncheck",
    "expect_visible",
    "expect_hidden",
    "expect_count",
    "expect_attribute",
    "include",
];

const FLOW_FIELDS: [&str; 8] = [
    "steps",
    "fail_on",
    "cookies",
    "headers",
    "viewport",
    "user_agent",
    "film_strip",
    "capture",
];

pub(super) fn decode_browser(ctx: &mut Ctx, name: &str, node: &Node) -> Option<BrowserSpec> {
    let what = format!("`browser` of check `{name}`");
    let fields = ctx.fields(node, &what, &FLOW_FIELDS)?;
    let Some(list) = fields.get("steps") else {
        ctx.error(fields.pos, format!("{what} needs `steps` (a list)"));
        return None;
    };
    let items = ctx.list(list, "`steps`")?;
    if items.is_empty() {
        ctx.error(list.pos, "`steps` needs at least one step");
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    for (index, item) in items.iter().enumerate() {
        if include::is_include(item) {
            match include::expand(ctx, index + 1, item) {
                Some(included) => steps.extend(included),
                None => ok = false,
            }
            continue;
        }
        match steps::decode_step(ctx, index + 1, item) {
            Some(step) => steps.push(step),
            None => ok = false,
        }
    }
    if steps.len() > limits::BROWSER_STEPS_MAX {
        ctx.error(
            list.pos,
            format!(
                "`steps` has {} steps (included ones counted); at most {} (split the flow into several checks)",
                steps.len(),
                limits::BROWSER_STEPS_MAX
            ),
        );
        return None;
    }
    if ok && !matches!(steps.first(), Some(Step::Goto(_))) {
        ctx.error(
            items[0].pos,
            "a browser flow starts with `goto: URL` (the browser opens on a blank page)",
        );
        return None;
    }
    let fail_on = decode::field(|| match fields.get("fail_on") {
        Some(n) => fail_on(ctx, n),
        None => Some(Vec::new()),
    });
    let cookies = decode::field(|| match fields.get("cookies") {
        Some(n) => cookies(ctx, n),
        None => Some(Vec::new()),
    });
    let headers = decode::field(|| match fields.get("headers") {
        Some(n) => headers(ctx, n),
        None => Some(Vec::new()),
    });
    let viewport = decode::field(|| match fields.get("viewport") {
        Some(n) => viewport(ctx, n).map(Some),
        None => Some(None),
    });
    let user_agent = decode::field(|| match fields.get("user_agent") {
        Some(n) => {
            let ua = ctx.string(n, "`user_agent`")?;
            if ua.trim().is_empty() || ua.chars().any(char::is_control) {
                ctx.error(n.pos, "`user_agent` must be one line of text");
                return None;
            }
            Some(Some(ua))
        }
        None => Some(None),
    });
    let film_strip = decode::field(|| match fields.get("film_strip") {
        Some(n) => ctx.bool(n, "`film_strip`"),
        None => Some(false),
    });
    let capture = decode::field(|| match fields.get("capture") {
        Some(n) => capture(ctx, n),
        None => Some(Capture::default()),
    });
    let (fail_on, capture) = (fail_on?, capture?);
    if !fail_on.is_empty()
        && !capture.errors
        && let Some(n) = fields.get("fail_on")
    {
        ctx.error(
            n.pos,
            "`fail_on` needs the page's errors captured (add `errors` to `capture`)",
        );
        return None;
    }
    ok.then_some(BrowserSpec {
        steps,
        fail_on,
        cookies: cookies?,
        headers: headers?,
        viewport: viewport?,
        user_agent: user_agent?,
        film_strip: film_strip?,
        capture,
    })
}

fn fail_on(ctx: &mut Ctx, node: &Node) -> Option<Vec<FailOn>> {
    let mut out = Vec::new();
    for (text, pos) in ctx.string_list(node, "`fail_on`")? {
        let kind = match text.as_str() {
            "console_error" => FailOn::ConsoleError,
            "request_error" => FailOn::RequestError,
            other => {
                ctx.error(
                    pos,
                    format!(
                        "unknown `fail_on` entry `{other}`; expected console_error or request_error"
                    ),
                );
                return None;
            }
        };
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Some(out)
}

fn capture(ctx: &mut Ctx, node: &Node) -> Option<Capture> {
    let mut out = Capture {
        web_vitals: false,
        errors: false,
    };
    for (text, pos) in ctx.string_list(node, "`capture`")? {
        match text.as_str() {
            "web_vitals" => out.web_vitals = true,
            "errors" => out.errors = true,
            other => {
                ctx.error(
                    pos,
                    format!("unknown `capture` entry `{other}`; expected web_vitals or errors"),
                );
                return None;
            }
        }
    }
    Some(out)
}

fn cookies(ctx: &mut Ctx, node: &Node) -> Option<Vec<Cookie>> {
    let items = ctx.list(node, "`cookies`")?;
    if items.len() > limits::BROWSER_COOKIES_MAX {
        ctx.error(
            node.pos,
            format!(
                "`cookies` has {} cookies; at most {}",
                items.len(),
                limits::BROWSER_COOKIES_MAX
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let cookie = decode::field(|| {
            let f = ctx.fields(
                item,
                "a cookie",
                &["name", "value", "domain", "path", "secure"],
            )?;
            let text = |ctx: &mut Ctx, key: &str| match f.get(key) {
                Some(n) => {
                    let v = ctx.string(n, &format!("`{key}`"))?;
                    if v.chars().any(|c| c.is_control() || c == ';') {
                        ctx.error(
                            n.pos,
                            format!("a cookie's `{key}` cannot hold `;` or control characters"),
                        );
                        return None;
                    }
                    Some(Some(v))
                }
                None => Some(None),
            };
            let name = text(ctx, "name");
            let value = text(ctx, "value");
            let domain = text(ctx, "domain");
            let path = text(ctx, "path");
            let secure = match f.get("secure") {
                Some(n) => ctx.bool(n, "`secure`"),
                None => Some(false),
            };
            let (Some(name), Some(value)) = (name?, value?) else {
                ctx.error(f.pos, "a cookie needs a `name` and a `value`");
                return None;
            };
            if name.is_empty() || name.contains('=') || name.contains(' ') {
                ctx.error(
                    f.pos,
                    "a cookie's `name` must be a token (no `=` or spaces)",
                );
                return None;
            }
            Some(Cookie {
                name,
                value,
                domain: domain?,
                path: path?,
                secure: secure?,
            })
        });
        match cookie {
            Some(c) => out.push(c),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn headers(ctx: &mut Ctx, node: &Node) -> Option<Vec<(String, String)>> {
    let map = ctx.string_map(node, "`headers`")?;
    if map.len() > limits::BROWSER_HEADERS_MAX {
        ctx.error(
            node.pos,
            format!(
                "`headers` has {} headers; at most {}",
                map.len(),
                limits::BROWSER_HEADERS_MAX
            ),
        );
        return None;
    }
    for (name, value) in &map {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            ctx.error(node.pos, format!("`{name}` is not a valid header name"));
            return None;
        }
        if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
            ctx.error(
                node.pos,
                format!("the value of header `{name}` must be one line"),
            );
            return None;
        }
    }
    Some(map)
}

fn viewport(ctx: &mut Ctx, node: &Node) -> Option<Viewport> {
    let f = ctx.fields(node, "`viewport`", &["width", "height"])?;
    let side = |ctx: &mut Ctx, key: &str| {
        let Some(n) = f.get(key) else {
            ctx.error(f.pos, format!("`viewport` needs a `{key}` (pixels)"));
            return None;
        };
        let v = ctx.positive_u32(n, &format!("`{key}`"))?;
        if v > limits::BROWSER_VIEWPORT_SIDE_MAX {
            ctx.error(
                n.pos,
                format!(
                    "`{key}` is at most {} pixels",
                    limits::BROWSER_VIEWPORT_SIDE_MAX
                ),
            );
            return None;
        }
        Some(v)
    };
    let width = side(ctx, "width");
    let height = side(ctx, "height");
    Some(Viewport {
        width: width?,
        height: height?,
    })
}

pub(super) fn selector(ctx: &mut Ctx, f: &decode::Fields, what: &str) -> Option<Selector> {
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

pub(super) fn text_match(ctx: &mut Ctx, f: &decode::Fields, what: &str) -> Option<TextMatch> {
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

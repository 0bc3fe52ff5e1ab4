//! The schema of a `browser` check: the flow's settings and its steps, each
//! step a mapping of one action to its settings (or to a plain value where
//! the action takes one).

use serde_json::{Value, json};

use super::{boolean, duration, integer, list, object, string, string_map, text, with};

pub(super) fn browser() -> Value {
    let cookie = object(
        vec![
            (
                "name",
                with(string(), "The cookie's name.", json!("session")),
            ),
            (
                "value",
                with(string(), "Its value.", json!("${SESSION_COOKIE}")),
            ),
            (
                "domain",
                with(
                    string(),
                    "The domain it is set for.",
                    json!("app.example.com"),
                ),
            ),
            (
                "path",
                with(string(), "The path it is set for.", json!("/")),
            ),
            (
                "secure",
                with(boolean(), "Sent over https only.", json!(true)),
            ),
        ],
        &["name", "value"],
    );
    let viewport = object(
        vec![
            ("width", with(integer(1, None), "Pixels.", json!(1280))),
            ("height", with(integer(1, None), "Pixels.", json!(800))),
        ],
        &["width", "height"],
    );
    object(
        vec![
            (
                "steps",
                with(
                    list(step()),
                    "The flow, one action per step.",
                    json!([{"goto": "https://app.example.com/login"}, {"click": {"css": "button[type=submit]"}}]),
                ),
            ),
            (
                "fail_on",
                with(
                    list(json!({"enum": ["console_error", "request_error"]})),
                    "What the page did that fails the run (needs `capture: [errors]`).",
                    json!(["console_error"]),
                ),
            ),
            (
                "cookies",
                with(
                    list(cookie),
                    "Cookies set before the first page.",
                    json!([{"name": "session", "value": "${SESSION_COOKIE}", "domain": "app.example.com"}]),
                ),
            ),
            (
                "headers",
                with(
                    string_map(),
                    "Extra request headers for every request of the page.",
                    json!({"Authorization": "Bearer ${APP_TOKEN}"}),
                ),
            ),
            (
                "viewport",
                with(
                    viewport,
                    "The window's size.",
                    json!({"width": 1280, "height": 800}),
                ),
            ),
            (
                "user_agent",
                with(
                    string(),
                    "Replaces the probe's User-Agent for this flow.",
                    json!("Mozilla/5.0 (Lookout)"),
                ),
            ),
            (
                "film_strip",
                with(
                    boolean(),
                    "A screenshot after every step (default false).",
                    json!(false),
                ),
            ),
            (
                "capture",
                with(
                    list(json!({"enum": ["web_vitals", "errors"]})),
                    "What to record from the page.",
                    json!(["web_vitals", "errors"]),
                ),
            ),
        ],
        &["steps"],
    )
}

fn selector_props() -> Vec<(&'static str, Value)> {
    vec![
        ("css", with(string(), "A CSS selector.", json!("#email"))),
        (
            "xpath",
            with(
                string(),
                "An XPath expression.",
                json!("//button[text()='Sign in']"),
            ),
        ),
        (
            "link_text",
            with(string(), "A link's text.", json!("Sign in")),
        ),
    ]
}

fn selector_with(extra: Vec<(&'static str, Value)>, required: &[&str]) -> Value {
    let mut props = selector_props();
    props.extend(extra);
    object(props, required)
}

/// A target by `css` or `xpath` only (no `link_text`), with `extra`.
fn css_xpath(extra: Vec<(&'static str, Value)>, required: &[&str]) -> Value {
    let mut props: Vec<(&'static str, Value)> = selector_props()
        .into_iter()
        .filter(|(k, _)| *k != "link_text")
        .collect();
    props.extend(extra);
    object(props, required)
}

fn exactly_one(mut o: Value) -> Value {
    o["minProperties"] = json!(1);
    o["maxProperties"] = json!(1);
    o
}

fn text_props() -> Vec<(&'static str, Value)> {
    vec![
        (
            "contains",
            with(string(), "Holds this text.", json!("Welcome")),
        ),
        (
            "equals",
            with(string(), "Is exactly this text.", json!("Welcome back")),
        ),
        (
            "regex",
            with(
                string(),
                "Matches this regular expression.",
                json!("^Welcome"),
            ),
        ),
    ]
}

fn text_match() -> Value {
    json!({"anyOf": [string(), object(text_props(), &[])]})
}

fn or_string(o: Value) -> Value {
    json!({"anyOf": [string(), o]})
}

fn step() -> Value {
    let timeout = || with(duration(), "How long to wait.", json!("10s"));
    let target_only = || selector_with(vec![], &[]);
    let js_expect = json!({"anyOf": [
        {"const": "truthy"},
        object(vec![
            ("equals", with(string(), "The result's text is exactly this.", json!("ready"))),
            ("contains", with(string(), "The result's text holds this.", json!("ok"))),
            ("matches", with(string(), "The result's text matches this regex.", json!("^[0-9]+$"))),
            ("truthy", with(boolean(), "The result is truthy.", json!(true))),
        ], &[]),
    ]});
    let steps = vec![
        (
            "goto",
            with(
                or_string(object(
                    vec![(
                        "url",
                        with(
                            string(),
                            "The page to open.",
                            json!("https://app.example.com/"),
                        ),
                    )],
                    &["url"],
                )),
                "Open a page.",
                json!("https://app.example.com/login"),
            ),
        ),
        (
            "click",
            with(
                target_only(),
                "Click an element.",
                json!({"css": "button[type=submit]"}),
            ),
        ),
        (
            "fill",
            with(
                selector_with(
                    vec![(
                        "text",
                        with(string(), "The text to type.", json!("${SYNTH_USER}")),
                    )],
                    &["text"],
                ),
                "Type into a field.",
                json!({"css": "#email", "text": "${SYNTH_USER}"}),
            ),
        ),
        (
            "select",
            with(
                css_xpath(
                    vec![
                        ("value", with(text(), "The option's value.", json!("fr"))),
                        (
                            "label",
                            with(string(), "The option's text.", json!("French")),
                        ),
                    ],
                    &[],
                ),
                "Choose an option of a <select>.",
                json!({"css": "#lang", "value": "fr"}),
            ),
        ),
        (
            "press",
            with(
                or_string(object(
                    vec![
                        ("css", with(string(), "A CSS selector.", json!("#search"))),
                        (
                            "xpath",
                            with(string(), "An XPath expression.", json!("//input")),
                        ),
                        (
                            "key",
                            with(
                                string(),
                                "Enter, Tab, Escape... or one character.",
                                json!("Enter"),
                            ),
                        ),
                    ],
                    &["key"],
                )),
                "Press a key.",
                json!("Enter"),
            ),
        ),
        (
            "wait_for",
            with(
                selector_with(vec![("timeout", timeout())], &[]),
                "Wait until an element appears.",
                json!({"css": ".dashboard", "timeout": "10s"}),
            ),
        ),
        (
            "expect_text",
            with(
                selector_with(text_props(), &[]),
                "An element's text must match.",
                json!({"css": "h1", "contains": "Welcome"}),
            ),
        ),
        (
            "expect_url",
            with(
                text_match(),
                "The page's URL must match.",
                json!({"contains": "/dashboard"}),
            ),
        ),
        (
            "expect_title",
            with(
                text_match(),
                "The page's title must match.",
                json!("Dashboard"),
            ),
        ),
        (
            "screenshot",
            with(
                json!({"type": ["null", "object"], "maxProperties": 0}),
                "Take a screenshot (`- screenshot`).",
                Value::Null,
            ),
        ),
        (
            "eval",
            with(
                or_string(object(
                    vec![
                        (
                            "script",
                            with(string(), "JavaScript to run.", json!("document.readyState")),
                        ),
                        (
                            "expect",
                            with(
                                js_expect,
                                "What its result must be.",
                                json!({"equals": "complete"}),
                            ),
                        ),
                    ],
                    &["script"],
                )),
                "Run JavaScript in the page.",
                json!({"script": "document.readyState", "expect": {"equals": "complete"}}),
            ),
        ),
        (
            "wait_for_js",
            with(
                or_string(object(
                    vec![
                        (
                            "script",
                            with(
                                string(),
                                "JavaScript that becomes truthy.",
                                json!("window.appReady"),
                            ),
                        ),
                        ("timeout", timeout()),
                    ],
                    &["script"],
                )),
                "Wait until a script is truthy.",
                json!("window.appReady === true"),
            ),
        ),
        (
            "frame",
            with(
                json!({"anyOf": [{"enum": ["parent", "top"]}, object(vec![("css", with(string(), "A CSS selector of the iframe.", json!("iframe#pay"))), ("xpath", with(string(), "An XPath of the iframe.", json!("//iframe")))], &[])]}),
                "Switch into an iframe, or `parent`/`top`.",
                json!({"css": "iframe#pay"}),
            ),
        ),
        (
            "window",
            with(
                exactly_one(object(
                    vec![
                        (
                            "title",
                            with(
                                text_match(),
                                "The window's title.",
                                json!({"contains": "Pay"}),
                            ),
                        ),
                        (
                            "url",
                            with(
                                text_match(),
                                "The window's URL.",
                                json!({"contains": "/pay"}),
                            ),
                        ),
                    ],
                    &[],
                )),
                "Switch to another window or tab.",
                json!({"title": {"contains": "Payment"}}),
            ),
        ),
        (
            "hover",
            with(
                target_only(),
                "Move the mouse over an element.",
                json!({"css": "#menu"}),
            ),
        ),
        (
            "scroll_to",
            with(
                target_only(),
                "Scroll an element into view.",
                json!({"css": "footer"}),
            ),
        ),
        (
            "upload",
            with(
                css_xpath(
                    vec![(
                        "file",
                        with(
                            string(),
                            "The file to give.",
                            json!("/srv/fixtures/avatar.png"),
                        ),
                    )],
                    &["file"],
                ),
                "Give a file to a file input.",
                json!({"css": "input[type=file]", "file": "/srv/fixtures/avatar.png"}),
            ),
        ),
        (
            "clear",
            with(target_only(), "Empty a field.", json!({"css": "#search"})),
        ),
        (
            "check",
            with(target_only(), "Tick a checkbox.", json!({"css": "#terms"})),
        ),
        (
            "uncheck",
            with(
                target_only(),
                "Untick a checkbox.",
                json!({"css": "#newsletter"}),
            ),
        ),
        (
            "expect_visible",
            with(
                target_only(),
                "An element must be visible.",
                json!({"css": ".banner"}),
            ),
        ),
        (
            "expect_hidden",
            with(
                target_only(),
                "An element must be hidden or absent.",
                json!({"css": ".spinner"}),
            ),
        ),
        (
            "expect_count",
            with(
                selector_with(
                    vec![
                        (
                            "equals",
                            with(integer(0, None), "Exactly this many.", json!(3)),
                        ),
                        (
                            "above",
                            with(integer(0, None), "More than this many.", json!(0)),
                        ),
                        (
                            "below",
                            with(integer(0, None), "Fewer than this many.", json!(10)),
                        ),
                    ],
                    &[],
                ),
                "How many elements match.",
                json!({"css": ".item", "above": 0}),
            ),
        ),
        (
            "expect_attribute",
            with(
                selector_with(
                    {
                        let mut p = vec![(
                            "attribute",
                            with(string(), "The attribute's name.", json!("href")),
                        )];
                        p.extend(text_props());
                        p
                    },
                    &["attribute"],
                ),
                "An element's attribute must match.",
                json!({"css": "a.logo", "attribute": "href", "equals": "/"}),
            ),
        ),
        (
            "include",
            with(
                or_string(object(
                    vec![
                        (
                            "flow",
                            with(
                                string(),
                                "`file.yaml#name` of the sequence.",
                                json!("flows.yaml#login"),
                            ),
                        ),
                        (
                            "with",
                            with(
                                string_map(),
                                "Parameters of the sequence.",
                                json!({"user": "${SYNTH_USER}"}),
                            ),
                        ),
                    ],
                    &["flow"],
                )),
                "Splice in a sequence written once in another file.",
                json!("flows.yaml#login"),
            ),
        ),
    ];
    let mut schema = object(steps, &[]);
    schema["minProperties"] = json!(1);
    schema["maxProperties"] = json!(1);
    json!({"anyOf": [{"const": "screenshot"}, schema]})
}

//! Browser flows against a real application's parts, in real Chromium
//! through a real chromedriver, on 127.0.0.1 (#20): a shop page with an
//! iframe payment form, a popup window, a file upload, a hover menu, a
//! checkbox; pages with a JavaScript error, a missing resource, a late
//! large image and a layout shift; a login sequence included by two flows;
//! cookies and headers set before the first request. Few sessions: one
//! flow exercises many steps.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use lookout::browser::{BrowserOptions, BrowserPool};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::{Outcome, ProbeResult};

/// What the app saw of one request: path, Cookie, X-Auth and User-Agent headers.
type Request = (String, String, String, String);

/// Every request the app saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

fn record(seen: &Seen, path: &str, headers: &HeaderMap) {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    seen.0.lock().unwrap().push((
        path.to_string(),
        get("cookie"),
        get("x-auth"),
        get("user-agent"),
    ));
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    ))
}

async fn start_app() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/login", get(login))
        .route("/home", get(home))
        .route("/shop", get(shop))
        .route("/pay", get(pay))
        .route("/popup", get(popup))
        .route("/broken-js", get(broken_js))
        .route("/missing", get(missing))
        .route("/lcp", get(lcp))
        .route("/hero.png", get(hero))
        .route("/shift", get(shift))
        .with_state(seen.clone());
    let addr = common::serve_on_loopback(app).await;
    (format!("http://{addr}"), seen)
}

async fn login(State(seen): State<Seen>, headers: HeaderMap) -> Html<String> {
    record(&seen, "/login", &headers);
    page(
        "Sign in",
        r#"<form action="/home" method="get"><input id="user" name="user"><button id="go">Go</button></form>"#,
    )
}

async fn home(State(seen): State<Seen>, headers: HeaderMap) -> Html<String> {
    record(&seen, "/home", &headers);
    page("Home", "<h1>Hello</h1>")
}

async fn shop(State(seen): State<Seen>, headers: HeaderMap) -> Html<String> {
    record(&seen, "/shop", &headers);
    page(
        "Shop",
        r#"<style>.menu { position: relative } .menu-items { display: none; position: absolute; top: 1em; margin: 0 }
                  .menu:hover .menu-items { display: block }
                  #spacer { height: 2000px }</style>
        <div class="menu">Menu<ul class="menu-items"><li>Orders</li></ul></div>
        <ul><li class="item">a</li><li class="item">b</li><li class="item">c</li></ul>
        <a id="docs" href="/docs/start">Docs</a>
        <label><input type="checkbox" id="agree"> I agree</label>
        <input type="file" id="file" onchange="document.getElementById('file-name').textContent = this.files[0].name">
        <span id="file-name"></span>
        <iframe id="pay" src="/pay" width="400" height="200"></iframe>
        <button id="open-popup" onclick="window.open('/popup', 'pick', 'width=400,height=300')">Pick</button>
        <span id="from-popup"></span>
        <div id="spacer"></div><p id="footer">Footer</p>"#,
    )
}

async fn pay() -> Html<String> {
    page(
        "Pay",
        r#"<input id="card"><button id="pay-btn" onclick="document.getElementById('paid').textContent = 'Paid with ' + document.getElementById('card').value">Pay</button>
        <p id="paid"></p>"#,
    )
}

async fn popup() -> Html<String> {
    page(
        "Pick one",
        r#"<button id="choose" onclick="window.opener.document.getElementById('from-popup').textContent = 'chosen'; setTimeout(() => window.close(), 50)">Choose</button>"#,
    )
}

async fn broken_js() -> Html<String> {
    page(
        "Broken",
        r#"<p>Checkout</p><script>console.error("checkout broke"); throw new Error("boom");</script>"#,
    )
}

async fn missing() -> Html<String> {
    page(
        "Missing",
        r#"<p>Catalogue</p><script>fetch('/nope.json').then(() => { window.fetched = true; });</script>"#,
    )
}

/// A page whose large image arrives late: inserted after 300 ms, served
/// after 200 ms more. Its LCP is the image, after both.
async fn lcp() -> Html<String> {
    page(
        "Late hero",
        r#"<p>Loading</p><script>setTimeout(() => {
            const img = document.createElement('img');
            img.id = 'hero'; img.src = '/hero.png';
            document.body.appendChild(img);
        }, 300);</script>"#,
    )
}

async fn hero() -> Response {
    tokio::time::sleep(Duration::from_millis(200)).await;
    ([(header::CONTENT_TYPE, "image/png")], png(600, 400)).into_response()
}

/// A `width`×`height` PNG of one colour, uncompressed (stored deflate
/// blocks): an image of real intrinsic size without an encoder crate.
fn png(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    // Each row: no filter, then the pixels.
    let mut row = vec![0u8];
    row.extend([0u8, 128, 128].repeat(width as usize));
    let raw = row.repeat(height as usize);
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &zlib);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A page that pushes its text down a moment after it rendered.
async fn shift() -> Html<String> {
    page(
        "Shifty",
        r#"<p id="text" style="font-size: 40px">Read me</p><script>setTimeout(() => {
            const banner = document.createElement('div');
            banner.style.height = '300px'; banner.textContent = 'Banner';
            document.body.insertBefore(banner, document.body.firstChild);
            requestAnimationFrame(() => requestAnimationFrame(() => { window.shifted = true; }));
        }, 200);</script>"#,
    )
}

/// A checks directory with the flows, an included login sequence in
/// `flows/`, and a file to upload.
struct Setup {
    dirs: common::ConfigDirs,
}

const LOGIN_SEQUENCE: &str = r##"login:
  steps:
    - goto: ${BASE}/login
    - fill: { css: "#user", text: "${WHO}" }
    - click: { css: "#go" }
    - expect_text: { css: "h1", contains: "Hello" }
"##;

impl Setup {
    fn new(checks_yaml: &str) -> Setup {
        let dirs = common::ConfigDirs::new(checks_yaml);
        let flows = dirs.checks().join("flows");
        std::fs::create_dir_all(&flows).unwrap();
        std::fs::write(flows.join("login.yaml"), LOGIN_SEQUENCE).unwrap();
        std::fs::write(dirs.checks().join("flows/upload.txt"), "invoice\n").unwrap();
        Setup { dirs }
    }

    fn load(&self) -> lookout::config::Config {
        let env = |name: &str| (name == "SHOP_TOKEN").then(|| "tok-s3cret-42".to_string());
        lookout::config::load_with_env(&self.dirs.checks(), &self.dirs.alerts(), &env)
            .unwrap_or_else(|e| {
                let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
                panic!("test config is invalid:\n{}", lines.join("\n"))
            })
    }
}

fn pool() -> BrowserPool {
    BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions: 1,
        profiles_in: None,
    })
}

async fn run_all(setup: &Setup, pool: &BrowserPool) -> Vec<ProbeResult> {
    let config = setup.load();
    let runner = Runner::new(
        ProbeIdentity {
            region: "test".into(),
            probe: "test-probe".into(),
        },
        config.secrets.clone(),
    )
    .with_browser(pool.clone());
    let mut out = Vec::new();
    for check in &config.checks {
        out.push(runner.run(check).await);
    }
    out
}

fn check(name: &str, body: &str) -> String {
    format!("  - name: {name}\n    every: 1m\n    timeout: 40s\n    browser:\n{body}")
}

fn step_named<'r>(
    result: &'r ProbeResult,
    prefix: &str,
) -> (usize, &'r lookout::result::StepResult) {
    result
        .steps
        .iter()
        .enumerate()
        .find(|(_, s)| s.name.starts_with(prefix))
        .map(|(i, s)| (i + 1, s))
        .unwrap_or_else(|| panic!("no step {prefix:?} in {:#?}", result.steps))
}

#[tokio::test]
async fn chromium_a_shop_flow_uses_frames_windows_uploads_and_scripts_and_measures_its_pages() {
    let (base, seen) = start_app().await;
    let shop = format!(
        r##"      user_agent: "ShopBot/1.0 (lookout test)"
      viewport: {{ width: 1024, height: 700 }}
      cookies:
        - {{ name: session, value: abc123 }}
      headers:
        X-Auth: "Bearer ${{SHOP_TOKEN}}"
      steps:
        - include: {{ flow: "flows/login.yaml#login", with: {{ BASE: "{base}", WHO: "ann" }} }}
        - goto: {base}/shop
        - expect_count: {{ css: ".item", equals: 3 }}
        - expect_attribute: {{ css: "#docs", attribute: href, contains: "/docs/" }}
        - expect_hidden: {{ css: ".menu-items" }}
        - hover: {{ css: ".menu" }}
        - expect_visible: {{ css: ".menu-items" }}
        - check: {{ css: "#agree" }}
        - eval: {{ script: "document.getElementById('agree').checked", expect: truthy }}
        - uncheck: {{ css: "#agree" }}
        - eval: {{ script: "document.getElementById('agree').checked", expect: {{ equals: "false" }} }}
        - upload: {{ css: "#file", file: flows/upload.txt }}
        - wait_for_js: {{ script: "document.getElementById('file-name').textContent === 'upload.txt'", timeout: 3s }}
        - frame: {{ css: "#pay" }}
        - fill: {{ css: "#card", text: "1111" }}
        - clear: {{ css: "#card" }}
        - fill: {{ css: "#card", text: "4242" }}
        - click: {{ css: "#pay-btn" }}
        - expect_text: {{ css: "#paid", contains: "Paid with 4242" }}
        - frame: top
        - click: {{ css: "#open-popup" }}
        - window: new
        - expect_title: {{ equals: "Pick one" }}
        - click: {{ css: "#choose" }}
        - wait_for_js: "window.name !== 'pick'"
        - expect_text: {{ css: "#from-popup", contains: "chosen" }}
        - scroll_to: {{ css: "#footer" }}
        - eval: {{ script: "return [innerWidth, document.cookie];", expect: {{ matches: "^\\[1024,.*session=abc123" }} }}
        - goto: {base}/lcp
        - wait_for_js: "document.getElementById('hero') && document.getElementById('hero').complete"
        - eval: "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"
        - goto: {base}/shift
        - wait_for_js: "window.shifted === true"
        - goto: {base}/missing
        - wait_for_js: "window.fetched === true"
        - goto: {base}/broken-js
        - expect_title: Broken
"##
    );
    let also = format!(
        r##"      fail_on: [console_error]
      film_strip: true
      steps:
        - include: "flows/login.yaml#login"
        - goto: {base}/broken-js
        - expect_title: Broken
"##
    )
    .replace(
        "\"flows/login.yaml#login\"",
        &format!(
            "{{ flow: \"flows/login.yaml#login\", with: {{ BASE: \"{base}\", WHO: \"bob\" }} }}"
        ),
    );
    let yaml = format!(
        "checks:\n{}{}",
        check("shop", &shop),
        check("strict", &also)
    );
    let setup = Setup::new(&yaml);
    let pool = pool();
    let results = run_all(&setup, &pool).await;
    pool.shutdown().await;
    let (shop, strict) = (&results[0], &results[1]);

    // Every step held.
    assert_eq!(shop.outcome, Outcome::Ok, "{shop:#?}");
    assert!(shop.steps.iter().all(|s| s.ok), "{:#?}", shop.steps);
    assert_eq!(shop.steps[0].name, format!("goto {base}/login"));
    // Cookies, headers and the user agent were there from the first request.
    let seen = seen.0.lock().unwrap().clone();
    let first = seen
        .iter()
        .find(|(p, ..)| p == "/login")
        .expect("login seen");
    assert!(first.1.contains("session=abc123"), "{first:?}");
    assert_eq!(first.2, "Bearer tok-s3cret-42", "{first:?}");
    assert!(first.3.starts_with("ShopBot/1.0"), "{first:?}");
    let shop_seen = seen.iter().find(|(p, ..)| p == "/shop").expect("shop seen");
    assert_eq!(shop_seen.2, "Bearer tok-s3cret-42");
    // The included login ran in both flows.
    let homes: Vec<_> = seen.iter().filter(|(p, ..)| p == "/home").collect();
    assert_eq!(homes.len(), 2, "{seen:?}");
    assert_eq!(strict.steps[3].name, "expect_text h1");
    assert!(
        strict.steps[..4].iter().all(|s| s.ok),
        "{:#?}",
        strict.steps
    );
    // The popup closed itself: the flow went on in the main window.
    assert!(
        shop.notes
            .iter()
            .any(|n| n.contains("back in the main window")),
        "{:?}",
        shop.notes
    );

    // Web Vitals of each page, from the browser.
    let (_, shop_page) = step_named(shop, &format!("goto {base}/shop"));
    let vitals = shop_page.vitals.as_ref().expect("shop vitals");
    assert!(
        vitals.ttfb_ms.is_some() && vitals.fcp_ms.is_some(),
        "{vitals:?}"
    );
    let (_, late) = step_named(shop, &format!("goto {base}/lcp"));
    let late = late.vitals.as_ref().expect("lcp vitals");
    let lcp = late.lcp_ms.expect("an LCP");
    let fcp = late.fcp_ms.expect("an FCP");
    assert!(
        lcp >= 450.0 && lcp > fcp,
        "LCP after the late image: {late:?}"
    );
    assert!(lcp < 20_000.0, "{late:?}");
    let (_, shifty) = step_named(shop, &format!("goto {base}/shift"));
    let cls = shifty.vitals.as_ref().and_then(|v| v.cls).expect("a CLS");
    assert!(cls > 0.0 && cls < 5.0, "{shifty:?}");
    assert_eq!(late.url.as_deref(), Some(format!("{base}/lcp").as_str()));

    // Without fail_on the errors are listed and the flow passes.
    let (broken_step, _) = step_named(shop, &format!("goto {base}/broken-js"));
    let console = &shop.browser.console_errors;
    assert!(
        console
            .iter()
            .any(|e| e.step == broken_step && e.message.contains("checkout broke")),
        "{console:#?}"
    );
    assert!(
        console
            .iter()
            .any(|e| e.message.contains("Uncaught Error: boom")),
        "the uncaught exception too: {console:#?}"
    );
    let (missing_step, _) = step_named(shop, &format!("goto {base}/missing"));
    let requests = &shop.browser.request_errors;
    assert!(
        requests.iter().any(|e| e.step >= missing_step
            && e.status == Some(404)
            && e.url.as_deref() == Some(format!("{base}/nope.json").as_str())),
        "{requests:#?}"
    );
    assert!(
        shop.browser.film_strip.is_empty(),
        "kept for failing runs only"
    );
    // The token from the environment is masked everywhere.
    let text = serde_json::to_string(&results).unwrap();
    assert!(!text.contains("tok-s3cret-42"), "{text}");

    // With fail_on: [console_error], the same page fails the run at its step.
    assert_eq!(strict.outcome, Outcome::Fail, "{strict:#?}");
    assert_eq!(strict.steps.len(), 5, "{:#?}", strict.steps);
    let reason = strict.error.clone().unwrap_or_default();
    assert!(
        reason.starts_with(&format!(
            "step 5 goto {base}/broken-js: the page logged a console error: checkout broke"
        )),
        "{reason}"
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(strict.screenshot.as_deref().expect("a screenshot"))
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let strip = &strict.browser.film_strip;
    assert_eq!(strip.len(), 5, "a frame per step: {}", strip.len());
    assert_eq!(strip[0].step, 1);
    for frame in strip {
        let jpeg = base64::engine::general_purpose::STANDARD
            .decode(&frame.jpeg)
            .unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]), "a JPEG");
        assert!(jpeg.len() <= lookout::limits::BROWSER_FILM_STRIP_FRAME_BYTES_MAX);
    }

    // /metrics: the vitals, CLS in its own gauge, and promtool is content.
    let checks = ["shop", "strict"]
        .iter()
        .map(|name| lookout::metrics::CheckSnapshot {
            name: name.to_string(),
            kind: "browser",
            target: base.clone(),
            status: lookout::rules::Status::Up,
        })
        .collect();
    let snapshot = lookout::metrics::Snapshot {
        checks,
        results: results.clone(),
        now: chrono::Utc::now(),
        ..Default::default()
    };
    let openmetrics = lookout::metrics::Metrics::new().encode(&snapshot).unwrap();
    let text = lookout::metrics::to_prometheus_text(&openmetrics);
    let lcp_series = format!(
        "lookout_browser_web_vital_seconds{{check=\"shop\",region=\"test\",step=\"{}\",vital=\"lcp\"}}",
        step_named(shop, &format!("goto {base}/lcp")).0
    );
    assert!(text.contains(&lcp_series), "{text}");
    assert!(
        text.contains("lookout_browser_cumulative_layout_shift{check=\"shop\""),
        "{text}"
    );
    assert!(
        text.contains("lookout_browser_console_errors{check=\"strict\",region=\"test\"} 2"),
        "{text}"
    );
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics:\n{said}\n{text}");
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[tokio::test]
async fn chromium_each_new_step_fails_at_its_step_with_its_sentence_and_a_screenshot() {
    let (base, _) = start_app().await;
    // (check, its steps after `goto /shop`, failing step, error contains)
    let table: [(&str, &str, usize, &str); 6] = [
        (
            "eval",
            r#"- eval: { script: "document.title", expect: { equals: "Cart" } }"#,
            2,
            "the result \"Shop\" does not equal \"Cart\"",
        ),
        (
            "wait-js",
            r#"- wait_for_js: { script: "window.never === true", timeout: 1s }"#,
            2,
            "not truthy within 1s (last: the result false)",
        ),
        (
            "count",
            r#"- expect_count: { css: ".item", above: 5 }"#,
            2,
            "3 elements match; expected above 5",
        ),
        (
            "hidden",
            "- hover: { css: \".menu\" }\n        - expect_hidden: { css: \".menu-items\" }",
            3,
            "the element is still visible after 2s",
        ),
        (
            "frame",
            "- frame: { css: \"#pay\" }\n        - click: { css: \"#open-popup\" }",
            3,
            "no element matches",
        ),
        (
            "requests",
            "- goto: BASE/missing\n        - wait_for_js: \"window.fetched === true\"",
            2,
            "a request of the page failed: BASE/nope.json the server responded with a status of 404",
        ),
    ];
    let mut yaml = String::from("checks:\n");
    for (name, steps, _, _) in &table {
        let fail_on = if *name == "requests" {
            "      fail_on: [request_error]\n"
        } else {
            ""
        };
        yaml += &check(
            name,
            &format!(
                "{fail_on}      steps:\n        - goto: {base}/shop\n        {}\n",
                steps.replace("BASE", &base)
            ),
        );
    }
    let setup = Setup::new(&yaml);
    let pool = pool();
    let results = run_all(&setup, &pool).await;
    pool.shutdown().await;
    for ((name, _, index, error), result) in table.iter().zip(&results) {
        let error = error.replace("BASE", &base);
        assert_eq!(result.outcome, Outcome::Fail, "{name}: {result:#?}");
        assert_eq!(result.steps.len(), *index, "{name}: {:#?}", result.steps);
        let failing = &result.steps[index - 1];
        assert!(!failing.ok, "{name}");
        let reason = result.error.clone().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("step {index} {}: ", failing.name))
                && reason.contains(&error),
            "{name}: {reason}"
        );
        assert!(result.screenshot.is_some(), "{name}: a screenshot");
    }
}

#[test]
fn new_steps_are_checked_when_the_config_loads() {
    let yaml = r##"checks:
  - name: bad
    every: 1m
    browser:
      fail_on: [console_warning]
      viewport: { width: 0, height: 10 }
      headers: { "Bad Header": x }
      steps:
        - goto: http://127.0.0.1:9/
        - upload: { css: "#f", file: no/such/file.txt }
        - frame: sideways
        - window: { name: x }
        - expect_count: { css: a }
        - eval: { script: "1", expect: { matches: "(" } }
        - include: "flows/none.yaml#login"
"##;
    let dirs = common::ConfigDirs::new(yaml);
    let errors = match lookout::config::load(&dirs.checks(), &dirs.alerts()) {
        Ok(_) => panic!("the config loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    let all = errors.join("\n");
    for expected in [
        ":5:17: unknown `fail_on` entry `console_warning`",
        ":6:26: `width` must be a whole number of at least 1",
        "`Bad Header` is not a valid header name",
        ":10:38: `file`",
        ":11:18: `frame` (step 3): `sideways` is not `parent`, `top`",
        ":12:21: unknown key `name`",
        "`expect_count` (step 5) needs exactly one of `equals`, `above` or `below`",
        "invalid regular expression in `matches`",
        "`include` (step 7): cannot read",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

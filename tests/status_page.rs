//! The status page people expect (#17), end to end through `lookout
//! serve` on loopback: groups in their configured order with roll-ups and
//! "Other", display names, announcements written in YAML and through the
//! API (admin token) with their timeline, safe Markdown, as real headless
//! Chromium renders the page (screenshots kept under target/test-artifacts);
//! the Atom feed read by Python's feedparser; badges; and private pages
//! (`access: token` and `access: basic`) with `/health` still open.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ConfigDirs, Server, client, get_json, start_target, wait_for};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-for-the-status-page-test";

fn grouped(target: &common::Target) -> ConfigDirs {
    ConfigDirs::new(&format!(
        "status_page:
  title: Acme status
  description: Everything Acme runs
  logo: \"{logo}\"
  footer: {{ text: Acme Inc., url: https://example.com/ }}
  groups:
    - name: Website
      description: The shop
      checks: [web-up]
    - name: Payments
      labels: {{ team: payments }}
    - name: Search
      checks: [search-ok]
announcements:
  - id: planned-db
    title: Planned database work
    severity: maintenance
    groups: [Payments]
    updates:
      - {{ at: \"2026-01-01T10:00:00Z\", status: identified, text: \"Planned for **Sunday**\" }}
checks:
  - name: web-up
    http: {{ url: \"{ok}\" }}
    every: 1s
  - name: api-down
    http: {{ url: \"{down}\" }}
    every: 1s
    labels: {{ team: payments }}
    alert: {{ failures: 1 }}
  - name: search-ok
    http: {{ url: \"{ok}\" }}
    every: 1s
    status_page: {{ display_name: Search engine }}
  - name: lonely
    http: {{ url: \"{ok}\" }}
    every: 1s
  - name: internal-db
    tcp: {{ address: \"{addr}\" }}
    every: 1s
    status_page: {{ hidden: true }}
",
        ok = target.url("/ok"),
        // On loopback like everything the browser fetches.
        logo = target.url("/ok"),
        down = target.url("/500"),
        addr = target.addr,
    ))
}

async fn settled(server: &Server) {
    let http = client();
    let url = format!("{}/api/v1/status", server.base);
    wait_for("every shown check judged", Duration::from_secs(40), || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let (code, status) = get_json(&http, &url).await;
            let checks = status["checks"].as_array()?;
            let judged = |name: &str, want: &str| {
                checks
                    .iter()
                    .any(|c| c["name"] == name && c["status"] == want)
            };
            (code == 200
                && judged("web-up", "up")
                && judged("api-down", "down")
                && judged("search-ok", "up")
                && judged("lonely", "up"))
            .then_some(())
        }
    })
    .await;
}

fn chromium() -> String {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if found {
            return name.to_string();
        }
    }
    panic!("no chromium on PATH: scripts/test installs Debian's chromium");
}

/// Loads `url` in headless Chromium (no JavaScript needed by the page):
/// the DOM as it rendered it, and a screenshot at `png`.
fn render_in_chromium(url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-background-networking".to_string(),
        "--no-first-run".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
        "--window-size=1100,2400".to_string(),
    ];
    let run = |extra: &[String]| {
        let mut child = Command::new(chromium())
            .args(common.iter().chain(extra))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Bounded: a hung browser is killed, never waited on forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dom = run(&["--dump-dom".to_string(), url.to_string()]);
    run(&[format!("--screenshot={}", png.display()), url.to_string()]);
    let shot = std::fs::read(png).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG"),
        "a screenshot at {}",
        png.display()
    );
    dom
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn chromium_dom(url: String, png: &str) -> String {
    let png = artifacts_dir().join(png);
    tokio::task::spawn_blocking(move || render_in_chromium(&url, &png))
        .await
        .unwrap()
}

/// The part of `dom` from the element carrying `marker` to its `end` tag.
fn part<'a>(dom: &'a str, marker: &str, end: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in:\n{dom}"));
    let stop = dom[start..].find(end).map_or(dom.len(), |i| start + i);
    &dom[start..stop]
}

fn position(dom: &str, needle: &str) -> usize {
    dom.find(needle)
        .unwrap_or_else(|| panic!("no {needle} in:\n{dom}"))
}

async fn send(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_announcements_in_headless_chromium() {
    let target = start_target().await;
    let dirs = grouped(&target);
    let server = Server::start_with_env(&dirs, &[("LOOKOUT_ADMIN_TOKEN", ADMIN)]);
    settled(&server).await;
    let base = server.base.clone();
    let notes = format!("{base}/api/v1/announcements");

    // Writing needs the admin token; reading a public page does not.
    let first = json!({
        "id": "api-outage",
        "title": "Payments API errors",
        "severity": "outage",
        "checks": ["api-down"],
        "groups": ["Payments"],
        "update": { "status": "investigating", "text": "We see **errors**. <script>alert(1)</script>" }
    });
    let (code, _) = send(reqwest::Method::POST, &notes, None, Some(first.clone())).await;
    assert_eq!(code, 401, "no token, no announcement");
    let (code, wrong) = send(
        reqwest::Method::POST,
        &notes,
        Some(ADMIN),
        Some(json!({ "title": "x", "severity": "bad" })),
    )
    .await;
    assert_eq!(code, 400, "{wrong}");
    let (code, created) = send(reqwest::Method::POST, &notes, Some(ADMIN), Some(first)).await;
    assert_eq!(code, 201, "{created}");
    let one = format!("{notes}/api-outage");
    for (status, text) in [
        (
            "identified",
            "A bad deploy; see [the log](https://example.com/log)",
        ),
        ("monitoring", "Rolled back, *watching*"),
    ] {
        let body = json!({ "update": { "status": status, "text": text } });
        let (code, changed) = send(reqwest::Method::PATCH, &one, Some(ADMIN), Some(body)).await;
        assert_eq!(code, 200, "{changed}");
    }
    let (code, _) = send(
        reqwest::Method::PATCH,
        &one,
        None,
        Some(json!({ "update": { "status": "resolved", "text": "x" } })),
    )
    .await;
    assert_eq!(code, 401);

    // Open: at the top of the page and on the affected check and group.
    let dom = chromium_dom(format!("{base}/"), "status-page-groups.png").await;
    let groups: Vec<&str> = dom
        .match_indices("data-group=\"")
        .map(|(i, m)| {
            let rest = &dom[i + m.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(groups, ["Website", "Payments", "Search", "Other"], "{dom}");
    let website = part(&dom, "data-group=\"Website\"", "data-group=\"Payments\"");
    assert!(website.contains("data-group-status=\"up\"") && website.contains("The shop"));
    assert!(website.contains("data-check=\"web-up\""), "{website}");
    let payments = part(&dom, "data-group=\"Payments\"", "data-group=\"Search\"");
    assert!(
        payments.contains("data-group-status=\"down\"")
            && payments.contains("data-rollup=\"major_outage\""),
        "{payments}"
    );
    assert!(payments.contains("data-check=\"api-down\""), "by label");
    assert!(payments.contains("data-group-announcement=\"api-outage\""));
    assert!(payments.contains("data-check-announcement=\"api-outage\""));
    let search = part(&dom, "data-group=\"Search\"", "data-group=\"Other\"");
    assert!(search.contains(">Search engine<"), "display_name: {search}");
    let other = part(&dom, "data-group=\"Other\"", "Recent incidents");
    assert!(other.contains("data-check=\"lonely\""), "{other}");
    assert!(!dom.contains("internal-db"), "hidden stays hidden");
    assert!(dom.contains("<title>Acme status</title>") && dom.contains("Everything Acme runs"));
    assert!(dom.contains("data-footer-link") && dom.contains("Acme Inc."));
    let open = part(
        &dom,
        "data-announcements=\"open\"",
        "data-group=\"Website\"",
    );
    assert!(
        position(&dom, "data-announcements=\"open\"") < position(&dom, "data-group=\"Website\""),
        "announcements first"
    );
    assert!(
        open.contains("data-announcement=\"planned-db\""),
        "from YAML: {open}"
    );
    let outage = part(open, "data-announcement=\"api-outage\"", "</article>");
    let order: Vec<usize> = ["investigating", "identified", "monitoring"]
        .iter()
        .map(|s| position(outage, &format!("data-update=\"{s}\"")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {outage}");
    assert!(outage.contains("<strong>errors</strong>"), "{outage}");
    assert!(
        outage.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "a <script> stays text: {outage}"
    );
    assert!(!dom.contains("<script"), "no script element anywhere");
    assert!(outage.contains("href=\"https://example.com/log\""));

    // Resolved: off the top, kept under past announcements, in order.
    let resolve = json!({ "update": { "status": "resolved", "text": "All good" } });
    let (code, resolved) = send(reqwest::Method::PATCH, &one, Some(ADMIN), Some(resolve)).await;
    assert_eq!(code, 200, "{resolved}");
    let updates = resolved["announcement"]["updates"].as_array().unwrap();
    assert_eq!(updates.len(), 4);
    let dom = chromium_dom(format!("{base}/"), "status-page-resolved.png").await;
    let open = part(
        &dom,
        "data-announcements=\"open\"",
        "data-group=\"Website\"",
    );
    assert!(!open.contains("api-outage"), "{open}");
    let past = part(&dom, "data-announcements=\"past\"", "</section>");
    let order: Vec<usize> = ["investigating", "identified", "monitoring", "resolved"]
        .iter()
        .map(|s| position(past, &format!("data-update=\"{s}\"")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in order: {past}");
    let (code, listed) = get_json(&client(), &notes).await;
    assert_eq!(code, 200);
    assert_eq!(listed["announcements"].as_array().unwrap().len(), 2);

    // One check's history page, without JavaScript, in Chromium too.
    let dom = chromium_dom(format!("{base}/checks/api-down"), "status-check-page.png").await;
    assert!(dom.contains("data-check-page=\"api-down\""), "{dom}");
    assert_eq!(
        part(&dom, "data-daily", "</table>")
            .matches("data-day=")
            .count(),
        90
    );
    let failure = part(&dom, "data-failure-region=\"local\"", "</div>");
    assert!(failure.contains("status 500"), "{failure}");
    let incidents = part(&dom, "data-incidents", "</table>");
    assert!(incidents.contains("data-incident=") && incidents.contains("(ongoing)"));
    let (code, _) = get_json(&client(), &format!("{base}/checks/internal-db")).await;
    assert_eq!(code, 404);

    // Deleting needs the token too.
    let (code, _) = send(reqwest::Method::DELETE, &one, None, None).await;
    assert_eq!(code, 401);
    let (code, _) = send(reqwest::Method::DELETE, &one, Some(ADMIN), None).await;
    assert_eq!(code, 204);
    let (code, _) = send(
        reqwest::Method::DELETE,
        &format!("{notes}/planned-db"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(code, 409, "YAML announcements are changed in YAML");
}

/// Runs Python's feedparser on `xml`; the parsed feed as JSON.
fn feedparser(xml: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feed.atom");
    std::fs::write(&file, xml).unwrap();
    let script = r#"
import json, sys, feedparser
d = feedparser.parse(sys.argv[1])
print(json.dumps({
  "bozo": int(d.bozo), "version": d.version,
  "id": d.feed.get("id"), "title": d.feed.get("title"), "updated": d.feed.get("updated"),
  "entries": [{"id": e.get("id"), "title": e.get("title"), "updated": e.get("updated"),
               "link": e.get("link"), "content": (e.get("content") or [{}])[0].get("value", "")}
              for e in d.entries]}))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &file.display().to_string()])
        .output()
        .expect("python3 (scripts/test installs feedparser)");
    assert!(
        out.status.success(),
        "feedparser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Whether Python's XML parser reads `svg` as an `<svg>` document.
fn is_svg(svg: &str) -> bool {
    let script = "import sys, xml.etree.ElementTree as E; r = E.fromstring(sys.stdin.read()); sys.exit(0 if r.tag == '{http://www.w3.org/2000/svg}svg' else 1)";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(svg.as_bytes())
        .unwrap();
    child.wait().unwrap().success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_parses_in_feedparser_and_badges_show_up_down_and_hide() {
    let target = start_target().await;
    let dirs = grouped(&target);
    let server = Server::start_with_env(&dirs, &[("LOOKOUT_ADMIN_TOKEN", ADMIN)]);
    settled(&server).await;
    let base = server.base.clone();
    // The written side of the automatic incident, and a resolved notice.
    let (_, status) = get_json(&client(), &format!("{base}/api/v1/status")).await;
    let incident = status["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["check"] == "api-down")
        .expect("api-down's incident")["id"]
        .clone();
    let notes = format!("{base}/api/v1/announcements");
    let body = json!({
        "id": "api-written", "title": "Payments API", "severity": "outage",
        "checks": ["api-down"], "incident": incident,
        "update": { "status": "identified", "text": "A bad deploy <b>x</b>" }
    });
    let (code, created) = send(reqwest::Method::POST, &notes, Some(ADMIN), Some(body)).await;
    assert_eq!(code, 201, "{created}");
    let one = format!("{notes}/api-written");
    for status in ["monitoring", "resolved"] {
        let body = json!({ "update": { "status": status, "text": format!("now {status}") } });
        let (code, _) = send(reqwest::Method::PATCH, &one, Some(ADMIN), Some(body)).await;
        assert_eq!(code, 200);
    }

    let response = client()
        .get(format!("{base}/feed.atom"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/atom+xml")
    );
    let feed = feedparser(&response.text().await.unwrap());
    assert_eq!(feed["bozo"], 0, "well-formed: {feed}");
    assert_eq!(feed["version"], "atom10");
    assert_eq!(feed["title"], "Acme status");
    assert!(
        feed["id"].is_string() && feed["updated"].is_string(),
        "{feed}"
    );
    let entries = feed["entries"].as_array().unwrap();
    for entry in entries {
        assert!(
            entry["id"].is_string() && entry["title"].is_string() && entry["updated"].is_string()
        );
    }
    let titled = |title: &str| {
        entries
            .iter()
            .find(|e| e["title"] == title)
            .unwrap_or_else(|| panic!("no entry {title:?} in {feed}"))
    };
    let written = titled("[outage] Payments API (resolved)");
    let content = written["content"].as_str().unwrap();
    let at = |s: &str| {
        content
            .find(s)
            .unwrap_or_else(|| panic!("{s} in {content}"))
    };
    assert!(at("Identified") < at("Monitoring") && at("Monitoring") < at("Resolved"));
    assert!(
        content.contains("&lt;b&gt;x&lt;/b&gt;"),
        "HTML in the text stays text: {content}"
    );
    let outage = titled("api-down is down");
    assert!(
        outage["content"]
            .as_str()
            .unwrap()
            .contains("now monitoring"),
        "the written update rides along: {outage}"
    );
    assert!(
        outage["link"]
            .as_str()
            .unwrap()
            .ends_with("/checks/api-down")
    );
    titled("[maintenance] Planned database work");
    // Newest change first.
    let updated: Vec<&str> = entries
        .iter()
        .map(|e| e["updated"].as_str().unwrap())
        .collect();
    let mut sorted = updated.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(updated, sorted);
    // Per group.
    let website = client()
        .get(format!("{base}/feed.atom?group=Website"))
        .send()
        .await
        .unwrap();
    let website = feedparser(&website.text().await.unwrap());
    assert_eq!(website["bozo"], 0);
    assert_eq!(website["title"], "Acme status · Website");
    assert!(
        website["entries"].as_array().unwrap().is_empty(),
        "{website}"
    );
    let payments = client()
        .get(format!("{base}/feed.atom?group=Payments"))
        .send()
        .await
        .unwrap();
    let payments = feedparser(&payments.text().await.unwrap());
    assert_eq!(
        payments["entries"].as_array().unwrap().len(),
        3,
        "{payments}"
    );
    let (code, _) = get_json(&client(), &format!("{base}/feed.atom?group=Nope")).await;
    assert_eq!(code, 404);

    // Badges.
    let badge = |path: &str| {
        let url = format!("{base}/badge/{path}");
        async move {
            let response = client().get(url).send().await.unwrap();
            let code = response.status().as_u16();
            let headers = response.headers().clone();
            (code, headers, response.text().await.unwrap())
        }
    };
    let (code, headers, up) = badge("web-up/status.svg").await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "image/svg+xml");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=60")
    );
    assert!(is_svg(&up), "{up}");
    assert!(
        up.contains(">web-up</text>") && up.contains(">up</text>") && up.contains("fill=\"#4c1\""),
        "{up}"
    );
    let (code, _, down) = badge("api-down/status.svg").await;
    assert_eq!(code, 200);
    assert!(is_svg(&down));
    assert!(
        down.contains(">down</text>") && down.contains("fill=\"#e05d44\""),
        "{down}"
    );
    let (code, _, _) = badge("internal-db/status.svg").await;
    assert_eq!(code, 404, "a hidden check has no badge");
    let (code, _, _) = badge("internal-db/uptime/24h.svg").await;
    assert_eq!(code, 404);
    let (code, _, uptime) = badge("web-up/uptime/24h.svg").await;
    assert_eq!(code, 200);
    assert!(
        is_svg(&uptime) && uptime.contains(">100%</text>") && uptime.contains(">uptime 24h</text>"),
        "{uptime}"
    );
    let (code, _, uptime) = badge("api-down/uptime/7d.svg").await;
    assert_eq!(code, 200);
    assert!(
        uptime.contains("fill=\"#e05d44\""),
        "down all along: {uptime}"
    );
    let (code, _, latency) = badge("search-ok/latency.svg").await;
    assert_eq!(code, 200);
    assert!(
        is_svg(&latency) && latency.contains(">p95</text>") && latency.contains("ms</text>"),
        "{latency}"
    );
    let (code, _, group) = badge("group/Payments/status.svg").await;
    assert_eq!(code, 200);
    assert!(
        group.contains(">Payments</text>") && group.contains(">down</text>"),
        "{group}"
    );
    let (code, _, group) = badge("group/Website/uptime/30d.svg").await;
    assert_eq!(code, 200);
    assert!(group.contains(">100%</text>"), "{group}");
    let (code, _, _) = badge("web-up/uptime/1y.svg").await;
    assert_eq!(code, 404);
}

fn private(target: &common::Target, access: &str) -> ConfigDirs {
    ConfigDirs::new(&format!(
        "status_page:
{access}
  metrics_token: metrics-token-0123456789
checks:
  - name: web
    http: {{ url: \"{ok}\" }}
    every: 1s
",
        ok = target.url("/ok"),
    ))
}

/// Every route the page's access governs refuses `request` without
/// credentials; `/health` and the probe-side routes stay open.
async fn all_refused_without_credentials(base: &str) {
    for path in [
        "/",
        "/api/v1/status",
        "/api/v1/status/web",
        "/checks/web",
        "/feed.atom",
        "/badge/web/status.svg",
        "/badge/web/uptime/24h.svg",
        "/api/v1/announcements",
    ] {
        let response = client().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert!(
            response.headers().contains_key("www-authenticate"),
            "{path}"
        );
    }
    wait_for("/health 200", Duration::from_secs(20), || async {
        let (code, _) = get_json(&client(), &format!("{base}/health")).await;
        (code == 200).then_some(())
    })
    .await;
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 401, "/metrics has its own token");
    let metrics = client()
        .get(format!("{base}/metrics"))
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_pages_by_token_and_by_basic_refuse_without_credentials() {
    let target = start_target().await;
    let token = "page-token-abcdefghijklmnop";
    let dirs = private(&target, "  access: token\n  token: ${PAGE_TOKEN}");
    let server = Server::start_with_env(&dirs, &[("PAGE_TOKEN", token)]);
    let base = server.base.clone();
    all_refused_without_credentials(&base).await;
    for path in ["/", "/api/v1/status", "/feed.atom", "/badge/web/status.svg"] {
        let bearer = client()
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200, "{path} with the bearer token");
        let wrong = client()
            .get(format!("{base}{path}"))
            .bearer_auth("page-token-abcdefghijklmnoX")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    let keyed = client()
        .get(format!("{base}/badge/web/status.svg?key={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200, "a ?key= link");
    assert!(
        keyed.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("private")
    );
    drop(server);

    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let users =
        format!("  access: basic\n  users:\n    - {{ name: ops, password_hash: \"{hash}\" }}");
    let dirs = private(&target, &users);
    let server = Server::start(&dirs);
    let base = server.base.clone();
    all_refused_without_credentials(&base).await;
    for path in ["/", "/api/v1/status", "/feed.atom", "/badge/web/status.svg"] {
        let right = client()
            .get(format!("{base}{path}"))
            .basic_auth("ops", Some("correct horse"))
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200, "{path} with the right password");
        let wrong = client()
            .get(format!("{base}{path}"))
            .basic_auth("ops", Some("wrong horse"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong password");
    }
}

#[test]
fn a_plain_password_and_an_unknown_group_are_config_errors_with_positions() {
    let dirs = ConfigDirs::new(
        "status_page:
  access: basic
  users:
    - { name: ops, password_hash: hunter2 }
  groups:
    - name: Web
      checks: [nope]
announcements:
  - id: a
    title: T
    severity: loud
    groups: [Missing]
checks:
  - name: web
    tcp: { address: \"127.0.0.1:9\" }
",
    );
    let errors = lookout::config::load(&dirs.checks(), &dirs.alerts()).unwrap_err();
    let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    let text = lines.join("\n");
    assert!(text.contains("checks.yaml:4:"), "{text}");
    assert!(text.contains("must be a bcrypt hash"), "{text}");
    assert!(!text.contains("hunter2"), "never echo a password: {text}");
    assert!(text.contains("unknown check `nope`"), "{text}");
    assert!(text.contains("`severity` must be one of"), "{text}");
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .expect("a gzip body");
    text
}

/// #19: the page and its JSON are made once per report and kept gzipped:
/// the gzip body is the plain one compressed, an `ETag` answers a reload
/// with 304, `Vary` names the negotiation; `?group=` selects one group and
/// an unknown group is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_json_come_gzipped_once_with_an_etag() {
    let target = start_target().await;
    let dirs = grouped(&target);
    let server = Server::start(&dirs);
    settled(&server).await;
    let base = server.base.clone();
    let http = client();
    for path in ["/", "/api/v1/status"] {
        let url = format!("{base}{path}");
        // Within one report the two answers are the same body; a report
        // renewed in between (every 5 s) changes the ETag, so try again.
        let mut same = false;
        for _ in 0..10 {
            let zipped = http
                .get(&url)
                .header("accept-encoding", "gzip")
                .send()
                .await
                .unwrap();
            assert_eq!(zipped.status(), 200);
            assert_eq!(zipped.headers()["content-encoding"], "gzip", "{path}");
            assert!(
                zipped.headers()["vary"]
                    .to_str()
                    .unwrap()
                    .contains("accept-encoding")
            );
            let etag = zipped.headers()["etag"].clone();
            let unzipped = gunzip(&zipped.bytes().await.unwrap());
            let plain = http.get(&url).send().await.unwrap();
            assert!(plain.headers().get("content-encoding").is_none(), "{path}");
            let plain_etag = plain.headers()["etag"].clone();
            let plain = plain.text().await.unwrap();
            if plain_etag != etag {
                continue;
            }
            assert_eq!(unzipped, plain, "{path}");
            let again = http
                .get(&url)
                .header("if-none-match", etag.clone())
                .send()
                .await
                .unwrap();
            if again.status() == 200 {
                continue; // the report was renewed in between
            }
            assert_eq!(again.status(), 304, "{path}");
            same = true;
            break;
        }
        assert!(same, "{path}: one body within one report");
    }
    let payments = http
        .get(format!("{base}/?group=Payments"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(payments.contains("data-check=\"api-down\""), "{payments}");
    assert!(!payments.contains("data-check=\"web-up\""), "{payments}");
    let unknown = http
        .get(format!("{base}/?group=Nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

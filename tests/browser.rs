//! Browser flows in real Chromium through a real chromedriver, against a
//! small app on 127.0.0.1 (a login form leading to a dashboard, and broken
//! variants of it): the good flow passes, each broken one fails at the right
//! step with a screenshot, timeouts are kept, sessions queue under their
//! limit, secrets stay masked, and no browser process outlives its pool.
//!
//! Each test starts its own pool (its own chromedriver, its own process
//! group), so tests running in parallel never see each other's processes.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use axum::routing::get;
use base64::Engine;
use common::ConfigDirs;
use lookout::browser::{BrowserOptions, BrowserPool};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::{Outcome, ProbeResult};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The secret typed into the login form (from the environment).
const SECRET_USER: &str = "alice.s3cret@example.com";

/// Requests the app saw: (variant, path, when), and their User-Agents.
#[derive(Clone, Default)]
struct AppState {
    requests: Arc<Mutex<Vec<(String, String, Instant)>>>,
    user_agents: Arc<Mutex<Vec<String>>>,
}

struct App {
    base: String,
    state: AppState,
}

/// The app. `/{variant}/login` and `/{variant}/dashboard`; variants:
/// `ok` (and any other name: the good app), `no-email` (the form lacks the
/// email field), `hidden` (the dashboard never shows), `goodbye` (the
/// wrong greeting), `hang` (the dashboard never answers).
async fn start_app() -> App {
    let state = AppState::default();
    let app = Router::new()
        .route("/{variant}/login", get(login))
        .route("/{variant}/dashboard", get(dashboard))
        .with_state(state.clone());
    let addr = common::serve_on_loopback(app).await;
    App {
        base: format!("http://{addr}"),
        state,
    }
}

fn record(state: &AppState, variant: &str, path: &str, headers: &HeaderMap) {
    state
        .requests
        .lock()
        .unwrap()
        .push((variant.to_string(), path.to_string(), Instant::now()));
    state
        .user_agents
        .lock()
        .unwrap()
        .push(common::user_agent(headers));
}

async fn login(
    State(state): State<AppState>,
    Path(variant): Path<String>,
    headers: HeaderMap,
) -> Html<String> {
    record(&state, &variant, "login", &headers);
    let email = if variant == "no-email" {
        ""
    } else {
        r#"<label>Email <input id="email" name="email" type="text"></label>"#
    };
    Html(format!(
        r#"<!doctype html><html><head><title>Sign in</title></head><body>
        <form action="dashboard" method="get">
          {email}
          <label>Password <input id="password" name="password" type="password"></label>
          <select id="plan" name="plan"><option value="free">Free</option><option value="pro">Pro</option></select>
          <button type="submit">Sign in</button>
        </form></body></html>"#
    ))
}

async fn dashboard(
    State(state): State<AppState>,
    Path(variant): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Html<String> {
    record(&state, &variant, "dashboard", &headers);
    if variant == "hang" {
        std::future::pending::<()>().await;
    }
    let email = query.get("email").cloned().unwrap_or_default();
    let greeting = if variant == "goodbye" {
        "Goodbye"
    } else {
        "Welcome"
    };
    let style = if variant == "hidden" {
        "display:none"
    } else {
        ""
    };
    Html(format!(
        r#"<!doctype html><html><head><title>Dashboard</title></head><body>
        <div class="dashboard" style="{style}"><h1>{greeting}, {email}</h1><p>plan {plan}</p></div>
        </body></html>"#,
        plan = query.get("plan").cloned().unwrap_or_default()
    ))
}

/// The six-step login flow against `variant`, as a checks file.
fn login_flow(app: &App, name: &str, variant: &str, timeout: &str) -> String {
    format!(
        r##"checks:
  - name: {name}
    browser:
      steps:
        - goto: {base}/{variant}/login
        - fill: {{ css: "#email", text: "${{SYNTH_USER}}" }}
        - select: {{ css: "#plan", value: pro }}
        - click: {{ css: "button[type=submit]" }}
        - wait_for: {{ css: ".dashboard", timeout: 2s }}
        - expect_text: {{ css: "h1", contains: "Welcome" }}
        - expect_title: {{ equals: Dashboard }}
    every: 1m
    timeout: {timeout}
"##,
        base = app.base
    )
}

fn env(name: &str) -> Option<String> {
    match name {
        "SYNTH_USER" => Some(SECRET_USER.to_string()),
        _ => None,
    }
}

fn load(yaml: &str) -> lookout::config::Config {
    let dirs = ConfigDirs::new(yaml);
    lookout::config::load_with_env(&dirs.checks(), &dirs.alerts(), &env).unwrap_or_else(|e| {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        panic!("test config is invalid:\n{}", lines.join("\n"))
    })
}

fn runner(config: &lookout::config::Config, pool: &BrowserPool) -> Runner {
    Runner::new(
        ProbeIdentity {
            region: "test".into(),
            probe: "test-probe".into(),
        },
        config.secrets.clone(),
    )
    .with_browser(pool.clone())
}

fn pool(sessions: usize) -> BrowserPool {
    BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions,
        profiles_in: None,
    })
}

async fn run_flow(app: &App, pool: &BrowserPool, variant: &str) -> ProbeResult {
    let config = load(&login_flow(app, "login-flow", variant, "30s"));
    runner(&config, pool).run(&config.checks[0]).await
}

fn png_of(result: &ProbeResult) -> Vec<u8> {
    let encoded = result
        .screenshot
        .as_deref()
        .unwrap_or_else(|| panic!("no screenshot: {result:?}"));
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap()
}

/// Live (not zombie) processes in `group`, and those naming `home`.
fn survivors(group: i32, home: Option<&std::path::Path>) -> Vec<String> {
    let home = home.map(|h| h.display().to_string());
    lookout::browser::driver::list_processes()
        .into_iter()
        .filter(|p| !p.zombie)
        .filter(|p| {
            p.pgid == group
                || home
                    .as_ref()
                    .is_some_and(|h| p.cmdline.iter().any(|a| a.contains(h.as_str())))
        })
        .map(|p| format!("{} {}", p.pid, p.cmdline.join(" ")))
        .collect()
}

#[tokio::test]
async fn the_good_flow_passes_with_every_step_and_the_page_load_time() {
    let app = start_app().await;
    let pool = pool(2);
    let result = run_flow(&app, &pool, "ok").await;
    pool.shutdown().await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:#?}");
    let names: Vec<&str> = result.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("goto {}/ok/login", app.base).as_str(),
            "fill #email",
            "select #plan",
            "click button[type=submit]",
            "wait_for .dashboard",
            "expect_text h1",
            "expect_title equals \"Dashboard\"",
        ]
    );
    assert!(result.steps.iter().all(|s| s.ok && s.error.is_none()));
    let load = result.steps[0].load_ms.expect("goto reports the load time");
    assert!(load > 0.0 && load < result.duration_ms, "{load}");
    assert!(result.phases_ms.ttfb.is_some(), "{:?}", result.phases_ms);
    // Steps are in order and within the run.
    for pair in result.steps.windows(2) {
        assert!(
            pair[1].at_ms >= pair[0].at_ms + pair[0].ms - 0.01,
            "{pair:?}"
        );
    }
    assert!(result.screenshot.is_none() && result.error.is_none());
    // The browser says who it is, as every probe request does.
    let agents = app.state.user_agents.lock().unwrap().clone();
    assert!(
        agents
            .iter()
            .all(|ua| ua.starts_with("Lookout/") && ua.contains("check=login-flow")),
        "{agents:?}"
    );
    // The form was really filled and submitted, secret and all.
    let serialized = serde_json::to_string(&result).unwrap();
    assert!(!serialized.contains(SECRET_USER), "{serialized}");
}

#[tokio::test]
async fn each_broken_variant_fails_at_its_step_with_a_screenshot_url_and_title() {
    let app = start_app().await;
    let pool = pool(2);
    // (variant, failing step, its name, error contains, page title)
    let table = [
        (
            "no-email",
            2,
            "fill #email",
            "no element matches",
            "Sign in",
        ),
        (
            "hidden",
            5,
            "wait_for .dashboard",
            "the element is not visible within 2s",
            "Dashboard",
        ),
        (
            "goodbye",
            6,
            "expect_text h1",
            "text \"Goodbye, ****\" does not contain \"Welcome\"",
            "Dashboard",
        ),
    ];
    for (variant, index, name, error, title) in table {
        let result = run_flow(&app, &pool, variant).await;
        assert_eq!(result.outcome, Outcome::Fail, "{variant}: {result:#?}");
        assert_eq!(result.steps.len(), index, "{variant}: {:#?}", result.steps);
        let failing = &result.steps[index - 1];
        assert_eq!(failing.name, name, "{variant}");
        assert!(!failing.ok);
        assert!(
            failing.error.as_deref().unwrap_or("").contains(error),
            "{variant}: {failing:?}"
        );
        assert!(result.steps[..index - 1].iter().all(|s| s.ok), "{variant}");
        let expected = format!("step {index} {name}: ");
        let reason = result.error.as_deref().unwrap_or("");
        assert!(
            reason.starts_with(&expected) && reason.contains(error),
            "{variant}: {reason}"
        );
        let png = png_of(&result);
        assert!(png.starts_with(PNG_SIGNATURE), "{variant}");
        assert!(png.len() > 1000, "{variant}: {} bytes", png.len());
        let page = result.page.clone().expect("page on failure");
        assert_eq!(page.title.as_deref(), Some(title), "{variant}");
        let url = page.url.unwrap_or_default();
        assert!(url.starts_with(&app.base) && url.contains(variant), "{url}");
        // The secret was in the page's URL and text: masked in both.
        let serialized = serde_json::to_string(&result).unwrap();
        assert!(!serialized.contains(SECRET_USER), "{variant}: {serialized}");
    }
    pool.shutdown().await;
}

#[tokio::test]
async fn a_flow_past_its_timeout_ends_within_a_second_of_it_and_leaves_no_browser() {
    let app = start_app().await;
    let pool = pool(2);
    let config = load(&login_flow(&app, "hung", "hang", "10s"));
    let started = Instant::now();
    let result = runner(&config, &pool).run(&config.checks[0]).await;
    let elapsed = started.elapsed();
    assert_eq!(result.outcome, Outcome::Timeout, "{result:#?}");
    // The deadline is the check's timeout; capturing the hung page gets
    // 600 ms at most; the rest is slack for a busy machine.
    assert!(elapsed < Duration::from_secs(11), "{elapsed:?}");
    assert!(elapsed >= Duration::from_secs(10), "{elapsed:?}");
    assert!(result.duration_ms < 11_000.0, "{}", result.duration_ms);
    // The dashboard never answers: the click that submits the form (or
    // the wait after it) is where the time ran out.
    let reason = result.error.clone().unwrap_or_default();
    let failing = result.steps.len();
    assert!(matches!(failing, 4 | 5), "{reason} {:#?}", result.steps);
    assert!(
        reason.starts_with(&format!("step {failing} "))
            && reason.ends_with("timed out after 10s (the check's timeout)"),
        "{reason}"
    );
    assert!(!result.steps[failing - 1].ok);
    assert!(
        app.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|(v, p, _)| v == "hang" && p == "dashboard")
    );

    // The hung session is closed in the background; shutdown ends it all.
    let group = pool.chromedriver_pid().await.expect("chromedriver ran") as i32;
    let home = pool.chromedriver_home().await;
    pool.shutdown().await;
    assert_eq!(pool.sessions_in_use(), 0);
    let left = survivors(group, home.as_deref());
    assert!(left.is_empty(), "left running: {left:#?}");
}

#[tokio::test]
async fn no_browser_process_outlives_its_pool() {
    let app = start_app().await;
    // Its own directory for profiles: other tests' runs come and go in the
    // system's temporary directory meanwhile.
    let profiles = tempfile::tempdir().unwrap();
    let pool = BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions: 2,
        profiles_in: Some(profiles.path().to_path_buf()),
    });
    // While the flows run, how many processes chromedriver's group holds.
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (pool, peak) = (pool.clone(), peak.clone());
        tokio::spawn(async move {
            for _ in 0..6000 {
                if let Some(pid) = pool.chromedriver_pid().await {
                    let count = survivors(pid as i32, None).len();
                    peak.fetch_max(count, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let (good, broken) = tokio::join!(
        run_flow(&app, &pool, "ok"),
        run_flow(&app, &pool, "no-email")
    );
    sampler.abort();
    assert!(
        peak.load(Ordering::SeqCst) > 2,
        "the browsers ran in chromedriver's group"
    );
    assert_eq!(good.outcome, Outcome::Ok, "{good:#?}");
    assert_eq!(broken.outcome, Outcome::Fail, "{broken:#?}");
    // Slots are given back just after the results (profile removal runs
    // on a blocking thread).
    common::wait_for(
        "sessions to be given back",
        Duration::from_secs(10),
        || async { (pool.sessions_in_use() == 0).then_some(()) },
    )
    .await;
    let group = pool.chromedriver_pid().await.expect("chromedriver ran") as i32;
    let home = pool.chromedriver_home().await.expect("its home");
    // Sessions are closed: only chromedriver itself is left in its group.
    let between = survivors(group, Some(&home));
    assert_eq!(between.len(), 1, "{between:#?}");
    pool.shutdown().await;
    let left = survivors(group, Some(&home));
    assert!(left.is_empty(), "left running: {left:#?}");
    assert!(!home.exists(), "chromedriver's home is removed");
    let left_behind: Vec<_> = std::fs::read_dir(profiles.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left_behind.is_empty(),
        "profiles left behind: {left_behind:?}"
    );
}

#[tokio::test]
async fn two_flows_under_a_limit_of_one_run_one_after_the_other() {
    let app = start_app().await;
    let pool = pool(1);
    let gauge = pool.sessions_gauge();
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let (gauge, peak) = (gauge.clone(), peak.clone());
        tokio::spawn(async move {
            for _ in 0..6000 {
                peak.fetch_max(gauge.load(Ordering::SeqCst), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let (a, b) = tokio::join!(
        run_flow(&app, &pool, "first"),
        run_flow(&app, &pool, "second")
    );
    sampler.abort();
    pool.shutdown().await;
    assert_eq!(a.outcome, Outcome::Ok, "{a:#?}");
    assert_eq!(b.outcome, Outcome::Ok, "{b:#?}");
    assert_eq!(peak.load(Ordering::SeqCst), 1, "one session at a time");
    // The server saw one flow's requests, then the other's.
    let requests = app.state.requests.lock().unwrap().clone();
    let span = |variant: &str| {
        let times: Vec<Instant> = requests
            .iter()
            .filter(|(v, _, _)| v == variant)
            .map(|(_, _, t)| *t)
            .collect();
        assert_eq!(times.len(), 2, "{variant}: {requests:?}");
        (times[0], times[1])
    };
    let (first, second) = (span("first"), span("second"));
    assert!(
        first.1 < second.0 || second.1 < first.0,
        "the flows overlapped: {first:?} {second:?}"
    );
    // One waited for the other, and that wait is not part of its run.
    let waited: Vec<&ProbeResult> = [&a, &b]
        .into_iter()
        .filter(|r| r.notes.iter().any(|n| n.contains("for a browser session")))
        .collect();
    assert_eq!(waited.len(), 1, "{a:#?} {b:#?}");
    let later = waited[0];
    let earlier = if std::ptr::eq(later, &a) { &b } else { &a };
    let earlier_end =
        earlier.started_at + chrono::Duration::microseconds((earlier.duration_ms * 1000.0) as i64);
    assert!(later.started_at >= earlier_end - chrono::Duration::milliseconds(5));
}

#[test]
fn lookout_check_runs_a_flow_once_and_prints_its_steps() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(start_app());
    let _keep = runtime.enter();
    let yaml = login_flow(&app, "login-flow", "ok", "30s")
        + &login_flow(&app, "broken-flow", "no-email", "30s").replace("checks:\n", "")
        + &login_flow(&app, "goodbye-flow", "goodbye", "30s").replace("checks:\n", "");
    let dirs = ConfigDirs::new(&yaml);
    let check = |args: &[&str]| {
        let mut command = std::process::Command::new(common::lookout_bin());
        command
            .arg("check")
            .args(args)
            .arg("--checks")
            .arg(dirs.checks())
            .arg("--alerts")
            .arg(dirs.alerts())
            .env("SYNTH_USER", SECRET_USER)
            .env("RUST_LOG", "lookout=debug");
        let out = command.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = check(&["login-flow"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("login-flow") && stdout.contains("ok"),
        "{stdout}"
    );
    for line in [
        "login-flow  step 1 goto",
        "login-flow  step 2 fill #email  ok",
        "login-flow  step 7 expect_title equals \"Dashboard\"  ok",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(stderr.contains("page load"), "{stderr}");

    let (code, stdout, stderr) = check(&["broken-flow"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("step 2 fill #email: no element matches"),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken-flow  step 2 fill #email  FAIL"),
        "{stderr}"
    );

    // --json: JSON lines only on stdout, with the steps.
    let (code, stdout, stderr) = check(&["--json", "login-flow", "broken-flow", "goodbye-flow"]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(results.len(), 3);
    // The dashboard's URL holds the typed email (a GET form): masked.
    let goodbye = results
        .iter()
        .find(|r| r["check"] == "goodbye-flow")
        .unwrap();
    let page_url = goodbye["page"]["url"].as_str().unwrap();
    assert!(page_url.contains("email=****"), "{page_url}");
    for result in &results {
        assert!(result["steps"].as_array().is_some_and(|s| !s.is_empty()));
    }
    let broken = results
        .iter()
        .find(|r| r["check"] == "broken-flow")
        .unwrap();
    assert_eq!(broken["steps"][1]["ok"], false);
    let png = base64::engine::general_purpose::STANDARD
        .decode(broken["screenshot"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(PNG_SIGNATURE));
    assert!(
        !stderr.contains("step 1"),
        "no step lines with --json: {stderr}"
    );

    // The secret typed into the form appears nowhere: not in results,
    // not in logs (debug level), not in the page URL that holds it.
    for text in [&stdout, &stderr] {
        assert!(!text.contains(SECRET_USER), "secret leaked:\n{text}");
        assert!(
            !text.contains("s3cret%40"),
            "secret leaked encoded:\n{text}"
        );
    }
}

#[test]
fn bad_steps_are_reported_with_their_positions() {
    let yaml = r##"checks:
  - name: bad-flow
    browser:
      steps:
        - goto: ftp://example.com/
        - clik: { css: "#go" }
        - fill: { css: "#email" }
        - wait_for: { css: ".x", timeout: soon }
        - expect_text: { css: "h1", contains: "a", equals: "b" }
        - expect_text: { xpath: "//h1", regex: "(" }
        - click: { css: "a", xpath: "//a" }
        - press: { key: NoSuchKey }
        - select: { css: "#plan" }
    every: 1m
"##;
    let dirs = ConfigDirs::new(yaml);
    let out = std::process::Command::new(common::lookout_bin())
        .arg("validate")
        .arg("--checks")
        .arg(dirs.checks())
        .arg("--alerts")
        .arg(dirs.alerts())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = dirs.checks().join("checks.yaml").display().to_string();
    for expected in [
        ":5:17: `goto` (step 1): `ftp://example.com/` is not an http:// or https:// URL",
        ":6:11: unknown key `clik` in step 2; did you mean `click`?",
        ":7:17: `fill` (step 3) needs the `text` to type",
        ":8:43: `timeout`: invalid duration \"soon\"",
        ":9:60: `expect_text` (step 5) has more than one of `contains`, `equals`, `regex` (`equals` is the second)",
        ":10:48: invalid regular expression in `regex`",
        ":11:37: `click` (step 7) has more than one selector (`xpath` is the second); keep one",
        ":12:25: unknown key `NoSuchKey`; expected one character or one of: Enter",
        ":13:19: `select` (step 9) needs exactly one of `value`",
    ] {
        let line = format!("{file}{expected}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&line)),
            "missing {line:?} in:\n{stderr}"
        );
    }
}

/// `lookout serve` end to end: a failing flow's screenshot is stored apart,
/// served at /api/v1/results/{id}/screenshot, linked from the alert and
/// attached to its email; the secret typed in the flow appears nowhere; on
/// SIGTERM, serve stops its chromedriver and every browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_keeps_the_screenshot_links_it_and_mails_it() {
    common::smtp::require_aiosmtpd();
    let app = start_app().await;
    let sink = common::smtp::Sink::start(&[]);
    let yaml = login_flow(&app, "login-flow", "goodbye", "30s").replace(
        "every: 1m",
        "every: 20s\n    alert: { failures: 1, channels: [mail] }",
    );
    let dirs = ConfigDirs::new(&yaml);
    std::fs::write(
        dirs.alerts().join("mail.yaml"),
        format!(
            "channels:\n  mail:\n    email:\n      smtp: {}\n      from: \"Lookout <lookout@test.invalid>\"\n      to: [oncall@test.invalid]\n",
            sink.url()
        ),
    )
    .unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--public-url".into(),
        "http://status.test/".into(),
        "--browser-sessions".into(),
        "1".into(),
    ];
    args.extend(dirs.flags());
    let server = common::Server::spawn(&args, &[("SYNTH_USER", SECRET_USER)], "listening on ");
    // Should the test fail, `server` is SIGKILLed on drop and cannot stop
    // its chromedriver: this guard (dropped first) does.
    let _guard = KillChromedriverOf(server.child.id() as i32);
    let http = common::client();
    let base = server.base.clone();
    let results = common::wait_for("a browser result", Duration::from_secs(60), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (_, body) =
                common::get_json(&http, &format!("{base}/api/v1/checks/login-flow/results")).await;
            body["results"]
                .as_array()
                .filter(|r| !r.is_empty())
                .cloned()
        }
    })
    .await;
    let result = &results[0];
    assert_eq!(result["outcome"], "fail", "{result}");
    assert_eq!(
        result["steps"].as_array().map(Vec::len),
        Some(6),
        "{result}"
    );
    assert!(result.get("screenshot").is_none(), "stored apart: {result}");
    let id = result["id"].as_str().unwrap().to_string();
    let link = format!("/api/v1/results/{id}/screenshot");
    assert!(
        result["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str() == Some(&format!("screenshot: {link}"))),
        "{result}"
    );
    let response = http.get(format!("{base}{link}")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "image/png"
    );
    let png = response.bytes().await.unwrap();
    assert!(png.starts_with(PNG_SIGNATURE));
    for missing in [
        format!("/api/v1/results/{}/screenshot", uuid::Uuid::now_v7()),
        "/api/v1/results/not-a-uuid/screenshot".to_string(),
    ] {
        let response = http.get(format!("{base}{missing}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 404, "{missing}");
    }

    // The status page shows the failing step and links the screenshot.
    let shown = common::wait_for(
        "the status page's screenshot",
        Duration::from_secs(30),
        || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let (_, status) =
                    common::get_json(&http, &format!("{base}/api/v1/status/login-flow")).await;
                let local = status["checks"][0]["regions"]["local"].clone();
                let link = local["screenshot"].as_str()?.to_string();
                Some((link, local))
            }
        },
    )
    .await;
    assert!(shown.0.ends_with("/screenshot"), "{shown:?}");
    assert!(
        shown.1["error"].as_str().unwrap().starts_with("step "),
        "{shown:?}"
    );
    let page = http
        .get(format!("{base}/checks/login-flow"))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("class=\"shot\""), "{html}");

    // The alert links the screenshot and the email carries it.
    let messages = common::wait_for("the alert email", Duration::from_secs(60), || async {
        let messages = sink.messages();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    let (raw, envelope) = &messages[0];
    assert!(raw.contains("multipart/mixed"), "{raw}");
    let attachment = envelope["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content_type"] == "image/png")
        .unwrap_or_else(|| panic!("no PNG part: {envelope}"));
    assert_eq!(attachment["head_hex"], "89504e470d0a1a0a", "{attachment}");
    assert_eq!(attachment["bytes"].as_u64(), Some(png.len() as u64));
    let text = envelope["parts"][0]["content"].as_str().unwrap_or("");
    assert!(
        text.contains(&format!(
            "Screenshot of the failing page: http://status.test{link}"
        )),
        "{text}"
    );
    assert!(raw.contains("Content-Type: image/png"), "{raw}");
    assert!(raw.contains("Content-Disposition: attachment"), "{raw}");
    assert!(raw.contains(&format!("login-flow-{id}.png")), "{raw}");
    let (_, alerts) =
        common::get_json(&http, &format!("{base}/api/v1/alerts?state=delivered")).await;
    let event = &alerts["alerts"][0]["event"];
    assert_eq!(
        event["screenshot"],
        format!("http://status.test/api/v1/results/{id}/screenshot"),
        "{alerts}"
    );

    // The browser ran under serve; find its chromedriver to check on later.
    let serve_pid = server.child.id() as i32;
    let chromedriver = lookout::browser::driver::list_processes()
        .into_iter()
        .find(|p| {
            p.ppid == serve_pid
                && p.cmdline
                    .first()
                    .is_some_and(|c| c.ends_with("chromedriver"))
        })
        .map(|p| p.pid)
        .expect("serve runs its chromedriver");
    let api_text = serde_json::to_string(&results).unwrap() + &alerts.to_string();
    let log = server.terminate_and_log();
    for text in [&api_text, &log, raw] {
        assert!(!text.contains(SECRET_USER), "secret leaked:\n{text}");
        assert!(
            !text.contains("s3cret%40"),
            "secret leaked encoded:\n{text}"
        );
    }
    let left = survivors(chromedriver, None);
    assert!(
        left.is_empty(),
        "left running after serve stopped: {left:#?}"
    );
}

/// `--webdriver URL`: an existing WebDriver server is used as it is (here a
/// chromedriver the test starts itself); the pool starts none of its own.
#[tokio::test]
async fn an_existing_webdriver_server_is_used_when_given() {
    let app = start_app().await;
    let driver = lookout::browser::driver::LocalDriver::start()
        .await
        .expect("chromedriver on PATH");
    let pool = BrowserPool::new(BrowserOptions {
        webdriver: Some(url::Url::parse(&driver.url()).unwrap()),
        sessions: 1,
        profiles_in: None,
    });
    let good = run_flow(&app, &pool, "ok").await;
    let broken = run_flow(&app, &pool, "no-email").await;
    assert_eq!(good.outcome, Outcome::Ok, "{good:#?}");
    assert_eq!(broken.outcome, Outcome::Fail, "{broken:#?}");
    assert!(png_of(&broken).starts_with(PNG_SIGNATURE));
    assert_eq!(
        pool.chromedriver_pid().await,
        None,
        "no chromedriver of its own"
    );
    pool.shutdown().await;
    // The sessions were closed on the server: only chromedriver is left.
    let group = driver.pid() as i32;
    common::wait_for("the browsers to exit", Duration::from_secs(10), || async {
        (survivors(group, None).len() == 1).then_some(())
    })
    .await;
    driver.stop().await;
}

/// A chromedriver that dies is started again by the next flow, and the
/// browsers it left are not left running.
#[tokio::test]
async fn a_chromedriver_that_died_is_started_again() {
    let app = start_app().await;
    let pool = pool(1);
    let first = run_flow(&app, &pool, "ok").await;
    assert_eq!(first.outcome, Outcome::Ok, "{first:#?}");
    let dead = pool.chromedriver_pid().await.expect("chromedriver ran") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dead),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = run_flow(&app, &pool, "ok").await;
    assert_eq!(second.outcome, Outcome::Ok, "{second:#?}");
    let again = pool.chromedriver_pid().await.expect("chromedriver runs") as i32;
    assert_ne!(again, dead);
    pool.shutdown().await;
    for group in [dead, again] {
        let left = survivors(group, None);
        assert!(left.is_empty(), "left running: {left:#?}");
    }
}

/// Kills the process group of every chromedriver whose parent is the
/// given process (a `lookout serve` a failing test is about to SIGKILL).
struct KillChromedriverOf(i32);

impl Drop for KillChromedriverOf {
    fn drop(&mut self) {
        for p in lookout::browser::driver::list_processes() {
            if p.ppid == self.0
                && p.cmdline
                    .first()
                    .is_some_and(|c| c.ends_with("chromedriver"))
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(p.pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// A page that says whether this browser has been here before (a cookie or
/// localStorage from an earlier visit), then leaves both behind; the server
/// also counts requests that came with its cookie.
const SEEN_PAGE: &str = r#"<!doctype html><html><head><title>Seen</title></head><body>
<div id="seen"></div><script>
const had = [];
if (document.cookie.includes('lookout_seen=1')) { had.push('cookie'); }
if (localStorage.getItem('lookout_seen')) { had.push('storage'); }
document.getElementById('seen').textContent = had.length ? 'seen before: ' + had.join(' ') : 'fresh';
document.cookie = 'lookout_seen=1; max-age=3600; path=/';
localStorage.setItem('lookout_seen', '1');
</script></body></html>"#;

#[tokio::test]
async fn no_cookie_or_storage_left_by_one_run_is_seen_by_the_next() {
    let with_cookie = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = with_cookie.clone();
    let app = Router::new().route(
        "/seen",
        get(move |headers: HeaderMap| {
            let counted = counted.clone();
            async move {
                let cookie = headers
                    .get("cookie")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if cookie.contains("lookout_seen=1") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                Html(SEEN_PAGE)
            }
        }),
    );
    let addr = common::serve_on_loopback(app).await;
    // Within one run the page does see its own cookie and storage (the
    // second visit), so "fresh" at the first visit means something.
    let config = load(&format!(
        r##"checks:
  - name: seen
    browser:
      steps:
        - goto: http://{addr}/seen
        - expect_text: {{ css: "#seen", equals: fresh }}
        - goto: http://{addr}/seen
        - expect_text: {{ css: "#seen", equals: "seen before: cookie storage" }}
    every: 1m
    timeout: 30s
"##
    ));
    // One session at a time, so the runs follow each other through the
    // same slot and chromedriver.
    let pool = pool(1);
    let runner = runner(&config, &pool);
    for run in 1..=3 {
        let result = runner.run(&config.checks[0]).await;
        assert_eq!(result.outcome, Outcome::Ok, "run {run}: {result:#?}");
        // One request per run came with the cookie: the run's own second visit.
        assert_eq!(with_cookie.load(Ordering::SeqCst), run, "run {run}");
    }
    pool.shutdown().await;
}

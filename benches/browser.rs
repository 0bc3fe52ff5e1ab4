//! What a browser flow costs through Lookout, and what a browser session
//! costs in memory.
//!
//! Run with `cargo bench --bench browser` (needs chromium and chromedriver
//! on PATH). Against a login app on 127.0.0.1 served by this process:
//!
//! 1. Overhead: a 6-step flow (goto, fill, fill, click, wait_for,
//!    expect_text) run `RUNS` times through Lookout (`Runner::run` with a
//!    `BrowserPool`: a fresh session and profile per run, steps judged,
//!    page timing read, session closed), against the same steps sent
//!    straight to chromedriver with fantoccini (a fresh session per run, so
//!    a fresh profile made by chromedriver: the same isolation, closed
//!    after). Runs alternate between the two so that a drifting machine
//!    weighs on both. Two figures each: to the result (Lookout: `run`
//!    returns; direct: the last step done) and until the browser is gone
//!    (closed, its profile removed). Both start a browser per run, as a
//!    probe does; the difference of the medians is what Lookout adds.
//!    `cargo bench --bench browser -- overhead` runs only this part.
//! 2. Capture: the same flow through Lookout with Web Vitals and error
//!    capture (the default: an observer script added to each document, the
//!    vitals and the browser log read after each step) and with `capture:
//!    []`, `RUNS` of each alternating; the difference of the medians is
//!    what capture adds per flow. `cargo bench --bench browser -- capture`
//!    runs only this part.
//! 3. Memory: 1, 2 and 4 sessions open at once through Lookout (flows
//!    parked on a `wait_for` that never succeeds), with the RSS and PSS of
//!    chromedriver's process group summed from /proc while they are open.
//!    RSS counts shared pages once per process, so it overstates; PSS
//!    shares them out and is the better "what it costs" figure.
//!
//! Every loop is bounded in count and time; figures are printed, nothing is
//! asserted about them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use lookout::browser::driver::{LocalDriver, list_processes};
use lookout::browser::{BrowserOptions, BrowserPool};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::Outcome;
use serde_json::json;

const RUNS: usize = 20;
/// Each measurement stops here even if it has not done all its runs.
const MEASURE_WALL_MAX: Duration = Duration::from_secs(180);
const SESSION_COUNTS: [usize; 3] = [1, 2, 4];
/// How long the parked flows wait (their `wait_for` timeout).
const PARKED: &str = "12s";
/// When, after the parked flows start, memory is sampled.
const SAMPLE_AFTER: Duration = Duration::from_secs(8);

const LOGIN: &str = r#"<!doctype html><html><head><title>Sign in</title></head><body>
<form action="/dashboard" method="get">
<input id="email" name="email"><input id="password" name="password" type="password">
<button type="submit">Sign in</button></form></body></html>"#;
const DASHBOARD: &str = r#"<!doctype html><html><head><title>Dashboard</title></head><body>
<div class="dashboard"><h1>Welcome back</h1></div></body></html>"#;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let app = Router::new()
        .route("/login", get(|| async { Html(LOGIN) }))
        .route("/dashboard", get(|| async { Html(DASHBOARD) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    if std::env::args().any(|a| a == "capture") {
        capture_cost(&base).await;
        return;
    }
    println!("browser flow: 6 steps, {RUNS} runs each, alternating, a fresh browser per run");
    let (lookout_parts, direct_parts) = overhead(&base).await;
    let column = |parts: &[Parts], f: fn(&Parts) -> f64| parts.iter().map(f).collect::<Vec<f64>>();
    for (what, f) in [
        ("to the result", (|p: &Parts| p.total) as fn(&Parts) -> f64),
        ("until the browser is gone", |p: &Parts| p.clean),
    ] {
        let lookout = column(&lookout_parts, f);
        let direct = column(&direct_parts, f);
        let (lm, dm) = (median(&lookout), median(&direct));
        println!("  {what}:");
        println!(
            "    through Lookout:      median {lm:7.0} ms  (min {:.0}, max {:.0}, n={})",
            min(&lookout),
            max(&lookout),
            lookout.len()
        );
        println!(
            "    fantoccini, direct:   median {dm:7.0} ms  (min {:.0}, max {:.0}, n={})",
            min(&direct),
            max(&direct),
            direct.len()
        );
        println!(
            "    Lookout's overhead:   {:+.0} ms per flow ({:+.1} %)",
            lm - dm,
            (lm - dm) / dm * 100.0
        );
    }
    for (name, parts) in [("Lookout", &lookout_parts), ("direct", &direct_parts)] {
        println!(
            "  {name:<8} medians: session start {:5.0} ms, steps {:5.0} ms, after the steps to the result {:4.0} ms, teardown after the result {:4.0} ms",
            median(&column(parts, |p| p.start)),
            median(&column(parts, |p| p.steps)),
            median(&column(parts, |p| p.rest)),
            median(&column(parts, |p| p.clean - p.total)),
        );
        let each: Vec<String> = (0..6)
            .map(|i| {
                let times: Vec<f64> = parts
                    .iter()
                    .filter_map(|p| p.each.get(i).copied())
                    .collect();
                format!("{:.0}", median(&times))
            })
            .collect();
        println!("  {name:<8} step medians (ms): {}", each.join(", "));
    }

    if std::env::args().any(|a| a == "overhead") {
        return;
    }
    capture_cost(&base).await;

    println!("\nmemory of chromedriver's process group with N sessions open (Lookout)");
    for sessions in SESSION_COUNTS {
        memory_with(&base, sessions).await;
    }
}

/// What Web Vitals and error capture add to a flow: the same 6 steps with
/// and without, alternating runs so that a drifting machine weighs on both.
async fn capture_cost(base: &str) {
    let with = load(&flow_yaml(base, "flow", ".dashboard", "Welcome"));
    let without = load(
        &flow_yaml(base, "flow", ".dashboard", "Welcome")
            .replace("    browser:\n", "    browser:\n      capture: []\n"),
    );
    let pool = BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions: 1,
        profiles_in: None,
    });
    let (run_with, run_without) = (runner(&with, &pool), runner(&without, &pool));
    let warm = run_with.run(&with.checks[0]).await;
    assert_eq!(warm.outcome, Outcome::Ok, "{warm:?}");
    let started = Instant::now();
    let (mut on, mut off) = (Vec::new(), Vec::new());
    let (mut on_steps, mut off_steps) = (Vec::new(), Vec::new());
    while on.len() < RUNS && started.elapsed() < MEASURE_WALL_MAX {
        for (runner, config, totals, steps) in [
            (&run_with, &with, &mut on, &mut on_steps),
            (&run_without, &without, &mut off, &mut off_steps),
        ] {
            let clock = Instant::now();
            let result = runner.run(&config.checks[0]).await;
            totals.push(clock.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
            let start = result.steps.first().map(|s| s.at_ms).unwrap_or(0.0);
            let end = result.steps.last().map(|s| s.at_ms + s.ms).unwrap_or(0.0);
            steps.push(end - start);
        }
    }
    pool.shutdown().await;
    let (m_on, m_off) = (median(&on), median(&off));
    let (s_on, s_off) = (median(&on_steps), median(&off_steps));
    println!(
        "\nWeb Vitals and error capture: the 6-step flow, {} runs each, alternating",
        on.len()
    );
    println!("  with capture (default):  median {m_on:7.0} ms per flow, steps {s_on:5.0} ms");
    println!("  capture: []:             median {m_off:7.0} ms per flow, steps {s_off:5.0} ms");
    println!(
        "  capture adds:            {:+.0} ms per flow ({:+.1} %), {:+.0} ms in the steps",
        m_on - m_off,
        (m_on - m_off) / m_off * 100.0,
        s_on - s_off
    );
}

fn flow_yaml(base: &str, name: &str, wait: &str, last: &str) -> String {
    format!(
        r##"checks:
  - name: {name}
    browser:
      steps:
        - goto: {base}/login
        - fill: {{ css: "#email", text: "bench@example.com" }}
        - fill: {{ css: "#password", text: "not-a-secret" }}
        - click: {{ css: "button[type=submit]" }}
        - wait_for: {{ css: "{wait}", timeout: {PARKED} }}
        - expect_text: {{ css: "h1", contains: "{last}" }}
    every: 1m
    timeout: 60s
"##
    )
}

fn load(yaml: &str) -> lookout::config::Config {
    let dir = std::env::temp_dir().join(format!("lookout-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(dir.join("checks")).expect("temp dir");
    std::fs::write(dir.join("checks/c.yaml"), yaml).expect("write");
    let config = lookout::config::load(&dir.join("checks"), &dir.join("alerts"))
        .unwrap_or_else(|e| panic!("bench config: {:?}", e.0));
    let _ = std::fs::remove_dir_all(&dir);
    config
}

fn runner(config: &lookout::config::Config, pool: &BrowserPool) -> Runner {
    Runner::new(
        ProbeIdentity {
            region: "bench".into(),
            probe: "bench".into(),
        },
        config.secrets.clone(),
    )
    .with_browser(pool.clone())
}

/// One run's wall times (ms), and its parts: starting the session (and,
/// through Lookout, preparing it), the steps, what follows them until the
/// result is known, and until the browser is gone (closed, its profile
/// removed).
struct Parts {
    /// From the start to the result.
    total: f64,
    /// From the start until the browser is gone.
    clean: f64,
    start: f64,
    steps: f64,
    /// After the last step, until the result.
    rest: f64,
    /// Each step's time.
    each: Vec<f64>,
}

/// Runs the flow through Lookout and straight to chromedriver, alternating
/// (so a drifting machine weighs on both), `RUNS` of each after one warm
/// run each.
async fn overhead(base: &str) -> (Vec<Parts>, Vec<Parts>) {
    let config = load(&flow_yaml(base, "flow", ".dashboard", "Welcome"));
    let pool = BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions: 1,
        profiles_in: None,
    });
    let runner = runner(&config, &pool);
    let driver = LocalDriver::start().await.expect("chromedriver");
    let url = driver.url();
    // One run each to start chromedriver and warm the page cache, not counted.
    lookout_flow(&runner, &pool, &config).await;
    direct_flow(&url, base).await;
    let started = Instant::now();
    let (mut lookout, mut direct) = (Vec::new(), Vec::new());
    while lookout.len() < RUNS && started.elapsed() < MEASURE_WALL_MAX {
        lookout.push(lookout_flow(&runner, &pool, &config).await);
        direct.push(direct_flow(&url, base).await);
    }
    pool.shutdown().await;
    driver.stop().await;
    (lookout, direct)
}

async fn lookout_flow(
    runner: &Runner,
    pool: &BrowserPool,
    config: &lookout::config::Config,
) -> Parts {
    let clock = Instant::now();
    let result = runner.run(&config.checks[0]).await;
    let total = clock.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    // The slot is given back once the browser is gone (bounded).
    while pool.sessions_in_use() > 0 && clock.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let clean = clock.elapsed().as_secs_f64() * 1000.0;
    let start = result.steps.first().map(|s| s.at_ms).unwrap_or(0.0);
    let end = result.steps.last().map(|s| s.at_ms + s.ms).unwrap_or(0.0);
    Parts {
        total,
        clean,
        start,
        steps: end - start,
        rest: total - end,
        each: result.steps.iter().map(|s| s.ms).collect(),
    }
}

/// The same capabilities Lookout sends (headless, fixed window, no
/// background traffic, no sandbox as root), without the profile it makes.
fn capabilities() -> fantoccini::wd::Capabilities {
    let mut args = vec![
        "--headless=new",
        "--window-size=1280,800",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--disable-extensions",
        "--no-first-run",
        "--disable-gpu",
        "--disable-dev-shm-usage",
    ];
    if nix::unistd::geteuid().is_root() {
        args.push("--no-sandbox");
    }
    let mut chrome = json!({ "args": args });
    if let Some(binary) = lookout::browser::driver::find_on_path(&["chromium", "google-chrome"]) {
        chrome["binary"] = json!(binary.display().to_string());
    }
    let mut caps = fantoccini::wd::Capabilities::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), chrome);
    caps
}

async fn direct_flow(url: &str, base: &str) -> Parts {
    use fantoccini::Locator;
    let clock = Instant::now();
    let mut builder =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(capabilities());
    let client = builder.connect(url).await.expect("session");
    let start = clock.elapsed().as_secs_f64() * 1000.0;
    let mut marks = vec![start];
    client.goto(&format!("{base}/login")).await.expect("goto");
    marks.push(clock.elapsed().as_secs_f64() * 1000.0);
    client
        .find(Locator::Css("#email"))
        .await
        .expect("email")
        .send_keys("bench@example.com")
        .await
        .expect("type");
    marks.push(clock.elapsed().as_secs_f64() * 1000.0);
    client
        .find(Locator::Css("#password"))
        .await
        .expect("password")
        .send_keys("not-a-secret")
        .await
        .expect("type");
    marks.push(clock.elapsed().as_secs_f64() * 1000.0);
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    marks.push(clock.elapsed().as_secs_f64() * 1000.0);
    client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(".dashboard"))
        .await
        .expect("dashboard");
    marks.push(clock.elapsed().as_secs_f64() * 1000.0);
    let text = client
        .find(Locator::Css("h1"))
        .await
        .expect("h1")
        .text()
        .await
        .expect("text");
    assert!(text.contains("Welcome"));
    let end = clock.elapsed().as_secs_f64() * 1000.0;
    marks.push(end);
    let each = marks.windows(2).map(|w| w[1] - w[0]).collect();
    client.close().await.expect("close");
    let clean = clock.elapsed().as_secs_f64() * 1000.0;
    Parts {
        total: end,
        clean,
        start,
        steps: end - start,
        rest: 0.0,
        each,
    }
}

async fn memory_with(base: &str, sessions: usize) {
    let config = load(&flow_yaml(base, "parked", ".never", "-"));
    let pool = BrowserPool::new(BrowserOptions {
        webdriver: None,
        sessions,
        profiles_in: None,
    });
    let runner = Arc::new(runner(&config, &pool));
    let check = config.checks[0].clone();
    let mut flows = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let (runner, check) = (runner.clone(), check.clone());
        flows.spawn(async move { runner.run(&check).await });
    }
    tokio::time::sleep(SAMPLE_AFTER).await;
    let in_use = pool.sessions_in_use();
    let (rss, pss, processes) = match pool.chromedriver_pid().await {
        Some(pid) => group_memory(pid as i32),
        None => (0, 0, 0),
    };
    while flows.join_next().await.is_some() {}
    pool.shutdown().await;
    println!(
        "  {sessions} session(s) (in use: {in_use}): {processes:3} processes, RSS {:6.0} MiB, PSS {:6.0} MiB, PSS per session {:5.0} MiB",
        rss as f64 / 1024.0,
        pss as f64 / 1024.0,
        pss as f64 / 1024.0 / sessions as f64
    );
}

/// RSS and PSS (KiB) summed over the live processes of `group`.
fn group_memory(group: i32) -> (u64, u64, usize) {
    let members: Vec<i32> = list_processes()
        .into_iter()
        .filter(|p| p.pgid == group && !p.zombie)
        .map(|p| p.pid)
        .collect();
    let (mut rss, mut pss) = (0, 0);
    for pid in &members {
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        for line in rollup.lines() {
            let kib = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("Rss:") {
                rss += kib(line);
            } else if line.starts_with("Pss:") {
                pss += kib(line);
            }
        }
    }
    (rss, pss, members.len())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

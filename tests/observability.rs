//! What Lookout shows, end to end through `lookout serve`: `/metrics` after
//! real probe runs (checked by promtool), bounded route labels, a `/health`
//! that fails when storage does, the status page as real headless Chromium
//! renders it, and the deploy/monitoring files under promtool.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ConfigDirs, Server, client, get_json, start_target, wait_for};
use serde_json::Value;

/// Three checks that settle quickly: one up, one down (HTTP 500), one
/// degraded (slower than its max_latency), and one hidden from the page.
fn three_states(target: &common::Target) -> ConfigDirs {
    ConfigDirs::new(&format!(
        "checks:
  - name: web-up
    description: The shop's front page
    http: {{ url: \"{ok}\" }}
    every: 1s
    alert: {{ failures: 1 }}
  - name: api-down
    http: {{ url: \"{down}\" }}
    every: 1s
    alert: {{ failures: 1 }}
  - name: search-slow
    http: {{ url: \"{slow}\" }}
    every: 1s
    timeout: 5s
    expect: {{ max_latency: 200ms }}
    alert: {{ failures: 1 }}
    status_page: {{ hide_target: true }}
  - name: internal-db
    tcp: {{ address: \"{addr}\" }}
    every: 1s
    status_page: {{ hidden: true }}
",
        ok = target.url("/ok"),
        down = target.url("/500"),
        slow = target.url("/slow"),
        addr = target.addr,
    ))
}

/// `lookout serve` on `three_states`, once each check has its state.
async fn settled_three_states() -> (common::Target, ConfigDirs, Server) {
    let target = start_target().await;
    let dirs = three_states(&target);
    let server = Server::start(&dirs);
    wait_states(
        &server,
        &[
            ("web-up", "up"),
            ("api-down", "down"),
            ("search-slow", "degraded"),
        ],
    )
    .await;
    (target, dirs, server)
}

async fn wait_states(server: &Server, want: &[(&str, &str)]) {
    let http = client();
    let base = server.base.clone();
    let found = tokio::time::timeout(
        Duration::from_secs(40),
        wait_for("the checks' states", Duration::from_secs(35), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let (_, body) = get_json(&http, &format!("{base}/api/v1/checks")).await;
                let checks = body["checks"].as_array()?.clone();
                want.iter()
                    .all(|(name, status)| {
                        checks
                            .iter()
                            .any(|c| c["name"] == *name && c["status"] == *status)
                    })
                    .then_some(())
            }
        }),
    )
    .await;
    assert!(
        found.is_ok(),
        "states never settled:\n{}",
        server.log_text()
    );
}

async fn scrape(base: &str, accept: Option<&str>) -> (String, String) {
    let mut request = client().get(format!("{base}/metrics"));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    (content_type, response.text().await.unwrap())
}

/// The value of the series whose line starts with `series ` (name and labels
/// exactly as exposed).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn promtool(args: &[&str], stdin: Option<&str>, dir: &Path) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_real_probe_runs_have_names_labels_and_values_and_pass_promtool() {
    let (target, _dirs, server) = settled_three_states().await;
    let base = server.base.clone();
    let _ = client().get(format!("{base}/health")).send().await.unwrap();
    let (content_type, text) = scrape(&base, None).await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );

    let up = |check: &str, url: &str| {
        format!(
            "{{check=\"{check}\",region=\"local\",target=\"{}\"}}",
            target.url(url)
        )
    };
    assert_eq!(
        value(&text, &format!("probe_success{}", up("web-up", "/ok"))),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("probe_success{}", up("api-down", "/500"))),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("probe_http_status_code{}", up("api-down", "/500"))
        ),
        Some(500.0)
    );
    let slow = value(
        &text,
        &format!("probe_duration_seconds{}", up("search-slow", "/slow")),
    )
    .unwrap();
    assert!(slow >= 1.5, "the /slow target sleeps 1.5 s: {slow}");
    assert!(
        value(
            &text,
            &format!(
                "probe_http_duration_seconds{{check=\"web-up\",region=\"local\",target=\"{}\",phase=\"processing\"}}",
                target.url("/ok")
            )
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        value(&text, "lookout_check_up{check=\"web-up\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "lookout_check_up{check=\"api-down\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            "lookout_check_state{check=\"search-slow\",state=\"degraded\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            "lookout_check_state{check=\"search-slow\",state=\"up\"}"
        ),
        Some(0.0)
    );
    let failures = value(
        &text,
        "lookout_probe_results_total{check=\"api-down\",region=\"local\",outcome=\"fail\"}",
    )
    .unwrap();
    assert!(failures >= 1.0);
    let runs = value(
        &text,
        "lookout_probe_duration_seconds_count{check=\"web-up\",region=\"local\"}",
    )
    .unwrap();
    assert!(runs >= 1.0);
    assert!(
        value(
            &text,
            "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(
            &text,
            "lookout_region_last_result_age_seconds{region=\"local\"}"
        )
        .unwrap()
            < 30.0
    );
    assert_eq!(value(&text, "lookout_alert_outbox_pending"), Some(0.0));
    assert_eq!(value(&text, "lookout_browser_sessions_in_use"), Some(0.0));
    assert!(value(&text, "lookout_scheduler_lateness_seconds_count").unwrap() >= 3.0);
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));
    assert!(
        text.contains("http_in_progress_requests 1"),
        "the scrape itself"
    );

    let (ok, said) = promtool(&["check", "metrics"], Some(&text), Path::new("."));
    assert!(ok, "promtool check metrics:\n{said}\n{text}");

    // Prometheus itself asks for OpenMetrics, and gets it.
    let (content_type, open) =
        scrape(&base, Some("application/openmetrics-text; version=1.0.0")).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(open.ends_with("# EOF\n"));
    assert!(open.contains("# TYPE lookout_probe_results counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_labels_stay_bounded_whatever_paths_arrive() {
    let dirs = ConfigDirs::new("checks: []\n");
    let server = Server::start(&dirs);
    let base = server.base.clone();
    let http = client();
    // 400 distinct paths, bounded in count; a scanner's worth.
    for n in 0..400u32 {
        let path = match n % 4 {
            0 => format!("/wp-admin/{n}.php"),
            1 => format!("/api/v1/checks/check-{n}/results"),
            2 => format!("/ping/token-{n:020}"),
            _ => format!("/checks/no-such-{n}?x={n}"),
        };
        let _ = http.get(format!("{base}{path}")).send().await.unwrap();
    }
    let _ = http
        .request(
            reqwest::Method::from_bytes(b"BREW").unwrap(),
            format!("{base}/"),
        )
        .send()
        .await
        .unwrap();
    let (_, text) = scrape(&base, None).await;
    let mut routes = BTreeSet::new();
    let mut methods = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("http_requests_total{"))
    {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..start + line[start..].find('"').unwrap()].to_string()
        };
        routes.insert(label("route"));
        methods.insert(label("method"));
    }
    let expected: BTreeSet<String> = [
        "unmatched",
        "/api/v1/checks/{name}/results",
        "/ping/{token}",
        "/checks/{name}",
        "/",
        "/metrics",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert!(routes.is_subset(&expected), "{routes:?}");
    assert!(
        routes.contains("unmatched") && routes.contains("/ping/{token}"),
        "{routes:?}"
    );
    assert!(
        methods.is_subset(&["GET", "OTHER"].iter().map(|s| s.to_string()).collect()),
        "{methods:?}"
    );
    assert!(
        !text.contains("wp-admin") && !text.contains("token-0"),
        "raw paths leaked into labels"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("http_request") && !l.starts_with('#'))
        .count();
    assert!(
        series < 200,
        "{series} HTTP series after 401 distinct requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_naming_storage_while_the_database_is_locked() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: web\n    http: {{ url: \"{}\" }}\n    every: 1s\n",
        target.url("/ok")
    ));
    let server = Server::start(&dirs);
    let base = server.base.clone();
    let http = client();
    let (code, body) = get_json(&http, &format!("{base}/health")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["checks"]["storage"], "ok");
    assert!(
        body["checks"]["scheduler"]
            .as_str()
            .unwrap()
            .starts_with("ok"),
        "{body}"
    );
    assert!(
        body["checks"]["regions"]
            .as_str()
            .unwrap()
            .starts_with("ok"),
        "{body}"
    );

    // Another process takes the database's write lock and keeps it.
    let locker = rusqlite::Connection::open(dirs.data().join("lookout.db")).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (code, body) = get_json(&http, &format!("{base}/health")).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "degraded");
    let storage = body["checks"]["storage"].as_str().unwrap();
    assert!(storage.starts_with("failing"), "{body}");

    locker.execute_batch("ROLLBACK").unwrap();
    drop(locker);
    let healed = wait_for("/health to heal", Duration::from_secs(20), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (code, body) = get_json(&http, &format!("{base}/health")).await;
            (code == 200).then_some(body)
        }
    })
    .await;
    assert_eq!(healed["checks"]["storage"], "ok");
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

/// Loads `url` in headless Chromium: the DOM as it rendered it, and a
/// screenshot at `png`.
fn render_in_chromium(url: &str, png: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless".to_string(),
        "--no-sandbox".to_string(),
        "--disable-gpu".to_string(),
        "--disable-background-networking".to_string(),
        "--no-first-run".to_string(),
        format!("--user-data-dir={}", profile.path().display()),
        "--window-size=1100,1600".to_string(),
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
    dom
}

fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_headless_chromium_shows_up_degraded_and_down() {
    let (_target, _dirs, server) = settled_three_states().await;
    let base = server.base.clone();
    let png = artifacts_dir().join("status-page.png");
    let url = format!("{base}/?refresh=30");
    // The page's figures may be a few seconds old: load until it has them.
    let dom = {
        let mut tries = 0;
        loop {
            let url = url.clone();
            let png = png.clone();
            let dom = tokio::task::spawn_blocking(move || render_in_chromium(&url, &png))
                .await
                .unwrap();
            tries += 1;
            if dom.contains("data-status=\"degraded\"") || tries == 5 {
                break dom;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    let card = |name: &str| {
        let start = dom
            .find(&format!("data-check=\"{name}\""))
            .unwrap_or_else(|| panic!("no card for {name}:\n{dom}"));
        let end = dom[start..].find("</section>").unwrap() + start;
        dom[start..end].to_string()
    };
    assert!(dom.contains("data-overall=\"partial_outage\""), "{dom}");
    assert!(dom.contains("Partial outage"));
    assert!(dom.contains("http-equiv=\"refresh\" content=\"30\""));
    let down = card("api-down");
    assert!(
        down.contains("data-status=\"down\"") && down.contains(">Down<"),
        "{down}"
    );
    assert!(down.contains("status 500"), "the reason is shown: {down}");
    let up = card("web-up");
    assert!(
        up.contains("data-status=\"up\"") && up.contains(">Operational<"),
        "{up}"
    );
    assert!(up.contains("The shop's front page"));
    assert!(up.contains("100%"), "a check that never failed: {up}");
    let bar_start = up.find("<div class=\"days\"").expect("the 90-day bar");
    let bar = &up[bar_start..bar_start + up[bar_start..].find("</div>").unwrap()];
    assert_eq!(bar.matches("<i ").count(), 90, "{bar}");
    assert!(
        bar.ends_with("<i class=\"up\"></i>"),
        "today was fine: {bar}"
    );
    assert!(
        up.contains("data-region=\"local\""),
        "latency per region: {up}"
    );
    let slow = card("search-slow");
    assert!(
        slow.contains("data-status=\"degraded\"") && slow.contains(">Degraded<"),
        "{slow}"
    );
    assert!(!slow.contains("/slow"), "hide_target hides the URL: {slow}");
    assert!(
        !dom.contains("internal-db"),
        "a hidden check is not on the page"
    );
    assert!(dom.contains("Recent incidents") && dom.contains("api-down is DOWN"));
    let shot = std::fs::read(&png).unwrap();
    assert!(
        shot.starts_with(b"\x89PNG"),
        "a screenshot is kept at {}",
        png.display()
    );

    // The JSON twin has every figure.
    let (code, status) = get_json(&client(), &format!("{base}/api/v1/status")).await;
    assert_eq!(code, 200);
    assert_eq!(status["overall"], "partial_outage");
    let names: Vec<&str> = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["api-down", "search-slow", "web-up"],
        "worst first, hidden left out"
    );
    let web = &status["checks"][2];
    assert_eq!(web["uptime"]["24h"], 100.0);
    assert_eq!(web["days"].as_array().unwrap().len(), 90);
    assert!(web["latency"]["local"]["p95_ms"].as_f64().unwrap() > 0.0);
    assert!(status["checks"][1].get("target").is_none());
    let incidents = status["incidents"].as_array().unwrap();
    let outage = incidents.iter().find(|i| i["check"] == "api-down").unwrap();
    assert_eq!(
        (&outage["status"], &outage["ended"]),
        (&Value::from("down"), &Value::Null)
    );
    let (code, one) = get_json(&client(), &format!("{base}/api/v1/status/web-up")).await;
    assert_eq!((code, one["checks"].as_array().unwrap().len()), (200, 1));
    let (code, _) = get_json(&client(), &format!("{base}/api/v1/status/internal-db")).await;
    assert_eq!(code, 404, "hidden checks have no page");
    // Browsers get the page compressed.
    let zipped = client()
        .get(format!("{base}/"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let page = client()
        .get(format!("{base}/checks/api-down"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("data-check=\"api-down\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_probe_serves_its_own_saturation_metrics() {
    let spool = tempfile::tempdir().unwrap();
    let args: Vec<std::ffi::OsString> = [
        "probe",
        "--region",
        "eu-west",
        // Nobody listens there: the probe keeps going, and spools.
        "--aggregator",
        "http://127.0.0.1:9/",
        "--spool",
        spool.path().to_str().unwrap(),
        "--metrics-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let probe = Server::spawn(
        &args,
        &[("LOOKOUT_PROBE_TOKEN", "a-token-of-sixteen-chars")],
        "metrics on ",
    );
    let response = client().get(&probe.base).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(value(&text, "lookout_spool_pending"), Some(0.0), "{text}");
    assert_eq!(value(&text, "lookout_browser_sessions_in_use"), Some(0.0));
    assert!(text.contains("# TYPE lookout_scheduler_lateness_seconds histogram"));
    let (ok, said) = promtool(&["check", "metrics"], Some(&text), Path::new("."));
    assert!(ok, "promtool check metrics:\n{said}\n{text}");
}

#[test]
fn the_monitoring_deploy_files_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "lookout-rules.yml"],
        vec!["test", "rules", "lookout-rules.test.yml"],
    ] {
        let (ok, said) = promtool(&args, None, &dir);
        assert!(ok, "promtool {args:?}:\n{said}");
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("grafana-dashboard.json")).unwrap())
            .unwrap();
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for signal in ["Traffic", "Errors", "Latency", "Saturation"] {
        assert!(rows.contains(&signal), "{rows:?}");
    }
}

/// Series keys (name and labels, no value) of an exposition's samples.
fn series_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(key, _)| key.to_string()))
        .collect()
}

fn check_of(key: &str) -> Option<&str> {
    let at = key
        .find("{check=\"")
        .map(|i| i + 8)
        .or_else(|| key.find(",check=\"").map(|i| i + 8))?;
    key[at..].split('"').next()
}

async fn scrape_part(base: &str, query: &str) -> (u16, String) {
    let response = client()
        .get(format!("{base}/metrics?{query}"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// #19: `/metrics` in parts. The lookout part has no per-check series, a
/// shard only its checks' (each check in exactly one shard), every part
/// passes promtool, and the parts hold every series of the whole (taken
/// before and after them, as probe runs go on meanwhile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_in_parts_add_up_to_the_whole_and_pass_promtool() {
    let (_target, _dirs, server) = settled_three_states().await;
    let base = server.base.clone();
    let (_, before) = scrape(&base, None).await;
    let (code, own) = scrape_part(&base, "part=lookout").await;
    assert_eq!(code, 200, "{own}");
    let mut parts = series_keys(&own);
    assert!(parts.iter().all(|k| check_of(k).is_none()), "{own}");
    assert!(
        own.contains("# TYPE lookout_alert_outbox_pending gauge"),
        "{own}"
    );
    let mut seen_in: std::collections::HashMap<String, usize> = Default::default();
    for index in 0..3 {
        let (code, shard) = scrape_part(&base, &format!("shard={index}/3")).await;
        assert_eq!(code, 200, "{shard}");
        let (ok, said) = promtool(&["check", "metrics"], Some(&shard), Path::new("."));
        assert!(ok, "promtool on shard {index}/3: {said}\n{shard}");
        for key in series_keys(&shard) {
            let check = check_of(&key).unwrap_or_else(|| panic!("{key} in a shard"));
            let earlier = seen_in.insert(check.to_string(), index);
            assert!(earlier.is_none_or(|e| e == index), "{check} in two shards");
            parts.insert(key);
        }
    }
    let (ok, said) = promtool(&["check", "metrics"], Some(&own), Path::new("."));
    assert!(ok, "promtool on part=lookout: {said}");
    let (_, after) = scrape(&base, None).await;
    for key in series_keys(&before) {
        // The one series a scrape adds on its way: its own request count.
        assert!(
            parts.contains(&key) || key.contains("route=\"/metrics\""),
            "{key} missing from the parts"
        );
    }
    let whole_after = series_keys(&after);
    assert!(
        parts.iter().all(|k| whole_after.contains(k)),
        "no part has a series the whole has not"
    );
    for check in ["web-up", "api-down", "search-slow"] {
        assert!(seen_in.contains_key(check), "{check} in no shard");
        let (code, one) = scrape_part(&base, &format!("check={check}")).await;
        assert_eq!(code, 200);
        assert!(
            series_keys(&one).iter().all(|k| check_of(k) == Some(check)),
            "{one}"
        );
    }
    let (code, said) = scrape_part(&base, "shard=3/3").await;
    assert_eq!(code, 400);
    assert!(said.contains("`shard` must be K/N"), "{said}");
}

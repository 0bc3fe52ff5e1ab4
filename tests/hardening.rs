//! Hardening, end to end: wall-clock steps under libfaketime, hostile result
//! batches from a probe token, a heartbeat ping flood, and the database file
//! deleted under a running `serve`. Real `lookout` processes on loopback, a
//! real target and a real webhook receiver.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use common::hooks::Hooks;
use common::{ConfigDirs, Server, client, get_json, serve_on_loopback, wait_for};

/// A target whose `/health` fails while `failing` is set, remembering
/// when (monotonic) each request came.
#[derive(Clone, Default)]
struct CountingTarget {
    failing: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<Instant>>>,
}

impl CountingTarget {
    fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The most requests seen in any window of `width`.
    fn busiest(&self, width: Duration) -> usize {
        let hits = self.hits.lock().unwrap().clone();
        (0..hits.len())
            .map(|i| {
                hits[i..]
                    .iter()
                    .take_while(|t| **t - hits[i] < width)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }
}

async fn health(State(target): State<CountingTarget>) -> StatusCode {
    target.hits.lock().unwrap().push(Instant::now());
    if target.failing.load(Ordering::SeqCst) {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// The target and the webhook receiver, on loopback.
async fn start_target_and_hooks() -> (CountingTarget, String, Hooks, String) {
    let target = CountingTarget::default();
    let target_addr = serve_on_loopback(
        Router::new()
            .route("/health", get(health))
            .with_state(target.clone()),
    )
    .await;
    let (hooks, hook_url) = Hooks::start().await;
    (
        target,
        format!("http://{target_addr}/health"),
        hooks,
        hook_url,
    )
}

fn write_alerts(dirs: &ConfigDirs, hook_url: &str) {
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{hook_url}\" }}\ndefaults:\n  channels: [ops]\n"
        ),
    )
    .unwrap();
}

async fn check_state(base: &str, name: &str) -> Value {
    let (_, body) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

async fn wait_status(server: &Server, name: &str, want: &str, limit: Duration) {
    let base = server.base.clone();
    let reached = tokio::time::timeout(
        limit + Duration::from_secs(1),
        wait_for(&format!("{name} {want}"), limit, || {
            let base = base.clone();
            async move { (check_state(&base, name).await["status"] == want).then_some(()) }
        }),
    )
    .await;
    if reached.is_err() {
        panic!("{name} never {want}; log:\n{}", server.log_text());
    }
}

async fn wait_hooks(hooks: &Hooks, kind: &str, count: usize, server: &Server) {
    let found = tokio::time::timeout(
        Duration::from_secs(21),
        wait_for(
            &format!("{count} {kind} alerts"),
            Duration::from_secs(20),
            || async { (hooks.events(kind).len() >= count).then_some(()) },
        ),
    )
    .await;
    if found.is_err() {
        panic!(
            "no {count} {kind} alerts: {:?}\nlog:\n{}",
            hooks.all(),
            server.log_text()
        );
    }
}

/// libfaketime's library, where Debian's `faketime` package puts it.
fn libfaketime() -> PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("libfaketime is installed (Debian's faketime package; scripts/test installs it)")
}

/// Steps the faked wall clock of the processes reading `file` to `offset`
/// (libfaketime's relative form: "-120", "+180") from the real one.
fn set_clock(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_steps_under_serve_neither_blind_nor_storm() {
    let (target, target_url, hooks, hook_url) = start_target_and_hooks().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"{target_url}\" }}\n    every: 1s\n    timeout: 1s\n    alert: {{ failures: 2 }}\n"
    ));
    write_alerts(&dirs, &hook_url);
    let clock = dirs.root.path().join("faketime.rc");
    set_clock(&clock, "+0");
    let preload = libfaketime();
    let server = Server::start_with_env(
        &dirs,
        &[
            ("LD_PRELOAD", preload.to_str().unwrap()),
            ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
            ("FAKETIME_NO_CACHE", "1"),
            // Only the wall clock steps; timers stay on the real monotonic one.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    wait_status(&server, "api", "up", Duration::from_secs(20)).await;
    let started = Instant::now();

    for (round, offset) in ["-120", "+180"].into_iter().enumerate() {
        // The wall clock steps (back 120 s, then forward 300 s from there).
        set_clock(&clock, offset);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(check_state(&server.base, "api").await["status"], "up");
        // A real outage after the step pages once, and the recovery once.
        target.fail(true);
        wait_hooks(&hooks, "down", round + 1, &server).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        target.fail(false);
        wait_hooks(&hooks, "up", round + 1, &server).await;
    }
    let elapsed = started.elapsed();

    assert_eq!(hooks.events("down").len(), 2, "{:?}", hooks.all());
    assert_eq!(hooks.events("up").len(), 2, "{:?}", hooks.all());
    // The step forward made no region (or probe) look silent.
    let others: Vec<Value> = hooks
        .all()
        .into_iter()
        .filter(|e| e["event"] != "down" && e["event"] != "up")
        .collect();
    assert!(others.is_empty(), "unexpected alerts: {others:?}");
    // Configured: one request a second. Fast confirmation may add one
    // early run per interval, never more.
    let busiest = target.busiest(Duration::from_secs(5));
    assert!(busiest <= 2 * 5 + 1, "{busiest} requests within 5 s");
    let total = target.hits.lock().unwrap().len();
    let allowed = 2 * (elapsed.as_secs() as usize + 25) + 2;
    assert!(total <= allowed, "{total} requests in {elapsed:?}");
    server.terminate();
}

const EU: &str = "probe-token-for-eu-west-0123456789";
const US: &str = "probe-token-for-us-east-0123456789";

/// `lookout aggregator` with eu-west and us-east tokens, and one eu-west
/// probe running `api` against the target.
struct Regions {
    dirs: ConfigDirs,
    aggregator: Server,
    probe: Server,
    _spool: tempfile::TempDir,
}

async fn start_regions(target_url: &str, hook_url: &str) -> Regions {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"{target_url}\" }}\n    every: 1s\n    timeout: 1s\n    regions: [eu-west]\n    alert: {{ failures: 2 }}\n  - name: us-only\n    http: {{ url: \"{target_url}\" }}\n    every: 1h\n    regions: [us-east]\n  - name: nightly\n    heartbeat: {{ token: \"nightly-token-0123456789\", period: 1d }}\n"
    ));
    write_alerts(&dirs, hook_url);
    let probes = dirs.root.path().join("probes.yaml");
    std::fs::write(
        &probes,
        format!("probes:\n  eu-west: {{ token: \"{EU}\" }}\n  us-east: {{ token: \"{US}\" }}\n"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--probes".into(),
        probes.into(),
    ];
    args.extend(dirs.flags());
    let aggregator = Server::spawn(&args, &[], "listening on ");
    let spool = tempfile::tempdir().unwrap();
    let probe_args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        "eu-west".into(),
        "--aggregator".into(),
        format!("http://127.0.0.1:{port}/").into(),
        "--spool".into(),
        spool.path().join("eu-west").into(),
    ];
    let probe = Server::spawn(&probe_args, &[("LOOKOUT_PROBE_TOKEN", EU)], "probe started");
    Regions {
        dirs,
        aggregator,
        probe,
        _spool: spool,
    }
}

fn result_json(check: &str, region: &str, started_at: &str, outcome: &str) -> Value {
    json!({
        "id": uuid::Uuid::now_v7(),
        "check": check,
        "region": region,
        "probe": "hostile",
        "started_at": started_at,
        "duration_ms": 12.0,
        "outcome": outcome,
    })
}

async fn post_batch(base: &str, token: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(format!("{base}/api/v1/results"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batches_freeze_nothing_and_move_only_their_regions_checks() {
    let (target, target_url, hooks, hook_url) = start_target_and_hooks().await;
    let regions = start_regions(&target_url, &hook_url).await;
    let base = regions.aggregator.base.clone();
    wait_status(&regions.aggregator, "api", "up", Duration::from_secs(30)).await;

    // A result dated in 2099, without sent_at: taken, dated at its arrival.
    let future = result_json("api", "eu-west", "2099-01-01T00:00:00Z", "ok");
    let (status, answer) = post_batch(&base, EU, &json!({ "results": [future] })).await;
    assert_eq!(
        (status, answer["accepted"].as_u64()),
        (200, Some(1)),
        "{answer}"
    );

    // The eu-west token for a us-east check, a heartbeat and an unknown
    // check: each refused, by id, with why; nothing stored or judged.
    let now = chrono::Utc::now().to_rfc3339();
    let strays = [
        result_json("us-only", "eu-west", &now, "fail"),
        result_json("nightly", "eu-west", &now, "fail"),
        result_json("ghost", "eu-west", &now, "fail"),
    ];
    for _ in 0..3 {
        let (status, answer) =
            post_batch(&base, EU, &json!({ "results": strays, "sent_at": now })).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 0, "{answer}");
        let refused = answer["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 3, "{answer}");
        for (refusal, stray) in refused.iter().zip(&strays) {
            assert_eq!(refusal["id"], stray["id"]);
            assert!(!refusal["reason"].as_str().unwrap().is_empty());
        }
    }
    for name in ["us-only", "nightly"] {
        assert_eq!(check_state(&base, name).await["status"], "unknown");
        let (_, stored) = get_json(
            &client(),
            &format!("{base}/api/v1/checks/{name}/results?limit=10"),
        )
        .await;
        assert_eq!(
            stored["results"].as_array().map(Vec::len),
            Some(0),
            "{stored}"
        );
    }
    // Another region's results under this token: refused whole.
    let (status, _) = post_batch(
        &base,
        EU,
        &json!({ "results": [result_json("us-only", "us-east", &now, "fail")] }),
    )
    .await;
    assert_eq!(status, 403);

    // Extreme timestamps: 400 naming the field, nothing panics.
    let cases = [
        (
            json!({ "results": [result_json("api", "eu-west", &now, "fail")], "sent_at": "9999-12-31T23:59:59Z" }),
            "sent_at",
        ),
        (
            json!({ "results": [result_json("api", "eu-west", "0001-01-01T00:00:00Z", "fail")], "sent_at": now }),
            "results[0].started_at",
        ),
        (
            json!({ "results": [result_json("api", "eu-west", "+262142-01-01T00:00:00Z", "fail")], "sent_at": "-262143-01-01T00:00:00Z" }),
            "",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = post_batch(&base, EU, &body).await;
        assert_eq!(status, 400, "{answer}");
        let error = answer["error"].as_str().unwrap_or("");
        assert!(error.contains(field), "{field}: {answer}");
    }
    let (status, _) = get_json(&client(), &format!("{base}/health")).await;
    assert_eq!(status, 200);

    // The region still judges: a real outage pages once, and the target
    // sees at most about twice the configured rate meanwhile.
    let hits_before = target.hits.lock().unwrap().len();
    let outage = Instant::now();
    target.fail(true);
    wait_hooks(&hooks, "down", 1, &regions.aggregator).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = target.hits.lock().unwrap().len() - hits_before;
    let seconds = outage.elapsed().as_secs_f64();
    assert!(
        (during as f64) <= 2.0 * seconds + 2.0,
        "{during} requests in {seconds:.1} s"
    );
    target.fail(false);
    wait_hooks(&hooks, "up", 1, &regions.aggregator).await;
    assert_eq!(hooks.events("down").len(), 1, "{:?}", hooks.all());
    // Nothing about us-only or nightly was ever said.
    assert!(
        hooks
            .all()
            .iter()
            .all(|e| e["check"] != "us-only" && e["check"] != "nightly"),
        "{:?}",
        hooks.all()
    );
    drop(regions.probe);
    drop(regions.dirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_ping_flood_is_counted_not_stored() {
    const TOKEN: &str = "flood-token-0123456789";
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: job\n    heartbeat: {{ token: \"{TOKEN}\", period: 1h }}\n"
    ));
    let server = Server::start(&dirs);
    let http = client();
    let started = Instant::now();
    let mut sent = 0;
    // Bounded in count and time: at most 2,000 pings or 3 s; every other
    // one a /fail, so changing kinds cannot get around the coalescing.
    while sent < 2_000 && started.elapsed() < Duration::from_secs(3) {
        let path = if sent % 2 == 0 { "" } else { "/fail" };
        let status = http
            .post(format!("{}/ping/{TOKEN}{path}", server.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        sent += 1;
    }
    let seconds = started.elapsed().as_secs_f64().ceil() as usize;
    let (_, stored) = get_json(
        &http,
        &format!("{}/api/v1/checks/job/results?limit=1000", server.base),
    )
    .await;
    let stored = stored["results"].as_array().map(Vec::len).unwrap_or(0);
    assert!(stored >= 1, "the first ping is stored");
    assert!(
        stored <= 2 * seconds + 2,
        "{stored} of {sent} pings stored in {seconds} s"
    );
    // The job's latest word (the flood ended on a /fail) is what the check
    // says once its window closed, even though it was coalesced.
    let last_was_fail = sent % 2 == 0;
    wait_status(
        &server,
        "job",
        if last_was_fail { "down" } else { "up" },
        Duration::from_secs(10),
    )
    .await;
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let coalesced: usize = metrics
        .lines()
        .find(|l| l.starts_with("lookout_heartbeat_coalesced_pings_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no coalesced counter:\n{metrics}"));
    // Every ping stored or counted (the last one, coalesced and stored when
    // its window closed, may be both if that happened before we counted).
    assert!(
        (sent..=sent + 1).contains(&(coalesced + stored)),
        "{coalesced} coalesced + {stored} stored of {sent}"
    );
    // After a quiet second, a change is news at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let path = if last_was_fail { "" } else { "/fail" };
    let status = http
        .post(format!("{}/ping/{TOKEN}{path}", server.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    wait_status(
        &server,
        "job",
        if last_was_fail { "up" } else { "down" },
        Duration::from_secs(10),
    )
    .await;
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_database_under_serve_fails_health_at_once() {
    let (_target, target_url, _hooks, _) = start_target_and_hooks().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"{target_url}\" }}\n    every: 1s\n"
    ));
    let server = Server::start(&dirs);
    let http = client();
    wait_status(&server, "api", "up", Duration::from_secs(20)).await;
    let (status, _) = get_json(&http, &format!("{}/health", server.base)).await;
    assert_eq!(status, 200);

    let db = dirs.data().join("lookout.db");
    std::fs::remove_file(&db).unwrap();
    let deleted = Instant::now();
    let health = wait_for("/health 503", Duration::from_secs(5), || async {
        let (status, body) = get_json(&http, &format!("{}/health", server.base)).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(deleted.elapsed() < Duration::from_secs(5));
    let storage = health["checks"]["storage"].as_str().unwrap_or("");
    assert!(
        storage.contains("lookout.db") && storage.contains("deleted"),
        "{health}"
    );
    // Nothing is written into the unlinked file, and the log says why.
    wait_for("the error logged", Duration::from_secs(5), || async {
        server
            .log_text()
            .contains("was deleted while Lookout had it open")
            .then_some(())
    })
    .await;
    assert!(
        !db.exists(),
        "no new database file appears under the old name"
    );
    server.kill();
}

//! End to end, real processes: a probe given several aggregators moves to
//! the next when the one it uses dies (two `lookout aggregator` replicas on
//! one PostgreSQL database), losing no result and storing none twice; and a
//! probe that reaches no aggregator alerts once itself through the channels
//! marked `fallback: true`, and once more when one answers again, even
//! after a restart with nothing but its spool to go on.

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use common::hooks::Hooks;
use common::results::{made_ids, stored_ids_of};
use common::{ConfigDirs, Server, client, wait_for};
use serde_json::Value;

const REGION: &str = "eu-west";
const TOKEN: &str = "probe-token-for-eu-west-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Checks (`api`, every 1s, against `target`), a probes file for one region,
/// and `ops`, a webhook channel to `hook_url` marked `fallback: true` (and
/// `flaky`, another, to `flaky_url`).
fn config(target: &str, hook_url: &str, flaky_url: Option<&str>) -> ConfigDirs {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"{target}\" }}\n    every: 1s\n    timeout: 2s\n"
    ));
    let mut alerts =
        format!("channels:\n  ops:\n    fallback: true\n    webhook: {{ url: \"{hook_url}\" }}\n");
    if let Some(url) = flaky_url {
        alerts.push_str(&format!(
            "  flaky:\n    fallback: true\n    webhook: {{ url: \"{url}\" }}\n"
        ));
    }
    std::fs::write(dirs.alerts().join("alerts.yaml"), alerts).unwrap();
    std::fs::write(
        dirs.root.path().join("probes.yaml"),
        format!("probes:\n  {REGION}: {{ token: \"{TOKEN}\" }}\n"),
    )
    .unwrap();
    dirs
}

/// `lookout aggregator` on `port`, on `database` (PostgreSQL) or SQLite in
/// the config's data directory.
fn start_aggregator(dirs: &ConfigDirs, port: u16, database: Option<&str>) -> Server {
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--probes".into(),
        dirs.root.path().join("probes.yaml").into(),
        "--checks".into(),
        dirs.checks().into(),
        "--alerts".into(),
        dirs.alerts().into(),
    ];
    match database {
        Some(url) => args.extend(["--database".into(), url.into()]),
        None => args.extend(["--data".into(), dirs.data().into()]),
    }
    Server::spawn(&args, &[], "listening on ")
}

fn start_probe(spool: &Path, aggregators: &[&str], extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        REGION.into(),
        "--spool".into(),
        spool.into(),
    ];
    args.extend(aggregators.iter().map(OsString::from));
    args.extend(extra.iter().map(OsString::from));
    Server::spawn(&args, &[("LOOKOUT_PROBE_TOKEN", TOKEN)], "probe started")
}

/// The ids of `api`'s results stored, as `base` serves them.
async fn stored_ids(base: &str) -> Vec<String> {
    stored_ids_of(base, "api").await
}

/// A fresh database on the server `LOOKOUT_TEST_POSTGRES` names; `None`
/// (the test skipped, saying why) when it is unset outside CI. In CI the
/// variable must be set: a skipped HA test there would hide a failure.
async fn fresh_database() -> Option<String> {
    let Ok(server) = std::env::var("LOOKOUT_TEST_POSTGRES") else {
        assert!(
            std::env::var("CI").is_err(),
            "LOOKOUT_TEST_POSTGRES is not set, and CI is: scripts/test starts the PostgreSQL server this test needs"
        );
        println!(
            "skipped: LOOKOUT_TEST_POSTGRES is not set (scripts/test starts a throwaway PostgreSQL and sets it)"
        );
        return None;
    };
    let (pg, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("the server LOOKOUT_TEST_POSTGRES names takes connections");
    tokio::spawn(connection);
    let name = format!("lookout_failover_{}", uuid::Uuid::now_v7().simple());
    pg.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("a database for the test");
    let mut url = url::Url::parse(&server).expect("LOOKOUT_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
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

/// The probe's metrics address, from its log.
async fn metrics_url(probe: &Server) -> String {
    wait_for(
        "the probe's metrics address",
        Duration::from_secs(30),
        || async {
            probe
                .log_text()
                .lines()
                .find_map(|l| l.split("metrics on ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_moves_to_the_other_replica_when_its_own_is_killed_and_loses_nothing() {
    let Some(database) = fresh_database().await else {
        return;
    };
    let target = common::start_target().await;
    let (_hooks, hook_url) = Hooks::start().await;
    let dirs = config(&target.url("/ok"), &hook_url, None);
    let (port_a, port_b) = (free_port(), free_port());
    // One after the other: each runs the migrations it needs at start.
    let a = start_aggregator(&dirs, port_a, Some(&database));
    let b = start_aggregator(&dirs, port_b, Some(&database));
    let url_a = format!("http://127.0.0.1:{port_a}/");
    let url_b = format!("http://127.0.0.1:{port_b}/");
    let spool = tempfile::tempdir().unwrap();
    // The comma-separated form.
    let probe = start_probe(
        spool.path(),
        &["--aggregator", &format!("{url_a},{url_b}")],
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let a_base = a.base.clone();
    wait_for(
        "results through the first aggregator",
        Duration::from_secs(60),
        || async { (stored_ids(&a_base).await.len() >= 3).then_some(()) },
    )
    .await;

    let killed_at = std::time::Instant::now();
    a.kill();
    let moved = format!("aggregator {url_a} unreachable (");
    let line = wait_for(
        "the probe to say it moved",
        Duration::from_secs(60),
        || async {
            let log = probe.log_text();
            log.lines()
                .find(|l| l.contains(&moved) && l.contains(&format!("; using {url_b}")))
                .map(str::to_string)
        },
    )
    .await;
    println!(
        "the probe said, {:.1}s after the kill: {line}",
        killed_at.elapsed().as_secs_f64()
    );
    // Results keep arriving, through the survivor.
    let before = stored_ids(&b.base).await.len();
    wait_for(
        "results through the survivor",
        Duration::from_secs(60),
        || async { (stored_ids(&b.base).await.len() >= before + 3).then_some(()) },
    )
    .await;
    println!(
        "3 new results stored through the survivor {:.1}s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // The probe's /metrics names the aggregator in use, counts the move,
    // and promtool is content.
    let metrics = metrics_url(&probe).await;
    let text = client()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "lookout_uplink_aggregator_in_use{{aggregator=\"{url_b}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "lookout_uplink_aggregator_in_use{{aggregator=\"{url_a}\"}} 0"
        )),
        "{text}"
    );
    let failovers: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lookout_uplink_aggregator_failovers_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(failovers >= 1.0, "{text}");
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics:\n{said}\n{text}");

    // Every result the probe made is stored once, read via the survivor.
    let log = probe.terminate_and_log();
    let made = made_ids(&log);
    assert!(made.len() >= 6, "{log}");
    let stored = wait_for("every result stored", Duration::from_secs(30), || async {
        let stored = stored_ids(&b.base).await;
        (stored.len() >= made.len()).then_some(stored)
    })
    .await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a result was stored twice");
    let missing: Vec<&String> = made.iter().filter(|id| !unique.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} results lost: {missing:?}\n{log}",
        missing.len(),
        made.len()
    );
    assert_eq!(stored.len(), made.len());
    drop(b);
}

/// A receiver that answers its first request 503, then 200: keeps every
/// attempt (delivery id, body, what it answered).
#[derive(Clone, Default)]
struct Flaky(Arc<Mutex<Vec<(String, Value, u16)>>>);

impl Flaky {
    async fn start() -> (Flaky, String) {
        let flaky = Flaky::default();
        let addr = common::serve_on_loopback(
            Router::new()
                .route("/hook", post(flaky_hook))
                .with_state(flaky.clone()),
        )
        .await;
        (flaky, format!("http://{addr}/hook"))
    }

    fn attempts(&self) -> Vec<(String, Value, u16)> {
        self.0.lock().unwrap().clone()
    }

    /// The bodies of `kind` it took (answered 200).
    fn taken(&self, kind: &str) -> usize {
        self.attempts()
            .iter()
            .filter(|(_, body, status)| *status == 200 && body["event"] == kind)
            .count()
    }
}

async fn flaky_hook(State(flaky): State<Flaky>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delivery = headers
        .get("x-lookout-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut attempts = flaky.0.lock().unwrap();
    let status = if attempts.is_empty() { 503 } else { 200 };
    attempts.push((delivery, body, status));
    StatusCode::from_u16(status).unwrap()
}

/// The fallback alerts of `kind` the receiver got.
fn fallback(hooks: &Hooks, kind: &str) -> Vec<Value> {
    hooks.events(kind)
}

/// Waits until the probe has made `more` results after now (it runs, time
/// passes), so that "only once" is asserted after a while, not at once.
async fn wait_made(probe: &Server, more: usize) {
    let now = made_ids(&probe.log_text()).len();
    wait_for(
        "the probe to keep running",
        Duration::from_secs(60),
        || async { (made_ids(&probe.log_text()).len() >= now + more).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_every_aggregator_gone_the_probe_pages_once_and_notes_once() {
    let target = common::start_target().await;
    let (hooks, hook_url) = Hooks::start().await;
    let (flaky, flaky_url) = Flaky::start().await;
    let dirs = config(&target.url("/ok"), &hook_url, Some(&flaky_url));
    let port = free_port();
    // The second replica is never there: "every aggregator" is both.
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let live = format!("http://127.0.0.1:{port}/");
    let aggregator = start_aggregator(&dirs, port, None);
    let spool = tempfile::tempdir().unwrap();
    // The repeated form.
    let urls = ["--aggregator", live.as_str(), "--aggregator", dead.as_str()];
    let down_after = ["--aggregator-down-after", "3s"];
    let probe = start_probe(spool.path(), &urls, &down_after);
    wait_for(
        "the fallback channels received",
        Duration::from_secs(60),
        || async {
            probe
                .log_text()
                .contains("fallback channels for when no aggregator answers: flaky, ops")
                .then_some(())
        },
    )
    .await;
    let cached = std::fs::read_to_string(spool.path().join("checks.json")).unwrap();
    assert!(cached.contains("fallback_channels"), "{cached}");
    wait_made(&probe, 2).await;
    assert!(hooks.all().is_empty(), "{:?}", hooks.all());

    let killed_at = std::time::Instant::now();
    aggregator.kill();
    let lost = wait_for("the fallback alert", Duration::from_secs(60), || async {
        fallback(&hooks, "aggregators_unreachable").pop()
    })
    .await;
    println!(
        "the fallback alert arrived {:.1}s after the kill (--aggregator-down-after 3s)",
        killed_at.elapsed().as_secs_f64()
    );
    assert_eq!(lost["region"], REGION);
    assert_eq!(lost["labels"]["region"], REGION);
    assert_eq!(lost["labels"]["probe"], lookout::hostname());
    assert_eq!(lost["status"], "down");
    let summary = lost["summary"].as_str().unwrap();
    assert!(
        summary.contains(&live) && summary.contains(&dead) && summary.contains(" UTC"),
        "{summary}"
    );
    // Still nobody answers, the probe keeps probing: no second page.
    wait_made(&probe, 4).await;
    assert_eq!(fallback(&hooks, "aggregators_unreachable").len(), 1);
    assert!(fallback(&hooks, "aggregators_back").is_empty());
    // The receiver that failed first got it on a retry, once, under the
    // same delivery id.
    wait_for(
        "the retried fallback alert",
        Duration::from_secs(60),
        || async { (flaky.taken("aggregators_unreachable") == 1).then_some(()) },
    )
    .await;
    let attempts = flaky.attempts();
    assert_eq!(attempts[0].2, 503);
    assert_eq!(attempts[0].0, attempts[1].0, "{attempts:?}");

    let aggregator = start_aggregator(&dirs, port, None);
    let back = wait_for("the note", Duration::from_secs(60), || async {
        fallback(&hooks, "aggregators_back").pop()
    })
    .await;
    assert_eq!(back["incident"], lost["incident"]);
    assert_eq!(back["status"], "up");
    wait_made(&probe, 3).await;
    assert_eq!(fallback(&hooks, "aggregators_unreachable").len(), 1);
    assert_eq!(fallback(&hooks, "aggregators_back").len(), 1);
    assert_eq!(flaky.taken("aggregators_unreachable"), 1);
    assert_eq!(flaky.taken("aggregators_back"), 1);
    let log = probe.terminate_and_log();
    assert!(
        log.contains(&format!("aggregator {live} unreachable (")),
        "{log}"
    );

    // Restarted with no aggregator at all: the checks and the fallback
    // channels cached in the spool are all it has, and they are enough.
    aggregator.kill();
    let probe = start_probe(spool.path(), &urls, &down_after);
    let second = wait_for(
        "the fallback alert after a restart",
        Duration::from_secs(60),
        || async {
            let lost = fallback(&hooks, "aggregators_unreachable");
            (lost.len() >= 2).then(|| lost[1].clone())
        },
    )
    .await;
    assert_ne!(second["incident"], lost["incident"], "a new loss");
    let log = probe.log_text();
    assert!(
        log.contains("starting with the last checks received"),
        "{log}"
    );
    wait_made(&probe, 2).await;
    assert_eq!(fallback(&hooks, "aggregators_unreachable").len(), 2);
    drop(probe);
}

/// A replica that answers 503 to everything (one that lost its database):
/// the probe moves past it to the next, and its results arrive there.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_answering_503_is_passed_over_for_the_next() {
    let target = common::start_target().await;
    let (_hooks, hook_url) = Hooks::start().await;
    let dirs = config(&target.url("/ok"), &hook_url, None);
    let unhealthy = common::serve_on_loopback(
        Router::new()
            .fallback(|| async { (StatusCode::SERVICE_UNAVAILABLE, "storage unavailable") }),
    )
    .await;
    let unhealthy = format!("http://{unhealthy}/");
    let port = free_port();
    let healthy = format!("http://127.0.0.1:{port}/");
    let aggregator = start_aggregator(&dirs, port, None);
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(
        spool.path(),
        &["--aggregator", &format!("{unhealthy},{healthy}")],
        &["--metrics-listen", "127.0.0.1:0"],
    );
    let said = format!("aggregator {unhealthy} unreachable (HTTP 503); using {healthy}");
    wait_for(
        "the probe to pass the 503 over",
        Duration::from_secs(60),
        || async { probe.log_text().contains(&said).then_some(()) },
    )
    .await;
    wait_for(
        "results through the healthy replica",
        Duration::from_secs(60),
        || async { (stored_ids(&aggregator.base).await.len() >= 3).then_some(()) },
    )
    .await;
    let metrics = metrics_url(&probe).await;
    let text = client()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(&format!(
            "lookout_uplink_aggregator_in_use{{aggregator=\"{healthy}\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("lookout_uplink_aggregator_failovers_total 1\n"),
        "{text}"
    );
    let (ok, said_promtool) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics:\n{said_promtool}\n{text}");
    let log = probe.terminate_and_log();
    assert_eq!(log.matches(&said).count(), 1, "said once: {log}");
}

//! High availability, end to end: several `lookout aggregator` processes on
//! one real PostgreSQL database (started by the test run, see
//! `scripts/test`, or by the test itself), real `lookout probe` processes,
//! a target that fails per region, and webhook receivers on loopback.
//!
//! What is held here: the replicas page once per channel, not once per
//! replica; the leader's death mid-outage leaves a replica that takes over
//! the periodic jobs (reminders, stale probes) and sends each alert once;
//! a delivery claimed by a replica that dies is sent by another after the
//! claim; a replica cut off from the database answers 503 and takes no
//! results.

mod common;

#[allow(dead_code)]
#[path = "../src/storage/postgres/test_server.rs"]
mod test_server;

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use common::hooks::Hooks;
use common::regional::{RegionalTarget, free_port, token, write_probes_file};
use common::{ConfigDirs, Server, check_state, client, get_json, wait_for};

/// The database, the config (two channels, three regions), the target.
struct Setup {
    database: test_server::TestDatabase,
    dirs: ConfigDirs,
    target: RegionalTarget,
    ops: Hooks,
    team: Hooks,
    spool: tempfile::TempDir,
}

async fn setup(remind: bool) -> Setup {
    setup_every(remind, "1s").await
}

async fn setup_every(remind: bool, every: &str) -> Setup {
    let database = test_server::fresh().await;
    let (target, target_addr) = RegionalTarget::start().await;
    let remind = if remind { ", remind_every: 3s" } else { "" };
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"http://{target_addr}/health\" }}\n    every: {every}\n    timeout: 2s\n    alert: {{ failures: 2, quorum: 2{remind} }}\n"
    ));
    let (ops, ops_url) = Hooks::start().await;
    let (team, team_url) = Hooks::start().await;
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{ops_url}\" }}\n  team:\n    webhook: {{ url: \"{team_url}\" }}\ndefaults:\n  channels: [ops, team]\n"
        ),
    )
    .unwrap();
    write_probes_file(dirs.root.path());
    Setup {
        database,
        dirs,
        target,
        ops,
        team,
        spool: tempfile::tempdir().unwrap(),
    }
}

/// `lookout aggregator` on the shared database (`url`), named `id`.
fn start_replica(setup: &Setup, id: &str, url: &str, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", free_port()).into(),
        "--replica-id".into(),
        id.into(),
        "--probes".into(),
        setup.dirs.root.path().join("probes.yaml").into(),
        "--checks".into(),
        setup.dirs.checks().into(),
        "--alerts".into(),
        setup.dirs.alerts().into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    Server::spawn(&args, &[("LOOKOUT_DATABASE_URL", url)], "listening on ")
}

fn start_probe(setup: &Setup, region: &str, aggregator: &Server) -> Server {
    start_probe_to(setup, region, &[aggregator])
}

/// A probe given every replica in `aggregators`, in that order (it moves
/// to the next when one does not answer).
fn start_probe_to(setup: &Setup, region: &str, aggregators: &[&Server]) -> Server {
    let urls: Vec<String> = aggregators.iter().map(|a| format!("{}/", a.base)).collect();
    let args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        region.into(),
        "--aggregator".into(),
        urls.join(",").into(),
        "--spool".into(),
        setup.spool.path().join(region).into(),
    ];
    let token = token(region);
    Server::spawn(
        &args,
        &[("LOOKOUT_PROBE_TOKEN", token.as_str())],
        "probe started",
    )
}

/// `GET /api/v1/aggregators` of `base`.
async fn aggregators(base: &str) -> Vec<Value> {
    let (_, body) = get_json(&client(), &format!("{base}/api/v1/aggregators")).await;
    body["aggregators"].as_array().cloned().unwrap_or_default()
}

async fn leader(base: &str) -> Option<String> {
    aggregators(base)
        .await
        .into_iter()
        .find(|a| a["leader"] == true)
        .and_then(|a| a["id"].as_str().map(str::to_string))
}

/// Waits until `api` is up with every region reporting, as `base` sees it.
async fn wait_all_up(base: &str) {
    wait_for(
        "api up in all three regions",
        Duration::from_secs(60),
        || async {
            let state = check_state(base, "api").await;
            let regions = state["regions"].as_object().map(|r| r.len()).unwrap_or(0);
            (state["status"] == "up" && regions == 3).then_some(())
        },
    )
    .await;
}

/// Deliveries of `kind` each channel got, by delivery id (a resend of one
/// delivery is one page).
fn pages(hooks: &Hooks, kind: &str) -> usize {
    hooks.events(kind).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_page_once_per_channel_and_the_survivor_of_the_leader_takes_over() {
    let setup = setup(true).await;
    let url = setup.database.url.clone();
    let a = start_replica(&setup, "replica-a", &url, &[]);
    wait_for("replica-a leads", Duration::from_secs(30), || async {
        (leader(&a.base).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    let b = start_replica(&setup, "replica-b", &url, &[]);
    // Both listed, one leader, the same config.
    let listed = wait_for("both replicas listed", Duration::from_secs(30), || async {
        let listed = aggregators(&b.base).await;
        (listed.len() == 2).then_some(listed)
    })
    .await;
    assert_eq!(
        listed.iter().filter(|r| r["leader"] == true).count(),
        1,
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|r| r["config_differs"] == false),
        "{listed:?}"
    );
    let (code, health) = get_json(&client(), &format!("{}/health", b.base)).await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["replica"]["id"], "replica-b");
    assert_eq!(health["replica"]["leader"], false);

    // Probes on both replicas: eu-west and ap-south on the leader (a) first,
    // us-east on b; decisions on the check are taken by both. Each knows
    // both replicas.
    let probes: Vec<Server> = vec![
        start_probe_to(&setup, "eu-west", &[&a, &b]),
        start_probe_to(&setup, "us-east", &[&b, &a]),
        start_probe_to(&setup, "ap-south", &[&a, &b]),
    ];
    wait_all_up(&a.base).await;
    wait_all_up(&b.base).await;

    // One failing region pages nobody.
    setup.target.fail(&["us-east"]);
    wait_for(
        "us-east counted as failing",
        Duration::from_secs(30),
        || async {
            let state = check_state(&a.base, "api").await;
            (state["regions"]["us-east"]["verdict"] == "failing").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(check_state(&b.base, "api").await["status"], "up");
    assert_eq!(pages(&setup.ops, "down"), 0, "{:?}", setup.ops.all());

    // Two of three: one page per channel, whichever replica judged it.
    setup.target.fail(&["us-east", "eu-west"]);
    wait_for("the down page on ops", Duration::from_secs(30), || async {
        (pages(&setup.ops, "down") > 0 && pages(&setup.team, "down") > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pages(&setup.ops, "down"), 1, "{:?}", setup.ops.all());
    assert_eq!(pages(&setup.team, "down"), 1, "{:?}", setup.team.all());

    // Reminders come while it lasts.
    wait_for("a reminder", Duration::from_secs(30), || async {
        (pages(&setup.ops, "reminder") > 0).then_some(())
    })
    .await;

    // The leader dies mid-outage: its probes move to b, and b takes over
    // the periodic jobs.
    let mut probes = probes.into_iter();
    let eu = probes.next().unwrap();
    let us = probes.next().unwrap();
    let ap = probes.next().unwrap();
    a.kill();
    wait_for("replica-b leads", Duration::from_secs(40), || async {
        (leader(&b.base).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let reminders = pages(&setup.ops, "reminder");
    wait_for(
        "a reminder from the survivor",
        Duration::from_secs(30),
        || async { (pages(&setup.ops, "reminder") > reminders).then_some(()) },
    )
    .await;

    // A probe killed: the survivor finds it stale (once). What it made
    // before is all stored (moved to b with it), once.
    let ap_made = common::results::made_ids(&ap.log_text());
    drop(ap);
    let stale = wait_for(
        "the probe_stale page from the survivor",
        Duration::from_secs(40),
        || async { setup.ops.events("probe_stale").into_iter().next() },
    )
    .await;
    assert_eq!(stale["region"], "ap-south", "{stale}");

    // Recovery: one up page per channel, and still one down.
    setup.target.fail(&[]);
    wait_for("the up page", Duration::from_secs(30), || async {
        (pages(&setup.ops, "up") > 0 && pages(&setup.team, "up") > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for hooks in [&setup.ops, &setup.team] {
        assert_eq!(pages(hooks, "up"), 1, "{:?}", hooks.all());
        assert_eq!(pages(hooks, "down"), 1, "{:?}", hooks.all());
    }
    assert_eq!(setup.ops.events("probe_stale").len(), 1);

    // Nothing the probes made is lost, nothing stored twice: every result
    // id each logged (the last second aside, maybe in flight) is at b.
    let mut made = ap_made;
    for probe in [&eu, &us] {
        let log = probe.log_text();
        let ids = common::results::made_ids(&log);
        made.extend(ids.iter().take(ids.len().saturating_sub(3)).cloned());
    }
    let stored = wait_for("every result made stored", Duration::from_secs(30), || {
        let made = made.clone();
        let base = b.base.clone();
        async move {
            let stored = common::results::stored_ids_of(&base, "api").await;
            let set: HashSet<&String> = stored.iter().collect();
            made.iter().all(|id| set.contains(id)).then_some(stored)
        }
    })
    .await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a result stored twice");
    drop(us);
    drop(eu);
    drop(b);
}

#[tokio::test(flavor = "multi_thread")]
async fn fast_confirmation_reaches_a_probe_that_long_polls_another_replica() {
    // Every 10s: a run the aggregator asks for is logged as such.
    let setup = setup_every(false, "10s").await;
    let url = setup.database.url.clone();
    let a = start_replica(&setup, "replica-a", &url, &[]);
    let b = start_replica(&setup, "replica-b", &url, &[]);
    let eu = start_probe(&setup, "eu-west", &a);
    let us = start_probe(&setup, "us-east", &b);
    // Both regions have run once (the first run comes within an interval).
    wait_for(
        "both regions reporting",
        Duration::from_secs(60),
        || async {
            let state = check_state(&b.base, "api").await;
            let regions = state["regions"].as_object().map(|r| r.len()).unwrap_or(0);
            (regions >= 2).then_some(())
        },
    )
    .await;
    setup.target.fail(&["eu-west"]);
    // eu-west fails at its next run (on a); us-east (on b) is asked to run
    // now, which it logs.
    wait_for(
        "us-east running api now, asked through replica-b",
        Duration::from_secs(60),
        || async {
            us.log_text()
                .contains("running now, as the aggregator asked")
                .then_some(())
        },
    )
    .await;
    drop(eu);
    drop(us);
    drop(a);
    drop(b);
}

/// A webhook receiver that never answers its first request (the sender is
/// killed while it waits) and answers 200 to the rest, counting both.
#[derive(Clone, Default)]
struct StuckOnce {
    requests: Arc<AtomicUsize>,
    deliveries: Arc<Mutex<Vec<String>>>,
    answered: Arc<Mutex<Vec<Value>>>,
}

async fn stuck_once(State(hook): State<StuckOnce>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delivery = headers
        .get("x-lookout-delivery")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    hook.deliveries.lock().unwrap().push(delivery);
    if hook.requests.fetch_add(1, Ordering::SeqCst) == 0 {
        // Held until the test ends: the sender dies holding its claim.
        std::future::pending::<()>().await;
    }
    if let Ok(value) = serde_json::from_slice(&body) {
        hook.answered.lock().unwrap().push(value);
    }
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_claimed_by_a_replica_that_dies_is_sent_by_another_after_the_claim() {
    let database = test_server::fresh().await;
    let hook = StuckOnce::default();
    let hook_addr = common::serve_on_loopback(
        Router::new()
            .route("/hook", post(stuck_once))
            .with_state(hook.clone()),
    )
    .await;
    // A check that is down from its first run, on `serve` (its own probe).
    let dirs = ConfigDirs::new(
        "checks:\n  - name: gone\n    tcp: { address: \"127.0.0.1:9\" }\n    every: 1s\n    timeout: 1s\n    alert: { failures: 1 }\n",
    );
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"http://{hook_addr}/hook\" }}\ndefaults:\n  channels: [ops]\n"
        ),
    )
    .unwrap();
    let probes_file = dirs.root.path().join("probes.yaml");
    std::fs::write(
        &probes_file,
        format!(
            "probes:\n  eu-west: {{ token: \"{}\" }}\n",
            token("eu-west")
        ),
    )
    .unwrap();
    let replica = |id: &str, command: &str| -> Server {
        let mut args: Vec<OsString> = vec![
            command.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--replica-id".into(),
            id.into(),
            "--delivery-claim".into(),
            "6s".into(),
            "--checks".into(),
            dirs.checks().into(),
            "--alerts".into(),
            dirs.alerts().into(),
        ];
        if command == "aggregator" {
            args.extend(["--probes".into(), probes_file.clone().into()]);
        }
        Server::spawn(
            &args,
            &[("LOOKOUT_DATABASE_URL", database.url.as_str())],
            "listening on ",
        )
    };
    let first = replica("first", "serve");
    wait_for(
        "the first attempt reaching the receiver",
        Duration::from_secs(30),
        || async { (hook.requests.load(Ordering::SeqCst) >= 1).then_some(()) },
    )
    .await;
    // Killed while its attempt waits (it would give up at half the claim).
    first.kill();
    let second = replica("second", "aggregator");
    let delivered = wait_for(
        "the alert sent by the second replica",
        Duration::from_secs(40),
        || async { hook.answered.lock().unwrap().first().cloned() },
    )
    .await;
    assert_eq!(delivered["event"], "down", "{delivered}");
    assert_eq!(delivered["check"], "gone", "{delivered}");
    let deliveries = hook.deliveries.lock().unwrap().clone();
    assert_eq!(
        deliveries[0], deliveries[1],
        "the same delivery, resent under its id"
    );
    // Recorded as delivered once, and not sent again.
    let (_, alerts) = get_json(
        &client(),
        &format!("{}/api/v1/alerts?state=delivered", second.base),
    )
    .await;
    let delivered_rows = alerts["alerts"].as_array().map(|a| a.len()).unwrap_or(0);
    assert_eq!(delivered_rows, 1, "{alerts}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answered = hook.answered.lock().unwrap().clone();
    let downs = answered.iter().filter(|a| a["event"] == "down").count();
    assert_eq!(
        downs, 1,
        "the down alert sent once more, no more: {answered:?}"
    );
}

/// A TCP relay from a loopback port to the database's, that the test can
/// cut: every connection through it dropped, new ones refused.
struct Relay {
    port: u16,
    cut: CancellationToken,
}

impl Relay {
    async fn start(to: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = stop.cancelled() => return,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
        });
        Relay { port, cut }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_cut_off_from_the_database_answers_503_and_takes_no_results() {
    let setup = setup(false).await;
    let direct = url::Url::parse(&setup.database.url).unwrap();
    let relay = Relay::start(direct.port().unwrap()).await;
    let mut relayed = direct.clone();
    relayed.set_port(Some(relay.port)).unwrap();
    let a = start_replica(&setup, "replica-a", relayed.as_str(), &[]);
    let b = start_replica(&setup, "replica-b", direct.as_str(), &[]);
    let (code, _) = get_json(&client(), &format!("{}/health", a.base)).await;
    assert_eq!(code, 200);

    relay.cut.cancel();
    let health = wait_for("a's /health 503", Duration::from_secs(30), || async {
        let (code, body) = get_json(&client(), &format!("{}/health", a.base)).await;
        (code == 503).then_some(body)
    })
    .await;
    assert!(
        health["checks"]["storage"]
            .as_str()
            .unwrap_or("")
            .starts_with("failing"),
        "{health}"
    );
    // A batch posted to a is refused (the probe keeps it and tries again);
    // b takes it.
    let batch = serde_json::json!({
        "sent_at": chrono::Utc::now().to_rfc3339(),
        "results": [{
            "id": uuid::Uuid::now_v7().to_string(),
            "check": "api",
            "region": "eu-west",
            "probe": "test",
            "started_at": chrono::Utc::now().to_rfc3339(),
            "duration_ms": 3.0,
            "outcome": "ok",
        }],
    });
    let post = |base: String| {
        let batch = batch.clone();
        async move {
            client()
                .post(format!("{base}/api/v1/results"))
                .bearer_auth(token("eu-west"))
                .header("content-type", "application/json")
                .body(batch.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let refused = post(a.base.clone()).await;
    assert!(
        refused >= 500,
        "a took results without its database: {refused}"
    );
    let taken = post(b.base.clone()).await;
    assert_eq!(taken, 200, "b takes the batch");
    // A probe given a first moves to b, and its results are stored there.
    let probe = start_probe_to(&setup, "us-east", &[&a, &b]);
    wait_for(
        "us-east's results stored through b",
        Duration::from_secs(30),
        || async {
            let state = check_state(&b.base, "api").await;
            state["regions"]["us-east"].is_object().then_some(())
        },
    )
    .await;
    drop(probe);

    // A replica with other files is reported, not silently mixed in.
    let other = ConfigDirs::new(
        "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/health\" }\n    every: 30s\n",
    );
    std::fs::copy(
        setup.dirs.alerts().join("alerts.yaml"),
        other.alerts().join("alerts.yaml"),
    )
    .unwrap();
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--replica-id".into(),
        "replica-c".into(),
        "--probes".into(),
        setup.dirs.root.path().join("probes.yaml").into(),
    ];
    args.extend(["--checks".into(), other.checks().into()]);
    args.extend(["--alerts".into(), other.alerts().into()]);
    let c = Server::spawn(
        &args,
        &[("LOOKOUT_DATABASE_URL", direct.as_str())],
        "listening on ",
    );
    let health = wait_for(
        "b reporting c's other config",
        Duration::from_secs(30),
        || async {
            let (_, body) = get_json(&client(), &format!("{}/health", b.base)).await;
            let differs = body["replica"]["config_differs_from"].clone();
            (differs == serde_json::json!(["replica-c"])).then_some(body)
        },
    )
    .await;
    let listed = health["aggregators"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let c_row = listed.iter().find(|r| r["id"] == "replica-c").cloned();
    assert_eq!(
        c_row.map(|r| r["config_differs"].clone()),
        Some(Value::Bool(true)),
        "{health}"
    );
    drop(c);
    drop(a);
    drop(b);
}

//! `format: alertmanager` against a real Alertmanager (Debian's
//! `prometheus-alertmanager`, started here on loopback with a throwaway
//! config and a 5 s `resolve_timeout`): a down check is an active alert with
//! Lookout's labels and annotations, stays active across several
//! `resolve_timeout`s because Lookout resends it, and is resolved after the
//! recovery; Alertmanager's own webhook notification reaches the receiver
//! behind it; a second URL (an HA peer) gets every alert as well; and
//! `lookout alert test` fires `LookoutTest` there.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{ConfigDirs, Server, start_target, wait_for};
use serde_json::Value;

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// Alertmanager's `resolve_timeout` in the test config.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A real Alertmanager; killed (and its storage removed) on drop.
struct Alertmanager {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl Alertmanager {
    /// Starts Alertmanager routing everything to `receiver_url` (group
    /// wait and interval of 1 s, resolved alerts sent too).
    async fn start(receiver_url: &str) -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "{ALERTMANAGER} is missing; run scripts/test (it installs prometheus-alertmanager)"
        );
        let client = common::client();
        // A port picked free can be taken before Alertmanager binds it:
        // a few tries.
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let config = format!(
                "global:\n  resolve_timeout: {}s\nroute:\n  receiver: hook\n  group_by: [alertname, check]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {receiver_url}\n        send_resolved: true\n",
                RESOLVE_TIMEOUT.as_secs()
            );
            std::fs::write(dir.path().join("alertmanager.yml"), config).unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
            let child = Command::new(ALERTMANAGER)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("alertmanager.yml").display()
                ))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start prometheus-alertmanager");
            let mut am = Alertmanager {
                child,
                base: format!("http://127.0.0.1:{port}"),
                _dir: dir,
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = am.child.try_wait() {
                    break; // exited: most likely the port was taken
                }
                let ready = client.get(format!("{}/-/ready", am.base)).send().await;
                if ready.is_ok_and(|r| r.status().is_success()) {
                    return am;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let log = std::fs::read_to_string(am._dir.path().join("alertmanager.log"))
                .unwrap_or_default();
            eprintln!("alertmanager did not become ready; retrying. Its log:\n{log}");
        }
        panic!("could not start prometheus-alertmanager");
    }

    /// Alertmanager's alerts for check `check` (`GET /api/v2/alerts`).
    async fn alerts_of(&self, check: &str) -> Vec<Value> {
        let client = common::client();
        let Ok(response) = client
            .get(format!("{}/api/v2/alerts", self.base))
            .send()
            .await
        else {
            return Vec::new();
        };
        let text = response.text().await.unwrap_or_default();
        let list: Value = serde_json::from_str(&text).unwrap_or_default();
        list.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a["labels"]["check"] == check)
            .collect()
    }
}

/// Every JSON body posted to it, in order.
#[derive(Clone, Default)]
struct Bodies(Arc<Mutex<Vec<Value>>>);

impl Bodies {
    fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
}

async fn keep(State(bodies): State<Bodies>, body: Bytes) -> &'static str {
    if let Ok(value) = serde_json::from_slice(&body) {
        bodies.0.lock().unwrap().push(value);
    }
    "ok"
}

/// Waits until the first check's status is `status`.
async fn wait_status(base: &str, status: &str) {
    let http = common::client();
    wait_for(status, Duration::from_secs(60), || {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            let (_, body) = common::get_json(&http, &format!("{base}/api/v1/checks")).await;
            (body["checks"][0]["status"] == status).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_check_is_an_alertmanager_alert_kept_active_then_resolved() {
    down_kept_active_then_resolved(None).await;
}

/// The same on PostgreSQL (the resend reads the outbox there), on the
/// server `scripts/test` starts (`LOOKOUT_TEST_POSTGRES`), in a database of
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    let Ok(server) = std::env::var("LOOKOUT_TEST_POSTGRES") else {
        eprintln!("LOOKOUT_TEST_POSTGRES is not set (scripts/test sets it); skipped");
        return;
    };
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .expect("connect to LOOKOUT_TEST_POSTGRES");
    tokio::spawn(connection);
    let name = format!("lookout_am_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    let mut url = url::Url::parse(&server).expect("LOOKOUT_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    down_kept_active_then_resolved(Some(url.to_string())).await;
}

/// `database`: a PostgreSQL URL, or SQLite under the test's data dir.
async fn down_kept_active_then_resolved(database: Option<String>) {
    let target = start_target().await;
    // Alertmanager's receiver, and a second "Alertmanager" (an HA peer
    // behind a path prefix) that only records what Lookout posts.
    let notified = Bodies::default();
    let peer = Bodies::default();
    let addr = common::serve_on_loopback(
        Router::new()
            .route("/notify", post(keep).with_state(notified.clone()))
            .route("/peer/api/v2/alerts", post(keep).with_state(peer.clone())),
    )
    .await;
    let am = Alertmanager::start(&format!("http://{addr}/notify")).await;

    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: flip\n    http: {{ url: \"{}\" }}\n    every: 500ms\n    timeout: 2s\n    labels: {{ team: payments }}\n    alert: {{ failures: 1, channels: [am] }}\n",
        target.url("/flip")
    ));
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  am:\n    webhook:\n      format: alertmanager\n      urls: [\"{}\", \"http://{addr}/peer\"]\n      resend_every: 1s\n",
            am.base
        ),
    )
    .unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--public-url".into(),
        "http://status.example.com/".into(),
    ];
    match &database {
        Some(url) => args.extend([
            "--checks".into(),
            dirs.checks().into(),
            "--alerts".into(),
            dirs.alerts().into(),
            "--database".into(),
            url.into(),
        ]),
        None => args.extend(dirs.flags()),
    }
    let server = Server::spawn(&args, &[], "listening on ");
    // `lookout alert test am` fires LookoutTest in Alertmanager.
    let tested = tokio::task::spawn_blocking({
        let (checks, alerts) = (dirs.checks(), dirs.alerts());
        move || {
            Command::new(common::lookout_bin())
                .args(["alert", "test", "am", "--checks"])
                .arg(checks)
                .arg("--alerts")
                .arg(alerts)
                .output()
        }
    })
    .await
    .expect("alert test ran")
    .expect("run lookout alert test");
    assert!(
        tested.status.success(),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let test_alert = wait_for(
        "LookoutTest in Alertmanager",
        Duration::from_secs(60),
        || async {
            let client = common::client();
            let text = client
                .get(format!("{}/api/v2/alerts", am.base))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let list: Value = serde_json::from_str(&text).ok()?;
            list.as_array()?
                .iter()
                .find(|a| a["labels"]["alertname"] == "LookoutTest")
                .cloned()
        },
    )
    .await;
    assert_eq!(test_alert["labels"]["severity"], "info", "{test_alert}");
    assert_eq!(test_alert["status"]["state"], "active", "{test_alert}");

    // Up first (a first verdict is not news), then down.
    wait_status(&server.base, "up").await;
    target.set_flip(500);
    let alert = wait_for(
        "the alert in Alertmanager",
        Duration::from_secs(60),
        || async {
            am.alerts_of("flip")
                .await
                .into_iter()
                .find(|a| a["status"]["state"] == "active")
        },
    )
    .await;
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "LookoutCheckDown", "{alert}");
    assert_eq!(labels["severity"], "critical", "{alert}");
    assert_eq!(labels["team"], "payments", "{alert}");
    let annotations = &alert["annotations"];
    assert!(
        annotations["summary"]
            .as_str()
            .is_some_and(|s| s.contains("flip")),
        "{alert}"
    );
    assert!(
        annotations["description"]
            .as_str()
            .is_some_and(|s| s.contains("HTTP 500")),
        "{alert}"
    );
    assert_eq!(
        annotations["status_page"],
        "http://status.example.com/checks/flip"
    );
    assert_eq!(
        alert["generatorURL"],
        "http://status.example.com/checks/flip"
    );

    // Alertmanager's own notification reaches its receiver.
    let firing = wait_for(
        "Alertmanager's firing notification",
        Duration::from_secs(60),
        || async {
            notified
                .all()
                .into_iter()
                .find(|n| n["status"] == "firing" && n["commonLabels"]["check"] == "flip")
        },
    )
    .await;
    assert_eq!(firing["receiver"], "hook");
    assert_eq!(
        firing["alerts"][0]["labels"]["alertname"],
        "LookoutCheckDown"
    );

    // Active across several resolve_timeouts: Lookout keeps telling it.
    let watch_until = Instant::now() + RESOLVE_TIMEOUT * 3;
    let mut looks = 0;
    while Instant::now() < watch_until {
        let alerts = am.alerts_of("flip").await;
        assert!(
            alerts.iter().any(|a| a["status"]["state"] == "active"),
            "the alert went away while the check is down: {alerts:?}\n{}",
            server.log_text()
        );
        looks += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(looks > 3);
    assert!(
        !notified
            .all()
            .iter()
            .any(|n| n["status"] == "resolved" && n["commonLabels"]["check"] == "flip"),
        "resolved while still down"
    );

    // Recovery resolves it.
    target.set_flip(200);
    wait_for("the alert resolved", Duration::from_secs(60), || async {
        let alerts = am.alerts_of("flip").await;
        (!alerts.iter().any(|a| a["status"]["state"] == "active")).then_some(())
    })
    .await;
    let resolved = wait_for(
        "Alertmanager's resolved notification",
        Duration::from_secs(60),
        || async {
            notified
                .all()
                .into_iter()
                .find(|n| n["status"] == "resolved" && n["commonLabels"]["check"] == "flip")
        },
    )
    .await;
    assert_eq!(resolved["alerts"][0]["status"], "resolved");

    // The peer got the firing alert, its resends, and the recovery.
    let posts = peer.all();
    let fired = posts
        .iter()
        .filter(|p| p[0]["labels"]["check"] == "flip" && p[0].get("endsAt").is_none())
        .count();
    assert!(fired >= 3, "the first alert and resends: {posts:?}");
    assert!(
        posts
            .iter()
            .any(|p| p[0]["labels"]["check"] == "flip" && p[0]["endsAt"].is_string()),
        "the recovery, with endsAt: {posts:?}"
    );
    drop(server);
}

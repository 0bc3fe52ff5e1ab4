//! Alerts end to end through `lookout serve`: a signed webhook per state
//! change, retried from the durable outbox with a stable delivery id, and
//! delivered after a SIGKILL and restart.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{ConfigDirs, Server, start_target, wait_for};

const SECRET: &str = "webhook-secret-123";

#[derive(Clone, Debug)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicU32>,
    /// Answer this status to everything (0: unset).
    always: Arc<std::sync::atomic::AtomicU16>,
}

impl Receiver {
    fn accepted(&self) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.answered == 200)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let failing = receiver
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let always = receiver.always.load(Ordering::SeqCst);
    let answered = if always != 0 {
        always
    } else if failing {
        500
    } else {
        200
    };
    receiver.hits.lock().unwrap().push(Hit {
        headers,
        body,
        answered,
    });
    StatusCode::from_u16(answered).unwrap()
}

/// Starts the webhook receiver on `port` (0: any).
async fn start_receiver(port: u16, receiver: Receiver) -> u16 {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn config(target_url: &str, hook_port: u16) -> ConfigDirs {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: flip\n    http: {{ url: \"{target_url}\" }}\n    every: 500ms\n    timeout: 2s\n    alert: {{ failures: 2, channels: [hook] }}\n"
    ));
    std::fs::write(
        dirs.alerts().join("hook.yaml"),
        format!(
            "channels:\n  hook:\n    webhook: {{ url: \"http://127.0.0.1:{hook_port}/hook\", format: json, secret: \"{SECRET}\", headers: {{ X-Team: payments }} }}\n"
        ),
    )
    .unwrap();
    dirs
}

fn verify_signature(hit: &Hit) {
    let timestamp = hit.headers["x-lookout-timestamp"].to_str().unwrap();
    let signature = hit.headers["x-lookout-signature"].to_str().unwrap();
    let hex = signature.strip_prefix("sha256=").expect("sha256= prefix");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&hit.body);
    ring::hmac::verify(&key, &signed, &hex::decode(hex).unwrap())
        .expect("a valid HMAC-SHA256 signature");
}

fn json(hit: &Hit) -> serde_json::Value {
    serde_json::from_slice(&hit.body).unwrap()
}

async fn wait_hits(receiver: &Receiver, accepted: usize, server: &Server) -> Vec<Hit> {
    let found = tokio::time::timeout(
        Duration::from_secs(40),
        wait_for("alerts", Duration::from_secs(39), || async {
            let hits = receiver.accepted();
            (hits.len() >= accepted).then_some(hits)
        }),
    )
    .await;
    match found {
        Ok(hits) => hits,
        Err(_) => panic!(
            "only {:?} alerts; log:\n{}",
            receiver.accepted().len(),
            server.log_text()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_and_recovery_each_alert_once_signed() {
    let target = start_target().await;
    let receiver = Receiver::default();
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config(&target.url("/flip"), port);
    let server = Server::start(&dirs);
    tokio::time::sleep(Duration::from_secs(2)).await; // up, quietly: a first verdict is not news
    assert!(receiver.all().is_empty(), "unknown -> up alerts nobody");

    target.set_flip(500);
    let hits = wait_hits(&receiver, 1, &server).await;
    let down = json(&hits[0]);
    verify_signature(&hits[0]);
    assert_eq!(hits[0].headers["content-type"], "application/json");
    assert_eq!(hits[0].headers["x-team"], "payments");
    assert_eq!(
        (
            down["version"].as_str(),
            down["event"].as_str(),
            down["check"].as_str()
        ),
        (Some("1"), Some("down"), Some("flip"))
    );
    assert_eq!(
        (down["status"].as_str(), down["previous_status"].as_str()),
        (Some("down"), Some("up"))
    );
    assert!(
        down["summary"]
            .as_str()
            .unwrap()
            .contains("status 500 not in [2xx]"),
        "{down}"
    );
    assert_eq!(down["regions"]["local"]["status"], 500);
    assert!(down["incident"].is_string() && down["since"].is_string());

    target.set_flip(200);
    let hits = wait_hits(&receiver, 2, &server).await;
    let up = json(&hits[1]);
    verify_signature(&hits[1]);
    assert_eq!(
        (up["event"].as_str(), up["previous_status"].as_str()),
        (Some("up"), Some("down"))
    );
    assert_eq!(
        up["incident"], down["incident"],
        "recovery names the incident it closes"
    );
    assert!(up["duration_s"].is_u64());
    assert_ne!(
        hits[0].headers["x-lookout-delivery"],
        hits[1].headers["x-lookout-delivery"]
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.all().len(),
        2,
        "one alert per state change, no more"
    );
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_alert_on_the_third_try_once() {
    let target = start_target().await;
    let receiver = Receiver::default();
    receiver.fail_first.store(2, Ordering::SeqCst);
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config(&target.url("/flip"), port);
    target.set_flip(500);
    let server = Server::start(&dirs);
    let accepted = wait_hits(&receiver, 1, &server).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = receiver.all();
    let answers: Vec<u16> = all.iter().map(|h| h.answered).collect();
    assert_eq!(
        answers,
        vec![500, 500, 200],
        "two failures, then one success, then nothing"
    );
    let ids: Vec<&str> = all
        .iter()
        .map(|h| h.headers["x-lookout-delivery"].to_str().unwrap())
        .collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "the same delivery id on every try: {ids:?}"
    );
    assert_eq!(accepted.len(), 1);
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_pending_at_sigkill_is_delivered_after_restart() {
    let target = start_target().await;
    let port = free_port(); // nothing listens yet: deliveries fail and stay pending
    let dirs = config(&target.url("/flip"), port);
    target.set_flip(500);
    let server = Server::start(&dirs);
    let base = server.base.clone();
    let http = common::client();
    let pending_id = wait_for("a pending alert", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (_, body) =
                common::get_json(&http, &format!("{base}/api/v1/alerts?state=pending")).await;
            body["alerts"][0]["id"].as_str().map(str::to_string)
        }
    })
    .await;
    drop(server); // SIGKILL

    let receiver = Receiver::default();
    start_receiver(port, receiver.clone()).await;
    target.set_flip(500);
    let server = Server::start(&dirs);
    let hits = wait_hits(&receiver, 1, &server).await;
    assert_eq!(json(&hits[0])["event"], "down");
    assert_eq!(
        hits[0].headers["x-lookout-delivery"],
        pending_id.as_str(),
        "the very alert that was pending"
    );
    verify_signature(&hits[0]);
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_holds_the_alert_until_it_is_lifted() {
    let target = start_target().await;
    let receiver = Receiver::default();
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config(&target.url("/flip"), port);
    let server = Server::start_with_env(&dirs, &[("LOOKOUT_ADMIN_TOKEN", "admin-token-1234")]);
    let base = server.base.clone();
    let http = common::client();
    let body = serde_json::json!({ "check": "flip", "reason": "planned deploy", "author": "ops", "duration": "1h" });

    let refused = http
        .post(format!("{base}/api/v1/silences"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        refused.status().as_u16(),
        401,
        "changing silences needs the admin token"
    );
    let created = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth("admin-token-1234")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: serde_json::Value = serde_json::from_str(&created.text().await.unwrap()).unwrap();
    let id = created["silence"]["id"].as_str().unwrap().to_string();
    let bad = http
        .post(format!("{base}/api/v1/silences"))
        .bearer_auth("admin-token-1234")
        .header("content-type", "application/json")
        .body(serde_json::json!({ "reason": "x", "author": "y", "duration": "1h" }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status().as_u16(),
        400,
        "a silence must say what it covers"
    );

    target.set_flip(500);
    wait_for("down", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (_, body) = common::get_json(&http, &format!("{base}/api/v1/checks")).await;
            (body["checks"][0]["status"] == "down").then_some(())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        receiver.all().is_empty(),
        "silenced: no alert while it lasts"
    );

    let (_, listed) = common::get_json(&http, &format!("{base}/api/v1/silences")).await;
    assert_eq!(listed["silences"][0]["reason"], "planned deploy");
    let deleted = http
        .delete(format!("{base}/api/v1/silences/{id}"))
        .bearer_auth("admin-token-1234")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let hits = wait_hits(&receiver, 1, &server).await;
    let down = json(&hits[0]);
    assert_eq!(
        down["event"], "down",
        "still down when the silence ends: alert then"
    );
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_down_for_a_while_gets_the_mail_when_back() {
    common::smtp::require_aiosmtpd();
    let target = start_target().await;
    let smtp_port = free_port(); // nothing listens yet
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: flip\n    http: {{ url: \"{}\" }}\n    every: 500ms\n    alert: {{ failures: 1, channels: [mail] }}\n",
        target.url("/flip")
    ));
    std::fs::write(
        dirs.alerts().join("mail.yaml"),
        format!(
            "channels:\n  mail:\n    email:\n      smtp: smtp+insecure://127.0.0.1:{smtp_port}\n      from: \"Lookout <lookout@test.invalid>\"\n      to: [oncall@test.invalid, backup@test.invalid]\n"
        ),
    )
    .unwrap();
    target.set_flip(500);
    let server = Server::start(&dirs);
    let base = server.base.clone();
    let http = common::client();
    // The delivery fails while the SMTP server is down...
    wait_for("a failed attempt", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (_, body) =
                common::get_json(&http, &format!("{base}/api/v1/alerts?state=pending")).await;
            body["alerts"][0]["last_error"].as_str().map(str::to_string)
        }
    })
    .await;
    // ...and arrives once it is back, on the same port.
    let sink = common::smtp::Sink::start_on(smtp_port, &[]);
    let messages = wait_for("the mail", Duration::from_secs(40), || async {
        let messages = sink.messages();
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    let (raw, envelope) = &messages[0];
    let recipients = envelope["rcpt_tos"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    assert_eq!(recipients, 2, "{envelope}");
    assert!(
        raw.contains("multipart/alternative")
            && raw.contains("text/plain")
            && raw.contains("text/html")
    );
    assert!(
        envelope["subject"]
            .as_str()
            .unwrap_or("")
            .starts_with("[DOWN] flip — "),
        "{envelope}"
    );
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_window_folds_checks_changing_together_into_one_message() {
    let target = start_target().await;
    let receiver = Receiver::default();
    let port = start_receiver(0, receiver.clone()).await;
    let check = |name: &str| {
        format!(
            "  - name: {name}\n    http: {{ url: \"{}\" }}\n    every: 500ms\n    alert: {{ failures: 1, channels: [hook] }}\n",
            target.url("/flip")
        )
    };
    let dirs = ConfigDirs::new(&format!(
        "checks:\n{}{}{}",
        check("api"),
        check("web"),
        check("db")
    ));
    std::fs::write(
        dirs.alerts().join("hook.yaml"),
        format!("channels:\n  hook:\n    group_window: 3s\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", secret: \"{SECRET}\" }}\n"),
    )
    .unwrap();
    target.set_flip(500);
    let server = Server::start(&dirs);
    let hits = wait_hits(&receiver, 1, &server).await;
    verify_signature(&hits[0]);
    assert_eq!(hits[0].headers["x-lookout-event"], "group");
    let body = json(&hits[0]);
    let mut checks: Vec<&str> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["check"].as_str().unwrap())
        .collect();
    checks.sort();
    assert_eq!(checks, vec!["api", "db", "web"], "{body}");
    assert!(
        body["summary"]
            .as_str()
            .unwrap()
            .starts_with("[3 alerts] 3 DOWN"),
        "{body}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.all().len(), 1, "one message for the three");
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_test_proves_a_channel_and_fails_loudly_when_it_cannot() {
    let receiver = Receiver::default();
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config("http://127.0.0.1:9/", port);
    let run = |channel: &'static str, dirs: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(common::lookout_bin())
                .args(["alert", "test", channel, "--checks"])
                .arg(dirs.join("checks"))
                .arg("--alerts")
                .arg(dirs.join("alerts"))
                .output()
                .unwrap()
        })
    };
    let ok = run("hook", dirs.root.path().to_path_buf()).await.unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: test alert delivered to `hook`"));
    let hits = receiver.accepted();
    assert_eq!(hits.len(), 1);
    verify_signature(&hits[0]);
    assert_eq!(json(&hits[0])["event"], "test");

    // The same channel pointed at a port where nothing listens.
    let dead = config("http://127.0.0.1:9/", free_port());
    let failed = run("hook", dead.root.path().to_path_buf()).await.unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&failed.stderr)
            .starts_with("failed: `hook`: webhook could not connect"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
    let unknown = run("nope", dead.root.path().to_path_buf()).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_from_the_environment_never_reach_a_payload() {
    let target = start_target().await;
    let receiver = Receiver::default();
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config(&format!("{}?key=${{FLIP_KEY}}", target.url("/flip")), port);
    target.set_flip(500);
    let server = Server::start_with_env(&dirs, &[("FLIP_KEY", "super-secret-value")]);
    let hits = wait_hits(&receiver, 1, &server).await;
    let text = String::from_utf8_lossy(&hits[0].body).to_string();
    assert!(!text.contains("super-secret-value"), "{text}");
    assert!(
        json(&hits[0])["target"]
            .as_str()
            .unwrap()
            .contains("key=****"),
        "{text}"
    );
    let log = server.terminate_and_log();
    assert!(!log.contains("super-secret-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_is_dead_lettered_and_not_retried() {
    let target = start_target().await;
    let receiver = Receiver::default();
    receiver.always.store(400, Ordering::SeqCst);
    let port = start_receiver(0, receiver.clone()).await;
    let dirs = config(&target.url("/flip"), port);
    target.set_flip(500);
    let server = Server::start(&dirs);
    let base = server.base.clone();
    let http = common::client();
    let dead = wait_for("a dead letter", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let (_, body) =
                common::get_json(&http, &format!("{base}/api/v1/alerts?state=dead")).await;
            body["alerts"].as_array().filter(|a| !a.is_empty()).cloned()
        }
    })
    .await;
    assert_eq!(dead[0]["last_error"], "webhook answered 400 Bad Request");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(receiver.all().len(), 1, "a 400 is not retried");
    let _ = server.terminate();
}

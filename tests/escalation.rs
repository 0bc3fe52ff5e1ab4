//! `alert.escalate` and acknowledgement end to end (#16): a real `lookout
//! serve`, loopback targets switched down, one webhook receiver per
//! channel. Unacknowledged, the second channel is paged after `after`;
//! acknowledged through the API or the signed link it is not; an altered
//! or expired link is refused and acknowledges nothing; a GET of the link
//! only asks for confirmation.

mod common;

use std::time::Duration;

use common::hooks::Hooks;
use common::{ConfigDirs, Server, client, get_json, start_target, wait_for};

const LIMIT: Duration = Duration::from_secs(60);
const ADMIN: &str = "admin-token-1234";
const ACK_KEY: &str = "ack-key-for-tests-0123456789";

fn check(name: &str, url: &str, after: &str) -> String {
    format!(
        "  - name: {name}\n    http: {{ url: \"{url}\" }}\n    every: 1s\n    timeout: 2s\n    alert: {{ failures: 1, escalate: [{{ after: {after}, channels: [pager] }}] }}\n"
    )
}

async fn view(base: &str, name: &str) -> serde_json::Value {
    let (_, body) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
    body["checks"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or_default()
}

fn pages(hooks: &Hooks, name: &str) -> Vec<serde_json::Value> {
    hooks
        .events("down")
        .into_iter()
        .filter(|e| e["check"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_incidents_escalate_and_acknowledged_ones_do_not() {
    let names = ["plain", "by-api", "by-link", "control"];
    let mut targets = Vec::new();
    for _ in names {
        targets.push(start_target().await);
    }
    let (ops, ops_url) = Hooks::start().await;
    let (pager, pager_url) = Hooks::start().await;
    let mut yaml = String::from("checks:\n");
    for (name, target) in names.iter().zip(&targets) {
        // Long enough to acknowledge in on a loaded machine.
        let after = if *name == "plain" { "2s" } else { "10s" };
        yaml.push_str(&check(name, &target.url("/flip"), after));
    }
    let dirs = ConfigDirs::new(&yaml);
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{ops_url}\" }}\n  pager:\n    webhook: {{ url: \"{pager_url}\" }}\ndefaults:\n  channels: [ops]\n"
        ),
    )
    .unwrap();
    let server = Server::start_with_env(
        &dirs,
        &[
            ("LOOKOUT_ADMIN_TOKEN", ADMIN),
            ("LOOKOUT_PUBLIC_URL", "http://lookout.test/"),
            ("LOOKOUT_ACK_KEY", ACK_KEY),
        ],
    );
    let base = server.base.clone();
    for name in names {
        wait_for(&format!("{name} up"), LIMIT, || async {
            (view(&base, name).await["status"] == "up").then_some(())
        })
        .await;
    }
    let http = client();

    // Unacknowledged: ops first, then the pager after 2s.
    targets[0].set_flip(503);
    let first = wait_for("plain paged on ops", LIMIT, || async {
        pages(&ops, "plain").into_iter().next()
    })
    .await;
    assert!(
        first["ack_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://lookout.test/ack/")),
        "{first}"
    );
    let escalated = wait_for("plain escalated to the pager", LIMIT, || async {
        pages(&pager, "plain").into_iter().next()
    })
    .await;
    assert_eq!(escalated["incident"], first["incident"]);

    // Acknowledged through the API.
    targets[1].set_flip(503);
    let incident = wait_for("by-api down", LIMIT, || async {
        let v = view(&base, "by-api").await;
        (v["status"] == "down").then(|| v["incident"].as_str().unwrap_or("").to_string())
    })
    .await;
    let refused = http
        .post(format!("{base}/api/v1/incidents/{incident}/ack"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401, "the admin token is needed");
    let acked = http
        .post(format!("{base}/api/v1/incidents/{incident}/ack"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(acked.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_str(&acked.text().await.unwrap()).unwrap();
    assert_eq!(body["check"], "by-api");
    assert_eq!(body["ack"]["via"], "api");
    assert_eq!(view(&base, "by-api").await["ack"]["via"], "api");
    let page = http
        .get(format!("{base}/checks/by-api"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-acknowledged"),
        "the check's page shows the ack"
    );

    // Acknowledged through the signed link (after refused forgeries).
    targets[2].set_flip(503);
    let page = wait_for("by-link paged on ops", LIMIT, || async {
        pages(&ops, "by-link").into_iter().next()
    })
    .await;
    let link = page["ack_url"].as_str().unwrap_or("").to_string();
    let token = link.rsplit('/').next().unwrap_or("").to_string();
    let link_incident: uuid::Uuid = page["incident"].as_str().unwrap_or("").parse().unwrap();
    let mut altered = token.clone().into_bytes();
    altered[3] = if altered[3] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let key = lookout::alert::ack::AckKey::new(ACK_KEY.as_bytes());
    let expired = key.sign(
        link_incident,
        chrono::Utc::now() - chrono::Duration::minutes(1),
    );
    for (bad, want) in [(&altered, 403u16), (&expired, 410)] {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let r = http
                .request(method.clone(), format!("{base}/ack/{bad}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), want, "{method} {bad}");
        }
    }
    let confirm = http
        .get(format!("{base}/ack/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(confirm.status().as_u16(), 200);
    let text = confirm.text().await.unwrap();
    assert!(
        text.contains("<form method=\"post\">") && text.contains("by-link"),
        "{text}"
    );
    assert!(
        view(&base, "by-link").await.get("ack").is_none(),
        "neither forgeries nor a GET acknowledge"
    );
    let done = http
        .post(format!("{base}/ack/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
    assert_eq!(view(&base, "by-link").await["ack"]["via"], "link");

    // The control goes down last with the same `after`: once it has
    // escalated, both acknowledged checks are past theirs too.
    targets[3].set_flip(503);
    wait_for("control escalated", LIMIT, || async {
        pages(&pager, "control").into_iter().next()
    })
    .await;
    let settle = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(pages(&pager, "by-api").is_empty(), "{:?}", pager.all());
    assert!(pages(&pager, "by-link").is_empty(), "{:?}", pager.all());
    assert_eq!(pages(&pager, "plain").len(), 1, "one step, paged once");

    // The escalated incident ends: the pager hears the recovery too (a
    // PagerDuty or Alertmanager step is resolved, not left open).
    targets[0].set_flip(200);
    let recovered = wait_for("plain's recovery on the pager", LIMIT, || async {
        pager
            .events("up")
            .into_iter()
            .find(|e| e["check"] == "plain")
    })
    .await;
    assert_eq!(recovered["incident"], first["incident"]);
    assert!(
        ops.events("up").iter().any(|e| e["check"] == "plain"),
        "{:?}",
        ops.all()
    );
    drop(server);
}

/// Without `--ack-key`, the key is made once and kept in the database: a
/// link sent before a restart still acknowledges after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_from_before_a_restart_still_acknowledges() {
    let target = start_target().await;
    let (ops, ops_url) = Hooks::start().await;
    let (_pager, pager_url) = Hooks::start().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n{}",
        check("api", &target.url("/flip"), "1h")
    ));
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{ops_url}\" }}\n  pager:\n    webhook: {{ url: \"{pager_url}\" }}\ndefaults:\n  channels: [ops]\n"
        ),
    )
    .unwrap();
    let env = [("LOOKOUT_PUBLIC_URL", "http://lookout.test/")];
    let server = Server::start_with_env(&dirs, &env);
    target.set_flip(503);
    let page = wait_for("api paged", LIMIT, || async {
        pages(&ops, "api").into_iter().next()
    })
    .await;
    let link = page["ack_url"].as_str().unwrap_or("").to_string();
    let token = link.rsplit('/').next().unwrap_or("").to_string();
    assert!(!token.is_empty(), "{page}");
    server.kill();

    let server = Server::start_with_env(&dirs, &env);
    let base = server.base.clone();
    let done = client()
        .post(format!("{base}/ack/{token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 200);
    assert_eq!(view(&base, "api").await["ack"]["via"], "link");
    drop(server);
}

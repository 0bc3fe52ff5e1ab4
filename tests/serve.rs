//! `lookout serve` end to end, as a child process: a target that goes 500
//! takes a check up -> down -> up; state and results survive a restart.

mod common;

use std::time::Duration;

use common::{ConfigDirs, Server, client, get_json, start_target, wait_for};
use serde_json::Value;

async fn check_status(client: &reqwest::Client, base: &str) -> Option<String> {
    let (code, body) = get_json(client, &format!("{base}/api/v1/checks")).await;
    assert_eq!(code, 200);
    body["checks"][0]["status"].as_str().map(str::to_string)
}

async fn wait_status(client: &reqwest::Client, server: &Server, want: &str) {
    let base = server.base.clone();
    let limit = Duration::from_secs(30);
    let found = tokio::time::timeout(
        limit + Duration::from_secs(1),
        wait_for(&format!("status {want}"), limit, || {
            let base = base.clone();
            async move { (check_status(client, &base).await.as_deref() == Some(want)).then_some(()) }
        }),
    )
    .await;
    assert!(
        found.is_ok(),
        "status never became {want}; log:\n{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_goes_down_and_recovers_and_state_survives_restart() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - name: flip
    http: {{ url: \"{}\" }}
    every: 1s
    timeout: 2s
    alert: {{ failures: 2 }}
",
        target.url("/flip")
    ));
    let http = client();
    let server = Server::start(&dirs);
    let base = server.base.clone();

    let (code, health) = get_json(&http, &format!("{base}/health")).await;
    assert_eq!(
        (code, &health["status"], &health["checks"]["storage"]),
        (200, &Value::from("healthy"), &Value::from("ok"))
    );

    wait_status(&http, &server, "up").await;
    target.set_flip(500);
    wait_status(&http, &server, "down").await;
    target.set_flip(200);
    wait_status(&http, &server, "up").await;

    let (_, events) = get_json(&http, &format!("{base}/api/v1/checks/flip/events")).await;
    let changes: Vec<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pairs: Vec<(&str, &str)> = changes
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![("unknown", "up"), ("up", "down"), ("down", "up")]
    );
    let down = &events["events"][1];
    assert!(
        down["summary"]
            .as_str()
            .unwrap()
            .starts_with("flip is DOWN in 1 of 1 regions (local): status 500 not in [2xx]"),
        "{down}"
    );
    assert_eq!(
        down["incident"], events["events"][0]["incident"],
        "recovery closes the incident it opened"
    );

    let (_, results) = get_json(
        &http,
        &format!("{base}/api/v1/checks/flip/results?limit=1000"),
    )
    .await;
    let results = results["results"].as_array().unwrap().clone();
    let outcomes: Vec<&str> = results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.contains(&"fail") && outcomes.contains(&"ok"),
        "{outcomes:?}"
    );
    let started: Vec<&str> = results
        .iter()
        .map(|r| r["started_at"].as_str().unwrap())
        .collect();
    assert!(started.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let (_, limited) = get_json(&http, &format!("{base}/api/v1/checks/flip/results?limit=2")).await;
    assert_eq!(limited["results"].as_array().unwrap().len(), 2);
    let (missing, _) = get_json(&http, &format!("{base}/api/v1/checks/nope/results")).await;
    assert_eq!(missing, 404);

    let status = server.terminate();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    // Restart on the same data: the state is there before any new result.
    target.set_flip(500); // so a fresh start could not have produced "up" by itself
    let server = Server::start(&dirs);
    assert_eq!(
        check_status(&http, &server.base).await.as_deref(),
        Some("up")
    );
    let (_, after) = get_json(
        &http,
        &format!("{}/api/v1/checks/flip/results?limit=1000", server.base),
    )
    .await;
    let after_ids: Vec<&str> = after["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for r in &results {
        assert!(
            after_ids.contains(&r["id"].as_str().unwrap()),
            "result {} lost across restart",
            r["id"]
        );
    }
    wait_status(&http, &server, "down").await;
    let _ = server.terminate();
}

//! `announce: true` on a maintenance window end to end (#16): a real
//! `lookout serve` and a webhook receiver; the window's start and its end
//! are each announced once to the check's channels.

mod common;

use std::time::Duration;

use common::hooks::Hooks;
use common::{ConfigDirs, Server, client, get_json, start_target, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_window_says_its_start_and_its_end_once_each() {
    let target = start_target().await;
    let (hooks, hook_url) = Hooks::start().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: api\n    http: {{ url: \"{}\" }}\n    every: 1s\n    timeout: 2s\n",
        target.url("/ok")
    ));
    let fmt =
        |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let now = chrono::Utc::now();
    let (from, until) = (
        now + chrono::Duration::seconds(8),
        now + chrono::Duration::seconds(16),
    );
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{hook_url}\" }}\ndefaults:\n  channels: [ops]\nmaintenance:\n  - name: db-upgrade\n    checks: [api]\n    from: {}\n    until: {}\n    announce: true\n",
            fmt(from),
            fmt(until)
        ),
    )
    .unwrap();
    let server = Server::start(&dirs);
    let base = server.base.clone();
    wait_for("api up", LIMIT, || async {
        let (_, body) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
        body["checks"]
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|c| c["name"] == "api" && c["status"] == "up")
            })
            .map(|_| ())
    })
    .await;
    assert!(
        hooks.events("maintenance_start").is_empty(),
        "not before it starts"
    );
    let start = wait_for("the start notice", LIMIT, || async {
        hooks.events("maintenance_start").into_iter().next()
    })
    .await;
    assert!(
        start["summary"]
            .as_str()
            .is_some_and(|s| s.contains("`db-upgrade` started")),
        "{start}"
    );
    let end = wait_for("the end notice", LIMIT, || async {
        hooks.events("maintenance_end").into_iter().next()
    })
    .await;
    assert!(
        end["summary"]
            .as_str()
            .is_some_and(|s| s.contains("`db-upgrade` ended")),
        "{end}"
    );
    // A few ticks more: still once each, and nothing else said.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        hooks.events("maintenance_start").len(),
        1,
        "{:?}",
        hooks.all()
    );
    assert_eq!(
        hooks.events("maintenance_end").len(),
        1,
        "{:?}",
        hooks.all()
    );
    assert_eq!(hooks.all().len(), 2, "{:?}", hooks.all());
    drop(server);
}

//! `depends_on` end to end (#16): a real `lookout serve`, loopback targets
//! switched up and down, a webhook receiver counting pages. A dependency's
//! outage pages once (the dependency); a dependent still down when its
//! dependency recovers pages then; a cycle is a `validate` error with its
//! position.

mod common;

use std::time::Duration;

use common::hooks::Hooks;
use common::{ConfigDirs, Server, client, get_json, lookout_bin, start_target, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn check(name: &str, url: &str, depends: &str) -> String {
    format!(
        "  - name: {name}\n    http: {{ url: \"{url}\" }}\n    every: 1s\n    timeout: 2s\n    alert: {{ failures: 1 }}\n{depends}"
    )
}

async fn status_of(base: &str, name: &str) -> Option<serde_json::Value> {
    let (_, body) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
    body["checks"]
        .as_array()
        .or_else(|| body.as_array())?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

fn downs_of(hooks: &Hooks, name: &str) -> usize {
    hooks
        .events("down")
        .iter()
        .filter(|e| e["check"] == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_down_pages_once_and_a_dependent_still_down_pages_when_it_recovers() {
    let (db, web, api) = (
        start_target().await,
        start_target().await,
        start_target().await,
    );
    let (hooks, hook_url) = Hooks::start().await;
    let yaml = format!(
        "checks:\n{}{}{}",
        check("db", &db.url("/flip"), ""),
        check("web", &web.url("/flip"), "    depends_on: [db]\n"),
        check("api", &api.url("/flip"), "    depends_on: [db]\n"),
    );
    let dirs = ConfigDirs::new(&yaml);
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!("channels:\n  ops:\n    webhook: {{ url: \"{hook_url}\" }}\ndefaults:\n  channels: [ops]\n"),
    )
    .unwrap();
    let server = Server::start(&dirs);
    let base = server.base.clone();
    for name in ["db", "web", "api"] {
        wait_for(&format!("{name} up"), LIMIT, || async {
            status_of(&base, name).await.filter(|c| c["status"] == "up")
        })
        .await;
    }

    // The database goes first (as it does: the services fail because of it).
    db.set_flip(503);
    wait_for("db down", LIMIT, || async {
        status_of(&base, "db")
            .await
            .filter(|c| c["status"] == "down")
    })
    .await;
    web.set_flip(503);
    api.set_flip(503);
    for name in ["web", "api"] {
        let view = wait_for(&format!("{name} down"), LIMIT, || async {
            status_of(&base, name)
                .await
                .filter(|c| c["status"] == "down")
        })
        .await;
        assert_eq!(view["because"], "db is down", "{view}");
        assert_eq!(view["depends_on"], serde_json::json!(["db"]));
    }
    // The status page's JSON and the check's page say why.
    let (_, status) = get_json(&client(), &format!("{base}/api/v1/status")).await;
    let web = status["checks"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == "web").cloned())
        .unwrap_or_default();
    assert_eq!(web["because"], "db is down", "{web}");
    let page = client()
        .get(format!("{base}/checks/web"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("down, because db is down"), "{page}");
    assert!(page.contains("depends on db"), "{page}");
    wait_for("db's page", LIMIT, || async {
        (downs_of(&hooks, "db") == 1).then_some(())
    })
    .await;
    // A few ticks more: still one page, for the database only.
    let settle = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(downs_of(&hooks, "web"), 0, "{:?}", hooks.all());
    assert_eq!(downs_of(&hooks, "api"), 0, "{:?}", hooks.all());
    assert_eq!(downs_of(&hooks, "db"), 1, "{:?}", hooks.all());

    // The database and `api` recover; `web` stays down: it pages now.
    api.set_flip(200);
    wait_for("api up", LIMIT, || async {
        status_of(&base, "api")
            .await
            .filter(|c| c["status"] == "up")
    })
    .await;
    db.set_flip(200);
    wait_for("web's page after db recovered", LIMIT, || async {
        (downs_of(&hooks, "web") == 1).then_some(())
    })
    .await;
    let view = status_of(&base, "web").await.unwrap_or_default();
    assert!(view.get("because").is_none(), "{view}");
    // `api` recovered while held: nobody heard it was down, so no news.
    assert_eq!(downs_of(&hooks, "api"), 0, "{:?}", hooks.all());
    let ups_of_api = hooks
        .events("up")
        .iter()
        .filter(|e| e["check"] == "api")
        .count();
    assert_eq!(ups_of_api, 0, "{:?}", hooks.all());
    drop(server);
}

#[test]
fn a_dependency_cycle_or_unknown_name_is_a_validate_error_with_its_position() {
    let yaml = "checks:\n  - name: a\n    tcp: { address: \"127.0.0.1:1\" }\n    every: 1m\n    depends_on: [b]\n  - name: b\n    tcp: { address: \"127.0.0.1:1\" }\n    every: 1m\n    depends_on: [a, nope]\n";
    let dirs = ConfigDirs::new(yaml);
    let out = std::process::Command::new(lookout_bin())
        .args(["validate", "--checks"])
        .arg(dirs.checks())
        .arg("--alerts")
        .arg(dirs.alerts())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("checks.yaml:9:18: `depends_on` makes a cycle: a -> b -> a"),
        "{text}"
    );
    assert!(
        text.contains("checks.yaml:9:21: `depends_on` names unknown check `nope`"),
        "{text}"
    );
}

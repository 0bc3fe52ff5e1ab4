//! Heartbeats through `lookout serve`: pinged, silent, failed explicitly,
//! timed with /start; unknown tokens refused; tokens never logged.

mod common;

use std::time::Duration;

use common::{ConfigDirs, Server, client, get_json, wait_for};

const TOKEN: &str = "tok_0123456789abcdef";

async fn status(http: &reqwest::Client, base: &str) -> (String, serde_json::Value) {
    let (_, body) = get_json(http, &format!("{base}/api/v1/checks")).await;
    let check = body["checks"][0].clone();
    (check["status"].as_str().unwrap_or("").to_string(), check)
}

async fn wait_status(http: &reqwest::Client, server: &Server, want: &str) -> serde_json::Value {
    let base = server.base.clone();
    let found = tokio::time::timeout(
        Duration::from_secs(31),
        wait_for(want, Duration::from_secs(30), || {
            let base = base.clone();
            async move {
                let (got, check) = status(http, &base).await;
                (got == want).then_some(check)
            }
        }),
    )
    .await;
    match found {
        Ok(check) => check,
        Err(_) => panic!("never {want}; log:\n{}", server.log_text()),
    }
}

async fn ping(http: &reqwest::Client, base: &str, path: &str, post: bool) -> u16 {
    let url = format!("{base}/ping/{path}");
    let request = if post { http.post(url) } else { http.get(url) };
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinged_silent_failed_and_timed() {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: nightly\n    heartbeat: {{ token: \"{TOKEN}\", period: 2s, grace: 1s }}\n"
    ));
    let http = client();
    let server = Server::start(&dirs);
    let base = server.base.clone();

    assert_eq!(status(&http, &base).await.0, "unknown");
    assert_eq!(ping(&http, &base, TOKEN, true).await, 200);
    wait_status(&http, &server, "up").await;

    // Silence: down after period + grace, saying since when.
    let down = wait_status(&http, &server, "down").await;
    let error = down["regions"]["push"]["last"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.starts_with("no ping since ") && error.ends_with("(expected every 2s, grace 1s)"),
        "{error}"
    );

    assert_eq!(ping(&http, &base, TOKEN, false).await, 200, "GET works too");
    wait_status(&http, &server, "up").await;

    assert_eq!(
        ping(&http, &base, &format!("{TOKEN}/fail"), true).await,
        200
    );
    let failed = wait_status(&http, &server, "down").await;
    assert_eq!(
        failed["regions"]["push"]["last"]["error"],
        "the job reported a failure (/fail)"
    );

    // /start then a ping: the result measures the job's run time.
    assert_eq!(
        ping(&http, &base, &format!("{TOKEN}/start"), true).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ping(&http, &base, TOKEN, true).await, 200);
    let up = wait_status(&http, &server, "up").await;
    let ms = up["regions"]["push"]["last"]["duration_ms"]
        .as_f64()
        .unwrap();
    assert!(ms >= 300.0, "run time {ms}ms");

    assert_eq!(
        ping(&http, &base, "tok_not_a_real_token_x", true).await,
        404
    );
    assert_eq!(
        ping(&http, &base, &format!("{TOKEN}/bogus"), true).await,
        404
    );

    let status = server.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_log_or_the_api() {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: nightly\n    heartbeat: {{ token: \"{TOKEN}\", period: 1h }}\n"
    ));
    let http = client();
    let server = Server::start(&dirs);
    let base = server.base.clone();
    assert_eq!(ping(&http, &base, TOKEN, true).await, 200);
    assert_eq!(
        ping(&http, &base, "tok_wrong_wrong_wrong_1", true).await,
        404
    );
    wait_status(&http, &server, "up").await;
    let (_, checks) = get_json(&http, &format!("{base}/api/v1/checks")).await;
    let (_, results) = get_json(&http, &format!("{base}/api/v1/checks/nightly/results")).await;
    let log = server.terminate_and_log();
    assert!(log.contains("listening on"), "the log was captured");
    for text in [checks.to_string(), results.to_string(), log] {
        assert!(!text.contains(TOKEN), "token leaked: {text}");
        assert!(
            !text.contains("tok_wrong_wrong_wrong_1"),
            "an unknown token was logged: {text}"
        );
    }
}

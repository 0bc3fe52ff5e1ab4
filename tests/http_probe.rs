//! The HTTP probe against real targets on 127.0.0.1: every outcome with its
//! reason, the timeout enforced, the body cap, the User-Agent.

mod common;

use std::time::Duration;

use common::{ConfigDirs, Target, start_target};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::{Outcome, ProbeResult};

async fn probe(target: &Target, check_yaml: &str) -> ProbeResult {
    let yaml = format!(
        "checks:\n  - name: t\n    every: 1s\n{}",
        check_yaml.replace("TARGET", &target.url(""))
    );
    let dirs = ConfigDirs::new(&yaml);
    dirs.run_first().await
}

/// How far past its timeout a run may end. The timer itself is exact to the
/// millisecond; the slack absorbs a busy 2-core machine's scheduling.
const SLACK_MS: f64 = 400.0;

fn reason(result: &ProbeResult) -> &str {
    result.error.as_deref().unwrap_or("")
}

#[tokio::test]
async fn ok_target_passes_with_phases_and_identity() {
    let target = start_target().await;
    let result = probe(&target, "    http: { url: \"TARGET/ua\" }\n").await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.status, Some(200));
    assert_eq!(
        (
            result.check.as_str(),
            result.region.as_str(),
            result.probe.as_str()
        ),
        ("t", "test", "test-probe")
    );
    assert!(
        result.phases_ms.connect.is_some()
            && result.phases_ms.ttfb.is_some()
            && result.phases_ms.transfer.is_some()
    );
    assert!(result.phases_ms.dns.is_none(), "an IP literal needs no DNS");
    let seen = target.state.user_agents.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![format!(
            "Lookout/{} (region=test; check=t)",
            env!("CARGO_PKG_VERSION")
        )]
    );
}

#[tokio::test]
async fn a_name_is_resolved_and_timed() {
    let target = start_target().await;
    let url = format!("http://localhost:{}/ok", target.addr.port());
    let result = probe(&target, &format!("    http: {{ url: \"{url}\" }}\n")).await;
    // localhost comes from /etc/hosts: no packet leaves the machine.
    if result.outcome == Outcome::Ok {
        assert!(result.phases_ms.dns.is_some(), "{result:?}");
    } else {
        // Some hosts map localhost to ::1 only while the target listens on 127.0.0.1.
        assert!(reason(&result).contains("connection refused"), "{result:?}");
    }
}

#[tokio::test]
async fn server_error_fails_with_the_status() {
    let target = start_target().await;
    let result = probe(&target, "    http: { url: \"TARGET/500\" }\n").await;
    assert_eq!((result.outcome, result.status), (Outcome::Fail, Some(500)));
    assert_eq!(reason(&result), "status 500 not in [2xx]");

    let result = probe(
        &target,
        "    http: { url: \"TARGET/ok\" }\n    expect: { status: [201, 3xx] }\n",
    )
    .await;
    assert_eq!(reason(&result), "status 200 not in [201, 3xx]");
}

#[tokio::test]
async fn body_expectations() {
    let target = start_target().await;
    let pass = probe(&target, "    http: { url: \"TARGET/ok\" }\n    expect: { body_contains: healthy, body_matches: \"^ok: \\\\w+$\" }\n").await;
    assert_eq!(pass.outcome, Outcome::Ok, "{pass:?}");
    let missing = probe(
        &target,
        "    http: { url: \"TARGET/ok\" }\n    expect: { body_contains: '\"status\":\"up\"' }\n",
    )
    .await;
    assert_eq!(
        (missing.outcome, reason(&missing)),
        (Outcome::Fail, r#"body does not contain ""status":"up"""#)
    );
    let nomatch = probe(
        &target,
        "    http: { url: \"TARGET/ok\" }\n    expect: { body_matches: \"^down\" }\n",
    )
    .await;
    assert_eq!(
        (nomatch.outcome, reason(&nomatch)),
        (Outcome::Fail, "body does not match /^down/")
    );
}

#[tokio::test]
async fn slow_target_within_timeout_is_ok_and_beyond_it_times_out() {
    let target = start_target().await;
    let ok = probe(
        &target,
        "    http: { url: \"TARGET/slow\" }\n    timeout: 5s\n",
    )
    .await;
    assert_eq!(ok.outcome, Outcome::Ok);
    assert!(ok.duration_ms >= 1500.0, "{ok:?}");

    let late = probe(
        &target,
        "    http: { url: \"TARGET/slow\" }\n    timeout: 500ms\n",
    )
    .await;
    assert_eq!(late.outcome, Outcome::Timeout);
    assert_eq!(
        reason(&late),
        "timed out after 500ms waiting for the response headers"
    );
    assert_eq!(late.status, None);
    // Enforced: never before the timeout, and cut off promptly after it.
    assert!(
        late.duration_ms >= 500.0 && late.duration_ms < 1500.0,
        "{late:?}"
    );
}

#[tokio::test]
async fn hanging_target_times_out() {
    let target = start_target().await;
    let result = probe(
        &target,
        "    http: { url: \"TARGET/hang\" }\n    timeout: 300ms\n",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Timeout);
    assert_eq!(
        reason(&result),
        "timed out after 300ms waiting for the response headers"
    );
    assert!(
        result.duration_ms >= 300.0 && result.duration_ms < 1300.0,
        "{result:?}"
    );
    assert!(
        result.phases_ms.connect.is_some(),
        "the connection itself worked: {result:?}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_times_out_while_reading_it() {
    let target = start_target().await;
    let result = probe(
        &target,
        "    http: { url: \"TARGET/stall\" }\n    timeout: 500ms\n",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Timeout);
    assert_eq!(
        reason(&result),
        "timed out after 500ms while reading the body"
    );
    assert!(
        result.duration_ms >= 500.0 && result.duration_ms < 500.0 + SLACK_MS,
        "{result:?}"
    );
}

#[tokio::test]
async fn redirect_loop_is_an_error() {
    let target = start_target().await;
    let result = probe(&target, "    http: { url: \"TARGET/loop\" }\n").await;
    assert_eq!(
        (result.outcome, reason(&result)),
        (Outcome::Error, "too many redirects (more than 10)")
    );

    let unfollowed = probe(&target, "    http: { url: \"TARGET/loop\", follow_redirects: false }\n    expect: { status: [302] }\n").await;
    assert_eq!(
        (unfollowed.outcome, unfollowed.status),
        (Outcome::Ok, Some(302))
    );
}

#[tokio::test]
async fn huge_body_is_read_only_up_to_the_cap() {
    let target = start_target().await;
    let result = probe(
        &target,
        "    http: { url: \"TARGET/big\" }\n    expect: { body_contains: xxxx }\n",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(
        result.notes,
        vec![format!(
            "body read stopped at {} bytes",
            lookout::limits::HTTP_BODY_BYTES_MAX
        )]
    );
    // The probe stopped pulling: far less than the 50 MiB was ever produced
    // (what was, sat in socket buffers when the probe hung up).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let produced = target
        .state
        .big_bytes_sent
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        produced < common::BIG_BODY_BYTES / 2,
        "{produced} bytes produced"
    );
}

#[tokio::test]
async fn refused_connection_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let target = start_target().await;
    let result = probe(
        &target,
        &format!("    http: {{ url: \"http://127.0.0.1:{port}/\" }}\n"),
    )
    .await;
    assert_eq!(
        (result.outcome, result.error.clone()),
        (
            Outcome::Error,
            Some(format!("connection refused (127.0.0.1:{port})"))
        )
    );
}

#[tokio::test]
async fn tls_to_a_plain_http_port_is_a_tls_error() {
    let target = start_target().await;
    let url = format!("https://127.0.0.1:{}/ok", target.addr.port());
    let result = probe(
        &target,
        &format!("    http: {{ url: \"{url}\" }}\n    timeout: 3s\n"),
    )
    .await;
    assert_eq!(result.outcome, Outcome::Error, "{result:?}");
    assert!(reason(&result).starts_with("TLS error: "), "{result:?}");
}

#[tokio::test]
async fn secrets_are_masked_in_results() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: t\n    every: 1s\n    http: {{ url: \"{}\" }}\n    expect: {{ body_contains: \"${{NEEDLE}}\" }}\n",
        target.url("/ok")
    ));
    let env = |name: &str| (name == "NEEDLE").then(|| "never-in-the-body".to_string());
    let config = lookout::config::load_with_env(&dirs.checks(), &dirs.alerts(), &env).unwrap();
    let runner = Runner::new(
        ProbeIdentity {
            region: "t".into(),
            probe: "t".into(),
        },
        config.secrets.clone(),
    );
    let result = runner.run(&config.checks[0]).await;
    assert_eq!(
        (result.outcome, reason(&result)),
        (Outcome::Fail, "body does not contain \"****\"")
    );
}

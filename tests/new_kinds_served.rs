//! The `icmp`, `grpc` and `websocket` kinds beyond one run: `lookout check`
//! prints them, `lookout serve` runs them on schedule and shows them in the
//! API, on the status page and in `/metrics` (which promtool accepts), and a
//! remote `lookout probe` runs them for its aggregator. Real servers on
//! 127.0.0.1; ICMP to 127.0.0.1 needs root (CI runs as root).

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ConfigDirs, Server, client, get_json, wait_for};
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tower_service::Service;

/// A gRPC health server (everything SERVING) on 127.0.0.1.
async fn grpc_server() -> SocketAddr {
    let (_reporter, service) = tonic_health::server::health_reporter();
    let routes = tonic::service::Routes::new(service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let routes = routes.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let mut routes = routes.clone();
                    async move { routes.call(request).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A WebSocket echo server on 127.0.0.1.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                // Bounded: a probe sends one message, then closes.
                for _ in 0..16 {
                    match socket.next().await {
                        Some(Ok(message)) if message.is_text() => {
                            if socket.send(message).await.is_err() {
                                return;
                            }
                        }
                        Some(Ok(_)) => continue,
                        None | Some(Err(_)) => return,
                    }
                }
            });
        }
    });
    addr
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests ping 127.0.0.1 over a raw ICMP socket: run them as root, as CI does"
    );
}

/// The three kinds, every second, against the servers at `grpc` and `ws`.
fn three_kinds(grpc: SocketAddr, ws: SocketAddr) -> ConfigDirs {
    ConfigDirs::new(&format!(
        "checks:
  - name: ping-local
    icmp: {{ host: 127.0.0.1, count: 2, interval: 20ms }}
    every: 1s
  - name: grpc-health
    grpc: {{ address: \"{grpc}\" }}
    every: 1s
  - name: ws-echo
    websocket: {{ url: \"ws://{ws}/\", send: marco, expect: marco }}
    every: 1s
"
    ))
}

const NAMES: [&str; 3] = ["ping-local", "grpc-health", "ws-echo"];

/// The newest result of `check` from `region`, once there is one.
async fn newest_result(base: &str, check: &str, region: &str) -> Value {
    let http = client();
    let found = tokio::time::timeout(
        Duration::from_secs(40),
        wait_for(
            &format!("a result of {check} from {region}"),
            Duration::from_secs(35),
            || {
                let (http, url) = (
                    http.clone(),
                    format!("{base}/api/v1/checks/{check}/results"),
                );
                async move {
                    let (_, body) = get_json(&http, &url).await;
                    body["results"]
                        .as_array()?
                        .iter()
                        .find(|r| r["region"] == region)
                        .cloned()
                }
            },
        ),
    )
    .await;
    found.unwrap_or_else(|_| panic!("no result of {check} from {region}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shows_them_in_the_api_the_status_page_and_metrics() {
    require_root();
    let (grpc, ws) = (grpc_server().await, echo_server().await);
    let dirs = three_kinds(grpc, ws);
    let server = Server::start(&dirs);
    let base = server.base.clone();

    let ping = newest_result(&base, "ping-local", "local").await;
    assert_eq!(ping["outcome"], "ok", "{ping}");
    assert_eq!(ping["icmp"]["received"], 2, "{ping}");
    assert!(ping["icmp"]["rtt_avg_ms"].as_f64().is_some(), "{ping}");
    let health = newest_result(&base, "grpc-health", "local").await;
    assert_eq!(health["outcome"], "ok", "{health}");
    assert_eq!(health["grpc"]["serving_status"], "SERVING", "{health}");
    let echo = newest_result(&base, "ws-echo", "local").await;
    assert_eq!(
        (&echo["outcome"], &echo["status"]),
        (&"ok".into(), &101.into()),
        "{echo}"
    );

    let (_, checks) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
    for name in NAMES {
        let check = checks["checks"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("{name} in {checks}"));
        assert!(check["kind"].is_string(), "{check}");
    }
    let page = client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for name in NAMES {
        assert!(html.contains(name), "{name} on the status page");
    }

    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let grpc_labels = format!("check=\"grpc-health\",region=\"local\",target=\"{grpc}\"");
    for series in [
        "probe_icmp_duration_seconds{check=\"ping-local\",region=\"local\",target=\"127.0.0.1\",phase=\"rtt\"} ".to_string(),
        "probe_icmp_reply_hop_limit{check=\"ping-local\",region=\"local\",target=\"127.0.0.1\"} 64".to_string(),
        format!("probe_grpc_healthcheck_response{{{grpc_labels},serving_status=\"SERVING\"}} 1"),
        format!("probe_grpc_healthcheck_response{{{grpc_labels},serving_status=\"NOT_SERVING\"}} 0"),
        format!("probe_grpc_status_code{{{grpc_labels}}} 0"),
    ] {
        assert!(text.contains(&series), "{series}\nnot in:\n{text}");
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    {
        use std::io::Write;
        let mut stdin = promtool.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookout_check_runs_them_once_and_prints_them() {
    require_root();
    let (grpc, ws) = (grpc_server().await, echo_server().await);
    let dirs = three_kinds(grpc, ws);
    let args: Vec<OsString> = std::iter::once(OsString::from("check"))
        .chain(dirs.flags().into_iter().take(4))
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(common::lookout_bin())
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in NAMES {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(name) && l.contains(" ok ")),
            "{name} ok in:\n{table}"
        );
    }
    assert!(table.contains("2 sent, 2 received (0% loss)"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_probe_runs_them_for_its_aggregator() {
    require_root();
    let (grpc, ws) = (grpc_server().await, echo_server().await);
    let dirs = three_kinds(grpc, ws);
    let token = "probe-token-for-eu-west-0123456789";
    std::fs::write(
        dirs.root.path().join("probes.yaml"),
        format!("probes:\n  eu-west: {{ token: \"{token}\" }}\n"),
    )
    .unwrap();
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--probes".into(),
        dirs.root.path().join("probes.yaml").into(),
    ];
    args.extend(dirs.flags());
    let aggregator = Server::spawn(&args, &[], "listening on ");
    let base = aggregator.base.clone();
    let probe_args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        "eu-west".into(),
        "--aggregator".into(),
        format!("{base}/").into(),
        "--spool".into(),
        dirs.root.path().join("spool").into(),
    ];
    let probe = Server::spawn(
        &probe_args,
        &[("LOOKOUT_PROBE_TOKEN", token)],
        "probe started",
    );
    for name in NAMES {
        let result = newest_result(&base, name, "eu-west").await;
        assert_eq!(result["outcome"], "ok", "{name}: {result}");
    }
    let _ = probe.terminate();
    let _ = aggregator.terminate();
}

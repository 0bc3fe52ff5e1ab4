//! The probe features of #15 (part A) against real servers on loopback:
//! JSON assertions (each operator holding and failing with its sentence, a
//! path matching nothing, bad paths and regexes refused by `validate` with
//! line:col), header and negative body assertions, an HTTP CONNECT proxy the
//! test runs (per check, from the environment only when asked, credentials
//! masked), the address family (`localhost` as 127.0.0.1 and ::1, in a mount
//! namespace of a child process whose /etc/hosts says both), and the new
//! series in `/metrics` under promtool.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::{ConfigDirs, path_str, serve_on_loopback};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::{Outcome, ProbeResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEALTH: &str = r#"{"status":"UP","db":{"status":"ok","latency_ms":412},
  "tags":["api","eu"],"version":"2.4.1","checks":[{"ok":true},{"ok":false}],"error":null}"#;

/// A JSON health endpoint on 127.0.0.1, with an `x-version` header.
async fn json_target() -> SocketAddr {
    let app = Router::new().route(
        "/health",
        get(|| async {
            (
                [("content-type", "application/json"), ("x-version", "2.4.1")],
                HEALTH,
            )
        }),
    );
    serve_on_loopback(app).await
}

/// Runs every check of `checks_yaml` (a `checks:` list) once, in order.
async fn run_all(checks_yaml: &str) -> Vec<ProbeResult> {
    let dirs = ConfigDirs::new(checks_yaml);
    let config = dirs.load();
    let runner = Runner::new(
        ProbeIdentity {
            region: "test".into(),
            probe: "test-probe".into(),
        },
        config.secrets.clone(),
    );
    let mut results = Vec::new();
    for check in &config.checks {
        results.push(runner.run(check).await);
    }
    results
}

fn reason(result: &ProbeResult) -> &str {
    result.error.as_deref().unwrap_or("")
}

#[tokio::test]
async fn each_json_operator_holds_and_fails_with_its_sentence() {
    let addr = json_target().await;
    // (assertion, None when it holds, else the failure sentence)
    let cases: &[(&str, Option<&str>)] = &[
        ("{ path: $.status, equals: UP }", None),
        (
            "{ path: $.status, equals: DOWN }",
            Some(r#"$.status is "UP", not "DOWN""#),
        ),
        ("{ path: $.status, not_equals: DOWN }", None),
        (
            "{ path: $.status, not_equals: UP }",
            Some(r#"$.status is "UP", and must not be"#),
        ),
        ("{ path: $.tags, contains: eu }", None),
        (
            "{ path: $.tags, contains: us }",
            Some(r#"$.tags is ["api","eu"], which does not contain "us""#),
        ),
        ("{ path: $.version, contains: \"2.4\" }", None),
        ("{ path: $.version, matches: \"^2\\\\.\" }", None),
        (
            "{ path: $.version, matches: \"^3\\\\.\" }",
            Some(r#"$.version is "2.4.1", which does not match /^3\./"#),
        ),
        ("{ path: $.db.latency_ms, below: 500 }", None),
        (
            "{ path: $.db.latency_ms, below: 200 }",
            Some("$.db.latency_ms is 412, not below 200"),
        ),
        ("{ path: $.db.latency_ms, above: 100 }", None),
        (
            "{ path: $.db.latency_ms, above: 1000 }",
            Some("$.db.latency_ms is 412, not above 1000"),
        ),
        ("{ path: $.db.status, exists: true }", None),
        (
            "{ path: $.db.missing, exists: true }",
            Some("$.db.missing: no value at this path"),
        ),
        ("{ path: $.db.missing, exists: false }", None),
        (
            "{ path: $.version, exists: false }",
            Some(r#"$.version exists (it is "2.4.1"), and must not"#),
        ),
        ("{ path: $.tags, length: 2 }", None),
        (
            "{ path: $.tags, length: 3 }",
            Some("$.tags has length 2, not 3"),
        ),
        ("{ path: $.tags, length_above: 1 }", None),
        (
            "{ path: $.tags, length_above: 2 }",
            Some("$.tags has length 2, not above 2"),
        ),
        ("{ path: $.tags, length_below: 3 }", None),
        (
            "{ path: $.tags, length_below: 2 }",
            Some("$.tags has length 2, not below 2"),
        ),
        // A path matching nothing fails, whatever the operator.
        (
            "{ path: \"$.nothing.here\", below: 1 }",
            Some("$.nothing.here: no value at this path"),
        ),
        // Every selected value must hold: the one that does not is named.
        (
            "{ path: \"$.checks[*].ok\", equals: true }",
            Some("$['checks'][1]['ok'] is false, not true"),
        ),
        // A filter (RFC 9535): the failing entry is found.
        ("{ path: \"$.checks[?@.ok == false]\", length: 1 }", None),
    ];
    let mut yaml = String::from("checks:\n");
    for (i, (assertion, _)) in cases.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: c{i}\n    every: 1m\n    http: {{ url: \"http://{addr}/health\" }}\n    expect:\n      json:\n        - {assertion}\n"
        ));
    }
    let results = run_all(&yaml).await;
    for ((assertion, want), result) in cases.iter().zip(&results) {
        match want {
            None => assert_eq!(result.outcome, Outcome::Ok, "{assertion}: {result:?}"),
            Some(sentence) => {
                assert_eq!(result.outcome, Outcome::Fail, "{assertion}: {result:?}");
                assert_eq!(reason(result), *sentence, "{assertion}");
            }
        }
    }
}

#[tokio::test]
async fn header_and_negative_body_assertions() {
    let addr = json_target().await;
    let cases: &[(&str, Option<&str>)] = &[
        ("headers: { x-version: \"^2\\\\.\" }", None),
        ("headers: { Content-Type: json }", None),
        (
            "headers: { x-version: \"^3\" }",
            Some(r#"header x-version is "2.4.1", which does not match /^3/"#),
        ),
        (
            "headers: { x-missing: \".\" }",
            Some("header x-missing is missing"),
        ),
        (
            "headers: { x-missing: { matches: \".\", allow_missing: true } }",
            None,
        ),
        ("body_not_contains: DOWN", None),
        (
            "body_not_contains: latency_ms",
            Some("body contains \"latency_ms\", and must not"),
        ),
        ("body_not_matches: \"\\\"status\\\":\\\\s*\\\"DOWN\"", None),
        (
            "body_not_matches: \"\\\"error\\\":\\\\s*null\"",
            Some(r#"body matches /"error":\s*null/, and must not"#),
        ),
    ];
    let mut yaml = String::from("checks:\n");
    for (i, (expect, _)) in cases.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: c{i}\n    every: 1m\n    http: {{ url: \"http://{addr}/health\" }}\n    expect: {{ {expect} }}\n"
        ));
    }
    let results = run_all(&yaml).await;
    for ((expect, want), result) in cases.iter().zip(&results) {
        match want {
            None => assert_eq!(result.outcome, Outcome::Ok, "{expect}: {result:?}"),
            Some(sentence) => {
                assert_eq!(result.outcome, Outcome::Fail, "{expect}: {result:?}");
                assert_eq!(reason(result), *sentence, "{expect}");
            }
        }
    }
}

fn lookout(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(common::lookout_bin())
        .args(args)
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("NO_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("no_proxy")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_rejects_bad_paths_regexes_and_keys_with_line_and_column() {
    let dirs = ConfigDirs::new(
        "checks:
  - name: api
    every: 30s
    http: { url: \"http://127.0.0.1:9/\", ip_family: ipv5 }
    expect:
      json:
        - { path: \"$.items[\", equals: 1 }
        - { path: $.status, matches: \"([a-z\" }
        - { path: $.status, equals: UP, below: 3 }
        - { path: $.n, below: fast }
      headers: { x-version: \"(\" }
      http_version: \"3\"
",
    );
    let file = path_str(&dirs.checks().join("checks.yaml"));
    let (code, _, stderr) = lookout(
        &[
            "validate",
            "--checks",
            &path_str(&dirs.checks()),
            "--alerts",
            &path_str(&dirs.alerts()),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    for want in [
        format!("{file}:4:52: `ip_family` must be any, ipv4 or ipv6, found `ipv5`"),
        format!("{file}:7:19: invalid JSONPath `$.items[` at character"),
        format!("{file}:8:38: invalid regular expression in `matches`"),
        format!("{file}:9:48: a `json` assertion takes one operator"),
        format!("{file}:10:31: `below` must be a number"),
        format!("{file}:11:29: invalid regular expression in `headers.x-version`"),
        format!("{file}:12:21: `http_version` must be \"1.1\" or \"2\""),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
}

// --- Proxies ---

/// A tiny HTTP proxy on 127.0.0.1: `CONNECT host:port` tunnels, absolute
/// URLs are forwarded; each request line is logged, with whether it carried
/// `Proxy-Authorization`. Only loopback destinations are reached.
struct Proxy {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    fn seen(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

/// Bytes of a request head the proxy reads at most.
const PROXY_HEAD_MAX: usize = 16 * 1024;

async fn start_proxy() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = log.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let _ = relay(client, record).await;
            });
        }
    });
    Proxy { addr, log }
}

async fn relay(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > PROXY_HEAD_MAX {
            return Ok(());
        }
        let n = client.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or("").to_string();
    let authorized = text
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("proxy-authorization:"));
    log.lock()
        .unwrap()
        .push(format!("{line}{}", if authorized { " [auth]" } else { "" }));
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let destination = if method == "CONNECT" {
        target.to_string()
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        rest.split('/').next().unwrap_or("").to_string()
    };
    let (host, port) = destination.rsplit_once(':').unwrap_or((&destination, "80"));
    // Loopback only, whatever the request names.
    let host = match host {
        "localhost" | "127.0.0.1" => "127.0.0.1",
        _ => return Ok(()),
    };
    let mut upstream = TcpStream::connect((host, port.parse().unwrap_or(0))).await?;
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
    } else {
        upstream.write_all(&head).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// A self-signed certificate for localhost (PEM) and an HTTPS server on
/// 127.0.0.1 presenting it, answering `ok` over HTTP/1.1.
async fn https_target() -> (SocketAddr, String) {
    lookout::install_crypto_provider();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(axum::body::Body::from(
                        "ok",
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, cert.pem())
}

#[tokio::test]
async fn http_and_https_checks_go_through_their_proxy_and_only_then() {
    let proxy = start_proxy().await;
    let plain = json_target().await;
    let (secure, pem) = https_target().await;
    let dirs = ConfigDirs::new("checks: []\n");
    let ca_file = dirs.root.path().join("server.pem");
    std::fs::write(&ca_file, pem).unwrap();
    let ca = path_str(&ca_file);
    let via = format!("http://{}", proxy.addr);
    let with_auth = format!("http://probe:pw-s3cret-42@{}", proxy.addr);
    // A port nothing listens on: the proxy there refuses.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let secure_url = format!("https://localhost:{}/", secure.port());
    let yaml = format!(
        "checks:
  - {{ name: direct, every: 1m, http: {{ url: \"http://{plain}/health\" }} }}
  - {{ name: via-http, every: 1m, http: {{ url: \"http://{plain}/health\", proxy: \"{via}\" }} }}
  - {{ name: via-https, every: 1m, http: {{ url: \"{secure_url}\", ca_file: \"{ca}\", proxy: \"{via}\" }} }}
  - {{ name: via-auth, every: 1m, http: {{ url: \"http://{plain}/health\", proxy: \"{with_auth}\" }} }}
  - {{ name: via-dead, every: 1m, http: {{ url: \"http://{plain}/health\", proxy: \"http://probe:pw-s3cret-42@{dead}\" }} }}
"
    );
    std::fs::write(dirs.checks().join("checks.yaml"), yaml).unwrap();
    let config = dirs.load();
    let runner = Runner::new(
        ProbeIdentity {
            region: "test".into(),
            probe: "test-probe".into(),
        },
        config.secrets.clone(),
    );
    let mut results = Vec::new();
    for check in &config.checks {
        results.push(runner.run(check).await);
    }
    for result in &results[..4] {
        assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    }
    let seen = proxy.seen();
    assert_eq!(
        seen,
        vec![
            format!("GET http://{plain}/health HTTP/1.1"),
            format!("CONNECT localhost:{} HTTP/1.1", secure.port()),
            format!("GET http://{plain}/health HTTP/1.1 [auth]"),
        ],
        "the direct check must not reach the proxy"
    );
    // Through the proxy, the address used is the proxy's.
    assert_eq!(results[1].address.as_deref(), Some("127.0.0.1"));
    let dead_result = &results[4];
    assert_eq!(dead_result.outcome, Outcome::Error, "{dead_result:?}");
    assert_eq!(
        reason(dead_result),
        format!("connection refused (proxy {dead})")
    );
    let shown = serde_json::to_string(dead_result).unwrap();
    assert!(!shown.contains("pw-s3cret-42"), "{shown}");
    for check in &config.checks {
        assert!(!check.target().contains("pw-s3cret-42"));
    }
}

#[tokio::test]
async fn proxy_from_env_is_honoured_only_when_set() {
    let proxy = start_proxy().await;
    let plain = json_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - {{ name: from-env, every: 1m, http: {{ url: \"http://{plain}/health\", proxy_from_env: true }} }}
  - {{ name: ignores-env, every: 1m, http: {{ url: \"http://{plain}/health\" }} }}
"
    ));
    let checks = path_str(&dirs.checks());
    let alerts = path_str(&dirs.alerts());
    let via = format!("http://{}", proxy.addr);
    let run = |name: &'static str, env: Vec<(&'static str, String)>| {
        let (checks, alerts) = (checks.clone(), alerts.clone());
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            lookout(
                &[
                    "check", "--json", name, "--checks", &checks, "--alerts", &alerts,
                ],
                &env,
            )
        })
    };
    let (code, stdout, stderr) = run("ignores-env", vec![("HTTP_PROXY", via.clone())])
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(proxy.seen().is_empty(), "{:?}", proxy.seen());

    let (code, stdout, stderr) = run("from-env", vec![("HTTP_PROXY", via.clone())])
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        proxy.seen(),
        vec![format!("GET http://{plain}/health HTTP/1.1")]
    );

    // NO_PROXY names the target: straight there.
    let (code, stdout, stderr) = run(
        "from-env",
        vec![
            ("HTTP_PROXY", via.clone()),
            ("NO_PROXY", "127.0.0.1".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(proxy.seen().len(), 1, "{:?}", proxy.seen());
}

// --- Address family ---

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// An HTTP server answering on 127.0.0.1:P and [::1]:P (one port), saying
/// which address it was reached on.
async fn dual_stack_target() -> u16 {
    for _ in 0..20 {
        let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = v4.local_addr().unwrap().port();
        let Ok(v6) = TcpListener::bind(("::1", port)).await else {
            continue;
        };
        for listener in [v4, v6] {
            let app =
                Router::new().route(
                    "/",
                    get(
                        |axum::extract::ConnectInfo(local): axum::extract::ConnectInfo<
                            SocketAddr,
                        >| async move { format!("{local}") },
                    ),
                );
            tokio::spawn(async move {
                let _ = axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .await;
            });
        }
        return port;
    }
    panic!("no port free on both 127.0.0.1 and ::1");
}

#[tokio::test]
async fn ip_family_picks_the_address_of_localhost_and_the_result_says_which() {
    if !is_root() {
        eprintln!("skipped: a mount namespace with its own /etc/hosts needs root");
        return;
    }
    let port = dual_stack_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - {{ name: http-v4, every: 1m, http: {{ url: \"http://localhost:{port}/\", ip_family: ipv4 }} }}
  - {{ name: http-v6, every: 1m, http: {{ url: \"http://localhost:{port}/\", ip_family: ipv6 }} }}
  - {{ name: tcp-v4, every: 1m, tcp: {{ address: \"localhost:{port}\", ip_family: ipv4 }} }}
  - {{ name: tcp-v6, every: 1m, tcp: {{ address: \"localhost:{port}\", ip_family: ipv6 }} }}
  - {{ name: tls-v4, every: 1m, tls: {{ address: \"localhost:{port}\", ip_family: ipv4 }} }}
  - {{ name: tls-v6, every: 1m, tls: {{ address: \"localhost:{port}\", ip_family: ipv6 }} }}
"
    ));
    // localhost as both families, for the child only.
    let hosts = dirs.root.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n::1 localhost\n").unwrap();
    let script = format!(
        "mount --bind '{}' /etc/hosts && exec '{}' check --json --checks '{}' --alerts '{}'",
        path_str(&hosts),
        common::lookout_bin(),
        path_str(&dirs.checks()),
        path_str(&dirs.alerts()),
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new("unshare")
            .args(["--mount", "sh", "-c", &script])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The tls checks meet a plain HTTP server: their handshake fails, and
    // the result still says where they connected.
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let results: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_name = |name: &str| {
        results
            .iter()
            .find(|r| r["check"] == name)
            .unwrap_or_else(|| panic!("no result for {name}: {stdout}"))
    };
    for (name, family, address) in [
        ("http-v4", "ipv4", "127.0.0.1"),
        ("http-v6", "ipv6", "::1"),
        ("tcp-v4", "ipv4", "127.0.0.1"),
        ("tcp-v6", "ipv6", "::1"),
        ("tls-v4", "ipv4", "127.0.0.1"),
        ("tls-v6", "ipv6", "::1"),
    ] {
        let result = by_name(name);
        let outcome = if name.starts_with("tls") {
            "error"
        } else {
            "ok"
        };
        assert_eq!(result["outcome"], outcome, "{result}");
        assert_eq!(result["ip_family"], family, "{result}");
        assert_eq!(result["address"], address, "{result}");
    }
}

// --- /metrics and the API ---

#[tokio::test]
async fn metrics_and_the_api_say_the_address_family_and_http_version() {
    let addr = json_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - name: api
    every: 1s
    http: {{ url: \"http://{addr}/health\", ip_family: ipv4 }}
    expect:
      http_version: \"1.1\"
      json:
        - {{ path: $.status, equals: UP }}
"
    ));
    let server = common::Server::start(&dirs);
    let client = common::client();
    let base = server.base.clone();
    let text = common::wait_for(
        "the api check's version in /metrics",
        Duration::from_secs(20),
        || {
            let client = client.clone();
            let base = base.clone();
            async move {
                let text = client
                    .get(format!("{base}/metrics"))
                    .send()
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()?;
                text.contains("probe_http_version{").then_some(text)
            }
        },
    )
    .await;
    for series in [
        "probe_ip_protocol{check=\"api\"",
        "probe_ip_addr_hash{check=\"api\"",
        "probe_http_version{check=\"api\"",
    ] {
        assert!(text.contains(series), "no {series} in:\n{text}");
    }
    let line = text
        .lines()
        .find(|l| l.starts_with("probe_ip_protocol{"))
        .unwrap();
    assert!(line.ends_with(" 4"), "{line}");
    let line = text
        .lines()
        .find(|l| l.starts_with("probe_http_version{"))
        .unwrap();
    assert!(line.ends_with(" 1.1"), "{line}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The API's results carry the same facts.
    let (status, body) =
        common::get_json(&client, &format!("{base}/api/v1/checks/api/results")).await;
    assert_eq!(status, 200, "{body}");
    let latest = &body["results"][0];
    assert_eq!(latest["outcome"], "ok", "{body}");
    assert_eq!(latest["ip_family"], "ipv4", "{body}");
    assert_eq!(latest["address"], "127.0.0.1", "{body}");
    assert_eq!(latest["http_version"], "1.1", "{body}");
    drop(server);
}

#[test]
fn validate_checks_client_certificates_and_proxies() {
    let dirs = ConfigDirs::new("checks: []\n");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["probe".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let other_key = rcgen::KeyPair::generate().unwrap();
    let write = |name: &str, text: String| {
        let path = dirs.root.path().join(name);
        std::fs::write(&path, text).unwrap();
        path_str(&path)
    };
    let cert_file = write("client.pem", cert.pem());
    let key_file = write("client.key", key.serialize_pem());
    let other_file = write("other.key", other_key.serialize_pem());
    let yaml = format!(
        "checks:
  - {{ name: good, every: 1m, tls: {{ address: \"127.0.0.1:9\", client_cert: \"{cert_file}\", client_key: \"{key_file}\" }} }}
  - {{ name: alone, every: 1m, tls: {{ address: \"127.0.0.1:9\", client_cert: \"{cert_file}\" }} }}
  - {{ name: mismatch, every: 1m, http: {{ url: \"https://127.0.0.1:9/\", client_cert: \"{cert_file}\", client_key: \"{other_file}\" }} }}
  - {{ name: not-pem, every: 1m, http: {{ url: \"https://127.0.0.1:9/\", client_cert: \"{key_file}\", client_key: \"{key_file}\" }} }}
  - {{ name: socks, every: 1m, http: {{ url: \"http://127.0.0.1:9/\", proxy: \"socks5://127.0.0.1:1080\" }} }}
  - {{ name: both, every: 1m, http: {{ url: \"http://127.0.0.1:9/\", proxy: \"http://127.0.0.1:3128\", proxy_from_env: true }} }}
"
    );
    std::fs::write(dirs.checks().join("checks.yaml"), yaml).unwrap();
    let (code, _, stderr) = lookout(
        &[
            "validate",
            "--checks",
            &path_str(&dirs.checks()),
            "--alerts",
            &path_str(&dirs.alerts()),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let file = path_str(&dirs.checks().join("checks.yaml"));
    for want in [
        format!("{file}:3:"),
        "`client_cert` needs `client_key` beside it".to_string(),
        format!(
            "client_key {other_file} does not belong to the certificate in client_cert {cert_file}"
        ),
        format!("client_cert {key_file} holds no certificate"),
        "`proxy` must be http://host:port".to_string(),
        "`proxy` and `proxy_from_env: true` exclude each other".to_string(),
        "5 error(s)".to_string(),
    ] {
        assert!(stderr.contains(&want), "missing {want:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains(":2:"),
        "the good check is valid:\n{stderr}"
    );
}

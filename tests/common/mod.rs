//! Shared test fixtures: real HTTP targets on 127.0.0.1, config directories
//! written from YAML, and the `lookout` binary as a child process.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod fake_aggregator;
pub mod fuzz;
pub mod hooks;
pub mod pki;
pub mod regional;
pub mod results;
pub mod smtp;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Bytes the `/big` route sends: far more than the probe's 1 MiB cap.
pub const BIG_BODY_BYTES: usize = 50 * 1024 * 1024;

#[derive(Clone, Default)]
pub struct TargetState {
    /// Status `/flip` answers with; tests change it to make a target fail.
    pub flip_status: Arc<AtomicU16>,
    /// Every User-Agent seen, in order.
    pub user_agents: Arc<Mutex<Vec<String>>>,
    /// Bytes `/big` has handed to the server so far.
    pub big_bytes_sent: Arc<std::sync::atomic::AtomicUsize>,
}

pub struct Target {
    pub addr: SocketAddr,
    pub state: TargetState,
}

impl Target {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_flip(&self, status: u16) {
        self.state.flip_status.store(status, Ordering::SeqCst);
    }
}

/// Starts the test target on 127.0.0.1 in the current tokio runtime.
pub async fn start_target() -> Target {
    let state = TargetState::default();
    state.flip_status.store(200, Ordering::SeqCst);
    let app = Router::new()
        .route("/ok", get(|| async { "ok: healthy" }))
        .route(
            "/500",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                "slow but fine"
            }),
        )
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/loop",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/loop")]) }),
        )
        .route("/big", get(big_body))
        .route("/stall", get(stalled_body))
        .route("/flip", get(flip))
        .route("/ua", get(record_user_agent))
        .with_state(state.clone());
    let addr = serve_on_loopback(app).await;
    Target { addr, state }
}

/// Serves `app` on 127.0.0.1 (a free port) in the current tokio runtime.
pub async fn serve_on_loopback(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// 50 MiB, produced lazily so the test can count how much was pulled.
async fn big_body(State(state): State<TargetState>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let sent = state.big_bytes_sent.clone();
    let stream = futures_util::stream::iter((0..BIG_BODY_BYTES / CHUNK).map(move |_| {
        sent.fetch_add(CHUNK, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(chunk.clone())
    }));
    Body::from_stream(stream).into_response()
}

/// Headers and a first chunk at once, then nothing, forever.
async fn stalled_body() -> Response {
    use futures_util::StreamExt;
    let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
        Bytes::from_static(b"partial"),
    )]);
    Body::from_stream(first.chain(futures_util::stream::pending())).into_response()
}

async fn flip(State(state): State<TargetState>) -> Response {
    let code = StatusCode::from_u16(state.flip_status.load(Ordering::SeqCst)).unwrap();
    (code, format!("flip {}", code.as_u16())).into_response()
}

async fn record_user_agent(State(state): State<TargetState>, headers: HeaderMap) -> &'static str {
    state.user_agents.lock().unwrap().push(user_agent(&headers));
    "seen"
}

/// The request's User-Agent, or "" without one.
pub fn user_agent(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A temporary `checks/` + `alerts/` pair.
pub struct ConfigDirs {
    pub root: tempfile::TempDir,
}

impl ConfigDirs {
    pub fn new(checks_yaml: &str) -> ConfigDirs {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("checks")).unwrap();
        std::fs::create_dir_all(root.path().join("alerts")).unwrap();
        std::fs::write(root.path().join("checks/checks.yaml"), checks_yaml).unwrap();
        ConfigDirs { root }
    }

    pub fn checks(&self) -> PathBuf {
        self.root.path().join("checks")
    }

    pub fn alerts(&self) -> PathBuf {
        self.root.path().join("alerts")
    }

    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }

    /// `--checks DIR --alerts DIR --data DIR`.
    pub fn flags(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--checks".into(),
            self.checks().into(),
            "--alerts".into(),
            self.alerts().into(),
            "--data".into(),
            self.data().into(),
        ]
    }

    /// Runs the first check once, as region `test` / probe `test-probe`.
    pub async fn run_first(&self) -> lookout::result::ProbeResult {
        let config = self.load();
        let identity = lookout::probe::ProbeIdentity {
            region: "test".into(),
            probe: "test-probe".into(),
        };
        let runner = lookout::probe::Runner::new(identity, config.secrets.clone());
        runner.run(&config.checks[0]).await
    }

    pub fn load(&self) -> lookout::config::Config {
        lookout::config::load(&self.checks(), &self.alerts()).unwrap_or_else(|e| {
            let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            panic!("test config is invalid:\n{}", lines.join("\n"))
        })
    }
}

pub fn lookout_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lookout")
}

/// `lookout serve` as a child process; stops it (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(dirs: &ConfigDirs) -> Server {
        Server::start_with_env(dirs, &[])
    }

    pub fn start_with_env(dirs: &ConfigDirs, env: &[(&str, &str)]) -> Server {
        let mut args: Vec<std::ffi::OsString> =
            vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        args.extend(dirs.flags());
        Server::spawn(&args, env, "listening on ")
    }

    /// Runs `lookout ARGS` and waits until it logs `ready` (for a server,
    /// `listening on `, whose address becomes `base`).
    pub fn spawn(args: &[std::ffi::OsString], env: &[(&str, &str)], ready: &str) -> Server {
        let mut child = Command::new(lookout_bin())
            .args(args)
            .env("RUST_LOG", "lookout=debug,info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lookout");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            let ready = ready.to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split(ready.as_str()).nth(1) {
                        let found = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = ready_tx.send(found);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let found = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "lookout {args:?} did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let base = if found.starts_with("http") {
            found
        } else {
            format!("http://{found}")
        };
        Server { child, base, log }
    }

    /// Kills it with SIGKILL, as a crash would.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops the server and returns everything it logged, for leak checks.
    pub fn terminate_and_log(self) -> String {
        let log = self.log.clone();
        let status = self.terminate();
        // The reader thread may still be draining the pipe; give it a moment.
        std::thread::sleep(Duration::from_millis(200));
        let text = log.lock().unwrap().join("\n");
        assert!(status.success(), "{text}");
        text
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not stop on SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP client for the tests' own requests to the aggregator.
pub fn client() -> reqwest::Client {
    lookout::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub async fn get_json(client: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Polls `probe` every 100ms until it returns `Some`, or panics after `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// One check as `GET /api/v1/checks` of `base` shows it (null if absent).
pub async fn check_state(base: &str, name: &str) -> serde_json::Value {
    let (_, body) = get_json(&client(), &format!("{base}/api/v1/checks")).await;
    body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name).cloned())
        .unwrap_or(serde_json::Value::Null)
}

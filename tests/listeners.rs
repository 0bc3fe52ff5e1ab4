//! Every listener bounded (issue 14, findings 2 and 3), against the real
//! `lookout` binary on loopback: idle and slowloris floods leave the checks
//! and `/health` alone and are closed by the cap and the header timeout; a
//! kept-alive connection is closed by the idle timeout; when every slot is
//! busy, newcomers get 503; unauthenticated uploads are refused before their
//! body; routes a mode does not serve are not there.
//!
//! Clients connect from several 127.0.x.y source addresses, so that tens of
//! thousands of connections never run short of ephemeral ports.

mod common;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{ConfigDirs, Server, get_json, start_target, wait_for};

/// How a client connection ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The server closed it (EOF) without a word.
    Closed,
    /// The server reset it.
    Reset,
    /// The server answered with this status (and then, maybe, closed).
    Answered(u16),
    /// Still open when the test stopped waiting.
    Open,
    /// Never connected.
    ConnectFailed,
}

fn server_addr(server: &Server) -> SocketAddr {
    server
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

fn pid(server: &Server) -> u32 {
    server.child.id()
}

/// Resident memory of `pid`, in KiB (VmRSS).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Open descriptors of `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    tokio::time::timeout(Duration::from_secs(10), socket.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// Reads until the server closes, answers, or `deadline`.
async fn wait_end<S: AsyncRead + Unpin>(stream: &mut S, deadline: tokio::time::Instant) -> End {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return status_of(&seen).map_or(End::Open, End::Answered),
            Ok(Ok(0)) => return status_of(&seen).map_or(End::Closed, End::Answered),
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                if let Some(status) = status_of(&seen) {
                    return End::Answered(status);
                }
                if seen.len() > 64 * 1024 {
                    return End::Answered(0);
                }
            }
            Ok(Err(_)) => return status_of(&seen).map_or(End::Reset, End::Answered),
        }
    }
}

/// The status of a response whose status line has arrived.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text.split_once("\r\n")?.0;
    line.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Sends `request` and reads one whole response (Content-Length or
/// chunked): (status, head, body). `None` if the connection ended first.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &str,
) -> Option<(u16, String, String)> {
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let complete = match length {
                Some(length) => body.len() >= length,
                None => body.ends_with("0\r\n\r\n"),
            };
            if complete {
                return Some((status_of(&seen)?, head.to_string(), body.to_string()));
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: lookout\r\n\r\n")
}

/// Three checks against loopback targets: two up, one down for good.
fn flood_checks(target: &common::Target) -> ConfigDirs {
    ConfigDirs::new(&format!(
        "checks:
  - name: up-http
    http: {{ url: \"{ok}\" }}
    every: 1s
    timeout: 2s
    alert: {{ failures: 2 }}
  - name: up-tcp
    tcp: {{ address: \"{addr}\" }}
    every: 1s
    timeout: 2s
    alert: {{ failures: 2 }}
  - name: down-http
    http: {{ url: \"{bad}\" }}
    every: 1s
    timeout: 2s
    alert: {{ failures: 2 }}
",
        ok = target.url("/ok"),
        bad = target.url("/500"),
        addr = target.addr,
    ))
}

/// Every check's status, by name.
async fn statuses(http: &reqwest::Client, base: &str) -> Vec<(String, String)> {
    let (code, body) = get_json(http, &format!("{base}/api/v1/checks")).await;
    assert_eq!(code, 200, "{body}");
    let mut all: Vec<(String, String)> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    all.sort();
    all
}

async fn event_count(http: &reqwest::Client, base: &str, check: &str) -> usize {
    let (code, body) = get_json(
        http,
        &format!("{base}/api/v1/checks/{check}/events?limit=1000"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["events"].as_array().unwrap().len()
}

fn expected_verdicts() -> Vec<(String, String)> {
    [("down-http", "down"), ("up-http", "up"), ("up-tcp", "up")]
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect()
}

/// `lookout ARGS` with its open-files limit (soft and hard) set to `nofile`,
/// so that it cannot raise it: what `Server::spawn` does otherwise.
fn spawn_with_nofile(args: &[OsString], nofile: u64) -> Server {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(common::lookout_bin());
    command
        .args(args)
        .env("RUST_LOG", "lookout=info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe, and nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                nofile,
                nofile,
            )
            .map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().expect("start lookout");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = ready_tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let Ok(base) = ready_rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        panic!("lookout did not start:\n{}", log.lock().unwrap().join("\n"));
    };
    Server { child, base, log }
}

/// Client sockets this test holds at once at most: under its own limit of
/// 20,000 (which it cannot raise), with room for everything else. The
/// server closes the flood's connections as fast as they come, so this is
/// never reached unless the server stops keeping up.
const CLIENT_SOCKETS_MAX: usize = 16_000;

const SLOWLORIS: usize = 1_000;
const IDLE: usize = 20_000;
/// Descriptors `serve` gets: far fewer than the idle flood, so that only
/// the cap can keep it serving.
const SERVE_NOFILE: u64 = 4_096;
const SERVE_MAX_CONNECTIONS: usize = 1_200;
const HEADER_TIMEOUT_S: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_floods_leave_every_verdict_and_health_alone() {
    let target = start_target().await;
    let dirs = flood_checks(&target);
    let mut args: Vec<OsString> = vec![
        "serve".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--max-connections".into(),
        SERVE_MAX_CONNECTIONS.to_string().into(),
        "--header-timeout".into(),
        format!("{HEADER_TIMEOUT_S}s").into(),
    ];
    args.extend(dirs.flags());
    let server = spawn_with_nofile(&args, SERVE_NOFILE);
    let base = server.base.clone();
    let addr = server_addr(&server);
    let serve_pid = pid(&server);
    let http = common::client();

    wait_for("every verdict", Duration::from_secs(30), || {
        let (http, base) = (http.clone(), base.clone());
        async move { (statuses(&http, &base).await == expected_verdicts()).then_some(()) }
    })
    .await;
    let mut events_before = Vec::new();
    for (name, _) in expected_verdicts() {
        events_before.push(event_count(&http, &base, &name).await);
    }
    let fds_before = fd_count(serve_pid);

    // /health on a fresh connection every 200ms, and serve's descriptors,
    // sampled, for as long as the floods last.
    let stop = Arc::new(AtomicBool::new(false));
    let health = {
        let stop = stop.clone();
        let url = format!("{base}/health");
        tokio::spawn(async move {
            let fresh = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let mut answers = Vec::new();
            // Bounded: the floods take well under two minutes.
            for _ in 0..600 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let answer = match fresh.get(&url).send().await {
                    Ok(response) if response.status() == 200 => "200".to_string(),
                    Ok(response) => format!(
                        "{} {}",
                        response.status().as_u16(),
                        response.text().await.unwrap_or_default()
                    ),
                    Err(error) => format!("error: {error}"),
                };
                answers.push(answer);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answers
        })
    };
    let max_fds = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max_fds) = (stop.clone(), max_fds.clone());
        tokio::spawn(async move {
            for _ in 0..6_000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                max_fds.fetch_max(fd_count(serve_pid), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Slowloris: a request head, one header line a second, never the end.
    let header_timeout = Duration::from_secs(HEADER_TIMEOUT_S);
    let mut slow = Vec::new();
    for i in 0..SLOWLORIS {
        let source = Ipv4Addr::new(127, 0, 1, 1 + (i / 250) as u8);
        slow.push(tokio::spawn(async move {
            // From before the connection: the server's timer starts later,
            // so a close at the header timeout is never measured short.
            let started = Instant::now();
            let Ok(mut stream) = connect_from(source, addr).await else {
                return (End::ConnectFailed, Duration::ZERO);
            };
            // Generous: under load, accepting can lag behind connecting.
            let deadline = tokio::time::Instant::now() + header_timeout * 6;
            if stream
                .write_all(b"GET /health HTTP/1.1\r\nhost: lookout\r\n")
                .await
                .is_err()
            {
                return (End::Reset, started.elapsed());
            }
            let mut ticks = tokio::time::interval(Duration::from_secs(1));
            ticks.tick().await;
            let mut buf = [0u8; 256];
            for line in 0..(HEADER_TIMEOUT_S * 6) {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        let end = match read {
                            Ok(0) => End::Closed,
                            Ok(_) => End::Answered(status_of(&buf).unwrap_or(0)),
                            Err(_) => End::Reset,
                        };
                        return (end, started.elapsed());
                    }
                    _ = ticks.tick() => {
                        let header = format!("x-slow-{line}: 1\r\n");
                        if stream.write_all(header.as_bytes()).await.is_err() {
                            return (End::Reset, started.elapsed());
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            (End::Open, started.elapsed())
        }));
    }
    let mut slow_ends = Vec::new();
    for task in slow {
        slow_ends.push(task.await.unwrap());
    }
    let slow_closed: Vec<Duration> = slow_ends
        .iter()
        .filter(|(end, _)| matches!(end, End::Closed | End::Reset))
        .map(|(_, took)| *took)
        .collect();
    let slow_min = slow_closed.iter().min().copied().unwrap_or_default();
    let slow_max = slow_closed.iter().max().copied().unwrap_or_default();
    let fds_slowloris = max_fds.load(Ordering::SeqCst);

    // The idle flood: 20,000 connections that never send a byte, opened
    // 500 every 100ms, each watched until the server closes it.
    let sockets = Arc::new(tokio::sync::Semaphore::new(CLIENT_SOCKETS_MAX));
    let open_now = Arc::new(AtomicUsize::new(0));
    let open_max = Arc::new(AtomicUsize::new(0));
    let mut idle = Vec::new();
    for i in 0..IDLE {
        let source = Ipv4Addr::new(127, 0, 2, 1 + (i / 1_000) as u8);
        let socket = sockets.clone().acquire_owned().await.unwrap();
        let (open_now, open_max) = (open_now.clone(), open_max.clone());
        idle.push(tokio::spawn(async move {
            let _socket = socket;
            let started = Instant::now();
            let Ok(mut stream) = connect_from(source, addr).await else {
                return (End::ConnectFailed, Duration::ZERO);
            };
            open_max.fetch_max(
                open_now.fetch_add(1, Ordering::SeqCst) + 1,
                Ordering::SeqCst,
            );
            let deadline = tokio::time::Instant::now() + header_timeout * 6;
            let end = wait_end(&mut stream, deadline).await;
            open_now.fetch_sub(1, Ordering::SeqCst);
            (end, started.elapsed())
        }));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let mut idle_ends = Vec::new();
    for task in idle {
        idle_ends.push(task.await.unwrap());
    }
    // A few more seconds of checks after the floods, then the verdict.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let answers = health.await.unwrap();
    sampler.await.unwrap();

    let count = |ends: &[(End, Duration)], want: fn(&End) -> bool| {
        ends.iter().filter(|(e, _)| want(e)).count()
    };
    let idle_closed = count(&idle_ends, |e| matches!(e, End::Closed | End::Reset));
    let idle_refused = count(&idle_ends, |e| *e == End::Answered(503));
    let idle_open = count(&idle_ends, |e| *e == End::Open);
    let idle_failed = count(&idle_ends, |e| *e == End::ConnectFailed);
    let evicted_early = idle_ends
        .iter()
        .filter(|(e, took)| matches!(e, End::Closed | End::Reset) && *took < header_timeout)
        .count();
    let max_fds = max_fds.load(Ordering::SeqCst);
    let open_max = open_max.load(Ordering::SeqCst);
    println!(
        "slowloris: {} of {SLOWLORIS} closed by the server, {:.2}s..{:.2}s after connecting \
         (header timeout {HEADER_TIMEOUT_S}s); idle: {idle_closed} closed ({evicted_early} \
         before the header timeout: evicted), {idle_refused} answered 503, {idle_open} still \
         open, {idle_failed} never connected, at most {open_max} open at once; serve's descriptors: {fds_before} before, at most \
         {fds_slowloris} during slowloris, {max_fds} during the floods (limit {SERVE_NOFILE}, \
         --max-connections {SERVE_MAX_CONNECTIONS}); /health: {} answers",
        slow_closed.len(),
        slow_min.as_secs_f64(),
        slow_max.as_secs_f64(),
        answers.len(),
    );

    let log = server.log_text();
    assert_eq!(
        slow_closed.len(),
        SLOWLORIS,
        "every slowloris connection is closed: {:?}",
        slow_ends
            .iter()
            .filter(|(e, _)| !matches!(e, End::Closed | End::Reset))
            .take(5)
            .collect::<Vec<_>>()
    );
    // Closed by the header timeout: not before it, and not much after.
    assert!(
        slow_min >= header_timeout - Duration::from_millis(500),
        "closed after {slow_min:?}, before the header timeout"
    );
    assert!(
        slow_max < header_timeout * 5,
        "closed only after {slow_max:?}"
    );
    assert_eq!(idle_failed, 0, "every idle connection connected");
    assert_eq!(
        idle_open, 0,
        "every idle connection was closed by the server"
    );
    assert_eq!(idle_closed + idle_refused, IDLE);
    assert!(
        evicted_early > 0,
        "the cap made room by closing idle connections"
    );
    assert!(
        max_fds
            <= fds_before
                + SERVE_MAX_CONNECTIONS
                + lookout::limits::HTTP_REFUSALS_MAX
                + lookout::limits::HTTP_EVICTIONS_PENDING_MAX
                + 16,
        "serve held {max_fds} descriptors; the cap is {SERVE_MAX_CONNECTIONS}"
    );
    assert!(answers.len() >= 20, "{answers:?}");
    let bad: Vec<&String> = answers.iter().filter(|a| *a != "200").collect();
    assert!(bad.is_empty(), "/health did not answer 200: {bad:?}\n{log}");
    assert_eq!(
        statuses(&http, &base).await,
        expected_verdicts(),
        "every check kept its verdict"
    );
    for ((name, _), before) in expected_verdicts().iter().zip(events_before) {
        assert_eq!(
            event_count(&http, &base, name).await,
            before,
            "{name} changed state during the floods"
        );
    }
    assert!(!log.contains("Too many open files"), "{log}");
}

/// `lookout serve` with one check and `flags`.
fn serve_with(target: &common::Target, flags: &[&str]) -> (ConfigDirs, Server) {
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: ok\n    http: {{ url: \"{}\" }}\n    every: 1s\n",
        target.url("/ok")
    ));
    let mut args: Vec<OsString> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
    args.extend(flags.iter().map(OsString::from));
    args.extend(dirs.flags());
    let server = Server::spawn(&args, &[], "listening on ");
    (dirs, server)
}

/// Sends a request head a line every 300ms for `for_how_long`; how the
/// connection ended (`Open`: it outlived that) and when.
async fn trickle(
    stream: &mut TcpStream,
    started: Instant,
    for_how_long: Duration,
) -> (End, Duration) {
    if stream.write_all(b"GET /health HTTP/1.1\r\n").await.is_err() {
        return (End::Reset, started.elapsed());
    }
    let mut line = 0;
    while started.elapsed() < for_how_long {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        let end = wait_end(stream, deadline).await;
        if end != End::Open {
            return (end, started.elapsed());
        }
        line += 1;
        if stream
            .write_all(format!("x-line-{line}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            return (End::Reset, started.elapsed());
        }
    }
    (End::Open, started.elapsed())
}

fn within(took: Duration, from_ms: u64, to_ms: u64) -> bool {
    took >= Duration::from_millis(from_ms) && took < Duration::from_millis(to_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_idle_timeouts_close_what_they_should_and_keep_alive_works() {
    let target = start_target().await;
    let local = Ipv4Addr::LOCALHOST;
    let soon = |s: u64| tokio::time::Instant::now() + Duration::from_secs(s);

    // Header timeout 1s (idle 30s): more descriptors asked for than the
    // limit allows, so capped, and said so.
    let (_dirs, server) = serve_with(
        &target,
        &["--header-timeout", "1s", "--max-connections", "100000000"],
    );
    let addr = server_addr(&server);
    // Silent from the start: closed by the header timeout.
    let started = Instant::now();
    let mut silent = connect_from(local, addr).await.unwrap();
    assert_eq!(wait_end(&mut silent, soon(10)).await, End::Closed);
    let silent_took = started.elapsed();
    assert!(within(silent_took, 900, 2_900), "{silent_took:?}");
    // A head trickling in: bytes keep moving, yet it is not whole in time.
    let started = Instant::now();
    let mut slow = connect_from(local, addr).await.unwrap();
    let (end, slow_took) = trickle(&mut slow, started, Duration::from_secs(10)).await;
    assert!(matches!(end, End::Closed | End::Reset), "{end:?}");
    assert!(within(slow_took, 900, 2_900), "{slow_took:?}");
    // Kept alive: the next request within the header timeout is served on
    // the same connection; then the wait for another head is timed too.
    let mut kept = connect_from(local, addr).await.unwrap();
    let (status, _, _) = exchange(&mut kept, &get("/health")).await.unwrap();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, head, _) = exchange(&mut kept, &get("/api/v1/checks"))
        .await
        .expect("the kept-alive connection still serves");
    assert_eq!(status, 200, "{head}");
    let waited_from = Instant::now();
    assert_eq!(wait_end(&mut kept, soon(15)).await, End::Closed);
    let kept_took = waited_from.elapsed();
    // Measured from when the response arrived, a little after the server
    // started its timer.
    assert!(within(kept_took, 500, 2_900), "{kept_took:?}");
    let log = server.log_text();
    assert!(
        log.contains("leaves room for") && log.contains("fewer than asked"),
        "{log}"
    );
    drop(server);

    // Idle timeout 1s, header timeout 10s: a kept-alive connection with
    // nothing moving is closed after the idle timeout; one whose head is
    // still coming in (bytes moving) is not, and is served once it ends.
    let (_dirs, server) = serve_with(
        &target,
        &["--header-timeout", "10s", "--idle-timeout", "1s"],
    );
    let addr = server_addr(&server);
    let mut kept = connect_from(local, addr).await.unwrap();
    let (status, _, _) = exchange(&mut kept, &get("/health")).await.unwrap();
    assert_eq!(status, 200);
    let waited_from = Instant::now();
    assert_eq!(wait_end(&mut kept, soon(15)).await, End::Closed);
    let idle_took = waited_from.elapsed();
    assert!(within(idle_took, 500, 2_900), "{idle_took:?}");
    let started = Instant::now();
    let mut slow = connect_from(local, addr).await.unwrap();
    let (end, _) = trickle(&mut slow, started, Duration::from_secs(3)).await;
    assert_eq!(end, End::Open, "bytes were moving: not idle");
    let (status, _, _) = exchange(&mut slow, "\r\n").await.unwrap();
    assert_eq!(status, 200, "the trickled request is served");
    println!(
        "closed after: silent {silent_took:?}, trickling head {slow_took:?}, kept-alive wait \
         {kept_took:?} (header timeout 1s); kept-alive idle {idle_took:?} (idle timeout 1s)"
    );
}

fn token(region: &str) -> String {
    format!("probe-token-for-{region}-0123456789")
}

/// `lookout aggregator` with probes.yaml (eu-west, us-east) and `extra` flags.
fn start_aggregator(dirs: &ConfigDirs, extra: &[&str]) -> Server {
    let probes = dirs.root.path().join("probes.yaml");
    std::fs::write(
        &probes,
        format!(
            "probes:\n  eu-west: {{ token: \"{}\" }}\n  us-east: {{ token: \"{}\" }}\n",
            token("eu-west"),
            token("us-east")
        ),
    )
    .unwrap();
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--probes".into(),
        probes.into(),
    ];
    args.extend(dirs.flags());
    args.extend(extra.iter().map(OsString::from));
    Server::spawn(&args, &[], "listening on ")
}

fn remote_checks() -> ConfigDirs {
    ConfigDirs::new(
        "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1s\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_full_an_idle_connection_makes_room_and_when_all_are_busy_newcomers_get_503() {
    let dirs = remote_checks();
    let server = start_aggregator(&dirs, &["--max-connections", "3"]);
    let addr = server_addr(&server);
    let local = Ipv4Addr::LOCALHOST;
    let long_poll = format!(
        "GET /api/v1/probe/run-now?region=eu-west&wait=8 HTTP/1.1\r\nhost: lookout\r\n\
         authorization: Bearer {}\r\n\r\n",
        token("eu-west")
    );
    let busy = || {
        let long_poll = long_poll.clone();
        tokio::spawn(async move {
            let mut stream = connect_from(local, addr).await.unwrap();
            exchange(&mut stream, &long_poll).await.map(|(s, _, _)| s)
        })
    };
    // Two slots busy (long-polls), one idle.
    let first = busy();
    let second = busy();
    let mut idle = connect_from(local, addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Full: the idle connection makes room for a request.
    let mut newcomer = connect_from(local, addr).await.unwrap();
    let (status, _, _) = exchange(
        &mut newcomer,
        "GET /health HTTP/1.1\r\nhost: lookout\r\nconnection: close\r\n\r\n",
    )
    .await
    .expect("served in the idle connection's place");
    assert_eq!(status, 200);
    let end = wait_end(
        &mut idle,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert_eq!(end, End::Closed, "the idle connection was closed");
    drop(newcomer);

    // Fill the third slot with a long-poll too: now every slot is busy.
    let third = busy();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut refused = connect_from(local, addr).await.unwrap();
    let started = Instant::now();
    let end = wait_end(
        &mut refused,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert_eq!(end, End::Answered(503), "refused at once, not queued");
    let end = wait_end(
        &mut refused,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(end, End::Closed | End::Reset),
        "{end:?}: then closed"
    );
    let refused_after = started.elapsed();

    // The long-polls were not disturbed; once they end, all is served again.
    for task in [first, second, third] {
        assert_eq!(task.await.unwrap(), Some(200));
    }
    let mut after = connect_from(local, addr).await.unwrap();
    let (status, _, _) = exchange(&mut after, &get("/health")).await.unwrap();
    assert_eq!(status, 200);

    // SIGTERM: the idle connection is closed at once, the request in flight
    // is answered, then the process exits.
    let in_flight = busy();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopping = Instant::now();
    let status = tokio::task::spawn_blocking(move || server.terminate());
    let end = wait_end(
        &mut after,
        tokio::time::Instant::now() + Duration::from_secs(5),
    )
    .await;
    let idle_closed_after = stopping.elapsed();
    assert_eq!(
        end,
        End::Closed,
        "the idle connection is closed at shutdown"
    );
    assert!(idle_closed_after < Duration::from_secs(5));
    assert_eq!(
        in_flight.await.unwrap(),
        Some(200),
        "the long-poll was answered"
    );
    assert!(status.await.unwrap().success());
    println!(
        "refused with 503 and closed {refused_after:?} after connecting; at SIGTERM the idle \
         connection closed after {idle_closed_after:?}, the process exited after {:?}",
        stopping.elapsed()
    );
}

/// 15 MiB: just under RESULTS_BODY_BYTES_MAX, so only the token refuses it.
const UPLOAD_BYTES: usize = 15 * 1024 * 1024;
const UPLOADS: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_uploads_are_refused_before_their_body_and_cost_no_memory() {
    let dirs = remote_checks();
    let server = start_aggregator(&dirs, &[]);
    let addr = server_addr(&server);
    let aggregator_pid = pid(&server);
    // Let it settle (first queries, caches) before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(aggregator_pid);

    let mut uploads = Vec::new();
    for i in 0..UPLOADS {
        let auth = if i % 2 == 0 {
            String::new()
        } else {
            "authorization: Bearer wrong-token-wrong-token-0123\r\n".to_string()
        };
        uploads.push(tokio::spawn(async move {
            let source = Ipv4Addr::new(127, 0, 3, 1);
            let mut stream = connect_from(source, addr).await.unwrap();
            let head = format!(
                "POST /api/v1/results HTTP/1.1\r\nhost: lookout\r\ncontent-type: application/json\r\n\
                 {auth}content-length: {UPLOAD_BYTES}\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            // The head only: the answer must come without the body.
            let end = wait_end(&mut stream, tokio::time::Instant::now() + Duration::from_secs(10))
                .await;
            (end, stream)
        }));
    }
    let mut held = Vec::new();
    for upload in uploads {
        let (end, stream) = upload.await.unwrap();
        assert_eq!(end, End::Answered(401), "refused before its body");
        held.push(stream);
    }
    let rss_after = rss_kib(aggregator_pid);
    println!(
        "aggregator RSS {} KiB before, {} KiB after {UPLOADS} unauthenticated {} MiB uploads",
        rss_before,
        rss_after,
        UPLOAD_BYTES / 1024 / 1024
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    drop(held);

    // A client that sends its body anyway (a probe with a wrong token) sees
    // the 401 too, not a reset: the refused body is drained, not kept.
    let refused = common::client()
        .post(format!("{}/api/v1/results", server.base))
        .bearer_auth("wrong-token-wrong-token-0123")
        .body(vec![b' '; UPLOAD_BYTES])
        .send()
        .await
        .expect("an answer, not a reset");
    assert_eq!(refused.status(), 401);

    // With the token, a declared length over the limit is refused before
    // the body too; one that grows past it, as soon as it does.
    let mut stream = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    let head = format!(
        "POST /api/v1/results HTTP/1.1\r\nhost: lookout\r\ncontent-type: application/json\r\n\
         authorization: Bearer {}\r\ncontent-length: {}\r\n\r\n",
        token("eu-west"),
        lookout::limits::RESULTS_BODY_BYTES_MAX + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let end = wait_end(
        &mut stream,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(end, End::Answered(413));

    let mut stream = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    let head = format!(
        "POST /api/v1/results HTTP/1.1\r\nhost: lookout\r\ncontent-type: application/json\r\n\
         authorization: Bearer {}\r\ntransfer-encoding: chunked\r\n\r\n",
        token("eu-west"),
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 1024 * 1024, " ".repeat(1024 * 1024));
    let mut sent = 0;
    let mut answer = End::Open;
    // Bounded: a few chunks past the limit at most.
    for _ in 0..(lookout::limits::RESULTS_BODY_BYTES_MAX / (1024 * 1024) + 4) {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        sent += 1;
        answer = wait_end(
            &mut stream,
            tokio::time::Instant::now() + Duration::from_millis(50),
        )
        .await;
        if answer != End::Open {
            break;
        }
    }
    if answer == End::Open {
        answer = wait_end(
            &mut stream,
            tokio::time::Instant::now() + Duration::from_secs(5),
        )
        .await;
    }
    assert_eq!(answer, End::Answered(413), "after {sent} MiB");
    assert!(sent <= lookout::limits::RESULTS_BODY_BYTES_MAX / (1024 * 1024) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_has_no_probe_routes_and_checks_the_admin_token_before_the_body() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: ok\n    http: {{ url: \"{}\" }}\n    every: 1s\n",
        target.url("/ok")
    ));
    let server = Server::start_with_env(&dirs, &[("LOOKOUT_ADMIN_TOKEN", "admin-token-1234")]);
    let addr = server_addr(&server);
    let local = Ipv4Addr::LOCALHOST;

    // Not there at all: a 404 before any body, whatever the token.
    let upload = format!(
        "POST /api/v1/results HTTP/1.1\r\nhost: lookout\r\ncontent-type: application/json\r\n\
         content-length: {UPLOAD_BYTES}\r\n\r\n"
    );
    let mut stream = connect_from(local, addr).await.unwrap();
    stream.write_all(upload.as_bytes()).await.unwrap();
    let end = wait_end(
        &mut stream,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(end, End::Answered(404));
    for path in [
        "/api/v1/probe/checks?region=local",
        "/api/v1/probe/run-now?region=local",
    ] {
        let mut stream = connect_from(local, addr).await.unwrap();
        let (status, _, _) = exchange(&mut stream, &get(path)).await.unwrap();
        assert_eq!(status, 404, "{path}");
    }

    // Silences: the admin token first; a body only from its holder, bounded.
    let silence = |auth: &str, length: usize| {
        format!(
            "POST /api/v1/silences HTTP/1.1\r\nhost: lookout\r\ncontent-type: application/json\r\n\
             {auth}content-length: {length}\r\n\r\n"
        )
    };
    let mut stream = connect_from(local, addr).await.unwrap();
    stream
        .write_all(silence("", 900 * 1024).as_bytes())
        .await
        .unwrap();
    let end = wait_end(
        &mut stream,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(end, End::Answered(401), "refused before its body");
    let mut stream = connect_from(local, addr).await.unwrap();
    let admin = "authorization: Bearer admin-token-1234\r\n";
    let too_big = lookout::limits::API_BODY_BYTES_MAX + 1;
    stream
        .write_all(silence(admin, too_big).as_bytes())
        .await
        .unwrap();
    let end = wait_end(
        &mut stream,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert_eq!(end, End::Answered(413), "refused before its body");
    let body = r#"{"check":"ok","reason":"deploy","author":"ops","duration":"1h"}"#;
    let mut stream = connect_from(local, addr).await.unwrap();
    let (status, _, answer) = exchange(
        &mut stream,
        &format!("{}{body}", silence(admin, body.len())),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{answer}");
    let mut stream = connect_from(local, addr).await.unwrap();
    let (status, _, answer) = exchange(&mut stream, &format!("{}{{", silence(admin, 1)))
        .await
        .unwrap();
    assert_eq!(status, 400, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .starts_with("not a silence"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_bounded_the_same_and_speaks_http1_whatever_the_client_offers() {
    lookout::install_crypto_provider();
    let dirs = remote_checks();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = dirs.root.path();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let (cert_path, key_path) = (
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    );
    let server = start_aggregator(
        &dirs,
        &[
            "--tls-cert",
            &cert_path,
            "--tls-key",
            &key_path,
            "--header-timeout",
            "1s",
        ],
    );
    let addr: SocketAddr = server.base.trim_start_matches("https://").parse().unwrap();

    // A client offering h2 first still gets HTTP/1.1, and is served.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tcp = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, _, _) = exchange(&mut tls, &get("/health")).await.unwrap();
    assert_eq!(status, 200);

    // A connection that never starts its handshake is closed by the header
    // timeout.
    let started = Instant::now();
    let mut silent = connect_from(Ipv4Addr::LOCALHOST, addr).await.unwrap();
    let end = wait_end(
        &mut silent,
        tokio::time::Instant::now() + Duration::from_secs(10),
    )
    .await;
    let took = started.elapsed();
    assert!(matches!(end, End::Closed | End::Reset), "{end:?}");
    assert!(within(took, 900, 2_900), "{took:?}");
}

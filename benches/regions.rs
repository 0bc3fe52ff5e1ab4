//! Regions, measured with real processes on loopback (release build):
//!
//! `cargo bench --bench regions -- outage` — outage-to-alert time. One
//! `lookout aggregator` and three `lookout probe` processes; `OUTAGES`
//! checks on an axum target on 127.0.0.1, each `every: 5s`, `timeout: 2s`,
//! `failures: 2`, `quorum: 2`; alerts to an axum webhook receiver. Round `n`
//! waits a random 1-5 s (so the outage starts at a random phase of the
//! schedule), makes check `n`'s endpoint answer 500 to every region, and
//! takes the time from that switch to the `down` webhook's arrival; then
//! restores it and times the `up` webhook the same way. One check per round,
//! because a check going down and up every few seconds is flapping, and
//! Lookout rightly pauses its alerts. `OUTAGES` rounds with fast
//! confirmation (the default), then the same with `--fast-confirmation
//! false`, for comparison. Prints p50 and max of each.
//!
//! `cargo bench --bench regions -- ingest` — what one aggregator ingests.
//! `INGEST_CLIENTS` concurrent clients POST batches of `INGEST_BATCH`
//! results (a valid probe token each, 100 checks spread over 3 regions) to
//! `POST /api/v1/results` until `INGEST_RESULTS` are sent or
//! `INGEST_WALL_MAX` passes; each result is a run of its own (its own
//! check, region and millisecond), and only what the aggregator reports
//! accepted counts. Prints results/s (wall) and the aggregator process's
//! CPU time (utime + stime from /proc) per 1,000 results.
//!
//! `cargo bench --bench regions -- replicas` — the same load into one, two
//! and three `lookout aggregator` replicas on one PostgreSQL database (a
//! throwaway server, as the tests start one; `LOOKOUT_TEST_POSTGRES` names
//! one to use instead), the clients spread over the replicas, and into one
//! on SQLite for comparison. CPU is the replicas' own (PostgreSQL's is not
//! counted), summed.
//!
//! `cargo bench --bench regions -- leader` — outage-to-alert while the
//! leader dies: two replicas on one PostgreSQL database, three probes that
//! know both; each round makes a check fail and SIGKILLs the replica that
//! holds the leader's lease at the same moment, times the `down` (and then
//! the `up`) webhook, and starts the killed replica again. Prints p50 and
//! max.
//!
//! With no argument, `ingest` and `outage` run.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};

#[allow(dead_code)]
#[path = "../src/storage/postgres/test_server.rs"]
mod test_server;

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
/// Outages per mode.
const OUTAGES: usize = 12;
/// The longest a single alert may take before the round is counted as lost.
const ALERT_WAIT_MAX: Duration = Duration::from_secs(30);

const INGEST_CLIENTS: usize = 4;
const INGEST_BATCH: usize = 500;
const INGEST_RESULTS: usize = 200_000;
const INGEST_WALL_MAX: Duration = Duration::from_secs(120);
const INGEST_CHECKS: usize = 100;

fn token(region: &str) -> String {
    format!("bench-probe-token-{region}-0123456789")
}

/// A child `lookout` process, killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[String], env: &[(&str, String)], ready: &str) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn,lookout=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lookout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(ready.as_str()).nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
        }
    });
    let found = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("lookout did not start");
    (Proc(child), found)
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

/// Writes checks/, alerts/ and probes.yaml; returns the root.
fn write_config(checks: &str, hook_url: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("checks")).expect("mkdir");
    std::fs::create_dir_all(root.path().join("alerts")).expect("mkdir");
    std::fs::write(root.path().join("checks/checks.yaml"), checks).expect("write");
    if let Some(hook) = hook_url {
        std::fs::write(
            root.path().join("alerts/alerts.yaml"),
            format!("channels:\n  hook:\n    webhook: {{ url: \"{hook}/hook\" }}\ndefaults:\n  channels: [hook]\n"),
        )
        .expect("write");
    }
    let probes: String = REGIONS
        .iter()
        .map(|r| format!("  {r}: {{ token: \"{}\" }}\n", token(r)))
        .collect();
    std::fs::write(
        root.path().join("probes.yaml"),
        format!("probes:\n{probes}"),
    )
    .expect("write");
    root
}

fn aggregator_args(root: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let p = |s: &str| root.join(s).display().to_string();
    let mut args: Vec<String> = [
        "aggregator",
        "--listen",
        "127.0.0.1:0",
        "--checks",
        &p("checks"),
        "--alerts",
        &p("alerts"),
        "--data",
        &p("data"),
        "--probes",
        &p("probes.yaml"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every webhook: when it arrived, its check and its event.
#[derive(Clone, Default)]
struct Hooks(Arc<Mutex<Vec<(Instant, String, String)>>>);

async fn hook(State(hooks): State<Hooks>, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let value = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let field = |name: &str| value[name].as_str().unwrap_or_default().to_string();
    hooks
        .0
        .lock()
        .expect("lock")
        .push((at, field("check"), field("event")));
    StatusCode::OK
}

async fn wait_event(hooks: &Hooks, check: &str, kind: &str, after: Instant) -> Option<Duration> {
    let deadline = Instant::now() + ALERT_WAIT_MAX;
    while Instant::now() < deadline {
        let found = hooks
            .0
            .lock()
            .expect("lock")
            .iter()
            .find(|(at, c, e)| c == check && e == kind && *at >= after)
            .map(|(at, _, _)| at.duration_since(after));
        if found.is_some() {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// A target whose `/health/{n}` fails for the check number `down` holds
/// (`usize::MAX`: none), and a webhook receiver: (down, target URL,
/// hooks, hook URL).
async fn outage_target_and_hooks() -> (Arc<AtomicUsize>, String, Hooks, String) {
    let down = Arc::new(AtomicUsize::new(usize::MAX));
    let target = {
        let down = down.clone();
        serve(Router::new().route(
            "/health/{n}",
            get(move |Path(n): Path<usize>| {
                let down = down.clone();
                async move {
                    if down.load(Ordering::SeqCst) == n {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        ))
        .await
    };
    let hooks = Hooks::default();
    let hook_url = serve(
        Router::new()
            .route("/hook", post(hook))
            .with_state(hooks.clone()),
    )
    .await;
    (down, target, hooks, hook_url)
}

async fn outage_mode(fast: bool) -> Result<(), String> {
    let (down, target, hooks, hook_url) = outage_target_and_hooks().await;
    let checks: String = (0..OUTAGES)
        .map(|n| {
            format!(
                "  - name: api-{n}\n    http: {{ url: \"{target}/health/{n}\" }}\n    every: 5s\n    timeout: 2s\n    alert: {{ failures: 2, quorum: 2 }}\n"
            )
        })
        .collect();
    let root = write_config(&format!("checks:\n{checks}"), Some(&hook_url));
    let fast_flag = if fast { "true" } else { "false" };
    let (_aggregator, addr) = spawn(
        &aggregator_args(root.path(), &["--fast-confirmation", fast_flag]),
        &[],
        "listening on ",
    );
    let mut probes = Vec::new();
    for region in REGIONS {
        let spool = root
            .path()
            .join(format!("spool-{region}"))
            .display()
            .to_string();
        let args: Vec<String> = [
            "probe",
            "--region",
            region,
            "--aggregator",
            &format!("{addr}/"),
            "--spool",
            &spool,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        probes.push(
            spawn(
                &args,
                &[("LOOKOUT_PROBE_TOKEN", token(region))],
                "probe started",
            )
            .0,
        );
    }
    // Let every region report a few results (the checks must be up).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut to_down = Vec::new();
    let mut to_up = Vec::new();
    let mut lost = 0;
    for n in 0..OUTAGES {
        let check = format!("api-{n}");
        tokio::time::sleep(Duration::from_millis(1000 + fastrand::u64(0..4000))).await;
        let start = Instant::now();
        down.store(n, Ordering::SeqCst);
        match wait_event(&hooks, &check, "down", start).await {
            Some(took) => to_down.push(took),
            None => lost += 1,
        }
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..2000))).await;
        let start = Instant::now();
        down.store(usize::MAX, Ordering::SeqCst);
        match wait_event(&hooks, &check, "up", start).await {
            Some(took) => to_up.push(took),
            None => lost += 1,
        }
    }
    to_down.sort();
    to_up.sort();
    let show = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    println!(
        "fast confirmation {fast_flag:>5}: outage -> down alert over {} outages: p50 {} max {} (min {}); recovery -> up alert: p50 {} max {}",
        to_down.len(),
        show(percentile(&to_down, 50.0)),
        show(percentile(&to_down, 100.0)),
        show(to_down.first().copied().unwrap_or_default()),
        show(percentile(&to_up, 50.0)),
        show(percentile(&to_up, 100.0)),
    );
    drop(probes);
    if lost > 0 {
        return Err(format!(
            "{lost} alerts did not arrive within {ALERT_WAIT_MAX:?}"
        ));
    }
    Ok(())
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0);
    utime + stime
}

async fn ingest() -> Result<(), String> {
    let root = write_config(&ingest_checks(), None);
    let (aggregator, addr) = spawn(&aggregator_args(root.path(), &[]), &[], "listening on ");
    let figures = ingest_into(&[(aggregator.0.id(), addr)]).await?;
    println!("ingest: {figures}");
    Ok(())
}

fn ingest_checks() -> String {
    let checks: String = (0..INGEST_CHECKS)
        .map(|i| {
            format!(
                "  - name: c{i:03}\n    http: {{ url: \"http://127.0.0.1:9/\" }}\n    every: 1m\n"
            )
        })
        .collect();
    format!("checks:\n{checks}")
}

/// Rounds of the leader benchmark.
const LEADER_ROUNDS: usize = 6;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Who holds the leader's lease, as `base` lists the replicas.
async fn leader_of(client: &reqwest::Client, base: &str) -> Option<String> {
    let text = client
        .get(format!("{base}/api/v1/aggregators"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let body: serde_json::Value = serde_json::from_str(&text).ok()?;
    body["aggregators"]
        .as_array()?
        .iter()
        .find(|a| a["leader"] == true)
        .and_then(|a| a["id"].as_str().map(str::to_string))
}

async fn leader_killed() -> Result<(), String> {
    let (down, target, hooks, hook_url) = outage_target_and_hooks().await;
    let checks: String = (0..LEADER_ROUNDS)
        .map(|n| {
            format!(
                "  - name: api-{n}\n    http: {{ url: \"{target}/health/{n}\" }}\n    every: 5s\n    timeout: 2s\n    alert: {{ failures: 2, quorum: 2 }}\n"
            )
        })
        .collect();
    let root = write_config(&format!("checks:\n{checks}"), Some(&hook_url));
    let database = test_server::fresh().await;
    let ports = [free_port(), free_port()];
    let start = |n: usize| {
        let mut args = aggregator_args(root.path(), &["--replica-id", &format!("r{n}")]);
        if let Some(at) = args.iter().position(|a| a == "--data") {
            args.drain(at..at + 2);
        }
        if let Some(at) = args.iter().position(|a| a == "127.0.0.1:0") {
            args[at] = format!("127.0.0.1:{}", ports[n]);
        }
        spawn(
            &args,
            &[("LOOKOUT_DATABASE_URL", database.url.clone())],
            "listening on ",
        )
        .0
    };
    let mut replicas: Vec<Option<Proc>> = vec![Some(start(0)), Some(start(1))];
    let urls = format!(
        "http://127.0.0.1:{}/,http://127.0.0.1:{}/",
        ports[0], ports[1]
    );
    let mut probes = Vec::new();
    for region in REGIONS {
        let spool = root
            .path()
            .join(format!("spool-{region}"))
            .display()
            .to_string();
        let args: Vec<String> = [
            "probe",
            "--region",
            region,
            "--aggregator",
            &urls,
            "--spool",
            &spool,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        probes.push(
            spawn(
                &args,
                &[("LOOKOUT_PROBE_TOKEN", token(region))],
                "probe started",
            )
            .0,
        );
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let client = reqwest::Client::new();
    let (mut to_down, mut to_up, mut lost) = (Vec::new(), Vec::new(), 0);
    for n in 0..LEADER_ROUNDS {
        let check = format!("api-{n}");
        tokio::time::sleep(Duration::from_millis(1000 + fastrand::u64(0..4000))).await;
        let mut leader = None;
        for port in ports {
            if let Some(id) = leader_of(&client, &format!("http://127.0.0.1:{port}")).await {
                leader = id.strip_prefix('r').and_then(|i| i.parse::<usize>().ok());
                break;
            }
        }
        let Some(leader) = leader else {
            return Err("no replica leads".into());
        };
        let began = Instant::now();
        down.store(n, Ordering::SeqCst);
        drop(replicas[leader].take());
        match wait_event(&hooks, &check, "down", began).await {
            Some(took) => to_down.push(took),
            None => lost += 1,
        }
        let began = Instant::now();
        down.store(usize::MAX, Ordering::SeqCst);
        match wait_event(&hooks, &check, "up", began).await {
            Some(took) => to_up.push(took),
            None => lost += 1,
        }
        replicas[leader] = Some(start(leader));
    }
    to_down.sort();
    to_up.sort();
    let show = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    println!(
        "leader killed at the outage's start, {} rounds: outage -> down alert p50 {} max {}; recovery -> up alert p50 {} max {}",
        to_down.len(),
        show(percentile(&to_down, 50.0)),
        show(percentile(&to_down, 100.0)),
        show(percentile(&to_up, 50.0)),
        show(percentile(&to_up, 100.0)),
    );
    drop(probes);
    if lost > 0 {
        return Err(format!(
            "{lost} alerts did not arrive within {ALERT_WAIT_MAX:?}"
        ));
    }
    Ok(())
}

/// One, two and three replicas on PostgreSQL, then one on SQLite.
async fn replicas() -> Result<(), String> {
    let root = write_config(&ingest_checks(), None);
    for count in 1..=3 {
        let database = test_server::fresh().await;
        let mut running = Vec::new();
        let mut targets = Vec::new();
        for n in 0..count {
            let mut args = aggregator_args(root.path(), &["--replica-id", &format!("r{n}")]);
            // The PostgreSQL URL replaces --data.
            if let Some(at) = args.iter().position(|a| a == "--data") {
                args.drain(at..at + 2);
            }
            let (replica, addr) = spawn(
                &args,
                &[("LOOKOUT_DATABASE_URL", database.url.clone())],
                "listening on ",
            );
            targets.push((replica.0.id(), addr));
            running.push(replica);
        }
        let figures = ingest_into(&targets).await?;
        println!("ingest, {count} replica(s) on PostgreSQL: {figures}");
        drop(running);
    }
    let (aggregator, addr) = spawn(&aggregator_args(root.path(), &[]), &[], "listening on ");
    let figures = ingest_into(&[(aggregator.0.id(), addr)]).await?;
    println!("ingest, 1 aggregator on SQLite: {figures}");
    Ok(())
}

/// Posts the ingest load round-robin to `targets` (pid, base URL) and
/// says what it took.
async fn ingest_into(targets: &[(u32, String)]) -> Result<String, String> {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let cpu_before: u64 = targets.iter().map(|(pid, _)| cpu_ticks(*pid)).sum();
    let sent = Arc::new(AtomicUsize::new(0));
    let stored = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let clients = INGEST_CLIENTS.max(targets.len());
    for c in 0..clients {
        let client = client.clone();
        let url = format!("{}/api/v1/results", targets[c % targets.len()].1);
        let sent = sent.clone();
        let stored = stored.clone();
        tasks.push(tokio::spawn(async move {
            use std::fmt::Write as _;
            let region = REGIONS[c % REGIONS.len()];
            let auth = format!("Bearer {}", token(region));
            // Every result its own run: a check's runs in one region 10 ms
            // apart at least, clients of one region interleaved, all within
            // the last hour (storage keeps one result per run and region).
            let base = chrono::Utc::now() - chrono::Duration::hours(1);
            let mut seq: i64 = 0;
            while sent.fetch_add(INGEST_BATCH, Ordering::SeqCst) < INGEST_RESULTS
                && started.elapsed() < INGEST_WALL_MAX
            {
                let now = chrono::Utc::now();
                // Written out by hand: the client's own CPU is not the
                // aggregator's, and the two share the machine.
                let mut body = String::with_capacity(INGEST_BATCH * 260);
                body.push_str("{\"results\":[");
                for i in 0..INGEST_BATCH {
                    let at = base + chrono::Duration::milliseconds((seq * clients as i64 + c as i64) * 10);
                    seq += 1;
                    let _ = write!(
                        body,
                        "{}{{\"id\":\"{}\",\"check\":\"c{:03}\",\"region\":\"{region}\",\"probe\":\"bench\",\"started_at\":\"{}\",\"duration_ms\":12.5,\"outcome\":\"ok\",\"status\":200,\"phases_ms\":{{\"dns\":0.1,\"connect\":0.3,\"ttfb\":5.0,\"transfer\":0.2}}}}",
                        if i == 0 { "" } else { "," },
                        uuid::Uuid::now_v7(),
                        i % INGEST_CHECKS,
                        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    );
                }
                let _ = write!(
                    body,
                    "],\"sent_at\":\"{}\"}}",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                );
                let response = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if !response.status().is_success() {
                    return Err(format!("HTTP {}", response.status()));
                }
                // What the aggregator says it took (duplicates are not).
                let report = response.bytes().await.map_err(|e| e.to_string())?;
                let report: serde_json::Value =
                    serde_json::from_slice(&report).map_err(|e| e.to_string())?;
                let accepted = report["accepted"].as_u64().unwrap_or(0) as usize;
                stored.fetch_add(accepted, Ordering::SeqCst);
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let wall = started.elapsed();
    let ticks = targets.iter().map(|(pid, _)| cpu_ticks(*pid)).sum::<u64>() - cpu_before;
    let stored = stored.load(Ordering::SeqCst);
    // Clock ticks are 1/100 s on Linux (sysconf(_SC_CLK_TCK)).
    let cpu_ms = ticks as f64 * 10.0;
    Ok(format!(
        "{stored} results in {:.1}s from {clients} clients, batches of {INGEST_BATCH}: {:.0} results/s; aggregator CPU {:.0} ms = {:.1} ms per 1,000 results",
        wall.as_secs_f64(),
        stored as f64 / wall.as_secs_f64(),
        cpu_ms,
        cpu_ms / (stored as f64 / 1000.0)
    ))
}

fn main() -> ExitCode {
    lookout::install_crypto_provider();
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = which.is_empty();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = runtime.block_on(async {
        if all || which.iter().any(|w| w == "ingest") {
            ingest().await?;
        }
        if which.iter().any(|w| w == "replicas") {
            replicas().await?;
        }
        if which.iter().any(|w| w == "leader") {
            leader_killed().await?;
        }
        if all || which.iter().any(|w| w == "outage") {
            outage_mode(true).await?;
            outage_mode(false).await?;
        }
        Ok::<(), String>(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error}");
            ExitCode::FAILURE
        }
    }
}

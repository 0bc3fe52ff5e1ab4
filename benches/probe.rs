//! What a probe costs, and how punctually the scheduler starts checks.
//!
//! Run with `cargo bench --bench probe` (a release build). Two measurements,
//! both against an HTTP target on 127.0.0.1 that runs in a child process (this
//! same binary, re-executed with `LOOKOUT_BENCH_TARGET=1`), so the target's
//! own CPU is never counted:
//!
//! 1. Probe cost: one `http` check loaded through `lookout::config::load` and
//!    run with `Runner::run`, a fresh connection each time (as the daemon
//!    does), first one after the other, then 64 in flight at once. "CPU ms per
//!    probe" is this process's user + system CPU time over the run, divided by
//!    the probes run: it includes the tokio runtime and the kernel's TCP work
//!    on the client side, which is what a probe host pays. Compare it with the
//!    reference printed alongside; wall time and probes/s depend on the target
//!    sharing the machine's two cores and are for context only.
//! 2. Scheduling lateness: 1,000 checks at `every: 1s` run by the `Scheduler`
//!    for 15 s. Lateness is how long after its deadline each run started (as
//!    the scheduler reports it to `on_lateness`); the first 2 s are warm-up and
//!    left out. tokio's timer works in whole milliseconds and rounds a
//!    deadline up to the next one, so about 1 ms is the floor for p50; p99
//!    should stay within a few ms, and a max that keeps growing means the
//!    probe cannot keep up with its checks.
//!
//! CPU time comes from /proc/self/stat in 10 ms ticks, so runs are sized to
//! take at least a second or so; short runs would be rounded coarsely.
//!
//! The process exits non-zero if any probe was not `ok`, after printing every
//! figure: failed probes would make the cost figures meaningless.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lookout::config::{Check, Secrets};
use lookout::limits::{PROBE_CONCURRENCY_DEFAULT, RESULT_QUEUE_CAPACITY};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::{Outcome, ProbeResult};
use lookout::scheduler::{LatenessObserver, Scheduler};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Set in the child process: run the target instead of the benchmark.
const TARGET_ENV: &str = "LOOKOUT_BENCH_TARGET";
/// How long the target may take to report its port.
const TARGET_START_TIMEOUT: Duration = Duration::from_secs(10);

const WARMUP_PROBES: usize = 200;
const SEQUENTIAL_PROBES: usize = 5_000;
const CONCURRENT_PROBES: usize = 20_000;
const IN_FLIGHT: usize = 64;
/// Each probe-cost run stops here even if it has not run all its probes.
const RUN_WALL_MAX: Duration = Duration::from_secs(20);

const SCHEDULED_CHECKS: usize = 1_000;
const SCHEDULER_RUN: Duration = Duration::from_secs(15);
const SCHEDULER_WARMUP: Duration = Duration::from_secs(2);
/// How long the scheduler and the results drain get to stop once cancelled.
const SCHEDULER_STOP_MAX: Duration = Duration::from_secs(15);

/// Linux reports CPU times in /proc in USER_HZ ticks, 100 per second on every
/// architecture Lookout runs on.
const CLOCK_TICKS_PER_SEC: u64 = 100;

const REFERENCE: &str = "blackbox_exporter: ~0.5 ms CPU per probe here; target <= 0.25 ms";

fn main() -> ExitCode {
    if std::env::var_os(TARGET_ENV).is_some() {
        return run_target();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime");
    runtime.block_on(bench())
}

async fn bench() -> ExitCode {
    lookout::install_crypto_provider();
    let target = Target::start();
    println!(
        "target: 127.0.0.1:{} (child process {})",
        target.port,
        target.child.id()
    );

    let mut failed = probe_cost(target.port).await;
    failed += scheduling(target.port).await;

    drop(target);
    if failed > 0 {
        eprintln!("{failed} probe(s) were not ok: the figures above are not meaningful");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Probe cost

/// Runs and prints the probe-cost figures; returns how many probes failed.
async fn probe_cost(port: u16) -> usize {
    let yaml = checks_yaml(port, &["bench".to_string()]);
    let (checks, secrets) = load_checks(&yaml);
    let check = checks
        .into_iter()
        .next()
        .expect("the bench check did not load");
    let runner = Runner::new(identity(), secrets);

    let warmup = sequential(&runner, &check, WARMUP_PROBES).await;
    let serial = sequential(&runner, &check, SEQUENTIAL_PROBES).await;
    let parallel = concurrent(&runner, &check, CONCURRENT_PROBES, IN_FLIGHT).await;

    println!();
    println!("== HTTP probe cost: fresh connection per probe, loopback target in a child process");
    println!(
        "{:<16}{} probes, {} not ok (excluded from the figures)",
        "warm-up:", warmup.tally.total, warmup.tally.failed
    );
    println!("{:<16}{}", "sequential:", serial.summary());
    println!(
        "{:<16}{}",
        format!("{IN_FLIGHT} in flight:"),
        parallel.summary()
    );
    println!("reference:      {REFERENCE}");
    warmup.tally.failed + serial.tally.failed + parallel.tally.failed
}

/// `max` probes one after the other (or as many as fit in `RUN_WALL_MAX`).
async fn sequential(runner: &Runner, check: &Check, max: usize) -> Measured {
    let clock = Clock::start();
    let mut tally = Tally::default();
    while tally.total < max && clock.wall() < RUN_WALL_MAX {
        tally.add(&runner.run(check).await);
    }
    clock.stop(tally)
}

/// `max` probes with `in_flight` running at any time, each in its own task
/// (as the scheduler runs them).
async fn concurrent(runner: &Runner, check: &Arc<Check>, max: usize, in_flight: usize) -> Measured {
    let clock = Clock::start();
    let mut tally = Tally::default();
    let mut tasks = JoinSet::new();
    let mut started = 0;
    loop {
        while tasks.len() < in_flight && started < max && clock.wall() < RUN_WALL_MAX {
            let (runner, check) = (runner.clone(), check.clone());
            tasks.spawn(async move { runner.run(&check).await });
            started += 1;
        }
        match tasks.join_next().await {
            Some(Ok(result)) => tally.add(&result),
            Some(Err(error)) => tally.add_failure(format!("probe task ended abnormally: {error}")),
            None => break,
        }
    }
    clock.stop(tally)
}

// ---------------------------------------------------------------------------
// Scheduling lateness

/// Runs and prints the scheduling figures; returns how many probes failed.
async fn scheduling(port: u16) -> usize {
    let names: Vec<String> = (0..SCHEDULED_CHECKS)
        .map(|i| format!("check-{i:04}"))
        .collect();
    let (checks, secrets) = load_checks(&checks_yaml(port, &names));
    assert_eq!(
        checks.len(),
        SCHEDULED_CHECKS,
        "not every generated check loaded"
    );

    let samples: Arc<Mutex<Vec<(Duration, Duration)>>> = Arc::default();
    let (results, received) = mpsc::channel(RESULT_QUEUE_CAPACITY);
    let drain = tokio::spawn(drain(received));
    let cancel = CancellationToken::new();
    let clock = Clock::start();
    let scheduler = Scheduler {
        runner: Runner::new(identity(), secrets),
        results,
        concurrency: PROBE_CONCURRENCY_DEFAULT,
        on_lateness: Some(lateness_recorder(samples.clone(), clock.started)),
    };
    let running = tokio::spawn(scheduler.run(checks, cancel.clone()));

    tokio::time::sleep(SCHEDULER_RUN).await;
    cancel.cancel();
    match tokio::time::timeout(SCHEDULER_STOP_MAX, running).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => panic!("the scheduler task ended abnormally: {error}"),
        Err(_) => {
            panic!("the scheduler did not stop within {SCHEDULER_STOP_MAX:?} of cancellation")
        }
    }
    // The scheduler has dropped every sender, so the drain ends.
    let tally = match tokio::time::timeout(SCHEDULER_STOP_MAX, drain).await {
        Ok(Ok(tally)) => tally,
        Ok(Err(error)) => panic!("the results drain ended abnormally: {error}"),
        Err(_) => panic!("the results channel did not close after the scheduler stopped"),
    };
    let measured = clock.stop(tally);

    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let mut lateness: Vec<Duration> = samples
        .into_iter()
        .filter(|(at, _)| *at >= SCHEDULER_WARMUP)
        .map(|(_, late)| late)
        .collect();
    lateness.sort_unstable();

    println!();
    println!(
        "== Scheduling: {SCHEDULED_CHECKS} checks every 1s for {}s, concurrency {PROBE_CONCURRENCY_DEFAULT}",
        SCHEDULER_RUN.as_secs()
    );
    println!(
        "lateness (after {}s warm-up): {} samples; p50 {:.3} ms; p99 {:.3} ms; max {:.3} ms",
        SCHEDULER_WARMUP.as_secs(),
        lateness.len(),
        ms(percentile(&lateness, 0.50)),
        ms(percentile(&lateness, 0.99)),
        ms(lateness.last().copied().unwrap_or_default()),
    );
    println!("results:        {}", measured.summary());
    measured.tally.failed
}

/// An `on_lateness` observer that keeps (time since start, lateness) pairs.
fn lateness_recorder(
    samples: Arc<Mutex<Vec<(Duration, Duration)>>>,
    started: Instant,
) -> LatenessObserver {
    Arc::new(move |late: Duration| {
        let at = started.elapsed();
        samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((at, late));
    })
}

/// Counts results until every sender is gone.
async fn drain(mut received: mpsc::Receiver<ProbeResult>) -> Tally {
    let mut tally = Tally::default();
    while let Some(result) = received.recv().await {
        tally.add(&result);
    }
    tally
}

/// The nearest-rank percentile of sorted `values` (`p` in 0..=1).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------
// Checks

fn identity() -> ProbeIdentity {
    ProbeIdentity {
        region: "bench".into(),
        probe: "bench".into(),
    }
}

/// A checks file with one `every: 1s` http check per name, all on the target.
fn checks_yaml(port: u16, names: &[String]) -> String {
    let mut yaml = String::from("checks:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"http://127.0.0.1:{port}/\" }}\n    every: 1s\n"
        ));
    }
    yaml
}

/// Loads `yaml` through the public config loader, as the daemon would.
fn load_checks(yaml: &str) -> (Vec<Arc<Check>>, Arc<Secrets>) {
    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let checks_dir = dir.path().join("checks");
    std::fs::create_dir(&checks_dir).expect("cannot create the checks directory");
    std::fs::write(checks_dir.join("bench.yaml"), yaml).expect("cannot write the checks file");
    // The alerts directory does not exist, which the loader allows.
    match lookout::config::load(&checks_dir, &dir.path().join("alerts")) {
        Ok(config) => (config.checks, config.secrets),
        Err(errors) => {
            let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            panic!("the generated checks do not load:\n{}", list.join("\n"));
        }
    }
}

// ---------------------------------------------------------------------------
// Measuring

/// Probes run and how many were not `ok`, with the first reason seen.
#[derive(Debug, Default)]
struct Tally {
    total: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, result: &ProbeResult) {
        if result.outcome == Outcome::Ok {
            self.total += 1;
        } else {
            self.add_failure(lookout::probe::describe(result));
        }
    }

    fn add_failure(&mut self, reason: String) {
        self.total += 1;
        self.failed += 1;
        self.first_error.get_or_insert(reason);
    }
}

/// Wall and process CPU time from a starting point.
struct Clock {
    started: Instant,
    cpu: Duration,
}

impl Clock {
    fn start() -> Clock {
        Clock {
            started: Instant::now(),
            cpu: process_cpu_time(),
        }
    }

    fn wall(&self) -> Duration {
        self.started.elapsed()
    }

    fn stop(self, tally: Tally) -> Measured {
        Measured {
            wall: self.wall(),
            cpu: process_cpu_time().saturating_sub(self.cpu),
            tally,
        }
    }
}

struct Measured {
    tally: Tally,
    wall: Duration,
    cpu: Duration,
}

impl Measured {
    fn summary(&self) -> String {
        let probes = self.tally.total.max(1) as f64;
        let mut text = format!(
            "{} probes in {:.2} s; {:.3} ms CPU per probe; {:.0} probes/s; {} not ok",
            self.tally.total,
            self.wall.as_secs_f64(),
            ms(self.cpu) / probes,
            self.tally.total as f64 / self.wall.as_secs_f64().max(1e-9),
            self.tally.failed,
        );
        if let Some(error) = &self.tally.first_error {
            text.push_str(&format!(" (first: {error})"));
        }
        text
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// This process's user + system CPU time (every thread, living or exited;
/// not the target child's), from /proc/self/stat.
fn process_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("cannot read /proc/self/stat");
    // The command name (field 2) may hold spaces; the fields after it are
    // plain. After the closing parenthesis come field 3 (state) onwards, so
    // utime (field 14) and stime (field 15) are the 12th and 13th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .expect("unexpected /proc/self/stat format");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .expect("unexpected /proc/self/stat format")
    };
    let total = ticks(11) + ticks(12);
    Duration::from_millis(total * 1_000 / CLOCK_TICKS_PER_SEC)
}

// ---------------------------------------------------------------------------
// The target, in a child process

/// The child process serving the target; killed when dropped (also when the
/// benchmark panics), and it exits by itself if this process dies.
struct Target {
    child: Child,
    port: u16,
}

impl Target {
    fn start() -> Target {
        let exe = std::env::current_exe().expect("cannot find the benchmark's own executable");
        let mut child = Command::new(exe)
            .env(TARGET_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the target process");
        let stdout = child.stdout.take().expect("the target's stdout is piped");
        // From here on, dropping `target` (a panic included) kills the child.
        let mut target = Target { child, port: 0 };
        // Read the port on a thread so a silent target cannot hang us.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let port = match rx.recv_timeout(TARGET_START_TIMEOUT) {
            Ok(Ok(line)) => line.trim().parse::<u16>().ok(),
            _ => None,
        };
        target.port = port.unwrap_or_else(|| {
            panic!("the target did not report its port within {TARGET_START_TIMEOUT:?}")
        });
        target
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's main: an axum server on 127.0.0.1 answering 200 "ok", its port
/// printed on stdout. It exits when its stdin closes (the parent is gone).
fn run_target() -> ExitCode {
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("target: cannot build the tokio runtime");
    runtime.block_on(serve_target());
    ExitCode::SUCCESS
}

async fn serve_target() {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("target: cannot bind 127.0.0.1:0");
    let port = listener
        .local_addr()
        .expect("target: no local address")
        .port();
    // println! flushes at the newline.
    println!("{port}");
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    axum::serve(listener, app)
        .await
        .expect("target: the server failed");
}

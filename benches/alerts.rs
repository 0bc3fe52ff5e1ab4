//! How long an alert takes: from a check's state change to its webhook
//! arriving at a receiver on 127.0.0.1.
//!
//! Run with `cargo bench --bench alerts` (a release build). Everything runs in
//! this one process on a multi-thread tokio runtime, with the real pieces the
//! daemon wires together in `serve`:
//!
//! - an axum webhook receiver on 127.0.0.1 that notes, for every POST, the
//!   `Instant` it had the whole request (headers and body), the
//!   `X-Lookout-Delivery` id, and the body's `check` and `event`; it checks the
//!   HMAC signature too (after noting the instant, so outside the figure);
//! - a config loaded with `lookout::config::load`: http checks that are never
//!   probed, each `every: 1s` with `alert: { failures: 1, channels: [hook] }`,
//!   and one channel `hook` (`format: json`, with a `secret`, so the signing
//!   is part of the cost);
//! - `Storage` (SQLite, WAL) in a temporary directory, an `Aggregator`, and
//!   the outbox `Dispatcher` woken by the aggregator's commits.
//!
//! A state change is made by handing `Aggregator::ingest` one result whose
//! outcome flips the check (failures 1, successes 1): fail, ok, fail, ... so
//! the first change is `unknown -> down` (an `unknown -> up` first verdict
//! raises no alert, by design), then `down -> up`, `up -> down` and so on.
//! When `ingest` returns, the change is committed together with its outbox
//! row and the dispatcher has been woken; the `Instant` taken right then is
//! the state-change time. Latency = arrival at the receiver - that instant:
//! the dispatcher's outbox query, rendering, signing, the HTTP POST over
//! loopback and the receiver reading it. It leaves out the ingest itself (its
//! time is printed on its own line) and the `delivered` write that follows
//! the receiver's answer. The dispatcher is woken inside `ingest`, just after
//! the commit and before `ingest` returns, so its work overlaps the end of
//! `ingest`: the figure can understate by up to that tail, and an alert that
//! beats the return counts as 0 ms (how many did is printed). The same
//! latency counted from the `ingest` call is printed as an upper bound; the
//! time from the commit itself lies between the two.
//!
//! A check changing state more than `limits::FLAP_CHANGES_MAX` times within
//! `limits::FLAP_WINDOW` is flapping and its alerts pause, so no check here
//! changes more than that: the changes are spread over a pool of checks
//! (`flip-NNN`, then `burst-G-NN`), each used for at most that many changes.
//!
//! Two runs:
//! 1. one at a time: a change, then wait (at most `ARRIVAL_WAIT_MAX`) for its
//!    alert, `CHANGES` times (bounded by `PHASE_WALL_MAX`);
//! 2. ten at once: ten checks change back to back (ten ingests), then wait
//!    for the ten alerts, `BURST_ROUNDS` times. The dispatcher sends up to
//!    `limits::ALERT_CONCURRENCY` at once, so these should overlap; later
//!    alerts of a round also wait for the ingests before them.
//!
//! Figures are nearest-rank percentiles over every change of a run. The
//! target is about a second; a few milliseconds is what a woken dispatcher
//! on loopback should give, and the 1 s poll (`limits::ALERT_POLL_EVERY`)
//! showing up in p99 or max would mean a wake-up was missed.
//!
//! The process exits non-zero, after printing every figure, if any alert did
//! not arrive or arrived with a bad signature.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use lookout::aggregator::Aggregator;
use lookout::alert::outbox::Dispatcher;
use lookout::limits::FLAP_CHANGES_MAX;
use lookout::result::{Outcome, Phases, ProbeResult};
use lookout::storage::Storage;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// State changes in the one-at-a-time run.
const CHANGES: usize = 200;
/// Checks changing at once in the burst run, and how many rounds of it.
const BURST_CHECKS: usize = 10;
const BURST_ROUNDS: usize = 20;
/// Each run stops here even if it has not made all its changes.
const PHASE_WALL_MAX: Duration = Duration::from_secs(60);
/// How long one change (or one round) waits for its alerts.
const ARRIVAL_WAIT_MAX: Duration = Duration::from_secs(5);
/// After the runs, how long to listen for alerts nobody expected (resends).
const EXTRA_GRACE: Duration = Duration::from_millis(500);
/// Unmatched POSTs described in the output, at most.
const UNMATCHED_SHOWN: usize = 5;
/// How long the dispatcher gets to stop once cancelled.
const STOP_MAX: Duration = Duration::from_secs(5);

const SECRET: &str = "bench-webhook-secret";
const REGION: &str = "local";
const REFERENCE: &str = "target: alert within ~1 s of the state change; the dispatcher is woken by the commit, so this is mostly HTTP + SQLite time";

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot build the tokio runtime");
    runtime.block_on(bench())
}

async fn bench() -> ExitCode {
    lookout::install_crypto_provider();
    // A check may change this many times before it counts as flapping.
    let per_check = FLAP_CHANGES_MAX;
    assert!(per_check > 0, "FLAP_CHANGES_MAX is 0: no check could alert");

    let receiver = Receiver::new();
    let port = receiver.start().await;
    println!("webhook receiver: http://127.0.0.1:{port}/hook");

    let flips: Vec<String> = (0..CHANGES.div_ceil(per_check))
        .map(|i| format!("flip-{i:03}"))
        .collect();
    let groups = BURST_ROUNDS.div_ceil(per_check);
    let bursts: Vec<Vec<String>> = (0..groups)
        .map(|g| {
            (0..BURST_CHECKS)
                .map(|j| format!("burst-{g}-{j:02}"))
                .collect()
        })
        .collect();
    let all: Vec<&String> = flips.iter().chain(bursts.iter().flatten()).collect();

    let dir = tempfile::tempdir().expect("cannot create a temporary directory");
    let config = Arc::new(write_and_load(dir.path(), &all, port));
    let storage = Storage::open(&dir.path().join("data")).expect("cannot open storage");
    let aggregator = Arc::new(
        Aggregator::new(config, storage.clone())
            .await
            .expect("cannot start the aggregator"),
    );
    let cancel = CancellationToken::new();
    let dispatcher = {
        let live = aggregator.clone();
        Dispatcher {
            storage,
            config: Arc::new(move || live.config()),
            wake: aggregator.alert_wake(),
            max_age: Duration::from_secs(3600),
            owner: "bench".into(),
            claim_for: lookout::limits::DELIVERY_CLAIM_DEFAULT,
        }
    };
    let dispatching = tokio::spawn(dispatcher.run(cancel.clone()));

    let mut flipper = Flipper::default();

    // 1. One at a time.
    let mut serial = Run::default();
    let started = Instant::now();
    let mut stopped_early = false;
    for i in 0..CHANGES {
        if started.elapsed() >= PHASE_WALL_MAX {
            stopped_early = true;
            break;
        }
        let check = &flips[i / per_check];
        let from = receiver.len();
        let change = flipper.change(&aggregator, check).await;
        serial.ingest.push(change.ingest);
        let found = receiver.claim(&[change], from).await;
        serial.add(&found);
    }

    // 2. Ten at once.
    let mut burst = Run::default();
    let started = Instant::now();
    let mut rounds = 0;
    for round in 0..BURST_ROUNDS {
        if started.elapsed() >= PHASE_WALL_MAX {
            stopped_early = true;
            break;
        }
        let from = receiver.len();
        let mut changes = Vec::with_capacity(BURST_CHECKS);
        for check in &bursts[round / per_check] {
            let change = flipper.change(&aggregator, check).await;
            burst.ingest.push(change.ingest);
            changes.push(change);
        }
        let found = receiver.claim(&changes, from).await;
        burst.add(&found);
        rounds += 1;
    }

    tokio::time::sleep(EXTRA_GRACE).await;
    cancel.cancel();
    if tokio::time::timeout(STOP_MAX, dispatching).await.is_err() {
        eprintln!("the dispatcher did not stop within {STOP_MAX:?} of cancellation");
    }

    let (received, bad_signatures, unmatched_shown, unmatched) = receiver.totals();
    println!();
    println!(
        "== Alert latency: state change committed (ingest returned) -> webhook POST received on 127.0.0.1"
    );
    println!(
        "   (json format, HMAC-signed; at most {per_check} changes per check, below the flapping threshold)"
    );
    println!("{:<16}{}", "one at a time:", serial.summary());
    for line in serial.context() {
        println!("{:<16}{line}", "");
    }
    println!(
        "{:<16}{rounds} rounds; {}",
        format!("{BURST_CHECKS} at once:"),
        burst.summary()
    );
    for line in burst.context() {
        println!("{:<16}{line}", "");
    }
    println!("reference:      {REFERENCE}");
    println!(
        "receiver:       {received} POSTs in all; {unmatched} not matched to a change; {bad_signatures} with a bad signature; {} arrived before their ingest returned (counted as 0 ms)",
        receiver.early.load(Ordering::Relaxed)
    );
    for arrival in unmatched_shown {
        println!("                not matched: {arrival}");
    }
    if stopped_early {
        println!(
            "note:           a run stopped at its {}s bound before making all its changes",
            PHASE_WALL_MAX.as_secs()
        );
    }

    let missing = serial.missing() + burst.missing();
    if missing > 0 || bad_signatures > 0 {
        eprintln!(
            "{missing} alert(s) did not arrive within {ARRIVAL_WAIT_MAX:?}, {bad_signatures} badly signed: the figures above are not meaningful"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------
// Config

/// Writes a checks file with one never-probed http check per name and an
/// alerts file with the `hook` channel, and loads them as the daemon would.
fn write_and_load(dir: &Path, names: &[&String], port: u16) -> lookout::config::Config {
    let checks_dir = dir.join("checks");
    let alerts_dir = dir.join("alerts");
    std::fs::create_dir(&checks_dir).expect("cannot create the checks directory");
    std::fs::create_dir(&alerts_dir).expect("cannot create the alerts directory");
    let mut checks = String::from("checks:\n");
    for name in names {
        // Port 9 (discard): never probed here, nothing listens.
        checks.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"http://127.0.0.1:9/\" }}\n    every: 1s\n    alert: {{ failures: 1, channels: [hook] }}\n"
        ));
    }
    std::fs::write(checks_dir.join("bench.yaml"), checks).expect("cannot write the checks file");
    std::fs::write(
        alerts_dir.join("hook.yaml"),
        format!(
            "channels:\n  hook:\n    webhook: {{ url: \"http://127.0.0.1:{port}/hook\", format: json, secret: \"{SECRET}\" }}\n"
        ),
    )
    .expect("cannot write the alerts file");
    match lookout::config::load(&checks_dir, &alerts_dir) {
        Ok(config) => config,
        Err(errors) => {
            let list: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
            panic!("the generated config does not load:\n{}", list.join("\n"));
        }
    }
}

// ---------------------------------------------------------------------------
// State changes

/// One state change made through `ingest`, and the alert it should raise.
struct Change {
    check: String,
    event: &'static str,
    /// When `ingest` was called: nothing is decided yet.
    called: Instant,
    /// When `ingest` returned: the change and its outbox row are committed.
    at: Instant,
    /// How long `ingest` took.
    ingest: Duration,
}

/// When a change's alert arrived.
#[derive(Clone, Copy)]
struct Arrived {
    /// After `ingest` returned (0 when it came before): the figure.
    after_return: Duration,
    /// After `ingest` was called: an upper bound.
    after_call: Duration,
}

/// Makes every result flip its check: fail first (`unknown -> down`), then
/// ok, fail, ...
#[derive(Default)]
struct Flipper {
    changes: HashMap<String, usize>,
}

impl Flipper {
    async fn change(&mut self, aggregator: &Aggregator, check: &str) -> Change {
        let n = self.changes.entry(check.to_string()).or_default();
        let (outcome, event) = if n.is_multiple_of(2) {
            (Outcome::Fail, "down")
        } else {
            (Outcome::Ok, "up")
        };
        *n += 1;
        let result = result(check, outcome);
        let before = Instant::now();
        let report = aggregator
            .ingest(vec![result])
            .await
            .expect("ingest failed");
        let at = Instant::now();
        assert_eq!(
            report.transitions, 1,
            "a result for `{check}` did not change its state: {report:?}"
        );
        Change {
            check: check.to_string(),
            event,
            called: before,
            at,
            ingest: at - before,
        }
    }
}

/// A result as a probe in region `local` would send it.
fn result(check: &str, outcome: Outcome) -> ProbeResult {
    let (status, error) = match outcome {
        Outcome::Ok => (Some(200), None),
        _ => (Some(500), Some("status 500 not in [2xx]".to_string())),
    };
    ProbeResult {
        id: Uuid::now_v7(),
        check: check.to_string(),
        region: REGION.to_string(),
        probe: "bench".to_string(),
        started_at: Utc::now(),
        duration_ms: 1.0,
        outcome,
        status,
        phases_ms: Phases::default(),
        error,
        cert_expiry: None,
        degraded: None,
        notes: Vec::new(),
        steps: Vec::new(),
        screenshot: None,
        page: None,
        icmp: None,
        grpc: None,
        browser: Default::default(),
        address: None,
        ip_family: None,
        http_version: None,
    }
}

// ---------------------------------------------------------------------------
// The webhook receiver

#[derive(Debug)]
struct Arrival {
    at: Instant,
    /// `X-Lookout-Delivery`, shown for POSTs no change accounts for.
    delivery: String,
    check: String,
    event: String,
    signed: bool,
    claimed: bool,
}

#[derive(Clone)]
struct Receiver {
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    /// How many have arrived; waiters watch it.
    count: Arc<watch::Sender<usize>>,
    /// Alerts that arrived before their `ingest` had returned (counted as 0).
    early: Arc<AtomicUsize>,
}

impl Receiver {
    fn new() -> Receiver {
        Receiver {
            arrivals: Arc::default(),
            count: Arc::new(watch::Sender::new(0)),
            early: Arc::default(),
        }
    }

    /// Serves `POST /hook` on 127.0.0.1; returns the port.
    async fn start(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("cannot bind 127.0.0.1:0");
        let port = listener.local_addr().expect("no local address").port();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the webhook receiver failed")
        });
        port
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arrival>> {
        self.arrivals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Waits (at most `ARRIVAL_WAIT_MAX`) for the alert of each change among
    /// the arrivals from index `from` on, and claims it: same check, same
    /// event. Returns when each change's alert came, `None` for one that
    /// never came.
    async fn claim(&self, changes: &[Change], from: usize) -> Vec<Option<Arrived>> {
        let deadline = tokio::time::Instant::now() + ARRIVAL_WAIT_MAX;
        let mut seen = self.count.subscribe();
        let mut found: Vec<Option<Arrived>> = vec![None; changes.len()];
        loop {
            seen.borrow_and_update();
            {
                let mut arrivals = self.lock();
                for (change, slot) in changes.iter().zip(found.iter_mut()) {
                    if slot.is_some() {
                        continue;
                    }
                    let hit = arrivals
                        .iter_mut()
                        .skip(from)
                        .find(|a| !a.claimed && a.check == change.check && a.event == change.event);
                    if let Some(arrival) = hit {
                        arrival.claimed = true;
                        // An arrival before ingest returned (the dispatcher
                        // raced the return) counts as zero.
                        let after_return = match arrival.at.checked_duration_since(change.at) {
                            Some(latency) => latency,
                            None => {
                                self.early.fetch_add(1, Ordering::Relaxed);
                                Duration::ZERO
                            }
                        };
                        *slot = Some(Arrived {
                            after_return,
                            after_call: arrival.at.saturating_duration_since(change.called),
                        });
                    }
                }
            }
            if found.iter().all(Option::is_some) {
                return found;
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the receiver is gone: what came is all.
                _ => return found,
            }
        }
    }

    /// (POSTs received, bad signatures, up to `UNMATCHED_SHOWN` POSTs no
    /// change accounts for, described, and how many of those there were).
    fn totals(&self) -> (usize, usize, Vec<String>, usize) {
        let arrivals = self.lock();
        let unmatched: Vec<&Arrival> = arrivals.iter().filter(|a| !a.claimed).collect();
        let shown = unmatched
            .iter()
            .take(UNMATCHED_SHOWN)
            .map(|a| {
                format!(
                    "delivery {} check `{}` event `{}`",
                    a.delivery, a.check, a.event
                )
            })
            .collect();
        (
            arrivals.len(),
            arrivals.iter().filter(|a| !a.signed).count(),
            shown,
            unmatched.len(),
        )
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // The whole request is in: this is the arrival.
    let at = Instant::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |name: &str| json[name].as_str().unwrap_or_default().to_string();
    let signed = signature_ok(
        &header("x-lookout-timestamp"),
        &header("x-lookout-signature"),
        &body,
    );
    receiver.lock().push(Arrival {
        at,
        delivery: header("x-lookout-delivery"),
        check: field("check"),
        event: field("event"),
        signed,
        claimed: false,
    });
    receiver.count.send_modify(|n| *n += 1);
    StatusCode::OK
}

/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
fn signature_ok(timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Some(tag) = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    ring::hmac::verify(&key, &signed, &tag).is_ok()
}

// ---------------------------------------------------------------------------
// Figures

#[derive(Default)]
struct Run {
    changes: usize,
    /// From `ingest`'s return to the arrival: the figure.
    latencies: Vec<Duration>,
    /// From the `ingest` call to the arrival: an upper bound.
    from_call: Vec<Duration>,
    ingest: Vec<Duration>,
}

impl Run {
    fn add(&mut self, found: &[Option<Arrived>]) {
        self.changes += found.len();
        for arrived in found.iter().flatten() {
            self.latencies.push(arrived.after_return);
            self.from_call.push(arrived.after_call);
        }
    }

    fn missing(&self) -> usize {
        self.changes - self.latencies.len()
    }

    fn summary(&self) -> String {
        format!(
            "{} state changes, {} alerts arrived; {}",
            self.changes,
            self.latencies.len(),
            spread(&self.latencies),
        )
    }

    /// The ingest's own time, and the latency counted from the call.
    fn context(&self) -> [String; 2] {
        [
            format!("(ingest itself: {})", spread(&self.ingest)),
            format!(
                "(from the ingest call instead, an upper bound: {})",
                spread(&self.from_call)
            ),
        ]
    }
}

/// `p50 ..; p99 ..; max ..` of `values`, in ms.
fn spread(values: &[Duration]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    format!(
        "p50 {:.2} ms; p99 {:.2} ms; max {:.2} ms",
        ms(percentile(&sorted, 0.50)),
        ms(percentile(&sorted, 0.99)),
        ms(sorted.last().copied().unwrap_or_default()),
    )
}

/// The nearest-rank percentile of sorted `values` (`p` in 0..=1).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

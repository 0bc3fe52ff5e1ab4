//! Probes that lose nothing and hammer nothing (issue 21): the real
//! `lookout probe` against a fake aggregator that misbehaves as proxies do
//! (200 with the same checks every time, 307 on results, no answer at
//! all), and against the real aggregator with the probe's spool on a
//! read-only, then on a full filesystem (a small tmpfs the test mounts).

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

use common::fake_aggregator::{Elsewhere, FakeAggregator, ResultsMode, SpecsMode};
use common::{ConfigDirs, Server, client, get_json, wait_for};

const REGION: &str = "eu-west";
const TOKEN: &str = "probe-token-for-eu-west-0123456789";

/// A target recording when each of its two routes was asked.
#[derive(Clone, Default)]
struct Hits {
    health: Arc<Mutex<Vec<Instant>>>,
    other: Arc<Mutex<Vec<Instant>>>,
}

impl Hits {
    fn health_between(&self, from: Instant, to: Instant) -> usize {
        let hits = self.health.lock().unwrap();
        hits.iter().filter(|t| **t >= from && **t < to).count()
    }
}

/// The target; returns the URLs of `/health` and `/other`.
async fn start_target() -> (String, String, Hits) {
    let hits = Hits::default();
    let (health, other) = (hits.health.clone(), hits.other.clone());
    let app = Router::new()
        .route(
            "/health",
            get(move || {
                let seen = health.clone();
                async move {
                    seen.lock().unwrap().push(Instant::now());
                    "ok"
                }
            }),
        )
        .route(
            "/other",
            get(move || {
                let seen = other.clone();
                async move {
                    seen.lock().unwrap().push(Instant::now());
                    "ok"
                }
            }),
        );
    let addr = common::serve_on_loopback(app).await;
    (
        format!("http://{addr}/health"),
        format!("http://{addr}/other"),
        hits,
    )
}

/// A checks file of http checks: (name, url, every).
fn checks(list: &[(&str, &str, &str)]) -> String {
    let mut yaml = "checks:\n".to_string();
    for (name, url, every) in list {
        yaml.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"{url}\" }}\n    every: {every}\n    timeout: 2s\n"
        ));
    }
    yaml
}

/// `lookout probe` for REGION with its metrics on a free port: the
/// returned server's `base` is its `/metrics` URL.
fn start_probe(aggregator: &str, spool: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        REGION.into(),
        "--aggregator".into(),
        aggregator.into(),
        "--spool".into(),
        spool.into(),
        "--metrics-listen".into(),
        "127.0.0.1:0".into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    Server::spawn(&args, &[("LOOKOUT_PROBE_TOKEN", TOKEN)], "metrics on ")
}

/// Result ids the probe logged as made.
fn made_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" ran ") || l.ends_with(" ran"))
        .filter_map(|l| l.split("id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

async fn scrape(url: &str) -> String {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of the series whose line starts with `series ` (name and
/// labels exactly as exposed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn dropped(text: &str, reason: &str) -> f64 {
    value(
        text,
        &format!("lookout_uplink_results_dropped_total{{reason=\"{reason}\"}}"),
    )
}

fn assert_promtool_passes(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/test (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Nothing was set aside in the spool's `rejected/`.
fn assert_nothing_rejected(spool: &Path) {
    let rejected = spool.join("rejected");
    let count = std::fs::read_dir(&rejected).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count, 0, "files in {}", rejected.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_checks_answered_with_200_every_time_change_nothing() {
    let (health, other, hits) = start_target().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "1s")])).await;
    fake.set_specs_mode(SpecsMode::AlwaysSameDocument);
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &[]);
    wait_for("the first run", Duration::from_secs(15), || async {
        (!hits.health.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let to = Instant::now();
    let runs = hits.health_between(from, to);
    assert!(
        (9..=11).contains(&runs),
        "{runs} runs in 10 s of a check every 1 s\n{}",
        probe.log_text()
    );
    let specs = fake.specs_requests_between(from, to);
    assert!(specs < 10, "{specs} requests for the checks in 10 s");
    let run_now = fake.run_now_requests_between(from, to);
    assert!(run_now < 10, "{run_now} run-now requests in 10 s");
    let log = probe.log_text();
    assert_eq!(
        log.matches("running the checks the aggregator sent")
            .count(),
        1,
        "{log}"
    );

    // A real change, still sent with 200 every time: the added check runs,
    // the other keeps its cadence (a restart would run it out of turn).
    fake.set_checks(
        REGION,
        &checks(&[("api", &health, "1s"), ("added", &other, "1s")]),
    );
    wait_for(
        "the added check to run",
        Duration::from_secs(15),
        || async { (!hits.other.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = probe.log_text();
    assert_eq!(
        log.matches("running the checks the aggregator sent")
            .count(),
        2,
        "{log}"
    );
    assert!(
        log.contains("(added added; the others keep running)"),
        "{log}"
    );
    // A check started while the scheduler runs has its first deadline long
    // past: it runs at once, seconds "late". Only the added one did so; a
    // restarted `api` would be a second.
    let text = scrape(&probe.base).await;
    let on_time = value(
        &text,
        "lookout_scheduler_lateness_seconds_bucket{le=\"2.5\"}",
    );
    let all = value(&text, "lookout_scheduler_lateness_seconds_count");
    assert_eq!(all - on_time, 1.0, "runs started seconds late\n{text}");

    assert_promtool_passes(&text);
    assert_eq!(dropped(&text, "queue_full"), 0.0);
    assert_eq!(value(&text, "lookout_uplink_results_rejected_total"), 0.0);
    assert!(value(&text, "lookout_uplink_results_made_total") >= 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_on_results_is_retried_never_followed_and_loses_nothing() {
    let (health, _, hits) = start_target().await;
    let elsewhere = Elsewhere::start().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "500ms")])).await;
    fake.set_results_mode(ResultsMode::Redirect(
        307,
        format!("{}/api/v1/results", elsewhere.base),
    ));
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &[]);
    wait_for("the first run", Duration::from_secs(15), || async {
        (!hits.health.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;

    let redirected = fake.results_requests().len();
    assert!(redirected >= 2, "sent {redirected} times: not retried");
    // Backoff, not a tight loop: 10 s at 200 ms doubling to 5 s is ~8 tries.
    assert!(redirected <= 30, "sent {redirected} times in 10 s");
    let log = probe.log_text();
    let said = format!(
        "the aggregator answered 307 to {}api/v1/results, not following it",
        fake.base
    );
    assert!(log.contains(&said), "no {said:?} in\n{log}");
    assert!(
        elsewhere.requests.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
    assert!(fake.stored().is_empty());
    assert_nothing_rejected(spool.path());

    // Normal answers again: everything made meanwhile arrives, once.
    fake.set_results_mode(ResultsMode::Accept);
    let made_meanwhile = made_ids(&probe.log_text());
    assert!(made_meanwhile.len() >= 15, "{}", made_meanwhile.len());
    wait_until_stored(&fake, &made_meanwhile).await;
    let text = scrape(&probe.base).await;
    assert_promtool_passes(&text);
    assert_eq!(value(&text, "lookout_uplink_results_rejected_total"), 0.0);
    for reason in ["spool_full", "spool_not_writable", "queue_full"] {
        assert_eq!(dropped(&text, reason), 0.0, "{reason}");
    }
    assert!(value(&text, "lookout_uplink_results_sent_total") >= made_meanwhile.len() as f64);

    let log = probe.terminate_and_log();
    let made = made_ids(&log);
    let stored: HashSet<String> = fake.stored().into_iter().collect();
    let missing: Vec<&String> = made.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{log}");
    let received = fake.received();
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(stored.len(), made.len());
    assert_nothing_rejected(spool.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_that_is_not_the_aggregator_s_answer_keeps_the_results() {
    let (health, _, hits) = start_target().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "500ms")])).await;
    fake.set_results_mode(ResultsMode::ProxyPage);
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &[]);
    wait_for("the first run", Duration::from_secs(15), || async {
        (!hits.health.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    wait_for("a few proxy answers", Duration::from_secs(15), || async {
        (fake.results_requests().len() >= 3).then_some(())
    })
    .await;
    let log = probe.log_text();
    assert!(
        log.contains("without saying it stored the batch"),
        "no plain line about the proxy page in\n{log}"
    );
    let text = scrape(&probe.base).await;
    assert_eq!(value(&text, "lookout_uplink_results_sent_total"), 0.0);

    // The real answers again: everything made meanwhile arrives, once.
    fake.set_results_mode(ResultsMode::Accept);
    let made_meanwhile = made_ids(&probe.log_text());
    assert!(!made_meanwhile.is_empty());
    wait_until_stored(&fake, &made_meanwhile).await;
    let log = probe.terminate_and_log();
    let stored: HashSet<String> = fake.stored().into_iter().collect();
    let missing: Vec<String> = made_ids(&log)
        .into_iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}\n{log}");
    assert_nothing_rejected(spool.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_results_request_never_answered_times_out_within_its_limit_and_is_retried() {
    let (health, _, hits) = start_target().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "500ms")])).await;
    fake.set_results_mode(ResultsMode::Hang);
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &["--aggregator-timeout", "2s"]);
    wait_for("the first run", Duration::from_secs(15), || async {
        (!hits.health.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    wait_for(
        "a second attempt after the first got no answer",
        Duration::from_secs(20),
        || async { (fake.results_requests().len() >= 2).then_some(()) },
    )
    .await;
    let requests = fake.results_requests();
    let gap = requests[1].0.duration_since(requests[0].0);
    // The limit, plus a backoff of at most 5 s: not sooner, not forever.
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(9),
        "retried {gap:?} after the first request"
    );
    wait_for("the timeout said", Duration::from_secs(5), || async {
        probe
            .log_text()
            .contains("sending results: the aggregator did not answer within 2s")
            .then_some(())
    })
    .await;

    fake.set_results_mode(ResultsMode::Accept);
    let made = made_ids(&probe.log_text());
    wait_for(
        "every result made to arrive",
        Duration::from_secs(20),
        || async {
            let stored: HashSet<String> = fake.stored().into_iter().collect();
            made.iter().all(|id| stored.contains(id)).then_some(())
        },
    )
    .await;
    let text = scrape(&probe.base).await;
    assert_promtool_passes(&text);
    assert_eq!(value(&text, "lookout_uplink_results_rejected_total"), 0.0);
    assert_nothing_rejected(spool.path());
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
    _root: tempfile::TempDir,
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

impl Tmpfs {
    /// `None` (and a line saying the test is skipped) when not root.
    fn mount(options: &str) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs for the spool needs root");
            return None;
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed as root");
        Some(Tmpfs { dir, _root: root })
    }

    /// Remounts with `options`; a read-only remount fails while a file is
    /// open for writing (the probe writing a batch), so it is tried again.
    fn remount(&self, options: &str) {
        for _ in 0..50 {
            let status = Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status()
                .unwrap();
            if status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("mount -o remount,{options} {} failed", self.dir.display());
    }

    /// Keeps the filesystem full (a file grown until the disk refuses,
    /// again and again) until the guard is dropped.
    fn keep_full(&self) -> Filler {
        let stop = Arc::new(AtomicBool::new(false));
        let path = self.dir.join("filler");
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            let chunk = vec![0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(mut file) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                {
                    for _ in 0..1024 {
                        if file.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Filler {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

struct Filler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real aggregator, with REGION's token, on a port that survives restarts.
struct Real {
    dirs: ConfigDirs,
    port: u16,
}

impl Real {
    fn new(checks_yaml: &str) -> Real {
        let dirs = ConfigDirs::new(checks_yaml);
        std::fs::write(
            dirs.root.path().join("probes.yaml"),
            format!("probes:\n  {REGION}: {{ token: \"{TOKEN}\" }}\n"),
        )
        .unwrap();
        Real {
            dirs,
            port: free_port(),
        }
    }

    fn start(&self) -> Server {
        let mut args: Vec<OsString> = vec![
            "aggregator".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port).into(),
            "--probes".into(),
            self.dirs.root.path().join("probes.yaml").into(),
        ];
        args.extend(self.dirs.flags());
        Server::spawn(&args, &[], "listening on ")
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    async fn stored(&self) -> HashSet<String> {
        let (_, body) = get_json(
            &client(),
            &format!("{}api/v1/checks/api/results?limit=1000", self.url()),
        )
        .await;
        body["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Trouble {
    ReadOnly,
    Full,
}

/// The probe's spool on a tmpfs that goes read-only (or full) under it:
/// with the aggregator up nothing is lost; with it down as well, the drops
/// are counted and logged, and the counters add up.
async fn spool_in_trouble(trouble: Trouble) {
    let Some(fs) = Tmpfs::mount("size=1m") else {
        return;
    };
    let (health, _, _hits) = start_target().await;
    let real = Real::new(&checks(&[("api", &health, "250ms")]));
    let aggregator = real.start();
    let spool = fs.dir.join("spool");
    let probe = start_probe(&real.url(), &spool, &["--memory-queue", "8"]);
    wait_for("results stored", Duration::from_secs(20), || async {
        (real.stored().await.len() >= 2).then_some(())
    })
    .await;

    let _filler = match trouble {
        Trouble::ReadOnly => {
            fs.remount("ro");
            None
        }
        Trouble::Full => Some(fs.keep_full()),
    };
    let said = match trouble {
        Trouble::ReadOnly => "cannot be written (Read-only file system",
        Trouble::Full => "cannot be written (No space left on device",
    };
    wait_for(
        "the probe to say the spool cannot be written",
        Duration::from_secs(15),
        || async { probe.log_text().contains(said).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The aggregator up: every result made arrives.
    let made = made_ids(&probe.log_text());
    wait_for(
        "every result made to arrive",
        Duration::from_secs(20),
        || async {
            let stored = real.stored().await;
            made.iter().all(|id| stored.contains(id)).then_some(())
        },
    )
    .await;
    let text = scrape(&probe.base).await;
    for reason in ["spool_full", "spool_not_writable", "queue_full"] {
        assert_eq!(
            dropped(&text, reason),
            0.0,
            "{reason}\n{}",
            probe.log_text()
        );
    }

    // The aggregator down as well: the memory queue fills, the oldest go,
    // counted and said.
    aggregator.kill();
    wait_for("drops counted", Duration::from_secs(20), || async {
        let text = scrape(&probe.base).await;
        (dropped(&text, "queue_full") > 0.0).then_some(())
    })
    .await;
    let log = probe.log_text();
    assert!(
        log.contains("results lost: the spool") && log.contains("the in-memory queue is full"),
        "{log}"
    );
    let text = scrape(&probe.base).await;
    assert_promtool_passes(&text);
    assert_eq!(value(&text, "lookout_uplink_memory_queue_results"), 8.0);
    assert_eq!(value(&text, "lookout_spool_writable"), 0.0);
    // What was made is sent, rejected, dropped or waiting (give or take the
    // result being handed over at the moment of the scrape).
    let made_total = value(&text, "lookout_uplink_results_made_total");
    let accounted = value(&text, "lookout_uplink_results_sent_total")
        + value(&text, "lookout_uplink_results_rejected_total")
        + ["spool_full", "spool_not_writable", "queue_full"]
            .iter()
            .map(|r| dropped(&text, r))
            .sum::<f64>()
        + value(&text, "lookout_spool_pending");
    assert!(
        (made_total - accounted).abs() <= 2.0,
        "made {made_total}, accounted for {accounted}\n{text}"
    );

    // Stopping: what only memory held is lost, and said so.
    let log = probe.terminate_and_log();
    assert!(
        log.contains("results lost: stopping with 8 results"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_spool_loses_nothing_while_the_aggregator_answers_and_counts_its_drops() {
    spool_in_trouble(Trouble::ReadOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_spool_loses_nothing_while_the_aggregator_answers_and_counts_its_drops() {
    spool_in_trouble(Trouble::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_set_aside_alone_never_the_backlog() {
    let (health, _, hits) = start_target().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "250ms")])).await;
    // A backlog: one spool file per run while the aggregator is away.
    fake.set_results_mode(ResultsMode::Hang);
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &["--aggregator-timeout", "1s"]);
    wait_for("a backlog of results", Duration::from_secs(20), || async {
        (made_ids(&probe.log_text()).len() >= 12).then_some(())
    })
    .await;
    assert!(!hits.health.lock().unwrap().is_empty());
    // The aggregator refuses the batch holding one of them (400), stores
    // any other.
    let made = made_ids(&probe.log_text());
    let bad = made[5].clone();
    fake.set_results_mode(ResultsMode::RejectBatchWith(bad.clone()));
    wait_for(
        "every other result to arrive",
        Duration::from_secs(30),
        || async {
            let stored: HashSet<String> = fake.stored().into_iter().collect();
            made.iter()
                .filter(|id| **id != bad)
                .all(|id| stored.contains(id))
                .then_some(())
        },
    )
    .await;
    assert!(!fake.stored().contains(&bad));
    let rejected: Vec<PathBuf> = std::fs::read_dir(spool.path().join("rejected"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let kept = std::fs::read_to_string(&rejected[0]).unwrap();
    assert!(kept.contains(&bad));
    let log = probe.log_text();
    assert!(
        log.contains(
            "sending them one file at a time, so that only a file it refuses is set aside"
        ),
        "{log}"
    );
    assert!(log.contains("and not sent again"), "{log}");
    let text = scrape(&probe.base).await;
    let kept_results = serde_json::from_str::<Vec<serde_json::Value>>(&kept)
        .unwrap()
        .len() as f64;
    assert_eq!(
        value(&text, "lookout_uplink_results_rejected_total"),
        kept_results
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_errors_or_an_oversized_document_on_the_checks_route_keep_the_checks_and_never_spin()
 {
    let (health, _, hits) = start_target().await;
    let fake = FakeAggregator::start(REGION, &checks(&[("api", &health, "1s")])).await;
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &[]);
    wait_for("the first run", Duration::from_secs(15), || async {
        (!hits.health.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    for (mode, said) in [
        (
            SpecsMode::Garbage,
            "fetching checks: the aggregator's answer is unusable: the checks document is not readable",
        ),
        (
            SpecsMode::Status(503),
            "fetching checks: the aggregator answered HTTP 503: busy; the current checks keep running",
        ),
        (
            SpecsMode::Huge,
            "fetching checks: the aggregator sent a checks document larger than 67108864 bytes; ignored; the current checks keep running",
        ),
    ] {
        fake.set_specs_mode(mode);
        // Whatever long-poll is open ends within its wait; from then on
        // every answer comes at once.
        wait_for("the answer to change", Duration::from_secs(40), || async {
            probe.log_text().contains(said).then_some(())
        })
        .await;
        let from = Instant::now();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let to = Instant::now();
        let asked = fake.specs_requests_between(from, to);
        assert!(asked <= 4, "{asked} requests in 6 s under {mode:?}");
        let runs = hits.health_between(from, to);
        assert!((5..=7).contains(&runs), "{runs} runs in 6 s under {mode:?}");
    }
    let log = probe.log_text();
    assert!(!log.contains("refused the batch"), "{log}");
    assert_eq!(
        log.matches("running the checks the aggregator sent")
            .count(),
        1,
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_refused_one_by_one_in_an_accepted_batch_are_logged_and_counted() {
    let (health, other, hits) = start_target().await;
    let fake = FakeAggregator::start(
        REGION,
        &checks(&[("api", &health, "500ms"), ("gone", &other, "500ms")]),
    )
    .await;
    fake.set_results_mode(ResultsMode::RefuseCheck("gone".into()));
    let spool = tempfile::tempdir().unwrap();
    let probe = start_probe(&fake.base, spool.path(), &[]);
    wait_for("runs of both checks", Duration::from_secs(15), || async {
        let ran = hits.health.lock().unwrap().len() >= 3 && hits.other.lock().unwrap().len() >= 3;
        ran.then_some(())
    })
    .await;
    wait_for("a refusal logged", Duration::from_secs(10), || async {
        probe
            .log_text()
            .contains(
                "of check `gone`: this region does not run it (the rest of its batch is stored)",
            )
            .then_some(())
    })
    .await;
    let log = probe.terminate_and_log();
    let made = made_ids(&log);
    let stored: HashSet<String> = fake.stored().into_iter().collect();
    let refused = made.iter().filter(|id| !stored.contains(*id)).count();
    assert!(refused >= 3, "{refused}");
    // The stopping line sums it up: nothing lost, the refused counted.
    let stopped = log
        .lines()
        .find(|l| l.contains("lookout::cmd::probe: stopped"))
        .unwrap();
    assert!(
        stopped.contains(&format!("rejected={refused}")) && stopped.contains("dropped=0"),
        "{stopped}"
    );
    assert!(
        stopped.contains(&format!("sent={}", stored.len())),
        "{stopped}"
    );
    assert_nothing_rejected(spool.path());
}

/// Waits (20 s at most) until the fake aggregator has stored every id in `made`.
async fn wait_until_stored(fake: &FakeAggregator, made: &[String]) {
    wait_for(
        "every result made to arrive",
        Duration::from_secs(20),
        || async {
            let stored: HashSet<String> = fake.stored().into_iter().collect();
            made.iter().all(|id| stored.contains(id)).then_some(())
        },
    )
    .await;
}

//! The status page of a large fleet in groups (#17), served over HTTP.
//!
//! Run with `cargo bench --bench status_page` (a release build). It writes,
//! in a temporary directory, `CHECKS` http checks (default 10,000) in
//! `GROUPS` groups by label (default 50), a day of results at one every
//! `RESULT_EVERY_MIN` minutes each, rolled up as the daemon does, an
//! incident on every 20th check (every 100th still down), three
//! announcements through the same store the API uses, and then serves the
//! real router on loopback and times `GET /` with `Accept-Encoding: gzip`:
//!
//! - cold: each request after the 5 s report cache expired (figures from
//!   storage + HTML + gzip), median of `RUNS`;
//! - warm: the report cached (HTML + gzip), median of `RUNS`;
//! - the page's bytes, gzip and plain.
//!
//! Then (#19, serving at scale), each figure printed so a quiet machine can
//! rerun it: warm p50/p99 of `GET /` and `GET /api/v1/status` (gzip and
//! plain, the time until the last byte arrived over loopback), their bytes
//! raw and gzip, the process's RSS before and after a burst of `BURST` page
//! and `BURST` JSON requests (and once more after the report cache expired
//! and a request took the new one), and `/metrics`' bytes and time (whole,
//! and in the parts `?part=lookout` and `?shard=K/N`, where the build has
//! them) with one latest result per check fed to the metrics as ingest does.
//!
//! `LOOKOUT_BENCH_CHECKS` and `LOOKOUT_BENCH_GROUPS` change the size. No
//! network beyond loopback is used; nothing runs the checks.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lookout::aggregator::Aggregator;
use lookout::config::page::{Announcement, AnnouncementUpdate, Severity, UpdateStatus};
use lookout::result::{Outcome, ProbeResult};
use lookout::rules::{CheckState, Status, Transition};
use lookout::storage::{Batch, Storage};
use uuid::Uuid;

const RUNS: usize = 10;
const RESULT_EVERY_MIN: i64 = 10;
const BATCH: usize = 20_000;
/// Requests of each kind (page, JSON) in the burst the RSS is taken around.
const BURST: usize = 100;
/// Warm requests timed for p50/p99.
const WARM_RUNS: usize = 50;
/// Shards `/metrics?shard=K/N` is scraped in.
const METRICS_SHARDS: usize = 8;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn result(
    check: &str,
    at: DateTime<Utc>,
    outcome: Outcome,
    ms: f64,
) -> Result<ProbeResult, String> {
    serde_json::from_value(serde_json::json!({
        "id": Uuid::now_v7(), "check": check, "region": "local", "probe": "bench",
        "started_at": at, "duration_ms": ms,
        "outcome": if outcome == Outcome::Ok { "ok" } else { "fail" },
        "error": (outcome != Outcome::Ok).then_some("status 500 not in [2xx]"),
    }))
    .map_err(|e| e.to_string())
}

fn transition(
    check: &str,
    from: Status,
    to: Status,
    at: DateTime<Utc>,
    incident: Uuid,
) -> Transition {
    Transition {
        id: Uuid::now_v7(),
        check: check.to_string(),
        from,
        to,
        at,
        previous_since: None,
        incident: Some(incident),
        summary: format!(
            "{check} is {} in 1 of 1 regions (local)",
            to.as_str().to_uppercase()
        ),
        regions: Default::default(),
    }
}

fn main() -> ExitCode {
    let checks = env_number("LOOKOUT_BENCH_CHECKS", 10_000);
    let groups = env_number("LOOKOUT_BENCH_GROUPS", 50).max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(checks, groups)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(checks: usize, groups: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..checks).map(|i| format!("check-{i:05}")).collect();
    let mut yaml = String::from("status_page:\n  title: Bench status\n  groups:\n");
    for g in 0..groups {
        yaml.push_str(&format!(
            "    - name: Group {g:02}\n      description: Services of team {g}\n      labels: {{ team: t{g} }}\n"
        ));
    }
    yaml.push_str("checks:\n");
    for (i, name) in names.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"http://127.0.0.1:9/{name}\" }}\n    every: 1m\n    labels: {{ team: t{} }}\n",
            i % groups
        ));
    }
    let checks_dir = dir.path().join("checks");
    let env = |_: &str| None;
    let config = lookout::config::load_from_texts(
        &[(checks_dir.join("c.yaml"), yaml)],
        &[],
        &dir.path().join("alerts"),
        &env,
    )
    .map_err(|e| format!("{e}: {:?}", e.0.first().map(ToString::to_string)))?;
    let storage = Storage::open(&dir.path().join("data")).map_err(|e| e.to_string())?;
    let now = Utc::now();
    let start = now - chrono::Duration::hours(24);
    println!(
        "status page benchmark: {checks} checks in {groups} groups, a day of results every {RESULT_EVERY_MIN} min"
    );

    let mut batch = Batch::default();
    for step in 0..(24 * 60 / RESULT_EVERY_MIN) {
        let at = start + chrono::Duration::minutes(step * RESULT_EVERY_MIN);
        for (i, name) in names.iter().enumerate() {
            let ms = 40.0 + ((step * 7 + i as i64 * 13) % 60) as f64;
            batch.results.push((result(name, at, Outcome::Ok, ms)?, at));
            if batch.results.len() >= BATCH {
                storage
                    .ingest()
                    .write_batch(std::mem::take(&mut batch))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    for (i, name) in names.iter().enumerate().filter(|(i, _)| i % 20 == 0) {
        let incident = Uuid::now_v7();
        let began = now - chrono::Duration::hours(3);
        batch
            .events
            .push(transition(name, Status::Up, Status::Down, began, incident));
        if i % 100 != 0 {
            let ended = began + chrono::Duration::minutes(12);
            batch
                .events
                .push(transition(name, Status::Down, Status::Up, ended, incident));
        }
    }
    batch.states = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let down = i % 100 == 0;
            (
                name.clone(),
                CheckState {
                    status: if down { Status::Down } else { Status::Up },
                    since: Some(now - chrono::Duration::hours(if down { 3 } else { 20 })),
                    ..CheckState::default()
                },
            )
        })
        .collect();
    storage
        .ingest()
        .write_batch(batch)
        .await
        .map_err(|e| e.to_string())?;
    while storage
        .jobs()
        .roll_up(now, 1000)
        .await
        .map_err(|e| e.to_string())?
        == 1000
    {}
    for (n, severity) in [Severity::Outage, Severity::Maintenance, Severity::Info]
        .into_iter()
        .enumerate()
    {
        storage
            .announcements()
            .put_announcement(Announcement {
                id: format!("note-{n}"),
                title: format!("Announcement {n}"),
                severity,
                checks: vec![names[n * 100].clone()],
                groups: vec!["Group 00".to_string()],
                incident: None,
                updates: [UpdateStatus::Investigating, UpdateStatus::Identified]
                    .into_iter()
                    .map(|status| AnnouncementUpdate {
                        at: now,
                        status,
                        text: "We are **on it**; details [here](https://example.com/).".to_string(),
                    })
                    .collect(),
                created_at: now,
                source: "api".to_string(),
            })
            .await
            .map_err(|e| e.to_string())?;
    }

    let aggregator = Arc::new(
        Aggregator::new(Arc::new(config), storage.clone())
            .await
            .map_err(|e| e.to_string())?,
    );
    // What ingest would have told the metrics: each check's latest result.
    for name in &names {
        aggregator
            .metrics()
            .observe_result(latest_result(name, now)?);
    }
    let app = lookout::api::router(aggregator, None, false);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    lookout::install_crypto_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("http://{addr}/");
    let get = |gzip: bool| fetch(&http, &url, gzip);
    let rss_idle = rss_kib();
    let (_, plain_bytes, _) = get(false).await?;
    let mut warm = Vec::new();
    let mut gzip_bytes = 0;
    for _ in 0..RUNS {
        let (took, bytes, encoding) = get(true).await?;
        if encoding != "gzip" {
            return Err(format!("the page came back as {encoding}, not gzip"));
        }
        gzip_bytes = bytes;
        warm.push(took);
    }
    let mut cold = Vec::new();
    for _ in 0..RUNS {
        // Past the report cache, so every request computes the figures.
        tokio::time::sleep(lookout::limits::STATUS_CACHE_FOR + Duration::from_millis(200)).await;
        cold.push(get(true).await?.0);
    }
    let median = |mut list: Vec<Duration>| {
        list.sort();
        (list[list.len() / 2], list[list.len() - 1])
    };
    let (cold_median, cold_max) = median(cold);
    let (warm_median, warm_max) = median(warm);
    println!(
        "GET / gzip, {RUNS} runs: cold (figures + HTML + gzip) median {:.1} ms, max {:.1} ms",
        ms(cold_median),
        ms(cold_max)
    );
    println!(
        "GET / gzip, {RUNS} runs: warm (report cached: HTML + gzip) median {:.1} ms, max {:.1} ms",
        ms(warm_median),
        ms(warm_max)
    );
    println!(
        "page: {:.1} KiB gzip, {:.1} KiB plain",
        gzip_bytes as f64 / 1024.0,
        plain_bytes as f64 / 1024.0
    );

    // Warm p50/p99 of the page and the JSON, gzip and plain: each series
    // starts right after one request took a fresh report, so all of it
    // falls within the report cache.
    let json_url = format!("http://{addr}/api/v1/status");
    for (what, url) in [("GET /", url.as_str()), ("GET /api/v1/status", &json_url)] {
        for gzip in [true, false] {
            let (_, bytes, _) = fetch(&http, url, gzip).await?;
            let mut times = Vec::new();
            let began = Instant::now();
            while times.len() < WARM_RUNS
                && began.elapsed() + Duration::from_millis(500) < lookout::limits::STATUS_CACHE_FOR
            {
                times.push(fetch(&http, url, gzip).await?.0);
            }
            let (p50, p99) = percentiles(times.clone());
            println!(
                "{what} {}, warm, {} runs: p50 {:.1} ms, p99 {:.1} ms; {:.1} KiB",
                if gzip { "gzip" } else { "plain" },
                times.len(),
                ms(p50),
                ms(p99),
                bytes as f64 / 1024.0
            );
        }
    }

    // RSS around a burst of page and JSON views.
    tokio::time::sleep(lookout::limits::STATUS_CACHE_FOR + Duration::from_millis(200)).await;
    fetch(&http, &url, true).await?;
    fetch(&http, &json_url, true).await?;
    let rss_before = rss_kib();
    let burst = Instant::now();
    for i in 0..BURST {
        // Half the burst without gzip, as a plain client (curl) asks.
        let gzip = i % 2 == 0;
        fetch(&http, &url, gzip).await?;
        fetch(&http, &json_url, gzip).await?;
    }
    let burst_took = burst.elapsed();
    let rss_after = rss_kib();
    tokio::time::sleep(lookout::limits::STATUS_CACHE_FOR + Duration::from_millis(200)).await;
    fetch(&http, &url, true).await?;
    fetch(&http, &json_url, true).await?;
    let rss_settled = rss_kib();
    println!(
        "RSS: {:.1} MiB before any request; {:.1} MiB before {BURST} page + {BURST} JSON requests (half gzip, {:.1} s), {:.1} MiB after ({:+.1} %), {:.1} MiB after the next report",
        mib(rss_idle),
        mib(rss_before),
        burst_took.as_secs_f64(),
        mib(rss_after),
        (rss_after as f64 / rss_before.max(1) as f64 - 1.0) * 100.0,
        mib(rss_settled)
    );

    // How much of that the allocator holds free: glibc's malloc_trim hands
    // free pages back; what stays is live or fragmented (a diagnosis only:
    // the daemon does what its own code does).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks and releases the allocator's own
        // free memory; it takes no pointers of ours.
        unsafe { nix::libc::malloc_trim(0) };
        println!(
            "RSS after malloc_trim(0) (free memory glibc kept): {:.1} MiB ({})",
            mib(rss_kib()),
            rss_parts()
        );
    }

    // /metrics: whole, then in parts where the build has them.
    let metrics_url = format!("http://{addr}/metrics");
    let scrape = |query: String| {
        let url = format!("{metrics_url}{query}");
        let http = http.clone();
        async move {
            let mut times = Vec::new();
            let mut bytes = 0;
            let mut code = 0;
            for _ in 0..5 {
                let began = Instant::now();
                let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                code = response.status().as_u16();
                bytes = response.bytes().await.map_err(|e| e.to_string())?.len();
                times.push(began.elapsed());
            }
            let (p50, p99) = percentiles(times);
            Ok::<_, String>((code, bytes, p50, p99))
        }
    };
    let (_, bytes, p50, max) = scrape(String::new()).await?;
    println!(
        "GET /metrics (plain text), 5 runs: {:.2} MiB, median {:.0} ms, max {:.0} ms",
        bytes as f64 / (1 << 20) as f64,
        ms(p50),
        ms(max)
    );
    let (code, own, p50, _) = scrape("?part=lookout".to_string()).await?;
    if code == 200 {
        println!(
            "GET /metrics?part=lookout: {:.1} KiB, median {:.1} ms",
            own as f64 / 1024.0,
            ms(p50)
        );
        let mut largest = (0, Duration::ZERO);
        let mut total = own;
        for k in 0..METRICS_SHARDS {
            let (_, part, p50, _) = scrape(format!("?shard={k}/{METRICS_SHARDS}")).await?;
            total += part;
            largest = largest.max((part, p50));
        }
        println!(
            "GET /metrics?shard=K/{METRICS_SHARDS}: largest {:.2} MiB (median {:.0} ms); parts together {:.2} MiB",
            largest.0 as f64 / (1 << 20) as f64,
            ms(largest.1),
            total as f64 / (1 << 20) as f64
        );
    } else {
        println!("GET /metrics?part=lookout: {code} (no parts in this build)");
    }
    Ok(())
}

/// A check's latest result as an http probe reports it.
fn latest_result(check: &str, at: DateTime<Utc>) -> Result<ProbeResult, String> {
    serde_json::from_value(serde_json::json!({
        "id": Uuid::now_v7(), "check": check, "region": "local", "probe": "bench",
        "started_at": at, "duration_ms": 42.0, "outcome": "ok", "status": 200,
        "phases_ms": { "dns": 1.0, "connect": 2.0, "ttfb": 30.0, "transfer": 9.0 },
        "address": "127.0.0.1", "ip_family": "ipv4", "http_version": "1.1",
    }))
    .map_err(|e| e.to_string())
}

/// One request to the end of its body: (time, bytes, content-encoding).
async fn fetch(
    http: &reqwest::Client,
    url: &str,
    gzip: bool,
) -> Result<(Duration, usize, String), String> {
    let request = http.get(url);
    let request = if gzip {
        request.header("accept-encoding", "gzip")
    } else {
        request
    };
    let began = Instant::now();
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("{url}: {}", response.status()));
    }
    let encoding = response
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    Ok((began.elapsed(), body.len(), encoding))
}

/// (p50, p99) of a list of times.
fn percentiles(mut list: Vec<Duration>) -> (Duration, Duration) {
    list.sort();
    if list.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let at = |q: f64| list[((list.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// This process's resident set, KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// RssAnon and RssFile of this process, as /proc says them.
fn rss_parts() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .map(|s| {
            s.lines()
                .filter(|l| l.starts_with("RssAnon:") || l.starts_with("RssFile:"))
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

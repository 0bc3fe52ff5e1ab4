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
    let get = |gzip: bool| {
        let request = http.get(&url);
        let request = if gzip {
            request.header("accept-encoding", "gzip")
        } else {
            request
        };
        async move {
            let began = Instant::now();
            let response = request.send().await.map_err(|e| e.to_string())?;
            let encoding = response
                .headers()
                .get("content-encoding")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity")
                .to_string();
            let body = response.bytes().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((began.elapsed(), body.len(), encoding))
        }
    };
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
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

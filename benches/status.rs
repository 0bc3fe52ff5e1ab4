//! How long the status page takes with a large history.
//!
//! Run with `cargo bench --bench status` (a release build). It builds, in a
//! temporary directory, the database a long-running Lookout would have:
//! `CHECKS` http checks (default 1,000) with `DAYS` days (default 30) of
//! results at one a minute each (43.2 million rows at the defaults), written
//! through `Storage::write_batch` in batches of `BATCH`; an incident (10
//! minutes down) every three days per check, so there are events to read;
//! and each check's state. It then rolls the finished hours up with
//! `Storage::roll_up`, as the daemon's roll-up task does, and times:
//!
//! - the roll-up of the whole backlog (what a first start on old data costs);
//! - `Aggregator::compute_status` (every query and figure: 90 days of
//!   events, 24 h of roll-ups, the raw results of the hour not rolled up)
//!   and `status::page::render` (the HTML), cold and then `RUNS` times;
//! - the size of the HTML and of the JSON twin.
//!
//! `LOOKOUT_BENCH_CHECKS` and `LOOKOUT_BENCH_DAYS` change the size (a
//! smaller run for a quick look). Everything is bounded by the sizes; no
//! network is used.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lookout::aggregator::Aggregator;
use lookout::result::{Outcome, Phases, ProbeResult};
use lookout::rules::{CheckState, Status, Transition};
use lookout::storage::{Batch, Storage};
use uuid::Uuid;

const RESULTS_PER_HOUR: i64 = 60;
const BATCH: usize = 20_000;
const RUNS: usize = 10;
const INCIDENT_EVERY_HOURS: i64 = 72;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn result(check: &str, at: DateTime<Utc>, outcome: Outcome, ms: f64) -> ProbeResult {
    ProbeResult {
        id: Uuid::now_v7(),
        check: check.to_string(),
        region: "local".to_string(),
        probe: "bench".to_string(),
        started_at: at,
        duration_ms: ms,
        outcome,
        status: Some(if outcome == Outcome::Ok { 200 } else { 500 }),
        phases_ms: Phases {
            dns: None,
            connect: Some(ms * 0.3),
            tls: None,
            ttfb: Some(ms * 0.6),
            transfer: Some(ms * 0.1),
        },
        error: (outcome != Outcome::Ok).then(|| "status 500 not in [2xx]".to_string()),
        ..bench_defaults()
    }
}

/// Fields a newer ProbeResult may add keep their defaults.
fn bench_defaults() -> ProbeResult {
    serde_json::from_value(serde_json::json!({
        "id": Uuid::nil(), "check": "", "region": "", "probe": "",
        "started_at": "2026-01-01T00:00:00Z", "duration_ms": 0.0, "outcome": "ok"
    }))
    .expect("a minimal result decodes")
}

fn transition(
    check: &str,
    from: Status,
    to: Status,
    at: DateTime<Utc>,
    incident: Option<Uuid>,
) -> Transition {
    Transition {
        id: Uuid::now_v7(),
        check: check.to_string(),
        from,
        to,
        at,
        previous_since: None,
        incident,
        summary: format!(
            "{check} is {} in 1 of 1 regions (local): status 500 not in [2xx]",
            to.as_str().to_uppercase()
        ),
        regions: Default::default(),
    }
}

fn main() -> ExitCode {
    let checks = env_number("LOOKOUT_BENCH_CHECKS", 1000);
    let days = env_number("LOOKOUT_BENCH_DAYS", 30);
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
    match runtime.block_on(run(checks, days)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(checks: usize, days: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(config_dir.join("checks")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(config_dir.join("alerts")).map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..checks).map(|i| format!("check-{i:04}")).collect();
    let yaml: String = names
        .iter()
        .map(|name| format!("  - name: {name}\n    http: {{ url: \"http://127.0.0.1:9/{name}\" }}\n    every: 1m\n"))
        .collect();
    std::fs::write(config_dir.join("checks/c.yaml"), format!("checks:\n{yaml}"))
        .map_err(|e| e.to_string())?;
    let env = |_: &str| None;
    let config = lookout::config::load_with_env(
        &config_dir.join("checks"),
        &config_dir.join("alerts"),
        &env,
    )
    .map_err(|e| format!("{e}"))?;
    let storage = Storage::open(&dir.path().join("data")).map_err(|e| e.to_string())?;

    let now = Utc::now();
    let start = now - chrono::Duration::days(days as i64);
    let minutes = days as i64 * 24 * RESULTS_PER_HOUR;
    println!(
        "status page benchmark: {checks} checks, {days} days at 1 result/min = {} results",
        checks as i64 * minutes
    );

    // History, minute by minute, every check; an incident now and then.
    let writing = Instant::now();
    let mut batch = Batch::default();
    let mut written = 0u64;
    for minute in 0..minutes {
        let at = start + chrono::Duration::minutes(minute);
        for (i, name) in names.iter().enumerate() {
            // Each check's incidents at its own phase: 10 minutes down every 3 days.
            let phase = (minute + i as i64 * 37) % (INCIDENT_EVERY_HOURS * 60);
            let down = phase < 10;
            let ms = 40.0 + ((minute * 7 + i as i64 * 13) % 60) as f64;
            let outcome = if down { Outcome::Fail } else { Outcome::Ok };
            batch.results.push((result(name, at, outcome, ms), at));
            if phase == 0 {
                let incident = Some(Uuid::now_v7());
                batch
                    .events
                    .push(transition(name, Status::Up, Status::Down, at, incident));
                batch.events.push(transition(
                    name,
                    Status::Down,
                    Status::Up,
                    at + chrono::Duration::minutes(10),
                    incident,
                ));
            }
            if batch.results.len() >= BATCH {
                written += batch.results.len() as u64;
                storage
                    .ingest()
                    .write_batch(std::mem::take(&mut batch))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    batch.states = names
        .iter()
        .map(|name| {
            (
                name.clone(),
                CheckState {
                    status: Status::Up,
                    since: Some(now - chrono::Duration::hours(5)),
                    ..CheckState::default()
                },
            )
        })
        .collect();
    written += batch.results.len() as u64;
    storage
        .ingest()
        .write_batch(batch)
        .await
        .map_err(|e| e.to_string())?;
    let wrote = writing.elapsed();
    println!(
        "wrote {written} results in {:.1} s ({:.0} results/s)",
        wrote.as_secs_f64(),
        written as f64 / wrote.as_secs_f64()
    );

    let rolling = Instant::now();
    let mut hours = 0;
    loop {
        let done = storage
            .jobs()
            .roll_up(Utc::now(), 24)
            .await
            .map_err(|e| e.to_string())?;
        hours += done;
        if done == 0 {
            break;
        }
    }
    println!(
        "rolled up {hours} hours of backlog in {:.1} s",
        rolling.elapsed().as_secs_f64()
    );

    let aggregator = Arc::new(
        Aggregator::new(Arc::new(config), storage.clone())
            .await
            .map_err(|e| e.to_string())?,
    );
    let mut timings = Vec::new();
    let mut html_bytes = 0;
    let mut json_bytes = 0;
    for run in 0..=RUNS {
        let began = Instant::now();
        let report = aggregator
            .compute_status(Utc::now())
            .await
            .map_err(|e| e.to_string())?;
        let computed = began.elapsed();
        let html = lookout::status::page::render(&report, None, None).into_string();
        let total = began.elapsed();
        html_bytes = html.len();
        json_bytes = serde_json::to_string(&report)
            .map_err(|e| e.to_string())?
            .len();
        if run == 0 {
            println!(
                "cold: figures {:.1} ms, with HTML {:.1} ms",
                ms(computed),
                ms(total)
            );
        } else {
            timings.push((computed, total));
        }
        if report.checks.len() != checks {
            return Err(format!(
                "the report has {} checks, not {checks}",
                report.checks.len()
            ));
        }
    }
    timings.sort_by_key(|(_, total)| *total);
    let median = timings[timings.len() / 2];
    let worst = timings[timings.len() - 1];
    println!(
        "warm, {RUNS} runs: median figures {:.1} ms + HTML = {:.1} ms; max {:.1} ms",
        ms(median.0),
        ms(median.1),
        ms(worst.1)
    );
    println!(
        "page: {:.1} KiB of HTML, {:.1} KiB of JSON",
        html_bytes as f64 / 1024.0,
        json_bytes as f64 / 1024.0
    );
    let db = dir.path().join("data/lookout.db");
    if let Ok(meta) = std::fs::metadata(&db) {
        println!(
            "database: {:.2} GiB",
            meta.len() as f64 / (1u64 << 30) as f64
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

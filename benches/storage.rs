//! What a stored result costs on disk, on SQLite (release build):
//!
//! `cargo bench --bench storage` — stores `LOOKOUT_BENCH_ROUNDS` (default
//! 50) rounds of ordinary https results of `LOOKOUT_BENCH_CHECKS` (default
//! 1,000) checks in 3 regions, one round a minute, through the storage
//! API into a real `lookout.db` in a temp dir, in batches of 500 (a
//! probe's). Each result is what the probe makes of a good run: status
//! 200, five phase timings, the address and its family, HTTP/1.1, the
//! certificate's expiry, the probe's id for the run. Then checkpoints the
//! WAL and measures the file, VACUUMs and measures again; prints bytes per
//! result (the file less an empty database's, over the results), the
//! 30-day size for 10,000 checks a minute at that rate, and how fast the
//! batches were written.
//!
//! A second, mixed run makes every tenth result fail with one of a few
//! error texts, to show a repeated error is stored once (the lookup
//! table's rows are counted).

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use lookout::result::{Outcome, Phases, ProbeResult, round_ms};
use lookout::storage::{Batch, Storage};

const REGIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];
/// What a probe sends in one batch (`limits::RESULT_BATCH_MAX`).
const BATCH: usize = 500;
const ERRORS: [&str; 4] = [
    "connect: connection refused (os error 111)",
    "status 503 not in [2xx]",
    "timed out after 10s waiting for the response headers",
    "dns: no record found for name",
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small deterministic generator (no dependency, same figures each run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A timing between `low` and `high` ms, in whole µs as a probe has it.
    fn ms(&mut self, low: f64, high: f64) -> f64 {
        let span = ((high - low) * 1000.0) as u64;
        let us = (low * 1000.0) as u64 + self.next() % span.max(1);
        round_ms(std::time::Duration::from_micros(us))
    }
}

fn bench_defaults() -> ProbeResult {
    serde_json::from_value(serde_json::json!({
        "id": uuid::Uuid::nil(), "check": "", "region": "", "probe": "",
        "started_at": "2026-01-01T00:00:00Z", "duration_ms": 0.0, "outcome": "ok"
    }))
    .expect("a minimal result decodes")
}

fn https_result(
    rng: &mut Rng,
    check: usize,
    region: &str,
    started_at: DateTime<Utc>,
    failing: Option<&str>,
) -> ProbeResult {
    let phases = Phases {
        dns: Some(rng.ms(0.5, 20.0)),
        connect: Some(rng.ms(1.0, 40.0)),
        tls: Some(rng.ms(5.0, 80.0)),
        ttfb: Some(rng.ms(10.0, 300.0)),
        transfer: Some(rng.ms(0.1, 20.0)),
    };
    let total = [
        phases.dns,
        phases.connect,
        phases.tls,
        phases.ttfb,
        phases.transfer,
    ]
    .iter()
    .flatten()
    .sum::<f64>();
    let duration_ms = round_ms(std::time::Duration::from_micros(
        (total * 1000.0).round() as u64
    ));
    let check = format!("check-{check:04}");
    let probe = format!("probe-{region}");
    let mut result = ProbeResult {
        id: ProbeResult::run_id(&check, region, &probe, started_at),
        check,
        region: region.to_string(),
        probe,
        started_at,
        duration_ms,
        outcome: Outcome::Ok,
        status: Some(200),
        phases_ms: phases,
        address: Some(format!("203.0.113.{}", rng.next() % 250 + 1)),
        ip_family: Some("ipv4".into()),
        http_version: Some("1.1".into()),
        cert_expiry: DateTime::from_timestamp(1_790_000_000, 0),
        ..bench_defaults()
    };
    if let Some(error) = failing {
        result.outcome = if error.starts_with("status") {
            Outcome::Fail
        } else {
            Outcome::Error
        };
        result.status = error.starts_with("status").then_some(503);
        result.error = Some(error.to_string());
    }
    result
}

fn file_bytes(dir: &Path) -> u64 {
    ["lookout.db", "lookout.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

struct Run {
    results: usize,
    write_secs: f64,
    checkpointed: u64,
    vacuumed: u64,
    empty: u64,
    texts: i64,
    failing: usize,
}

async fn run(checks: usize, rounds: usize, fail_every: Option<usize>) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let storage = Storage::open(dir.path()).map_err(|e| e.to_string())?;
    let empty = {
        let conn =
            rusqlite::Connection::open(dir.path().join("lookout.db")).map_err(|e| e.to_string())?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| e.to_string())?;
        file_bytes(dir.path())
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let start = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
    let mut batch = Batch::default();
    let mut results = 0;
    let mut failing = 0;
    let mut write_secs = 0.0;
    for round in 0..rounds {
        for check in 0..checks {
            for region in REGIONS {
                // Checks spread over the minute, a little jitter per region.
                let offset_ms = (check * 60_000 / checks) as i64 + (rng.next() % 50) as i64;
                let at =
                    start + Duration::minutes(round as i64) + Duration::milliseconds(offset_ms);
                let error = fail_every
                    .filter(|every| results % every == 0)
                    .map(|_| ERRORS[(rng.next() % ERRORS.len() as u64) as usize]);
                failing += usize::from(error.is_some());
                let result = https_result(&mut rng, check, region, at, error);
                let received = at + Duration::milliseconds(300 + (rng.next() % 700) as i64);
                batch.results.push((result, received));
                results += 1;
                if batch.results.len() == BATCH {
                    let full = std::mem::take(&mut batch);
                    let began = Instant::now();
                    storage
                        .ingest()
                        .write_batch(full)
                        .await
                        .map_err(|e| e.to_string())?;
                    write_secs += began.elapsed().as_secs_f64();
                }
            }
        }
    }
    if !batch.results.is_empty() {
        let began = Instant::now();
        storage
            .ingest()
            .write_batch(batch)
            .await
            .map_err(|e| e.to_string())?;
        write_secs += began.elapsed().as_secs_f64();
    }
    drop(storage);
    let conn =
        rusqlite::Connection::open(dir.path().join("lookout.db")).map_err(|e| e.to_string())?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| e.to_string())?;
    let checkpointed = file_bytes(dir.path());
    conn.execute_batch("VACUUM").map_err(|e| e.to_string())?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(|e| e.to_string())?;
    let vacuumed = file_bytes(dir.path());
    // The lookup table of repeated texts; older schemas have none.
    let texts = conn
        .query_row("SELECT COUNT(*) FROM result_texts", [], |row| row.get(0))
        .unwrap_or(-1);
    Ok(Run {
        results,
        write_secs,
        checkpointed,
        vacuumed,
        empty,
        texts,
        failing,
    })
}

fn report(name: &str, run: &Run) {
    let per = |bytes: u64| bytes.saturating_sub(run.empty) as f64 / run.results as f64;
    let month = 10_000.0 * 60.0 * 24.0 * 30.0;
    println!(
        "{name}: {} results ({} failing), written at {:.0} results/s",
        run.results,
        run.failing,
        run.results as f64 / run.write_secs
    );
    println!(
        "  after checkpoint: {} bytes = {:.1} bytes/result; after VACUUM: {} bytes = {:.1} bytes/result (an empty database, {} bytes, not counted)",
        run.checkpointed,
        per(run.checkpointed),
        run.vacuumed,
        per(run.vacuumed),
        run.empty
    );
    println!(
        "  30 days of 10,000 checks a minute (432 M results): {:.1} GB vacuumed, {:.1} GB as written; lookup texts stored: {}",
        per(run.vacuumed) * month / 1e9,
        per(run.checkpointed) * month / 1e9,
        run.texts
    );
}

fn main() -> ExitCode {
    let checks = env_number("LOOKOUT_BENCH_CHECKS", 1000);
    let rounds = env_number("LOOKOUT_BENCH_ROUNDS", 50);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let ordinary = run(checks, rounds, None).await?;
        report(
            &format!("ordinary https, {checks} checks x 3 regions x {rounds} rounds"),
            &ordinary,
        );
        let mixed = run(checks, rounds, Some(10)).await?;
        report(
            &format!("mixed (every 10th fails, {} error texts)", ERRORS.len()),
            &mixed,
        );
        Ok::<(), String>(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("storage bench: {error}");
            ExitCode::FAILURE
        }
    }
}

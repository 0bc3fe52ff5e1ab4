//! `lookout check`: run checks once, here and now, and print what happened.
//! The tool for writing a check and for asking "is it up right now?".

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use futures_util::{StreamExt, stream};

use crate::limits;
use crate::probe::{ProbeIdentity, Runner};
use crate::result::{Outcome, StepResult};
use crate::rules::degraded_reason;

pub async fn run(
    checks_dir: &Path,
    alerts_dir: &Path,
    names: &[String],
    json: bool,
    region: &str,
    browser: &super::BrowserArgs,
) -> ExitCode {
    let config = match super::load_or_report(checks_dir, alerts_dir) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let mut selected = Vec::new();
    for name in names {
        match config.check(name) {
            Some(check) => selected.push(check.clone()),
            None => {
                let known: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
                eprintln!(
                    "no check named `{name}`; known checks: {}",
                    known.join(", ")
                );
                return ExitCode::from(super::EXIT_FAILURE);
            }
        }
    }
    if names.is_empty() {
        selected = config.checks.clone();
    }
    // Heartbeats are pushed to the aggregator; there is nothing to run here.
    let (selected, pushed): (Vec<_>, Vec<_>) = selected.into_iter().partition(|c| c.is_probed());
    for check in &pushed {
        eprintln!(
            "{}: a heartbeat, pushed to the aggregator (POST /ping/TOKEN); not run here",
            check.name
        );
    }
    let identity = ProbeIdentity {
        region: region.to_string(),
        probe: crate::hostname(),
    };
    let pool = browser.pool();
    let mut runner = Runner::new(identity, Arc::clone(&config.secrets)).with_browser(pool.clone());
    if !json {
        // Browser steps, a line each as it finishes (stdout stays the table).
        runner =
            runner.with_step_observer(Arc::new(|check: &str, index: usize, step: &StepResult| {
                eprintln!("{}", describe_step(check, index, step));
            }));
    }
    // Many at once, each bounded by its own timeout; the cap keeps a large
    // config within the process's file descriptors.
    let runs = stream::iter(selected.iter().map(|check| runner.run(check)))
        .buffered(limits::PROBE_CONCURRENCY_DEFAULT)
        .collect::<Vec<_>>();
    // Ctrl-C or SIGTERM still stops the browsers this run started (their
    // chromedriver is in its own process group, out of the signal's reach).
    let interrupted = tokio_util::sync::CancellationToken::new();
    let signals = tokio::spawn(super::serve::shutdown_on_signal(interrupted.clone()));
    let results: Vec<_> = tokio::select! {
        results = runs => results,
        _ = interrupted.cancelled() => {
            pool.shutdown().await;
            eprintln!("interrupted: no result");
            return ExitCode::from(super::EXIT_FAILURE);
        }
    };
    signals.abort();
    pool.shutdown().await;
    let mut failed = 0;
    let width = selected
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    if !json {
        println!("{:<width$}  {:<8}  {:>9}  DETAIL", "CHECK", "OUTCOME", "MS");
    }
    for (check, result) in selected.iter().zip(&results) {
        if result.outcome != Outcome::Ok {
            failed += 1;
        }
        if json {
            match serde_json::to_string(result) {
                Ok(line) => println!("{line}"),
                Err(error) => eprintln!("cannot encode result: {error}"),
            }
        } else {
            let degraded = degraded_reason(result, check.expect.max_latency);
            let mut detail = match (result.status, &result.error) {
                (Some(status), Some(error)) => format!("HTTP {status}: {error}"),
                (Some(status), None) => format!("HTTP {status}"),
                (None, Some(error)) => error.clone(),
                (None, None) => String::new(),
            };
            if let Some(reason) = degraded {
                detail.push_str(&format!(" (degraded: {reason})"));
            }
            if let Some(expiry) = result.cert_expiry {
                detail.push_str(&format!(
                    " [certificate expires {}]",
                    expiry.format("%Y-%m-%d")
                ));
            }
            for note in &result.notes {
                detail.push_str(&format!(" [{note}]"));
            }
            if let Some(url) = result.page.as_ref().and_then(|p| p.url.as_ref()) {
                detail.push_str(&format!(" [page {url}]"));
            }
            if let (Some(address), Some(family)) = (&result.address, &result.ip_family) {
                detail.push_str(&format!(" [{family} {address}]"));
            }
            if let Some(version) = &result.http_version {
                detail.push_str(&format!(" [HTTP/{version}]"));
            }
            println!(
                "{:<width$}  {:<8}  {:>9.1}  {}",
                check.name,
                result.outcome.as_str(),
                result.duration_ms,
                detail.trim()
            );
        }
    }
    if failed > 0 {
        if !json {
            eprintln!("{failed} of {} check(s) failed", results.len());
        }
        ExitCode::from(super::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// `login-flow  step 2 fill #email  fail  12ms: no element matches`.
fn describe_step(check: &str, index: usize, step: &StepResult) -> String {
    let mut line = format!(
        "{check}  step {index} {}  {}  {:.0}ms",
        step.name,
        if step.ok { "ok" } else { "FAIL" },
        step.ms
    );
    if let Some(load) = step.load_ms {
        line.push_str(&format!(" (page load {load:.0}ms)"));
    }
    if let Some(error) = &step.error {
        line.push_str(&format!(": {error}"));
    }
    line
}

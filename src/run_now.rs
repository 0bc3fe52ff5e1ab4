//! Run-now requests (fast confirmation), run by the probe beside the
//! check's schedule. The aggregator asks a region to run a check at once
//! when another region saw it fail or come back; the run is made now, its
//! result shipped like any other, and the check's own cadence is left as
//! it was. Regions thus keep their own phases, so whichever region's tick
//! comes first sees the next change (an outage, or its end), and the
//! others confirm it in about one round-trip.
//!
//! Bounded: a check already running on request is not started twice (the
//! run in progress answers), at most `limits::RUN_NOW_RUNS_PER_INTERVAL_MAX`
//! runs of one check per interval, at most `limits::RUN_NOW_CONCURRENT_MAX`
//! at once; past that a request waits for the check's tick. The aggregator
//! bounds what it asks too (`rules::confirmation_targets`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Check;
use crate::limits;
use crate::probe::Runner;
use crate::result::ProbeResult;
use crate::schedule::Schedule;
use crate::scheduler::CheckSet;

/// The span within which a check's run-now runs are counted: its interval,
/// or a minute for cron schedules (their finest step).
fn budget_span(check: &Check) -> Duration {
    match &check.schedule {
        Schedule::Every(every) => (*every).max(limits::RUN_NOW_FLOOR_MIN),
        Schedule::Cron(_) => Duration::from_secs(60),
    }
}

/// Whether one more run fits the budget at `now`: fewer than `max` runs
/// within the last `span` (those in `recent`, oldest first). Records it
/// when it does; forgets what is older than `span`.
fn admit(recent: &mut VecDeque<Instant>, now: Instant, span: Duration, max: usize) -> bool {
    while recent
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) >= span)
    {
        recent.pop_front();
    }
    if recent.len() >= max {
        return false;
    }
    recent.push_back(now);
    true
}

/// Runs the checks named on `requests` now (those `checks` holds), until
/// `cancel` fires or the requests end; results go to `results`.
pub async fn run_requests(
    runner: Runner,
    checks: watch::Receiver<CheckSet>,
    mut requests: mpsc::Receiver<String>,
    results: mpsc::Sender<ProbeResult>,
    cancel: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits::RUN_NOW_CONCURRENT_MAX));
    let mut recent: HashMap<String, VecDeque<Instant>> = HashMap::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        tokio::select! {
            name = requests.recv() => {
                let Some(name) = name else { break };
                let (check, secrets) = {
                    let set = checks.borrow();
                    let Some(check) = set.checks.iter().find(|c| c.name == name).cloned() else {
                        continue; // not (or no longer) one of this region's checks
                    };
                    (check, set.secrets.clone())
                };
                if running.contains(&name) {
                    continue; // the run in progress answers this request too
                }
                let now = Instant::now();
                recent.retain(|_, runs| {
                    runs.back().is_some_and(|at| now.saturating_duration_since(*at) < Duration::from_secs(3600))
                });
                let budget = recent.entry(name.clone()).or_default();
                if !admit(budget, now, budget_span(&check), limits::RUN_NOW_RUNS_PER_INTERVAL_MAX) {
                    tracing::debug!(check = %name, "asked to run now too often within its interval; waiting for its tick");
                    continue;
                }
                tracing::debug!(check = %name, "running now, as the aggregator asked");
                running.insert(name.clone());
                let runner = runner.with_secrets(secrets);
                let (permits, results, cancel) = (permits.clone(), results.clone(), cancel.clone());
                tasks.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else {
                        return name;
                    };
                    let result = tokio::select! {
                        result = runner.run(&check) => result,
                        _ = cancel.cancelled() => return name,
                    };
                    tokio::select! {
                        _ = results.send(result) => {}
                        _ = cancel.cancelled() => {}
                    }
                    name
                });
            }
            Some(joined) = tasks.join_next() => {
                if let Ok(name) = joined {
                    running.remove(&name);
                }
            }
            _ = cancel.cancelled() => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_a_few_runs_per_interval_and_forgets_old_ones() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let span = Duration::from_secs(5);
        // (when, admitted): four within 5 s, the fifth refused, one more
        // once the first is 5 s old.
        let cases = [
            (0, true),
            (10, true),
            (2_000, true),
            (2_010, true),
            (3_000, false),
            (4_999, false),
            (5_000, true),
            (5_001, false),
            (10_020, true),
            (10_021, true),
        ];
        let mut recent = VecDeque::new();
        for (ms, admitted) in cases {
            assert_eq!(
                admit(&mut recent, at(ms), span, 4),
                admitted,
                "a run at {ms} ms"
            );
        }
    }
}

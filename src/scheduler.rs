//! Runs every check on its own cadence and hands the results on.
//!
//! One task per check, so a slow or hung check holds only its own task (and,
//! for at most its timeout, one of the concurrency permits). Interval checks
//! start at a stable offset within their interval, derived from their
//! region and name, so a thousand checks at 30s spread over the 30 seconds
//! instead of firing together, and the regions running one check keep
//! phases of their own. A run still going at its next tick skips that tick:
//! the next deadline is the first one after the run ends, so there is never
//! a burst of catch-up runs. Deadlines are tokio `Instant`s (monotonic);
//! cron times are computed on the wall clock and converted once per run.
//!
//! The set of checks can change while it runs (a remote probe is sent new
//! specs, `serve` reloads its config): only the tasks of checks that were
//! added, removed or changed are started or stopped, and an unchanged check
//! keeps its cadence. Run-now requests (the aggregator's fast confirmation)
//! are not the scheduler's: `run_now` runs them beside it, so that a check's
//! cadence is never moved by them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Check, Secrets};
use crate::probe::Runner;
use crate::result::ProbeResult;
use crate::schedule::Schedule;
/// Where an interval check first runs after its probe starts; public so
/// tests can pick a check name that runs at once in every region.
pub use crate::schedule::stable_offset;

/// The checks to run, with the secrets their results must mask.
#[derive(Clone, Debug, Default)]
pub struct CheckSet {
    pub checks: Vec<Arc<Check>>,
    pub secrets: Arc<Secrets>,
}

/// Called with how late each run started against its deadline: timer
/// resolution (tokio rounds deadlines up to the next millisecond), runtime
/// load, and any wait for a concurrency permit.
pub type LatenessObserver = Arc<dyn Fn(Duration) + Send + Sync>;

pub struct Scheduler {
    pub runner: Runner,
    pub results: mpsc::Sender<ProbeResult>,
    pub concurrency: usize,
    pub on_lateness: Option<LatenessObserver>,
}

impl Scheduler {
    /// Runs a fixed set of `checks` until `cancel` fires.
    pub async fn run(self, checks: Vec<Arc<Check>>, cancel: CancellationToken) {
        let secrets = Arc::new(Secrets::default());
        let (_keep, updates) = watch::channel(CheckSet { checks, secrets });
        self.run_updating(updates, cancel).await;
    }

    /// Runs the checks `updates` holds, following its changes. Returns when
    /// `cancel` fires and every check task has stopped (a run in progress is
    /// abandoned at cancellation).
    pub async fn run_updating(
        self,
        mut updates: watch::Receiver<CheckSet>,
        cancel: CancellationToken,
    ) {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let epoch = Instant::now();
        let mut tasks = JoinSet::new();
        let mut running: HashMap<String, RunningCheck> = HashMap::new();
        let mut updates_open = true;
        loop {
            let set = updates.borrow_and_update().clone();
            let runner = self.runner.with_secrets(set.secrets.clone());
            let mut wanted: HashMap<&str, &Arc<Check>> = HashMap::new();
            for check in &set.checks {
                wanted.insert(check.name.as_str(), check);
            }
            // Stop what went away or changed (secrets included: a check's
            // runner masks with the set it was started with).
            running.retain(|name, task| {
                let keep = wanted.get(name.as_str()).is_some_and(|check| {
                    fingerprint(check) == task.fingerprint && task.secrets_of == set.secrets_id()
                });
                if !keep {
                    task.cancel.cancel();
                }
                keep
            });
            for check in &set.checks {
                if running.contains_key(&check.name) {
                    continue;
                }
                let task_cancel = cancel.child_token();
                running.insert(
                    check.name.clone(),
                    RunningCheck {
                        fingerprint: fingerprint(check),
                        secrets_of: set.secrets_id(),
                        cancel: task_cancel.clone(),
                    },
                );
                let task = CheckTask {
                    check: check.clone(),
                    runner: runner.clone(),
                    results: self.results.clone(),
                    permits: permits.clone(),
                    on_lateness: self.on_lateness.clone(),
                    cancel: task_cancel,
                };
                tasks.spawn(task.run(epoch));
            }
            // Wait for the next change, or the end.
            loop {
                tokio::select! {
                    changed = updates.changed(), if updates_open => {
                        if changed.is_err() {
                            // No more updates will come: keep running these.
                            updates_open = false;
                            continue;
                        }
                        break;
                    }
                    Some(joined) = tasks.join_next() => {
                        if let Err(error) = joined
                            && !error.is_cancelled()
                        {
                            tracing::error!(%error, "a check task ended abnormally");
                        }
                    }
                    _ = cancel.cancelled() => {
                        drop(self.results);
                        while let Some(joined) = tasks.join_next().await {
                            if let Err(error) = joined {
                                tracing::error!(%error, "a check task ended abnormally");
                            }
                        }
                        return;
                    }
                }
            }
        }
    }
}

/// A check task in progress, and how to reach it.
struct RunningCheck {
    fingerprint: Option<u64>,
    secrets_of: usize,
    cancel: CancellationToken,
}

/// What a check was decoded from; `None` (checks built in code) compares
/// as unchanged only by name.
fn fingerprint(check: &Check) -> Option<u64> {
    check.source.as_ref().map(|s| s.fingerprint)
}

impl CheckSet {
    /// Identity of the secrets set, to notice it was replaced.
    fn secrets_id(&self) -> usize {
        Arc::as_ptr(&self.secrets) as usize
    }
}

struct CheckTask {
    check: Arc<Check>,
    runner: Runner,
    results: mpsc::Sender<ProbeResult>,
    permits: Arc<Semaphore>,
    on_lateness: Option<LatenessObserver>,
    cancel: CancellationToken,
}

impl CheckTask {
    async fn run(self, epoch: Instant) {
        let region = &self.runner.identity().region;
        let mut deadline =
            match first_deadline(&self.check.schedule, region, &self.check.name, epoch) {
                Some(deadline) => deadline,
                None => return,
            };
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.cancel.cancelled() => return,
            }
            // Boxed: what a run holds (the permit's wait, the probe's
            // request, the result on its way) exists only while the check
            // runs, not in every sleeping check's task (2.5 KiB of 2.6, #19).
            if Box::pin(self.run_once(deadline)).await.is_break() {
                return;
            }
            match next_deadline(&self.check.schedule, deadline, Instant::now()) {
                Some((next, skipped)) => {
                    if skipped > 0 {
                        tracing::debug!(check = %self.check.name, skipped, "run overran its interval; skipped ticks");
                    }
                    deadline = next;
                }
                None => return,
            }
        }
    }

    /// One run: a permit, the probe, the result handed on. `Break` when
    /// the task is to end (cancelled, or nobody takes results any more).
    async fn run_once(&self, deadline: Instant) -> ControlFlow<()> {
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return ControlFlow::Break(()), // semaphore closed: shutting down
            },
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
        };
        if let Some(observe) = &self.on_lateness {
            observe(Instant::now().saturating_duration_since(deadline));
        }
        let result = tokio::select! {
            result = self.runner.run(&self.check) => result,
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
        };
        drop(permit);
        tracing::debug!(check = %self.check.name, id = %result.id, outcome = result.outcome.as_str(), ms = result.duration_ms, "ran");
        // Back-pressure: a full queue makes this check wait, but never
        // past a shutdown.
        tokio::select! {
            sent = self.results.send(result) => if sent.is_err() {
                return ControlFlow::Break(()); // the shipper is gone: shutting down
            },
            _ = self.cancel.cancelled() => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }
}

fn first_deadline(
    schedule: &Schedule,
    region: &str,
    name: &str,
    epoch: Instant,
) -> Option<Instant> {
    match schedule {
        Schedule::Every(every) => Some(epoch + stable_offset(region, name, *every)),
        Schedule::Cron(_) => cron_deadline(schedule),
    }
}

/// The next deadline after `previous`, skipping any that already passed.
/// Returns it with the number of ticks skipped.
fn next_deadline(schedule: &Schedule, previous: Instant, now: Instant) -> Option<(Instant, u64)> {
    match schedule {
        Schedule::Every(every) => {
            let mut next = previous + *every;
            let mut skipped = 0;
            if next <= now {
                let behind = now.duration_since(next);
                let ticks = (behind.as_nanos() / every.as_nanos().max(1)) as u64 + 1;
                skipped = ticks;
                next += every.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX));
            }
            Some((next, skipped))
        }
        Schedule::Cron(_) => cron_deadline(schedule).map(|deadline| (deadline, 0)),
    }
}

/// The next cron fire time, as a monotonic deadline.
fn cron_deadline(schedule: &Schedule) -> Option<Instant> {
    let Schedule::Cron(cron) = schedule else {
        return None;
    };
    let now_wall = Utc::now();
    let now = Instant::now();
    let next = cron.next_after(now_wall)?;
    let wait = next
        .signed_duration_since(now_wall)
        .to_std()
        .unwrap_or_default();
    Some(now + wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrun_skips_ticks_instead_of_bursting() {
        let every = Duration::from_secs(1);
        let schedule = Schedule::Every(every);
        let start = Instant::now();
        // On time: the next tick.
        let (next, skipped) =
            next_deadline(&schedule, start, start + Duration::from_millis(10)).unwrap();
        assert_eq!((next, skipped), (start + every, 0));
        // A run that took 3.5 intervals: the ticks it overlapped are skipped.
        let (next, skipped) =
            next_deadline(&schedule, start, start + Duration::from_millis(3500)).unwrap();
        assert_eq!((next, skipped), (start + Duration::from_secs(4), 3));
        assert!(next > start + Duration::from_millis(3500));
    }
}

//! Runs every check on its own cadence and hands the results on.
//!
//! One task per check, so a slow or hung check holds only its own task (and,
//! for at most its timeout, one of the concurrency permits). Interval checks
//! start at a stable offset within their interval, derived from their name,
//! so a thousand checks at 30s spread over the 30 seconds instead of firing
//! together. A run still going at its next tick skips that tick: the next
//! deadline is the first one after the run ends, so there is never a burst of
//! catch-up runs. Deadlines are tokio `Instant`s (monotonic); cron times are
//! computed on the wall clock and converted once per run.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Check;
use crate::probe::{ProbeResult, Runner};
use crate::schedule::{Schedule, stable_offset};

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
    /// Runs `checks` until `cancel` fires; returns when every check task has
    /// stopped (a run in progress is abandoned at cancellation).
    pub async fn run(self, checks: Vec<Arc<Check>>, cancel: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let epoch = Instant::now();
        let mut tasks = JoinSet::new();
        for check in checks {
            let ctx = CheckTask {
                check,
                runner: self.runner.clone(),
                results: self.results.clone(),
                permits: permits.clone(),
                on_lateness: self.on_lateness.clone(),
                cancel: cancel.clone(),
            };
            tasks.spawn(ctx.run(epoch));
        }
        drop(self.results);
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "a check task ended abnormally");
            }
        }
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
        let mut deadline = match first_deadline(&self.check.schedule, &self.check.name, epoch) {
            Some(deadline) => deadline,
            None => return,
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = self.cancel.cancelled() => return,
            }
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return, // semaphore closed: shutting down
                },
                _ = self.cancel.cancelled() => return,
            };
            if let Some(observe) = &self.on_lateness {
                observe(Instant::now().saturating_duration_since(deadline));
            }
            let result = tokio::select! {
                result = self.runner.run(&self.check) => result,
                _ = self.cancel.cancelled() => return,
            };
            drop(permit);
            tracing::debug!(check = %self.check.name, outcome = result.outcome.as_str(), ms = result.duration_ms, "ran");
            // Back-pressure: a full queue makes this check wait, but never
            // past a shutdown.
            tokio::select! {
                sent = self.results.send(result) => if sent.is_err() {
                    return; // the shipper is gone: shutting down
                },
                _ = self.cancel.cancelled() => return,
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
}

fn first_deadline(schedule: &Schedule, name: &str, epoch: Instant) -> Option<Instant> {
    match schedule {
        Schedule::Every(every) => Some(epoch + stable_offset(name, *every)),
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

//! Runs every check on its own cadence and hands the results on.
//!
//! One queue of deadlines for all checks, and a task per run: a sleeping
//! check is an entry in the plan and its queue (about 200 bytes), not a task of its
//! own, so 10,000 checks cost a queue rather than 10,000 parked futures
//! (#19). A run is a task of its own, so a slow or hung check holds only
//! that task (and, for at most its timeout, one of the concurrency
//! permits); a run that panics is logged and the check keeps its cadence.
//! A run that ends puts its check back in the queue itself, under the
//! plan's lock: the scheduler's task is woken only when a deadline comes
//! (or the queue's next one moves earlier), not once more per run.
//! Interval checks start at a stable offset within their interval, derived
//! from their region and name, so a thousand checks at 30s spread over the
//! 30 seconds instead of firing together, and the regions running one check
//! keep phases of their own. A run still going at its next tick skips that
//! tick: the next deadline is the first one after the run ends, so there is
//! never a burst of catch-up runs. Deadlines are tokio `Instant`s
//! (monotonic); cron times are computed on the wall clock and converted
//! once per run.
//!
//! The set of checks can change while it runs (a remote probe is sent new
//! specs, `serve` reloads its config): only the checks that were added,
//! removed or changed are scheduled or stopped, and an unchanged check
//! keeps its cadence. Run-now requests (the aggregator's fast confirmation)
//! are not the scheduler's: `run_now` runs them beside it, so that a check's
//! cadence is never moved by them.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use chrono::Utc;
use futures_util::FutureExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::config::{Check, Secrets};
use crate::limits;
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
    /// `cancel` fires and every run has stopped (a run in progress is
    /// abandoned at cancellation).
    pub async fn run_updating(
        self,
        mut updates: watch::Receiver<CheckSet>,
        cancel: CancellationToken,
    ) {
        let shared = Arc::new(RunShared {
            results: self.results,
            permits: Semaphore::new(self.concurrency.max(1)),
            on_lateness: self.on_lateness,
        });
        let plan = Arc::new(Mutex::new(Plan::new(Instant::now())));
        let runs = TaskTracker::new();
        // However this ends (returned, dropped, panicked), no run outlives it.
        let _stop = StopRuns(&plan);
        let mut updates_open = true;
        loop {
            let set = updates.borrow_and_update().clone();
            lock(&plan).follow(&set, &self.runner);
            // Run what is due, and wait for the next change or the end.
            loop {
                // Starts every run that is due, under the lock: a run cannot
                // end (and reschedule) before its entry says it is running.
                // An empty queue is woken by the insert that fills it.
                let due = std::future::poll_fn(|cx| {
                    let mut guard = lock(&plan);
                    let mut started = false;
                    while let Poll::Ready(Some(due)) = guard.queue.poll_expired(cx) {
                        started |= guard.start(due.into_inner(), &plan, &shared, &runs);
                    }
                    if started {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                });
                tokio::select! {
                    changed = updates.changed(), if updates_open => {
                        if changed.is_err() {
                            // No more updates will come: keep running these.
                            updates_open = false;
                            continue;
                        }
                        break;
                    }
                    () = due => {}
                    _ = cancel.cancelled() => {
                        lock(&plan).stop_all();
                        runs.close();
                        runs.wait().await;
                        return;
                    }
                }
            }
        }
    }
}

/// What every run shares: where results go, the concurrency permits and
/// the lateness observer.
struct RunShared {
    results: mpsc::Sender<ProbeResult>,
    permits: Semaphore,
    on_lateness: Option<LatenessObserver>,
}

/// Which check an entry of the plan is; never reused, so a run that ends
/// after its check was replaced finds nothing to reschedule.
type EntryId = u64;

/// The checks on the schedule and the queue of their deadlines. The
/// scheduler's task and the runs it started share it, behind a lock that
/// is never held across an await.
struct Plan {
    epoch: Instant,
    entries: HashMap<EntryId, Entry>,
    queue: DelayQueue<EntryId>,
    next_id: EntryId,
}

/// Stops every run in progress when dropped.
struct StopRuns<'a>(&'a Mutex<Plan>);

impl Drop for StopRuns<'_> {
    fn drop(&mut self) {
        lock(self.0).stop_all();
    }
}

/// Queues entry `id` at `deadline`, or at the horizon if that is farther
/// (`start` queues it again from there).
fn enqueue(queue: &mut DelayQueue<EntryId>, id: EntryId, deadline: Instant) -> delay_queue::Key {
    let horizon = Instant::now() + limits::SCHEDULE_QUEUE_HORIZON;
    queue.insert_at(id, deadline.min(horizon))
}

fn lock(plan: &Mutex<Plan>) -> MutexGuard<'_, Plan> {
    // Nothing panics while it holds the lock, and every change to an entry
    // is one assignment: a poisoned plan is still consistent.
    plan.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One check on the schedule.
struct Entry {
    check: Arc<Check>,
    /// The runner of the set it came with (its secrets mask its results).
    runner: Arc<Runner>,
    fingerprint: Option<u64>,
    secrets_of: usize,
    state: EntryState,
}

enum EntryState {
    /// In the queue until its deadline (kept here as well: the queue
    /// rounds it to its millisecond and moves one already past to now,
    /// which would lose the check's phase).
    Waiting {
        key: delay_queue::Key,
        deadline: Instant,
    },
    /// A run is in progress; it puts the entry back in the queue.
    Running { run: AbortHandle },
    /// No deadline follows (a cron expression without a next time), or
    /// nobody takes results any more: it stays, so it is not started again
    /// until it changes.
    Ended,
}

impl Plan {
    fn new(epoch: Instant) -> Plan {
        Plan {
            epoch,
            entries: HashMap::new(),
            queue: DelayQueue::new(),
            next_id: 0,
        }
    }

    /// Makes the plan hold the checks of `set`: what went away or changed
    /// (secrets included: a check's runner masks with the set it came
    /// with) is stopped, what is new is scheduled, the rest keeps its
    /// deadline.
    fn follow(&mut self, set: &CheckSet, runner: &Runner) {
        let secrets_of = set.secrets_id();
        let wanted: HashMap<&str, &Arc<Check>> = set
            .checks
            .iter()
            .map(|check| (check.name.as_str(), check))
            .collect();
        let mut kept: HashSet<&str> = HashSet::new();
        let queue = &mut self.queue;
        self.entries.retain(|_, entry| {
            let same = wanted
                .get_key_value(entry.check.name.as_str())
                .filter(|(_, check)| {
                    fingerprint(check) == entry.fingerprint && entry.secrets_of == secrets_of
                });
            match same {
                Some((name, _)) => {
                    kept.insert(name);
                    true
                }
                None => {
                    match &entry.state {
                        EntryState::Waiting { key, .. } => {
                            queue.remove(key);
                        }
                        EntryState::Running { run } => run.abort(),
                        EntryState::Ended => {}
                    }
                    false
                }
            }
        });
        let runner = Arc::new(runner.with_secrets(set.secrets.clone()));
        for check in &set.checks {
            if !kept.insert(check.name.as_str()) {
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            let region = &runner.identity().region;
            let state = match first_deadline(&check.schedule, region, &check.name, self.epoch) {
                Some(deadline) => EntryState::Waiting {
                    key: enqueue(&mut self.queue, id, deadline),
                    deadline,
                },
                None => EntryState::Ended,
            };
            self.entries.insert(
                id,
                Entry {
                    check: check.clone(),
                    runner: runner.clone(),
                    fingerprint: fingerprint(check),
                    secrets_of,
                    state,
                },
            );
        }
    }

    /// Starts the run of entry `id`, whose queue entry just expired; the
    /// run puts it back in the queue when it ends. A deadline beyond the
    /// queue's horizon is queued again instead. Returns whether it started.
    fn start(
        &mut self,
        id: EntryId,
        plan: &Arc<Mutex<Plan>>,
        shared: &Arc<RunShared>,
        runs: &TaskTracker,
    ) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        let EntryState::Waiting { deadline, .. } = entry.state else {
            return false;
        };
        if deadline > Instant::now() + Duration::from_secs(1) {
            entry.state = EntryState::Waiting {
                key: enqueue(&mut self.queue, id, deadline),
                deadline,
            };
            return false;
        }
        // The queue's key is spent: never leave it in the entry.
        entry.state = EntryState::Ended;
        let (check, runner) = (entry.check.clone(), entry.runner.clone());
        let (plan, shared) = (plan.clone(), shared.clone());
        let run = runs.spawn(async move {
            let ran = std::panic::AssertUnwindSafe(run_once(&check, &runner, &shared, deadline))
                .catch_unwind()
                .await;
            let flow = ran.unwrap_or_else(|_| {
                tracing::error!(check = %check.name, "a run of this check panicked; the check keeps its schedule");
                ControlFlow::Continue(())
            });
            lock(&plan).ended(id, deadline, flow);
        });
        entry.state = EntryState::Running {
            run: run.abort_handle(),
        };
        true
    }

    /// Puts the check of a run that ended back in the queue, at its next
    /// deadline after `deadline`.
    fn ended(&mut self, id: EntryId, deadline: Instant, flow: ControlFlow<()>) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return; // removed or replaced while it ran
        };
        if !matches!(entry.state, EntryState::Running { .. }) {
            return;
        }
        let next = match flow {
            ControlFlow::Continue(()) => {
                next_deadline(&entry.check.schedule, deadline, Instant::now())
            }
            ControlFlow::Break(()) => None,
        };
        entry.state = match next {
            Some((next, skipped)) => {
                if skipped > 0 {
                    tracing::debug!(check = %entry.check.name, skipped, "run overran its interval; skipped ticks");
                }
                EntryState::Waiting {
                    key: enqueue(&mut self.queue, id, next),
                    deadline: next,
                }
            }
            None => EntryState::Ended,
        };
    }

    /// Stops every run in progress (shutting down).
    fn stop_all(&self) {
        for entry in self.entries.values() {
            if let EntryState::Running { run } = &entry.state {
                run.abort();
            }
        }
    }
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

/// One run: a permit, the probe, the result handed on. `Break` when nobody
/// takes results any more (shutting down).
async fn run_once(
    check: &Check,
    runner: &Runner,
    shared: &RunShared,
    deadline: Instant,
) -> ControlFlow<()> {
    let Ok(permit) = shared.permits.acquire().await else {
        return ControlFlow::Break(()); // semaphore closed: shutting down
    };
    if let Some(observe) = &shared.on_lateness {
        observe(Instant::now().saturating_duration_since(deadline));
    }
    let result = runner.run(check).await;
    drop(permit);
    tracing::debug!(check = %check.name, id = %result.id, outcome = result.outcome.as_str(), ms = result.duration_ms, "ran");
    // Back-pressure: a full queue makes this check wait (its next deadline
    // is the first after the result was taken); a shutdown aborts the run.
    if shared.results.send(result).await.is_err() {
        return ControlFlow::Break(()); // the shipper is gone: shutting down
    }
    ControlFlow::Continue(())
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

    /// DelayQueue panics on a deadline ~795 days ahead; a cron expression
    /// can ask for one. It is queued at the horizon instead.
    #[tokio::test]
    async fn a_deadline_years_ahead_is_queued_at_the_horizon() {
        let mut queue = DelayQueue::new();
        let years = Instant::now() + Duration::from_secs(1_000 * 86_400);
        let key = enqueue(&mut queue, 7, years);
        let queued = queue.deadline(&key);
        assert!(queued <= Instant::now() + limits::SCHEDULE_QUEUE_HORIZON + Duration::from_secs(1));
        assert!(
            queued >= Instant::now() + limits::SCHEDULE_QUEUE_HORIZON - Duration::from_secs(60)
        );
    }

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

//! The wall clock Lookout dates and judges by: the system's, except that it
//! never steps.
//!
//! Staleness windows, heartbeat deadlines, result ages and the order of
//! events are all differences of wall times. The system clock can step (NTP
//! correcting a bad start, a VM restored from a snapshot, an operator's
//! `date -s`): a step back makes every region look fresher than it is and a
//! step forward makes them all look stale at once, which pages for probes
//! that are fine. So Lookout's clock advances with the monotonic clock and
//! only *slews* towards the system clock, at most `limits::CLOCK_SLEW_RATE`
//! (1 %) of the time that passes: a step is absorbed gradually, every
//! difference stays within 1 % of the truth, and time never goes backwards
//! (but for the steps of hours below).
//! A step of more than `limits::CLOCK_STEP_FOLLOWED` (an hour) is a clock
//! set right rather than a hiccup (a VM resumed, a host booted with a wrong
//! clock): it is followed at once, with a warning.
//!
//! The rule engine stays pure (it is handed `now`); this is where the
//! aggregator, serve's loops and the probes take `now` from. Cron schedules
//! keep the system clock: "at 03:00" means the clock on the wall.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::limits;

/// Where a component takes `now` from: Lookout's clock, or a manual one
/// that tests set and advance. Passed in, so that what judges or dates
/// never reads a clock of its own.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// `clock::now()`: the system clock, slewed, never stepping.
    #[default]
    System,
    /// Stands still until set or advanced.
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(at: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Mutex::new(at)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => now(),
            Clock::Manual(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a manual clock on by `by` (a system clock moves by itself).
    pub fn advance(&self, by: std::time::Duration) {
        if let Clock::Manual(at) = self {
            let mut at = at.lock().unwrap_or_else(|p| p.into_inner());
            *at = at
                .checked_add_signed(chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
    }
}

/// Lookout's current time: monotonic, within 1 % per elapsed time of the
/// system clock, and converging on it.
pub fn now() -> DateTime<Utc> {
    static CLOCK: Mutex<Option<Slewed>> = Mutex::new(None);
    let mut clock = CLOCK.lock().unwrap_or_else(|p| p.into_inner());
    let (wall, mono) = (Utc::now(), Instant::now());
    match clock.as_mut() {
        Some(slewed) => slewed.at(wall, mono),
        None => {
            *clock = Some(Slewed::new(wall, mono));
            wall
        }
    }
}

/// A clock that follows the monotonic clock and slews towards the wall
/// clock. Pure given its readings, so steps are tested without a real one.
#[derive(Clone, Debug)]
pub struct Slewed {
    /// The time it gave at its last reading, and the monotonic instant of it.
    last: DateTime<Utc>,
    last_mono: Instant,
}

impl Slewed {
    pub fn new(wall: DateTime<Utc>, mono: Instant) -> Slewed {
        Slewed {
            last: wall,
            last_mono: mono,
        }
    }

    /// The time at monotonic instant `mono`, when the system clock says `wall`.
    pub fn at(&mut self, wall: DateTime<Utc>, mono: Instant) -> DateTime<Utc> {
        let elapsed = mono.saturating_duration_since(self.last_mono);
        let elapsed = chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX);
        let free_running = self
            .last
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        // How far the system clock is from us, and how much of that we may
        // catch up in the time that passed (in nanoseconds: readings come
        // microseconds apart under load, and every one must slew its share).
        let error = wall.signed_duration_since(free_running);
        let step = chrono::Duration::from_std(limits::CLOCK_STEP_FOLLOWED)
            .unwrap_or(chrono::Duration::MAX);
        if error > step || error < -step {
            // Hours off: not a hiccup but a clock set right (a VM resumed,
            // a host booted with a wrong clock). Follow it at once.
            tracing::warn!(
                "the system clock moved by {}s; Lookout's clock follows it",
                error.num_seconds()
            );
            self.last = wall;
            self.last_mono = mono;
            return wall;
        }
        let budget_ns =
            elapsed.num_nanoseconds().unwrap_or(i64::MAX) as f64 * limits::CLOCK_SLEW_RATE;
        let budget = chrono::Duration::nanoseconds(budget_ns as i64);
        let correction = if error > budget {
            budget
        } else if error < -budget {
            -budget
        } else {
            error
        };
        let now = free_running
            .checked_add_signed(correction)
            .unwrap_or(free_running)
            .max(self.last);
        self.last = now;
        self.last_mono = mono;
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Readings one second apart, with the wall clock doing `wall_step`
    /// (seconds) at the third reading.
    fn run(wall_step: i64, readings: usize) -> Vec<(i64, i64)> {
        let start_wall = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let start_mono = Instant::now();
        let mut clock = Slewed::new(start_wall, start_mono);
        (1..=readings as i64)
            .map(|i| {
                let step = if i >= 3 { wall_step } else { 0 };
                let wall = start_wall + chrono::Duration::seconds(i + step);
                let mono = start_mono + Duration::from_secs(i as u64);
                let now = clock.at(wall, mono);
                (
                    now.signed_duration_since(start_wall).num_milliseconds(),
                    wall.signed_duration_since(now).num_milliseconds(),
                )
            })
            .collect()
    }

    #[test]
    fn without_steps_it_is_the_wall_clock() {
        for (i, (elapsed, error)) in run(0, 10).into_iter().enumerate() {
            assert_eq!(elapsed, (i as i64 + 1) * 1000);
            assert_eq!(error, 0);
        }
    }

    #[test]
    fn a_step_back_never_takes_it_back_and_is_absorbed_at_the_slew_rate() {
        let readings = run(-120, 20);
        let mut previous = 0;
        for (elapsed, _) in &readings {
            // Each second of monotonic time moves it by 0.99 s at least.
            assert!(*elapsed - previous >= 990, "{readings:?}");
            previous = *elapsed;
        }
        // After the step it lags the wall clock by 10 ms per second less.
        assert_eq!(readings[2].1, -120_000 + 10);
        assert_eq!(readings[19].1, -120_000 + 18 * 10);
    }

    #[test]
    fn a_step_forward_is_caught_up_slowly_then_followed() {
        let readings = run(5, 600);
        assert_eq!(readings[2].1, 5_000 - 10);
        // 5 s at 10 ms per second: caught up after 500 s, followed after.
        assert_eq!(readings[510].1, 0);
        assert_eq!(readings[599].1, 0);
    }

    #[test]
    fn readings_close_together_slew_as_much_as_readings_far_apart() {
        // A busy process reads its clock every few milliseconds: after a
        // step of 5 s, 10 ms readings for 100 s catch up 1 s, like 1 s ones.
        let start_wall = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let start_mono = Instant::now();
        let mut clock = Slewed::new(start_wall, start_mono);
        let mut error_ms = 0;
        for i in 1..=10_000i64 {
            let wall = start_wall + chrono::Duration::milliseconds(i * 10 + 5_000);
            let mono = start_mono + Duration::from_millis(i as u64 * 10);
            let now = clock.at(wall, mono);
            error_ms = wall.signed_duration_since(now).num_milliseconds();
        }
        assert!((3_999..=4_001).contains(&error_ms), "{error_ms} ms behind");
    }

    #[test]
    fn a_step_of_hours_is_followed_at_once() {
        let start_wall = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let start_mono = Instant::now();
        let mut clock = Slewed::new(start_wall, start_mono);
        let resumed = start_wall + chrono::Duration::hours(5);
        let now = clock.at(resumed, start_mono + Duration::from_secs(1));
        assert_eq!(now, resumed);
        // And back: followed too, then it moves on from there.
        let back = start_wall - chrono::Duration::hours(3);
        assert_eq!(clock.at(back, start_mono + Duration::from_secs(2)), back);
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let clock = Clock::manual(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), start + chrono::Duration::seconds(90));
        assert_eq!(clock.clone().now(), clock.now());
    }

    #[test]
    fn the_process_clock_is_near_the_system_clock() {
        let ours = now();
        let system = Utc::now();
        assert!((system - ours).num_seconds().abs() <= 1);
        assert!(now() >= ours);
    }
}

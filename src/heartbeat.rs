//! Push checks: a cron job or pipeline calls `POST /ping/{token}` (GET works
//! too), `/ping/{token}/start` when it begins and `/ping/{token}/fail` when it
//! knows it failed. A check goes down when no ping came within
//! `period + grace`, where the period is an interval or a cron schedule of
//! when the job runs.
//!
//! Pings become ordinary results (region `push`) so the rule engine, storage
//! and API treat heartbeats like every other check. Silence becomes a
//! synthetic `timeout` result, once per overdue period. The functions here
//! are pure; the aggregator owns the state and the clock.

use chrono::{DateTime, Utc};
use subtle::ConstantTimeEq;

use crate::config::{Check, CheckKind, Config, HeartbeatSpec};
use crate::schedule::{Schedule, format_duration};
use std::sync::Arc;

/// The region name heartbeat results carry: they are pushed, not probed.
pub(crate) const HEARTBEAT_REGION: &str = "push";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    /// The job finished and is fine.
    Success,
    /// The job reports that it failed.
    Fail,
    /// The job started; the next ping measures its run time.
    Start,
}

impl Ping {
    pub fn from_action(action: &str) -> Option<Ping> {
        match action {
            "fail" => Some(Ping::Fail),
            "start" => Some(Ping::Start),
            _ => None,
        }
    }
}

/// The heartbeat check whose token is `token`. Every token is compared in
/// constant time, and all of them are compared, so timing tells an attacker
/// nothing about how close a guess was.
pub(crate) fn find_by_token(config: &Config, token: &str) -> Option<Arc<Check>> {
    let mut found = None;
    for check in &config.checks {
        if let CheckKind::Heartbeat(spec) = &check.kind
            && bool::from(spec.token.as_bytes().ct_eq(token.as_bytes()))
        {
            found = Some(check.clone());
        }
    }
    found
}

/// When silence since `anchor` (the last ping or missed-ping report, or
/// the aggregator's start) becomes a missed heartbeat.
pub(crate) fn deadline(spec: &HeartbeatSpec, anchor: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let grace = chrono::Duration::from_std(spec.grace).ok()?;
    let due = match &spec.period {
        Schedule::Every(period) => {
            anchor.checked_add_signed(chrono::Duration::from_std(*period).ok()?)?
        }
        Schedule::Cron(cron) => cron.next_after(anchor)?,
    };
    due.checked_add_signed(grace)
}

/// The reason for a missed heartbeat, if `now` is past its deadline.
pub(crate) fn overdue(
    spec: &HeartbeatSpec,
    anchor: DateTime<Utc>,
    pinged_before: bool,
    now: DateTime<Utc>,
) -> Option<String> {
    let deadline = deadline(spec, anchor)?;
    if now <= deadline {
        return None;
    }
    let since = anchor.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expected = match &spec.period {
        Schedule::Every(period) => format!("every {}", format_duration(*period)),
        Schedule::Cron(cron) => format!("on cron {:?}", cron.expression),
    };
    let grace = format_duration(spec.grace);
    Some(if pinged_before {
        format!("no ping since {since} (expected {expected}, grace {grace})")
    } else {
        format!(
            "no ping since the aggregator started at {since} (expected {expected}, grace {grace})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn spec(period: Schedule, grace_s: u64) -> HeartbeatSpec {
        HeartbeatSpec {
            token: "t".repeat(16),
            period,
            grace: Duration::from_secs(grace_s),
        }
    }

    #[test]
    fn interval_deadlines() {
        let spec = spec(Schedule::Every(Duration::from_secs(3600)), 300);
        let anchor = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        assert_eq!(
            deadline(&spec, anchor),
            Some(anchor + chrono::Duration::seconds(3900))
        );
        assert_eq!(
            overdue(
                &spec,
                anchor,
                true,
                anchor + chrono::Duration::seconds(3900)
            ),
            None
        );
        let late = overdue(
            &spec,
            anchor,
            true,
            anchor + chrono::Duration::seconds(3901),
        )
        .unwrap();
        assert_eq!(
            late,
            "no ping since 2026-11-24T12:00:00Z (expected every 1h, grace 5m)"
        );
        let never = overdue(&spec, anchor, false, anchor + chrono::Duration::days(1)).unwrap();
        assert!(never.starts_with("no ping since the aggregator started at"));
    }

    #[test]
    fn cron_deadlines_follow_the_job_schedule() {
        let cron = crate::schedule::CronSchedule::parse("0 2 * * *", chrono_tz::Tz::UTC).unwrap();
        let spec = spec(Schedule::Cron(Box::new(cron)), 1800);
        // Last ping at 02:10; the next run is tomorrow 02:00, due by 02:30.
        let anchor = Utc.with_ymd_and_hms(2026, 11, 24, 2, 10, 0).unwrap();
        assert_eq!(
            deadline(&spec, anchor),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 2, 30, 0).unwrap())
        );
    }
}

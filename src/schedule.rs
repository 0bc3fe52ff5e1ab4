//! When a check runs: fixed intervals (`every: 30s`) or cron expressions
//! (`cron: "*/5 * * * *"`, standard five fields, UTC unless `tz:` is given),
//! and the human duration syntax (`500ms`, `30s`, `5m`, `1h`, `14d`) used
//! throughout the config.
//!
//! Everything here is pure: parsing and "when is the next run after T". The
//! scheduler turns those answers into tokio timers.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::limits;

/// How often a check runs.
#[derive(Clone, Debug)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<CronSchedule>),
}

#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// What the user wrote, for display.
    pub expression: String,
    pub tz: Tz,
    parsed: cron::Schedule,
}

impl CronSchedule {
    /// Parses a standard five-field cron expression (minute hour day-of-month
    /// month day-of-week, day-of-week 0-7 with 0 and 7 both Sunday) or one of
    /// `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
    pub fn parse(expression: &str, tz: Tz) -> Result<CronSchedule, String> {
        let translated = translate_five_field(expression)?;
        let parsed = cron::Schedule::from_str(&translated).map_err(|e| {
            // The crate's message repeats our translated expression; its last line says why.
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            format!("invalid cron expression {expression:?}: {why}")
        })?;
        if parsed
            .after(&Utc::now().with_timezone(&tz))
            .next()
            .is_none()
        {
            return Err(format!("cron expression {expression:?} never fires"));
        }
        Ok(CronSchedule {
            expression: expression.to_string(),
            tz,
            parsed,
        })
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parsed
            .after(&after.with_timezone(&self.tz))
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl Schedule {
    /// The nominal gap between runs: the interval, or for cron the gap
    /// between the next two fire times. Used for staleness and display.
    pub fn nominal_interval(&self, now: DateTime<Utc>) -> Duration {
        match self {
            Schedule::Every(every) => *every,
            Schedule::Cron(cron) => {
                let first = cron.next_after(now);
                let second = first.and_then(|t| cron.next_after(t));
                match (first, second) {
                    (Some(a), Some(b)) => (b - a).to_std().unwrap_or(Duration::from_secs(60)),
                    _ => Duration::from_secs(60),
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(every) => format!("every {}", format_duration(*every)),
            Schedule::Cron(cron) if cron.tz == Tz::UTC => format!("cron {:?}", cron.expression),
            Schedule::Cron(cron) => format!("cron {:?} ({})", cron.expression, cron.tz),
        }
    }
}

/// Turns standard cron into the `cron` crate's dialect: it wants a seconds
/// field first, and numbers its days of the week 1-7 from Sunday where
/// standard cron uses 0-7 with 0 and 7 both Sunday.
fn translate_five_field(expression: &str) -> Result<String, String> {
    let trimmed = expression.trim();
    if trimmed.starts_with('@') {
        return match trimmed {
            "@hourly" | "@daily" | "@weekly" | "@monthly" | "@yearly" => Ok(trimmed.to_string()),
            "@annually" => Ok("@yearly".to_string()),
            "@midnight" => Ok("@daily".to_string()),
            other => Err(format!(
                "unknown cron shorthand {other:?}; expected @hourly, @daily, @weekly, @monthly or @yearly"
            )),
        };
    }
    let fields: Vec<&str> = trimmed.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "cron expression {expression:?} has {} fields; expected 5 (minute hour day-of-month month day-of-week)",
            fields.len()
        ));
    }
    let day_of_week = translate_day_of_week(fields[4])?;
    Ok(format!(
        "0 {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], day_of_week
    ))
}

fn translate_day_of_week(field: &str) -> Result<String, String> {
    let mut out = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let shifted = match base.split_once('-') {
            Some((start, end)) => match (day_number(start)?, day_number(end)?) {
                (Some(start), Some(7)) if step.is_some() => {
                    let _ = start;
                    return Err(format!(
                        "day-of-week range {item:?} with a step: write the range as 0-6"
                    ));
                }
                (Some(0), Some(7)) => "1-7".to_string(),
                (Some(start), Some(7)) => format!("{}-7,1", start + 1),
                (Some(start), Some(end)) => format!("{}-{}", start + 1, end + 1),
                _ => base.to_string(),
            },
            None => match day_number(base)? {
                Some(7) => "1".to_string(),
                Some(day) => (day + 1).to_string(),
                None => base.to_string(),
            },
        };
        match step {
            Some(step) => out.push(format!("{shifted}/{step}")),
            None => out.push(shifted),
        }
    }
    Ok(out.join(","))
}

/// A numeric day of the week (0-7), or `None` for names, `*` and `?`.
fn day_number(text: &str) -> Result<Option<u32>, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(day) if day <= 7 => Ok(Some(day)),
        _ => Err(format!(
            "day of week {text} is out of range; expected 0-7 (0 and 7 are Sunday) or SUN-SAT"
        )),
    }
}

/// Parses `500ms`, `30s`, `5m`, `1h`, `14d` and combinations such as `1h 30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{trimmed:?} has no unit; write it as {trimmed}s, {trimmed}ms, {trimmed}m, ..."
        ));
    }
    let duration = humantime::parse_duration(trimmed).map_err(|_| {
        format!(
            "invalid duration {trimmed:?}; expected a duration such as 500ms, 30s, 5m, 1h or 14d"
        )
    })?;
    if duration > limits::DURATION_MAX {
        return Err(format!(
            "duration {trimmed:?} is longer than the {} days Lookout accepts",
            limits::DURATION_MAX.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

/// The shortest exact spelling of a duration in the config syntax.
pub(crate) fn format_duration(duration: Duration) -> String {
    const UNITS: [(u128, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
        (1, "ms"),
    ];
    let ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    for (size, unit) in UNITS {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A duration for people: `12m`, `1h 5m`, `2d 3h`, two units at most.
pub(crate) fn format_duration_approx(duration: Duration) -> String {
    let secs = duration.as_secs();
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut parts = Vec::new();
    let mut rest = secs;
    for (size, unit) in UNITS {
        if rest >= size && parts.len() < 2 {
            parts.push(format!("{}{unit}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // Keep the two units adjacent: `1h 5m`, never `1h 5s`.
            break;
        }
    }
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

/// A stable offset within `every` for a check in a region, so checks
/// sharing an interval spread over it instead of firing together, and the
/// regions running one check do not tick in step: probes started together
/// (one rollout) would otherwise all see an outage, or its end, at the same
/// tick, and fast confirmation would have no earlier region to start from
/// (#19). Derived from the region and the check's name with FNV-1a, which
/// (unlike std's hasher) is the same across builds.
pub fn stable_offset(region: &str, name: &str, every: Duration) -> Duration {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(region.as_bytes());
    // A separator no name holds, so ("ab", "c") and ("a", "bc") differ.
    hasher.write_u8(0);
    hasher.write(name.as_bytes());
    let every_ns = every.as_nanos().max(1);
    let offset_ns = u128::from(hasher.finish()) % every_ns;
    Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn durations_in_config_syntax() {
        for (text, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("14d", 14 * 86_400_000),
            ("1h 30m", 5_400_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "30",
            "5 parsecs",
            "-1s",
            "s",
            "1.5.2s",
            "401d",
            "300000y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
    }

    #[test]
    fn standard_cron_days_of_week() {
        let utc = Tz::UTC;
        // 2026-11-23 is a Monday.
        let monday = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        let sunday_only = CronSchedule::parse("0 9 * * 0", utc).unwrap();
        let next = sunday_only.next_after(monday).unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap());
        let also_sunday = CronSchedule::parse("0 9 * * 7", utc).unwrap();
        assert_eq!(also_sunday.next_after(monday), Some(next));
        let weekdays = CronSchedule::parse("30 8 * * 1-5", utc).unwrap();
        assert_eq!(
            weekdays.next_after(monday),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 8, 30, 0).unwrap())
        );
        let weekend = CronSchedule::parse("0 0 * * 6-7", utc).unwrap();
        assert_eq!(
            weekend.next_after(monday),
            Some(Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap())
        );
        let named = CronSchedule::parse("0 0 * * SAT,SUN", utc).unwrap();
        assert_eq!(named.next_after(monday), weekend.next_after(monday));
    }

    #[test]
    fn cron_in_a_time_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let schedule = CronSchedule::parse("0 9 * * *", paris).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        // 09:00 in Paris in November is 08:00 UTC.
        assert_eq!(
            schedule.next_after(start),
            Some(Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap())
        );
    }

    #[test]
    fn bad_cron_says_why() {
        assert!(
            CronSchedule::parse("* * * *", Tz::UTC)
                .unwrap_err()
                .contains("expected 5")
        );
        assert!(CronSchedule::parse("61 * * * *", Tz::UTC).is_err());
        assert!(
            CronSchedule::parse("* * * * 8", Tz::UTC)
                .unwrap_err()
                .contains("0-7")
        );
        assert!(CronSchedule::parse("@often", Tz::UTC).is_err());
    }

    #[test]
    fn offsets_are_stable_and_spread() {
        let every = Duration::from_secs(30);
        assert_eq!(
            stable_offset("eu", "api", every),
            stable_offset("eu", "api", every)
        );
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let offset = stable_offset("eu", &format!("check-{i}"), every);
            assert!(offset < every);
            buckets[(offset.as_secs() / 3) as usize] += 1;
        }
        // 1,000 checks over 10 buckets: none should be empty or hold half.
        assert!(buckets.iter().all(|&n| n > 50 && n < 200), "{buckets:?}");
    }

    #[test]
    fn regions_running_one_check_do_not_tick_in_step() {
        let every = Duration::from_secs(30);
        let regions = ["eu-west", "us-east", "ap-south"];
        let mut in_step = 0;
        for i in 0..1000 {
            let name = format!("check-{i}");
            let offsets: Vec<Duration> = regions
                .iter()
                .map(|region| stable_offset(region, &name, every))
                .collect();
            // In step: all three within one second of each other.
            let (min, max) = (offsets.iter().min(), offsets.iter().max());
            if let (Some(min), Some(max)) = (min, max)
                && *max - *min < Duration::from_secs(1)
            {
                in_step += 1;
            }
        }
        // Independent phases put all three within 1 s of 30 about 0.3 %
        // of the time; a name-only offset would do it every time.
        assert!(in_step < 30, "{in_step} of 1000 checks tick in step");
    }

    proptest! {
        #[test]
        fn any_duration_round_trips(ms in 1u64..=(400 * 86_400_000)) {
            let duration = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }

        #[test]
        fn unit_suffixes_scale(n in 1u64..400, unit in 0usize..5) {
            let (suffix, ms) = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)][unit];
            prop_assert_eq!(parse_duration(&format!("{n}{suffix}")), Ok(Duration::from_millis(n * ms)));
        }

        #[test]
        fn arbitrary_duration_text_never_panics(text in "\\PC{0,20}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn valid_cron_fields_fire_in_the_future(
            minute in 0u32..60, hour in 0u32..24, dom in 1u32..29, month in 1u32..13, dow in 0u32..8,
            wild in proptest::collection::vec(any::<bool>(), 5),
        ) {
            let field = |v: u32, w: bool| if w { "*".to_string() } else { v.to_string() };
            let expression = format!(
                "{} {} {} {} {}",
                field(minute, wild[0]), field(hour, wild[1]), field(dom, wild[2]), field(month, wild[3]), field(dow, wild[4])
            );
            let schedule = CronSchedule::parse(&expression, Tz::UTC);
            prop_assert!(schedule.is_ok(), "{} -> {:?}", expression, schedule.err());
            let now = Utc::now();
            let next = schedule.unwrap().next_after(now);
            prop_assert!(next.is_some_and(|t| t > now));
        }

        #[test]
        fn arbitrary_cron_text_never_panics(text in "[0-9*/,\\- A-Za-z@?]{0,30}") {
            let _ = CronSchedule::parse(&text, Tz::UTC);
        }
    }
}

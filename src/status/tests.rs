//! Tests of the status page figures on plain values: uptime, segments, daily
//! bars, the overall banner, incidents and latency merges.

use chrono::{Duration, TimeZone, Utc};

use super::*;

fn at(hours: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 0, 0, 0).unwrap() + Duration::hours(hours)
}

fn event(
    check: &str,
    from: Status,
    to: Status,
    when: DateTime<Utc>,
    incident: Option<Uuid>,
) -> Transition {
    Transition {
        id: Uuid::now_v7(),
        check: check.into(),
        from,
        to,
        at: when,
        previous_since: None,
        incident,
        summary: format!("{check} {from} -> {to}"),
        regions: BTreeMap::new(),
    }
}

fn state(status: Status, since: DateTime<Utc>) -> CheckState {
    CheckState {
        status,
        since: Some(since),
        ..CheckState::default()
    }
}

#[test]
fn uptime_counts_judged_time_only() {
    let now = at(48);
    let incident = Some(Uuid::now_v7());
    let events = [
        event("a", Status::Unknown, Status::Up, at(0), None),
        event("a", Status::Up, Status::Down, at(46), incident),
        event("a", Status::Down, Status::Up, at(47), incident),
    ];
    let refs: Vec<&Transition> = events.iter().collect();
    let segments = segments(
        &refs,
        &state(Status::Up, at(47)),
        now - Duration::days(90),
        now,
    );
    // 24h window: 1h down of 24h judged.
    let day = uptime(&segments, now - Duration::hours(24), now).unwrap();
    assert!((day - 100.0 * 23.0 / 24.0).abs() < 1e-9, "{day}");
    // 30d window: only 48h judged (unknown before the first verdict).
    let month = uptime(&segments, now - Duration::days(30), now).unwrap();
    assert!((month - 100.0 * 47.0 / 48.0).abs() < 1e-9, "{month}");
    // Nothing judged: no figure rather than a flattering 100%.
    assert_eq!(uptime(&[], now - Duration::hours(1), now), None);
}

#[test]
fn without_events_the_current_state_holds_since_it_began() {
    let now = at(10);
    let segments = segments(&[], &state(Status::Down, at(4)), at(0), now);
    assert_eq!(
        segments,
        vec![
            Segment {
                start: at(0).timestamp_millis(),
                end: at(4).timestamp_millis(),
                status: Status::Unknown
            },
            Segment {
                start: at(4).timestamp_millis(),
                end: now.timestamp_millis(),
                status: Status::Down
            },
        ]
    );
}

#[test]
fn each_day_shows_its_worst_state() {
    let now = at(24 * 2 + 12);
    let events = [
        event("a", Status::Unknown, Status::Up, at(1), None),
        event("a", Status::Up, Status::Degraded, at(25), None),
        event("a", Status::Degraded, Status::Up, at(26), None),
        event("a", Status::Up, Status::Down, at(49), None),
        event(
            "a",
            Status::Down,
            Status::Up,
            at(49) + Duration::minutes(5),
            None,
        ),
    ];
    let refs: Vec<&Transition> = events.iter().collect();
    let segments = segments(
        &refs,
        &state(Status::Up, at(50)),
        now - Duration::days(90),
        now,
    );
    let days = days(&segments, now);
    assert_eq!(days.len(), DAYS_SHOWN);
    let last: Vec<DayStatus> = days[DAYS_SHOWN - 4..].iter().map(|d| d.status).collect();
    assert_eq!(
        last,
        vec![
            DayStatus::None,
            DayStatus::Up,
            DayStatus::Degraded,
            DayStatus::Down
        ]
    );
    assert_eq!(days[DAYS_SHOWN - 1].down_s, 300);
    assert_eq!(days[DAYS_SHOWN - 2].degraded_s, 3600);
}

#[test]
fn overall_follows_the_share_of_checks_down() {
    let counts = |up, degraded, down| Counts {
        up,
        degraded,
        down,
        unknown: 1,
    };
    assert_eq!(overall(&counts(3, 0, 0)), Overall::Operational);
    assert_eq!(overall(&counts(2, 1, 0)), Overall::DegradedPerformance);
    assert_eq!(overall(&counts(3, 0, 1)), Overall::PartialOutage);
    assert_eq!(overall(&counts(1, 0, 1)), Overall::MajorOutage);
    assert_eq!(overall(&counts(0, 0, 0)), Overall::Operational);
}

#[test]
fn incidents_run_from_first_event_to_recovery_newest_first() {
    let now = at(30);
    let (first, second) = (Some(Uuid::now_v7()), Some(Uuid::now_v7()));
    let events = [
        event("a", Status::Up, Status::Degraded, at(1), first),
        event("a", Status::Degraded, Status::Down, at(2), first),
        event("a", Status::Down, Status::Up, at(4), first),
        event("b", Status::Up, Status::Down, at(20), second),
        event(
            "hidden",
            Status::Up,
            Status::Down,
            at(21),
            Some(Uuid::now_v7()),
        ),
    ];
    let shown: std::collections::HashSet<&str> = ["a", "b"].into_iter().collect();
    let list = incidents(&events, &shown, now, INCIDENTS_SHOWN);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].check, "b");
    assert_eq!(list[0].ended, None);
    assert_eq!(list[0].duration_s, 10 * 3600);
    assert_eq!(list[1].status, Status::Down);
    assert_eq!(list[1].duration_s, 3 * 3600);
    assert_eq!(list[1].summary, "a degraded -> down");
}

#[test]
fn latency_merges_rollups_with_the_hour_not_rolled_up() {
    let now = at(10) + Duration::minutes(30);
    let mut latency = LatencyHistogram::new();
    for _ in 0..10 {
        latency.record(100.0);
    }
    let rollups = [HourRollup {
        check: "a".into(),
        region: "eu".into(),
        hour_ms: at(9).timestamp_millis(),
        total: 10,
        ok: 10,
        latency,
    }];
    let raw = [
        (
            "a".to_string(),
            "eu".to_string(),
            at(10).timestamp_millis() + 1000,
            true,
            400.0,
        ),
        (
            "a".to_string(),
            "eu".to_string(),
            at(10).timestamp_millis() + 2000,
            false,
            9000.0,
        ),
    ];
    let config = Config::default();
    let states = HashMap::new();
    let inputs = Inputs {
        config: &config,
        states: &states,
        events: &[],
        rollups: &rollups,
        rolled_until_ms: Some(at(10).timestamp_millis()),
        raw: &raw,
        screenshots: &Default::default(),
        browser_results: &[],
        now,
    };
    let by_check = latency_by_check(&inputs);
    let eu = &by_check["a"]["eu"];
    assert_eq!(eu.samples, 11, "the failed run is not a latency");
    assert_eq!(eu.hours.len(), LATENCY_HOURS);
    let last = &eu.hours[LATENCY_HOURS - 1];
    assert!((last.p50_ms.unwrap() - 400.0).abs() / 400.0 < 0.05);
    let before = &eu.hours[LATENCY_HOURS - 2];
    assert!((before.p95_ms.unwrap() - 100.0).abs() / 100.0 < 0.05);
    assert!(eu.hours[0].p50_ms.is_none());
}

#[test]
fn a_hidden_target_is_taken_out_of_error_text() {
    assert_eq!(
        hide_target_in(
            "step 3 expect_url: URL \"https://intra.example.com/x\" does not contain \"/y\"",
            "https://intra.example.com/login"
        ),
        "step 3 expect_url: URL \"https://[hidden]/x\" does not contain \"/y\""
    );
    assert_eq!(
        hide_target_in("connection refused (10.1.2.3:5432)", "10.1.2.3:5432"),
        "connection refused ([hidden])"
    );
    assert_eq!(
        hide_target_in("no answer for db.internal", "A db.internal"),
        "no answer for [hidden]"
    );
}

#[test]
fn a_browser_check_shows_its_pages_vitals_errors_and_on_its_own_page_the_film_strip() {
    use crate::result::{FilmFrame, Outcome, PageError, ProbeResult, StepResult, WebVitals};
    let yaml = "checks:\n  - name: shop\n    every: 1m\n    browser:\n      steps:\n        - goto: https://shop.example/\n";
    let config = crate::config::load_from_texts(
        &[("checks.yaml".into(), yaml.to_string())],
        &[],
        std::path::Path::new("alerts"),
        &|_| None,
    )
    .unwrap_or_else(|e| panic!("{}", e.0.len()));
    let mut result = ProbeResult::for_test("shop", Outcome::Fail, at(0));
    result.steps.push(StepResult {
        name: "goto https://shop.example/".into(),
        at_ms: 0.0,
        ms: 80.0,
        ok: false,
        error: Some("the page logged a console error: checkout broke".into()),
        load_ms: Some(70.0),
        vitals: Some(WebVitals {
            url: Some("https://shop.example/".into()),
            lcp_ms: Some(512.0),
            cls: Some(0.25),
            ..WebVitals::default()
        }),
    });
    result.browser.console_errors.push(PageError {
        step: 1,
        message: "checkout broke".into(),
        url: None,
        status: None,
    });
    result.browser.film_strip.push(FilmFrame {
        step: 1,
        name: "goto https://shop.example/".into(),
        jpeg: "/9j/AAAA".into(),
    });
    let mut state = state(Status::Down, at(0));
    state.regions.insert(
        "eu".into(),
        crate::rules::RegionState {
            verdict: Verdict::Failing,
            consecutive_failures: 1,
            consecutive_successes: 0,
            degraded: None,
            stale: false,
            last_seen: at(0),
            last: (&result).into(),
        },
    );
    let states = HashMap::from([("shop".to_string(), state)]);
    let results = [result];
    let report = compute(&Inputs {
        config: &config,
        states: &states,
        events: &[],
        rollups: &[],
        rolled_until_ms: None,
        raw: &[],
        screenshots: &Default::default(),
        browser_results: &results,
        now: at(1),
    });
    let region = &report.checks[0].regions["eu"];
    assert_eq!(region.pages.len(), 1);
    assert_eq!(region.console_errors.len(), 1);
    let single = page::render(&report, None, Some("shop")).into_string();
    assert!(single.contains("Web Vitals · eu"), "{single}");
    assert!(
        single.contains("512 ms") && single.contains("0.250"),
        "{single}"
    );
    assert!(
        single.contains("step 1 console error: checkout broke"),
        "{single}"
    );
    assert!(
        single.contains("data:image/jpeg;base64,/9j/AAAA"),
        "{single}"
    );
    let all = page::render(&report, None, None).into_string();
    assert!(all.contains("Web Vitals · eu") && !all.contains("data:image/jpeg"));
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        json.contains("checkout broke") && !json.contains("/9j/AAAA"),
        "{json}"
    );
}

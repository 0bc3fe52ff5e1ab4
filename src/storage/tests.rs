//! The storage suite, written against the traits alone: every method of
//! `IngestStore`, `OutboxStore`, `HistoryStore`, `JobStore`,
//! `AnnouncementStore` and `CoordinationStore` is exercised
//! here, so a second backend is held to the same contract by adding one
//! line, `suite!(name, factory);`, where the factory makes a fresh, empty
//! backend on a given clock. The SQLite runs are at the bottom, with the
//! two tests that only mean something for a file (migrations on reopen, a
//! deleted file).
//!
//! Every test runs on a manual clock at a fixed time, so the retention
//! floors and the roll-up hours do not depend on when the suite runs.

use std::any::Any;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;
use crate::alert::{AlertEvent, AlertKind};
use crate::limits;
use crate::result::Outcome;
use crate::rollup::{HOUR_MS, hour_of};
use crate::rules::Status;

/// A fresh backend, and whatever must live as long as it (a temp dir).
pub(crate) struct Fresh {
    pub storage: Storage,
    pub _keep: Box<dyn Any + Send>,
}

/// Runs every suite test on the backends `$make` (an `async fn(Clock) -> Fresh`)
/// makes, one `#[tokio::test]` each, in a module named `$backend`.
macro_rules! suite {
    ($backend:ident, $make:path) => {
        suite!(@tests $backend, $make,
            results_are_idempotent_ordered_and_pruned,
            results_read_back_as_they_were_stored,
            finished_hours_are_rolled_up_and_late_results_roll_them_up_again,
            states_are_replaced_and_restored,
            a_decision_loads_what_it_names_and_commits_what_it_decides,
            decisions_on_one_check_run_one_after_the_other,
            events_read_newest_first_and_since_oldest_first,
            probe_events_latest_per_region,
            raw_and_ok_latencies,
            screenshots_are_capped_found_and_attached,
            outbox_due_grouped_and_recorded,
            outbox_claims_hold_until_they_expire_and_groups_go_whole,
            leases_registry_and_probe_contact_are_shared,
            recent_deliveries_of_a_channel_newest_first,
            pruning_keeps_alerts_still_owed_and_recent_events,
            silences_live_until_they_expire,
            health_and_file_checks_pass,
            announcements_are_stored_replaced_listed_and_deleted,
            a_kept_key_is_the_first_one_stored,
        );
    };
    (@tests $backend:ident, $make:path, $($test:ident),+ $(,)?) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $test() {
                    let fresh = $make(crate::clock::Clock::manual(super::now())).await;
                    super::$test(&fresh.storage).await;
                }
            )+
        }
    };
}

/// The suite's "now": fixed, half past an hour.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_773_145_800_000).unwrap_or_default()
}

fn result(check: &str, outcome: Outcome, started_at: DateTime<Utc>) -> ProbeResult {
    ProbeResult::for_test(check, outcome, started_at)
}

fn timed(check: &str, region: &str, started_at: DateTime<Utc>, ms: f64) -> ProbeResult {
    let mut r = result(check, Outcome::Ok, started_at);
    r.region = region.into();
    r.duration_ms = ms;
    r
}

fn transition(check: &str, to: Status, at: DateTime<Utc>) -> Transition {
    Transition {
        id: Uuid::now_v7(),
        check: check.into(),
        from: Status::Up,
        to,
        at,
        previous_since: None,
        incident: Some(Uuid::now_v7()),
        summary: format!("{check} changed"),
        regions: Default::default(),
    }
}

fn probe_event(region: &str, stale: bool, at: DateTime<Utc>) -> ProbeEvent {
    ProbeEvent {
        id: Uuid::now_v7(),
        region: region.into(),
        stale,
        at,
        incident: Uuid::now_v7(),
        summary: format!("{region} stale={stale}"),
    }
}

fn delivery(channel: &str, created_at: DateTime<Utc>, due: DateTime<Utc>) -> Delivery {
    Delivery {
        id: Uuid::now_v7(),
        event_id: Uuid::now_v7(),
        channel: channel.into(),
        event: AlertEvent {
            version: "1".into(),
            event: AlertKind::Down,
            check: "api".into(),
            status: Status::Down,
            previous_status: Status::Up,
            since: created_at,
            incident: None,
            summary: "api is DOWN".into(),
            regions: Default::default(),
            url: None,
            duration_s: None,
            target: String::new(),
            labels: Default::default(),
            region: None,
            screenshot: None,
            screenshot_result: None,
            ack_url: None,
        },
        state: DeliveryState::Pending,
        attempts: 0,
        created_at,
        next_attempt_at: due,
        last_error: None,
        group_id: None,
    }
}

fn shot(check: &str, at: DateTime<Utc>, png: Vec<u8>) -> Screenshot {
    Screenshot {
        result_id: Uuid::now_v7(),
        check: check.into(),
        at,
        failed: true,
        png,
    }
}

fn ids<T, I: IntoIterator<Item = T>>(items: I, id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    items.into_iter().map(|i| id(&i)).collect()
}

async fn results_are_idempotent_ordered_and_pruned(storage: &Storage) {
    let now = now();
    let old = result("api", Outcome::Ok, now - Duration::days(40));
    let recent: Vec<ProbeResult> = (0..5)
        .map(|i| result("api", Outcome::Ok, now - Duration::seconds(i)))
        .collect();
    let mut batch = Batch::default();
    batch.results.push((old.clone(), now));
    batch
        .results
        .extend(recent.iter().map(|r| (r.clone(), now)));
    batch.results.push((result("web", Outcome::Ok, now), now));
    storage.ingest().write_batch(batch).await.unwrap();
    // The same results again: ignored, not duplicated.
    let mut again = Batch::default();
    again.results.push((recent[0].clone(), now));
    storage.ingest().write_batch(again).await.unwrap();
    let known = storage
        .ingest()
        .known_result_ids(vec![
            ResultKey::of(&recent[0]),
            ResultKey::of(&result("api", Outcome::Ok, now + Duration::seconds(9))),
        ])
        .await
        .unwrap();
    assert_eq!(known, vec![recent[0].id.to_string()]);

    let listed = storage
        .history()
        .recent_results("api".into(), 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 6, "one check's results only");
    assert_eq!(listed[0], recent[0], "newest first");
    assert_eq!(listed[5], old);
    let capped = storage
        .history()
        .recent_results("api".into(), 2)
        .await
        .unwrap();
    assert_eq!(capped, recent[..2]);

    let deleted = storage
        .jobs()
        .prune_older_than(now - Duration::days(30), 2)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let listed = storage
        .history()
        .recent_results("api".into(), 100)
        .await
        .unwrap();
    assert_eq!(listed, recent);
}

/// Results of every shape, read back field for field: an ordinary https
/// run, errors (one too long to look up), a browser flow, icmp, grpc,
/// timings finer than a microsecond, a start finer than a millisecond, ids
/// a probe did not derive.
async fn results_read_back_as_they_were_stored(storage: &Storage) {
    use crate::result::{
        FilmFrame, GrpcFigures, IcmpFigures, PageError, PageInfo, Phases, StepResult, WebVitals,
    };
    let now = now();
    let at = |s: i64| now - Duration::seconds(s);
    let mut https = result("rt", Outcome::Ok, at(1));
    https.probe = "probe-1".into();
    https.status = Some(200);
    https.duration_ms = 123.456;
    https.phases_ms = Phases {
        dns: Some(2.1),
        connect: Some(10.002),
        tls: Some(30.5),
        ttfb: Some(60.25),
        transfer: Some(0.999),
    };
    https.address = Some("2001:db8::1".into());
    https.ip_family = Some("ipv6".into());
    https.http_version = Some("2".into());
    https.cert_expiry = DateTime::from_timestamp(1_780_000_000, 0);
    https.id = https.own_run_id();
    let mut failing = result(
        "rt",
        Outcome::Error,
        at(2) + Duration::nanoseconds(123_456_789),
    );
    failing.error = Some("connect: connection refused (os error 111)".into());
    failing.phases_ms.dns = Some(0.5);
    let mut long_error = result("rt", Outcome::Fail, at(3));
    long_error.error = Some("x".repeat(limits::SQLITE_TEXT_INTERNED_BYTES_MAX + 1));
    long_error.status = Some(503);
    long_error.degraded = Some("certificate expires in 3 days".into());
    let mut browser = result("rt", Outcome::Fail, at(4));
    browser.notes = vec!["body truncated at 1 MiB".into()];
    browser.steps = vec![StepResult {
        name: "goto https://example.com/".into(),
        at_ms: 0.0,
        ms: 812.5,
        ok: false,
        error: Some("timed out".into()),
        load_ms: Some(700.0),
        vitals: Some(WebVitals {
            url: Some("https://example.com/".into()),
            lcp_ms: Some(650.0),
            cls: Some(0.01),
            ..WebVitals::default()
        }),
    }];
    browser.page = Some(PageInfo {
        url: Some("https://example.com/".into()),
        title: Some("Example".into()),
    });
    browser.browser.console_errors = vec![PageError {
        step: 1,
        message: "Uncaught TypeError".into(),
        url: None,
        status: None,
    }];
    browser.browser.request_errors = vec![PageError {
        step: 1,
        message: "404".into(),
        url: Some("https://example.com/x.js".into()),
        status: Some(404),
    }];
    browser.browser.film_strip = vec![FilmFrame {
        step: 1,
        name: "goto".into(),
        jpeg: "AAAA".into(),
    }];
    let mut icmp = result("rt", Outcome::Ok, at(5));
    icmp.icmp = Some(IcmpFigures {
        address: "127.0.0.1".into(),
        socket: "datagram".into(),
        sent: 3,
        received: 3,
        loss_percent: 0.0,
        rtt_min_ms: Some(0.01),
        rtt_avg_ms: Some(0.02),
        rtt_max_ms: Some(0.03),
        reply_hop_limit: Some(64),
    });
    let mut grpc = result("rt", Outcome::Fail, at(6));
    grpc.grpc = Some(GrpcFigures {
        status_code: 5,
        serving_status: Some("SERVICE_UNKNOWN".into()),
    });
    let mut fine = result("rt", Outcome::Timeout, at(7));
    fine.duration_ms = 1.234_567_89;
    fine.phases_ms.connect = Some(0.000_1);
    fine.phases_ms.ttfb = Some(4.0);
    fine.region = "eu-west".into();
    let stored = vec![https, failing, long_error, browser, icmp, grpc, fine];
    let mut batch = Batch::default();
    batch
        .results
        .extend(stored.iter().map(|r| (r.clone(), now)));
    storage.ingest().write_batch(batch).await.unwrap();
    let listed = storage
        .history()
        .recent_results("rt".into(), 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), stored.len());
    for (read, written) in listed.iter().zip(&stored) {
        assert_eq!(read, written);
    }
    let mut keys: Vec<ResultKey> = stored.iter().map(ResultKey::of).collect();
    keys.push(ResultKey::of(&result("rt", Outcome::Ok, at(8))));
    let mut known = storage.ingest().known_result_ids(keys).await.unwrap();
    let mut ids: Vec<String> = stored.iter().map(|r| r.id.to_string()).collect();
    known.sort();
    ids.sort();
    assert_eq!(known, ids);
}

async fn finished_hours_are_rolled_up_and_late_results_roll_them_up_again(storage: &Storage) {
    let now = now();
    let current = hour_of(now.timestamp_millis());
    let two_hours_ago = DateTime::from_timestamp_millis(current - 2 * HOUR_MS + 60_000).unwrap();
    let mut batch = Batch::default();
    for i in 0..4 {
        let r = timed("api", "eu", two_hours_ago + Duration::seconds(i), 100.0);
        batch.results.push((r, now));
    }
    // A run of its own: another millisecond (one region's run of a check
    // at one millisecond is one result, `ResultKey`).
    let mut failed = result(
        "api",
        Outcome::Timeout,
        two_hours_ago + Duration::seconds(10),
    );
    failed.region = "eu".into();
    failed.duration_ms = 9_000.0;
    batch.results.push((failed, now));
    // The current hour is not over: not rolled up.
    batch.results.push((result("api", Outcome::Ok, now), now));
    storage.ingest().write_batch(batch).await.unwrap();

    assert_eq!(storage.jobs().roll_up(now, 24).await.unwrap(), 2);
    assert_eq!(
        storage.jobs().roll_up(now, 24).await.unwrap(),
        0,
        "nothing new"
    );
    let (rollups, mark) = storage
        .history()
        .rollups_since(current - 3 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!(mark, Some(current));
    assert_eq!(rollups.len(), 1);
    assert_eq!(
        (rollups[0].check.as_str(), rollups[0].region.as_str()),
        ("api", "eu")
    );
    assert_eq!(rollups[0].hour_ms, current - 2 * HOUR_MS);
    assert_eq!((rollups[0].total, rollups[0].ok), (5, 4));
    let p50 = rollups[0].latency.quantile(0.5).unwrap();
    assert!((p50 - 100.0).abs() < 5.0, "{p50}");
    let (later, _) = storage.history().rollups_since(current).await.unwrap();
    assert!(later.is_empty(), "from the given hour on");

    // A spooled result arrives late for that hour: rolled up again.
    let mut late = Batch::default();
    late.results.push((
        timed("api", "eu", two_hours_ago + Duration::minutes(5), 100.0),
        now,
    ));
    storage.ingest().write_batch(late).await.unwrap();
    assert_eq!(storage.jobs().roll_up(now, 24).await.unwrap(), 1);
    let (rollups, _) = storage
        .history()
        .rollups_since(current - 3 * HOUR_MS)
        .await
        .unwrap();
    assert_eq!((rollups[0].total, rollups[0].ok), (6, 5));
    let baseline = storage
        .history()
        .check_latency("api".into(), current - 3 * HOUR_MS, current)
        .await
        .unwrap();
    assert_eq!(baseline.count(), 5);
    let outside = storage
        .history()
        .check_latency("api".into(), current - HOUR_MS, current)
        .await
        .unwrap();
    assert_eq!(outside.count(), 0, "hours [from, to) only");
}

async fn states_are_replaced_and_restored(storage: &Storage) {
    assert!(storage.ingest().load_states().await.unwrap().is_empty());
    let down = CheckState {
        status: Status::Down,
        since: Some(now()),
        ..CheckState::default()
    };
    let mut batch = Batch::default();
    batch.states.push(("api".into(), CheckState::default()));
    batch.states.push(("web".into(), CheckState::default()));
    storage.ingest().write_batch(batch).await.unwrap();
    let mut batch = Batch::default();
    batch.states.push(("api".into(), down.clone()));
    storage.ingest().write_batch(batch).await.unwrap();
    let mut states = storage.ingest().load_states().await.unwrap();
    states.sort_by(|a, b| a.0.cmp(&b.0));
    // Every write of a state is one more revision.
    assert_eq!(
        states,
        vec![
            (
                "api".into(),
                Revised {
                    state: down,
                    revision: 2
                }
            ),
            (
                "web".into(),
                Revised {
                    state: CheckState::default(),
                    revision: 1
                }
            )
        ]
    );
}

async fn a_decision_loads_what_it_names_and_commits_what_it_decides(storage: &Storage) {
    let stored = result("api", Outcome::Ok, now());
    let mut batch = Batch::default();
    batch.results.push((stored.clone(), now()));
    batch.states.push(("api".into(), CheckState::default()));
    batch.states.push(("web".into(), CheckState::default()));
    storage.ingest().write_batch(batch).await.unwrap();
    let fresh = ResultKey::of(&result("api", Outcome::Ok, now() + Duration::seconds(5)));
    let load = Load {
        checks: vec![
            ("api".into(), Some(1)), // the caller's copy is current
            ("web".into(), Some(7)), // the caller's copy is not
            ("gone".into(), None),   // never stored
        ],
        results: vec![ResultKey::of(&stored), fresh],
    };
    let down = CheckState {
        status: Status::Down,
        ..CheckState::default()
    };
    let written = down.clone();
    let (committed, seen) = storage
        .decide(load, move |loaded| {
            let mut batch = Batch::default();
            batch.states.push(("api".into(), written));
            (batch, loaded)
        })
        .await
        .unwrap();
    assert_eq!(seen.states["api"], Stored::Current);
    assert_eq!(
        seen.states["web"],
        Stored::Changed(Revised {
            state: CheckState::default(),
            revision: 1
        })
    );
    assert_eq!(seen.states["gone"], Stored::Absent);
    assert_eq!(seen.known_ids, HashSet::from([stored.id.to_string()]));
    // The batch comes back as written, with each state's new revision.
    assert_eq!(committed.batch.states, vec![("api".into(), down.clone())]);
    assert_eq!(
        committed.revisions,
        std::collections::HashMap::from([("api".into(), 2)])
    );
    let states = storage.ingest().load_states().await.unwrap();
    assert!(states.contains(&(
        "api".into(),
        Revised {
            state: down,
            revision: 2
        }
    )));
}

/// Decisions on one check, made at once, each see what the one before
/// wrote: none is lost, whatever the backend's concurrency.
async fn decisions_on_one_check_run_one_after_the_other(storage: &Storage) {
    const DECISIONS: usize = 16;
    let mut running = Vec::new();
    for i in 0..DECISIONS {
        let storage = storage.clone();
        running.push(tokio::spawn(async move {
            let load = Load {
                checks: vec![("api".into(), None)],
                results: Vec::new(),
            };
            storage
                .decide(load, move |mut loaded| {
                    let mut state = match loaded.states.remove("api") {
                        Some(Stored::Changed(revised)) => revised.state,
                        _ => CheckState::default(),
                    };
                    state.changes.push(now() + Duration::seconds(i as i64));
                    let mut batch = Batch::default();
                    batch.states.push(("api".into(), state));
                    (batch, ())
                })
                .await
                .unwrap();
        }));
    }
    for decision in running {
        decision.await.unwrap();
    }
    let states = storage.ingest().load_states().await.unwrap();
    let (_, api) = states.iter().find(|(name, _)| name == "api").unwrap();
    assert_eq!(api.state.changes.len(), DECISIONS, "a decision was lost");
    assert_eq!(api.revision, DECISIONS as u64);
}

async fn events_read_newest_first_and_since_oldest_first(storage: &Storage) {
    let now = now();
    let events: Vec<Transition> = (0..5)
        .map(|i| transition("api", Status::Down, now - Duration::minutes(10 - i)))
        .collect();
    let mut batch = Batch {
        events: events.clone(),
        ..Batch::default()
    };
    batch
        .events
        .push(transition("web", Status::Down, now - Duration::days(3)));
    storage.ingest().write_batch(batch).await.unwrap();
    // The same event again: ignored.
    let mut again = Batch::default();
    again.events.push(events[0].clone());
    storage.ingest().write_batch(again).await.unwrap();

    let recent = storage
        .history()
        .recent_events("api".into(), 3)
        .await
        .unwrap();
    assert_eq!(
        ids(recent, |e| e.id),
        vec![events[4].id, events[3].id, events[2].id],
        "newest first, capped"
    );
    let since = storage
        .history()
        .events_since((now - Duration::days(1)).timestamp_millis(), 100)
        .await
        .unwrap();
    assert_eq!(
        since, events,
        "every check, oldest first, from the given time"
    );
    let capped = storage
        .history()
        .events_since((now - Duration::days(7)).timestamp_millis(), 2)
        .await
        .unwrap();
    assert_eq!(
        ids(capped, |e| e.id),
        vec![events[3].id, events[4].id],
        "capped, the oldest are left out"
    );
}

async fn probe_events_latest_per_region(storage: &Storage) {
    let now = now();
    let eu_stale = probe_event("eu", true, now - Duration::minutes(30));
    let eu_back = probe_event("eu", false, now - Duration::minutes(20));
    let us_stale = probe_event("us", true, now - Duration::minutes(10));
    let batch = Batch {
        probe_events: vec![eu_stale.clone(), eu_back.clone(), us_stale.clone()],
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();

    let recent = storage.history().recent_probe_events(2).await.unwrap();
    assert_eq!(
        recent,
        vec![us_stale.clone(), eu_back.clone()],
        "newest first"
    );
    let mut last = storage.ingest().last_probe_events().await.unwrap();
    last.sort_by(|a, b| a.region.cmp(&b.region));
    assert_eq!(last, vec![eu_back, us_stale]);
}

async fn raw_and_ok_latencies(storage: &Storage) {
    let now = now();
    let since = now - Duration::minutes(10);
    let mut batch = Batch::default();
    batch
        .results
        .push((timed("api", "eu", now - Duration::hours(2), 50.0), now));
    batch
        .results
        .push((timed("api", "eu", now - Duration::minutes(5), 120.0), now));
    batch
        .results
        .push((timed("api", "us", now - Duration::minutes(3), 80.0), now));
    let mut failed = result("api", Outcome::Fail, now - Duration::minutes(2));
    failed.duration_ms = 700.0;
    batch.results.push((failed, now));
    batch
        .results
        .push((timed("web", "eu", now - Duration::minutes(1), 30.0), now));
    storage.ingest().write_batch(batch).await.unwrap();

    let raw = storage
        .history()
        .raw_latencies_since(since.timestamp_millis(), 100)
        .await
        .unwrap();
    let shape: Vec<(&str, &str, bool, f64)> = raw
        .iter()
        .map(|(c, r, _, ok, ms)| (c.as_str(), r.as_str(), *ok, *ms))
        .collect();
    assert_eq!(
        shape,
        vec![
            ("web", "eu", true, 30.0),
            ("api", "local", false, 700.0),
            ("api", "us", true, 80.0),
            ("api", "eu", true, 120.0),
        ],
        "newest first, every check, from the given time"
    );
    assert_eq!(raw[0].2, (now - Duration::minutes(1)).timestamp_millis());
    let newest = storage
        .history()
        .raw_latencies_since(since.timestamp_millis(), 1)
        .await
        .unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].0, "web", "capped, the newest are kept");

    let ok = storage
        .history()
        .recent_ok_latencies("api".into(), since.timestamp_millis(), 100)
        .await
        .unwrap();
    assert_eq!(
        ok,
        vec![80.0, 120.0],
        "ok results of the check, newest first"
    );
    let one = storage
        .history()
        .recent_ok_latencies("api".into(), since.timestamp_millis(), 1)
        .await
        .unwrap();
    assert_eq!(one, vec![80.0]);
}

async fn screenshots_are_capped_found_and_attached(storage: &Storage) {
    let now = now();
    let first = shot("flow", now - Duration::minutes(100), vec![1, 2, 3]);
    let batch = Batch {
        screenshots: vec![first.clone()],
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();
    let found = storage
        .history()
        .screenshot(first.result_id.to_string())
        .await
        .unwrap();
    assert_eq!(found, Some(("flow".to_string(), vec![1, 2, 3])));
    let attached = storage
        .outbox()
        .attachment(first.result_id.to_string())
        .await
        .unwrap();
    assert_eq!(attached, Some(vec![1, 2, 3]));
    assert_eq!(
        storage
            .outbox()
            .attachment(Uuid::now_v7().to_string())
            .await
            .unwrap(),
        None
    );

    // Past the per-check cap the oldest go.
    let newer: Vec<Screenshot> = (0..limits::SCREENSHOTS_PER_CHECK_MAX as i64)
        .map(|i| shot("flow", now - Duration::minutes(50 - i), vec![9]))
        .collect();
    let batch = Batch {
        screenshots: newer.clone(),
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();
    assert_eq!(
        storage
            .history()
            .screenshot(first.result_id.to_string())
            .await
            .unwrap(),
        None,
        "the oldest went past the cap"
    );
    let asked = vec![
        first.result_id.to_string(),
        newer[0].result_id.to_string(),
        "nothing".to_string(),
    ];
    let present = storage.history().screenshots_present(asked).await.unwrap();
    assert_eq!(
        present,
        HashSet::from([newer[0].result_id.to_string()]),
        "only the stored ones"
    );
}

async fn recent_deliveries_of_a_channel_newest_first(storage: &Storage) {
    let now = now();
    let old = delivery("am", now - Duration::minutes(3), now);
    let new = delivery("am", now - Duration::minutes(1), now);
    let other = delivery("hooks", now, now);
    let batch = Batch {
        deliveries: vec![old.clone(), other.clone(), new.clone()],
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();
    // Delivered rows count too: they are what the channel was told.
    storage
        .outbox()
        .record_attempt(old.id, "a".into(), DeliveryState::Delivered, now, None)
        .await
        .unwrap();
    let recent = storage
        .outbox()
        .recent_deliveries("am".to_string(), 10)
        .await
        .unwrap();
    assert_eq!(ids(recent, |d| d.id), vec![new.id, old.id]);
    let recent = storage
        .outbox()
        .recent_deliveries("am".to_string(), 1)
        .await
        .unwrap();
    assert_eq!(ids(recent, |d| d.id), vec![new.id]);
}

async fn outbox_due_grouped_and_recorded(storage: &Storage) {
    let now = now();
    let early = delivery(
        "hooks",
        now - Duration::minutes(3),
        now - Duration::minutes(3),
    );
    let later = delivery(
        "hooks",
        now - Duration::minutes(2),
        now - Duration::minutes(2),
    );
    let future = delivery(
        "hooks",
        now - Duration::minutes(1),
        now + Duration::minutes(5),
    );
    let other = delivery(
        "mail",
        now - Duration::minutes(1),
        now - Duration::minutes(1),
    );
    // Written twice (a resent batch): one row each.
    for _ in 0..2 {
        let batch = Batch {
            deliveries: vec![early.clone(), later.clone(), future.clone(), other.clone()],
            ..Batch::default()
        };
        storage.ingest().write_batch(batch).await.unwrap();
    }
    assert_eq!(storage.history().pending_delivery_count().await.unwrap(), 4);

    let due = storage
        .outbox()
        .claim_due(claim("a", now), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(due, |d| d.id),
        vec![early.id, later.id, other.id],
        "due by now, soonest first"
    );
    let next = storage
        .outbox()
        .next_due_deliveries("a".into(), 2)
        .await
        .unwrap();
    assert_eq!(
        next,
        vec![
            (early.id, early.next_attempt_at),
            (later.id, later.next_attempt_at)
        ]
    );

    // A failed attempt: still pending, one attempt more, due later, so the
    // untried go first.
    let retry_at = now - Duration::seconds(30);
    storage
        .outbox()
        .record_attempt(
            early.id,
            "a".into(),
            DeliveryState::Pending,
            retry_at,
            Some("503".into()),
        )
        .await
        .unwrap();
    let due = storage
        .outbox()
        .claim_due(claim("a", now), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(due.clone(), |d| d.id),
        vec![later.id, other.id, early.id],
        "fewest attempts first"
    );
    let retried = due.iter().find(|d| d.id == early.id).unwrap();
    assert_eq!(retried.attempts, 1);
    assert_eq!(retried.next_attempt_at, retry_at);
    assert_eq!(retried.last_error.as_deref(), Some("503"));
    assert_eq!(retried.event, early.event);

    // Folding a channel's pending alerts: the oldest, up to the limit.
    let members = storage
        .outbox()
        .claim_group("hooks".into(), later.id, 2, claim("a", now))
        .await
        .unwrap();
    assert_eq!(ids(members.clone(), |d| d.id), vec![early.id, later.id]);
    assert!(members.iter().all(|d| d.group_id == Some(later.id)));
    let again = storage
        .outbox()
        .group_members(later.id.to_string())
        .await
        .unwrap();
    assert_eq!(again, members, "the same set on a retry");
    let second = storage
        .outbox()
        .claim_group("hooks".into(), future.id, 10, claim("a", now))
        .await
        .unwrap();
    assert_eq!(
        ids(second, |d| d.id),
        vec![future.id],
        "claimed ones are not claimed again"
    );

    for (id, state) in [
        (early.id, DeliveryState::Delivered),
        (later.id, DeliveryState::Delivered),
        (other.id, DeliveryState::Dead),
    ] {
        storage
            .outbox()
            .record_attempt(id, "a".into(), state, now, None)
            .await
            .unwrap();
    }
    assert_eq!(storage.history().pending_delivery_count().await.unwrap(), 1);
    let delivered = storage
        .history()
        .deliveries_in_state(DeliveryState::Delivered, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(delivered, |d| d.id),
        vec![later.id, early.id],
        "newest first"
    );
    let dead = storage
        .history()
        .deliveries_in_state(DeliveryState::Dead, 10)
        .await
        .unwrap();
    assert_eq!(ids(dead.clone(), |d| d.id), vec![other.id]);
    assert_eq!(dead[0].state, DeliveryState::Dead);
    assert_eq!(dead[0].attempts, 1);
    assert!(
        storage
            .outbox()
            .claim_due(claim("a", now + Duration::hours(1)), 10)
            .await
            .unwrap()
            .iter()
            .all(|d| d.id == future.id),
        "finished ones are never due"
    );
}

/// A claim by `owner` from `at`, for a minute.
fn claim(owner: &str, at: DateTime<Utc>) -> Claim {
    Claim {
        owner: owner.into(),
        now: at,
        until: at + Duration::minutes(1),
    }
}

async fn outbox_claims_hold_until_they_expire_and_groups_go_whole(storage: &Storage) {
    let now = now();
    let first = delivery(
        "hooks",
        now - Duration::minutes(2),
        now - Duration::minutes(2),
    );
    let second = delivery(
        "hooks",
        now - Duration::minutes(1),
        now - Duration::minutes(1),
    );
    let mail = delivery(
        "mail",
        now - Duration::minutes(1),
        now - Duration::minutes(1),
    );
    let batch = Batch {
        deliveries: vec![first.clone(), second.clone(), mail.clone()],
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();
    // Replica a folds the hooks into a group: b may not take any of it.
    let group = storage
        .outbox()
        .claim_group("hooks".into(), first.id, 10, claim("a", now))
        .await
        .unwrap();
    assert_eq!(ids(group, |d| d.id), vec![first.id, second.id]);
    let for_b = storage
        .outbox()
        .claim_due(claim("b", now), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(for_b, |d| d.id),
        vec![mail.id],
        "b gets what a does not hold"
    );
    let for_a = storage
        .outbox()
        .claim_due(claim("a", now), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(for_a, |d| d.id),
        vec![first.id, second.id],
        "a keeps its own claims (b holds the mail)"
    );
    // For b, a's rows fall due when a's claim runs out.
    let next = storage
        .outbox()
        .next_due_deliveries("b".into(), 10)
        .await
        .unwrap();
    let first_due = next
        .iter()
        .find(|(id, _)| *id == first.id)
        .map(|(_, at)| *at);
    assert_eq!(first_due, Some(now + Duration::minutes(1)));
    // a died mid-send: after its claim, b takes the whole group.
    let later = now + Duration::minutes(2);
    let retaken = storage
        .outbox()
        .claim_due(claim("b", later), 1)
        .await
        .unwrap();
    assert_eq!(
        ids(retaken, |d| d.id),
        vec![first.id, second.id],
        "a group is retaken whole, even past the limit"
    );
    // a's late outcome changes nothing: b holds the delivery now.
    let late = storage
        .outbox()
        .record_attempt(first.id, "a".into(), DeliveryState::Delivered, later, None)
        .await
        .unwrap();
    assert!(!late, "an attempt that outlived its claim records nothing");
    // An attempt frees the claim; a stop frees the rest.
    let recorded = storage
        .outbox()
        .record_attempt(
            first.id,
            "b".into(),
            DeliveryState::Pending,
            later,
            Some("503".into()),
        )
        .await
        .unwrap();
    assert!(recorded);
    storage.outbox().release_claims("b".into()).await.unwrap();
    let for_c = storage
        .outbox()
        .claim_due(claim("c", later), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(for_c, |d| d.id),
        vec![second.id, mail.id, first.id],
        "free again at once (untried first, then by id)"
    );
}

async fn leases_registry_and_probe_contact_are_shared(storage: &Storage) {
    let now = now();
    let coordination = storage.coordination();
    let until = now + Duration::seconds(8);
    assert!(
        coordination
            .hold_lease(LEADER_LEASE, "a", now, until)
            .await
            .unwrap()
    );
    assert!(
        !coordination
            .hold_lease(LEADER_LEASE, "b", now, until)
            .await
            .unwrap(),
        "held by a"
    );
    assert!(
        coordination
            .hold_lease(LEADER_LEASE, "a", now, until)
            .await
            .unwrap(),
        "a renews"
    );
    assert_eq!(
        coordination
            .lease_holder(LEADER_LEASE, now)
            .await
            .unwrap()
            .as_deref(),
        Some("a")
    );
    // a stops renewing: b takes it when it runs out, and a cannot renew.
    let later = until + Duration::seconds(1);
    let later_until = later + Duration::seconds(8);
    assert!(
        coordination
            .hold_lease(LEADER_LEASE, "b", later, later_until)
            .await
            .unwrap()
    );
    assert!(
        !coordination
            .hold_lease(LEADER_LEASE, "a", later, later_until)
            .await
            .unwrap()
    );
    coordination.release_lease(LEADER_LEASE, "a").await.unwrap();
    assert_eq!(
        coordination
            .lease_holder(LEADER_LEASE, later)
            .await
            .unwrap()
            .as_deref(),
        Some("b"),
        "only the holder gives a lease up"
    );
    coordination.release_lease(LEADER_LEASE, "b").await.unwrap();
    assert_eq!(
        coordination
            .lease_holder(LEADER_LEASE, later)
            .await
            .unwrap(),
        None
    );

    let replica = |id: &str, seen: DateTime<Utc>| Replica {
        id: id.into(),
        listen: "127.0.0.1:8080".into(),
        config_hash: "abc".into(),
        started_at: now - Duration::hours(1),
        last_seen: seen,
    };
    coordination
        .record_replica(replica("a", now - Duration::minutes(5)))
        .await
        .unwrap();
    coordination
        .record_replica(replica("b", now))
        .await
        .unwrap();
    coordination
        .record_replica(replica("b", now))
        .await
        .unwrap();
    let recent = coordination
        .replicas_since(now - Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(recent, vec![replica("b", now)], "seen lately, once each");
    assert_eq!(
        coordination
            .replicas_since(now - Duration::hours(1))
            .await
            .unwrap()
            .len(),
        2
    );

    let contact = |result: Option<i64>, seen: Option<i64>, pending: Option<u64>| ProbeContact {
        region: "eu".into(),
        last_result: result.map(|s| now + Duration::seconds(s)),
        last_contact: seen.map(|s| now + Duration::seconds(s)),
        clock_skew_ms: pending.map(|_| 5),
        spool_pending: pending,
    };
    coordination
        .record_probe_contacts(vec![contact(Some(10), Some(10), Some(3))])
        .await
        .unwrap();
    // An older report from another replica: the newest of each stays.
    coordination
        .record_probe_contacts(vec![
            contact(Some(5), Some(20), None),
            contact(None, None, None),
        ])
        .await
        .unwrap();
    let shared = coordination.probe_contacts().await.unwrap();
    assert_eq!(shared, vec![contact(Some(10), Some(20), Some(3))]);
    coordination
        .record_probe_contacts(Vec::new())
        .await
        .unwrap();

    // Fast-confirmation requests: kept for the window, read by time.
    let old = now - Duration::seconds(30);
    coordination
        .push_run_now("a", vec![("eu".into(), "api".into())], old, old)
        .await
        .unwrap();
    coordination
        .push_run_now(
            "b",
            vec![("eu".into(), "db".into()), ("us".into(), "db".into())],
            now,
            now - Duration::seconds(10),
        )
        .await
        .unwrap();
    let requests = coordination
        .run_now_since(now - Duration::minutes(5))
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = requests
        .iter()
        .map(|r| (r.origin.as_str(), r.region.as_str(), r.check.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![("b", "eu", "db"), ("b", "us", "db")],
        "older ones forgotten"
    );
    assert!(requests[0].seq < requests[1].seq);
    assert_eq!(requests[0].at, now);
    assert!(
        coordination
            .run_now_since(now + Duration::seconds(1))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn pruning_keeps_alerts_still_owed_and_recent_events(storage: &Storage) {
    let now = now();
    let old = now - Duration::days(40);
    let (sent, owed) = (delivery("a", old, old), delivery("b", old, old));
    let kept_event = transition("api", Status::Down, old);
    let ancient_event = transition("api", Status::Down, now - Duration::days(100));
    let batch = Batch {
        deliveries: vec![sent.clone(), owed.clone()],
        events: vec![kept_event.clone(), ancient_event],
        probe_events: vec![probe_event("eu", true, now - Duration::days(100))],
        screenshots: vec![shot("flow", old, vec![1])],
        ..Batch::default()
    };
    storage.ingest().write_batch(batch).await.unwrap();
    storage
        .outbox()
        .record_attempt(sent.id, "a".into(), DeliveryState::Delivered, now, None)
        .await
        .unwrap();
    let deleted = storage
        .jobs()
        .prune_older_than(now - Duration::days(30), 10)
        .await
        .unwrap();
    assert_eq!(
        deleted, 4,
        "the delivered alert, the 100-day events, the screenshot"
    );
    let pending = storage
        .history()
        .deliveries_in_state(DeliveryState::Pending, 10)
        .await
        .unwrap();
    assert_eq!(ids(pending, |d| d.id), vec![owed.id]);
    assert!(
        storage
            .history()
            .deliveries_in_state(DeliveryState::Delivered, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let events = storage
        .history()
        .recent_events("api".into(), 10)
        .await
        .unwrap();
    assert_eq!(
        events,
        vec![kept_event],
        "events keep the status page's days"
    );
    assert!(
        storage
            .history()
            .recent_probe_events(10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn silences_live_until_they_expire(storage: &Storage) {
    let now = now();
    let silence = |minutes: i64| Silence {
        id: Uuid::now_v7(),
        check: Some("api".into()),
        labels: Default::default(),
        reason: "deploy".into(),
        author: "ops".into(),
        created_at: now - Duration::hours(1),
        expires_at: now + Duration::minutes(minutes),
    };
    let (expired, later, sooner) = (silence(-1), silence(60), silence(10));
    for s in [&expired, &later, &sooner] {
        storage.ingest().insert_silence(s).await.unwrap();
    }
    let live = storage.ingest().live_silences(now).await.unwrap();
    assert_eq!(
        live,
        vec![sooner.clone(), later.clone()],
        "soonest to expire first"
    );
    assert!(
        !storage.ingest().delete_silence(expired.id).await.unwrap(),
        "the expired one was deleted"
    );
    assert!(storage.ingest().delete_silence(sooner.id).await.unwrap());
    assert!(!storage.ingest().delete_silence(sooner.id).await.unwrap());
    assert_eq!(
        storage.ingest().live_silences(now).await.unwrap(),
        vec![later]
    );
}

async fn a_kept_key_is_the_first_one_stored(storage: &Storage) {
    let ingest = storage.ingest();
    let first = ingest
        .keep_key("ack".into(), b"first".to_vec())
        .await
        .unwrap();
    assert_eq!(first, b"first".to_vec());
    let again = ingest
        .keep_key("ack".into(), b"second".to_vec())
        .await
        .unwrap();
    assert_eq!(again, b"first".to_vec(), "the stored key wins");
    let other = ingest
        .keep_key("other".into(), b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(other, b"x".to_vec(), "keys are kept by name");
}

async fn health_and_file_checks_pass(storage: &Storage) {
    storage.jobs().health_probe().await.unwrap();
    storage.jobs().health_probe().await.unwrap();
    storage.jobs().check_file().unwrap();
}

async fn announcements_are_stored_replaced_listed_and_deleted(storage: &Storage) {
    use crate::config::page::{Announcement, AnnouncementUpdate, Severity, UpdateStatus};
    let store = storage.announcements();
    let make = |id: &str, created_at: DateTime<Utc>| Announcement {
        id: id.into(),
        title: format!("{id} title"),
        severity: Severity::Maintenance,
        checks: vec!["api".into()],
        groups: Vec::new(),
        incident: None,
        updates: vec![AnnouncementUpdate {
            at: created_at,
            status: UpdateStatus::Investigating,
            text: "looking".into(),
        }],
        created_at,
        source: "api".into(),
    };
    assert_eq!(store.announcement_count().await.unwrap(), 0);
    assert!(store.announcement("a".into()).await.unwrap().is_none());
    store
        .put_announcement(make("old", now() - Duration::hours(2)))
        .await
        .unwrap();
    let mut newer = make("new", now() - Duration::hours(1));
    store.put_announcement(newer.clone()).await.unwrap();
    // Replacing keeps one row and its place in the order.
    newer.updates.push(AnnouncementUpdate {
        at: now(),
        status: UpdateStatus::Resolved,
        text: "fixed".into(),
    });
    store.put_announcement(newer.clone()).await.unwrap();
    assert_eq!(store.announcement_count().await.unwrap(), 2);
    assert_eq!(
        store.announcement("new".into()).await.unwrap(),
        Some(newer.clone())
    );
    let listed = store.list_announcements(10).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["new", "old"], "newest first");
    assert_eq!(store.list_announcements(1).await.unwrap().len(), 1);
    assert!(store.delete_announcement("old".into()).await.unwrap());
    assert!(!store.delete_announcement("old".into()).await.unwrap());
    assert_eq!(store.announcement_count().await.unwrap(), 1);
}

async fn sqlite(clock: Clock) -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open_with_clock(dir.path(), clock).unwrap();
    Fresh {
        storage,
        _keep: Box::new(dir),
    }
}

suite!(on_sqlite, super::sqlite);

/// A database of its own on a real PostgreSQL server (see
/// `postgres::test_server`).
async fn postgres(clock: Clock) -> Fresh {
    let database = postgres::test_server::fresh().await;
    let storage = Storage::connect_postgres(&database.url, clock)
        .await
        .unwrap();
    Fresh {
        storage,
        _keep: Box::new(database),
    }
}

suite!(on_postgres, super::postgres);

#[tokio::test]
async fn sqlite_reopening_runs_migrations_once_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let mut batch = Batch::default();
    batch.states.push(("api".into(), CheckState::default()));
    storage.ingest().write_batch(batch).await.unwrap();
    drop(storage);
    let storage = Storage::open(dir.path()).unwrap();
    assert_eq!(storage.ingest().load_states().await.unwrap().len(), 1);
}

#[tokio::test]
async fn sqlite_a_deleted_file_is_an_error_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    std::fs::remove_file(dir.path().join("lookout.db")).unwrap();
    assert!(matches!(
        storage.jobs().check_file(),
        Err(StorageError::FileGone {
            what: "deleted",
            ..
        })
    ));
    let written = storage.ingest().write_batch(Batch::default()).await;
    assert!(matches!(written, Err(StorageError::FileGone { .. })));
    assert!(storage.jobs().health_probe().await.is_err());
}

/// A trigger that makes writing `check`'s state fail with `raise`:
/// `ABORT` fails the statement, `ROLLBACK` the whole transaction.
fn refuse_states_of(dir: &std::path::Path, check: &str, raise: &str) {
    rusqlite::Connection::open(dir.join("lookout.db"))
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER refuse_{check} BEFORE INSERT ON check_state WHEN NEW.check_name = '{check}'
             BEGIN SELECT RAISE({raise}, 'refused by the test'); END;"
        ))
        .unwrap();
}

/// A decision that holds the writer for `hold` once it runs (returned
/// once it does), so that the decisions queued meanwhile are committed
/// as one group.
fn hold_the_writer(
    storage: &Storage,
    hold: std::time::Duration,
) -> tokio::task::JoinHandle<Result<(), StorageError>> {
    let (started, holding) = std::sync::mpsc::channel();
    let storage = storage.clone();
    let holder = tokio::spawn(async move {
        storage
            .decide(Load::default(), move |_| {
                let _ = started.send(());
                std::thread::sleep(hold);
                (Batch::default(), ())
            })
            .await
            .map(|_| ())
    });
    let _ = holding.recv();
    holder
}

/// Group commit on SQLite: decisions committed together stay apart. One
/// whose writes fail is rolled back alone (its result row too) and told its
/// error; the others of its group are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_decision_that_fails_in_a_group_commit_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    refuse_states_of(dir.path(), "refused", "ABORT");
    let holder = hold_the_writer(&storage, std::time::Duration::from_millis(300));
    let names = ["a", "b", "refused", "c", "d"];
    let results: Vec<ProbeResult> = names
        .iter()
        .map(|name| result(name, Outcome::Ok, now()))
        .collect();
    let mut running = Vec::new();
    for (name, stored) in names.iter().zip(&results) {
        let (storage, name, stored) = (storage.clone(), name.to_string(), stored.clone());
        running.push(tokio::spawn(async move {
            let load = Load {
                checks: vec![(name.clone(), None)],
                results: vec![ResultKey::of(&stored)],
            };
            storage
                .decide(load, move |_| {
                    let mut batch = Batch::default();
                    batch.results.push((stored, now()));
                    batch.states.push((name, CheckState::default()));
                    (batch, ())
                })
                .await
                .map(|_| ())
        }));
    }
    holder.await.unwrap().unwrap();
    for (name, decision) in names.iter().zip(running) {
        let decided = decision.await.unwrap();
        assert_eq!(decided.is_err(), *name == "refused", "{name}: {decided:?}");
    }
    let mut states: Vec<String> = storage
        .ingest()
        .load_states()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    states.sort();
    assert_eq!(states, ["a", "b", "c", "d"]);
    let known = storage
        .ingest()
        .known_result_ids(results.iter().map(ResultKey::of).collect())
        .await
        .unwrap();
    let expected: Vec<String> = results
        .iter()
        .filter(|r| r.check != "refused")
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(known, expected, "the refused decision's result was kept");
}

/// A decision committed alone (no savepoint) whose writes fail leaves
/// nothing behind: not its result, not its other states.
#[tokio::test]
async fn sqlite_a_decision_alone_that_fails_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    refuse_states_of(dir.path(), "refused", "ABORT");
    let stored = result("a", Outcome::Ok, now());
    let key = ResultKey::of(&stored);
    let decided = storage
        .decide(Load::default(), move |_| {
            let mut batch = Batch::default();
            batch.results.push((stored, now()));
            batch.states.push(("a".to_string(), CheckState::default()));
            batch
                .states
                .push(("refused".to_string(), CheckState::default()));
            (batch, ())
        })
        .await;
    assert!(decided.is_err());
    assert!(storage.ingest().load_states().await.unwrap().is_empty());
    let known = storage.ingest().known_result_ids(vec![key]).await.unwrap();
    assert!(known.is_empty(), "the failed decision's result was kept");
}

/// A failure SQLite answers by rolling the whole transaction back (here a
/// trigger's ROLLBACK; a full disk does the same) fails every decision of
/// the group: the earlier ones' writes are gone, and the later ones are not
/// run outside the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_rolled_back_group_commit_fails_every_decision_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    refuse_states_of(dir.path(), "b", "ROLLBACK");
    let holder = hold_the_writer(&storage, std::time::Duration::from_millis(400));
    let mut running = Vec::new();
    for name in ["a", "b", "c"] {
        let storage = storage.clone();
        running.push(tokio::spawn(async move {
            storage
                .decide(Load::default(), move |_| {
                    let mut batch = Batch::default();
                    batch.states.push((name.to_string(), CheckState::default()));
                    (batch, ())
                })
                .await
                .map(|_| ())
        }));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    holder.await.unwrap().unwrap();
    for (name, decision) in ["a", "b", "c"].iter().zip(running) {
        let decided = decision.await.unwrap();
        assert!(decided.is_err(), "{name} was told it was committed");
    }
    let states = storage.ingest().load_states().await.unwrap();
    assert!(
        states.is_empty(),
        "stored: {:?}",
        states.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
}

/// In a group commit a decision is given what the decisions before it in
/// the group wrote (not read back from the rows), and nothing of one that
/// failed and was rolled back; a decision whose copy is the revision the
/// group wrote is told it is current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_decision_in_a_group_commit_is_given_what_the_ones_before_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    refuse_states_of(dir.path(), "refused", "ABORT");
    let holder = hold_the_writer(&storage, std::time::Duration::from_millis(400));
    let at = |minute: i64| now() + Duration::minutes(minute);
    // (the revision the decision holds, the `since` it writes, whether it
    // also writes the refused check)
    let decisions = [
        (None, 1, false),
        (None, 2, true),
        (None, 3, false),
        (Some(2), 4, false),
    ];
    let mut running = Vec::new();
    for (cached, minute, refused) in decisions {
        let storage = storage.clone();
        running.push(tokio::spawn(async move {
            let load = Load {
                checks: vec![("a".to_string(), cached)],
                results: Vec::new(),
            };
            storage
                .decide(load, move |loaded| {
                    let seen = loaded.states.get("a").cloned();
                    let mut batch = Batch::default();
                    let state = CheckState {
                        since: Some(at(minute)),
                        ..CheckState::default()
                    };
                    batch.states.push(("a".to_string(), state));
                    if refused {
                        batch
                            .states
                            .push(("refused".to_string(), CheckState::default()));
                    }
                    (batch, seen)
                })
                .await
                .map(|(_, seen)| seen)
        }));
        // Queued in this order behind the holder.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    holder.await.unwrap().unwrap();
    let mut seen = Vec::new();
    for decision in running {
        seen.push(decision.await.unwrap());
    }
    assert_eq!(seen[0].as_ref().ok(), Some(&Some(Stored::Absent)));
    assert!(
        seen[1].is_err(),
        "the refused decision failed: {:?}",
        seen[1]
    );
    match &seen[2] {
        Ok(Some(Stored::Changed(revised))) => {
            assert_eq!(revised.revision, 1);
            assert_eq!(
                revised.state.since,
                Some(at(1)),
                "not the rolled-back write"
            );
        }
        other => panic!("the third decision saw {other:?}"),
    }
    assert_eq!(seen[3].as_ref().ok(), Some(&Some(Stored::Current)));
    let states = storage.ingest().load_states().await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].1.revision, 3);
    assert_eq!(states[0].1.state.since, Some(at(4)));
}

/// The suite's promise, kept as the traits grow: every method a trait
/// declares is called somewhere in this file.
#[test]
fn every_trait_method_is_in_the_suite() {
    let traits = [include_str!("mod.rs"), include_str!("coordination.rs")].concat();
    let suite = include_str!("tests.rs");
    let mut in_trait = false;
    let mut declared = Vec::new();
    let mut missing = Vec::new();
    for line in traits.lines() {
        if line.starts_with("pub trait ") && line.ends_with('{') {
            in_trait = true;
        } else if line == "}" {
            in_trait = false;
        } else if in_trait {
            let fn_name = line
                .trim_start()
                .strip_prefix("async fn ")
                .or_else(|| line.trim_start().strip_prefix("fn "));
            if let Some(name) = fn_name.and_then(|rest| rest.split(['(', '<']).next()) {
                declared.push(name);
                if !suite.contains(&format!(".{name}(")) {
                    missing.push(name);
                }
            }
        }
    }
    // The reading itself works: the first and the last method are found.
    assert!(declared.contains(&"known_result_ids") && declared.contains(&"check_file"));
    assert!(missing.is_empty(), "not exercised: {missing:?}");
}

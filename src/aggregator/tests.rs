//! The aggregator with a real SQLite store: ingest, alerts and holds,
//! fast confirmation, probe liveness, latency baselines.

use super::*;
use crate::alert;
use crate::result::Outcome;
use crate::storage::{Delivery, DeliveryState};

fn config() -> Arc<Config> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    std::fs::write(
        dir.path().join("checks/c.yaml"),
        "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1s\n",
    )
    .unwrap();
    let env = |_: &str| None;
    Arc::new(
        crate::config::load_with_env(&dir.path().join("checks"), &dir.path().join("alerts"), &env)
            .unwrap(),
    )
}

/// Pending check alerts: the region's probe going stale when a test
/// lets hours pass without results is not what these tests are about.
async fn pending_check_alerts(storage: &Storage, limit: usize) -> Vec<Delivery> {
    storage
        .history()
        .deliveries_in_state(DeliveryState::Pending, limit)
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.event.region.is_none())
        .collect()
}

/// A result of check `api` now, each at a millisecond of its own: storage
/// keeps one run per check, region and millisecond (`ResultKey`), and a
/// probe never starts a check twice in one.
fn result(outcome: Outcome) -> ProbeResult {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST_MS: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_millis();
    // The later of now and one past the last one handed out.
    let next = |last: i64| last.saturating_add(1).max(now);
    let ms = LAST_MS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(next(last)))
        .map_or(now, next);
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_else(Utc::now);
    ProbeResult::for_test("api", outcome, at)
}

/// An hour's silence on check `api`, added through the aggregator.
async fn silence_api(aggregator: &Aggregator) -> Silence {
    let silence = alert::silence::NewSilence {
        check: Some("api".into()),
        labels: Default::default(),
        reason: "deploy".into(),
        author: "ops".into(),
        expires_at: None,
        duration: Some("1h".into()),
    }
    .validate(Utc::now())
    .unwrap();
    aggregator.add_silence(silence).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_resent_batch_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
        .await
        .unwrap();
    let batch = vec![
        result(Outcome::Ok),
        result(Outcome::Fail),
        result(Outcome::Fail),
    ];
    let first = aggregator.ingest(batch.clone()).await.unwrap();
    assert_eq!(
        first,
        IngestReport {
            accepted: 3,
            duplicates: 0,
            unknown_checks: 0,
            history: 0,
            transitions: 2,
            refused: vec![],
        }
    );
    let again = aggregator.ingest(batch).await.unwrap();
    assert_eq!(
        again,
        IngestReport {
            accepted: 0,
            duplicates: 3,
            unknown_checks: 0,
            history: 0,
            transitions: 0,
            refused: vec![],
        }
    );
    assert_eq!(aggregator.state("api").await.unwrap().status, Status::Down);
    assert_eq!(aggregator.recent_events("api", 10).await.unwrap().len(), 2);

    // An ok result from days ago (a leftover whose id was pruned): stored
    // as history, the check still down.
    let mut old = result(Outcome::Ok);
    old.started_at = Utc::now() - chrono::Duration::days(40);
    let report = aggregator.ingest(vec![old]).await.unwrap();
    assert_eq!((report.accepted, report.history), (1, 1));
    assert_eq!(aggregator.state("api").await.unwrap().status, Status::Down);

    let mut stranger = result(Outcome::Ok);
    stranger.check = "gone".into();
    let report = aggregator.ingest(vec![stranger]).await.unwrap();
    assert_eq!(
        (report.accepted, report.unknown_checks),
        (1, 1),
        "stored, but judged by no rule"
    );
}

/// Each decision reads the check's stored state in its transaction, so
/// two aggregators on one database judge one check together: their
/// results count towards one verdict, and the outage is one incident with
/// one alert, not one per aggregator.
#[tokio::test]
async fn two_aggregators_on_one_database_judge_a_check_together() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let first = Aggregator::new(config_with_channels(""), storage.clone())
        .await
        .unwrap();
    let second = Aggregator::new(config_with_channels(""), Storage::open(dir.path()).unwrap())
        .await
        .unwrap();
    first.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    let mut transitions = 0;
    for i in 0..6 {
        let aggregator = if i % 2 == 0 { &second } else { &first };
        transitions += aggregator
            .ingest(vec![result(Outcome::Fail)])
            .await
            .unwrap()
            .transitions;
    }
    assert_eq!(transitions, 1, "up to down once, across both");
    let events = first.recent_events("api", 10).await.unwrap();
    let downs: Vec<_> = events.iter().filter(|e| e.to == Status::Down).collect();
    assert_eq!(downs.len(), 1, "{events:?}");
    let alerts = pending_check_alerts(&storage, 10).await;
    let downs_paged: std::collections::HashSet<Uuid> = alerts
        .iter()
        .filter(|d| d.event.event == alert::AlertKind::Down)
        .map(|d| d.event_id)
        .collect();
    assert_eq!(
        downs_paged,
        [downs[0].id].into(),
        "one page, to each channel"
    );
    // A recovery seen by the aggregator that did not see the outage begin
    // closes the same incident.
    second.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    let events = first.recent_events("api", 10).await.unwrap();
    let up = events.iter().find(|e| e.to == Status::Up).unwrap();
    assert_eq!(up.incident, downs[0].incident);
}

/// Six ok runs of `api` taking `ms`, in the minute before `end`.
fn ok_runs(end: DateTime<Utc>, ms: f64) -> Vec<ProbeResult> {
    (0..6)
        .map(|i| {
            let mut r =
                ProbeResult::for_test("api", Outcome::Ok, end - chrono::Duration::seconds(60 - i));
            r.duration_ms = ms;
            r
        })
        .collect()
}

#[tokio::test]
async fn a_p95_far_above_the_checks_own_baseline_is_degraded_until_it_settles() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let config = config_with("    alert: { p95_above_baseline: 2x }\n", "");
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    let now = Utc::now();
    // Two days of a steady 100 ms, then the last minutes at 500 ms.
    let mut history: Vec<ProbeResult> = (0..200)
        .map(|i| {
            let mut r = ProbeResult::for_test(
                "api",
                Outcome::Ok,
                now - chrono::Duration::hours(48) + chrono::Duration::minutes(10 * i),
            );
            r.duration_ms = 100.0;
            r
        })
        .collect();
    history.sort_by_key(|r| r.started_at);
    aggregator.ingest(history).await.unwrap();
    while storage.jobs().roll_up(now, 24).await.unwrap() > 0 {}
    assert_eq!(aggregator.state("api").await.unwrap().status, Status::Up);
    aggregator.ingest(ok_runs(now, 500.0)).await.unwrap();
    aggregator.judge_latency(Utc::now()).await.unwrap();
    let state = aggregator.state("api").await.unwrap();
    assert_eq!(state.status, Status::Degraded);
    let events = aggregator.recent_events("api", 1).await.unwrap();
    assert!(
        events[0].summary.contains("above 2x its 7-day p95"),
        "{}",
        events[0].summary
    );
    // Just under the line it crossed: still degraded (hysteresis).
    let hovering_at = now + chrono::Duration::minutes(20);
    aggregator
        .ingest(ok_runs(hovering_at, 190.0))
        .await
        .unwrap();
    aggregator.judge_latency(hovering_at).await.unwrap();
    assert_eq!(
        aggregator.state("api").await.unwrap().status,
        Status::Degraded
    );
    // Fast again: judged on the runs of the next window, it recovers.
    let later = now + chrono::Duration::minutes(40);
    aggregator.ingest(ok_runs(later, 110.0)).await.unwrap();
    aggregator.judge_latency(later).await.unwrap();
    let state = aggregator.state("api").await.unwrap();
    assert_eq!((state.status, state.latency_anomaly), (Status::Up, None));
    let events = aggregator.recent_events("api", 1).await.unwrap();
    assert_eq!(events[0].to, Status::Up, "{}", events[0].summary);
}

#[tokio::test]
async fn state_is_restored_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
            .await
            .unwrap();
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    }
    let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
        .await
        .unwrap();
    let views = aggregator.views().await;
    assert_eq!(
        (views[0].name.as_str(), views[0].status),
        ("api", Status::Up)
    );
}

fn config_with_channels(extra_check: &str) -> Arc<Config> {
    config_with(extra_check, "")
}

fn config_with(extra_check: &str, extra_alerts: &str) -> Arc<Config> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("checks")).unwrap();
    std::fs::create_dir(dir.path().join("alerts")).unwrap();
    std::fs::write(
        dir.path().join("checks/c.yaml"),
        format!("checks:\n  - name: api\n    http: {{ url: \"http://127.0.0.1:9/\" }}\n    every: 1s\n{extra_check}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("alerts/a.yaml"),
        format!("channels:\n  a: {{ webhook: {{ url: \"http://127.0.0.1:9/a\" }} }}\n  b: {{ webhook: {{ url: \"http://127.0.0.1:9/b\" }} }}\ndefaults:\n  channels: [a, b]\n{extra_alerts}"),
    )
    .unwrap();
    let env = |_: &str| None;
    Arc::new(
        crate::config::load_with_env(&dir.path().join("checks"), &dir.path().join("alerts"), &env)
            .unwrap(),
    )
}

#[tokio::test]
async fn state_changes_queue_one_delivery_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
        .await
        .unwrap();
    aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    assert!(pending.is_empty(), "a first verdict is not news");

    aggregator
        .ingest(vec![result(Outcome::Fail), result(Outcome::Fail)])
        .await
        .unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    let mut channels: Vec<&str> = pending.iter().map(|d| d.channel.as_str()).collect();
    channels.sort();
    assert_eq!(channels, vec!["a", "b"]);
    assert!(
        pending
            .iter()
            .all(|d| d.event.event == alert::AlertKind::Down && d.event.check == "api")
    );
    assert_eq!(
        pending[0].event_id, pending[1].event_id,
        "one event, two deliveries"
    );
    let events = aggregator.recent_events("api", 10).await.unwrap();
    assert_eq!(events[0].id, pending[0].event_id);
}

#[tokio::test]
async fn a_check_still_down_is_reminded() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let config =
        config_with_channels("    alert: { failures: 1, channels: [a], remind_every: 1h }\n");
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    aggregator
        .ingest(vec![result(Outcome::Fail)])
        .await
        .unwrap();
    let now = Utc::now();
    aggregator
        .tick(now + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1, "not yet");
    aggregator
        .tick(now + chrono::Duration::minutes(61))
        .await
        .unwrap();
    aggregator
        .tick(now + chrono::Duration::minutes(62))
        .await
        .unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    let kinds: Vec<alert::AlertKind> = pending.iter().map(|d| d.event.event).collect();
    assert_eq!(
        kinds,
        vec![alert::AlertKind::Reminder, alert::AlertKind::Down],
        "one reminder an hour"
    );
}

#[tokio::test]
async fn maintenance_holds_alerts_and_announces_what_is_still_true_after() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let now = Utc::now();
    let window = format!(
        "maintenance:\n  - name: upgrade\n    labels: {{ team: payments }}\n    from: {}\n    until: {}\n",
        (now - chrono::Duration::hours(1)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339()
    );
    let config = config_with(
        "    labels: { team: payments }\n    alert: { failures: 1, channels: [a] }\n",
        &window,
    );
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    aggregator
        .ingest(vec![result(Outcome::Fail)])
        .await
        .unwrap();
    assert_eq!(
        aggregator.state("api").await.unwrap().status,
        Status::Down,
        "results still count"
    );
    let pending = pending_check_alerts(&storage, 10).await;
    assert!(pending.is_empty(), "held back during maintenance");
    aggregator
        .tick(now + chrono::Duration::minutes(30))
        .await
        .unwrap();
    assert!(pending_check_alerts(&storage, 10).await.is_empty());
    aggregator
        .tick(now + chrono::Duration::hours(2))
        .await
        .unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    assert_eq!(
        pending.len(),
        1,
        "still down when the window ends: alert now"
    );
    assert_eq!(pending[0].event.event, alert::AlertKind::Down);
    assert!(
        pending[0].event.summary.contains("held back"),
        "{}",
        pending[0].event.summary
    );
    aggregator
        .tick(now + chrono::Duration::hours(3))
        .await
        .unwrap();
    assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1, "once");
}

#[tokio::test]
async fn a_silenced_blip_that_recovers_alerts_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    let silence = silence_api(&aggregator).await;
    aggregator
        .ingest(vec![
            result(Outcome::Ok),
            result(Outcome::Fail),
            result(Outcome::Ok),
        ])
        .await
        .unwrap();
    assert!(aggregator.remove_silence(silence.id).await.unwrap());
    aggregator.tick(Utc::now()).await.unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    assert!(
        pending.is_empty(),
        "down and up again inside the silence: nothing to say"
    );
    assert!(aggregator.silences().is_empty());
}

#[tokio::test]
async fn labels_route_alerts_to_their_team() {
    let config = config_with(
        "    labels: { team: payments }\n",
        "routes:\n  - match: { team: payments }\n    channels: [b]\n",
    );
    assert_eq!(config.channels_for(&config.checks[0]), vec!["b"]);
    let other = config_with(
        "    labels: { team: web }\n",
        "routes:\n  - match: { team: payments }\n    channels: [b]\n",
    );
    assert_eq!(
        other.channels_for(&other.checks[0]),
        vec!["a", "b"],
        "no route matched: defaults"
    );
}

#[tokio::test]
async fn a_flapping_check_is_reported_once_then_settles() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap(); // unknown -> up: 1 change
    for _ in 0..5 {
        aggregator
            .ingest(vec![result(Outcome::Fail)])
            .await
            .unwrap();
        aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    }
    let kinds = |deliveries: Vec<Delivery>| -> Vec<alert::AlertKind> {
        let mut kinds: Vec<_> = deliveries
            .into_iter()
            .map(|d| (d.created_at, d.id, d.event.event))
            .collect();
        kinds.sort_by_key(|(at, id, _)| (*at, *id));
        kinds.into_iter().map(|(_, _, k)| k).collect()
    };
    use alert::AlertKind::{Down, Flapping, Up};
    let pending = kinds(pending_check_alerts(&storage, 50).await);
    // Changes 2..5 alert (down, up, down, up); the 6th makes it flapping.
    assert_eq!(pending, vec![Down, Up, Down, Up, Flapping]);
    aggregator
        .ingest(vec![result(Outcome::Fail)])
        .await
        .unwrap();
    assert_eq!(pending_check_alerts(&storage, 50).await.len(), 5, "paused");
    // Stable (down) for a whole window: the current state is announced.
    aggregator
        .tick(Utc::now() + chrono::Duration::minutes(61))
        .await
        .unwrap();
    let pending = kinds(pending_check_alerts(&storage, 50).await);
    assert_eq!(pending, vec![Down, Up, Down, Up, Flapping, Down]);
    assert!(!aggregator.state("api").await.unwrap().flapping);
}

#[tokio::test]
async fn a_recovery_during_a_silence_closes_the_incident_that_was_paged() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let config = config_with("    alert: { failures: 1, channels: [a] }\n", "");
    let aggregator = Aggregator::new(config, storage.clone()).await.unwrap();
    aggregator
        .ingest(vec![result(Outcome::Ok), result(Outcome::Fail)])
        .await
        .unwrap();
    let paged = pending_check_alerts(&storage, 10).await;
    let incident = paged[0].event.incident.expect("down names its incident");
    let silence = silence_api(&aggregator).await;
    aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap(); // recovers, held
    assert_eq!(pending_check_alerts(&storage, 10).await.len(), 1);
    aggregator.remove_silence(silence.id).await.unwrap();
    aggregator.tick(Utc::now()).await.unwrap();
    let pending = pending_check_alerts(&storage, 10).await;
    let up = pending
        .iter()
        .find(|d| d.event.event == alert::AlertKind::Up)
        .expect("the recovery is announced");
    assert_eq!(
        up.event.incident,
        Some(incident),
        "so PagerDuty resolves what it opened"
    );
}

fn from_region(region: &str, outcome: Outcome) -> ProbeResult {
    let mut result = result(outcome);
    result.region = region.to_string();
    result
}

async fn queued(aggregator: &Aggregator, region: &str) -> Vec<String> {
    aggregator
        .hub()
        .take_run_now(region, std::time::Duration::ZERO)
        .await
}

#[tokio::test]
async fn a_first_failure_asks_the_regions_that_have_not_moved_to_run_now() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_channels("    alert: { failures: 2 }\n");
    let aggregator = Aggregator::new(config, Storage::open(dir.path()).unwrap())
        .await
        .unwrap();
    for region in ["a", "b", "c"] {
        aggregator
            .ingest(vec![from_region(region, Outcome::Ok)])
            .await
            .unwrap();
    }
    for region in ["a", "b", "c"] {
        assert!(queued(&aggregator, region).await.is_empty(), "all is well");
    }
    // Region a sees a first failure: everyone not failing runs it now,
    // the reporter too (it needs a second failure to count).
    aggregator
        .ingest(vec![from_region("a", Outcome::Fail)])
        .await
        .unwrap();
    for region in ["a", "b", "c"] {
        assert_eq!(queued(&aggregator, region).await, ["api"], "{region}");
    }
    // a's second failure makes it failing: it asks nobody.
    aggregator
        .ingest(vec![from_region("a", Outcome::Fail)])
        .await
        .unwrap();
    for region in ["a", "b", "c"] {
        assert!(queued(&aggregator, region).await.is_empty(), "{region}");
    }
    // b and c confirm: down. Then one recovery asks the failing regions.
    for region in ["b", "c"] {
        for _ in 0..2 {
            aggregator
                .ingest(vec![from_region(region, Outcome::Fail)])
                .await
                .unwrap();
        }
    }
    assert_eq!(aggregator.state("api").await.unwrap().status, Status::Down);
    for region in ["a", "b", "c"] {
        let _ = queued(&aggregator, region).await;
    }
    aggregator
        .ingest(vec![from_region("b", Outcome::Ok)])
        .await
        .unwrap();
    assert_eq!(queued(&aggregator, "a").await, ["api"]);
    assert_eq!(queued(&aggregator, "c").await, ["api"]);
    assert!(queued(&aggregator, "b").await.is_empty());
}

#[tokio::test]
async fn without_fast_confirmation_nobody_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let aggregator = Aggregator::new(config(), Storage::open(dir.path()).unwrap())
        .await
        .unwrap()
        .with_fast_confirmation(false);
    for region in ["a", "b"] {
        aggregator
            .ingest(vec![from_region(region, Outcome::Ok)])
            .await
            .unwrap();
    }
    aggregator
        .ingest(vec![from_region("a", Outcome::Fail)])
        .await
        .unwrap();
    assert!(queued(&aggregator, "b").await.is_empty());
}

#[tokio::test]
async fn a_silent_probe_goes_stale_once_and_comes_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
        .await
        .unwrap()
        .with_probe_tokens(crate::config::probes::ProbeTokens::single(
            "local",
            "0123456789abcdef0123",
        ));
    aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    let start = Utc::now();
    // every: 1s, timeout 10s: the window is 13s.
    aggregator
        .tick(start + chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert!(!aggregator.probes()[0].stale);
    for later in [20, 21, 40] {
        aggregator
            .tick(start + chrono::Duration::seconds(later))
            .await
            .unwrap();
    }
    let probes = aggregator.probes();
    assert!(probes[0].stale, "{probes:?}");
    let events = storage.history().recent_probe_events(10).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]
            .summary
            .starts_with("probe local stopped reporting"),
        "{}",
        events[0].summary
    );
    let alerts = storage
        .history()
        .deliveries_in_state(DeliveryState::Pending, 10)
        .await
        .unwrap();
    assert_eq!(alerts.len(), 2, "one per channel of its checks");
    assert!(
        alerts
            .iter()
            .all(|d| d.event.event == alert::AlertKind::ProbeStale)
    );

    // A restart remembers it is stale: no second alert, and the return
    // closes the same incident.
    drop(aggregator);
    let aggregator = Aggregator::new(config_with_channels(""), storage.clone())
        .await
        .unwrap();
    aggregator
        .tick(Utc::now() + chrono::Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(
        storage
            .history()
            .recent_probe_events(10)
            .await
            .unwrap()
            .len(),
        1
    );
    aggregator.ingest(vec![result(Outcome::Ok)]).await.unwrap();
    let events = storage.history().recent_probe_events(10).await.unwrap();
    assert_eq!(events.len(), 2);
    // (The test's ticks ran ahead of the clock: find them by kind.)
    let stale = events.iter().find(|e| e.stale).unwrap();
    let back = events.iter().find(|e| !e.stale).unwrap();
    assert_eq!(stale.incident, back.incident);
    assert!(!aggregator.probes()[0].stale);
}

#[test]
fn results_are_dated_by_their_age_on_the_probe_s_clock() {
    use crate::transport::ResultBatch;
    let received = Utc::now();
    // The probe's clock is 7 minutes behind: its started_at and sent_at
    // are both 7 minutes early, the result is 2 seconds old.
    let probe_now = received - chrono::Duration::minutes(7);
    let mut old = result(Outcome::Ok);
    old.started_at = probe_now - chrono::Duration::seconds(2);
    let batch = ResultBatch {
        results: vec![old],
        sent_at: Some(probe_now),
    };
    let (results, skew) = batch.on_clock_of(received).unwrap();
    assert_eq!(
        results[0].started_at,
        received - chrono::Duration::seconds(2)
    );
    assert_eq!(skew, Some(chrono::Duration::minutes(7)));
    // A result "from the future" of its own send time is dated at arrival.
    let mut future = result(Outcome::Ok);
    future.started_at = probe_now + chrono::Duration::seconds(30);
    let (results, _) = ResultBatch {
        results: vec![future],
        sent_at: Some(probe_now),
    }
    .on_clock_of(received)
    .unwrap();
    assert_eq!(results[0].started_at, received);
}

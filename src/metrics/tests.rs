//! Table and snapshot tests of the exported series.

use super::*;

#[test]
fn counters_are_declared_under_their_sample_name_in_the_classic_format() {
    let metrics = Metrics::new();
    let result = ProbeResult::for_test("api", Outcome::Fail, Utc::now());
    metrics.observe_result(result);
    let text = to_prometheus_text(&metrics.encode(&Snapshot::default()).unwrap());
    assert!(
        text.contains("# TYPE lookout_probe_results_total counter\n"),
        "{text}"
    );
    assert!(text.contains(
        "lookout_probe_results_total{check=\"api\",region=\"local\",outcome=\"fail\"} 1\n"
    ));
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
    assert!(text.contains("# TYPE lookout_probe_duration_seconds histogram\n"));
}

#[test]
fn a_probe_exports_what_became_of_its_results_and_others_do_not() {
    let metrics = Metrics::new();
    let text = to_prometheus_text(&metrics.encode(&Snapshot::default()).unwrap());
    assert!(!text.contains("lookout_uplink_"), "{text}");
    metrics.report_uplink_with(Box::new(|| UplinkFigures {
        made: 10,
        sent: 6,
        dropped_queue_full: 3,
        spool_bytes: 512,
        spool_files: 1,
        in_memory: 1,
        ..UplinkFigures::default()
    }));
    let text = to_prometheus_text(&metrics.encode(&Snapshot::default()).unwrap());
    for expected in [
        "# TYPE lookout_uplink_results_made_total counter\n",
        "lookout_uplink_results_made_total 10\n",
        "lookout_uplink_results_sent_total 6\n",
        "lookout_uplink_results_rejected_total 0\n",
        "lookout_uplink_results_dropped_total{reason=\"queue_full\"} 3\n",
        "lookout_uplink_results_dropped_total{reason=\"spool_full\"} 0\n",
        "lookout_uplink_results_dropped_total{reason=\"spool_not_writable\"} 0\n",
        "lookout_spool_bytes 512\n",
        "lookout_spool_files 1\n",
        "lookout_spool_writable 0\n",
        "lookout_uplink_memory_queue_results 1\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

#[test]
fn removed_checks_leave_no_series() {
    let metrics = Metrics::new();
    metrics.observe_result(ProbeResult::for_test("gone", Outcome::Ok, Utc::now()));
    metrics.observe_result(ProbeResult::for_test("kept", Outcome::Ok, Utc::now()));
    metrics.retain_checks(&|name| name == "kept");
    let text = metrics.encode(&Snapshot::default()).unwrap();
    assert!(!text.contains("\"gone\""), "{text}");
    assert!(text.contains("\"kept\""), "{text}");
}

#[test]
fn a_late_result_does_not_replace_a_newer_one() {
    let metrics = Metrics::new();
    let now = Utc::now();
    let newer = ProbeResult::for_test("api", Outcome::Ok, now);
    let older = ProbeResult::for_test("api", Outcome::Fail, now - chrono::Duration::seconds(5));
    metrics.observe_result(newer);
    metrics.observe_result(older);
    assert_eq!(metrics.latest_results()[0].outcome, Outcome::Ok);
}

/// An ordinary result is kept as the figures the gauges show (its texts
/// left out); a result with figures of its own kind is kept whole.
#[test]
fn the_latest_result_keeps_what_the_gauges_show() {
    let metrics = Metrics::new();
    let now = Utc::now();
    let mut http = ProbeResult::for_test("api", Outcome::Fail, now);
    http.status = Some(503);
    http.duration_ms = 12.5;
    http.phases_ms.dns = Some(0.5);
    http.phases_ms.connect = Some(1.25);
    http.phases_ms.ttfb = Some(9.0);
    http.cert_expiry = Some(now + chrono::Duration::days(30));
    http.address = Some("127.0.0.1:8080".into());
    http.ip_family = Some("ipv4".into());
    http.http_version = Some("1.1".into());
    http.error = Some("HTTP 503".into());
    http.notes = vec!["a note".into()];
    metrics.observe_result(http.clone());
    let kept = metrics.latest_results();
    let expected = ProbeResult {
        probe: String::new(),
        error: None,
        notes: Vec::new(),
        ..http
    };
    assert_eq!(kept, vec![expected]);

    let mut icmp = ProbeResult::for_test("ping", Outcome::Ok, now);
    icmp.icmp = Some(crate::result::IcmpFigures {
        address: "127.0.0.1".into(),
        socket: "datagram".into(),
        sent: 3,
        received: 3,
        loss_percent: 0.0,
        rtt_min_ms: Some(0.1),
        rtt_avg_ms: Some(0.2),
        rtt_max_ms: Some(0.3),
        reply_hop_limit: Some(64),
    });
    icmp.error = Some("kept with the rest".into());
    metrics.observe_result(icmp.clone());
    let kept = metrics.latest_results_of(&|check| check == "ping");
    assert_eq!(kept, vec![icmp]);
}

#[test]
fn the_snapshot_exports_states_and_ages() {
    let now = Utc::now();
    let snapshot = Snapshot {
        checks: vec![CheckSnapshot {
            name: "api".into(),
            kind: "http",
            target: "http://x/".into(),
            status: Status::Down,
        }],
        results: vec![ProbeResult::for_test("api", Outcome::Fail, now)],
        regions: vec![RegionSnapshot {
            region: "eu".into(),
            last_result: Some(now - chrono::Duration::seconds(3)),
            spool_pending: Some(7),
        }],
        outbox_pending: Some(2),
        now,
        ..Snapshot::default()
    };
    let text = to_prometheus_text(&Metrics::new().encode(&snapshot).unwrap());
    for expected in [
        "lookout_check_up{check=\"api\"} 0\n",
        "lookout_check_state{check=\"api\",state=\"down\"} 1\n",
        "lookout_check_state{check=\"api\",state=\"up\"} 0\n",
        "probe_success{check=\"api\",region=\"local\",target=\"http://x/\"} 0\n",
        "lookout_region_last_result_age_seconds{region=\"eu\"} 3.0\n",
        "lookout_spool_pending{region=\"eu\"} 7\n",
        "lookout_alert_outbox_pending 2\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

/// A snapshot of `n` http checks, each with a latest result.
fn fleet(metrics: &Metrics, n: usize) -> Snapshot {
    let now = Utc::now();
    let names: Vec<String> = (0..n).map(|i| format!("check-{i:03}")).collect();
    for name in &names {
        metrics.observe_result(ProbeResult::for_test(name, Outcome::Ok, now));
    }
    Snapshot {
        checks: names
            .iter()
            .map(|name| CheckSnapshot {
                name: name.clone(),
                kind: "http",
                target: format!("http://x/{name}"),
                status: Status::Up,
            })
            .collect(),
        results: metrics.latest_results(),
        regions: vec![RegionSnapshot {
            region: "local".into(),
            last_result: Some(now),
            spool_pending: Some(1),
        }],
        outbox_pending: Some(0),
        now,
        ..Snapshot::default()
    }
}

fn samples(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

fn part(metrics: &Metrics, snapshot: &Snapshot, scope: &Scope) -> String {
    let mut narrowed = Snapshot {
        checks: snapshot
            .checks
            .iter()
            .map(|c| CheckSnapshot {
                name: c.name.clone(),
                kind: c.kind,
                target: c.target.clone(),
                status: c.status,
            })
            .collect(),
        results: snapshot.results.clone(),
        regions: snapshot
            .regions
            .iter()
            .map(|r| RegionSnapshot {
                region: r.region.clone(),
                last_result: r.last_result,
                spool_pending: r.spool_pending,
            })
            .collect(),
        outbox_pending: snapshot.outbox_pending,
        now: snapshot.now,
        ..Snapshot::default()
    };
    narrowed.narrow(scope);
    to_prometheus_text(&metrics.encode_part(&narrowed, scope).unwrap())
}

#[test]
fn the_lookout_part_and_the_shards_add_up_to_the_whole() {
    let metrics = Metrics::new();
    let snapshot = fleet(&metrics, 40);
    let whole = to_prometheus_text(&metrics.encode(&snapshot).unwrap());
    let own = part(&metrics, &snapshot, &Scope::Lookout);
    assert!(!own.contains("check=\""), "{own}");
    assert!(
        own.contains("lookout_spool_pending{region=\"local\"} 1\n"),
        "{own}"
    );
    let mut together = samples(&own);
    let of = 4;
    let mut per_check_in_whole = HashMap::new();
    for line in samples(&whole) {
        if let Some(check) = parts::check_label(&line) {
            *per_check_in_whole.entry(check.to_string()).or_insert(0) += 1;
        }
    }
    for index in 0..of {
        let shard = part(&metrics, &snapshot, &Scope::Shard { index, of });
        for line in samples(&shard) {
            let check = parts::check_label(&line).expect("a shard has only per-check series");
            assert_eq!(parts::shard_of(check, of), index, "{line}");
        }
        // Each family a shard has is declared in it, as the format wants.
        assert!(shard.contains("# TYPE probe_success gauge\n"), "{shard}");
        together.extend(samples(&shard));
    }
    together.sort();
    assert_eq!(together, samples(&whole), "the parts are the whole, once");
    // One check's series, bounded by what one check has: the same in its
    // part as in the whole.
    let one = part(
        &metrics,
        &snapshot,
        &Scope::Checks(["check-007".to_string()].into()),
    );
    assert_eq!(samples(&one).len(), per_check_in_whole["check-007"]);
    assert!(samples(&one).len() < 40, "{one}");
}

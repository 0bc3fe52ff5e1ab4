//! Table tests for the rule engine: each case is a sequence of inputs and the
//! status expected after each one.

use super::*;
use chrono::TimeZone;

fn t(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

fn rules(failures: u32, successes: u32, quorum: Option<u32>) -> Rules {
    Rules {
        failures,
        successes,
        quorum,
        max_latency: Some(Duration::from_millis(800)),
        stale_after: Duration::from_secs(35),
    }
}

/// One input: `region:outcome@second`, e.g. `eu:fail@10`, `us:slow@3`,
/// or `tick@100`.
fn input(spec: &str) -> (Option<ProbeResult>, DateTime<Utc>) {
    let (what, at) = spec.split_once('@').unwrap();
    let at = t(at.parse().unwrap());
    if what == "tick" {
        return (None, at);
    }
    let (region, outcome) = what.split_once(':').unwrap();
    let (outcome, duration_ms, status) = match outcome {
        "ok" => (Outcome::Ok, 50.0, Some(200)),
        "slow" => (Outcome::Ok, 1500.0, Some(200)),
        "fail" => (Outcome::Fail, 30.0, Some(500)),
        "timeout" => (Outcome::Timeout, 5000.0, None),
        "error" => (Outcome::Error, 1.0, None),
        other => panic!("bad outcome {other}"),
    };
    let result = ProbeResult {
        id: Uuid::now_v7(),
        check: "api".into(),
        region: region.into(),
        probe: format!("probe-{region}"),
        started_at: at,
        duration_ms,
        outcome,
        status,
        phases_ms: Default::default(),
        error: (outcome != Outcome::Ok).then(|| format!("{} in {region}", outcome.as_str())),
        cert_expiry: None,
        degraded: None,
        notes: vec![],
        steps: Vec::new(),
        screenshot: None,
        page: None,
        icmp: None,
        grpc: None,
        browser: Default::default(),
        address: None,
        ip_family: None,
        http_version: None,
    };
    (Some(result), at)
}

/// Runs `inputs` and returns the status after each, plus every effect.
fn run(rules: &Rules, inputs: &[&str]) -> (Vec<Status>, Vec<Effect>) {
    let mut state = CheckState::default();
    let mut statuses = Vec::new();
    let mut effects = Vec::new();
    for spec in inputs {
        let (result, at) = input(spec);
        let input = match &result {
            Some(result) => Input::Result {
                result,
                received_at: at,
            },
            None => Input::Tick { now: at },
        };
        effects.extend(step("api", &mut state, rules, input, &mut Uuid::now_v7));
        statuses.push(state.status);
    }
    (statuses, effects)
}

use Status::{Degraded as G, Down as D, Unknown as U, Up as P};

/// A case: its name, the rules, the inputs, the status after each input.
type Case<'a, R> = (&'a str, R, &'a [&'a str], &'a [Status]);

#[test]
fn single_region_table() {
    let cases: &[Case<Rules>] = &[
        ("first ok makes it up", rules(2, 1, None), &["l:ok@0"], &[P]),
        (
            "one failure is not enough",
            rules(2, 1, None),
            &["l:ok@0", "l:fail@1"],
            &[P, P],
        ),
        (
            "two failures take it down",
            rules(2, 1, None),
            &["l:ok@0", "l:fail@1", "l:timeout@2"],
            &[P, P, D],
        ),
        (
            "an ok in between resets the count",
            rules(2, 1, None),
            &["l:ok@0", "l:fail@1", "l:ok@2", "l:fail@3", "l:ok@4"],
            &[P, P, P, P, P],
        ),
        (
            "down, then one ok brings it up",
            rules(2, 1, None),
            &["l:fail@0", "l:error@1", "l:ok@2"],
            &[U, D, P],
        ),
        (
            "successes: 3 needs three oks to recover",
            rules(1, 3, None),
            &["l:fail@0", "l:ok@1", "l:ok@2", "l:ok@3"],
            &[D, D, D, P],
        ),
        (
            "failures: 1 goes down at once",
            rules(1, 1, None),
            &["l:ok@0", "l:fail@1"],
            &[P, D],
        ),
        (
            "slow but ok is degraded",
            rules(2, 1, None),
            &["l:ok@0", "l:slow@1", "l:ok@2"],
            &[P, G, P],
        ),
        (
            "slow then failing is down",
            rules(2, 1, None),
            &["l:slow@0", "l:fail@1", "l:fail@2"],
            &[G, G, D],
        ),
        (
            "unknown until a verdict",
            rules(3, 1, None),
            &["l:fail@0", "l:fail@1"],
            &[U, U],
        ),
    ];
    for (name, rules, inputs, expected) in cases {
        let (statuses, _) = run(rules, inputs);
        assert_eq!(&statuses, expected, "case: {name}");
    }
}

#[test]
fn quorum_across_regions_table() {
    let cases: &[Case<Option<u32>>] = &[
        (
            "one region of three failing pages nobody",
            None,
            &["eu:ok@0", "us:ok@0", "ap:ok@0", "ap:fail@5", "ap:fail@10"],
            &[P, P, P, P, P],
        ),
        (
            "two of three failing is down",
            None,
            &[
                "eu:ok@0",
                "us:ok@0",
                "ap:ok@0",
                "ap:fail@5",
                "us:fail@5",
                "ap:fail@10",
                "us:fail@10",
            ],
            &[P, P, P, P, P, P, D],
        ),
        (
            "explicit quorum 1 goes down on any region",
            Some(1),
            &["eu:ok@0", "us:ok@0", "us:fail@5", "us:fail@10"],
            &[P, P, P, D],
        ),
        (
            "recovery of one region below quorum brings it up",
            None,
            &[
                "eu:fail@0",
                "us:fail@0",
                "eu:fail@5",
                "us:fail@5",
                "eu:ok@10",
            ],
            &[U, U, U, D, P],
        ),
        (
            "a quorum above the live regions is capped: one local region can go down",
            Some(2),
            &["l:ok@0", "l:fail@5", "l:fail@10"],
            &[P, P, D],
        ),
        (
            "degraded needs a quorum of slow regions",
            None,
            &["eu:ok@0", "us:ok@0", "ap:ok@0", "eu:slow@5", "us:slow@5"],
            &[P, P, P, P, G],
        ),
    ];
    for (name, quorum, inputs, expected) in cases {
        let (statuses, _) = run(&rules(2, 1, *quorum), inputs);
        assert_eq!(&statuses, expected, "case: {name}");
    }
}

#[test]
fn stale_regions_count_for_neither_side() {
    // Three regions up; ap's probe dies (no results after t=0). Stale after 35s.
    let inputs = [
        "eu:ok@0",
        "us:ok@0",
        "ap:ok@0",
        "eu:ok@30",
        "us:ok@30",
        "tick@40", // ap stale now
        "eu:fail@45",
        "eu:fail@50", // eu failing: 1 of 2 live regions, quorum 2: not down
    ];
    let (statuses, effects) = run(&rules(2, 1, None), &inputs);
    assert_eq!(statuses.last(), Some(&P));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::RegionStale { region, .. } if region == "ap"))
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::StateChanged(t) if t.to == Status::Down))
    );

    // The stale region comes back failing too: now 2 of 3 -> down.
    let mut more = inputs.to_vec();
    more.extend(["ap:fail@55", "ap:fail@56"]);
    let (statuses, effects) = run(&rules(2, 1, None), &more);
    assert_eq!(statuses.last(), Some(&D));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::RegionBack { region } if region == "ap"))
    );
}

#[test]
fn every_region_stale_keeps_the_last_known_state() {
    let (statuses, effects) = run(&rules(2, 1, None), &["l:ok@0", "tick@100"]);
    assert_eq!(statuses, vec![P, P]);
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, Effect::RegionStale { .. }))
            .count(),
        1
    );
}

#[test]
fn transitions_carry_incident_and_summary() {
    let (_, effects) = run(
        &rules(2, 1, None),
        &["l:ok@0", "l:fail@10", "l:fail@20", "l:slow@30", "l:ok@90"],
    );
    let transitions: Vec<&Transition> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::StateChanged(t) => Some(t),
            _ => None,
        })
        .collect();
    let pairs: Vec<(Status, Status)> = transitions.iter().map(|t| (t.from, t.to)).collect();
    assert_eq!(pairs, vec![(U, P), (P, D), (D, G), (G, P)]);
    // unknown -> up opens no incident; down and degraded share one; up closes it.
    assert_eq!(transitions[0].incident, None);
    let incident = transitions[1].incident.expect("down opens an incident");
    assert_eq!(transitions[2].incident, Some(incident));
    assert_eq!(transitions[3].incident, Some(incident));
    assert_eq!(
        transitions[1].summary,
        "api is DOWN in 1 of 1 regions (l): fail in l"
    );
    assert_eq!(
        transitions[2].summary,
        "api is DEGRADED in 1 of 1 regions: slower than 800ms (1500ms)"
    );
    assert_eq!(transitions[3].summary, "api is UP again after 1m degraded");
    assert_eq!(transitions[1].at, t(20));
    assert_eq!(transitions[1].previous_since, Some(t(0)));
    assert_eq!(transitions[1].regions["l"].status, Some(500));
}

#[test]
fn results_are_judged_in_arrival_order_whatever_their_timestamps() {
    // A result dated in the future (a probe's clock, a wall-clock step
    // back) must not freeze the region: the next results still count.
    let mut state = CheckState::default();
    let r = rules(2, 1, None);
    let (ok_future, _) = input("l:ok@1000");
    let (fail_1, _) = input("l:fail@5");
    let (fail_2, _) = input("l:fail@6");
    for result in [ok_future, fail_1, fail_2].iter().flatten() {
        step(
            "api",
            &mut state,
            &r,
            Input::Result {
                result,
                received_at: t(20),
            },
            &mut Uuid::now_v7,
        );
    }
    assert_eq!(state.status, Status::Down);
    assert_eq!(state.regions.get("l").unwrap().consecutive_failures, 2);
    assert_eq!(state.regions.get("l").unwrap().last.started_at, t(6));
}

/// Feeds `inputs` and, after each result, asks who fast confirmation
/// would ask now: the targets after each input (`-` for none), joined
/// with `,`.
fn confirmations(rules: &Rules, inputs: &[&str]) -> Vec<String> {
    let mut state = CheckState::default();
    let mut asked = Asked::default();
    let mut out = Vec::new();
    for spec in inputs {
        let (result, at) = input(spec);
        let Some(result) = result else {
            step(
                "api",
                &mut state,
                rules,
                Input::Tick { now: at },
                &mut Uuid::now_v7,
            );
            out.push("-".to_string());
            continue;
        };
        let judged = Input::Result {
            result: &result,
            received_at: at,
        };
        step("api", &mut state, rules, judged, &mut Uuid::now_v7);
        let ok = result.outcome == Outcome::Ok;
        let targets = confirmation_targets(&state, rules, &result.region, ok, at, &mut asked);
        out.push(if targets.is_empty() {
            "-".to_string()
        } else {
            targets.join(",")
        });
    }
    out
}

#[test]
fn fast_confirmation_table() {
    let cases: &[(&str, Rules, &[&str], &[&str])] = &[
        (
            "all well: nobody is asked",
            rules(2, 1, Some(2)),
            &["a:ok@0", "b:ok@0", "c:ok@0", "a:ok@5"],
            &["-", "-", "-", "-"],
        ),
        (
            "a first failure asks every region not failing, the reporter too",
            rules(2, 1, Some(2)),
            &["a:ok@0", "b:ok@0", "c:ok@0", "a:fail@5"],
            &["-", "-", "-", "a,b,c"],
        ),
        (
            "a region that reached failing asks nobody; the next one asks those not failing",
            rules(2, 1, Some(2)),
            &[
                "a:ok@0", "b:ok@0", "c:ok@0", "a:fail@5", "a:fail@5", "b:fail@5",
            ],
            &["-", "-", "-", "a,b,c", "-", "b,c"],
        ),
        (
            "a recovery while down asks the regions still failing",
            rules(2, 1, Some(2)),
            &[
                "a:ok@0", "b:ok@0", "c:ok@0", "a:fail@5", "a:fail@5", "b:fail@5", "b:fail@5",
                "c:ok@7",
            ],
            &["-", "-", "-", "a,b,c", "-", "b,c", "-", "a,b"],
        ),
        (
            "a recovery seen by a failing region asks the others still failing",
            rules(2, 1, Some(2)),
            &[
                "a:fail@0", "a:fail@0", "b:fail@0", "b:fail@0", "c:fail@0", "c:fail@0", "b:ok@6",
            ],
            &["a", "-", "b", "-", "c", "-", "a,c"],
        ),
        (
            "successes: 2: the reporter is asked to count its own second success",
            rules(1, 2, None),
            &["a:fail@0", "b:fail@0", "a:ok@5"],
            &["-", "-", "a,b"],
        ),
        (
            "a recovery while up (one region failing alone) asks nobody",
            rules(2, 1, Some(2)),
            &["a:ok@0", "b:ok@0", "c:fail@0", "c:fail@0", "c:ok@5"],
            &["-", "-", "a,b,c", "-", "-"],
        ),
        (
            "bounded: a region flapping on its own asks each region `failures` times per window",
            rules(2, 1, Some(2)),
            &[
                "a:ok@0", "b:ok@0", "c:ok@0", "a:fail@1", "a:ok@2", "a:fail@3", "a:ok@4",
                "a:fail@5", "a:ok@6", "a:fail@7",
            ],
            &["-", "-", "-", "a,b,c", "-", "a,b,c", "-", "-", "-", "-"],
        ),
        (
            "bounded: after the check's staleness window (35 s) asking starts again",
            rules(2, 1, Some(2)),
            &[
                "a:ok@0",
                "b:ok@0",
                "c:ok@0",
                "a:fail@1",
                "a:ok@2",
                "a:fail@3",
                "a:ok@4",
                "a:fail@5",
                "b:ok@30",
                "c:ok@30",
                "a:ok@30",
                "a:fail@40",
            ],
            &[
                "-", "-", "-", "a,b,c", "-", "a,b,c", "-", "-", "-", "-", "-", "a,b,c",
            ],
        ),
        (
            "bounded: recoveries ask each failing region `successes` times per status",
            rules(2, 1, Some(2)),
            &[
                "a:fail@0", "a:fail@0", "b:fail@0", "b:fail@0", "c:fail@0", "c:fail@0", "c:ok@6",
                "c:ok@7",
            ],
            &["a", "-", "b", "-", "c", "-", "a,b", "-"],
        ),
        (
            "a stale region is never asked",
            rules(2, 1, Some(1)),
            &["a:ok@0", "b:ok@0", "b:ok@40", "tick@40", "b:fail@41"],
            &["-", "-", "-", "-", "b"],
        ),
    ];
    for (name, rules, inputs, expected) in cases {
        let got = confirmations(rules, inputs);
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, expected, "{name}");
    }
}

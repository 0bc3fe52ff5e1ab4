//! The scheduler with real targets: a hung check neither piles up runs nor
//! delays a healthy one. Assertions count runs with wide margins; they check
//! behaviour, not speed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ConfigDirs, start_target};
use lookout::probe::{Outcome, ProbeIdentity, Runner};
use lookout::scheduler::Scheduler;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_check_skips_ticks_and_never_delays_another() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - name: hung
    http: {{ url: \"{}\" }}
    every: 200ms
    timeout: 1s
  - name: fast
    http: {{ url: \"{}\" }}
    every: 200ms
    timeout: 1s
",
        target.url("/hang"),
        target.url("/ok")
    ));
    let config = dirs.load();
    let runner = Runner::new(
        ProbeIdentity {
            region: "t".into(),
            probe: "t".into(),
        },
        config.secrets.clone(),
    );
    let (tx, mut rx) = mpsc::channel(1024);
    let lateness = Arc::new(std::sync::Mutex::new(Vec::new()));
    let observed = lateness.clone();
    // Concurrency 2: the hung check holds one permit for its whole timeout.
    let scheduler = Scheduler {
        runner,
        results: tx,
        concurrency: 2,
        on_lateness: Some(Arc::new(move |d| observed.lock().unwrap().push(d))),
    };
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(config.checks.clone(), cancel.clone()));
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    cancel.cancel();
    running.await.unwrap();

    let mut hung = Vec::new();
    let mut fast = Vec::new();
    while let Ok(result) = rx.try_recv() {
        match result.check.as_str() {
            "hung" => hung.push(result),
            _ => fast.push(result),
        }
    }
    // 3.1 s at one run per second at most: a run overlapping its ticks skips them.
    assert!(
        (2..=3).contains(&hung.len()),
        "hung ran {} times",
        hung.len()
    );
    assert!(hung.iter().all(|r| r.outcome == Outcome::Timeout));
    // ~15 ticks of 200ms; the hung neighbour must not hold it back much.
    assert!(fast.len() >= 10, "fast ran only {} times", fast.len());
    assert!(fast.iter().all(|r| r.outcome == Outcome::Ok));
    // Every run was observed for lateness; runs cut short by the cancel have no result.
    let observed = lateness.lock().unwrap().len();
    let finished = hung.len() + fast.len();
    assert!(
        (finished..=finished + 2).contains(&observed),
        "{observed} observed, {finished} finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_runs_checks_one_after_the_other() {
    let target = start_target().await;
    let check = |name: &str| {
        format!(
            "  - name: {name}\n    http: {{ url: \"{}\" }}\n    every: 200ms\n    timeout: 5s\n",
            target.url("/slow")
        )
    };
    let dirs = ConfigDirs::new(&format!("checks:\n{}{}", check("one"), check("two")));
    let config = dirs.load();
    let runner = Runner::new(
        ProbeIdentity {
            region: "t".into(),
            probe: "t".into(),
        },
        config.secrets.clone(),
    );
    let (tx, mut rx) = mpsc::channel(64);
    let scheduler = Scheduler {
        runner,
        results: tx,
        concurrency: 1,
        on_lateness: None,
    };
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(config.checks.clone(), cancel.clone()));
    // /slow answers in 1.5 s: under a limit of one, two results take 3 s.
    let mut results = Vec::new();
    while results.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await;
        results.push(
            next.expect("a result within 20 s")
                .expect("the scheduler is running"),
        );
    }
    cancel.cancel();
    running.await.unwrap();
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Ok),
        "{results:?}"
    );
    let names: Vec<&str> = results.iter().map(|r| r.check.as_str()).collect();
    assert!(
        names.contains(&"one") && names.contains(&"two"),
        "both complete: {names:?}"
    );
    // One after the other: the second started after the first ended.
    let first_end =
        results[0].started_at + chrono::Duration::milliseconds(results[0].duration_ms as i64);
    assert!(
        results[1].started_at >= first_end - chrono::Duration::milliseconds(5),
        "{results:?}"
    );
}

//! The scheduler with real targets: a hung check neither piles up runs nor
//! delays a healthy one. Assertions count runs with wide margins; they check
//! behaviour, not speed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ConfigDirs, start_target};
use lookout::probe::{ProbeIdentity, Runner};
use lookout::result::Outcome;
use lookout::scheduler::Scheduler;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A runner for region `t`, masking with `secrets`.
fn runner_in_region_t(secrets: Arc<lookout::config::Secrets>) -> Runner {
    Runner::new(
        ProbeIdentity {
            region: "t".into(),
            probe: "t".into(),
        },
        secrets,
    )
}

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
    let runner = runner_in_region_t(config.secrets.clone());
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
    let runner = runner_in_region_t(config.secrets.clone());
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

/// The scheduler follows a changing set of checks: an added check starts, a
/// removed one stops, an unchanged one keeps running; a run-now request
/// (run beside the scheduler, as `serve` and `probe` do) runs a check at
/// once, away from its tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_come_and_go_and_run_now_runs_at_once() {
    use lookout::scheduler::CheckSet;
    use tokio::sync::watch;

    let target = start_target().await;
    let yaml = |names: &[&str], every: &str| {
        let mut text = String::from("checks:\n");
        for name in names {
            text.push_str(&format!(
                "  - name: {name}\n    http: {{ url: \"{}\" }}\n    every: {every}\n",
                target.url("/ok")
            ));
        }
        text
    };
    let set = |dirs: &ConfigDirs| {
        let config = dirs.load();
        CheckSet {
            checks: config.checks.clone(),
            secrets: config.secrets.clone(),
        }
    };
    // `slow` runs every hour: only a run-now request can make it run soon
    // (its first tick is at a stable offset within the hour).
    let first = ConfigDirs::new(&yaml(&["a"], "200ms"));
    let (updates_tx, updates) = watch::channel(set(&first));
    let (run_now_tx, run_now) = mpsc::channel(8);
    let (tx, mut rx) = mpsc::channel(1024);
    let scheduler = Scheduler {
        runner: runner_in_region_t(Arc::default()),
        results: tx,
        concurrency: 8,
        on_lateness: None,
    };
    let cancel = CancellationToken::new();
    let beside = tokio::spawn(lookout::run_now::run_requests(
        scheduler.runner.clone(),
        updates.clone(),
        run_now,
        scheduler.results.clone(),
        cancel.clone(),
    ));
    let running = tokio::spawn(scheduler.run_updating(updates, cancel.clone()));
    let seen = |rx: &mut mpsc::Receiver<lookout::result::ProbeResult>| {
        let mut names = Vec::new();
        while let Ok(result) = rx.try_recv() {
            names.push(result.check);
        }
        names
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(seen(&mut rx).iter().all(|n| n == "a"));

    // Replace: `a` removed, `b` added, `slow` added.
    let mut second_yaml = yaml(&["b"], "200ms");
    second_yaml.push_str(&yaml(&["slow"], "1h").replace("checks:\n", ""));
    let second = ConfigDirs::new(&second_yaml);
    updates_tx.send_replace(set(&second));
    tokio::time::sleep(Duration::from_millis(300)).await;
    seen(&mut rx);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let names = seen(&mut rx);
    assert!(!names.iter().any(|n| n == "a"), "a was removed: {names:?}");
    assert!(names.iter().any(|n| n == "b"), "b was added: {names:?}");
    // Its offset in the hour is fixed by its name, and not this early.
    assert!(!names.iter().any(|n| n == "slow"), "{names:?}");

    run_now_tx.send("slow".to_string()).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let result = rx.recv().await.unwrap();
            if result.check == "slow" {
                return result;
            }
        }
    })
    .await
    .expect("slow ran on request");
    assert_eq!(result.outcome, Outcome::Ok);
    cancel.cancel();
    running.await.unwrap();
    beside.await.unwrap();
}

/// A check that did not change keeps its deadline when the set around it
/// changes: five updates in a second (each adding a check) do not make it
/// run again at once, as restarting it would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_check_keeps_its_cadence_while_others_come() {
    use lookout::scheduler::CheckSet;
    use tokio::sync::watch;

    let target = start_target().await;
    let check = |name: &str, every: &str| {
        format!(
            "  - name: {name}\n    http: {{ url: \"{}\" }}\n    every: {every}\n",
            target.url("/ok")
        )
    };
    let mut yaml = format!("checks:\n{}", check("steady", "500ms"));
    let set = |yaml: &str| {
        let config = ConfigDirs::new(yaml).load();
        CheckSet {
            checks: config.checks.clone(),
            secrets: config.secrets.clone(),
        }
    };
    let first = set(&yaml);
    let secrets = first.secrets.clone();
    let (updates_tx, updates) = watch::channel(first);
    let (tx, mut rx) = mpsc::channel(1024);
    let scheduler = Scheduler {
        runner: runner_in_region_t(secrets.clone()),
        results: tx,
        concurrency: 8,
        on_lateness: None,
    };
    let cancel = CancellationToken::new();
    let running = tokio::spawn(scheduler.run_updating(updates, cancel.clone()));
    // Its first run, at its offset within the first 500 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for added in 0..5 {
        yaml.push_str(&check(&format!("hourly{added}"), "1h"));
        // The same secrets: a new set of secrets restarts every check.
        let mut next = set(&yaml);
        next.secrets = secrets.clone();
        updates_tx.send_replace(next);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cancel.cancel();
    running.await.unwrap();
    let mut steady = 0;
    while let Ok(result) = rx.try_recv() {
        if result.check == "steady" {
            steady += 1;
        }
    }
    // 1.6 s at one run per 500 ms: three or four runs. Restarted at every
    // update, it would have run about eight times.
    assert!((2..=5).contains(&steady), "steady ran {steady} times");
}

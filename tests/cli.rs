//! The `lookout` binary's commands and exit codes (DESIGN.md: 0 ok, 1 check
//! failure or invalid config, 2 usage error).

mod common;

use std::process::{Command, Output};

use common::{ConfigDirs, lookout_bin, start_target};

fn lookout(args: &[&str]) -> Output {
    Command::new(lookout_bin())
        .args(args)
        .output()
        .expect("run lookout")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_repository_config_validates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = lookout(&[
        "validate",
        "--checks",
        &format!("{root}/checks"),
        "--alerts",
        &format!("{root}/alerts"),
    ]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("ok: "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn validate_prints_every_mistake_with_line_and_column() {
    let dirs = ConfigDirs::new(
        "checks:
  - name: api
    http:
      url: http://127.0.0.1:9/health
      methd: GET
    every: 30
  - name: api
    http: { url: \"http://127.0.0.1:9/\" }
    cron: \"* * *\"
    alert: { channels: [pagr] }
",
    );
    let file = common::path_str(&dirs.checks().join("checks.yaml"));
    let out = lookout(&[
        "validate",
        "--checks",
        &common::path_str(&dirs.checks()),
        "--alerts",
        &common::path_str(&dirs.alerts()),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("{file}:5:7: unknown key `methd` in `http` of check `api`; did you mean `method`?"),
        format!("{file}:6:12: `every` of check `api`: \"30\" has no unit"),
        format!("{file}:7:11: duplicate check name `api`"),
        format!("{file}:9:11: cron expression \"* * *\" has 3 fields; expected 5"),
        format!("{file}:10:25: unknown channel `pagr`"),
        "5 error(s); nothing was started".to_string(),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(want.as_str()),
            "\nwant: {want}\n got: {line}"
        );
    }
}

#[tokio::test]
async fn check_exits_zero_when_passing_and_one_when_failing() {
    let target = start_target().await;
    let dirs = ConfigDirs::new(&format!(
        "checks:
  - name: good
    http: {{ url: \"{}\" }}
    every: 1m
  - name: bad
    http: {{ url: \"{}\" }}
    every: 1m
",
        target.url("/ok"),
        target.url("/500")
    ));
    let (checks, alerts) = (
        common::path_str(&dirs.checks()),
        common::path_str(&dirs.alerts()),
    );
    let run = |args: Vec<String>| {
        let checks = checks.clone();
        let alerts = alerts.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["check".to_string()];
            all.extend(args);
            all.extend([
                "--checks".to_string(),
                checks,
                "--alerts".to_string(),
                alerts,
            ]);
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            lookout(&args)
        })
    };
    let good = run(vec!["good".into()]).await.unwrap();
    assert_eq!(good.status.code(), Some(0), "{}", text(&good.stderr));
    let table = text(&good.stdout);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("good") && l.contains(" ok ") && l.contains("HTTP 200")),
        "{table}"
    );

    let bad = run(vec!["bad".into(), "--json".into()]).await.unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_str(text(&bad.stdout).trim()).unwrap();
    assert_eq!(
        (
            json["check"].as_str(),
            json["outcome"].as_str(),
            json["status"].as_u64()
        ),
        (Some("bad"), Some("fail"), Some(500))
    );
    assert_eq!(json["error"], "status 500 not in [2xx]");

    let all = run(vec![]).await.unwrap();
    assert_eq!(all.status.code(), Some(1), "any failure fails the run");
    assert_eq!(text(&all.stdout).lines().count(), 3, "header and two rows");

    let unknown = run(vec!["nope".into()]).await.unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("no check named `nope`; known checks: good, bad"));
}

#[test]
fn usage_errors_exit_two() {
    assert_eq!(lookout(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        lookout(&["serve", "--listen", "not-an-address"])
            .status
            .code(),
        Some(2)
    );
    let help = lookout(&["--help"]);
    assert!(help.status.success());
    let help = text(&help.stdout);
    for (command, about) in [
        ("serve", "Run the aggregator and a local probe"),
        ("validate", "Check the configuration"),
        ("alert", "Alert channels"),
        ("check", "Run checks once, here and now"),
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(command));
        assert!(
            line.is_some_and(|l| l.contains(about)),
            "`{command}` should say {about:?}:\n{help}"
        );
    }
}

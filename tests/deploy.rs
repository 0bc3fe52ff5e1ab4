//! The files in deploy/ stay true to the code: every flag they pass exists,
//! and the example probes file loads.

mod common;

use std::path::Path;
use std::process::Command;

fn help(args: &[&str]) -> String {
    let output = Command::new(common::lookout_bin())
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Every `--flag` the deploy files give `lookout` is one it has.
#[test]
fn deploy_files_only_use_flags_lookout_has() {
    let known = [help(&["aggregator"]), help(&["probe"]), help(&["serve"])].join("\n");
    // Flags of other programs in the same files (apt, useradd, docker,
    // kubectl, chromium, prometheus).
    let foreign = [
        "--build",
        "--config",
        "--create-home",
        "--from",
        "--from-literal",
        "--gid",
        "--help",
        "--home-dir",
        "--locked",
        "--no-install-recommends",
        "--no-sandbox",
        "--now",
        "--profile",
        "--release",
        "--rm",
        "--shell",
        "--system",
        "--uid",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "md") {
                files.push(path);
            }
        }
    }
    assert!(files.len() >= 8, "{files:?}");
    let mut unknown = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("--") {
            let flag: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            if flag.len() < 4 || foreign.contains(&flag.as_str()) {
                continue;
            }
            if !known.contains(&format!("{flag} "))
                && !known.contains(&format!("{flag}\n"))
                && !known.contains(&format!("{flag}="))
                && !known.contains(&format!("{flag} <"))
            {
                unknown.push(format!("{}: {flag}", file.display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags lookout does not have: {unknown:?}"
    );
}

#[test]
fn the_example_probes_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/probes.example.yaml");
    let env = |name: &str| Some(format!("{name}-is-a-long-enough-token"));
    let tokens = lookout::config::probes::load_with_env(&path, &env).unwrap();
    assert_eq!(
        tokens.regions().collect::<Vec<_>>(),
        ["ap-south", "eu-west", "us-east"]
    );
}

fn deploy_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The service blocks of a compose file: `(name, text)` for each
/// two-space-indented key under `services:`.
fn compose_services(text: &str) -> Vec<(String, String)> {
    let services = text.split("\nservices:\n").nth(1).unwrap_or("");
    let services = services.split("\nvolumes:\n").next().unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in services.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' ') && l.ends_with(':'))
        {
            out.push((name.trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

/// compose.ha.yaml: PostgreSQL, two aggregators on it (the URL from the
/// environment, no --data, which excludes it), three probes that each list
/// both aggregators.
#[test]
fn the_ha_compose_file_runs_two_aggregators_on_postgres_and_probes_list_both() {
    let text = deploy_file("compose.ha.yaml");
    let services = compose_services(&text);
    let names: Vec<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "aggregator-a",
            "aggregator-b",
            "probe-eu-west",
            "probe-us-east",
            "probe-ap-south"
        ]
    );
    assert!(
        services[0].1.contains("image: postgres:"),
        "{}",
        services[0].1
    );
    // The aggregators share one definition: the database URL from the
    // environment, `aggregator` without --data.
    let shared = text
        .split("x-aggregator: &aggregator\n")
        .nth(1)
        .and_then(|rest| rest.split("\nx-probe:").next())
        .expect("an x-aggregator anchor");
    assert!(shared.contains("- aggregator\n"), "{shared}");
    assert!(
        shared.contains("LOOKOUT_DATABASE_URL: postgres://"),
        "{shared}"
    );
    assert!(!shared.contains("--data"), "{shared}");
    assert!(
        !shared.contains("--database"),
        "a flag shows in ps: {shared}"
    );
    for (name, body) in &services[1..3] {
        assert!(body.contains("<<: *aggregator"), "{name}: {body}");
    }
    for (name, body) in &services[3..] {
        assert!(body.contains("- probe\n"), "{name}: {body}");
        let aggregators: Vec<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- --aggregator="))
            .flat_map(|v| v.split(','))
            .collect();
        let mut sorted = aggregators.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["http://aggregator-a:8080", "http://aggregator-b:8080"],
            "{name}"
        );
        assert!(body.contains("--aggregator-down-after="), "{name}: {body}");
    }
}

/// kubernetes-ha/: two aggregator replicas with a rolling update, a
/// PodDisruptionBudget over them, the database URL from a Secret, no
/// SQLite volume left.
#[test]
fn the_ha_kubernetes_overlay_runs_two_replicas_under_a_disruption_budget() {
    let kustomization = deploy_file("kubernetes-ha/kustomization.yaml");
    for resource in ["../kubernetes", "secret-database.example.yaml", "pdb.yaml"] {
        assert!(
            kustomization.contains(&format!("  - {resource}\n")),
            "{resource}: {kustomization}"
        );
    }
    assert!(kustomization.contains("path: aggregator-ha.yaml"));
    assert!(kustomization.contains("name: lookout-aggregator-data"));
    let aggregator = deploy_file("kubernetes-ha/aggregator-ha.yaml");
    assert!(aggregator.contains("kind: Deployment"));
    assert!(aggregator.contains("name: lookout-aggregator\n"));
    assert!(aggregator.contains("replicas: 2\n"), "{aggregator}");
    assert!(aggregator.contains("type: RollingUpdate"), "{aggregator}");
    assert!(aggregator.contains("maxUnavailable: 0"), "{aggregator}");
    assert!(!aggregator.contains("--data"), "{aggregator}");
    let env = aggregator
        .split("- name: LOOKOUT_DATABASE_URL\n")
        .nth(1)
        .expect("LOOKOUT_DATABASE_URL in the container's env");
    let from: String = env.lines().take(4).collect::<Vec<_>>().join("\n");
    assert!(from.contains("secretKeyRef:"), "{from}");
    assert!(from.contains("name: lookout-database"), "{from}");
    assert!(from.contains("key: LOOKOUT_DATABASE_URL"), "{from}");
    let secret = deploy_file("kubernetes-ha/secret-database.example.yaml");
    assert!(secret.contains("kind: Secret") && secret.contains("name: lookout-database"));
    assert!(secret.contains("LOOKOUT_DATABASE_URL: postgres://"));
    let pdb = deploy_file("kubernetes-ha/pdb.yaml");
    assert!(pdb.contains("kind: PodDisruptionBudget"), "{pdb}");
    assert!(pdb.contains("minAvailable: 1"), "{pdb}");
    assert!(
        pdb.contains("app.kubernetes.io/component: aggregator"),
        "{pdb}"
    );
}

/// The systemd drop-in for a replica on PostgreSQL runs `aggregator`
/// without --data (it excludes the database), the URL from the env file.
#[test]
fn the_systemd_postgres_drop_in_leaves_out_data() {
    let text = deploy_file("systemd/lookout-aggregator.service.d/postgres.conf");
    let exec: String = text
        .split("ExecStart=\n")
        .nth(1)
        .expect("ExecStart reset before it is set again")
        .to_string();
    assert!(exec.contains("/usr/local/bin/lookout aggregator"), "{exec}");
    assert!(
        !exec.contains("--data") && !exec.contains("--database"),
        "{exec}"
    );
    assert!(text.contains("LOOKOUT_DATABASE_URL="), "{text}");
    // The flag and the variable exclude --data for real.
    let output = Command::new(common::lookout_bin())
        .args([
            "aggregator",
            "--data",
            "/nonexistent",
            "--database",
            "postgres://x@127.0.0.1:9/x",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

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

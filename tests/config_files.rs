//! Config files as the operator's file system really has them (issue #14,
//! finding 6): the default relative `--checks checks` is watched and
//! reloaded; whatever is named `*.yaml` but is not a readable file (a
//! dangling link, a link loop, a FIFO, a device, a directory) is an error
//! naming its path, in `validate` and in a reload, which then keeps the
//! running config and says so.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, client, get_json, lookout_bin, start_target, wait_for};

fn check_yaml(names: &[&str], url: &str) -> String {
    let mut text = String::from("checks:\n");
    for name in names {
        text.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"{url}\" }}\n    every: 1s\n"
        ));
    }
    text
}

/// `lookout serve` started in `cwd` with the default `--checks checks` and
/// `--alerts alerts` (relative), `--data data`.
fn serve_in(cwd: &Path) -> Server {
    let mut child = Command::new(lookout_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data", "data"])
        .current_dir(cwd)
        .env("RUST_LOG", "lookout=debug,info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lookout");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = ready_tx.send(addr);
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(addr) => Server {
            child,
            base: if addr.starts_with("http") {
                addr
            } else {
                format!("http://{addr}")
            },
            log,
        },
        Err(_) => {
            let _ = child.kill();
            panic!("serve did not start:\n{}", log.lock().unwrap().join("\n"));
        }
    }
}

async fn check_names(http: &reqwest::Client, base: &str) -> Vec<String> {
    let (_, body) = get_json(http, &format!("{base}/api/v1/checks")).await;
    body["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_names(http: &reqwest::Client, server: &Server, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let found = tokio::time::timeout(
        Duration::from_secs(21),
        wait_for("the reload", Duration::from_secs(20), || async {
            (check_names(http, &server.base).await == want).then_some(())
        }),
    )
    .await;
    assert!(
        found.is_ok(),
        "checks never became {want:?}:\n{}",
        server.log_text()
    );
}

fn config_root(target_url: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("checks")).unwrap();
    std::fs::create_dir(root.path().join("alerts")).unwrap();
    std::fs::write(
        root.path().join("checks/a.yaml"),
        check_yaml(&["one"], target_url),
    )
    .unwrap();
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_file_under_the_default_relative_checks_dir_is_reloaded() {
    let target = start_target().await;
    let url = target.url("/ok");
    let root = config_root(&url);
    let server = serve_in(root.path());
    let http = client();
    wait_names(&http, &server, &["one"]).await;
    // An edit in place, then a new file: no SIGHUP, only the watcher.
    std::fs::write(
        root.path().join("checks/a.yaml"),
        check_yaml(&["one", "two"], &url),
    )
    .unwrap();
    wait_names(&http, &server, &["one", "two"]).await;
    std::fs::write(
        root.path().join("checks/b.yaml"),
        check_yaml(&["three"], &url),
    )
    .unwrap();
    wait_names(&http, &server, &["one", "two", "three"]).await;
    let _ = server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_became_a_dangling_link_keeps_the_old_config_and_says_so() {
    let target = start_target().await;
    let url = target.url("/ok");
    let root = config_root(&url);
    let extra = root.path().join("checks/extra.yaml");
    std::fs::write(&extra, check_yaml(&["two"], &url)).unwrap();
    let server = serve_in(root.path());
    let http = client();
    wait_names(&http, &server, &["one", "two"]).await;

    // The file becomes a link to nothing (a config management tool, a
    // failed deploy), in one rename: its checks must not silently go.
    let staged = root.path().join("checks/extra.staged");
    symlink(root.path().join("gone.yaml"), &staged).unwrap();
    std::fs::rename(&staged, &extra).unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(21),
        wait_for("the refused reload", Duration::from_secs(20), || async {
            let log = server.log_text();
            (log.contains("checks/extra.yaml:0:0: dangling symbolic link")
                && log.contains("still running the previous config"))
            .then_some(())
        }),
    )
    .await;
    assert!(refused.is_ok(), "{}", server.log_text());
    assert_eq!(check_names(&http, &server.base).await, ["one", "two"]);
    let _ = server.terminate();
}

/// `lookout validate` in `root`, bounded in time (a FIFO read would block).
fn validate(root: &Path) -> (i32, String) {
    let mut child = Command::new(lookout_bin())
        .args(["validate", "--checks", "checks", "--alerts", "alerts"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("validate hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn whatever_is_named_yaml_but_is_no_readable_file_is_an_error_with_its_path() {
    let root = config_root("http://127.0.0.1:9/");
    let checks = root.path().join("checks");
    symlink(
        root.path().join("nowhere.yaml"),
        checks.join("dangling.yaml"),
    )
    .unwrap();
    symlink(checks.join("loop-b.yaml"), checks.join("loop-a.yaml")).unwrap();
    symlink(checks.join("loop-a.yaml"), checks.join("loop-b.yaml")).unwrap();
    std::fs::create_dir(checks.join("directory.yaml")).unwrap();
    symlink("/dev/null", checks.join("device.yml")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(checks.join("fifo.yaml"))
        .status()
        .unwrap();
    assert!(fifo.success());
    // An editor's lock file is not config.
    symlink("root@host.1234", checks.join(".#a.yaml")).unwrap();

    let (code, text) = validate(root.path());
    assert_eq!(code, 1, "{text}");
    for expected in [
        "checks/dangling.yaml:0:0: dangling symbolic link: `",
        "checks/loop-a.yaml:0:0: symbolic link loop",
        "checks/loop-b.yaml:0:0: symbolic link loop",
        "checks/directory.yaml:0:0: is a directory, not a YAML file",
        "checks/device.yml:0:0: is a device, not a YAML file",
        "checks/fifo.yaml:0:0: is a FIFO (named pipe), not a YAML file",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
    assert!(!text.contains(".#a.yaml"), "{text}");
    assert!(text.contains("6 error(s)"), "{text}");

    // A link to a regular file elsewhere is config like any other.
    for name in [
        "dangling.yaml",
        "loop-a.yaml",
        "loop-b.yaml",
        "device.yml",
        "fifo.yaml",
    ] {
        std::fs::remove_file(checks.join(name)).unwrap();
    }
    std::fs::remove_dir(checks.join("directory.yaml")).unwrap();
    let elsewhere = root.path().join("elsewhere.yaml");
    std::fs::write(&elsewhere, check_yaml(&["two"], "http://127.0.0.1:9/")).unwrap();
    symlink(&elsewhere, checks.join("linked.yaml")).unwrap();
    let (code, text) = validate(root.path());
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok: 2 check(s)"), "{text}");
}

#[test]
fn a_ca_file_that_is_a_fifo_is_an_error_not_a_hang() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("checks")).unwrap();
    let fifo = root.path().join("ca.pem");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(
        root.path().join("checks/c.yaml"),
        format!(
            "checks:\n  - name: t\n    tls: {{ address: \"127.0.0.1:9\", ca_file: \"{}\" }}\n    every: 1m\n",
            fifo.display()
        ),
    )
    .unwrap();
    let (code, text) = validate(root.path());
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!(
            "checks/c.yaml:3:45: ca_file {} is a FIFO (named pipe), not a certificate file",
            fifo.display()
        )),
        "{text}"
    );
}

//! `lookout import gatus|blackbox` run as the binary on the upstream sample
//! configurations (tests/fixtures/import/) and on configs written here: the
//! output passes `lookout validate`, the notes name file:line, the summary
//! counts are right, and an imported http check judges a loopback server as
//! the original would.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

fn lookout(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lookout"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run lookout")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `lookout validate` on what an import wrote under `out`.
fn assert_validates(out: &Path, env: &[(&str, String)]) {
    std::fs::create_dir_all(out.join("alerts")).unwrap();
    let checks = out.join("checks");
    let alerts = out.join("alerts");
    let v = lookout(
        &[
            "validate",
            "--checks",
            checks.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
        ],
        env,
    );
    assert!(
        v.status.success(),
        "imported config does not validate:\n{}\n{}",
        text(&v.stderr),
        std::fs::read_to_string(
            checks.join(
                std::fs::read_dir(&checks)
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .file_name()
            )
        )
        .unwrap_or_default()
    );
}

#[test]
fn gatus_samples_import_validate_and_count() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fixtures().join("gatus");
    let out = lookout(
        &[
            "import",
            "gatus",
            dir.to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // config.yaml 8, alerting.yaml 1, dns.yaml 1, tcp.yaml 2, multi/backend.yaml 3 endpoints;
    // partial: two `[DOMAIN_EXPIRATION]` conditions and one `client.certpath`.
    assert!(
        stderr.contains("12 of 15 endpoints converted fully, 3 partially"),
        "{stderr}"
    );
    let config = dir.join("config.yaml");
    assert!(
        stderr.contains(&format!(
            "{}:53: condition `[DOMAIN_EXPIRATION] > 720h` has no Lookout equivalent",
            config.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:65: `client.certpath`", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:1: top-level `metrics`",
            dir.join("multi/global.yaml").display()
        )),
        "{stderr}"
    );
    assert_validates(tmp.path(), &[]);
    let checks = std::fs::read_to_string(tmp.path().join("checks/gatus.yaml")).unwrap();
    assert_matches_schema("checks", &checks, tmp.path());
    assert_matches_schema(
        "alerts",
        &std::fs::read_to_string(tmp.path().join("alerts/gatus.yaml")).unwrap(),
        tmp.path(),
    );
    assert!(checks.starts_with("# yaml-language-server: $schema=../schema/checks.schema.json\n"));
    let schema = std::fs::read_to_string(tmp.path().join("schema/checks.schema.json")).unwrap();
    assert_eq!(
        schema.trim_end(),
        lookout::schema::schema_text(lookout::schema::SchemaKind::Checks)
    );
    // The conditions became the same judgements.
    for expected in [
        "status: [200]",
        "path: $.status",
        "equals: UP",
        "max_latency: 150ms",
        "name: back-end-certificate",
        "expires_within: 48h",
        "resolver: 8.8.8.8:53",
        "expect: [93.184.216.34]",
        "host: example.org",
        "address: 127.0.0.1:6379",
        "channels: [slack, discord]",
        "failures: 3",
        "group: core",
        "tls_verify: false",
        "timeout: 10s",
        "every: 5m",
    ] {
        assert!(checks.contains(expected), "no `{expected}` in\n{checks}");
    }
    let alerts = std::fs::read_to_string(tmp.path().join("alerts/gatus.yaml")).unwrap();
    assert!(
        alerts.contains("format: slack") && alerts.contains("format: discord"),
        "{alerts}"
    );
}

#[test]
fn blackbox_samples_import_and_validate() {
    for (config, prometheus, summary) in [
        (
            "blackbox.yml",
            "prometheus.yml",
            "3 of 10 probes (target and module) converted fully, 7 partially",
        ),
        ("blackbox-good.yml", "prometheus-good.yml", "of 7 probes"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let c = fixtures().join("blackbox").join(config);
        let p = fixtures().join("blackbox").join(prometheus);
        let out = lookout(
            &[
                "import",
                "blackbox",
                "--config",
                c.to_str().unwrap(),
                "--prometheus",
                p.to_str().unwrap(),
                "--out",
                tmp.path().to_str().unwrap(),
            ],
            &[],
        );
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains(summary), "{config}: {stderr}");
        assert_validates(tmp.path(), &[]);
        let checks = std::fs::read_to_string(tmp.path().join("checks/blackbox.yaml")).unwrap();
        assert_matches_schema("checks", &checks, tmp.path());
    }
    // Notes name the module's line.
    let c = fixtures().join("blackbox/blackbox.yml");
    let p = fixtures().join("blackbox/prometheus.yml");
    let out = lookout(
        &[
            "import",
            "blackbox",
            "--config",
            c.to_str().unwrap(),
            "--prometheus",
            p.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:67: `modules.http_3xx.http.enable_http3` has no Lookout equivalent",
            c.display()
        )),
        "{stderr}"
    );
    let stdout = text(&out.stdout);
    for expected in [
        "every: 30s",
        "url: http://127.0.0.1:8080/health",
        "service: service1",
        "send: NICK prober",
        "host: example.com\n",
    ] {
        assert!(stdout.contains(expected), "no `{expected}` in\n{stdout}");
    }
}

/// The output validates against `lookout schema KIND` too (Python's
/// jsonschema, draft 2020-12).
fn assert_matches_schema(kind: &str, yaml: &str, dir: &Path) {
    let schema = lookout(&["schema", kind], &[]);
    assert!(schema.status.success());
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).expect("output is YAML");
    let schema_path = dir.join(format!("{kind}.schema.json"));
    let doc_path = dir.join(format!("{kind}.json"));
    std::fs::write(&schema_path, &schema.stdout).unwrap();
    std::fs::write(&doc_path, serde_json::to_string(&doc).unwrap()).unwrap();
    let script = "import json, sys\nfrom jsonschema import Draft202012Validator\nv = Draft202012Validator(json.load(open(sys.argv[1])))\nerrors = [e.message[:300] for e in v.iter_errors(json.load(open(sys.argv[2])))]\nprint(chr(10).join(errors))\nsys.exit(1 if errors else 0)\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema_path)
        .arg(&doc_path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "imported {kind} do not match the schema:\n{}{}\n{yaml}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// An HTTP server on loopback answering `status` and `{"status":"UP"}`.
fn serve(status: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let code = status.load(Ordering::SeqCst);
            let body = r#"{"status":"UP"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn run_check(dir: &Path, name: &str, env: &[(&str, String)]) -> Output {
    let checks = dir.join("checks");
    let alerts = dir.join("alerts");
    lookout(
        &[
            "check",
            name,
            "--checks",
            checks.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
        ],
        env,
    )
}

#[test]
fn an_imported_gatus_check_judges_like_gatus() {
    let status = Arc::new(AtomicU16::new(200));
    let port = serve(status.clone());
    let tmp = tempfile::tempdir().unwrap();
    let gatus = tmp.path().join("gatus.yaml");
    std::fs::write(
        &gatus,
        "endpoints:\n  - name: Local API\n    url: \"http://127.0.0.1:$LOOKOUT_TEST_PORT/health\"\n    interval: 30s\n    client:\n      timeout: 5s\n      network: tcp4\n    conditions:\n      - \"[STATUS] == 200\"\n      - \"[BODY].status == UP\"\n      - \"[IP] == 127.0.0.1\"\n",
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let out = lookout(
        &[
            "import",
            "gatus",
            gatus.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:7: `client.network`", gatus.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}:11: condition `[IP] == 127.0.0.1`",
            gatus.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("0 of 1 endpoints converted fully, 1 partially"),
        "{stderr}"
    );
    let env = [("LOOKOUT_TEST_PORT", port.to_string())];
    assert_validates(&out_dir, &env);
    let checks = std::fs::read_to_string(out_dir.join("checks/gatus.yaml")).unwrap();
    assert!(checks.contains("${LOOKOUT_TEST_PORT}"), "{checks}");
    // The condition holds: the check passes.
    let ok = run_check(&out_dir, "local-api", &env);
    assert!(
        ok.status.success(),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    // The status differs: it fails, as Gatus's `[STATUS] == 200` would.
    status.store(503, Ordering::SeqCst);
    let fail = run_check(&out_dir, "local-api", &env);
    assert_eq!(
        fail.status.code(),
        Some(1),
        "{}{}",
        text(&fail.stdout),
        text(&fail.stderr)
    );
}

#[test]
fn an_imported_blackbox_check_judges_like_blackbox() {
    let status = Arc::new(AtomicU16::new(200));
    let port = serve(status.clone());
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("blackbox.yml");
    std::fs::write(&config, "modules:\n  http_up:\n    prober: http\n    timeout: 5s\n    http:\n      valid_status_codes: [200]\n      fail_if_body_not_matches_regexp: ['\"status\":\"UP\"']\n      fail_if_body_matches_regexp: [maintenance]\n").unwrap();
    let prometheus = tmp.path().join("prometheus.yml");
    std::fs::write(&prometheus, format!("scrape_configs:\n  - job_name: bb\n    scrape_interval: 15s\n    metrics_path: /probe\n    params: {{module: [http_up]}}\n    static_configs:\n      - targets: ['http://127.0.0.1:{port}/health']\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n      - target_label: __address__\n        replacement: 127.0.0.1:9115\n")).unwrap();
    let out_dir = tmp.path().join("out");
    let out = lookout(
        &[
            "import",
            "blackbox",
            "--config",
            config.to_str().unwrap(),
            "--prometheus",
            prometheus.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 of 1 probes (target and module) converted fully, 0 partially"),
        "{stderr}"
    );
    assert_validates(&out_dir, &[]);
    let name = format!("http_up-127-0-0-1-{port}");
    let ok = run_check(&out_dir, &name, &[]);
    assert!(
        ok.status.success(),
        "{}{}",
        text(&ok.stdout),
        text(&ok.stderr)
    );
    status.store(500, Ordering::SeqCst);
    let fail = run_check(&out_dir, &name, &[]);
    assert_eq!(
        fail.status.code(),
        Some(1),
        "{}{}",
        text(&fail.stdout),
        text(&fail.stderr)
    );
}

#[test]
fn gatus_maintenance_and_external_endpoints_import_and_validate() {
    let tmp = tempfile::tempdir().unwrap();
    let gatus = tmp.path().join("gatus.yaml");
    std::fs::write(
        &gatus,
        "maintenance:\n  start: \"23:30\"\n  duration: 1h\n  timezone: Europe/Amsterdam\n  every: [Monday, Thursday]\nexternal-endpoints:\n  - name: nightly-job\n    token: ${JOB_TOKEN}\n    heartbeat:\n      interval: 30m\nendpoints:\n  - name: web\n    url: https://x.test/\n",
    )
    .unwrap();
    let out_dir = tmp.path().join("out");
    let out = lookout(
        &[
            "import",
            "gatus",
            gatus.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("1 of 2 endpoints converted fully, 1 partially"),
        "{stderr}"
    );
    let env = [("JOB_TOKEN", "a-token-of-enough-characters".to_string())];
    assert_validates(&out_dir, &env);
    let alerts = std::fs::read_to_string(out_dir.join("alerts/gatus.yaml")).unwrap();
    assert_matches_schema("alerts", &alerts, tmp.path());
    let checks = std::fs::read_to_string(out_dir.join("checks/gatus.yaml")).unwrap();
    assert_matches_schema("checks", &checks, tmp.path());
}

//! Loader tests: defaults, every error with its position, cross-file rules.

use std::time::Duration;

use reqwest::Method;

use super::*;
use crate::schedule::Schedule;

struct Dirs {
    _root: tempfile::TempDir,
    checks: PathBuf,
    alerts: PathBuf,
}

fn dirs(checks: &[(&str, &str)], alerts: &[(&str, &str)]) -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let (c, a) = (root.path().join("checks"), root.path().join("alerts"));
    std::fs::create_dir_all(&c).unwrap();
    std::fs::create_dir_all(&a).unwrap();
    for (name, text) in checks {
        std::fs::write(c.join(name), text).unwrap();
    }
    for (name, text) in alerts {
        std::fs::write(a.join(name), text).unwrap();
    }
    Dirs {
        _root: root,
        checks: c,
        alerts: a,
    }
}

fn env(name: &str) -> Option<String> {
    match name {
        "API_TOKEN" => Some("tok-123456".into()),
        _ => None,
    }
}

fn load(d: &Dirs) -> Result<Config, Vec<String>> {
    load_with_env(&d.checks, &d.alerts, &env).map_err(|e| {
        e.0.iter()
            .map(|e| {
                format!(
                    "{}:{}:{}: {}",
                    e.file.file_name().unwrap().to_string_lossy(),
                    e.pos.line,
                    e.pos.col,
                    e.message
                )
            })
            .collect()
    })
}

#[test]
fn design_example_loads_with_defaults() {
    let d = dirs(
        &[(
            "api.yaml",
            r#"
checks:
  - name: api-health
    http:
      url: https://api.example.com/health
      headers: { Authorization: "Bearer ${API_TOKEN}" }
    every: 30s
    expect:
      status: [200, 3xx]
      body_contains: '"status":"healthy"'
      max_latency: 800ms
    alert:
      channels: [ops-webhook]
      quorum: 2
      remind_every: 1h
  - name: minimal
    http: { url: "http://127.0.0.1:8080/" }
    cron: "*/5 * * * *"
"#,
        )],
        &[(
            "channels.yaml",
            r#"
channels:
  ops-webhook:
    webhook: { url: "https://hooks.example.com/lookout", secret: "${API_TOKEN}" }
defaults:
  channels: [ops-webhook]
"#,
        )],
    );
    let config = load(&d).unwrap();
    let api = config.check("api-health").unwrap();
    let CheckKind::Http(http) = &api.kind else {
        panic!("not http")
    };
    assert_eq!(http.method, Method::GET);
    assert!(http.follow_redirects && http.tls.verify);
    assert_eq!(http.headers[0].1.to_str().unwrap(), "Bearer tok-123456");
    assert_eq!(api.timeout, Duration::from_secs(10));
    assert_eq!(
        api.expect.status,
        vec![
            StatusRange {
                low: 200,
                high: 200
            },
            StatusRange {
                low: 300,
                high: 399
            }
        ]
    );
    assert_eq!(api.expect.max_latency, Some(Duration::from_millis(800)));
    assert_eq!(
        (api.alert.failures, api.alert.successes, api.alert.quorum),
        (2, 1, Some(2))
    );
    assert_eq!(api.alert.remind_every, Some(Duration::from_secs(3600)));
    let minimal = config.check("minimal").unwrap();
    assert!(matches!(minimal.schedule, Schedule::Cron(_)));
    assert!(minimal.expect.status.is_empty() && minimal.alert.channels.is_none());
    assert_eq!(config.default_channels, vec!["ops-webhook"]);
    assert_eq!(config.secrets.redact("Bearer tok-123456"), "Bearer ****");
}

#[test]
fn every_mistake_is_reported_with_its_position() {
    let d = dirs(
        &[
            (
                "a.yaml",
                "checks:
  - name: api
    http:
      url: http://127.0.0.1:9/health
      methd: GET
    every: 30
    timeout: 5 parsecs
  - name: api
    http: { url: \"not a url\" }
    cron: \"61 * * * *\"
    alert:
      channels: [pager]
      failures: 0
  - name: web
    http: { url: \"https://x.test/?t=${UNSET_TOKEN}\" }
    evry: 10s
",
            ),
            (
                "b.yaml",
                "checks:\n  - name: web\n    http: { url: \"http://[::1]:80/\" }\n    every: 1s\n    expect: { status: [7xx] }\n",
            ),
            ("c.yaml", "checks:\n  - name: [x\n"),
        ],
        &[(
            "x.yaml",
            "channels:\n  mail:\n    email: { smtp: \"http://x\", from: a@b.c, to: [] }\n",
        )],
    );
    let errors = load(&d).unwrap_err();
    let expected = [
        "x.yaml:3:20: invalid `smtp` URL `http://x`",
        "x.yaml:3:49: `to` needs at least one address",
        "a.yaml:5:7: unknown key `methd` in `http` of check `api`; did you mean `method`?",
        "a.yaml:6:12: `every` of check `api`: \"30\" has no unit; write it as 30s, 30ms, 30m, ...",
        "a.yaml:7:14: `timeout` of check `api`: invalid duration \"5 parsecs\"; expected a duration such as 500ms, 30s, 5m, 1h or 14d",
        "a.yaml:8:11: duplicate check name `api` (first defined at",
        "a.yaml:9:18: invalid URL `not a url`: relative URL without a base",
        "a.yaml:10:11: invalid cron expression \"61 * * * *\"",
        "a.yaml:12:18: unknown channel `pager`",
        "a.yaml:13:17: `failures` must be a whole number of at least 1",
        "a.yaml:14:5: check `web` needs a schedule",
        "a.yaml:15:18: environment variable `UNSET_TOKEN` is not set",
        "a.yaml:16:5: unknown key `evry` in a check; did you mean `every`?",
        "b.yaml:2:11: duplicate check name `web` (first defined at",
        "b.yaml:5:24: `status` entries must be codes (100-599) or classes such as 2xx",
        "c.yaml:2:11: invalid YAML: unclosed bracket '['",
    ];
    for (want, got) in expected.iter().zip(&errors) {
        assert!(
            got.starts_with(want),
            "\nwant: {want}\n got: {got}\nall: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn kinds_and_schedules_are_checked() {
    let d = dirs(
        &[(
            "k.yaml",
            "checks:
  - name: none
    every: 1s
  - name: two
    http: { url: \"http://a.test/\" }
    tcp: { address: \"a:1\" }
    every: 1s
  - name: both
    http: { url: \"http://a.test/\" }
    every: 1s
    cron: \"* * * * *\"
  - name: never
    http: { url: \"http://a.test/\" }
  - name: ftp
    http: { url: \"ftp://a.test/\" }
    every: 10ms
  - name: zone
    http: { url: \"http://a.test/\" }
    cron: \"0 9 * * *\"
    tz: Mars/Olympus
",
        )],
        &[],
    );
    let errors = load(&d).unwrap_err();
    let expected = [
        "k.yaml:2:5: check `none` needs exactly one kind",
        "k.yaml:6:10: check `two` has more than one kind",
        "k.yaml:11:11: check `both` has both `every` and `cron`",
        "k.yaml:12:5: check `never` needs a schedule",
        "k.yaml:15:18: `url` must be http:// or https://",
        "k.yaml:16:12: `every` must be at least 100ms",
        "k.yaml:20:9: unknown time zone `Mars/Olympus`",
    ];
    for (want, got) in expected.iter().zip(&errors) {
        assert!(
            got.starts_with(want),
            "\nwant: {want}\n got: {got}\nall: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn missing_checks_directory_is_an_error_but_alerts_is_optional() {
    let root = tempfile::tempdir().unwrap();
    let errors =
        load_with_env(&root.path().join("nope"), &root.path().join("none"), &env).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert!(errors.0[0].message.starts_with("cannot read directory"));
    std::fs::create_dir(root.path().join("checks")).unwrap();
    let config =
        load_with_env(&root.path().join("checks"), &root.path().join("none"), &env).unwrap();
    assert!(config.checks.is_empty());
}

#[test]
fn several_mistakes_in_one_check_are_all_reported() {
    let d = dirs(
        &[(
            "one.yaml",
            "checks:
  - name: Bad Name
    http:
      url: ${UNSET_URL}
      method: FETCH
      headers: [x]
    cron: \"${UNSET_CRON}\"
    alert: { channels: [nowhere] }
",
        )],
        &[],
    );
    let errors = load(&d).unwrap_err();
    let expected = [
        "one.yaml:2:11: check name `Bad Name` must match",
        "one.yaml:4:12: environment variable `UNSET_URL` is not set",
        "one.yaml:5:15: unsupported method `FETCH`",
        "one.yaml:6:16: `headers` must be a mapping",
        "one.yaml:7:11: environment variable `UNSET_CRON` is not set",
        "one.yaml:8:25: unknown channel `nowhere`",
    ];
    for (want, got) in expected.iter().zip(&errors) {
        assert!(
            got.starts_with(want),
            "\nwant: {want}\n got: {got}\nall: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn other_kinds_load_with_their_defaults() {
    let d = dirs(
        &[(
            "kinds.yaml",
            "checks:
  - name: db
    tcp: { address: \"db.internal:5432\" }
    every: 30s
  - name: smtp
    tcp: { address: \"[::1]:25\", send: \"EHLO lookout\\r\\n\", expect: \"250\" }
    every: 1m
  - name: cert
    tls: { address: \"example.com:443\" }
    cron: \"0 * * * *\"
  - name: records
    dns: { name: example.com, type: mx, resolver: \"127.0.0.1\", expect: [mail.example.com] }
    every: 5m
  - name: backup
    heartbeat: { token: \"${API_TOKEN}-and-more\", period: 24h, grace: 1h }
  - name: nightly
    heartbeat: { token: abcdefghijklmnop, period: \"0 2 * * *\" }
    alert: { failures: 2 }
",
        )],
        &[],
    );
    let config = load(&d).unwrap();
    let kind = |name: &str| config.check(name).unwrap().kind.clone();
    let CheckKind::Tcp(db) = kind("db") else {
        panic!()
    };
    assert_eq!(
        db.address,
        HostPort {
            host: "db.internal".into(),
            port: 5432
        }
    );
    let CheckKind::Tcp(smtp) = kind("smtp") else {
        panic!()
    };
    assert_eq!(
        (smtp.address.to_string(), smtp.send.as_deref()),
        ("[::1]:25".to_string(), Some("EHLO lookout\r\n"))
    );
    let CheckKind::Tls(cert) = kind("cert") else {
        panic!()
    };
    assert_eq!(
        (cert.server_name.as_str(), cert.expires_within),
        ("example.com", Duration::from_secs(14 * 86_400))
    );
    let CheckKind::Dns(records) = kind("records") else {
        panic!()
    };
    assert_eq!(records.record_type, DnsRecordType::Mx);
    assert_eq!(records.resolver, Some("127.0.0.1:53".parse().unwrap()));
    let backup = config.check("backup").unwrap();
    let CheckKind::Heartbeat(hb) = &backup.kind else {
        panic!()
    };
    assert_eq!(
        (hb.token.as_str(), hb.grace),
        ("tok-123456-and-more", Duration::from_secs(3600))
    );
    assert!(matches!(hb.period, Schedule::Every(p) if p == Duration::from_secs(86_400)));
    assert!(!backup.is_probed());
    assert_eq!(
        backup.alert.failures, 1,
        "a missed heartbeat is already confirmed"
    );
    assert_eq!(
        config.check("nightly").unwrap().alert.failures,
        2,
        "unless set"
    );
    assert_eq!(
        config.secrets.redact("ping tok-123456-and-more"),
        "ping ****"
    );
}

#[test]
fn other_kinds_report_their_mistakes() {
    let d = dirs(
        &[(
            "bad.yaml",
            "checks:
  - name: a
    tcp: { address: \"no-port\" }
    every: 30s
  - name: b
    dns: { name: x.test, type: SRV, resolver: \"not an ip\" }
    every: 30s
  - name: c
    heartbeat: { token: short, period: sometimes }
  - name: d
    heartbeat: { token: abcdefghijklmnop, period: 1h }
    every: 1m
  - name: e
    tls: { address: \"x.test:443\", expires_within: soon }
    every: 1h
",
        )],
        &[],
    );
    let errors = load(&d).unwrap_err();
    let expected = [
        "bad.yaml:3:21: `no-port` is not host:port",
        "bad.yaml:6:32: unsupported record type `SRV`",
        "bad.yaml:6:47: `resolver` `not an ip` must be ip:port",
        "bad.yaml:9:25: `token` must be at least 16 characters",
        "bad.yaml:9:40: `period` `sometimes` must be a duration (24h) or a cron expression",
        "bad.yaml:12:12: a heartbeat is pushed, not probed",
        "bad.yaml:14:51: `expires_within`: invalid duration \"soon\"",
    ];
    for (want, got) in expected.iter().zip(&errors) {
        assert!(
            got.starts_with(want),
            "\nwant: {want}\n got: {got}\nall: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn routes_and_maintenance_are_validated() {
    let d = dirs(
        &[(
            "c.yaml",
            "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1m\n",
        )],
        &[(
            "a.yaml",
            "channels:
  ops: { webhook: { url: \"http://127.0.0.1:9/\" } }
routes:
  - match: { team: payments }
    channels: [opz]
  - match: {}
    channels: [ops]
maintenance:
  - name: once
    checks: [apii]
    from: 2026-11-30T22:00:00Z
  - name: both
    labels: { team: web }
    from: 2026-11-30T22:00:00Z
    until: 2026-11-30T23:00:00Z
    cron: \"0 2 * * *\"
  - name: nothing
    cron: \"0 2 * * *\"
    duration: 1h
  - name: when
    checks: [api]
    from: tomorrow
    until: 2026-11-30T23:00:00Z
",
        )],
    );
    let errors = load(&d).unwrap_err();
    let expected = [
        "a.yaml:5:16: unknown channel `opz`; did you mean `ops`?",
        "a.yaml:6:5: a route's `match` needs at least one label",
        "a.yaml:9:5: a one-off maintenance window needs `until`",
        "a.yaml:10:14: maintenance names unknown check `apii`",
        "a.yaml:16:11: a maintenance window is either `from`/`until` or `cron`/`duration`",
        "a.yaml:17:5: a maintenance window needs `checks` or `labels`",
        "a.yaml:22:11: `from` must be an RFC 3339 time",
    ];
    for (want, got) in expected.iter().zip(&errors) {
        assert!(
            got.starts_with(want),
            "\nwant: {want}\n got: {got}\nall: {errors:#?}"
        );
    }
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
}

#[test]
fn heartbeat_tokens_must_be_unique() {
    let d = dirs(
        &[(
            "h.yaml",
            "checks:
  - name: one
    heartbeat: { token: abcdefghijklmnop, period: 1h }
  - name: two
    heartbeat: { token: abcdefghijklmnop, period: 1h }
",
        )],
        &[],
    );
    let errors = load(&d).unwrap_err();
    assert_eq!(
        errors,
        vec!["h.yaml:4:5: heartbeat `two` has the same token as `one`; each needs its own"]
    );
}

#[test]
fn a_browser_flow_decodes_to_its_steps_with_shorthands() {
    let d = dirs(
        &[(
            "flow.yaml",
            r##"checks:
  - name: flow
    browser:
      steps:
        - goto: https://user:pw@app.example.com/login
        - fill: { css: "#token", text: "${API_TOKEN}" }
        - select: { xpath: "//select", label: "Pro plan" }
        - press: Enter
        - press: { css: "#q", key: tab }
        - click: { link_text: "Sign in" }
        - wait_for: { css: ".ok" }
        - expect_url: /dashboard
        - expect_title: { regex: "^Dash" }
        - screenshot
    every: 1m
"##,
        )],
        &[],
    );
    let config = load(&d).unwrap();
    let check = &config.checks[0];
    assert_eq!(check.kind_name(), "browser");
    assert_eq!(check.target(), "https://user:****@app.example.com/login");
    let CheckKind::Browser(spec) = &check.kind else {
        panic!("not a browser check")
    };
    let names: Vec<String> = spec.steps.iter().map(|s| s.describe()).collect();
    assert_eq!(
        names,
        [
            "goto https://user:****@app.example.com/login",
            "fill #token",
            "select xpath //select",
            "press Enter",
            "press Tab on #q",
            "click link \"Sign in\"",
            "wait_for .ok",
            "expect_url contains \"/dashboard\"",
            "expect_title matches /^Dash/",
            "screenshot",
        ]
    );
    assert!(matches!(
        &spec.steps[6],
        browser::Step::WaitFor { timeout, .. } if *timeout == limits::BROWSER_WAIT_FOR_DEFAULT
    ));
    // The typed value came from the environment: a secret.
    assert_eq!(config.secrets.redact("x tok-123456 y"), "x **** y");
}

#[test]
fn a_browser_flow_starts_with_goto_and_has_steps() {
    for (steps, error) in [
        ("[]", "flow.yaml:4:14: `steps` needs at least one step"),
        (
            "[{ click: { css: a } }]",
            "flow.yaml:4:15: a browser flow starts with `goto: URL`",
        ),
        (
            "[{ goto: https://a.example/, click: { css: a } }]",
            "flow.yaml:4:50: step 1 has more than one action (`click` is the second)",
        ),
    ] {
        let d = dirs(
            &[(
                "flow.yaml",
                &format!(
                    "checks:\n  - name: flow\n    browser:\n      steps: {steps}\n    every: 1m\n"
                ),
            )],
            &[],
        );
        let errors = load(&d).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains(error)),
            "{steps}: {errors:?}"
        );
    }
}

#[test]
fn secrets_are_masked_url_encoded_too() {
    let mut secrets = Secrets::default();
    secrets.add("alice@example.com");
    secrets.add("p a&ss");
    assert_eq!(
        secrets.redact("/d?email=alice%40example.com&pw=p+a%26ss&raw=alice@example.com p%20a%26ss"),
        "/d?email=****&pw=****&raw=**** ****"
    );
}

#[test]
fn config_errors_show_the_variable_never_its_value() {
    let env = |name: &str| match name {
        "EVERY" => Some("S3cr3t-Every".to_string()),
        "METHOD" => Some("s3cret-method".to_string()),
        "HOOK" => Some("http://[S3cr3t-Hook".to_string()),
        _ => None,
    };
    let checks = [(
        PathBuf::from("checks/c.yaml"),
        "checks:\n  - name: a\n    http: { url: \"http://127.0.0.1:1/\", method: \"${METHOD}\" }\n    every: \"${EVERY}\"\n".to_string(),
    )];
    let alerts = [(
        PathBuf::from("alerts/a.yaml"),
        "channels:\n  hook:\n    webhook: { url: \"${HOOK}\" }\n".to_string(),
    )];
    let errors = load_from_texts(&checks, &alerts, Path::new("alerts"), &env).unwrap_err();
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "alerts/a.yaml:3:21: invalid webhook `url` `${HOOK}`; expected http:// or https://",
            "checks/c.yaml:3:49: unsupported method `${METHOD}`; expected GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS",
            "checks/c.yaml:4:12: `every` of check `a`: invalid duration \"${EVERY}\"; expected a duration such as 500ms, 30s, 5m, 1h or 14d",
        ]
    );
}

#[test]
fn a_flow_for_a_real_app_decodes_its_settings_new_steps_and_includes() {
    let d = dirs(
        &[(
            "flow.yaml",
            r##"checks:
  - name: flow
    browser:
      fail_on: [console_error, request_error]
      cookies: [{ name: sid, value: "${API_TOKEN}", domain: app.example.com, secure: true }]
      headers: { Authorization: "Bearer ${API_TOKEN}" }
      viewport: { width: 390, height: 844 }
      user_agent: "Mobile Probe"
      film_strip: true
      steps:
        - include: { flow: "flows/login.yaml#login", with: { BASE: "https://app.example.com", WHO: "${API_TOKEN}" } }
        - eval: { script: "document.title", expect: { equals: Home } }
        - eval: "window.ready"
        - wait_for_js: { script: "window.ready", timeout: 3s }
        - frame: { css: "#pay" }
        - frame: parent
        - frame: top
        - window: new
        - window: { title: { regex: "^Pick" } }
        - window: { url: "/popup" }
        - window: main
        - hover: { css: ".menu" }
        - scroll_to: { xpath: "//footer" }
        - upload: { css: "#file", file: flows/upload.txt }
        - clear: { css: "#q" }
        - check: { css: "#agree" }
        - uncheck: { css: "#agree" }
        - expect_visible: { css: ".ok" }
        - expect_hidden: { css: ".spinner" }
        - expect_count: { css: ".item", above: 2 }
        - expect_attribute: { css: "a", attribute: href, contains: "/docs" }
    every: 1m
"##,
        )],
        &[],
    );
    std::fs::create_dir_all(d.checks.join("flows")).unwrap();
    std::fs::write(
        d.checks.join("flows/login.yaml"),
        "login:\n  - goto: ${BASE}/login\n  - fill: { css: \"#user\", text: \"${WHO}\" }\n",
    )
    .unwrap();
    std::fs::write(d.checks.join("flows/upload.txt"), "x").unwrap();
    let config = load(&d).unwrap();
    let CheckKind::Browser(spec) = &config.checks[0].kind else {
        panic!("not a browser check")
    };
    let names: Vec<String> = spec.steps.iter().map(|s| s.describe()).collect();
    assert_eq!(
        names,
        [
            "goto https://app.example.com/login",
            "fill #user",
            "eval document.title",
            "eval window.ready",
            "wait_for_js window.ready",
            "frame #pay",
            "frame parent",
            "frame top",
            "window new",
            "window title matches /^Pick/",
            "window url contains \"/popup\"",
            "window main",
            "hover .menu",
            "scroll_to xpath //footer",
            "upload #file",
            "clear #q",
            "check #agree",
            "uncheck #agree",
            "expect_visible .ok",
            "expect_hidden .spinner",
            "expect_count .item above 2",
            "expect_attribute a href contains \"/docs\"",
        ]
    );
    assert_eq!(
        spec.fail_on,
        [browser::FailOn::ConsoleError, browser::FailOn::RequestError]
    );
    assert_eq!(spec.cookies[0].value, "tok-123456");
    assert_eq!(spec.headers[0].0, "Authorization");
    assert_eq!(
        spec.viewport,
        Some(browser::Viewport {
            width: 390,
            height: 844
        })
    );
    assert_eq!(spec.user_agent.as_deref(), Some("Mobile Probe"));
    assert!(spec.film_strip && spec.capture == browser::Capture::default());
    // The included sequence got its parameters; the one from the
    // environment stays a secret, the plain base URL is not made one.
    assert!(matches!(&spec.steps[1], browser::Step::Fill { text, .. } if text == "tok-123456"));
    assert_eq!(
        config.secrets.redact("https://app.example.com tok-123456"),
        "https://app.example.com ****"
    );
    let upload = match &spec.steps[14] {
        browser::Step::Upload { file, .. } => file.clone(),
        other => panic!("{other:?}"),
    };
    assert!(upload.is_absolute() && upload.ends_with("flows/upload.txt"));
    // A remote probe has no flows/ directory: the included steps travel
    // inside the check's tree, their secret with them.
    let wire = super::remote::WireCheck::from_check(&config.checks[0]).unwrap();
    std::fs::remove_file(d.checks.join("flows/login.yaml")).unwrap();
    let (checks, secrets) = super::remote::decode_wire_checks(vec![wire]).unwrap();
    let CheckKind::Browser(remote) = &checks[0].kind else {
        panic!("not a browser check")
    };
    let remote_names: Vec<String> = remote.steps.iter().map(|s| s.describe()).collect();
    assert_eq!(remote_names, names);
    assert_eq!(secrets.redact("x tok-123456"), "x ****");
}

#[test]
fn eval_expectations_judge_the_json_encoded_result() {
    use browser::JsExpect;
    use serde_json::json;
    assert!(JsExpect::Equals("Home".into()).holds(&json!("Home")));
    assert!(JsExpect::Equals("3".into()).holds(&json!(3)));
    assert!(JsExpect::Equals("false".into()).holds(&json!(false)));
    assert!(JsExpect::Contains("\"a\":1".into()).holds(&json!({ "a": 1 })));
    assert!(JsExpect::Matches(regex::Regex::new("^\\[1,").unwrap()).holds(&json!([1, 2])));
    for falsy in [json!(null), json!(false), json!(0), json!("")] {
        assert!(!JsExpect::Truthy.holds(&falsy), "{falsy}");
    }
    for truthy in [json!(true), json!(1), json!("x"), json!([]), json!({})] {
        assert!(JsExpect::Truthy.holds(&truthy), "{truthy}");
    }
}

#[test]
fn the_status_page_settings_load_in_order_and_their_mistakes_have_positions() {
    let d = dirs(
        &[
            (
                "a.yaml",
                r#"
status_page:
  title: Acme
  logo: https://acme.example/logo.svg
  footer: { text: Acme Inc., url: https://acme.example/ }
  access: token
  token: ${API_TOKEN}-and-more-characters
  groups:
    - name: Web
      checks: [web]
    - name: Payments
      labels: { team: pay }
announcements:
  - id: planned
    title: Planned
    severity: maintenance
    groups: [Payments]
    updates:
      - { at: "2026-03-01T11:00:00Z", status: resolved, text: done }
      - { at: "2026-03-01T10:00:00Z", status: identified, text: "**soon**" }
checks:
  - name: web
    tcp: { address: "127.0.0.1:9" }
    every: 1m
    status_page: { display_name: The web }
"#,
            ),
            ("b.yaml", "announcements: []\n"),
        ],
        &[],
    );
    let config = load(&d).unwrap();
    let page = &config.page;
    assert_eq!(page.title(), "Acme");
    let groups: Vec<&str> = page.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["Web", "Payments"]);
    assert_eq!(
        page.access,
        page::PageAccess::Token("tok-123456-and-more-characters".into())
    );
    assert_eq!(
        config.checks[0].status_page.display_name.as_deref(),
        Some("The web")
    );
    let note = &config.announcements[0];
    assert_eq!(
        note.updates[0].status,
        page::UpdateStatus::Identified,
        "sorted by time"
    );
    assert!(!note.is_open());

    let d = dirs(
        &[
            (
                "a.yaml",
                "status_page:\n  access: token\n  token: short\n  logo: ftp://x\n  groups:\n    - name: Other\n      checks: [web]\n",
            ),
            ("b.yaml", "status_page: { title: Again }\n"),
        ],
        &[],
    );
    let errors = load(&d).unwrap_err();
    let text = errors.join("\n");
    assert!(
        text.contains("a.yaml:3:10: `token` must be at least 16"),
        "{text}"
    );
    assert!(
        text.contains("a.yaml:4:9: `logo` must be an http"),
        "{text}"
    );
    assert!(
        text.contains("a.yaml:6:7: group `Other` is already defined"),
        "{text}"
    );
}

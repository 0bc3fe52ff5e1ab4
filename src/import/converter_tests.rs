//! Table tests of the converters on small documents: each Gatus condition
//! and blackbox setting, what it becomes, and what is reported.

use std::path::PathBuf;

use super::{Conversion, blackbox, gatus, parse};

fn gatus(yaml: &str) -> Conversion {
    let path = PathBuf::from("g.yaml");
    let node = parse(&path, yaml).unwrap();
    gatus::convert(&[(path, node)])
}

fn endpoint(url: &str, conditions: &[&str]) -> String {
    let mut doc = format!("endpoints:\n  - name: e\n    url: \"{url}\"\n    conditions:\n");
    for c in conditions {
        doc.push_str(&format!("      - \"{c}\"\n"));
    }
    doc
}

#[test]
fn gatus_conditions_become_the_same_judgements() {
    let table: &[(&str, &str, &str)] = &[
        ("https://x.test/", "[STATUS] == 200", "status: [200]"),
        (
            "https://x.test/",
            "[STATUS] == any(200, 201)",
            "status: [200, 201]",
        ),
        (
            "https://x.test/",
            "[STATUS] < 400",
            "status: [1xx, 2xx, 3xx]",
        ),
        ("https://x.test/", "[BODY].status == UP", "equals: UP"),
        (
            "https://x.test/",
            "[BODY].data[0].id == 1",
            "path: \"$.data[0].id\"\n          equals: 1",
        ),
        ("https://x.test/", "[BODY].ok == true", "equals: true"),
        ("https://x.test/", "[BODY].n < 5", "below: 5"),
        (
            "https://x.test/",
            "[BODY].state != down",
            "not_equals: down",
        ),
        ("https://x.test/", "len([BODY].items) == 3", "length: 3"),
        (
            "https://x.test/",
            "has([BODY].errors) == false",
            "exists: false",
        ),
        (
            "https://x.test/",
            "[BODY] == pat(*healthy*)",
            "body_contains: healthy",
        ),
        (
            "https://x.test/",
            "[RESPONSE_TIME] < 1500",
            "max_latency: 1500ms",
        ),
        (
            "https://x.test/",
            "[RESPONSE_TIME] < 2000",
            "max_latency: 2s",
        ),
        (
            "https://x.test/",
            "[CERTIFICATE_EXPIRATION] > 48h",
            "address: x.test:443\n      expires_within: 48h",
        ),
        (
            "tcp://127.0.0.1:22",
            "[CONNECTED] == true",
            "address: 127.0.0.1:22",
        ),
        ("icmp://x.test", "[CONNECTED] == true", "host: x.test"),
    ];
    for (url, cond, expected) in table {
        let c = gatus(&endpoint(url, &[cond]));
        let out = c.checks_yaml();
        assert!(out.contains(expected), "{cond}: no `{expected}` in\n{out}");
        assert!(c.notes.is_empty(), "{cond}: {:?}", c.notes);
        assert_eq!((c.total, c.full, c.partial), (1, 1, 0), "{cond}");
    }
}

#[test]
fn gatus_what_has_no_equivalent_is_noted_at_its_line() {
    let table: &[(&str, &str)] = &[
        (
            "[DOMAIN_EXPIRATION] > 720h",
            "condition `[DOMAIN_EXPIRATION] > 720h` has no Lookout equivalent",
        ),
        ("[IP] == 127.0.0.1", "condition `[IP] == 127.0.0.1`"),
        ("[STATUS] != 500", "condition `[STATUS] != 500`"),
        ("[STATUS] < 250", "condition `[STATUS] < 250`"),
        ("[BODY].x == any(a, b)", "condition `[BODY].x == any(a, b)`"),
    ];
    for (cond, message) in table {
        let c = gatus(&endpoint("https://x.test/", &["[STATUS] == 200", cond]));
        assert_eq!(c.notes.len(), 1, "{cond}: {:?}", c.notes);
        assert_eq!(c.notes[0].line, 6, "{cond}");
        assert!(
            c.notes[0].message.contains(message),
            "{cond}: {}",
            c.notes[0].message
        );
        assert_eq!((c.total, c.full, c.partial), (1, 0, 1), "{cond}");
    }
    // Not converted at all: counted, neither full nor partial.
    for doc in [
        endpoint("udp://127.0.0.1:53", &["[CONNECTED] == true"]),
        "endpoints:\n  - name: off\n    enabled: false\n    url: https://x.test/\n".to_string(),
    ] {
        let c = gatus(&doc);
        assert_eq!(
            (c.total, c.full, c.partial, c.checks.len()),
            (1, 0, 0, 0),
            "{doc}"
        );
        assert_eq!(c.notes.len(), 1);
    }
}

#[test]
fn gatus_settings_and_env_carry_over() {
    let c = gatus(
        "alerting:\n  pagerduty:\n    integration-key: \"$PD_KEY\"\n  email:\n    from: a@x.test\n    host: smtp.x.test\n    port: 465\n    to: b@x.test,c@x.test\nendpoints:\n  - name: API (prod)\n    group: Core\n    url: https://x.test/\n    interval: 2m\n    method: post\n    headers:\n      Authorization: Bearer ${TOKEN}\n    client:\n      insecure: true\n      ignore-redirect: true\n      timeout: 3s\n    alerts:\n      - type: pagerduty\n        failure-threshold: 5\n        success-threshold: 1\n    conditions:\n      - \"[STATUS] == 200\"\n",
    );
    let out = c.checks_yaml();
    for expected in [
        "name: api-prod",
        "method: POST",
        "Authorization: Bearer ${TOKEN}",
        "tls_verify: false",
        "follow_redirects: false",
        "every: 2m",
        "timeout: 3s",
        "group: core",
        "channels: [pagerduty]",
        "failures: 5",
        "successes: 1",
    ] {
        assert!(out.contains(expected), "no `{expected}` in\n{out}");
    }
    let alerts = c.alerts_yaml().unwrap();
    for expected in [
        "routing_key: ${PD_KEY}",
        "format: pagerduty",
        "smtp: smtps://smtp.x.test:465",
        "to: [b@x.test, c@x.test]",
    ] {
        assert!(alerts.contains(expected), "no `{expected}` in\n{alerts}");
    }
    assert!(c.notes.is_empty(), "{:?}", c.notes);
}

fn blackbox(modules: &str, target: &str) -> Conversion {
    let config = PathBuf::from("blackbox.yml");
    let prom = PathBuf::from("prometheus.yml");
    let m = parse(&config, modules).unwrap();
    let p = parse(&prom, &format!("scrape_configs:\n  - job_name: j\n    params:\n      module: [m]\n    static_configs:\n      - targets: [\"{target}\"]\n    relabel_configs:\n      - source_labels: [__address__]\n        target_label: __param_target\n")).unwrap();
    blackbox::convert(&config, &m, &prom, &p)
}

#[test]
fn blackbox_modules_map_where_lookout_judges_the_same() {
    let table: &[(&str, &str, &str)] = &[
        (
            "prober: http\n    http:\n      valid_status_codes: [200, 204]",
            "https://x.test/",
            "status: [200, 204]",
        ),
        (
            "prober: http\n    http:\n      method: post\n      headers: {X-A: b}",
            "https://x.test/",
            "method: POST",
        ),
        (
            "prober: http\n    http:\n      fail_if_body_not_matches_regexp: [ok]",
            "https://x.test/",
            "body_matches: ok",
        ),
        (
            "prober: http\n    http:\n      fail_if_body_matches_regexp: [down, error]",
            "https://x.test/",
            "body_not_matches: \"(?:down)|(?:error)\"",
        ),
        (
            "prober: http\n    http:\n      tls_config: {insecure_skip_verify: true}",
            "https://x.test/",
            "tls_verify: false",
        ),
        (
            "prober: http\n    http:\n      preferred_ip_protocol: ip6\n      ip_protocol_fallback: false",
            "https://x.test/",
            "ip_family: ipv6",
        ),
        (
            "prober: http\n    http:\n      basic_auth: {username: u, password: p}",
            "https://x.test/",
            "url: https://u:p@x.test/",
        ),
        (
            "prober: tcp\n    tcp:\n      query_response:\n        - send: PING\n        - expect: \"^\\\\+PONG\"",
            "x.test:6379",
            "send: PING\n      expect: \"+PONG\"",
        ),
        (
            "prober: dns\n    dns:\n      query_name: x.test\n      query_type: MX",
            "192.0.2.53",
            "resolver: 192.0.2.53:53",
        ),
        (
            "prober: icmp\n    icmp:\n      payload_size: 100",
            "x.test",
            "payload_size: 100",
        ),
        (
            "prober: grpc\n    grpc:\n      service: s\n      tls: true",
            "x.test:443",
            "service: s",
        ),
    ];
    for (module, target, expected) in table {
        let c = blackbox(&format!("modules:\n  m:\n    {module}\n"), target);
        let out = c.checks_yaml();
        assert!(
            out.contains(expected),
            "{module}: no `{expected}` in\n{out}"
        );
        assert!(c.notes.is_empty(), "{module}: {:?}", c.notes);
        assert_eq!((c.total, c.full), (1, 1), "{module}");
    }
}

#[test]
fn blackbox_what_does_not_map_is_noted_once_at_its_line() {
    let c = blackbox(
        "modules:\n  m:\n    prober: http\n    http:\n      enable_http3: true\n      fail_if_ssl: true\n",
        "https://x.test/",
    );
    let lines: Vec<u32> = c.notes.iter().map(|n| n.line).collect();
    assert_eq!(lines, vec![5, 6], "{:?}", c.notes);
    assert_eq!((c.total, c.full, c.partial), (1, 0, 1));
    // A prober Lookout lacks, a module that is not there, a tcp target without a port.
    let c = blackbox("modules:\n  m:\n    prober: unix\n", "/run/x.sock");
    assert_eq!((c.total, c.checks.len()), (1, 0));
    let c = blackbox("modules:\n  other:\n    prober: tcp\n", "x.test:1");
    assert_eq!((c.total, c.checks.len(), c.notes.len()), (1, 0, 1));
    let c = blackbox("modules:\n  m:\n    prober: tcp\n", "x.test");
    assert_eq!((c.total, c.checks.len(), c.notes.len()), (1, 0, 1));
}

#[test]
fn gatus_external_endpoints_and_maintenance() {
    let c = gatus(
        "maintenance:\n  start: \"23:30\"\n  duration: 1h\n  timezone: Europe/Amsterdam\n  every: [Monday, Thursday]\nexternal-endpoints:\n  - name: nightly-job\n    group: core\n    token: ${JOB_TOKEN}\n    heartbeat:\n      interval: 30m\n  - name: short\n    token: potato\n    heartbeat:\n      interval: 30m\nendpoints:\n  - name: web\n    url: https://x.test/\n",
    );
    let out = c.checks_yaml();
    for expected in [
        "heartbeat:\n      token: ${JOB_TOKEN}\n      period: 30m",
        "group: core",
    ] {
        assert!(out.contains(expected), "no `{expected}` in\n{out}");
    }
    let alerts = c.alerts_yaml().unwrap();
    for expected in [
        "cron: \"30 23 * * 1,4\"",
        "duration: 1h",
        "tz: Europe/Amsterdam",
        "checks: [web, nightly-job]",
    ] {
        assert!(alerts.contains(expected), "no `{expected}` in\n{alerts}");
    }
    // web fully; nightly-job partially (the ping URL changes); short not at all.
    assert_eq!((c.total, c.full, c.partial), (3, 1, 1), "{:?}", c.notes);
    assert!(
        c.notes
            .iter()
            .any(|n| n.line == 13 && n.message.contains("16 or more")),
        "{:?}",
        c.notes
    );
}

//! End to end: one `lookout aggregator` and three `lookout probe` processes
//! on loopback, against a target that fails per region (it tells regions
//! apart by the User-Agent), with alerts going to a real webhook receiver.

mod common;

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use common::hooks::Hooks;
use common::regional::{REGIONS, RegionalTarget, free_port, token, write_probes_file};
use common::results::made_ids;
use common::{ConfigDirs, Server, check_state, client, get_json, wait_for};

struct Setup {
    dirs: ConfigDirs,
    target: RegionalTarget,
    target_url: String,
    hooks: Hooks,
    port: u16,
}

async fn setup() -> Setup {
    let (target, target_addr) = RegionalTarget::start().await;
    let target_url = format!("http://{target_addr}");
    let (hooks, hook_url) = Hooks::start().await;
    let dirs = ConfigDirs::new(&checks_yaml(&target_url, &[]));
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  ops:\n    webhook: {{ url: \"{hook_url}\" }}\ndefaults:\n  channels: [ops]\n"
        ),
    )
    .unwrap();
    write_probes_file(dirs.root.path());
    Setup {
        dirs,
        target,
        target_url,
        hooks,
        port: free_port(),
    }
}

/// The checks file: `api` (every 1s, failures 2, quorum 2) plus `extra`.
fn checks_yaml(target_url: &str, extra: &[&str]) -> String {
    let mut yaml = format!(
        "checks:\n  - name: api\n    http: {{ url: \"{target_url}/health\" }}\n    every: 1s\n    timeout: 2s\n    alert: {{ failures: 2, quorum: 2 }}\n"
    );
    for name in extra {
        yaml.push_str(&format!(
            "  - name: {name}\n    http: {{ url: \"{target_url}/health\" }}\n    every: 1s\n    timeout: 2s\n"
        ));
    }
    yaml
}

fn start_aggregator(setup: &Setup, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![
        "aggregator".into(),
        "--listen".into(),
        format!("127.0.0.1:{}", setup.port).into(),
        "--probes".into(),
        setup.dirs.root.path().join("probes.yaml").into(),
    ];
    args.extend(setup.dirs.flags());
    args.extend(extra.iter().map(OsString::from));
    Server::spawn(&args, &[], "listening on ")
}

fn start_probe(setup: &Setup, region: &str, spool: &Path, extra: &[&str]) -> Server {
    let scheme = if extra.contains(&"--ca-file") {
        "https"
    } else {
        "http"
    };
    let mut args: Vec<OsString> = vec![
        "probe".into(),
        "--region".into(),
        region.into(),
        "--aggregator".into(),
        format!("{scheme}://127.0.0.1:{}/", setup.port).into(),
        "--spool".into(),
        spool.join(region).into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    let token = token(region);
    Server::spawn(
        &args,
        &[("LOOKOUT_PROBE_TOKEN", token.as_str())],
        "probe started",
    )
}

/// Waits until `api` is up with every region reporting.
async fn wait_all_up(base: &str) {
    wait_for(
        "api up in all three regions",
        Duration::from_secs(30),
        || async {
            let state = check_state(base, "api").await;
            let regions = state["regions"].as_object().map(|r| r.len()).unwrap_or(0);
            (state["status"] == "up" && regions == 3).then_some(())
        },
    )
    .await;
}

/// The aggregator and the three probes, once `api` is up everywhere.
async fn start_all() -> (Setup, tempfile::TempDir, Server, Vec<Server>) {
    let setup = setup().await;
    let spool = tempfile::tempdir().unwrap();
    let aggregator = start_aggregator(&setup, &[]);
    let probes: Vec<Server> = REGIONS
        .iter()
        .map(|r| start_probe(&setup, r, spool.path(), &[]))
        .collect();
    wait_all_up(&aggregator.base).await;
    (setup, spool, aggregator, probes)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_failing_region_alerts_nobody_two_alert_once_and_recovery_once() {
    let (setup, spool, aggregator, probes) = start_all().await;
    let base = aggregator.base.clone();

    // One region failing: its verdict is failing, the check stays up.
    setup.target.fail(&["eu-west"]);
    wait_for(
        "eu-west counted as failing",
        Duration::from_secs(20),
        || async {
            let state = check_state(&base, "api").await;
            (state["regions"]["eu-west"]["verdict"] == "failing").then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(check_state(&base, "api").await["status"], "up");
    assert!(
        setup.hooks.events("down").is_empty(),
        "{:?}",
        setup.hooks.all()
    );

    // Two of three: one down alert naming both.
    setup.target.fail(&["eu-west", "us-east"]);
    let down = wait_for("the down alert", Duration::from_secs(20), || async {
        setup.hooks.events("down").into_iter().next()
    })
    .await;
    let summary = down["summary"].as_str().unwrap();
    assert!(summary.contains("2 of 3 regions"), "{summary}");
    assert!(
        summary.contains("eu-west") && summary.contains("us-east"),
        "{summary}"
    );
    assert_eq!(down["regions"]["eu-west"]["status"], 500);
    assert_eq!(down["regions"]["us-east"]["status"], 500);
    assert_eq!(down["regions"]["ap-south"]["outcome"], "ok");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.hooks.events("down").len(), 1);

    // Recovery: one up alert.
    setup.target.fail(&[]);
    wait_for("the recovery alert", Duration::from_secs(20), || async {
        setup.hooks.events("up").into_iter().next()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(setup.hooks.events("up").len(), 1);
    assert_eq!(setup.hooks.events("down").len(), 1);

    // A probe killed: its region goes stale, the check stays up, and a
    // probe alert (not a check alert) says so.
    let mut probes = probes.into_iter();
    let killed = probes.next().unwrap();
    killed.kill();
    let stale = wait_for("the probe_stale alert", Duration::from_secs(30), || async {
        setup.hooks.events("probe_stale").into_iter().next()
    })
    .await;
    assert_eq!(stale["region"], "eu-west");
    assert!(
        stale["summary"]
            .as_str()
            .unwrap()
            .contains("probe eu-west stopped reporting"),
        "{stale}"
    );
    // The probe's alert and the check's region going stale are decided in
    // the same tick, one committed just before the other: wait for both.
    let state = wait_for(
        "eu-west stale in the check",
        Duration::from_secs(10),
        || async {
            let state = check_state(&base, "api").await;
            (state["regions"]["eu-west"]["stale"] == true).then_some(state)
        },
    )
    .await;
    assert_eq!(state["status"], "up", "{state}");
    let (_, listed) = get_json(&client(), &format!("{base}/api/v1/probes")).await;
    let eu = listed["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "eu-west")
        .unwrap()
        .clone();
    assert_eq!(eu["stale"], true, "{listed}");
    assert_eq!(setup.hooks.events("down").len(), 1);

    // It comes back: one probe_back alert closing the same incident.
    let revived = start_probe(&setup, "eu-west", spool.path(), &[]);
    let back = wait_for("the probe_back alert", Duration::from_secs(30), || async {
        setup.hooks.events("probe_back").into_iter().next()
    })
    .await;
    assert_eq!(back["incident"], stale["incident"]);
    drop(revived);
    drop(probes);
    drop(aggregator);
}

/// Results waiting in a region's spool, from the file names alone
/// (`{sequence}-{results}.json`).
fn spooled(spool: &Path, region: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(spool.join(region)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let stem = name.strip_suffix(".json")?;
            stem.split_once('-')?.1.parse::<usize>().ok()
        })
        .sum()
}

/// Waits until every region's spool holds at least `at_least` results.
async fn wait_spooled(spool: &Path, regions: &[&str], at_least: usize) -> usize {
    wait_for(
        "results spooled while the aggregator is down",
        Duration::from_secs(30),
        || async {
            let counts: Vec<usize> = regions.iter().map(|r| spooled(spool, r)).collect();
            counts
                .iter()
                .all(|&n| n >= at_least)
                .then(|| counts.iter().sum())
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn results_made_while_the_aggregator_is_down_all_arrive_once() {
    let (setup, spool, aggregator, probes) = start_all().await;

    // Waits are on what the spools hold, never on how fast a loaded
    // machine runs the checks.
    aggregator.kill();
    let spooled_while_down = wait_spooled(spool.path(), &REGIONS, 2).await;
    // A probe restarted meanwhile: its spool outlives it.
    let mut probes = probes.into_iter();
    let first = probes.next().unwrap();
    let mut made: Vec<String> = Vec::new();
    let mut logs = String::new();
    let log = first.terminate_and_log();
    assert!(log.contains("cannot reach the aggregator"), "{log}");
    made.extend(made_ids(&log));
    logs.push_str(&log);
    let before_restart = spooled(spool.path(), REGIONS[0]);
    let restarted = start_probe(&setup, REGIONS[0], spool.path(), &[]);
    wait_spooled(spool.path(), &REGIONS[..1], before_restart + 1).await;
    let aggregator = start_aggregator(&setup, &[]);
    // Each probe reports its spool backlog: drained once it is back.
    let probes_url = format!("{}/api/v1/probes", aggregator.base);
    wait_for("every spool drained", Duration::from_secs(20), || async {
        let (_, body) = get_json(&client(), &probes_url).await;
        let drained = body["probes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["spool_pending"] == 0)
            .count();
        (drained == 3).then_some(())
    })
    .await;
    // Stop the probes: what they made is in their logs, and a graceful stop
    // delivers (or spools) every result.
    for probe in probes.chain([restarted]) {
        let log = probe.terminate_and_log();
        made.extend(made_ids(&log));
        logs.push_str(&log);
    }
    assert!(
        logs.contains("spool holds results from an earlier run"),
        "{logs}"
    );
    assert!(
        made.len() > spooled_while_down,
        "the probes logged {} results but spooled {spooled_while_down} while the aggregator was down",
        made.len()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let (_, body) = get_json(
            &client(),
            &format!("{}/api/v1/checks/api/results?limit=1000", aggregator.base),
        )
        .await;
        let ids: Vec<String> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        if ids.len() >= made.len() || std::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "a result was stored twice");
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    let missing: Vec<&String> = made.iter().filter(|id| !stored_set.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} results lost: {missing:?}\n{logs}\n{}",
        missing.len(),
        made.len(),
        aggregator.log_text()
    );
    assert_eq!(stored.len(), made.len());
    // Per region, the target saw as many requests as results were stored
    // (no run was made twice, none lost).
    let requests = setup.target.requests.lock().unwrap().clone();
    assert_eq!(requests.values().sum::<usize>(), made.len(), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_token_works_only_for_its_own_region() {
    let setup = setup().await;
    let aggregator = start_aggregator(&setup, &[]);
    let base = &aggregator.base;
    let http = client();
    let eu = format!("Bearer {}", token("eu-west"));

    // Specs: own region with ETag; long-poll answers 304 when unchanged.
    let response = http
        .get(format!("{base}/api/v1/probe/checks?region=eu-west"))
        .header("authorization", &eu)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"].to_str().unwrap().to_string();
    let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(body["checks"][0]["name"], "api");
    let response = http
        .get(format!("{base}/api/v1/probe/checks?region=eu-west&wait=1"))
        .header("authorization", &eu)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);

    // Another region's specs: 403. No token or a wrong one: 401.
    let other = http
        .get(format!("{base}/api/v1/probe/checks?region=us-east"))
        .header("authorization", &eu)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    for auth in ["", "Bearer wrong-token-wrong-token", "Basic abc"] {
        let mut request = http.get(format!("{base}/api/v1/probe/checks?region=eu-west"));
        if !auth.is_empty() {
            request = request.header("authorization", auth);
        }
        assert_eq!(request.send().await.unwrap().status(), 401, "{auth:?}");
    }

    // Results: only the token's own region.
    let result = |region: &str| {
        serde_json::json!({"results": [{
            "id": uuid::Uuid::now_v7(), "check": "api", "region": region, "probe": "p",
            "started_at": chrono::Utc::now(), "duration_ms": 3.0, "outcome": "ok"
        }], "sent_at": chrono::Utc::now()})
        .to_string()
    };
    let post = |auth: Option<String>, body: String| {
        let mut request = http
            .post(format!("{base}/api/v1/results"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    assert_eq!(
        post(Some(eu.clone()), result("us-east"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, result("eu-west")).await.unwrap().status(), 401);
    let wrong = format!("Bearer {}x", token("eu-west"));
    assert_eq!(
        post(Some(wrong), result("eu-west")).await.unwrap().status(),
        401
    );
    let ok = post(Some(eu.clone()), result("eu-west")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let accepted: Value = serde_json::from_str(&ok.text().await.unwrap()).unwrap();
    assert_eq!(accepted["accepted"], 1);
    // Malformed and oversized bodies are refused, not stored.
    assert_eq!(
        post(Some(eu.clone()), "{".into()).await.unwrap().status(),
        400
    );
    let huge = "x".repeat(lookout::limits::RESULTS_BODY_BYTES_MAX + 1);
    assert_eq!(post(Some(eu.clone()), huge).await.unwrap().status(), 413);

    // A new region added to probes.yaml and SIGHUP: its token works.
    let probes = setup.dirs.root.path().join("probes.yaml");
    let mut text = std::fs::read_to_string(&probes).unwrap();
    text.push_str(&format!(
        "  sa-east: {{ token: \"{}\" }}\n",
        token("sa-east")
    ));
    std::fs::write(&probes, text).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(aggregator.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the reload", Duration::from_secs(20), || async {
        aggregator
            .log_text()
            .contains("config reloaded")
            .then_some(())
    })
    .await;
    let sa = http
        .get(format!("{base}/api/v1/probe/checks?region=sa-east"))
        .header("authorization", format!("Bearer {}", token("sa-east")))
        .send()
        .await
        .unwrap();
    assert_eq!(sa.status(), 200);
    drop(aggregator);
    let _ = &setup.target_url;
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_pick_up_config_changes_and_a_bad_edit_keeps_the_old_config() {
    let (setup, _spool, aggregator, probes) = start_all().await;
    let base = aggregator.base.clone();

    // A new check, written to the file: every probe runs it, no restart.
    std::fs::write(
        setup.dirs.checks().join("checks.yaml"),
        checks_yaml(&setup.target_url, &["added"]),
    )
    .unwrap();
    wait_for(
        "the added check run in all regions",
        Duration::from_secs(30),
        || async {
            let state = check_state(&base, "added").await;
            let regions = state["regions"].as_object().map(|r| r.len()).unwrap_or(0);
            (regions == 3).then_some(())
        },
    )
    .await;

    // A broken edit: logged with its position, the old config keeps running.
    std::fs::write(
        setup.dirs.checks().join("checks.yaml"),
        "checks:\n  - name: api\n    http: { url: \"not a url\" }\n    every: 1s\n",
    )
    .unwrap();
    wait_for(
        "the reload failure logged",
        Duration::from_secs(20),
        || async {
            aggregator
                .log_text()
                .contains("still running the previous config")
                .then_some(())
        },
    )
    .await;
    assert!(
        aggregator.log_text().contains("checks.yaml:3:"),
        "{}",
        aggregator.log_text()
    );
    let before = check_state(&base, "added").await["regions"]["eu-west"]["last"]["id"].clone();
    wait_for(
        "the added check still running",
        Duration::from_secs(10),
        || async {
            let now = check_state(&base, "added").await["regions"]["eu-west"]["last"]["id"].clone();
            (now != before).then_some(())
        },
    )
    .await;
    drop(probes);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_aggregator_is_verified_by_its_probes() {
    let setup = setup().await;
    let spool = tempfile::tempdir().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "lookout test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let issuer =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_pem = issuer.pem();
    let dir = setup.dirs.root.path();
    std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    let cert_path = dir.join("cert.pem").display().to_string();
    let key_path = dir.join("key.pem").display().to_string();
    let aggregator = start_aggregator(&setup, &["--tls-cert", &cert_path, "--tls-key", &key_path]);
    assert!(
        aggregator.base.starts_with("https://"),
        "{}",
        aggregator.base
    );
    let ca_path = dir.join("ca.pem").display().to_string();
    let trusted = start_probe(&setup, "eu-west", spool.path(), &["--ca-file", &ca_path]);
    let untrusted = {
        // Same region name in its own spool, without the CA.
        let mut args: Vec<OsString> = vec![
            "probe".into(),
            "--region".into(),
            "us-east".into(),
            "--aggregator".into(),
            format!("https://127.0.0.1:{}/", setup.port).into(),
            "--spool".into(),
            spool.path().join("untrusted").into(),
        ];
        args.push("--concurrency".into());
        args.push("4".into());
        let token = token("us-east");
        Server::spawn(
            &args,
            &[("LOOKOUT_PROBE_TOKEN", token.as_str())],
            "probe started",
        )
    };
    lookout::install_crypto_provider();
    let https = reqwest::Client::builder()
        .tls_certs_merge([reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    wait_for("results over HTTPS", Duration::from_secs(30), || async {
        let (_, body) = get_json(&https, &format!("{}/api/v1/checks", aggregator.base)).await;
        let regions = &body["checks"][0]["regions"];
        regions.get("eu-west").map(|_| ())
    })
    .await;
    wait_for(
        "the untrusted probe to say why",
        Duration::from_secs(20),
        || async {
            untrusted
                .log_text()
                .contains("cannot reach the aggregator")
                .then_some(())
        },
    )
    .await;
    let (_, body) = get_json(&https, &format!("{}/api/v1/checks", aggregator.base)).await;
    assert!(
        body["checks"][0]["regions"].get("us-east").is_none(),
        "{body}"
    );
    drop(trusted);
}

/// A check name (`{prefix}-N`) that first runs within `within` of its
/// probe's start in every one of `regions` (the scheduler's own offset), so
/// a test can pick a name that runs at once and then not for minutes.
/// Regions have phases of their own, so such names are rare (about one in
/// (every / within)^regions): searched, bounded.
fn name_run_soon_in(prefix: &str, regions: &[&str], every: Duration, within: Duration) -> String {
    (0..50_000_000u64)
        .map(|n| format!("{prefix}-{n}"))
        .find(|name| {
            regions
                .iter()
                .all(|region| lookout::scheduler::stable_offset(region, name, every) < within)
        })
        .expect("some name runs soon in every region")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_seen_by_one_region_is_confirmed_by_the_others_at_once() {
    // Every 5 minutes: after their first run, no region runs `recovering`
    // again on its own within this test, so every later result is a
    // run-now the aggregator asked for.
    let every = Duration::from_secs(300);
    let name = &name_run_soon_in(
        "recovering",
        &["eu-west", "us-east", "ap-south"],
        every,
        Duration::from_secs(4),
    );
    let setup = setup().await;
    std::fs::write(
        setup.dirs.checks().join("checks.yaml"),
        format!(
            "checks:\n  - name: {name}\n    http: {{ url: \"{}/health\" }}\n    every: 5m\n    timeout: 2s\n    alert: {{ failures: 2, quorum: 2 }}\n",
            setup.target_url
        ),
    )
    .unwrap();
    let spool = tempfile::tempdir().unwrap();
    let aggregator = start_aggregator(&setup, &[]);
    let base = aggregator.base.clone();
    // Down in us-east and ap-south: their first run fails, and fast
    // confirmation has each run again at once for its second failure (an
    // early run within the interval, which the recovery must not wait out).
    setup.target.fail(&["us-east", "ap-south"]);
    let us = start_probe(&setup, "us-east", spool.path(), &[]);
    let ap = start_probe(&setup, "ap-south", spool.path(), &[]);
    wait_for("the down alert", Duration::from_secs(60), || async {
        setup.hooks.events("down").into_iter().next()
    })
    .await;
    wait_for(
        "us-east and ap-south both failing",
        Duration::from_secs(60),
        || async {
            let state = check_state(&base, name).await;
            (state["regions"]["us-east"]["verdict"] == "failing"
                && state["regions"]["ap-south"]["verdict"] == "failing")
                .then_some(())
        },
    )
    .await;
    let requests = |region: &str| {
        setup
            .target
            .requests
            .lock()
            .unwrap()
            .get(region)
            .copied()
            .unwrap_or(0)
    };
    let (us_before, ap_before) = (requests("us-east"), requests("ap-south"));
    assert!(
        setup.hooks.events("up").is_empty(),
        "{:?}",
        setup.hooks.all()
    );
    // The target recovers. eu-west starts now and is the first to see it
    // (its first run); us-east and ap-south would not run again for
    // minutes on their own.
    setup.target.fail(&[]);
    let started = std::time::Instant::now();
    let eu = start_probe(&setup, "eu-west", spool.path(), &[]);
    let up = wait_for(
        "the up alert, confirmed by the regions asked to run now",
        Duration::from_secs(60),
        || async { setup.hooks.events("up").into_iter().next() },
    )
    .await;
    assert!(
        started.elapsed() < every,
        "the up alert came after the regions' own next run could have"
    );
    // Each of the two regions runs the check again, on request (with
    // `quorum: 2`, eu-west's pass and the first asked region's decide the
    // recovery; the other's run may still be on its way).
    for (region, probe, before) in [("us-east", &us, us_before), ("ap-south", &ap, ap_before)] {
        wait_for(
            &format!("{region} running now, as the aggregator asked"),
            Duration::from_secs(10),
            || async {
                (requests(region) > before
                    && probe
                        .log_text()
                        .contains("running now, as the aggregator asked"))
                .then_some(())
            },
        )
        .await;
    }
    let summary = up["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("UP"), "{up}");
    let state = check_state(&base, name).await;
    assert_eq!(state["status"], "up", "{state}");
    // Bounded: one recovery asks each failing region once (`successes`).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        requests("us-east") <= us_before + 1,
        "us-east ran again and again"
    );
    assert!(
        requests("ap-south") <= ap_before + 1,
        "ap-south ran again and again"
    );
    drop(eu);
    drop(us);
    drop(ap);
    drop(aggregator);
}

//! Fuzzing the config decoder (issue #14), proptest-driven: cargo-fuzz
//! needs a nightly toolchain, which we do not have.
//!
//! Seeds are the files in `tests/fuzz/corpus/config/` (the repository's
//! example checks, alerts and probes files, and tricky cases). Each seed is
//! first loaded as it is (the regressions), then mutated: bytes flipped,
//! inserted and deleted, splices of two seeds, random YAML fragments. Every
//! input is loaded as a checks file, as an alerts file and as a probes file.
//! The properties: nothing panics; a failed load reports every error as
//! `path:line:col: message`, on one line, with a line and column of at
//! least 1; a check that loads decodes the same on a remote probe.
//!
//! `LOOKOUT_FUZZ_CASES` sets the number of mutated inputs (default
//! `CASES_DEFAULT`, a few seconds in a debug build), `LOOKOUT_FUZZ_SECONDS`
//! the time budget. An input that fails is saved in the corpus as
//! `crash-<hash>.yaml`, so it is a regression seed from then on: commit it
//! with the fix. One that kills the process (a stack overflow cannot be
//! caught) is saved by the next run, from the copy each case leaves in the
//! target directory while it runs.

mod common;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lookout::config::{self, ConfigErrors};
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};

/// Mutated inputs per run unless `LOOKOUT_FUZZ_CASES` says otherwise.
const CASES_DEFAULT: u32 = 1500;
/// The run stops taking new cases after this long (`LOOKOUT_FUZZ_SECONDS`).
const SECONDS_DEFAULT: u64 = 40;

/// Fragments of YAML and of our config's vocabulary, inserted at random.
const FRAGMENTS: &[&str] = &[
    ": ",
    "- ",
    "\n  ",
    "\n    - ",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!binary ",
    "!!str ",
    "!tag ",
    "? ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "'",
    "\"",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "\t",
    "#",
    "~",
    "null",
    "0x1F",
    "1e400",
    "-9223372036854775809",
    "99999999999999999999999",
    ".inf",
    "\u{feff}",
    "\u{0}",
    "\r\n",
    "ü",
    "${TOKEN}",
    "${UNSET}",
    "${TOKEN:-x}",
    "$${",
    "${",
    "checks:\n",
    "channels:\n",
    "probes:\n",
    "defaults:\n  channels: [",
    "routes:\n  - match: {",
    "maintenance:\n  - ",
    "name: a",
    "name: a\n    http: { url: \"http://127.0.0.1:1/\" }\n    every: 1s\n",
    "every: 0s",
    "every: 1ms",
    "cron: \"* * * * * *\"",
    "cron: \"@reboot\"",
    "tz: Mars/Base",
    "timeout: 100000000000d",
    "url: http://[::1]:0/",
    "url: https://xn--nxa/",
    "regions: []",
    "status: 2xx",
    "status: [600]",
    "body_matches: \"(a+)+$\"",
    "body_matches: \"\\\\p{Greek}{1000}\"",
    "p95_above_baseline: 1e308x",
    "group_window: 11m",
    "token: ${TOKEN}",
    "heartbeat: { token: aaaaaaaaaaaaaaaaaa, period: 1s }",
    "browser: { steps: [ { goto: http://127.0.0.1:1/ } ] }",
    "webhook: { url: http://127.0.0.1:1/, format: pagerduty }",
    "email: { smtp: smtp://x, from: a, to: [] }",
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus/config")
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .expect("the corpus directory")
        .map(|e| e.expect("a corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("a readable seed"))
        })
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "the corpus holds its seeds");
    seeds
}

fn env(name: &str) -> Option<String> {
    match name {
        "TOKEN" => Some("fuzz-token-0123456789".into()),
        "HB_TOKEN" => Some("abcdefghijklmnopqrstuvwxyz".into()),
        "PROBE_TOKEN_EU_WEST" | "PROBE_TOKEN_US_EAST" | "PROBE_TOKEN_AP_SOUTH" => {
            Some(format!("{}-0123456789abcdef", name.to_lowercase()))
        }
        _ => None,
    }
}

/// Every error of a failed load: in the file it names, positioned, one line.
fn check_errors(errors: &ConfigErrors, file: &Path) -> Result<(), String> {
    if errors.0.is_empty() {
        return Err("a failed load with no error".into());
    }
    for error in &errors.0 {
        let shown = error.to_string();
        if error.file != file {
            return Err(format!("error names another file: {shown}"));
        }
        if error.pos.line < 1 || error.pos.col < 1 {
            return Err(format!("error without a position: {shown}"));
        }
        let prefix = format!("{}:{}:{}: ", file.display(), error.pos.line, error.pos.col);
        if !shown.starts_with(&prefix) || error.message.trim().is_empty() {
            return Err(format!("error not as path:line:col: message: {shown}"));
        }
        if shown.contains('\n') || shown.contains('\r') {
            return Err(format!("error on more than one line: {shown:?}"));
        }
    }
    Ok(())
}

/// Inputs that loaded as a valid checks file (the harness reaches the
/// decoder's success path too, not only its errors).
static LOADED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Loads `text` as each kind of config file and checks the properties.
fn load_everywhere(text: &str) -> Result<(), String> {
    let checks_file = PathBuf::from("checks/fuzz.yaml");
    let alerts_file = PathBuf::from("alerts/fuzz.yaml");
    let probes_file = PathBuf::from("probes.yaml");
    let alerts_dir = Path::new("alerts");
    let as_checks =
        config::load_from_texts(&[(checks_file.clone(), text.into())], &[], alerts_dir, &env);
    match &as_checks {
        Ok(config) => {
            LOADED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // What loads here decodes the same on a remote probe.
            let wire: Vec<_> = config
                .checks
                .iter()
                .filter_map(|c| config::remote::WireCheck::from_check(c))
                .collect();
            let names: Vec<String> = config.checks.iter().map(|c| c.name.clone()).collect();
            match config::remote::decode_wire_checks(wire) {
                Ok((decoded, _)) => {
                    let back: Vec<String> = decoded.iter().map(|c| c.name.clone()).collect();
                    if back != names {
                        return Err(format!("the probe decodes {back:?}, not {names:?}"));
                    }
                }
                Err(errors) => {
                    let shown: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                    return Err(format!(
                        "loads here, fails on the probe: {}",
                        shown.join("; ")
                    ));
                }
            }
        }
        Err(errors) => check_errors(errors, &checks_file)?,
    }
    if let Err(errors) =
        config::load_from_texts(&[], &[(alerts_file.clone(), text.into())], alerts_dir, &env)
    {
        check_errors(&errors, &alerts_file)?;
    }
    if let Err(errors) = config::probes::load_text(&probes_file, text, &env) {
        check_errors(&errors, &probes_file)?;
    }
    Ok(())
}

/// Runs the properties on one input; a panic or a broken property saves
/// the input as a regression seed.
fn fuzz_one(bytes: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| load_everywhere(&text))) {
        Ok(outcome) => outcome,
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {why}"))
        }
    };
    if let Err(why) = &outcome {
        let path = save_crash(text.as_bytes());
        return Err(format!("{why}\n(input saved as {})", path.display()));
    }
    outcome
}

/// Saves `input` in the corpus as `crash-<hash>.yaml`; returns its path.
fn save_crash(input: &[u8]) -> PathBuf {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(input);
    let path = corpus_dir().join(format!("crash-{:016x}.yaml", hasher.finish()));
    let _ = std::fs::write(&path, input);
    path
}

/// The input being tried, written before each case and removed after the
/// run: a stack overflow or an abort cannot be caught, so the next run finds
/// the input here and saves it in the corpus.
fn in_progress() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-config-in-progress.yaml")
}

#[test]
fn every_seed_loads_without_panic_and_with_positioned_errors() {
    for (name, bytes) in corpus() {
        if let Err(why) = fuzz_one(&bytes) {
            panic!("seed {name}: {why}");
        }
    }
}

fn from_env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_seeds_load_without_panic_and_with_positioned_errors() {
    if let Ok(input) = std::fs::read(in_progress()) {
        let path = save_crash(&input);
        let _ = std::fs::remove_file(in_progress());
        panic!(
            "the last run died on an input (a stack overflow or an abort); it is saved as {}",
            path.display()
        );
    }
    let seeds = corpus();
    let cases = from_env("LOOKOUT_FUZZ_CASES", CASES_DEFAULT);
    let budget = Duration::from_secs(from_env("LOOKOUT_FUZZ_SECONDS", SECONDS_DEFAULT));
    let started = Instant::now();
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        // The saved input is the finding; shrinking would save dozens more.
        max_shrink_iters: 0,
        failure_persistence: None,
        rng_seed: common::fuzz::rng_seed(),
        ..ProptestConfig::default()
    });
    let material: Vec<Vec<u8>> = seeds.iter().map(|(_, bytes)| bytes.clone()).collect();
    let strategy = (0..seeds.len(), common::fuzz::mutations_with(FRAGMENTS));
    let ran = std::sync::atomic::AtomicU32::new(0);
    let result = runner.run(&strategy, |(seed, mutations)| {
        if started.elapsed() > budget {
            return Ok(());
        }
        ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let input = common::fuzz::apply_with(&seeds[seed].1, &material, &mutations, FRAGMENTS);
        let _ = std::fs::write(in_progress(), &input);
        fuzz_one(&input)
            .map_err(|why| TestCaseError::fail(format!("from seed {}: {why}", seeds[seed].0)))
    });
    let _ = std::fs::remove_file(in_progress());
    if let Err(failure) = result {
        panic!("{failure}");
    }
    eprintln!(
        "{} mutated inputs in {:.1}s, {} loaded as valid checks files",
        ran.into_inner(),
        started.elapsed().as_secs_f64(),
        LOADED.load(std::sync::atomic::Ordering::Relaxed)
    );
}

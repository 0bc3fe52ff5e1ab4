//! Fuzzing the result-batch decoder and ingest: the corpus in
//! `tests/fuzz/corpus/batches/`, mutated (tests/common/fuzz.rs), decoded as
//! `POST /api/v1/results` does, admitted onto the aggregator's clock and
//! ingested into a real SQLite aggregator as region eu-west. Whatever the
//! bytes, nothing panics, and every result of an admitted batch is
//! accounted for: stored, a duplicate, or refused with a reason.

mod common;

use std::sync::{Arc, OnceLock};

use lookout::aggregator::Aggregator;
use lookout::transport::ResultBatch;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestRunner};
use serde_json::{Value, json};

struct Harness {
    runtime: tokio::runtime::Runtime,
    aggregator: Aggregator,
    seeds: Vec<Vec<u8>>,
    _dirs: common::ConfigDirs,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let dirs = common::ConfigDirs::new(
            "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1m\n    regions: [eu-west]\n  - name: flow\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1m\n  - name: us-only\n    http: { url: \"http://127.0.0.1:9/\" }\n    every: 1m\n    regions: [us-east]\n  - name: nightly\n    heartbeat: { token: \"nightly-token-0123456789\", period: 1d }\n",
        );
        let config = Arc::new(dirs.load());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let storage = lookout::storage::Storage::open(&dirs.data()).unwrap();
        let aggregator = runtime
            .block_on(Aggregator::new(config, storage))
            .unwrap();
        Harness {
            runtime,
            aggregator,
            seeds: common::fuzz::seeds("batches"),
            _dirs: dirs,
        }
    })
}

/// How far a body got.
#[derive(Debug, PartialEq)]
enum Reached {
    NotABatch,
    Refused,
    OtherRegion,
    Ingested,
}

/// What `POST /api/v1/results` does with a body from eu-west, short of HTTP.
fn post(harness: &Harness, body: &[u8]) -> Result<Reached, TestCaseError> {
    let Ok(batch) = serde_json::from_slice::<ResultBatch>(body) else {
        return Ok(Reached::NotABatch); // a 400: not a result batch
    };
    let Ok((results, skew)) = batch.on_clock_of(lookout::clock::now()) else {
        return Ok(Reached::Refused); // a 400 naming the field
    };
    if results.iter().any(|r| r.region != "eu-west") {
        return Ok(Reached::OtherRegion); // a 403
    }
    let posted = results.len();
    let report = harness
        .runtime
        .block_on(
            harness
                .aggregator
                .ingest_from_probe("eu-west", results, skew),
        )
        .map_err(|e| TestCaseError::fail(format!("ingest failed: {e}")))?;
    prop_assert_eq!(
        report.accepted + report.duplicates + report.refused.len(),
        posted
    );
    for refused in &report.refused {
        prop_assert!(!refused.reason.is_empty());
        prop_assert!(refused.check != "api" && refused.check != "flow");
    }
    // The aggregator still answers about its checks.
    let states = harness.runtime.block_on(harness.aggregator.views());
    prop_assert_eq!(states.len(), 4);
    Ok(Reached::Ingested)
}

#[test]
fn every_seed_decodes_or_is_refused_without_panicking() {
    let harness = harness();
    let reached: Vec<Reached> = harness
        .seeds
        .iter()
        .map(|seed| post(harness, seed).unwrap())
        .collect();
    // The corpus covers both sides: batches that are ingested and ones
    // refused for their values.
    assert!(reached.contains(&Reached::Ingested), "{reached:?}");
    assert!(reached.contains(&Reached::Refused), "{reached:?}");
}

/// Values that break decoders and arithmetic, put in place of a value:
/// mostly of the same JSON type (so decoding goes on to the checks after
/// it), sometimes of any.
fn hostile_value(like: &Value, pick: usize, any_type: bool) -> Value {
    let numbers = [
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-1e308),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(86_400_001),
        json!(0.000001),
    ];
    let strings = [
        json!(""),
        json!("x".repeat(100_000)),
        json!("9999-12-31T23:59:59Z"),
        json!("0001-01-01T00:00:00Z"),
        json!("2099-01-01T00:00:00Z"),
        json!("1970-01-01T00:00:00Z"),
        json!("+262142-01-01T00:00:00Z"),
        json!("ok"),
        json!("fail"),
        json!("api"),
        json!("us-only"),
        json!("nightly"),
        json!("ghost"),
        json!("eu-west"),
        json!("\u{0}é\u{202e}"),
        json!("01938a2e-7b3c-7d2e-9f00-000000000001"),
    ];
    let others = [
        json!(null),
        json!([]),
        json!({}),
        json!(vec![json!("n"); 1000]),
        json!(true),
    ];
    match like {
        Value::Number(_) if !any_type => numbers[pick % numbers.len()].clone(),
        Value::String(_) if !any_type => strings[pick % strings.len()].clone(),
        _ => {
            let all: Vec<&Value> = numbers.iter().chain(&strings).chain(&others).collect();
            all[pick % all.len()].clone()
        }
    }
}

/// Every path to a value in `value` (object keys and array indices).
fn paths(value: &Value, prefix: Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let mut path = prefix.clone();
                path.push(PathStep::Key(key.clone()));
                paths(child, path, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let mut path = prefix.clone();
                path.push(PathStep::Index(i));
                paths(child, path, out);
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_path<'v>(value: &'v mut Value, path: &[PathStep]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |v, step| match step {
        PathStep::Key(k) => v.get_mut(k.as_str()),
        PathStep::Index(i) => v.get_mut(*i),
    })
}

/// A structural mutation of a JSON seed: a value replaced, a key removed,
/// or a result repeated (duplicate ids, big batches).
fn mutate_json(seed: &[u8], edits: &[(usize, usize, u8)]) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<Value>(seed) else {
        return seed.to_vec();
    };
    for &(where_, what, how) in edits {
        let mut all = Vec::new();
        paths(&value, Vec::new(), &mut all);
        let path = all[where_ % all.len()].clone();
        match how % 6 {
            0..=3 => {
                if let Some(target) = at_path(&mut value, &path) {
                    *target = hostile_value(target, what, how % 6 == 3);
                }
            }
            4 => {
                if let Some((PathStep::Key(key), parent)) = path.split_last()
                    && let Some(Value::Object(map)) = at_path(&mut value, parent)
                {
                    map.remove(key);
                }
            }
            _ => {
                if let Some(Value::Array(results)) = value.get_mut("results")
                    && let Some(first) = results.first().cloned()
                {
                    results.extend(std::iter::repeat_n(first, what % 600));
                }
            }
        }
    }
    value.to_string().into_bytes()
}

#[test]
fn mutated_batches_never_panic_and_lose_no_result() {
    let harness = harness();
    let strategy = (
        any::<usize>(),
        proptest::bool::weighted(0.3),
        common::fuzz::mutations(),
        proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..4),
    );
    let mut runner = TestRunner::new(ProptestConfig {
        cases: common::fuzz::cases(),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz/regressions/batches.txt",
        ))),
        rng_seed: common::fuzz::rng_seed(),
        ..ProptestConfig::default()
    });
    let reached = std::sync::Mutex::new(Vec::new());
    let outcome = runner.run(&strategy, |(seed, bytes, mutations, edits)| {
        let seed = &harness.seeds[seed % harness.seeds.len()];
        let body = if bytes {
            common::fuzz::apply(seed, &harness.seeds, &mutations)
        } else {
            mutate_json(seed, &edits)
        };
        let got = post(harness, &body)?;
        reached.lock().unwrap().push(got);
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    // The fuzzer reached every stage, not only the JSON decoder.
    let reached = reached.into_inner().unwrap();
    let ingested = reached.iter().filter(|r| **r == Reached::Ingested).count();
    let refused = reached.iter().filter(|r| **r == Reached::Refused).count();
    eprintln!(
        "{} cases: {ingested} ingested, {refused} refused for a value, the rest not a batch or another region's",
        reached.len()
    );
    assert!(
        ingested * 20 >= reached.len() && refused > 0,
        "{ingested} ingested and {refused} refused of {} cases",
        reached.len()
    );
}

//! `lookout schema`: the schemas agree with the decoder (drift, both ways),
//! the committed schema files are what `lookout schema` prints, and every
//! example file of the repository validates against its schema with a real
//! JSON Schema validator (Python's `jsonschema`, draft 2020-12).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lookout::schema::{SchemaKind, schema, schema_text};
use serde_json::{Map, Value, json};

const UNKNOWN: &str = "zzzdrift";

/// Every error the decoder reports for `doc` (JSON is YAML).
fn decoder_errors(kind: SchemaKind, doc: &Value) -> Vec<String> {
    let text = serde_json::to_string(doc).unwrap();
    let env = |_: &str| Some("a-value-from-the-environment-1234".to_string());
    match kind {
        SchemaKind::Checks => lookout::config::load_from_texts(
            &[(PathBuf::from("checks/t.yaml"), text)],
            &[],
            Path::new("alerts"),
            &env,
        )
        .err()
        .map(|e| e.0.iter().map(|e| e.to_string()).collect::<Vec<_>>()),
        SchemaKind::Alerts => lookout::config::load_from_texts(
            &[],
            &[(PathBuf::from("alerts/t.yaml"), text)],
            Path::new("alerts"),
            &env,
        )
        .err()
        .map(|e| e.0.iter().map(|e| e.to_string()).collect()),
        SchemaKind::Probes => {
            lookout::config::probes::load_text(Path::new("probes.yaml"), &text, &env)
                .err()
                .map(|e| e.0.iter().map(|e| e.to_string()).collect())
        }
        SchemaKind::Page => unreachable!("the page schema is probed inside checks files"),
    }
    .unwrap_or_default()
}

/// The keys the decoder lists for an unknown key put into `doc`, or why not.
fn decoder_keys(kind: SchemaKind, doc: &Value) -> Result<BTreeSet<String>, String> {
    let errors = decoder_errors(kind, doc);
    let needle = format!("unknown key `{UNKNOWN}`");
    let Some(line) = errors.iter().find(|e| e.contains(&needle)) else {
        return Err(format!(
            "the decoder did not flag the unknown key; errors: {errors:?}"
        ));
    };
    let Some((_, list)) = line.split_once("expected one of: ") else {
        return Err(format!("no key list in {line}"));
    };
    Ok(list.split(", ").map(str::to_string).collect())
}

/// The values the decoder names as expected for `zzzdrift` in `doc`: the
/// words after "expected" (`one of: a, b`, `a, b or c`), backticks off.
fn decoder_values(kind: SchemaKind, doc: &Value) -> Result<BTreeSet<String>, String> {
    let errors = decoder_errors(kind, doc);
    let Some(line) = errors
        .iter()
        .find(|e| e.to_ascii_lowercase().contains(UNKNOWN) || e.contains(" must be "))
    else {
        return Err(format!(
            "the decoder did not refuse the value `{UNKNOWN}`; errors: {errors:?}"
        ));
    };
    let list = [
        "expected one of: ",
        "expected ",
        "must be one of ",
        "must be ",
    ]
    .iter()
    .find_map(|lead| line.rsplit_once(lead).map(|(_, rest)| rest));
    let Some(list) = list else {
        return Err(format!("no list of values in {line}"));
    };
    let list = list.split(", found").next().unwrap_or(list);
    let list = list.split(" (").next().unwrap_or(list);
    Ok(list
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|v| {
            v.trim()
                .trim_matches(['`', '"'])
                .trim_end_matches(['.', ';'])
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .collect())
}

/// A property's enum (strings; case folded, the DNS types come in both),
/// and whether it is a list of them.
fn enum_of(schema: &Value) -> Option<(BTreeSet<String>, bool)> {
    let strings = |v: &Value| -> Option<BTreeSet<String>> {
        let values = v.get("enum")?.as_array()?;
        Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
        )
    };
    if let Some(set) = strings(schema) {
        return Some((set, false));
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && branches.iter().all(|b| b.get("properties").is_none())
        && let Some(set) = branches.iter().find_map(strings)
    {
        return Some((set, false));
    }
    schema.get("items").and_then(strings).map(|set| (set, true))
}

type Build<'a> = &'a dyn Fn(Value) -> Value;

/// Walks every mapping the schema describes; `build` wraps an instance of
/// the current node into a whole document.
fn walk(
    kind: SchemaKind,
    path: &str,
    node: &Value,
    base: Option<&Value>,
    build: Build,
    out: &mut Vec<String>,
    probed: &mut usize,
) {
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = node.get(key).and_then(Value::as_array) {
            for b in branches {
                walk(kind, path, b, base, build, out, probed);
            }
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        let mut instance = match base {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if node.get("maxProperties") == Some(&json!(1)) {
            instance.clear();
        }
        let mut probe = instance.clone();
        probe.insert(UNKNOWN.into(), json!(1));
        *probed += 1;
        let schema_keys: BTreeSet<String> = props.keys().cloned().collect();
        match decoder_keys(kind, &build(Value::Object(probe))) {
            Ok(keys) if keys == schema_keys => {}
            Ok(keys) => out.push(format!(
                "{path}: decoder accepts {:?} the schema lacks; the schema has {:?} the decoder does not accept",
                keys.difference(&schema_keys).collect::<Vec<_>>(),
                schema_keys.difference(&keys).collect::<Vec<_>>()
            )),
            Err(e) => out.push(format!("{path}: {e}")),
        }
        let exclusive: Vec<String> = node
            .get("oneOf")
            .and_then(Value::as_array)
            .map(|o| {
                o.iter()
                    .filter_map(|b| b["required"][0].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        for (key, child) in props {
            let mut parent = instance.clone();
            if exclusive.contains(key) {
                parent.retain(|k, _| !exclusive.contains(k));
            }
            if node.get("maxProperties") == Some(&json!(1)) {
                parent.clear();
            }
            if let Some((values, list_mode)) = enum_of(child) {
                let mut p = parent.clone();
                let bad = if list_mode {
                    json!([UNKNOWN])
                } else {
                    json!(UNKNOWN)
                };
                p.insert(key.clone(), bad);
                match decoder_values(kind, &build(Value::Object(p))) {
                    Ok(listed) => {
                        let listed: BTreeSet<String> =
                            listed.iter().map(|v| v.to_ascii_lowercase()).collect();
                        if listed != values {
                            out.push(format!(
                                "{path}.{key}: the decoder accepts {listed:?}, the schema's enum is {values:?}"
                            ));
                        }
                    }
                    Err(e) => out.push(format!("{path}.{key}: {e}")),
                }
                *probed += 1;
            }
            let key2 = key.clone();
            let wrap = move |inst: Value| {
                let mut p = parent.clone();
                p.insert(key2.clone(), inst);
                build(Value::Object(p))
            };
            let child_base = child.get("examples").and_then(|e| e.get(0));
            walk(
                kind,
                &format!("{path}.{key}"),
                child,
                child_base,
                &wrap,
                out,
                probed,
            );
        }
    }
    if let Some(items) = node.get("items").filter(|v| v.is_object()) {
        let item_base = base.and_then(|b| b.get(0)).cloned();
        let wrap = |inst: Value| build(json!([inst]));
        walk(
            kind,
            &format!("{path}[]"),
            items,
            item_base.as_ref(),
            &wrap,
            out,
            probed,
        );
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        let value_base = base
            .and_then(Value::as_object)
            .and_then(|m| m.values().next())
            .cloned();
        let wrap = |inst: Value| build(json!({"drift": inst}));
        walk(
            kind,
            &format!("{path}.*"),
            values,
            value_base.as_ref(),
            &wrap,
            out,
            probed,
        );
    }
}

#[test]
fn schema_and_decoder_know_the_same_keys() {
    let mut problems = Vec::new();
    for kind in [SchemaKind::Checks, SchemaKind::Alerts, SchemaKind::Probes] {
        let mut probed = 0;
        walk(
            kind,
            kind.name(),
            &schema(kind),
            None,
            &|v| v,
            &mut problems,
            &mut probed,
        );
        assert!(
            probed >= 2,
            "{}: only {probed} mappings probed",
            kind.name()
        );
    }
    assert!(
        problems.is_empty(),
        "schema drift:\n{}",
        problems.join("\n")
    );
}

#[test]
fn committed_schema_files_are_what_lookout_schema_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for kind in SchemaKind::ALL {
        let path = root.join(format!("schema/{}.schema.json", kind.name()));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            committed.trim_end(),
            schema_text(kind),
            "{} is stale: run `lookout schema {} > {}`",
            path.display(),
            kind.name(),
            path.display()
        );
        let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(["schema", kind.name()])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim_end(),
            schema_text(kind)
        );
    }
}

/// Validates `doc` (YAML text) against `kind`'s schema with Python's
/// jsonschema; Err with the validator's messages.
pub fn validate_with_python(kind: SchemaKind, yaml: &str, dir: &Path) -> Result<(), String> {
    let doc: Value = serde_saphyr::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let schema_path = dir.join(format!("{}.schema.json", kind.name()));
    let doc_path = dir.join("doc.json");
    std::fs::write(&schema_path, schema_text(kind)).unwrap();
    std::fs::write(&doc_path, serde_json::to_string(&doc).unwrap()).unwrap();
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
errors = sorted(Draft202012Validator(schema).iter_errors(json.load(open(sys.argv[2]))), key=lambda e: list(e.path))
for e in errors:
    print("/".join(map(str, e.path)) + ": " + e.message[:300])
sys.exit(1 if errors else 0)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&schema_path)
        .arg(&doc_path)
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_file_validates_against_its_schema_and_names_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let mut examples: Vec<(SchemaKind, PathBuf)> = Vec::new();
    examples.extend(
        yaml_files(&root.join("checks"))
            .into_iter()
            .map(|p| (SchemaKind::Checks, p)),
    );
    examples.extend(
        yaml_files(&root.join("alerts"))
            .into_iter()
            .map(|p| (SchemaKind::Alerts, p)),
    );
    examples.push((SchemaKind::Probes, root.join("deploy/probes.example.yaml")));
    assert!(examples.len() >= 3);
    // The Kubernetes example carries checks, alerts and probes files inside
    // ConfigMaps: each embedded file validates too.
    for (file, kind) in [
        ("configmap-checks.yaml", SchemaKind::Checks),
        ("configmap-alerts.yaml", SchemaKind::Alerts),
        ("configmap-probes.yaml", SchemaKind::Probes),
    ] {
        let path = root.join("deploy/kubernetes").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let map: Value = serde_saphyr::from_str(&text).unwrap();
        let data = map["data"].as_object().expect("a ConfigMap with data");
        assert!(!data.is_empty());
        for (key, embedded) in data {
            let embedded = embedded.as_str().unwrap();
            if let Err(e) = validate_with_python(kind, embedded, tmp.path()) {
                panic!("{} `{key}` does not validate:\n{e}", path.display());
            }
        }
    }
    for (kind, path) in examples {
        let text = std::fs::read_to_string(&path).unwrap();
        let line = format!(
            "# yaml-language-server: $schema=../schema/{}.schema.json",
            kind.name()
        );
        assert_eq!(
            text.lines().next(),
            Some(line.as_str()),
            "{} lacks the schema line",
            path.display()
        );
        if let Err(e) = validate_with_python(kind, &text, tmp.path()) {
            panic!(
                "{} does not validate against the {} schema:\n{e}",
                path.display(),
                kind.name()
            );
        }
    }
}

#[test]
fn the_validator_rejects_what_the_decoder_rejects() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = [
        "checks:\n  - name: a\n    http: { url: https://x.test/ }\n    every: 30\n",
        "checks:\n  - name: a\n    http: { url: https://x.test/ }\n    evry: 30s\n",
        "checks:\n  - name: a\n    http: { url: https://x.test/ }\n    tcp: { address: x:1 }\n",
        "checks:\n  - name: a\n    http: { url: https://x.test/, method: FETCH }\n",
        "checks:\n  - name: a\n    http: { url: https://x.test/ }\n    cron: every day\n",
    ];
    for doc in bad {
        assert!(
            validate_with_python(SchemaKind::Checks, doc, tmp.path()).is_err(),
            "accepted:\n{doc}"
        );
    }
    let alerts = "channels:\n  a:\n    webhook: { url: https://x.test/, format: telegram }\n";
    assert!(validate_with_python(SchemaKind::Alerts, alerts, tmp.path()).is_err());
    let good = "checks:\n  - name: a\n    http: { url: \"https://x.test/${PATH_PART}\" }\n    every: ${EVERY:-30s}\n    expect: { status: [200, 3xx], max_latency: 1h 30m }\n";
    validate_with_python(SchemaKind::Checks, good, tmp.path()).unwrap();
}

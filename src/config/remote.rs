//! Checks as the aggregator sends them to remote probes.
//!
//! A probe does not read `checks/`: the aggregator sends each check's own
//! YAML tree (positions kept, so a probe's error still names the file and
//! line) with the values of the `${VAR}`s it used, and the probe decodes it
//! with the very decoder `lookout validate` uses. Interpolation therefore
//! happens the same way on both sides, the interpolated values are secrets on
//! the probe too (masked in its results and logs), and a probe never needs
//! the aggregator's environment.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::check::{Refs, decode_check};
use super::decode::Ctx;
use super::yaml::{Node, Pos, Value};
use super::{Check, ConfigError, ConfigErrors, Secrets};

/// Where a check came from: its file, its tree, and the environment
/// variables its `${...}` used, with their values.
#[derive(Clone, Debug)]
pub struct CheckSource {
    pub file: PathBuf,
    /// Kept only where a remote probe may be sent it (`Config::forget_trees`):
    /// at 10,000 checks the trees are about 5 MB that nothing else reads.
    pub node: Option<Node>,
    pub env: BTreeMap<String, String>,
    /// Changes when anything that shapes the check changes, and only then
    /// (positions are left out: moving a check in its file changes nothing).
    pub fingerprint: u64,
}

impl CheckSource {
    pub fn new(file: PathBuf, node: Node, env: BTreeMap<String, String>) -> CheckSource {
        let mut hasher = fnv::FnvHasher::default();
        hash_node(&node, &mut hasher);
        for (name, value) in &env {
            hasher.write(name.as_bytes());
            hasher.write_u8(0);
            hasher.write(value.as_bytes());
            hasher.write_u8(0);
        }
        CheckSource {
            file,
            node: Some(node),
            env,
            fingerprint: hasher.finish(),
        }
    }

    /// The same source without its tree (and the values it was sent
    /// with): the file and the fingerprint, which is all a scheduler needs.
    pub fn without_tree(&self) -> CheckSource {
        CheckSource {
            file: self.file.clone(),
            node: None,
            env: BTreeMap::new(),
            fingerprint: self.fingerprint,
        }
    }
}

fn hash_node(node: &Node, hasher: &mut fnv::FnvHasher) {
    match &node.value {
        Value::Null => hasher.write_u8(0),
        Value::Bool(b) => hasher.write(&[1, u8::from(*b)]),
        Value::Number(n) => {
            hasher.write_u8(2);
            hasher.write(n.as_bytes());
            hasher.write_u8(0);
        }
        Value::String(s) => {
            hasher.write_u8(3);
            hasher.write(s.as_bytes());
            hasher.write_u8(0);
        }
        Value::Seq(items) => {
            hasher.write_u8(4);
            hasher.write_usize(items.len());
            items.iter().for_each(|n| hash_node(n, hasher));
        }
        Value::Map(entries) => {
            hasher.write_u8(5);
            hasher.write_usize(entries.len());
            for (k, v) in entries {
                hash_node(k, hasher);
                hash_node(v, hasher);
            }
        }
    }
}

/// One check on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireCheck {
    pub name: String,
    pub file: PathBuf,
    pub spec: WireNode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// A YAML node on the wire: `[line, col, value]` keeps it compact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireNode(pub u32, pub u32, pub WireValue);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireValue {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Seq(Vec<WireNode>),
    Map(Vec<(WireNode, WireNode)>),
}

impl From<&Node> for WireNode {
    fn from(node: &Node) -> WireNode {
        let value = match &node.value {
            Value::Null => WireValue::Null,
            Value::Bool(b) => WireValue::Bool(*b),
            Value::Number(n) => WireValue::Number(n.clone()),
            Value::String(s) => WireValue::String(s.clone()),
            Value::Seq(items) => WireValue::Seq(items.iter().map(WireNode::from).collect()),
            Value::Map(entries) => WireValue::Map(
                entries
                    .iter()
                    .map(|(k, v)| (WireNode::from(k), WireNode::from(v)))
                    .collect(),
            ),
        };
        WireNode(node.pos.line, node.pos.col, value)
    }
}

impl From<WireNode> for Node {
    fn from(WireNode(line, col, value): WireNode) -> Node {
        let value = match value {
            WireValue::Null => Value::Null,
            WireValue::Bool(b) => Value::Bool(b),
            WireValue::Number(n) => Value::Number(n),
            WireValue::String(s) => Value::String(s),
            WireValue::Seq(items) => Value::Seq(items.into_iter().map(Node::from).collect()),
            WireValue::Map(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| (Node::from(k), Node::from(v)))
                    .collect(),
            ),
        };
        Node {
            pos: Pos { line, col },
            value,
        }
    }
}

impl WireCheck {
    /// The wire form of a loaded check; `None` for a check not loaded from
    /// files, or whose tree was not kept (no remote probe to send it to).
    pub fn from_check(check: &Check) -> Option<WireCheck> {
        let source = check.source.as_ref()?;
        Some(WireCheck {
            name: check.name.clone(),
            file: source.file.clone(),
            spec: WireNode::from(source.node.as_ref()?),
            env: source.env.clone(),
        })
    }
}

/// Decodes checks received from the aggregator, with the same rules as
/// `checks/` files. Every mistake is reported, each with the file and
/// position it has on the aggregator.
pub fn decode_wire_checks(
    checks: Vec<WireCheck>,
) -> Result<(Vec<Arc<Check>>, Arc<Secrets>), ConfigErrors> {
    let mut errors = Vec::new();
    let mut secrets = Secrets::default();
    let mut decoded = Vec::with_capacity(checks.len());
    for wire in checks {
        let node = Node::from(wire.spec);
        let env = |name: &str| wire.env.get(name).cloned();
        let mut ctx = Ctx {
            file: &wire.file,
            errors: &mut errors,
            secrets: &mut secrets,
            env: &env,
        };
        let mut refs = Refs::default();
        if let Some(mut check) = decode_check(&mut ctx, &node, &mut refs) {
            if check.name != wire.name {
                errors.push(ConfigError {
                    file: wire.file.clone(),
                    pos: node.pos,
                    message: format!("check sent as `{}` decodes as `{}`", wire.name, check.name),
                });
                continue;
            }
            // A probe sends no check on: only the fingerprint is kept.
            let source = CheckSource::new(wire.file, node, wire.env);
            check.source = Some(Arc::new(source.without_tree()));
            decoded.push(Arc::new(check));
        }
    }
    if errors.is_empty() {
        Ok((decoded, Arc::new(secrets)))
    } else {
        Err(ConfigErrors::masked(errors, &secrets))
    }
}

/// A fallback channel on the wire (`fallback: true` in alerts/): its tree
/// and the values of the `${VAR}`s it used, exactly as a check travels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireChannel {
    pub name: String,
    pub file: PathBuf,
    pub spec: WireNode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// Decodes fallback channels received from the aggregator with the rules
/// of `alerts/` files; every mistake reported with its file and position
/// on the aggregator. At most `FALLBACK_CHANNELS_MAX` are taken.
pub fn decode_wire_channels(
    channels: Vec<WireChannel>,
) -> Result<(Vec<super::Channel>, Arc<Secrets>), ConfigErrors> {
    let mut errors = Vec::new();
    let mut secrets = Secrets::default();
    let mut decoded = Vec::with_capacity(channels.len());
    for wire in channels
        .into_iter()
        .take(crate::limits::FALLBACK_CHANNELS_MAX)
    {
        let node = Node::from(wire.spec);
        let env = |name: &str| wire.env.get(name).cloned();
        let mut ctx = Ctx {
            file: &wire.file,
            errors: &mut errors,
            secrets: &mut secrets,
            env: &env,
        };
        if !super::check::is_valid_name(&wire.name) {
            ctx.error(
                node.pos,
                format!(
                    "channel name `{}` must match [a-z0-9_-]+",
                    super::browser::one_line(&wire.name, crate::limits::RESULT_ERROR_CHARS_MAX)
                ),
            );
            continue;
        }
        if let Some((kind, group_window, fallback)) =
            super::channels::decode_channel(&mut ctx, &wire.name, &node, "")
        {
            decoded.push(super::Channel {
                name: wire.name,
                kind,
                group_window,
                fallback,
                wire: None,
            });
        }
    }
    if errors.is_empty() {
        Ok((decoded, Arc::new(secrets)))
    } else {
        Err(ConfigErrors::masked(errors, &secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(checks: &str, env: &[(&str, &str)]) -> crate::config::Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::write(dir.path().join("checks/c.yaml"), checks).unwrap();
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = |name: &str| env.get(name).cloned();
        crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &lookup,
        )
        .unwrap()
    }

    const CHECKS: &str = "checks:\n  - name: api\n    http:\n      url: \"http://127.0.0.1:9/${PATH_PART}\"\n      headers: { Authorization: \"Bearer ${API_TOKEN}\" }\n    every: 5s\n    expect: { status: [200, 3xx], body_contains: \"$${literal}\" }\n  - name: other\n    tcp: { address: \"127.0.0.1:9\" }\n    every: 1m\n";

    #[test]
    fn a_check_sent_to_a_probe_decodes_to_the_same_check_with_its_secrets() {
        let config = load(
            CHECKS,
            &[
                ("API_TOKEN", "s3cret-token"),
                ("PATH_PART", "health"),
                ("UNUSED", "x"),
            ],
        );
        let wire: Vec<WireCheck> = config
            .checks
            .iter()
            .filter_map(|c| WireCheck::from_check(c))
            .collect();
        assert_eq!(wire.len(), 2);
        // Only the variables a check uses travel with it.
        assert_eq!(
            wire[0].env.keys().collect::<Vec<_>>(),
            ["API_TOKEN", "PATH_PART"]
        );
        assert!(wire[1].env.is_empty());
        let json = serde_json::to_string(&wire).unwrap();
        let back: Vec<WireCheck> = serde_json::from_str(&json).unwrap();
        let (checks, secrets) = decode_wire_checks(back).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].target(), config.checks[0].target());
        assert_eq!(
            format!("{:?}", checks[0].kind),
            format!("{:?}", config.checks[0].kind)
        );
        assert_eq!(
            format!("{:?}", checks[0].expect),
            format!("{:?}", config.checks[0].expect)
        );
        assert_eq!(checks[0].schedule.describe(), "every 5s");
        assert_eq!(secrets.redact("Bearer s3cret-token"), "Bearer ****");
        assert_eq!(
            checks[0].source.as_ref().unwrap().fingerprint,
            config.checks[0].source.as_ref().unwrap().fingerprint
        );
    }

    #[test]
    fn the_probe_feature_keys_travel_to_a_probe_unchanged() {
        let config = load(
            "checks:
  - name: api
    every: 5s
    http:
      url: \"https://localhost:9/\"
      proxy: \"http://probe:pr0xy-pass@127.0.0.1:3128\"
      ip_family: ipv6
    expect:
      http_version: \"2\"
      headers: { x-version: { matches: \"^2\", allow_missing: true } }
      body_not_matches: \"error\"
      json:
        - { path: \"$.items[?@.ok == false]\", length: 0 }
  - name: v4
    every: 5s
    tcp: { address: \"localhost:9\", ip_family: ipv4 }
",
            &[],
        );
        let wire: Vec<WireCheck> = config
            .checks
            .iter()
            .filter_map(|c| WireCheck::from_check(c))
            .collect();
        let json = serde_json::to_string(&wire).unwrap();
        let (checks, secrets) = decode_wire_checks(serde_json::from_str(&json).unwrap()).unwrap();
        for (probe, aggregator) in checks.iter().zip(&config.checks) {
            assert_eq!(
                format!("{:?}", probe.kind),
                format!("{:?}", aggregator.kind)
            );
            assert_eq!(
                format!("{:?}", probe.expect),
                format!("{:?}", aggregator.expect)
            );
        }
        // The proxy's password is a secret on the probe too.
        assert_eq!(secrets.redact("pr0xy-pass"), "****");
    }

    #[test]
    fn the_fingerprint_follows_content_and_values_not_position() {
        let config = load(CHECKS, &[("API_TOKEN", "a-token"), ("PATH_PART", "h")]);
        let moved = load(
            &CHECKS.replace("checks:\n", "checks:\n\n\n"),
            &[("API_TOKEN", "a-token"), ("PATH_PART", "h")],
        );
        let rotated = load(CHECKS, &[("API_TOKEN", "b-token"), ("PATH_PART", "h")]);
        let print = |c: &crate::config::Config| c.checks[0].source.as_ref().unwrap().fingerprint;
        assert_eq!(print(&config), print(&moved));
        assert_ne!(print(&config), print(&rotated));
    }

    #[test]
    fn a_bad_spec_is_reported_with_its_aggregator_position() {
        let config = load(CHECKS, &[("API_TOKEN", "t0ken"), ("PATH_PART", "h")]);
        let mut wire = WireCheck::from_check(&config.checks[1]).unwrap();
        // Corrupt `every` to something invalid.
        if let WireValue::Map(entries) = &mut wire.spec.2 {
            for (k, v) in entries.iter_mut() {
                if k.2 == WireValue::String("every".into()) {
                    v.2 = WireValue::String("soon".into());
                }
            }
        }
        let errors = decode_wire_checks(vec![wire]).unwrap_err();
        let text = errors.0[0].to_string();
        assert!(
            text.contains("c.yaml:10:12: `every` of check `other`"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod channel_tests {
    use super::*;

    #[test]
    fn a_fallback_channel_travels_with_the_values_it_used_and_decodes_the_same() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::create_dir(dir.path().join("alerts")).unwrap();
        std::fs::write(
            dir.path().join("alerts/a.yaml"),
            "channels:\n  ops:\n    fallback: true\n    webhook: { url: \"http://127.0.0.1:9/${HOOK_PATH}\", secret: \"${HOOK_SECRET}\" }\n  other:\n    webhook: { url: \"http://127.0.0.1:9/x\" }\n",
        )
        .unwrap();
        let lookup = |name: &str| match name {
            "HOOK_PATH" => Some("hook".to_string()),
            "HOOK_SECRET" => Some("s3cret".to_string()),
            _ => Some("unused".to_string()),
        };
        let config = crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &lookup,
        )
        .unwrap();
        assert!(config.channels["ops"].fallback);
        assert!(!config.channels["other"].fallback);
        assert!(config.channels["other"].wire.is_none());
        let wire = config.channels["ops"].wire.as_deref().unwrap().clone();
        assert_eq!(
            wire.env.keys().collect::<Vec<_>>(),
            ["HOOK_PATH", "HOOK_SECRET"]
        );
        let json = serde_json::to_string(&[wire]).unwrap();
        let back: Vec<WireChannel> = serde_json::from_str(&json).unwrap();
        let (channels, secrets) = decode_wire_channels(back).unwrap();
        assert_eq!(channels.len(), 1);
        assert!(channels[0].fallback);
        match &channels[0].kind {
            crate::config::ChannelKind::Webhook(w) => {
                assert_eq!(w.url.as_str(), "http://127.0.0.1:9/hook");
                assert_eq!(w.secret.as_deref(), Some("s3cret"));
            }
            crate::config::ChannelKind::Email(_) => panic!("a webhook"),
        }
        assert_eq!(secrets.redact("s3cret"), "****");
    }

    #[test]
    fn fallback_must_be_true_or_false() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::create_dir(dir.path().join("alerts")).unwrap();
        std::fs::write(
            dir.path().join("alerts/a.yaml"),
            "channels:\n  ops:\n    fallback: sometimes\n    webhook: { url: \"http://127.0.0.1:9/x\" }\n",
        )
        .unwrap();
        let errors = crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &|_| None,
        )
        .unwrap_err();
        let text: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
        let text = text.join("\n");
        assert!(text.contains("a.yaml:3:15"), "{text}");
        assert!(text.contains("`fallback` must be true or false"), "{text}");
    }
}

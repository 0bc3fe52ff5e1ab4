//! `probes.yaml`: the regions an aggregator accepts results from, each with
//! its probe's token (DESIGN.md, "Regions and probe tokens").
//!
//! A token is bound to its region: it authenticates a probe *as* that
//! region, so a probe cannot post another region's results. Tokens are
//! compared in constant time, against every region each time, so neither the
//! answer's timing nor its content says how close a guess was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use subtle::ConstantTimeEq;

use super::check::is_valid_name;
use super::decode::{Ctx, EnvLookup};
use super::yaml::Value;
use super::{ConfigError, ConfigErrors, Secrets, parse_file};

/// Shorter tokens are refused: they can be guessed.
pub const PROBE_TOKEN_CHARS_MIN: usize = 16;

#[derive(Clone, Default)]
pub struct ProbeTokens {
    regions: BTreeMap<String, String>,
    /// Regions whose probe runs inside this process (`lookout serve`'s):
    /// the aggregator knows them, but they have no token, and no specs
    /// document is built for them (at 10,000 checks that was 4 MiB nobody
    /// could fetch, #19).
    in_process: BTreeSet<String>,
}

impl std::fmt::Debug for ProbeTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens themselves.
        f.debug_struct("ProbeTokens")
            .field("regions", &self.regions.keys().collect::<Vec<_>>())
            .field("in_process", &self.in_process)
            .finish()
    }
}

impl ProbeTokens {
    /// One region with its token (the embedded probe of `lookout serve`).
    pub fn single(region: &str, token: &str) -> ProbeTokens {
        ProbeTokens {
            regions: BTreeMap::from([(region.to_string(), token.to_string())]),
            in_process: BTreeSet::new(),
        }
    }

    /// One region whose probe runs in this process, without a token.
    pub fn in_process(region: &str) -> ProbeTokens {
        ProbeTokens {
            regions: BTreeMap::new(),
            in_process: BTreeSet::from([region.to_string()]),
        }
    }

    /// The region a bearer token belongs to.
    pub fn region_of(&self, token: &str) -> Option<&str> {
        let mut found = None;
        for (region, expected) in &self.regions {
            // Every region is compared, whatever matched first.
            if bool::from(expected.as_bytes().ct_eq(token.as_bytes())) {
                found = Some(region.as_str());
            }
        }
        found
    }

    /// `Some(())` when `region` has a token.
    pub fn region_of_name(&self, region: &str) -> Option<()> {
        (self.regions.contains_key(region) || self.in_process.contains(region)).then_some(())
    }

    /// Every region, remote and in-process.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions
            .keys()
            .chain(self.in_process.iter())
            .map(String::as_str)
    }

    /// The regions whose probes authenticate with a token.
    pub fn remote_regions(&self) -> impl Iterator<Item = &str> {
        self.regions.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty() && self.in_process.is_empty()
    }
}

/// Reads `path` with the process environment.
pub fn load(path: &Path) -> Result<ProbeTokens, ConfigErrors> {
    let env = |name: &str| std::env::var(name).ok();
    load_with_env(path, &env)
}

pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<ProbeTokens, ConfigErrors> {
    let fail = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            pos: Default::default(),
            message,
        }])
    };
    if std::fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Err(fail(
            "no such file: the aggregator needs the regions and their probe tokens \
             (see deploy/probes.example.yaml)"
                .to_string(),
        ));
    }
    // Bounded, and a link to nothing, a FIFO or a directory is named as such.
    let text = super::read_config_file(path).map_err(fail)?;
    load_text(path, &text, env)
}

/// A probes file's text, already read (`path` names it in errors).
pub fn load_text(path: &Path, text: &str, env: EnvLookup<'_>) -> Result<ProbeTokens, ConfigErrors> {
    let mut errors = Vec::new();
    let Some(root) = parse_file(path, text, &mut errors) else {
        return Err(ConfigErrors(errors));
    };
    let mut secrets = Secrets::default();
    let mut ctx = Ctx {
        file: path,
        errors: &mut errors,
        secrets: &mut secrets,
        env,
    };
    let mut regions: BTreeMap<String, String> = BTreeMap::new();
    let mut seen_tokens: BTreeMap<String, String> = BTreeMap::new();
    if let Some(top) = ctx.fields(&root, "a probes file", &["probes"]) {
        match top.get("probes").map(|n| (n, &n.value)) {
            Some((_, Value::Map(entries))) => {
                for (key, spec) in entries {
                    let Some(region) = ctx.string(key, "a region name") else {
                        continue;
                    };
                    if !is_valid_name(&region) {
                        ctx.error(
                            key.pos,
                            format!("region name `{region}` must match [a-z0-9_-]+"),
                        );
                        continue;
                    }
                    let what = format!("region `{region}`");
                    let Some(fields) = ctx.fields(spec, &what, &["token"]) else {
                        continue;
                    };
                    let Some(token_node) = fields.get("token") else {
                        ctx.error(fields.pos, format!("{what} needs a `token`"));
                        continue;
                    };
                    let Some(token) = ctx.string(token_node, &format!("`token` of {what}")) else {
                        continue;
                    };
                    if token.chars().count() < PROBE_TOKEN_CHARS_MIN {
                        ctx.error(
                            token_node.pos,
                            format!(
                                "the token of {what} is too short: at least {PROBE_TOKEN_CHARS_MIN} characters"
                            ),
                        );
                        continue;
                    }
                    ctx.secrets.add(&token);
                    if let Some(other) = seen_tokens.insert(token.clone(), region.clone()) {
                        ctx.error(
                            token_node.pos,
                            format!(
                                "{what} has the same token as region `{other}`; each needs its own"
                            ),
                        );
                        continue;
                    }
                    if regions.insert(region.clone(), token).is_some() {
                        ctx.error(key.pos, format!("duplicate region `{region}`"));
                    }
                }
            }
            Some((node, _)) => ctx.error(
                node.pos,
                "`probes` maps each region to its token: `eu-west: { token: ... }`",
            ),
            None => ctx.error(root.pos, "a probes file holds a mapping under `probes:`"),
        }
    }
    if errors.is_empty() {
        Ok(ProbeTokens {
            regions,
            in_process: BTreeSet::new(),
        })
    } else {
        Err(ConfigErrors::masked(errors, &secrets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<ProbeTokens, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probes.yaml");
        std::fs::write(&path, text).unwrap();
        let env = |name: &str| (name == "EU_TOKEN").then(|| "eu-west-secret-token-1".to_string());
        load_with_env(&path, &env).map_err(|e| {
            e.0.iter()
                .map(|e| format!("{}:{}: {}", e.pos.line, e.pos.col, e.message))
                .collect()
        })
    }

    #[test]
    fn tokens_are_bound_to_their_region() {
        let tokens = load_text(
            "probes:\n  eu-west: { token: \"${EU_TOKEN}\" }\n  us-east: { token: us-east-secret-token-2 }\n",
        )
        .unwrap();
        assert_eq!(tokens.region_of("eu-west-secret-token-1"), Some("eu-west"));
        assert_eq!(tokens.region_of("us-east-secret-token-2"), Some("us-east"));
        assert_eq!(tokens.region_of("us-east-secret-token-"), None);
        assert_eq!(tokens.region_of(""), None);
        assert_eq!(tokens.regions().collect::<Vec<_>>(), ["eu-west", "us-east"]);
        assert!(!format!("{tokens:?}").contains("secret"));
    }

    #[test]
    fn mistakes_are_reported_with_positions() {
        let errors = load_text(
            "probes:\n  eu-west: { token: short }\n  Bad_Region: { token: aaaaaaaaaaaaaaaaaaaa }\n  us-east: { tokn: aaaaaaaaaaaaaaaaaaaa }\n  ap-south: { token: \"${UNSET_TOKEN}\" }\n",
        )
        .unwrap_err();
        let all = errors.join("\n");
        assert!(
            all.contains("2:21: the token of region `eu-west` is too short"),
            "{all}"
        );
        assert!(all.contains("3:3: region name `Bad_Region`"), "{all}");
        assert!(all.contains("4:14: unknown key `tokn`"), "{all}");
        assert!(all.contains("UNSET_TOKEN"), "{all}");
        let errors = load_text(
            "probes:\n  a: { token: aaaaaaaaaaaaaaaaaaaa }\n  b: { token: aaaaaaaaaaaaaaaaaaaa }\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            ["3:15: region `b` has the same token as region `a`; each needs its own"]
        );
    }
}

//! What the aggregator keeps for its remote probes: who they are (tokens
//! bound to regions), which checks each region runs (a versioned document
//! per region that probes long-poll for), and which checks it wants a region
//! to run now (fast confirmation).
//!
//! The hub holds no check state and does no I/O; `api.rs` serves it over
//! HTTP, the aggregator fills the run-now queues, the config reload swaps
//! the documents.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::config::probes::ProbeTokens;
use crate::config::remote::{WireChannel, WireCheck};
use crate::limits;

/// The checks one region runs, serialized once per config.
#[derive(Debug)]
pub struct RegionSpecs {
    /// Opaque, changes whenever the document does (a hash of it).
    pub version: String,
    /// `{"version": ..., "region": ..., "checks": [...]}` as JSON.
    pub body: bytes::Bytes,
}

#[derive(Serialize)]
struct SpecsDocument<'a> {
    version: &'a str,
    region: &'a str,
    checks: &'a [WireCheck],
    /// The channels marked `fallback: true`, for the alert a probe sends
    /// itself when it reaches no aggregator.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    fallback_channels: &'a [WireChannel],
}

#[derive(Debug, Default)]
pub struct SpecIndex {
    by_region: BTreeMap<String, Arc<RegionSpecs>>,
}

impl SpecIndex {
    /// One document per region in `regions`: the probed checks that run
    /// everywhere, and those whose `regions` name it.
    pub fn build<'r>(config: &Config, regions: impl Iterator<Item = &'r str>) -> SpecIndex {
        let mut by_region = BTreeMap::new();
        let fallback: Vec<WireChannel> = config
            .channels
            .values()
            .filter_map(|c| c.wire.as_deref().cloned())
            .take(limits::FALLBACK_CHANNELS_MAX)
            .collect();
        let fallback_json = if fallback.is_empty() {
            Vec::new()
        } else {
            serde_json::to_vec(&fallback).unwrap_or_default()
        };
        for region in regions {
            let checks: Vec<WireCheck> = config
                .checks
                .iter()
                .filter(|c| c.is_probed())
                .filter(|c| {
                    c.regions
                        .as_ref()
                        .is_none_or(|r| r.iter().any(|n| n == region))
                })
                .filter_map(|c| WireCheck::from_check(c))
                .collect();
            let mut checks_json = serde_json::to_vec(&checks).unwrap_or_default();
            // No fallback channel: the version is what it always was.
            checks_json.extend_from_slice(&fallback_json);
            let digest = ring::digest::digest(&ring::digest::SHA256, &checks_json);
            let version = hex::encode(&digest.as_ref()[..16]);
            let body = serde_json::to_vec(&SpecsDocument {
                version: &version,
                region,
                checks: &checks,
                fallback_channels: &fallback,
            })
            .unwrap_or_default();
            by_region.insert(
                region.to_string(),
                Arc::new(RegionSpecs {
                    version,
                    body: body.into(),
                }),
            );
        }
        SpecIndex { by_region }
    }

    pub fn region(&self, region: &str) -> Option<Arc<RegionSpecs>> {
        self.by_region.get(region).cloned()
    }
}

/// Checks waiting to be run now by one region's probe.
#[derive(Default)]
struct RunNowQueue {
    checks: BTreeSet<String>,
    wake: Arc<Notify>,
}

pub struct ProbeHub {
    tokens: RwLock<ProbeTokens>,
    specs: watch::Sender<Arc<SpecIndex>>,
    run_now: Mutex<HashMap<String, RunNowQueue>>,
}

impl ProbeHub {
    pub fn new(tokens: ProbeTokens, config: &Config) -> ProbeHub {
        let index = SpecIndex::build(config, tokens.remote_regions());
        ProbeHub {
            tokens: RwLock::new(tokens),
            specs: watch::Sender::new(Arc::new(index)),
            run_now: Mutex::new(HashMap::new()),
        }
    }

    /// A new config or new tokens: rebuild every region's document and wake
    /// the probes waiting for a change.
    pub fn update(&self, config: &Config, tokens: Option<ProbeTokens>) {
        let mut current = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        if let Some(tokens) = tokens {
            *current = tokens;
        }
        let index = SpecIndex::build(config, current.remote_regions());
        self.specs.send_replace(Arc::new(index));
    }

    /// The region a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<String> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.region_of(token).map(str::to_string)
    }

    /// Every region with a token.
    pub fn regions(&self) -> Vec<String> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        tokens.regions().map(str::to_string).collect()
    }

    pub fn specs(&self, region: &str) -> Option<Arc<RegionSpecs>> {
        self.specs.borrow().region(region)
    }

    /// Notified on every spec change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<SpecIndex>> {
        self.specs.subscribe()
    }

    /// Asks `region`'s probe to run `check` now.
    pub fn request_run_now(&self, region: &str, check: &str) {
        let mut queues = self.run_now.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues.entry(region.to_string()).or_default();
        if queue.checks.len() >= limits::RUN_NOW_QUEUE_MAX {
            return; // the probe is not collecting them; its schedule still runs
        }
        if queue.checks.insert(check.to_string()) {
            queue.wake.notify_one();
        }
    }

    /// Takes what `region` should run now, waiting up to `wait` for some.
    pub async fn take_run_now(&self, region: &str, wait: std::time::Duration) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let wake = {
                let mut queues = self.run_now.lock().unwrap_or_else(|p| p.into_inner());
                let queue = queues.entry(region.to_string()).or_default();
                if !queue.checks.is_empty() {
                    return std::mem::take(&mut queue.checks).into_iter().collect();
                }
                queue.wake.clone()
            };
            // A request made between the check above and this wait stored a
            // permit in the Notify, so it is not missed.
            if tokio::time::timeout_at(deadline, wake.notified())
                .await
                .is_err()
            {
                return Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(alerts: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checks")).unwrap();
        std::fs::create_dir(dir.path().join("alerts")).unwrap();
        std::fs::write(
            dir.path().join("checks/c.yaml"),
            "checks:\n  - name: api\n    tcp: { address: \"127.0.0.1:9\" }\n    every: 1m\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("alerts/a.yaml"), alerts).unwrap();
        let lookup = |name: &str| (name == "HOOK").then(|| "hook-path".to_string());
        crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &lookup,
        )
        .unwrap()
    }

    #[test]
    fn fallback_channels_travel_in_the_specs_and_change_its_version() {
        let plain = "channels:\n  ops:\n    webhook: { url: \"http://127.0.0.1:9/${HOOK}\" }\n";
        let fallback = "channels:\n  ops:\n    fallback: true\n    webhook: { url: \"http://127.0.0.1:9/${HOOK}\" }\n";
        let without = SpecIndex::build(&config(plain), ["eu"].into_iter());
        let with = SpecIndex::build(&config(fallback), ["eu"].into_iter());
        let (without, with) = (without.region("eu").unwrap(), with.region("eu").unwrap());
        assert_ne!(without.version, with.version);
        let body: serde_json::Value = serde_json::from_slice(&without.body).unwrap();
        assert!(body.get("fallback_channels").is_none(), "{body}");
        let body: serde_json::Value = serde_json::from_slice(&with.body).unwrap();
        let channels = body["fallback_channels"].as_array().unwrap();
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0]["name"], "ops");
        // The value its `${HOOK}` had, as checks' variables travel.
        assert_eq!(channels[0]["env"]["HOOK"], "hook-path");
    }
}

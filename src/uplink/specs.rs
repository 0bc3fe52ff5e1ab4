//! Following the region's checks: the versioned long-poll of
//! `GET /api/v1/probes/checks`, what a new document changes (in plain
//! words), the copy kept on disk for a restart while the aggregator is
//! away; and the run-now long-poll.

use super::*;

/// The checks running now, to tell a new document from the same one sent
/// again.
#[derive(Default)]
struct Running {
    version: Option<String>,
    /// A hash of the checks (without the version), so the same checks under
    /// another version change nothing either.
    content: Option<u64>,
    /// Each check's fingerprint, to say what changed.
    fingerprints: BTreeMap<String, Option<u64>>,
    /// The values the secrets were made of, and the secrets: kept (the same
    /// `Arc`) while the values stay the same, so the scheduler restarts
    /// only the checks that changed.
    secret_values: BTreeSet<String>,
    secrets: Option<Arc<Secrets>>,
    /// Where the fallback channels go (the contact watcher), and a hash of
    /// those running, to tell a change.
    fallback: Option<watch::Sender<Arc<FallbackChannels>>>,
    fallback_content: Option<u64>,
}

/// What became of a document received.
#[derive(Debug, PartialEq, Eq)]
enum Applied {
    /// New checks are running.
    Running,
    /// The checks already running: nothing changed.
    Same,
    /// They do not decode here; the previous ones keep running.
    Invalid,
}

fn content_hash(checks: &[WireCheck]) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(&serde_json::to_vec(checks).unwrap_or_default());
    hasher.finish()
}

impl Running {
    /// Takes the document's fallback channels; whether they changed.
    fn apply_fallback(&mut self, wire: Vec<crate::config::remote::WireChannel>) -> bool {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write(&serde_json::to_vec(&wire).unwrap_or_default());
        let content = hasher.finish();
        if self.fallback_content == Some(content) {
            return false;
        }
        let count = wire.len();
        match crate::config::remote::decode_wire_channels(wire) {
            Ok((channels, secrets)) => {
                let names: Vec<&str> = channels.iter().map(|c| c.name.as_str()).collect();
                if count > 0 {
                    tracing::info!(
                        "fallback channels for when no aggregator answers: {}",
                        names.join(", ")
                    );
                }
                if let Some(fallback) = &self.fallback {
                    fallback.send_replace(Arc::new(FallbackChannels { channels, secrets }));
                }
                self.fallback_content = Some(content);
                true
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!("{error}");
                }
                tracing::error!(
                    "the fallback channels the aggregator sent do not decode here; keeping the previous ones"
                );
                false
            }
        }
    }

    fn apply(&mut self, document: SpecsDocument, checks: &watch::Sender<CheckSet>) -> Applied {
        if self.version.as_deref() == Some(document.version.as_str()) {
            return Applied::Same;
        }
        let fallback_changed = self.apply_fallback(document.fallback_channels);
        let content = content_hash(&document.checks);
        if self.content == Some(content) {
            self.version = Some(document.version);
            // New fallback channels alone are worth caching.
            return if fallback_changed {
                Applied::Running
            } else {
                Applied::Same
            };
        }
        let count = document.checks.len();
        let values: BTreeSet<String> = document
            .checks
            .iter()
            .flat_map(|c| c.env.values().cloned())
            .collect();
        match decode_wire_checks(document.checks) {
            Ok((decoded, secrets)) => {
                let secrets = match &self.secrets {
                    Some(kept) if values == self.secret_values => kept.clone(),
                    _ => secrets,
                };
                let fingerprints: BTreeMap<String, Option<u64>> = decoded
                    .iter()
                    .map(|c| (c.name.clone(), c.source.as_ref().map(|s| s.fingerprint)))
                    .collect();
                let changes = describe_changes(&self.fingerprints, &fingerprints);
                tracing::info!(
                    version = %document.version,
                    checks = count,
                    "running the checks the aggregator sent{changes}"
                );
                checks.send_replace(CheckSet {
                    checks: decoded,
                    secrets: secrets.clone(),
                });
                self.version = Some(document.version);
                self.content = Some(content);
                self.fingerprints = fingerprints;
                self.secret_values = values;
                self.secrets = Some(secrets);
                Applied::Running
            }
            Err(errors) => {
                for error in &errors.0 {
                    tracing::error!("{error}");
                }
                tracing::error!(
                    version = %document.version,
                    "the checks the aggregator sent do not decode here; still running the previous ones"
                );
                // Not asked for again until the aggregator has another.
                self.version = Some(document.version);
                Applied::Invalid
            }
        }
    }
}

/// ` (added a; changed b; removed c)`, or nothing the first time.
fn describe_changes(
    before: &BTreeMap<String, Option<u64>>,
    after: &BTreeMap<String, Option<u64>>,
) -> String {
    if before.is_empty() {
        return String::new();
    }
    let list = |names: Vec<&String>| {
        names
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let added: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    let removed: Vec<&String> = before.keys().filter(|n| !after.contains_key(*n)).collect();
    let changed: Vec<&String> = after
        .iter()
        .filter(|(n, f)| before.get(*n).is_some_and(|b| b != *f))
        .map(|(n, _)| n)
        .collect();
    let mut parts = Vec::new();
    if !added.is_empty() {
        parts.push(format!("added {}", list(added)));
    }
    if !changed.is_empty() {
        parts.push(format!("changed {}", list(changed)));
    }
    if !removed.is_empty() {
        parts.push(format!("removed {}", list(removed)));
    }
    if parts.is_empty() {
        " (no check changed)".to_string()
    } else {
        format!(" ({}; the others keep running)", parts.join("; "))
    }
}

/// Keeps `checks` up to date with the aggregator's specs for this region,
/// long-polling for changes; writes each new document to `cache` and starts
/// from it when the aggregator cannot be reached at start. A document equal
/// to the running one (by version or content) changes nothing.
pub(crate) async fn follow_specs(
    uplink: Uplink,
    cache: PathBuf,
    checks: watch::Sender<CheckSet>,
    fallback: watch::Sender<Arc<FallbackChannels>>,
    cancel: CancellationToken,
) {
    let fresh = || Running {
        fallback: Some(fallback.clone()),
        ..Running::default()
    };
    let mut running = fresh();
    if let Some(document) = read_cached_specs(&cache).await {
        tracing::info!(version = %document.version, checks = document.checks.len(), fallback_channels = document.fallback_channels.len(), "starting with the last checks received");
        if running.apply(document, &checks) == Applied::Invalid {
            let kept = running.fallback_content;
            running = fresh();
            running.fallback_content = kept;
        }
    }
    let mut backoff = Backoff::new(
        "fetching checks",
        "the current checks keep running; trying again",
        uplink.link_up.clone(),
    );
    let mut wait = Duration::ZERO;
    loop {
        let started = tokio::time::Instant::now();
        let answer = tokio::select! {
            answer = uplink.fetch_specs(running.version.as_deref(), wait) => answer,
            _ = cancel.cancelled() => return,
        };
        match answer {
            Ok(SpecsAnswer::Unchanged) => backoff.succeeded(),
            Ok(SpecsAnswer::Changed(document, raw)) => {
                backoff.succeeded();
                match running.apply(document, &checks) {
                    Applied::Running => write_cached_specs(&cache, &raw).await,
                    Applied::Same => tracing::debug!(
                        "the aggregator sent the checks already running (its If-None-Match ignored on the way?); nothing changes"
                    ),
                    Applied::Invalid => {}
                }
            }
            Ok(SpecsAnswer::Unusable(etag, error)) => {
                if etag.is_some() {
                    running.version = etag;
                }
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
            Err(error) => {
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
        }
        wait = limits::PROBE_LONG_POLL_MAX;
        if !poll_gap(started, &cancel).await {
            return;
        }
    }
}

async fn read_cached_specs(path: &Path) -> Option<SpecsDocument> {
    let bytes = tokio::fs::read(path).await.ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(document) => Some(document),
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "ignoring an unreadable cached checks file");
            None
        }
    }
}

async fn write_cached_specs(path: &Path, body: &[u8]) {
    let tmp = path.with_extension("tmp");
    let written = async {
        // Owner-only: the cache holds the secrets the checks and fallback
        // channels use.
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        let mut file = options.open(&tmp).await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, body).await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::rename(&tmp, path).await
    }
    .await;
    if let Err(error) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        tracing::warn!(file = %path.display(), %error, "cannot cache the checks received (a restart without the aggregator would not know them)");
    }
}

/// Passes the aggregator's run-now requests to the scheduler.
pub(crate) async fn follow_run_now(
    uplink: Uplink,
    run_now: mpsc::Sender<String>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(
        "waiting for run-now requests",
        "trying again",
        uplink.link_up.clone(),
    );
    loop {
        let started = tokio::time::Instant::now();
        let answer = tokio::select! {
            answer = uplink.run_now(limits::PROBE_LONG_POLL_MAX) => answer,
            _ = cancel.cancelled() => return,
        };
        match answer {
            Ok(names) => {
                backoff.succeeded();
                for name in names {
                    if run_now.send(name).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                if !backoff.failed(&error, &cancel).await {
                    return;
                }
            }
        }
        if !poll_gap(started, &cancel).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document `checks_yaml` makes, loaded from `dir` (the file's path
    /// travels with the checks).
    fn document(dir: &tempfile::TempDir, version: &str, checks_yaml: &str) -> SpecsDocument {
        std::fs::create_dir_all(dir.path().join("checks")).unwrap();
        std::fs::write(dir.path().join("checks/c.yaml"), checks_yaml).unwrap();
        let lookup = |name: &str| (name == "TOKEN").then(|| "a-secret-token".to_string());
        let config = crate::config::load_with_env(
            &dir.path().join("checks"),
            &dir.path().join("alerts"),
            &lookup,
        )
        .unwrap();
        SpecsDocument {
            fallback_channels: Vec::new(),
            version: version.to_string(),
            checks: config
                .checks
                .iter()
                .filter_map(|c| WireCheck::from_check(c))
                .collect(),
        }
    }

    const ONE: &str = "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/${TOKEN}\" }\n    every: 5s\n";
    const TWO: &str = "checks:\n  - name: api\n    http: { url: \"http://127.0.0.1:9/${TOKEN}\" }\n    every: 5s\n  - name: db\n    tcp: { address: \"127.0.0.1:9\" }\n    every: 1m\n";

    #[test]
    fn the_same_checks_again_change_nothing_and_new_ones_keep_the_secrets() {
        let (tx, rx) = watch::channel(CheckSet::default());
        let mut running = Running::default();
        let dir = tempfile::tempdir().unwrap();
        let document = |version: &str, yaml: &str| document(&dir, version, yaml);
        assert_eq!(running.apply(document("v1", ONE), &tx), Applied::Running);
        let first = rx.borrow().clone();
        assert_eq!(first.checks.len(), 1);
        // Same version, or the same checks under another version: nothing.
        assert_eq!(running.apply(document("v1", ONE), &tx), Applied::Same);
        assert_eq!(running.apply(document("v1b", ONE), &tx), Applied::Same);
        assert_eq!(running.version.as_deref(), Some("v1b"));
        assert!(Arc::ptr_eq(&rx.borrow().secrets, &first.secrets));
        // A check added: the secrets are the same values, hence the same
        // `Arc`, so the scheduler restarts nothing but what changed.
        assert_eq!(running.apply(document("v2", TWO), &tx), Applied::Running);
        let second = rx.borrow().clone();
        assert_eq!(second.checks.len(), 2);
        assert!(Arc::ptr_eq(&second.secrets, &first.secrets));
        assert_eq!(
            second.checks[0].source.as_ref().unwrap().fingerprint,
            first.checks[0].source.as_ref().unwrap().fingerprint
        );
    }

    #[test]
    fn changes_are_described_in_plain_words() {
        let before: BTreeMap<String, Option<u64>> =
            [("a".into(), Some(1)), ("b".into(), Some(2))].into();
        let after: BTreeMap<String, Option<u64>> = [
            ("a".into(), Some(1)),
            ("b".into(), Some(3)),
            ("c".into(), Some(4)),
        ]
        .into();
        assert_eq!(
            describe_changes(&before, &after),
            " (added c; changed b; the others keep running)"
        );
        assert_eq!(describe_changes(&BTreeMap::new(), &after), "");
    }
}

//! Reloading the configuration while running: on SIGHUP, and when a file in
//! `checks/`, `alerts/` or `probes.yaml` changes (inotify, via `notify`).
//!
//! A reload is all or nothing: the new config (and probes.yaml, for the
//! aggregator) must load without a single error, or the old one keeps
//! running and every error is logged with its file, line and column. A good
//! reload is swapped into the aggregator (rules, alert routing, the specs
//! remote probes long-poll for) and handed to `on_reload` (the local probe of
//! `serve` restarts only the checks that changed).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::config::{self, Config, ConfigErrors, probes};
use crate::limits;

/// What is reloaded, and from where.
#[derive(Clone, Debug)]
pub(crate) struct Sources {
    pub checks: PathBuf,
    pub alerts: PathBuf,
    /// The aggregator's probes.yaml; `None` in `serve`.
    pub probes: Option<PathBuf>,
    /// `--tls-cert` and `--tls-key`, re-read too (certificate rotation).
    pub tls: Option<(PathBuf, PathBuf, axum_server::tls_rustls::RustlsConfig)>,
}

pub(crate) type OnReload = Box<dyn Fn(&Arc<Config>) + Send + Sync>;

/// Reloads on SIGHUP and on file changes until `cancel`.
pub(crate) async fn run(
    sources: Sources,
    aggregator: Arc<Aggregator>,
    on_reload: Option<OnReload>,
    cancel: CancellationToken,
) {
    let (changed_tx, mut changed) = mpsc::channel::<()>(1);
    // Kept alive for as long as we watch.
    let _watcher = watch_files(&sources, changed_tx);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    loop {
        let why = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            Some(()) = changed.recv() => {
                // Editors write in several steps: wait for quiet.
                tokio::time::sleep(limits::CONFIG_RELOAD_DEBOUNCE).await;
                while changed.try_recv().is_ok() {}
                "a file changed"
            }
        };
        reload(&sources, &aggregator, on_reload.as_ref(), why).await;
    }
}

/// One reload attempt; the old config stays on any error.
pub(crate) async fn reload(
    sources: &Sources,
    aggregator: &Aggregator,
    on_reload: Option<&OnReload>,
    why: &str,
) -> bool {
    let loaded = {
        let sources = sources.clone();
        tokio::task::spawn_blocking(move || -> Result<_, ConfigErrors> {
            let config = config::load(&sources.checks, &sources.alerts);
            let tokens = sources.probes.as_deref().map(probes::load).transpose();
            match (config, tokens) {
                (Ok(config), Ok(tokens)) => Ok((config, tokens)),
                (Err(mut a), Err(b)) => {
                    a.0.extend(b.0);
                    Err(a)
                }
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })
        .await
    };
    let (config, tokens) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(errors)) => {
            for error in &errors.0 {
                tracing::error!("{error}");
            }
            tracing::error!(
                errors = errors.0.len(),
                "config reload ({why}) failed: still running the previous config; fix the errors above"
            );
            return false;
        }
        Err(error) => {
            tracing::error!(%error, "config reload ({why}) failed");
            return false;
        }
    };
    if let Some((cert, key, tls)) = &sources.tls
        && let Err(error) = tls.reload_from_pem_file(cert, key).await
    {
        tracing::error!(%error, "reloading the TLS certificate failed; still serving the previous one");
    }
    let mut config = config;
    if sources.probes.is_none() {
        // No probes file, no remote probe: nobody is sent the trees.
        config.forget_trees();
    }
    let config = Arc::new(config);
    let regions = tokens.as_ref().map(|t| t.regions().count());
    aggregator.replace_config(config.clone(), tokens);
    if let Some(on_reload) = on_reload {
        on_reload(&config);
    }
    tracing::info!(
        checks = config.checks.len(),
        channels = config.channels.len(),
        regions = ?regions,
        "config reloaded ({why})"
    );
    true
}

/// Watches the config directories (and probes.yaml's directory, since
/// editors replace a file by renaming a new one over it).
fn watch_files(sources: &Sources, changed: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let probes = sources.probes.clone();
    // Events name paths as the watcher resolved them (absolute, links
    // followed), while `--checks checks` is relative: compare every spelling.
    let checks = spellings(&sources.checks);
    let alerts = spellings(&sources.alerts);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|path| {
            let in_dir = |dirs: &[PathBuf]| {
                path.parent().is_some_and(|p| dirs.iter().any(|d| d == p))
                    && (is_yaml(path) || is_swapped_link(path))
            };
            in_dir(&checks)
                || in_dir(&alerts)
                || probes.as_deref().is_some_and(|p| same_file_name(path, p))
        });
        if relevant {
            // Full: a reload is already coming.
            let _ = changed.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::warn!(%error, "cannot watch the config files; reload with SIGHUP");
            return None;
        }
    };
    let mut dirs = vec![sources.checks.clone(), sources.alerts.clone()];
    if let Some(probes) = &sources.probes {
        let dir = probes
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dirs.push(dir.to_path_buf());
    }
    for dir in dirs {
        if let Err(error) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %dir.display(), %error, "not watching");
        }
    }
    Some(watcher)
}

/// `dir` as given, made absolute, and with its links resolved.
fn spellings(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(cwd) = std::env::current_dir() {
        out.push(cwd.join(dir));
    }
    if let Ok(canonical) = std::fs::canonicalize(dir) {
        out.push(canonical);
    }
    out.dedup();
    out
}

/// Kubernetes updates a mounted ConfigMap by swapping the `..data` link
/// its files point through; no `*.yaml` event is seen then.
fn is_swapped_link(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| n.as_encoded_bytes().starts_with(b".."))
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn same_file_name(path: &Path, probes: &Path) -> bool {
    path.file_name().is_some() && path.file_name() == probes.file_name()
}

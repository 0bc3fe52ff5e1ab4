//! `lookout serve`: the aggregator and a local probe in one process, the
//! embedded default. The probe reaches the aggregator through the same
//! `ResultSink` contract a remote probe uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::alert::outbox::Dispatcher;
use crate::limits;
use crate::probe::{ProbeIdentity, Runner};
use crate::scheduler::Scheduler;
use crate::storage::Storage;
use crate::transport::{self, LocalSink};

/// Run the aggregator and a local probe in one process (the default deployment).
///
/// Checks run on their schedules from this machine (region `local` unless
/// --region says otherwise); results, check state and incident events are
/// kept in SQLite under --data. The API and /health answer on --listen.
/// SIGINT or SIGTERM stops it gracefully.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub dirs: super::ConfigDirs,
    /// Address for the HTTP API, /health and the status page.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// Region name this process probes from.
    #[arg(long, default_value = "local")]
    pub region: String,
    /// How long results are kept (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = crate::schedule::parse_duration)]
    pub retention: Duration,
    /// Checks running at once.
    #[arg(long, default_value_t = limits::PROBE_CONCURRENCY_DEFAULT)]
    pub concurrency: usize,
    /// The status page's public address, for links in alerts
    /// (e.g. https://status.example.com/).
    #[arg(long, env = "LOOKOUT_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Alerts still undeliverable this long after their event are
    /// dead-lettered (listed by GET /api/v1/alerts?state=dead).
    #[arg(long, default_value = "24h", value_parser = crate::schedule::parse_duration)]
    pub alert_max_age: Duration,
    /// Token required (as `Authorization: Bearer`) to create or delete
    /// silences through the API. Without it, anyone who reaches the API can.
    #[arg(long, env = "LOOKOUT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// How often the aggregator lets time pass for staleness.
const TICK_EVERY: Duration = Duration::from_secs(1);

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = match super::load_or_report(&args.dirs.checks, &args.dirs.alerts) {
        Ok(config) => Arc::new(config),
        Err(code) => return Ok(code),
    };
    let storage = Storage::open(&args.data)
        .with_context(|| format!("opening storage in {}", args.data.display()))?;
    let aggregator = Arc::new(
        Aggregator::new(config.clone(), storage.clone())
            .await
            .context("restoring check state")?
            .with_public_url(args.public_url.clone()),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(
        checks = config.checks.len(),
        region = %args.region,
        data = %args.data.display(),
        "listening on http://{local}"
    );

    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));

    let mut tasks = tokio::task::JoinSet::new();
    let (results_tx, results_rx) = mpsc::channel(limits::RESULT_QUEUE_CAPACITY);
    let checks: Vec<_> = config
        .checks
        .iter()
        .filter(|c| {
            let here = c.regions.as_ref().is_none_or(|r| r.contains(&args.region));
            if !here && c.is_probed() {
                tracing::warn!(check = %c.name, "not run here: its `regions` leave out {}", args.region);
            }
            here && c.is_probed()
        })
        .cloned()
        .collect();
    let runner = Runner::new(
        ProbeIdentity {
            region: args.region.clone(),
            probe: crate::hostname(),
        },
        config.secrets.clone(),
    );
    let scheduler = Scheduler {
        runner,
        results: results_tx,
        concurrency: args.concurrency,
        on_lateness: None,
    };
    // The scheduler stops first; the shipper then drains what it produced.
    let scheduler_cancel = cancel.clone();
    let shipper_cancel = CancellationToken::new();
    {
        let shipper_cancel = shipper_cancel.clone();
        tasks.spawn(async move {
            scheduler.run(checks, scheduler_cancel).await;
            shipper_cancel.cancel();
        });
    }
    let sink: Arc<dyn transport::ResultSink> = Arc::new(LocalSink {
        aggregator: aggregator.clone(),
    });
    tasks.spawn(transport::ship(results_rx, sink, shipper_cancel));
    tasks.spawn(tick_loop(aggregator.clone(), cancel.clone()));
    let dispatcher = Dispatcher {
        storage: storage.clone(),
        config: {
            let aggregator = aggregator.clone();
            Arc::new(move || aggregator.config())
        },
        wake: aggregator.alert_wake(),
        max_age: args.alert_max_age,
    };
    tasks.spawn(dispatcher.run(cancel.clone()));
    tasks.spawn(retention_loop(storage, args.retention, cancel.clone()));

    let app = crate::api::router(aggregator, args.admin_token.clone());
    let server_cancel = cancel.clone();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move { server_cancel.cancelled().await });
    // Graceful: stop accepting, let in-flight requests finish, but never
    // wait on a slow client for longer than the grace period.
    let served = tokio::select! {
        served = server => served,
        _ = async { cancel.cancelled().await; tokio::time::sleep(limits::SHUTDOWN_GRACE).await } => {
            tracing::warn!("HTTP requests still open after {:?}; closing them", limits::SHUTDOWN_GRACE);
            Ok(())
        }
    };
    cancel.cancel();
    let drained = tokio::time::timeout(limits::SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "some tasks did not stop within {:?}; exiting anyway",
            limits::SHUTDOWN_GRACE
        );
    }
    served.context("HTTP server failed")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn tick_loop(aggregator: Arc<Aggregator>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(TICK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        if let Err(error) = aggregator.tick(Utc::now()).await {
            tracing::error!(%error, "cannot record staleness");
        }
    }
}

async fn retention_loop(storage: Storage, retention: Duration, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(limits::RETENTION_PRUNE_EVERY);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|keep| Utc::now().checked_sub_signed(keep))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        match storage
            .prune_older_than(cutoff, limits::RETENTION_PRUNE_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned results older than the retention"),
            Err(error) => tracing::error!(%error, "pruning old results failed"),
        }
    }
}

/// Cancels on SIGINT or SIGTERM.
async fn shutdown_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    // Without a SIGTERM handler, SIGINT still works: never return early.
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; stop with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        _ = term => tracing::info!("SIGTERM: shutting down"),
        _ = cancel.cancelled() => {}
    }
    cancel.cancel();
}

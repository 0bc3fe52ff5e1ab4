//! `lookout probe`: a regional worker. It runs the checks its aggregator
//! sends for its region and sends the results back, through the on-disk
//! spool (or, while the spool cannot be written, a bounded memory queue),
//! so an aggregator that is away loses nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::limits;
use crate::metrics::{self, Metrics};
use crate::probe::{ProbeIdentity, Runner};
use crate::scheduler::{CheckSet, Scheduler};
use crate::spool::{DropReason, Spool};
use crate::uplink::{self, Uplink};

/// Run a regional probe that takes its checks from an aggregator.
///
/// It long-polls the aggregator for its region's checks (picking up changes
/// without a restart), runs them on their schedules, and posts the results
/// through an on-disk spool: while the aggregator cannot be reached, results
/// wait in --spool and are sent, oldest first, when it is back. The last
/// checks received are kept in the spool too, so a restart while the
/// aggregator is away still probes. SIGINT or SIGTERM stops it gracefully.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// This probe's region; its token must belong to it (probes.yaml).
    #[arg(long)]
    pub region: String,
    /// The aggregator's base URL (e.g. https://lookout.example.com/). Give
    /// several replicas by repeating it or separating them with commas: the
    /// probe uses the first that answers and moves to the next on a refused
    /// connection, a timeout, a TLS error or a 5xx.
    #[arg(long, required = true, value_delimiter = ',')]
    pub aggregator: Vec<Url>,
    /// Reaching no aggregator this long, the probe alerts through the
    /// channels marked `fallback: true` itself (once, and once more when one
    /// answers again). Default 2m.
    #[arg(long, value_parser = parse_timeout)]
    pub aggregator_down_after: Option<std::time::Duration>,
    /// The region's probe token.
    #[arg(long, env = "LOOKOUT_PROBE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Directory for results waiting to be sent (created if missing).
    #[arg(long, default_value = "./spool")]
    pub spool: PathBuf,
    #[command(flatten)]
    pub browser: super::BrowserArgs,
    /// Trust this CA (PEM) for the aggregator's certificate, besides the
    /// system's roots (an aggregator with a private CA).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Checks running at once.
    #[arg(long, default_value_t = limits::PROBE_CONCURRENCY_DEFAULT)]
    pub concurrency: usize,
    /// Serve this probe's own Prometheus metrics (scheduler lateness, spool
    /// backlog, browser sessions) at http://ADDR/metrics. Off by default.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Results kept in memory while the spool cannot be written (read-only
    /// or full disk), sent directly; past it the oldest are dropped (counted).
    #[arg(long, default_value_t = limits::PROBE_MEMORY_QUEUE_DEFAULT)]
    pub memory_queue: usize,
    /// How long one request to the aggregator may take, answer included
    /// (the long-polls get their wait on top). Default 30s.
    #[arg(long, value_parser = parse_timeout)]
    pub aggregator_timeout: Option<std::time::Duration>,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let timeout = crate::schedule::parse_duration(text)?;
    if timeout.is_zero() {
        return Err("must be more than 0s".to_string());
    }
    Ok(timeout)
}

/// Name of the cached specs document in the spool directory.
const SPECS_CACHE: &str = "checks.json";

pub async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let spool = Arc::new(Spool::open(
        &args.spool,
        limits::SPOOL_BYTES_MAX,
        args.memory_queue,
    ));
    let uplink = Uplink::new(
        args.aggregator.clone(),
        &args.region,
        &args.token,
        args.ca_file.as_deref(),
    )?
    .with_spool(spool.clone())
    .with_request_timeout(
        args.aggregator_timeout
            .unwrap_or(limits::PROBE_REQUEST_TIMEOUT),
    );
    // chromedriver starts with the first browser flow, if any.
    let browser = args.browser.pool();
    let aggregators: Vec<String> = uplink.aggregators().iter().map(shown).collect();
    tracing::info!(
        region = %args.region,
        aggregator = %aggregators.join(","),
        spool = %args.spool.display(),
        pending = spool.pending(),
        "probe started"
    );

    let cancel = CancellationToken::new();
    tokio::spawn(super::serve::shutdown_on_signal(cancel.clone()));
    let mut tasks = JoinSet::new();
    let (checks_tx, checks_rx) = watch::channel(CheckSet::default());
    let (run_now_tx, run_now_rx) = mpsc::channel(limits::RUN_NOW_QUEUE_MAX);
    let (results_tx, results_rx) = mpsc::channel(limits::RESULT_QUEUE_CAPACITY);
    let (fallback_tx, fallback_rx) = watch::channel(Arc::default());
    tasks.spawn(uplink::follow_specs(
        uplink.clone(),
        args.spool.join(SPECS_CACHE),
        checks_tx,
        fallback_tx,
        cancel.clone(),
    ));
    tasks.spawn(uplink::watch_contact(
        uplink.contact(),
        uplink::Speaker {
            region: args.region.clone(),
            probe: crate::hostname(),
            aggregators,
        },
        fallback_rx,
        args.aggregator_down_after
            .unwrap_or(limits::PROBE_AGGREGATOR_DOWN_AFTER_DEFAULT),
        cancel.clone(),
    ));
    tasks.spawn(uplink::follow_run_now(
        uplink.clone(),
        run_now_tx,
        cancel.clone(),
    ));
    let scheduler = Scheduler {
        runner: Runner::new(
            ProbeIdentity {
                region: args.region.clone(),
                probe: crate::hostname(),
            },
            Arc::default(),
        )
        .with_browser(browser.clone()),
        results: results_tx,
        concurrency: args.concurrency,
        on_lateness: None,
    };
    let metrics = Arc::new(Metrics::new());
    let figures_of = spool.clone();
    let uplink_of = uplink.clone();
    metrics.report_uplink_with(Box::new(move || {
        let mut figures = uplink_figures(&figures_of);
        let (in_use, failovers) = uplink_of.in_use();
        figures.aggregators = uplink_of
            .aggregators()
            .iter()
            .map(|url| (shown(url), *url == in_use))
            .collect();
        figures.aggregator_failovers = failovers;
        figures
    }));
    let sessions = browser.sessions_gauge();
    metrics.count_browser_sessions_with(Box::new(move || {
        sessions.load(std::sync::atomic::Ordering::Relaxed) as u64
    }));
    if let Some(addr) = args.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} for metrics"))?;
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!("metrics on http://{bound}/metrics");
        tasks.spawn(serve_metrics(
            listener,
            metrics.clone(),
            spool.clone(),
            cancel.clone(),
        ));
    }
    // Run-now requests are run beside the schedule (`run_now`): the
    // check's cadence stays where it was.
    tasks.spawn(crate::run_now::run_requests(
        scheduler.runner.clone(),
        checks_rx.clone(),
        run_now_rx,
        scheduler.results.clone(),
        cancel.clone(),
    ));
    let shipper_cancel =
        super::spawn_scheduler(&mut tasks, scheduler, checks_rx, metrics, cancel.clone());
    tasks.spawn(crate::memory::release_free_periodically(cancel.clone()));
    tasks.spawn(uplink::ship_spooled(
        results_rx,
        spool.clone(),
        uplink,
        shipper_cancel,
    ));

    cancel.cancelled().await;
    let drained = tokio::time::timeout(limits::SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "some tasks did not stop within {}s; exiting anyway",
            limits::SHUTDOWN_GRACE.as_secs()
        );
    }
    browser.shutdown().await;
    let counts = uplink_figures(&spool);
    tracing::info!(
        pending = spool.pending(),
        made = counts.made,
        sent = counts.sent,
        rejected = counts.rejected,
        dropped = counts.dropped_spool_full
            + counts.dropped_spool_not_writable
            + counts.dropped_queue_full,
        "stopped"
    );
    Ok(ExitCode::SUCCESS)
}

/// An aggregator's URL as logs and alerts show it: without a password.
fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url.to_string()
}

fn uplink_figures(spool: &Spool) -> metrics::UplinkFigures {
    let counts = spool.counts();
    let figures = spool.figures();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    metrics::UplinkFigures {
        aggregators: Vec::new(),
        aggregator_failovers: 0,
        made: load(&counts.made),
        sent: load(&counts.sent),
        spooled: load(&counts.spooled),
        rejected: load(&counts.rejected),
        dropped_spool_full: counts.dropped(DropReason::SpoolFull),
        dropped_spool_not_writable: counts.dropped(DropReason::SpoolNotWritable),
        dropped_queue_full: counts.dropped(DropReason::QueueFull),
        spool_bytes: figures.bytes,
        spool_files: figures.files,
        in_memory: figures.in_memory,
        spool_writable: figures.writable,
    }
}

/// The probe's `/metrics`: what saturates a probe (its scheduler's
/// lateness, its spool, its browser sessions) and what became of its
/// results on the way (made, sent, spooled, rejected, dropped). Outcomes
/// are counted where they are judged, on the aggregator.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
    cancel: CancellationToken,
) {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let metrics = metrics.clone();
            let spool = spool.clone();
            async move {
                let snapshot = metrics::Snapshot {
                    local_spool_pending: Some(spool.pending()),
                    browser_sessions_in_use: metrics.browser_sessions_in_use(),
                    now: crate::clock::now(),
                    ..metrics::Snapshot::default()
                };
                match metrics.encode(&snapshot) {
                    Ok(text) => metrics::respond(text, headers.get(header::ACCEPT)),
                    Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    );
    let allowed = crate::listener::ListenLimits {
        max_connections: limits::PROBE_METRICS_CONNECTIONS_MAX,
        ..crate::listener::ListenLimits::default()
    };
    crate::listener::serve(listener, app, None, allowed, cancel).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    fn parse(args: &[&str]) -> Result<ProbeArgs, String> {
        let mut all = vec!["probe", "--region", "eu-west", "--token", "t"];
        all.extend(args);
        Cli::try_parse_from(all)
            .map(|cli| cli.probe)
            .map_err(|e| e.to_string())
    }

    fn urls(args: &ProbeArgs) -> Vec<&str> {
        args.aggregator.iter().map(Url::as_str).collect()
    }

    #[test]
    fn aggregators_are_repeated_or_comma_separated_in_the_order_given() {
        let one = parse(&["--aggregator", "https://a.example"]).unwrap();
        assert_eq!(urls(&one), ["https://a.example/"]);
        assert_eq!(one.aggregator_down_after, None);
        let repeated = parse(&[
            "--aggregator",
            "https://b.example",
            "--aggregator=https://a.example/",
        ])
        .unwrap();
        assert_eq!(
            urls(&repeated),
            ["https://b.example/", "https://a.example/"]
        );
        let commas = parse(&[
            "--aggregator",
            "https://a.example,https://b.example:8443/lookout/",
            "--aggregator-down-after",
            "90s",
        ])
        .unwrap();
        assert_eq!(
            urls(&commas),
            ["https://a.example/", "https://b.example:8443/lookout/"]
        );
        assert_eq!(
            commas.aggregator_down_after,
            Some(std::time::Duration::from_secs(90))
        );
        // Mixed: both forms at once.
        let mixed = parse(&[
            "--aggregator=http://a:1,http://b:2",
            "--aggregator=http://c:3",
        ])
        .unwrap();
        assert_eq!(urls(&mixed), ["http://a:1/", "http://b:2/", "http://c:3/"]);
        // None, a bad URL, a zero wait: refused by the parser.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--aggregator", "https://a.example,not a url"]).is_err());
        assert!(
            parse(&[
                "--aggregator",
                "https://a.example",
                "--aggregator-down-after",
                "0s"
            ])
            .is_err()
        );
        // Duplicates are refused when the uplink is built.
        let twice = parse(&["--aggregator", "https://a.example,https://a.example/"]).unwrap();
        let error = Uplink::new(twice.aggregator, "eu-west", "t", None)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("--aggregator https://a.example/ is given twice")
        );
    }
}

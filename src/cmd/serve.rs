//! `lookout serve`: the aggregator and a local probe in one process, the
//! embedded default. The probe reaches the aggregator through the same
//! `ResultSink` contract a remote probe uses. The aggregator half (HTTP
//! surface, alert dispatcher, retention, reload) is shared with
//! `lookout aggregator` and lives here too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::aggregator::Aggregator;
use crate::alert::outbox::Dispatcher;
use crate::config::Config;
use crate::config::probes::ProbeTokens;
use crate::limits;
use crate::probe::{ProbeIdentity, Runner};
use crate::reload;
use crate::replica::Replicas;
use crate::scheduler::{CheckSet, Scheduler};
use crate::storage::Storage;
use crate::transport::{self, LocalSink};

/// What the aggregator needs, in `serve` and `aggregator` alike.
#[derive(clap::Args)]
pub struct AggregatorArgs {
    #[command(flatten)]
    pub dirs: super::ConfigDirs,
    /// Address for the HTTP API, /health and the status page.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory for the SQLite database (created if missing).
    #[arg(long, default_value = "./data")]
    pub data: PathBuf,
    /// Keep everything in PostgreSQL instead of SQLite under --data:
    /// postgres://user:password@host:port/database, with `sslmode` as libpq
    /// spells it (disable, prefer (the default), require, verify-ca,
    /// verify-full) and `sslrootcert` for the server's CA. Prefer the
    /// environment variable: a flag shows in `ps`.
    #[arg(
        long,
        env = "LOOKOUT_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "data"
    )]
    pub database: Option<String>,
    /// How long results are kept (e.g. 30d, 12h).
    #[arg(long, default_value = "30d", value_parser = crate::schedule::parse_duration)]
    pub retention: Duration,
    /// The status page's public address, for links in alerts
    /// (e.g. https://status.example.com/).
    #[arg(long, env = "LOOKOUT_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// Alerts still undeliverable this long after their event are
    /// dead-lettered (listed by GET /api/v1/alerts?state=dead).
    #[arg(long, default_value = "24h", value_parser = crate::schedule::parse_duration)]
    pub alert_max_age: Duration,
    /// The key (at least 16 characters) acknowledge links in alerts are
    /// signed with. Without it, one is made at first start and kept in the
    /// database. Links need --public-url.
    #[arg(long, env = "LOOKOUT_ACK_KEY", hide_env_values = true)]
    pub ack_key: Option<String>,
    /// Token required (as `Authorization: Bearer`) to create or delete
    /// silences through the API. Without it, anyone who reaches the API can.
    #[arg(long, env = "LOOKOUT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    /// Re-read on SIGHUP, for certificate rotation.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// When a region reports a failure (or a recovery), ask the other
    /// regions to run the check at once instead of at their next tick, so an
    /// outage is confirmed in about one round-trip. `false` waits for ticks.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub fast_confirmation: bool,
    /// Client connections served at once on --listen. When full, the
    /// longest-idle connection makes room; when every one has a request in
    /// flight, new ones get 503. Never more than half the open-files limit
    /// (raised to its hard limit at start), which stays the probes'.
    #[arg(long, default_value_t = limits::HTTP_CONNECTIONS_MAX_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Time a client has to send a whole request head (and finish the TLS
    /// handshake); on a kept-alive connection, counted from the end of the
    /// last response, so it is also how long an idle connection is kept.
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    pub header_timeout: Duration,
    /// A connection with no request in flight and nothing moving either way
    /// (a client that stopped reading a response) is closed after this.
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// This replica's name among several on one database (shown by GET
    /// /api/v1/aggregators); by default the host name and --listen.
    #[arg(long)]
    pub replica_id: Option<String>,
    /// How long a replica's claim on an alert it is sending holds: if it
    /// dies mid-send, another replica sends the alert after this. Each
    /// attempt is cut off at half of it.
    #[arg(long, default_value = "60s", value_parser = delivery_claim)]
    pub delivery_claim: Duration,
}

/// `--delivery-claim`: at least `DELIVERY_CLAIM_MIN`.
fn delivery_claim(text: &str) -> Result<Duration, String> {
    let claim = crate::schedule::parse_duration(text)?;
    if claim < limits::DELIVERY_CLAIM_MIN {
        return Err(format!(
            "a delivery claim must be at least {}",
            crate::schedule::format_duration(limits::DELIVERY_CLAIM_MIN)
        ));
    }
    Ok(claim)
}

impl AggregatorArgs {
    fn listen_limits(&self) -> crate::listener::ListenLimits {
        crate::listener::ListenLimits {
            max_connections: self.max_connections,
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// A database URL fit for a log line: the password replaced.
fn without_password(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return "(a URL that does not parse)".to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    // tokio-postgres also takes the password as a query parameter.
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| {
            let secret = matches!(key.as_ref(), "password" | "sslpassword");
            let value = if secret {
                "***".to_string()
            } else {
                value.into_owned()
            };
            (key.into_owned(), value)
        })
        .collect();
    if !pairs.is_empty() {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}

/// A duration flag that must not be zero (a zero timeout closes everything).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match crate::schedule::parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".to_string()),
        duration => Ok(duration),
    }
}

/// Run the aggregator and a local probe in one process (the default deployment).
///
/// Checks run on their schedules from this machine (region `local` unless
/// --region says otherwise); results, check state and incident events are
/// kept in SQLite under --data. The API and /health answer on --listen.
/// SIGINT or SIGTERM stops it gracefully; SIGHUP (or editing a file in
/// checks/ or alerts/) reloads the config.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub aggregator: AggregatorArgs,
    /// Region name this process probes from.
    #[arg(long, default_value = "local")]
    pub region: String,
    /// Checks running at once.
    #[arg(long, default_value_t = limits::PROBE_CONCURRENCY_DEFAULT)]
    pub concurrency: usize,
    #[command(flatten)]
    pub browser: super::BrowserArgs,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let dirs = &args.aggregator.dirs;
    let config = match super::load_or_report(&dirs.checks, &dirs.alerts) {
        Ok(mut config) => {
            // No remote probe is sent these checks (reloads do the same).
            config.forget_trees();
            Arc::new(config)
        }
        Err(code) => return Ok(code),
    };
    // The local probe is in-process: its region is known to the hub, with
    // no token (nobody can present one) and no specs document to fetch.
    let tokens = ProbeTokens::in_process(&args.region);
    let service = AggregatorService::start(&args.aggregator, config.clone(), tokens, None).await?;
    let cancel = service.cancel.clone();
    let mut tasks = JoinSet::new();

    // chromedriver starts with the first browser flow, if any.
    let browser = args.browser.pool();
    let sessions = browser.sessions_gauge();
    service
        .aggregator
        .metrics()
        .count_browser_sessions_with(Box::new(move || {
            sessions.load(std::sync::atomic::Ordering::Relaxed) as u64
        }));
    let (results_tx, results_rx) = mpsc::channel(limits::RESULT_QUEUE_CAPACITY);
    let (checks_tx, checks_rx) = watch::channel(checks_for_region(&config, &args.region, true));
    let (run_now_tx, run_now_rx) = mpsc::channel(limits::RUN_NOW_QUEUE_MAX);
    let runner = Runner::new(
        ProbeIdentity {
            region: args.region.clone(),
            probe: crate::hostname(),
        },
        config.secrets.clone(),
    )
    .with_browser(browser.clone());
    let scheduler = Scheduler {
        runner,
        results: results_tx,
        concurrency: args.concurrency,
        on_lateness: None,
    };
    // Run-now requests are run beside the schedule (`run_now`): the
    // check's cadence stays where it was.
    tasks.spawn(crate::run_now::run_requests(
        scheduler.runner.clone(),
        checks_rx.clone(),
        run_now_rx,
        scheduler.results.clone(),
        cancel.clone(),
    ));
    let shipper_cancel = super::spawn_scheduler(
        &mut tasks,
        scheduler,
        checks_rx,
        service.aggregator.metrics().clone(),
        cancel.clone(),
    );
    let sink: Arc<dyn transport::ResultSink> = Arc::new(LocalSink {
        aggregator: service.aggregator.clone(),
    });
    tasks.spawn(transport::ship(results_rx, sink, shipper_cancel));
    // Fast confirmation reaches the local scheduler straight from the hub.
    {
        let aggregator = service.aggregator.clone();
        let region = args.region.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            loop {
                let names = tokio::select! {
                    names = aggregator.hub().take_run_now(&region, limits::PROBE_LONG_POLL_MAX) => names,
                    _ = cancel.cancelled() => return,
                };
                for name in names {
                    if run_now_tx.send(name).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
    let region = args.region.clone();
    let on_reload: reload::OnReload = Box::new(move |config: &Arc<Config>| {
        checks_tx.send_replace(checks_for_region(config, &region, false));
    });
    let served = service.run(Some(on_reload), tasks).await;
    browser.shutdown().await;
    served
}

/// The checks `region` runs, with the config's secrets.
fn checks_for_region(config: &Config, region: &str, warn: bool) -> CheckSet {
    let checks = config
        .checks
        .iter()
        .filter(|c| {
            let here = c
                .regions
                .as_ref()
                .is_none_or(|r| r.contains(&region.to_string()));
            if !here && c.is_probed() && warn {
                tracing::warn!(check = %c.name, "not run here: its `regions` leave out {region}");
            }
            here && c.is_probed()
        })
        .cloned()
        .collect();
    CheckSet {
        checks,
        secrets: config.secrets.clone(),
    }
}

/// The aggregator, started: storage open, state restored, listening.
pub struct AggregatorService {
    pub aggregator: Arc<Aggregator>,
    pub cancel: CancellationToken,
    storage: Storage,
    data: PathBuf,
    listener: tokio::net::TcpListener,
    listen_limits: crate::listener::ListenLimits,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    /// Whether the probe routes are served (the `aggregator`'s probes file).
    probe_routes: bool,
    sources: reload::Sources,
    admin_token: Option<String>,
    retention: Duration,
    alert_max_age: Duration,
    delivery_claim: Duration,
    /// This process among the replicas on its database.
    replicas: Arc<Replicas>,
}

impl AggregatorService {
    /// Opens storage, restores state and binds the listener. `probes_file`
    /// is reloaded with the config (the `aggregator` command's probes.yaml).
    pub async fn start(
        args: &AggregatorArgs,
        config: Arc<Config>,
        tokens: ProbeTokens,
        probes_file: Option<PathBuf>,
    ) -> anyhow::Result<AggregatorService> {
        let storage = match &args.database {
            Some(url) => Storage::connect_postgres(url, crate::clock::Clock::System)
                .await
                .with_context(|| format!("opening the database {}", without_password(url)))?,
            None => Storage::open(&args.data)
                .with_context(|| format!("opening storage in {}", args.data.display()))?,
        };
        let replicas = Replicas::new(
            storage.clone(),
            args.replica_id.clone(),
            args.listen.to_string(),
            config.source_hash.clone(),
            args.database.is_some(),
        );
        // Leading (or not) before anything runs: on SQLite at once; on a
        // shared database as soon as the lease says.
        if let Err(error) = replicas.refresh().await {
            tracing::warn!(%error, "cannot take the leader's lease yet; trying again");
        }
        let ack_key = ack_key(args, &storage).await?;
        let aggregator = Arc::new(
            Aggregator::new(config.clone(), storage.clone())
                .await
                .context("restoring check state")?
                .with_ack_key(ack_key)
                .with_public_url(args.public_url.clone())
                .with_fast_confirmation(args.fast_confirmation)
                .with_probe_tokens(tokens)
                .with_replicas(replicas.clone()),
        );
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .with_context(|| {
                        format!(
                            "loading the TLS certificate {} and key {}",
                            cert.display(),
                            key.display()
                        )
                    })?,
            ),
            _ => None,
        };
        let listener = crate::listener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let probe_routes = probes_file.is_some();
        let sources = reload::Sources {
            checks: args.dirs.checks.clone(),
            alerts: args.dirs.alerts.clone(),
            probes: probes_file,
            tls: match (&args.tls_cert, &args.tls_key, &tls) {
                (Some(cert), Some(key), Some(tls)) => {
                    Some((cert.clone(), key.clone(), tls.clone()))
                }
                _ => None,
            },
        };
        let cancel = CancellationToken::new();
        tokio::spawn(shutdown_on_signal(cancel.clone()));
        Ok(AggregatorService {
            aggregator,
            cancel,
            storage,
            data: args.data.clone(),
            listener,
            listen_limits: args.listen_limits(),
            tls,
            probe_routes,
            sources,
            admin_token: args.admin_token.clone(),
            retention: args.retention,
            alert_max_age: args.alert_max_age,
            delivery_claim: args.delivery_claim,
            replicas,
        })
    }

    /// Serves until SIGINT/SIGTERM, with `tasks` (a local probe) alongside.
    pub async fn run(
        self,
        on_reload: Option<reload::OnReload>,
        mut tasks: JoinSet<()>,
    ) -> anyhow::Result<ExitCode> {
        let cancel = self.cancel.clone();
        let aggregator = self.aggregator.clone();
        let local = self
            .listener
            .local_addr()
            .context("reading the listening address")?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let config = aggregator.config();
        tracing::info!(
            checks = config.checks.len(),
            regions = ?aggregator.hub().regions(),
            data = %self.data.display(),
            "listening on {scheme}://{local}"
        );
        let replicas = self.replicas.clone();
        tasks.spawn(replicas.clone().run(cancel.clone()));
        if replicas.shared() {
            tasks.spawn(share_loop(aggregator.clone(), cancel.clone()));
        }
        let dispatcher = Dispatcher {
            storage: self.storage.clone(),
            config: {
                let aggregator = aggregator.clone();
                Arc::new(move || aggregator.config())
            },
            wake: aggregator.alert_wake(),
            max_age: self.alert_max_age,
            owner: replicas.id().to_string(),
            claim_for: self.delivery_claim,
        };
        tasks.spawn(dispatcher.run(cancel.clone()));
        // Alertmanager forgets a firing alert it is not told about again.
        let resender = crate::alert::resend::Resender {
            storage: self.storage.clone(),
            config: {
                let aggregator = aggregator.clone();
                Arc::new(move || aggregator.config())
            },
            // One replica resends (the leader), as it runs the other jobs.
            leading: {
                let replicas = replicas.clone();
                Arc::new(move || replicas.is_leader())
            },
        };
        tasks.spawn(resender.run(cancel.clone()));
        for (name, channel) in &config.channels {
            if let crate::config::ChannelKind::Email(mail) = &channel.kind
                && !mail.tls_verify
            {
                tracing::warn!(channel = %name, "channel has `tls_verify: false`: the SMTP server's certificate is not checked, so anyone on the path can read these alerts and the password");
            }
        }
        // The periodic jobs: on the leader only.
        tasks.spawn(tick_loop(
            aggregator.clone(),
            replicas.clone(),
            cancel.clone(),
        ));
        tasks.spawn(rollup_loop(
            self.storage.clone(),
            replicas.clone(),
            cancel.clone(),
        ));
        tasks.spawn(latency_loop(
            aggregator.clone(),
            replicas.clone(),
            cancel.clone(),
        ));
        tasks.spawn(retention_loop(
            self.storage.clone(),
            self.retention,
            replicas.clone(),
            cancel.clone(),
        ));
        tasks.spawn(crate::memory::release_free_periodically(cancel.clone()));
        tasks.spawn(reload::run(
            self.sources.clone(),
            aggregator.clone(),
            on_reload,
            cancel.clone(),
        ));

        let app = crate::api::router(aggregator, self.admin_token.clone(), self.probe_routes);
        // Returns once `cancel` fired and connections drained (graceful,
        // bounded by SHUTDOWN_GRACE).
        let served = crate::listener::serve(
            self.listener,
            app,
            self.tls,
            self.listen_limits,
            cancel.clone(),
        )
        .await;
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
        tracing::info!(
            connections = served.accepted,
            evicted = served.evicted,
            refused = served.refused,
            "stopped"
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// Runs `work` every `period` (missed ticks skipped, never bunched) until
/// `cancel` fires.
async fn every<F, Fut>(period: Duration, cancel: CancellationToken, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        work().await;
    }
}

async fn tick_loop(
    aggregator: Arc<Aggregator>,
    replicas: Arc<Replicas>,
    cancel: CancellationToken,
) {
    let mut leading = replicas.watch_leading();
    let mut interval = tokio::time::interval(limits::AGGREGATOR_TICK_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = cancel.cancelled() => return,
        }
        // Noticed (and logged, once) even while nothing else writes.
        let _ = aggregator.storage_jobs().check_file();
        if !replicas.is_leader() {
            // Just stepped down: what it found stale is the next leader's
            // to decide now.
            if leading.has_changed().unwrap_or(false) && !*leading.borrow_and_update() {
                aggregator.forget_probe_liveness();
            }
            continue;
        }
        // Just took over: what the previous leader decided of the probes
        // is read first, so that nothing is found stale (or back) twice.
        if leading.has_changed().unwrap_or(false)
            && *leading.borrow_and_update()
            && let Err(error) = aggregator.take_over_probe_liveness().await
        {
            tracing::error!(%error, "cannot read the probes' liveness on taking over");
            leading.mark_changed();
            continue;
        }
        if let Err(error) = aggregator.tick(aggregator.clock().now()).await {
            tracing::error!(%error, "cannot record staleness");
        }
    }
}

/// Shares what this replica's probes said with the other replicas, and
/// takes their states, probe contacts and silences (a shared database
/// only).
async fn share_loop(aggregator: Arc<Aggregator>, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(limits::PROBE_CONTACT_SHARE_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let wake = aggregator.share_wake();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = wake.notified() => {}
            _ = cancel.cancelled() => return,
        }
        match aggregator.sync_with_replicas().await {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                tracing::error!(%error, "cannot share state with the other replicas");
            }
            Err(_) => {}
        }
    }
}

/// Rolls up finished hours of results (status page, latency baselines).
async fn rollup_loop(storage: Storage, replicas: Arc<Replicas>, cancel: CancellationToken) {
    let stop = cancel.clone();
    every(limits::ROLLUP_EVERY, cancel, || async {
        if !replicas.is_leader() {
            return;
        }
        // A backlog (first start on old data) is worked off a day at a
        // time, yielding between, so ingestion never waits long.
        loop {
            match storage
                .jobs()
                .roll_up(storage.clock().now(), limits::ROLLUP_HOURS_PER_GO)
                .await
            {
                Ok(hours) if hours == limits::ROLLUP_HOURS_PER_GO && !stop.is_cancelled() => {
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                Err(error) => {
                    tracing::error!(%error, "rolling up results failed");
                    break;
                }
            }
        }
    })
    .await;
}

/// Judges `p95_above_baseline` for the checks that have it.
async fn latency_loop(
    aggregator: Arc<Aggregator>,
    replicas: Arc<Replicas>,
    cancel: CancellationToken,
) {
    every(limits::LATENCY_JUDGE_EVERY, cancel, || async {
        if !replicas.is_leader() {
            return;
        }
        if let Err(error) = aggregator.judge_latency(aggregator.clock().now()).await {
            tracing::error!(%error, "judging latency against baselines failed");
        }
    })
    .await;
}

async fn retention_loop(
    storage: Storage,
    retention: Duration,
    replicas: Arc<Replicas>,
    cancel: CancellationToken,
) {
    every(limits::RETENTION_PRUNE_EVERY, cancel, || async {
        if !replicas.is_leader() {
            return;
        }
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|keep| storage.clock().now().checked_sub_signed(keep))
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        match storage
            .jobs()
            .prune_older_than(cutoff, limits::RETENTION_PRUNE_BATCH)
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned results older than the retention"),
            Err(error) => tracing::error!(%error, "pruning old results failed"),
        }
    })
    .await;
}

/// Cancels on SIGINT or SIGTERM.
pub async fn shutdown_on_signal(cancel: CancellationToken) {
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

/// The key acknowledge links are signed with: `--ack-key`, else the one
/// kept in the database (made at the first start); none without
/// `--public-url`, as there is nowhere for a link to point.
async fn ack_key(
    args: &AggregatorArgs,
    storage: &Storage,
) -> anyhow::Result<Option<crate::alert::ack::AckKey>> {
    if args.public_url.is_none() {
        return Ok(None);
    }
    if let Some(key) = &args.ack_key {
        if key.len() < crate::limits::ACK_KEY_CHARS_MIN {
            anyhow::bail!(
                "--ack-key must be at least {} characters",
                crate::limits::ACK_KEY_CHARS_MIN
            );
        }
        return Ok(Some(crate::alert::ack::AckKey::new(key.as_bytes())));
    }
    let mut fresh = vec![0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut fresh)
        .map_err(|_| anyhow::anyhow!("no random bytes for the acknowledge-link key"))?;
    let kept = storage
        .ingest()
        .keep_key("ack_link".into(), fresh)
        .await
        .context("keeping the acknowledge-link key in the database")?;
    Ok(Some(crate::alert::ack::AckKey::new(&kept)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_url_is_logged_without_its_password() {
        for url in [
            "postgres://lookout:s3cret@db:5432/lookout",
            "postgres://lookout@db/lookout?password=s3cret&sslmode=require",
        ] {
            let shown = super::without_password(url);
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("db"), "{shown}");
        }
    }

    #[test]
    fn the_listener_flags_default_to_the_limits() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: super::AggregatorArgs,
        }
        let cli = <Cli as clap::Parser>::parse_from(["lookout"]);
        assert_eq!(
            cli.args.listen_limits(),
            crate::listener::ListenLimits::default()
        );
        assert!(
            <Cli as clap::Parser>::try_parse_from(["lookout", "--header-timeout", "0s"]).is_err()
        );
        assert!(
            <Cli as clap::Parser>::try_parse_from(["lookout", "--max-connections", "0"]).is_err()
        );
    }
}

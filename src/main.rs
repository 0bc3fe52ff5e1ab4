//! The `lookout` binary: parses the command line, sets up logging, and hands
//! over to `lookout::cmd`. Exit codes: 0 ok, 1 check failure or invalid
//! config (or a runtime error), 2 usage error.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use lookout::cmd;
use lookout::cmd::ConfigDirs;

/// External uptime and synthetic monitoring.
///
/// Declare checks in checks/*.yaml and alert channels in alerts/*.yaml, then
/// run `lookout serve`. Start with `lookout validate`, and try a check once
/// with `lookout check NAME` before you deploy it.
#[derive(Parser)]
#[command(name = "lookout", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log format on stderr (level with RUST_LOG, e.g. RUST_LOG=lookout=debug).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the aggregator and a local probe in one process (the default deployment).
    ///
    /// Checks run on their schedules from this machine (region `local` unless
    /// --region says otherwise); results, check state and incident events are
    /// kept in SQLite under --data. The API and /health answer on --listen.
    /// SIGINT or SIGTERM stops it gracefully.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Run the central aggregator for remote probes (no local probe).
    ///
    /// Probes in each region (`lookout probe`) long-poll it for their checks
    /// and post their results; it applies the rules across regions, keeps
    /// history in SQLite under --data and sends the alerts. SIGHUP (or
    /// editing checks/, alerts/ or the probes file) reloads; an invalid edit
    /// keeps the running config. SIGINT or SIGTERM stops it gracefully.
    Aggregator(Box<cmd::aggregator::AggregatorCmdArgs>),
    /// Run a regional probe that takes its checks from an aggregator.
    ///
    /// It long-polls the aggregator for its region's checks, runs them, and
    /// posts the results through an on-disk spool (--spool), so nothing is
    /// lost while the aggregator is away. The token comes from --token or
    /// LOOKOUT_PROBE_TOKEN. SIGINT or SIGTERM stops it gracefully.
    Probe(Box<cmd::probe::ProbeArgs>),
    /// Check the configuration; print every error as path:line:col: message.
    ///
    /// Exits 0 when valid, 1 otherwise. It uses the daemon's own loader, so
    /// what validates is what runs.
    Validate {
        #[command(flatten)]
        dirs: ConfigDirs,
    },
    /// Alert channels: `lookout alert test CHANNEL` proves a channel works.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// Run checks once, here and now, and print the results.
    ///
    /// With no NAME, runs every check. Exits 1 if any check did not pass.
    /// Example: lookout check api-health --json
    Check {
        /// Checks to run (default: all).
        names: Vec<String>,
        #[command(flatten)]
        dirs: ConfigDirs,
        /// Print one JSON result per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Region name stamped on the results and the User-Agent.
        #[arg(long, default_value = "local")]
        region: String,
        #[command(flatten)]
        browser: cmd::BrowserArgs,
    },
    /// Print the JSON Schema (draft 2020-12) of a file kind, for editors.
    ///
    /// Point yaml-language-server at it with a first line such as
    /// `# yaml-language-server: $schema=../schema/checks.schema.json`.
    /// Example: lookout schema checks > schema/checks.schema.json
    Schema {
        /// Which file: checks (default), alerts, probes or page (status_page:).
        #[arg(value_enum, default_value_t = SchemaWhich::Checks)]
        which: SchemaWhich,
    },
    /// Convert another monitor's configuration into Lookout checks.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Convert Gatus configuration (files, or directories of *.yaml merged
    /// as Gatus merges them) into Lookout checks and alert channels.
    ///
    /// What has no equivalent is listed on stderr as file:line; the last
    /// line says how many endpoints converted fully and partially.
    /// Example: lookout import gatus config.yaml --out checks/
    Gatus {
        /// Gatus configuration files or directories.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// Write checks/gatus.yaml and alerts/gatus.yaml under DIR instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
    /// Convert blackbox_exporter modules and the Prometheus scrape jobs that
    /// use them into Lookout checks, one per target and module.
    ///
    /// Example: lookout import blackbox --config blackbox.yml --prometheus prometheus.yml
    Blackbox {
        /// blackbox_exporter's configuration (its modules).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Prometheus configuration whose scrape jobs probe through blackbox.
        #[arg(long)]
        prometheus: std::path::PathBuf,
        /// Write checks/blackbox.yaml under DIR instead of stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SchemaWhich {
    Checks,
    Alerts,
    Probes,
    Page,
}

#[derive(Subcommand)]
enum AlertCommand {
    /// Send a test notification through CHANNEL now and report the outcome.
    ///
    /// Exits 0 when the receiver accepted it, 1 otherwise. Use it after
    /// editing alerts/ to verify credentials before an outage does.
    Test {
        /// The channel's name in alerts/*.yaml.
        channel: String,
        #[command(flatten)]
        dirs: ConfigDirs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    lookout::install_crypto_provider();
    // Before any socket or file is opened: the listeners' connection caps
    // are shares of this limit.
    match lookout::listener::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "open-files limit"),
        Err(error) => tracing::warn!("{error}; serving with the limit as it is"),
    }
    // Before the runtime's threads exist (memory.rs says why).
    lookout::memory::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(cmd::EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => or_report(cmd::serve::run(*args).await),
            Command::Aggregator(args) => or_report(cmd::aggregator::run(*args).await),
            Command::Probe(args) => or_report(cmd::probe::run(*args).await),
            Command::Validate { dirs } => cmd::validate::run(&dirs.checks, &dirs.alerts),
            Command::Alert {
                command: AlertCommand::Test { channel, dirs },
            } => cmd::alert::test(&dirs.checks, &dirs.alerts, &channel).await,
            Command::Check {
                names,
                dirs,
                json,
                region,
                browser,
            } => cmd::check::run(&dirs.checks, &dirs.alerts, &names, json, &region, &browser).await,
            Command::Schema { which } => cmd::schema::run(match which {
                SchemaWhich::Checks => lookout::schema::SchemaKind::Checks,
                SchemaWhich::Alerts => lookout::schema::SchemaKind::Alerts,
                SchemaWhich::Probes => lookout::schema::SchemaKind::Probes,
                SchemaWhich::Page => lookout::schema::SchemaKind::Page,
            }),
            Command::Import {
                command: ImportCommand::Gatus { paths, out },
            } => cmd::import::gatus(&paths, out.as_deref()),
            Command::Import {
                command:
                    ImportCommand::Blackbox {
                        config,
                        prometheus,
                        out,
                    },
            } => cmd::import::blackbox(&config, &prometheus, out.as_deref()),
        }
    })
}

/// A runtime error ends the process with a one-line reason and exit 1.
fn or_report(outcome: anyhow::Result<ExitCode>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(cmd::EXIT_FAILURE)
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only for a person at a terminal, never in journald or files.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // Masks every secret seen, in any form, in each line (third-party
        // crates log hosts and URLs at debug and trace).
        .with_writer(lookout::config::secrets::LogWriter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

//! `lookout aggregator`: the central service without a local probe. Remote
//! probes (`lookout probe`) fetch their region's checks from it and post
//! their results to it; regions and their tokens come from probes.yaml.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::serve::{AggregatorArgs, AggregatorService};
use crate::config::probes;

/// Run the central aggregator for remote probes (no local probe).
///
/// Probes in each region (`lookout probe`) long-poll it for their checks and
/// post their results; it applies the rules across regions, keeps history in
/// SQLite under --data and sends the alerts. SIGHUP (or editing checks/,
/// alerts/ or the probes file) reloads; an invalid edit keeps the running
/// config. SIGINT or SIGTERM stops it gracefully.
#[derive(clap::Args)]
pub struct AggregatorCmdArgs {
    #[command(flatten)]
    pub aggregator: AggregatorArgs,
    /// The regions and their probe tokens (see deploy/probes.example.yaml).
    #[arg(long, default_value = "probes.yaml")]
    pub probes: PathBuf,
}

pub async fn run(args: AggregatorCmdArgs) -> anyhow::Result<ExitCode> {
    let dirs = &args.aggregator.dirs;
    let config = super::load_or_report(&dirs.checks, &dirs.alerts);
    let tokens = probes::load(&args.probes);
    let (config, tokens) = match (config, tokens) {
        (Ok(config), Ok(tokens)) => (config, tokens),
        (_, tokens) => {
            if let Err(errors) = &tokens {
                super::report_errors(errors, "; nothing was started");
            }
            return Ok(ExitCode::from(super::EXIT_FAILURE));
        }
    };
    if tokens.is_empty() {
        tracing::warn!(file = %args.probes.display(), "no regions in the probes file: no probe can report");
    }
    for check in &config.checks {
        for region in check.regions.iter().flatten() {
            if tokens.region_of_name(region).is_none() {
                tracing::warn!(check = %check.name, %region, "the check names a region that has no probe in {}", args.probes.display());
            }
        }
    }
    let service = AggregatorService::start(
        &args.aggregator,
        Arc::new(config),
        tokens,
        Some(args.probes.clone()),
    )
    .await?;
    service.run(None, JoinSet::new()).await
}

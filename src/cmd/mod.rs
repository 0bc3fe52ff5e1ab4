//! The subcommands. Each takes its validated arguments and returns the
//! process exit code; `main.rs` only parses the command line and prints
//! errors.

pub mod aggregator;
pub mod alert;
pub mod check;
pub mod import;
pub mod probe;
pub mod schema;
pub mod serve;
pub mod validate;

use std::path::Path;
use std::process::ExitCode;

use crate::config::{self, Config};

/// Where the config lives: every subcommand that reads it takes these.
#[derive(clap::Args)]
pub struct ConfigDirs {
    /// Directory of check files (*.yaml).
    #[arg(long, default_value = "checks")]
    pub checks: std::path::PathBuf,
    /// Directory of alert channel files (*.yaml).
    #[arg(long, default_value = "alerts")]
    pub alerts: std::path::PathBuf,
}

/// Browser checks: where sessions come from and how many at once.
#[derive(clap::Args, Clone, Debug)]
pub struct BrowserArgs {
    /// An existing WebDriver server for browser checks (e.g.
    /// http://127.0.0.1:9515), instead of starting chromedriver from PATH.
    #[arg(long)]
    pub webdriver: Option<url::Url>,
    /// Browser sessions at once; further flows wait their turn (time spent
    /// waiting does not count against a check's timeout).
    #[arg(long, default_value_t = crate::limits::BROWSER_SESSIONS_DEFAULT, value_parser = parse_sessions)]
    pub browser_sessions: usize,
}

/// `--browser-sessions`: 1 to 64 (each session is a whole browser).
fn parse_sessions(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=64).contains(&n) => Ok(n),
        _ => Err("expected a number from 1 to 64".to_string()),
    }
}

impl BrowserArgs {
    /// The pool; chromedriver starts only when the first flow runs.
    pub fn pool(&self) -> crate::browser::BrowserPool {
        crate::browser::BrowserPool::new(crate::browser::BrowserOptions {
            webdriver: self.webdriver.clone(),
            sessions: self.browser_sessions,
            profiles_in: None,
        })
    }
}

/// Exit codes of DESIGN.md.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;

/// Loads the config, or prints every error as `path:line:col: message` on
/// stderr and returns the exit code to stop with.
pub fn load_or_report(checks: &Path, alerts: &Path) -> Result<Config, ExitCode> {
    match config::load(checks, alerts) {
        Ok(config) => Ok(config),
        Err(errors) => {
            report_errors(&errors, "; nothing was started");
            Err(ExitCode::from(EXIT_FAILURE))
        }
    }
}

/// Prints config errors, one `path:line:col: message` per line, on stderr.
/// The last line counts them, followed by `tail`.
pub fn report_errors(errors: &config::ConfigErrors, tail: &str) {
    let total = errors.0.len();
    for error in errors.0.iter().take(crate::limits::CONFIG_ERRORS_MAX) {
        eprintln!("{error}");
    }
    if total > crate::limits::CONFIG_ERRORS_MAX {
        eprintln!(
            "... and {} more errors",
            total - crate::limits::CONFIG_ERRORS_MAX
        );
    }
    eprintln!("{total} error(s){tail}");
}

/// Runs `scheduler` on the checks `checks` holds until `cancel`, reporting
/// its lateness and liveness to `metrics`; returns the token that fires once
/// it has stopped, for the shipper behind it (the scheduler stops first, the
/// shipper then delivers what it produced).
pub(crate) fn spawn_scheduler(
    tasks: &mut tokio::task::JoinSet<()>,
    mut scheduler: crate::scheduler::Scheduler,
    checks: tokio::sync::watch::Receiver<crate::scheduler::CheckSet>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    cancel: tokio_util::sync::CancellationToken,
) -> tokio_util::sync::CancellationToken {
    let observer = metrics.clone();
    scheduler.on_lateness = Some(std::sync::Arc::new(move |late| {
        observer.observe_lateness(late)
    }));
    metrics.set_scheduler_running(true);
    let stopped = tokio_util::sync::CancellationToken::new();
    let done = stopped.clone();
    tasks.spawn(async move {
        // Cleared however the task ends, a panic included: /health says so.
        let _running = SchedulerRunning(metrics);
        scheduler.run_updating(checks, cancel).await;
        done.cancel();
    });
    stopped
}

struct SchedulerRunning(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for SchedulerRunning {
    fn drop(&mut self) {
        self.0.set_scheduler_running(false);
    }
}

//! `lookout validate`: the daemon's own loader, run without starting anything.

use std::path::Path;
use std::process::ExitCode;

pub fn run(checks: &Path, alerts: &Path) -> ExitCode {
    match super::load_or_report(checks, alerts) {
        Ok(config) => {
            println!(
                "ok: {} check(s) in {}, {} channel(s) in {}",
                config.checks.len(),
                checks.display(),
                config.channels.len(),
                alerts.display()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

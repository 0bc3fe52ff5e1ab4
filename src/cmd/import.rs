//! `lookout import gatus|blackbox`: runs a converter of `crate::import`,
//! prints what did not convert (file:line) and the summary on stderr, and
//! writes the checks (and channels) to stdout or under `--out`.

use std::path::Path;
use std::process::ExitCode;

use crate::import::{self, Conversion};

pub fn gatus(paths: &[std::path::PathBuf], out: Option<&Path>) -> ExitCode {
    finish(import::gatus::convert_paths(paths), out, "gatus")
}

pub fn blackbox(config: &Path, prometheus: &Path, out: Option<&Path>) -> ExitCode {
    finish(
        import::blackbox::convert_paths(config, prometheus),
        out,
        "blackbox",
    )
}

fn finish(
    result: Result<Conversion, import::ImportError>,
    out: Option<&Path>,
    stem: &str,
) -> ExitCode {
    let conversion = match result {
        Ok(c) => c,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(super::EXIT_FAILURE);
        }
    };
    for note in &conversion.notes {
        eprintln!("{note}");
    }
    let checks = conversion.checks_yaml();
    let alerts = conversion.alerts_yaml();
    match out {
        None => {
            print!("{checks}");
            if let Some(alerts) = &alerts {
                println!("---");
                print!("{alerts}");
            }
        }
        Some(dir) => {
            let written = write_under(dir, stem, &checks, alerts.as_deref());
            match written {
                Ok(paths) => {
                    for p in paths {
                        eprintln!("wrote {}", p.display());
                    }
                }
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(super::EXIT_FAILURE);
                }
            }
        }
    }
    eprintln!("{}", conversion.summary());
    ExitCode::SUCCESS
}

fn write_under(
    dir: &Path,
    stem: &str,
    checks: &str,
    alerts: Option<&str>,
) -> Result<Vec<std::path::PathBuf>, String> {
    let mut written = Vec::new();
    let mut files = vec![("checks", checks)];
    if let Some(a) = alerts {
        files.push(("alerts", a));
    }
    for (sub, text) in files {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
        let path = d.join(format!("{stem}.yaml"));
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    // The schemas the files' first line names (`../schema/...`), so an
    // editor checks them as they are edited.
    let schema_dir = dir.join("schema");
    std::fs::create_dir_all(&schema_dir)
        .map_err(|e| format!("cannot create {}: {e}", schema_dir.display()))?;
    for kind in [
        crate::schema::SchemaKind::Checks,
        crate::schema::SchemaKind::Alerts,
    ] {
        let path = schema_dir.join(format!("{}.schema.json", kind.name()));
        let text = crate::schema::schema_text(kind) + "\n";
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

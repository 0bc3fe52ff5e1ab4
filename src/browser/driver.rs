//! A local `chromedriver` owned by the probe: started on a free loopback port
//! when the first browser check runs, restarted if it dies, stopped (with
//! everything it started) on shutdown.
//!
//! chromedriver runs in a process group of its own, and the Chromium it
//! launches stays in that group, so stopping it is one `killpg`: SIGTERM,
//! a grace period, then SIGKILL. Its output is discarded (it logs to our
//! stderr otherwise, one line per session); the browser's errors reach the
//! result through WebDriver.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::limits;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("chromedriver is not on PATH (install chromium-driver, or give --webdriver URL)")]
    NotFound,
    #[error("cannot start chromedriver: {0}")]
    Spawn(std::io::Error),
    #[error("chromedriver did not answer on 127.0.0.1:{port} within {secs}s")]
    NotReady { port: u16, secs: u64 },
    #[error("chromedriver exited at start ({0})")]
    Exited(String),
}

/// A running chromedriver.
pub struct LocalDriver {
    child: Child,
    port: u16,
    /// Reaped: its pid (and group id) may belong to someone else now.
    reaped: bool,
    /// Its XDG config and cache home: Chromium's crash handler (which
    /// leaves the process group) keeps its database there, so it is found
    /// by this path, and nothing is written to the user's ~/.config.
    home: PathBuf,
}

impl LocalDriver {
    /// Starts chromedriver from PATH on a free loopback port and waits until
    /// it accepts connections.
    pub async fn start() -> Result<LocalDriver, DriverError> {
        let binary = find_on_path(&["chromedriver"]).ok_or(DriverError::NotFound)?;
        // The port is free when we look; another process could take it
        // before chromedriver binds it, so a failed start tries again.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port().map_err(DriverError::Spawn)?;
            match Self::start_on(&binary, port).await {
                Ok(driver) => return Ok(driver),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or(DriverError::NotFound))
    }

    async fn start_on(binary: &Path, port: u16) -> Result<LocalDriver, DriverError> {
        use std::os::unix::process::CommandExt;
        let home =
            std::env::temp_dir().join(format!("lookout-chromedriver-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&home).map_err(DriverError::Spawn)?;
        let spawned = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Chromium and its helpers join it, and
            // one killpg stops them all.
            .process_group(0)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&home);
                return Err(DriverError::Spawn(error));
            }
        };
        let mut driver = LocalDriver {
            child,
            port,
            reaped: false,
            home,
        };
        let deadline = tokio::time::Instant::now() + limits::CHROMEDRIVER_READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.child.try_wait() {
                return Err(DriverError::Exited(status.to_string()));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                tracing::debug!(port, pid = driver.child.id(), "chromedriver started");
                return Ok(driver);
            }
            if tokio::time::Instant::now() >= deadline {
                driver.kill();
                return Err(DriverError::NotReady {
                    port,
                    secs: limits::CHROMEDRIVER_READY_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (reaps it if it exited).
    /// A chromedriver that died leaves its browsers orphaned in its group:
    /// they are killed then (a group id is not reused while members live).
    pub fn is_alive(&mut self) -> bool {
        if self.reaped {
            return false;
        }
        match self.child.try_wait() {
            Ok(None) => true,
            _ => {
                let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
                self.reaped = true;
                self.forget_home();
                false
            }
        }
    }

    /// SIGTERM to the group, a grace period, then SIGKILL; reaps the child.
    pub async fn stop(mut self) {
        if self.reaped {
            return;
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + limits::CHROMEDRIVER_STOP_GRACE;
        while tokio::time::Instant::now() < deadline {
            if !self.is_alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// SIGKILL to the whole group (chromedriver and every browser it
    /// started), then reaps chromedriver.
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
        self.forget_home();
    }

    /// Kills what still runs from its home (crash handlers), removes it.
    fn forget_home(&self) {
        kill_browser_of_profile(&self.home);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl Drop for LocalDriver {
    fn drop(&mut self) {
        // Stopping is idempotent: a group already gone is ESRCH, ignored.
        self.kill();
    }
}

/// A port nobody listens on right now, on the loopback interface.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The first of `names` found on PATH.
pub fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Kills the Chromium that runs with the profile `dir` (or, for a
/// chromedriver's home, its crash handlers), and their descendants: a
/// browser that hung and would not close through WebDriver.
/// Returns how many processes were signalled.
pub fn kill_browser_of_profile(dir: &Path) -> usize {
    // Every process whose command line names `dir`: the browser has
    // `--user-data-dir=DIR`, crash handlers `--database=DIR/...`.
    let dir = dir.display().to_string();
    let processes = list_processes();
    let mut doomed: Vec<i32> = processes
        .iter()
        .filter(|p| !p.zombie && p.cmdline.iter().any(|arg| arg.contains(&dir)))
        .map(|p| p.pid)
        .collect();
    // Their descendants too (renderers, the zygote, the GPU process).
    let mut i = 0;
    while i < doomed.len() && doomed.len() < processes.len() {
        let parent = doomed[i];
        for p in &processes {
            if p.ppid == parent && !p.zombie && !doomed.contains(&p.pid) {
                doomed.push(p.pid);
            }
        }
        i += 1;
    }
    for pid in &doomed {
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    doomed.len()
}

/// One process as /proc shows it.
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    /// Its process group.
    pub pgid: i32,
    /// Exited, waiting to be reaped: not running.
    pub zombie: bool,
    pub cmdline: Vec<String>,
}

/// Every process of the machine (Linux /proc); empty elsewhere.
pub fn list_processes() -> Vec<ProcessInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name may hold spaces and parentheses: the fields
        // after the last ')' are fixed.
        let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| {
            rest.split_whitespace()
                .take(4)
                .map(str::to_string)
                .collect::<Vec<_>>()
        }) else {
            continue;
        };
        // state, ppid, pgrp
        let (Some(state), Some(ppid), Some(pgid)) = (
            fields.first(),
            fields.get(1).and_then(|p| p.parse::<i32>().ok()),
            fields.get(2).and_then(|p| p.parse::<i32>().ok()),
        ) else {
            continue;
        };
        let zombie = state == "Z" || state == "X";
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| {
                bytes
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ProcessInfo {
            pid,
            ppid,
            pgid,
            zombie,
            cmdline,
        });
    }
    out
}

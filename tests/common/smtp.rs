//! `tests/smtp_sink.py` (aiosmtpd) as a real SMTP server for tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `tests/smtp_sink.py` as a child process; SIGTERM (then SIGKILL) on drop.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    pub fn start(args: &[&str]) -> Sink {
        Sink::start_on(0, args)
    }

    pub fn start_on(port: u16, args: &[&str]) -> Sink {
        require_aiosmtpd();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("sink.log")).unwrap();
        let mut child = Command::new("python3")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("tests/smtp_sink.py")
            .arg("--port")
            .arg(port.to_string())
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start python3 tests/smtp_sink.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        let mut sink = Sink {
            child,
            port: 0,
            dir,
        };
        match line.trim().strip_prefix("ready ").map(str::parse::<u16>) {
            Some(Ok(port)) => sink.port = port,
            _ => panic!(
                "smtp_sink.py did not start (said {line:?}); its log:\n{}",
                sink.log()
            ),
        }
        sink
    }

    pub fn url(&self) -> String {
        format!("smtp+insecure://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sink.log")).unwrap_or_default()
    }

    /// Every message received so far: (raw .eml, envelope .json), in order.
    pub fn messages(&self) -> Vec<(String, serde_json::Value)> {
        let out = self.dir.path().join("out");
        let mut emls: Vec<PathBuf> = std::fs::read_dir(&out)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        emls.sort();
        emls.into_iter()
            .map(|eml| {
                let raw = std::fs::read_to_string(&eml).unwrap();
                let meta = std::fs::read_to_string(eml.with_extension("json")).unwrap();
                (raw, serde_json::from_str(&meta).unwrap())
            })
            .collect()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails (never skips) when the sink cannot run, saying how to fix it.
pub fn require_aiosmtpd() {
    let status = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(_) => panic!(
            "the email tests need the Python package aiosmtpd: run scripts/test, which installs it (or: python3 -m pip install aiosmtpd)"
        ),
        Err(e) => panic!("the email tests need python3 with aiosmtpd ({e}): run scripts/test"),
    }
}

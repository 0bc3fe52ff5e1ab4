//! A real PostgreSQL server for tests, on loopback, thrown away after.
//!
//! With `LOOKOUT_TEST_POSTGRES` set (a URL to a server the test run
//! started, as `scripts/test` does), each test gets a database of its own
//! on it. Without, each test starts its own server: `initdb` in a temporary
//! directory and `postgres` on a free loopback port, as the `postgres` user
//! when run as root (PostgreSQL refuses to run as root), stopped when the
//! test's handle drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A database a test may use, empty; its server lives as long as this.
pub(crate) struct TestDatabase {
    pub(crate) url: String,
    _server: Option<Server>,
}

/// Where the binaries are: `pg_config --bindir`, else the newest under
/// /usr/lib/postgresql (Debian's layout), else the PATH.
fn bin_dir() -> PathBuf {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_default()
}

fn as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program args...`, as the `postgres` user when we are root.
fn command(program: &Path, args: &[&str]) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

struct Server {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Child,
}

impl Server {
    fn start() -> (Server, u16) {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory for PostgreSQL");
        if as_root() {
            let user = nix::unistd::User::from_name("postgres")
                .ok()
                .flatten()
                .expect("running as root, the tests need the `postgres` user to run PostgreSQL");
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .expect("the temporary directory handed to the postgres user");
        }
        let data = dir.path().join("data");
        let data = data.to_string_lossy().to_string();
        let initdb = command(
            &bin.join("initdb"),
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "lookout",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .stdout(Stdio::null())
        .output()
        .expect("initdb runs (is PostgreSQL installed?)");
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let socket_dir = dir.path().to_string_lossy().to_string();
        let port_text = port.to_string();
        let child = command(
            &bin.join("postgres"),
            &[
                "-D",
                &data,
                "-p",
                &port_text,
                "-k",
                &socket_dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts");
        (Server { dir, bin, child }, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = command(
            &self.bin.join("pg_ctl"),
            &["stop", "-D", &data.to_string_lossy(), "-m", "immediate"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 30 s) until `url` takes connections.
async fn wait_ready(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok(_) => return,
            Err(error) => {
                assert!(
                    Instant::now() < deadline,
                    "PostgreSQL at {url} did not come up: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// An empty database for one test.
pub(crate) async fn fresh() -> TestDatabase {
    if let Ok(server) = std::env::var("LOOKOUT_TEST_POSTGRES") {
        let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .expect("the server LOOKOUT_TEST_POSTGRES names takes connections");
        tokio::spawn(connection);
        let name = format!("lookout_{}", uuid::Uuid::now_v7().simple());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("a database for the test");
        let mut url = url::Url::parse(&server).expect("LOOKOUT_TEST_POSTGRES is a URL");
        url.set_path(&format!("/{name}"));
        return TestDatabase {
            url: url.to_string(),
            _server: None,
        };
    }
    let (server, port) = Server::start();
    let url = format!("postgres://lookout@127.0.0.1:{port}/postgres?sslmode=disable");
    wait_ready(&url).await;
    TestDatabase {
        url,
        _server: Some(server),
    }
}

//! The `icmp` kind: echo requests to 127.0.0.1 and ::1 (raw sockets, as
//! root), the same inside a network namespace the test makes where ping
//! sockets are allowed (datagram sockets), and, in that namespace, an
//! address that never answers: a veth pair whose far end drops every frame.
//!
//! Raw sockets and namespaces need root (CI runs as root); without it these
//! tests fail saying so rather than passing silently.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::ConfigDirs;
use lookout::result::{Outcome, ProbeResult};

/// The address inside the test namespace that nothing answers (TEST-NET-1,
/// reachable only through the namespace's own veth pair).
const SILENT_ADDRESS: &str = "192.0.2.2";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the icmp tests need root: raw ICMP sockets and network namespaces (run them as root, as CI does)"
    );
}

async fn probe(icmp: impl Into<String>, extra: &'static str) -> ProbeResult {
    let icmp = icmp.into();
    ConfigDirs::new(&format!(
        "checks:\n  - name: ping\n    icmp: {icmp}\n    every: 1m\n{extra}"
    ))
    .run_first()
    .await
}

fn assert_all_replied(result: &ProbeResult, address: &str, socket: &str) {
    assert_eq!(
        (result.outcome, result.error.as_deref()),
        (Outcome::Ok, None),
        "{result:?}"
    );
    let figures = result.icmp.as_ref().expect("icmp figures");
    assert_eq!(
        (
            figures.address.as_str(),
            figures.socket.as_str(),
            figures.sent,
            figures.received
        ),
        (address, socket, 3, 3),
        "{figures:?}"
    );
    assert_eq!(figures.loss_percent, 0.0);
    let (min, avg, max) = (
        figures.rtt_min_ms.expect("min"),
        figures.rtt_avg_ms.expect("avg"),
        figures.rtt_max_ms.expect("max"),
    );
    assert!(min > 0.0 && min <= avg && avg <= max, "{figures:?}");
    assert!(
        figures.reply_hop_limit.is_some_and(|h| h > 0),
        "{figures:?}"
    );
}

#[tokio::test]
async fn pinging_ipv4_loopback_reports_round_trips() {
    require_root();
    let result = probe("{ host: 127.0.0.1, interval: 20ms }", "").await;
    assert_all_replied(&result, "127.0.0.1", "raw");
    assert!(
        result
            .notes
            .iter()
            .any(|n| n.contains("3 sent, 3 received (0% loss)")),
        "{:?}",
        result.notes
    );
}

#[tokio::test]
async fn pinging_ipv6_loopback_reports_round_trips() {
    require_root();
    let result = probe("{ host: \"::1\", interval: 20ms, payload_size: 100 }", "").await;
    assert_all_replied(&result, "::1", "raw");
}

/// A network namespace made for one test, with loopback up, ping sockets
/// allowed for root, and a veth pair on which `SILENT_ADDRESS` is routed
/// to a MAC nobody has; deleted (with all it holds) when dropped, even
/// when the test fails.
struct Namespace {
    name: String,
}

impl Namespace {
    fn new() -> Namespace {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lookout-icmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let namespace = Namespace { name };
        for command in [
            "ip link set lo up",
            "sysctl -q -w net.ipv4.ping_group_range=0 0",
            "ip link add lk-near type veth peer name lk-far",
            "ip link set lk-near up",
            "ip link set lk-far up",
            "ip addr add 192.0.2.1/24 dev lk-near",
            "ip neigh add 192.0.2.2 lladdr 02:00:00:00:00:99 dev lk-near nud permanent",
        ] {
            namespace.exec(command);
        }
        namespace
    }

    fn exec(&self, command: &str) {
        let mut args = vec!["netns", "exec", &self.name];
        // `ping_group_range=0 0` is one argument for sysctl.
        match command.strip_prefix("sysctl -q -w ") {
            Some(setting) => args.extend(["sysctl", "-q", "-w", setting]),
            None => args.extend(command.split(' ')),
        }
        ip(&args);
    }

    /// Runs `future` on a thread inside the namespace (a runtime of its own
    /// on that thread, so every socket is opened there).
    fn run<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace's handle");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("entering the test namespace");
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(future)
        })
        .join()
        .expect("the probe thread")
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(status.success(), "`ip {}` failed", args.join(" "));
}

#[test]
fn ping_sockets_are_used_where_the_group_range_allows() {
    require_root();
    let namespace = Namespace::new();
    let v4 = namespace.run(probe("{ host: 127.0.0.1, interval: 20ms }", ""));
    assert_all_replied(&v4, "127.0.0.1", "datagram");
    let v6 = namespace.run(probe("{ host: \"::1\", interval: 20ms }", ""));
    assert_all_replied(&v6, "::1", "datagram");
}

#[test]
fn an_address_that_never_answers_fails_with_all_lost_within_the_timeout() {
    require_root();
    let namespace = Namespace::new();
    let result = namespace.run(probe(
        format!("{{ host: {SILENT_ADDRESS}, interval: 50ms }}"),
        "    timeout: 1s\n",
    ));
    // `fail`, not `timeout`: the run stopped waiting by itself, before the
    // check's timeout, and counted the requests as lost.
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("no reply from 192.0.2.2: 3 sent, 0 received (100% loss)")
    );
    let figures = result.icmp.expect("icmp figures");
    assert_eq!((figures.sent, figures.received), (3, 0));
    assert_eq!(figures.loss_percent, 100.0);
    assert_eq!(figures.rtt_avg_ms, None);
}

#[test]
fn without_ping_sockets_or_raw_socket_rights_the_error_says_what_is_missing() {
    require_root();
    let namespace = Namespace::new();
    // Ping sockets for no group, and a user without CAP_NET_RAW.
    namespace.exec("sysctl -q -w net.ipv4.ping_group_range=1 0");
    let dirs =
        ConfigDirs::new("checks:\n  - name: ping\n    icmp: { host: 127.0.0.1 }\n    every: 1m\n");
    for dir in [dirs.root.path().to_path_buf(), dirs.checks(), dirs.alerts()] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ])
        .arg(common::lookout_bin())
        .arg("check")
        .arg("--checks")
        .arg(dirs.checks())
        .arg("--alerts")
        .arg(dirs.alerts())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ip netns exec setpriv lookout check");
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains(
            "cannot open an ICMP socket: unprivileged ping sockets are not allowed for group 65534 \
             (net.ipv4.ping_group_range is \"1 0\"), and raw sockets need root or CAP_NET_RAW"
        ),
        "{table}"
    );
}

#[tokio::test]
async fn loss_is_judged_against_packet_loss_below() {
    require_root();
    let result = probe(
        "{ host: 127.0.0.1, count: 2, interval: 20ms }",
        "    expect: { packet_loss_below: 50% }\n",
    )
    .await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
}

#[test]
fn mistakes_are_reported_with_their_position() {
    let dirs = ConfigDirs::new(
        "checks:
  - name: p1
    icmp: { host: 127.0.0.1, count: 1000 }
    every: 1m
  - name: p2
    icmp: { host: \"127.0.0.1:80\", interval: 1ms, payload_size: 9000 }
    every: 1m
  - name: p3
    icmp: { host: 127.0.0.1, count: 50, interval: 1s }
    every: 1m
    timeout: 10s
    expect: { packet_loss_below: 150% }
",
    );
    let errors = match lookout::config::load(&dirs.checks(), &dirs.alerts()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    let text = errors.join("\n");
    for expected in [
        "checks.yaml:3:37: `count` must be at most 100",
        "checks.yaml:6:19: `host` must be a host name or an IP address (no port)",
        "checks.yaml:6:45: `interval` must be at least 10ms",
        "checks.yaml:6:64: `payload_size` must be a whole number of bytes from 0 to 1472",
        "checks.yaml:11:14: `icmp` sends 50 requests 1s apart",
        "checks.yaml:12:34: `packet_loss_below` must be a percentage",
    ] {
        assert!(text.contains(expected), "{expected}\nnot in:\n{text}");
    }
}

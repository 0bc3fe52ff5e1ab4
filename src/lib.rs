//! Lookout: external uptime and synthetic monitoring.
//!
//! Layout, in the order data flows (ARCHITECTURE.md has the whole map):
//! - `config`: checks and alert channels from YAML, validated with positions.
//! - `schedule`: durations, intervals and cron; pure.
//! - `scheduler`: runs every check on its cadence: one queue of deadlines, a task per run.
//! - `probe`: runs one check; `result`: the `ProbeResult` it makes.
//!   (`probe::tls_client` builds every kind's rustls config from
//!   `config::TlsClientOptions`; `probe::failure` says errors in words.)
//! - `browser`: browser flows over WebDriver (chromedriver, session pool).
//! - `transport`: carries results from a probe to the aggregator; a remote
//!   probe's `spool` (on disk) and `uplink` (HTTP to its aggregator).
//! - `hub`: the aggregator's side of its remote probes (specs, run-now).
//! - `aggregator`: stores results, applies `rules` and the alert `policy`,
//!   records incident events; `clock`: the time it judges by.
//! - `alert`: alert events, their rendering, email and webhook delivery.
//! - `rules`: the pure rule engine (results and time in, state changes out).
//! - `policy`: the pure alert policy (holds, flapping, reminders).
//! - `heartbeat`: push checks (`/ping/{token}`), turned into results.
//! - `storage`: durable state as traits by consumer, SQLite in
//!   `storage::sqlite`; `rollup`: hourly latency histograms.
//! - `status`: the status page's figures and HTML; `metrics`: Prometheus;
//!   `kind_metrics`: the icmp and grpc kinds' series. The page's groups,
//!   announcements, Atom feed, badges and one check's history are in
//!   `status` too, its settings in `config::page`.
//! - `api`: the aggregator's HTTP surface; `listener`: bounded serving of it;
//!   `reload`: config reloads on SIGHUP and file changes; `replica`: this
//!   process among the replicas on one database (leader lease, registry).
//! - `cmd`: the subcommands; `limits`: every explicit limit, with its reason.
//! - `schema`: JSON Schemas of the YAML files (`lookout schema`), kept true
//!   to `config` by tests/schema.rs.
//! - `import`: other monitors' configuration (Gatus, blackbox_exporter) turned
//!   into checks files (`lookout import`).
//! - `run_now`: the aggregator's run-now requests (fast confirmation), run
//!   by a probe beside the checks' schedule.
//! - `memory`: the allocator's free memory handed back (fewer arenas, a
//!   periodic trim), so RSS stays close to what the process holds.

#![warn(unreachable_pub)]

pub mod aggregator;
pub mod alert;
pub mod api;
pub mod browser;
pub mod clock;
pub mod cmd;
pub mod config;
pub(crate) mod heartbeat;
pub mod hub;
pub mod import;
pub(crate) mod kind_metrics;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod metrics;
pub(crate) mod policy;
pub mod probe;
pub(crate) mod reload;
pub mod replica;
pub mod result;
pub(crate) mod rollup;
pub mod rules;
pub mod run_now;
pub(crate) mod schedule;
pub mod scheduler;
pub mod schema;
pub(crate) mod spool;
pub mod status;
pub mod storage;
pub mod transport;
pub(crate) mod uplink;

/// rustls needs one process-wide crypto provider; we use ring (lighter to
/// build than aws-lc). Idempotent.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// This machine's name, for the `probe` field of results.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

//! Prometheus metrics (DESIGN.md, "Metrics"): what the probes found, and
//! the four golden signals of Lookout itself.
//!
//! Two kinds of series live here. Counters and histograms (`http_*`,
//! `lookout_probe_duration_seconds`, `lookout_probe_results_total`,
//! `lookout_scheduler_lateness_seconds`) accumulate in a
//! `prometheus_client` registry as events happen. Gauges that describe the
//! present (the latest result of each check in each region, the check
//! states, backlogs, ages) are built afresh at every scrape from a
//! [`Snapshot`], so a check that was removed from the config stops being
//! exported at once and nothing can go stale in a cache.
//!
//! Label sets stay bounded whatever arrives: HTTP series carry the matched
//! route *template* (unmatched paths share one value), a method outside the
//! standard ones is `OTHER`, and probe series are keyed by configured check
//! and region names only.
//!
//! `prometheus_client` writes OpenMetrics. Prometheus negotiates that
//! format; anything else (curl, `promtool check metrics`) gets the classic
//! text format 0.0.4, translated from it by [`to_prometheus_text`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::result::{Outcome, ProbeResult};
use crate::rules::Status;

mod browser_pages;
pub mod parts;
mod text;

pub use parts::Scope;
pub use text::{respond, to_prometheus_text};

/// Bucket bounds (seconds) for probe run times: from a 5 ms loopback check to
/// a 30 s browser flow.
const PROBE_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0,
];
/// Bucket bounds (seconds) for the API: most answers take a millisecond;
/// the probes' long-polls take up to 25 s.
const API_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];
/// Bucket bounds (seconds) for how late a scheduled run started.
const LATENESS_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// The `route` label of requests no route matched (404s, scanners).
const UNMATCHED_ROUTE: &str = "unmatched";

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckRegion {
    check: String,
    region: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckRegionOutcome {
    check: String,
    region: String,
    outcome: &'static str,
}

/// Counts the browser sessions in use, wherever they are kept.
pub type SessionsInUse = Box<dyn Fn() -> u64 + Send + Sync>;

/// A remote probe's figures about its results on their way to the
/// aggregator, read at every scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkFigures {
    /// Each `--aggregator` URL, and whether it is the one in use.
    pub aggregators: Vec<(String, bool)>,
    /// Moves from one aggregator to the next.
    pub aggregator_failovers: u64,
    pub made: u64,
    pub sent: u64,
    pub spooled: u64,
    pub rejected: u64,
    pub dropped_spool_full: u64,
    pub dropped_spool_not_writable: u64,
    pub dropped_queue_full: u64,
    pub spool_bytes: u64,
    pub spool_files: u64,
    pub in_memory: u64,
    pub spool_writable: bool,
}

/// Where a remote probe's [`UplinkFigures`] come from.
pub type UplinkSource = Box<dyn Fn() -> UplinkFigures + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AggregatorLabel {
    aggregator: String,
}

/// The series that accumulate. One per process, shared by the API
/// middleware, the aggregator (results) and the scheduler (lateness).
pub struct Metrics {
    registry: Registry,
    /// The accumulating series with a `check` label, apart, so that
    /// `/metrics?part=lookout` need not encode them.
    check_registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram>,
    http_in_progress: Gauge,
    probe_duration: Family<CheckRegion, Histogram>,
    probe_results: Family<CheckRegionOutcome, Counter>,
    scheduler_lateness: Histogram,
    /// The newest result of each (check, region), for the `probe_*` gauges:
    /// its figures (about 170 bytes), or the whole result boxed (#19).
    latest: Mutex<HashMap<(String, String), Latest>>,
    /// Where browser sessions are counted (set once a browser pool exists).
    browser_sessions: std::sync::OnceLock<SessionsInUse>,
    /// A remote probe's uplink figures (unset elsewhere: no such series).
    uplink: std::sync::OnceLock<UplinkSource>,
    /// The local scheduler, for `/health`: running or not, and when a check
    /// last started (unix ms; 0: never).
    scheduler_running: AtomicBool,
    scheduler_last_start_ms: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let mut check_registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered by Lookout, by method, matched route template and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<RouteLabels, Histogram>::new_with_constructor(api_histogram as fn() -> _);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by method and matched route template",
            Unit::Seconds,
            http_duration.clone(),
        );
        let http_in_progress = Gauge::default();
        registry.register(
            "http_in_progress_requests",
            "HTTP requests being answered now",
            http_in_progress.clone(),
        );
        let probe_duration =
            Family::<CheckRegion, Histogram>::new_with_constructor(probe_histogram as fn() -> _);
        check_registry.register_with_unit(
            "lookout_probe_duration",
            "Run time of each probe run, by check and region (for p50/p95/p99)",
            Unit::Seconds,
            probe_duration.clone(),
        );
        let probe_results = Family::<CheckRegionOutcome, Counter>::default();
        check_registry.register(
            "lookout_probe_results",
            "Probe results received, by check, region and outcome (ok, fail, timeout, error)",
            probe_results.clone(),
        );
        let scheduler_lateness = Histogram::new(LATENESS_BUCKETS);
        registry.register_with_unit(
            "lookout_scheduler_lateness",
            "How late scheduled runs started against their deadline (this process's scheduler)",
            Unit::Seconds,
            scheduler_lateness.clone(),
        );
        Metrics {
            registry,
            check_registry,
            http_requests,
            http_duration,
            http_in_progress,
            probe_duration,
            probe_results,
            scheduler_lateness,
            latest: Mutex::new(HashMap::new()),
            browser_sessions: std::sync::OnceLock::new(),
            uplink: std::sync::OnceLock::new(),
            scheduler_running: AtomicBool::new(false),
            scheduler_last_start_ms: AtomicI64::new(0),
        }
    }

    /// Where `lookout_browser_sessions_in_use` comes from; the first call wins.
    pub fn count_browser_sessions_with(&self, count: SessionsInUse) {
        let _ = self.browser_sessions.set(count);
    }

    /// Where a remote probe's `lookout_uplink_*` and spool series come
    /// from; the first call wins. Without it they are not exported.
    pub fn report_uplink_with(&self, source: UplinkSource) {
        let _ = self.uplink.set(source);
    }

    pub fn browser_sessions_in_use(&self) -> u64 {
        self.browser_sessions.get().map_or(0, |count| count())
    }

    /// The local scheduler started (`true`) or stopped.
    pub fn set_scheduler_running(&self, running: bool) {
        self.scheduler_running.store(running, Ordering::Relaxed);
    }

    /// Whether this process runs a scheduler that is alive, and when it
    /// last started a check; `None` when it has none (an aggregator alone).
    pub fn scheduler(&self) -> Option<(bool, Option<DateTime<Utc>>)> {
        let running = self.scheduler_running.load(Ordering::Relaxed);
        let last = self.scheduler_last_start_ms.load(Ordering::Relaxed);
        if !running && last == 0 {
            return None;
        }
        Some((
            running,
            DateTime::from_timestamp_millis(last).filter(|_| last > 0),
        ))
    }

    /// A result was accepted (stored) by the aggregator; the newest of each
    /// check and region is kept for the `probe_*` gauges.
    pub fn observe_result(&self, result: ProbeResult) {
        let key = CheckRegion {
            check: result.check.clone(),
            region: result.region.clone(),
        };
        self.probe_duration
            .get_or_create(&key)
            .observe(result.duration_ms / 1000.0);
        self.probe_results
            .get_or_create(&CheckRegionOutcome {
                check: result.check.clone(),
                region: result.region.clone(),
                outcome: result.outcome.as_str(),
            })
            .inc();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let slot = latest.entry((result.check.clone(), result.region.clone()));
        match slot {
            std::collections::hash_map::Entry::Occupied(mut held) => {
                if held.get().started_at() <= result.started_at {
                    *held.get_mut() = Latest::of(result);
                }
            }
            std::collections::hash_map::Entry::Vacant(empty) => {
                empty.insert(Latest::of(result));
            }
        }
    }

    /// Drops the series of checks no longer configured (after a reload), so
    /// removed checks do not linger in every scrape.
    pub fn retain_checks(&self, keep: &dyn Fn(&str) -> bool) {
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<(String, String)> = latest
            .keys()
            .filter(|(check, _)| !keep(check))
            .cloned()
            .collect();
        for (check, region) in gone {
            latest.remove(&(check.clone(), region.clone()));
            let key = CheckRegion {
                check: check.clone(),
                region: region.clone(),
            };
            self.probe_duration.remove(&key);
            for outcome in Outcome::ALL {
                self.probe_results.remove(&CheckRegionOutcome {
                    check: check.clone(),
                    region: region.clone(),
                    outcome: outcome.as_str(),
                });
            }
        }
    }

    /// How late a scheduled run started.
    pub fn observe_lateness(&self, late: std::time::Duration) {
        self.scheduler_lateness.observe(late.as_secs_f64());
        self.scheduler_last_start_ms
            .store(crate::clock::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// The newest result of every (check, region) of the checks `keep`
    /// takes (the status page wants its browser checks' only: cloning all
    /// 10,000 to keep a few was most of what it copied, #19).
    pub fn latest_results_of(&self, keep: &dyn Fn(&str) -> bool) -> Vec<ProbeResult> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest
            .iter()
            .filter(|((check, _), _)| keep(check))
            .map(|((check, region), held)| held.to_result(check, region))
            .collect()
    }

    /// The newest result of every (check, region) seen.
    pub fn latest_results(&self) -> Vec<ProbeResult> {
        self.latest_results_of(&|_| true)
    }

    /// The whole exposition: the accumulated series and `snapshot`'s, in
    /// OpenMetrics text.
    pub fn encode(&self, snapshot: &Snapshot) -> Result<String, std::fmt::Error> {
        self.encode_part(snapshot, &Scope::All)
    }

    /// The part `scope` of the exposition (`parts.rs`); `snapshot` should
    /// be narrowed to it first (`Snapshot::narrow`), which only saves work.
    pub fn encode_part(
        &self,
        snapshot: &Snapshot,
        scope: &Scope,
    ) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        if *scope == Scope::All {
            encode_registry(&mut out, &self.registry)?;
            encode_registry(&mut out, &self.check_registry)?;
            encode_registry(&mut out, &snapshot.registry())?;
            if let Some(source) = self.uplink.get() {
                encode_registry(&mut out, &uplink_registry(&source()))?;
            }
            encode_eof(&mut out)?;
            return Ok(out);
        }
        let mut whole = String::new();
        if scope.has_own() {
            encode_registry(&mut whole, &self.registry)?;
        }
        if scope.has_checks() {
            encode_registry(&mut whole, &self.check_registry)?;
        }
        encode_registry(&mut whole, &snapshot.registry())?;
        if scope.has_own()
            && let Some(source) = self.uplink.get()
        {
            encode_registry(&mut whole, &uplink_registry(&source()))?;
        }
        parts::filter_into(&mut out, &whole, scope);
        encode_eof(&mut out)?;
        Ok(out)
    }
}

/// The probe-side series: counters of what became of the results made
/// (accurate whatever failed: made = sent + rejected + dropped + waiting,
/// give or take a batch in flight), and gauges of the spool.
fn uplink_registry(figures: &UplinkFigures) -> Registry {
    let mut registry = Registry::default();
    let counter = |value: u64| {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        counter
    };
    registry.register(
        "lookout_uplink_results_made",
        "Results this probe's checks made",
        counter(figures.made),
    );
    registry.register(
        "lookout_uplink_results_sent",
        "Results the aggregator took (a 2xx for their batch), not counting those it refused one by one",
        counter(figures.sent),
    );
    registry.register(
        "lookout_uplink_results_spooled",
        "Results written to the spool on disk (those kept in memory while it could not be written, once they reach it)",
        counter(figures.spooled),
    );
    registry.register(
        "lookout_uplink_results_rejected",
        "Results the aggregator refused for good: their batch (kept in the spool's rejected/), or one by one",
        counter(figures.rejected),
    );
    let dropped = Family::<ReasonLabel, Counter>::default();
    for (reason, value) in [
        ("spool_full", figures.dropped_spool_full),
        ("spool_not_writable", figures.dropped_spool_not_writable),
        ("queue_full", figures.dropped_queue_full),
    ] {
        dropped.get_or_create(&ReasonLabel { reason }).inc_by(value);
    }
    registry.register(
        "lookout_uplink_results_dropped",
        "Results lost, by reason: spool_full (the spool at its bound dropped its oldest, or a full disk could not take the memory queue at stop), spool_not_writable (an unwritable spool could not take the memory queue at stop), queue_full (the memory queue overflowed: spool unwritable and aggregator unreachable)",
        dropped,
    );
    let gauge = |value: u64| {
        let gauge = Gauge::<i64>::default();
        gauge.set(gauge_value(value));
        gauge
    };
    registry.register_with_unit(
        "lookout_spool",
        "Bytes of the spool's files on disk",
        Unit::Bytes,
        gauge(figures.spool_bytes),
    );
    registry.register(
        "lookout_spool_files",
        "Files in the spool (batches waiting, and sent ones that could not be removed yet)",
        gauge(figures.spool_files),
    );
    registry.register(
        "lookout_spool_writable",
        "1 while the spool takes writes, 0 while results wait in memory instead",
        gauge(u64::from(figures.spool_writable)),
    );
    registry.register(
        "lookout_uplink_memory_queue_results",
        "Results waiting in memory because the spool could not take them",
        gauge(figures.in_memory),
    );
    let in_use = Family::<AggregatorLabel, Gauge>::default();
    for (aggregator, used) in &figures.aggregators {
        let label = AggregatorLabel {
            aggregator: aggregator.clone(),
        };
        in_use.get_or_create(&label).set(i64::from(*used));
    }
    registry.register(
        "lookout_uplink_aggregator_in_use",
        "1 for the aggregator (of --aggregator) this probe uses now, 0 for the others",
        in_use,
    );
    registry.register(
        "lookout_uplink_aggregator_failovers",
        "Times this probe moved from one aggregator to the next (refused, timed out, TLS error, 5xx)",
        counter(figures.aggregator_failovers),
    );
    registry
}

fn api_histogram() -> Histogram {
    Histogram::new(API_BUCKETS)
}

fn probe_histogram() -> Histogram {
    Histogram::new(PROBE_BUCKETS)
}

/// A method as a bounded label value.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Axum middleware (installed with `Router::layer`, so the matched route is
/// known): counts, times and tracks every request.
pub async fn track_http(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED_ROUTE.to_string());
    let method = method_label(request.method());
    let started = std::time::Instant::now();
    metrics.http_in_progress.inc();
    // Decrements even when the client goes away and the future is dropped.
    let _in_progress = InProgress(&metrics.http_in_progress);
    let response = next.run(request).await;
    metrics
        .http_duration
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

struct InProgress<'a>(&'a Gauge);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The newest result of a (check, region), as the present's gauges read
/// it. Most results are kept as the figures those gauges show (about 170
/// bytes, where a whole result is 672 and its texts); icmp, grpc and
/// browser results whole, since their own series (and the status page's
/// browser cards) read the rest.
#[derive(Debug)]
enum Latest {
    Figures(LatestFigures),
    Whole(Box<ProbeResult>),
}

#[derive(Debug)]
struct LatestFigures {
    id: uuid::Uuid,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    outcome: Outcome,
    status: Option<u16>,
    phases_ms: crate::result::Phases,
    cert_expiry: Option<DateTime<Utc>>,
    address: Option<Box<str>>,
    ip_family: Option<Box<str>>,
    http_version: Option<Box<str>>,
}

impl Latest {
    fn of(result: ProbeResult) -> Latest {
        let whole = result.icmp.is_some()
            || result.grpc.is_some()
            || result.page.is_some()
            || !result.steps.is_empty()
            || result.browser != crate::result::BrowserFindings::default();
        if whole {
            return Latest::Whole(Box::new(result));
        }
        Latest::Figures(LatestFigures {
            id: result.id,
            started_at: result.started_at,
            duration_ms: result.duration_ms,
            outcome: result.outcome,
            status: result.status,
            phases_ms: result.phases_ms,
            cert_expiry: result.cert_expiry,
            address: result.address.map(String::into_boxed_str),
            ip_family: result.ip_family.map(String::into_boxed_str),
            http_version: result.http_version.map(String::into_boxed_str),
        })
    }

    fn started_at(&self) -> DateTime<Utc> {
        match self {
            Latest::Figures(figures) => figures.started_at,
            Latest::Whole(result) => result.started_at,
        }
    }

    /// A result again: whole, or the figures with nothing else (no error
    /// text, no notes: the gauges do not show them).
    fn to_result(&self, check: &str, region: &str) -> ProbeResult {
        let figures = match self {
            Latest::Whole(result) => return ProbeResult::clone(result),
            Latest::Figures(figures) => figures,
        };
        ProbeResult {
            status: figures.status,
            phases_ms: figures.phases_ms.clone(),
            cert_expiry: figures.cert_expiry,
            address: figures.address.as_deref().map(str::to_string),
            ip_family: figures.ip_family.as_deref().map(str::to_string),
            http_version: figures.http_version.as_deref().map(str::to_string),
            ..ProbeResult::bare(
                figures.id,
                check.to_string(),
                region.to_string(),
                String::new(),
                figures.started_at,
                figures.duration_ms,
                figures.outcome,
            )
        }
    }
}

/// The present, as one scrape reports it: gathered by the caller (which may
/// await storage), then encoded with the accumulated series.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every configured check: name, target (secrets masked) and state.
    pub checks: Vec<CheckSnapshot>,
    /// The newest result of each (check, region) of configured checks.
    pub results: Vec<ProbeResult>,
    /// Each region: when its latest result arrived, and its spool backlog.
    pub regions: Vec<RegionSnapshot>,
    /// Alert deliveries not yet delivered nor dead.
    pub outbox_pending: Option<u64>,
    /// Browser sessions in use in this process.
    pub browser_sessions_in_use: u64,
    /// Results waiting in this process's own spool (a remote probe).
    pub local_spool_pending: Option<u64>,
    /// Heartbeat pings with a token no check has.
    pub unknown_pings: u64,
    /// Heartbeat pings counted but not stored: too soon after the last.
    pub coalesced_pings: u64,
    pub now: DateTime<Utc>,
}

#[derive(Debug)]
pub struct CheckSnapshot {
    pub name: String,
    /// `http`, `tcp`, ...: the HTTP phase series are for http checks only.
    pub kind: &'static str,
    pub target: String,
    pub status: Status,
}

#[derive(Debug)]
pub struct RegionSnapshot {
    pub region: String,
    pub last_result: Option<DateTime<Utc>>,
    pub spool_pending: Option<u64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeTarget {
    check: String,
    region: String,
    target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbePhase {
    check: String,
    region: String,
    target: String,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabel {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckStateLabels {
    check: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegionLabel {
    region: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// FNV-1a, 32 bits: what `probe_ip_addr_hash` reports of an address.
fn fnv1a_32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
    })
}

impl Snapshot {
    /// Keeps only the checks (and their results) of `scope`.
    pub fn narrow(&mut self, scope: &Scope) {
        self.checks.retain(|c| scope.keeps(Some(&c.name)));
        self.results.retain(|r| scope.keeps(Some(&r.check)));
    }

    fn registry(&self) -> Registry {
        let mut registry = Registry::default();
        let checks: HashMap<&str, &CheckSnapshot> =
            self.checks.iter().map(|c| (c.name.as_str(), c)).collect();

        let success = Family::<ProbeTarget, Gauge>::default();
        let duration = Family::<ProbeTarget, FloatGauge>::default();
        let status_code = Family::<ProbeTarget, Gauge>::default();
        let phases = Family::<ProbePhase, FloatGauge>::default();
        let cert_expiry = Family::<ProbeTarget, Gauge>::default();
        let dns_lookup = Family::<ProbeTarget, FloatGauge>::default();
        let ip_protocol = Family::<ProbeTarget, Gauge>::default();
        let ip_addr_hash = Family::<ProbeTarget, Gauge>::default();
        let http_version = Family::<ProbeTarget, FloatGauge>::default();
        for result in &self.results {
            let Some(check) = checks.get(result.check.as_str()) else {
                continue;
            };
            let labels = ProbeTarget {
                check: result.check.clone(),
                region: result.region.clone(),
                target: check.target.clone(),
            };
            success
                .get_or_create(&labels)
                .set(i64::from(result.outcome == Outcome::Ok));
            duration
                .get_or_create(&labels)
                .set(result.duration_ms / 1000.0);
            if let Some(status) = result.status {
                status_code.get_or_create(&labels).set(i64::from(status));
            }
            let p = &result.phases_ms;
            let http_phases = if check.kind == "http" {
                vec![
                    ("resolve", p.dns),
                    ("connect", p.connect),
                    ("tls", p.tls),
                    ("processing", p.ttfb),
                    ("transfer", p.transfer),
                ]
            } else {
                Vec::new()
            };
            for (phase, ms) in http_phases {
                if let Some(ms) = ms {
                    phases
                        .get_or_create(&ProbePhase {
                            check: labels.check.clone(),
                            region: labels.region.clone(),
                            target: labels.target.clone(),
                            phase,
                        })
                        .set(ms / 1000.0);
                }
            }
            if let Some(expiry) = result.cert_expiry {
                cert_expiry.get_or_create(&labels).set(expiry.timestamp());
            }
            if let Some(ms) = p.dns {
                dns_lookup.get_or_create(&labels).set(ms / 1000.0);
            }
            if let Some(family) = result.ip_family.as_deref() {
                let protocol = if family == "ipv6" { 6 } else { 4 };
                ip_protocol.get_or_create(&labels).set(protocol);
            }
            if let Some(address) = result.address.as_deref() {
                ip_addr_hash
                    .get_or_create(&labels)
                    .set(i64::from(fnv1a_32(address.as_bytes())));
            }
            if let Some(version) = result.http_version.as_deref().and_then(|v| v.parse().ok()) {
                http_version.get_or_create(&labels).set(version);
            }
        }
        let browser_results: Vec<&ProbeResult> = self
            .results
            .iter()
            .filter(|r| {
                checks
                    .get(r.check.as_str())
                    .is_some_and(|c| c.kind == "browser")
            })
            .collect();
        browser_pages::register(&mut registry, &browser_results);
        registry.register(
            "probe_success",
            "Whether the latest run succeeded (1) or not (0), as blackbox_exporter",
            success,
        );
        registry.register_with_unit(
            "probe_duration",
            "Run time of the latest run, as blackbox_exporter",
            Unit::Seconds,
            duration,
        );
        registry.register(
            "probe_http_status_code",
            "HTTP status of the latest run, as blackbox_exporter",
            status_code,
        );
        registry.register_with_unit(
            "probe_http_duration",
            "Phases of the latest HTTP run (resolve, connect, tls, processing, transfer); tls is folded into connect for http checks",
            Unit::Seconds,
            phases,
        );
        registry.register(
            "probe_ssl_earliest_cert_expiry",
            "Earliest certificate expiry seen by the latest run, unix seconds",
            cert_expiry,
        );
        registry.register_with_unit(
            "probe_dns_lookup_time",
            "DNS resolution time of the latest run",
            Unit::Seconds,
            dns_lookup,
        );
        crate::kind_metrics::register(&mut registry, &self.results, &checks);
        registry.register(
            "probe_ip_protocol",
            "IP protocol of the address the latest run connected to (4 or 6), as blackbox_exporter",
            ip_protocol,
        );
        registry.register(
            "probe_ip_addr_hash",
            "FNV-1a (32-bit) hash of the address the latest run connected to: changes when the address does",
            ip_addr_hash,
        );
        registry.register(
            "probe_http_version",
            "HTTP version of the latest run's answer (1.1 or 2), as blackbox_exporter",
            http_version,
        );

        let up = Family::<CheckLabel, Gauge>::default();
        let state = Family::<CheckStateLabels, Gauge>::default();
        for check in &self.checks {
            let labels = CheckLabel {
                check: check.name.clone(),
            };
            match check.status {
                Status::Up | Status::Degraded => up.get_or_create(&labels).set(1),
                Status::Down => up.get_or_create(&labels).set(0),
                Status::Unknown => 0,
            };
            for candidate in Status::ALL {
                state
                    .get_or_create(&CheckStateLabels {
                        check: check.name.clone(),
                        state: candidate.as_str(),
                    })
                    .set(i64::from(candidate == check.status));
            }
        }
        registry.register(
            "lookout_check_up",
            "The aggregated state across regions: 1 up (or degraded), 0 down; absent while unknown",
            up,
        );
        registry.register(
            "lookout_check_state",
            "1 for the check's current state (up, degraded, down, unknown), 0 for the others",
            state,
        );

        let age = Family::<RegionLabel, FloatGauge>::default();
        let spool = Family::<RegionLabel, Gauge>::default();
        for region in &self.regions {
            let labels = RegionLabel {
                region: region.region.clone(),
            };
            if let Some(last) = region.last_result {
                let seconds = (self.now - last).num_milliseconds().max(0) as f64 / 1000.0;
                age.get_or_create(&labels).set(seconds);
            }
            if let Some(pending) = region.spool_pending {
                spool
                    .get_or_create(&labels)
                    .set(i64::try_from(pending).unwrap_or(i64::MAX));
            }
        }
        registry.register_with_unit(
            "lookout_region_last_result_age",
            "Time since each region's latest result arrived (saturation: a silent probe)",
            Unit::Seconds,
            age,
        );
        if self.local_spool_pending.is_none() {
            registry.register(
                "lookout_spool_pending",
                "Results waiting in each region's probe spool, as the probe last reported",
                spool,
            );
        } else {
            let own = Gauge::<i64>::default();
            own.set(gauge_value(self.local_spool_pending.unwrap_or(0)));
            registry.register(
                "lookout_spool_pending",
                "Results waiting in this probe for the aggregator (its spool and its memory queue)",
                own,
            );
        }
        if let Some(pending) = self.outbox_pending {
            let outbox = Gauge::<i64>::default();
            outbox.set(gauge_value(pending));
            registry.register(
                "lookout_alert_outbox_pending",
                "Alert deliveries waiting to be sent or retried",
                outbox,
            );
        }
        let browsers = Gauge::<i64>::default();
        browsers.set(gauge_value(self.browser_sessions_in_use));
        registry.register(
            "lookout_browser_sessions_in_use",
            "Browser sessions (WebDriver) open in this process",
            browsers,
        );
        let pings = Counter::<u64>::default();
        pings.inc_by(self.unknown_pings);
        registry.register(
            "lookout_heartbeat_unknown_pings",
            "Heartbeat pings with a token no check has (the tokens are never logged)",
            pings,
        );
        let coalesced = Counter::<u64>::default();
        coalesced.inc_by(self.coalesced_pings);
        registry.register(
            "lookout_heartbeat_coalesced_pings",
            "Heartbeat pings counted but not stored: they came too soon after the last of the same kind",
            coalesced,
        );
        registry
    }
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;

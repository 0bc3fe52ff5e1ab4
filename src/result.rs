//! The result model: what one run of a check produced (`ProbeResult`, its
//! `Outcome`, phase timings, browser steps and page), as it travels from a
//! probe to the aggregator (DESIGN.md, "Result") and is stored, shown and
//! counted. A model only: running checks is `probe`'s, and nothing here
//! imports it, so storage, the API, metrics and the browser name a result
//! without depending on the runners.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Ran, and every expectation held.
    Ok,
    /// Ran, and an expectation failed (status, body, ...).
    Fail,
    /// Did not finish within the check's timeout.
    Timeout,
    /// Could not run: DNS, refused connection, TLS, ...
    #[default]
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [Outcome::Ok, Outcome::Fail, Outcome::Timeout, Outcome::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "fail",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "ok" => Some(Outcome::Ok),
            "fail" => Some(Outcome::Fail),
            "timeout" => Some(Outcome::Timeout),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// Phase timings in milliseconds, where the stack could measure them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfb: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub id: Uuid,
    pub check: String,
    pub region: String,
    pub probe: String,
    pub started_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "is_default_phases")]
    pub phases_ms: Phases,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Earliest expiry of the server's certificate chain (tls), or of the
    /// leaf certificate (https).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_expiry: Option<DateTime<Utc>>,
    /// Ok, but degraded, and why (a certificate expiring soon).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    /// Extra facts about the run that are not an error ("body truncated at 1 MiB").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// browser: one entry per step run, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepResult>,
    /// browser: the page as a PNG (base64), on failure or from a
    /// `screenshot` step. The aggregator stores it apart from the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<String>,
    /// browser, on failure: where the page was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageInfo>,
    /// icmp: what was sent and what came back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpFigures>,
    /// grpc: what the health service answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcFigures>,
    /// browser: the pages' console errors and failed requests, and a
    /// failing run's film strip.
    #[serde(flatten)]
    pub browser: BrowserFindings,
    /// Network kinds: the address the run connected to (the proxy's, when
    /// one is used) and its family, `ipv4` or `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_family: Option<String>,
    /// http: the protocol version the answer came in, `1.1` or `2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_version: Option<String>,
}

/// What one `icmp` run sent and got back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IcmpFigures {
    /// The address pinged (the host resolved).
    pub address: String,
    /// `datagram` (an unprivileged ping socket) or `raw`.
    pub socket: String,
    pub sent: u32,
    pub received: u32,
    /// Percent of the requests that got no reply.
    pub loss_percent: f64,
    /// Round-trip times of the replies, in ms; absent without a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
    /// The TTL (IPv4) or hop limit (IPv6) of the last reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_hop_limit: Option<u8>,
}

/// What one `grpc` run got from `grpc.health.v1.Health/Check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrpcFigures {
    /// The gRPC status code of the call (0: OK, 5: NOT_FOUND, ...).
    pub status_code: i32,
    /// SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN, when the call
    /// answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_status: Option<String>,
}

/// What a browser flow's pages did besides its steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BrowserFindings {
    /// Errors the pages logged (console.error, uncaught exceptions), first first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub console_errors: Vec<PageError>,
    /// The pages' own requests that failed: 4xx, 5xx, network errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_errors: Vec<PageError>,
    /// A failing run: a thumbnail after each step (the last ones), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub film_strip: Vec<FilmFrame>,
}

/// A console error or a failed request, with the step during which it came.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageError {
    /// 1-based step index.
    pub step: usize,
    pub message: String,
    /// A failed request's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A failed request's HTTP status (none for a network error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// One thumbnail of a film strip.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilmFrame {
    /// 1-based step index: the page after this step.
    pub step: usize,
    /// The step's name (secrets masked).
    pub name: String,
    /// A JPEG, base64.
    pub jpeg: String,
}

/// Web Vitals of one page, from the browser's own performance APIs, in ms
/// (CLS unitless). Each where the page measured it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WebVitals {
    /// The page's URL (secrets masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfb_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcp_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lcp_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cls: Option<f64>,
    /// Interaction to Next Paint: the slowest interaction (steps that click or type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inp_ms: Option<f64>,
    /// Total blocking time: long tasks' time past 50 ms each, after FCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tbt_ms: Option<f64>,
}

impl WebVitals {
    /// The timed vitals as (name, ms), in a fixed order, where measured.
    pub fn timings(&self) -> Vec<(&'static str, f64)> {
        [
            ("ttfb", self.ttfb_ms),
            ("fcp", self.fcp_ms),
            ("lcp", self.lcp_ms),
            ("inp", self.inp_ms),
            ("tbt", self.tbt_ms),
        ]
        .into_iter()
        .filter_map(|(name, ms)| ms.map(|ms| (name, ms)))
        .collect()
    }
}

/// One step of a browser flow, as it ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// `fill #email`, `goto https://...` (secrets masked).
    pub name: String,
    /// When the step started, in ms from the run's start.
    pub at_ms: f64,
    pub ms: f64,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `goto`: the page's load time from the browser's own navigation
    /// timing (`loadEventEnd - startTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
    /// The step that opened a page (a `goto`, a click that navigated):
    /// that page's Web Vitals, as they stood when the flow left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vitals: Option<WebVitals>,
}

/// The page a browser flow ended on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl ProbeResult {
    /// The id a run of `check` by `probe` in `region` started at
    /// `started_at` gets: UUIDv7-shaped (its time is `started_at`'s
    /// millisecond, so ids still sort by time) with the rest a stable hash
    /// of the four. The same run always gets the same id, so storage need
    /// not keep it: it keeps only ids made otherwise (older probes, imports).
    pub fn run_id(check: &str, region: &str, probe: &str, started_at: DateTime<Utc>) -> Uuid {
        // FNV-1a, 128 bits: stable across builds and platforms (std's
        // hashers promise neither), and plenty for ten bytes.
        const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        let mut hash = OFFSET;
        let nanos = started_at.timestamp_subsec_nanos().to_le_bytes();
        let secs = started_at.timestamp().to_le_bytes();
        for part in [
            check.as_bytes(),
            region.as_bytes(),
            probe.as_bytes(),
            &secs,
            &nanos,
        ] {
            for byte in part.iter().chain(std::iter::once(&0xff)) {
                hash ^= u128::from(*byte);
                hash = hash.wrapping_mul(PRIME);
            }
        }
        let bytes = hash.to_le_bytes();
        let mut rest = [0u8; 10];
        rest.copy_from_slice(&bytes[..10]);
        let millis = u64::try_from(started_at.timestamp_millis()).unwrap_or(0);
        uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid()
    }

    /// This result's `run_id`.
    pub fn own_run_id(&self) -> Uuid {
        ProbeResult::run_id(&self.check, &self.region, &self.probe, self.started_at)
    }
}

/// `at` cut to its whole millisecond: results start on one, which storage
/// keeps in an integer (finer is kept too, at a cost).
pub fn whole_ms(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at)
}

impl ProbeResult {
    /// A result with its identity, time and outcome, and nothing else
    /// measured: what a caller fills in (a missed heartbeat, the figures
    /// `/metrics` keeps of a result).
    pub fn bare(
        id: Uuid,
        check: String,
        region: String,
        probe: String,
        started_at: DateTime<Utc>,
        duration_ms: f64,
        outcome: Outcome,
    ) -> ProbeResult {
        ProbeResult {
            id,
            check,
            region,
            probe,
            started_at,
            duration_ms,
            outcome,
            status: None,
            phases_ms: Phases::default(),
            error: None,
            cert_expiry: None,
            degraded: None,
            notes: vec![],
            steps: vec![],
            screenshot: None,
            page: None,
            icmp: None,
            grpc: None,
            browser: BrowserFindings::default(),
            address: None,
            ip_family: None,
            http_version: None,
        }
    }
}

#[cfg(test)]
impl ProbeResult {
    /// A result for tests: region `local`, the given check, outcome and time.
    pub(crate) fn for_test(
        check: &str,
        outcome: Outcome,
        started_at: DateTime<Utc>,
    ) -> ProbeResult {
        ProbeResult::bare(
            Uuid::now_v7(),
            check.into(),
            "local".into(),
            "p".into(),
            started_at,
            3.0,
            outcome,
        )
    }
}

fn is_default_phases(p: &Phases) -> bool {
    *p == Phases::default()
}

/// What a kind-specific runner found; `Runner` stamps the identity and time.
#[derive(Debug, Default)]
pub struct Report {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub phases: Phases,
    pub error: Option<String>,
    pub cert_expiry: Option<DateTime<Utc>>,
    pub degraded: Option<String>,
    pub notes: Vec<String>,
    pub steps: Vec<StepResult>,
    pub screenshot: Option<String>,
    pub page: Option<PageInfo>,
    pub icmp: Option<IcmpFigures>,
    pub grpc: Option<GrpcFigures>,
    pub browser: BrowserFindings,
    /// Time spent queued for a resource (a browser session) before the run
    /// really started: not part of its duration.
    pub waited: Duration,
    /// The peer connected to (network kinds).
    pub peer: Option<std::net::SocketAddr>,
    /// http: `1.1` or `2`.
    pub http_version: Option<String>,
}

impl Report {
    /// The run could not happen: DNS, refused, TLS...
    pub fn error(error: String, phases: Phases) -> Report {
        Report {
            outcome: Outcome::Error,
            phases,
            error: Some(error),
            ..Report::default()
        }
    }
}

/// Milliseconds with microsecond precision.
pub fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1_000.0
}

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
}

/// The page a browser flow ended on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[cfg(test)]
impl ProbeResult {
    /// A result for tests: region `local`, the given check, outcome and time.
    pub(crate) fn for_test(
        check: &str,
        outcome: Outcome,
        started_at: DateTime<Utc>,
    ) -> ProbeResult {
        ProbeResult {
            id: Uuid::now_v7(),
            check: check.into(),
            region: "local".into(),
            probe: "p".into(),
            started_at,
            duration_ms: 3.0,
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
            address: None,
            ip_family: None,
            http_version: None,
        }
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

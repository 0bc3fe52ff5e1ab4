//! Running a check once and describing what happened: the `ProbeResult` that
//! travels from a probe to the aggregator (DESIGN.md, "Result").
//!
//! A failing target is data, never an `Err`: every run ends in a result whose
//! `outcome` says `ok`, `fail`, `timeout` or `error`, with a one-line reason.

pub mod assertions;
pub mod dns;
pub mod failure;
pub mod grpc;
pub mod http;
pub mod icmp;
pub mod kind_tls;
pub mod net;
pub mod tcp;
pub mod tls;
pub mod tls_client;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Check, CheckKind, Secrets};
use crate::limits;

use crate::result::{Outcome, Phases, ProbeResult, Report, round_ms};

/// Who runs the checks: the region and probe names stamped on every result
/// and sent in the User-Agent.
#[derive(Clone, Debug)]
pub struct ProbeIdentity {
    pub region: String,
    pub probe: String,
}

impl ProbeIdentity {
    pub fn user_agent(&self, check: &str) -> String {
        format!(
            "Lookout/{} (region={}; check={})",
            env!("CARGO_PKG_VERSION"),
            self.region,
            check
        )
    }
}

/// Runs checks. Cheap to clone; shares the HTTP clients between runs.
#[derive(Clone)]
pub struct Runner {
    identity: Arc<ProbeIdentity>,
    secrets: Arc<Secrets>,
    http: http::Clients,
    /// Browser sessions for `browser` checks; without it they cannot run.
    browser: Option<crate::browser::BrowserPool>,
    /// Told of every browser step as it finishes (`lookout check`).
    on_step: Option<crate::browser::StepObserver>,
}

impl Runner {
    pub fn new(identity: ProbeIdentity, secrets: Arc<Secrets>) -> Runner {
        Runner {
            identity: Arc::new(identity),
            secrets,
            http: http::Clients::default(),
            browser: None,
            on_step: None,
        }
    }

    /// The same runner, running `browser` checks with `pool`.
    pub fn with_browser(self, pool: crate::browser::BrowserPool) -> Runner {
        Runner {
            browser: Some(pool),
            ..self
        }
    }

    /// The same runner, telling `observer` of each browser step as it ends.
    pub fn with_step_observer(self, observer: crate::browser::StepObserver) -> Runner {
        Runner {
            on_step: Some(observer),
            ..self
        }
    }

    pub fn identity(&self) -> &ProbeIdentity {
        &self.identity
    }

    /// The same runner (and HTTP clients), masking `secrets`: a remote
    /// probe's secrets change with the checks it is sent.
    pub fn with_secrets(&self, secrets: Arc<Secrets>) -> Runner {
        Runner {
            secrets,
            ..self.clone()
        }
    }

    /// Runs `check` once. The check's timeout bounds the whole run; this
    /// never returns an error, only a result saying what happened.
    pub async fn run(&self, check: &Check) -> ProbeResult {
        let started_at = crate::clock::now();
        let clock = tokio::time::Instant::now();
        let report = match &check.kind {
            CheckKind::Http(spec) => {
                let user_agent = self.identity.user_agent(&check.name);
                http::run(&self.http, spec, &check.expect, check.timeout, &user_agent).await
            }
            CheckKind::Tcp(spec) => {
                let mut phases = Phases::default();
                let run = tokio::time::timeout(check.timeout, tcp::run(spec, &mut phases)).await;
                within(run, phases, check.timeout, |p| if p.connect.is_some() { "waiting for the banner" } else { "while connecting" })
            }
            CheckKind::Tls(spec) => {
                let mut phases = Phases::default();
                let run = tokio::time::timeout(check.timeout, tls::run(spec, &mut phases)).await;
                within(run, phases, check.timeout, |p| if p.connect.is_none() { "while connecting" } else { "during the TLS handshake" })
            }
            CheckKind::Dns(spec) => {
                let mut phases = Phases::default();
                let run = tokio::time::timeout(check.timeout, dns::run(spec, &mut phases)).await;
                within(run, phases, check.timeout, |_| "waiting for the DNS answer")
            }
            CheckKind::Browser(spec) => match &self.browser {
                Some(pool) => {
                    let flow = crate::browser::Flow {
                        check: &check.name,
                        spec,
                        timeout: check.timeout,
                        user_agent: self.identity.user_agent(&check.name),
                        secrets: &self.secrets,
                        on_step: self.on_step.as_ref(),
                    };
                    pool.run(flow).await
                }
                None => Report::error(
                    "browser checks are not enabled in this process".into(),
                    Phases::default(),
                ),
            },
            CheckKind::Websocket(spec) => {
                let mut phases = Phases::default();
                let user_agent = self.identity.user_agent(&check.name);
                let run = tokio::time::timeout(check.timeout, websocket::run(spec, &mut phases, &user_agent)).await;
                within(run, phases, check.timeout, |p| if p.connect.is_none() { "while connecting" } else if p.ttfb.is_none() { "during the WebSocket handshake" } else { "waiting for the first message" })
            }
            CheckKind::Grpc(spec) => {
                let mut phases = Phases::default();
                let user_agent = self.identity.user_agent(&check.name);
                let run = tokio::time::timeout(check.timeout, grpc::run(spec, &mut phases, &user_agent)).await;
                within(run, phases, check.timeout, |p| if p.connect.is_none() { "while connecting" } else { "waiting for the health check answer" })
            }
            CheckKind::Icmp(spec) => {
                let mut phases = Phases::default();
                // The run stops waiting for replies before the timeout, so
                // lost packets are counted; this bound is the backstop.
                let run = tokio::time::timeout(check.timeout, icmp::run(spec, &check.expect, check.timeout, &mut phases)).await;
                within(run, phases, check.timeout, |_| "waiting for echo replies")
            }
            CheckKind::Heartbeat(_) => Report::error(
                "a heartbeat is pushed to the aggregator (POST /ping/TOKEN); there is nothing to run here".into(),
                Phases::default(),
            ),
        };
        // A run that waited for a browser session started when it got one.
        let elapsed = clock.elapsed().saturating_sub(report.waited);
        let started_at = chrono::Duration::from_std(report.waited)
            .ok()
            .and_then(|waited| started_at.checked_add_signed(waited))
            .unwrap_or(started_at);
        self.finish(check, started_at, elapsed, report)
    }

    fn finish(
        &self,
        check: &Check,
        started_at: DateTime<Utc>,
        elapsed: Duration,
        report: Report,
    ) -> ProbeResult {
        let error = report.error.map(|e| one_line(&self.secrets.redact(&e)));
        let started_at = crate::result::whole_ms(started_at);
        ProbeResult {
            id: ProbeResult::run_id(
                &check.name,
                &self.identity.region,
                &self.identity.probe,
                started_at,
            ),
            check: check.name.clone(),
            region: self.identity.region.clone(),
            probe: self.identity.probe.clone(),
            started_at,
            duration_ms: round_ms(elapsed),
            outcome: report.outcome,
            status: report.status,
            phases_ms: report.phases,
            error,
            cert_expiry: report.cert_expiry,
            degraded: report.degraded,
            notes: report.notes,
            steps: report.steps,
            screenshot: report.screenshot,
            page: report.page,
            icmp: report.icmp,
            grpc: report.grpc,
            browser: report.browser,
            address: report.peer.map(|peer| peer.ip().to_string()),
            ip_family: report
                .peer
                .map(|peer| if peer.is_ipv4() { "ipv4" } else { "ipv6" }.to_string()),
            http_version: report.http_version,
        }
    }
}

/// The report of a run bounded by the check's timeout. The phases measured
/// before a timeout survive it, so the result says how far the run got.
/// `stage` says, from the phases measured, what the run was waiting for.
fn within(
    run: Result<Report, tokio::time::error::Elapsed>,
    phases: Phases,
    timeout: Duration,
    stage: fn(&Phases) -> &'static str,
) -> Report {
    match run {
        Ok(report) => report,
        Err(_) => {
            let stage = stage(&phases);
            Report {
                outcome: Outcome::Timeout,
                error: Some(format!(
                    "timed out after {} {stage}",
                    crate::schedule::format_duration(timeout)
                )),
                phases,
                ..Report::default()
            }
        }
    }
}

/// Errors are shown in tables, alerts and logs: one line, bounded length.
pub fn one_line(text: &str) -> String {
    crate::config::browser::one_line(text, limits::RESULT_ERROR_CHARS_MAX)
}

/// A result summarised for people: `ok 200 in 12ms`, `fail: status 500 not in [200]`.
pub fn describe(result: &ProbeResult) -> String {
    let mut text = result.outcome.as_str().to_string();
    if let Some(status) = result.status {
        text.push_str(&format!(" {status}"));
    }
    text.push_str(&format!(" in {:.0}ms", result.duration_ms));
    if let Some(error) = &result.error {
        text.push_str(&format!(": {error}"));
    }
    text
}

/// When a DER certificate stops being valid.
pub fn cert_not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
}

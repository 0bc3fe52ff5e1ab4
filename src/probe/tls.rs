//! The `tls` check kind: connect, run a TLS handshake with `server_name` as
//! SNI, verify the server's chain against `ca_file` (only those roots) or the
//! system's roots, and report the earliest `notAfter` of the chain.
//!
//! The chain the server presents is captured by a verifier wrapped around
//! rustls's own, so its expiry is reported (`cert_expiry`) even when the
//! verification fails. A valid chain whose earliest certificate expires within
//! `expires_within` gives `ok` marked degraded ("certificate expires in 5d
//! (2026-11-30T12:00:00Z)"); an expired, untrusted or misnamed certificate
//! gives `fail` with the cause in plain words; a handshake that breaks for any
//! other reason (not TLS, reset, protocol error) gives `error`. Each run makes
//! a fresh client config, so no session is resumed and the chain is verified
//! every time; the trust roots behind it are loaded once and cached.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rustls::CertificateError;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::{Outcome, Phases, Report, failure, net, round_ms, tls_client};
use crate::config::TlsSpec;
use crate::limits;
use crate::schedule::format_duration;

/// Runs one TLS check. The caller bounds it with the check's timeout.
pub async fn run(spec: &TlsSpec, phases: &mut Phases) -> Report {
    let server_name = match ServerName::try_from(spec.server_name.clone()) {
        Ok(name) => name,
        Err(_) => {
            return Report::error(
                format!("`{}` is not a valid TLS server name", spec.server_name),
                phases.clone(),
            );
        }
    };
    let seen: tls_client::SeenChain = Arc::new(Mutex::new(Vec::new()));
    let setup = match tls_client::client_config(&spec.tls, &[], Some(seen.clone())).await {
        Ok(setup) => setup,
        Err(error) => return Report::error(error, phases.clone()),
    };

    let tcp = match net::connect(&spec.address, spec.ip_family, phases).await {
        Ok(stream) => stream,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let peer_addr = tcp.peer_addr().ok();
    let peer = spec.address.to_string();
    let started = Instant::now();
    let handshake = TlsConnector::from(Arc::new(setup.config))
        .connect(server_name, tcp)
        .await;
    phases.tls = Some(round_ms(started.elapsed()));

    let chain = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let earliest = earliest_expiry(&chain);
    let cert_expiry = earliest.map(|(_, at)| at);
    let report = |outcome, error: Option<String>, degraded: Option<String>| Report {
        outcome,
        phases: phases.clone(),
        error,
        cert_expiry,
        degraded,
        peer: peer_addr,
        ..Report::default()
    };
    let rejected = |e: &std::io::Error| match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(cause)) => report(
            Outcome::Fail,
            Some(describe_invalid(cause, &spec.server_name)),
            None,
        ),
        Some(rustls::Error::AlertReceived(alert)) => {
            report(Outcome::Fail, Some(failure::alert_received(*alert)), None)
        }
        Some(other) => report(
            Outcome::Error,
            Some(format!(
                "TLS handshake failed: {}",
                failure::tls_error(other, &spec.server_name)
            )),
            None,
        ),
        None => report(
            Outcome::Error,
            Some(format!(
                "TLS handshake failed: {}",
                net::describe_io(e, &peer)
            )),
            None,
        ),
    };

    let mut stream = match handshake {
        Ok(stream) => stream,
        Err(e) => return rejected(&e),
    };
    // A TLS 1.3 server judges a client certificate after our side of the
    // handshake is done: when it asked for one, wait a moment for its
    // verdict (an alert) before calling the handshake good.
    if setup.asked_for_client_cert.load(Ordering::Relaxed) {
        let mut byte = [0u8; 1];
        if let Ok(Err(e)) =
            tokio::time::timeout(limits::TLS_CLIENT_CERT_VERDICT_WAIT, stream.read(&mut byte)).await
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return rejected(&e);
        }
    }
    // The verdict is in; say goodbye politely, but do not wait on the peer.
    let _ = tokio::time::timeout(limits::TLS_CLOSE_GRACE, stream.shutdown()).await;

    let degraded = earliest
        .and_then(|(index, at)| expiring_soon(index, at, crate::clock::now(), spec.expires_within));
    report(Outcome::Ok, None, degraded)
}

/// The earliest `notAfter` of the presented chain, and the index of the
/// certificate that has it (0 is the server's own).
fn earliest_expiry(chain: &[CertificateDer<'static>]) -> Option<(usize, DateTime<Utc>)> {
    chain
        .iter()
        .enumerate()
        .filter_map(|(index, der)| super::cert_not_after(der).map(|at| (index, at)))
        .min_by_key(|(_, at)| *at)
}

/// Why a valid chain is degraded: its earliest expiry is within `window`.
fn expiring_soon(
    index: usize,
    not_after: DateTime<Utc>,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<String> {
    let remaining = (not_after - now).to_std().unwrap_or(Duration::ZERO);
    if remaining > window {
        return None;
    }
    let which = if index == 0 {
        "certificate"
    } else {
        "intermediate certificate"
    };
    Some(format!(
        "{which} expires in {} ({})",
        format_duration(rounded(remaining)),
        timestamp(not_after)
    ))
}

/// A remaining time rounded to the largest unit that still says something:
/// whole days from two days on, whole hours from two hours, whole minutes
/// from two minutes, else whole seconds.
fn rounded(remaining: Duration) -> Duration {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let secs = remaining.as_secs() + u64::from(remaining.subsec_millis() >= 500);
    let unit = match secs {
        s if s >= 2 * DAY => DAY,
        s if s >= 2 * HOUR => HOUR,
        s if s >= 2 * MINUTE => MINUTE,
        _ => 1,
    };
    Duration::from_secs((secs + unit / 2) / unit * unit)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn unix_timestamp(at: UnixTime) -> String {
    i64::try_from(at.as_secs())
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .map(timestamp)
        .unwrap_or_else(|| format!("{} (UNIX)", at.as_secs()))
}

/// A failed certificate verification in plain words (also fit for https
/// errors: `rustls::Error::InvalidCertificate` carries the cause).
pub(crate) fn describe_invalid(cause: &CertificateError, server_name: &str) -> String {
    use CertificateError::*;
    match cause {
        Expired => "certificate has expired".into(),
        ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", unix_timestamp(*not_after))
        }
        NotValidYet => "certificate is not valid yet".into(),
        NotValidYetContext { not_before, .. } => {
            format!(
                "certificate is not valid before {}",
                unix_timestamp(*not_before)
            )
        }
        UnknownIssuer => "certificate is not trusted (unknown issuer)".into(),
        BadSignature => "certificate is not trusted (bad signature)".into(),
        Revoked => "certificate is revoked".into(),
        NotValidForName => format!("certificate is not valid for {server_name}"),
        NotValidForNameContext { presented, .. } => {
            format!(
                "certificate is not valid for {server_name} (only for {})",
                names(presented)
            )
        }
        InvalidPurpose | InvalidPurposeContext { .. } => {
            "certificate is not valid for a TLS server (extended key usage)".into()
        }
        BadEncoding => "certificate is malformed".into(),
        UnhandledCriticalExtension => "certificate has an unsupported critical extension".into(),
        UnsupportedSignatureAlgorithmContext { .. }
        | UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate uses an unsupported signature algorithm".into()
        }
        Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(reason) => failure::webpki_error(reason),
            None => "certificate is invalid".into(),
        },
        ApplicationVerificationFailure => "certificate was refused by the verifier".into(),
        InvalidOcspResponse => "the certificate's OCSP response is invalid".into(),
        UnknownRevocationStatus => "the certificate's revocation status is unknown".into(),
        ExpiredRevocationList | ExpiredRevocationListContext { .. } => {
            "the certificate revocation list has expired".into()
        }
        _ => "certificate is invalid".into(),
    }
}

/// webpki reports a certificate's names as `DnsName("example.com")` or
/// `IpAddress(192.0.2.1)`; show just the names.
fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no names".into();
    }
    let mut shown: Vec<String> = presented
        .iter()
        .take(limits::TLS_NAMES_SHOWN_MAX)
        .map(|name| {
            let inner = name
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or(name);
            inner.trim_matches('"').to_string()
        })
        .collect();
    if presented.len() > limits::TLS_NAMES_SHOWN_MAX {
        shown.push(format!(
            "{} more",
            presented.len() - limits::TLS_NAMES_SHOWN_MAX
        ));
    }
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn remaining_time_is_rounded_to_a_readable_unit() {
        let day = 86_400;
        assert_eq!(
            format_duration(rounded(Duration::from_secs(3 * day - 5))),
            "3d"
        );
        assert_eq!(
            format_duration(rounded(Duration::from_secs(60 * day + 7))),
            "60d"
        );
        assert_eq!(
            format_duration(rounded(Duration::from_secs(day + 3600 * 5 + 10))),
            "29h"
        );
        assert_eq!(
            format_duration(rounded(Duration::from_secs(3 * 3600 + 59))),
            "3h"
        );
        assert_eq!(format_duration(rounded(Duration::from_secs(125))), "2m");
        assert_eq!(
            format_duration(rounded(Duration::from_millis(42_600))),
            "43s"
        );
        assert_eq!(format_duration(rounded(Duration::ZERO)), "0s");
    }

    #[test]
    fn degraded_only_within_the_window() {
        let now = at("2026-11-25T12:00:00Z");
        let window = Duration::from_secs(14 * 86_400);
        assert_eq!(
            expiring_soon(0, at("2026-11-30T12:00:00Z"), now, window).as_deref(),
            Some("certificate expires in 5d (2026-11-30T12:00:00Z)")
        );
        assert_eq!(
            expiring_soon(1, at("2026-11-26T00:00:00Z"), now, window).as_deref(),
            Some("intermediate certificate expires in 12h (2026-11-26T00:00:00Z)")
        );
        assert_eq!(
            expiring_soon(0, at("2027-01-01T00:00:00Z"), now, window),
            None
        );
        assert_eq!(
            expiring_soon(0, at("2026-11-26T00:00:00Z"), now, Duration::ZERO),
            None
        );
    }

    #[test]
    fn verification_failures_in_plain_words() {
        let not_after = UnixTime::since_unix_epoch(Duration::from_secs(1_793_491_200));
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::now(),
            not_after,
        };
        assert_eq!(
            describe_invalid(&expired, "x"),
            "certificate expired on 2026-11-01T00:00:00Z"
        );
        assert_eq!(
            describe_invalid(&CertificateError::UnknownIssuer, "x"),
            "certificate is not trusted (unknown issuer)"
        );
        let misnamed = CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("localhost").unwrap(),
            presented: vec![
                r#"DnsName("other.test")"#.into(),
                "IpAddress(192.0.2.1)".into(),
            ],
        };
        assert_eq!(
            describe_invalid(&misnamed, "localhost"),
            "certificate is not valid for localhost (only for other.test, 192.0.2.1)"
        );
        let many: Vec<String> = (0..7).map(|i| format!(r#"DnsName("n{i}.test")"#)).collect();
        assert_eq!(
            names(&many),
            "n0.test, n1.test, n2.test, n3.test, n4.test, 2 more"
        );
    }
}

//! The `tls` probe against real TLS servers on 127.0.0.1, with certificates
//! made here by a test CA: valid, expiring soon, expired, misnamed,
//! untrusted, a chain whose intermediate expires first; and servers that are
//! not there or do not speak TLS. Also the `http` probe's `cert_expiry` for
//! https.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat, Utc};
use common::{ConfigDirs, path_str};
use lookout::result::{Outcome, ProbeResult};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const DAY: u64 = 86_400;
/// Bytes of a request head the https test server reads at most.
const REQUEST_HEAD_MAX: usize = 64 * 1024;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sets the validity of `params`, both bounds in seconds since the UNIX
/// epoch, and returns `notAfter` as the probe reports it.
fn set_validity(params: &mut CertificateParams, not_before: u64, not_after: u64) -> DateTime<Utc> {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before);
    params.not_after = epoch + Duration::from_secs(not_after);
    DateTime::from_timestamp(i64::try_from(not_after).unwrap(), 0).unwrap()
}

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str, not_after_in: Duration) -> Ca {
        Ca::issued(name, not_after_in, None)
    }

    /// A CA certificate, self-signed or (for an intermediate) signed by `parent`.
    fn issued(name: &str, not_after_in: Duration, parent: Option<&Ca>) -> Ca {
        let now = unix_now();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, now - DAY, now + not_after_in.as_secs());
        let key = KeyPair::generate().unwrap();
        let issuer = match parent {
            None => CertifiedIssuer::self_signed(params, key).unwrap(),
            Some(parent) => CertifiedIssuer::signed_by(params, key, &parent.issuer).unwrap(),
        };
        Ca { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }
}

/// A server certificate with its key and its `notAfter`.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    not_after: DateTime<Utc>,
}

/// A leaf for `names`, valid from `not_before` to `not_after` (UNIX seconds),
/// signed by `ca` or, without one, self-signed.
fn leaf(names: &[&str], not_before: u64, not_after: u64, ca: Option<&Ca>) -> Leaf {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "test server");
    let reported = set_validity(&mut params, not_before, not_after);
    let key = KeyPair::generate().unwrap();
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Leaf {
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_after: reported,
    }
}

fn leaf_in(ca: Option<&Ca>, names: &[&str], expires_in: Duration) -> Leaf {
    let now = unix_now();
    leaf(names, now - DAY, now + expires_in.as_secs(), ca)
}

/// What the test server does once the handshake is done.
#[derive(Clone, Copy)]
enum After {
    /// Write a greeting and close.
    Greet,
    /// Read an HTTP request head and answer `200 ok`.
    Http,
}

/// A TLS server on 127.0.0.1 presenting `chain`, accepting until the test's
/// runtime ends.
async fn serve_tls(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    after: After,
) -> SocketAddr {
    lookout::install_crypto_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // Handshakes the client rejects end here, as they should.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                match after {
                    After::Greet => {
                        let _ = tls.write_all(b"hello\n").await;
                    }
                    After::Http => {
                        let mut head = Vec::new();
                        let mut buffer = [0u8; 4096];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n")
                            && head.len() < REQUEST_HEAD_MAX
                        {
                            match tls.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buffer[..n]),
                            }
                        }
                        let _ = tls
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            )
                            .await;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn serve_leaf(leaf: &Leaf) -> SocketAddr {
    serve_tls(vec![leaf.cert.clone()], leaf.key.clone_key(), After::Greet).await
}

/// Runs one check, given as the YAML under `- name: t`, with `CA_FILE`
/// replaced by the path of `ca`'s PEM written into the config directory.
async fn probe(check_yaml: &str, ca: &Ca) -> ProbeResult {
    let dirs = ConfigDirs::new("checks: []\n");
    let ca_file = dirs.root.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let yaml = format!(
        "checks:\n  - name: t\n    every: 1s\n    timeout: 5s\n{}",
        check_yaml.replace("CA_FILE", &path_str(&ca_file))
    );
    std::fs::write(dirs.checks().join("checks.yaml"), yaml).unwrap();
    dirs.run_first().await
}

async fn probe_tls(addr: SocketAddr, ca: &Ca) -> ProbeResult {
    probe_tls_with(addr, ca, "").await
}

async fn probe_tls_with(addr: SocketAddr, ca: &Ca, extra: &str) -> ProbeResult {
    let yaml = format!(
        "    tls: {{ address: \"{addr}\", server_name: localhost, ca_file: \"CA_FILE\"{extra} }}\n"
    );
    probe(&yaml, ca).await
}

fn reason(result: &ProbeResult) -> &str {
    result.error.as_deref().unwrap_or("")
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn assert_handshake_timed(result: &ProbeResult) {
    assert!(
        result.phases_ms.connect.is_some() && result.phases_ms.tls.is_some(),
        "{result:?}"
    );
    assert!(result.phases_ms.dns.is_none(), "an IP literal needs no DNS");
}

#[tokio::test]
async fn valid_certificate_is_ok_with_its_expiry() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(60 * DAY));
    let addr = serve_leaf(&leaf).await;
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.error, None);
    assert_eq!(result.degraded, None);
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
    assert_handshake_timed(&result);
}

#[tokio::test]
async fn certificate_expiring_soon_is_ok_but_degraded() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(3 * DAY));
    let addr = serve_leaf(&leaf).await;
    // The default window is 14 days.
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.error, None);
    assert_eq!(
        result.degraded,
        Some(format!(
            "certificate expires in 3d ({})",
            timestamp(leaf.not_after)
        ))
    );
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
    assert_handshake_timed(&result);

    // A window shorter than what is left: not degraded.
    let result = probe_tls_with(addr, &ca, ", expires_within: 2d").await;
    assert_eq!(
        (result.outcome, result.degraded.as_deref()),
        (Outcome::Ok, None),
        "{result:?}"
    );
}

#[tokio::test]
async fn expires_within_is_honoured() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(60 * DAY));
    let addr = serve_leaf(&leaf).await;
    let result = probe_tls_with(addr, &ca, ", expires_within: 90d").await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(
        result.degraded,
        Some(format!(
            "certificate expires in 60d ({})",
            timestamp(leaf.not_after)
        ))
    );
}

#[tokio::test]
async fn earliest_expiry_of_the_chain_is_reported() {
    let root = Ca::new("Lookout Test Root", Duration::from_secs(365 * DAY));
    let intermediate = Ca::issued(
        "Lookout Test Intermediate",
        Duration::from_secs(10 * DAY),
        Some(&root),
    );
    let leaf = leaf_in(
        Some(&intermediate),
        &["localhost"],
        Duration::from_secs(60 * DAY),
    );
    let intermediate_not_after = lookout::probe::cert_not_after(&intermediate.der()).unwrap();
    let addr = serve_tls(
        vec![leaf.cert.clone(), intermediate.der()],
        leaf.key.clone_key(),
        After::Greet,
    )
    .await;
    let result = probe_tls(addr, &root).await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.cert_expiry, Some(intermediate_not_after));
    assert_eq!(
        result.degraded,
        Some(format!(
            "intermediate certificate expires in 10d ({})",
            timestamp(intermediate_not_after)
        ))
    );
}

#[tokio::test]
async fn expired_certificate_fails() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let now = unix_now();
    let leaf = leaf(&["localhost"], now - 30 * DAY, now - DAY, Some(&ca));
    let addr = serve_leaf(&leaf).await;
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        reason(&result),
        format!("certificate expired on {}", timestamp(leaf.not_after))
    );
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
    assert_eq!(result.degraded, None);
    assert_handshake_timed(&result);
}

#[tokio::test]
async fn certificate_for_another_name_fails() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["other.test"], Duration::from_secs(60 * DAY));
    let addr = serve_leaf(&leaf).await;
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        reason(&result),
        "certificate is not valid for localhost (only for other.test)"
    );
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
    assert_eq!(result.degraded, None);
    assert_handshake_timed(&result);
}

#[tokio::test]
async fn certificate_from_an_unknown_issuer_fails() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let stranger = leaf_in(None, &["localhost"], Duration::from_secs(60 * DAY));
    let addr = serve_leaf(&stranger).await;
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        reason(&result),
        "certificate is not trusted (unknown issuer)"
    );
    assert_eq!(result.cert_expiry, Some(stranger.not_after));
    assert_eq!(result.degraded, None);
    assert_handshake_timed(&result);
}

#[tokio::test]
async fn closed_port_is_an_error() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = probe_tls(addr, &ca).await;
    assert_eq!(result.outcome, Outcome::Error, "{result:?}");
    assert_eq!(reason(&result), format!("connection refused ({addr})"));
    assert_eq!((result.cert_expiry, result.phases_ms.tls), (None, None));
}

/// A plain TCP server on 127.0.0.1 that greets each connection with `banner`
/// (nothing, when empty) and closes it.
async fn serve_plain(banner: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            if !banner.is_empty() {
                let _ = tcp.write_all(banner).await;
            }
            drop(tcp);
        }
    });
    addr
}

#[tokio::test]
async fn a_server_that_does_not_speak_tls_is_an_error() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    for banner in [&b""[..], b"SSH-2.0-OpenSSH_9.6\r\n"] {
        let addr = serve_plain(banner).await;
        let result = probe_tls(addr, &ca).await;
        assert_eq!(result.outcome, Outcome::Error, "{result:?}");
        assert!(
            reason(&result).starts_with("TLS handshake failed: "),
            "{result:?}"
        );
        assert_eq!(result.cert_expiry, None);
        assert_handshake_timed(&result);
    }
}

#[tokio::test]
async fn https_check_reports_the_leaf_expiry() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(60 * DAY));
    let addr = serve_tls(vec![leaf.cert.clone()], leaf.key.clone_key(), After::Http).await;
    // localhost is 127.0.0.1 in /etc/hosts: the request stays on loopback.
    let url = format!("https://localhost:{}/", addr.port());
    let result = probe(
        &format!("    http: {{ url: \"{url}\", ca_file: \"CA_FILE\" }}\n"),
        &ca,
    )
    .await;
    assert_eq!(
        (result.outcome, result.status),
        (Outcome::Ok, Some(200)),
        "{result:?}"
    );
    assert_eq!(result.cert_expiry, Some(leaf.not_after));
}

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

// --- #15 part A: pinned certificates, client certificates, HTTP/2 ---

/// A self-signed certificate for `localhost` that says CA:TRUE, as
/// `openssl req -x509` makes by default: pinned through `ca_file`.
fn self_signed_ca_leaf() -> (Leaf, String) {
    let now = unix_now();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "pinned server");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let not_after = set_validity(&mut params, now - DAY, now + 90 * DAY);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    (
        Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            not_after,
        },
        pem,
    )
}

/// Runs one check with `FILE:name` replaced by the path of `name` written
/// with its content into the config directory.
async fn probe_with_files(check_yaml: &str, files: &[(&str, String)]) -> ProbeResult {
    let dirs = ConfigDirs::new("checks: []\n");
    let mut yaml = format!("checks:\n  - name: t\n    every: 1s\n    timeout: 5s\n{check_yaml}");
    for (name, content) in files {
        let path = dirs.root.path().join(name);
        std::fs::write(&path, content).unwrap();
        yaml = yaml.replace(&format!("FILE:{name}"), &path_str(&path));
    }
    std::fs::write(dirs.checks().join("checks.yaml"), yaml).unwrap();
    dirs.run_first().await
}

#[tokio::test]
async fn a_pinned_self_signed_ca_certificate_is_trusted_for_tls_and_https() {
    let (leaf, pem) = self_signed_ca_leaf();
    let files = [("pinned.pem", pem)];
    let addr = serve_tls(vec![leaf.cert.clone()], leaf.key.clone_key(), After::Http).await;
    let tls = probe_with_files(
        &format!("    tls: {{ address: \"{addr}\", server_name: localhost, ca_file: \"FILE:pinned.pem\" }}\n"),
        &files,
    )
    .await;
    assert_eq!(tls.outcome, Outcome::Ok, "{tls:?}");
    assert_eq!(tls.cert_expiry, Some(leaf.not_after));
    let url = format!("https://localhost:{}/", addr.port());
    let http = probe_with_files(
        &format!("    http: {{ url: \"{url}\", ca_file: \"FILE:pinned.pem\" }}\n"),
        &files,
    )
    .await;
    assert_eq!(
        (http.outcome, http.status),
        (Outcome::Ok, Some(200)),
        "{http:?}"
    );

    // Pinned is not "any name will do": asked as another name, it fails.
    let misnamed = probe_with_files(
        &format!("    tls: {{ address: \"{addr}\", server_name: other.test, ca_file: \"FILE:pinned.pem\" }}\n"),
        &files,
    )
    .await;
    assert_eq!(misnamed.outcome, Outcome::Fail, "{misnamed:?}");
    assert!(
        reason(&misnamed).starts_with("certificate is not valid for other.test"),
        "{misnamed:?}"
    );

    // Not pinned (another CA in ca_file): refused in words, no Debug text.
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let stranger = probe_tls(addr, &ca).await;
    assert_eq!(stranger.outcome, Outcome::Fail, "{stranger:?}");
    assert_no_debug_text(reason(&stranger));
}

fn assert_no_debug_text(text: &str) {
    for leak in [
        "Other(",
        "OtherError",
        "CaUsedAsEndEntity",
        "AlertReceived",
        "{ ",
        "Error(",
    ] {
        assert!(!text.contains(leak), "`{leak}` in {text:?}");
    }
}

/// A CA, a client certificate it signed (PEM cert and key), and a TLS
/// server on 127.0.0.1 that requires a client certificate from that CA.
struct ClientAuthServer {
    ca: Ca,
    client_cert: String,
    client_key: String,
    addr: SocketAddr,
}

async fn serve_requiring_client_cert(after: After) -> ClientAuthServer {
    lookout::install_crypto_provider();
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let server = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(60 * DAY));
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "lookout probe");
    let client_key = KeyPair::generate().unwrap();
    let client = client_params.signed_by(&client_key, &ca.issuer).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.cert.clone()], server.key.clone_key())
        .unwrap();
    let addr = serve_tls_config(config, after).await;
    ClientAuthServer {
        ca,
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
        addr,
    }
}

/// `serve_tls` with a server config of the test's own.
async fn serve_tls_config(config: rustls::ServerConfig, after: After) -> SocketAddr {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                answer(&mut tls, after).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn answer<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    tls: &mut S,
    after: After,
) {
    match after {
        After::Greet => {
            let _ = tls.write_all(b"hello\n").await;
        }
        After::Http => {
            let mut head = Vec::new();
            let mut buffer = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_MAX {
                match tls.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = tls
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        }
    }
}

#[tokio::test]
async fn a_tls_check_presents_its_client_certificate() {
    let server = serve_requiring_client_cert(After::Greet).await;
    let files = [
        ("ca.pem", server.ca.pem()),
        ("client.pem", server.client_cert.clone()),
        ("client.key", server.client_key.clone()),
    ];
    let base = format!(
        "    tls: {{ address: \"{}\", server_name: localhost, ca_file: \"FILE:ca.pem\"",
        server.addr
    );
    let with = probe_with_files(
        &format!("{base}, client_cert: \"FILE:client.pem\", client_key: \"FILE:client.key\" }}\n"),
        &files,
    )
    .await;
    assert_eq!(with.outcome, Outcome::Ok, "{with:?}");
    let without = probe_with_files(&format!("{base} }}\n"), &files).await;
    assert_eq!(without.outcome, Outcome::Fail, "{without:?}");
    assert_eq!(reason(&without), "the server requires a client certificate");
}

#[tokio::test]
async fn an_https_check_presents_its_client_certificate() {
    let server = serve_requiring_client_cert(After::Http).await;
    let files = [
        ("ca.pem", server.ca.pem()),
        ("client.pem", server.client_cert.clone()),
        ("client.key", server.client_key.clone()),
    ];
    let url = format!("https://localhost:{}/", server.addr.port());
    let with = probe_with_files(
        &format!("    http: {{ url: \"{url}\", ca_file: \"FILE:ca.pem\", client_cert: \"FILE:client.pem\", client_key: \"FILE:client.key\" }}\n"),
        &files,
    )
    .await;
    assert_eq!(
        (with.outcome, with.status),
        (Outcome::Ok, Some(200)),
        "{with:?}"
    );
    let without = probe_with_files(
        &format!("    http: {{ url: \"{url}\", ca_file: \"FILE:ca.pem\" }}\n"),
        &files,
    )
    .await;
    assert_ne!(without.outcome, Outcome::Ok, "{without:?}");
    assert!(
        reason(&without).contains("the server requires a client certificate"),
        "{without:?}"
    );
    assert_no_debug_text(reason(&without));
}

/// An HTTPS server that offers h2 by ALPN and answers over what was
/// chosen (hyper's HTTP/2 or HTTP/1.1 server).
async fn serve_h2(leaf: &Leaf) -> SocketAddr {
    lookout::install_crypto_provider();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(axum::body::Body::from(
                        "{\"ok\":true}",
                    )))
                });
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, service)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn http2_is_negotiated_and_can_be_required() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let leaf = leaf_in(Some(&ca), &["localhost"], Duration::from_secs(60 * DAY));
    let addr = serve_h2(&leaf).await;
    let url = format!("https://localhost:{}/", addr.port());
    let check =
        |expect: &str| format!("    http: {{ url: \"{url}\", ca_file: \"CA_FILE\" }}\n{expect}");
    let result = probe(&check(""), &ca).await;
    assert_eq!(result.outcome, Outcome::Ok, "{result:?}");
    assert_eq!(result.http_version.as_deref(), Some("2"));
    let wanted = probe(&check("    expect: { http_version: \"2\" }\n"), &ca).await;
    assert_eq!(wanted.outcome, Outcome::Ok, "{wanted:?}");
    let old = probe(&check("    expect: { http_version: \"1.1\" }\n"), &ca).await;
    assert_eq!(old.outcome, Outcome::Fail, "{old:?}");
    assert_eq!(reason(&old), "answered over HTTP/2, not HTTP/1.1");
    // A server without h2 answers over 1.1.
    let plain = serve_tls(vec![leaf.cert.clone()], leaf.key.clone_key(), After::Http).await;
    let url = format!("https://localhost:{}/", plain.port());
    let result = probe(
        &format!("    http: {{ url: \"{url}\", ca_file: \"CA_FILE\" }}\n"),
        &ca,
    )
    .await;
    assert_eq!(result.http_version.as_deref(), Some("1.1"), "{result:?}");
}

#[tokio::test]
async fn tls_verify_false_accepts_any_certificate_and_still_reports_its_expiry() {
    let ca = Ca::new("Lookout Test CA", Duration::from_secs(365 * DAY));
    let stranger = leaf_in(None, &["other.test"], Duration::from_secs(60 * DAY));
    let addr = serve_tls(
        vec![stranger.cert.clone()],
        stranger.key.clone_key(),
        After::Http,
    )
    .await;
    let url = format!("https://localhost:{}/", addr.port());
    let verified = probe(&format!("    http: {{ url: \"{url}\" }}\n"), &ca).await;
    assert_eq!(verified.outcome, Outcome::Error, "{verified:?}");
    assert_no_debug_text(reason(&verified));
    let unverified = probe(
        &format!("    http: {{ url: \"{url}\", tls_verify: false }}\n"),
        &ca,
    )
    .await;
    assert_eq!(
        (unverified.outcome, unverified.status),
        (Outcome::Ok, Some(200)),
        "{unverified:?}"
    );
    assert_eq!(unverified.cert_expiry, Some(stranger.not_after));
}

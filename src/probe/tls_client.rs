//! A rustls `ClientConfig` from a check's `TlsClientOptions`, for every kind
//! that speaks TLS (`http`, `tls`, and any kind added later): the trust
//! roots (`ca_file`'s, with or without the system's, or the system's alone;
//! loaded once per file version and cached), the client certificate, and
//! the verifier around rustls's own.
//!
//! The verifier keeps a copy of the chain the server presented (so a run can
//! report its expiry whatever the verdict) and trusts a *pinned*
//! certificate: when the server's own certificate is byte for byte one of
//! `ca_file`'s, it is trusted as Go, OpenSSL and curl trust it, whether it
//! says CA:TRUE or not (webpki alone refuses a CA certificate used as the
//! server's, `CaUsedAsEndEntity`). A pinned certificate must still be valid
//! now and name the server, as Go and curl require: pinning says who is
//! trusted, not that any name or date will do. Anything else goes to
//! rustls's WebPKI verifier unchanged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

use crate::config::TlsClientOptions;
use crate::limits;

/// The chain the server presented, filled in during the handshake.
pub type SeenChain = Arc<Mutex<Vec<CertificateDer<'static>>>>;

/// A built config, and whether the server asked for a client certificate
/// (set during the handshake).
pub struct ClientSetup {
    pub config: rustls::ClientConfig,
    pub asked_for_client_cert: Arc<AtomicBool>,
}

/// Builds the rustls config for `options`, advertising `alpn` (empty: no
/// ALPN) and, when given, recording the presented chain into `seen`. Reads
/// files: call it on the blocking pool (`client_config` does).
pub fn client_config_blocking(
    options: &TlsClientOptions,
    alpn: &[&str],
    seen: Option<SeenChain>,
) -> Result<ClientSetup, String> {
    let provider = provider();
    let (roots, pinned) = roots(options.ca_file.as_ref(), options.system_roots_too)?;
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
    let verifier = Arc::new(CheckVerifier {
        inner,
        pinned,
        verify: options.verify,
        seen,
    });
    let identity = match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key)) => {
            let (chain, key_der) = crate::config::ca::read_client_identity(cert, key)?;
            let signing = provider
                .key_provider
                .load_private_key(key_der)
                .map_err(|_| format!("client_key {} cannot be used to sign", key.display()))?;
            Some(Arc::new(CertifiedKey::new(chain, signing)))
        }
        _ => None,
    };
    let asked = Arc::new(AtomicBool::new(false));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(ClientIdentity {
            key: identity,
            asked: asked.clone(),
        }));
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // A resumed session skips the certificate: every run must see it.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(ClientSetup {
        config,
        asked_for_client_cert: asked,
    })
}

/// `client_config_blocking` on the blocking pool.
pub async fn client_config(
    options: &TlsClientOptions,
    alpn: &'static [&'static str],
    seen: Option<SeenChain>,
) -> Result<ClientSetup, String> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || client_config_blocking(&options, alpn, seen))
        .await
        .map_err(|_| "setting up TLS was interrupted".to_string())?
}

/// The ring provider, made once: the TLS checks never depend on a process
/// default being installed.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Offers the configured client certificate when the server asks, and
/// notes that it asked: a TLS 1.3 server judges the certificate after the
/// client has finished its handshake, so the run must wait for its verdict.
#[derive(Debug)]
struct ClientIdentity {
    key: Option<Arc<CertifiedKey>>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for ClientIdentity {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        // True even without a key, so rustls keeps what it needs to answer
        // a request for one with an empty certificate (and we learn of it).
        true
    }
}

/// rustls's verifier, with the chain recorded, pinned certificates trusted
/// and, for `tls_verify: false`, every certificate accepted.
#[derive(Debug)]
struct CheckVerifier {
    inner: Arc<WebPkiServerVerifier>,
    /// `ca_file`'s certificates (none for the system's roots).
    pinned: Arc<Vec<CertificateDer<'static>>>,
    verify: bool,
    seen: Option<SeenChain>,
}

impl ServerCertVerifier for CheckVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(seen) = &self.seen {
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.clear();
            seen.push(end_entity.clone().into_owned());
            seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        }
        if !self.verify {
            return Ok(ServerCertVerified::assertion());
        }
        if self
            .pinned
            .iter()
            .any(|pin| pin.as_ref() == end_entity.as_ref())
        {
            return verify_pinned(end_entity, server_name, now);
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// A pinned certificate is trusted by who it is; it must still be within
/// its validity and name the server.
fn verify_pinned(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity).map_err(|_| bad())?;
    let seconds =
        |t: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0) as u64));
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    let at = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if at < not_before {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before: seconds(not_before),
            },
        ));
    }
    if at > not_after {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after: seconds(not_after),
            },
        ));
    }
    let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    Ok(ServerCertVerified::assertion())
}

/// Trust roots loaded earlier, by `ca_file` (`None`: the system's). A
/// `ca_file` is reloaded when its modification time changes, so a rotated
/// CA is picked up without a restart; the map holds one entry per path.
struct CachedRoots {
    modified: Option<SystemTime>,
    roots: Arc<RootCertStore>,
    pinned: Arc<Vec<CertificateDer<'static>>>,
}

type Roots = (Arc<RootCertStore>, Arc<Vec<CertificateDer<'static>>>);
/// By `ca_file` and whether the system's roots come with it.
type RootsCache = Mutex<HashMap<(Option<PathBuf>, bool), CachedRoots>>;

fn roots_cache() -> &'static RootsCache {
    static CACHE: OnceLock<RootsCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The roots to trust: the certificates of `ca_file` (which are also the
/// pinned ones), with the system's when `system_too`; without a `ca_file`,
/// the system's. Loaded once (per `ca_file` version) and shared; failures
/// are not cached.
fn roots(ca_file: Option<&PathBuf>, system_too: bool) -> Result<Roots, String> {
    let system_too = system_too && ca_file.is_some();
    let key = (ca_file.cloned(), system_too);
    let modified = match ca_file {
        Some(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("cannot read ca_file {}: {e}", path.display()))?;
            if meta.len() > limits::CA_FILE_BYTES_MAX {
                return Err(format!(
                    "ca_file {} is larger than {} bytes",
                    path.display(),
                    limits::CA_FILE_BYTES_MAX
                ));
            }
            meta.modified().ok()
        }
        None => None,
    };
    {
        let cache = roots_cache().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = cache.get(&key).filter(|e| e.modified == modified) {
            return Ok((entry.roots.clone(), entry.pinned.clone()));
        }
    }
    let (store, pinned) = match ca_file {
        Some(path) => {
            let certs = crate::config::ca::read_ca_file(path)?;
            // A machine without system roots still trusts the ca_file.
            let mut store = if system_too {
                system_roots().unwrap_or_else(|_| RootCertStore::empty())
            } else {
                RootCertStore::empty()
            };
            let (added, _ignored) = store.add_parsable_certificates(certs.iter().cloned());
            // Every certificate of ca_file is also pinned by its bytes.
            if added == 0 {
                return Err("ca_file holds no usable certificate".to_string());
            }
            (store, certs)
        }
        None => (system_roots()?, Vec::new()),
    };
    let (store, pinned) = (Arc::new(store), Arc::new(pinned));
    let mut cache = roots_cache().lock().unwrap_or_else(|p| p.into_inner());
    cache.insert(
        key,
        CachedRoots {
            modified,
            roots: store.clone(),
            pinned: pinned.clone(),
        },
    );
    Ok((store, pinned))
}

fn system_roots() -> Result<RootCertStore, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, ignored) = store.add_parsable_certificates(loaded.certs);
    if added == 0 {
        let why = loaded
            .errors
            .first()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!("no trusted certificates found on this system{why}"));
    }
    if ignored > 0 || !loaded.errors.is_empty() {
        tracing::debug!(
            added,
            ignored,
            errors = loaded.errors.len(),
            "loaded the system's trusted certificates"
        );
    }
    Ok(store)
}

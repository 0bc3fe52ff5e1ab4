//! TLS for the `websocket` and `grpc` kinds: a client config from the
//! check's `tls_verify` and `ca_file` (the roots the `tls` kind loads and
//! caches), the ALPN protocol the kind speaks, and a timed handshake whose
//! failures read as the `tls` kind's do.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{Outcome, Phases, net, round_ms};
use crate::config::TlsOptions;

/// Why a handshake did not give a connection: the server's certificate was
/// refused (`Fail`), or the handshake broke (`Error`).
pub struct HandshakeFailure {
    pub outcome: Outcome,
    pub reason: String,
}

/// The chain the server presented, kept whatever the verdict.
pub type SeenChain = Arc<Mutex<Vec<CertificateDer<'static>>>>;

/// A client config trusting what `options` says, offering `alpn`; the
/// chain the server presents is kept in the `SeenChain` (when verifying),
/// so its expiry can be reported as the `tls` kind does.
pub async fn client_config(
    options: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, SeenChain), String> {
    let seen = SeenChain::default();
    let mut config = if options.tls_verify {
        let roots = super::tls::roots(options.ca_file.as_ref()).await?;
        super::tls::client_config(roots, seen.clone())?
    } else {
        let provider = super::tls::provider();
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth();
        // A resumed session skips the certificate: every run must see it.
        config.resumption = rustls::client::Resumption::disabled();
        config
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((config, seen))
}

/// When the server's own certificate (the first of the chain) expires.
pub fn leaf_expiry(seen: &SeenChain) -> Option<chrono::DateTime<chrono::Utc>> {
    let chain = seen.lock().unwrap_or_else(|p| p.into_inner());
    chain.first().and_then(|der| super::cert_not_after(der))
}

/// Runs the handshake on `tcp`, timing `tls`.
pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: rustls::ClientConfig,
    phases: &mut Phases,
) -> Result<TlsStream<TcpStream>, HandshakeFailure> {
    let server_name = ServerName::try_from(host.to_string()).map_err(|_| HandshakeFailure {
        outcome: Outcome::Error,
        reason: format!("`{host}` is not a valid TLS server name"),
    })?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| host.to_string());
    let started = Instant::now();
    let result = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await;
    phases.tls = Some(round_ms(started.elapsed()));
    result.map_err(|e| {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(cause)) => HandshakeFailure {
                outcome: Outcome::Fail,
                reason: super::tls::describe_invalid(cause, host),
            },
            Some(other) => HandshakeFailure {
                outcome: Outcome::Error,
                reason: format!("TLS handshake failed: {}", describe_tls(other)),
            },
            None => HandshakeFailure {
                outcome: Outcome::Error,
                reason: format!("TLS handshake failed: {}", net::describe_io(&e, &peer)),
            },
        }
    })
}

/// The handshake failures a probe meets most, in plain words; rustls's own
/// text for the rest.
fn describe_tls(error: &rustls::Error) -> String {
    use rustls::Error::*;
    match error {
        InvalidMessage(_) | InappropriateMessage { .. } | InappropriateHandshakeMessage { .. } => {
            "the server did not answer with TLS (a plaintext port?)".to_string()
        }
        AlertReceived(_) => "the server refused the handshake (it sent an alert)".to_string(),
        NoApplicationProtocol => {
            "the server offers none of the application protocols asked for (ALPN)".to_string()
        }
        PeerIncompatible(_) => {
            "the server supports no protocol version or cipher suite in common".to_string()
        }
        other => other.to_string(),
    }
}

/// `tls_verify: false`: any certificate is accepted, but the handshake's
/// signatures are still checked, so the connection is at least encrypted to
/// whoever holds the key.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

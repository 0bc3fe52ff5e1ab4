//! TLS for the `websocket` and `grpc` kinds: their `tls_verify` and
//! `ca_file` turned into the shared client config (`tls_client`), the ALPN
//! protocol the kind speaks, and a timed handshake whose failures read as
//! the `tls` kind's do.

use std::sync::Arc;

use rustls::pki_types::ServerName;
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

pub use super::tls_client::SeenChain;

/// A client config trusting what `options` says (through the builder the
/// http and tls kinds use: pinned certificates, plain-words failures),
/// offering `alpn`; the chain the server presents is kept in the
/// `SeenChain`, so its expiry can be reported as the `tls` kind does.
pub async fn client_config(
    options: &TlsOptions,
    alpn: &'static [&'static str],
) -> Result<(rustls::ClientConfig, SeenChain), String> {
    let seen = SeenChain::default();
    let shared = crate::config::TlsClientOptions {
        ca_file: options.ca_file.clone(),
        client_cert: options.client_cert.clone(),
        client_key: options.client_key.clone(),
        verify: options.tls_verify,
        system_roots_too: false,
    };
    let setup = super::tls_client::client_config(&shared, alpn, Some(seen.clone())).await?;
    Ok((setup.config, seen))
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
            Some(refused @ rustls::Error::InvalidCertificate(_)) => HandshakeFailure {
                outcome: Outcome::Fail,
                reason: super::failure::tls_error(refused, host),
            },
            Some(other) => HandshakeFailure {
                outcome: Outcome::Error,
                reason: format!(
                    "TLS handshake failed: {}",
                    super::failure::tls_error(other, host)
                ),
            },
            None => HandshakeFailure {
                outcome: Outcome::Error,
                reason: format!("TLS handshake failed: {}", net::describe_io(&e, &peer)),
            },
        }
    })
}

//! `sslmode` as libpq spells it, over rustls.
//!
//! tokio-postgres knows `disable`, `prefer` and `require`, and verifies
//! nothing itself; libpq's meanings are kept here: `prefer` (the default)
//! and `require` encrypt without checking the server's certificate (as
//! libpq does when no root certificate is given), `verify-ca` checks the
//! chain against `sslrootcert` (required, as libpq requires a root
//! certificate), `verify-full` the chain (against `sslrootcert` or the
//! system's roots) and the host name. `sslrootcert` with `require` verifies the chain,
//! as libpq does.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::UrlError;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

/// The connection settings of `url` and, unless `sslmode=disable`, the TLS
/// connector its `sslmode` and `sslrootcert` ask for.
pub(super) fn config_for(
    url: &str,
) -> Result<(tokio_postgres::Config, Option<MakeRustlsConnect>), UrlError> {
    let mut parsed = url::Url::parse(url).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(UrlError::Invalid(format!(
            "it starts with {}:// where postgres:// belongs",
            parsed.scheme()
        )));
    }
    let mut sslmode = "prefer".to_string();
    let mut root_cert = None;
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| match key.as_ref() {
            "sslmode" => {
                sslmode = value.into_owned();
                None
            }
            "sslrootcert" => {
                root_cert = Some(value.into_owned());
                None
            }
            _ => Some((key.into_owned(), value.into_owned())),
        })
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    let (mode, verify) = match sslmode.as_str() {
        "disable" => (SslMode::Disable, Verify::Nothing),
        "allow" | "prefer" => (SslMode::Prefer, Verify::Nothing),
        "require" if root_cert.is_some() => (SslMode::Require, Verify::Chain),
        "require" => (SslMode::Require, Verify::Nothing),
        // libpq refuses to check a chain without a root certificate; the
        // system's roots would let any public certificate through, since
        // verify-ca does not check the name.
        "verify-ca" if root_cert.is_none() => return Err(UrlError::VerifyCaWithoutRoot),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::ChainAndName),
        other => return Err(UrlError::SslMode(other.to_string())),
    };
    let mut config = tokio_postgres::Config::from_str(parsed.as_str())
        .map_err(|e| UrlError::Invalid(e.to_string()))?;
    config.ssl_mode(mode);
    if mode == SslMode::Disable {
        return Ok((config, None));
    }
    let tls = client_config(verify, root_cert.as_deref())?;
    Ok((config, Some(MakeRustlsConnect::new(tls))))
}

fn client_config(
    verify: Verify,
    root_cert: Option<&str>,
) -> Result<rustls::ClientConfig, UrlError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| UrlError::Invalid(e.to_string()))?;
    if verify == Verify::Nothing {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| UrlError::RootCert {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
            let mut found = 0;
            for cert in rustls_pemfile_certs(&pem) {
                if roots.add(cert).is_ok() {
                    found += 1;
                }
            }
            if found == 0 {
                return Err(UrlError::RootCert {
                    path: path.to_string(),
                    reason: "it holds no PEM certificate".to_string(),
                });
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| UrlError::Invalid(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::ChainAndName => webpki,
        _ => Arc::new(ChainOnly(webpki)),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// checked (libpq's meaning).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the
/// server's certificate taken as it comes (libpq's meaning); the handshake's
/// signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_as_libpq_spells_it_and_taken_out_of_the_url() {
        for (mode, tls) in [
            ("disable", false),
            ("prefer", true),
            ("require", true),
            ("verify-full", true),
        ] {
            let url = format!("postgres://lookout@127.0.0.1:5432/lookout?sslmode={mode}");
            let (config, connector) = config_for(&url).unwrap();
            assert_eq!(connector.is_some(), tls, "{mode}");
            assert_eq!(config.get_dbname(), Some("lookout"));
        }
        let (config, _) = config_for("postgres://u@127.0.0.1/db").unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer, "libpq's default");
    }

    fn refused(url: &str) -> UrlError {
        match config_for(url) {
            Ok(_) => panic!("{url} was taken"),
            Err(error) => error,
        }
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let error = refused("postgres://u@h/db?sslmode=sometimes");
        assert!(error.to_string().contains("sslmode=sometimes"), "{error}");
        let error = refused("mysql://u@h/db");
        assert!(error.to_string().contains("postgres://"), "{error}");
        let error = refused("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem");
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
        let error = refused("postgres://u@h/db?sslmode=verify-ca");
        assert!(error.to_string().contains("sslrootcert"), "{error}");
    }
}

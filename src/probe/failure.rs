//! Failures in plain words: every TLS (rustls, webpki), I/O and DNS error a
//! run can meet, said as a sentence a user reads. The libraries' own texts
//! are not used where they hold Rust Debug output (rustls writes
//! `received fatal alert: CertificateRequired`, webpki's errors print as
//! their variant names, `CaUsedAsEndEntity`): each known variant is
//! mapped here, and an unknown one gets a general sentence, never its name.

use rustls::AlertDescription;

/// A rustls error in plain words; `server_name` for a misnamed certificate.
pub fn tls_error(error: &rustls::Error, server_name: &str) -> String {
    use rustls::Error::*;
    match error {
        InvalidCertificate(cause) => super::tls::describe_invalid(cause, server_name),
        AlertReceived(alert) => alert_received(*alert),
        InappropriateMessage { .. } | InappropriateHandshakeMessage { .. } => {
            "the server sent a TLS message out of order".into()
        }
        InvalidMessage(_) => "the server sent a malformed TLS message".into(),
        InvalidEncryptedClientHello(_) => "encrypted client hello was refused".into(),
        PeerIncompatible(_) => {
            "the server has no TLS version, cipher or extension in common with Lookout".into()
        }
        PeerMisbehaved(_) => "the server broke the TLS protocol".into(),
        NoCertificatesPresented => "the server presented no certificate".into(),
        UnsupportedNameType => "the server name is of a type TLS cannot carry".into(),
        DecryptError => "a TLS message could not be decrypted".into(),
        EncryptError => "a TLS message could not be encrypted".into(),
        PeerSentOversizedRecord => "the server sent an oversized TLS record".into(),
        HandshakeNotComplete => "the TLS handshake did not complete".into(),
        NoApplicationProtocol => "the server speaks none of the protocols offered (ALPN)".into(),
        FailedToGetCurrentTime => "this machine's clock could not be read".into(),
        FailedToGetRandomBytes => "this machine could not provide random bytes".into(),
        BadMaxFragmentSize => "the TLS fragment size is out of range".into(),
        InconsistentKeys(_) => "the client key does not match its certificate".into(),
        InvalidCertRevocationList(_) => "a certificate revocation list is invalid".into(),
        General(text) => format!("TLS failed: {text}"),
        Other(_) => "TLS failed".into(),
        _ => "TLS failed".into(),
    }
}

/// A fatal alert the server sent, in words.
pub fn alert_received(alert: AlertDescription) -> String {
    use AlertDescription::*;
    let what = match alert {
        CertificateRequired => "the server requires a client certificate",
        BadCertificate => "the server rejected the client certificate",
        UnknownCA => "the server does not trust the client certificate's issuer",
        CertificateExpired => "the server says a certificate has expired",
        CertificateRevoked => "the server says a certificate is revoked",
        CertificateUnknown | UnsupportedCertificate => {
            "the server could not accept the certificate"
        }
        AccessDenied => "the server denied access",
        HandshakeFailure => "the server refused the handshake (no common settings)",
        ProtocolVersion => "the server supports no TLS version Lookout offers",
        InsufficientSecurity => "the server wants stronger ciphers",
        UnrecognisedName => "the server does not know the name asked for (SNI)",
        NoApplicationProtocol => "the server speaks none of the protocols offered (ALPN)",
        InternalError => "the server had an internal TLS error",
        DecodeError | IllegalParameter | UnexpectedMessage => {
            "the server could not understand Lookout's TLS messages"
        }
        BadRecordMac | DecryptionFailed | DecryptError | RecordOverflow => {
            "the server could not decrypt Lookout's TLS messages"
        }
        CloseNotify | UserCanceled => "the server closed the TLS connection",
        _ => {
            return format!(
                "the server ended the handshake with TLS alert {}",
                u8::from(alert)
            );
        }
    };
    what.to_string()
}

/// The webpki reason behind `CertificateError::Other`, in words.
pub fn webpki_error(error: &webpki::Error) -> String {
    use webpki::Error::*;
    match error {
        CaUsedAsEndEntity => {
            "certificate is a CA certificate used as the server's own (put it in ca_file to pin it)"
                .into()
        }
        EndEntityUsedAsCa => "a server certificate is used as a CA in the chain".into(),
        BadDer | BadDerTime | TrailingData(_) => "certificate is malformed".into(),
        CertDistrusted => "certificate is distrusted".into(),
        CertRevoked => "certificate is revoked".into(),
        CertExpired { .. } => "certificate has expired".into(),
        CertNotValidYet { .. } => "certificate is not valid yet".into(),
        CertNotValidForName(_) => "certificate is not valid for this name".into(),
        UnknownIssuer => "certificate is not trusted (unknown issuer)".into(),
        InvalidSignatureForPublicKey => "certificate is not trusted (bad signature)".into(),
        RequiredEkuNotFoundContext(_) | EmptyEkuExtension => {
            "certificate is not valid for a TLS server (extended key usage)".into()
        }
        MaximumPathDepthExceeded
        | MaximumPathBuildCallsExceeded
        | MaximumSignatureChecksExceeded => {
            "certificate chain is too long or too tangled to verify".into()
        }
        NameConstraintViolation | PathLenConstraintViolated => {
            "certificate chain breaks its CA's constraints".into()
        }
        UnsupportedSignatureAlgorithmContext(_)
        | UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "certificate uses an unsupported signature algorithm".into()
        }
        UnsupportedCertVersion => "certificate is of an unsupported X.509 version".into(),
        UnsupportedCriticalExtension => "certificate has an unsupported critical extension".into(),
        _ => "certificate is invalid".into(),
    }
}

/// An I/O error in one line, naming the peer; a TLS error inside it (rustls
/// reports through `io::Error`) in TLS words.
pub fn io_error(error: &std::io::Error, peer: &str) -> String {
    use std::io::ErrorKind::*;
    if let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_error(tls, peer.rsplit_once(':').map_or(peer, |(h, _)| h));
    }
    let what = match error.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        UnexpectedEof => "connection closed by peer",
        TimedOut => "connection timed out",
        AddrNotAvailable => "address not available on this machine",
        AddrInUse => "address already in use",
        PermissionDenied => "permission denied",
        BrokenPipe => "connection closed by peer while sending",
        NotConnected => "not connected",
        _ if error.raw_os_error().is_some() => return format!("{error} ({peer})"),
        _ => "input/output error",
    };
    format!("{what} ({peer})")
}

/// A DNS client failure other than the answers `probe::dns` judges itself.
pub fn dns_error(error: &hickory_resolver::net::NetError, server: &str) -> String {
    use hickory_resolver::net::NetError::*;
    match error {
        Io(e) => io_error(e, server),
        Timeout => format!("no answer from {server}"),
        NoConnections => format!("no name server to ask ({server})"),
        Busy => format!("the DNS client is too busy to ask {server}"),
        Message(text) => format!("{text} ({server})"),
        Msg(text) => format!("{text} ({server})"),
        Truncated => format!(
            "the answer from {server} was truncated over UDP and not received whole over TCP"
        ),
        QueryCaseMismatch => format!("{server} answered for a differently spelled name"),
        Proto(_) | ParseInt(_) => format!("{server} sent an answer that cannot be read"),
        Dns(_) => format!("{server} gave an unusable answer"),
        _ => format!("the DNS query to {server} failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that looks like Rust Debug output of an error type.
    fn assert_plain(text: &str) {
        for leak in [
            "Other(",
            "OtherError",
            "CaUsedAsEndEntity",
            "Error {",
            "kind:",
            "Some(",
            "::",
            "Context {",
        ] {
            assert!(!text.contains(leak), "`{leak}` in {text:?}");
        }
        let camel = text.split(|c: char| !c.is_alphanumeric()).any(|w| {
            w.len() > 3
                && w.chars().skip(1).any(char::is_uppercase)
                && w.chars().next().is_some_and(char::is_uppercase)
                && !w.chars().all(|c| c.is_uppercase() || c.is_ascii_digit())
        });
        assert!(!camel, "a CamelCase name in {text:?}");
    }

    #[test]
    fn every_rustls_error_in_plain_words() {
        use rustls::Error;
        let other = || rustls::OtherError(std::sync::Arc::new(std::io::Error::other("x")));
        let errors = vec![
            Error::InappropriateMessage {
                expect_types: vec![rustls::ContentType::Handshake],
                got_type: rustls::ContentType::Alert,
            },
            Error::InappropriateHandshakeMessage {
                expect_types: vec![rustls::HandshakeType::Finished],
                got_type: rustls::HandshakeType::ClientHello,
            },
            Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            Error::PeerIncompatible(rustls::PeerIncompatible::Tls12NotOffered),
            Error::PeerMisbehaved(rustls::PeerMisbehaved::IllegalMiddleboxChangeCipherSpec),
            Error::NoCertificatesPresented,
            Error::UnsupportedNameType,
            Error::DecryptError,
            Error::EncryptError,
            Error::PeerSentOversizedRecord,
            Error::HandshakeNotComplete,
            Error::NoApplicationProtocol,
            Error::FailedToGetCurrentTime,
            Error::FailedToGetRandomBytes,
            Error::BadMaxFragmentSize,
            Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch),
            Error::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature),
            Error::General("oops".into()),
            Error::Other(other()),
            Error::InvalidCertificate(rustls::CertificateError::Other(other())),
            Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure),
            Error::InvalidCertificate(rustls::CertificateError::InvalidOcspResponse),
            Error::InvalidCertificate(rustls::CertificateError::UnknownRevocationStatus),
            Error::InvalidCertificate(rustls::CertificateError::ExpiredRevocationList),
        ];
        for error in &errors {
            assert_plain(&tls_error(error, "localhost"));
        }
        for code in 0..=255u8 {
            assert_plain(&alert_received(AlertDescription::from(code)));
        }
        assert_eq!(
            alert_received(AlertDescription::CertificateRequired),
            "the server requires a client certificate"
        );
    }

    #[test]
    fn webpki_reasons_in_plain_words() {
        use webpki::Error::*;
        for error in [
            CaUsedAsEndEntity,
            EndEntityUsedAsCa,
            BadDer,
            CertDistrusted,
            CertRevoked,
            UnknownIssuer,
            InvalidSignatureForPublicKey,
            EmptyEkuExtension,
            MaximumPathDepthExceeded,
            NameConstraintViolation,
            UnsupportedCriticalExtension,
            ExtensionValueInvalid,
            IssuerNotCrlSigner,
        ] {
            assert_plain(&webpki_error(&error));
            // Through rustls, as a handshake reports it.
            let wrapped = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                rustls::OtherError(std::sync::Arc::new(error)),
            ));
            assert_plain(&tls_error(&wrapped, "localhost"));
        }
        let pinned_ca = rustls::CertificateError::Other(rustls::OtherError(std::sync::Arc::new(
            CaUsedAsEndEntity,
        )));
        assert!(
            super::super::tls::describe_invalid(&pinned_ca, "x").starts_with("certificate is a CA"),
        );
    }

    #[test]
    fn io_and_dns_errors_in_plain_words() {
        use std::io::{Error, ErrorKind};
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::UnexpectedEof,
            ErrorKind::AddrNotAvailable,
            ErrorKind::Other,
            ErrorKind::InvalidData,
        ] {
            assert_plain(&io_error(&Error::from(kind), "127.0.0.1:1"));
        }
        let alert = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
        );
        assert_eq!(
            io_error(&alert, "localhost:443"),
            "the server requires a client certificate"
        );
        use hickory_resolver::net::NetError;
        for error in [
            NetError::Timeout,
            NetError::NoConnections,
            NetError::Busy,
            NetError::Truncated,
            NetError::QueryCaseMismatch,
            NetError::Io(std::sync::Arc::new(Error::from(
                ErrorKind::ConnectionRefused,
            ))),
            NetError::Message("static text"),
        ] {
            assert_plain(&dns_error(&error, "127.0.0.1:53"));
        }
    }
}

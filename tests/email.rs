//! Email delivery against a real SMTP server: `tests/smtp_sink.py`
//! (aiosmtpd) on 127.0.0.1, started per test, which saves what it receives.
//! Needs python3 with aiosmtpd: `scripts/test` installs it.

use std::sync::Arc;

mod common;

use common::smtp::Sink;
use lookout::alert::DeliveryError;
use lookout::alert::email::{EmailMessage, send};
use lookout::config::EmailChannel;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use url::Url;

const PASSWORD: &str = "s3cret";

fn channel(url: &str) -> EmailChannel {
    EmailChannel {
        smtp: Url::parse(url).unwrap(),
        username: None,
        password: None,
        from: "Lookout <lookout@example.com>".into(),
        to: vec!["oncall@example.com".into(), "Ops <ops@example.org>".into()],
        ca_file: None,
        system_roots: true,
        tls_verify: true,
    }
}

fn with_auth(mut channel: EmailChannel, password: &str) -> EmailChannel {
    channel.username = Some("lookout".into());
    channel.password = Some(password.into());
    channel
}

fn alert() -> EmailMessage {
    EmailMessage {
        delivery: None,
        subject: "[DOWN] api-health — HTTP 500 in 2/3 regions".into(),
        text: "TEXT-MARKER api-health is down — since 12:00 UTC\n".into(),
        html: "<p>HTML-MARKER <b>api-health</b> is down — since 12:00 UTC</p>\n".into(),
        attachments: Vec::new(),
    }
}

/// A port with nothing listening: bound, noted, released.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn retryable(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Retryable {
            reason,
            retry_after: None,
        }) => {
            eprintln!("retryable: {reason}");
            reason
        }
        other => panic!("expected Retryable, got {other:?}"),
    }
}

fn permanent(result: Result<(), DeliveryError>) -> String {
    match result {
        Err(DeliveryError::Permanent { reason }) => {
            eprintln!("permanent: {reason}");
            reason
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
}

fn assert_one_line(reason: &str) {
    assert!(
        !reason.is_empty() && !reason.contains(['\r', '\n']),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_message_arrives_with_every_recipient_and_both_parts() {
    let sink = Sink::start(&[]);
    send(&channel(&sink.url()), &alert()).await.unwrap();

    let messages = sink.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (raw, meta) = &messages[0];
    assert_eq!(meta["mail_from"], "lookout@example.com");
    assert_eq!(
        meta["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "ops@example.org"])
    );
    // Decoded by Python's email package: the em dash survives the trip.
    assert_eq!(
        meta["subject"], "[DOWN] api-health — HTTP 500 in 2/3 regions",
        "{raw}"
    );
    assert_eq!(meta["content_type"], "multipart/alternative", "{raw}");
    let parts = meta["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{raw}");
    assert_eq!(parts[0]["content_type"], "text/plain");
    // Line ends travel as CRLF, as SMTP has them.
    assert_eq!(
        parts[0]["content"].as_str().unwrap().replace("\r\n", "\n"),
        "TEXT-MARKER api-health is down — since 12:00 UTC\n"
    );
    assert_eq!(parts[1]["content_type"], "text/html");
    assert!(
        parts[1]["content"]
            .as_str()
            .unwrap()
            .contains("<b>api-health</b> is down — since")
    );

    // The raw message, checked without a MIME parser.
    let raw_lower = raw.to_ascii_lowercase();
    for needle in [
        "content-type: multipart/alternative",
        "content-type: text/plain; charset=utf-8",
        "content-type: text/html; charset=utf-8",
        "x-lookout: alert",
        "message-id: <",
        "date: ",
        "from: lookout <lookout@example.com>",
    ] {
        assert!(raw_lower.contains(needle), "no {needle:?} in:\n{raw}");
    }
    assert!(raw.contains("ops@example.org") && raw.contains("oncall@example.com"));
    let text_at = raw.find("TEXT-MARKER").expect("text part");
    let html_at = raw.find("HTML-MARKER").expect("html part");
    assert!(
        text_at < html_at,
        "text first, HTML last (preferred):\n{raw}"
    );
}

#[tokio::test]
async fn auth_with_the_right_password_delivers() {
    let sink = Sink::start(&["--auth", "lookout:s3cret"]);
    send(&with_auth(channel(&sink.url()), PASSWORD), &alert())
        .await
        .unwrap();
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1["auth"], "lookout");
}

#[tokio::test]
async fn auth_is_required_by_the_sink_so_no_credentials_is_refused() {
    let sink = Sink::start(&["--auth", "lookout:s3cret"]);
    let reason = permanent(send(&channel(&sink.url()), &alert()).await);
    assert!(reason.contains("530"), "{reason}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn a_wrong_password_is_permanent_and_never_shown() {
    let sink = Sink::start(&["--auth", "lookout:right-password"]);
    let reason = permanent(send(&with_auth(channel(&sink.url()), PASSWORD), &alert()).await);
    assert!(reason.contains("535"), "{reason}");
    assert!(
        reason.contains(&format!("127.0.0.1:{}", sink.port)),
        "{reason}"
    );
    assert!(!reason.contains(PASSWORD), "{reason}");
    assert_one_line(&reason);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn an_smtp_4xx_is_retryable_and_the_next_attempt_arrives() {
    let sink = Sink::start(&["--fail-first", "1"]);
    let ch = channel(&sink.url());
    let reason = retryable(send(&ch, &alert()).await);
    assert!(
        reason.contains("451") && reason.contains("try again later"),
        "{reason}"
    );
    assert_one_line(&reason);
    assert!(sink.messages().is_empty());

    send(&ch, &alert()).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn a_rejected_recipient_is_permanent_with_the_550_text() {
    let sink = Sink::start(&["--reject-rcpt", "ops@example.org"]);
    let reason = permanent(send(&channel(&sink.url()), &alert()).await);
    assert!(reason.contains("550 5.1.1 no such user"), "{reason}");
    assert_one_line(&reason);
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn nothing_listening_is_retryable() {
    let port = free_port();
    let ch = channel(&format!("smtp+insecure://127.0.0.1:{port}"));
    let reason = retryable(send(&ch, &alert()).await);
    assert!(reason.contains("connect"), "{reason}");
    assert!(reason.contains(&format!("127.0.0.1:{port}")), "{reason}");
    assert_one_line(&reason);
}

#[tokio::test]
async fn a_server_that_comes_back_receives_the_mail() {
    let port = free_port();
    let ch = channel(&format!("smtp+insecure://127.0.0.1:{port}"));
    retryable(send(&ch, &alert()).await);

    let sink = Sink::start_on(port, &[]);
    assert_eq!(sink.port, port);
    send(&ch, &alert()).await.unwrap();
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test]
async fn starttls_required_sends_nothing_to_a_server_without_it() {
    let sink = Sink::start(&["--auth", "lookout:s3cret"]);
    let ch = with_auth(
        channel(&format!("smtp://127.0.0.1:{}", sink.port)),
        PASSWORD,
    );
    let reason = match send(&ch, &alert()).await {
        Err(DeliveryError::Retryable { reason, .. } | DeliveryError::Permanent { reason }) => {
            reason
        }
        Ok(()) => panic!("smtp:// delivered without TLS"),
    };
    eprintln!("reason: {reason}");
    assert!(reason.contains("STARTTLS"), "{reason}");
    assert!(!reason.contains(PASSWORD), "{reason}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_to_a_plain_server_is_retryable() {
    let sink = Sink::start(&[]);
    let ch = channel(&format!("smtps://127.0.0.1:{}", sink.port));
    let reason = retryable(send(&ch, &alert()).await);
    assert!(reason.contains("TLS"), "{reason}");
    assert_one_line(&reason);
    assert!(sink.messages().is_empty());
}

/// smtps:// verifies the certificate against the system's roots: a
/// self-signed one is refused before anything is sent.
#[tokio::test]
async fn implicit_tls_refuses_an_untrusted_certificate() {
    lookout::install_crypto_provider();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The client rejects the certificate, so the handshake fails here.
        acceptor.accept(tcp).await.is_ok()
    });

    let ch = with_auth(channel(&format!("smtps://127.0.0.1:{port}")), PASSWORD);
    let reason = retryable(send(&ch, &alert()).await);
    assert!(reason.contains("TLS handshake"), "{reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    assert!(!server.await.unwrap(), "the handshake must not complete");
}

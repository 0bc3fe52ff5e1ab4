//! Sending an alert by email: one SMTP conversation per delivery, through
//! lettre on tokio, TLS by rustls (ring) trusting the system's roots and the
//! channel's `ca_file` (`system_roots: false`: only it; `tls_verify: false`:
//! anything, warned about at start).
//!
//! The channel's URL scheme picks the security, never the server:
//! `smtp://` requires STARTTLS (a server that does not offer it gets nothing,
//! not even the credentials), `smtps://` is TLS from the first byte, and
//! `smtp+insecure://` is plain text, for a relay on the same host or network.
//!
//! Failures come back as a [`DeliveryError`] the outbox can act on: what may
//! pass later (no connection, DNS, a timeout, TLS, an SMTP 4xx) is
//! `Retryable`; what cannot (an SMTP 5xx such as a rejected recipient or bad
//! credentials, an address that does not parse) is `Permanent`. Reasons are
//! one line and never contain the password.

use std::fmt;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use url::{Host, Url};

use super::DeliveryError;
use crate::config::EmailChannel;

/// How long one delivery may take, from the TCP connect to the server's
/// answer to the message (the limit shared by every alert delivery). lettre
/// applies its own timeout only to the connect, so the whole conversation
/// runs under this one as well: a server that accepts and then stalls cannot
/// hold a delivery forever.
pub const SMTP_TIMEOUT: Duration = crate::limits::ALERT_SEND_TIMEOUT;
/// Characters of a failure reason kept: one readable line, as for results.
pub const REASON_CHARS_MAX: usize = crate::limits::RESULT_ERROR_CHARS_MAX;
/// Default ports per scheme (RFC 6409 submission, RFC 8314 submissions, SMTP).
const PORT_STARTTLS: u16 = 587;
const PORT_IMPLICIT_TLS: u16 = 465;
const PORT_PLAIN: u16 = 25;

/// An alert rendered for email. Both bodies are UTF-8; they are sent as the
/// two parts of a `multipart/alternative` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailMessage {
    /// The delivery id when there is one: it becomes the Message-ID, so a
    /// resend after a lost reply is the same message to mail clients.
    pub delivery: Option<uuid::Uuid>,
    /// One line; control characters are replaced by spaces.
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Files attached after the two bodies (a browser check's screenshot):
    /// file name, MIME type, bytes.
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

/// Sends `message` to every address in `channel.to`, over one new SMTP
/// connection, within [`SMTP_TIMEOUT`].
pub async fn send(channel: &EmailChannel, message: &EmailMessage) -> Result<(), DeliveryError> {
    send_within(channel, message, SMTP_TIMEOUT).await
}

async fn send_within(
    channel: &EmailChannel,
    message: &EmailMessage,
    timeout: Duration,
) -> Result<(), DeliveryError> {
    let password = channel.password.as_deref().unwrap_or("");
    let result = async {
        let email = build_message(channel, message)?;
        let server = Server::from_url(&channel.smtp)?;
        let transport = server.transport(channel, timeout)?;
        match tokio::time::timeout(timeout, transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(classify(&error, &server, timeout)),
            Err(_) => Err(DeliveryError::Retryable {
                reason: format!(
                    "timed out after {} talking to SMTP server {server}",
                    humantime::format_duration(timeout)
                ),
                retry_after: None,
            }),
        }
    }
    .await;
    result.map_err(|e| clean(e, password))
}

/// The message: From, To (every recipient), Subject, Date, Message-ID,
/// `X-Lookout: alert`, and a text + HTML `multipart/alternative` body.
fn build_message(channel: &EmailChannel, message: &EmailMessage) -> Result<Message, DeliveryError> {
    let from: Mailbox = channel
        .from
        .parse()
        .map_err(|e| permanent(format!("invalid `from` address `{}`: {e}", channel.from)))?;
    let subject: String = message
        .subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .date_now()
        .message_id(message.delivery.map(|id| format!("<{id}@lookout>")))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Lookout"),
            "alert".to_string(),
        ));
    for to in &channel.to {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| permanent(format!("invalid `to` address `{to}`: {e}")))?;
        builder = builder.to(mailbox);
    }
    let bodies = MultiPart::alternative_plain_html(message.text.clone(), message.html.clone());
    let body = if message.attachments.is_empty() {
        bodies
    } else {
        let mut mixed = MultiPart::mixed().multipart(bodies);
        for (name, mime, bytes) in &message.attachments {
            let content_type = lettre::message::header::ContentType::parse(mime)
                .map_err(|e| permanent(format!("invalid attachment type `{mime}`: {e}")))?;
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(name.clone()).body(bytes.clone(), content_type),
            );
        }
        mixed
    };
    builder
        .multipart(body)
        .map_err(|e| permanent(format!("cannot build the email: {e}")))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    /// `smtp://`: plain connect, then STARTTLS or nothing is sent.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    ImplicitTls,
    /// `smtp+insecure://`: no TLS at all.
    Plain,
}

/// Where and how to connect, from the channel's `smtp` URL. Any user info in
/// the URL is ignored, and never shown: credentials come from `username` and
/// `password`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Server {
    /// A DNS name, or an IP address without brackets.
    host: String,
    port: u16,
    security: Security,
}

impl Server {
    fn from_url(url: &Url) -> Result<Server, DeliveryError> {
        let (security, default_port) = match url.scheme() {
            "smtp" => (Security::StartTls, PORT_STARTTLS),
            "smtps" => (Security::ImplicitTls, PORT_IMPLICIT_TLS),
            "smtp+insecure" => (Security::Plain, PORT_PLAIN),
            other => {
                return Err(permanent(format!(
                    "unsupported `smtp` URL scheme `{other}`; expected smtp://, smtps:// or smtp+insecure://"
                )));
            }
        };
        let host = match url.host() {
            Some(Host::Domain(name)) if !name.is_empty() => name.to_string(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(permanent("the `smtp` URL has no host".to_string())),
        };
        Ok(Server {
            host,
            port: url.port().unwrap_or(default_port),
            security,
        })
    }

    /// A transport for one delivery: no pool, so nothing outlives the send.
    fn transport(
        &self,
        channel: &EmailChannel,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        let tls = match self.security {
            Security::Plain => Tls::None,
            Security::StartTls => Tls::Required(self.tls_parameters(channel)?),
            Security::ImplicitTls => Tls::Wrapper(self.tls_parameters(channel)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some(username) = &channel.username {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                channel.password.clone().unwrap_or_default(),
            ));
        }
        Ok(builder.build())
    }

    /// rustls with the process's default provider (ring; lettre falls back to
    /// ring itself when none is installed), trusting the system's roots, plus
    /// the channel's `ca_file` (or only it, with `system_roots: false`); with
    /// `tls_verify: false`, any certificate.
    fn tls_parameters(&self, channel: &EmailChannel) -> Result<TlsParameters, DeliveryError> {
        let setup = |reason: String| DeliveryError::Retryable {
            reason: format!("cannot set up TLS for SMTP server {self}: {reason}"),
            retry_after: None,
        };
        let mut builder = TlsParameters::builder(self.host.clone());
        if let Some(path) = &channel.ca_file {
            // Read again at send time, as checks do: what validated is
            // what is trusted (a replaced file applies at once).
            let certs = crate::config::ca::read_ca_file(path).map_err(setup)?;
            for der in certs {
                let cert = lettre::transport::smtp::client::Certificate::from_der(der.to_vec())
                    .map_err(|e| setup(detail(&e)))?;
                builder = builder.add_root_certificate(cert);
            }
            if !channel.system_roots {
                builder = builder.certificate_store(CertificateStore::None);
            }
        }
        if !channel.tls_verify {
            builder = builder
                .dangerous_accept_invalid_certs(true)
                .dangerous_accept_invalid_hostnames(true);
        }
        builder.build().map_err(|e| setup(detail(&e)))
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Sorts a lettre failure into retryable or permanent, with a reason a
/// person can act on.
fn classify(error: &SmtpError, server: &Server, timeout: Duration) -> DeliveryError {
    let detail = detail(error);
    let retry = |reason: String| DeliveryError::Retryable {
        reason,
        retry_after: None,
    };
    if let Some(code) = error.status() {
        let reply = format!("{code} {detail}");
        let reply = reply.trim_end();
        return if error.is_permanent() {
            let hint = match code.to_string().as_str() {
                "534" | "535" => "; check the channel's `username` and `password`",
                _ => "",
            };
            permanent(format!("SMTP server {server} refused: {reply}{hint}"))
        } else {
            retry(format!("SMTP server {server} deferred: {reply}"))
        };
    }
    if error.is_timeout() {
        return retry(format!(
            "timed out after {} connecting to SMTP server {server}",
            humantime::format_duration(timeout)
        ));
    }
    if error.is_client() {
        return if detail.contains("STARTTLS") {
            // A server that stops offering STARTTLS may be misconfigured for a
            // while, or someone on the path strips it: either way nothing was
            // sent in clear, and a later attempt may succeed.
            retry(format!(
                "SMTP server {server} does not offer STARTTLS, which smtp:// requires; nothing was sent (use smtps:// for implicit TLS, or smtp+insecure:// for a local relay)"
            ))
        } else if detail.contains("authentication mechanism") {
            permanent(format!(
                "SMTP server {server} offers no AUTH mechanism Lookout supports (PLAIN, LOGIN), but the channel has a `username`"
            ))
        } else {
            permanent(format!("cannot send to SMTP server {server}: {detail}"))
        };
    }
    if error.is_tls() {
        return retry(format!("TLS with SMTP server {server} failed: {detail}"));
    }
    if let Some(tls) = rustls_error(error) {
        return retry(format!(
            "TLS handshake with SMTP server {server} failed: {tls}"
        ));
    }
    if error.is_response() {
        return retry(format!(
            "SMTP server {server} sent an unexpected reply: {detail}"
        ));
    }
    if error.to_string().starts_with("network error") {
        return retry(format!(
            "connection to SMTP server {server} failed: {detail}"
        ));
    }
    retry(format!("cannot connect to SMTP server {server}: {detail}"))
}

/// The text of what went wrong beneath lettre's kind, if anything.
fn detail(error: &SmtpError) -> String {
    match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => error.to_string(),
    }
}

/// The rustls error behind a connection failure, when the TLS handshake (of
/// implicit TLS or of STARTTLS) is what failed.
fn rustls_error(error: &SmtpError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        next = err.source();
    }
    None
}

fn permanent(reason: String) -> DeliveryError {
    DeliveryError::Permanent { reason }
}

/// One line, bounded, and without the password, whatever the server or the
/// operating system put into the text.
fn clean(error: DeliveryError, password: &str) -> DeliveryError {
    let tidy = |reason: String| one_line(&redact(&reason, password));
    match error {
        DeliveryError::Retryable {
            reason,
            retry_after,
        } => DeliveryError::Retryable {
            reason: tidy(reason),
            retry_after,
        },
        DeliveryError::Permanent { reason } => DeliveryError::Permanent {
            reason: tidy(reason),
        },
    }
}

fn redact(text: &str, password: &str) -> String {
    if password.is_empty() {
        text.to_string()
    } else {
        text.replace(password, "****")
    }
}

fn one_line(text: &str) -> String {
    let line = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.chars().count() <= REASON_CHARS_MAX {
        return line;
    }
    let mut cut: String = line.chars().take(REASON_CHARS_MAX - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(smtp: &str) -> EmailChannel {
        EmailChannel {
            smtp: Url::parse(smtp).unwrap(),
            username: None,
            password: None,
            from: "Lookout <lookout@example.com>".into(),
            to: vec!["a@example.com".into(), "B <b@example.com>".into()],
            ca_file: None,
            system_roots: true,
            tls_verify: true,
        }
    }

    fn message() -> EmailMessage {
        EmailMessage {
            delivery: None,
            subject: "[DOWN] api — HTTP 500".into(),
            text: "text part".into(),
            html: "<p>html part</p>".into(),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn schemes_pick_security_and_default_port() {
        let server = |url: &str| Server::from_url(&Url::parse(url).unwrap()).unwrap();
        assert_eq!(
            server("smtp://mail.example.com"),
            Server {
                host: "mail.example.com".into(),
                port: 587,
                security: Security::StartTls
            }
        );
        assert_eq!(server("smtps://mail.example.com").port, 465);
        assert_eq!(
            server("smtps://mail.example.com").security,
            Security::ImplicitTls
        );
        assert_eq!(server("smtp+insecure://127.0.0.1").port, 25);
        assert_eq!(
            server("smtp+insecure://127.0.0.1").security,
            Security::Plain
        );
        assert_eq!(server("smtp://mail.example.com:2525").port, 2525);
        let v6 = server("smtps://[::1]:4650");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:4650");
        let bad = Server::from_url(&Url::parse("http://example.com").unwrap()).unwrap_err();
        assert!(matches!(bad, DeliveryError::Permanent { .. }), "{bad:?}");
    }

    #[test]
    fn message_is_multipart_alternative_with_every_header() {
        let email = build_message(&channel("smtp://mail.example.com"), &message()).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(raw.is_ascii(), "the message is 7-bit clean");
        for needle in [
            "From: Lookout <lookout@example.com>",
            "a@example.com",
            "B <b@example.com>",
            "Date: ",
            "Message-ID: <",
            "X-Lookout: alert",
            "multipart/alternative",
            "text/plain; charset=utf-8",
            "text/html; charset=utf-8",
            "text part",
            "html part",
        ] {
            assert!(raw.contains(needle), "missing {needle:?} in:\n{raw}");
        }
        let envelope: Vec<String> = email
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(envelope, ["a@example.com", "b@example.com"]);
    }

    #[test]
    fn subject_cannot_inject_headers() {
        let mut msg = message();
        msg.subject = "hi\r\nBcc: evil@example.com".into();
        let email = build_message(&channel("smtp://mail.example.com"), &msg).unwrap();
        let raw = String::from_utf8(email.formatted()).unwrap();
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
        assert_eq!(email.envelope().to().len(), 2);
    }

    #[tokio::test]
    async fn bad_addresses_are_permanent() {
        let mut bad_from = channel("smtp+insecure://127.0.0.1:9");
        bad_from.from = "not an address".into();
        let err = send(&bad_from, &message()).await.unwrap_err();
        match err {
            DeliveryError::Permanent { reason } => assert!(reason.contains("`from`"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let mut bad_to = channel("smtp+insecure://127.0.0.1:9");
        bad_to.to.push("nobody@".into());
        let err = send(&bad_to, &message()).await.unwrap_err();
        match err {
            DeliveryError::Permanent { reason } => {
                assert!(reason.contains("`to` address `nobody@`"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// A server that accepts the connection and never says a word.
    #[tokio::test]
    async fn a_silent_server_times_out_as_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let ch = channel(&format!("smtp+insecure://127.0.0.1:{port}"));
        let started = std::time::Instant::now();
        let err = send_within(&ch, &message(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        match err {
            DeliveryError::Retryable {
                reason,
                retry_after: None,
            } => assert!(reason.contains("timed out"), "{reason}"),
            other => panic!("{other:?}"),
        }
        hold.abort();
    }

    #[test]
    fn reasons_are_one_bounded_line_without_the_password() {
        let err = DeliveryError::Permanent {
            reason: "535 bad\r\n  credentials hunter22 for\tuser".into(),
        };
        assert_eq!(
            clean(err, "hunter22"),
            DeliveryError::Permanent {
                reason: "535 bad credentials **** for user".into()
            }
        );
        let long = one_line(&"x".repeat(10_000));
        assert_eq!(long.chars().count(), REASON_CHARS_MAX);
        assert!(long.ends_with('…'));
        assert_eq!(redact("text", ""), "text");
    }
}

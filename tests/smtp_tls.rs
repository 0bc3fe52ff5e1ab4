//! Email over TLS to a server whose certificate a private CA issued (made
//! here with rcgen): STARTTLS (`smtp://`) and implicit TLS (`smtps://`)
//! deliver when the channel's `ca_file` names that CA, and fail without it;
//! `tls_verify: false` accepts the certificate anyway. The server is
//! `tests/smtp_sink.py` (aiosmtpd) with `--tls`.

mod common;

use std::path::PathBuf;

use lookout::alert::DeliveryError;
use lookout::alert::email::{EmailMessage, send};
use lookout::config::EmailChannel;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use url::Url;

/// A CA, and a certificate it issued for 127.0.0.1 and localhost, as PEM
/// files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "lookout smtp test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path_str(&self, name: &str) -> String {
        common::path_str(&self.path(name))
    }
}

fn sink(pki: &Pki, mode: &str) -> common::smtp::Sink {
    common::smtp::Sink::start(&[
        "--tls",
        mode,
        "--tls-cert",
        &pki.path_str("server.pem"),
        "--tls-key",
        &pki.path_str("server.key"),
    ])
}

fn channel(url: String, ca_file: Option<PathBuf>) -> EmailChannel {
    EmailChannel {
        smtp: Url::parse(&url).unwrap(),
        username: None,
        password: None,
        from: "Lookout <lookout@example.com>".into(),
        to: vec!["oncall@example.com".into()],
        ca_file,
        system_roots: true,
        tls_verify: true,
    }
}

fn message(subject: &str) -> EmailMessage {
    EmailMessage {
        delivery: None,
        subject: subject.into(),
        text: "api-health is DOWN".into(),
        html: "<p>api-health is DOWN</p>".into(),
        attachments: Vec::new(),
    }
}

/// Sends and checks the one message arrived, over TLS.
async fn delivered(sink: &common::smtp::Sink, channel: &EmailChannel, subject: &str) {
    let sent = send(channel, &message(subject)).await;
    assert_eq!(sent, Ok(()), "sink log:\n{}", sink.log());
    let messages = sink.messages();
    let (_, meta) = messages
        .iter()
        .find(|(_, m)| m["subject"] == subject)
        .unwrap_or_else(|| panic!("no message {subject:?}: {messages:?}"));
    assert_eq!(meta["tls"], true, "{meta}");
    assert_eq!(meta["rcpt_tos"][0], "oncall@example.com");
}

#[tokio::test]
async fn starttls_with_the_private_ca_delivers() {
    let pki = Pki::new();
    let sink = sink(&pki, "starttls");
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    delivered(
        &sink,
        &channel(url.clone(), Some(pki.path("ca.pem"))),
        "starttls with ca_file",
    )
    .await;
    // Only the CA, no system roots: still fine.
    let mut only = channel(url.clone(), Some(pki.path("ca.pem")));
    only.system_roots = false;
    delivered(&sink, &only, "starttls with only ca_file").await;
    // Without the CA the certificate is not trusted, and nothing is sent.
    let refused = send(&channel(url, None), &message("untrusted")).await;
    assert!(
        matches!(&refused, Err(DeliveryError::Retryable { reason, .. }) if reason.contains("certificate") || reason.contains("TLS")),
        "{refused:?}"
    );
    assert!(
        !sink
            .messages()
            .iter()
            .any(|(_, m)| m["subject"] == "untrusted")
    );
}

#[tokio::test]
async fn smtps_with_the_private_ca_delivers() {
    let pki = Pki::new();
    let sink = sink(&pki, "smtps");
    let url = format!("smtps://127.0.0.1:{}", sink.port);
    delivered(
        &sink,
        &channel(url.clone(), Some(pki.path("ca.pem"))),
        "smtps with ca_file",
    )
    .await;
    let refused = send(&channel(url.clone(), None), &message("untrusted")).await;
    assert!(refused.is_err(), "{refused:?}");
    // tls_verify: false takes any certificate.
    let mut blind = channel(url, None);
    blind.tls_verify = false;
    delivered(&sink, &blind, "smtps without verification").await;
}

#[test]
fn the_email_channel_keys_validate() {
    let pki = Pki::new();
    let dirs = common::ConfigDirs::new("checks: []\n");
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  relay:\n    email:\n      smtp: smtp://127.0.0.1:2525\n      ca_file: {}\n      system_roots: false\n      from: lookout@example.com\n      to: [oncall@example.com]\n  blind:\n    email:\n      smtp: smtps://127.0.0.1:2465\n      tls_verify: false\n      from: lookout@example.com\n      to: [oncall@example.com]\n",
            pki.path_str("ca.pem")
        ),
    )
    .unwrap();
    let config = dirs.load();
    let lookout::config::ChannelKind::Email(relay) = &config.channels["relay"].kind else {
        panic!("relay is an email channel");
    };
    assert_eq!(relay.ca_file.as_deref(), Some(pki.path("ca.pem").as_path()));
    assert!(!relay.system_roots && relay.tls_verify);
    let lookout::config::ChannelKind::Email(blind) = &config.channels["blind"].kind else {
        panic!("blind is an email channel");
    };
    assert!(!blind.tls_verify);

    // A ca_file that is not PEM fails validation, placed.
    std::fs::write(pki.path("bad.pem"), "not a certificate").unwrap();
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        format!(
            "channels:\n  relay:\n    email:\n      smtp: smtp://127.0.0.1:2525\n      ca_file: {}\n      from: lookout@example.com\n      to: [oncall@example.com]\n",
            pki.path_str("bad.pem")
        ),
    )
    .unwrap();
    let errors = lookout::config::load(&dirs.checks(), &dirs.alerts())
        .err()
        .map(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("alerts.yaml:5:16:"), "{errors:?}");
}

#[tokio::test]
async fn tls_verify_false_is_warned_about_at_start() {
    let dirs = common::ConfigDirs::new("checks: []\n");
    std::fs::write(
        dirs.alerts().join("alerts.yaml"),
        "channels:\n  blind:\n    email:\n      smtp: smtps://127.0.0.1:2465\n      tls_verify: false\n      from: lookout@example.com\n      to: [oncall@example.com]\n",
    )
    .unwrap();
    let server = common::Server::start(&dirs);
    common::wait_for(
        "the tls_verify warning",
        std::time::Duration::from_secs(30),
        || {
            let log = server.log_text();
            async move {
                log.lines()
                    .find(|l| {
                        l.contains("WARN") && l.contains("tls_verify: false") && l.contains("blind")
                    })
                    .map(|_| ())
            }
        },
    )
    .await;
}

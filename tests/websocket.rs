//! The `websocket` kind against real WebSocket servers on 127.0.0.1: an
//! echo server (plain and behind TLS with a test CA), one that greets with
//! a handshake header, and an HTTP server that refuses the upgrade.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pki::TestPki;
use common::{ConfigDirs, path_str};
use futures_util::{SinkExt, StreamExt};
use lookout::result::{Outcome, ProbeResult};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// What a test server does with a connection once it is a WebSocket.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Sends back each message it gets, until the client closes.
    Echo,
    /// Sends the `x-token` handshake header's value as its first message.
    GreetWithToken,
}

/// Serves one WebSocket connection on `stream`.
// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn serve_socket<S>(stream: S, behaviour: Behaviour)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut token = String::new();
    let capture = |request: &Request, response: Response| {
        token = request
            .headers()
            .get("x-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("no token")
            .to_string();
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, capture).await else {
        return;
    };
    if let Behaviour::GreetWithToken = behaviour
        && socket.send(Message::text(token.clone())).await.is_err()
    {
        return;
    }
    // Bounded: a test client sends a message or two, then closes.
    for _ in 0..16 {
        match socket.next().await {
            Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                if socket.send(message).await.is_err() {
                    return;
                }
            }
            // Reading on after a close sends the reply, as servers do.
            Some(Ok(_)) => continue,
            None | Some(Err(_)) => return,
        }
    }
}

/// A plain WebSocket server on 127.0.0.1, accepting until the test ends.
async fn serve_ws(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve_socket(tcp, behaviour));
        }
    });
    addr
}

/// A WebSocket echo server behind TLS with `pki`'s certificate.
async fn serve_wss(pki: &TestPki) -> SocketAddr {
    serve_wss_with(pki.server_config(&[b"http/1.1"])).await
}

/// A WebSocket echo server behind TLS with `config`.
async fn serve_wss_with(config: std::sync::Arc<rustls::ServerConfig>) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake.
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve_socket(tls, Behaviour::Echo).await;
                }
            });
        }
    });
    addr
}

async fn probe(websocket: &str) -> ProbeResult {
    ConfigDirs::new(&format!(
        "checks:\n  - name: ws\n    websocket: {websocket}\n    every: 1m\n    timeout: 5s\n"
    ))
    .run_first()
    .await
}

#[tokio::test]
async fn expect_holds_on_the_echo_of_what_was_sent() {
    let addr = serve_ws(Behaviour::Echo).await;
    let result = probe(&format!(
        "{{ url: \"ws://{addr}/echo\", send: \"ping 42\", expect: \"ping 42\" }}"
    ))
    .await;
    assert_eq!(
        (result.outcome, result.status, result.error.as_deref()),
        (Outcome::Ok, Some(101), None),
        "{result:?}"
    );
    assert!(result.phases_ms.connect.is_some(), "{result:?}");
    assert!(result.phases_ms.ttfb.is_some(), "{result:?}");
    assert!(
        result.notes.is_empty(),
        "closed cleanly: {:?}",
        result.notes
    );
}

#[tokio::test]
async fn expect_fails_naming_what_came_instead() {
    let addr = serve_ws(Behaviour::Echo).await;
    let result = probe(&format!(
        "{{ url: \"ws://{addr}/\", send: \"hello there\", expect: \"goodbye\" }}"
    ))
    .await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("the first message does not contain \"goodbye\" (got \"hello there\")")
    );
}

#[tokio::test]
async fn connecting_and_closing_is_enough_without_an_exchange() {
    let addr = serve_ws(Behaviour::Echo).await;
    let result = probe(&format!("{{ url: \"ws://{addr}/\" }}")).await;
    assert_eq!(
        (result.outcome, result.error.as_deref()),
        (Outcome::Ok, None),
        "{result:?}"
    );
    assert!(result.notes.is_empty(), "{:?}", result.notes);
}

#[tokio::test]
async fn handshake_headers_reach_the_server() {
    let addr = serve_ws(Behaviour::GreetWithToken).await;
    let result = probe(&format!(
        "{{ url: \"ws://{addr}/\", headers: {{ x-token: s3cret-value }}, expect: s3cret-value }}"
    ))
    .await;
    assert_eq!(
        (result.outcome, result.error.as_deref()),
        (Outcome::Ok, None),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_refused_upgrade_fails_with_the_status_the_server_gave() {
    let app = axum::Router::new();
    let addr = common::serve_on_loopback(app).await;
    let result = probe(&format!("{{ url: \"ws://{addr}/nothing-here\" }}")).await;
    assert_eq!(
        (result.outcome, result.status),
        (Outcome::Fail, Some(404)),
        "{result:?}"
    );
    let error = result.error.unwrap_or_default();
    assert!(
        error.contains("404") && error.contains("instead of switching to WebSocket"),
        "{error}"
    );
}

#[tokio::test]
async fn wss_is_trusted_with_the_test_ca_and_refused_without_it() {
    let pki = TestPki::new();
    let addr = serve_wss(&pki).await;
    let ca_file = pki.ca_file();
    let url = format!("wss://localhost:{}/", addr.port());

    let trusted = probe(&format!(
        "{{ url: \"{url}\", ca_file: \"{}\", send: over-tls, expect: over-tls }}",
        path_str(&ca_file)
    ))
    .await;
    assert_eq!(
        (trusted.outcome, trusted.error.as_deref()),
        (Outcome::Ok, None),
        "{trusted:?}"
    );
    assert!(trusted.phases_ms.tls.is_some(), "{trusted:?}");
    assert!(trusted.cert_expiry.is_some(), "{trusted:?}");

    let untrusted = probe(&format!("{{ url: \"{url}\" }}")).await;
    assert_eq!(untrusted.outcome, Outcome::Fail, "{untrusted:?}");
    assert_eq!(
        untrusted.error.as_deref(),
        Some("certificate is not trusted (unknown issuer)")
    );

    let unverified = probe(&format!("{{ url: \"{url}\", tls_verify: false }}")).await;
    assert_eq!(unverified.outcome, Outcome::Ok, "{unverified:?}");
}

#[tokio::test]
async fn a_server_that_is_not_there_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        probe(&format!("{{ url: \"ws://{addr}/\" }}")),
    )
    .await
    .unwrap();
    assert_eq!(result.outcome, Outcome::Error, "{result:?}");
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e.contains("connection refused")),
        "{result:?}"
    );
}

#[tokio::test]
async fn wss_presents_its_client_certificate_when_the_server_asks() {
    let pki = TestPki::new();
    let addr = serve_wss_with(pki.server_config_requiring_client(&[b"http/1.1"])).await;
    let (cert, key) = pki.client_files();
    let url = format!("wss://localhost:{}/", addr.port());
    let base = format!(
        "url: \"{url}\", ca_file: \"{}\", send: hello, expect: hello",
        path_str(&pki.ca_file())
    );
    let with = probe(&format!(
        "{{ {base}, client_cert: \"{}\", client_key: \"{}\" }}",
        path_str(&cert),
        path_str(&key)
    ))
    .await;
    assert_eq!(with.outcome, Outcome::Ok, "{with:?}");
    let without = probe(&format!("{{ {base} }}")).await;
    assert_ne!(without.outcome, Outcome::Ok, "{without:?}");
}

#[tokio::test]
async fn ip_family_picks_the_address_and_a_literal_of_the_other_family_is_refused_at_load() {
    let addr = serve_ws(Behaviour::Echo).await;
    let v4 = probe(&format!(
        "{{ url: \"ws://127.0.0.1:{}/\", ip_family: ipv4 }}",
        addr.port()
    ))
    .await;
    assert_eq!(v4.outcome, Outcome::Ok, "{v4:?}");
    assert_eq!(v4.address.as_deref(), Some("127.0.0.1"), "{v4:?}");
    let dirs = ConfigDirs::new(&format!(
        "checks:\n  - name: ws\n    websocket: {{ url: \"ws://127.0.0.1:{}/\", ip_family: ipv6 }}\n    every: 1m\n",
        addr.port()
    ));
    let errors = match lookout::config::load(&dirs.checks(), &dirs.alerts()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    assert!(
        errors
            .join("\n")
            .contains("`ip_family: ipv6` cannot reach the address 127.0.0.1"),
        "{errors:?}"
    );
}

#[test]
fn mistakes_are_reported_with_their_position() {
    let dirs = ConfigDirs::new(
        "checks:
  - name: ws
    websocket: { url: \"http://localhost/\" }
    every: 1m
  - name: ws2
    websocket: { url: \"ws://localhost/\", headers: { \"bad header\": x }, expekt: y }
    every: 1m
",
    );
    let errors = match lookout::config::load(&dirs.checks(), &dirs.alerts()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    let text = errors.join("\n");
    assert!(
        text.contains(
            "checks.yaml:3:23: `url` must be ws:// or wss:// with a host, found scheme `http`"
        ),
        "{text}"
    );
    assert!(
        text.contains(":6:") && text.contains("invalid header name `bad header`"),
        "{text}"
    );
    assert!(text.contains("unknown key `expekt`"), "{text}");
}

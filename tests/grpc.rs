//! The `grpc` kind against real gRPC health servers (tonic-health) on
//! 127.0.0.1, in plaintext and over TLS with a test CA: SERVING, NOT_SERVING,
//! an unknown service, metadata a server insists on, and load errors.

mod common;

use std::net::SocketAddr;

use common::pki::TestPki;
use common::{ConfigDirs, path_str};
use hyper_util::rt::{TokioExecutor, TokioIo};
use lookout::result::{Outcome, ProbeResult};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tower_service::Service;

/// The metadata the guarded server wants, and its value.
const TOKEN_KEY: &str = "x-health-token";
const TOKEN: &str = "let-me-in";

/// A health server: `""` SERVING, `db` NOT_SERVING, `cache` SERVING;
/// with `guarded`, calls without the token are UNAUTHENTICATED.
async fn health_routes(guarded: bool) -> tonic::service::Routes {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("db", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status("cache", ServingStatus::Serving)
        .await;
    let check = move |request: tonic::Request<()>| {
        let given = request
            .metadata()
            .get(TOKEN_KEY)
            .and_then(|v| v.to_str().ok());
        if !guarded || given == Some(TOKEN) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated("no token"))
        }
    };
    tonic::service::Routes::new(tonic::service::interceptor::InterceptedService::new(
        service, check,
    ))
}

/// Serves `routes` over HTTP/2 on 127.0.0.1 (TLS with `tls`), until the
/// test's runtime ends.
async fn serve(routes: tonic::service::Routes, tls: Option<&TestPki>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|pki| tokio_rustls::TlsAcceptor::from(pki.server_config(&[b"h2"])));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let routes = routes.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let mut routes = routes.clone();
                    async move { routes.call(request).await }
                });
                let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = http2.serve_connection(TokioIo::new(tcp), service).await;
                    }
                    Some(acceptor) => {
                        // A client that refuses the certificate ends here.
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = http2.serve_connection(TokioIo::new(tls), service).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

async fn probe(grpc: &str) -> ProbeResult {
    ConfigDirs::new(&format!(
        "checks:\n  - name: health\n    grpc: {grpc}\n    every: 1m\n    timeout: 5s\n"
    ))
    .run_first()
    .await
}

#[tokio::test]
async fn serving_is_ok() {
    let addr = serve(health_routes(false).await, None).await;
    let whole = probe(&format!("{{ address: \"{addr}\" }}")).await;
    assert_eq!(
        (whole.outcome, whole.error.as_deref()),
        (Outcome::Ok, None),
        "{whole:?}"
    );
    let figures = whole.grpc.expect("grpc figures");
    assert_eq!(
        (figures.status_code, figures.serving_status.as_deref()),
        (0, Some("SERVING"))
    );
    assert!(whole.phases_ms.connect.is_some() && whole.phases_ms.ttfb.is_some());

    let cache = probe(&format!("{{ address: \"{addr}\", service: cache }}")).await;
    assert_eq!(cache.outcome, Outcome::Ok, "{cache:?}");
}

#[tokio::test]
async fn not_serving_fails_naming_the_status() {
    let addr = serve(health_routes(false).await, None).await;
    let result = probe(&format!("{{ address: \"{addr}\", service: db }}")).await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    assert_eq!(
        result.error.as_deref(),
        Some("service `db` is NOT_SERVING, not SERVING")
    );
    assert_eq!(
        result.grpc.and_then(|g| g.serving_status).as_deref(),
        Some("NOT_SERVING")
    );
}

#[tokio::test]
async fn an_unknown_service_fails_with_its_code() {
    let addr = serve(health_routes(false).await, None).await;
    let result = probe(&format!("{{ address: \"{addr}\", service: nope }}")).await;
    assert_eq!(result.outcome, Outcome::Fail, "{result:?}");
    let error = result.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "the health check of service `nope` failed with gRPC status NOT_FOUND (5)"
        ),
        "{error}"
    );
    assert_eq!(result.grpc.map(|g| g.status_code), Some(5));
}

#[tokio::test]
async fn metadata_reaches_the_server() {
    let addr = serve(health_routes(true).await, None).await;
    let without = probe(&format!("{{ address: \"{addr}\" }}")).await;
    assert_eq!(without.outcome, Outcome::Fail, "{without:?}");
    assert!(
        without
            .error
            .as_deref()
            .is_some_and(|e| e.contains("UNAUTHENTICATED (16)")),
        "{without:?}"
    );
    let with = probe(&format!(
        "{{ address: \"{addr}\", metadata: {{ {TOKEN_KEY}: {TOKEN} }} }}"
    ))
    .await;
    assert_eq!(
        (with.outcome, with.error.as_deref()),
        (Outcome::Ok, None),
        "{with:?}"
    );
}

#[tokio::test]
async fn tls_with_the_test_ca_is_ok_and_refused_without_it() {
    let pki = TestPki::new();
    let addr = serve(health_routes(false).await, Some(&pki)).await;
    let address = format!("localhost:{}", addr.port());
    let trusted = probe(&format!(
        "{{ address: \"{address}\", tls: true, ca_file: \"{}\" }}",
        path_str(&pki.ca_file())
    ))
    .await;
    assert_eq!(
        (trusted.outcome, trusted.error.as_deref()),
        (Outcome::Ok, None),
        "{trusted:?}"
    );
    assert!(trusted.phases_ms.tls.is_some() && trusted.cert_expiry.is_some());

    let untrusted = probe(&format!("{{ address: \"{address}\", tls: true }}")).await;
    assert_eq!(
        (untrusted.outcome, untrusted.error.as_deref()),
        (
            Outcome::Fail,
            Some("certificate is not trusted (unknown issuer)")
        ),
        "{untrusted:?}"
    );

    // Plaintext to a TLS port is not an answer at all.
    let plaintext = probe(&format!("{{ address: \"{address}\" }}")).await;
    assert_eq!(plaintext.outcome, Outcome::Error, "{plaintext:?}");
}

#[test]
fn mistakes_are_reported_with_their_position() {
    let dirs = ConfigDirs::new(
        "checks:
  - name: g1
    grpc: { address: \"localhost\" }
    every: 1m
  - name: g2
    grpc: { address: \"localhost:50051\", ca_file: /nonexistent.pem, tls: false }
    every: 1m
  - name: g3
    grpc: { address: \"localhost:50051\", metadata: { grpc-timeout: 1S } }
    every: 1m
",
    );
    let errors = match lookout::config::load(&dirs.checks(), &dirs.alerts()) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
    };
    let text = errors.join("\n");
    assert!(
        text.contains("checks.yaml:3:22: `localhost` is not host:port"),
        "{text}"
    );
    assert!(text.contains("checks.yaml:6:"), "{text}");
    assert!(
        text.contains("checks.yaml:9:") && text.contains("metadata `grpc-timeout` is reserved"),
        "{text}"
    );
}

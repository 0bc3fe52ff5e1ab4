//! The `grpc` check kind: the standard health check
//! (`grpc.health.v1.Health/Check`) over one HTTP/2 connection this run opens
//! (TLS with ALPN `h2` when `tls: true`), with the check's metadata.
//!
//! SERVING is `ok`; any other serving status, or a gRPC error status (an
//! unknown service is NOT_FOUND), is `fail` naming it; a connection or
//! HTTP/2 failure is `error`. The connection is tonic's generated client on
//! a bare hyper HTTP/2 connection rather than tonic's transport: a probe
//! wants one fresh connection per run, timed, on our own TLS config.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::http;
use axum::http::uri::{Authority, Scheme};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Outcome, Phases, Report, kind_tls, net, round_ms};
use crate::config::GrpcSpec;
use crate::limits;
use crate::result::GrpcFigures;

/// Runs one gRPC health check. The caller bounds it with the check's timeout.
pub async fn run(spec: &GrpcSpec, phases: &mut Phases, user_agent: &str) -> Report {
    let tcp = match net::connect(&spec.address, spec.ip_family, phases).await {
        Ok(stream) => stream,
        Err(error) => return Report::error(error, phases.clone()),
    };
    // The address the run connected to, for the result and /metrics.
    let peer = tcp.peer_addr().ok();
    let mut report = connected(spec, tcp, phases, user_agent).await;
    report.peer = report.peer.or(peer);
    report
}

/// The run, once connected.
async fn connected(
    spec: &GrpcSpec,
    tcp: tokio::net::TcpStream,
    phases: &mut Phases,
    user_agent: &str,
) -> Report {
    let Some(options) = &spec.tls else {
        return call(spec, tcp, Scheme::HTTP, phases, user_agent).await;
    };
    let (config, seen) = match kind_tls::client_config(options, &["h2"]).await {
        Ok(config) => config,
        Err(error) => return Report::error(error, phases.clone()),
    };
    let stream = kind_tls::handshake(tcp, &spec.address.host, config, phases).await;
    let cert_expiry = kind_tls::leaf_expiry(&seen);
    let mut report = match stream {
        Ok(stream) => call(spec, stream, Scheme::HTTPS, phases, user_agent).await,
        Err(failure) => Report {
            outcome: failure.outcome,
            error: Some(failure.reason),
            phases: phases.clone(),
            ..Report::default()
        },
    };
    report.cert_expiry = cert_expiry;
    report
}

/// HTTP/2 on the connected stream, then the one call.
async fn call<S>(
    spec: &GrpcSpec,
    stream: S,
    scheme: Scheme,
    phases: &mut Phases,
    user_agent: &str,
) -> Report
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let authority = match Authority::try_from(spec.address.to_string()) {
        Ok(authority) => authority,
        Err(_) => {
            return Report::error(
                format!("`{}` is not a valid authority", spec.address),
                phases.clone(),
            );
        }
    };
    let started = Instant::now();
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .max_header_list_size(limits::GRPC_HEADER_BYTES_MAX)
        .handshake(TokioIo::new(stream))
        .await;
    let (sender, connection) = match handshake {
        Ok(pair) => pair,
        Err(e) => {
            return Report::error(
                format!("the HTTP/2 handshake failed: {}", plain_hyper(&e)),
                phases.clone(),
            );
        }
    };
    // The connection is driven apart from the call; it ends with the run.
    let mut driver = AbortOnDrop(tokio::spawn(connection));
    let answered = Arc::new(AtomicBool::new(false));

    let mut client = HealthClient::new(Http2 {
        sender,
        scheme,
        authority,
        answered: answered.clone(),
    })
    .max_decoding_message_size(limits::GRPC_RESPONSE_BYTES_MAX);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: spec.service.clone(),
    });
    if let Ok(value) = user_agent.parse() {
        request.metadata_mut().insert("user-agent", value);
    }
    for (key, value) in &spec.metadata {
        request.metadata_mut().insert(key.clone(), value.clone());
    }
    let answer = client.check(request).await;
    phases.ttfb = Some(round_ms(started.elapsed()));
    drop(client);
    // Without any HTTP answer, a status is tonic's account of a broken
    // connection, not the server's: say what broke it.
    let broken = if answered.load(Ordering::Relaxed) {
        None
    } else {
        Some(connection_failure(&mut driver).await)
    };
    drop(driver);

    let service = match spec.service.as_str() {
        "" => "the server".to_string(),
        name => format!("service `{name}`"),
    };
    match answer {
        Ok(response) => {
            let status = ServingStatus::try_from(response.get_ref().status)
                .unwrap_or(ServingStatus::Unknown);
            let name = status.as_str_name().to_string();
            let serving = status == ServingStatus::Serving;
            Report {
                outcome: if serving { Outcome::Ok } else { Outcome::Fail },
                error: (!serving).then(|| format!("{service} is {name}, not SERVING")),
                phases: phases.clone(),
                grpc: Some(GrpcFigures {
                    status_code: tonic::Code::Ok as i32,
                    serving_status: Some(name),
                }),
                ..Report::default()
            }
        }
        Err(status) => {
            let code = status.code();
            let message = status.message();
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            if let Some(broken) = broken {
                let why = broken.unwrap_or_else(|| format!("no answer{detail}"));
                Report::error(
                    format!("the health check call failed: {why}"),
                    phases.clone(),
                )
            } else {
                Report {
                    outcome: Outcome::Fail,
                    error: Some(format!(
                        "the health check of {service} failed with gRPC status {} ({}){detail}",
                        code_name(code),
                        code as i32
                    )),
                    phases: phases.clone(),
                    grpc: Some(GrpcFigures {
                        status_code: code as i32,
                        serving_status: None,
                    }),
                    ..Report::default()
                }
            }
        }
    }
}

/// A gRPC status code as the specification spells it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A hyper error in one plain line, with its innermost cause.
fn plain_hyper(error: &hyper::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text = format!("{text}: {inner}");
        cause = inner.source();
    }
    text
}

/// Why the connection ended, if it did (a server that is not HTTP/2, a
/// reset): the error its task ended with.
async fn connection_failure(driver: &mut AbortOnDrop) -> Option<String> {
    if !driver.0.is_finished() {
        return None;
    }
    match (&mut driver.0).await {
        Ok(Err(e)) => Some(format!("HTTP/2 failed: {}", plain_hyper(&e))),
        Ok(Ok(())) => Some("the server closed the connection".to_string()),
        Err(_) => None,
    }
}

/// Stops the connection's task when the run is over, whatever its end.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One HTTP/2 connection as the service tonic's client calls through. The
/// client sends a path only; the connection's scheme and authority make it
/// a full request URI, as HTTP/2's pseudo-headers need.
struct Http2 {
    sender: SendRequest<tonic::body::Body>,
    scheme: Scheme,
    authority: Authority,
    /// Set once an HTTP response (headers) came back.
    answered: Arc<AtomicBool>,
}

type ResponseFuture = Pin<
    Box<dyn Future<Output = Result<http::Response<hyper::body::Incoming>, hyper::Error>> + Send>,
>;

impl tower_service::Service<http::Request<tonic::body::Body>> for Http2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let mut parts = request.uri().clone().into_parts();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *request.uri_mut() = uri;
        }
        let response = self.sender.send_request(request);
        let answered = self.answered.clone();
        Box::pin(async move {
            let response = response.await;
            if response.is_ok() {
                answered.store(true, Ordering::Relaxed);
            }
            response
        })
    }
}

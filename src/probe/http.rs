//! The `http` check kind: one request through reqwest, timed by phase, the
//! body read up to a cap, the outcome judged against `expect`.
//!
//! Phase timings (what is measured, and how):
//! - `dns`: the name lookup, timed inside our own reqwest resolver (absent for
//!   IP-literal URLs, which need none).
//! - `connect`: TCP connect *and*, for https, the TLS handshake, timed by a
//!   layer around reqwest's connector, minus the DNS time. reqwest does not
//!   expose the handshake on its own, so `tls` is not reported separately.
//! - `ttfb`: from the connection being ready (or the request being sent, when
//!   no new connection was needed) to the response headers.
//! - `transfer`: reading the body, up to the cap.
//!
//! Each run gets a fresh connection (the pool keeps no idle connections), as a
//! user arriving would, so connect and TLS trouble is seen every time. The
//! timings reach the resolver and connector through a task-local recorder:
//! clients are shared between checks, runs are not.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use reqwest::header::USER_AGENT;
use tokio::time::Instant;

use super::{Outcome, Phases, Report, round_ms};
use crate::config::{Expect, HttpSpec, IpFamily, StatusRange, TlsClientOptions};
use crate::limits;
use crate::schedule::format_duration;

tokio::task_local! {
    static RECORDER: Arc<Recorder>;
}

/// What the run is doing, for the timeout message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stage {
    #[default]
    Connecting,
    WaitingForResponse,
    ReadingBody,
}

#[derive(Debug, Default)]
struct Recorder {
    inner: Mutex<RecorderInner>,
}

#[derive(Debug, Default)]
struct RecorderInner {
    stage: Stage,
    dns: Option<Duration>,
    /// Sum over every connection made (redirects may make several).
    connect_total: Option<Duration>,
    last_connection_ready: Option<Instant>,
    /// Host and port of the last redirect followed: an error after it is
    /// about that host, not the check's own.
    redirected_to: Option<(String, u16)>,
}

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut RecorderInner) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of
        // plain numbers; the numbers are still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn current() -> Option<Arc<Recorder>> {
        RECORDER.try_with(Arc::clone).ok()
    }
}

/// reqwest clients shared by every check with the same TLS, proxy, family
/// and redirect settings: building one loads the trust store, which is too
/// costly per run. A rotated `ca_file` or client certificate (a new
/// modification time) gets a new client.
#[derive(Clone, Default)]
pub struct Clients {
    cache: Arc<Mutex<HashMap<ClientKey, reqwest::Client>>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    follow_redirects: bool,
    tls: TlsClientOptions,
    proxy: Option<url::Url>,
    /// The proxy variables as read when the client was built: a changed
    /// environment (a reload) gets a new client.
    env_proxy: Option<EnvProxy>,
    ip_family: IpFamily,
    /// When `ca_file`, `client_cert` and `client_key` last changed: a
    /// rotated file gets a new client (the old one is dropped).
    files_modified: Vec<Option<std::time::SystemTime>>,
}

impl ClientKey {
    /// The same settings, whatever the files' times.
    fn same_settings(&self, other: &ClientKey) -> bool {
        ClientKey {
            files_modified: Vec::new(),
            ..self.clone()
        } == ClientKey {
            files_modified: Vec::new(),
            ..other.clone()
        }
    }
}

/// When each of `tls`'s files last changed (`None`: unknown or absent).
async fn files_modified(tls: &TlsClientOptions) -> Vec<Option<std::time::SystemTime>> {
    let mut times = Vec::new();
    for path in [&tls.ca_file, &tls.client_cert, &tls.client_key]
        .into_iter()
        .flatten()
    {
        let modified = tokio::fs::metadata(path)
            .await
            .ok()
            .and_then(|m| m.modified().ok());
        times.push(modified);
    }
    times
}

/// HTTPS_PROXY, HTTP_PROXY and NO_PROXY (or their lowercase forms).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
struct EnvProxy {
    https: Option<String>,
    http: Option<String>,
    no_proxy: Option<String>,
}

impl EnvProxy {
    fn read() -> EnvProxy {
        let var = |upper: &str, lower: &str| {
            std::env::var(upper)
                .ok()
                .or_else(|| std::env::var(lower).ok())
                .filter(|v| !v.trim().is_empty())
        };
        EnvProxy {
            https: var("HTTPS_PROXY", "https_proxy"),
            http: var("HTTP_PROXY", "http_proxy"),
            no_proxy: var("NO_PROXY", "no_proxy"),
        }
    }
}

impl Clients {
    /// The client for `spec`'s settings, built on first use. Building loads
    /// the trust store, so it runs on the blocking pool, outside the lock.
    async fn get(&self, spec: &HttpSpec) -> Result<reqwest::Client, String> {
        let key = ClientKey {
            follow_redirects: spec.follow_redirects,
            tls: spec.tls.clone(),
            proxy: spec.proxy.clone(),
            env_proxy: spec.proxy_from_env.then(EnvProxy::read),
            ip_family: spec.ip_family,
            files_modified: files_modified(&spec.tls).await,
        };
        if let Some(client) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(client.clone());
        }
        let build_key = key.clone();
        let client = tokio::task::spawn_blocking(move || build_client(&build_key))
            .await
            .map_err(|e| format!("cannot build HTTP client: {e}"))??;
        // Two first runs may race to build; either client is as good.
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|cached, _| *cached == key || !cached.same_settings(&key));
        Ok(cache.entry(key).or_insert(client).clone())
    }
}

fn build_client(key: &ClientKey) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    let redirect = if key.follow_redirects {
        // `Policy::limited`, plus a note of where each redirect leads.
        reqwest::redirect::Policy::custom(|attempt| {
            if let Some(r) = Recorder::current() {
                let next = attempt.url();
                let tried = (
                    next.host_str().unwrap_or("?").to_string(),
                    next.port_or_known_default().unwrap_or(0),
                );
                r.with(|r| r.redirected_to = Some(tried));
            }
            // The first of `previous` is the check's own URL.
            if attempt.previous().len() > limits::HTTP_REDIRECTS_MAX {
                attempt.error(TooManyRedirects)
            } else {
                attempt.follow()
            }
        })
    } else {
        reqwest::redirect::Policy::none()
    };
    // Our own rustls config: pinned certificates, the client certificate
    // and the plain-words verifier are the same as the `tls` kind's. ALPN
    // offers HTTP/2 first, as browsers do.
    let tls = super::tls_client::client_config_blocking(&key.tls, &["h2", "http/1.1"], None)?;
    let mut builder = reqwest::Client::builder()
        .redirect(redirect)
        .pool_max_idle_per_host(0)
        // reqwest reads the proxy variables by default: never, unless asked.
        .no_proxy()
        .dns_resolver(Arc::new(TimedResolver {
            family: key.ip_family,
        }))
        .connector_layer(TimingLayer)
        .tls_info(true)
        .tls_backend_preconfigured(tls.config);
    let proxy_error = |e: reqwest::Error| format!("unusable proxy: {}", innermost(&e));
    if let Some(proxy) = &key.proxy {
        builder = builder.proxy(reqwest::Proxy::all(proxy.as_str()).map_err(proxy_error)?);
    }
    if let Some(env) = &key.env_proxy {
        let no_proxy = env
            .no_proxy
            .as_deref()
            .and_then(reqwest::NoProxy::from_string);
        if let Some(url) = &env.https {
            builder = builder.proxy(
                reqwest::Proxy::https(url.as_str())
                    .map_err(proxy_error)?
                    .no_proxy(no_proxy.clone()),
            );
        }
        if let Some(url) = &env.http {
            builder = builder.proxy(
                reqwest::Proxy::http(url.as_str())
                    .map_err(proxy_error)?
                    .no_proxy(no_proxy),
            );
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build HTTP client: {}", innermost(&e)))
}

/// Runs one HTTP check within `timeout`.
pub async fn run(
    clients: &Clients,
    spec: &HttpSpec,
    expect: &Expect,
    timeout: Duration,
    user_agent: &str,
) -> Report {
    let recorder = Arc::new(Recorder::default());
    let attempt = RECORDER.scope(
        recorder.clone(),
        attempt(clients, spec, expect, user_agent, recorder.clone()),
    );
    match tokio::time::timeout(timeout, attempt).await {
        Ok(report) => report,
        Err(_) => {
            let stage = match recorder.with(|r| r.stage) {
                Stage::Connecting => "while connecting",
                Stage::WaitingForResponse => "waiting for the response headers",
                Stage::ReadingBody => "while reading the body",
            };
            Report {
                outcome: Outcome::Timeout,
                phases: recorder_phases(&recorder, None, None),
                error: Some(format!(
                    "timed out after {} {stage}",
                    format_duration(timeout)
                )),
                ..Report::default()
            }
        }
    }
}

async fn attempt(
    clients: &Clients,
    spec: &HttpSpec,
    expect: &Expect,
    user_agent: &str,
    recorder: Arc<Recorder>,
) -> Report {
    let client = match clients.get(spec).await {
        Ok(client) => client,
        Err(error) => {
            return Report {
                outcome: Outcome::Error,
                error: Some(error),
                ..Report::default()
            };
        }
    };
    let mut request = client
        .request(spec.method.clone(), request_url(spec))
        .header(USER_AGENT, user_agent);
    for (name, value) in &spec.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &spec.body {
        request = request.body(body.clone());
    }
    let sent_at = Instant::now();
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return Report {
                outcome: Outcome::Error,
                phases: recorder_phases(&recorder, None, None),
                error: Some(classify(&error, spec, &recorder)),
                ..Report::default()
            };
        }
    };
    let headers_at = Instant::now();
    recorder.with(|r| r.stage = Stage::ReadingBody);
    let status = response.status().as_u16();
    let version = version_text(response.version());
    let peer = response.remote_addr();
    let headers = response.headers().clone();
    let cert_expiry = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .and_then(super::cert_not_after);

    let mut body = Vec::new();
    let mut notes = Vec::new();
    let mut read_error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limits::HTTP_BODY_BYTES_MAX - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    // Stop here: the rest is not fetched, the connection is dropped.
                    notes.push(format!(
                        "body read stopped at {} bytes",
                        limits::HTTP_BODY_BYTES_MAX
                    ));
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                read_error = Some(format!("reading the body failed: {}", innermost(&error)));
                break;
            }
        }
    }
    let done_at = Instant::now();
    let phases = recorder_phases(&recorder, Some((sent_at, headers_at)), Some(done_at));
    let report = |outcome, error: Option<String>| Report {
        outcome,
        status: Some(status),
        phases: phases.clone(),
        error,
        cert_expiry,
        notes: notes.clone(),
        peer,
        http_version: version.map(str::to_string),
        ..Report::default()
    };
    if let Some(error) = read_error {
        return report(Outcome::Error, Some(error));
    }
    if let Some(reason) = judge(status, &body, expect) {
        return report(Outcome::Fail, Some(reason));
    }
    if let Some(wanted) = expect.http_version
        && version != Some(wanted.as_str())
    {
        let got = version.unwrap_or("an older version");
        return report(
            Outcome::Fail,
            Some(format!(
                "answered over HTTP/{got}, not HTTP/{}",
                wanted.as_str()
            )),
        );
    }
    if let Some(reason) = super::assertions::judge_headers(&headers, &expect.headers) {
        return report(Outcome::Fail, Some(reason));
    }
    if let Some(reason) = super::assertions::judge_json(&body, &expect.json) {
        return report(Outcome::Fail, Some(reason));
    }
    report(Outcome::Ok, None)
}

/// `1.1` or `2`, as `expect.http_version` and the results write it.
fn version_text(version: reqwest::Version) -> Option<&'static str> {
    match version {
        reqwest::Version::HTTP_11 => Some("1.1"),
        reqwest::Version::HTTP_2 => Some("2"),
        reqwest::Version::HTTP_10 => Some("1.0"),
        reqwest::Version::HTTP_09 => Some("0.9"),
        reqwest::Version::HTTP_3 => Some("3"),
        _ => None,
    }
}

/// The URL to request. reqwest turns userinfo into an `Authorization:
/// Basic` header; with an `Authorization` header of the check's own as well,
/// the server would get two, and which one it reads is its choice. The
/// explicit header is the more deliberate of the two, so it wins and the
/// userinfo is not sent (README, "http").
fn request_url(spec: &HttpSpec) -> url::Url {
    let explicit = spec
        .headers
        .iter()
        .any(|(name, _)| name == reqwest::header::AUTHORIZATION);
    let mut url = spec.url.clone();
    if explicit && (!url.username().is_empty() || url.password().is_some()) {
        // Cannot fail: the URL has a host (the config requires one).
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    url
}

/// Why the response fails `expect`, or `None` when it passes.
fn judge(status: u16, body: &[u8], expect: &Expect) -> Option<String> {
    let accepted: &[StatusRange] = if expect.status.is_empty() {
        &[StatusRange {
            low: 200,
            high: 299,
        }]
    } else {
        &expect.status
    };
    if !accepted.iter().any(|r| r.contains(status)) {
        let list: Vec<String> = accepted.iter().map(ToString::to_string).collect();
        return Some(format!("status {status} not in [{}]", list.join(", ")));
    }
    if expect.body_contains.is_none()
        && expect.body_matches.is_none()
        && expect.body_not_contains.is_none()
        && expect.body_not_matches.is_none()
    {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    if let Some(needle) = &expect.body_contains
        && !text.contains(needle.as_str())
    {
        return Some(format!("body does not contain \"{needle}\""));
    }
    if let Some(re) = &expect.body_matches
        && !re.is_match(&text)
    {
        return Some(format!("body does not match /{}/", re.as_str()));
    }
    if let Some(needle) = &expect.body_not_contains
        && text.contains(needle.as_str())
    {
        return Some(format!("body contains \"{needle}\", and must not"));
    }
    if let Some(re) = &expect.body_not_matches
        && re.is_match(&text)
    {
        return Some(format!("body matches /{}/, and must not", re.as_str()));
    }
    None
}

fn recorder_phases(
    recorder: &Recorder,
    exchange: Option<(Instant, Instant)>,
    done_at: Option<Instant>,
) -> Phases {
    recorder.with(|r| {
        let mut phases = Phases {
            dns: r.dns.map(round_ms),
            connect: r
                .connect_total
                .map(|c| round_ms(c.saturating_sub(r.dns.unwrap_or_default()))),
            ..Phases::default()
        };
        if let Some((sent_at, headers_at)) = exchange {
            let from = r.last_connection_ready.unwrap_or(sent_at).max(sent_at);
            phases.ttfb = Some(round_ms(headers_at.saturating_duration_since(from)));
            if let Some(done_at) = done_at {
                phases.transfer = Some(round_ms(done_at.saturating_duration_since(headers_at)));
            }
        }
        phases
    })
}

/// A one-line reason for a failed request: DNS, refused, TLS, redirects...
/// It names the host that was tried: after a redirect, the redirect's.
fn classify(error: &reqwest::Error, spec: &HttpSpec, recorder: &Recorder) -> String {
    let (host, port) = recorder
        .with(|r| r.redirected_to.clone())
        .unwrap_or_else(|| {
            (
                spec.url.host_str().unwrap_or("?").to_string(),
                spec.url.port_or_known_default().unwrap_or(0),
            )
        });
    let host = host.as_str();
    if error.is_redirect() {
        return format!(
            "too many redirects (more than {})",
            limits::HTTP_REDIRECTS_MAX
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(dns) = e.downcast_ref::<DnsError>() {
            return format!("DNS lookup of {host} failed: {}", dns.0);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let what = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                ConnectionReset => Some("connection reset by peer"),
                ConnectionAborted => Some("connection aborted"),
                HostUnreachable => Some("host unreachable"),
                NetworkUnreachable => Some("network unreachable"),
                _ => None,
            };
            if let Some(what) = what {
                // Through a proxy, the connection that failed is the proxy's.
                if let Some(proxy) = &spec.proxy {
                    let at = proxy.host_str().unwrap_or("?");
                    let at_port = proxy.port_or_known_default().unwrap_or(0);
                    return format!("{what} (proxy {at}:{at_port})");
                }
                return format!("{what} ({host}:{port})");
            }
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(cause) => {
                    super::tls::describe_invalid(cause, host)
                }
                rustls::Error::AlertReceived(alert) => super::failure::alert_received(*alert),
                other => format!("TLS error: {}", super::failure::tls_error(other, host)),
            };
        }
        source = next_cause(e);
    }
    innermost(error)
}

/// The next error in a chain. `io::Error::source` skips the error it wraps
/// (it returns the wrapped error's own source), so step into it by hand:
/// that is where rustls puts its handshake errors.
fn next_cause<'e>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e (dyn std::error::Error + 'static)> {
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
        None => e.source(),
    }
}

/// The deepest cause's text: reqwest's own top-level text names the URL,
/// which may carry a secret, and says less than the cause.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest: &(dyn std::error::Error + 'static) = error;
    while let Some(next) = next_cause(deepest) {
        deepest = next;
    }
    deepest.to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct DnsError(String);

/// The system resolver's failure in words (its text names the cause: "failed
/// to lookup address information: Name or service not known").
fn lookup_failure(error: &std::io::Error) -> String {
    let text = error.to_string();
    text.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&text)
        .to_string()
}

#[derive(Debug, thiserror::Error)]
#[error("too many redirects")]
struct TooManyRedirects;

/// reqwest's resolver, timed: tokio's `lookup_host` (the system resolver, as
/// a user's browser would use) with the duration written to the recorder,
/// keeping only the addresses of the check's `ip_family`.
struct TimedResolver {
    family: IpFamily,
}

impl reqwest::dns::Resolve for TimedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let recorder = Recorder::current();
        let host = name.as_str().to_string();
        let family = self.family;
        Box::pin(async move {
            let started = Instant::now();
            let lookup = tokio::net::lookup_host((host.as_str(), 0)).await;
            if let Some(r) = &recorder {
                r.with(|r| r.dns = Some(r.dns.unwrap_or_default() + started.elapsed()));
            }
            match lookup {
                Ok(addrs) => {
                    let all: Vec<SocketAddr> = addrs.collect();
                    if all.is_empty() {
                        return Err(Box::new(DnsError("no addresses".into())) as _);
                    }
                    let addrs: Vec<SocketAddr> =
                        all.into_iter().filter(|a| family.allows(a.ip())).collect();
                    if addrs.is_empty() {
                        let wanted = super::net::family_name(family);
                        return Err(Box::new(DnsError(format!("no {wanted} address"))) as _);
                    }
                    Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
                }
                Err(e) => Err(Box::new(DnsError(lookup_failure(&e))) as _),
            }
        })
    }
}

/// Wraps reqwest's connector to time each connection (TCP, and TLS for https).
#[derive(Clone, Copy)]
struct TimingLayer;

impl<S> tower_layer::Layer<S> for TimingLayer {
    type Service = TimingService<S>;
    fn layer(&self, inner: S) -> TimingService<S> {
        TimingService { inner }
    }
}

#[derive(Clone)]
struct TimingService<S> {
    inner: S,
}

impl<S, Req> tower_service::Service<Req> for TimingService<S>
where
    S: tower_service::Service<Req>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let recorder = Recorder::current();
        let started = Instant::now();
        let connecting = self.inner.call(request);
        Box::pin(async move {
            let result = connecting.await;
            if let (Some(r), Ok(_)) = (&recorder, &result) {
                let now = Instant::now();
                r.with(|r| {
                    r.connect_total = Some(r.connect_total.unwrap_or_default() + (now - started));
                    r.last_connection_ready = Some(now);
                    r.stage = Stage::WaitingForResponse;
                });
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judging_status_and_body() {
        let expect = Expect::default();
        assert_eq!(judge(204, b"", &expect), None);
        assert_eq!(
            judge(500, b"", &expect).as_deref(),
            Some("status 500 not in [2xx]")
        );
        let expect = Expect {
            status: vec![
                StatusRange {
                    low: 200,
                    high: 200,
                },
                StatusRange {
                    low: 300,
                    high: 399,
                },
            ],
            body_contains: Some("healthy".into()),
            body_matches: Some(regex::Regex::new(r#""db":\s*"ok""#).unwrap()),
            max_latency: None,
            ..Expect::default()
        };
        assert_eq!(
            judge(503, b"", &expect).as_deref(),
            Some("status 503 not in [200, 3xx]")
        );
        assert_eq!(
            judge(200, b"sick", &expect).as_deref(),
            Some("body does not contain \"healthy\"")
        );
        assert!(
            judge(200, b"healthy", &expect)
                .unwrap()
                .starts_with("body does not match")
        );
        assert_eq!(judge(301, br#"healthy "db": "ok""#, &expect), None);
    }

    /// A server on 127.0.0.1 that redirects `/away` to `location` and
    /// records the `Authorization` headers of every request to `/auth`.
    async fn server(location: String) -> (SocketAddr, Arc<Mutex<Vec<Vec<String>>>>) {
        use axum::http::{HeaderMap, StatusCode, header};
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new()
            .route(
                "/away",
                axum::routing::get(move || async move {
                    (StatusCode::FOUND, [(header::LOCATION, location)])
                }),
            )
            .route(
                "/auth",
                axum::routing::get(move |headers: HeaderMap| async move {
                    let values = headers
                        .get_all(header::AUTHORIZATION)
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect();
                    record.lock().unwrap().push(values);
                    "ok"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, seen)
    }

    fn spec(url: &str, headers: &[(&str, &str)]) -> HttpSpec {
        HttpSpec {
            url: url::Url::parse(url).unwrap(),
            method: reqwest::Method::GET,
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        reqwest::header::HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect(),
            body: None,
            follow_redirects: true,
            tls: TlsClientOptions::default(),
            proxy: None,
            proxy_from_env: false,
            ip_family: IpFamily::Any,
        }
    }

    async fn probe(spec: &HttpSpec) -> Report {
        run(
            &Clients::default(),
            spec,
            &Expect::default(),
            Duration::from_secs(5),
            "Lookout/test",
        )
        .await
    }

    #[tokio::test]
    async fn a_redirect_to_a_refused_port_names_the_host_tried() {
        // A port on another loopback address that nothing listens on.
        let refused = std::net::TcpListener::bind("127.0.0.2:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (addr, _) = server(format!("http://{refused}/")).await;
        let report = probe(&spec(&format!("http://{addr}/away"), &[])).await;
        assert_eq!(report.outcome, Outcome::Error);
        assert_eq!(
            report.error.as_deref(),
            Some(format!("connection refused ({refused})").as_str())
        );
    }

    #[tokio::test]
    async fn an_authorization_header_wins_over_userinfo() {
        let (addr, seen) = server(String::new()).await;
        let url = format!("http://alice:pw@{addr}/auth");
        let with_header = probe(&spec(&url, &[("Authorization", "Bearer t0ken")])).await;
        assert_eq!(with_header.outcome, Outcome::Ok, "{:?}", with_header.error);
        let userinfo_only = probe(&spec(&url, &[])).await;
        assert_eq!(userinfo_only.outcome, Outcome::Ok);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                vec!["Bearer t0ken".to_string()],
                // alice:pw
                vec!["Basic YWxpY2U6cHc=".to_string()],
            ]
        );
    }

    /// A loopback server that answers every connection with `reply` (then
    /// closes it): nothing, garbage, half a response.
    async fn raw_server(reply: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = tcp.read(&mut buffer).await;
                let _ = tcp.write_all(reply).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn every_request_failure_reads_as_words() {
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (http_server, _) = server(String::new()).await;
        let (looping, _) = server("/away".into()).await;
        let urls = [
            format!("http://{refused}/"),
            // TLS to a port that speaks plain HTTP.
            format!("https://{http_server}/auth"),
            format!("http://{}/", raw_server(b"").await),
            format!("http://{}/", raw_server(b"SSH-2.0-OpenSSH_9.6\r\n").await),
            format!(
                "http://{}/",
                raw_server(b"HTTP/1.1 200 OK\r\nContent-Le").await
            ),
            format!(
                "http://{}/",
                raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await
            ),
            format!("http://{looping}/away"),
        ];
        for url in urls {
            let report = probe(&spec(&url, &[])).await;
            assert_ne!(report.outcome, Outcome::Ok, "{url}: {report:?}");
            let reason = report.error.unwrap_or_default();
            assert!(!reason.is_empty(), "{url}");
            for leak in ["Error {", "kind:", "Some(", "Kind(", "Other(", "::"] {
                assert!(!reason.contains(leak), "{url}: `{leak}` in {reason:?}");
            }
        }
    }
}

//! Bounded HTTP serving: the one owner of what a client may cost a listener.
//! The aggregator's `--listen` (HTTP or HTTPS) is served by [`serve`], and
//! any other listener can be (a probe's `--metrics-listen`), so every one
//! has the same limits (`limits::HTTP_*`):
//!
//! - **Connections.** At most `max_connections` at once, and never more than
//!   a share of the descriptor limit (`HTTP_DESCRIPTOR_SHARE_DIVISOR`), so
//!   the probes' sockets can never be taken by clients. When full, a new
//!   connection takes the place of the longest-idle one (no request in
//!   flight), which hands its slot over as it closes: idle and slowloris
//!   connections cannot lock real requests out. Newcomers waiting for that
//!   hold descriptors too, so they are bounded (`HTTP_EVICTIONS_PENDING_MAX`)
//!   and counted against the share, as refusals in flight are.
//!   When every slot has a request in flight, the newcomer is answered 503
//!   and closed (HTTPS: closed; a handshake is what an overloaded server
//!   should not spend), never left in the kernel's backlog.
//! - **Header timeout.** A request head must arrive whole within
//!   `header_timeout` (hyper's `header_read_timeout`), counted from the
//!   connection and, on a kept-alive connection, from the end of the last
//!   response: hyper 1.x re-arms it as soon as it waits for the next head,
//!   so it also bounds the keep-alive wait (tests/listeners.rs holds this).
//!   The TLS handshake counts towards it.
//! - **Idle timeout.** No timer of hyper's runs while a response is being
//!   written, so a client that stops reading one would hold its connection
//!   (and the buffered body) forever: a connection with no request in flight
//!   and no byte moving either way for `idle_timeout` is closed. Set below
//!   the header timeout, it is also the keep-alive wait.
//! - **Whole request.** The router's `TimeoutLayer` (`API_REQUEST_TIMEOUT`)
//!   bounds each handler; bodies are read bounded by the handlers.
//! - **Shutdown.** On `cancel`: stop accepting, let requests in flight finish
//!   (idle connections close at once), and abort what is left after
//!   `SHUTDOWN_GRACE`.
//!
//! HTTP/1.1 only (ALPN says so over TLS): hyper's header timeout exists for
//! HTTP/1 only, and nothing Lookout serves needs HTTP/2.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limits;

/// What one listener allows a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenLimits {
    /// Connections served at once (further capped by the descriptor limit).
    pub max_connections: usize,
    /// Time to send a whole request head (and do the TLS handshake).
    pub header_timeout: Duration,
    /// A connection with no request in flight and no byte moving either
    /// way for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ListenLimits {
    fn default() -> ListenLimits {
        ListenLimits {
            max_connections: limits::HTTP_CONNECTIONS_MAX_DEFAULT,
            header_timeout: limits::HTTP_HEADER_TIMEOUT,
            idle_timeout: limits::HTTP_IDLE_TIMEOUT,
        }
    }
}

/// What a listener did, for the log line at shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Connections served (each given a slot).
    pub accepted: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
    /// Connections refused (503, or closed over TLS) because every slot had
    /// a request in flight.
    pub refused: u64,
}

/// Why the descriptor limit could not be read or raised.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("cannot read the open-files limit (RLIMIT_NOFILE): {0}")]
    Read(nix::Error),
    #[error("cannot raise the open-files limit (RLIMIT_NOFILE) from {soft} to {hard}: {error}")]
    Raise {
        soft: u64,
        hard: u64,
        error: nix::Error,
    },
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, so that probes and
/// clients share the most descriptors the system allows this process (the
/// soft default, 1024, is what the kernel sets for `select()`-era programs).
/// Returns the limit now in force.
pub fn raise_descriptor_limit() -> Result<u64, DescriptorError> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(DescriptorError::Read)?;
    if soft >= hard {
        return Ok(soft);
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|error| DescriptorError::Raise {
        soft,
        hard,
        error,
    })?;
    Ok(hard)
}

/// The most client connections the descriptor limit leaves room for:
/// `HTTP_DESCRIPTOR_SHARE_DIVISOR` of it, less the refusals and evictions
/// in flight (each holds a descriptor too).
/// `None` when the limit cannot be read (or is unlimited).
pub fn connection_budget() -> Option<usize> {
    use nix::sys::resource::{Resource, getrlimit};
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft == nix::sys::resource::RLIM_INFINITY {
        return None;
    }
    let share = soft / limits::HTTP_DESCRIPTOR_SHARE_DIVISOR;
    let budget = usize::try_from(share)
        .unwrap_or(usize::MAX)
        .saturating_sub(limits::HTTP_REFUSALS_MAX + limits::HTTP_EVICTIONS_PENDING_MAX);
    Some(budget.max(1))
}

/// Binds `addr` for [`serve`], with `HTTP_LISTEN_BACKLOG`.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // A restart must not wait for the old process's TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(limits::HTTP_LISTEN_BACKLOG)
}

/// Serves `app` on `listener` (HTTPS when `tls` is given, its certificate
/// re-read on reload) within `allowed` until `cancel`, then shuts down
/// gracefully. Never fails: accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    allowed: ListenLimits,
    cancel: CancellationToken,
) -> ServeStats {
    let max_connections = match connection_budget() {
        Some(budget) if budget < allowed.max_connections => {
            tracing::warn!(
                requested = allowed.max_connections,
                serving = budget,
                "the open-files limit leaves room for {budget} client connections, fewer than asked; raise LimitNOFILE / ulimit -n to serve more"
            );
            budget
        }
        _ => allowed.max_connections.max(1),
    };
    let shared = Arc::new(Shared {
        app,
        tls: tls.map(TlsSource::new),
        limits: allowed,
        epoch: Instant::now(),
        cancel: cancel.clone(),
        hard_stop: CancellationToken::new(),
        slots: Arc::new(Semaphore::new(max_connections)),
        refusals: Arc::new(Semaphore::new(limits::HTTP_REFUSALS_MAX)),
        evictions: Arc::new(Semaphore::new(limits::HTTP_EVICTIONS_PENDING_MAX)),
        open: Mutex::new(VecDeque::new()),
        max_connections,
        warned_full_at: AtomicU64::new(0),
        warned_accept_at: AtomicU64::new(0),
        stats: Counters::default(),
    });
    let mut tasks = JoinSet::new();
    loop {
        let stream = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(error) = ended
                    && error.is_panic()
                {
                    tracing::error!(%error, "a connection's task panicked");
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if !is_per_connection(&error) {
                        if shared.may_warn(&shared.warned_accept_at) {
                            tracing::warn!(%error, "accepting a connection failed; pausing");
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(limits::HTTP_ACCEPT_ERROR_BACKOFF) => {}
                            _ = cancel.cancelled() => break,
                        }
                    }
                    continue;
                }
            },
        };
        // Small responses go out at once rather than waiting for an ACK.
        let _ = stream.set_nodelay(true);
        // Admitting may wait for an evicted connection's slot: never past
        // a shutdown.
        tokio::select! {
            _ = shared.admit(stream, &mut tasks) => {}
            _ = cancel.cancelled() => break,
        }
    }
    // Stop accepting: what waits in the backlog is reset, not left hanging.
    drop(listener);
    let drained = tokio::time::timeout(limits::SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still busy after the shutdown grace of {}s; closing them",
            limits::SHUTDOWN_GRACE.as_secs()
        );
        shared.hard_stop.cancel();
        tasks.shutdown().await;
    }
    shared.stats.snapshot()
}

/// Errors of one connection that came and went, not of the listener.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        error.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionRefused
            | ErrorKind::Interrupted
            | ErrorKind::WouldBlock
    )
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ServeStats {
        ServeStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// What the accept loop and every connection task of one listener share.
struct Shared {
    app: Router,
    tls: Option<TlsSource>,
    limits: ListenLimits,
    /// Activity times are milliseconds since this instant (one atomic each).
    epoch: Instant,
    /// Graceful: stop accepting, finish requests in flight.
    cancel: CancellationToken,
    /// After the grace: drop every connection.
    hard_stop: CancellationToken,
    /// One permit per served connection.
    slots: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    /// Newcomers waiting for the connection evicted for them to close.
    evictions: Arc<Semaphore>,
    /// Served connections, oldest first; closed ones are removed lazily.
    open: Mutex<VecDeque<Arc<Conn>>>,
    max_connections: usize,
    warned_full_at: AtomicU64,
    warned_accept_at: AtomicU64,
    stats: Counters,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether a rate-limited warning may be logged now (and notes it).
    fn may_warn(&self, last: &AtomicU64) -> bool {
        let now = self.now_ms().saturating_add(1);
        let every = u64::try_from(limits::HTTP_WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        let before = last.load(Ordering::Relaxed);
        (before == 0 || now.saturating_sub(before) >= every)
            && last
                .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Gives a new connection its task on `tasks`: served in a free slot, or
    /// in the one an idle connection is told to give up, or refused when
    /// every connection is busy.
    async fn admit(self: &Arc<Self>, stream: TcpStream, tasks: &mut JoinSet<()>) {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            tasks.spawn(self.clone().serve_admitted(stream, slot));
            return;
        }
        // Newcomers waiting for an evicted connection to close hold their
        // descriptors meanwhile: past the bound, accepting waits instead.
        let Ok(pending) = self.evictions.clone().acquire_owned().await else {
            return;
        };
        let Some(handover) = self.evict_one() else {
            drop(pending);
            self.refuse(stream, tasks);
            return;
        };
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        if self.may_warn(&self.warned_full_at) {
            tracing::warn!(
                max_connections = self.max_connections,
                "connection limit reached: closing the longest-idle connections to make room (--max-connections)"
            );
        }
        let shared = self.clone();
        tasks.spawn(async move {
            // The evicted connection hands its slot over at its task's next
            // turn. If it ended just before it was told (so it had nothing
            // to hand over), its slot went back to the listener instead.
            let slot = match tokio::time::timeout(limits::HTTP_EVICT_WAIT, handover).await {
                Ok(Ok(slot)) => Some(slot),
                Ok(Err(_)) => tokio::time::timeout(
                    limits::HTTP_EVICT_WAIT,
                    shared.slots.clone().acquire_owned(),
                )
                .await
                .ok()
                .and_then(Result::ok),
                Err(_) => None,
            };
            drop(pending);
            match slot {
                Some(slot) => shared.serve_admitted(stream, slot).await,
                None => {
                    if let Some(refusal) = shared.refusal(stream) {
                        refusal.await;
                    }
                }
            }
        });
    }

    async fn serve_admitted(self: Arc<Self>, stream: TcpStream, slot: OwnedSemaphorePermit) {
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let conn = self.register();
        connection(stream, conn, self, slot).await;
    }

    /// Refuses a connection because every slot is busy.
    fn refuse(&self, stream: TcpStream, tasks: &mut JoinSet<()>) {
        if self.may_warn(&self.warned_full_at) {
            tracing::warn!(
                max_connections = self.max_connections,
                "every connection has a request in flight: refusing new ones (503; over HTTPS, closed) (--max-connections)"
            );
        }
        if let Some(refusal) = self.refusal(stream) {
            tasks.spawn(refusal);
        }
    }

    /// Tells the longest-idle of the oldest connections to close and hand
    /// its slot over: the receiver gets it. `None` when every one looked at
    /// has a request in flight.
    fn evict_one(&self) -> Option<oneshot::Receiver<OwnedSemaphorePermit>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut looked = Vec::with_capacity(limits::HTTP_EVICT_SCAN_MAX);
        while looked.len() < limits::HTTP_EVICT_SCAN_MAX {
            match open.pop_front() {
                Some(conn) if conn.closed.load(Ordering::Relaxed) => {}
                Some(conn) => looked.push(conn),
                None => break,
            }
        }
        let victim = looked
            .iter()
            .enumerate()
            .filter(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|(_, c)| c.last_active_ms.load(Ordering::Relaxed))
            .map(|(i, _)| i);
        let found = victim.map(|i| {
            let conn = looked.swap_remove(i);
            let (handover, receiver) = oneshot::channel();
            *conn.handover.lock().unwrap_or_else(|p| p.into_inner()) = Some(handover);
            conn.evict.cancel();
            receiver
        });
        // Busy ones go to the back: the next scan looks at others first.
        open.extend(looked);
        found
    }

    /// Records a new connection.
    fn register(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.now_ms()),
            evict: CancellationToken::new(),
            handover: Mutex::new(None),
            closed: AtomicBool::new(false),
        });
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= self.max_connections.saturating_mul(2) {
            open.retain(|c| !c.closed.load(Ordering::Relaxed));
        }
        open.push_back(conn.clone());
        conn
    }

    /// Answers a refused connection: 503 and close (over TLS, just close).
    /// The answer is sent by a task while there is a refusal permit
    /// (returned, for the caller to run), else at once.
    fn refusal(
        &self,
        mut stream: TcpStream,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        if self.tls.is_some() {
            return None;
        }
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            let _ = stream.try_write(REFUSED_RESPONSE);
            return None;
        };
        Some(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(limits::HTTP_REFUSAL_LINGER, async {
                stream.write_all(REFUSED_RESPONSE).await?;
                stream.shutdown().await?;
                // Read what the client sent, so that closing does not reset
                // the connection (and lose the 503) over unread bytes.
                let mut sink = [0u8; 4096];
                while stream.read(&mut sink).await? > 0 {}
                Ok::<(), std::io::Error>(())
            })
            .await;
        })
    }
}

const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 59\r\n\
\r\n\
{\"error\":\"too many connections at once; try again shortly\"}";

/// One served connection, as the accept loop sees it.
struct Conn {
    /// Requests in flight (a handler running).
    busy: AtomicUsize,
    /// When a byte last moved or a request last ended (`Shared::now_ms`).
    last_active_ms: AtomicU64,
    /// Cancelled to make room for a newer connection...
    evict: CancellationToken,
    /// ...which then gets this one's slot through here, so that each
    /// newcomer waits for its own evicted connection, no other.
    handover: Mutex<Option<oneshot::Sender<OwnedSemaphorePermit>>>,
    closed: AtomicBool,
}

impl Conn {
    fn touch(&self, shared: &Shared) {
        self.last_active_ms
            .store(shared.now_ms(), Ordering::Relaxed);
    }
}

/// A connection's slot: however its task ends, the connection is marked
/// closed and the slot goes to the newcomer it was evicted for, if any, or
/// back to the listener.
struct Slot {
    conn: Arc<Conn>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conn.closed.store(true, Ordering::Relaxed);
        let handover = self
            .conn
            .handover
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let (Some(handover), Some(permit)) = (handover, self.permit.take()) {
            // Refused (the newcomer gave up): dropped, back to the listener.
            let _ = handover.send(permit);
        }
    }
}

/// A request in flight on a connection; ending it counts as activity.
struct InFlight {
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl InFlight {
    fn start(conn: &Arc<Conn>, shared: &Arc<Shared>) -> InFlight {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        InFlight {
            conn: conn.clone(),
            shared: shared.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.touch(&self.shared);
        self.conn.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    stream: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
    slot: OwnedSemaphorePermit,
) {
    let _slot = Slot {
        conn: conn.clone(),
        permit: Some(slot),
    };
    let stream = Tracked {
        inner: stream,
        conn: conn.clone(),
        shared: shared.clone(),
    };
    let Some(tls) = &shared.tls else {
        drive(hyper_util::rt::TokioIo::new(stream), &conn, &shared).await;
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    let handshake = tokio::time::timeout(shared.limits.header_timeout, acceptor.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not done within the header timeout; closed");
                return;
            }
        },
        _ = conn.evict.cancelled() => return,
        _ = shared.cancel.cancelled() => return,
    };
    drive(hyper_util::rt::TokioIo::new(stream), &conn, &shared).await;
}

/// Serves HTTP/1.1 on one connection until it ends, is idle too long, is
/// evicted, or the listener stops.
async fn drive<I>(io: I, conn: &Arc<Conn>, shared: &Arc<Shared>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use tower_service::Service;
    let service = {
        let conn = conn.clone();
        let shared = shared.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let in_flight = InFlight::start(&conn, &shared);
            let mut app = shared.app.clone();
            async move {
                let response = app.call(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_headers(limits::HTTP_HEADERS_MAX)
        .max_header_size(limits::HTTP_HEADER_BYTES_MAX)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let idle_ms = u64::try_from(shared.limits.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut draining = false;
    loop {
        let idle_for = shared
            .now_ms()
            .saturating_sub(conn.last_active_ms.load(Ordering::Relaxed));
        let busy = conn.busy.load(Ordering::Relaxed) > 0;
        if !busy && idle_for >= idle_ms {
            tracing::trace!("closing a connection idle for {idle_for}ms");
            return;
        }
        // Busy: look again a whole idle period later (the request's end
        // counts as activity, so it is never cut short).
        let wake = Duration::from_millis(if busy { idle_ms } else { idle_ms - idle_for });
        tokio::select! {
            done = served.as_mut() => {
                if let Err(error) = done {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            _ = conn.evict.cancelled(), if !draining => {
                if conn.busy.load(Ordering::Relaxed) == 0 {
                    return;
                }
                served.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = shared.cancel.cancelled(), if !draining => {
                served.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = shared.hard_stop.cancelled() => return,
            _ = tokio::time::sleep(wake) => {}
        }
    }
}

/// A TCP stream that notes when bytes move, for the idle timeout and for
/// choosing which connection to evict.
struct Tracked {
    inner: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.touch(&self.shared);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch(&self.shared);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.touch(&self.shared);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The HTTPS certificate, as reloads leave it, offered for HTTP/1.1 only.
struct TlsSource {
    source: axum_server::tls_rustls::RustlsConfig,
    /// The last config seen and its HTTP/1.1-only copy, remade only when a
    /// reload swapped the config.
    derived: Mutex<Option<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>>,
}

impl TlsSource {
    fn new(source: axum_server::tls_rustls::RustlsConfig) -> TlsSource {
        TlsSource {
            source,
            derived: Mutex::new(None),
        }
    }

    fn config(&self) -> Arc<rustls::ServerConfig> {
        let current = self.source.get_inner();
        let mut derived = self.derived.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, http1)) = derived.as_ref()
            && Arc::ptr_eq(seen, &current)
        {
            return http1.clone();
        }
        let mut http1 = (*current).clone();
        // axum-server offers h2 too; a client that picked it would get
        // HTTP/1.1 bytes it cannot read.
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http1 = Arc::new(http1);
        *derived = Some((current, http1.clone()));
        http1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_for_test(max_connections: usize) -> Arc<Shared> {
        Arc::new(Shared {
            app: Router::new(),
            tls: None,
            limits: ListenLimits::default(),
            epoch: Instant::now(),
            cancel: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            slots: Arc::new(Semaphore::new(max_connections)),
            refusals: Arc::new(Semaphore::new(1)),
            evictions: Arc::new(Semaphore::new(1)),
            open: Mutex::new(VecDeque::new()),
            max_connections,
            warned_full_at: AtomicU64::new(0),
            warned_accept_at: AtomicU64::new(0),
            stats: Counters::default(),
        })
    }

    #[tokio::test]
    async fn eviction_picks_the_longest_idle_connection_and_spares_busy_ones() {
        let shared = shared_for_test(3);
        let a = shared.register();
        let b = shared.register();
        let c = shared.register();
        a.busy.store(1, Ordering::Relaxed);
        a.last_active_ms.store(0, Ordering::Relaxed);
        b.last_active_ms.store(50, Ordering::Relaxed);
        c.last_active_ms.store(10, Ordering::Relaxed);
        assert!(shared.evict_one().is_some());
        assert!(c.evict.is_cancelled(), "c is idle and idle the longest");
        assert!(!a.evict.is_cancelled() && !b.evict.is_cancelled());
        b.busy.store(1, Ordering::Relaxed);
        assert!(
            shared.evict_one().is_none(),
            "a and b are busy, c already went"
        );
    }

    #[tokio::test]
    async fn closed_connections_are_forgotten() {
        let shared = shared_for_test(2);
        for _ in 0..10 {
            shared.register().closed.store(true, Ordering::Relaxed);
        }
        let open = shared.open.lock().unwrap().len();
        assert!(open <= 5, "{open} entries kept for 2 slots");
        assert!(shared.evict_one().is_none(), "nothing open to evict");
    }

    #[test]
    fn the_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSED_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        serde_json::from_str::<serde_json::Value>(body).unwrap();
    }

    #[test]
    fn the_budget_leaves_the_probes_their_share() {
        let raised = raise_descriptor_limit().unwrap();
        let budget = connection_budget().unwrap() as u64;
        assert!(budget < raised / limits::HTTP_DESCRIPTOR_SHARE_DIVISOR + 1);
    }
}

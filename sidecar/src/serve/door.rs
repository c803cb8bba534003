//! Every listener's door: an accept loop that survives its errors, a cap on
//! open connections, and timeouts for connections that send nothing.
//!
//! - **Accept errors** (EMFILE, ENFILE, ECONNABORTED, ...) never end the
//!   loop: it logs (at most once a second), closes this listener's oldest
//!   idle connection when descriptors ran out, waits a little and goes on.
//! - **The cap** counts open connections. A new connection over it takes
//!   the place of the connection idle the longest (a slow client that has
//!   not finished a request); when every connection is busy, the new one is
//!   closed at once (shed).
//! - **Timeouts**: a connection must finish a request header within
//!   `header_timeout` of being accepted, and the next one within
//!   `idle_timeout` of the last answer; a sweeper closes the ones that
//!   don't. A connection is busy from a complete request header until its
//!   answer is ready, and never closed then.
//!
//! The HTTP listeners (challenge API, ops, admin) go through [`serve_http`],
//! which adds a header-size cap and refuses request bodies; the TLS-ALPN-01
//! responder uses [`serve`] with its own handshake.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;

use crate::serve::metrics::metrics;

/// What one listener allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; more take an idle one's place or are shed.
    pub max_connections: usize,
    /// From accept to a complete first request header.
    pub header_timeout: Duration,
    /// From an answer to the next complete request header (keep-alive).
    pub idle_timeout: Duration,
}

impl Limits {
    /// The public-facing listeners: challenge API and TLS-ALPN-01 responder.
    pub const PUBLIC: Self =
        Self { max_connections: 1024, header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(30) };
    /// Operators' listeners: admin API and ops (probes, metrics).
    pub const OPERATOR: Self =
        Self { max_connections: 64, header_timeout: Duration::from_secs(10), idle_timeout: Duration::from_secs(30) };
}

/// The largest request header an HTTP listener reads.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The largest request body an HTTP listener accepts: none of its
/// operations reads one.
pub const MAX_BODY_BYTES: u64 = 4 * 1024;

/// A listener [`serve`] accepts from.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection and its peer, for logs.
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, String)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (stream, peer) = Self::accept(self).await?;
        Ok((stream, peer.to_string()))
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (stream, _) = Self::accept(self).await?;
        Ok((stream, "unix".to_owned()))
    }
}

#[derive(Debug)]
struct Entry {
    /// `None` until the connection's task is spawned.
    abort: Option<AbortHandle>,
    /// Closed before its task was spawned: abort it once it is.
    doomed: bool,
    /// Accepted, or last answer ready.
    since: Instant,
    busy: u32,
    answered: bool,
}

#[derive(Debug, Default)]
struct Registry {
    next: u64,
    entries: BTreeMap<u64, Entry>,
    /// The most connections open since memory was last given back.
    peak: usize,
}

impl Registry {
    /// The connection idle the longest, if any is idle.
    fn longest_idle(&self) -> Option<u64> {
        self.entries.iter().filter(|(_, e)| e.busy == 0 && !e.doomed).min_by_key(|(_, e)| e.since).map(|(id, _)| *id)
    }

    /// Closes `id`: aborts its task, whose [`Activity`] then goes.
    fn close(&mut self, id: u64) {
        let Some(entry) = self.entries.get_mut(&id) else { return };
        match &entry.abort {
            Some(abort) => {
                abort.abort();
                self.entries.remove(&id);
            }
            None => entry.doomed = true,
        }
    }

    /// Idle connections past their timeout at `now`.
    fn overdue(&self, limits: &Limits, now: Instant) -> Vec<u64> {
        let limit = |e: &Entry| if e.answered { limits.idle_timeout } else { limits.header_timeout };
        self.entries
            .iter()
            .filter(|(_, e)| e.busy == 0 && !e.doomed && now.saturating_duration_since(e.since) >= limit(e))
            .map(|(id, _)| *id)
            .collect()
    }
}

/// One listener's open connections.
#[derive(Debug, Clone)]
struct Doorkeeper {
    name: &'static str,
    limits: Limits,
    registry: Arc<Mutex<Registry>>,
}

impl Doorkeeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed(&self, reason: &str, count: usize) {
        if count > 0 {
            metrics().connections_closed(self.name, reason, count as u64);
        }
    }

    fn sweep(&self) {
        let mut registry = self.lock();
        let overdue = registry.overdue(&self.limits, Instant::now());
        for id in &overdue {
            registry.close(*id);
        }
        // After a flood, give the freed connection memory back.
        let open = registry.entries.len();
        registry.peak = registry.peak.max(open);
        let flood_over = registry.peak >= FLOOD && open <= registry.peak / 8;
        if flood_over {
            registry.peak = open;
        }
        drop(registry);
        self.closed("timeout", overdue.len());
        if flood_over {
            release_memory();
        }
    }
}

/// A connection's handle on its own entry: marks it busy while a request
/// is being answered, and removes it when the connection ends.
#[derive(Debug)]
pub struct Activity {
    door: Doorkeeper,
    id: u64,
}

/// Busy until dropped.
#[derive(Debug)]
pub struct Busy<'a>(&'a Activity);

impl Activity {
    /// The connection is answering a request until the guard is dropped.
    pub fn busy(&self) -> Busy<'_> {
        if let Some(entry) = self.door.lock().entries.get_mut(&self.id) {
            entry.busy += 1;
        }
        Busy(self)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Some(entry) = self.0.door.lock().entries.get_mut(&self.0.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.answered = true;
            entry.since = Instant::now();
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        self.door.lock().entries.remove(&self.id);
        metrics().connections_open(self.door.name, -1);
    }
}

/// Open connections on one listener that count as a flood once they are gone.
const FLOOD: usize = 256;

/// Returns freed heap memory to the system. glibc keeps what thousands of
/// short-lived connections freed in its arenas (RSS stayed at the flood's
/// peak); `malloc_trim` releases it. Also called once the certificates are
/// loaded at start-up, whose parsing frees as much as it keeps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "malloc_trim is FFI; with mallopt below, the crate's only unsafe calls")]
pub(crate) fn release_memory() {
    // SAFETY: malloc_trim takes no pointers and only trims glibc's own free
    // lists, locking each arena while it does; any thread may call it.
    let released = unsafe { libc::malloc_trim(0) } == 1;
    tracing::debug!(released, "gave freed memory back");
}

/// Other allocators return freed memory themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release_memory() {}

/// glibc's arenas at most, unless `MALLOC_ARENA_MAX` says otherwise. The
/// start-up loads certificates on up to 16 blocking threads, and glibc
/// gives each its own arena (8 per core by default), whose fragments stay
/// resident: at 50,000 certificates 2 arenas held about 18 MiB less than
/// the default (heaptrack and VmRSS, issue 23). The sidecar's hot paths
/// wait on the network, not on malloc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENAS: i32 = 2;

/// Caps glibc's malloc arenas ([`ARENAS`]); call before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code, reason = "mallopt is FFI, as malloc_trim above")]
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    // SAFETY: mallopt takes no pointers; called from main before other
    // threads exist, and glibc locks its own state anyway.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
}

/// Other allocators have no glibc arenas.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// True for accept errors that mean "out of file descriptors".
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc_emfile() || code == libc_enfile())
}

fn libc_emfile() -> i32 {
    rustix::io::Errno::MFILE.raw_os_error()
}

fn libc_enfile() -> i32 {
    rustix::io::Errno::NFILE.raw_os_error()
}

/// Waits after the `failures`-th accept error in a row: 10 ms, doubling to 1 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(10 << failures.min(7)).min(Duration::from_secs(1))
}

/// Logs an accept error at most once a second.
fn warn_accept(name: &str, e: &std::io::Error, failures: u32, last_warning: &mut Option<Instant>) {
    if last_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
        tracing::warn!(listener = name, error = %e, failures, "accept failed; going on");
        *last_warning = Some(Instant::now());
    }
}

/// The connections of `listener` as a stream for a server that runs its
/// own connections (tonic): accept errors are logged and waited out here,
/// never passed on, so the server neither stops nor spins on EMFILE. The
/// stream ends when the server drops it.
pub fn incoming<L: Accept>(
    listener: L,
    name: &'static str,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<L::Io>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let (mut failures, mut last_warning) = (0u32, None);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((io, _)) => {
                    failures = 0;
                    if tx.send(Ok(io)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn_accept(name, &e, failures, &mut last_warning);
                    tokio::time::sleep(backoff(failures)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accepts on `listener` until the returned task is aborted, running
/// `handler` for each connection within `limits`.
pub fn serve<L, H, F>(listener: L, name: &'static str, limits: Limits, handler: H) -> tokio::task::JoinHandle<()>
where
    L: Accept,
    H: Fn(L::Io, String, Arc<Activity>) -> F + Send + Sync + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let door = Doorkeeper { name, limits, registry: Arc::default() };
    let tick =
        (limits.header_timeout.min(limits.idle_timeout) / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    tokio::spawn(async move {
        let mut sweep = tokio::time::interval(tick);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_warning: Option<Instant> = None;
        let mut failures = 0u32;
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = sweep.tick() => {
                    door.sweep();
                    continue;
                }
            };
            let (io, peer) = match accepted {
                Ok(conn) => {
                    failures = 0;
                    conn
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    warn_accept(name, &e, failures, &mut last_warning);
                    if out_of_descriptors(&e) {
                        let mut registry = door.lock();
                        if let Some(id) = registry.longest_idle() {
                            registry.close(id);
                            drop(registry);
                            door.closed("descriptors", 1);
                        }
                    }
                    tokio::time::sleep(backoff(failures)).await;
                    continue;
                }
            };
            admit(&door, io, peer, &handler);
        }
    })
}

/// Registers and spawns one connection, making room under the cap first.
fn admit<Io, H, F>(door: &Doorkeeper, io: Io, peer: String, handler: &H)
where
    Io: Send + 'static,
    H: Fn(Io, String, Arc<Activity>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut registry = door.lock();
    if registry.entries.len() >= door.limits.max_connections {
        match registry.longest_idle() {
            Some(id) => {
                registry.close(id);
                door.closed("cap", 1);
            }
            None => {
                drop(registry);
                door.closed("shed", 1);
                return;
            }
        }
    }
    let id = registry.next;
    registry.next += 1;
    let entry = Entry { abort: None, doomed: false, since: Instant::now(), busy: 0, answered: false };
    registry.entries.insert(id, entry);
    drop(registry);
    metrics().connections_open(door.name, 1);
    // The handler runs without the lock: it may drop its Activity at once.
    let task = tokio::spawn(handler(io, peer, Arc::new(Activity { door: door.clone(), id })));
    let mut registry = door.lock();
    match registry.entries.get_mut(&id) {
        Some(entry) if entry.doomed => {
            task.abort();
            registry.entries.remove(&id);
        }
        Some(entry) => entry.abort = Some(task.abort_handle()),
        // Ended already.
        None => {}
    }
}

/// The answer an HTTP handler gives.
pub type Reply = Response<Full<Bytes>>;

/// Serves HTTP/1.1 on `listener` within `limits`: request headers up to
/// [`MAX_HEADER_BYTES`], no request body over [`MAX_BODY_BYTES`] (413).
pub fn serve_http<L, H, F>(listener: L, name: &'static str, limits: Limits, handler: H) -> tokio::task::JoinHandle<()>
where
    L: Accept,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    serve(listener, name, limits, move |io, peer, activity| {
        let handler = handler.clone();
        async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (handler, activity) = (handler.clone(), Arc::clone(&activity));
                async move {
                    let _busy = activity.busy();
                    if too_large(&req) {
                        return Ok::<_, Infallible>(refuse_body());
                    }
                    Ok(handler(req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(TokioIo::new(io), service);
            if let Err(e) = conn.await {
                tracing::debug!(listener = name, %peer, error = %e, "connection error");
            }
        }
    })
}

/// A body over the cap, declared or chunked (unbounded).
fn too_large<B>(req: &Request<B>) -> bool {
    let declared = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()).is_none_or(|n| n > MAX_BODY_BYTES));
    declared.unwrap_or(false) || req.headers().contains_key(http::header::TRANSFER_ENCODING)
}

fn refuse_body() -> Reply {
    let mut rsp = Response::new(Full::new(Bytes::from_static(b"request body not accepted\n")));
    *rsp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    rsp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    rsp
}

#[cfg(test)]
#[path = "door_tests.rs"]
mod tests;

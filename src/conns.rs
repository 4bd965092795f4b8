//! The live client connections: what each is doing (reading a request head, serving requests,
//! or idle between them), the timeout each state allows, and shedding: at the connection cap,
//! the connection that has had no request in service for longest is closed to admit a new one.
//!
//! A connection is *busy* from the moment a request's head is complete until its response body
//! ends, so a long-poll or continuous `_changes` feed is busy however quiet it is, and is never
//! timed out or shed here (a stalled request body is bounded by [`crate::body::TimedBody`]).
//! Without a request in service it is either reading a head (from connecting, TLS handshake
//! included, or from the first byte of the next request on HTTP/1) and gets the header-read
//! timeout, or idle and gets the idle timeout. HTTP/2 sends frames between requests (pings,
//! window updates), so on HTTP/2 only the first request's head is timed as a head.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection may go without a request in service.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From connecting, or from a request's first byte, until its head is complete.
    pub header_read: Duration,
    /// Between requests.
    pub idle: Duration,
}

/// Why a connection was closed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    IdleTimeout,
    Shed,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Closed::HeaderTimeout => "no complete request head in time",
            Closed::IdleTimeout => "idle too long",
            Closed::Shed => "shed to admit a new connection",
        })
    }
}

#[derive(Debug)]
struct Phase {
    /// Requests in service.
    busy: usize,
    /// With nothing in service: a request head is being read (else the connection is idle).
    head: bool,
    /// When the connection last had nothing in service, or when the head being read began.
    since: Instant,
    h2: bool,
    shed: bool,
}

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    phase: Mutex<Phase>,
    /// Idle on HTTP/1: a byte read now begins a request head. Read on every read, so kept
    /// outside the lock.
    idle_h1: AtomicBool,
    /// Wakes the watchdog when its deadline may have come closer, or the connection was shed.
    wake: Notify,
    /// The registry's signal that some connection has nothing in service any more.
    became_idle: Arc<Notify>,
}

impl Conn {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase
            .lock()
            .expect("never poisoned: no panics under the lock")
    }

    /// Marks a request as in service until the returned guard is dropped (put it in the
    /// response body, so that a streamed answer counts until its end).
    pub fn begin_request(self: &Arc<Self>, http2: bool) -> InService {
        let mut p = self.phase();
        p.busy += 1;
        p.head = false;
        p.h2 |= http2;
        self.idle_h1.store(false, Ordering::Relaxed);
        // No wake-up: the watchdog finds the connection busy when its deadline comes.
        InService(Arc::clone(self))
    }

    fn end_request(&self) {
        let mut p = self.phase();
        p.busy = p.busy.saturating_sub(1);
        if p.busy == 0 {
            p.since = Instant::now();
            self.idle_h1.store(!p.h2, Ordering::Relaxed);
            drop(p);
            self.wake.notify_one();
            self.became_idle.notify_one();
        }
    }

    /// Bytes arrived from the client.
    fn note_read(&self) {
        if !self.idle_h1.load(Ordering::Relaxed) {
            return;
        }
        let mut p = self.phase();
        if p.busy == 0 && !p.head && !p.h2 {
            p.head = true;
            p.since = Instant::now();
            self.idle_h1.store(false, Ordering::Relaxed);
            drop(p);
            self.wake.notify_one();
        }
    }

    /// Resolves when the connection must be closed: a timeout of its state ran out, or it was
    /// shed. Never while a request is in service.
    pub async fn watchdog(&self, t: Timeouts) -> Closed {
        loop {
            let deadline = {
                let p = self.phase();
                if p.shed {
                    return Closed::Shed;
                }
                (p.busy == 0).then(|| {
                    if p.head {
                        (p.since + t.header_read, Closed::HeaderTimeout)
                    } else {
                        (p.since + t.idle, Closed::IdleTimeout)
                    }
                })
            };
            match deadline {
                None => self.wake.notified().await,
                Some((at, why)) if at <= Instant::now() => return why,
                Some((at, _)) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = self.wake.notified() => {}
                },
            }
        }
    }
}

/// A request in service on its connection; see [`Conn::begin_request`].
#[derive(Debug)]
pub struct InService(Arc<Conn>);

impl Drop for InService {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// A response body that keeps its request in service until it ends or is dropped.
pub struct InFlight<B> {
    body: B,
    _request: InService,
}

impl<B> InFlight<B> {
    pub fn new(body: B, request: InService) -> Self {
        InFlight {
            body,
            _request: request,
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for InFlight<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The client's byte stream, telling its connection when bytes arrive.
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, conn: Arc<Conn>) -> Self {
        Tracked { inner, conn }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.conn.note_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Every open connection.
#[derive(Debug, Default)]
pub struct Registry {
    conns: Arc<Mutex<HashMap<u64, Arc<Conn>>>>,
    next: AtomicU64,
    became_idle: Arc<Notify>,
}

/// A connection's entry in the [`Registry`], removed when dropped.
#[derive(Debug)]
pub struct Registered {
    pub conn: Arc<Conn>,
    id: u64,
    conns: Arc<Mutex<HashMap<u64, Arc<Conn>>>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.conns).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().expect("never poisoned: no panics under the lock")
}

impl Registry {
    /// Registers a connection that has just been accepted: reading its first request head.
    pub fn open(&self) -> Registered {
        let conn = Arc::new(Conn {
            phase: Mutex::new(Phase {
                busy: 0,
                head: true,
                since: Instant::now(),
                h2: false,
                shed: false,
            }),
            idle_h1: AtomicBool::new(false),
            wake: Notify::new(),
            became_idle: Arc::clone(&self.became_idle),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.conns).insert(id, Arc::clone(&conn));
        Registered {
            conn,
            id,
            conns: Arc::clone(&self.conns),
        }
    }

    /// Closes the connection that has had no request in service for longest (idle, or
    /// reading a head); `false` when every connection is busy.
    pub fn shed_oldest_idle(&self) -> bool {
        loop {
            let conns = lock(&self.conns);
            let oldest = conns
                .values()
                .filter_map(|c| {
                    let p = c.phase();
                    (p.busy == 0 && !p.shed).then_some((p.since, c))
                })
                .min_by_key(|(since, _)| *since);
            let Some((_, conn)) = oldest else {
                return false;
            };
            // It may have begun a request since it was looked at: then look again.
            let mut p = conn.phase();
            if p.busy == 0 {
                p.shed = true;
                drop(p);
                conn.wake.notify_one();
                return true;
            }
        }
    }

    /// Resolves when some connection may have nothing in service any more (it may have
    /// happened before the call).
    pub async fn became_idle(&self) {
        self.became_idle.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(75),
    };

    async fn closes_after(conn: &Conn) -> (Closed, Duration) {
        let start = Instant::now();
        let why = conn.watchdog(T).await;
        (why, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn each_state_has_its_timeout() {
        let r = Registry::default();
        let c = r.open();
        assert_eq!(
            closes_after(&c.conn).await,
            (Closed::HeaderTimeout, T.header_read),
            "a fresh connection must send a head"
        );
        let c = r.open();
        drop(c.conn.begin_request(false));
        assert_eq!(closes_after(&c.conn).await, (Closed::IdleTimeout, T.idle));
        // On HTTP/1 a byte between requests begins a head.
        let c = r.open();
        drop(c.conn.begin_request(false));
        c.conn.note_read();
        assert_eq!(
            closes_after(&c.conn).await,
            (Closed::HeaderTimeout, T.header_read)
        );
        // On HTTP/2 it is a frame.
        let c = r.open();
        drop(c.conn.begin_request(true));
        c.conn.note_read();
        assert_eq!(closes_after(&c.conn).await, (Closed::IdleTimeout, T.idle));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_service_is_never_timed_out() {
        let r = Registry::default();
        let c = r.open();
        let req = c.conn.begin_request(false);
        let dog = c.conn.watchdog(T);
        tokio::pin!(dog);
        assert!(
            tokio::time::timeout(Duration::from_secs(3600), &mut dog)
                .await
                .is_err(),
            "busy for an hour"
        );
        drop(req);
        let start = Instant::now();
        assert_eq!(dog.await, Closed::IdleTimeout);
        assert_eq!(start.elapsed(), T.idle);
    }

    #[tokio::test(start_paused = true)]
    async fn shedding_picks_the_connection_idle_longest_and_never_a_busy_one() {
        let r = Registry::default();
        let busy = r.open();
        let _req = busy.conn.begin_request(false);
        let old = r.open();
        tokio::time::advance(Duration::from_secs(1)).await;
        let young = r.open();
        assert!(r.shed_oldest_idle());
        assert_eq!(old.conn.watchdog(T).await, Closed::Shed);
        assert!(r.shed_oldest_idle());
        assert_eq!(young.conn.watchdog(T).await, Closed::Shed);
        assert!(!r.shed_oldest_idle(), "only a busy one is left");
        drop((old, young));
        assert_eq!(lock(&r.conns).len(), 1);
    }
}

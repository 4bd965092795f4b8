//! Accepting connections: TCP or TLS, HTTP/1.1 and h2, a cap on concurrent connections (at
//! the cap, the connection idle longest is shed to admit a new one), header-read and idle
//! timeouts ([`crate::conns`]), and graceful shutdown with a deadline.

use crate::auth::ClientAddr;
use crate::conns::{Conn, InFlight, Registry, Timeouts, Tracked};
use crate::proxy::Proxy;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// Serving limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
    /// The TLS handshake counts against the header-read timeout.
    pub timeouts: Timeouts,
}

/// Serves `listener` until `shutdown` completes, then lets in-flight requests finish for at
/// most `limits.shutdown_timeout`.
pub async fn run(
    listener: TcpListener,
    proxy: Proxy,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Registry::default();
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(5);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(5); x }
                Err(e) => {
                    // Out of file descriptors and similar: wait, then try again.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => tokio::select! {
                p = admit(&permits, &registry) => p,
                _ = &mut shutdown => break,
            },
        };
        let _ = stream.set_nodelay(true);
        let registered = registry.open();
        let proxy = proxy.clone();
        let tls = tls.clone();
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let timeouts = limits.timeouts;
        let span = tracing::debug_span!("connection", %peer);
        tokio::spawn(
            async move {
                let _permit = permit;
                let conn = Arc::clone(&registered.conn);
                let stream = Tracked::new(stream, Arc::clone(&conn));
                let work = async {
                    match tls {
                        None => serve(&builder, watcher, stream, peer, proxy, conn).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => serve(&builder, watcher, s, peer, proxy, conn).await,
                            Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
                        },
                    }
                };
                tokio::select! {
                    () = work => {}
                    why = registered.conn.watchdog(timeouts) => {
                        tracing::debug!(%why, "connection closed");
                    }
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    tracing::info!("shutting down; waiting for in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(limits.shutdown_timeout) => {
            tracing::warn!("shutdown deadline passed; closing remaining connections");
        }
    }
}

/// A slot for a connection accepted at the cap: the connection idle longest is closed to make
/// room. When every connection is busy, the new one waits for a slot, and those after it wait
/// in the kernel's queue.
async fn admit(permits: &Arc<Semaphore>, registry: &Registry) -> OwnedSemaphorePermit {
    loop {
        if registry.shed_oldest_idle() {
            tracing::debug!("at the connection cap: closing the connection idle longest");
            break;
        }
        tokio::select! {
            p = Arc::clone(permits).acquire_owned() => {
                return p.expect("the semaphore is never closed")
            }
            () = registry.became_idle() => {}
        }
    }
    Arc::clone(permits)
        .acquire_owned()
        .await
        .expect("the semaphore is never closed")
}

async fn serve<S>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    peer: std::net::SocketAddr,
    proxy: Proxy,
    conn: Arc<Conn>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        // In service until the answer's body ends.
        let in_service = conn.begin_request(req.version() == http::Version::HTTP_2);
        // The address failed password checks are counted against.
        req.extensions_mut().insert(ClientAddr(peer.ip()));
        let proxy = proxy.clone();
        async move {
            // Boxed: hyper holds (and moves) only this block, not the request's whole future.
            let resp = Box::pin(proxy.handle(req)).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|b| InFlight::new(b, in_service)))
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

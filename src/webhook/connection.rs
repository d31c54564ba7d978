//! One accepted connection, plain or TLS, served by hyper under the port's timeouts and limits.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::outcome::Reason;
use crate::telemetry::Metrics;
use crate::webhook::deadline::RequestDeadline;

/// How long and how many connections a port keeps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TLS handshake, and a request from its first byte to the end of its body.
    pub request_timeout: Duration,
    /// A keep-alive connection between requests.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Largest request head accepted (hyper's read buffer); kube-apiserver sends well under 1 KiB.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Accepts connections on `listener` (through TLS when `tls` is set) until `stop` resolves, each
/// served by [`serve_connection`]; returns the watcher of those still open, to drain them.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    graceful: GracefulShutdown,
    stop: impl Future<Output = ()>,
) -> GracefulShutdown {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let builders = Arc::new(Builders::new(limits));
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics.count_rejected(Reason::TooManyConnections);
            debug!(%peer, "connection limit reached; closed");
            continue; // dropping the stream closes it at once
        };
        let _ = tcp.set_nodelay(true);
        let connection = Connection {
            tcp,
            peer,
            tls: tls.clone(),
            router: router.clone(),
            builders: builders.clone(),
            limits,
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            connection.serve(watcher).await;
            drop(slot);
        });
    }
    drop(listener);
    graceful
}

/// hyper's builders for the two protocols, configured once per port.
struct Builders {
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: ConnectionLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // hyper's header timeout also runs while a keep-alive connection is idle, so it is the
        // idle timeout here; a started request is bounded by `RequestDeadline` instead.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_buf_size(MAX_HEADER_BYTES);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(limits.request_timeout)
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .max_concurrent_streams(64);
        Self {
            h1: builder.clone().http1_only(),
            h2: builder.http2_only(),
        }
    }
}

/// One accepted connection.
struct Connection {
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    router: Router,
    builders: Arc<Builders>,
    limits: ConnectionLimits,
}

impl Connection {
    /// Handshakes, then serves requests until the client closes, a limit is hit or the server
    /// drains. The protocol comes from ALPN, never from sniffing the first bytes: sniffing waits
    /// for them with no timeout, so a client that completes the handshake and sends nothing would
    /// hold its connection forever. h2 over TLS requires ALPN; everything else is HTTP/1.1.
    async fn serve(self, watcher: hyper_util::server::graceful::Watcher) {
        let Self {
            tcp,
            peer,
            tls,
            router,
            builders,
            limits,
        } = self;
        // Every request marks the connection active: the idle watchdog below closes an HTTP/2
        // connection that brings none for --idle-timeout (HTTP/1.1 has hyper's timer for it).
        let activity = Arc::new(tokio::sync::Notify::new());
        let seen = activity.clone();
        let service = TowerToHyperService::new(router.map_request(
            move |request: axum::http::Request<hyper::body::Incoming>| {
                seen.notify_one();
                request
            },
        ));
        // The body gets --request-timeout after the headers (and answers 408); the transport
        // cuts a request that is still arriving after twice that, whatever stage it is in.
        let deadline = limits.request_timeout * 2;
        let (io, http2): (Box<dyn Io>, bool) = match tls {
            None => (Box::new(RequestDeadline::new(tcp, deadline)), false),
            Some(acceptor) => {
                let tls = match tokio::time::timeout(limits.request_timeout, acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => return debug!(%peer, "TLS handshake timed out"),
                };
                if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                    (Box::new(tls), true)
                } else {
                    (Box::new(RequestDeadline::new(tls, deadline)), false)
                }
            }
        };
        let builder = if http2 { &builders.h2 } else { &builders.h1 };
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        // The first request must come within --request-timeout, later ones within
        // --idle-timeout of the one before.
        let idle = async {
            let mut wait = limits.request_timeout;
            while tokio::time::timeout(wait, activity.notified())
                .await
                .is_ok()
            {
                wait = limits.idle_timeout;
            }
        };
        tokio::select! {
            served = watcher.watch(connection) => if let Err(error) = served {
                debug!(%peer, %error, "connection ended with an error");
            },
            () = idle => debug!(%peer, "no request within the timeout; closed"),
        }
    }
}

/// A connection's byte stream, plain or TLS, with or without the request deadline.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

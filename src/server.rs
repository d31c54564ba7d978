//! `serve`: the TLS admission webhook and the plain-HTTP admin port, with timeouts, a body limit,
//! certificate hot reload and a graceful drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::admission;
use crate::deadline::RequestDeadline;
use crate::inject::Defaults;
use crate::outcome::Reason;
use crate::telemetry::LogFormat;
use crate::telemetry::Metrics;
use crate::tls::{CertPaths, Certificates};

/// A validated `serve` invocation.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls_cert: std::path::PathBuf,
    pub tls_key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
    pub cert_check_interval: Duration,
    /// Positive.
    pub max_body_bytes: usize,
    /// At least `max_body_bytes`.
    pub max_inflight_body_bytes: usize,
    /// Webhook-port limits; `max_connections` positive.
    pub limits: ConnectionLimits,
    pub shutdown_grace: Duration,
    pub shutdown_delay: Duration,
    pub log_format: LogFormat,
    pub defaults: Defaults,
}

/// What every webhook request needs.
pub struct AppState {
    pub defaults: Defaults,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Request-body bytes that may be held at once, in KiB permits.
    pub body_budget: Arc<Semaphore>,
}

/// KiB permits for `bytes` (the body budget counts in KiB to stay within a semaphore's range).
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .max(1)
}

/// The webhook's routes: `POST /mutate`; every other request gets a JSON error.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(not_found)
        .with_state(state)
}

fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into(), "code": status.as_u16() });
    (status, axum::Json(body)).into_response()
}

async fn method_not_allowed(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.count_rejected(Reason::MethodNotAllowed);
    let mut response = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "only POST is allowed on /mutate",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.count_rejected(Reason::NotFound);
    json_error(StatusCode::NOT_FOUND, "the webhook path is /mutate")
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Reads the body within `--max-body-bytes` and `--request-timeout`, holding its share of the
/// in-flight body budget (returned with the bytes, released when dropped).
async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, OwnedSemaphorePermit), Response> {
    let too_large = || {
        state.metrics.count_rejected(Reason::BodyTooLarge);
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body exceeds --max-body-bytes ({} bytes)",
                state.max_body_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.max_body_bytes as u64) {
        return Err(too_large());
    }
    // A body of unknown length may grow to the limit: it reserves that much.
    let reserve = declared.map_or(state.max_body_bytes, |len| len as usize);
    let Ok(permit) = state
        .body_budget
        .clone()
        .try_acquire_many_owned(kib(reserve))
    else {
        state.metrics.count_rejected(Reason::BodyBudgetExhausted);
        let mut response = json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight (--max-inflight-body-bytes); retry",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return Err(response);
    };
    let collect = Limited::new(body, state.max_body_bytes).collect();
    match tokio::time::timeout(state.request_timeout, collect).await {
        Ok(Ok(collected)) => Ok((collected.to_bytes(), permit)),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => {
            state.metrics.count_rejected(Reason::BodyReadError);
            Err(json_error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {error}"),
            ))
        }
        Err(_) => {
            state.metrics.count_rejected(Reason::BodyTimeout);
            Err(json_error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within --request-timeout",
            ))
        }
    }
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    if !is_json(&headers) {
        state.metrics.count_rejected(Reason::UnsupportedMediaType);
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be an AdmissionReview with Content-Type: application/json",
        );
    }
    let (bytes, _budget) = match read_body(&state, &headers, body).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let started = Instant::now();
    match admission::review(&bytes, &state.defaults) {
        Ok(reviewed) => {
            let elapsed = started.elapsed();
            state
                .metrics
                .observe_request(reviewed.outcome, reviewed.reason, elapsed);
            if let (Some(settings), false) = (&reviewed.settings, reviewed.dry_run) {
                state.metrics.count_injected(settings);
            }
            info!(
                uid = &*reviewed.uid,
                namespace = &*reviewed.namespace,
                pod = &*reviewed.pod,
                outcome = reviewed.outcome.as_str(),
                reason = reviewed.reason.as_str(),
                dry_run = reviewed.dry_run,
                warnings = reviewed.warnings,
                duration_us = elapsed.as_micros() as u64,
                "admission"
            );
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(error) => {
            state.metrics.count_rejected(error.reason());
            warn!(reason = error.reason().as_str(), %error, "unreadable admission request");
            json_error(StatusCode::BAD_REQUEST, error.to_string())
        }
    }
}

/// The admin port: health, readiness and metrics (`encode_metrics` writes the Prometheus text),
/// in plain HTTP.
pub fn admin_router(
    encode_metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    ready: Arc<AtomicBool>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = encode_metrics();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                }
            }),
        )
}

/// A bound, not yet running server.
pub struct Server {
    webhook: TcpListener,
    admin: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    certificates: Certificates,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    cert_check_interval: Duration,
    shutdown_grace: Duration,
    shutdown_delay: Duration,
}

/// How long and how many connections a port keeps.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// TLS handshake, and a request from its first byte to the end of its body.
    pub request_timeout: Duration,
    /// A keep-alive connection between requests.
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// The admin port serves probes and scrapes: a few connections, short timeouts.
const ADMIN_LIMITS: ConnectionLimits = ConnectionLimits {
    request_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(30),
    max_connections: 32,
};
/// Largest request head accepted (hyper's read buffer); kube-apiserver sends well under 1 KiB.
const MAX_HEADER_BYTES: usize = 16 * 1024;

impl Server {
    /// Validates the configuration, loads the certificate and binds both ports; every fault here
    /// is fatal and names its flag.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let certificates = Certificates::load(
            CertPaths {
                cert: config.tls_cert.clone(),
                key: config.tls_key.clone(),
            },
            &metrics,
        )?;
        let tls = Arc::new(certificates.server_config(config.client_ca.as_deref())?);
        let webhook = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("--listen {}", config.listen))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("--admin-listen {}", config.admin_listen))?;
        Ok(Self {
            webhook,
            admin,
            tls,
            certificates,
            state: Arc::new(AppState {
                defaults: config.defaults,
                metrics,
                max_body_bytes: config.max_body_bytes,
                request_timeout: config.limits.request_timeout,
                body_budget: Arc::new(Semaphore::new(kib(config.max_inflight_body_bytes) as usize)),
            }),
            limits: config.limits,
            cert_check_interval: config.cert_check_interval,
            shutdown_grace: config.shutdown_grace,
            shutdown_delay: config.shutdown_delay,
        })
    }

    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then turns unready, stops accepting after
    /// `--shutdown-delay` and gives in-flight requests `--shutdown-grace` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let ready = Arc::new(AtomicBool::new(true));
        let admin_addr = self.admin.local_addr()?;
        let stop_background = CancellationToken::new();
        let metrics = self.state.metrics.clone();

        tokio::spawn(self.certificates.watch(
            self.cert_check_interval,
            metrics.clone(),
            stop_background.clone(),
        ));
        let admin = tokio::spawn(accept_loop(
            self.admin,
            None,
            admin_router(
                {
                    let metrics = metrics.clone();
                    move || metrics.encode()
                },
                ready.clone(),
            ),
            ADMIN_LIMITS,
            metrics.clone(),
            GracefulShutdown::new(),
            stop_background.clone().cancelled_owned(),
        ));

        let graceful = GracefulShutdown::new();
        info!(webhook = %self.webhook.local_addr()?, admin = %admin_addr, "serving");
        // With --shutdown-delay: unready as soon as shutdown starts, accepting until the delay
        // ends. Without: the port closes first and readiness follows, so that whoever sees the
        // server unready also finds the port closed.
        let shutdown_delay = self.shutdown_delay;
        let unready = ready.clone();
        let stop_accepting = async move {
            shutdown.await;
            if !shutdown_delay.is_zero() {
                unready.store(false, Ordering::SeqCst);
                info!(delay = ?shutdown_delay, "shutting down: unready, still accepting for the delay");
                tokio::time::sleep(shutdown_delay).await;
            }
        };
        let graceful = accept_loop(
            self.webhook,
            Some(TlsAcceptor::from(self.tls)),
            router(self.state),
            self.limits,
            metrics,
            graceful,
            stop_accepting,
        )
        .await;
        ready.store(false, Ordering::SeqCst);

        info!(grace = ?self.shutdown_grace, "no new connections; draining");
        match tokio::time::timeout(self.shutdown_grace, graceful.shutdown()).await {
            Ok(()) => info!("all connections drained"),
            Err(_) => warn!("shutdown grace elapsed with connections still open"),
        }
        stop_background.cancel();
        let _ = admin.await;
        Ok(())
    }
}

/// Accepts connections on `listener` (through TLS when `tls` is set) until `stop` resolves, each
/// served by [`serve_connection`]; returns the watcher of those still open, to drain them.
async fn accept_loop(
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

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

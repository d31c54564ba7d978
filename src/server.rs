//! `serve`: the TLS admission webhook and the plain-HTTP admin port, with timeouts, a body limit,
//! certificate hot reload and a graceful drain on shutdown.

use std::future::{Future, IntoFuture};
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
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::admission;
use crate::cli::ServeArgs;
use crate::inject::Defaults;
use crate::telemetry::Metrics;
use crate::tls::{CertPaths, Certificates};

/// What every webhook request needs.
pub struct AppState {
    pub defaults: Defaults,
    pub metrics: Arc<Metrics>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
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
    state.metrics.count_rejected("method-not-allowed");
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
    state.metrics.count_rejected("not-found");
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

async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        state.metrics.count_rejected("body-too-large");
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
    let collect = Limited::new(body, state.max_body_bytes).collect();
    match tokio::time::timeout(state.request_timeout, collect).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
        Ok(Err(error)) => {
            state.metrics.count_rejected("body-read-error");
            Err(json_error(
                StatusCode::BAD_REQUEST,
                format!("reading the body failed: {error}"),
            ))
        }
        Err(_) => {
            state.metrics.count_rejected("body-timeout");
            Err(json_error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive within --request-timeout",
            ))
        }
    }
}

async fn mutate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    if !is_json(&headers) {
        state.metrics.count_rejected("unsupported-media-type");
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be an AdmissionReview with Content-Type: application/json",
        );
    }
    let bytes = match read_body(&state, &headers, body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let started = Instant::now();
    match admission::review(&bytes, &state.defaults) {
        Ok(reviewed) => {
            let elapsed = started.elapsed();
            state
                .metrics
                .observe_request(reviewed.outcome, reviewed.reason, elapsed);
            info!(
                uid = %reviewed.uid,
                namespace = %reviewed.namespace,
                pod = %reviewed.pod,
                outcome = reviewed.outcome,
                reason = reviewed.reason,
                dry_run = reviewed.dry_run,
                warnings = reviewed.warnings,
                duration_us = elapsed.as_micros() as u64,
                "admission"
            );
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(error) => {
            state.metrics.count_rejected(error.reason());
            warn!(reason = error.reason(), %error, "unreadable admission request");
            json_error(StatusCode::BAD_REQUEST, error.to_string())
        }
    }
}

/// The admin port: health, readiness and metrics, in plain HTTP.
pub fn admin_router(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Router {
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
                let text = metrics.encode();
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
    cert_check_interval: Duration,
    shutdown_grace: Duration,
    shutdown_delay: Duration,
}

impl Server {
    /// Validates the configuration, loads the certificate and binds both ports; every fault here
    /// is fatal and names its flag.
    pub async fn bind(args: &ServeArgs) -> anyhow::Result<Self> {
        let defaults = args.injection.defaults()?;
        let metrics = Arc::new(Metrics::new());
        let certificates = Certificates::load(
            CertPaths {
                cert: args.tls_cert.clone(),
                key: args.tls_key.clone(),
            },
            &metrics,
        )?;
        let tls = Arc::new(certificates.server_config(args.client_ca.as_deref())?);
        if args.max_body_bytes == 0 {
            anyhow::bail!("--max-body-bytes must be positive");
        }
        let webhook = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("--listen {}", args.listen))?;
        let admin = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("--admin-listen {}", args.admin_listen))?;
        Ok(Self {
            webhook,
            admin,
            tls,
            certificates,
            state: Arc::new(AppState {
                defaults,
                metrics,
                max_body_bytes: args.max_body_bytes,
                request_timeout: args.request_timeout,
            }),
            cert_check_interval: args.cert_check_interval,
            shutdown_grace: args.shutdown_grace,
            shutdown_delay: args.shutdown_delay,
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
        let admin_stop = stop_background.clone();
        let admin = tokio::spawn(
            axum::serve(self.admin, admin_router(metrics, ready.clone()))
                .with_graceful_shutdown(async move { admin_stop.cancelled().await })
                .into_future(),
        );

        let request_timeout = self.state.request_timeout;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(request_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(request_timeout);
        // The protocol comes from ALPN, never from sniffing the first bytes: sniffing waits for
        // them with no timeout, so a client that completes the handshake and sends nothing would
        // hold its connection forever. h2 over TLS requires ALPN; everything else is HTTP/1.1.
        let h1 = Arc::new(builder.clone().http1_only());
        let h2 = Arc::new(builder.http2_only());
        let acceptor = TlsAcceptor::from(self.tls);
        let router = router(self.state);
        let graceful = GracefulShutdown::new();
        info!(webhook = %self.webhook.local_addr()?, admin = %admin_addr, "serving");

        // Unready as soon as shutdown starts; accepting ends after --shutdown-delay.
        let stop_accepting = async {
            shutdown.await;
            ready.store(false, Ordering::SeqCst);
            info!(delay = ?self.shutdown_delay, "shutting down: unready, still accepting for the delay");
            tokio::time::sleep(self.shutdown_delay).await;
        };
        tokio::pin!(stop_accepting);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.webhook.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stop_accepting => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let (h1, h2) = (h1.clone(), h2.clone());
            // A connection must bring its first request within --request-timeout. HTTP/1.1 has
            // a header timeout for that; an HTTP/2 client that never sends its preface has none.
            let first_request = Arc::new(tokio::sync::Notify::new());
            let seen = first_request.clone();
            let service = TowerToHyperService::new(router.clone().map_request(
                move |request: axum::http::Request<hyper::body::Incoming>| {
                    seen.notify_one();
                    request
                },
            ));
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(request_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let builder = match tls.get_ref().1.alpn_protocol() {
                    Some(b"h2") => h2,
                    _ => h1,
                };
                let connection = builder
                    .serve_connection(TokioIo::new(tls), service)
                    .into_owned();
                let silent = async {
                    if tokio::time::timeout(request_timeout, first_request.notified())
                        .await
                        .is_ok()
                    {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    served = watcher.watch(connection) => if let Err(error) = served {
                        debug!(%peer, %error, "connection ended with an error");
                    },
                    () = silent => debug!(%peer, "no request within --request-timeout; closed"),
                }
            });
        }

        drop(self.webhook);
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

//! `serve`: the TLS admission webhook and the plain-HTTP admin port, with timeouts, a body limit,
//! certificate hot reload and a graceful drain on shutdown.

pub mod admission;
mod connection;
pub mod deadline;
mod routes;
pub mod tls;

use self::connection::accept_loop;
pub use self::connection::ConnectionLimits;
use self::routes::{kib, router, AppState};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::inject::Defaults;
use crate::telemetry::LogFormat;
use crate::telemetry::Metrics;
use crate::webhook::tls::{CertPaths, Certificates};

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

/// The admin port serves probes and scrapes: a few connections, short timeouts.
const ADMIN_LIMITS: ConnectionLimits = ConnectionLimits {
    request_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(30),
    max_connections: 32,
};

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
            crate::telemetry::admin_router(
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

//! `serve`: the webhook's flags, validated into [`webhook::Config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::{InjectionArgs, LogFormat};
use crate::webhook::ConnectionLimits;
use crate::{telemetry, webhook};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the TLS webhook port.
    #[arg(long, env = "KLI_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP admin port (/healthz, /readyz, /metrics).
    #[arg(long, env = "KLI_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// PEM certificate chain of the webhook; re-read when the file changes.
    #[arg(long, env = "KLI_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of the webhook; re-read when the file changes.
    #[arg(long, env = "KLI_TLS_KEY")]
    pub tls_key: PathBuf,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    #[arg(long, env = "KLI_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "KLI_CERT_CHECK_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub cert_check_interval: Duration,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "KLI_MAX_BODY_BYTES", default_value_t = 7 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Time a client gets for the TLS handshake and for a request, from its first byte to the
    /// end of its body; a connection that brings no request within it is closed.
    #[arg(long, env = "KLI_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests. Above the API server's 90 s
    /// idle pool, so that it never reuses a connection this server is closing.
    #[arg(long, env = "KLI_IDLE_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
    /// Most open connections on the webhook port; more are closed at once. Several API servers
    /// each keep one pooled connection per concurrent admission.
    #[arg(long, env = "KLI_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Most request-body bytes held at once across all requests; a request beyond it gets 503
    /// and the API server retries. Bounds memory under many concurrent large bodies.
    #[arg(long, env = "KLI_MAX_INFLIGHT_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_inflight_body_bytes: usize,
    /// Time in-flight requests get to finish after SIGTERM.
    #[arg(long, env = "KLI_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// After SIGTERM, keep accepting (while unready) this long before draining, so the API server
    /// stops sending here before the port closes: rolling the webhook then fails no admission.
    #[arg(long, env = "KLI_SHUTDOWN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub shutdown_delay: Duration,
    #[arg(long, env = "KLI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<webhook::Config> {
        if self.max_body_bytes == 0 {
            bail!("--max-body-bytes must be positive");
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            bail!(
                "--max-inflight-body-bytes ({}) must be at least --max-body-bytes ({})",
                self.max_inflight_body_bytes,
                self.max_body_bytes
            );
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be positive");
        }
        for (flag, value) in [
            ("--request-timeout", self.request_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--cert-check-interval", self.cert_check_interval),
        ] {
            if value.is_zero() {
                bail!("{flag} must be positive");
            }
        }
        Ok(webhook::Config {
            listen: self.listen,
            admin_listen: self.admin_listen,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            client_ca: self.client_ca.clone(),
            cert_check_interval: self.cert_check_interval,
            max_body_bytes: self.max_body_bytes,
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            limits: ConnectionLimits {
                request_timeout: self.request_timeout,
                idle_timeout: self.idle_timeout,
                max_connections: self.max_connections,
            },
            shutdown_grace: self.shutdown_grace,
            shutdown_delay: self.shutdown_delay,
            log_format: match self.log_format {
                LogFormat::Text => telemetry::LogFormat::Text,
                LogFormat::Json => telemetry::LogFormat::Json,
            },
            defaults: self.injection.defaults()?,
        })
    }
}

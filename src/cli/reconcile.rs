//! `reconcile`: the in-cluster Services reconciler's flags.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::{InjectionArgs, LogFormat, PolicyMode, RenderArgs};
use crate::{reconcile, telemetry};

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Which StatefulSets: those whose pods the webhook injects in this mode.
    #[arg(long, env = "KLI_MODE", value_enum, default_value_t = PolicyMode::ClusterWide)]
    pub mode: PolicyMode,
    /// How long the Service of a removed ordinal stays, so that a scale-down followed by a
    /// scale-up (or a rolling restart) never drops the broker's DNS record and load balancer.
    #[arg(long, env = "KLI_SCALE_DOWN_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub scale_down_grace: Duration,
    /// Take over Services that `services` rendered for a StatefulSet and someone applied (same
    /// object: the load balancer and its address stay). Without it they are left alone.
    #[arg(long, env = "KLI_ADOPT")]
    pub adopt: bool,
    /// The resolver that tells whether each advertised name resolves to its load balancer, as
    /// ip:port (default: the system's). Use one that answers as your clients' does.
    #[arg(long, env = "KLI_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,
    /// How often a name that does not resolve yet is checked again.
    #[arg(long, env = "KLI_DNS_CHECK_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub dns_check_interval: Duration,
    /// Health, readiness and metrics (plain HTTP).
    #[arg(long, env = "KLI_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Elect one leader through this Lease (in --lease-namespace); without it, run alone.
    #[arg(long, env = "KLI_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// The Lease's namespace (in a pod: its own, from the downward API).
    #[arg(long, env = "KLI_LEASE_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's name in the Lease (in a pod: its name).
    #[arg(long, env = "KLI_IDENTITY")]
    pub identity: Option<String>,
    #[arg(long, env = "KLI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl ReconcileArgs {
    pub fn config(&self) -> anyhow::Result<reconcile::Config> {
        if self.dns_check_interval.is_zero() {
            bail!("--dns-check-interval must be positive");
        }
        if self.render.gateway.is_some() {
            bail!("--gateway: reconcile does not manage gateway routes yet; render them with `services --gateway` and apply them");
        }
        let identity = match &self.identity {
            Some(identity) => identity.clone(),
            None => {
                std::env::var("HOSTNAME").unwrap_or_else(|_| format!("pid-{}", std::process::id()))
            }
        };
        Ok(reconcile::Config {
            render: self.render.render(&self.injection)?,
            mode: match self.mode {
                PolicyMode::ClusterWide => crate::policy::Mode::ClusterWide,
                PolicyMode::NamespaceOptIn => crate::policy::Mode::NamespaceOptIn,
            },
            scale_down_grace: self.scale_down_grace,
            adopt: self.adopt,
            dns_server: self.dns_server,
            dns_check_interval: self.dns_check_interval,
            admin_listen: self.admin_listen,
            lease: self.lease_name.clone().map(|name| reconcile::Lease {
                name,
                namespace: self.lease_namespace.clone(),
                identity,
            }),
            log_format: match self.log_format {
                LogFormat::Text => telemetry::LogFormat::Text,
                LogFormat::Json => telemetry::LogFormat::Json,
            },
        })
    }
}

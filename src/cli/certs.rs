//! `certs`: the webhook's CA and serving certificate.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::certs;

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Name of the webhook's Service.
    #[arg(long, env = "KLI_SERVICE", default_value = "kafka-listener-injector")]
    pub service: String,
    /// Namespace of the webhook's Service.
    #[arg(
        short = 'n',
        long,
        env = "KLI_NAMESPACE",
        default_value = "kafka-listener-injector"
    )]
    pub namespace: String,
    /// Extra DNS name for the serving certificate (repeatable).
    #[arg(long = "dns", env = "KLI_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// Extra IP address for the serving certificate (repeatable).
    #[arg(long = "ip", env = "KLI_IP", value_delimiter = ',')]
    pub ip: Vec<std::net::IpAddr>,
    /// Directory for ca.crt, tls.crt and tls.key.
    #[arg(long, env = "KLI_OUT")]
    pub out: PathBuf,
    /// Validity of the certificates, in days.
    #[arg(long, env = "KLI_DAYS", default_value_t = 365)]
    pub days: u32,
    /// Also write a kustomize patch that sets the caBundle of the webhook configuration.
    #[arg(long, env = "KLI_CA_BUNDLE_PATCH")]
    pub ca_bundle_patch: Option<PathBuf>,
}

impl CertsArgs {
    pub fn config(&self) -> anyhow::Result<certs::Config> {
        if self.days == 0 {
            bail!("--days must be at least 1");
        }
        Ok(certs::Config {
            service: self.service.clone(),
            namespace: self.namespace.clone(),
            dns: self.dns.clone(),
            ip: self.ip.clone(),
            out: self.out.clone(),
            days: self.days,
            ca_bundle_patch: self.ca_bundle_patch.clone(),
        })
    }
}

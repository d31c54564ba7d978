//! `wait-for-name`: the init container the webhook adds with `--wait-for-name-image`.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use crate::inject::text::is_dns_name;

#[derive(Debug, Args)]
pub struct WaitForNameArgs {
    /// The DNS names to wait for (the broker's advertised external names).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// An authoritative DNS server to ask (IP, IP:PORT or a host name; repeatable). Default: the
    /// servers in the NS records of each name's zone.
    #[arg(long = "dns-server", env = "KLI_DNS_SERVER", value_delimiter = ',')]
    pub dns_servers: Vec<String>,
    /// After this long, let the broker start anyway (and say which names are missing).
    #[arg(long, env = "KLI_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Time between two rounds of questions.
    #[arg(long, env = "KLI_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
}

impl WaitForNameArgs {
    pub fn config(&self) -> anyhow::Result<crate::wait_for_name::Config> {
        for name in &self.names {
            if !is_dns_name(name.trim_end_matches('.')) {
                bail!("{name:?} is not a DNS name");
            }
        }
        if self.interval.is_zero() {
            bail!("--interval must be positive");
        }
        Ok(crate::wait_for_name::Config {
            names: self.names.clone(),
            servers: self.dns_servers.clone(),
            timeout: self.timeout,
            interval: self.interval,
        })
    }
}

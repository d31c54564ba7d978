//! `roll`: which StatefulSet, how to reach its brokers, and how long each may take.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::{InjectionArgs, SecurityArgs};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RollOutput {
    /// Progress lines as the roll goes.
    Text,
    /// One JSON object at the end: outcome, plan, brokers recreated, reason.
    Json,
}

#[derive(Debug, Args)]
pub struct RollArgs {
    /// The StatefulSet, as statefulset/NAME (or NAME).
    pub target: String,
    #[arg(short = 'n', long, env = "KLI_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// host:port of a broker's advertised listener, reachable from here; a comma-separated list
    /// is tried in order (give old and new names when the domain changes).
    #[arg(long, env = "KLI_BOOTSTRAP")]
    pub bootstrap: String,
    /// The listener clients use: each recreated broker must advertise its new endpoint on it.
    #[arg(long, env = "KLI_LISTENER", default_value = "EXTERNAL")]
    pub listener: String,
    /// Show the plan and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// How long one broker may take to come back (pod Ready, in the metadata, in sync).
    #[arg(long, env = "KLI_ROLL_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Before the next broker, how long after a recreated pod turned Ready to wait: the other
    /// brokers find it by DNS, and a JVM caches a name for 30 s, a node-local DNS cache another
    /// 30 s. Until then, moving leadership onto it can leave its followers fetching from the old
    /// pod's address. 0 turns the wait off.
    #[arg(long, env = "KLI_ROLL_SETTLE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Time each Kafka request gets.
    #[arg(long, env = "KLI_REQUEST_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// A topic that may be unavailable while one broker restarts (replication factor 1, or
    /// min.insync.replicas equal to it); repeatable.
    #[arg(long, value_delimiter = ',')]
    pub accept_unavailable: Vec<String>,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = RollOutput::Text)]
    pub output: RollOutput,
    #[command(flatten)]
    pub security: SecurityArgs,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl RollArgs {
    pub fn config(&self) -> anyhow::Result<crate::roll::Config> {
        let statefulset = match self.target.split_once('/') {
            None => self.target.clone(),
            Some(("statefulset" | "statefulsets" | "sts" | "statefulset.apps", name)) => {
                name.to_owned()
            }
            Some((kind, _)) => bail!("{}: a roll is of a StatefulSet, not a {kind}", self.target),
        };
        if statefulset.is_empty() {
            bail!("{}: no StatefulSet name", self.target);
        }
        if self.timeout.is_zero() || self.request_timeout.is_zero() {
            bail!("--timeout and --request-timeout must be positive");
        }
        let defaults = self.injection.defaults()?;
        Ok(crate::roll::Config {
            statefulset,
            namespace: self.namespace.clone(),
            node_id_offset: defaults.node_id_offset,
            defaults,
            listener: self.listener.clone(),
            kafka: crate::probe::Config {
                bootstrap: self.bootstrap.clone(),
                timeout: self.request_timeout,
                expect: None,
                security: self.security.security()?,
                idle_check: None,
                json: false,
            },
            dry_run: self.dry_run,
            timeout: self.timeout,
            settle: self.settle,
            accept_unavailable: self.accept_unavailable.clone(),
            json: self.output == RollOutput::Json,
        })
    }
}

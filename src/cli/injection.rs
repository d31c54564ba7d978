//! The injection flags that every command which injects (or renders from the same template) shares.

use clap::Args;

use crate::inject::settings::DEFAULT_LISTENERS;
use crate::inject::wait::WaitForName;
use crate::inject::{Defaults, Flags};

/// The injection settings: cluster defaults that pod annotations override.
#[derive(Debug, Clone, Args)]
pub struct InjectionArgs {
    /// Template of the advertised listeners.
    #[arg(long, env = "KLI_LISTENERS", default_value = DEFAULT_LISTENERS)]
    pub listeners: String,
    /// The Kafka DNS subdomain, for {domain}.
    #[arg(long, env = "KLI_DOMAIN")]
    pub domain: Option<String>,
    /// The env var to set: auto (KAFKA_CFG_ADVERTISED_LISTENERS when the container configures
    /// Kafka through KAFKA_CFG_*, else KAFKA_ADVERTISED_LISTENERS), none (only --env), or a name.
    #[arg(long, env = "KLI_ENV_NAME", default_value = "auto")]
    pub env_name: String,
    /// A container or init container to inject into (repeatable). Default: kafka, else the pod's
    /// only container.
    #[arg(
        long = "container",
        env = "KLI_CONTAINER",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    pub containers: Vec<String>,
    /// A further variable rendered from the same placeholders, as NAME=TEMPLATE (repeatable),
    /// e.g. EXTERNAL_HOST={pod}.{domain} for a chart's own start script.
    #[arg(long = "env", env = "KLI_ENV", value_name = "NAME=TEMPLATE")]
    pub env: Vec<String>,
    /// Also set this env var (e.g. KAFKA_NODE_ID) to ordinal + offset.
    #[arg(long, env = "KLI_NODE_ID_ENV")]
    pub node_id_env: Option<String>,
    /// Offset added to the ordinal for the node id.
    #[arg(
        long,
        env = "KLI_NODE_ID_OFFSET",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub node_id_offset: i64,
    /// Also set this env var (e.g. KAFKA_BROKER_RACK) to the broker's zone: the pod's
    /// topology.kubernetes.io/zone label, which Kubernetes 1.35+ copies from the node at binding,
    /// read through the downward API (no RBAC).
    #[arg(long, env = "KLI_RACK_ENV", value_name = "NAME")]
    pub rack_env: Option<String>,
    /// Deny pods whose injected values would not take effect (effectiveness findings), instead
    /// of warning.
    #[arg(long, env = "KLI_STRICT")]
    pub strict: bool,
    /// A namespace never to mutate (repeatable; kube-system, kube-public, kube-node-lease always).
    #[arg(
        long = "ignore-namespace",
        env = "KLI_IGNORE_NAMESPACE",
        value_delimiter = ','
    )]
    pub ignore_namespaces: Vec<String>,
    /// Add the readiness gate kafka-listener-injector.io/external-name-ready to each injected
    /// pod: it turns ready only once `reconcile` has seen its advertised name resolve to its load
    /// balancer, so an OrderedReady StatefulSet waits for DNS. Only with `reconcile` running.
    #[arg(long, env = "KLI_READINESS_GATE")]
    pub readiness_gate: bool,
    /// Add an init container from IMAGE (this tool's own image) that holds each injected broker
    /// until its advertised external names answer at their zone's authoritative DNS servers, so
    /// that no client's resolver caches a name as missing in the seconds after the broker
    /// registers. It lets the broker start anyway after --wait-for-name-timeout.
    #[arg(long, env = "KLI_WAIT_FOR_NAME_IMAGE", value_name = "IMAGE", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub wait_for_name_image: Option<String>,
    /// With --wait-for-name-image: an authoritative DNS server to ask (IP, IP:PORT or host name;
    /// repeatable). Default: the NS records of each name's zone.
    #[arg(
        long,
        env = "KLI_WAIT_FOR_NAME_DNS_SERVER",
        value_delimiter = ',',
        value_name = "SERVER",
        requires = "wait_for_name_image"
    )]
    pub wait_for_name_dns_server: Vec<String>,
    /// With --wait-for-name-image: how long the init container waits at most.
    #[arg(long, env = "KLI_WAIT_FOR_NAME_TIMEOUT", default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait_for_name_timeout: std::time::Duration,
}

impl InjectionArgs {
    /// Validates the flags into the cluster defaults; errors name the flag.
    pub fn defaults(&self) -> Result<Defaults, crate::inject::settings::SettingsError> {
        Defaults::from_flags(Flags {
            listeners: self.listeners.clone(),
            domain: self.domain.clone(),
            env_name: self.env_name.clone(),
            containers: self.containers.clone(),
            env: self.env.clone(),
            node_id_env: self.node_id_env.clone(),
            node_id_offset: self.node_id_offset,
            rack_env: self.rack_env.clone(),
            strict: self.strict,
            ignore_namespaces: self.ignore_namespaces.clone(),
            readiness_gate: self.readiness_gate,
            wait_for_name: self.wait_for_name_image.as_ref().map(|image| WaitForName {
                image: image.clone(),
                dns_servers: self.wait_for_name_dns_server.clone(),
                timeout: humantime::format_duration(self.wait_for_name_timeout).to_string(),
            }),
        })
    }
}

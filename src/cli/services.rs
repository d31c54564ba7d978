//! `services`: the per-broker Services' render flags, shared with `reconcile`.

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::{parse_key_value, InjectionArgs, ManifestArgs};
use crate::inject::template::Template;
use crate::services;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServiceType {
    #[value(name = "LoadBalancer")]
    LoadBalancer,
    #[value(name = "NodePort")]
    NodePort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServicesOutput {
    /// YAML documents, for `kubectl apply -f -`.
    Yaml,
    /// One JSON List.
    Json,
}

/// How each broker's Service is rendered: shared by `services` and `reconcile`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[arg(long = "type", env = "KLI_TYPE", value_enum, default_value_t = ServiceType::LoadBalancer)]
    pub service_type: ServiceType,
    /// Who may reach the load balancers. With --cloud, the provider's annotations say so;
    /// without, internal needs your own --annotation.
    #[arg(long, env = "KLI_LOAD_BALANCER", value_enum, default_value_t = LoadBalancerScope::Public)]
    pub load_balancer: LoadBalancerScope,
    /// The cloud whose load-balancer annotations to write.
    #[arg(long, env = "KLI_CLOUD", value_enum)]
    pub cloud: Option<CloudArg>,
    /// Who may connect, as a CIDR (repeatable): spec.loadBalancerSourceRanges.
    #[arg(long = "source-range", env = "KLI_SOURCE_RANGE", value_delimiter = ',')]
    pub source_ranges: Vec<String>,
    /// spec.externalTrafficPolicy: Local keeps the client's address and skips a node hop.
    #[arg(long, env = "KLI_EXTERNAL_TRAFFIC_POLICY", value_enum)]
    pub external_traffic_policy: Option<TrafficPolicy>,
    /// Extra annotation for every Service, as key=value (repeatable). Values take the template's
    /// placeholders, e.g. a static address per broker: key=10.0.0.{ordinal+10}.
    #[arg(long = "annotation", env = "KLI_ANNOTATION", value_parser = parse_key_value)]
    pub annotations: Vec<(String, String)>,
    /// The broker's container port of the external listener (default: the advertised port).
    #[arg(long, env = "KLI_PORT")]
    pub port: Option<u16>,
    /// The advertised listener the Services expose.
    #[arg(long, env = "KLI_LISTENER", default_value = "EXTERNAL")]
    pub listener: String,
    /// Name of each broker's Service, from the same placeholders ({pod}, {ordinal},
    /// {statefulset}, ...); match a chart's own external Services to adopt them.
    #[arg(long, env = "KLI_NAME_TEMPLATE", default_value = "{pod}-external")]
    pub name_template: String,
    /// Also one bootstrap Service `<statefulset>-bootstrap` for all brokers, with this DNS name
    /// (placeholders {statefulset}, {namespace}, {domain}), e.g. bootstrap.{domain}.
    #[arg(long, env = "KLI_BOOTSTRAP_HOST")]
    pub bootstrap_host: Option<String>,
    /// Route every broker through one Gateway, as NAMESPACE/NAME: a TLSRoute per broker (and
    /// for the bootstrap host), matched by SNI with TLS passed through to the broker, to an
    /// in-cluster Service each. One load balancer for all brokers; each must advertise a DNS
    /// name, on the port of the Gateway's TLS listener.
    #[arg(long, env = "KLI_GATEWAY", value_name = "NAMESPACE/NAME", value_parser = parse_gateway)]
    pub gateway: Option<services::GatewayRef>,
}

fn parse_gateway(text: &str) -> Result<services::GatewayRef, String> {
    let (namespace, name) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not NAMESPACE/NAME"))?;
    let label = |part: &str| crate::inject::text::is_dns_name(part) && !part.contains('.');
    if !label(namespace) || !label(name) {
        return Err(format!("{text:?} is not NAMESPACE/NAME (DNS labels)"));
    }
    Ok(services::GatewayRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadBalancerScope {
    /// Reachable from the internet.
    Public,
    /// Reachable from the provider's private network only.
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CloudArg {
    /// AWS (in-tree provider and AWS Load Balancer Controller).
    Aws,
    /// Google Cloud (GKE).
    Gcp,
    /// Azure (AKS).
    Azure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrafficPolicy {
    #[value(name = "Cluster")]
    Cluster,
    #[value(name = "Local")]
    Local,
}

#[derive(Debug, Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    #[command(flatten)]
    pub render: RenderArgs,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = ServicesOutput::Yaml)]
    pub output: ServicesOutput,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl RenderArgs {
    pub(super) fn render(&self, injection: &InjectionArgs) -> anyhow::Result<services::Render> {
        let name_template = Template::parse(&self.name_template)
            .map_err(|error| anyhow::anyhow!("--name-template: {error}"))?;
        let mut annotations = Vec::with_capacity(self.annotations.len());
        for (key, value) in &self.annotations {
            let template = Template::parse(value)
                .map_err(|error| anyhow::anyhow!("--annotation {key}: {error}"))?;
            annotations.push((key.clone(), template));
        }
        let bootstrap_host = match &self.bootstrap_host {
            None => None,
            Some(source) => Some(
                Template::parse(source)
                    .map_err(|error| anyhow::anyhow!("--bootstrap-host: {error}"))?,
            ),
        };
        for range in &self.source_ranges {
            if !is_cidr(range) {
                bail!("--source-range {range:?} is not a CIDR such as 203.0.113.0/24");
            }
        }
        if self.gateway.is_some() && self.service_type == ServiceType::NodePort {
            bail!("--gateway routes every broker through the gateway's load balancer; --type NodePort does not apply");
        }
        let load_balancer =
            self.service_type == ServiceType::LoadBalancer && self.gateway.is_none();
        if !load_balancer && !self.source_ranges.is_empty() {
            bail!("--source-range applies to --type LoadBalancer only");
        }
        let scope = match self.load_balancer {
            LoadBalancerScope::Public => services::Scope::Public,
            LoadBalancerScope::Internal => services::Scope::Internal,
        };
        if load_balancer
            && scope == services::Scope::Internal
            && self.cloud.is_none()
            && self.annotations.is_empty()
        {
            bail!(
                "--load-balancer internal needs --cloud aws|gcp|azure (each provider has its own \
                 annotation) or your provider's annotation as --annotation"
            );
        }
        Ok(services::Render {
            defaults: injection.defaults()?,
            service_type: match (self.service_type, &self.gateway) {
                (_, Some(_)) => services::ServiceType::ClusterIp,
                (ServiceType::LoadBalancer, None) => services::ServiceType::LoadBalancer,
                (ServiceType::NodePort, None) => services::ServiceType::NodePort,
            },
            annotations,
            port: self.port,
            listener: self.listener.clone(),
            name_template,
            scope,
            cloud: self.cloud.map(|cloud| match cloud {
                CloudArg::Aws => services::Cloud::Aws,
                CloudArg::Gcp => services::Cloud::Gcp,
                CloudArg::Azure => services::Cloud::Azure,
            }),
            source_ranges: self.source_ranges.clone(),
            external_traffic_policy: self.external_traffic_policy.map(|policy| {
                match policy {
                    TrafficPolicy::Cluster => "Cluster",
                    TrafficPolicy::Local => "Local",
                }
                .to_owned()
            }),
            bootstrap_host,
            gateway: self.gateway.clone(),
        })
    }
}

/// `address/prefix` with an IPv4 or IPv6 address and a prefix that fits it.
fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => prefix <= 32,
        Ok(std::net::IpAddr::V6(_)) => prefix <= 128,
        Err(_) => false,
    }
}

impl ServicesArgs {
    pub fn config(&self) -> anyhow::Result<services::Config> {
        Ok(services::Config {
            source: self.manifests.source(),
            render: self.render.render(&self.injection)?,
            output: match self.output {
                ServicesOutput::Yaml => crate::output::Format::Yaml,
                ServicesOutput::Json => crate::output::Format::Json,
            },
        })
    }
}

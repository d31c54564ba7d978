//! The command line: seven commands (serve, preview, services, reconcile, certs, policy, probe), the injection
//! flags shared by all that inject, and their conversion into validated configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use anyhow::bail;

use crate::inject::settings::DEFAULT_LISTENERS;
use crate::inject::template::Template;
use crate::inject::{Defaults, Flags};
use crate::manifests::Source;
use crate::server::ConnectionLimits;
use crate::{certs, preview, reconcile, server, services, telemetry};

#[derive(Debug, Parser)]
#[command(name = "kafka-listener-injector", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook (POST /mutate) and the plain-HTTP admin port.
    Serve(ServeArgs),
    /// Show, offline, what `serve` would do to each broker pod of some manifests.
    Preview(PreviewArgs),
    /// Render one Service per broker, with the external-dns hostname of its advertised listener.
    Services(ServicesArgs),
    /// Keep one Service per broker in the cluster as StatefulSets scale (the same render as
    /// `services`), and report whether each advertised name resolves to its load balancer.
    Reconcile(ReconcileArgs),
    /// Write a CA and a serving certificate for the webhook, and print the caBundle.
    Certs(CertsArgs),
    /// Print the injection as a native MutatingAdmissionPolicy (Kubernetes 1.36+), with a
    /// companion ValidatingAdmissionPolicy; say on stderr what the webhook does that it cannot.
    Policy(PolicyArgs),
    /// From where a client runs: bootstrap over the Kafka protocol, then resolve, connect to and
    /// identify every advertised broker, and name each one a client here cannot use.
    Probe(ProbeArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

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
            strict: self.strict,
            ignore_namespaces: self.ignore_namespaces.clone(),
            readiness_gate: self.readiness_gate,
        })
    }
}

/// The name the binary answers to as a kubectl plugin (installed as `kubectl-kafka_listeners`).
pub const PLUGIN_NAME: &str = "kubectl kafka-listeners";

impl Cli {
    /// Parses the command line; as a kubectl plugin, help and errors say `kubectl kafka-listeners`.
    pub fn parse_for(program: &str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let file = std::path::Path::new(program)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        let mut command = Self::command();
        if file.starts_with("kubectl-kafka_listeners") {
            command = command.name(PLUGIN_NAME).bin_name(PLUGIN_NAME);
        }
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }

    /// Writes the completions for `shell`.
    pub fn completions(shell: clap_complete::Shell, out: &mut impl std::io::Write) {
        use clap::CommandFactory;
        let mut command = Self::command();
        clap_complete::generate(shell, &mut command, "kafka-listener-injector", out);
    }

    /// Writes the man page.
    pub fn man(out: &mut impl std::io::Write) -> std::io::Result<()> {
        use clap::CommandFactory;
        clap_mangen::Man::new(Self::command()).render(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewOutput {
    /// One line per pod: outcome and injected value, warning, skip reason or denial.
    Summary,
    /// Per injected pod, the JSON patch `serve` returns, one per line.
    Patch,
    /// One JSON object per pod: outcome, containers, env, warnings or the denial.
    Json,
    /// The pods as they would be stored, as YAML documents.
    Yaml,
}

/// Where `preview` and `services` read pods from, and how StatefulSets are expanded.
#[derive(Debug, Args)]
pub struct ManifestArgs {
    /// Manifest files (YAML or JSON, multi-document, List, helm template output); - for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        env = "KLI_FILENAME",
        required = true,
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,
    /// Expand StatefulSets to this many pods instead of spec.replicas.
    #[arg(long, env = "KLI_REPLICAS")]
    pub replicas: Option<u32>,
    /// Namespace of objects that name none.
    #[arg(short = 'n', long, env = "KLI_NAMESPACE", default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = PreviewOutput::Summary)]
    pub output: PreviewOutput,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyMode {
    /// Pods labelled kafka-listener-injector.io/inject=true in any namespace.
    ClusterWide,
    /// Every pod in namespaces labelled kafka-listener-injector.io/injection=enabled.
    NamespaceOptIn,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[arg(long, env = "KLI_MODE", value_enum, default_value_t = PolicyMode::ClusterWide)]
    pub mode: PolicyMode,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = ServicesOutput::Yaml)]
    pub output: ServicesOutput,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProbeOutput {
    /// One line per broker, then its faults.
    Text,
    /// One JSON object: healthy, and the brokers with addresses and faults.
    Json,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// host:port of one broker's advertised listener (e.g. kafka-0.kafka.example.com:9094).
    #[arg(long, env = "KLI_BOOTSTRAP")]
    pub bootstrap: String,
    /// Time each step (resolve, connect, one request) gets.
    #[arg(long, env = "KLI_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Check that each broker advertises what this listeners template renders for it (broker N
    /// is pod <statefulset>-<N minus --node-id-offset>).
    #[arg(long, env = "KLI_EXPECT_TEMPLATE")]
    pub expect_template: Option<String>,
    /// The listener of the template the probe connects through.
    #[arg(long, env = "KLI_LISTENER", default_value = "EXTERNAL")]
    pub listener: String,
    /// With --expect-template: the StatefulSet, its namespace and headless Service.
    #[arg(long, env = "KLI_STATEFULSET", default_value = "kafka")]
    pub statefulset: String,
    #[arg(short = 'n', long, env = "KLI_NAMESPACE", default_value = "default")]
    pub namespace: String,
    #[arg(long, env = "KLI_SERVICE", default_value = "kafka-headless")]
    pub service: String,
    #[arg(long, env = "KLI_DOMAIN")]
    pub domain: Option<String>,
    #[arg(
        long,
        env = "KLI_NODE_ID_OFFSET",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub node_id_offset: i64,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = ProbeOutput::Text)]
    pub output: ProbeOutput,
    /// Keep one connection per broker idle this long, then use it again (load balancer idle
    /// timeouts).
    #[arg(long, env = "KLI_IDLE_CHECK", value_parser = humantime::parse_duration)]
    pub idle_check: Option<Duration>,
    /// Speak TLS to the brokers, checking their certificates against --ca-file (e.g. the system
    /// bundle /etc/ssl/certs/ca-certificates.crt for public CAs) and each advertised host name.
    #[arg(long, env = "KLI_TLS")]
    pub tls: bool,
    /// PEM CA certificates the brokers' certificates must chain to.
    #[arg(long, env = "KLI_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require one.
    #[arg(long, env = "KLI_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    #[arg(long, env = "KLI_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KLI_SASL_MECHANISM", requires = "sasl_username")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, env = "KLI_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (else the environment variable KLI_SASL_PASSWORD). It is
    /// never printed.
    #[arg(long, env = "KLI_SASL_PASSWORD_FILE")]
    pub sasl_password_file: Option<PathBuf>,
}

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

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

// Flags become validated configuration here, once: every other module takes the plain,
// already-checked types below, and every message names the flag at fault.

impl ManifestArgs {
    fn source(&self) -> Source {
        Source {
            files: self.files.clone(),
            replicas: self.replicas,
            namespace: self.namespace.clone(),
        }
    }
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<server::Config> {
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
        Ok(server::Config {
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

impl PreviewArgs {
    pub fn config(&self) -> anyhow::Result<preview::Config> {
        Ok(preview::Config {
            source: self.manifests.source(),
            output: match self.output {
                PreviewOutput::Summary => preview::Output::Summary,
                PreviewOutput::Patch => preview::Output::Patch,
                PreviewOutput::Yaml => preview::Output::Yaml,
                PreviewOutput::Json => preview::Output::Json,
            },
            defaults: self.injection.defaults()?,
        })
    }
}

impl RenderArgs {
    fn render(&self, injection: &InjectionArgs) -> anyhow::Result<services::Render> {
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
        let load_balancer = self.service_type == ServiceType::LoadBalancer;
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
            service_type: match self.service_type {
                ServiceType::LoadBalancer => services::ServiceType::LoadBalancer,
                ServiceType::NodePort => services::ServiceType::NodePort,
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

impl ReconcileArgs {
    pub fn config(&self) -> anyhow::Result<reconcile::Config> {
        if self.dns_check_interval.is_zero() {
            bail!("--dns-check-interval must be positive");
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

impl PolicyArgs {
    pub fn config(&self) -> anyhow::Result<crate::policy::Config> {
        Ok(crate::policy::Config {
            defaults: self.injection.defaults()?,
            mode: match self.mode {
                PolicyMode::ClusterWide => crate::policy::Mode::ClusterWide,
                PolicyMode::NamespaceOptIn => crate::policy::Mode::NamespaceOptIn,
            },
            output: match self.output {
                ServicesOutput::Yaml => crate::output::Format::Yaml,
                ServicesOutput::Json => crate::output::Format::Json,
            },
        })
    }
}

impl ProbeArgs {
    pub fn config(&self) -> anyhow::Result<crate::probe::Config> {
        if self.timeout.is_zero() {
            bail!("--timeout must be positive");
        }
        let expect = match &self.expect_template {
            None => None,
            Some(source) => Some(crate::probe::Expectation {
                listeners: Template::parse(source)
                    .map_err(|error| anyhow::anyhow!("--expect-template: {error}"))?,
                listener: self.listener.clone(),
                statefulset: self.statefulset.clone(),
                namespace: self.namespace.clone(),
                service: self.service.clone(),
                domain: self.domain.clone(),
                node_id_offset: self.node_id_offset,
            }),
        };
        Ok(crate::probe::Config {
            bootstrap: self.bootstrap.clone(),
            timeout: self.timeout,
            expect,
            security: self.security()?,
            idle_check: self.idle_check,
            json: self.output == ProbeOutput::Json,
        })
    }

    fn security(&self) -> anyhow::Result<crate::probe::Security> {
        use crate::probe::{Mechanism, Sasl};
        let tls = if self.tls {
            let ca_file = self
                .ca_file
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--tls needs --ca-file"))?;
            let pem = std::fs::read(ca_file)
                .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", ca_file.display()))?;
            }
            let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
            let config = match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| anyhow::anyhow!("--cert-file {}: {e}", cert.display()))?;
                    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key)
                        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", key.display()))?;
                    builder
                        .with_client_auth_cert(chain, key)
                        .map_err(|e| anyhow::anyhow!("--cert-file/--key-file: {e}"))?
                }
                _ => builder.with_no_client_auth(),
            };
            Some(std::sync::Arc::new(config))
        } else {
            if self.ca_file.is_some() || self.cert_file.is_some() {
                bail!("--ca-file and --cert-file need --tls");
            }
            None
        };
        let sasl = match (&self.sasl_mechanism, &self.sasl_username) {
            (Some(mechanism), Some(username)) => {
                let mechanism = match mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "SCRAM-SHA-256" => Mechanism::ScramSha256,
                    "SCRAM-SHA-512" => Mechanism::ScramSha512,
                    other => {
                        bail!("--sasl-mechanism {other}: not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
                    }
                };
                let password = match &self.sasl_password_file {
                    Some(path) => std::fs::read_to_string(path)
                        .map_err(|e| {
                            anyhow::anyhow!("--sasl-password-file {}: {e}", path.display())
                        })?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                    None => std::env::var("KLI_SASL_PASSWORD").map_err(|_| {
                        anyhow::anyhow!(
                            "--sasl-mechanism needs --sasl-password-file or KLI_SASL_PASSWORD"
                        )
                    })?,
                };
                Some(Sasl {
                    mechanism,
                    username: username.clone(),
                    password,
                })
            }
            (None, None) => None,
            _ => bail!("--sasl-username needs --sasl-mechanism"),
        };
        Ok(crate::probe::Security { tls, sasl })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_has_its_flag_env_var_and_annotation_named_alike() {
        use crate::inject::settings::{Setting, PREFIX};
        use clap::CommandFactory;
        let command = Cli::command();
        let preview = command.find_subcommand("preview").unwrap();
        for setting in Setting::ALL {
            let name = setting.flag_name();
            let arg = preview
                .get_arguments()
                .find(|a| a.get_long() == Some(name))
                .unwrap_or_else(|| panic!("no flag --{name}"));
            let env = format!("KLI_{}", name.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()));
            assert_eq!(setting.annotation(), format!("{PREFIX}{name}"));
        }
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

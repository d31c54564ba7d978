//! One Service per broker, exposing the broker's external listener, annotated with the host that
//! listener advertises; optionally one bootstrap Service for all brokers of a StatefulSet. Hosts
//! come from the same injection core as the pods', so DNS records, Services and advertised
//! listeners cannot disagree. The offline `services` command and the in-cluster reconciler
//! (`reconcile`) render through [`for_statefulset`], so they cannot disagree either.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::inject::listeners::{endpoint_of, parse_listeners, Listener};
use crate::inject::ordinal::POD_INDEX_LABEL;
use crate::inject::template::{Part, Template, Values, Variable};
use crate::inject::view::PodView;
use crate::inject::{Decision, Defaults};
use crate::output::{write_objects, Format};
use crate::preview::manifests::{self, Expansion, Source, POD_NAME_LABEL};

mod exposure;

use self::exposure::{
    node_ports_outside_static_band, security_protocol, tls_route, unencrypted_in_public,
};
pub use self::exposure::{Cloud, GatewayRef, Scope, GATEWAY_API_VERSION};

pub const HOSTNAME_ANNOTATION: &str = "external-dns.alpha.kubernetes.io/hostname";
/// Label on every Service this project renders; the reconciler lists its own Services by it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "kafka-listener-injector";
/// Label naming the StatefulSet a Service belongs to.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label naming the Service's role: `broker` (one per ordinal) or `bootstrap`.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The kind of Service that exposes each broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    LoadBalancer,
    NodePort,
    /// Behind a gateway: the route reaches the broker through this in-cluster Service.
    ClusterIp,
}

/// How the Services are rendered: shared by `services` and `reconcile`.
#[derive(Debug)]
pub struct Render {
    pub defaults: Defaults,
    pub service_type: ServiceType,
    /// Extra annotations for every Service; values are templates (`{ordinal}` etc.), so a
    /// per-broker static address can be written once.
    pub annotations: Vec<(String, Template)>,
    /// The broker's container port (default: the advertised port).
    pub port: Option<u16>,
    /// The advertised listener the Services expose.
    pub listener: String,
    pub name_template: Template,
    pub scope: Scope,
    pub cloud: Option<Cloud>,
    /// `spec.loadBalancerSourceRanges`: who may connect, as CIDRs.
    pub source_ranges: Vec<String>,
    /// `spec.externalTrafficPolicy`: `Cluster` or `Local`.
    pub external_traffic_policy: Option<String>,
    /// The host of one bootstrap Service per StatefulSet, for all of its brokers.
    pub bootstrap_host: Option<Template>,
    /// Route every broker through this Gateway (one `TLSRoute` each, by SNI) instead of a load
    /// balancer each; the Services are then in-cluster ones.
    pub gateway: Option<GatewayRef>,
}

/// A validated `services` invocation.
#[derive(Debug)]
pub struct Config {
    pub source: Source,
    pub render: Render,
    pub output: Format,
}

/// What one StatefulSet needs: a Service per broker, maybe a bootstrap Service, and what the user
/// should know about them.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The brokers' Services, in ordinal order.
    pub brokers: Vec<Service>,
    pub bootstrap: Option<Service>,
    /// With a gateway: one `TLSRoute` per broker Service (and the bootstrap one), in the same
    /// order.
    pub routes: Vec<serde_json::Value>,
    pub warnings: Vec<Warning>,
}

/// What the user should know about a render that still succeeds; the reconciler publishes it once
/// as a Warning Event with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: &'static str,
    pub message: String,
}

impl Rendered {
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.brokers.iter().chain(&self.bootstrap)
    }
}

/// A broker of the StatefulSet, as its Service sees it.
#[derive(Clone)]
struct Broker<'a> {
    pod: &'a Pod,
    name: &'a str,
    ordinal: i64,
    /// `{domain}` for this pod: the flag, or the pod's own annotation.
    domain: Option<String>,
    host: String,
    /// The host is a reference the kubelet expands when the broker starts (`$(KLI_HOST_IP)`):
    /// the node's own address, which has no DNS name to publish.
    at_start_up: bool,
    /// The name the broker's next pod will advertise, when the template has changed since its
    /// pod was created (a new domain): published beside `host` on the same load balancer, so
    /// that it resolves before the pod is recreated with it.
    next_host: Option<String>,
    advertised_port: u16,
    container_port: u16,
    /// The port the template gives this broker: the bootstrap Service's, which must reach every
    /// broker after a rollout, not only the ones already recreated.
    template_port: u16,
}

/// What running brokers advertise, by ordinal: the value the webhook recorded on each pod when it
/// was created (`kafka-listener-injector.io/advertised-listeners`).
pub type Advertised = BTreeMap<i64, String>;

/// The Services for the brokers of one StatefulSet (as the StatefulSet controller would create
/// them for `replicas`, or `spec.replicas`), decided by the injection core exactly as the webhook
/// decides them. Pods the webhook would skip get no Service; one it would deny fails the render.
/// A broker that runs already is exposed under the name it advertises (`running`), which the
/// template reaches only when the pod is recreated: a changed template must not re-point the
/// Services of brokers that still advertise the old names.
pub fn for_statefulset(
    render: &Render,
    statefulset: &StatefulSet,
    namespace: &str,
    replicas: Option<u32>,
    running: &Advertised,
) -> anyhow::Result<Rendered> {
    let name = statefulset.metadata.name.as_deref().unwrap_or_default();
    let pods = manifests::expand_statefulset(statefulset, namespace, replicas)
        .map_err(anyhow::Error::msg)?;
    let mut rendered = Rendered::default();
    let mut brokers = Vec::with_capacity(pods.len());
    for pod in &pods {
        if let Some(broker) = broker(render, pod, namespace, running, &mut rendered.warnings)? {
            brokers.push(broker);
        }
    }
    for broker in &brokers {
        let id = format!("{namespace}/{}", broker.name);
        let service =
            broker_service(render, statefulset, namespace, broker).with_context(|| id.clone())?;
        if let Some(gateway) = &render.gateway {
            let hostnames = std::iter::once(broker.host.clone())
                .chain(broker.next_host.clone())
                .collect();
            rendered
                .routes
                .push(tls_route(gateway, &service, hostnames));
        }
        rendered.brokers.push(service);
    }
    if render.service_type == ServiceType::NodePort {
        rendered
            .warnings
            .extend(node_ports_outside_static_band(namespace, name, &brokers));
    }
    // A StatefulSet scaled to zero has nothing to bootstrap from, and needs no Service yet.
    if let (Some(host), false) = (&render.bootstrap_host, brokers.is_empty()) {
        let bootstrap = bootstrap_service(render, statefulset, namespace, host, &brokers)
            .with_context(|| format!("{namespace}/{name}: bootstrap Service"))?;
        if let Some(gateway) = &render.gateway {
            let host = bootstrap
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HOSTNAME_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            rendered
                .routes
                .push(tls_route(gateway, &bootstrap, vec![host]));
        }
        rendered.bootstrap = Some(bootstrap);
    }
    Ok(rendered)
}

/// One pod of the StatefulSet as a broker to expose: `None` when the webhook would skip it.
fn broker<'a>(
    render: &Render,
    pod: &'a Pod,
    namespace: &str,
    running: &Advertised,
    warnings: &mut Vec<Warning>,
) -> anyhow::Result<Option<Broker<'a>>> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let id = format!("{namespace}/{pod_name}");
    let view = PodView::from_pod(pod).with_context(|| format!("{id}: not a valid Pod"))?;
    let injection = match crate::inject::inject(&view, namespace, &render.defaults) {
        Decision::Inject(injection) => injection,
        Decision::Skip { .. } => return Ok(None),
        Decision::Deny { message, .. } => bail!("{message}"),
    };
    let ordinal = ordinal_of(pod);
    let find = |value: &str| endpoint_of(value, &render.listener);
    let advertised = injection
        .advertised
        .as_deref()
        .with_context(|| format!("{id}: the listeners template does not render for this pod"))?;
    parse_listeners(advertised)?;
    let (template_host, template_port) = find(advertised).with_context(|| {
        format!(
            "{id}: no listener named {} in {advertised:?} (use --listener)",
            render.listener
        )
    })?;
    // A running broker's record wins for its own Service; one without the exposed listener
    // (created before it was added) gets the template's, as its next start will.
    let (host, port) = running
        .get(&ordinal)
        .and_then(|value| find(value))
        .unwrap_or_else(|| (template_host.clone(), template_port));
    let next_host = (host != template_host && port == template_port).then_some(template_host);
    let at_start_up = !crate::inject::text::references(&host).is_empty();
    if at_start_up && render.service_type != ServiceType::NodePort {
        bail!(
            "{id}: listener {} advertises {host}, an address the broker learns when it starts (its node's, with {{hostIP}}), which no load balancer or gateway route can stand for; use --type NodePort",
            render.listener
        );
    }
    if render.gateway.is_some() {
        if !crate::inject::text::is_dns_name(&host) {
            bail!(
                "{id}: listener {} advertises {host}: a gateway routes TLS by the name the client asks for (SNI), so each broker must advertise a DNS name",
                render.listener
            );
        }
        let protocol = security_protocol(pod, &injection.containers, &render.listener);
        if let Some(protocol @ ("PLAINTEXT" | "SASL_PLAINTEXT")) = protocol.as_deref() {
            bail!(
                "{id}: listener {} is {protocol}: a gateway routes a connection by the name in its TLS handshake (SNI), and a listener without TLS sends none; map it to SSL or SASL_SSL",
                render.listener
            );
        }
    }
    let listener = Listener {
        name: &render.listener,
        host: &host,
        port,
    };
    if let Some(warning) = unencrypted_in_public(render, pod, &injection.containers, &listener) {
        warnings.push(Warning {
            reason: "UnencryptedPublicListener",
            message: format!("{id}: {warning}"),
        });
    }
    // The pod was just injected, so its settings resolve.
    let domain =
        crate::inject::settings::resolve(&render.defaults, view.metadata.annotations.as_ref())
            .ok()
            .and_then(|settings| settings.domain.map(str::to_owned));
    Ok(Some(Broker {
        pod,
        name: pod_name,
        ordinal,
        domain,
        host: listener.host.to_owned(),
        at_start_up,
        next_host,
        advertised_port: listener.port,
        container_port: render
            .port
            .or_else(|| bound_port(&view, &injection.containers, &render.listener))
            .unwrap_or(listener.port),
        template_port,
    }))
}

/// The port the broker binds the listener to, from its `KAFKA_LISTENERS` when it sets one: a
/// NodePort broker advertises `31090+ordinal` but listens where its chart says (`EXTERNAL://:9094`).
fn bound_port(view: &PodView<'_>, containers: &[String], listener: &str) -> Option<u16> {
    let broker = view
        .containers()
        .iter()
        .find(|c| containers.iter().any(|name| *name == c.name))?;
    let (_, bound) = broker.env_value(&crate::inject::LISTENERS)?;
    // Bind addresses may have no host (`EXTERNAL://:9094`), which advertised ones may not.
    bound.split(',').find_map(|entry| {
        let (name, address) = entry.trim().split_once("://")?;
        let (_, port) = address.rsplit_once(':')?;
        name.eq_ignore_ascii_case(listener)
            .then(|| port.parse().ok())
            .flatten()
    })
}

/// Renders the Services for every StatefulSet in the manifests; the warnings go to `err`.
pub fn render(config: &Config, err: &mut impl Write) -> anyhow::Result<Vec<serde_json::Value>> {
    let documents = manifests::read_documents(&config.source.files)?;
    let expansion = Expansion {
        namespace: &config.source.namespace,
        replicas: config.source.replicas,
    };
    let found = manifests::pods(&documents, &expansion)?;
    for warning in &found.warnings {
        writeln!(err, "warning: {warning}")?;
    }
    let mut services = Vec::new();
    for (namespace, statefulset) in &found.statefulsets {
        let rendered = for_statefulset(
            &config.render,
            statefulset,
            namespace,
            config.source.replicas,
            &Advertised::new(),
        )?;
        for warning in &rendered.warnings {
            writeln!(err, "warning: {}", warning.message)?;
        }
        for service in rendered.brokers.iter().chain(&rendered.bootstrap) {
            services.push(serde_json::to_value(service)?);
        }
        services.extend(rendered.routes);
    }
    if services.is_empty() {
        bail!("no broker pod of any StatefulSet in the given manifests");
    }
    Ok(services)
}

pub fn run(config: &Config, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<()> {
    write_objects(config.output, &render(config, err)?, out)
}

fn ordinal_of(pod: &Pod) -> i64 {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_INDEX_LABEL))
        .and_then(|i| i.parse().ok())
        .unwrap_or_default()
}

fn values<'a>(broker: &'a Broker<'a>, statefulset: &'a str) -> Values<'a> {
    let pod = broker.pod;
    Values {
        pod: pod.metadata.name.as_deref(),
        ordinal: Some(broker.ordinal),
        statefulset: Some(statefulset),
        namespace: pod.metadata.namespace.as_deref(),
        service: pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()),
        domain: broker.domain.as_deref(),
    }
}

/// The Service port that reaches the broker's external listener.
fn service_port(render: &Render, broker: &Broker<'_>) -> anyhow::Result<ServicePort> {
    let mut port = ServicePort {
        name: Some("kafka".into()),
        port: broker.advertised_port.into(),
        target_port: Some(IntOrString::Int(broker.container_port.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    if render.service_type == ServiceType::NodePort {
        if !NODE_PORT_RANGE.contains(&broker.advertised_port) {
            bail!(
                "listener {} advertises port {}, outside the NodePort range 30000-32767 \
                 (use a port like {{ordinal+30040}} in the template)",
                render.listener,
                broker.advertised_port
            );
        }
        port.port = broker.container_port.into();
        port.node_port = Some(broker.advertised_port.into());
    }
    Ok(port)
}

/// The annotations a Service of this render carries: the cloud's scope, then the user's (rendered
/// for this pod, so they win over the cloud's). The bootstrap Service (no pod) skips those that
/// name one broker (`{pod}`, `{ordinal}`), such as a per-broker static address.
fn annotations(render: &Render, values: &Values<'_>) -> anyhow::Result<BTreeMap<String, String>> {
    let mut annotations = BTreeMap::new();
    if render.service_type == ServiceType::LoadBalancer {
        if let Some(cloud) = render.cloud {
            for (key, value) in cloud.scope_annotations(render.scope) {
                annotations.insert((*key).to_owned(), (*value).to_owned());
            }
        }
    }
    for (key, template) in &render.annotations {
        let per_broker = template
            .parts()
            .any(|part| matches!(part, Part::Ordinal(_) | Part::Variable(Variable::Pod)));
        if per_broker && values.pod.is_none() {
            continue;
        }
        let value = template
            .render(values)
            .with_context(|| format!("--annotation {key}"))?;
        annotations.insert(key.clone(), value);
    }
    Ok(annotations)
}

/// One broker's Service: selects its pod by name, carries its external host for external-dns.
fn broker_service(
    render: &Render,
    statefulset: &StatefulSet,
    namespace: &str,
    broker: &Broker<'_>,
) -> anyhow::Result<Service> {
    let sts_name = statefulset.metadata.name.as_deref().unwrap_or_default();
    let values = values(broker, sts_name);
    let name = render
        .name_template
        .render(&values)
        .context("--name-template")?;
    if !is_service_name(&name) {
        bail!("Service name {name:?} is not an RFC 1035 label (a-z, 0-9, '-', at most 63 characters; --name-template)");
    }
    let mut annotations = annotations(render, &values)?;
    // external-dns takes a comma-separated list; the first is the name the broker advertises now.
    // A broker advertising its node's address has no name to publish.
    let hostnames = match &broker.next_host {
        Some(next) => format!("{},{next}", broker.host),
        None => broker.host.clone(),
    };
    if !broker.at_start_up && render.gateway.is_none() {
        annotations.insert(HOSTNAME_ANNOTATION.into(), hostnames);
    }
    let selector = BTreeMap::from([(POD_NAME_LABEL.into(), broker.name.to_owned())]);
    let port = service_port(render, broker)?;
    let mut service = service(
        render,
        statefulset,
        namespace,
        (name, "broker"),
        annotations,
        selector,
        port,
    );
    // The broker advertises the address of the node it runs on: only that node may answer on
    // its node port (Local), unless the user chose otherwise.
    if let Some(spec) = service.spec.as_mut().filter(|_| broker.at_start_up) {
        spec.external_traffic_policy
            .get_or_insert_with(|| "Local".to_owned());
    }
    Ok(service)
}

/// One Service for all brokers of the StatefulSet: a name clients bootstrap from that does not
/// depend on any one broker being up.
fn bootstrap_service(
    render: &Render,
    statefulset: &StatefulSet,
    namespace: &str,
    host: &Template,
    brokers: &[Broker<'_>],
) -> anyhow::Result<Service> {
    let sts_name = statefulset.metadata.name.as_deref().unwrap_or_default();
    let Some(first) = brokers.first() else {
        bail!("no broker to bootstrap from");
    };
    if let Some(other) = brokers
        .iter()
        .find(|b| b.template_port != first.template_port)
    {
        bail!(
            "brokers {} and {} expose listener {} on different ports ({} and {}); one Service cannot reach both",
            first.name,
            other.name,
            render.listener,
            first.template_port,
            other.template_port
        );
    }
    // The port the StatefulSet converges to, even while running brokers still advertise another.
    let first = &Broker {
        advertised_port: first.template_port,
        container_port: render.port.unwrap_or(first.template_port),
        ..first.clone()
    };
    let selector = statefulset
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .filter(|labels| !labels.is_empty())
        .context("the StatefulSet's spec.selector has no matchLabels to select its brokers by")?;
    let values = Values {
        pod: None,
        ordinal: None,
        ..values(first, sts_name)
    };
    let host = host.render(&values).context("--bootstrap-host")?;
    if !crate::inject::text::is_dns_name(&host) {
        bail!("--bootstrap-host renders {host:?}, not a DNS name");
    }
    let mut annotations = annotations(render, &values)?;
    annotations.insert(HOSTNAME_ANNOTATION.into(), host);
    let mut port = service_port(render, first)?;
    // Each broker owns its node port; the bootstrap Service gets one of its own.
    port.node_port = None;
    let name = format!("{sts_name}-bootstrap");
    if !is_service_name(&name) {
        bail!("Service name {name:?} is not an RFC 1035 label");
    }
    Ok(service(
        render,
        statefulset,
        namespace,
        (name, "bootstrap"),
        annotations,
        selector,
        port,
    ))
}

fn service(
    render: &Render,
    statefulset: &StatefulSet,
    namespace: &str,
    (name, component): (String, &str),
    annotations: BTreeMap<String, String>,
    selector: BTreeMap<String, String>,
    port: ServicePort,
) -> Service {
    let sts_name = statefulset.metadata.name.clone().unwrap_or_default();
    let load_balancer = render.service_type == ServiceType::LoadBalancer;
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.into(), MANAGED_BY.into()),
                (INSTANCE_LABEL.into(), sts_name.clone()),
                (COMPONENT_LABEL.into(), component.into()),
            ])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            // Offline manifests name no uid; in the cluster, deleting the StatefulSet deletes its
            // Services.
            owner_references: statefulset.metadata.uid.as_ref().map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: sts_name,
                    uid: uid.clone(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(match render.service_type {
                ServiceType::LoadBalancer => "LoadBalancer".into(),
                ServiceType::NodePort => "NodePort".into(),
                ServiceType::ClusterIp => "ClusterIP".into(),
            }),
            selector: Some(selector),
            ports: Some(vec![port]),
            // Clients must reach a broker even while it is not ready (e.g. during recovery).
            publish_not_ready_addresses: Some(true),
            load_balancer_source_ranges: (load_balancer && !render.source_ranges.is_empty())
                .then(|| render.source_ranges.clone()),
            external_traffic_policy: render.external_traffic_policy.clone(),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// A valid Service name: an RFC 1035 label.
fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests;

//! `services`: one Service per broker, exposing the broker's external listener, annotated with the
//! host that listener advertises. Hosts come from the same injection core as the pods', so DNS
//! records, Services and advertised listeners cannot disagree.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{bail, Context};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::inject::listeners::{parse_listeners, Listener};
use crate::inject::template::{Template, Values};
use crate::inject::Decision;
use crate::inject::Defaults;
use crate::manifests::POD_NAME_LABEL;
use crate::manifests::{ManifestPod, Source};
use crate::output::{write_objects, Format};
use crate::preview::decide_all;

pub const HOSTNAME_ANNOTATION: &str = "external-dns.alpha.kubernetes.io/hostname";
const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

/// The kind of Service that exposes each broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    LoadBalancer,
    NodePort,
}

/// A validated `services` invocation.
#[derive(Debug)]
pub struct Config {
    pub source: Source,
    pub defaults: Defaults,
    pub service_type: ServiceType,
    /// Extra annotations for every Service.
    pub annotations: Vec<(String, String)>,
    /// The broker's container port (default: the advertised port).
    pub port: Option<u16>,
    /// The advertised listener the Services expose.
    pub listener: String,
    pub name_template: Template,
    pub output: Format,
}

/// Renders the Services for every broker pod of the StatefulSets in the manifests.
pub fn render(config: &Config) -> anyhow::Result<Vec<Service>> {
    let mut services = Vec::new();
    let (decided, _) = decide_all(&config.source, &config.defaults)?;
    for crate::preview::Decided { pod, decision } in decided {
        let Some(statefulset) = &pod.statefulset else {
            continue; // Only StatefulSet pods carry the pod-name label a Service can select.
        };
        let id = format!(
            "{}/{}",
            pod.namespace,
            pod.pod.metadata.name.as_deref().unwrap_or("<unnamed>")
        );
        let injection = match decision {
            Decision::Inject(injection) => injection,
            Decision::Skip { .. } => continue,
            Decision::Deny { message, .. } => bail!("{message}"),
        };
        let advertised = injection.advertised.with_context(|| {
            format!("{id}: the listeners template does not render for this pod")
        })?;
        let listeners = parse_listeners(&advertised)?;
        let listener = listeners
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(&config.listener))
            .with_context(|| {
                format!(
                    "{id}: no listener named {} in {:?} (use --listener)",
                    config.listener, advertised
                )
            })?;
        let port = service_port(config, listener).with_context(|| id.clone())?;
        let name = service_name(config, &pod, statefulset).with_context(|| id.clone())?;
        services.push(service(
            config,
            &pod,
            statefulset,
            name,
            listener.host,
            port,
        ));
    }
    if services.is_empty() {
        bail!("no broker pod of any StatefulSet in the given manifests");
    }
    Ok(services)
}

/// The Service port that reaches the broker's external listener.
fn service_port(config: &Config, listener: &Listener<'_>) -> anyhow::Result<ServicePort> {
    let container_port = config.port.unwrap_or(listener.port);
    Ok(match config.service_type {
        ServiceType::LoadBalancer => ServicePort {
            name: Some("kafka".into()),
            port: listener.port.into(),
            target_port: Some(IntOrString::Int(container_port.into())),
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        },
        ServiceType::NodePort => {
            if !NODE_PORT_RANGE.contains(&listener.port) {
                bail!(
                    "listener {} advertises port {}, outside the NodePort range 30000-32767 \
                     (use a port like {{ordinal+31090}} in the template)",
                    listener.name,
                    listener.port
                );
            }
            ServicePort {
                name: Some("kafka".into()),
                port: container_port.into(),
                target_port: Some(IntOrString::Int(container_port.into())),
                node_port: Some(listener.port.into()),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }
        }
    })
}

/// The Service's name, from `--name-template`.
fn service_name(config: &Config, pod: &ManifestPod, statefulset: &str) -> anyhow::Result<String> {
    let ordinal = pod
        .pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::inject::ordinal::POD_INDEX_LABEL))
        .and_then(|i| i.parse().ok());
    let name = config
        .name_template
        .render(&Values {
            pod: pod.pod.metadata.name.as_deref(),
            ordinal,
            statefulset: Some(statefulset),
            namespace: Some(&pod.namespace),
            service: pod.pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()),
            domain: None,
        })
        .context("--name-template")?;
    if !is_service_name(&name) {
        bail!("Service name {name:?} is not an RFC 1035 label (a-z, 0-9, '-', at most 63 characters; --name-template)");
    }
    Ok(name)
}

/// One broker's Service: selects its pod by name, carries its external host for external-dns.
fn service(
    config: &Config,
    pod: &ManifestPod,
    statefulset: &str,
    name: String,
    host: &str,
    port: ServicePort,
) -> Service {
    let mut annotations: BTreeMap<String, String> = config.annotations.iter().cloned().collect();
    annotations.insert(HOSTNAME_ANNOTATION.into(), host.into());
    let pod_name = pod.pod.metadata.name.clone().unwrap_or_default();
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(pod.namespace.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".into(),
                    "kafka-listener-injector".into(),
                ),
                ("app.kubernetes.io/instance".into(), statefulset.to_owned()),
            ])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(match config.service_type {
                ServiceType::LoadBalancer => "LoadBalancer".into(),
                ServiceType::NodePort => "NodePort".into(),
            }),
            selector: Some(BTreeMap::from([(POD_NAME_LABEL.into(), pod_name)])),
            ports: Some(vec![port]),
            // Clients must reach a broker even while it is not ready (e.g. during recovery).
            publish_not_ready_addresses: Some(true),
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

pub fn run(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    write_objects(config.output, &render(config)?, out)
}

//! Who reaches each broker, and how: the load balancer's scope on each cloud, the TLS routes of
//! one gateway for all brokers, and the security protocol of the exposed listener, which decides
//! whether a public load balancer carries clear text and whether a gateway can route at all; and
//! which fixed node ports another Service may hold first.

use k8s_openapi::api::core::v1::{Pod, Service};

use super::{Broker, Render, ServiceType, Warning, HOSTNAME_ANNOTATION};
use crate::inject::listeners::Listener;

/// The default range's static band (Kubernetes 1.28+): the first 1/32 of the range (16 to 128
/// ports), from which the API server assigns a port to a Service that names none only when the
/// rest is full. A fixed node port above it can already be held by any such Service.
const NODE_PORT_STATIC_BAND: std::ops::RangeInclusive<u16> = 30000..=30085;

/// The Gateway API version of the TLS routes: TLSRoute is in the standard channel, as `v1`,
/// since Gateway API v1.5.
pub const GATEWAY_API_VERSION: &str = "gateway.networking.k8s.io/v1";

/// The Gateway whose TLS passthrough listener routes every broker by SNI: one load balancer for
/// all brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRef {
    pub namespace: String,
    pub name: String,
}

/// Who may reach the load balancers: an explicit choice, because the providers differ in what
/// they do by default (the AWS Load Balancer Controller makes internal ones, the in-tree
/// providers public ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Public,
    Internal,
}

/// The cloud whose load-balancer annotations express [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Aws,
    Gcp,
    Azure,
}

impl Cloud {
    /// The annotations that make a Service's load balancer public or internal on this cloud.
    pub(super) fn scope_annotations(self, scope: Scope) -> &'static [(&'static str, &'static str)] {
        match (self, scope) {
            // The AWS Load Balancer Controller makes internal load balancers unless told.
            (Cloud::Aws, Scope::Public) => &[(
                "service.beta.kubernetes.io/aws-load-balancer-scheme",
                "internet-facing",
            )],
            (Cloud::Aws, Scope::Internal) => &[
                (
                    "service.beta.kubernetes.io/aws-load-balancer-scheme",
                    "internal",
                ),
                // The in-tree provider's spelling.
                (
                    "service.beta.kubernetes.io/aws-load-balancer-internal",
                    "true",
                ),
            ],
            (Cloud::Gcp, Scope::Public) | (Cloud::Azure, Scope::Public) => &[],
            (Cloud::Gcp, Scope::Internal) => {
                &[("networking.gke.io/load-balancer-type", "Internal")]
            }
            (Cloud::Azure, Scope::Internal) => &[(
                "service.beta.kubernetes.io/azure-load-balancer-internal",
                "true",
            )],
        }
    }
}

/// The `TLSRoute` that sends connections for `hostnames` (by SNI, TLS passed through to the
/// broker) from the gateway to `service`. external-dns publishes the route's hostnames at the
/// gateway's address (its `gateway-tlsroute` source); the annotation says the same for setups
/// that read annotations.
pub(super) fn tls_route(
    gateway: &GatewayRef,
    service: &Service,
    hostnames: Vec<String>,
) -> serde_json::Value {
    let port = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p.first())
        .map_or(0, |p| p.port);
    let mut metadata = serde_json::json!({
        "name": service.metadata.name,
        "namespace": service.metadata.namespace,
        "labels": service.metadata.labels,
        "annotations": {HOSTNAME_ANNOTATION: hostnames.join(",")},
    });
    if let Some(owners) = &service.metadata.owner_references {
        metadata["ownerReferences"] = serde_json::json!(owners);
    }
    serde_json::json!({
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "TLSRoute",
        "metadata": metadata,
        "spec": {
            "parentRefs": [{
                "group": "gateway.networking.k8s.io",
                "kind": "Gateway",
                "namespace": gateway.namespace,
                "name": gateway.name,
            }],
            "hostnames": hostnames,
            "rules": [{"backendRefs": [{"name": service.metadata.name, "port": port}]}],
        },
    })
}

/// A warning when the exposed listener carries no encryption and its load balancer is public.
pub(super) fn unencrypted_in_public(
    render: &Render,
    pod: &Pod,
    containers: &[String],
    listener: &Listener<'_>,
) -> Option<String> {
    if render.service_type != ServiceType::LoadBalancer || render.scope != Scope::Public {
        return None;
    }
    let protocol = security_protocol(pod, containers, listener.name)?;
    if !matches!(protocol.as_str(), "PLAINTEXT" | "SASL_PLAINTEXT") {
        return None;
    }
    let exposure = if render.source_ranges.is_empty() {
        "a public load balancer open to every address"
    } else {
        "a public load balancer"
    };
    Some(format!(
        "listener {} is {protocol} (no TLS) behind {exposure}: its traffic{} crosses the internet in clear text \
         (map it to SSL or SASL_SSL, or use --load-balancer internal)",
        listener.name,
        if protocol == "SASL_PLAINTEXT" { ", passwords included," } else { "" },
    ))
}

/// The security protocol of listener `name` in the injected containers' env: the protocol map's
/// entry, or the name itself when no map is set (Kafka's default map is the identity on the
/// standard protocol names). `None` when the env does not tell (e.g. the map comes from a
/// ConfigMap).
pub(super) fn security_protocol(pod: &Pod, containers: &[String], name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let container = spec
        .containers
        .iter()
        .find(|c| containers.contains(&c.name))?;
    let env = container.env.as_deref().unwrap_or_default();
    let map = env.iter().find(|e| {
        matches!(
            e.name.as_str(),
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP" | "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP"
        )
    });
    match map {
        Some(var) => {
            let value = var.value.as_deref()?;
            value.split(',').find_map(|entry| {
                let (listener, protocol) = entry.split_once(':')?;
                listener
                    .trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| protocol.trim().to_ascii_uppercase())
            })
        }
        None => Some(name.to_ascii_uppercase()),
    }
}

/// Fixed node ports above the default range's static band: the API server gives ports from there
/// to every LoadBalancer and NodePort Service that names none, so one created first can hold a
/// broker's port, and the broker's Service is then refused ("provided port is already allocated").
pub(super) fn node_ports_outside_static_band(
    namespace: &str,
    statefulset: &str,
    brokers: &[Broker<'_>],
) -> Option<Warning> {
    let outside: Vec<String> = brokers
        .iter()
        .filter(|broker| !NODE_PORT_STATIC_BAND.contains(&broker.advertised_port))
        .map(|broker| format!("{} ({})", broker.advertised_port, broker.name))
        .collect();
    let (first, last) = (NODE_PORT_STATIC_BAND.start(), NODE_PORT_STATIC_BAND.end());
    (!outside.is_empty()).then(|| Warning {
        reason: "NodePortMayBeTaken",
        message: format!(
            "{namespace}/{statefulset}: node port{} {} {} outside {first}-{last}, the part of the \
             default range 30000-32767 the API server keeps for Services that name their port; \
             it gives ports from the rest to every Service that names none, so one created first \
             may hold a broker's port, and that broker's Service is then refused (\"provided port \
             is already allocated\"): use ports from {first}-{last} (e.g. {{ordinal+30040}}), or \
             from the first 1/32 of your cluster's --service-node-port-range",
            if outside.len() == 1 { "" } else { "s" },
            outside.join(", "),
            if outside.len() == 1 { "is" } else { "are" },
        ),
    })
}

//! Whether each broker's advertised name resolves to its load balancer: the resolver, the check,
//! the Service annotation and the pod's readiness-gate condition that record the answer.

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use hickory_resolver::TokioResolver;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::info;

use super::objects::{annotate, exposed_host, publish};
use super::{Context, EXTERNAL_NAME_ANNOTATION};
use crate::inject::settings::READINESS_GATE;
use crate::preview::manifests::POD_NAME_LABEL;

/// The resolver that checks the advertised names: `--dns-server`, else the system's; no cache,
/// so a record that appears is seen at the next check, not after a negative answer's TTL.
pub(super) fn resolver(server: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    match server {
        Some(address) => crate::dns::asking(address)
            .build()
            .map_err(|error| anyhow::anyhow!("--dns-server: {error}")),
        None => crate::dns::system(),
    }
}

/// Whether a broker's advertised name resolves to its load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalName {
    /// The name resolves to (one of) the load balancer's addresses. `load_balancer` is the
    /// Service's ingress as the cloud reports it: addresses, or a name (AWS), never what a name
    /// resolved to this time, which may change from answer to answer.
    Resolves {
        host: String,
        load_balancer: Vec<String>,
    },
    /// The load balancer has no address yet (or its name resolves to none).
    NoLoadBalancer,
    /// The name does not resolve (yet): no record, or the resolver failed.
    Unresolved { host: String, why: String },
    /// The name resolves, but to addresses that are not the load balancer's.
    Elsewhere {
        host: String,
        addresses: Vec<IpAddr>,
        load_balancer: Vec<String>,
    },
    /// Not a LoadBalancer Service: nothing to compare with.
    NotLoadBalancer,
}

impl ExternalName {
    pub(super) fn resolves(&self) -> bool {
        matches!(self, Self::Resolves { .. } | Self::NotLoadBalancer)
    }

    /// Whether `recorded` (the Service's annotation) already says this state. A mismatch still
    /// says it while the host and load balancer are the same and the name resolves to some of
    /// the addresses recorded: a name with several records answers with a rotating or partial
    /// set, and each answer must not rewrite the Service (and trigger the next reconcile).
    pub(super) fn recorded_as(&self, recorded: &str) -> bool {
        let Self::Elsewhere {
            host,
            addresses,
            load_balancer,
        } = self
        else {
            return recorded == self.to_string();
        };
        let recorded_addresses = recorded
            .strip_prefix(&format!("mismatch: {host} resolves to "))
            .and_then(|rest| {
                rest.strip_suffix(&format!(
                    ", the load balancer is {}",
                    load_balancer.join(" ")
                ))
            });
        recorded_addresses.is_some_and(|list| {
            list.split(' ')
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .any(|a| addresses.contains(&a))
        })
    }

    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Resolves { .. } => "Resolves",
            Self::NoLoadBalancer => "NoLoadBalancerAddress",
            Self::Unresolved { .. } => "DoesNotResolve",
            Self::Elsewhere { .. } => "ResolvesElsewhere",
            Self::NotLoadBalancer => "NotLoadBalancer",
        }
    }
}

impl std::fmt::Display for ExternalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Resolves {
                host,
                load_balancer,
            } => {
                write!(
                    f,
                    "ready: {host} resolves to its load balancer ({})",
                    load_balancer.join(" ")
                )
            }
            Self::NoLoadBalancer => write!(f, "pending: the load balancer has no address yet"),
            Self::Unresolved { host, why } => write!(f, "pending: {host} does not resolve ({why})"),
            Self::Elsewhere {
                host,
                addresses,
                load_balancer,
            } => write!(
                f,
                "mismatch: {host} resolves to {}, the load balancer is {}",
                addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                load_balancer.join(" ")
            ),
            Self::NotLoadBalancer => write!(f, "ready: not a LoadBalancer Service; not checked"),
        }
    }
}

pub(super) async fn external_name_state(
    service: &Service,
    resolver: &TokioResolver,
) -> ExternalName {
    if service.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        return ExternalName::NotLoadBalancer;
    }
    let host = exposed_host(service).to_owned();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    // The ingress as reported (stable), and the addresses to compare with: a name's are what it
    // resolves to now.
    let mut load_balancer = Vec::new();
    let mut addresses = Vec::new();
    for entry in &ingress {
        if let Some(ip) = entry.ip.as_deref() {
            load_balancer.push(ip.to_owned());
            addresses.extend(ip.parse::<IpAddr>().ok());
        }
        // A provider that gives a name (AWS): its addresses are the load balancer's.
        if let Some(name) = &entry.hostname {
            load_balancer.push(name.clone());
            if let Ok(answer) = resolver.lookup_ip(format!("{name}.")).await {
                addresses.extend(answer.iter());
            }
        }
    }
    if addresses.is_empty() {
        return ExternalName::NoLoadBalancer;
    }
    let answer = match resolver.lookup_ip(format!("{host}.")).await {
        Ok(answer) => Ok(answer.iter().collect()),
        // Stable words, not the resolver's message: the text is written on the Service, and a
        // text that changed with every failure would be written anew each time.
        Err(error) if error.is_no_records_found() => Err("no record"),
        Err(_) => Err("no answer from the resolver"),
    };
    judge(host, load_balancer, &addresses, answer)
}

/// Compares the answer for the broker's name with the load balancer's `addresses`. Both are sets:
/// DNS servers rotate the order of several A records (CoreDNS `loadbalance`, an AWS NLB with an
/// address per zone) and may answer with a subset, and the state, written on the Service, must not
/// change with the answer or every reconcile would rewrite it and trigger the next. So a match
/// records the `load_balancer` as the Service reports it, not the addresses of this answer.
pub(super) fn judge(
    host: String,
    mut load_balancer: Vec<String>,
    addresses: &[IpAddr],
    answer: Result<Vec<IpAddr>, &'static str>,
) -> ExternalName {
    load_balancer.sort_unstable();
    load_balancer.dedup();
    let mut answer = match answer {
        Ok(answer) => answer,
        Err(why) => {
            return ExternalName::Unresolved {
                host,
                why: why.to_owned(),
            }
        }
    };
    answer.sort_unstable();
    answer.dedup();
    if answer.iter().any(|a| addresses.contains(a)) {
        ExternalName::Resolves {
            host,
            load_balancer,
        }
    } else {
        ExternalName::Elsewhere {
            host,
            addresses: answer,
            load_balancer,
        }
    }
}

/// Writes the answer on the Service, and an event when it changes.
pub(super) async fn record_external_name(
    api: &Api<Service>,
    service: &Service,
    state: &ExternalName,
    context: &Context,
) -> Result<(), kube::Error> {
    let recorded = service.annotations().get(EXTERNAL_NAME_ANNOTATION);
    if recorded.is_some_and(|recorded| state.recorded_as(recorded)) {
        return Ok(());
    }
    let text = state.to_string();
    annotate(
        api,
        &service.name_any(),
        EXTERNAL_NAME_ANNOTATION,
        Some(&text),
    )
    .await?;
    info!(service = %service.name_any(), state = %text, "external name");
    let type_ = if matches!(state, ExternalName::Elsewhere { .. }) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish(
        context,
        &service.object_ref(&()),
        type_,
        state.reason(),
        text,
    )
    .await;
    Ok(())
}

/// Records the external-name check in the readiness-gate condition of the Service's broker pod.
pub(super) async fn set_readiness_condition(
    service: &Service,
    namespace: &str,
    state: &ExternalName,
    context: &Context,
) -> Result<(), kube::Error> {
    let Some(pod_name) = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(POD_NAME_LABEL))
    else {
        return Ok(());
    };
    let gate = Gate {
        ready: state.resolves(),
        reason: state.reason(),
        message: state.to_string(),
    };
    set_gate(pod_name, namespace, &gate, context).await
}

/// The readiness-gate condition to set on a broker pod.
pub(super) struct Gate {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
}

/// Sets the readiness-gate condition of a pod that carries the gate; pods without it, or gone,
/// are left alone. Every gated pod the reconciler cannot serve gets `False` with the reason, so
/// that its status says why it waits.
pub(super) async fn set_gate(
    pod_name: &str,
    namespace: &str,
    gate: &Gate,
    context: &Context,
) -> Result<(), kube::Error> {
    let pods = Api::<Pod>::namespaced(context.client.clone(), namespace);
    let Some(pod) = pods.get_opt(pod_name).await? else {
        return Ok(());
    };
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == READINESS_GATE));
    if !gated {
        return Ok(());
    }
    let status = if gate.ready { "True" } else { "False" };
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == READINESS_GATE));
    if current.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(gate.reason)) {
        return Ok(());
    }
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let patch = json!({
        "status": { "conditions": [{
            "type": READINESS_GATE,
            "status": status,
            "reason": gate.reason,
            "message": crate::inject::text::clip_to(&gate.message, 1024),
            "lastTransitionTime": now,
        }]}
    });
    pods.patch_status(pod_name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    info!(namespace, pod = %pod_name, status, reason = gate.reason, "readiness gate");
    Ok(())
}

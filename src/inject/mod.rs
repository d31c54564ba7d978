//! The injection core: pure and synchronous. Given a pod, its namespace and the cluster defaults,
//! decide whether to inject, skip or deny, and build the patch. `serve` and `preview` both call
//! [`inject`], which is why preview can be trusted.

pub mod listeners;
pub mod ordinal;
pub mod patch;
pub mod settings;
pub mod template;

#[cfg(test)]
pub(crate) mod test_pods;

use json_patch::Patch;
use k8s_openapi::api::core::v1::{Container, Pod};
use thiserror::Error;

use self::listeners::{BrokerListenerConfig, ListenerError};
pub use self::settings::{Defaults, Flags};
use self::settings::{Origin, SettingsError, INJECT_KEY, RECORD_KEY};
use self::template::{TemplateError, Values};

/// Why a pod was let through unchanged. The label of the requests metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    OptedOut,
    IgnoredNamespace,
    NoBrokerContainer,
    ControllerOnly,
    NoOrdinal,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted-out",
            Self::IgnoredNamespace => "ignored-namespace",
            Self::NoBrokerContainer => "no-broker-container",
            Self::ControllerOnly => "controller-only",
            Self::NoOrdinal => "no-ordinal",
        }
    }
}

/// A configuration fault that stops a broker pod from being created.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InjectError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{origin}: {error}")]
    Render {
        origin: Origin,
        error: TemplateError,
    },
    #[error("{origin} renders {value:?}: {error}")]
    Listeners {
        origin: Origin,
        value: String,
        error: ListenerError,
    },
    #[error("node id {node_id} (ordinal {ordinal} + node-id-offset {offset}) is negative")]
    NegativeNodeId {
        node_id: i64,
        ordinal: i64,
        offset: i64,
    },
}

impl InjectError {
    /// A short, stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Settings(_) => "invalid-setting",
            Self::Render { .. } => "template-error",
            Self::Listeners { .. } => "invalid-listeners",
            Self::NegativeNodeId { .. } => "invalid-node-id",
        }
    }
}

/// A successful injection. `patch` is empty when the pod already carries exactly this state.
#[derive(Debug)]
pub struct Injection {
    pub patch: Patch,
    pub container: String,
    pub env_name: String,
    pub value: String,
    /// `(env var, node id)` when a node id is injected too.
    pub node_id: Option<(String, i64)>,
    pub warnings: Vec<String>,
}

/// The outcome for one pod.
#[derive(Debug)]
pub enum Decision {
    Inject(Injection),
    /// Allowed unchanged; `warning` is shown to the user when the skip is likely a mistake.
    Skip {
        reason: SkipReason,
        warning: Option<String>,
    },
    /// The pod must not be created; `message` names namespace, pod, setting and fault.
    Deny {
        error: InjectError,
        message: String,
    },
}

// The env vars a Kafka image reads a setting from: the official/Confluent form and Bitnami's.
const PROCESS_ROLES: [&str; 2] = ["KAFKA_PROCESS_ROLES", "KAFKA_CFG_PROCESS_ROLES"];
const PROTOCOL_MAP: [&str; 2] = [
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
];
const CONTROLLER_NAMES: [&str; 2] = [
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_CFG_CONTROLLER_LISTENER_NAMES",
];

/// The value of the last plain-valued env var among `names` (the one a runtime honours).
fn env_value<'c>(container: &'c Container, names: &[&str]) -> Option<(&'c str, &'c str)> {
    container
        .env
        .iter()
        .flatten()
        .rev()
        .find(|var| names.contains(&var.name.as_str()))
        .and_then(|var| Some((var.name.as_str(), var.value.as_deref()?)))
}

/// The broker container and its index: the one named `name`, else the pod's only container.
pub fn find_container<'p>(pod: &'p Pod, name: &str) -> Option<(usize, &'p Container)> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .enumerate()
        .find(|(_, c)| c.name == name)
        .or(match containers.as_slice() {
            [only] => Some((0, only)),
            _ => None,
        })
}

/// The pod's name for messages: its name, else its generateName with a marker.
pub fn display_name(pod: &Pod) -> String {
    match (&pod.metadata.name, &pod.metadata.generate_name) {
        (Some(name), _) if !name.is_empty() => name.clone(),
        (_, Some(prefix)) => format!("{prefix}<generated>"),
        _ => "<unnamed>".to_owned(),
    }
}

/// Decides what to do with `pod` being created in `namespace`.
pub fn inject(pod: &Pod, namespace: &str, defaults: &Defaults) -> Decision {
    let annotations = pod.metadata.annotations.as_ref();
    let opted_out = |map: Option<&std::collections::BTreeMap<String, String>>| {
        map.and_then(|m| m.get(INJECT_KEY))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    };
    if opted_out(annotations) || opted_out(pod.metadata.labels.as_ref()) {
        return skip(SkipReason::OptedOut, None);
    }
    if defaults.ignore_namespaces.iter().any(|ns| ns == namespace) {
        return skip(SkipReason::IgnoredNamespace, None);
    }
    let deny = |error: InjectError| {
        let message = format!("pod {namespace}/{}: {error}", display_name(pod));
        Decision::Deny { error, message }
    };
    let settings = match settings::resolve(defaults, annotations) {
        Ok(settings) => settings,
        Err(error) => return deny(error.into()),
    };
    let Some((container_index, container)) = find_container(pod, settings.container) else {
        return skip(SkipReason::NoBrokerContainer, None);
    };
    let roles = env_value(container, &PROCESS_ROLES);
    if roles.is_some_and(|(_, roles)| roles.trim().eq_ignore_ascii_case("controller")) {
        return skip(SkipReason::ControllerOnly, None);
    }
    let ordinal = match ordinal::derive_ordinal(pod) {
        Ok(ordinal) => ordinal,
        Err(why) => {
            let warning = format!(
                "kafka-listener-injector: pod {namespace}/{} not injected: {why}",
                display_name(pod)
            );
            return skip(SkipReason::NoOrdinal, Some(warning));
        }
    };

    let template = settings.listeners(defaults);
    let values = Values {
        pod: pod.metadata.name.as_deref(),
        ordinal: Some(ordinal.index),
        statefulset: ordinal.statefulset,
        namespace: Some(namespace),
        service: pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()),
        domain: settings.domain,
    };
    let origin = settings.listeners_origin;
    let value = match template.render(&values) {
        Ok(value) => value,
        Err(error) => return deny(InjectError::Render { origin, error }),
    };
    let broker_config = BrokerListenerConfig {
        protocol_map: env_value(container, &PROTOCOL_MAP),
        controller_names: env_value(container, &CONTROLLER_NAMES),
    };
    if let Err(error) = listeners::validate(&value, &broker_config) {
        return deny(InjectError::Listeners {
            origin,
            value,
            error,
        });
    }

    let node_id = match settings.node_id_env {
        None => None,
        Some(env) => {
            let node_id = ordinal.index.saturating_add(settings.node_id_offset);
            if node_id < 0 {
                return deny(InjectError::NegativeNodeId {
                    node_id,
                    ordinal: ordinal.index,
                    offset: settings.node_id_offset,
                });
            }
            Some((env, node_id))
        }
    };
    let node_id_text = node_id.map(|(_, id)| id.to_string());
    let mut env = vec![(settings.env_name, value.as_str())];
    if let (Some((name, _)), Some(text)) = (node_id, &node_id_text) {
        env.push((name, text));
    }
    let target = patch::Target {
        container_index,
        env: &env,
        annotations: &[(RECORD_KEY, value.as_str())],
    };
    let (patch, overridden) = patch::build_patch(pod, &target);
    let warnings = overridden
        .iter()
        .map(|name| {
            format!(
                "kafka-listener-injector: env {name} of container {} in pod {namespace}/{} was overridden",
                container.name,
                display_name(pod)
            )
        })
        .collect();
    Decision::Inject(Injection {
        patch,
        container: container.name.clone(),
        env_name: settings.env_name.to_owned(),
        value,
        node_id: node_id.map(|(name, id)| (name.to_owned(), id)),
        warnings,
    })
}

fn skip(reason: SkipReason, warning: Option<String>) -> Decision {
    Decision::Skip { reason, warning }
}

#[cfg(test)]
mod tests;

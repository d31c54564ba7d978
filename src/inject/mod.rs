//! The injection core: pure and synchronous. Given a pod, its namespace and the cluster defaults,
//! decide whether to inject, skip or deny, and build the patch. `serve` and `preview` both call
//! [`inject`] on the same [`PodView`], which is why preview can be trusted.
//!
//! The decision runs in three steps: [`gate`] (is this a broker pod to inject, and where),
//! [`render`] (the values, checked against what Kafka accepts), and the patch; beside them,
//! [`findings`] tells whether the injected values would take effect.

pub mod broker;
pub mod findings;
pub mod listeners;
pub mod ordinal;
pub mod patch;
mod render;
mod server_start;

use self::render::render;
pub use self::render::EnvNameChoice;
pub mod settings;
pub mod template;
pub mod text;
pub mod view;
pub mod wait;

#[cfg(test)]
pub(crate) mod test_pods;

use json_patch::Patch;
use thiserror::Error;

use self::listeners::ListenerError;
pub use self::settings::{Defaults, Flags};
use self::settings::{
    Origin, Resolved, SettingsError, INJECT_KEY, READINESS_GATE, RECORD_KEY, SETTINGS_KEY,
};
use self::template::TemplateError;
pub use self::view::PodView;
use self::view::{ContainerList, ContainerView};

/// Why a pod was let through unchanged. The label of the requests metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    OptedOut,
    IgnoredNamespace,
    NoBrokerContainer,
    ControllerOnly,
    NoOrdinal,
    /// The container is ZooKeeper, Connect, Schema Registry, ... or shows no sign of Kafka.
    NotABroker,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OptedOut => "opted-out",
            Self::IgnoredNamespace => "ignored-namespace",
            Self::NoBrokerContainer => "no-broker-container",
            Self::ControllerOnly => "controller-only",
            Self::NoOrdinal => "no-ordinal",
            Self::NotABroker => "not-a-broker",
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
    #[error("{origin} renders {value:?} for container {container}: {error}")]
    Listeners {
        origin: Origin,
        value: String,
        container: String,
        error: Box<ListenerError>,
    },
    #[error("node id {node_id} (ordinal {ordinal} + node-id-offset {offset}) is not in 0-2147483647, the range of Kafka's node.id")]
    NodeIdOutOfRange {
        node_id: i64,
        ordinal: i64,
        offset: i64,
    },
    #[error("node id {node_id} of this controller is not in the container's {var}, a static voter set; Kafka would refuse to start (use controller.quorum.bootstrap.servers to grow the quorum)")]
    NodeIdNotAVoter { node_id: i64, var: String },
    #[error("{origin} refers to $({name}), which container {container} does not define: Kubernetes would leave the text as it is and the broker would refuse it; define {name} in the container's env or inject it with --env")]
    UndefinedReference {
        origin: Origin,
        name: String,
        container: String,
    },
    #[error("--strict: {0}")]
    Strict(String),
}

/// A successful injection. `patch` is empty when the pod already carries exactly this state.
#[derive(Debug)]
pub struct Injection {
    pub patch: Patch,
    /// The containers (and init containers) injected into.
    pub containers: Vec<String>,
    /// `(env var, downward-API field)`: the start-up values the templates refer to
    /// (`KLI_HOST_IP` from `status.hostIP`, ...) and the rack.
    pub downward: Vec<(String, String)>,
    /// The advertised-listeners variable and its value; `None` with `--env-name none`.
    pub listeners: Option<(String, String)>,
    /// The listeners template rendered for this pod, also with `--env-name none` when it renders
    /// (what `services` exposes).
    pub advertised: Option<String>,
    /// `(env var, node id)` when a node id is injected too.
    pub node_id: Option<(String, i64)>,
    /// The templated `--env` variables, rendered.
    pub extra_env: Vec<(String, String)>,
    /// The names the `kli-wait-for-name` init container waits for (`--wait-for-name-image`).
    pub wait_for_names: Vec<String>,
    /// The short hash of the settings in force (annotation `kafka-listener-injector.io/settings`).
    pub settings_hash: String,
    /// Why the advertised-listeners variable has its name.
    pub env_name_choice: Option<EnvNameChoice>,
    /// Effectiveness findings: reasons the broker may not advertise the injected values. Also
    /// among `warnings`, where the API server shows them.
    pub findings: Vec<String>,
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

/// Longest denial message: the API server puts it in the StatefulSet's events.
pub const MAX_MESSAGE_BYTES: usize = 2048;

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
pub(crate) const LISTENERS: [&str; 2] = ["KAFKA_LISTENERS", "KAFKA_CFG_LISTENERS"];
const ADVERTISED_LISTENERS: [&str; 2] = [
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_CFG_ADVERTISED_LISTENERS",
];
const INTER_BROKER_NAME: [&str; 2] = [
    "KAFKA_INTER_BROKER_LISTENER_NAME",
    "KAFKA_CFG_INTER_BROKER_LISTENER_NAME",
];
const QUORUM_VOTERS: [&str; 2] = [
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
    "KAFKA_CFG_CONTROLLER_QUORUM_VOTERS",
];

/// Decides what to do with `pod` being created in `namespace`.
pub fn inject(pod: &PodView, namespace: &str, defaults: &Defaults) -> Decision {
    let deny = |error: InjectError| {
        let mut message = format!("pod {namespace}/{}: {error}", pod.display_name());
        truncate(&mut message, MAX_MESSAGE_BYTES);
        Decision::Deny { error, message }
    };
    let gated = match gate(pod, namespace, defaults) {
        Gate::Inject(gated) => gated,
        Gate::Skip(reason, warning) => return Decision::Skip { reason, warning },
        Gate::Deny(error) => return deny(error),
    };
    let rendered = match render(pod, namespace, defaults, &gated) {
        Ok(rendered) => rendered,
        Err(error) => return deny(error),
    };
    let mut warnings = gated.warnings.clone();
    warnings.extend(rendered.warnings.iter().cloned());
    let findings = rendered.findings(&gated.targets);
    if gated.settings.strict && !findings.is_empty() {
        return deny(InjectError::Strict(findings.join("; ")));
    }
    warnings.extend(findings.iter().cloned());

    let env = rendered.env_pairs();
    let settings_hash = gated.settings.fingerprint(
        defaults,
        rendered.listeners.as_ref().map(|(name, _)| name.as_str()),
    );
    let annotations: Vec<(&str, &str)> = rendered
        .listeners
        .as_ref()
        .map(|(_, value)| (RECORD_KEY, value.as_str()))
        .into_iter()
        .chain([(SETTINGS_KEY, settings_hash.as_str())])
        .collect();
    let targets: Vec<(ContainerList, usize)> =
        gated.targets.iter().map(|t| (t.list, t.index)).collect();
    let wait_for_names = match (&defaults.wait_for_name, &rendered.advertised) {
        (Some(_), Some(advertised)) => wait::external_names(advertised),
        _ => Vec::new(),
    };
    let wait_container = defaults
        .wait_for_name
        .as_ref()
        .filter(|_| !wait_for_names.is_empty())
        .map(|wait| wait.container(&wait_for_names));
    let (patch, overridden) = patch::build_patch(
        pod,
        &patch::Target {
            containers: &targets,
            env: &env,
            annotations: &annotations,
            readiness_gate: defaults.readiness_gate.then_some(READINESS_GATE),
            init_container: wait_container.as_ref(),
        },
    );
    warnings.extend(overridden.iter().map(|(container, name)| {
        format!(
            "env {name} of container {container} in pod {namespace}/{} was overridden",
            pod.display_name()
        )
    }));
    Decision::Inject(Injection {
        patch,
        containers: gated
            .targets
            .iter()
            .map(|t| t.container.name.to_string())
            .collect(),
        downward: rendered
            .downward
            .iter()
            .map(|&(name, field)| (name.to_owned(), field.to_owned()))
            .collect(),
        listeners: rendered.listeners,
        advertised: rendered.advertised,
        node_id: rendered.node_id.map(|(name, id, _)| (name.to_owned(), id)),
        extra_env: rendered
            .extra_env
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        wait_for_names,
        settings_hash,
        env_name_choice: rendered.env_name_choice,
        findings,
        warnings: warnings
            .into_iter()
            .map(|w| format!("kafka-listener-injector: {w}"))
            .collect(),
    })
}

/// A container to inject into.
#[derive(Debug)]
pub struct TargetContainer<'p> {
    pub list: ContainerList,
    pub index: usize,
    pub container: &'p ContainerView<'p>,
}

/// A pod that passed the gate: its settings, where to inject, and its ordinal.
struct Gated<'p> {
    settings: Resolved<'p>,
    targets: Vec<TargetContainer<'p>>,
    /// The broker container: the first regular container among the targets, else the first.
    broker: &'p ContainerView<'p>,
    ordinal: ordinal::Ordinal<'p>,
    warnings: Vec<String>,
}

enum Gate<'p> {
    Inject(Box<Gated<'p>>),
    Skip(SkipReason, Option<String>),
    Deny(InjectError),
}

impl<'p> From<Gated<'p>> for Gate<'p> {
    fn from(gated: Gated<'p>) -> Self {
        Self::Inject(Box::new(gated))
    }
}

/// Step 1: opt-outs, ignored namespaces, settings, the containers to inject and the ordinal.
fn gate<'p>(pod: &'p PodView, namespace: &str, defaults: &'p Defaults) -> Gate<'p> {
    let opted_out = |map: Option<&'p view::TextMap<'_>>| {
        map.and_then(|m| m.get(INJECT_KEY))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
    };
    if opted_out(pod.metadata.annotations.as_ref()) || opted_out(pod.metadata.labels.as_ref()) {
        return Gate::Skip(SkipReason::OptedOut, None);
    }
    if defaults.ignore_namespaces.iter().any(|ns| ns == namespace) {
        return Gate::Skip(SkipReason::IgnoredNamespace, None);
    }
    let settings = match settings::resolve(defaults, pod.metadata.annotations.as_ref()) {
        Ok(settings) => settings,
        Err(error) => return Gate::Deny(error.into()),
    };
    let id = format!("{namespace}/{}", pod.display_name());
    let (targets, warnings) = find_targets(pod, &settings);
    let Some(broker) = targets
        .iter()
        .find(|t| t.list == ContainerList::Containers)
        .or(targets.first())
        .map(|t| t.container)
    else {
        let seen: Vec<&str> = pod
            .containers()
            .iter()
            .chain(pod.init_containers())
            .map(|c| &*c.name)
            .collect();
        let warning =
            format!(
            "kafka-listener-injector: pod {id} not injected: no container named {} ({}); it has {}",
            settings.containers.join(", "),
            settings.containers_origin,
            if seen.is_empty() { "none".to_owned() } else { seen.join(", ") }
        );
        return Gate::Skip(SkipReason::NoBrokerContainer, Some(warning));
    };
    if !settings.containers_explicit {
        let named_kafka = broker.name == settings::DEFAULT_CONTAINER;
        if let broker::Evidence::NotABroker(what) = broker::judge(broker, named_kafka) {
            let warning = format!(
                "kafka-listener-injector: pod {id} not injected: container {} is not a Kafka broker: {what}; name the broker container with --container or the annotation {} if it is one",
                broker.name,
                settings::Setting::Container.annotation()
            );
            return Gate::Skip(SkipReason::NotABroker, Some(warning));
        }
    }
    let roles = broker.env_value(&PROCESS_ROLES);
    if roles.is_some_and(|(_, roles)| roles.trim().eq_ignore_ascii_case("controller")) {
        return Gate::Skip(SkipReason::ControllerOnly, None);
    }
    let ordinal = match ordinal::derive_ordinal(pod) {
        Ok(ordinal) => ordinal,
        Err(why) => {
            let warning = format!("kafka-listener-injector: pod {id} not injected: {why}");
            return Gate::Skip(SkipReason::NoOrdinal, Some(warning));
        }
    };
    Gated {
        settings,
        targets,
        broker,
        ordinal,
        warnings,
    }
    .into()
}

/// The named containers and init containers present in the pod, and a warning for each
/// explicitly named one that is absent. The built-in default alone falls back to the pod's only
/// container.
fn find_targets<'p>(
    pod: &'p PodView,
    settings: &Resolved<'_>,
) -> (Vec<TargetContainer<'p>>, Vec<String>) {
    let mut targets = Vec::new();
    let mut warnings = Vec::new();
    for name in &settings.containers {
        let found = [ContainerList::Containers, ContainerList::InitContainers]
            .into_iter()
            .find_map(|list| {
                let index = pod.list(list).iter().position(|c| c.name == *name)?;
                Some(TargetContainer {
                    list,
                    index,
                    container: &pod.list(list)[index],
                })
            });
        match found {
            Some(target) => targets.push(target),
            None if settings.containers_explicit => warnings.push(format!(
                "container {name} named by {} is absent from pod {}",
                settings.containers_origin,
                pod.display_name()
            )),
            None => {}
        }
    }
    if targets.is_empty() && !settings.containers_explicit {
        if let [only] = pod.containers() {
            targets.push(TargetContainer {
                list: ContainerList::Containers,
                index: 0,
                container: only,
            });
        }
    }
    if targets.is_empty() {
        warnings.clear(); // the skip's warning names them all
    }
    (targets, warnings)
}

/// Cuts `text` to at most `max` bytes at a character boundary, marking the cut.
fn truncate(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
}

#[cfg(test)]
mod tests;

//! Step 2 of the decision: the values a pod gets (listeners, node id, templated env), each
//! rendered from the settings and checked against what Kafka and Kubernetes accept.

use super::listeners::{self, BrokerListenerConfig};
use super::patch::EnvValue;
use super::settings::{self, Defaults, EnvName, ZONE_FIELD};
use super::template::{Runtime, Values};
use super::view::{ContainerView, PodView};
use super::{
    findings, text, Gated, InjectError, TargetContainer, ADVERTISED_LISTENERS, CONTROLLER_NAMES,
    INTER_BROKER_NAME, LISTENERS, PROCESS_ROLES, PROTOCOL_MAP, QUORUM_VOTERS,
};

/// The rendered values of one pod.
pub(super) struct Rendered<'s> {
    /// `(env var, downward-API field)`: the start-up values the templates refer to, and the rack.
    pub(super) downward: Vec<(&'s str, &'static str)>,
    pub(super) listeners: Option<(String, String)>,
    pub(super) env_name_choice: Option<EnvNameChoice>,
    pub(super) advertised: Option<String>,
    /// `(env var, node id, its text)`
    pub(super) node_id: Option<(&'s str, i64, String)>,
    pub(super) extra_env: Vec<(&'s str, String)>,
    pub(super) warnings: Vec<String>,
}

impl Rendered<'_> {
    /// Every variable to inject, the downward-API ones first: the values after them may refer
    /// to them.
    pub(super) fn env_pairs(&self) -> Vec<(&str, EnvValue<'_>)> {
        self.downward
            .iter()
            .map(|&(name, field)| (name, EnvValue::Field(field)))
            .chain(
                self.listeners
                    .iter()
                    .map(|(n, v)| (n.as_str(), EnvValue::Text(v))),
            )
            .chain(
                self.node_id
                    .iter()
                    .map(|(n, _, value)| (*n, EnvValue::Text(value))),
            )
            .chain(self.extra_env.iter().map(|(n, v)| (*n, EnvValue::Text(v))))
            .collect()
    }

    /// Whether these values would reach the broker's configuration in `targets`.
    pub(super) fn findings(&self, targets: &[TargetContainer<'_>]) -> Vec<String> {
        let names = self.env_names();
        findings::effectiveness(
            targets,
            &findings::Injected {
                names: &names,
                listeners: self
                    .listeners
                    .as_ref()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
            },
        )
    }

    pub(super) fn env_names(&self) -> Vec<&str> {
        self.env_pairs().into_iter().map(|(name, _)| name).collect()
    }
}

/// Step 2: renders every value and checks it against what Kafka accepts.
pub(super) fn render<'s>(
    pod: &PodView,
    namespace: &str,
    defaults: &'s Defaults,
    gated: &'s Gated<'_>,
) -> Result<Rendered<'s>, InjectError> {
    let settings = &gated.settings;
    let broker = gated.broker;
    let values = Values {
        pod: pod.metadata.name.as_deref(),
        ordinal: Some(gated.ordinal.index),
        statefulset: gated.ordinal.statefulset,
        namespace: Some(namespace),
        service: pod.spec.as_ref().and_then(|s| s.subdomain.as_deref()),
        domain: settings.domain,
    };
    let (env_name, env_name_choice) = match &settings.env_name {
        EnvName::None => (None, None),
        EnvName::Named(name) => (Some(name.clone()), Some(EnvNameChoice::Named)),
        EnvName::Auto => {
            let (name, choice) = auto_env_name(broker);
            (Some(name.to_owned()), Some(choice))
        }
    };
    settings.variable_names(env_name.as_deref())?;
    let mut downward: Vec<(&str, &str)> = settings
        .runtime_uses(env_name.is_some())
        .into_iter()
        .map(|(runtime, _)| (runtime.env_name(), runtime.field_path()))
        .collect();
    if let Some(rack_env) = settings.rack_env {
        downward.push((rack_env, ZONE_FIELD));
    }

    let mut warnings = Vec::new();
    let listeners = match env_name {
        // No variable, no checks: the chart's own script builds the value.
        None => None,
        Some(env_name) => {
            let value = render_listeners(defaults, gated, &values, &mut warnings)?;
            Some((env_name, value))
        }
    };
    let node_id = match settings.node_id_env {
        None => None,
        Some(env) => {
            let node_id = node_id(gated)?;
            Some((env, node_id, node_id.to_string()))
        }
    };

    let mut extra_env = Vec::with_capacity(settings.extra_env.len());
    for extra in &settings.extra_env {
        let value = extra
            .template
            .render(&values)
            .map_err(|error| InjectError::Render {
                origin: extra.origin.clone(),
                error,
            })?;
        extra_env.push((extra.name, value));
    }
    check_references(
        gated,
        &Injected {
            downward: &downward,
            listeners: &listeners,
            node_id: &node_id,
            extra_env: &extra_env,
        },
        &mut warnings,
    )?;
    if listeners.is_none() {
        warnings.extend(own_listeners_with_injected(gated.broker, &extra_env));
    }
    let advertised = match &listeners {
        Some((_, value)) => Some(value.clone()),
        None => settings.listeners(defaults).render(&values).ok(),
    };
    Ok(Rendered {
        downward,
        listeners,
        env_name_choice,
        advertised,
        node_id,
        extra_env,
        warnings,
    })
}

/// The advertised listeners, rendered and checked against the broker container's settings.
fn render_listeners(
    defaults: &Defaults,
    gated: &Gated<'_>,
    values: &Values<'_>,
    warnings: &mut Vec<String>,
) -> Result<String, InjectError> {
    let settings = &gated.settings;
    let broker = gated.broker;
    let origin = settings.listeners_origin.clone();
    let value = settings
        .listeners(defaults)
        .render(values)
        .map_err(|error| InjectError::Render {
            origin: origin.clone(),
            error,
        })?;
    let config = BrokerListenerConfig {
        protocol_map: broker.env_value(&PROTOCOL_MAP),
        controller_names: broker.env_value(&CONTROLLER_NAMES),
        listeners: broker.env_value(&LISTENERS),
        inter_broker_name: broker.env_value(&INTER_BROKER_NAME),
    };
    let found = listeners::validate(&value, &config).map_err(|error| InjectError::Listeners {
        origin,
        value: text::clip_to(&value, 512),
        container: broker.name.to_string(),
        error: Box::new(error),
    })?;
    warnings.extend(found);
    Ok(value)
}

/// With `env-name: none`, the advertised listeners the broker will start with when they involve
/// an injected variable: an `--env` that is itself `KAFKA_ADVERTISED_LISTENERS` (or the
/// `KAFKA_CFG_` form), or the container's own value referring to injected variables
/// (`EXTERNAL://$(EXTERNAL_HOST):9094`), checked as the webhook checks its own value. Each fault
/// is a warning, not a denial: the value is built outside the template the webhook validates.
fn own_listeners_with_injected(
    broker: &ContainerView,
    extra_env: &[(&str, String)],
) -> Vec<String> {
    let reference = |variable: &str| format!("$({variable})");
    let (value, what) = match extra_env
        .iter()
        .find(|(variable, _)| ADVERTISED_LISTENERS.contains(variable))
    {
        Some((variable, value)) => (value.clone(), format!("the injected {variable}")),
        None => {
            let Some((name, value)) = broker.env_value(&ADVERTISED_LISTENERS) else {
                return Vec::new();
            };
            let used: Vec<&str> = extra_env
                .iter()
                .map(|(variable, _)| *variable)
                .filter(|variable| value.contains(&reference(variable)))
                .collect();
            if used.is_empty() {
                return Vec::new();
            }
            let expanded = extra_env
                .iter()
                .fold(value.to_owned(), |text, (variable, injected)| {
                    text.replace(&reference(variable), injected)
                });
            let what = format!(
                "container {}'s own {name}, with the injected {},",
                broker.name,
                used.join(", ")
            );
            (expanded, what)
        }
    };
    let config = BrokerListenerConfig {
        protocol_map: broker.env_value(&PROTOCOL_MAP),
        controller_names: broker.env_value(&CONTROLLER_NAMES),
        listeners: broker.env_value(&LISTENERS),
        inter_broker_name: broker.env_value(&INTER_BROKER_NAME),
    };
    match listeners::validate(&value, &config) {
        Ok(warnings) => warnings.iter().map(|w| format!("{what}: {w}")).collect(),
        Err(error) => vec![format!("{what} fails the listener checks: {error}")],
    }
}

/// The ordinal plus the offset, in Kafka's range, and one of the voters of a static quorum.
fn node_id(gated: &Gated<'_>) -> Result<i64, InjectError> {
    let ordinal = gated.ordinal.index;
    let offset = gated.settings.node_id_offset;
    let node_id = ordinal.saturating_add(offset);
    if !(0..=i64::from(i32::MAX)).contains(&node_id) {
        return Err(InjectError::NodeIdOutOfRange {
            node_id,
            ordinal,
            offset,
        });
    }
    check_voter(gated.broker, node_id)?;
    Ok(node_id)
}

/// The variables one pod is given, for [`check_references`].
struct Injected<'r> {
    downward: &'r [(&'r str, &'static str)],
    listeners: &'r Option<(String, String)>,
    node_id: &'r Option<(&'r str, i64, String)>,
    extra_env: &'r [(&'r str, String)],
}

impl Injected<'_> {
    fn defines(&self, name: &str) -> bool {
        self.downward.iter().any(|(n, _)| *n == name)
            || self.listeners.as_ref().is_some_and(|(n, _)| n == name)
            || self.node_id.as_ref().is_some_and(|(n, _, _)| *n == name)
            || self.extra_env.iter().any(|(n, _)| *n == name)
    }
}

/// Every `$(NAME)` reference in an injected value must name a variable the kubelet can expand:
/// one the container defines, or one injected with it. Else the broker would advertise the
/// literal text, which Kafka refuses.
fn check_references(
    gated: &Gated<'_>,
    injected: &Injected<'_>,
    warnings: &mut Vec<String>,
) -> Result<(), InjectError> {
    let settings = &gated.settings;
    let Injected {
        listeners,
        extra_env,
        ..
    } = injected;
    let listeners_value = listeners
        .as_ref()
        .map(|(_, value)| (settings.listeners_origin.clone(), value.as_str()));
    let extra_values = settings
        .extra_env
        .iter()
        .zip(extra_env.iter())
        .map(|(extra, (_, value))| (extra.origin.clone(), value.as_str()));
    for (origin, value) in listeners_value.into_iter().chain(extra_values) {
        for name in text::references(value) {
            if injected.defines(name) {
                continue;
            }
            let missing = gated.targets.iter().find(|target| {
                !target
                    .container
                    .env
                    .iter()
                    .flatten()
                    .any(|var| var.name == name)
            });
            if let Some(target) = missing {
                return Err(InjectError::UndefinedReference {
                    origin,
                    name: name.to_owned(),
                    container: target.container.name.to_string(),
                });
            }
        }
    }
    if let Some((_, value)) = listeners {
        // The start-up values are the node's and the pod's own addresses and names: nothing to
        // warn about. References of the user's own are.
        let mut referenced = text::references(value);
        referenced.retain(|name| !Runtime::ALL.iter().any(|r| r.env_name() == *name));
        if !referenced.is_empty() {
            warnings.push(format!(
                "the advertised listeners refer to $({}), which Kubernetes expands when the container starts: the hosts were checked around those references, not their values",
                referenced.join("), $(")
            ));
        }
    }
    Ok(())
}

/// How the advertised-listeners variable got its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvNameChoice {
    /// `--env-name` or the annotation named it.
    Named,
    /// `auto`: the broker container sets a `KAFKA_CFG_*` variable (Bitnami-style images read only
    /// those).
    AutoBitnami,
    /// `auto`: no `KAFKA_CFG_*` variable; the apache/kafka and cp-kafka images read
    /// `KAFKA_ADVERTISED_LISTENERS`.
    AutoPlain,
    /// `auto`: a bitnami/kafka image, which copies `KAFKA_ADVERTISED_LISTENERS` over
    /// `KAFKA_CFG_ADVERTISED_LISTENERS` after the chart's scripts have run, so the plain name
    /// wins even over a script that exports the `KAFKA_CFG_` one.
    AutoBitnamiAlias,
}

impl EnvNameChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Named => "named by --env-name or the env-name annotation",
            Self::AutoBitnami => "auto: the broker container sets KAFKA_CFG_* variables, the convention of Bitnami-style images",
            Self::AutoPlain => "auto: the broker container sets no KAFKA_CFG_* variable; apache/kafka and cp-kafka read KAFKA_ADVERTISED_LISTENERS",
            Self::AutoBitnamiAlias => "auto: bitnami/kafka images copy KAFKA_ADVERTISED_LISTENERS over KAFKA_CFG_ADVERTISED_LISTENERS after the chart's scripts (libkafka.sh, kafka_create_alias_environment_variables), so the plain name wins",
        }
    }
}

fn auto_env_name(container: &ContainerView) -> (&'static str, EnvNameChoice) {
    let bitnami_image = container
        .image
        .as_deref()
        .is_some_and(|image| image.contains("bitnami/kafka"));
    if bitnami_image {
        return (settings::PLAIN_ENV_NAME, EnvNameChoice::AutoBitnamiAlias);
    }
    let bitnami = container
        .env
        .iter()
        .flatten()
        .any(|var| var.name.starts_with("KAFKA_CFG_"));
    if bitnami {
        (settings::BITNAMI_ENV_NAME, EnvNameChoice::AutoBitnami)
    } else {
        (settings::PLAIN_ENV_NAME, EnvNameChoice::AutoPlain)
    }
}

/// A controller-role node with a static voter set must be one of the voters.
fn check_voter(broker: &ContainerView, node_id: i64) -> Result<(), InjectError> {
    let is_controller = broker.env_value(&PROCESS_ROLES).is_some_and(|(_, roles)| {
        roles
            .split(',')
            .any(|role| role.trim().eq_ignore_ascii_case("controller"))
    });
    let Some((var, voters)) = broker.env_value(&QUORUM_VOTERS).filter(|_| is_controller) else {
        return Ok(());
    };
    let id = node_id.to_string();
    let listed = voters
        .split(',')
        .filter_map(|voter| voter.split_once('@'))
        .any(|(voter_id, _)| voter_id.trim() == id);
    if listed {
        Ok(())
    } else {
        Err(InjectError::NodeIdNotAVoter {
            node_id,
            var: var.to_owned(),
        })
    }
}

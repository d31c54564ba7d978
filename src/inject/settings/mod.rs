//! Injection settings: cluster defaults from flags, overridden per pod by annotations.

mod hashes;
mod resolve;

use self::resolve::{check_domain, check_env_name, check_non_empty};

pub use self::hashes::SettingsHashes;
pub use self::resolve::{annotation, resolve, ExtraEnv, Resolved};

use std::fmt;

use thiserror::Error;

use crate::inject::template::{Template, TemplateError};
use crate::inject::wait::WaitForName;

/// Prefix of every annotation and label this webhook reads or writes.
pub const PREFIX: &str = "kafka-listener-injector.io/";

macro_rules! key {
    ($name:literal) => {
        concat!("kafka-listener-injector.io/", $name)
    };
}
/// `"false"` opts a pod out.
pub const INJECT_KEY: &str = key!("inject");
/// Written on every injected pod: the value the broker was given.
pub const RECORD_KEY: &str = key!("advertised-listeners");
/// Written on every injected pod: a short hash of the settings in force, to tell which pods an
/// upgrade or a settings change would alter.
pub const SETTINGS_KEY: &str = key!("settings");
/// The pod condition (and readiness gate) that `reconcile` sets once the pod's advertised name
/// resolves to its load balancer.
pub const READINESS_GATE: &str = key!("external-name-ready");
/// Prefix of the annotations `env.NAME: TEMPLATE` that add templated variables.
pub const ENV_ANNOTATION_PREFIX: &str = key!("env.");
pub const DEFAULT_LISTENERS: &str =
    "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094";
pub const DEFAULT_CONTAINER: &str = "kafka";
/// The env var of the official and Confluent images, and Bitnami's.
pub const PLAIN_ENV_NAME: &str = "KAFKA_ADVERTISED_LISTENERS";
pub const BITNAMI_ENV_NAME: &str = "KAFKA_CFG_ADVERTISED_LISTENERS";
/// Namespaces never mutated, besides the webhook's own (added by `serve`).
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];
/// The pod label the rack comes from. The API server copies it from the node when it binds the
/// pod (the PodTopologyLabels admission plugin, Kubernetes 1.35+, on by default), so the
/// downward API can read it with no access to the Node.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The downward-API field of [`ZONE_LABEL`].
pub const ZONE_FIELD: &str = "metadata.labels['topology.kubernetes.io/zone']";
/// At most this many templated `--env`/`env.NAME` variables per pod.
pub const MAX_EXTRA_ENV: usize = 32;

/// One setting: its flag and its annotation name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Listeners,
    Domain,
    EnvName,
    Container,
    NodeIdEnv,
    NodeIdOffset,
    RackEnv,
    Strict,
}

impl Setting {
    pub const ALL: [Setting; 8] = [
        Self::Listeners,
        Self::Domain,
        Self::EnvName,
        Self::Container,
        Self::NodeIdEnv,
        Self::NodeIdOffset,
        Self::RackEnv,
        Self::Strict,
    ];

    /// The flag's long name without dashes; its env var is `KLI_` and this in upper snake case.
    pub fn flag_name(self) -> &'static str {
        match self {
            Self::Listeners => "listeners",
            Self::Domain => "domain",
            Self::EnvName => "env-name",
            Self::Container => "container",
            Self::NodeIdEnv => "node-id-env",
            Self::NodeIdOffset => "node-id-offset",
            Self::RackEnv => "rack-env",
            Self::Strict => "strict",
        }
    }

    /// The full annotation key: the prefix and the flag's name.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Listeners => key!("listeners"),
            Self::Domain => key!("domain"),
            Self::EnvName => key!("env-name"),
            Self::Container => key!("container"),
            Self::NodeIdEnv => key!("node-id-env"),
            Self::NodeIdOffset => key!("node-id-offset"),
            Self::RackEnv => key!("rack-env"),
            Self::Strict => key!("strict"),
        }
    }
}

/// Where a setting's value came from, so an error can send the operator to the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(Setting),
    Annotation(Setting),
    /// `--env NAME=...`
    EnvFlag(String),
    /// `kafka-listener-injector.io/env.NAME`
    EnvAnnotation(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(setting) => write!(f, "--{}", setting.flag_name()),
            Self::Annotation(setting) => write!(f, "annotation {}", setting.annotation()),
            Self::EnvFlag(name) => write!(f, "--env {name}"),
            Self::EnvAnnotation(name) => write!(f, "annotation {ENV_ANNOTATION_PREFIX}{name}"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{origin}: {error}")]
    Template {
        origin: Origin,
        error: TemplateError,
    },
    #[error("{origin}: {value:?} is not {expected}")]
    Invalid {
        origin: Origin,
        value: String,
        expected: &'static str,
    },
    #[error("{first} and {second} both set the env var {name}; every injected variable must be distinct")]
    Clash {
        name: String,
        first: Origin,
        second: Origin,
    },
    #[error("more than {MAX_EXTRA_ENV} templated env variables ({origin})")]
    TooManyEnv { origin: Origin },
}

/// Which env var carries the advertised listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvName {
    /// `KAFKA_CFG_ADVERTISED_LISTENERS` when the container configures Kafka through `KAFKA_CFG_*`
    /// (Bitnami-style images), else `KAFKA_ADVERTISED_LISTENERS`.
    Auto,
    /// No advertised-listeners variable: only the templated `--env` variables.
    None,
    Named(String),
}

impl EnvName {
    fn parse(value: &str, origin: Origin) -> Result<Self, SettingsError> {
        Ok(match value.trim() {
            "auto" => Self::Auto,
            "none" => Self::None,
            name => {
                check_env_name(name, origin)?;
                Self::Named(name.to_owned())
            }
        })
    }
}

/// The cluster defaults, validated once at start-up.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub listeners: Template,
    pub domain: Option<String>,
    pub env_name: EnvName,
    /// The containers (or init containers) to inject into.
    pub containers: Vec<String>,
    /// `false` for the built-in default, which falls back to the pod's only container.
    pub containers_explicit: bool,
    pub extra_env: Vec<(String, Template)>,
    pub node_id_env: Option<String>,
    pub node_id_offset: i64,
    /// The variable that gets the broker's rack (its zone), if any.
    pub rack_env: Option<String>,
    pub strict: bool,
    pub ignore_namespaces: Vec<String>,
    /// Add the external-name readiness gate (served by `reconcile`) to each injected pod.
    pub readiness_gate: bool,
    /// Add the `kli-wait-for-name` init container to each injected pod with an external name.
    pub wait_for_name: Option<WaitForName>,
    /// The settings hashes computed so far (each checked against the settings it hashes, so a
    /// changed field is never given a stale hash).
    pub hashes: SettingsHashes,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            listeners: Template::parse(DEFAULT_LISTENERS).expect("the default template parses"),
            domain: None,
            env_name: EnvName::Auto,
            containers: vec![DEFAULT_CONTAINER.into()],
            containers_explicit: false,
            extra_env: Vec::new(),
            node_id_env: None,
            node_id_offset: 0,
            rack_env: None,
            strict: false,
            ignore_namespaces: SYSTEM_NAMESPACES.map(String::from).to_vec(),
            readiness_gate: false,
            wait_for_name: None,
            hashes: SettingsHashes::default(),
        }
    }
}

/// Raw flag values, as the CLI hands them over.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listeners: String,
    pub domain: Option<String>,
    pub env_name: String,
    /// Empty: the default (`kafka`, else the pod's only container).
    pub containers: Vec<String>,
    /// `NAME=TEMPLATE` pairs.
    pub env: Vec<String>,
    pub node_id_env: Option<String>,
    pub node_id_offset: i64,
    pub rack_env: Option<String>,
    pub strict: bool,
    pub ignore_namespaces: Vec<String>,
    pub readiness_gate: bool,
    pub wait_for_name: Option<WaitForName>,
}

impl Defaults {
    /// Validates the flags; errors name the flag.
    pub fn from_flags(flags: Flags) -> Result<Self, SettingsError> {
        let template = |origin: Origin, source: &str| {
            Template::parse(source).map_err(|error| SettingsError::Template { origin, error })
        };
        let listeners = template(Origin::Flag(Setting::Listeners), &flags.listeners)?;
        let domain = match flags.domain {
            None => None,
            Some(domain) => Some(check_domain(&domain, Origin::Flag(Setting::Domain))?.to_owned()),
        };
        let env_name = EnvName::parse(&flags.env_name, Origin::Flag(Setting::EnvName))?;
        for container in &flags.containers {
            check_non_empty(container, Origin::Flag(Setting::Container))?;
        }
        let node_id_env = match flags.node_id_env {
            None => None,
            Some(name) => {
                check_env_name(&name, Origin::Flag(Setting::NodeIdEnv))?;
                Some(name)
            }
        };
        if let Some(name) = &flags.rack_env {
            check_env_name(name, Origin::Flag(Setting::RackEnv))?;
        }
        if flags.env.len() > MAX_EXTRA_ENV {
            return Err(SettingsError::TooManyEnv {
                origin: Origin::Flag(Setting::Listeners),
            });
        }
        let mut extra_env = Vec::new();
        for pair in &flags.env {
            let (name, source) = pair.split_once('=').ok_or_else(|| SettingsError::Invalid {
                origin: Origin::EnvFlag(pair.clone()),
                value: pair.clone(),
                expected: "NAME=TEMPLATE",
            })?;
            check_env_name(name, Origin::EnvFlag(name.into()))?;
            extra_env.push((
                name.to_owned(),
                template(Origin::EnvFlag(name.into()), source)?,
            ));
        }
        let mut ignore_namespaces = SYSTEM_NAMESPACES.map(String::from).to_vec();
        for ns in flags.ignore_namespaces {
            if !ignore_namespaces.contains(&ns) {
                ignore_namespaces.push(ns);
            }
        }
        let containers_explicit = !flags.containers.is_empty();
        let defaults = Self {
            listeners,
            domain,
            env_name,
            containers: if containers_explicit {
                flags.containers
            } else {
                vec![DEFAULT_CONTAINER.into()]
            },
            containers_explicit,
            extra_env,
            node_id_env,
            node_id_offset: flags.node_id_offset,
            rack_env: flags.rack_env,
            strict: flags.strict,
            ignore_namespaces,
            readiness_gate: flags.readiness_gate,
            wait_for_name: flags.wait_for_name,
            hashes: SettingsHashes::default(),
        };
        // With `auto`, either name may be chosen: both must be clear of the other variables.
        let candidates: &[&str] = match &defaults.env_name {
            EnvName::Auto => &[PLAIN_ENV_NAME, BITNAMI_ENV_NAME],
            EnvName::None => &[],
            EnvName::Named(name) => &[name.as_str()],
        };
        let resolved = resolve(&defaults, None)?;
        for candidate in candidates {
            resolved.variable_names(Some(candidate))?;
        }
        if candidates.is_empty() {
            resolved.variable_names(None)?;
        }
        Ok(defaults)
    }
}

#[cfg(test)]
mod tests;

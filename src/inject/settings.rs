//! Injection settings: cluster defaults from flags, overridden per pod by annotations.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

use super::template::{Template, TemplateError};

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
pub const DEFAULT_LISTENERS: &str =
    "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094";
pub const DEFAULT_ENV_NAME: &str = "KAFKA_ADVERTISED_LISTENERS";
pub const DEFAULT_CONTAINER: &str = "kafka";
/// Namespaces never mutated, besides the webhook's own (added by `serve`).
pub const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// One setting: its flag and its annotation name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Listeners,
    Domain,
    EnvName,
    Container,
    NodeIdEnv,
    NodeIdOffset,
}

impl Setting {
    pub fn flag(self) -> &'static str {
        match self {
            Self::Listeners => "--listeners",
            Self::Domain => "--domain",
            Self::EnvName => "--env-name",
            Self::Container => "--container",
            Self::NodeIdEnv => "--node-id-env",
            Self::NodeIdOffset => "--node-id-offset",
        }
    }

    /// The full annotation key.
    pub fn annotation(self) -> &'static str {
        match self {
            Self::Listeners => key!("listeners"),
            Self::Domain => key!("domain"),
            Self::EnvName => key!("env-name"),
            Self::Container => key!("container"),
            Self::NodeIdEnv => key!("node-id-env"),
            Self::NodeIdOffset => key!("node-id-offset"),
        }
    }
}

/// Where a setting's value came from, so an error can send the operator to the right place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag(Setting),
    Annotation(Setting),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(setting) => f.write_str(setting.flag()),
            Self::Annotation(setting) => write!(f, "annotation {}", setting.annotation()),
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
}

/// The cluster defaults, validated once at start-up.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub listeners: Template,
    pub domain: Option<String>,
    pub env_name: String,
    pub container: String,
    pub node_id_env: Option<String>,
    pub node_id_offset: i64,
    pub ignore_namespaces: Vec<String>,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            listeners: Template::parse(DEFAULT_LISTENERS).expect("the default template parses"),
            domain: None,
            env_name: DEFAULT_ENV_NAME.into(),
            container: DEFAULT_CONTAINER.into(),
            node_id_env: None,
            node_id_offset: 0,
            ignore_namespaces: SYSTEM_NAMESPACES.map(String::from).to_vec(),
        }
    }
}

/// Raw flag values, as the CLI hands them over.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub listeners: String,
    pub domain: Option<String>,
    pub env_name: String,
    pub container: String,
    pub node_id_env: Option<String>,
    pub node_id_offset: i64,
    pub ignore_namespaces: Vec<String>,
}

impl Defaults {
    /// Validates the flags; errors name the flag.
    pub fn from_flags(flags: Flags) -> Result<Self, SettingsError> {
        let listeners =
            Template::parse(&flags.listeners).map_err(|error| SettingsError::Template {
                origin: Origin::Flag(Setting::Listeners),
                error,
            })?;
        let domain = flags.domain.filter(|d| !d.is_empty());
        if let Some(domain) = &domain {
            check_domain(domain, Origin::Flag(Setting::Domain))?;
        }
        check_env_name(&flags.env_name, Origin::Flag(Setting::EnvName))?;
        check_non_empty(&flags.container, Origin::Flag(Setting::Container))?;
        let node_id_env = flags.node_id_env.filter(|n| !n.is_empty());
        if let Some(name) = &node_id_env {
            check_env_name(name, Origin::Flag(Setting::NodeIdEnv))?;
        }
        let mut ignore_namespaces = SYSTEM_NAMESPACES.map(String::from).to_vec();
        for ns in flags.ignore_namespaces {
            if !ignore_namespaces.contains(&ns) {
                ignore_namespaces.push(ns);
            }
        }
        Ok(Self {
            listeners,
            domain,
            env_name: flags.env_name,
            container: flags.container,
            node_id_env,
            node_id_offset: flags.node_id_offset,
            ignore_namespaces,
        })
    }
}

/// The settings in force for one pod. Borrows from the defaults and the pod's annotations.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// `None` when the pod does not override the default template.
    pub listeners_override: Option<Template>,
    pub listeners_origin: Origin,
    pub domain: Option<&'a str>,
    pub env_name: &'a str,
    pub container: &'a str,
    pub node_id_env: Option<&'a str>,
    pub node_id_offset: i64,
}

impl<'a> Resolved<'a> {
    pub fn listeners<'t>(&'t self, defaults: &'t Defaults) -> &'t Template {
        self.listeners_override
            .as_ref()
            .unwrap_or(&defaults.listeners)
    }
}

/// Reads the annotation of `setting`, if any.
pub fn annotation(
    annotations: Option<&BTreeMap<String, String>>,
    setting: Setting,
) -> Option<&str> {
    annotations?.get(setting.annotation()).map(String::as_str)
}

/// Merges the defaults with the pod's annotations; errors name the annotation.
pub fn resolve<'a>(
    defaults: &'a Defaults,
    annotations: Option<&'a BTreeMap<String, String>>,
) -> Result<Resolved<'a>, SettingsError> {
    let mut resolved = Resolved {
        listeners_override: None,
        listeners_origin: Origin::Flag(Setting::Listeners),
        domain: defaults.domain.as_deref(),
        env_name: &defaults.env_name,
        container: &defaults.container,
        node_id_env: defaults.node_id_env.as_deref(),
        node_id_offset: defaults.node_id_offset,
    };
    if annotations.is_none() {
        return Ok(resolved);
    }
    if let Some(value) = annotation(annotations, Setting::Listeners) {
        let origin = Origin::Annotation(Setting::Listeners);
        resolved.listeners_override = Some(
            Template::parse(value).map_err(|error| SettingsError::Template { origin, error })?,
        );
        resolved.listeners_origin = origin;
    }
    if let Some(value) = annotation(annotations, Setting::Domain) {
        check_domain(value, Origin::Annotation(Setting::Domain))?;
        resolved.domain = Some(value);
    }
    if let Some(value) = annotation(annotations, Setting::EnvName) {
        check_env_name(value, Origin::Annotation(Setting::EnvName))?;
        resolved.env_name = value;
    }
    if let Some(value) = annotation(annotations, Setting::Container) {
        check_non_empty(value, Origin::Annotation(Setting::Container))?;
        resolved.container = value;
    }
    if let Some(value) = annotation(annotations, Setting::NodeIdEnv) {
        // An empty annotation turns a cluster-wide node id off for this pod.
        if value.is_empty() {
            resolved.node_id_env = None;
        } else {
            check_env_name(value, Origin::Annotation(Setting::NodeIdEnv))?;
            resolved.node_id_env = Some(value);
        }
    }
    if let Some(value) = annotation(annotations, Setting::NodeIdOffset) {
        resolved.node_id_offset = value.trim().parse().map_err(|_| SettingsError::Invalid {
            origin: Origin::Annotation(Setting::NodeIdOffset),
            value: value.into(),
            expected: "an integer",
        })?;
    }
    Ok(resolved)
}

/// `Ok` when `valid`, else the error naming where `value` came from and what it should be.
fn require(
    valid: bool,
    value: &str,
    origin: Origin,
    expected: &'static str,
) -> Result<(), SettingsError> {
    if valid {
        return Ok(());
    }
    Err(SettingsError::Invalid {
        origin,
        value: value.into(),
        expected,
    })
}

fn check_non_empty(value: &str, origin: Origin) -> Result<(), SettingsError> {
    require(!value.trim().is_empty(), value, origin, "a non-empty name")
}

fn check_env_name(value: &str, origin: Origin) -> Result<(), SettingsError> {
    let mut bytes = value.bytes();
    let valid = matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    let expected = "an environment variable name ([A-Za-z_][A-Za-z0-9_.-]*)";
    require(valid, value, origin, expected)
}

fn check_domain(value: &str, origin: Origin) -> Result<(), SettingsError> {
    let valid = super::listeners::is_dns_name(value);
    require(valid, value, origin, "a DNS name (RFC 1123)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect()
    }

    #[test]
    fn annotations_override_flags() {
        let defaults = Defaults {
            domain: Some("a.example.com".into()),
            ..Defaults::default()
        };
        let annotations = annotations(&[
            ("domain", "b.example.com"),
            ("env-name", "KAFKA_CFG_ADVERTISED_LISTENERS"),
            ("container", "broker"),
            ("node-id-env", "KAFKA_NODE_ID"),
            ("node-id-offset", "100"),
            ("listeners", "EXTERNAL://{pod}.{domain}:9094"),
        ]);
        let resolved = resolve(&defaults, Some(&annotations)).unwrap();
        assert_eq!(resolved.domain, Some("b.example.com"));
        assert_eq!(resolved.env_name, "KAFKA_CFG_ADVERTISED_LISTENERS");
        assert_eq!(resolved.container, "broker");
        assert_eq!(resolved.node_id_env, Some("KAFKA_NODE_ID"));
        assert_eq!(resolved.node_id_offset, 100);
        assert_eq!(
            resolved.listeners(&defaults).as_str(),
            "EXTERNAL://{pod}.{domain}:9094"
        );
    }

    #[test]
    fn bad_annotation_names_the_annotation() {
        let defaults = Defaults::default();
        let annotations = annotations(&[("node-id-offset", "ten")]);
        let err = resolve(&defaults, Some(&annotations)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "annotation kafka-listener-injector.io/node-id-offset: \"ten\" is not an integer"
        );
        let annotations = self::annotations(&[("listeners", "E://{host}:1")]);
        let err = resolve(&defaults, Some(&annotations)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "annotation kafka-listener-injector.io/listeners: unknown placeholder {host}"
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_flag_names_the_flag() {
        let flags = Flags {
            listeners: "E://{nope}:1".into(),
            env_name: DEFAULT_ENV_NAME.into(),
            container: "kafka".into(),
            ..Flags::default()
        };
        let err = Defaults::from_flags(flags).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--listeners: unknown placeholder {nope}"),
            "{err}"
        );
        let flags = Flags {
            listeners: DEFAULT_LISTENERS.into(),
            env_name: "1BAD".into(),
            container: "kafka".into(),
            ..Flags::default()
        };
        assert!(Defaults::from_flags(flags)
            .unwrap_err()
            .to_string()
            .starts_with("--env-name:"));
    }

    #[test]
    fn ignore_list_always_holds_the_system_namespaces() {
        let flags = Flags {
            listeners: DEFAULT_LISTENERS.into(),
            env_name: DEFAULT_ENV_NAME.into(),
            container: "kafka".into(),
            ignore_namespaces: vec!["webhooks".into(), "kube-system".into()],
            ..Flags::default()
        };
        let defaults = Defaults::from_flags(flags).unwrap();
        assert_eq!(
            defaults.ignore_namespaces,
            ["kube-system", "kube-public", "kube-node-lease", "webhooks"]
        );
    }

    #[test]
    fn unrelated_annotations_are_ignored() {
        let mut annotations = annotations(&[("domain", "x.example.com")]);
        annotations.insert("kafka-listener-injector.io".into(), "odd".into());
        annotations.insert("zzz/domain".into(), "nope".into());
        assert_eq!(
            annotation(Some(&annotations), Setting::Domain),
            Some("x.example.com")
        );
    }
}

//! Injection settings: cluster defaults from flags, overridden per pod by annotations.

use std::fmt;
use std::fmt::Write as _;
use std::ops::Bound;

use thiserror::Error;

use super::template::{Template, TemplateError};
use super::view::TextMap;

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
    Strict,
}

impl Setting {
    pub const ALL: [Setting; 7] = [
        Self::Listeners,
        Self::Domain,
        Self::EnvName,
        Self::Container,
        Self::NodeIdEnv,
        Self::NodeIdOffset,
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
    pub strict: bool,
    pub ignore_namespaces: Vec<String>,
    /// Add the external-name readiness gate (served by `reconcile`) to each injected pod.
    pub readiness_gate: bool,
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
            strict: false,
            ignore_namespaces: SYSTEM_NAMESPACES.map(String::from).to_vec(),
            readiness_gate: false,
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
    pub strict: bool,
    pub ignore_namespaces: Vec<String>,
    pub readiness_gate: bool,
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
            strict: flags.strict,
            ignore_namespaces,
            readiness_gate: flags.readiness_gate,
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

/// One templated variable in force for a pod.
#[derive(Debug)]
pub struct ExtraEnv<'a> {
    pub name: &'a str,
    pub template: std::borrow::Cow<'a, Template>,
    pub origin: Origin,
}

/// The settings in force for one pod. Borrows from the defaults and the pod's annotations.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// `None` when the pod does not override the default template.
    pub listeners_override: Option<Template>,
    pub listeners_origin: Origin,
    pub domain: Option<&'a str>,
    pub env_name: EnvName,
    pub env_name_origin: Origin,
    pub containers: Vec<&'a str>,
    pub containers_explicit: bool,
    pub containers_origin: Origin,
    pub extra_env: Vec<ExtraEnv<'a>>,
    pub node_id_env: Option<&'a str>,
    pub node_id_env_origin: Origin,
    pub node_id_offset: i64,
    pub strict: bool,
}

impl<'a> Resolved<'a> {
    pub fn listeners<'t>(&'t self, defaults: &'t Defaults) -> &'t Template {
        self.listeners_override
            .as_ref()
            .unwrap_or(&defaults.listeners)
    }

    /// The names of every variable injected, with where each came from; two equal names are a
    /// configuration error naming both settings (the patch would set the variable twice).
    pub fn variable_names(
        &self,
        listeners_env: Option<&str>,
    ) -> Result<Vec<(String, Origin)>, SettingsError> {
        let mut names: Vec<(String, Origin)> = Vec::new();
        let mut push = |name: &str, origin: Origin| match names.iter().find(|(n, _)| n == name) {
            Some((_, first)) => Err(SettingsError::Clash {
                name: name.to_owned(),
                first: first.clone(),
                second: origin,
            }),
            None => {
                names.push((name.to_owned(), origin));
                Ok(())
            }
        };
        if let Some(name) = listeners_env {
            push(name, self.env_name_origin.clone())?;
        }
        if let Some(name) = self.node_id_env {
            push(name, self.node_id_env_origin.clone())?;
        }
        for extra in &self.extra_env {
            push(extra.name, extra.origin.clone())?;
        }
        Ok(names)
    }
}

impl Resolved<'_> {
    /// A short, stable hash of everything that decides what is injected: the same settings give
    /// the same hash in every version that renders them the same way.
    pub fn fingerprint(&self, defaults: &Defaults, listeners_env: Option<&str>) -> String {
        let mut text = format!(
            "listeners={}\ndomain={}\nenv={}\ncontainers={}\nnode-id={}{:+}\n",
            self.listeners(defaults).as_str(),
            self.domain.unwrap_or(""),
            listeners_env.unwrap_or("none"),
            self.containers.join(","),
            self.node_id_env.unwrap_or(""),
            self.node_id_offset,
        );
        for extra in &self.extra_env {
            let _ = writeln!(text, "env.{}={}", extra.name, extra.template.as_str());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        // The first four bytes in hex: `text` is reused to hold them.
        text.clear();
        for byte in &digest.as_ref()[..4] {
            let _ = write!(text, "{byte:02x}");
        }
        text
    }
}

/// Reads the annotation of `setting`, if any.
pub fn annotation<'a>(annotations: Option<&'a TextMap<'_>>, setting: Setting) -> Option<&'a str> {
    annotations?.get(setting.annotation()).map(|value| &**value)
}

/// Merges the defaults with the pod's annotations; errors name the annotation.
pub fn resolve<'a>(
    defaults: &'a Defaults,
    annotations: Option<&'a TextMap<'_>>,
) -> Result<Resolved<'a>, SettingsError> {
    let mut resolved = Resolved {
        listeners_override: None,
        listeners_origin: Origin::Flag(Setting::Listeners),
        domain: defaults.domain.as_deref(),
        env_name: defaults.env_name.clone(),
        env_name_origin: Origin::Flag(Setting::EnvName),
        containers: defaults.containers.iter().map(String::as_str).collect(),
        containers_explicit: defaults.containers_explicit,
        containers_origin: Origin::Flag(Setting::Container),
        extra_env: defaults
            .extra_env
            .iter()
            .map(|(name, template)| ExtraEnv {
                name,
                template: std::borrow::Cow::Borrowed(template),
                origin: Origin::EnvFlag(name.clone()),
            })
            .collect(),
        node_id_env: defaults.node_id_env.as_deref(),
        node_id_env_origin: Origin::Flag(Setting::NodeIdEnv),
        node_id_offset: defaults.node_id_offset,
        strict: defaults.strict,
    };
    let Some(map) = annotations else {
        return Ok(resolved);
    };
    if let Some(value) = annotation(annotations, Setting::Listeners) {
        let origin = Origin::Annotation(Setting::Listeners);
        let template = Template::parse(value).map_err(|error| SettingsError::Template {
            origin: origin.clone(),
            error,
        })?;
        resolved.listeners_override = Some(template);
        resolved.listeners_origin = origin;
    }
    if let Some(value) = annotation(annotations, Setting::Domain) {
        resolved.domain = Some(check_domain(value, Origin::Annotation(Setting::Domain))?);
    }
    if let Some(value) = annotation(annotations, Setting::EnvName) {
        resolved.env_name = EnvName::parse(value, Origin::Annotation(Setting::EnvName))?;
        resolved.env_name_origin = Origin::Annotation(Setting::EnvName);
    }
    if let Some(value) = annotation(annotations, Setting::Container) {
        let origin = Origin::Annotation(Setting::Container);
        let names: Vec<&str> = value.split(',').map(str::trim).collect();
        for name in &names {
            check_non_empty(name, origin.clone())?;
        }
        resolved.containers = names;
        resolved.containers_explicit = true;
        resolved.containers_origin = origin;
    }
    if let Some(value) = annotation(annotations, Setting::NodeIdEnv) {
        // An empty annotation turns a cluster-wide node id off for this pod.
        if value.is_empty() {
            resolved.node_id_env = None;
        } else {
            check_env_name(value, Origin::Annotation(Setting::NodeIdEnv))?;
            resolved.node_id_env = Some(value);
        }
        resolved.node_id_env_origin = Origin::Annotation(Setting::NodeIdEnv);
    }
    if let Some(value) = annotation(annotations, Setting::NodeIdOffset) {
        resolved.node_id_offset = value.trim().parse().map_err(|_| SettingsError::Invalid {
            origin: Origin::Annotation(Setting::NodeIdOffset),
            value: clip(value),
            expected: "an integer",
        })?;
    }
    if let Some(value) = annotation(annotations, Setting::Strict) {
        resolved.strict = match value.trim() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(SettingsError::Invalid {
                    origin: Origin::Annotation(Setting::Strict),
                    value: clip(value),
                    expected: "\"true\" or \"false\"",
                })
            }
        };
    }
    let from_the_prefix = (Bound::Included(ENV_ANNOTATION_PREFIX), Bound::Unbounded);
    for (key, source) in map.range::<str, _>(from_the_prefix) {
        let Some(name) = key.strip_prefix(ENV_ANNOTATION_PREFIX) else {
            break; // past the prefix in the sorted map
        };
        let origin = Origin::EnvAnnotation(name.to_owned());
        check_env_name(name, origin.clone())?;
        let template = Template::parse(source).map_err(|error| SettingsError::Template {
            origin: origin.clone(),
            error,
        })?;
        let extra = ExtraEnv {
            name,
            template: std::borrow::Cow::Owned(template),
            origin,
        };
        // An annotation replaces the flag's variable of the same name.
        let full = resolved.extra_env.len() == MAX_EXTRA_ENV;
        match resolved.extra_env.iter_mut().find(|e| e.name == name) {
            Some(existing) => *existing = extra,
            None if full => {
                return Err(SettingsError::TooManyEnv {
                    origin: extra.origin,
                })
            }
            None => resolved.extra_env.push(extra),
        }
    }
    Ok(resolved)
}

/// A value quoted in a message, cut short: messages name the fault, not whole inputs.
pub fn clip(value: &str) -> String {
    clip_to(value, 64)
}

/// `value`, cut after `max` characters with a marker.
pub fn clip_to(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        None => value.to_owned(),
        Some((end, _)) => format!("{}...", &value[..end]),
    }
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
        value: clip(value),
        expected,
    })
}

fn check_non_empty(value: &str, origin: Origin) -> Result<(), SettingsError> {
    require(!value.trim().is_empty(), value, origin, "a non-empty name")
}

fn check_env_name(value: &str, origin: Origin) -> Result<(), SettingsError> {
    let mut bytes = value.bytes();
    let valid = value.len() <= 253
        && matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    let expected = "an environment variable name ([A-Za-z_][A-Za-z0-9_.-]*)";
    require(valid, value, origin, expected)
}

/// A DNS name (RFC 1123); a trailing dot (a fully qualified name) is accepted and dropped.
fn check_domain(value: &str, origin: Origin) -> Result<&str, SettingsError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    let valid = super::listeners::is_dns_name(name);
    require(valid, value, origin, "a DNS name (RFC 1123)")?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> TextMap<'static> {
        pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}").into(), v.to_string().into()))
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
        assert_eq!(
            resolved.env_name,
            EnvName::Named("KAFKA_CFG_ADVERTISED_LISTENERS".into())
        );
        assert_eq!(resolved.containers, ["broker"]);
        assert!(resolved.containers_explicit);
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
            env_name: "auto".into(),
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
            env_name: "auto".into(),
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
    fn templated_env_comes_from_flags_and_annotations_which_override_them() {
        let flags = Flags {
            listeners: DEFAULT_LISTENERS.into(),
            env_name: "none".into(),
            env: vec![
                "EXTERNAL_HOST={pod}.{domain}".into(),
                "PORT={ordinal+31090}".into(),
            ],
            ..Flags::default()
        };
        let defaults = Defaults::from_flags(flags).unwrap();
        let annotations = annotations(&[("env.PORT", "{ordinal+9000}"), ("env.ZONE", "a")]);
        let resolved = resolve(&defaults, Some(&annotations)).unwrap();
        let extra: Vec<(&str, &str, String)> = resolved
            .extra_env
            .iter()
            .map(|e| (e.name, e.template.as_str(), e.origin.to_string()))
            .collect();
        assert_eq!(
            extra,
            [
                (
                    "EXTERNAL_HOST",
                    "{pod}.{domain}",
                    "--env EXTERNAL_HOST".into()
                ),
                (
                    "PORT",
                    "{ordinal+9000}",
                    "annotation kafka-listener-injector.io/env.PORT".into()
                ),
                (
                    "ZONE",
                    "a",
                    "annotation kafka-listener-injector.io/env.ZONE".into()
                ),
            ]
        );
    }

    #[test]
    fn every_injected_variable_name_is_distinct() {
        let flags = Flags {
            listeners: DEFAULT_LISTENERS.into(),
            env_name: "auto".into(),
            node_id_env: Some("KAFKA_ADVERTISED_LISTENERS".into()),
            ..Flags::default()
        };
        assert_eq!(
            Defaults::from_flags(flags).unwrap_err().to_string(),
            "--env-name and --node-id-env both set the env var KAFKA_ADVERTISED_LISTENERS; \
             every injected variable must be distinct"
        );
        let flags = Flags {
            listeners: DEFAULT_LISTENERS.into(),
            env_name: "none".into(),
            env: vec!["KAFKA_NODE_ID=1".into()],
            node_id_env: Some("KAFKA_NODE_ID".into()),
            ..Flags::default()
        };
        assert!(Defaults::from_flags(flags).is_err());
        let defaults = Defaults {
            node_id_env: Some("KAFKA_NODE_ID".into()),
            ..Defaults::default()
        };
        let annotations = annotations(&[("node-id-env", "KAFKA_CFG_ADVERTISED_LISTENERS")]);
        let resolved = resolve(&defaults, Some(&annotations)).unwrap();
        assert_eq!(
            resolved
                .variable_names(Some("KAFKA_CFG_ADVERTISED_LISTENERS"))
                .unwrap_err()
                .to_string(),
            "--env-name and annotation kafka-listener-injector.io/node-id-env both set the env var \
             KAFKA_CFG_ADVERTISED_LISTENERS; every injected variable must be distinct"
        );
    }

    #[test]
    fn a_domain_may_be_written_fully_qualified() {
        let defaults = Defaults::default();
        let annotations = annotations(&[("domain", "kafka.example.com.")]);
        let resolved = resolve(&defaults, Some(&annotations)).unwrap();
        assert_eq!(resolved.domain, Some("kafka.example.com"));
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

//! The settings in force for one pod: the cluster defaults overridden by its annotations, each
//! value checked once and remembered with where it came from.

use std::fmt::Write as _;
use std::ops::Bound;

use super::super::template::{Runtime, Template};
use super::super::view::TextMap;
use super::{
    Defaults, EnvName, Origin, Setting, SettingsError, ENV_ANNOTATION_PREFIX, MAX_EXTRA_ENV,
};
use crate::inject::text::{clip, is_dns_name};

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
    pub rack_env: Option<&'a str>,
    pub rack_env_origin: Origin,
    /// The cluster's listeners template, in force unless `listeners_override` is set.
    default_listeners: &'a Template,
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
        if let Some(name) = self.rack_env {
            push(name, self.rack_env_origin.clone())?;
        }
        for extra in &self.extra_env {
            push(extra.name, extra.origin.clone())?;
        }
        for (runtime, origin) in self.runtime_uses(listeners_env.is_some()) {
            push(runtime.env_name(), origin)?;
        }
        Ok(names)
    }

    /// The start-up values (`{hostIP}`, ...) the injected templates refer to, each once, with
    /// the first setting that uses it; the listeners count only when their variable is injected.
    pub fn runtime_uses(&self, listeners_injected: bool) -> Vec<(Runtime, Origin)> {
        let listeners = self
            .listeners_override
            .as_ref()
            .unwrap_or(self.default_listeners);
        let mut uses: Vec<(Runtime, Origin)> = Vec::new();
        let templates = listeners_injected
            .then(|| (listeners, self.listeners_origin.clone()))
            .into_iter()
            .chain(
                self.extra_env
                    .iter()
                    .map(|extra| (&*extra.template, extra.origin.clone())),
            );
        for (template, origin) in templates {
            for runtime in template.runtime() {
                if !uses.iter().any(|(r, _)| *r == runtime) {
                    uses.push((runtime, origin.clone()));
                }
            }
        }
        uses.sort_by_key(|(runtime, _)| *runtime);
        uses
    }
}

impl Resolved<'_> {
    /// A short, stable hash of everything that decides what is injected: the same settings give
    /// the same hash in every version that renders them the same way.
    /// Computed once per distinct settings and remembered in `defaults`.
    pub fn fingerprint(&self, defaults: &Defaults, listeners_env: Option<&str>) -> String {
        (defaults.hashes).get_or_compute(self, defaults, listeners_env, || {
            self.compute_fingerprint(defaults, listeners_env)
        })
    }

    /// Every setting read here must also be in the key of `hashes`, which decides when a
    /// remembered hash is given again.
    fn compute_fingerprint(&self, defaults: &Defaults, listeners_env: Option<&str>) -> String {
        // Every field named: a setting added to `Resolved` does not build here until it is
        // hashed (and copied into the key of `hashes`) or said not to change what is injected.
        let Self {
            listeners_override: _, // through self.listeners()
            default_listeners: _,  // through self.listeners()
            domain,
            env_name: _, // through listeners_env, the name it chose for the container
            containers,
            extra_env,
            node_id_env,
            node_id_offset,
            rack_env,
            containers_explicit: _, // which containers, not how they are injected
            strict: _,              // whether a warning denies, not what is injected
            listeners_origin: _,
            env_name_origin: _,
            containers_origin: _,
            node_id_env_origin: _,
            rack_env_origin: _,
        } = self;
        let mut text = format!(
            "listeners={}\ndomain={}\nenv={}\ncontainers={}\nnode-id={}{:+}\n",
            self.listeners(defaults).as_str(),
            domain.unwrap_or(""),
            listeners_env.unwrap_or("none"),
            containers.join(","),
            node_id_env.unwrap_or(""),
            node_id_offset,
        );
        // Only when set, so that the hash of every pod without a rack stays what it was.
        if let Some(rack_env) = rack_env {
            let _ = writeln!(text, "rack={rack_env}");
        }
        for extra in extra_env {
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
        rack_env: defaults.rack_env.as_deref(),
        rack_env_origin: Origin::Flag(Setting::RackEnv),
        default_listeners: &defaults.listeners,
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
        resolved.node_id_env = optional_env_name(value, Setting::NodeIdEnv)?;
        resolved.node_id_env_origin = Origin::Annotation(Setting::NodeIdEnv);
    }
    if let Some(value) = annotation(annotations, Setting::RackEnv) {
        resolved.rack_env = optional_env_name(value, Setting::RackEnv)?;
        resolved.rack_env_origin = Origin::Annotation(Setting::RackEnv);
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

/// The variable an annotation names for an optional setting (node id, rack); an empty annotation
/// turns the cluster-wide setting off for this pod.
fn optional_env_name(value: &str, setting: Setting) -> Result<Option<&str>, SettingsError> {
    if value.is_empty() {
        return Ok(None);
    }
    check_env_name(value, Origin::Annotation(setting))?;
    Ok(Some(value))
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

pub(super) fn check_non_empty(value: &str, origin: Origin) -> Result<(), SettingsError> {
    require(!value.trim().is_empty(), value, origin, "a non-empty name")
}

pub(super) fn check_env_name(value: &str, origin: Origin) -> Result<(), SettingsError> {
    let mut bytes = value.bytes();
    let valid = value.len() <= 253
        && matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    let expected = "an environment variable name ([A-Za-z_][A-Za-z0-9_.-]*)";
    require(valid, value, origin, expected)
}

/// A DNS name (RFC 1123); a trailing dot (a fully qualified name) is accepted and dropped.
pub(super) fn check_domain(value: &str, origin: Origin) -> Result<&str, SettingsError> {
    let name = value.strip_suffix('.').unwrap_or(value);
    let valid = is_dns_name(name);
    require(valid, value, origin, "a DNS name (RFC 1123)")?;
    Ok(name)
}

//! The settings hashes a `Defaults` has already computed. The hash depends only on the settings
//! in force, which are the same for nearly every pod, so SHA-256 need not run per review: a hash
//! is kept with a copy of the settings it was computed from and given again only when the pod's
//! resolved settings equal that copy. The cache belongs to the `Defaults` (no global state), is
//! filled once per slot and never changes after, so readers take no lock.

use std::sync::OnceLock;

use super::Defaults;
use super::Resolved;

/// Distinct settings remembered: the defaults with each of the two names `auto` may choose, and
/// a couple of clusters that override them by annotation. Further ones are hashed per review.
const SLOTS: usize = 4;

/// Settings hashes already computed, each with the settings it hashes.
#[derive(Debug, Clone, Default)]
pub struct SettingsHashes {
    slots: [OnceLock<(Key, String)>; SLOTS],
}

/// A copy of everything [`Resolved::fingerprint`] reads: a setting the hash reads and this key
/// lacks would give a pod the hash of other settings.
#[derive(Debug, Clone, PartialEq)]
struct Key {
    listeners: String,
    domain: Option<String>,
    listeners_env: Option<String>,
    containers: Vec<String>,
    node_id_env: Option<String>,
    node_id_offset: i64,
    rack_env: Option<String>,
    extra_env: Vec<(String, String)>,
}

impl Key {
    fn of(settings: &Resolved<'_>, defaults: &Defaults, listeners_env: Option<&str>) -> Self {
        Self {
            listeners: settings.listeners(defaults).as_str().to_owned(),
            domain: settings.domain.map(str::to_owned),
            listeners_env: listeners_env.map(str::to_owned),
            containers: settings
                .containers
                .iter()
                .map(|c| (*c).to_owned())
                .collect(),
            node_id_env: settings.node_id_env.map(str::to_owned),
            node_id_offset: settings.node_id_offset,
            rack_env: settings.rack_env.map(str::to_owned),
            extra_env: (settings.extra_env.iter())
                .map(|e| (e.name.to_owned(), e.template.as_str().to_owned()))
                .collect(),
        }
    }

    fn matches(&self, settings: &Resolved<'_>, defaults: &Defaults, env: Option<&str>) -> bool {
        self.listeners == settings.listeners(defaults).as_str()
            && self.domain.as_deref() == settings.domain
            && self.listeners_env.as_deref() == env
            && self
                .containers
                .iter()
                .eq(settings.containers.iter().copied())
            && self.node_id_env.as_deref() == settings.node_id_env
            && self.node_id_offset == settings.node_id_offset
            && self.rack_env.as_deref() == settings.rack_env
            && self.extra_env.len() == settings.extra_env.len()
            && (self.extra_env.iter().zip(&settings.extra_env))
                .all(|((name, template), e)| name == e.name && template == e.template.as_str())
    }
}

impl SettingsHashes {
    /// The hash of `settings`, computed by `hash` unless it was already.
    pub(super) fn get_or_compute(
        &self,
        settings: &Resolved<'_>,
        defaults: &Defaults,
        listeners_env: Option<&str>,
        hash: impl FnOnce() -> String,
    ) -> String {
        for slot in &self.slots {
            match slot.get() {
                Some((key, hash)) if key.matches(settings, defaults, listeners_env) => {
                    return hash.clone()
                }
                Some(_) => continue,
                None => {
                    let computed = hash();
                    // Another thread may have filled the slot meanwhile; the hash is right anyway.
                    let _ =
                        slot.set((Key::of(settings, defaults, listeners_env), computed.clone()));
                    return computed;
                }
            }
        }
        hash()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{resolve, Defaults, Setting};
    use crate::inject::view::TextMap;

    fn hash(defaults: &Defaults, env: &str) -> String {
        resolve(defaults, None)
            .unwrap()
            .fingerprint(defaults, Some(env))
    }

    #[test]
    fn a_remembered_hash_is_given_only_for_the_same_settings() {
        let mut defaults = Defaults {
            domain: Some("a.example.com".into()),
            ..Defaults::default()
        };
        let first = hash(&defaults, "KAFKA_ADVERTISED_LISTENERS");
        assert_eq!(hash(&defaults, "KAFKA_ADVERTISED_LISTENERS"), first);
        assert_ne!(hash(&defaults, "KAFKA_CFG_ADVERTISED_LISTENERS"), first);
        // A field changed after the cache was filled: hashed afresh, as by new defaults.
        defaults.domain = Some("b.example.com".into());
        let fresh = Defaults {
            hashes: Default::default(),
            ..defaults.clone()
        };
        let changed = hash(&defaults, "KAFKA_ADVERTISED_LISTENERS");
        assert_ne!(changed, first);
        assert_eq!(changed, hash(&fresh, "KAFKA_ADVERTISED_LISTENERS"));
        // More distinct settings than slots: still right, hashed per call.
        for n in 0..8 {
            defaults.node_id_offset = n;
            let fresh = Defaults {
                hashes: Default::default(),
                ..defaults.clone()
            };
            assert_eq!(hash(&defaults, "X"), hash(&fresh, "X"));
        }
    }

    /// Every setting the hash reads is in the key: a rack variable (by flag or by annotation)
    /// changes the hash, so a pod with one is never given the hash remembered for a pod without.
    #[test]
    fn a_rack_variable_is_part_of_the_remembered_settings() {
        let env = "KAFKA_ADVERTISED_LISTENERS";
        let mut defaults = Defaults {
            domain: Some("a.example.com".into()),
            ..Defaults::default()
        };
        let without = hash(&defaults, env);
        let annotations = TextMap::from([(
            Setting::RackEnv.annotation().into(),
            "KAFKA_BROKER_RACK".into(),
        )]);
        let by_annotation = |defaults: &Defaults| {
            resolve(defaults, Some(&annotations))
                .unwrap()
                .fingerprint(defaults, Some(env))
        };
        let fresh = |defaults: &Defaults| Defaults {
            hashes: Default::default(),
            ..defaults.clone()
        };
        let annotated = by_annotation(&defaults);
        assert_ne!(annotated, without);
        assert_eq!(annotated, by_annotation(&fresh(&defaults)));
        assert_eq!(hash(&defaults, env), without);
        // The same variable set by flag after the cache was filled.
        defaults.rack_env = Some("KAFKA_BROKER_RACK".into());
        assert_eq!(hash(&defaults, env), hash(&fresh(&defaults), env));
        assert_eq!(hash(&defaults, env), annotated);
    }
}

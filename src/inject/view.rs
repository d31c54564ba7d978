//! The pod as the injection core sees it: only the fields its rules read. It is the one way into
//! the core. `serve` deserializes it straight from the AdmissionReview bytes (skipping every other
//! field unparsed, which is most of the work saved), and `preview` builds it from a manifest `Pod`
//! through the very same deserializer, so the two can never see different pods. A rule that needs
//! another field must add it here, where both paths get it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, Pod};
use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodView {
    #[serde(default)]
    pub metadata: MetaView,
    #[serde(default)]
    pub spec: Option<SpecView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub owner_references: Option<Vec<OwnerView>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    #[serde(default)]
    pub subdomain: Option<String>,
    // Every container is kept, in order, so that patch indexes match the stored pod.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub init_containers: Vec<ContainerView>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub readiness_gates: Vec<ReadinessGateView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessGateView {
    #[serde(default)]
    pub condition_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub name: String,
    #[serde(default)]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default)]
    pub env_from: Option<Vec<EnvFromView>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub volume_mounts: Option<Vec<MountView>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromView {
    #[serde(default)]
    pub config_map_ref: Option<NameRef>,
    #[serde(default)]
    pub secret_ref: Option<NameRef>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NameRef {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountView {
    #[serde(default)]
    pub mount_path: String,
    #[serde(default)]
    pub sub_path: Option<String>,
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Which of the pod's container lists a container is in: the JSON patch paths differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerList {
    Containers,
    InitContainers,
}

impl ContainerList {
    /// The field name in the pod spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::Containers => "containers",
            Self::InitContainers => "initContainers",
        }
    }
}

impl PodView {
    /// The view of a manifest pod, through the same deserializer `serve` uses on request bytes.
    pub fn from_pod(pod: &Pod) -> Result<Self, serde_json::Error> {
        serde_json::from_value(serde_json::to_value(pod)?)
    }

    pub fn containers(&self) -> &[ContainerView] {
        self.spec.as_ref().map_or(&[], |s| &s.containers)
    }

    pub fn init_containers(&self) -> &[ContainerView] {
        self.spec.as_ref().map_or(&[], |s| &s.init_containers)
    }

    pub fn list(&self, list: ContainerList) -> &[ContainerView] {
        match list {
            ContainerList::Containers => self.containers(),
            ContainerList::InitContainers => self.init_containers(),
        }
    }

    /// The pod's name for messages: its name, else its generateName with a marker.
    pub fn display_name(&self) -> String {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(name), _) if !name.is_empty() => name.clone(),
            (_, Some(prefix)) => format!("{prefix}<generated>"),
            _ => "<unnamed>".to_owned(),
        }
    }
}

impl ContainerView {
    /// The value of the last plain-valued env var among `names` (the one a runtime honours).
    pub fn env_value<'c>(&'c self, names: &[&str]) -> Option<(&'c str, &'c str)> {
        self.env
            .iter()
            .flatten()
            .rev()
            .find(|var| names.contains(&var.name.as_str()))
            .and_then(|var| Some((var.name.as_str(), var.value.as_deref()?)))
    }

    /// The command and arguments, as one text to search (shell scripts live here).
    pub fn command_text(&self) -> String {
        self.command
            .iter()
            .flatten()
            .chain(self.args.iter().flatten())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

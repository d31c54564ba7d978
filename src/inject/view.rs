//! The pod as the injection core sees it: only the fields its rules read. It is the one way into
//! the core. `serve` deserializes it straight from the AdmissionReview bytes (skipping every other
//! field unparsed, which is most of the work saved), and `preview` builds it from a manifest `Pod`
//! through the very same deserializer, so the two can never see different pods. A rule that needs
//! another field must add it here, where both paths get it, and to the walk of
//! `webhook::admission::sparse`, which reads these structs member by member (skipping the rest of
//! the review unbuilt) and hands each member to the derive below.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;
use serde_with::{serde_as, BorrowCow};

// Every string borrows from the review body (`Cow::Borrowed`) unless it has JSON escapes to
// undo, so parsing a review allocates only the few lists and maps below, not a `String` per field.

/// A text field of the pod.
pub type Text<'a> = Cow<'a, str>;
/// Labels or annotations.
pub type TextMap<'a> = BTreeMap<Text<'a>, Text<'a>>;

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PodView<'a> {
    #[serde(default, borrow)]
    pub metadata: MetaView<'a>,
    #[serde(default, borrow)]
    pub spec: Option<SpecView<'a>>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView<'a> {
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub name: Option<Text<'a>>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub generate_name: Option<Text<'a>>,
    #[serde_as(as = "Option<BTreeMap<BorrowCow, BorrowCow>>")]
    #[serde(default, borrow)]
    pub labels: Option<TextMap<'a>>,
    #[serde_as(as = "Option<BTreeMap<BorrowCow, BorrowCow>>")]
    #[serde(default, borrow)]
    pub annotations: Option<TextMap<'a>>,
    #[serde(default, borrow)]
    pub owner_references: Option<Vec<OwnerView<'a>>>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerView<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub api_version: Text<'a>,
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub kind: Text<'a>,
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub name: Text<'a>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView<'a> {
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub subdomain: Option<Text<'a>>,
    // Every container is kept, in order, so that patch indexes match the stored pod.
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub init_containers: Vec<ContainerView<'a>>,
    #[serde(default, borrow, deserialize_with = "null_as_empty")]
    pub readiness_gates: Vec<ReadinessGateView<'a>>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReadinessGateView<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub condition_type: Text<'a>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub image: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub env: Option<Vec<EnvView<'a>>>,
    #[serde(default, borrow)]
    pub env_from: Option<Vec<EnvFromView<'a>>>,
    #[serde_as(as = "Option<Vec<BorrowCow>>")]
    #[serde(default, borrow)]
    pub command: Option<Vec<Text<'a>>>,
    #[serde_as(as = "Option<Vec<BorrowCow>>")]
    #[serde(default, borrow)]
    pub args: Option<Vec<Text<'a>>>,
    #[serde(default, borrow)]
    pub volume_mounts: Option<Vec<MountView<'a>>>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ports: Vec<PortView>,
    /// Scripts the command runs from mounted ConfigMaps, when they are known: `preview` fills
    /// this from the ConfigMaps in its input; the webhook sees no ConfigMap and leaves it empty.
    #[serde(skip)]
    pub scripts: Vec<Script>,
    /// Configuration files the command names from mounted ConfigMaps without running them (a
    /// `server.properties` it copies or hands to kafka-server-start.sh): `preview` only, as above.
    #[serde(skip)]
    pub config_files: Vec<Script>,
}

/// A script a container runs, found in a ConfigMap mounted into it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    /// Where the container finds it, and where it comes from.
    pub path: String,
    pub config_map: String,
    pub text: String,
}

/// A declared container port (the images that derive their listeners bind the advertised ports).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortView {
    #[serde(default)]
    pub container_port: i64,
}

/// One entry of a container's `env`: a plain value, or one taken from elsewhere (`valueFrom`, of
/// which only a downward-API field is read: the variables the webhook injects for start-up
/// values are such fields).
#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvView<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    pub name: Text<'a>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub value: Option<Text<'a>>,
    #[serde(default, borrow)]
    pub value_from: Option<ValueFromView<'a>>,
}

/// `env[].valueFrom`: the downward-API field it names, if it names one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValueFromView<'a> {
    #[serde(default, borrow)]
    pub field_ref: Option<FieldRefView<'a>>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldRefView<'a> {
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub field_path: Option<Text<'a>>,
}

impl EnvView<'_> {
    /// The downward-API field this entry takes its value from.
    pub fn field_path(&self) -> Option<&str> {
        self.value_from
            .as_ref()?
            .field_ref
            .as_ref()?
            .field_path
            .as_deref()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvFromView<'a> {
    #[serde(default, borrow)]
    pub config_map_ref: Option<NameRef<'a>>,
    #[serde(default, borrow)]
    pub secret_ref: Option<NameRef<'a>>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NameRef<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub name: Text<'a>,
}

#[serde_as]
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountView<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    pub mount_path: Text<'a>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    pub sub_path: Option<Text<'a>>,
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

impl PodView<'_> {
    /// The view of a manifest pod, through the same deserializer `serve` uses on request bytes
    /// (its strings owned, as they come from a `Value`).
    pub fn from_pod(pod: &Pod) -> Result<PodView<'static>, serde_json::Error> {
        PodView::deserialize(serde_json::to_value(pod)?)
    }

    pub fn containers(&self) -> &[ContainerView<'_>] {
        self.spec.as_ref().map_or(&[], |s| &s.containers)
    }

    pub fn init_containers(&self) -> &[ContainerView<'_>] {
        self.spec.as_ref().map_or(&[], |s| &s.init_containers)
    }

    pub fn list(&self, list: ContainerList) -> &[ContainerView<'_>] {
        match list {
            ContainerList::Containers => self.containers(),
            ContainerList::InitContainers => self.init_containers(),
        }
    }

    /// The pod's name for messages: its name, else its generateName with a marker.
    pub fn display_name(&self) -> String {
        match (&self.metadata.name, &self.metadata.generate_name) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) => format!("{prefix}<generated>"),
            _ => "<unnamed>".to_owned(),
        }
    }
}

impl ContainerView<'_> {
    /// The value of the last plain-valued env var among `names` (the one a runtime honours).
    pub fn env_value<'c>(&'c self, names: &[&str]) -> Option<(&'c str, &'c str)> {
        self.env
            .iter()
            .flatten()
            .rev()
            .find(|var| names.contains(&&*var.name))
            .and_then(|var| Some((&*var.name, var.value.as_deref()?)))
    }

    /// The command and arguments, as one text to search (shell scripts live here).
    pub fn command_text(&self) -> String {
        let mut text = String::new();
        for word in self
            .command
            .iter()
            .flatten()
            .chain(self.args.iter().flatten())
        {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(word);
        }
        text
    }
}

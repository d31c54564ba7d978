//! Reading Kubernetes manifests offline and expanding StatefulSets into the pods their controller
//! would create, for `preview` and `services`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::Value;
use thiserror::Error;

use crate::inject::ordinal::POD_INDEX_LABEL;

/// The label the StatefulSet controller puts on each pod, which per-broker Services select.
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Yaml {
        path: String,
        error: super::yaml::YamlError,
    },
    #[error("{path}: document {index}: {error}")]
    Parse {
        path: String,
        index: usize,
        error: String,
    },
}

/// Where `preview` and `services` read pods from, and how StatefulSets are expanded.
#[derive(Debug, Clone)]
pub struct Source {
    /// Files or directories; `-` is stdin.
    pub files: Vec<PathBuf>,
    /// Overrides each StatefulSet's `spec.replicas`.
    pub replicas: Option<u32>,
    /// Namespace of objects that name none.
    pub namespace: String,
}

/// One YAML or JSON document and where it came from.
#[derive(Debug)]
pub struct Document {
    pub path: String,
    /// 1-based position in its file.
    pub index: usize,
    pub value: Value,
}

/// The files to read: each path as given, a directory as kubectl reads one (its `.yaml`, `.yml`
/// and `.json` files, sorted by name, not recursive).
fn expand_directories(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ManifestError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let read_error = |error| ManifestError::Read {
            path: path.display().to_string(),
            error,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path).map_err(read_error)? {
            let entry = entry.map_err(read_error)?.path();
            let manifest = entry
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
            if manifest && entry.is_file() {
                entries.push(entry);
            }
        }
        entries.sort();
        files.extend(entries);
    }
    Ok(files)
}

/// Reads every document of every file (`-` is stdin, a directory its manifest files); empty
/// documents are dropped.
pub fn read_documents(paths: &[PathBuf]) -> Result<Vec<Document>, ManifestError> {
    let mut documents = Vec::new();
    for path in &expand_directories(paths)? {
        let name = path.display().to_string();
        let text = read_text(path).map_err(|error| ManifestError::Read {
            path: name.clone(),
            error,
        })?;
        let values = super::yaml::documents(&text).map_err(|e| ManifestError::Yaml {
            path: name.clone(),
            error: e,
        })?;
        for (i, value) in values.into_iter().enumerate() {
            if !value.is_null() {
                documents.push(Document {
                    path: name.clone(),
                    index: i + 1,
                    value,
                });
            }
        }
    }
    Ok(documents)
}

fn read_text(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// A pod found in (or expanded from) the manifests.
#[derive(Debug)]
pub struct ManifestPod {
    pub namespace: String,
    pub pod: Pod,
    /// The StatefulSet it was expanded from, if any.
    pub statefulset: Option<String>,
}

/// How to expand what the manifests hold.
#[derive(Debug, Clone)]
pub struct Expansion<'a> {
    /// Namespace of objects that name none.
    pub namespace: &'a str,
    /// Overrides each StatefulSet's `spec.replicas`.
    pub replicas: Option<u32>,
}

/// What the manifests hold: their pods, and a count of every other kind (to tell a user who
/// expected brokers what was found instead).
#[derive(Debug, Default)]
pub struct Found {
    pub pods: Vec<ManifestPod>,
    /// The StatefulSets the pods were expanded from, with their namespaces.
    pub statefulsets: Vec<(String, StatefulSet)>,
    pub other_kinds: BTreeMap<String, usize>,
    /// Read, but worth saying (removed API versions read as their successor).
    pub warnings: Vec<String>,
    /// The ConfigMaps, whose scripts a container may run.
    pub config_maps: Vec<super::scripts::ConfigMapData>,
    /// `(namespace, name)` of every Service: their service-link variables reach the pods.
    pub services: Vec<(String, String)>,
}

/// The pods of the documents: Pods as they are, StatefulSets expanded, Lists flattened; other
/// kinds are counted.
pub fn pods(documents: &[Document], expansion: &Expansion<'_>) -> Result<Found, ManifestError> {
    let mut found = Found::default();
    for document in documents {
        collect(&document.value, expansion, &mut found).map_err(|error| ManifestError::Parse {
            path: document.path.clone(),
            index: document.index,
            error,
        })?;
    }
    Ok(found)
}

fn collect(value: &Value, expansion: &Expansion<'_>, found: &mut Found) -> Result<(), String> {
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (api_version, kind) {
        ("v1", "Pod") => {
            let pod: Pod = typed(value, "Pod")?;
            let namespace = namespace_of(&pod.metadata, expansion);
            found.pods.push(ManifestPod {
                namespace,
                pod,
                statefulset: None,
            });
        }
        ("apps/v1" | "apps/v1beta1" | "apps/v1beta2", "StatefulSet") => {
            collect_statefulset(value, api_version, expansion, found)?;
        }
        ("v1", "Service") => {
            let meta: ObjectMeta = typed(
                value.get("metadata").unwrap_or(&Value::Null),
                "Service metadata",
            )?;
            found.services.push((
                namespace_of(&meta, expansion),
                meta.name.unwrap_or_default(),
            ));
            *found.other_kinds.entry("Service".to_owned()).or_default() += 1;
        }
        ("v1", "ConfigMap") => {
            found.config_maps.push(config_map(value, expansion)?);
            *found.other_kinds.entry("ConfigMap".to_owned()).or_default() += 1;
        }
        (_, kind) if kind.ends_with("List") => {
            let items = value.get("items").and_then(Value::as_array);
            for (i, item) in items.into_iter().flatten().enumerate() {
                collect(item, expansion, found).map_err(|e| format!("items[{i}]: {e}"))?;
            }
        }
        (_, kind) => {
            let kind = if kind.is_empty() {
                "object without kind"
            } else {
                kind
            };
            *found.other_kinds.entry(kind.to_owned()).or_default() += 1;
        }
    }
    Ok(())
}

/// A StatefulSet (of a removed API version too, read as `apps/v1` with a warning) and the pods
/// its controller would create.
fn collect_statefulset(
    value: &Value,
    api_version: &str,
    expansion: &Expansion<'_>,
    found: &mut Found,
) -> Result<(), String> {
    let statefulset: StatefulSet = if api_version == "apps/v1" {
        typed(value, "StatefulSet")?
    } else {
        let mut successor = value.clone();
        successor["apiVersion"] = Value::from("apps/v1");
        let statefulset: StatefulSet = typed(&successor, "StatefulSet")?;
        found.warnings.push(format!(
            "StatefulSet {}: {api_version} was removed in Kubernetes 1.16; read as apps/v1, which the API server now requires (set spec.selector, which apps/v1 does not default)",
            statefulset.metadata.name.as_deref().unwrap_or_default()
        ));
        statefulset
    };
    let namespace = namespace_of(&statefulset.metadata, expansion);
    let name = statefulset.metadata.name.clone().unwrap_or_default();
    for pod in expand_statefulset(&statefulset, &namespace, expansion.replicas)? {
        found.pods.push(ManifestPod {
            namespace: namespace.clone(),
            pod,
            statefulset: Some(name.clone()),
        });
    }
    found.statefulsets.push((namespace, statefulset));
    Ok(())
}

/// A ConfigMap's name, namespace and text data (the scripts a container may run).
fn config_map(
    value: &Value,
    expansion: &Expansion<'_>,
) -> Result<super::scripts::ConfigMapData, String> {
    let meta: ObjectMeta = typed(
        value.get("metadata").unwrap_or(&Value::Null),
        "ConfigMap metadata",
    )?;
    let data = value
        .get("data")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    Ok(super::scripts::ConfigMapData {
        namespace: namespace_of(&meta, expansion),
        name: meta.name.unwrap_or_default(),
        data,
    })
}

/// `value` as the Kubernetes type `kind`; a fault names the field, as the API server does.
fn typed<T: serde::de::DeserializeOwned>(value: &Value, kind: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        let hint = if inner.to_string().contains("boolean") {
            " (YAML 1.1, as kubectl reads it, takes an unquoted yes, no, on, off, y or n for a boolean: quote it)"
        } else {
            ""
        };
        match path.as_str() {
            "." => format!("{kind}: {inner}{hint}"),
            _ => format!("{kind}: {path}: {inner}{hint}"),
        }
    })
}

fn namespace_of(meta: &ObjectMeta, expansion: &Expansion<'_>) -> String {
    meta.namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| expansion.namespace.to_owned())
}

/// Most pods one StatefulSet expands to: a manifest asking for more is refused, not allocated.
pub const MAX_PODS: u32 = 1000;

/// The pods the StatefulSet controller creates: `<name>-<i>` for each ordinal, with the
/// controller's labels, hostname/subdomain and ownerReference.
pub fn expand_statefulset(
    statefulset: &StatefulSet,
    namespace: &str,
    replicas: Option<u32>,
) -> Result<Vec<Pod>, String> {
    let name = statefulset
        .metadata
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or("StatefulSet has no metadata.name")?;
    let spec = statefulset
        .spec
        .as_ref()
        .ok_or_else(|| format!("StatefulSet {name} has no spec"))?;
    let replicas = match replicas {
        Some(n) => n,
        None => u32::try_from(spec.replicas.unwrap_or(1))
            .map_err(|_| format!("StatefulSet {name}: spec.replicas is negative"))?,
    };
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let start = u32::try_from(start)
        .map_err(|_| format!("StatefulSet {name}: spec.ordinals.start is negative"))?;
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: name.into(),
        uid: statefulset.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    if replicas > MAX_PODS {
        return Err(format!(
            "StatefulSet {name}: {replicas} replicas is more than the {MAX_PODS} pods preview expands"
        ));
    }
    // The controller and Kafka (node.id) both hold ordinals in an int32.
    let last = i64::from(start) + i64::from(replicas) - 1;
    if replicas > 0 && last > i64::from(i32::MAX) {
        return Err(format!(
            "StatefulSet {name}: ordinals {start}..{last} go past 2147483647, which the StatefulSet controller refuses"
        ));
    }
    let mut pods = Vec::with_capacity(replicas as usize);
    for ordinal in start..start + replicas {
        let pod_name = format!("{name}-{ordinal}");
        let template = &spec.template;
        let mut metadata = template.metadata.clone().unwrap_or_default();
        let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
        labels.insert(POD_NAME_LABEL.into(), pod_name.clone());
        labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
        metadata.name = Some(pod_name.clone());
        metadata.generate_name = Some(format!("{name}-"));
        metadata.namespace = Some(namespace.to_owned());
        metadata.owner_references = Some(vec![owner.clone()]);
        let mut pod_spec = template.spec.clone().unwrap_or_default();
        pod_spec.hostname = Some(pod_name);
        pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
        pods.push(Pod {
            metadata,
            spec: Some(pod_spec),
            status: None,
        });
    }
    Ok(pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(text: &str) -> Vec<Document> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(&path, text).unwrap();
        read_documents(&[path]).unwrap()
    }

    const STATEFULSET: &str = r#"
# Source: kafka/templates/statefulset.yaml
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kafka}
spec:
  serviceName: kafka-headless
  replicas: 2
  ordinals: {start: 3}
  selector: {matchLabels: {app: kafka}}
  template:
    metadata:
      labels: {app: kafka}
      annotations: {kafka-listener-injector.io/domain: kafka.example.com}
    spec:
      containers: [{name: kafka, image: apache/kafka:3.9.0}]
---
---
apiVersion: v1
kind: Service
metadata: {name: kafka-headless}
"#;

    #[test]
    fn statefulset_expands_into_controller_named_pods() {
        let docs = documents(STATEFULSET);
        assert_eq!(docs.len(), 2, "empty documents and comments are dropped");
        let expansion = Expansion {
            namespace: "prod",
            replicas: None,
        };
        let pods = pods(&docs, &expansion).unwrap().pods;
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.pod.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["kafka-3", "kafka-4"]);
        let pod = &pods[1].pod;
        assert_eq!(pods[1].namespace, "prod");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "kafka-4");
        assert_eq!(labels[POD_INDEX_LABEL], "4");
        assert_eq!(labels["app"], "kafka");
        assert_eq!(
            pod.spec.as_ref().unwrap().subdomain.as_deref(),
            Some("kafka-headless")
        );
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].name,
            "kafka"
        );
        assert!(pod
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .contains_key("kafka-listener-injector.io/domain"));
    }

    #[test]
    fn replicas_flag_overrides_the_spec() {
        let docs = documents(STATEFULSET);
        let expansion = Expansion {
            namespace: "prod",
            replicas: Some(5),
        };
        assert_eq!(pods(&docs, &expansion).unwrap().pods.len(), 5);
    }

    #[test]
    fn lists_are_flattened_and_json_is_read() {
        let docs = documents(
            r#"{"apiVersion": "v1", "kind": "List", "items": [
                {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kafka-0", "namespace": "a"},
                 "spec": {"containers": [{"name": "kafka"}]}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]}"#,
        );
        let expansion = Expansion {
            namespace: "prod",
            replicas: None,
        };
        let pods = pods(&docs, &expansion).unwrap().pods;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].namespace, "a");
    }

    #[test]
    fn parse_errors_name_file_and_document() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, "a: 1\n---\nb: [unclosed\n").unwrap();
        let error = read_documents(&[path]).unwrap_err().to_string();
        assert!(error.contains("bad.yaml: document 2:"), "{error}");

        let docs =
            documents("apiVersion: v1\nkind: Pod\nmetadata: {name: 7}\nspec: {containers: 3}\n");
        let expansion = Expansion {
            namespace: "prod",
            replicas: None,
        };
        let error = pods(&docs, &expansion).unwrap_err().to_string();
        assert!(error.contains("m.yaml: document 1: Pod:"), "{error}");
    }
}

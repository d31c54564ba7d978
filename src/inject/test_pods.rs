//! Small builders for the pods the unit tests need.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::view::PodView;

pub struct PodBuilder {
    pod: Pod,
}

impl PodBuilder {
    /// A StatefulSet-style pod `name` with one `kafka` container and no env.
    pub fn broker(name: &str) -> Self {
        let mut pod = Pod::default();
        if name.is_empty() {
            pod.metadata.generate_name = Some("kafka-".into());
        } else {
            pod.metadata.name = Some(name.into());
        }
        pod.spec = Some(PodSpec {
            containers: vec![Container {
                name: "kafka".into(),
                image: Some("apache/kafka:3.9.0".into()),
                ..Container::default()
            }],
            subdomain: Some("kafka-headless".into()),
            ..PodSpec::default()
        });
        Self { pod }
    }

    pub fn owner(mut self, statefulset: &str) -> Self {
        self.pod.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: statefulset.into(),
            uid: "00000000-0000-0000-0000-000000000001".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.pod
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }

    fn containers(&mut self) -> &mut Vec<Container> {
        &mut self.pod.spec.as_mut().unwrap().containers
    }

    /// Adds a plain env var to container `container`.
    pub fn env(mut self, container: &str, name: &str, value: &str) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        });
        self
    }

    pub fn env_from_field(mut self, container: &str, name: &str) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        });
        self
    }

    pub fn container(mut self, name: &str) -> Self {
        self.containers().push(Container {
            name: name.into(),
            ..Container::default()
        });
        self
    }

    pub fn image(mut self, container: &str, image: &str) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.image = Some(image.into());
        self
    }

    pub fn rename_container(mut self, from: &str, to: &str) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == from)
            .unwrap();
        c.name = to.into();
        self
    }

    /// Adds an init container with one plain env var.
    pub fn init_container(mut self, name: &str, env: &str, value: &str) -> Self {
        let spec = self.pod.spec.as_mut().unwrap();
        spec.init_containers
            .get_or_insert_with(Vec::new)
            .push(Container {
                name: name.into(),
                env: Some(vec![EnvVar {
                    name: env.into(),
                    value: Some(value.into()),
                    value_from: None,
                }]),
                ..Container::default()
            });
        self
    }

    /// Sets the shell command of container `container`.
    pub fn command(mut self, container: &str, command: &[&str]) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.command = Some(command.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Mounts `path` (a volume named after the file) in container `container`.
    pub fn mount(mut self, container: &str, path: &str, sub_path: Option<&str>) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.volume_mounts.get_or_insert_with(Vec::new).push(
            k8s_openapi::api::core::v1::VolumeMount {
                name: "config".into(),
                mount_path: path.into(),
                sub_path: sub_path.map(Into::into),
                ..Default::default()
            },
        );
        self
    }

    /// Adds an `envFrom` ConfigMap source to container `container`.
    pub fn env_from_config_map(mut self, container: &str, config_map: &str) -> Self {
        let c = self
            .containers()
            .iter_mut()
            .find(|c| c.name == container)
            .unwrap();
        c.env_from
            .get_or_insert_with(Vec::new)
            .push(k8s_openapi::api::core::v1::EnvFromSource {
                config_map_ref: Some(k8s_openapi::api::core::v1::ConfigMapEnvSource {
                    name: config_map.into(),
                    optional: None,
                }),
                ..Default::default()
            });
        self
    }

    pub fn build(self) -> Pod {
        self.pod
    }

    /// The pod as the core sees it.
    pub fn view(self) -> PodView<'static> {
        PodView::from_pod(&self.pod).unwrap()
    }
}

//! The scripts a container runs from ConfigMaps mounted into it (and the configuration files it
//! sources or expands with `envsubst`). `helm template` output carries those ConfigMaps, so
//! `preview` can judge what a chart's start script does with the injected variables (export its
//! own value, write a properties file), which the webhook cannot see.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

use crate::inject::view::{PodView, Script};

/// A ConfigMap of the input: namespace, name and data.
#[derive(Debug, Clone)]
pub struct ConfigMapData {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, String>,
}

/// Attaches to each container of `view` the scripts its command or args name that come from a
/// ConfigMap in `config_maps`.
pub fn attach(view: &mut PodView<'_>, pod: &Pod, namespace: &str, config_maps: &[ConfigMapData]) {
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let Some(view_spec) = view.spec.as_mut() else {
        return;
    };
    let lists = [
        (&spec.containers[..], &mut view_spec.containers),
        (
            spec.init_containers.as_deref().unwrap_or_default(),
            &mut view_spec.init_containers,
        ),
    ];
    for (containers, views) in lists {
        for (container, view) in containers.iter().zip(views.iter_mut()) {
            (view.scripts, view.config_files) =
                scripts_of(container, volumes, namespace, config_maps);
        }
    }
}

/// The scripts a container runs, and the configuration files it names without running them.
fn scripts_of(
    container: &Container,
    volumes: &[Volume],
    namespace: &str,
    config_maps: &[ConfigMapData],
) -> (Vec<Script>, Vec<Script>) {
    let statements = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .flat_map(|word| statements_in(word));
    let (mut scripts, mut config_files): (Vec<Script>, Vec<Script>) = (Vec::new(), Vec::new());
    for statement in statements {
        let runs_files = expands_or_sources(statement);
        for path in paths_in(statement) {
            let list = if is_configuration(path) && !runs_files {
                &mut config_files
            } else {
                &mut scripts
            };
            if list.iter().any(|s| s.path == path) {
                continue;
            }
            if let Some(script) = resolve(container, path, volumes, namespace, config_maps) {
                list.push(script);
            }
        }
    }
    (scripts, config_files)
}

/// A configuration file by its name (`server.properties`, `jaas.conf`, ...): a start script copies
/// it or hands it to Kafka, and neither Kafka nor the JVM expands `${VAR}` in it, so a reference
/// there uses no injected variable.
fn is_configuration(path: &str) -> bool {
    const EXTENSIONS: [&str; 8] = [
        ".properties",
        ".conf",
        ".cfg",
        ".json",
        ".yaml",
        ".yml",
        ".xml",
        ".ini",
    ];
    let path = path.to_ascii_lowercase();
    EXTENSIONS.iter().any(|extension| path.ends_with(extension))
}

/// The shell statements of a command word (split at newlines, `;`, `&&` and `||`; a pipeline
/// stays one statement).
fn statements_in(word: &str) -> impl Iterator<Item = &str> {
    word.split(['\n', ';'])
        .flat_map(|s| s.split("&&"))
        .flat_map(|s| s.split("||"))
}

/// Whether a statement runs the files it names as shell text: it sources them (`. FILE`,
/// `source FILE`) or expands their variables (`envsubst < FILE`).
fn expands_or_sources(statement: &str) -> bool {
    matches!(
        statement.split_whitespace().next(),
        Some(".") | Some("source")
    ) || statement
        .split_whitespace()
        .any(|word| word == "envsubst" || word.ends_with("/envsubst"))
}

/// Absolute paths in a command word, which may be a whole shell script (`sh -c "..."`).
fn paths_in(word: &str) -> impl Iterator<Item = &str> {
    word.split(|c: char| c.is_whitespace() || "\"';&|()<>`".contains(c))
        .filter(|token| token.starts_with('/') && token.len() > 1)
}

/// The ConfigMap key behind `path` in `container`, through its volume mounts.
fn resolve(
    container: &Container,
    path: &str,
    volumes: &[Volume],
    namespace: &str,
    config_maps: &[ConfigMapData],
) -> Option<Script> {
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    mounts.iter().find_map(|mount| {
        let file = match &mount.sub_path {
            Some(sub) if path == mount.mount_path => sub.as_str(),
            Some(_) => return None,
            None => path
                .strip_prefix(mount.mount_path.trim_end_matches('/'))?
                .strip_prefix('/')?,
        };
        let source = volumes
            .iter()
            .find(|v| v.name == mount.name)?
            .config_map
            .as_ref()?;
        let key = match &source.items {
            Some(items) => &items.iter().find(|item| item.path == file)?.key,
            None => file,
        };
        let config_map = config_maps
            .iter()
            .find(|c| c.name == source.name && c.namespace == namespace)?;
        let text = config_map.data.get(key)?;
        Some(Script {
            path: path.to_owned(),
            config_map: source.name.clone(),
            text: text.clone(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(command: &str, mount: &str, sub_path: Option<&str>) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kafka-0"},
            "spec": {
                "containers": [{
                    "name": "kafka", "command": ["/bin/bash", "-c", command],
                    "volumeMounts": [{"name": "scripts", "mountPath": mount, "subPath": sub_path}]
                }],
                "volumes": [{"name": "scripts", "configMap": {"name": "kafka-scripts"}}]
            }
        }))
        .unwrap()
    }

    fn config_maps() -> Vec<ConfigMapData> {
        vec![ConfigMapData {
            namespace: "kafka".into(),
            name: "kafka-scripts".into(),
            data: BTreeMap::from([("setup.sh".into(), "export X=1".into())]),
        }]
    }

    fn attached(pod: &Pod) -> Vec<Script> {
        let mut view = PodView::from_pod(pod).unwrap();
        attach(&mut view, pod, "kafka", &config_maps());
        view.spec.unwrap().containers[0].scripts.clone()
    }

    #[test]
    fn a_script_run_from_a_mounted_config_map_is_attached() {
        for pod in [
            pod("exec /scripts/setup.sh", "/scripts", None),
            pod(
                "/scripts/setup.sh && true",
                "/scripts/setup.sh",
                Some("setup.sh"),
            ),
        ] {
            let scripts = attached(&pod);
            assert_eq!(scripts.len(), 1);
            assert_eq!(scripts[0].path, "/scripts/setup.sh");
            assert_eq!(scripts[0].config_map, "kafka-scripts");
            assert_eq!(scripts[0].text, "export X=1");
        }
    }

    #[test]
    fn a_properties_file_is_attached_only_where_the_command_expands_it() {
        // The shape of CloudPirates' kafka chart 0.1.4 (statefulset.yaml): the script copies
        // server.properties from the ConfigMap, then starts Kafka on the copy.
        let copied = "cp /mnt/config/server.properties /opt/kafka/config/server.properties && exec kafka-server-start.sh /opt/kafka/config/server.properties";
        let mut maps = config_maps();
        maps[0].data.insert(
            "server.properties".into(),
            "advertised.listeners=EXTERNAL://${EXTERNAL_HOST}:9094".into(),
        );
        let attach_to = |command: &str| {
            let pod = pod(command, "/mnt/config", None);
            let mut view = PodView::from_pod(&pod).unwrap();
            attach(&mut view, &pod, "kafka", &maps);
            view.spec.unwrap().containers[0].scripts.clone()
        };
        assert!(attach_to(copied).is_empty());
        // envsubst in another statement expands nothing of this file.
        assert!(attach_to(&format!("command -v envsubst; {copied}")).is_empty());
        for runs in [
            "envsubst < /mnt/config/server.properties > /opt/kafka/config/server.properties",
            "cat /mnt/config/server.properties | /usr/bin/envsubst > /tmp/server.properties",
            "set -e\n. /mnt/config/server.properties\nexec run",
            "source /mnt/config/server.properties && exec run",
        ] {
            let attached = attach_to(runs);
            assert_eq!(attached.len(), 1, "{runs}");
            assert_eq!(attached[0].path, "/mnt/config/server.properties");
        }
    }

    #[test]
    fn a_script_not_in_the_input_is_not_attached() {
        assert!(attached(&pod("exec /scripts/other.sh", "/scripts", None)).is_empty());
        assert!(attached(&pod("exec /opt/run.sh", "/scripts", None)).is_empty());
    }
}

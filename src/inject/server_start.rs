//! What `kafka-server-start.sh` starts the broker from: a properties file, then its `--override
//! key=value` flags, which win (kafka.Kafka loads the file, then applies the overrides). A chart
//! that starts Kafka this way (CloudPirates) takes the injected name only through an override of
//! `advertised.listeners`; a listener named there that the file neither binds (`listeners`) nor
//! maps to a protocol (`listener.security.protocol.map`) makes Kafka refuse to start
//! (KafkaConfig: "advertised.listeners listener names must be equal to or a subset of the ones
//! defined in listeners"; SocketServerConfigs: "No security protocol defined for listener").
//!
//! The file comes from a ConfigMap in `preview`'s input ([`ContainerView::config_files`]); the
//! webhook sees no file, so it judges by the command's `--override` flags alone. A setting the
//! script writes itself (`echo listeners=... >> FILE`, `sed -i`) is unknown, and nothing is said
//! about it.

use std::collections::HashMap;

use super::view::{ContainerView, Script};

/// Kafka's defaults for a file that sets neither (KafkaConfig, SocketServerConfigs).
const DEFAULT_LISTENERS: &str = "PLAINTEXT://:9092";
const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

const ADVERTISED: &str = "advertised.listeners";
const LISTENERS: &str = "listeners";
const PROTOCOL_MAP: &str = "listener.security.protocol.map";

/// A setting and where it was read, to name in the finding.
struct Setting {
    value: String,
    source: String,
}

/// The listener names an `--override advertised.listeners=...` in `script` gives that the
/// configuration the broker starts from does not define, as one finding naming the container,
/// the names and the file or override to change. `None` when there is no such override, or when
/// neither `listeners` nor the protocol map is known (no file in the input, none overridden).
pub fn undefined_advertised_listeners(container: &ContainerView, script: &str) -> Option<String> {
    let overrides = overrides(script);
    let advertised = overrides.get(ADVERTISED)?;
    let files = files(&container.config_files);
    let setting = |key: &str, default: &str| {
        if let Some(value) = overrides.get(key) {
            return Some(Setting {
                value: value.clone(),
                source: format!("--override {key}"),
            });
        }
        if writes_itself(script, key) {
            return None;
        }
        match (files.settings.get(key), &files.read) {
            (Some((value, source)), _) => Some(Setting {
                value: value.clone(),
                source: format!("{key} in {source}"),
            }),
            // A file that does not set it leaves Kafka's default in force.
            (None, Some(read)) => Some(Setting {
                value: default.to_owned(),
                source: format!("Kafka's default {key} ({default}, which {read} does not set)"),
            }),
            (None, None) => None,
        }
    };
    let listeners = setting(LISTENERS, DEFAULT_LISTENERS);
    let protocol_map = setting(PROTOCOL_MAP, DEFAULT_PROTOCOL_MAP);
    let names = names(advertised, "://");
    // A map that is set is the whole map, standard protocol names included (Kafka's default maps
    // each of them to itself only while none is set).
    let faults: Vec<String> = [
        listeners.map(|setting| {
            let fault = "does not bind {} (Kafka takes only advertised listeners it listens on)";
            (setting, "://", fault, "://:PORT")
        }),
        protocol_map.map(|setting| {
            let fault = "has no {} (Kafka finds no security protocol for it)";
            (setting, ":", fault, ":PROTOCOL")
        }),
    ]
    .into_iter()
    .flatten()
    .filter_map(|(setting, separator, fault, entry)| {
        let defined = names_upper(&setting.value, separator);
        let undefined = missing(&names, |name| defined.contains(&name.to_ascii_uppercase()));
        (!undefined.is_empty()).then(|| {
            let entries: Vec<String> = undefined
                .iter()
                .map(|name| format!("{name}{entry}"))
                .collect();
            format!(
                "{} {}: add {}",
                setting.source,
                fault.replace("{}", &undefined.join(", ")),
                entries.join(",")
            )
        })
    })
    .collect();
    (!faults.is_empty()).then(|| {
        format!(
            "container {} starts kafka-server-start.sh with --override {ADVERTISED} naming {}, but {}; Kafka would refuse to start",
            container.name,
            names.join(", "),
            faults.join("; and ")
        )
    })
}

/// The `--override key=value` flags in a command or script, the last of each key winning.
/// Shell quoting around the flag and the value (`"--override" "key=value"`) is dropped; the
/// value's `${VAR}` references stay, since only listener names are read from it.
fn overrides(script: &str) -> HashMap<String, String> {
    let words: Vec<&str> = script
        .split_whitespace()
        .map(|word| word.trim_matches(|c| c == '"' || c == '\''))
        .collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == "--override")
        .filter_map(|pair| pair[1].split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

/// The listener settings of the properties files the command names.
struct Files {
    /// Each setting with the file and ConfigMap it was read from.
    settings: HashMap<&'static str, (String, String)>,
    /// The files read, when there was one and only one: a script that picks one of several (by
    /// role) leaves unknown which one Kafka reads, so their settings are not used.
    read: Option<String>,
}

/// Reads the one `.properties` file among `files` (within it the last line of a key wins, as in
/// java.util.Properties); YAML, JSON and other configuration files are not Kafka's.
fn files(files: &[Script]) -> Files {
    let properties: Vec<&Script> = files
        .iter()
        .filter(|file| file.path.to_ascii_lowercase().ends_with(".properties"))
        .collect();
    let mut read = Files {
        settings: HashMap::new(),
        read: None,
    };
    let [file] = properties[..] else {
        return read;
    };
    let Ok(properties) = java_properties::read(file.text.as_bytes()) else {
        return read;
    };
    let source = format!("{} (ConfigMap {})", file.path, file.config_map);
    for key in [LISTENERS, PROTOCOL_MAP] {
        if let Some(value) = properties.get(key) {
            read.settings.insert(key, (value.clone(), source.clone()));
        }
    }
    read.read = Some(source);
    read
}

/// Whether the script writes `key` itself (`echo "listeners=..." >> FILE`, `sed -i
/// 's/^listeners=.*/.../'`): `key=` that is not part of a longer key (`advertised.listeners=`)
/// and not the value of an `--override`.
fn writes_itself(script: &str, key: &str) -> bool {
    let written = format!("{key}=");
    let overridden = format!("--override {written}");
    let normalised = script.replace(['"', '\''], "");
    normalised.match_indices(&written).any(|(at, _)| {
        let before = normalised[..at].chars().next_back();
        let part_of_longer_key =
            before.is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric());
        !part_of_longer_key && !normalised[..at + written.len()].ends_with(&overridden)
    })
}

/// The names of a comma-separated list of `NAME<separator>...` entries, as written (without the
/// shell quotes of a partly quoted value: `advertised.listeners="CLIENT://..."`).
fn names<'a>(value: &'a str, separator: &str) -> Vec<&'a str> {
    value
        .split(',')
        .filter_map(|entry| entry.split_once(separator))
        .map(|(name, _)| name.trim().trim_matches(['"', '\'']))
        .filter(|name| !name.is_empty())
        .collect()
}

/// Kafka compares listener names ignoring case.
fn names_upper(value: &str, separator: &str) -> Vec<String> {
    names(value, separator)
        .iter()
        .map(|name| name.to_ascii_uppercase())
        .collect()
}

fn missing<'a>(names: &[&'a str], defined: impl Fn(&str) -> bool) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| !defined(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CloudPirates chart's start (charts/kafka 0.1.4, templates/statefulset.yaml), with
    /// the recipe's override appended to its exec.
    const START: &str = r#"cp /mnt/kafka/config/server.properties "$RUNTIME_CONFIG"
exec /opt/kafka/bin/kafka-server-start.sh "$RUNTIME_CONFIG" "--override" "advertised.listeners=CLIENT://${ADVERTISED_HOST}:9092,INTERNAL://${ADVERTISED_HOST}:9095,EXTERNAL://${EXTERNAL_HOST}:9094""#;

    fn container(file: &str) -> ContainerView<'static> {
        ContainerView {
            name: "kafka".into(),
            config_files: vec![Script {
                path: "/mnt/kafka/config/server.properties".into(),
                config_map: "my-kafka-config".into(),
                text: file.into(),
            }],
            ..ContainerView::default()
        }
    }

    const CHART_FILE: &str = "process.roles=broker,controller\n\
        listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n\
        listeners=CLIENT://:9092,INTERNAL://:9095,CONTROLLER://:9093\n";

    #[test]
    fn an_advertised_listener_the_file_neither_binds_nor_maps_is_named_with_the_file() {
        let finding = undefined_advertised_listeners(&container(CHART_FILE), START).unwrap();
        assert_eq!(
            finding,
            "container kafka starts kafka-server-start.sh with --override advertised.listeners naming CLIENT, INTERNAL, EXTERNAL, \
             but listeners in /mnt/kafka/config/server.properties (ConfigMap my-kafka-config) does not bind EXTERNAL \
             (Kafka takes only advertised listeners it listens on): add EXTERNAL://:PORT; \
             and listener.security.protocol.map in /mnt/kafka/config/server.properties (ConfigMap my-kafka-config) has no EXTERNAL \
             (Kafka finds no security protocol for it): add EXTERNAL:PROTOCOL; Kafka would refuse to start"
        );
    }

    #[test]
    fn the_last_line_of_a_key_and_an_override_win() {
        // The recipe's extraConfig, appended after the chart's lines: the last key wins.
        let fixed = format!(
            "{CHART_FILE}listeners=CLIENT://:9092,INTERNAL://:9095,CONTROLLER://:9093,external://:9094\n\
             listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT\n"
        );
        assert_eq!(
            undefined_advertised_listeners(&container(&fixed), START),
            None
        );
        // An override of listeners wins over the file; the map still comes from the file.
        let overridden = format!(
            "{START} --override listeners=CLIENT://:9092,INTERNAL://:9095,EXTERNAL://:9094"
        );
        let finding = undefined_advertised_listeners(&container(CHART_FILE), &overridden).unwrap();
        assert!(!finding.contains("does not bind"), "{finding}");
        assert!(finding.contains("listener.security.protocol.map in /mnt/kafka/config/server.properties (ConfigMap my-kafka-config) has no EXTERNAL"), "{finding}");
    }

    #[test]
    fn a_map_that_is_set_is_the_whole_map_and_a_file_without_one_has_kafkas_defaults() {
        let start = "exec kafka-server-start.sh /c/server.properties --override 'advertised.listeners=PLAINTEXT://a:9092,SSL://${EXTERNAL_HOST}:9094'";
        // Kafka: "No security protocol defined for listener SSL".
        let file = "listeners=PLAINTEXT://:9092,SSL://:9094\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT\n";
        let finding = undefined_advertised_listeners(&container(file), start).unwrap();
        assert!(finding.contains("has no SSL"), "{finding}");
        // No map in the file: Kafka's default maps each standard name to itself.
        let file = "listeners=PLAINTEXT://:9092,SSL://:9094\n";
        assert_eq!(
            undefined_advertised_listeners(&container(file), start),
            None
        );
        // Nor listeners: only the default PLAINTEXT://:9092 is bound.
        let finding = undefined_advertised_listeners(&container("node.id=1\n"), start).unwrap();
        assert!(
            finding.contains("Kafka's default listeners (PLAINTEXT://:9092, which /mnt/kafka/config/server.properties (ConfigMap my-kafka-config) does not set) does not bind SSL"),
            "{finding}"
        );
    }

    #[test]
    fn nothing_is_said_where_the_configuration_is_unknown() {
        // No file in the input and no override of listeners or the map.
        let bare = ContainerView {
            name: "kafka".into(),
            ..ContainerView::default()
        };
        assert_eq!(undefined_advertised_listeners(&bare, START), None);
        // No override of advertised.listeners: the file's own value, not this check's concern.
        assert_eq!(
            undefined_advertised_listeners(
                &container(CHART_FILE),
                "exec kafka-server-start.sh /c/s.properties"
            ),
            None
        );
        // The script writes listeners and the map itself.
        let writes = format!(
            "echo \"listeners=CLIENT://:9092,EXTERNAL://:9094\" >> \"$RUNTIME_CONFIG\"\n\
             sed -i 's/^listener.security.protocol.map=.*/listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,EXTERNAL:SASL_PLAINTEXT/' \"$RUNTIME_CONFIG\"\n{START}"
        );
        assert_eq!(
            undefined_advertised_listeners(&container(CHART_FILE), &writes),
            None
        );
        // A YAML file is not Kafka's configuration, and of two properties files (picked by role)
        // Kafka reads one, unknown which.
        let mut two = container(CHART_FILE);
        two.config_files.push(Script {
            path: "/mnt/kafka/config/controller.properties".into(),
            ..two.config_files[0].clone()
        });
        assert_eq!(undefined_advertised_listeners(&two, START), None);
        let mut yaml = container("listeners: CLIENT://:9092\n");
        yaml.config_files[0].path = "/mnt/kafka/config/values.yaml".into();
        assert_eq!(undefined_advertised_listeners(&yaml, START), None);
    }

    #[test]
    fn a_partly_quoted_value_keeps_its_names() {
        let start = "exec kafka-server-start.sh \"$F\" --override advertised.listeners=\"CLIENT://${A}:9092,INTERNAL://${A}:9095\"";
        assert_eq!(
            undefined_advertised_listeners(&container(CHART_FILE), start),
            None
        );
    }
}

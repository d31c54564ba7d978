//! What `kafka-server-start.sh` starts the broker from: a properties file, then its `--override
//! key=value` flags, which win (kafka.Kafka loads the file, then applies the overrides). A chart
//! that starts Kafka this way (CloudPirates) takes the injected name only through an override of
//! `advertised.listeners`; a listener named there that the file neither binds (`listeners`) nor
//! maps to a protocol (`listener.security.protocol.map`) makes Kafka refuse to start
//! (KafkaConfig: "advertised.listeners listener names must be equal to or a subset of the ones
//! defined in listeners"; SocketServerConfigs: "No security protocol defined for listener").
//!
//! The file comes from a ConfigMap in `preview`'s input ([`ContainerView::config_files`]); the
//! webhook sees none, so it never makes this finding.

use std::collections::HashMap;

use super::listeners::STANDARD_PROTOCOLS;
use super::view::{ContainerView, Script};

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
    let setting = |key: &str| {
        overrides
            .get(key)
            .map(|value| Setting {
                value: value.clone(),
                source: format!("--override {key}"),
            })
            .or_else(|| {
                files.get(key).map(|(value, source)| Setting {
                    value: value.clone(),
                    source: format!("{key} in {source}"),
                })
            })
    };
    let (listeners, protocol_map) = (setting(LISTENERS), setting(PROTOCOL_MAP));
    let names = names(advertised, "://");
    let mut faults = Vec::new();
    if let Some(listeners) = &listeners {
        let bound = names_upper(&listeners.value, "://");
        let unbound = missing(&names, |name| bound.contains(&name.to_ascii_uppercase()));
        if !unbound.is_empty() {
            faults.push(format!(
                "{} does not bind {} (Kafka takes only advertised listeners it listens on): add {}",
                listeners.source,
                unbound.join(", "),
                unbound
                    .iter()
                    .map(|name| format!("{name}://:PORT"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    if let Some(map) = &protocol_map {
        let mapped = names_upper(&map.value, ":");
        let unmapped = missing(&names, |name| {
            let name = name.to_ascii_uppercase();
            mapped.contains(&name) || STANDARD_PROTOCOLS.contains(&name.as_str())
        });
        if !unmapped.is_empty() {
            faults.push(format!(
                "{} has no {} (Kafka finds no security protocol for it): add {}",
                map.source,
                unmapped.join(", "),
                unmapped
                    .iter()
                    .map(|name| format!("{name}:PROTOCOL"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    (!faults.is_empty()).then(|| {
        format!(
            "container {} starts kafka-server-start.sh with --override {ADVERTISED} naming {}, but {}; Kafka refuses to start",
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

/// The listener settings of the configuration files, each with the file and ConfigMap it was
/// read from; a later file wins, and within a file the last line of a key (java.util.Properties).
fn files(files: &[Script]) -> HashMap<&'static str, (String, String)> {
    let mut settings = HashMap::new();
    for file in files {
        let Ok(properties) = java_properties::read(file.text.as_bytes()) else {
            continue;
        };
        for key in [LISTENERS, PROTOCOL_MAP] {
            if let Some(value) = properties.get(key) {
                let source = format!("{} (ConfigMap {})", file.path, file.config_map);
                settings.insert(key, (value.clone(), source));
            }
        }
    }
    settings
}

/// The names of a comma-separated list of `NAME<separator>...` entries, as written.
fn names<'a>(value: &'a str, separator: &str) -> Vec<&'a str> {
    value
        .split(',')
        .filter_map(|entry| entry.split_once(separator))
        .map(|(name, _)| name.trim())
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
             (Kafka finds no security protocol for it): add EXTERNAL:PROTOCOL; Kafka refuses to start"
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
    fn standard_protocol_names_need_no_map_entry_and_nothing_known_says_nothing() {
        let file = "listeners=PLAINTEXT://:9092,SSL://:9094\nlistener.security.protocol.map=CONTROLLER:PLAINTEXT\n";
        let start = "exec kafka-server-start.sh /c/server.properties --override 'advertised.listeners=PLAINTEXT://a:9092,SSL://${EXTERNAL_HOST}:9094'";
        assert_eq!(
            undefined_advertised_listeners(&container(file), start),
            None
        );
        // No file in the input and no override of listeners or the map: nothing to judge by.
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
    }
}

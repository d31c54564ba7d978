//! Broker or not: whether a container runs a Kafka broker, judged from evidence a reviewer would
//! accept (its env, its command, its image). Every ZooKeeper-mode chart renders a ZooKeeper
//! StatefulSet beside the brokers, and namespaces that opt in hold Connect, Schema Registry or
//! ksqlDB StatefulSets too; injecting into those (or denying them for want of a domain) would be
//! wrong. A container named by `--container` or the annotation is never second-guessed.

use super::view::ContainerView;

/// What a container's env, command and image say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A broker setting in its env or a broker start in its command.
    Broker(String),
    /// Another component of the Kafka ecosystem, or a container with no sign of Kafka at all.
    NotABroker(String),
    /// Only weak signs (a Kafka image, the name `kafka`): taken for a broker.
    Likely,
}

/// Settings only a broker reads (after the `KAFKA_` or `KAFKA_CFG_` prefix). JVM settings such as
/// `KAFKA_HEAP_OPTS` are read by every Confluent image's launcher and prove nothing.
pub const BROKER_SETTINGS: &[&str] = &[
    "ADVERTISED_LISTENERS",
    "LISTENERS",
    "LISTENER_SECURITY_PROTOCOL_MAP",
    "INTER_BROKER_LISTENER_NAME",
    "BROKER_ID",
    "NODE_ID",
    "PROCESS_ROLES",
    "ZOOKEEPER_CONNECT",
    "CONTROLLER_QUORUM_VOTERS",
    "CONTROLLER_LISTENER_NAMES",
    "LOG_DIRS",
    "CLUSTER_ID",
];

/// Commands that start a broker.
const BROKER_COMMANDS: &[&str] = &["kafka-server-start", "kafka.Kafka", "scripts/kafka/run"];

/// Other components: what marks them in a command, an env prefix or an image name.
const COMPONENTS: &[Component] = &[
    Component {
        name: "ZooKeeper",
        commands: &["zookeeper-server-start", "zkServer.sh", "QuorumPeerMain"],
        env_prefixes: &["ZOO_", "ZOOKEEPER_", "ZK_"],
        images: &["zookeeper"],
    },
    Component {
        name: "Kafka Connect",
        commands: &[
            "connect-distributed",
            "connect-standalone",
            "ConnectDistributed",
        ],
        env_prefixes: &["CONNECT_"],
        images: &[
            "kafka-connect",
            "/connect:",
            "debezium/connect",
            "cp-server-connect",
        ],
    },
    Component {
        name: "MirrorMaker",
        commands: &["mirror-maker", "MirrorMaker"],
        env_prefixes: &["MIRRORMAKER_"],
        images: &["mirror-maker", "mirrormaker"],
    },
    Component {
        name: "Schema Registry",
        commands: &["schema-registry-start"],
        env_prefixes: &["SCHEMA_REGISTRY_"],
        images: &["schema-registry"],
    },
    Component {
        name: "REST proxy",
        commands: &["kafka-rest-start"],
        env_prefixes: &["KAFKA_REST_"],
        images: &["kafka-rest"],
    },
    Component {
        name: "ksqlDB",
        commands: &["ksql-server-start"],
        env_prefixes: &["KSQL_"],
        images: &["ksql"],
    },
    Component {
        name: "Cruise Control",
        commands: &["kafka-cruise-control-start", "cruise-control"],
        env_prefixes: &["CRUISE_CONTROL_"],
        images: &["cruise-control"],
    },
    Component {
        name: "an exporter",
        commands: &["kafka_exporter", "jmx_prometheus", "jmx-exporter"],
        env_prefixes: &[],
        images: &["exporter", "kafdrop", "kafka-ui", "akhq"],
    },
];

struct Component {
    name: &'static str,
    commands: &'static [&'static str],
    env_prefixes: &'static [&'static str],
    images: &'static [&'static str],
}

/// Judges `container`. `named_kafka`: it was chosen by the default name `kafka` (weak evidence
/// of its own), not as the pod's only container.
pub fn judge(container: &ContainerView, named_kafka: bool) -> Evidence {
    let words = || {
        container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten())
    };
    let runs = |marker: &str| words().any(|word| word.contains(marker));
    let env_names = || container.env.iter().flatten().map(|e| &*e.name);
    if let Some(name) = env_names().find(|name| is_broker_setting(name)) {
        return Evidence::Broker(format!("env {name}"));
    }
    if let Some(start) = BROKER_COMMANDS.iter().find(|c| runs(c)) {
        return Evidence::Broker(format!("its command runs {start}"));
    }
    let image = container.image.as_deref().unwrap_or_default();
    for component in COMPONENTS {
        let evidence = component
            .commands
            .iter()
            .find(|c| runs(c))
            .map(|c| format!("its command runs {c}"))
            .or_else(|| {
                env_names()
                    .find(|name| component.env_prefixes.iter().any(|p| name.starts_with(p)))
                    .map(|name| format!("env {name}"))
            })
            .or_else(|| {
                // Image references are lower-case (the OCI distribution spec).
                component
                    .images
                    .iter()
                    .any(|i| image.contains(i))
                    .then(|| format!("image {image}"))
            });
        if let Some(evidence) = evidence {
            return Evidence::NotABroker(format!("{} ({evidence})", component.name));
        }
    }
    if named_kafka || image.contains("kafka") {
        return Evidence::Likely;
    }
    Evidence::NotABroker(format!(
        "no broker setting, broker command or Kafka image ({})",
        if image.is_empty() { "no image" } else { image }
    ))
}

fn is_broker_setting(name: &str) -> bool {
    let setting = name
        .strip_prefix("KAFKA_CFG_")
        .or_else(|| name.strip_prefix("KAFKA_"));
    setting.is_some_and(|s| BROKER_SETTINGS.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::view::EnvView;

    fn container(image: &str, env: &[&str], command: &[&str]) -> ContainerView<'static> {
        ContainerView {
            name: "c".into(),
            image: Some(image.to_owned().into()),
            env: Some(
                env.iter()
                    .map(|n| EnvView {
                        name: (*n).to_owned().into(),
                        value: Some("x".into()),
                        value_from: None,
                    })
                    .collect(),
            ),
            command: Some(command.iter().map(|c| (*c).to_owned().into()).collect()),
            ..ContainerView::default()
        }
    }

    #[test]
    fn broker_settings_and_broker_starts_are_evidence_of_a_broker() {
        let bitnami = container("bitnami/kafka:3.9", &["KAFKA_CFG_PROCESS_ROLES"], &[]);
        assert_eq!(
            judge(&bitnami, false),
            Evidence::Broker("env KAFKA_CFG_PROCESS_ROLES".into())
        );
        let plain = container(
            "x/y",
            &[],
            &["sh", "-c", "exec kafka-server-start.sh c.properties"],
        );
        assert!(matches!(judge(&plain, false), Evidence::Broker(_)));
    }

    #[test]
    fn the_other_components_are_named_with_their_evidence() {
        for (c, expected) in [
            (
                container(
                    "confluentinc/cp-zookeeper:7.5.0",
                    &["ZOOKEEPER_CLIENT_PORT"],
                    &[],
                ),
                "ZooKeeper (env ZOOKEEPER_CLIENT_PORT)",
            ),
            (
                container("bitnami/zookeeper:3.9", &[], &[]),
                "ZooKeeper (image bitnami/zookeeper:3.9)",
            ),
            (
                container(
                    "confluentinc/cp-kafka-connect:7.5.0",
                    &["CONNECT_BOOTSTRAP_SERVERS", "KAFKA_HEAP_OPTS"],
                    &[],
                ),
                "Kafka Connect (env CONNECT_BOOTSTRAP_SERVERS)",
            ),
            (
                container(
                    "bitnami/kafka:3.9",
                    &[],
                    &["connect-distributed.sh", "/c.properties"],
                ),
                "Kafka Connect (its command runs connect-distributed)",
            ),
            (
                container("confluentinc/cp-schema-registry:7.5.0", &[], &[]),
                "Schema Registry (image confluentinc/cp-schema-registry:7.5.0)",
            ),
            (
                container(
                    "confluentinc/cp-ksqldb-server:7.5.0",
                    &["KSQL_BOOTSTRAP_SERVERS"],
                    &[],
                ),
                "ksqlDB (env KSQL_BOOTSTRAP_SERVERS)",
            ),
            (
                container("danielqsj/kafka-exporter:v1.7.0", &[], &["kafka_exporter"]),
                "an exporter (its command runs kafka_exporter)",
            ),
        ] {
            assert_eq!(judge(&c, false), Evidence::NotABroker(expected.into()));
        }
    }

    #[test]
    fn a_kafka_image_or_the_name_kafka_alone_is_taken_for_a_broker() {
        assert_eq!(
            judge(&container("apache/kafka:3.9.0", &[], &[]), false),
            Evidence::Likely
        );
        assert_eq!(
            judge(&container("registry/internal:1", &[], &[]), true),
            Evidence::Likely
        );
    }

    #[test]
    fn an_only_container_with_no_sign_of_kafka_is_not_a_broker() {
        let redis = container("redis:7", &["REDIS_PASSWORD"], &[]);
        assert_eq!(
            judge(&redis, false),
            Evidence::NotABroker(
                "no broker setting, broker command or Kafka image (redis:7)".into()
            )
        );
    }
}

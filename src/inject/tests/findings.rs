//! Effectiveness findings read from the images' start code (apache/kafka and cp-kafka `run` and
//! `configure`, the stock kafka-server-start.sh, Bitnami's alias).

use super::*;

fn findings_of(pod: &Pod, defaults: &Defaults) -> Vec<String> {
    injection(pod, defaults).findings
}

fn cp_kafka(name: &str) -> PodBuilder {
    broker(name)
        .image("kafka", "confluentinc/cp-kafka:7.8.0")
        .env("kafka", MAP.0, MAP.1)
}

#[test]
fn an_argument_the_run_script_exports_is_a_finding() {
    // confluentinc/kafka-images kafka/include/etc/confluent/docker/run:19-25 (f8e3015, 2026-04-15)
    // and apache/kafka docker/resources/common-scripts/run: `export "$var"` per argument.
    let pod = cp_kafka("kafka-0")
        .command(
            "kafka",
            &[
                "/etc/confluent/docker/run",
                "KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://x:9092",
            ],
        )
        .build();
    let found = findings_of(&pod, &defaults());
    assert!(
        found
            .iter()
            .any(|f| f.contains("passes the argument KAFKA_ADVERTISED_LISTENERS=...")),
        "{found:?}"
    );
}

#[test]
fn the_stock_start_script_with_overrides_ignores_env() {
    let pod = cp_kafka("kafka-0")
        .command(
            "kafka",
            &[
                "sh",
                "-c",
                "exec kafka-server-start.sh /etc/kafka/server.properties --override broker.id=0",
            ],
        )
        .build();
    let found = findings_of(&pod, &defaults());
    assert!(
        found
            .iter()
            .any(|f| f.contains("kafka-server-start.sh, which reads its properties file")),
        "{found:?}"
    );

    let referring = cp_kafka("kafka-0")
        .command(
            "kafka",
            &["sh", "-c", "exec kafka-server-start.sh /etc/kafka/server.properties --override advertised.listeners=$(KAFKA_ADVERTISED_LISTENERS)"],
        )
        .build();
    assert!(findings_of(&referring, &defaults()).is_empty());
}

#[test]
fn a_properties_file_with_a_suffix_is_still_a_properties_file() {
    let pod = cp_kafka("kafka-0")
        .command(
            "kafka",
            &[
                "sh",
                "-c",
                "exec /opt/kafka/bin/run.sh /etc/kafka/server.properties.$(POD_NAME)",
            ],
        )
        .build();
    let found = findings_of(&pod, &defaults());
    assert!(
        found
            .iter()
            .any(|f| f.contains("server.properties.$(POD_NAME)")),
        "{found:?}"
    );
}

#[test]
fn settings_only_in_the_other_convention_are_named() {
    let pod = broker("kafka-0")
        .image("kafka", "example.com/kafka-fork:3")
        .env("kafka", "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP", MAP.1)
        .env("kafka", "KAFKA_CFG_PROCESS_ROLES", "broker")
        .build();
    let plain = Defaults {
        env_name: settings::EnvName::Named(settings::PLAIN_ENV_NAME.into()),
        ..defaults()
    };
    let found = findings_of(&pod, &plain);
    assert!(
        found
            .iter()
            .any(|f| f.contains("spells its broker settings only as KAFKA_CFG_*")),
        "{found:?}"
    );
    // auto picks the convention the container uses: no finding.
    assert!(findings_of(&pod, &defaults()).is_empty());
}

#[test]
fn bitnami_images_get_the_plain_name_which_they_copy_over_the_cfg_one() {
    // bitnami/containers bitnami/kafka/3.3/debian-11/rootfs/opt/bitnami/scripts/kafka/setup.sh:21
    // runs kafka_create_alias_environment_variables (libkafka.sh), after the chart's scripts.
    let pod = broker("kafka-0")
        .image("kafka", "docker.io/bitnami/kafka:3.3.2-debian-11-r0")
        .env("kafka", "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP", MAP.1)
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(
        injection.listeners.as_ref().unwrap().0,
        "KAFKA_ADVERTISED_LISTENERS"
    );
    assert_eq!(
        injection.env_name_choice,
        Some(EnvNameChoice::AutoBitnamiAlias)
    );
    assert!(injection.findings.is_empty(), "{:?}", injection.findings);
}

#[test]
fn a_derived_listener_on_an_undeclared_port_is_a_finding() {
    // apache/kafka docker/resources/common-scripts/configure:59-62 (1eb7644, 2024-10-25):
    // KAFKA_LISTENERS from the advertised value, every host replaced by 0.0.0.0.
    let mut pod = cp_kafka("kafka-0")
        .image("kafka", "apache/kafka:3.9.0")
        .build();
    pod.spec.as_mut().unwrap().containers[0].ports =
        Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            container_port: 9092,
            ..Default::default()
        }]);
    let found = findings_of(&pod, &defaults());
    assert!(
        found
            .iter()
            .any(|f| f.contains("binds the ports of EXTERNAL://kafka-0.kafka.example.com:9094")),
        "{found:?}"
    );
}

#[test]
fn an_ssl_listener_not_named_ssl_gets_no_keystore_from_the_image() {
    // confluentinc/kafka-images kafka/include/etc/confluent/docker/configure:77-78 and apache/kafka
    // docker/resources/common-scripts/configure:67-68: the keystore only `== *"SSL://"*`.
    let pod = broker("kafka-0")
        .image("kafka", "confluentinc/cp-kafka:7.8.0")
        .env("kafka", MAP.0, "INTERNAL:PLAINTEXT,EXTERNAL:SSL")
        .build();
    let found = findings_of(&pod, &defaults());
    assert!(
        found
            .iter()
            .any(|f| f.contains("listener EXTERNAL of container kafka is mapped to SSL")),
        "{found:?}"
    );
    let with_keystore = broker("kafka-0")
        .image("kafka", "confluentinc/cp-kafka:7.8.0")
        .env("kafka", MAP.0, "INTERNAL:PLAINTEXT,EXTERNAL:SSL")
        .env(
            "kafka",
            "KAFKA_LISTENER_NAME_EXTERNAL_SSL_KEYSTORE_LOCATION",
            "/ks.jks",
        )
        .build();
    assert!(findings_of(&with_keystore, &defaults()).is_empty());
}

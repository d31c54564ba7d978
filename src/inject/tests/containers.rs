//! Several containers, env names, findings and node ids.

use serde_json::json;

use super::*;

fn mapped(name: &str) -> PodBuilder {
    broker(name).env("kafka", MAP.0, MAP.1)
}

#[test]
fn templated_env_goes_into_every_named_container_and_init_container() {
    let pod = mapped("kafka-2")
        .init_container("prepare-config", "OTHER", "x")
        .container("metrics")
        .build();
    let defaults = Defaults {
        containers: vec!["kafka".into(), "prepare-config".into()],
        containers_explicit: true,
        extra_env: vec![
            (
                "EXTERNAL_HOST".into(),
                template::Template::parse("{pod}.{domain}").unwrap(),
            ),
            (
                "EXTERNAL_PORT".into(),
                template::Template::parse("{ordinal+31090}").unwrap(),
            ),
        ],
        ..defaults()
    };
    let injection = injection(&pod, &defaults);
    assert_eq!(injection.containers, ["kafka", "prepare-config"]);
    assert_eq!(
        injection.extra_env,
        [
            (
                "EXTERNAL_HOST".to_owned(),
                "kafka-2.kafka.example.com".to_owned()
            ),
            ("EXTERNAL_PORT".to_owned(), "31092".to_owned())
        ]
    );
    let doc = patched(&pod, &injection);
    let init_env = &doc["spec"]["initContainers"][0]["env"];
    assert_eq!(
        init_env[1],
        json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": VALUE_2})
    );
    assert_eq!(
        init_env[2],
        json!({"name": "EXTERNAL_HOST", "value": "kafka-2.kafka.example.com"})
    );
    assert_eq!(
        init_env[3],
        json!({"name": "EXTERNAL_PORT", "value": "31092"})
    );
    assert!(
        doc["spec"]["containers"][1].get("env").is_none(),
        "metrics untouched"
    );
    let again: Pod = serde_json::from_value(doc).unwrap();
    assert!(self::injection(&again, &defaults).patch.0.is_empty());
}

#[test]
fn env_name_none_injects_only_the_templated_env_and_checks_no_listeners() {
    // The Bitnami chart's prepare-config init container builds the listeners from this variable.
    let pod = broker("kafka-2")
        .init_container("prepare-config", "OTHER", "x")
        .annotation("kafka-listener-injector.io/env-name", "none")
        .annotation("kafka-listener-injector.io/container", "prepare-config")
        .annotation(
            "kafka-listener-injector.io/env.EXTERNAL_ACCESS_HOST",
            "{pod}.{domain}",
        )
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(injection.listeners, None);
    assert_eq!(
        patch_json(&injection),
        json!([{"op": "add", "path": "/spec/initContainers/0/env/-",
                "value": {"name": "EXTERNAL_ACCESS_HOST", "value": "kafka-2.kafka.example.com"}},
               {"op": "add", "path": "/metadata/annotations/kafka-listener-injector.io~1settings",
                "value": injection.settings_hash}])
    );
    assert!(injection.warnings.is_empty(), "{:?}", injection.warnings);
}

#[test]
fn auto_env_name_follows_the_image_convention() {
    let bitnami = broker("kafka-2")
        .env("kafka", "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP", MAP.1)
        .build();
    let (name, _) = injection(&bitnami, &defaults()).listeners.unwrap();
    assert_eq!(name, "KAFKA_CFG_ADVERTISED_LISTENERS");
    let apache = mapped("kafka-2").build();
    let (name, _) = injection(&apache, &defaults()).listeners.unwrap();
    assert_eq!(name, "KAFKA_ADVERTISED_LISTENERS");
}

#[test]
fn an_explicitly_named_absent_container_is_a_finding_never_a_fallback() {
    let pod = mapped("kafka-2").build();
    let decision = inject(
        &view(&pod),
        "prod",
        &Defaults {
            containers: vec!["broker".into()],
            containers_explicit: true,
            ..defaults()
        },
    );
    match decision {
        Decision::Skip { reason, warning } => {
            assert_eq!(reason, SkipReason::NoBrokerContainer);
            assert_eq!(
                warning.unwrap(),
                "kafka-listener-injector: pod prod/kafka-2 not injected: no container named broker (--container); it has kafka"
            );
        }
        other => panic!("{other:?}"),
    }
    let pod = mapped("kafka-2")
        .annotation(
            "kafka-listener-injector.io/container",
            "kafka,prepare-config",
        )
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(injection.containers, ["kafka"]);
    assert_eq!(
        injection.warnings,
        ["kafka-listener-injector: container prepare-config named by annotation kafka-listener-injector.io/container is absent from pod kafka-2"]
    );
}

#[test]
fn a_shell_that_assigns_the_variable_itself_is_a_finding() {
    let pod = mapped("kafka-2")
        .command(
            "kafka",
            &["sh", "-c", "export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://${POD_IP}:9092; exec /etc/kafka/docker/run"],
        )
        .build();
    let warnings = injection(&pod, &defaults()).warnings;
    assert_eq!(
        warnings,
        ["kafka-listener-injector: the command of container kafka assigns KAFKA_ADVERTISED_LISTENERS itself, so the shell's value replaces the injected one; refer to injected variables in the script instead (e.g. ${EXTERNAL_HOST} with --env EXTERNAL_HOST={pod}.{domain} and --env-name none)"]
    );
    let strict = Defaults {
        strict: true,
        ..defaults()
    };
    let message = denial(&pod, &strict);
    assert!(
        message.starts_with("pod prod/kafka-2: --strict: the command of container kafka assigns KAFKA_ADVERTISED_LISTENERS itself"),
        "{message}"
    );
}

#[test]
fn a_properties_file_with_no_reference_to_an_injected_variable_is_a_finding() {
    let pod = mapped("kafka-2")
        .mount(
            "kafka",
            "/opt/kafka/config/server.properties",
            Some("server.properties"),
        )
        .build();
    assert_eq!(
        injection(&pod, &defaults()).warnings,
        ["kafka-listener-injector: container kafka configures Kafka from a mounted /opt/kafka/config/server.properties and its command refers to no injected variable, so the broker may ignore them; inject into the container that writes the file (--container names init containers too) and use the variables there"]
    );
    // A script that writes the file from an injected variable is fine.
    let pod = mapped("kafka-2")
        .command(
            "kafka",
            &["sh", "-c", "sed -i \"s|@HOST@|${KAFKA_ADVERTISED_LISTENERS}|\" /config/server.properties && exec kafka-server-start.sh /config/server.properties"],
        )
        .build();
    assert!(injection(&pod, &defaults()).warnings.is_empty());
}

#[test]
fn env_from_sources_the_webhook_cannot_see_are_a_finding() {
    let pod = mapped("kafka-2")
        .env_from_config_map("kafka", "kafka-env")
        .build();
    assert_eq!(
        injection(&pod, &defaults()).warnings,
        ["kafka-listener-injector: container kafka takes env from ConfigMap kafka-env (envFrom), which the webhook cannot see: the listener checks ran without it"]
    );
}

#[test]
fn advertised_names_must_be_listened_on_and_include_the_inter_broker_listener() {
    let pod = mapped("kafka-2")
        .env(
            "kafka",
            "KAFKA_LISTENERS",
            "INTERNAL://:9092,CONTROLLER://:9093",
        )
        .build();
    assert_eq!(
        denial(&pod, &defaults()),
        "pod prod/kafka-2: --listeners renders \"INTERNAL://kafka-2.kafka-headless.prod.svc:9092,EXTERNAL://kafka-2.kafka.example.com:9094\" for container kafka: listener EXTERNAL is not among the container's KAFKA_LISTENERS (\"INTERNAL://:9092,CONTROLLER://:9093\"); Kafka refuses advertised listeners it does not listen on"
    );
    let pod = mapped("kafka-2")
        .env("kafka", "KAFKA_INTER_BROKER_LISTENER_NAME", "REPLICATION")
        .build();
    assert!(denial(&pod, &defaults()).ends_with(
        "the container's KAFKA_INTER_BROKER_LISTENER_NAME is REPLICATION, which the value does not advertise; Kafka would refuse to start"
    ));
}

#[test]
fn node_ids_stay_in_int32_and_in_a_static_voter_set() {
    let node_id = Defaults {
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..defaults()
    };
    let pod = mapped("kafka-2")
        .annotation("kafka-listener-injector.io/node-id-offset", "2147483646")
        .build();
    assert_eq!(
        denial(&pod, &node_id),
        "pod prod/kafka-2: node id 2147483648 (ordinal 2 + node-id-offset 2147483646) is not in 0-2147483647, the range of Kafka's node.id"
    );
    let combined = |name: &str| {
        mapped(name)
            .env("kafka", "KAFKA_PROCESS_ROLES", "broker,controller")
            .env(
                "kafka",
                "KAFKA_CONTROLLER_QUORUM_VOTERS",
                "0@kafka-0.kafka-headless:9093,1@kafka-1.kafka-headless:9093,2@kafka-2.kafka-headless:9093",
            )
            .build()
    };
    assert_eq!(
        injection(&combined("kafka-2"), &node_id).node_id.unwrap().1,
        2
    );
    assert_eq!(
        denial(&combined("kafka-3"), &node_id),
        "pod prod/kafka-3: node id 3 of this controller is not in the container's KAFKA_CONTROLLER_QUORUM_VOTERS, a static voter set; Kafka would refuse to start (use controller.quorum.bootstrap.servers to grow the quorum)"
    );
}

#[test]
fn an_annotation_that_makes_two_variables_share_a_name_is_denied_naming_both() {
    let pod = mapped("kafka-2")
        .annotation(
            "kafka-listener-injector.io/node-id-env",
            "KAFKA_ADVERTISED_LISTENERS",
        )
        .build();
    assert_eq!(
        denial(&pod, &defaults()),
        "pod prod/kafka-2: --env-name and annotation kafka-listener-injector.io/node-id-env both set the env var KAFKA_ADVERTISED_LISTENERS; every injected variable must be distinct"
    );
}

#[test]
fn an_amplifying_template_is_denied_with_a_short_message() {
    let pod = PodBuilder::broker("a-statefulset-with-a-long-name-2")
        .env("kafka", MAP.0, MAP.1)
        .annotation("kafka-listener-injector.io/listeners", &"{pod}".repeat(800))
        .build();
    let message = denial(&pod, &defaults());
    assert_eq!(
        message,
        "pod prod/a-statefulset-with-a-long-name-2: annotation kafka-listener-injector.io/listeners: the rendered value would be over 8192 bytes long"
    );
}

#[test]
fn the_settings_hash_follows_the_settings_and_nothing_else() {
    let hash = |pod: &Pod, defaults: &Defaults| injection(pod, defaults).settings_hash;
    let base = hash(&mapped("kafka-2").build(), &defaults());
    assert_eq!(
        hash(&mapped("kafka-5").build(), &defaults()),
        base,
        "not per pod"
    );
    let other_domain = Defaults {
        domain: Some("kafka.other.example.com".into()),
        ..defaults()
    };
    assert_ne!(hash(&mapped("kafka-2").build(), &other_domain), base);
    let annotated = mapped("kafka-2")
        .annotation("kafka-listener-injector.io/node-id-env", "KAFKA_NODE_ID")
        .build();
    assert_ne!(hash(&annotated, &defaults()), base);
}

#[test]
fn readiness_gate_is_added_once_beside_the_pods_own_gates() {
    let defaults = Defaults {
        readiness_gate: true,
        ..defaults()
    };
    let gate = json!({"conditionType": READINESS_GATE});
    // No gates yet: one `add` sets the list.
    let pod = broker("kafka-2").env("kafka", MAP.0, MAP.1).build();
    let first = injection(&pod, &defaults);
    let injected = patched(&pod, &first);
    assert_eq!(injected["spec"]["readinessGates"], json!([gate.clone()]));
    let injected: Pod = serde_json::from_value(injected).unwrap();
    assert!(injection(&injected, &defaults).patch.0.is_empty());

    // The pod's own gate stays, ours follows it.
    let mut value = serde_json::to_value(&pod).unwrap();
    value["spec"]["readinessGates"] = json!([{"conditionType": "example.com/warm"}]);
    let own: Pod = serde_json::from_value(value).unwrap();
    let patched_own = patched(&own, &injection(&own, &defaults));
    assert_eq!(
        patched_own["spec"]["readinessGates"],
        json!([{"conditionType": "example.com/warm"}, gate])
    );

    // Off by default: the spec is not touched.
    let plain = patched(&pod, &injection(&pod, &super::tests::defaults()));
    assert!(plain["spec"].get("readinessGates").is_none());
}

#[test]
fn the_wait_for_name_init_container_goes_last_once_and_is_renewed_when_it_differs() {
    let wait = crate::inject::wait::WaitForName {
        image: "registry.example/kli:1".into(),
        dns_servers: Vec::new(),
        timeout: "10m".into(),
    };
    let defaults = Defaults {
        wait_for_name: Some(wait.clone()),
        ..super::tests::defaults()
    };
    let names = ["kafka-2.kafka.example.com".to_owned()];
    // No init containers yet: one `add` sets the list; the internal name is not waited for.
    let pod = mapped("kafka-2").build();
    let first = injection(&pod, &defaults);
    assert_eq!(first.wait_for_names, names);
    let injected = patched(&pod, &first);
    assert_eq!(
        injected["spec"]["initContainers"],
        json!([wait.container(&names)])
    );
    let injected: Pod = serde_json::from_value(injected).unwrap();
    assert!(injection(&injected, &defaults).patch.0.is_empty());

    // After the chart's own init container, which stays first.
    let chart = mapped("kafka-2")
        .init_container("prepare-config", "OTHER", "x")
        .build();
    let after = patched(&chart, &injection(&chart, &defaults));
    let list = after["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "prepare-config");
    assert_eq!(list[1], wait.container(&names));

    // Another image (an upgrade of the webhook) replaces ours in place.
    let newer = Defaults {
        wait_for_name: Some(crate::inject::wait::WaitForName {
            image: "registry.example/kli:2".into(),
            ..wait.clone()
        }),
        ..super::tests::defaults()
    };
    let renewed = patched(&injected, &injection(&injected, &newer));
    assert_eq!(
        renewed["spec"]["initContainers"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        renewed["spec"]["initContainers"][0]["image"],
        "registry.example/kli:2"
    );

    // No public name (a node address): nothing to wait for, no init container.
    let on_nodes = Defaults {
        listeners: template::Template::parse("EXTERNAL://{hostIP}:{ordinal+31090}").unwrap(),
        wait_for_name: Some(wait),
        ..super::tests::defaults()
    };
    let node_pod = mapped("kafka-2").build();
    let on_node = injection(&node_pod, &on_nodes);
    assert!(on_node.wait_for_names.is_empty());
    assert!(patched(&node_pod, &on_node)["spec"]
        .get("initContainers")
        .is_none());

    // Off by default.
    let plain = patched(&pod, &injection(&pod, &super::tests::defaults()));
    assert!(plain["spec"].get("initContainers").is_none());
}

#[test]
fn zookeeper_beside_the_brokers_is_not_a_broker_and_never_denied() {
    let zookeeper = PodBuilder::broker("zookeeper-0")
        .owner("zookeeper")
        .rename_container("kafka", "zookeeper")
        .image("zookeeper", "bitnami/zookeeper:3.9")
        .env("zookeeper", "ZOO_SERVER_ID", "1")
        .build();
    // No domain: were it taken for a broker, `{domain}` would deny it.
    let no_domain = Defaults::default();
    match inject(&view(&zookeeper), "prod", &no_domain) {
        Decision::Skip { reason, warning } => {
            assert_eq!(reason, SkipReason::NotABroker);
            let warning = warning.unwrap();
            assert!(
                warning.contains(
                    "container zookeeper is not a Kafka broker: ZooKeeper (env ZOO_SERVER_ID)"
                ),
                "{warning}"
            );
        }
        other => panic!("expected a skip, got {other:?}"),
    }
}

#[test]
fn a_connect_container_named_kafka_is_not_a_broker_unless_named_explicitly() {
    let connect = PodBuilder::broker("connect-0")
        .owner("connect")
        .image("kafka", "confluentinc/cp-kafka-connect:7.6.0")
        .env("kafka", "CONNECT_BOOTSTRAP_SERVERS", "kafka:9092")
        .build();
    assert_eq!(skip_reason(&connect), SkipReason::NotABroker);
    let explicit = Defaults {
        containers: vec!["kafka".into()],
        containers_explicit: true,
        ..defaults()
    };
    let decision = inject(&view(&connect), "prod", &explicit);
    assert!(matches!(decision, Decision::Inject(_)), "{decision:?}");
}

#[test]
fn a_broker_setting_outweighs_an_image_of_another_component() {
    let broker_pod = broker("kafka-0")
        .image("kafka", "registry.example.com/zookeeper-and-kafka:1")
        .env("kafka", "KAFKA_PROCESS_ROLES", "broker")
        .build();
    assert!(matches!(
        inject(&view(&broker_pod), "prod", &defaults()),
        Decision::Inject(_)
    ));
}

#[test]
fn env_name_none_checks_the_containers_own_listeners_that_use_an_injected_variable() {
    let pod = |map: &str| {
        broker("kafka-2")
            .annotation("kafka-listener-injector.io/env-name", "none")
            .annotation(
                "kafka-listener-injector.io/env.EXTERNAL_HOST",
                "{pod}.{domain}",
            )
            .env(
                "kafka",
                "KAFKA_ADVERTISED_LISTENERS",
                "INTERNAL://kafka-2.kafka.kafka.svc:9092,EXTERNAL://$(EXTERNAL_HOST):9094",
            )
            .env("kafka", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", map)
            .build()
    };
    let injection = injection(&pod("INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"), &defaults());
    assert_eq!(injection.listeners, None);
    assert_eq!(
        injection.warnings,
        ["kafka-listener-injector: container kafka's own KAFKA_ADVERTISED_LISTENERS, with the injected EXTERNAL_HOST, \
          fails the listener checks: listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP \
          (\"INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\"); use listener names the map has"]
    );
    let mapped = pod("INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT");
    let warnings = super::injection(&mapped, &defaults()).warnings;
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn env_name_none_checks_an_injected_advertised_listeners_variable() {
    let pod = broker("kafka-2")
        .annotation("kafka-listener-injector.io/env-name", "none")
        .annotation(
            "kafka-listener-injector.io/env.KAFKA_ADVERTISED_LISTENERS",
            "INTERNAL://{pod}.kafka.kafka.svc:9092,BOGUS://{pod}.{domain}:9094",
        )
        .env(
            "kafka",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        )
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(
        injection.warnings,
        ["kafka-listener-injector: the injected KAFKA_ADVERTISED_LISTENERS fails the listener checks: listener BOGUS \
          is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP \
          (\"INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT\"); use listener names the map has"]
    );
    assert!(!injection.patch.0.is_empty(), "a warning, not a denial");
}

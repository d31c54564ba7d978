//! Kubernetes `$(VAR)` references in templates and `--env` values, and where injected variables
//! go so that the kubelet expands every reference to them.

use serde_json::json;

use super::*;

fn with_listeners(template: &str) -> Defaults {
    Defaults {
        listeners: template::Template::parse(template).unwrap(),
        ..defaults()
    }
}

fn env_names(doc: &Value) -> Vec<String> {
    doc["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_host_from_a_variable_the_container_defines_is_accepted_with_a_warning() {
    let pod = broker("kafka-2")
        .env_from_field("kafka", "BROKER_POD_IP")
        .env("kafka", MAP.0, MAP.1)
        .build();
    let defaults =
        with_listeners("INTERNAL://$(BROKER_POD_IP):9093,EXTERNAL://{pod}.{domain}:9094");
    let injection = injection(&pod, &defaults);
    let (_, value) = injection.listeners.as_ref().unwrap();
    assert_eq!(
        value,
        "INTERNAL://$(BROKER_POD_IP):9093,EXTERNAL://kafka-2.kafka.example.com:9094"
    );
    assert!(
        injection
            .warnings
            .iter()
            .any(|w| w.contains("refer to $(BROKER_POD_IP)")),
        "{:?}",
        injection.warnings
    );
}

#[test]
fn a_reference_to_an_undefined_variable_is_denied_naming_it() {
    let pod = broker("kafka-2").env("kafka", MAP.0, MAP.1).build();
    let defaults = with_listeners("INTERNAL://$(POD_IP):9093,EXTERNAL://{pod}.{domain}:9094");
    let message = denial(&pod, &defaults);
    assert!(
        message.contains("--listeners refers to $(POD_IP), which container kafka does not define"),
        "{message}"
    );
}

#[test]
fn a_reference_to_an_injected_variable_is_accepted() {
    let pod = broker("kafka-2").env("kafka", MAP.0, MAP.1).build();
    let defaults = Defaults {
        extra_env: vec![(
            "EXTERNAL_HOST".into(),
            template::Template::parse("{pod}.{domain}").unwrap(),
        )],
        ..with_listeners("INTERNAL://{pod}.{service}:9092,EXTERNAL://$(EXTERNAL_HOST):9094")
    };
    let injection = injection(&pod, &defaults);
    // The listeners refer to EXTERNAL_HOST, so it goes first though it is listed after them.
    let doc = patched(&pod, &injection);
    assert_eq!(
        env_names(&doc),
        [MAP.0, "EXTERNAL_HOST", "KAFKA_ADVERTISED_LISTENERS"]
    );
}

#[test]
fn an_injected_variable_goes_before_the_first_entry_that_refers_to_it() {
    let pod = broker("kafka-2")
        .env("kafka", MAP.0, MAP.1)
        .env("kafka", "KAFKA_OPTS", "-Dadvertised.host=$(EXTERNAL_HOST)")
        .env("kafka", "LATER", "x")
        .build();
    let defaults = Defaults {
        extra_env: vec![(
            "EXTERNAL_HOST".into(),
            template::Template::parse("{pod}.{domain}").unwrap(),
        )],
        ..defaults()
    };
    let injection = injection(&pod, &defaults);
    let doc = patched(&pod, &injection);
    assert_eq!(
        env_names(&doc),
        [
            MAP.0,
            "EXTERNAL_HOST",
            "KAFKA_OPTS",
            "LATER",
            "KAFKA_ADVERTISED_LISTENERS"
        ]
    );
    assert!(patch_json(&injection)
        .as_array()
        .unwrap()
        .contains(&json!({"op": "add", "path": "/spec/containers/0/env/1", "value": {"name": "EXTERNAL_HOST", "value": "kafka-2.kafka.example.com"}})));

    // Mutating the result again changes nothing.
    let again: Pod = serde_json::from_value(doc).unwrap();
    assert!(super::injection(&again, &defaults).patch.0.is_empty());
}

//! Values known only when the pod starts (`{hostIP}`, `{nodeName}`, `{podIP}`) and the rack:
//! downward-API variables injected ahead of the values that refer to them.

use serde_json::json;

use super::*;
use crate::inject::settings::{Flags, ZONE_FIELD};

const NODE_PORT: &str =
    "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{hostIP}:{ordinal+31090}";

fn flags(listeners: &str) -> Flags {
    Flags {
        listeners: listeners.into(),
        domain: Some("kafka.example.com".into()),
        env_name: "auto".into(),
        ..Flags::default()
    }
}

fn env(doc: &Value) -> Vec<Value> {
    doc["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone()
}

fn field(name: &str, path: &str) -> Value {
    json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
}

#[test]
fn a_node_port_broker_advertises_its_node_address_through_an_injected_downward_variable() {
    let defaults = Defaults::from_flags(flags(NODE_PORT)).unwrap();
    let pod = broker("kafka-2").env("kafka", MAP.0, MAP.1).build();
    let injection = injection(&pod, &defaults);
    let value = "INTERNAL://kafka-2.kafka-headless.prod.svc:9092,EXTERNAL://$(KLI_HOST_IP):31092";
    assert_eq!(injection.listeners.as_ref().unwrap().1, value);
    let doc = patched(&pod, &injection);
    assert_eq!(
        env(&doc),
        [
            json!({"name": MAP.0, "value": MAP.1}),
            field("KLI_HOST_IP", "status.hostIP"),
            json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": value}),
        ]
    );
    // Our own start-up variable is not the user's reference: no warning about unchecked hosts.
    assert!(
        !injection.warnings.iter().any(|w| w.contains("refer to $(")),
        "{:?}",
        injection.warnings
    );
    // The pod as stored (the API server defaults fieldRef.apiVersion) gets an empty patch.
    let again: Pod = serde_json::from_value(doc).unwrap();
    assert!(super::injection(&again, &defaults).patch.0.is_empty());
}

#[test]
fn each_start_up_variable_is_injected_once_before_its_first_reference() {
    let mut flags = flags("INTERNAL://{podIP}:9092,EXTERNAL://{hostIP}:{ordinal+31090}");
    flags.env = vec!["NODE={nodeName}".into(), "ADDRESS={hostIP}".into()];
    let defaults = Defaults::from_flags(flags).unwrap();
    let pod = broker("kafka-0").build();
    let doc = patched(&pod, &injection(&pod, &defaults));
    let names: Vec<String> = env(&doc)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "KLI_HOST_IP",
            "KLI_NODE_NAME",
            "KLI_POD_IP",
            "KAFKA_ADVERTISED_LISTENERS",
            "NODE",
            "ADDRESS"
        ]
    );
}

#[test]
fn a_listeners_variable_replaced_in_place_gets_its_start_up_variable_before_it() {
    // The chart already sets the variable, before other entries: the replacement stays where it
    // is, and KLI_HOST_IP must go before it, not at the end.
    let defaults = Defaults::from_flags(flags(NODE_PORT)).unwrap();
    let pod = broker("kafka-1")
        .env("kafka", "KAFKA_ADVERTISED_LISTENERS", "EXTERNAL://old:9094")
        .env("kafka", MAP.0, MAP.1)
        .build();
    let injection = injection(&pod, &defaults);
    let doc = patched(&pod, &injection);
    let names: Vec<String> = env(&doc)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["KLI_HOST_IP", "KAFKA_ADVERTISED_LISTENERS", MAP.0]);
    let again: Pod = serde_json::from_value(doc).unwrap();
    assert!(super::injection(&again, &defaults).patch.0.is_empty());
}

#[test]
fn a_start_up_variable_defined_otherwise_by_the_chart_is_replaced_with_a_warning() {
    let defaults = Defaults::from_flags(flags(NODE_PORT)).unwrap();
    let pod = broker("kafka-1")
        .env("kafka", "KLI_HOST_IP", "10.0.0.1")
        .env("kafka", MAP.0, MAP.1)
        .build();
    let injection = injection(&pod, &defaults);
    assert_eq!(
        env(&patched(&pod, &injection))[0],
        field("KLI_HOST_IP", "status.hostIP")
    );
    assert!(injection
        .warnings
        .iter()
        .any(|w| w.contains("env KLI_HOST_IP of container kafka")));
}

#[test]
fn a_flag_variable_named_like_a_start_up_variable_is_a_clash_naming_both() {
    let mut flags = flags(NODE_PORT);
    flags.env = vec!["KLI_HOST_IP=10.0.0.1".into()];
    let error = Defaults::from_flags(flags).unwrap_err().to_string();
    assert!(
        error.contains("--env KLI_HOST_IP and --listeners both set the env var KLI_HOST_IP"),
        "{error}"
    );
}

#[test]
fn the_rack_comes_from_the_zone_label_and_an_annotation_turns_it_on_or_off() {
    let mut with_rack = flags(settings::DEFAULT_LISTENERS);
    with_rack.rack_env = Some("KAFKA_BROKER_RACK".into());
    let defaults = Defaults::from_flags(with_rack).unwrap();
    let pod = broker("kafka-0").env("kafka", MAP.0, MAP.1).build();
    let injection = injection(&pod, &defaults);
    let doc = patched(&pod, &injection);
    assert_eq!(env(&doc)[1], field("KAFKA_BROKER_RACK", ZONE_FIELD));

    let off = broker("kafka-0")
        .env("kafka", MAP.0, MAP.1)
        .annotation("kafka-listener-injector.io/rack-env", "")
        .build();
    let without = super::injection(&off, &defaults);
    assert!(!env(&patched(&off, &without))
        .iter()
        .any(|e| e["name"] == "KAFKA_BROKER_RACK"));
    // Without a rack the settings hash is what it was before racks existed.
    let plain = Defaults::from_flags(flags(settings::DEFAULT_LISTENERS)).unwrap();
    let no_rack = super::injection(&pod, &plain);
    assert_eq!(without.settings_hash, no_rack.settings_hash);
    assert_ne!(injection.settings_hash, no_rack.settings_hash);

    let on = broker("kafka-0")
        .env("kafka", MAP.0, MAP.1)
        .annotation("kafka-listener-injector.io/rack-env", "RACK")
        .build();
    let annotated = super::injection(&on, &plain);
    assert_eq!(env(&patched(&on, &annotated))[1], field("RACK", ZONE_FIELD));
    // The same defaults remembered the hash of the pod without a rack: not given to this one.
    assert_ne!(annotated.settings_hash, no_rack.settings_hash);
    let bad = broker("kafka-0")
        .annotation("kafka-listener-injector.io/rack-env", "not a name")
        .build();
    assert!(denial(&bad, &plain).contains("annotation kafka-listener-injector.io/rack-env"));
}

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::test_pods::PodBuilder;
use super::*;

mod containers;
mod findings;
mod references;
mod start_up;

fn view(pod: &Pod) -> PodView<'static> {
    PodView::from_pod(pod).unwrap()
}

fn defaults() -> Defaults {
    Defaults {
        domain: Some("kafka.example.com".into()),
        ..Defaults::default()
    }
}

fn broker(name: &str) -> PodBuilder {
    PodBuilder::broker(name).owner("kafka")
}

fn injection(pod: &Pod, defaults: &Defaults) -> Injection {
    match inject(&view(pod), "prod", defaults) {
        Decision::Inject(injection) => injection,
        other => panic!("expected an injection, got {other:?}"),
    }
}

fn denial(pod: &Pod, defaults: &Defaults) -> String {
    match inject(&view(pod), "prod", defaults) {
        Decision::Deny { message, .. } => message,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn skip_reason(pod: &Pod) -> SkipReason {
    match inject(&view(pod), "prod", &defaults()) {
        Decision::Skip { reason, .. } => reason,
        other => panic!("expected a skip, got {other:?}"),
    }
}

/// Applies the injection's patch to the pod and returns the result as JSON.
fn patched(pod: &Pod, injection: &Injection) -> Value {
    let mut doc = serde_json::to_value(pod).unwrap();
    json_patch::patch(&mut doc, &injection.patch).unwrap();
    doc
}

fn patch_json(injection: &Injection) -> Value {
    serde_json::to_value(&injection.patch).unwrap()
}

/// The protocol map of a broker that names both default listeners.
const MAP: (&str, &str) = (
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
);

const VALUE_2: &str =
    "INTERNAL://kafka-2.kafka-headless.prod.svc:9092,EXTERNAL://kafka-2.kafka.example.com:9094";

#[test]
fn env_absent_is_created_with_the_record_annotation() {
    let pod = broker("kafka-2").build();
    let injection = injection(&pod, &defaults());
    assert_eq!(
        patch_json(&injection),
        json!([
            {"op": "add", "path": "/spec/containers/0/env",
             "value": [{"name": "KAFKA_ADVERTISED_LISTENERS", "value": VALUE_2}]},
            {"op": "add", "path": "/metadata/annotations",
             "value": {"kafka-listener-injector.io/advertised-listeners": VALUE_2,
                       "kafka-listener-injector.io/settings": injection.settings_hash}},
        ])
    );
    assert_eq!(injection.settings_hash.len(), 8);
    // No protocol map in the env: Kafka's default one has neither name.
    assert_eq!(injection.warnings.len(), 2, "{:?}", injection.warnings);
    assert!(injection.warnings[1].starts_with(
        "kafka-listener-injector: listener EXTERNAL is not a standard security protocol"
    ));
}

#[test]
fn env_null_is_treated_as_absent() {
    let pod = broker("kafka-2").build();
    let mut doc = serde_json::to_value(&pod).unwrap();
    doc["spec"]["containers"][0]["env"] = Value::Null;
    let pod: Pod = serde_json::from_value(doc.clone()).unwrap();
    let injection = injection(&pod, &defaults());
    json_patch::patch(&mut doc, &injection.patch).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["env"][0]["value"], VALUE_2);
}

#[test]
fn env_present_without_the_var_gets_it_appended() {
    let pod = broker("kafka-2")
        .env("kafka", "KAFKA_HEAP_OPTS", "-Xmx1G")
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(
        patch_json(&injection)[0]["path"],
        "/spec/containers/0/env/-"
    );
    let doc = patched(&pod, &injection);
    assert_eq!(
        doc["spec"]["containers"][0]["env"][0]["name"],
        "KAFKA_HEAP_OPTS"
    );
    assert_eq!(doc["spec"]["containers"][0]["env"][1]["value"], VALUE_2);
}

#[test]
fn var_already_set_is_replaced_with_a_warning_that_hides_the_old_value() {
    let pod = broker("kafka-2")
        .env(
            "kafka",
            "KAFKA_ADVERTISED_LISTENERS",
            "PLAINTEXT://secret-old-host:9092",
        )
        .env("kafka", "OTHER", "x")
        .env("kafka", MAP.0, MAP.1)
        .build();
    let injection = injection(&pod, &defaults());
    assert_eq!(
        patch_json(&injection)[0],
        json!({"op": "replace", "path": "/spec/containers/0/env/0",
               "value": {"name": "KAFKA_ADVERTISED_LISTENERS", "value": VALUE_2}})
    );
    assert_eq!(injection.warnings.len(), 1);
    assert!(injection.warnings[0].contains("KAFKA_ADVERTISED_LISTENERS"));
    assert!(injection.warnings[0].contains("overridden"));
    assert!(!injection.warnings[0].contains("secret-old-host"));
}

#[test]
fn var_from_a_field_ref_is_replaced_by_a_plain_value() {
    let pod = broker("kafka-2")
        .env_from_field("kafka", "KAFKA_ADVERTISED_LISTENERS")
        .build();
    let injection = injection(&pod, &defaults());
    let env = &patched(&pod, &injection)["spec"]["containers"][0]["env"][0];
    assert_eq!(
        env,
        &json!({"name": "KAFKA_ADVERTISED_LISTENERS", "value": VALUE_2})
    );
}

#[test]
fn existing_annotations_get_an_escaped_key() {
    let pod = broker("kafka-2")
        .annotation("prometheus.io/scrape", "true")
        .build();
    let injection = injection(&pod, &defaults());
    let ops = patch_json(&injection);
    assert_eq!(
        ops[1]["path"],
        "/metadata/annotations/kafka-listener-injector.io~1advertised-listeners"
    );
    let doc = patched(&pod, &injection);
    assert_eq!(
        doc["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(
        doc["metadata"]["annotations"]["kafka-listener-injector.io/advertised-listeners"],
        VALUE_2
    );
}

#[test]
fn already_injected_pod_gets_an_empty_patch() {
    let pod = broker("kafka-2")
        .env("kafka", "KAFKA_HEAP_OPTS", "-Xmx1G")
        .env("kafka", MAP.0, MAP.1)
        .build();
    let first = injection(&pod, &defaults());
    let injected: Pod = serde_json::from_value(patched(&pod, &first)).unwrap();
    let second = injection(&injected, &defaults());
    assert!(second.patch.0.is_empty(), "{:?}", second.patch);
    assert!(second.warnings.is_empty());
}

#[test]
fn other_containers_are_never_touched() {
    let pod = broker("kafka-2")
        .container("metrics")
        .env("metrics", "KAFKA_ADVERTISED_LISTENERS", "keep")
        .build();
    let pod = {
        // Put the broker second to check the index in the path.
        let mut pod = pod;
        pod.spec.as_mut().unwrap().containers.reverse();
        pod
    };
    let injection = injection(&pod, &defaults());
    let doc = patched(&pod, &injection);
    assert_eq!(doc["spec"]["containers"][0]["env"][0]["value"], "keep");
    assert_eq!(doc["spec"]["containers"][1]["env"][0]["value"], VALUE_2);
}

#[test]
fn single_container_with_another_name_is_the_broker() {
    let pod = broker("kafka-2")
        .rename_container("kafka", "broker")
        .build();
    assert_eq!(injection(&pod, &defaults()).containers, ["broker"]);
}

#[test]
fn pod_without_the_broker_container_is_skipped() {
    let pod = broker("kafka-2")
        .rename_container("kafka", "app")
        .container("sidecar")
        .build();
    assert_eq!(skip_reason(&pod), SkipReason::NoBrokerContainer);
}

#[test]
fn opted_out_pods_are_skipped() {
    let by_annotation = broker("kafka-2")
        .annotation(settings::INJECT_KEY, "false")
        .build();
    let by_label = broker("kafka-2")
        .label(settings::INJECT_KEY, "false")
        .build();
    assert_eq!(skip_reason(&by_annotation), SkipReason::OptedOut);
    assert_eq!(skip_reason(&by_label), SkipReason::OptedOut);
}

#[test]
fn ignored_namespaces_are_skipped() {
    let pod = broker("kafka-2").build();
    let decision = inject(&view(&pod), "kube-system", &defaults());
    assert!(matches!(
        decision,
        Decision::Skip {
            reason: SkipReason::IgnoredNamespace,
            ..
        }
    ));
}

#[test]
fn controller_only_pod_is_skipped_but_combined_mode_is_injected() {
    let controller = broker("kafka-2")
        .env("kafka", "KAFKA_PROCESS_ROLES", "controller")
        .build();
    assert_eq!(skip_reason(&controller), SkipReason::ControllerOnly);
    let bitnami = broker("kafka-2")
        .env("kafka", "KAFKA_CFG_PROCESS_ROLES", "controller")
        .build();
    assert_eq!(skip_reason(&bitnami), SkipReason::ControllerOnly);
    let combined = broker("kafka-2")
        .env("kafka", "KAFKA_PROCESS_ROLES", "broker,controller")
        .build();
    injection(&combined, &defaults());
}

#[test]
fn pod_without_ordinal_is_allowed_with_warning() {
    let pod = broker("zookeeper-0").build();
    match inject(&view(&pod), "prod", &defaults()) {
        Decision::Skip {
            reason: SkipReason::NoOrdinal,
            warning: Some(warning),
        } => {
            assert!(warning.contains("prod/zookeeper-0"), "{warning}");
            assert!(warning.contains("\"kafka\""), "{warning}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pod_index_label_wins_over_the_name() {
    let pod = broker("kafka-2")
        .label(ordinal::POD_INDEX_LABEL, "5")
        .annotation(
            settings::Setting::Listeners.annotation(),
            "EXTERNAL://b{ordinal}.{domain}:9094",
        );
    let injection = injection(&pod.build(), &defaults());
    assert_eq!(
        injection.advertised.unwrap(),
        "EXTERNAL://b5.kafka.example.com:9094"
    );
}

#[test]
fn node_ports_come_from_ordinal_arithmetic() {
    let pod = broker("kafka-2")
        .annotation(
            settings::Setting::Listeners.annotation(),
            "EXTERNAL://nodes.example.com:{ordinal+31090}",
        )
        .build();
    assert_eq!(
        injection(&pod, &defaults()).advertised.unwrap(),
        "EXTERNAL://nodes.example.com:31092"
    );
}

#[test]
fn unknown_placeholder_in_an_annotation_is_denied_naming_it() {
    let pod = broker("kafka-2")
        .annotation(
            settings::Setting::Listeners.annotation(),
            "EXTERNAL://{host}:9094",
        )
        .build();
    let message = denial(&pod, &defaults());
    assert!(message.starts_with("pod prod/kafka-2: annotation kafka-listener-injector.io/listeners: unknown placeholder {host}"), "{message}");
}

#[test]
fn domain_placeholder_without_a_domain_is_denied() {
    let message = denial(&broker("kafka-2").build(), &Defaults::default());
    assert!(message.contains("pod prod/kafka-2"), "{message}");
    assert!(message.contains("--listeners"), "{message}");
    assert!(message.contains("{domain}"), "{message}");
}

#[test]
fn listener_missing_from_the_protocol_map_is_denied() {
    let pod = broker("kafka-2")
        .env(
            "kafka",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        )
        .build();
    let message = denial(&pod, &defaults());
    assert!(
        message.contains(
            "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
        ),
        "{message}"
    );
}

#[test]
fn advertised_controller_listener_is_a_warning_since_kafka_3_9() {
    let pod = broker("kafka-2")
        .env("kafka", MAP.0, MAP.1)
        .env("kafka", "KAFKA_CONTROLLER_LISTENER_NAMES", "EXTERNAL")
        .build();
    let warnings = injection(&pod, &defaults()).warnings;
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("listener EXTERNAL is a controller listener"),
        "{warnings:?}"
    );
}

#[test]
fn invalid_domain_annotation_is_denied_naming_the_annotation() {
    let pod = broker("kafka-2")
        .annotation(settings::Setting::Domain.annotation(), "bad_domain")
        .build();
    let message = denial(&pod, &defaults());
    assert!(
        message.contains("annotation kafka-listener-injector.io/domain"),
        "{message}"
    );
}

#[test]
fn bitnami_env_names_via_the_env_name_setting() {
    let defaults = Defaults {
        env_name: settings::EnvName::Named("KAFKA_CFG_ADVERTISED_LISTENERS".into()),
        ..defaults()
    };
    let pod = broker("kafka-2")
        .env(
            "kafka",
            "KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP",
            "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
        )
        .build();
    let injection = injection(&pod, &defaults);
    let doc = patched(&pod, &injection);
    assert_eq!(
        doc["spec"]["containers"][0]["env"][1]["name"],
        "KAFKA_CFG_ADVERTISED_LISTENERS"
    );
    assert_eq!(doc["spec"]["containers"][0]["env"][1]["value"], VALUE_2);
}

#[test]
fn node_id_is_ordinal_plus_offset() {
    let pod = broker("kafka-2")
        .annotation(settings::Setting::NodeIdEnv.annotation(), "KAFKA_NODE_ID")
        .annotation(settings::Setting::NodeIdOffset.annotation(), "100")
        .build();
    let injection = injection(&pod, &defaults());
    let doc = patched(&pod, &injection);
    assert_eq!(
        doc["spec"]["containers"][0]["env"][1],
        json!({"name": "KAFKA_NODE_ID", "value": "102"})
    );
    let negative = broker("kafka-2")
        .annotation(settings::Setting::NodeIdEnv.annotation(), "KAFKA_NODE_ID")
        .annotation(settings::Setting::NodeIdOffset.annotation(), "-3")
        .build();
    assert!(denial(&negative, &defaults()).contains("node id -1"));
}

#[test]
fn statefulset_and_namespace_placeholders_render() {
    let pod = broker("kafka-2")
        .annotation(
            settings::Setting::Listeners.annotation(),
            "EXTERNAL://{statefulset}-{ordinal}.{namespace}.{domain}:9094",
        )
        .build();
    assert_eq!(
        injection(&pod, &defaults()).advertised.unwrap(),
        "EXTERNAL://kafka-2.prod.kafka.example.com:9094"
    );
}

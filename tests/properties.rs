//! Property tests on the injection core with generated pods: every patch applies, touches only
//! the broker container's env and the pod's annotations, and is idempotent; nothing panics.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kafka_listener_injector::inject::{inject, Decision, Defaults};
use proptest::prelude::*;
use serde_json::{json, Value};

const ENV_NAMES: [&str; 6] = [
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_NODE_ID",
    "KAFKA_HEAP_OPTS",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "OTHER",
];

fn env_var() -> impl Strategy<Value = Value> {
    let name = prop::sample::select(ENV_NAMES.to_vec());
    prop_oneof![
        (name.clone(), "[ -~]{0,24}").prop_map(|(n, v)| json!({"name": n, "value": v})),
        name.clone().prop_map(
            |n| json!({"name": n, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
        ),
        name.prop_map(|n| json!({"name": n})),
    ]
}

/// `None` stands for an absent env, `Some(None)` for `env: null`.
fn env_list() -> impl Strategy<Value = Option<Option<Vec<Value>>>> {
    prop_oneof![
        Just(None),
        Just(Some(None)),
        prop::collection::vec(env_var(), 0..6).prop_map(|v| Some(Some(v))),
    ]
}

fn container(name: &'static str) -> impl Strategy<Value = Value> {
    env_list().prop_map(move |env| {
        let mut c = json!({"name": name, "image": "apache/kafka:3.9.0", "ports": [{"containerPort": 9092}]});
        if let Some(env) = env {
            c["env"] = json!(env);
        }
        c
    })
}

fn annotations() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let key = prop_oneof![
        Just("kafka-listener-injector.io/advertised-listeners".to_owned()),
        Just("kafka-listener-injector.io/inject".to_owned()),
        Just("example.com/with~tilde".to_owned()),
        Just("a/b/c".to_owned()),
        "[a-z]{1,8}(/[a-z~]{1,8})?",
    ];
    prop::option::of(prop::collection::btree_map(key, "[ -~]{0,16}", 0..4))
}

fn pod() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        (0u32..40).prop_map(|i| Some(format!("kafka-{i}"))),
        Just(Some("kafka".to_owned())),
        Just(Some("other-7".to_owned())),
        Just(None),
    ];
    let containers = prop::collection::vec(
        prop_oneof![
            container("kafka"),
            container("sidecar"),
            container("metrics"),
            container("init-like")
        ],
        1..5,
    )
    .prop_shuffle();
    (name, containers, annotations(), any::<bool>(), any::<bool>()).prop_map(
        |(name, containers, annotations, owned, indexed)| {
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"generateName": "kafka-", "namespace": "prod", "labels": {"app": "kafka"}},
                "spec": {"containers": containers, "subdomain": "kafka-headless",
                          "initContainers": [{"name": "init", "env": [{"name": "KAFKA_ADVERTISED_LISTENERS", "value": "x"}]}]},
                "status": {"phase": "Pending"}
            });
            if let Some(name) = name {
                pod["metadata"]["name"] = json!(name);
            }
            if let Some(annotations) = annotations {
                pod["metadata"]["annotations"] = json!(annotations);
            }
            if owned {
                pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "kafka", "uid": "u", "controller": true}]);
            }
            if indexed {
                pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!("3");
            }
            pod
        },
    )
}

fn defaults() -> Defaults {
    Defaults {
        domain: Some("kafka.example.com".into()),
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..Defaults::default()
    }
}

/// The pod with the broker container's env and the pod annotations removed: what must not change.
fn untouchable(pod: &Value, broker: usize) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    pod["spec"]["containers"][broker]
        .as_object_mut()
        .unwrap()
        .remove("env");
    pod
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn patches_apply_touch_only_the_broker_env_and_annotations_and_are_idempotent(doc in pod()) {
        let typed: Pod = serde_json::from_value(doc.clone()).unwrap();
        match inject(&typed, "prod", &defaults()) {
            Decision::Inject(injection) => {
                let mut patched = doc.clone();
                json_patch::patch(&mut patched, &injection.patch).expect("the patch applies");
                let broker = doc["spec"]["containers"].as_array().unwrap()
                    .iter().position(|c| c["name"] == injection.container.as_str()).unwrap();
                prop_assert_eq!(untouchable(&patched, broker), untouchable(&doc, broker));

                // Exactly one definition of the injected var remains per name, with our value.
                let env = patched["spec"]["containers"][broker]["env"].as_array().unwrap();
                for e in env.iter().filter(|e| e["name"] == injection.env_name.as_str()) {
                    prop_assert_eq!(e, &json!({"name": injection.env_name, "value": injection.value}));
                }
                prop_assert_eq!(
                    &patched["metadata"]["annotations"]["kafka-listener-injector.io/advertised-listeners"],
                    &json!(injection.value)
                );
                // Every other annotation survives.
                if let Some(before) = doc["metadata"]["annotations"].as_object() {
                    for (k, v) in before {
                        if k != "kafka-listener-injector.io/advertised-listeners" {
                            prop_assert_eq!(&patched["metadata"]["annotations"][k], v);
                        }
                    }
                }

                let again: Pod = serde_json::from_value(patched).unwrap();
                match inject(&again, "prod", &defaults()) {
                    Decision::Inject(second) => {
                        prop_assert!(second.patch.0.is_empty(), "not idempotent: {:?}", second.patch);
                        prop_assert!(second.warnings.is_empty());
                    }
                    other => prop_assert!(false, "second pass decided {:?}", other),
                }
            }
            Decision::Skip { .. } | Decision::Deny { .. } => {}
        }
    }

    #[test]
    fn arbitrary_settings_annotations_never_panic_and_injected_values_validate(
        doc in pod(),
        listeners in "[ -~]{0,40}|(INTERNAL|EXTERNAL|X)://\\{(pod|ordinal[+-][0-9]{1,3}|domain|service|namespace|statefulset|nope)\\}[.a-z]{0,8}:[0-9{}ordinal+]{1,8}",
        domain in "[ -~]{0,20}",
        offset in "[-+0-9a-z]{0,6}",
    ) {
        let mut doc = doc;
        doc["metadata"]["annotations"] = json!({
            "kafka-listener-injector.io/listeners": listeners,
            "kafka-listener-injector.io/domain": domain,
            "kafka-listener-injector.io/node-id-offset": offset,
        });
        let typed: Pod = serde_json::from_value(doc.clone()).unwrap();
        if let Decision::Inject(injection) = inject(&typed, "prod", &defaults()) {
            let parsed = kafka_listener_injector::inject::listeners::parse_listeners(&injection.value);
            prop_assert!(parsed.is_ok(), "{} was injected", injection.value);
            let mut patched = doc;
            json_patch::patch(&mut patched, &injection.patch).expect("the patch applies");
        }
    }
}

/// Guards the properties above against vacuity: most generated pods must really be injected.
#[test]
fn generated_pods_are_mostly_injected() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = pod();
    let injected = (0..500)
        .filter(|_| {
            let doc = strategy.new_tree(&mut runner).unwrap().current();
            let typed: Pod = serde_json::from_value(doc).unwrap();
            matches!(inject(&typed, "prod", &defaults()), Decision::Inject(_))
        })
        .count();
    assert!(
        injected > 150,
        "only {injected} of 500 generated pods were injected"
    );
}

//! Property tests on the injection core with generated pods: the view built from JSON bytes
//! equals the view built from the typed Pod; every patch applies, touches only the named
//! containers' env and the pod's annotations, and is idempotent; nothing panics.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;
use kafka_listener_injector::inject::template::Template;
use kafka_listener_injector::inject::{inject, Decision, Defaults, PodView};
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

/// A broker-like container: usually a protocol map naming the default listeners first (a later
/// generated entry of the same name wins, as in Kubernetes), then generated env.
fn container(name: &'static str) -> impl Strategy<Value = Value> {
    (env_list(), prop::bool::weighted(0.9)).prop_map(move |(env, mapped)| {
        let mut c = json!({"name": name, "image": "apache/kafka:4.4.0", "ports": [{"containerPort": 9092}]});
        if let Some(env) = env {
            let mut list = Vec::new();
            if mapped {
                list.push(json!({"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                                 "value": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"}));
            }
            list.extend(env.into_iter().flatten());
            c["env"] = json!(list);
        } else if mapped {
            c["env"] = json!([{"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                               "value": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"}]);
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
            // Container names are unique in a pod (the API server validates it).
            let mut seen = std::collections::HashSet::new();
            let containers: Vec<Value> = containers
                .into_iter()
                .filter(|c| seen.insert(c["name"].as_str().unwrap().to_owned()))
                .collect();
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

/// Settings that name several containers (one an init container) and add templated env.
fn wide_defaults() -> Defaults {
    Defaults {
        containers: vec!["kafka".into(), "init".into(), "sidecar".into()],
        containers_explicit: true,
        extra_env: vec![
            (
                "EXTERNAL_HOST".into(),
                Template::parse("{pod}.{domain}").unwrap(),
            ),
            (
                "EXTERNAL_PORT".into(),
                Template::parse("{ordinal+31090}").unwrap(),
            ),
        ],
        ..defaults()
    }
}

fn settings() -> impl Strategy<Value = Defaults> {
    prop_oneof![Just(defaults()), Just(wide_defaults())]
}

/// The pod with the injected containers' env and the pod annotations removed: what must not
/// change.
fn untouchable(pod: &Value, containers: &[String]) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    for list in ["containers", "initContainers"] {
        for c in pod["spec"][list].as_array_mut().into_iter().flatten() {
            if containers.iter().any(|name| c["name"] == name.as_str()) {
                c.as_object_mut().unwrap().remove("env");
            }
        }
    }
    pod
}

/// The view the core gets in `serve` (from `bytes`, the serialized `doc`) and in `preview`
/// (from the typed Pod).
fn views<'b>(doc: &Value, bytes: &'b [u8]) -> (PodView<'b>, PodView<'static>) {
    let from_bytes: PodView = serde_json::from_slice(bytes).unwrap();
    let typed: Pod = serde_json::from_value(doc.clone()).unwrap();
    (from_bytes, PodView::from_pod(&typed).unwrap())
}

static PATCHED: AtomicUsize = AtomicUsize::new(0);
static CASES: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn patches_apply_touch_only_the_named_envs_and_annotations_and_are_idempotent(
        doc in pod(),
        defaults in settings(),
    ) {
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (view, typed_view) = views(&doc, &bytes);
        prop_assert_eq!(&view, &typed_view, "serve and preview would see different pods");
        CASES.fetch_add(1, Ordering::Relaxed);
        match inject(&view, "prod", &defaults) {
            Decision::Inject(injection) => {
                PATCHED.fetch_add(1, Ordering::Relaxed);
                let mut patched = doc.clone();
                json_patch::patch(&mut patched, &injection.patch).expect("the patch applies");
                prop_assert_eq!(
                    untouchable(&patched, &injection.containers),
                    untouchable(&doc, &injection.containers)
                );

                // In every injected container, exactly our value for each injected name.
                let mut expected: Vec<(String, String)> = injection.extra_env.clone();
                expected.extend(injection.listeners.clone());
                expected.extend(injection.node_id.iter().map(|(n, id)| (n.clone(), id.to_string())));
                for list in ["containers", "initContainers"] {
                    for c in patched["spec"][list].as_array().into_iter().flatten() {
                        if !injection.containers.iter().any(|n| c["name"] == n.as_str()) {
                            continue;
                        }
                        let env = c["env"].as_array().unwrap();
                        for (name, value) in &expected {
                            let defs: Vec<&Value> = env.iter().filter(|e| e["name"] == name.as_str()).collect();
                            prop_assert!(!defs.is_empty(), "{} missing in {}", name, c["name"]);
                            for e in defs {
                                prop_assert_eq!(e, &json!({"name": name, "value": value}));
                            }
                        }
                    }
                }
                if let Some((_, value)) = &injection.listeners {
                    prop_assert_eq!(
                        &patched["metadata"]["annotations"]["kafka-listener-injector.io/advertised-listeners"],
                        &json!(value)
                    );
                }
                // Every other annotation survives.
                if let Some(before) = doc["metadata"]["annotations"].as_object() {
                    for (k, v) in before {
                        if k != "kafka-listener-injector.io/advertised-listeners" && k != "kafka-listener-injector.io/settings" {
                            prop_assert_eq!(&patched["metadata"]["annotations"][k], v);
                        }
                    }
                }

                let patched_bytes = serde_json::to_vec(&patched).unwrap();
                let (again, _) = views(&patched, &patched_bytes);
                match inject(&again, "prod", &defaults) {
                    Decision::Inject(second) => {
                        prop_assert!(second.patch.0.is_empty(), "not idempotent: {:?}", second.patch);
                        prop_assert!(
                            second.warnings.iter().all(|w| !w.contains("was overridden")),
                            "{:?}", second.warnings
                        );
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
        listeners in prop_oneof![
            1 => "[ -~]{0,40}",
            1 => "(INTERNAL|EXTERNAL|X)://\\{(pod|ordinal[+-][0-9]{1,3}|nope)\\}[.a-z]{0,8}:[0-9{}ordinal+]{1,8}",
            6 => "(INTERNAL|EXTERNAL)://\\{(pod|domain|service|namespace|statefulset)\\}(\\.[a-z]{1,8}){0,2}:[1-9][0-9]{0,3}",
        ],
        domain in prop_oneof![1 => "[ -~]{0,20}", 4 => "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}\\.?"],
        offset in prop_oneof![1 => "[-+0-9a-z]{0,6}", 4 => "[0-9]{1,3}"],
    ) {
        // This property is about settings: the pod itself is a broker the defaults would inject.
        let mut doc = doc;
        doc["metadata"]["name"] = json!("kafka-3");
        doc["spec"]["containers"] = json!([{"name": "kafka", "env": [{"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "value": "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"}]}]);
        doc["metadata"]["annotations"] = json!({
            "kafka-listener-injector.io/listeners": listeners,
            "kafka-listener-injector.io/domain": domain,
            "kafka-listener-injector.io/node-id-offset": offset,
        });
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (view, _) = views(&doc, &bytes);
        SETTINGS_CASES.fetch_add(1, Ordering::Relaxed);
        if let Decision::Inject(injection) = inject(&view, "prod", &defaults()) {
            SETTINGS_INJECTED.fetch_add(1, Ordering::Relaxed);
            let (_, value) = injection.listeners.clone().unwrap();
            let parsed = kafka_listener_injector::inject::listeners::parse_listeners(&value);
            prop_assert!(parsed.is_ok(), "{} was injected", value);
            let mut patched = doc;
            json_patch::patch(&mut patched, &injection.patch).expect("the patch applies");
        }
    }
}

static SETTINGS_CASES: AtomicUsize = AtomicUsize::new(0);
static SETTINGS_INJECTED: AtomicUsize = AtomicUsize::new(0);

/// Guards the properties above against vacuity: each must reach its main assertion (an
/// injection) in at least 30% of its cases. Runs the properties itself so the counts are its own.
#[test]
fn each_property_reaches_its_main_assertion_in_at_least_30_percent_of_cases() {
    patches_apply_touch_only_the_named_envs_and_annotations_and_are_idempotent();
    arbitrary_settings_annotations_never_panic_and_injected_values_validate();
    for (name, reached, cases) in [
        ("patches", &PATCHED, &CASES),
        ("settings annotations", &SETTINGS_INJECTED, &SETTINGS_CASES),
    ] {
        let (reached, cases) = (
            reached.load(Ordering::Relaxed),
            cases.load(Ordering::Relaxed),
        );
        assert!(
            reached * 10 >= cases * 3,
            "property {name}: only {reached} of {cases} cases were injected"
        );
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
            let bytes = serde_json::to_vec(&doc).unwrap();
            let (view, _) = views(&doc, &bytes);
            matches!(inject(&view, "prod", &defaults()), Decision::Inject(_))
        })
        .count();
    assert!(
        injected > 150,
        "only {injected} of 500 generated pods were injected"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// `serve` walks a review to the members the view reads and leaves anything unusual to
    /// serde_json's whole parse; both must answer every review alike. A key with an escape at
    /// the top of the body sends the same review down the whole parse.
    #[test]
    fn the_sparse_parse_answers_every_review_as_the_whole_parse(
        doc in pod(),
        defaults in settings(),
    ) {
        use kafka_listener_injector::webhook::admission::review;
        let body = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "namespace": "prod", "operation": "CREATE", "object": doc},
        })
        .to_string();
        let whole = format!("{{\"\\u0078\":0,{}", &body[1..]);
        let (sparse, whole) = (review(body.as_bytes(), &defaults), review(whole.as_bytes(), &defaults));
        let (sparse, whole) = (sparse.unwrap(), whole.unwrap());
        prop_assert_eq!(String::from_utf8_lossy(&sparse.body), String::from_utf8_lossy(&whole.body));
        prop_assert_eq!((sparse.outcome, sparse.reason, sparse.pod), (whole.outcome, whole.reason, whole.pod));
    }
}

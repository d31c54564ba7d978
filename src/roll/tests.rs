use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use serde::Deserialize;

use super::plan::{controller_last, plan};
use crate::inject::settings::Defaults;
use crate::inject::view::PodView;
use crate::inject::Decision;

/// The example StatefulSet (manifests/examples/kafka), with its pod template's annotation `key`
/// set to `value`.
fn example(annotation: Option<(&str, &str)>) -> StatefulSet {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/examples/kafka/kafka.yaml"
    ))
    .unwrap();
    let mut statefulset = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "StatefulSet")
        .unwrap();
    if let Some((key, value)) = annotation {
        statefulset["spec"]["template"]["metadata"]["annotations"][key] = value.into();
    }
    serde_json::from_value(statefulset).unwrap()
}

/// The roll of `statefulset` over the `live` pods, with the default settings and listener.
fn plan_of(statefulset: &StatefulSet, live: &[Pod]) -> super::plan::Plan {
    plan(
        statefulset,
        live,
        "kafka",
        &Defaults::default(),
        "EXTERNAL",
        0,
    )
    .unwrap()
}

/// The pods the webhook made from `statefulset`'s template: what runs now.
fn running(statefulset: &StatefulSet) -> Vec<Pod> {
    crate::preview::manifests::expand_statefulset(statefulset, "kafka", None)
        .unwrap()
        .into_iter()
        .map(|pod| {
            let view = PodView::from_pod(&pod).unwrap();
            let Decision::Inject(injection) =
                crate::inject::inject(&view, "kafka", &Defaults::default())
            else {
                panic!("the example is injected")
            };
            let mut value = serde_json::to_value(&pod).unwrap();
            json_patch::patch(&mut value, &injection.patch).unwrap();
            serde_json::from_value(value).unwrap()
        })
        .collect()
}

#[test]
fn pods_on_the_current_settings_are_skipped() {
    let statefulset = example(None);
    let planned = plan_of(&statefulset, &running(&statefulset));
    assert!(planned.steps.is_empty(), "{:?}", planned.steps);
    assert_eq!(
        planned.current,
        ["kafka/kafka-2", "kafka/kafka-1", "kafka/kafka-0"]
    );
}

#[test]
fn a_new_domain_recreates_every_broker_highest_ordinal_first() {
    let live = running(&example(None));
    let changed = example(Some((
        "kafka-listener-injector.io/domain",
        "kafka.example.net",
    )));
    let mut planned = plan_of(&changed, &live);
    let order: Vec<_> = planned
        .steps
        .iter()
        .map(|s| (s.pod.as_str(), s.node_id))
        .collect();
    assert_eq!(
        order,
        [("kafka-2", 102), ("kafka-1", 101), ("kafka-0", 100)]
    );
    let first = &planned.steps[0];
    assert_eq!(first.endpoint, "kafka-2.kafka.example.net:9094");
    assert!(
        first.why[0].contains("EXTERNAL://kafka-2.kafka.example.com:9094")
            && first.why[0].contains("-> INTERNAL://"),
        "{:?}",
        first.why
    );
    assert_ne!(
        first.settings_before.as_deref(),
        Some(first.settings_after.as_str())
    );
    // The broker the metadata names as controller goes last; the rest keep their order.
    controller_last(&mut planned.steps, 102);
    let order: Vec<_> = planned.steps.iter().map(|s| s.node_id).collect();
    assert_eq!(order, [101, 100, 102]);
}

#[test]
fn a_node_id_that_would_change_is_refused_and_named() {
    let live = running(&example(None));
    let changed = example(Some(("kafka-listener-injector.io/node-id-offset", "200")));
    let planned = plan_of(&changed, &live);
    assert!(planned.steps.is_empty());
    assert_eq!(planned.refused.len(), 3);
    assert_eq!(
        planned.refused[0],
        "kafka/kafka-2: KAFKA_NODE_ID would change from 102 to 202: the broker would refuse to start on its volume, whose meta.properties holds 102"
    );
}

#[test]
fn a_listener_the_template_lacks_is_named() {
    let statefulset = example(None);
    let error = plan(
        &statefulset,
        &running(&statefulset),
        "kafka",
        &Defaults::default(),
        "OUTSIDE",
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("kafka/kafka-2: no listener named OUTSIDE in"),
        "{error}"
    );
}

#[test]
fn topics_one_restart_takes_below_min_insync_replicas_are_named() {
    use crate::probe::{at_risk, ClusterState, Partition};
    let partition = |topic: &str, replicas: &[i32]| Partition {
        topic: topic.into(),
        partition: 0,
        leader: replicas[0],
        replicas: replicas.to_vec(),
        isr: replicas.to_vec(),
    };
    let state = ClusterState {
        brokers: Vec::new(),
        controller: 100,
        partitions: vec![
            partition("orders", &[100, 101, 102]),
            partition("single", &[101]),
            partition("strict", &[100, 101]),
        ],
    };
    let min_insync = [("orders".to_owned(), 2), ("strict".to_owned(), 2)];
    assert_eq!(
        at_risk(&state, &min_insync, &[100, 101, 102]),
        ["single", "strict"]
    );
    // A topic on brokers the roll does not restart (another StatefulSet's) is not at risk.
    assert_eq!(at_risk(&state, &min_insync, &[100, 102]), ["strict"]);
    assert!(!state.partitions[0].under_replicated());
    let lagging = Partition {
        isr: vec![100],
        ..partition("orders", &[100, 101])
    };
    assert!(lagging.under_replicated());
}

#[test]
fn a_new_revision_is_rolled_only_where_deleting_the_pod_brings_it() {
    use k8s_openapi::api::apps::v1::{StatefulSetStatus, StatefulSetUpdateStrategy};
    let mut statefulset = example(None);
    let mut live = running(&statefulset);
    for pod in &mut live {
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("controller-revision-hash".into(), "kafka-1".into());
    }
    statefulset.status = Some(StatefulSetStatus {
        update_revision: Some("kafka-2".into()),
        ..Default::default()
    });
    let strategy = |type_: &str| {
        Some(StatefulSetUpdateStrategy {
            type_: Some(type_.into()),
            rolling_update: None,
        })
    };
    statefulset.spec.as_mut().unwrap().update_strategy = strategy("OnDelete");
    let planned = plan_of(&statefulset, &live);
    assert_eq!(planned.steps.len(), 3);
    assert_eq!(
        planned.steps[0].why,
        ["template revision kafka-1 -> kafka-2"]
    );
    statefulset.spec.as_mut().unwrap().update_strategy = strategy("RollingUpdate");
    let planned = plan_of(&statefulset, &live);
    assert!(planned.steps.is_empty());
    assert!(
        planned.refused[0].contains("rolls new revisions itself"),
        "{:?}",
        planned.refused
    );
}

#[test]
fn the_json_report_names_the_outcome_the_plan_and_the_reason() {
    let live = running(&example(None));
    let changed = example(Some((
        "kafka-listener-injector.io/domain",
        "kafka.example.net",
    )));
    let planned = plan_of(&changed, &live);
    let report = super::Report {
        outcome: &super::Outcome::Stopped,
        plan: &planned,
        rolled: &["kafka-2".to_owned()],
        reason: Some("kafka/kafka-1 (broker 101) did not come back within 10m"),
    };
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["outcome"], "stopped");
    assert_eq!(json["rolled"], serde_json::json!(["kafka-2"]));
    assert_eq!(json["plan"]["steps"][1]["pod"], "kafka-1");
    assert_eq!(
        json["plan"]["steps"][1]["endpoint"],
        "kafka-1.kafka.example.net:9094"
    );
    assert_eq!(
        json["reason"],
        "kafka/kafka-1 (broker 101) did not come back within 10m"
    );
}

#[test]
fn the_next_broker_waits_for_settle_except_after_the_last() {
    use super::Stage;
    use std::time::Duration;
    let minute = Duration::from_secs(60);
    let mut stages = vec![Stage::Recreated];
    while let Some(next) = stages.last().unwrap().next(false, minute) {
        stages.push(next);
    }
    assert_eq!(
        stages,
        [
            Stage::Recreated,
            Stage::Registered,
            Stage::InSync,
            Stage::Settled
        ]
    );
    // Nothing follows the last broker, and --settle 0 turns the wait off.
    assert_eq!(Stage::InSync.next(true, minute), None);
    assert_eq!(Stage::InSync.next(false, Duration::ZERO), None);
}

#[test]
fn a_pod_that_did_not_come_back_is_described_with_its_containers_cause() {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kafka-2", "namespace": "kafka", "uid": "u-2",
                     "annotations": {"kafka-listener-injector.io/settings": "06b26715"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "kafka", "image": "apache/kafka:4.4.0", "imageID": "", "ready": false,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }],
        },
    }))
    .unwrap();
    assert_eq!(
        super::pods::describe_pod(&pod),
        "pod u-2 Running, not Ready with settings 06b26715; container kafka CrashLoopBackOff, \
         3 restarts, last exit code 1 (Error): see kubectl logs -n kafka kafka-2 -c kafka --previous"
    );
}

#[test]
fn brokers_of_the_plan_that_are_down_already_block_nothing_and_go_first() {
    use crate::probe::{ClusterState, Partition};
    let statefulset = example(Some((
        "kafka-listener-injector.io/domain",
        "kafka.example.net",
    )));
    let mut planned = plan_of(&statefulset, &running(&example(None)));
    let partition = |partition: i32, isr: Vec<i32>| Partition {
        topic: "orders".into(),
        partition,
        leader: isr[0],
        replicas: vec![100, 101, 102],
        isr,
    };
    // Broker 100 crashed on the settings of a stopped roll: not in the metadata, out of the ISRs.
    let state = ClusterState {
        brokers: vec![(101, "h".into(), 9094), (102, "h".into(), 9094)],
        controller: 101,
        partitions: vec![partition(0, vec![101, 102]), partition(1, vec![102, 101])],
    };
    let down = super::down_brokers(&state, &planned);
    assert_eq!(down, [100]);
    assert!(super::unhealthy_beyond(&state, &down).is_empty());
    // A partition that lacks another broker still blocks the roll.
    let mut lagging = state.clone();
    lagging.partitions.push(partition(2, vec![101]));
    assert_eq!(super::unhealthy_beyond(&lagging, &down), ["orders-2"]);
    assert_eq!(super::unhealthy_beyond(&state, &[]).len(), 2);
    super::order_steps(&mut planned.steps, &state);
    let order: Vec<i32> = planned.steps.iter().map(|s| s.node_id).collect();
    // The broker that is down first; the controller's (101) last.
    assert_eq!(order, [100, 102, 101]);
}

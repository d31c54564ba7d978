use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::external_name::{external_name_state, judge, resolver, ExternalName};
use super::steps::{describe_owner, owned_by, rendered_for};
use super::*;
use crate::services::HOSTNAME_ANNOTATION;

fn service(labels: &[(&str, &str)], owner_uid: Option<&str>) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("kafka-0-external".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            owner_references: owner_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: "kafka".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        ..Service::default()
    }
}

const OURS: [(&str, &str); 2] = [(MANAGED_BY_LABEL, MANAGED_BY), (INSTANCE_LABEL, "kafka")];

#[test]
fn only_services_owned_by_this_statefulsets_uid_are_ours() {
    assert!(owned_by(&service(&OURS, Some("uid-1")), "uid-1"));
    // A StatefulSet re-created under the same name is another owner.
    assert!(!owned_by(&service(&OURS, Some("uid-0")), "uid-1"));
    assert!(!owned_by(&service(&OURS, None), "uid-1"));
}

#[test]
fn adopt_takes_only_what_services_rendered_for_this_statefulset_and_nobody_owns() {
    assert!(rendered_for(&service(&OURS, None), "kafka"));
    assert!(!rendered_for(&service(&OURS, None), "other"));
    assert!(!rendered_for(&service(&OURS, Some("uid-0")), "kafka"));
    assert!(!rendered_for(&service(&[], None), "kafka"));
    assert!(!rendered_for(
        &service(
            &[(MANAGED_BY_LABEL, "Helm"), (INSTANCE_LABEL, "kafka")],
            None
        ),
        "kafka"
    ));
    assert_eq!(
        describe_owner(&service(&[(MANAGED_BY_LABEL, "Helm")], None)),
        "managed by Helm"
    );
    assert!(describe_owner(&service(&OURS, None)).contains("--adopt"));
}

#[test]
fn external_name_states_read_as_the_annotation_says_them() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let ready = ExternalName::Resolves {
        host: "kafka-3.kafka.example.com".into(),
        load_balancer: vec!["10.77.2.13".into()],
    };
    assert_eq!(
        ready.to_string(),
        "ready: kafka-3.kafka.example.com resolves to its load balancer (10.77.2.13)"
    );
    assert!(ready.resolves());
    let elsewhere = ExternalName::Elsewhere {
        host: "kafka-3.kafka.example.com".into(),
        addresses: vec![ip("10.77.2.11")],
        load_balancer: vec!["10.77.2.13".into()],
    };
    assert_eq!(
        elsewhere.to_string(),
        "mismatch: kafka-3.kafka.example.com resolves to 10.77.2.11, the load balancer is 10.77.2.13"
    );
    assert!(!elsewhere.resolves());
    assert_eq!(elsewhere.reason(), "ResolvesElsewhere");
    assert!(!ExternalName::NoLoadBalancer.resolves());
    assert!(ExternalName::NotLoadBalancer.resolves());
}

#[test]
fn a_mismatch_is_recorded_once_while_the_name_answers_with_parts_of_the_same_set() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let mismatch = |addresses: &[&str], load_balancer: &str| ExternalName::Elsewhere {
        host: "kafka-3.kafka.example.com".into(),
        addresses: addresses.iter().map(|a| ip(a)).collect(),
        load_balancer: vec![load_balancer.into()],
    };
    let recorded = mismatch(&["10.0.0.1", "10.0.0.2"], "10.77.2.13").to_string();
    // A rotating or partial answer of the same records: already said.
    assert!(mismatch(&["10.0.0.2"], "10.77.2.13").recorded_as(&recorded));
    assert!(mismatch(&["10.0.0.2", "10.0.0.1"], "10.77.2.13").recorded_as(&recorded));
    // Somewhere else again, another load balancer, or a state of another kind: written.
    assert!(!mismatch(&["10.0.0.9"], "10.77.2.13").recorded_as(&recorded));
    assert!(!mismatch(&["10.0.0.1"], "10.77.2.14").recorded_as(&recorded));
    let ready = ExternalName::Resolves {
        host: "kafka-3.kafka.example.com".into(),
        load_balancer: vec!["10.77.2.13".into()],
    };
    assert!(!ready.recorded_as(&recorded));
    assert!(ready.recorded_as(&ready.to_string()));
}

#[test]
fn the_recorded_state_does_not_change_with_the_order_dns_answers_in() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let addresses = [ip("10.77.2.13"), ip("10.77.2.11"), ip("10.77.2.12")];
    let load_balancer = vec![
        "10.77.2.13".into(),
        "10.77.2.11".into(),
        "10.77.2.12".into(),
    ];
    let host = || "kafka-3.kafka.example.com".to_owned();
    // Every rotation of three A records, and answers with a subset of them, as resolvers give.
    let answers = [
        vec!["10.77.2.11", "10.77.2.12", "10.77.2.13"],
        vec!["10.77.2.12", "10.77.2.13", "10.77.2.11"],
        vec!["10.77.2.13", "10.77.2.11", "10.77.2.12"],
        vec!["10.77.2.12"],
        vec!["10.77.2.13", "10.77.2.11"],
    ];
    let mut seen = std::collections::BTreeSet::new();
    for answer in &answers {
        let mut lb: Vec<String> = load_balancer.clone();
        lb.rotate_left(answer.len() % 3);
        let state = judge(
            host(),
            lb,
            &addresses,
            Ok(answer.iter().map(|a| ip(a)).collect()),
        );
        seen.insert(state.to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["ready: kafka-3.kafka.example.com resolves to its load balancer (10.77.2.11 10.77.2.12 10.77.2.13)"]
    );
    // A load balancer known by name (AWS): the name's own answer rotates and shrinks too, and
    // the record names the load balancer, not this answer's addresses.
    let mut seen = std::collections::BTreeSet::new();
    for answer in &answers {
        let now: Vec<IpAddr> = answer.iter().map(|a| ip(a)).collect();
        let state = judge(
            host(),
            vec!["k8s-kafka-0-abc.elb.eu-west-1.amazonaws.com".into()],
            &now,
            Ok(now.clone()),
        );
        seen.insert(state.to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["ready: kafka-3.kafka.example.com resolves to its load balancer (k8s-kafka-0-abc.elb.eu-west-1.amazonaws.com)"]
    );
    let elsewhere = |order: [&str; 2]| {
        judge(
            host(),
            load_balancer.clone(),
            &addresses,
            Ok(order.iter().map(|a| ip(a)).collect()),
        )
        .to_string()
    };
    assert_eq!(
        elsewhere(["10.0.0.2", "10.0.0.1"]),
        elsewhere(["10.0.0.1", "10.0.0.2"])
    );
}

#[tokio::test]
async fn a_name_is_checked_against_the_load_balancer_address_it_has() {
    let mut service = service(&OURS, None);
    service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
        type_: Some("LoadBalancer".into()),
        ..Default::default()
    });
    service.metadata.annotations = Some(
        [(HOSTNAME_ANNOTATION.to_owned(), "localhost".to_owned())]
            .into_iter()
            .collect(),
    );
    let resolver = resolver(None).unwrap();
    assert_eq!(
        external_name_state(&service, &resolver).await,
        ExternalName::NoLoadBalancer
    );
    let with_address = |ip: &str| {
        let mut service = service.clone();
        service.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
            load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
                ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        });
        service
    };
    // The system resolver reads /etc/hosts: localhost is 127.0.0.1 (and maybe ::1).
    assert!(matches!(
        external_name_state(&with_address("127.0.0.1"), &resolver).await,
        ExternalName::Resolves { .. }
    ));
    assert!(matches!(
        external_name_state(&with_address("192.0.2.7"), &resolver).await,
        ExternalName::Elsewhere { .. }
    ));
    // A load balancer known by name only, as AWS reports it: its addresses are what the name
    // resolves to.
    let mut by_name = service.clone();
    by_name.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
        load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
            ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                hostname: Some("localhost".into()),
                ..Default::default()
            }]),
        }),
        ..Default::default()
    });
    assert!(matches!(
        external_name_state(&by_name, &resolver).await,
        ExternalName::Resolves { .. }
    ));
}

#[test]
fn retries_are_spread_over_ten_seconds() {
    let delays: std::collections::BTreeSet<_> =
        (0..50).map(|_| retry_delay().as_millis()).collect();
    assert!(delays.iter().all(|d| (10_000..20_000).contains(d)));
    assert!(delays.len() > 10, "{delays:?}");
}

#[test]
fn a_new_note_of_a_reason_is_a_new_event_and_the_same_note_a_repeat() {
    use kube::runtime::events::EventType;
    let first = super::objects::event(
        EventType::Warning,
        "RenderFailed",
        "listener EXTERNAL is missing",
    );
    let again = super::objects::event(
        EventType::Warning,
        "RenderFailed",
        "listener EXTERNAL is missing",
    );
    let other = super::objects::event(
        EventType::Warning,
        "RenderFailed",
        "--domain is not a DNS name",
    );
    // The recorder keys its series by reason and action: the same action counts up the first
    // event, another one starts a new event with the new text.
    assert_eq!(first.action, again.action);
    assert_ne!(first.action, other.action);
    assert!(
        first.action.len() <= 128,
        "the API's limit for an event's action"
    );
    assert_eq!(other.note.as_deref(), Some("--domain is not a DNS name"));
}

#[test]
fn the_name_a_service_is_checked_by_is_the_one_its_broker_advertises_now() {
    let mut service = service(&OURS, None);
    let named = |service: &mut Service, names: &str| {
        service.metadata.annotations = Some(
            [(HOSTNAME_ANNOTATION.to_owned(), names.to_owned())]
                .into_iter()
                .collect(),
        );
    };
    named(
        &mut service,
        "kafka-0.old.example.com, kafka-0.new.example.com",
    );
    assert_eq!(
        super::objects::exposed_host(&service),
        "kafka-0.old.example.com"
    );
    named(&mut service, "kafka-0.new.example.com");
    assert_eq!(
        super::objects::exposed_host(&service),
        "kafka-0.new.example.com"
    );
    service.metadata.annotations = None;
    assert_eq!(super::objects::exposed_host(&service), "");
}

#[test]
fn a_service_is_kept_while_a_running_broker_advertises_its_name_or_its_node_port() {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    let advertised = |value: &str| crate::services::Advertised::from([(0, value.to_owned())]);
    let mut named = service(&OURS, None);
    named.metadata.annotations = Some(
        [(
            HOSTNAME_ANNOTATION.to_owned(),
            "kafka-0.kafka.example.com".to_owned(),
        )]
        .into_iter()
        .collect(),
    );
    let kept = |service: &Service, value: &str| {
        super::objects::advertised_by_running(service, &advertised(value))
    };
    assert!(kept(&named, "EXTERNAL://kafka-0.kafka.example.com:9094"));
    assert!(!kept(&named, "EXTERNAL://kafka-1.kafka.example.com:9094"));

    // A broker on its node's address: no name, so the node port tells.
    let mut at_node = service(&OURS, None);
    at_node.spec = Some(ServiceSpec {
        type_: Some("NodePort".into()),
        ports: Some(vec![ServicePort {
            port: 9094,
            node_port: Some(31090),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    });
    assert!(kept(
        &at_node,
        "INTERNAL://kafka-0.h.kafka.svc:9092,EXTERNAL://$(KLI_HOST_IP):31090"
    ));
    assert!(!kept(&at_node, "EXTERNAL://$(KLI_HOST_IP):31091"));
    // A literal address on that port is not this layout's: the template says which node.
    assert!(!kept(&at_node, "EXTERNAL://10.0.0.7:31090"));
    assert!(!kept(
        &at_node,
        "EXTERNAL://kafka-0.kafka.example.com:31090"
    ));
}

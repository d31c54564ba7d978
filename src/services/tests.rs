use super::*;

fn example_statefulset() -> StatefulSet {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/examples/kafka/kafka.yaml"
    ))
    .unwrap();
    let statefulset = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .find(|v| v["kind"] == "StatefulSet")
        .unwrap();
    serde_json::from_value(statefulset).unwrap()
}

fn render() -> Render {
    Render {
        defaults: Defaults::default(),
        service_type: ServiceType::LoadBalancer,
        annotations: Vec::new(),
        port: None,
        listener: "EXTERNAL".into(),
        name_template: Template::parse("{pod}-external").unwrap(),
        scope: Scope::Internal,
        cloud: Some(Cloud::Gcp),
        source_ranges: Vec::new(),
        external_traffic_policy: None,
        bootstrap_host: Some(Template::parse("bootstrap.{domain}").unwrap()),
        gateway: None,
    }
}

use kube::ResourceExt;
use serde::Deserialize;

#[test]
fn a_statefulset_scaled_to_zero_needs_no_service_not_even_a_bootstrap_one() {
    let rendered = for_statefulset(
        &render(),
        &example_statefulset(),
        "kafka",
        Some(0),
        &Advertised::new(),
    )
    .unwrap();
    assert_eq!(rendered.services().count(), 0);
    let rendered = for_statefulset(
        &render(),
        &example_statefulset(),
        "kafka",
        Some(2),
        &Advertised::new(),
    )
    .unwrap();
    let names: Vec<_> = rendered
        .services()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["kafka-0-external", "kafka-1-external", "kafka-bootstrap"]
    );
}

/// Two brokers of the example, broker 0 still running with `external` as its EXTERNAL listener.
fn with_broker_0_running(external: &str) -> Rendered {
    let running = Advertised::from([(
        0,
        format!("INTERNAL://kafka-0.kafka-headless.kafka.svc:9092,EXTERNAL://{external}"),
    )]);
    for_statefulset(
        &render(),
        &example_statefulset(),
        "kafka",
        Some(2),
        &running,
    )
    .unwrap()
}

fn host(service: &Service) -> String {
    service.annotations()[HOSTNAME_ANNOTATION].clone()
}

#[test]
fn a_running_broker_keeps_the_name_it_advertises_until_it_is_recreated() {
    // Broker 0 still runs with the old domain and port; broker 1 was recreated already.
    let rendered = with_broker_0_running("kafka-0.kafka.old.example.com:9095");
    let port = |service: &Service| service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port;
    // A new port needs a new Service port: the next name waits for the broker's recreation.
    assert_eq!(host(&rendered.brokers[0]), "kafka-0.kafka.old.example.com");
    assert_eq!(port(&rendered.brokers[0]), 9095);
    assert_eq!(host(&rendered.brokers[1]), "kafka-1.kafka.example.com");
    assert_eq!(port(&rendered.brokers[1]), 9094);
    // The bootstrap Service takes the port the StatefulSet converges to, not a mix.
    assert_eq!(port(rendered.bootstrap.as_ref().unwrap()), 9094);
}

#[test]
fn a_broker_not_yet_recreated_after_a_domain_change_has_both_names_on_its_load_balancer() {
    let rendered = with_broker_0_running("kafka-0.kafka.old.example.com:9094");
    // The name it advertises first (its clients use it now), then the one its next pod will:
    // published before the pod is recreated, it resolves by the time the new broker registers.
    assert_eq!(
        host(&rendered.brokers[0]),
        "kafka-0.kafka.old.example.com,kafka-0.kafka.example.com"
    );
    assert_eq!(host(&rendered.brokers[1]), "kafka-1.kafka.example.com");
}

fn node_port_render(listeners: &str) -> Rendered {
    let mut render = render();
    render.service_type = ServiceType::NodePort;
    let listeners = format!("INTERNAL://{{pod}}.{{service}}.{{namespace}}.svc:9092,{listeners}");
    render.defaults.listeners = Template::parse(&listeners).unwrap();
    render.bootstrap_host = None;
    for_statefulset(
        &render,
        &example_statefulset(),
        "kafka",
        Some(3),
        &Advertised::new(),
    )
    .unwrap()
}

#[test]
fn fixed_node_ports_another_service_may_be_given_first_are_named_once() {
    let rendered = node_port_render("EXTERNAL://{hostIP}:{ordinal+30084}");
    let node_ports: Vec<_> = rendered
        .brokers
        .iter()
        .map(|s| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port)
        .collect();
    assert_eq!(node_ports, [Some(30084), Some(30085), Some(30086)]);
    assert_eq!(rendered.warnings.len(), 1, "{:?}", rendered.warnings);
    let warning = &rendered.warnings[0];
    assert_eq!(warning.reason, "NodePortMayBeTaken");
    assert!(
        warning
            .message
            .starts_with("kafka/kafka: node port 30086 (kafka-2) is outside 30000-30085")
            && warning
                .message
                .contains("provided port is already allocated"),
        "{}",
        warning.message
    );

    let rendered = node_port_render("EXTERNAL://{hostIP}:{ordinal+31090}");
    assert!(rendered.warnings[0]
        .message
        .contains("node ports 31090 (kafka-0), 31091 (kafka-1), 31092 (kafka-2) are outside"));

    let rendered = node_port_render("EXTERNAL://{hostIP}:{ordinal+30040}");
    assert!(rendered.warnings.is_empty(), "{:?}", rendered.warnings);
}

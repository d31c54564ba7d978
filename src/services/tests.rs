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
    }
}

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

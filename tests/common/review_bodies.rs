//! Review bodies derived from a fixture, for the allocation test and the profiling example: the
//! pod as the webhook's own patch leaves it, and the pod opted out.

use base64::Engine;
use kafka_listener_injector::inject::Defaults;
use kafka_listener_injector::webhook::admission;
use serde_json::Value;

/// The review of the pod as the webhook's own patch leaves it (what a reinvocation sees).
pub fn already_injected(body: &[u8], defaults: &Defaults) -> Vec<u8> {
    let answer: Value =
        serde_json::from_slice(&admission::review(body, defaults).unwrap().body).unwrap();
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut review: Value = serde_json::from_slice(body).unwrap();
    json_patch::patch(&mut review["request"]["object"], &patch).unwrap();
    serde_json::to_vec(&review).unwrap()
}

/// The review of the pod with the inject label set to "false".
pub fn opted_out(body: &[u8]) -> Vec<u8> {
    let mut review: Value = serde_json::from_slice(body).unwrap();
    review["request"]["object"]["metadata"]["labels"]["kafka-listener-injector.io/inject"] =
        "false".into();
    serde_json::to_vec(&review).unwrap()
}

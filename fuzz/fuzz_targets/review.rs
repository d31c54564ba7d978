//! Any bytes through the request handler: `admission::review` must answer or refuse, never panic;
//! an answer must be a JSON AdmissionReview echoing a uid, and its patch (if any) must be valid
//! base64 JSON that applies to the request's object.
#![no_main]

use base64::Engine;
use kafka_listener_injector::webhook::admission;
use kafka_listener_injector::inject::Defaults;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..Defaults::default()
    };
    let Ok(reviewed) = admission::review(body, &defaults) else {
        return;
    };
    let answer: serde_json::Value = serde_json::from_slice(&reviewed.body).expect("answers are JSON");
    let response = &answer["response"];
    assert!(response["allowed"].is_boolean());
    assert!(response["uid"].is_string());
    let Some(patch) = response["patch"].as_str() else {
        return;
    };
    assert_eq!(response["allowed"], true, "only an admitted pod is patched");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("the patch is a JSON patch");
    let request: serde_json::Value = serde_json::from_slice(body).expect("a patched request was JSON");
    let mut object = request["request"]["object"].clone();
    json_patch::patch(&mut object, &patch).expect("the patch applies to the object");
});

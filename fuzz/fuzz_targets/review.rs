//! Any bytes through the request handler: `admission::review` must answer or refuse, never panic,
//! and an answer must be a JSON AdmissionReview whose patch (if any) is valid base64 JSON.
#![no_main]

use kafka_listener_injector::admission;
use kafka_listener_injector::inject::Defaults;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..Defaults::default()
    };
    if let Ok(reviewed) = admission::review(body, &defaults) {
        let answer: serde_json::Value = serde_json::from_slice(&reviewed.body).expect("answers are JSON");
        assert!(answer["response"]["allowed"].is_boolean());
    }
});

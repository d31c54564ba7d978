//! Bytes in, bytes out: an AdmissionReview body is parsed, handed to the injection core, and
//! answered with an AdmissionReview. The body is parsed here rather than by an extractor so that a
//! malformed review gets a precise answer.

use std::borrow::Cow;

use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::DynamicObject;
use serde::Deserialize;
use serde_with::{serde_as, BorrowCow};
use thiserror::Error;

use crate::inject::{self, Decision, Defaults, PodView};
use crate::outcome::{Outcome, Reason};

mod scan;
mod sparse;

const SUPPORTED_VERSIONS: [&str; 2] = ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"];

// The hot path parses only the fields the injection reads and skips the rest unparsed: parsing a
// full `AdmissionReview<Pod>` of the 20 KB bench review took 55 us, mostly building managedFields,
// volumes and the like that are never read. The object is parsed straight into the core's
// `PodView`, the same type `preview` builds from manifests, and every string borrows from the
// body unless it has escapes to undo.

#[serde_as]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewFacts<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    api_version: Cow<'a, str>,
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    request: Option<RequestFacts<'a>>,
}

#[serde_as]
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestFacts<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: KindFacts<'a>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde_as(as = "BorrowCow")]
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde_as(as = "Option<BorrowCow>")]
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    operation: Operation,
    #[serde(default)]
    dry_run: bool,
    #[serde(default, borrow)]
    object: Option<PodView<'a>>,
}

/// `request.kind`, a GroupVersionKind.
#[serde_as]
#[derive(Deserialize)]
struct KindFacts<'a> {
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// The response to one review, in the review's own API version. Not kube's `AdmissionResponse`:
/// that one can only be built from kube's full request type (or as an error), which the hot path
/// does not parse; this holds the same fields and is written in the API server's wire form.
struct Answer<'a> {
    api_version: &'a str,
    kind: &'a str,
    uid: &'a str,
    allowed: bool,
    status: kube::core::Status,
    patch: Option<json_patch::Patch>,
    warnings: Option<Vec<String>>,
}

impl<'a> Answer<'a> {
    fn allow(api_version: &'a str, kind: &'a str, uid: &'a str) -> Self {
        Self {
            api_version,
            kind,
            uid,
            allowed: true,
            status: kube::core::Status::default(),
            patch: None,
            warnings: None,
        }
    }

    fn with_patch(mut self, patch: json_patch::Patch) -> Self {
        self.patch = Some(patch);
        self
    }
}

/// A body that cannot be answered with an AdmissionReview (HTTP 400).
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not an AdmissionReview request: {0}")]
    NotAReview(String),
}

impl ReviewError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotJson(_) => Reason::NotJson,
            Self::NotAReview(_) => Reason::NotAReview,
        }
    }
}

/// The answer to one review, and what to log and count about it; its strings borrow from the
/// request body where they can.
#[derive(Debug)]
pub struct Reviewed<'a> {
    /// The serialized AdmissionReview response.
    pub body: Vec<u8>,
    pub outcome: Outcome,
    pub reason: Reason,
    pub uid: Cow<'a, str>,
    pub namespace: Cow<'a, str>,
    pub pod: Cow<'a, str>,
    pub dry_run: bool,
    pub warnings: usize,
    /// The settings hash of an injected pod (patched or already up to date).
    pub settings: Option<String>,
}

/// Answers one AdmissionReview body.
pub fn review<'a>(body: &'a [u8], defaults: &Defaults) -> Result<Reviewed<'a>, ReviewError> {
    // JSON is UTF-8 (the API server never sends anything else). Checking the whole body at once
    // is several times cheaper than checking each string as it is parsed, and a `&str` lets the
    // parser skip that check.
    let text =
        std::str::from_utf8(body).map_err(|error| ReviewError::NotJson(error.to_string()))?;
    // The sparse parse skips what is never read; whatever it does not handle, serde_json judges.
    let review: ReviewFacts = match sparse::parse(text) {
        Some(review) => review,
        None => match serde_json::from_str(text) {
            Ok(review) => review,
            Err(error) => return review_non_pod(body, error),
        },
    };
    check_types(&review.api_version, &review.kind)?;
    let request = review
        .request
        .ok_or_else(|| ReviewError::NotAReview("it has no request".into()))?;
    let response = Answer::allow(&review.api_version, &review.kind, &request.uid);
    let namespace = request.namespace.unwrap_or_default();
    let mut reviewed = Reviewed {
        body: Vec::new(),
        outcome: Outcome::Ignored,
        reason: Reason::NotAPod,
        uid: Cow::Borrowed(""),
        namespace: Cow::Borrowed(""),
        pod: request.name,
        dry_run: request.dry_run,
        warnings: 0,
        settings: None,
    };

    let response = if !is_pod(&request.kind, request.sub_resource.as_deref()) {
        reviewed.reason = Reason::NotAPod;
        response
    } else if request.operation != Operation::Create {
        reviewed.reason = Reason::NotCreate;
        response
    } else if let Some(pod) = &request.object {
        if reviewed.pod.is_empty() {
            reviewed.pod = Cow::Owned(pod.display_name());
        }
        decide(pod, &namespace, defaults, response, &mut reviewed)
    } else {
        reviewed.outcome = Outcome::Denied;
        reviewed.reason = Reason::NoObject;
        deny(response, "CREATE of a Pod without request.object".into())
    };
    reviewed.body = serialize(response);
    reviewed.uid = request.uid;
    reviewed.namespace = namespace;
    Ok(reviewed)
}

fn decide<'a>(
    pod: &PodView,
    namespace: &str,
    defaults: &Defaults,
    response: Answer<'a>,
    reviewed: &mut Reviewed,
) -> Answer<'a> {
    match inject::inject(pod, namespace, defaults) {
        Decision::Inject(mut injection) => {
            let mut response = response;
            reviewed.settings = Some(std::mem::take(&mut injection.settings_hash));
            if injection.patch.0.is_empty() {
                reviewed.outcome = Outcome::Unchanged;
                reviewed.reason = Reason::AlreadyInjected;
            } else {
                reviewed.outcome = Outcome::Patched;
                reviewed.reason = if injection.warnings.is_empty() {
                    Reason::Injected
                } else {
                    Reason::InjectedWithWarnings
                };
                response = response.with_patch(injection.patch);
            }
            with_warnings(response, injection.warnings, reviewed)
        }
        Decision::Skip { reason, warning } => {
            reviewed.outcome = Outcome::Skipped;
            reviewed.reason = Reason::Skip(reason);
            with_warnings(response, warning.into_iter().collect(), reviewed)
        }
        Decision::Deny { error, message } => {
            reviewed.outcome = Outcome::Denied;
            reviewed.reason = Reason::from(&error);
            deny(response, message)
        }
    }
}

fn with_warnings<'a>(
    mut response: Answer<'a>,
    warnings: Vec<String>,
    reviewed: &mut Reviewed,
) -> Answer<'a> {
    reviewed.warnings = warnings.len();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}

fn deny(mut response: Answer<'_>, message: String) -> Answer<'_> {
    response.allowed = false;
    response.status = kube::core::Status::failure(&message, "Forbidden").with_code(403);
    response
}

/// Whether a review is about a Pod itself (core v1, not a subresource such as `pods/status`):
/// the one test both parses use, so a malformed review and a well-formed one are judged alike.
fn is_pod(kind: &KindFacts, sub_resource: Option<&str>) -> bool {
    kind.group.is_empty()
        && kind.version == "v1"
        && kind.kind == "Pod"
        && sub_resource.unwrap_or("").is_empty()
}

/// A body that is not a review of a Pod: answered when it is some other object's review.
fn review_non_pod(body: &[u8], pod_error: serde_json::Error) -> Result<Reviewed<'_>, ReviewError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::NotJson(without_values(&e)))?;
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_value(value).map_err(|e| ReviewError::NotAReview(without_values(&e)))?;
    check_types(&review.types.api_version, &review.types.kind)?;
    let types = review.types.clone();
    let request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| ReviewError::NotAReview("it has no request".into()))?;
    let response = Answer::allow(&types.api_version, &types.kind, &request.uid);
    let kind = KindFacts {
        group: Cow::Borrowed(&request.kind.group),
        version: Cow::Borrowed(&request.kind.version),
        kind: Cow::Borrowed(&request.kind.kind),
    };
    let is_pod_create =
        is_pod(&kind, request.sub_resource.as_deref()) && request.operation == Operation::Create;
    let (outcome, reason, response) = if is_pod_create {
        // A Pod the types cannot hold would be refused by the API server too; refuse it here.
        let message = format!(
            "request.object is not a valid Pod: {}",
            without_values(&pod_error)
        );
        (
            Outcome::Denied,
            Reason::MalformedPod,
            deny(response, message),
        )
    } else {
        (Outcome::Ignored, Reason::NotAPod, response)
    };
    let body = serialize(response);
    Ok(Reviewed {
        body,
        outcome,
        reason,
        uid: Cow::Owned(request.uid),
        namespace: Cow::Owned(request.namespace.unwrap_or_default()),
        pod: Cow::Owned(request.name),
        dry_run: request.dry_run,
        warnings: 0,
        settings: None,
    })
}

/// A parse error's message with every quoted string from the input replaced by `"…"`: errors
/// are logged and returned, and a pod's strings may be secrets. Field names (in backticks),
/// expected types and positions remain.
fn without_values(error: &impl std::fmt::Display) -> String {
    let text = error.to_string();
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        match (c, quoted) {
            ('"', false) => {
                out.push_str("\"…");
                quoted = true;
            }
            ('"', true) => {
                out.push('"');
                quoted = false;
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

fn check_types(api_version: &str, kind: &str) -> Result<(), ReviewError> {
    if kind != "AdmissionReview" || !SUPPORTED_VERSIONS.contains(&api_version) {
        return Err(ReviewError::NotAReview(format!(
            "expected kind AdmissionReview of admission.k8s.io/v1, got kind {kind:?} of {api_version:?}"
        )));
    }
    Ok(())
}

/// Writes the response review in the API server's wire form. The envelope is a handful of
/// fields written in order; the patch is serialized once and base64-encoded straight into the
/// output, with no escaping pass (base64 needs none). kube's own serialization would write the
/// patch as an array of numbers; the API server's `[]byte` field is documented as base64.
fn serialize(response: Answer<'_>) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::with_capacity(if response.patch.is_some() { 1024 } else { 256 });
    out.extend_from_slice(b"{\"apiVersion\":");
    json_string(&mut out, response.api_version);
    out.extend_from_slice(b",\"kind\":");
    json_string(&mut out, response.kind);
    out.extend_from_slice(b",\"response\":{\"uid\":");
    json_string(&mut out, response.uid);
    out.extend_from_slice(if response.allowed {
        b",\"allowed\":true,\"status\":"
    } else {
        b",\"allowed\":false,\"status\":"
    });
    serde_json::to_writer(&mut out, &response.status).expect("a Status serializes");
    if let Some(patch) = &response.patch {
        out.extend_from_slice(b",\"patchType\":\"JSONPatch\",\"patch\":\"");
        let json = serde_json::to_vec(patch).expect("a JSON patch serializes");
        let start = out.len();
        out.resize(
            start + base64::encoded_len(json.len(), true).expect("a patch fits"),
            0,
        );
        base64::engine::general_purpose::STANDARD
            .encode_slice(&json, &mut out[start..])
            .expect("the output was sized for it");
        out.push(b'"');
    }
    if let Some(warnings) = &response.warnings {
        out.extend_from_slice(b",\"warnings\":");
        serde_json::to_writer(&mut out, warnings).expect("strings serialize");
    }
    out.extend_from_slice(b"}}");
    out
}

fn json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string serializes");
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::{json, Value};

    const FIXTURE: &str = include_str!("../../tests/fixtures/review-statefulset-pod.json");

    fn defaults() -> Defaults {
        Defaults {
            domain: Some("kafka.example.com".into()),
            ..Defaults::default()
        }
    }

    fn answer(body: &[u8]) -> (Reviewed<'_>, Value) {
        let reviewed = review(body, &defaults()).unwrap();
        let value = serde_json::from_slice(&reviewed.body).unwrap();
        (reviewed, value)
    }

    fn with(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut value: Value = serde_json::from_str(FIXTURE).unwrap();
        mutate(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn statefulset_pod_is_patched_with_the_uid_echoed() {
        let (reviewed, value) = answer(FIXTURE.as_bytes());
        assert_eq!(reviewed.outcome, Outcome::Patched);
        let response = &value["response"];
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(value["kind"], "AdmissionReview");
        assert_eq!(response["uid"], "f2bd621b-ea87-45af-aa2a-e0c4a65305fa");
        assert_eq!(response["allowed"], true);
        assert_eq!(response["patchType"], "JSONPatch");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().unwrap())
            .unwrap();
        let patch: Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(patch[0]["path"], "/spec/containers/0/env/-");
        assert_eq!(
            patch[0]["value"]["value"],
            "INTERNAL://broker-0.broker-headless.demo.svc:9092,EXTERNAL://broker-0.kafka.example.com:9094"
        );
    }

    #[test]
    fn the_sparse_parse_decides_exactly_like_the_full_pod() {
        let bodies: [&[u8]; 5] = [
            FIXTURE.as_bytes(),
            include_bytes!("../../tests/fixtures/review-1.37-statefulset-pod.json"),
            include_bytes!("../../bench/fixtures/review-20k.json"),
            include_bytes!("../../bench/fixtures/review-4-containers.json"),
            include_bytes!("../../tests/fixtures/review-deployment-pod-without-name.json"),
        ];
        for body in bodies {
            let full: AdmissionReview<k8s_openapi::api::core::v1::Pod> =
                serde_json::from_slice(body).unwrap();
            let request = full.request.unwrap();
            let namespace = request.namespace.unwrap();
            let view = PodView::from_pod(request.object.as_ref().unwrap()).unwrap();
            let expected = inject::inject(&view, &namespace, &defaults());
            let (_, answer) = answer(body);
            match expected {
                Decision::Inject(injection) => {
                    let patch = base64::engine::general_purpose::STANDARD
                        .decode(answer["response"]["patch"].as_str().unwrap())
                        .unwrap();
                    assert_eq!(patch, serde_json::to_vec(&injection.patch).unwrap());
                }
                Decision::Skip { warning, .. } => {
                    assert!(answer["response"].get("patch").is_none());
                    assert_eq!(
                        answer["response"]["warnings"][0].as_str(),
                        warning.as_deref()
                    );
                }
                Decision::Deny { message, .. } => {
                    assert_eq!(answer["response"]["status"]["message"], message.as_str());
                }
            }
        }
    }

    #[test]
    fn update_and_delete_are_allowed_unchanged() {
        for op in ["UPDATE", "DELETE", "CONNECT"] {
            let body = with(|v| v["request"]["operation"] = json!(op));
            let (reviewed, value) = answer(&body);
            assert_eq!(reviewed.outcome, Outcome::Ignored);
            assert_eq!(value["response"]["allowed"], true);
            assert!(value["response"].get("patch").is_none());
        }
    }

    #[test]
    fn other_kinds_are_allowed_unchanged() {
        let body = with(|v| {
            v["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
            v["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "x"}, "spec": {"template": {}}});
        });
        let (reviewed, value) = answer(&body);
        assert_eq!(
            (reviewed.outcome, reviewed.reason),
            (Outcome::Ignored, Reason::NotAPod)
        );
        assert_eq!(value["response"]["allowed"], true);
    }

    #[test]
    fn malformed_pod_object_is_denied_with_the_reason() {
        let body = with(|v| v["request"]["object"]["spec"]["containers"] = json!("nope"));
        let (reviewed, value) = answer(&body);
        assert_eq!(reviewed.outcome, Outcome::Denied);
        assert_eq!(value["response"]["allowed"], false);
        assert!(value["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid Pod"));
    }

    #[test]
    fn parse_errors_never_quote_values_from_the_body() {
        let body = with(|v| v["request"]["object"]["spec"]["containers"] = json!("s3cr3t-value"));
        let (reviewed, value) = answer(&body);
        assert_eq!(reviewed.outcome, Outcome::Denied);
        let message = value["response"]["status"]["message"].as_str().unwrap();
        assert!(!message.contains("s3cr3t"), "{message}");
        assert!(message.contains("invalid type: string \"…\""), "{message}");
        let body = with(|v| v["request"]["object"]["metadata"]["annotations"] = json!("s3cr3t"));
        let error = review(&body, &defaults()).unwrap_err().to_string();
        assert!(!error.contains("s3cr3t"), "{error}");
    }

    #[test]
    fn v1beta1_reviews_are_answered_in_v1beta1() {
        let body = with(|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1"));
        let (_, value) = answer(&body);
        assert_eq!(value["apiVersion"], "admission.k8s.io/v1beta1");
    }

    #[test]
    fn garbage_is_a_review_error() {
        assert!(matches!(
            review(b"{not json", &defaults()),
            Err(ReviewError::NotJson(_))
        ));
        assert!(matches!(
            review(b"[1,2]", &defaults()),
            Err(ReviewError::NotAReview(_))
        ));
        let no_uid = with(|v| {
            v["request"].as_object_mut().unwrap().remove("uid");
        });
        let error = review(&no_uid, &defaults()).unwrap_err().to_string();
        assert!(error.contains("uid"), "{error}");
        let wrong_kind = with(|v| v["kind"] = json!("TokenReview"));
        assert!(matches!(
            review(&wrong_kind, &defaults()),
            Err(ReviewError::NotAReview(_))
        ));
    }

    #[test]
    fn denial_carries_the_message_and_403() {
        let body = with(|v| {
            v["request"]["object"]["spec"]["containers"][0]["env"] = json!([
                {"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "INTERNAL:PLAINTEXT"}
            ]);
        });
        let (reviewed, value) = answer(&body);
        assert_eq!(
            (reviewed.outcome, reviewed.reason),
            (Outcome::Denied, Reason::InvalidListeners)
        );
        let status = &value["response"]["status"];
        assert_eq!(status["code"], 403);
        assert!(status["message"]
            .as_str()
            .unwrap()
            .starts_with("pod demo/broker-0: --listeners renders"));
    }
}

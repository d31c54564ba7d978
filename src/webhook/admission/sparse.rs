//! The fast path of the review parse. A review is mostly what no rule reads (managedFields,
//! status, volumes, tolerations, most of the metadata), so this walks the envelope, the request,
//! the pod, its metadata and its spec member by member, skips every other member with a
//! checking scanner that builds nothing, and hands serde_json only the members the view reads,
//! each parsed as its derived `Deserialize` parses it, in place in the body (so strings still
//! borrow from it).
//!
//! Anything unusual (a key with escapes, a repeated field, a non-object where the walk expects
//! one, nesting past the scanner's bound, any error) gives `None`, and the caller parses the
//! whole body with serde_json as before: the answer and every error stay serde_json's.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_with::{serde_as, BorrowCow};

use super::scan::Cursor;
use super::{KindFacts, RequestFacts, ReviewFacts};
use crate::inject::view::{
    ContainerView, MetaView, OwnerView, PodView, ReadinessGateView, SpecView, TextMap,
};

// The field types of the views, read exactly as their derives read them (`serde_as` fields).

#[serde_as]
#[derive(Deserialize)]
#[serde(transparent)]
struct Str<'a>(
    #[serde_as(as = "BorrowCow")]
    #[serde(borrow)]
    Cow<'a, str>,
);

#[serde_as]
#[derive(Deserialize)]
#[serde(transparent)]
struct OptStr<'a>(
    #[serde_as(as = "Option<BorrowCow>", no_default)]
    #[serde(borrow)]
    Option<Cow<'a, str>>,
);

#[serde_as]
#[derive(Deserialize)]
#[serde(transparent)]
struct Map<'a>(
    #[serde_as(as = "Option<BTreeMap<BorrowCow, BorrowCow>>", no_default)]
    #[serde(borrow)]
    Option<TextMap<'a>>,
);

#[serde_as]
#[derive(Deserialize)]
#[serde(transparent)]
struct Words<'a>(
    #[serde_as(as = "Option<Vec<BorrowCow>>", no_default)]
    #[serde(borrow)]
    Option<Vec<Cow<'a, str>>>,
);

/// The review's facts, or `None` when serde_json must judge the body.
pub(super) fn parse(text: &str) -> Option<ReviewFacts<'_>> {
    let mut cursor = Cursor::new(text);
    let mut seen = Seen::default();
    let (mut api_version, mut kind, mut request) = (None, None, None);
    cursor.members(|key, cursor| {
        match key {
            "apiVersion" => api_version = Some(field::<Str>(cursor, &mut seen, 0)?.0),
            "kind" => kind = Some(field::<Str>(cursor, &mut seen, 1)?.0),
            "request" => {
                seen.first(2)?;
                request = nullable(cursor, request_facts)?;
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    cursor.at_end().then_some(())?;
    Some(ReviewFacts {
        api_version: api_version.unwrap_or_default(),
        kind: kind.unwrap_or_default(),
        request,
    })
}

/// The members already read in one object: serde refuses a repeated field.
#[derive(Default)]
struct Seen(u32);

impl Seen {
    fn first(&mut self, index: u32) -> Option<()> {
        let bit = 1 << index;
        (self.0 & bit == 0).then(|| self.0 |= bit)
    }
}

/// One member's value, parsed by serde_json where it stands.
fn field<'a, T: Deserialize<'a>>(
    cursor: &mut Cursor<'a>,
    seen: &mut Seen,
    index: u32,
) -> Option<T> {
    seen.first(index)?;
    let mut values = serde_json::Deserializer::from_str(cursor.rest()).into_iter::<T>();
    let value = values.next()?.ok()?;
    cursor.advance(values.byte_offset());
    Some(value)
}

/// `null` as `None`, else the object walked by `walk`.
fn nullable<'a, T>(
    cursor: &mut Cursor<'a>,
    walk: impl FnOnce(&mut Cursor<'a>) -> Option<T>,
) -> Option<Option<T>> {
    if cursor.null()? {
        return Some(None);
    }
    walk(cursor).map(Some)
}

fn request_facts<'a>(cursor: &mut Cursor<'a>) -> Option<RequestFacts<'a>> {
    let mut seen = Seen::default();
    let (mut uid, mut kind, mut sub_resource, mut name) = (None, None, None, None);
    let (mut namespace, mut operation, mut dry_run, mut object) = (None, None, None, None);
    cursor.members(|key, cursor| {
        let seen = &mut seen;
        match key {
            "uid" => uid = Some(field::<Str>(cursor, seen, 0)?.0),
            "kind" => kind = Some(field::<KindFacts>(cursor, seen, 1)?),
            "subResource" => sub_resource = field::<OptStr>(cursor, seen, 2)?.0,
            "name" => name = Some(field::<Str>(cursor, seen, 3)?.0),
            "namespace" => namespace = field::<OptStr>(cursor, seen, 4)?.0,
            "operation" => operation = Some(field(cursor, seen, 5)?),
            "dryRun" => dry_run = Some(field::<bool>(cursor, seen, 6)?),
            "object" => {
                seen.first(7)?;
                object = nullable(cursor, pod_view)?;
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    Some(RequestFacts {
        uid: uid?,
        kind: kind?,
        sub_resource,
        name: name.unwrap_or_default(),
        namespace,
        operation: operation?,
        dry_run: dry_run.unwrap_or_default(),
        object,
    })
}

fn pod_view<'a>(cursor: &mut Cursor<'a>) -> Option<PodView<'a>> {
    let mut seen = Seen::default();
    let mut pod = PodView::default();
    cursor.members(|key, cursor| {
        match key {
            "metadata" => {
                seen.first(0)?;
                pod.metadata = meta_view(cursor)?;
            }
            "spec" => {
                seen.first(1)?;
                pod.spec = nullable(cursor, spec_view)?;
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    Some(pod)
}

fn meta_view<'a>(cursor: &mut Cursor<'a>) -> Option<MetaView<'a>> {
    let mut seen = Seen::default();
    let mut meta = MetaView::default();
    cursor.members(|key, cursor| {
        let seen = &mut seen;
        match key {
            "name" => meta.name = field::<OptStr>(cursor, seen, 0)?.0,
            "generateName" => meta.generate_name = field::<OptStr>(cursor, seen, 1)?.0,
            "labels" => meta.labels = field::<Map>(cursor, seen, 2)?.0,
            "annotations" => meta.annotations = field::<Map>(cursor, seen, 3)?.0,
            "ownerReferences" => {
                meta.owner_references = field::<Option<Vec<OwnerView>>>(cursor, seen, 4)?;
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    Some(meta)
}

/// The lists are read as `null_as_empty` reads them: `null` is an empty list.
fn spec_view<'a>(cursor: &mut Cursor<'a>) -> Option<SpecView<'a>> {
    let mut seen = Seen::default();
    let mut spec = SpecView::default();
    let containers = |cursor: &mut Cursor<'a>, seen: &mut Seen, index| {
        seen.first(index)?;
        let mut list = Vec::new();
        if !cursor.null()? {
            cursor.elements(|cursor| {
                list.push(container_view(cursor)?);
                Some(())
            })?;
        }
        Some(list)
    };
    cursor.members(|key, cursor| {
        let seen = &mut seen;
        match key {
            "subdomain" => spec.subdomain = field::<OptStr>(cursor, seen, 0)?.0,
            "containers" => spec.containers = containers(cursor, seen, 1)?,
            "initContainers" => spec.init_containers = containers(cursor, seen, 2)?,
            "readinessGates" => {
                spec.readiness_gates =
                    field::<Option<Vec<ReadinessGateView>>>(cursor, seen, 3)?.unwrap_or_default();
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    Some(spec)
}

/// A container, walked too: probes, resources and security contexts are never read.
fn container_view<'a>(cursor: &mut Cursor<'a>) -> Option<ContainerView<'a>> {
    let mut seen = Seen::default();
    let mut name = None;
    let mut container = ContainerView::default();
    cursor.members(|key, cursor| {
        let seen = &mut seen;
        match key {
            "name" => name = Some(field::<Str>(cursor, seen, 0)?.0),
            "image" => container.image = field::<OptStr>(cursor, seen, 1)?.0,
            "env" => container.env = field(cursor, seen, 2)?,
            "envFrom" => container.env_from = field(cursor, seen, 3)?,
            "command" => container.command = field::<Words>(cursor, seen, 4)?.0,
            "args" => container.args = field::<Words>(cursor, seen, 5)?.0,
            "volumeMounts" => container.volume_mounts = field(cursor, seen, 6)?,
            "ports" => {
                container.ports = field::<Option<Vec<_>>>(cursor, seen, 7)?.unwrap_or_default();
            }
            _ => cursor.skip_value()?,
        }
        Some(())
    })?;
    container.name = name?;
    Some(container)
}

/// Every member of each struct the walk fills, named: a field added to one of them does not build
/// here until the walk above reads it (or this list says why not). A member the walk skipped
/// would read as its default, and the pod would be judged on that.
#[allow(dead_code)]
fn the_walk_reads_every_member(
    review: &ReviewFacts,
    request: &RequestFacts,
    pod: &PodView,
    meta: &MetaView,
    spec: &SpecView,
    container: &ContainerView,
) {
    let ReviewFacts {
        api_version: _,
        kind: _,
        request: _,
    } = review;
    let RequestFacts {
        uid: _,
        kind: _, // a KindFacts, read whole by its derive
        sub_resource: _,
        name: _,
        namespace: _,
        operation: _,
        dry_run: _,
        object: _,
    } = request;
    let PodView {
        metadata: _,
        spec: _,
    } = pod;
    let MetaView {
        name: _,
        generate_name: _,
        labels: _,
        annotations: _,
        owner_references: _,
    } = meta;
    let SpecView {
        subdomain: _,
        containers: _,
        init_containers: _,
        readiness_gates: _,
    } = spec;
    let ContainerView {
        name: _,
        image: _,
        env: _,
        env_from: _,
        command: _,
        args: _,
        volume_mounts: _,
        ports: _,
        scripts: _,      // never in a review: preview fills it from ConfigMaps
        config_files: _, // nor this
    } = container;
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::{json, Value};

    use super::super::{review, ReviewFacts};
    use super::parse;
    use crate::inject::settings::ZONE_FIELD;
    use crate::inject::{Defaults, Flags};
    use crate::outcome::{Outcome, Reason};

    const BODIES: [&str; 4] = [
        include_str!("../../../tests/fixtures/review-statefulset-pod.json"),
        include_str!("../../../tests/fixtures/review-1.37-statefulset-pod.json"),
        include_str!("../../../bench/fixtures/review-20k.json"),
        include_str!("../../../tests/fixtures/review-deployment-pod-without-name.json"),
    ];

    /// What a review's facts say, to compare the two parses.
    fn facts(review: &ReviewFacts) -> String {
        let request = review.request.as_ref().map(|r| {
            (
                &r.uid,
                (&r.kind.group, &r.kind.version, &r.kind.kind),
                &r.sub_resource,
                &r.name,
                &r.namespace,
                format!("{:?}", r.operation),
                r.dry_run,
                &r.object,
            )
        });
        format!("{} {} {request:?}", review.api_version, review.kind)
    }

    fn agrees(text: &str) -> bool {
        let full = serde_json::from_str::<ReviewFacts>(text);
        match parse(text) {
            Some(sparse) => {
                let full = full.expect("the sparse parse accepts only what serde_json accepts");
                assert_eq!(facts(&sparse), facts(&full), "{text}");
                true
            }
            None => false,
        }
    }

    fn edited(body: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut value: Value = serde_json::from_str(body).unwrap();
        edit(&mut value);
        serde_json::to_string(&value).unwrap()
    }

    #[test]
    fn real_reviews_take_the_sparse_path_and_read_as_serde_json_reads_them() {
        for body in BODIES {
            assert!(agrees(body));
            assert!(agrees(&format!(" \n{body}\t ")));
        }
    }

    #[test]
    fn the_unusual_is_left_to_serde_json() {
        let body = BODIES[0];
        let null_spec = edited(body, |v| v["request"]["object"]["spec"] = Value::Null);
        assert!(agrees(&null_spec));
        let null_object = edited(body, |v| v["request"]["object"] = Value::Null);
        assert!(agrees(&null_object));
        let nested = edited(body, |v| {
            v["request"]["object"]["metadata"]["managedFields"] = json!([[[[{"a": [1e5]}]]]]);
        });
        assert!(agrees(&nested));
        // Each of these gives `None` (and serde_json decides), whether serde_json accepts it or not.
        let left = [
            body.replacen("\"uid\"", "\"u\\u0069d\"", 1),
            body.replacen("\"name\":", "\"name\":\"x\",\"name\":", 1),
            body.replacen("\"managedFields\":[", "\"managedFields\":[01,", 1),
            body.replacen("\"managedFields\":[", "\"managedFields\":[\"\\q\",", 1),
            body.replacen("\"status\":{", "\"status\":{\"s\":tru,", 1),
            edited(body, |v| v["request"]["object"]["metadata"] = Value::Null),
            edited(body, |v| {
                v["request"]["object"] = json!(["not", "an", "object"])
            }),
            format!("{body}x"),
            format!("[{body}]"),
            body.replacen(
                "\"managedFields\":[",
                &format!(
                    "\"managedFields\":[{}{},",
                    "[".repeat(300_000),
                    "]".repeat(300_000)
                ),
                1,
            ),
        ];
        for text in &left {
            assert!(!agrees(text), "{}", &text[..200.min(text.len())]);
        }
    }

    /// `env` is handed whole to the view's derive, so `valueFrom` is read as the view reads it:
    /// its `fieldRef.fieldPath` (what the injected start-up and rack variables are), and any
    /// other source as a `valueFrom` with no field.
    #[test]
    fn env_value_from_is_read_as_the_view_reads_it() {
        let body = edited(BODIES[0], |v| {
            v["request"]["object"]["spec"]["containers"][0]["env"] = json!([
                {"name": "HOST", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}},
                {"name": "ZONE", "valueFrom": {"fieldRef": {"fieldPath": ZONE_FIELD}}},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": "kafka", "resource": "limits.cpu", "divisor": "1m"}}},
                {"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}},
                {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                {"name": "NULL", "valueFrom": null},
                {"name": "NO_FIELD", "valueFrom": {"fieldRef": null}},
            ]);
        });
        assert!(agrees(&body));
        let request = parse(&body).unwrap().request.unwrap();
        let pod = request.object.unwrap();
        let env = pod.containers()[0].env.as_ref().unwrap();
        let paths: Vec<_> = env.iter().map(|var| var.field_path()).collect();
        let no_path = None;
        assert_eq!(
            paths,
            [
                Some("status.hostIP"),
                Some(ZONE_FIELD),
                no_path,
                no_path,
                no_path,
                no_path,
                no_path
            ]
        );
        let sourced: Vec<_> = env.iter().map(|var| var.value_from.is_some()).collect();
        assert_eq!(sourced, [true, true, true, true, true, false, true]);
    }

    /// A pod patched with downward-API variables (`{hostIP}`, the rack) and reviewed again, as
    /// on a reinvocation, takes the sparse path and is found already injected: the walk reads
    /// the `fieldRef` those variables are defined by.
    #[test]
    fn a_pod_reviewed_again_with_its_downward_variables_is_already_injected() {
        let defaults = Defaults::from_flags(Flags {
            listeners: "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{hostIP}:{ordinal+31090}"
                .into(),
            domain: Some("kafka.example.com".into()),
            env_name: "auto".into(),
            rack_env: Some("KAFKA_BROKER_RACK".into()),
            ..Flags::default()
        })
        .unwrap();
        let first = review(BODIES[0].as_bytes(), &defaults).unwrap();
        assert_eq!(first.outcome, Outcome::Patched);
        let answer: Value = serde_json::from_slice(&first.body).unwrap();
        let patch = base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let again = edited(BODIES[0], |v| {
            json_patch::patch(&mut v["request"]["object"], &patch).unwrap();
        });
        assert!(again.contains("\"fieldPath\":\"status.hostIP\""), "{again}");
        assert!(again.contains(ZONE_FIELD), "{again}");
        assert!(agrees(&again));
        let second = review(again.as_bytes(), &defaults).unwrap();
        assert_eq!(
            (second.outcome, second.reason),
            (Outcome::Unchanged, Reason::AlreadyInjected)
        );
    }
}

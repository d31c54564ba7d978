//! `preview` on manifests in the styles of real charts: golden patches, proven to apply, and the
//! command's exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kafka_listener_injector::cli::ManifestArgs;
use kafka_listener_injector::inject::{Decision, Defaults};
use kafka_listener_injector::preview::{decide_all, Decided};
use serde_json::{json, Value};

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name)
}

/// Each pod's outcome and patch, as JSON; with the patch applied, the broker env is checked.
fn outcomes(file: &Path) -> Value {
    let manifests = ManifestArgs {
        files: vec![file.to_owned()],
        replicas: None,
        namespace: "default".into(),
    };
    let (decisions, _) = decide_all(&manifests, &Defaults::default()).unwrap();
    let mut pods = Vec::new();
    for Decided { pod, decision } in decisions {
        let id = format!(
            "{}/{}",
            pod.namespace,
            pod.pod.metadata.name.clone().unwrap()
        );
        pods.push(match decision {
            Decision::Inject(injection) => {
                let mut doc = serde_json::to_value(&pod.pod).unwrap();
                json_patch::patch(&mut doc, &injection.patch).expect("the patch applies");
                let (env_name, value) = injection.listeners.clone().unwrap();
                for list in ["containers", "initContainers"] {
                    for c in doc["spec"][list].as_array().into_iter().flatten() {
                        if !injection.containers.iter().any(|n| c["name"] == n.as_str()) {
                            continue;
                        }
                        let set: Vec<_> = c["env"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .filter(|e| e["name"] == env_name.as_str())
                            .collect();
                        assert_eq!(set.len(), 1, "{id}: exactly one {env_name}");
                        assert_eq!(set[0]["value"], value.as_str(), "{id}");
                    }
                }
                assert_eq!(
                    doc["metadata"]["annotations"]
                        ["kafka-listener-injector.io/advertised-listeners"],
                    value.as_str()
                );
                json!({"pod": id, "containers": injection.containers, "inject": {env_name: value},
                       "extra_env": injection.extra_env, "warnings": injection.warnings,
                       "patch": injection.patch})
            }
            Decision::Skip { reason, .. } => json!({"pod": id, "skip": reason.as_str()}),
            Decision::Deny { message, .. } => json!({"pod": id, "deny": message}),
        });
    }
    Value::Array(pods)
}

/// Compares with `tests/golden/<name>.json`; `UPDATE_GOLDEN=1` rewrites it (review the diff).
fn assert_golden(name: &str, actual: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(actual, &expected, "{name} differs from its golden file");
}

#[test]
fn apache_kraft_combined_mode_gets_listeners_and_node_ids() {
    assert_golden("apache-kraft", &outcomes(&chart("apache-kraft.yaml")));
}

#[test]
fn confluent_controllers_are_skipped_and_brokers_injected() {
    assert_golden("confluent-kraft", &outcomes(&chart("confluent-kraft.yaml")));
}

#[test]
fn bitnami_env_names_container_and_template_from_annotations() {
    assert_golden("bitnami", &outcomes(&chart("bitnami.yaml")));
}

#[test]
fn sasl_three_listeners_with_node_ports() {
    assert_golden(
        "sasl-three-listeners",
        &outcomes(&chart("sasl-three-listeners.yaml")),
    );
}

fn preview(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kafka-listener-injector"))
        .arg("preview")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn exit_code_is_one_when_any_pod_would_be_denied() {
    let manifest = std::fs::read_to_string(chart("apache-kraft.yaml"))
        .unwrap()
        .replace("EXTERNAL:PLAINTEXT", "OUTSIDE:PLAINTEXT");
    let (code, out, _) = preview(&["-f", "-"], &manifest);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("streaming/kafka-0: DENY"), "{out}");
    assert!(
        out.contains(
            "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
        ),
        "{out}"
    );
}

#[test]
fn exit_code_is_two_for_parse_errors_naming_file_and_document() {
    let (code, _, err) = preview(&["-f", "-"], "kind: Pod\n---\n: [\n");
    assert_eq!(code, 2);
    assert!(err.contains("-: document 2:"), "{err}");
    let (code, _, err) = preview(&["-f", "/nonexistent.yaml"], "");
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent.yaml"), "{err}");
    let (code, _, err) = preview(&["-f", "-", "--listeners", "E://{nope}:1"], "");
    assert_eq!(code, 2);
    assert!(
        err.contains("--listeners: unknown placeholder {nope}"),
        "{err}"
    );
}

#[test]
fn yaml_output_is_the_stored_pods_and_patch_output_is_one_patch_per_line() {
    let file = chart("sasl-three-listeners.yaml");
    let file = file.to_str().unwrap();
    let (code, out, _) = preview(&["-f", file, "-o", "patch", "--replicas", "2"], "");
    assert_eq!(code, 0);
    let patches: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(patches.len(), 2);

    let (code, out, _) = preview(&["-f", file, "-o", "yaml"], "");
    assert_eq!(code, 0);
    let pods: Vec<Value> = serde_norway::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(pods.len(), 3);
    assert_eq!(pods[2]["kind"], "Pod");
    assert_eq!(
        pods[2]["spec"]["containers"][0]["env"][3]["value"],
        "CLIENT://kafka-2.kafka.payments.svc:9092,REPLICATION://kafka-2.kafka.payments.svc:9093,EXTERNAL://kafka-2.nodes.payments.example.com:31092"
    );
}

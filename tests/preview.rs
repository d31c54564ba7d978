//! `preview` on manifests in the styles of real charts: golden patches, proven to apply, and the
//! command's exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kafka_listener_injector::inject::{Decision, Defaults};
use kafka_listener_injector::preview::manifests::Source;
use kafka_listener_injector::preview::{decide_all, Decided};
use serde_json::{json, Value};

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/charts")
        .join(name)
}

/// Each pod's outcome and patch, as JSON; with the patch applied, the broker env is checked.
fn outcomes(file: &Path) -> Value {
    let manifests = Source {
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

/// A chart fixture with the pod-template annotations (and value edits) of a README recipe.
fn with_recipe(name: &str, annotations: &[(&str, &str)], edits: &[(&str, &str)]) -> PathBuf {
    let mut doc: Value =
        serde_norway::from_str(&std::fs::read_to_string(chart(name)).unwrap()).unwrap();
    let template = &mut doc["spec"]["template"]["metadata"];
    if template.get("annotations").is_none() {
        template["annotations"] = json!({});
    }
    for (key, value) in annotations {
        template["annotations"][format!("kafka-listener-injector.io/{key}")] = json!(value);
    }
    let mut text = serde_json::to_string(&doc).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    let path = std::env::temp_dir().join(format!("kli-recipe-{}-{name}.json", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn summary(path: &Path, flags: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "--domain",
        "kafka.example.com",
        "-f",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    preview(&args, "")
}

#[test]
fn cp_helm_start_script_is_named_and_its_recipe_injects_the_host_the_script_uses() {
    // Before: the broker container is not called kafka: skipped, naming the containers, exit 3.
    let (code, out, err) = summary(&chart("cp-helm-start-script.yaml"), &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("confluent/cp-cp-kafka-0: skip (no-broker-container)"),
        "{out}"
    );
    assert!(
        out.contains("it has prometheus-jmx-exporter, cp-kafka-broker"),
        "{out}"
    );
    assert!(
        err.contains(
            "preview: no pod would be injected; found 3 pod(s), skipped: 3 no-broker-container"
        ),
        "{err}"
    );
    // Naming the container is not enough: the shell assigns the variable itself.
    let (code, out, _) = summary(
        &chart("cp-helm-start-script.yaml"),
        &["--container", "cp-kafka-broker"],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("listener INTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP (\"PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT\"); use listener names the map has"), "{out}");
    let chart_names = "PLAINTEXT://{pod}.{service}.{namespace}:9092,EXTERNAL://{pod}.{domain}:9094";
    let (code, out, _) = summary(
        &chart("cp-helm-start-script.yaml"),
        &["--container", "cp-kafka-broker", "--listeners", chart_names],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "the command of container cp-kafka-broker assigns KAFKA_ADVERTISED_LISTENERS itself"
        ),
        "{out}"
    );
    let (code, out, _) = summary(
        &chart("cp-helm-start-script.yaml"),
        &[
            "--container",
            "cp-kafka-broker",
            "--listeners",
            chart_names,
            "--strict",
        ],
    );
    assert_eq!(code, 1, "{out}");
    // The recipe: the chart's advertised.listeners override refers to ${EXTERNAL_HOST}, which the
    // webhook sets per broker; no advertised-listeners variable of ours.
    let recipe = with_recipe(
        "cp-helm-start-script.yaml",
        &[
            ("container", "cp-kafka-broker"),
            ("env-name", "none"),
            ("env.EXTERNAL_HOST", "{pod}.{domain}"),
        ],
        &[(
            "EXTERNAL://${HOST_IP}:$((31090 + ${KAFKA_BROKER_ID}))",
            "EXTERNAL://${EXTERNAL_HOST}:9094",
        )],
    );
    let (code, out, _) = summary(&recipe, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().next().unwrap(),
        "confluent/cp-cp-kafka-0: inject into cp-kafka-broker: EXTERNAL_HOST=cp-cp-kafka-0.kafka.example.com"
    );
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn bitnami_prepare_config_recipe_gives_each_broker_its_own_host_in_server_properties() {
    let (code, out, _) = summary(&chart("bitnami-prepare-config.yaml"), &[]);
    assert_eq!(code, 0);
    assert!(out.contains("container kafka configures Kafka from a mounted /opt/bitnami/kafka/config/server.properties"), "{out}");
    let recipe = with_recipe(
        "bitnami-prepare-config.yaml",
        &[
            ("container", "prepare-config"),
            ("env-name", "none"),
            ("env.EXTERNAL_ACCESS_HOST", "{pod}.{domain}"),
        ],
        &[],
    );
    let (code, out, _) = summary(&recipe, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
    assert!(out.contains("kafka/my-kafka-broker-1: inject into prepare-config: EXTERNAL_ACCESS_HOST=my-kafka-broker-1.kafka.example.com"), "{out}");

    // Run the init container's script, as stored after the webhook, and read what it writes.
    let (code, yaml, _) = summary(&recipe, &["-o", "yaml"]);
    assert_eq!(code, 0);
    let pods: Vec<Value> = serde_norway::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (i, pod) in pods.iter().enumerate() {
        let init = &pod["spec"]["initContainers"][0];
        let root = dir.path().join(i.to_string());
        std::fs::create_dir_all(root.join("configmaps")).unwrap();
        std::fs::create_dir_all(root.join("config")).unwrap();
        std::fs::write(
            root.join("configmaps/server.properties"),
            "listeners=CLIENT://:9092,EXTERNAL://:9094\nadvertised.listeners=CLIENT://$(MY_POD_NAME).my-kafka-broker-headless.kafka.svc.cluster.local:9092\n",
        )
        .unwrap();
        // The container's paths, moved under a temporary root.
        let script = init["args"][1]
            .as_str()
            .unwrap()
            .replace("/configmaps/", &format!("{}/configmaps/", root.display()))
            .replace("/shared/", &format!("{}/shared/", root.display()));
        let mut command = Command::new("bash");
        command
            .arg("-ec")
            .arg(script)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap());
        for var in init["env"].as_array().unwrap() {
            let value = match var["value"].as_str() {
                Some(value) => value.replace("/config/", &format!("{}/config/", root.display())),
                None => pod["metadata"]["name"].as_str().unwrap().to_owned(), // MY_POD_NAME fieldRef
            };
            command.env(var["name"].as_str().unwrap(), value);
        }
        let status = command.status().unwrap();
        assert!(status.success());
        let written = std::fs::read_to_string(root.join("config/server.properties")).unwrap();
        let advertised = written
            .lines()
            .find(|l| l.starts_with("advertised.listeners="))
            .unwrap();
        assert!(
            advertised.ends_with(&format!(
                ",EXTERNAL://my-kafka-broker-{i}.kafka.example.com:9094"
            )),
            "{advertised}"
        );
    }
}

#[test]
fn live_pods_are_reported_up_to_date_or_with_what_would_change_and_node_id_changes_fail() {
    // The pods as the cluster stored them: the example brokers, injected.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/kafka/kafka.yaml");
    let (code, stored, _) = preview(&["-o", "yaml", "-f", example.to_str().unwrap()], "");
    assert_eq!(code, 0);
    let (code, out, _) = preview(&["-f", "-"], &stored);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(": up to date (settings "))
            .count(),
        3,
        "{out}"
    );

    // A new domain: would change, with the values before and after.
    let (code, out, _) = preview(&["-f", "-", "--listeners", "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.kafka.new.example.com:9094"], &stored);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("kafka/kafka-1: would change (settings "),
        "{out}"
    );
    assert!(out.contains("kafka/kafka-1:   advertised listeners INTERNAL://kafka-1.kafka-headless.kafka.svc:9092,EXTERNAL://kafka-1.kafka.example.com:9094 -> INTERNAL://kafka-1.kafka-headless.kafka.svc:9092,EXTERNAL://kafka-1.kafka.new.example.com:9094"), "{out}");

    // A changed node id would strand the broker on its volume: an error, exit 1.
    let changed = stored.replace(
        "kafka-listener-injector.io/node-id-offset: '100'",
        "kafka-listener-injector.io/node-id-offset: '0'",
    );
    assert_ne!(changed, stored);
    let (code, out, _) = preview(&["-f", "-"], &changed);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kafka/kafka-2:   ERROR node id 102 -> 2: the broker would refuse to start on its volume (meta.properties holds 102); set node-id-offset to keep it"), "{out}");
}

/// The findings of each injected pod of `yaml`, read as `preview` reads a file.
fn findings_of(yaml: &str) -> Vec<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, yaml).unwrap();
    let manifests = Source {
        files: vec![file],
        replicas: None,
        namespace: "kafka".into(),
    };
    let defaults = Defaults {
        domain: Some("kafka.example.com".into()),
        ..Defaults::default()
    };
    let (decisions, _) = decide_all(&manifests, &defaults).unwrap();
    decisions
        .into_iter()
        .filter_map(|d| match d.decision {
            Decision::Inject(injection) => Some(injection.findings),
            _ => None,
        })
        .collect()
}

// In the shape of confluentinc/cp-helm-charts with a Service named after the brokers, as
// several community manifests have it. cp-kafka's configure exits on KAFKA_PORT
// (confluentinc/kafka-images kafka/include/etc/confluent/docker/configure:71-75, f8e3015).
const CP_KAFKA_WITH_A_KAFKA_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kafka}
spec: {ports: [{port: 9092}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kafka}
spec:
  serviceName: kafka-headless
  replicas: 1
  selector: {matchLabels: {app: kafka}}
  template:
    metadata: {labels: {app: kafka}}
    spec:
      containers:
        - name: kafka
          image: confluentinc/cp-kafka:7.8.0
          env: [{name: KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, value: "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT"}]
"#;

#[test]
fn a_service_named_kafka_links_a_variable_cp_kafka_refuses() {
    let found = findings_of(CP_KAFKA_WITH_A_KAFKA_SERVICE);
    assert_eq!(found.len(), 1);
    assert!(
        found[0]
            .iter()
            .any(|f| f.contains("service-link variable KAFKA_PORT=tcp://...")),
        "{found:?}"
    );
    let unlinked = CP_KAFKA_WITH_A_KAFKA_SERVICE.replace(
        "    spec:\n      containers:",
        "    spec:\n      enableServiceLinks: false\n      containers:",
    );
    assert_eq!(findings_of(&unlinked), vec![Vec::<String>::new()]);
}

//! The Helm chart, with a real `helm` built from its Go module (tests/tools/go-tool.sh): lint,
//! golden renders for each mode, the values schema refusing bad values, and the chart rendering
//! the same objects as the kustomize manifests for the same settings.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const CHART: &str = "charts/kafka-listener-injector";
/// The control-plane version `make e2e` runs: the chart requires >= 1.30.
const KUBE_VERSION: &str = "1.37.2";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn helm() -> PathBuf {
    let out = Command::new(repo("tests/tools/go-tool.sh"))
        .arg("helm")
        .output()
        .expect("tests/tools/go-tool.sh runs");
    assert!(
        out.status.success(),
        "building helm (run .ci/install-deps): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `helm template` of the chart with `args`; `Ok(yaml)` or `Err(stderr)`.
fn template(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .current_dir(repo(""))
        .args([
            "template",
            "kli",
            CHART,
            "--namespace",
            "kafka-listener-injector",
        ])
        .args(["--kube-version", KUBE_VERSION])
        .args(args)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8(out.stderr).unwrap())
    }
}

fn objects(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(repo(""))
        .output()
        .expect("kubectl (with kustomize) must be installed: see .ci/install-deps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    objects(&String::from_utf8(out.stdout).unwrap())
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it.
fn golden(name: &str, actual: &str) {
    let path = repo(&format!("tests/golden/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert!(
        expected == actual,
        "{name} differs from `helm template` (UPDATE_GOLDEN=1 cargo test --test chart rewrites it)"
    );
}

#[test]
fn helm_lint_passes_in_each_mode() {
    for mode in ["cluster-wide", "namespace-opt-in"] {
        let out = Command::new(helm())
            .current_dir(repo(""))
            .args(["lint", CHART, "--strict", "--kube-version", KUBE_VERSION])
            .args(["--set", &format!("mode={mode}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn renders_match_the_goldens_for_each_mode() {
    golden("chart-cluster-wide.yaml", &template(&[]).unwrap());
    golden(
        "chart-namespace-opt-in-full.yaml",
        &template(&["--values", "tests/fixtures/chart-values-full.yaml"]).unwrap(),
    );
}

/// Every container that runs this binary, with the arguments the chart gives it, must parse as
/// the binary parses them: a renamed flag or a value it refuses would crash-loop the release.
#[test]
fn every_rendered_command_line_parses_as_the_binary_reads_it() {
    use clap::Parser;
    use kafka_listener_injector::cli::Cli;
    for values in [None, Some("tests/fixtures/chart-values-full.yaml")] {
        let yaml = match values {
            None => template(&[]).unwrap(),
            Some(file) => template(&["--values", file]).unwrap(),
        };
        let mut parsed = 0;
        for object in objects(&yaml) {
            let containers = object["spec"]["template"]["spec"]["containers"].as_array();
            for container in containers.into_iter().flatten() {
                let Some(args) = container["args"].as_array() else {
                    continue;
                };
                let argv = std::iter::once("kafka-listener-injector")
                    .chain(args.iter().map(|a| a.as_str().unwrap()));
                if let Err(error) = Cli::try_parse_from(argv) {
                    panic!("{values:?}: {}: {error}", container["name"]);
                }
                parsed += 1;
            }
        }
        assert!(parsed >= 1, "{values:?}: no container with arguments");
    }
}

#[test]
fn the_schema_refuses_bad_values_naming_them() {
    let cases = [
        (
            "mode=everywhere",
            "at '/mode': value must be one of 'cluster-wide', 'namespace-opt-in'",
        ),
        ("injection.domain=Kafka_Example", "at '/injection/domain'"),
        (
            "injection.domian=kafka.example.com",
            "additional properties 'domian' not allowed",
        ),
        (
            "certificates.mode=secret",
            "at '/certificates/existingSecret': minLength",
        ),
        ("certificates.mode=vault", "at '/certificates/mode'"),
        ("webhook.port=443", "at '/webhook/port': minimum"),
        (
            "webhook.url=http://127.0.0.1:8443/mutate",
            "at '/webhook/url'",
        ),
        ("image.digest=latest", "at '/image/digest'"),
        ("replicaCount=0", "at '/replicaCount': minimum"),
        (
            "servicesReconciler.scaleDownGrace=ten minutes",
            "at '/servicesReconciler/scaleDownGrace'",
        ),
        (
            "injection.waitForName.timeout=soon",
            "at '/injection/waitForName/timeout'",
        ),
        (
            "injection.readinessGate=true",
            "injection.readinessGate needs servicesReconciler.enabled=true",
        ),
    ];
    for (set, expected) in cases {
        let error = template(&["--set", set]).expect_err(set);
        assert!(error.contains(expected), "{set}: {error}");
    }
}

#[test]
fn helm_mode_renders_one_ca_for_the_secret_and_the_webhook() {
    let rendered = objects(&template(&["--set", "certificates.mode=helm"]).unwrap());
    let secret = rendered.iter().find(|o| o["kind"] == "Secret").unwrap();
    let webhook = rendered
        .iter()
        .find(|o| o["kind"] == "MutatingWebhookConfiguration")
        .unwrap();
    assert_eq!(
        secret["data"]["ca.crt"],
        webhook["webhooks"][0]["clientConfig"]["caBundle"]
    );
    assert!(secret["data"]["tls.key"]
        .as_str()
        .is_some_and(|k| k.len() > 100));
}

/// What both installs must agree on: every object but the Namespace (kustomize creates it, Helm
/// installs into it), without labels (Helm adds its own) and without the caBundle (per install).
fn comparable(mut objects: Vec<Value>) -> Vec<Value> {
    objects.retain(|o| o["kind"] != "Namespace");
    for object in &mut objects {
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("labels");
        }
        if let Some(webhooks) = object.get_mut("webhooks").and_then(Value::as_array_mut) {
            for webhook in webhooks {
                webhook["clientConfig"]
                    .as_object_mut()
                    .unwrap()
                    .remove("caBundle");
            }
        }
    }
    objects.sort_by_key(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]));
    objects
}

fn assert_same(chart: Vec<Value>, kustomize: Vec<Value>) {
    let (chart, kustomize) = (comparable(chart), comparable(kustomize));
    let names = |objects: &[Value]| -> Vec<String> {
        objects
            .iter()
            .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
            .collect()
    };
    assert_eq!(names(&chart), names(&kustomize));
    for (c, k) in chart.iter().zip(&kustomize) {
        assert_eq!(c, k, "{} {} differs", c["kind"], c["metadata"]["name"]);
    }
}

#[test]
fn chart_and_kustomize_render_the_same_objects_for_the_same_settings() {
    // Cluster-wide with cert-manager: the chart's defaults.
    assert_same(
        objects(&template(&[]).unwrap()),
        kustomize("manifests/examples/cluster-wide-with-cert-manager"),
    );
    // Namespace opt-in with the Secret the kustomize base mounts.
    assert_same(
        objects(
            &template(&[
                "--set",
                "mode=namespace-opt-in",
                "--set",
                "certificates.mode=secret",
                "--set",
                "certificates.existingSecret=kafka-listener-injector-tls",
                "--set",
                "certificates.caBundle=Y2E=",
            ])
            .unwrap(),
        ),
        kustomize("manifests/namespace-opt-in"),
    );
    // The Services reconciler: the chart option and the kustomize component.
    let reconciler = |objects: Vec<Value>| -> Vec<Value> {
        objects
            .into_iter()
            .filter(|o| {
                o["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("kafka-listener-injector-services"))
            })
            .collect()
    };
    assert_same(
        reconciler(objects(
            &template(&["--set", "servicesReconciler.enabled=true"]).unwrap(),
        )),
        reconciler(kustomize("manifests/examples/cluster-wide-with-services")),
    );
}

#[test]
fn the_prometheus_rule_ships_the_rules_promtool_tests() {
    let rendered = objects(
        &template(&[
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.serviceMonitor.enabled=true",
        ])
        .unwrap(),
    );
    let rule = rendered
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .unwrap();
    let file: Value = serde_norway::from_str(
        &std::fs::read_to_string(repo(
            "charts/kafka-listener-injector/files/prometheus-rules.yaml",
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(rule["spec"], file);
    let monitor = rendered
        .iter()
        .find(|o| o["kind"] == "ServiceMonitor")
        .unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "admin");
}

//! What users deploy: the kustomize directories build, the example Services are up to date and
//! agree with `preview`, and `certs` issues a chain valid for every requested name.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-listener-injector");

/// Runs the binary; returns its exit code, stdout and stderr.
fn run(args: &[&str], file: &str) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg(repo(file))
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// `kubectl kustomize DIR`, parsed into its objects.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("kubectl (with kustomize) must be installed: see .ci/install-deps");
    assert!(
        out.status.success(),
        "{}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn check_base(objects: &[Value]) {
    for object in objects {
        let kind = object["kind"].as_str().unwrap();
        assert!(
            !["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"].contains(&kind),
            "the webhook needs no RBAC, found a {kind}"
        );
    }
    let deployment = find(objects, "Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    assert_eq!(
        find(objects, "ServiceAccount")["automountServiceAccountToken"],
        false
    );
    find(objects, "PodDisruptionBudget");
}

fn check_webhook(objects: &[Value]) -> Value {
    let config = find(objects, "MutatingWebhookConfiguration");
    let webhook = config["webhooks"][0].clone();
    assert_eq!(webhook["sideEffects"], "None");
    assert_eq!(
        webhook["admissionReviewVersions"],
        serde_json::json!(["v1"])
    );
    assert_eq!(webhook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(webhook["failurePolicy"], "Fail");
    assert!(webhook["timeoutSeconds"].as_u64().unwrap() <= 10);
    assert_eq!(
        webhook["rules"][0]["operations"],
        serde_json::json!(["CREATE"])
    );
    webhook
}

#[test]
fn cluster_wide_selects_labelled_pods_outside_system_namespaces() {
    let objects = kustomize(&repo("manifests/cluster-wide"));
    check_base(&objects);
    let webhook = check_webhook(&objects);
    assert_eq!(
        webhook["objectSelector"]["matchLabels"]["kafka-listener-injector.io/inject"],
        "true"
    );
    let excluded = &webhook["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "NotIn");
    for ns in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "kafka-listener-injector",
    ] {
        assert!(
            excluded["values"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == ns),
            "{ns}"
        );
    }
}

#[test]
fn namespace_opt_in_selects_labelled_namespaces_except_opted_out_pods() {
    let objects = kustomize(&repo("manifests/namespace-opt-in"));
    check_base(&objects);
    let webhook = check_webhook(&objects);
    assert_eq!(
        webhook["namespaceSelector"]["matchLabels"]["kafka-listener-injector.io/injection"],
        "enabled"
    );
    assert_eq!(
        webhook["objectSelector"]["matchExpressions"][0]["values"][0],
        "false"
    );
    // The webhook's own namespace is labelled so it can never opt in.
    assert_eq!(
        find(&objects, "Namespace")["metadata"]["labels"]["kafka-listener-injector.io/injection"],
        "disabled"
    );
}

#[test]
fn cert_manager_component_issues_the_secret_and_injects_the_ca() {
    let objects = kustomize(&repo("manifests/examples/cluster-wide-with-cert-manager"));
    let config = find(&objects, "MutatingWebhookConfiguration");
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "kafka-listener-injector/kafka-listener-injector"
    );
    let serving = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["metadata"]["name"] == "kafka-listener-injector")
        .unwrap();
    let secret = find(&objects, "Deployment")["spec"]["template"]["spec"]["volumes"][0]["secret"]
        ["secretName"]
        .clone();
    assert_eq!(serving["spec"]["secretName"], secret);
}

#[test]
fn example_services_are_up_to_date_and_match_what_preview_injects() {
    let objects = kustomize(&repo("manifests/examples/kafka"));
    // The example runs the Kafka version `make e2e` proves it with (tests/e2e/versions.env).
    let versions = std::fs::read_to_string(repo("tests/e2e/versions.env")).unwrap();
    let kafka_version = versions
        .lines()
        .find_map(|l| l.strip_prefix("KAFKA_VERSION="))
        .unwrap();
    for statefulset in objects.iter().filter(|o| o["kind"] == "StatefulSet") {
        assert_eq!(
            statefulset["spec"]["template"]["spec"]["containers"][0]["image"],
            format!("apache/kafka:{kafka_version}"),
            "{}",
            statefulset["metadata"]["name"]
        );
    }

    let (code, generated, err) = run(
        &["services", "--type", "LoadBalancer", "-f"],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    let checked_in =
        std::fs::read_to_string(repo("manifests/examples/kafka/services.yaml")).unwrap();
    let body: String = checked_in
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        body, generated,
        "services.yaml is stale: regenerate it (see its header)"
    );

    let (_, preview, _) = run(&["preview", "-f"], "manifests/examples/kafka/kafka.yaml");
    let services: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Service" && o["spec"]["type"] == "LoadBalancer")
        .collect();
    assert_eq!(services.len(), 3);
    for (i, service) in services.iter().enumerate() {
        let host = service["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/hostname"]
            .as_str()
            .unwrap();
        assert_eq!(host, format!("kafka-{i}.kafka.example.com"));
        assert!(
            preview.contains(&format!("EXTERNAL://{host}:9094")),
            "{preview}"
        );
        assert_eq!(
            service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"],
            format!("kafka-{i}")
        );
    }
}

#[test]
fn services_render_node_ports_from_ordinal_arithmetic_with_annotations() {
    let (code, text, err) = run(
        &[
            "services",
            "--type",
            "NodePort",
            "--port",
            "9094",
            "--annotation",
            "team=payments",
            "-f",
        ],
        "tests/fixtures/charts/sasl-three-listeners.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    // The chart's 31090+ordinal lies where the API server gives ports to any Service: said once.
    assert_eq!(err.matches("warning: ").count(), 1, "{err}");
    assert!(
        err.contains(
            "node ports 31090 (kafka-0), 31091 (kafka-1), 31092 (kafka-2) are outside 30000-30085"
        ),
        "{err}"
    );
    let services: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/golden/services-nodeport.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(Value::Array(services), golden);

    // A port outside the NodePort range is refused, naming the listener.
    let (code, _, err) = run(
        &["services", "--type", "NodePort", "-f"],
        "tests/fixtures/charts/apache-kraft.yaml",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("listener EXTERNAL advertises port 9094"),
        "{err}"
    );
}

#[test]
fn certs_chain_is_valid_for_each_requested_name_and_keys_are_private() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "certs",
            "--service",
            "kli",
            "--namespace",
            "webhooks",
            "--dns",
            "localhost",
            "--ip",
            "127.0.0.1",
            "--days",
            "30",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ca_pem = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let bundle = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(bundle.trim())
            .unwrap(),
        ca_pem
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca_pem).unwrap())
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.path().join("tls.crt"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let verify = |name: &str| {
        verifier.verify_server_cert(
            &chain[0],
            &chain[1..],
            &ServerName::try_from(name.to_owned()).unwrap(),
            &[],
            UnixTime::now(),
        )
    };
    for name in [
        "kli.webhooks.svc",
        "kli.webhooks.svc.cluster.local",
        "localhost",
        "127.0.0.1",
    ] {
        verify(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify("kli.other.svc").is_err());
    assert!(verify("127.0.0.2").is_err());
}

#[test]
fn ca_bundle_patch_from_certs_sets_the_webhook_ca_bundle() {
    // Inside the repository (kustomize takes only relative paths), under target/tmp.
    let overlay = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ca-bundle-overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    let relative = Path::new("../../..").join("manifests/cluster-wide");
    assert!(
        overlay.join(&relative).is_dir(),
        "CARGO_TARGET_TMPDIR is not target/tmp"
    );
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "resources: [{}]\npatches:\n  - path: ca-bundle-patch.yaml\n    target: {{kind: MutatingWebhookConfiguration}}\n",
            relative.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--out"])
        .arg(overlay.join("certs"))
        .arg("--ca-bundle-patch")
        .arg(overlay.join("ca-bundle-patch.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = String::from_utf8(out.stdout).unwrap();
    let objects = kustomize(&overlay);
    let webhook = &find(&objects, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(webhook["clientConfig"]["caBundle"], bundle.trim());
}

#[test]
fn services_take_a_name_template_to_adopt_a_charts_own_services_and_print_json() {
    let (code, out, err) = run(
        &[
            "services",
            "--type",
            "LoadBalancer",
            "--name-template",
            "{statefulset}-{ordinal}-external",
            "-o",
            "json",
            "-f",
        ],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["kind"], "List");
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["kafka-0-external", "kafka-1-external", "kafka-2-external"]
    );
    let (code, _, err) = run(
        &[
            "services",
            "--type",
            "LoadBalancer",
            "--name-template",
            "Kafka_{ordinal}",
            "-f",
        ],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("kafka/kafka-0: Service name \"Kafka_0\" is not an RFC 1035 label"),
        "{err}"
    );
}

#[test]
fn example_policy_is_up_to_date_and_names_what_it_cannot_do() {
    let out = Command::new(BIN)
        .args([
            "policy",
            "--node-id-env",
            "KAFKA_NODE_ID",
            "--node-id-offset",
            "100",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let checked_in = std::fs::read_to_string(repo("manifests/examples/kafka/policy.yaml")).unwrap();
    let body: String = checked_in
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        body,
        String::from_utf8(out.stdout).unwrap(),
        "policy.yaml is stale: regenerate it (see its header)"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("policy:   - no admission warnings"), "{err}");
    let kinds: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("kind: ").map(str::to_owned))
        .collect();
    assert_eq!(
        kinds,
        [
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding"
        ]
    );
}

#[test]
fn the_policy_refuses_values_known_only_at_start_up_naming_the_flag() {
    for (args, named) in [
        (
            &["--listeners", "EXTERNAL://{hostIP}:{ordinal+30040}"][..],
            "--listeners uses {hostIP}",
        ),
        (
            &["--env", "NODE={nodeName}"][..],
            "--env NODE uses {nodeName}",
        ),
        (&["--rack-env", "KAFKA_BROKER_RACK"][..], "--rack-env"),
    ] {
        let out = Command::new(BIN).arg("policy").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "nothing half-written");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.contains(named) && err.contains("fieldRef is an atomic struct"),
            "{err}"
        );
    }
}

#[test]
fn installed_as_kubectl_kafka_listeners_it_answers_as_a_kubectl_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-kafka_listeners");
    std::os::unix::fs::symlink(BIN, &plugin).unwrap();
    let out = Command::new(&plugin).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Usage: kubectl kafka-listeners <COMMAND>"),
        "{help}"
    );
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains("preview"));
    let out = Command::new(BIN).arg("man").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains(".TH kafka-listener-injector 1"));
}

/// The exposure choices of `services` (shared with `reconcile`): an internal AWS load balancer
/// with source ranges and a static address per broker from `{ordinal}`, plus one bootstrap
/// Service, against a golden file.
#[test]
fn services_render_internal_load_balancers_per_ordinal_annotations_and_a_bootstrap_service() {
    let (code, text, err) = run(
        &[
            "services",
            "--load-balancer",
            "internal",
            "--cloud",
            "aws",
            "--source-range",
            "10.0.0.0/8,192.168.0.0/16",
            "--external-traffic-policy",
            "Local",
            "--annotation",
            "service.beta.kubernetes.io/aws-load-balancer-private-ipv4-addresses=10.0.8.{ordinal+10}",
            "--bootstrap-host",
            "bootstrap.{domain}",
            "-o",
            "json",
            "-f",
        ],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err, "", "an internal load balancer draws no warning");
    let items = serde_json::from_str::<Value>(&text).unwrap()["items"].clone();
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/golden/services-internal-aws.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(items, golden);
}

#[test]
fn services_warn_loudly_about_plaintext_behind_a_public_load_balancer() {
    let (code, _, err) = run(
        &["services", "--cloud", "gcp", "-f"],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(err.matches("warning: kafka/kafka-").count(), 3, "{err}");
    assert!(
        err.contains("listener EXTERNAL is PLAINTEXT (no TLS) behind a public load balancer open to every address"),
        "{err}"
    );
    // Restricting who may connect softens the message; the listener is still clear text.
    let (_, _, err) = run(
        &["services", "--source-range", "203.0.113.0/24", "-f"],
        "manifests/examples/kafka/kafka.yaml",
    );
    assert!(
        err.contains("is PLAINTEXT (no TLS) behind a public load balancer:"),
        "{err}"
    );
    // A TLS listener draws none (the chart fixture maps EXTERNAL to SASL_SSL).
    let (code, _, err) = run(
        &["services", "--port", "9094", "-f"],
        "tests/fixtures/charts/sasl-three-listeners.yaml",
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
}

#[test]
fn services_refuse_exposure_settings_that_cannot_work_naming_the_flag() {
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["services", "--load-balancer", "internal", "-f"],
            "manifests/examples/kafka/kafka.yaml",
            "--load-balancer internal needs --cloud",
        ),
        (
            &["services", "--source-range", "10.0.0.0/33", "-f"],
            "manifests/examples/kafka/kafka.yaml",
            "--source-range \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            &["services", "--annotation", "ip=10.0.0.{nope}", "-f"],
            "manifests/examples/kafka/kafka.yaml",
            "--annotation ip: unknown placeholder {nope}",
        ),
        (
            &[
                "services",
                "--type",
                "NodePort",
                "--port",
                "9094",
                "--bootstrap-host",
                "bootstrap.{domain}",
                "-f",
            ],
            "tests/fixtures/charts/sasl-three-listeners.yaml",
            "expose listener EXTERNAL on different ports",
        ),
    ];
    for (args, file, expected) in cases {
        let (code, _, err) = run(args, file);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
}

/// Without a Kubernetes API, `reconcile` says so and exits 2, naming where it looked.
#[test]
fn reconcile_without_an_api_server_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["reconcile", "--admin-listen", "127.0.0.1:0"])
        .env("KUBECONFIG", dir.path().join("absent"))
        .env("HOME", dir.path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no Kubernetes API"), "{err}");
    assert!(err.contains("KUBECONFIG"), "{err}");
}

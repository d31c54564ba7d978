//! Each way to reach the brokers from outside, from the same template, as `preview` and
//! `services` print it for the example cluster (manifests/examples/kafka): golden files under
//! tests/golden/layouts, rewritten by `UPDATE_GOLDEN=1 cargo test --test layouts` (review the
//! diff). The README's "Expose the brokers" section shows these layouts side by side.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-listener-injector");
const EXAMPLE: &str = "manifests/examples/kafka/kafka.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs the binary; returns exit code, stdout and stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN)
        .current_dir(repo(""))
        .args(args)
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

fn golden(name: &str, actual: &str) {
    let path = repo(&format!("tests/golden/layouts/{name}"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

/// One layout of the example cluster: its settings, then what preview and services print.
fn layout(name: &str, settings: &[&str], services: &[&str]) {
    layout_of(EXAMPLE, name, settings, services);
}

fn layout_of(file: &str, name: &str, settings: &[&str], services: &[&str]) {
    let mut args = vec!["preview", "-f", file, "--domain", "kafka.example.com"];
    args.extend(settings);
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{name}: preview: {err}");
    golden(&format!("{name}.preview.txt"), &out);

    let mut args = vec!["services", "-f", file, "--domain", "kafka.example.com"];
    args.extend(settings);
    args.extend(services);
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{name}: services: {err}");
    golden(&format!("{name}.services.yaml"), &out);
}

#[test]
fn a_load_balancer_per_broker_on_the_kafka_subdomain() {
    layout(
        "load-balancer",
        &[],
        &["--cloud", "aws", "--load-balancer", "internal"],
    );
}

#[test]
fn node_ports_on_each_broker_node_address_with_racks_from_the_zone() {
    let listeners =
        "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{hostIP}:{ordinal+30040}";
    layout(
        "node-port",
        &["--listeners", listeners, "--rack-env", "KAFKA_BROKER_RACK"],
        &["--type", "NodePort"],
    );
    // A load balancer cannot stand for an address the broker learns when it starts.
    let (code, _, err) = run(&[
        "services",
        "-f",
        EXAMPLE,
        "--domain",
        "kafka.example.com",
        "--listeners",
        listeners,
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("kafka/kafka-0: listener EXTERNAL advertises $(KLI_HOST_IP)")
            && err.contains("use --type NodePort"),
        "{err}"
    );
}

#[test]
fn one_tls_gateway_for_all_brokers_routed_by_name() {
    let gateway = [
        "--gateway",
        "kafka/kafka-gateway",
        "--bootstrap-host",
        "bootstrap.{domain}",
    ];
    layout_of(
        "tests/fixtures/layouts/kafka-tls.yaml",
        "gateway",
        &[],
        &gateway,
    );
    // A listener without TLS sends no name to route by.
    let mut args = vec!["services", "-f", EXAMPLE, "--domain", "kafka.example.com"];
    args.extend(gateway);
    let (code, _, err) = run(&args);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("kafka/kafka-0: listener EXTERNAL is PLAINTEXT: a gateway routes a connection by the name in its TLS handshake (SNI)"),
        "{err}"
    );
}

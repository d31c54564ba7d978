//! The alerting rules: valid (`promtool check rules`), behaving as their unit tests say
//! (`promtool test rules tests/monitoring/rules.test.yaml`), shipped unchanged in the chart's
//! PrometheusRule, and naming only metrics the webhook exports.

use std::path::{Path, PathBuf};
use std::process::Command;

use kafka_listener_injector::outcome::{Outcome, Reason};
use kafka_listener_injector::telemetry::Metrics;

const RULES: &str = "charts/kafka-listener-injector/files/prometheus-rules.yaml";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo(""))
        .output()
        .expect("promtool (Debian's prometheus package) must be installed: see .ci/install-deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_rules_are_valid_and_pass_their_unit_tests() {
    assert!(promtool(&["check", "rules", RULES]).contains("SUCCESS: 5 rules found"));
    assert!(promtool(&["test", "rules", "tests/monitoring/rules.test.yaml"]).contains("SUCCESS"));
}

#[test]
fn the_rules_name_only_metrics_the_webhook_exports() {
    let metrics = Metrics::new();
    metrics.observe_request(
        Outcome::Patched,
        Reason::Injected,
        std::time::Duration::ZERO,
    );
    let exported = metrics.encode();
    let rules = std::fs::read_to_string(repo(RULES)).unwrap();
    let mut named: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("kafka_listener_injector_"))
        .collect();
    named.sort_unstable();
    named.dedup();
    assert!(named.len() >= 3, "{named:?}");
    for name in named {
        assert!(
            exported.contains(name),
            "{name} is not in /metrics:\n{exported}"
        );
    }
}

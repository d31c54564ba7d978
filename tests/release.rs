//! What a release publishes besides the image, and what the binary says about itself: the
//! chart's Artifact Hub metadata agrees with the chart and the crate, the krew manifest names the
//! plugin kubectl finds, and `--version` says the version, the revision and the build date.
//! (The signatures, the attestations and the filled-in krew manifest's sha256 are checked
//! against a real build by `make image-test`: tests/image/verify.sh.)

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_kafka-listener-injector");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn yaml(path: &str) -> Value {
    serde_norway::from_str(&std::fs::read_to_string(repo(path)).unwrap()).unwrap()
}

/// An Artifact Hub annotation: YAML inside a string.
fn annotation(chart: &Value, name: &str) -> Value {
    let text = chart["annotations"][name]
        .as_str()
        .unwrap_or_else(|| panic!("Chart.yaml has no annotation {name}"));
    serde_norway::from_str(text).unwrap()
}

#[test]
fn artifact_hub_metadata_names_the_image_the_chart_installs() {
    let chart = yaml("charts/kafka-listener-injector/Chart.yaml");
    let values = yaml("charts/kafka-listener-injector/values.yaml");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"));
    let images = annotation(&chart, "artifacthub.io/images");
    let image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        chart["appVersion"].as_str().unwrap()
    );
    assert_eq!(images[0]["image"], image.as_str(), "{images:?}");
    assert_eq!(
        chart["annotations"]["artifacthub.io/license"],
        env!("CARGO_PKG_LICENSE")
    );
    let links = annotation(&chart, "artifacthub.io/links");
    let home = chart["home"].as_str().unwrap();
    for link in links.as_array().unwrap() {
        let url = link["url"].as_str().unwrap();
        assert!(url.starts_with(home), "{url} is not under {home}");
        if let Some(page) = url.split("/blob/main/").nth(1) {
            assert!(repo(page).exists(), "{url} links to a missing {page}");
        }
    }
    let kinds = [
        "added",
        "changed",
        "deprecated",
        "removed",
        "fixed",
        "security",
    ];
    for change in annotation(&chart, "artifacthub.io/changes")
        .as_array()
        .unwrap()
    {
        assert!(
            kinds.contains(&change["kind"].as_str().unwrap()),
            "{change:?}"
        );
        assert!(!change["description"].as_str().unwrap().is_empty());
    }
}

#[test]
fn krew_manifest_names_the_plugin_kubectl_finds_and_the_archive_the_build_writes() {
    let template = std::fs::read_to_string(repo("plugins/kafka-listeners.yaml.in")).unwrap();
    let filled = template
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@HOME@", "https://example.com/kli")
        .replace("@SHA256@", &"0".repeat(64));
    let manifest: Value = serde_norway::from_str(&filled).unwrap();
    assert_eq!(
        manifest["apiVersion"],
        "krew.googlecontainertools.github.com/v1alpha2"
    );
    // kubectl finds `kubectl kafka-listeners` as kubectl-kafka_listeners on the PATH.
    let name = manifest["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        format!("kubectl {name}"),
        kafka_listener_injector::cli::PLUGIN_NAME
    );
    assert_eq!(
        manifest["spec"]["version"],
        concat!("v", env!("CARGO_PKG_VERSION"))
    );
    let build = std::fs::read_to_string(repo("tests/image/build.sh")).unwrap();
    for platform in manifest["spec"]["platforms"].as_array().unwrap() {
        assert_eq!(platform["bin"], "kafka-listener-injector");
        assert_eq!(platform["files"][0]["from"], "kafka-listener-injector");
        let uri = platform["uri"].as_str().unwrap();
        let file = uri.rsplit('/').next().unwrap();
        let os_arch = format!(
            "{}-{}",
            platform["selector"]["matchLabels"]["os"].as_str().unwrap(),
            platform["selector"]["matchLabels"]["arch"]
                .as_str()
                .unwrap()
        );
        assert_eq!(
            file,
            format!(
                "kafka-listener-injector-{}-{os_arch}.tar.gz",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(
            build.contains(&format!(
                "archive=kafka-listener-injector-$version-{os_arch}.tar.gz"
            )),
            "tests/image/build.sh does not write {file}"
        );
    }
}

#[test]
fn version_prints_the_version_the_revision_and_the_build_date() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(concat!(
            "kafka-listener-injector ",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let revision = lines.get(1).and_then(|l| l.strip_prefix("revision: "));
    let built = lines.get(2).and_then(|l| l.strip_prefix("built: "));
    assert_eq!(lines.len(), 3, "{text}");
    // Built from this checkout (unless a build was told another revision on purpose).
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned());
    if std::env::var_os("KLI_REVISION").is_none() {
        assert_eq!(
            revision,
            Some(head.as_deref().unwrap_or("unknown")),
            "{text}"
        );
    }
    let built = built.unwrap_or_else(|| panic!("no build date in {text}"));
    assert!(built.len() == 20 && built.ends_with('Z'), "{text}");
}

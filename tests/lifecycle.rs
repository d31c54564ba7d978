//! The binary as an operator runs it: SIGTERM drains in-flight requests, and `preview` prints
//! byte for byte the patch `serve` returns.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_kafka-listener-injector");

type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts `serve` on ephemeral ports and returns the child with its webhook and admin addresses,
/// read from its JSON start-up log, and the log lines it writes afterwards.
fn spawn_serve(
    cert_dir: &std::path::Path,
    rust_log: &str,
    extra: &[&str],
) -> (Child, SocketAddr, SocketAddr, Log) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--domain",
            "kafka.example.com",
            "--log-format",
            "json",
            "--shutdown-grace",
            "10s",
        ])
        .arg("--tls-cert")
        .arg(cert_dir.join("tls.crt"))
        .arg("--tls-key")
        .arg(cert_dir.join("tls.key"))
        .args(extra)
        .env("RUST_LOG", rust_log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let serving: Value = loop {
        let line = lines.next().expect("serve exited before serving").unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        if value["message"] == "serving" {
            break value;
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    let log = Log::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .for_each(|l| sink.lock().unwrap().push(l))
    });
    let webhook = serving["webhook"].as_str().unwrap().parse().unwrap();
    let admin = serving["admin"].as_str().unwrap().parse().unwrap();
    (child, webhook, admin, log)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to a second for `/readyz` to answer 503.
async fn assert_turns_unready(admin: SocketAddr) {
    for _ in 0..50 {
        if readyz(admin).await == 503 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/readyz did not turn unready after SIGTERM");
}

async fn readyz(admin: SocketAddr) -> u16 {
    reqwest::get(format!("http://{admin}/readyz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_unready_and_finishes_in_flight_requests_then_exits_zero() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue_certs(dir.path());
    let (mut child, webhook, admin, _) = spawn_serve(dir.path(), "info", &[]);
    assert_eq!(readyz(admin).await, 200);

    // A request in flight: headers and half of the body sent.
    let body = common::FIXTURE.as_bytes();
    let mut raw = common::raw_connect(webhook, &issued.ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    raw.write_all(&body[..body.len() / 2]).await.unwrap();
    raw.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    sigterm(&child);
    assert_turns_unready(admin).await;
    assert!(
        tokio::net::TcpStream::connect(webhook).await.is_err(),
        "new connections are still accepted after SIGTERM"
    );

    raw.write_all(&body[body.len() / 2..]).await.unwrap();
    let answer = common::read_to_close(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"patch\""), "{answer}");

    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

/// `preview -o patch` for `file`, with the flags the test servers run with: exit code and output.
fn preview_patches(file: &std::path::Path) -> (Option<i32>, String) {
    let preview = Command::new(BIN)
        .args([
            "preview",
            "-o",
            "patch",
            "--domain",
            "kafka.example.com",
            "-f",
        ])
        .arg(file)
        .output()
        .unwrap();
    (
        preview.status.code(),
        String::from_utf8(preview.stdout).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_prints_byte_for_byte_the_patch_serve_returns() {
    let server = common::TestServer::start(&[]).await;
    let review: Value = serde_json::from_str(common::FIXTURE).unwrap();
    let pod_file = server.dir.join("pod.json");
    std::fs::write(&pod_file, review["request"]["object"].to_string()).unwrap();

    let answer: Value = common::post_review(&server.client(false), &server.url(), common::FIXTURE)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().unwrap())
        .unwrap();

    let (code, patches) = preview_patches(&pod_file);
    assert_eq!(code, Some(0));
    assert_eq!(patches, String::from_utf8(served).unwrap() + "\n");
}

#[test]
fn bad_flags_fail_fast_naming_the_flag() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--tls-cert /nonexistent/tls.crt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_env_values_or_pod_objects() {
    const SECRET: &str = "s3cr3t-Pa55w0rd-do-not-log";
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue_certs(dir.path());
    let (mut child, webhook, _, log) = spawn_serve(dir.path(), "trace", &[]);
    let client = common::client(&issued.ca_pem, true);
    let mut review: Value = serde_json::from_str(common::FIXTURE).unwrap();
    let push_env = |review: &mut Value, var: Value| {
        let env = &mut review["request"]["object"]["spec"]["containers"][0]["env"];
        env.as_array_mut().unwrap().push(var);
    };
    push_env(
        &mut review,
        serde_json::json!({"name": "KAFKA_SASL_PASSWORD", "value": SECRET}),
    );
    let admitted = review.to_string();
    // The same pod denied (listener missing from the map), overridden, and a malformed body.
    let map = format!("X:{SECRET}");
    push_env(
        &mut review,
        serde_json::json!({"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": map}),
    );
    let denied = review.to_string();
    let bodies = [
        admitted.clone(),
        denied,
        format!("{{\"{SECRET}\": ["),
        admitted.replace("KAFKA_SASL_PASSWORD", "KAFKA_ADVERTISED_LISTENERS"),
    ];
    let url = format!("https://{webhook}/mutate");
    for body in bodies {
        let response = common::post_review(&client, &url, body)
            .send()
            .await
            .unwrap();
        assert!(response.status() == 200 || response.status() == 400);
    }
    sigterm(&child);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    std::thread::sleep(Duration::from_millis(200));
    let lines = log.lock().unwrap().clone();
    let admissions = lines.iter().filter(|l| l.contains("\"admission\"")).count();
    assert_eq!(admissions, 3, "one line per answered review: {lines:#?}");
    for line in &lines {
        assert!(!line.contains(SECRET), "an env value was logged: {line}");
        assert!(
            !line.contains("managedFields"),
            "a pod object was logged: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_serving_new_connections_while_unready() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue_certs(dir.path());
    let (mut child, webhook, admin, _) =
        spawn_serve(dir.path(), "info", &["--shutdown-delay", "2s"]);
    sigterm(&child);
    assert_turns_unready(admin).await;
    // A new client, so a new connection, during the delay: still served.
    let url = format!("https://{webhook}/mutate");
    let client = common::client(&issued.ca_pem, false);
    let response = common::post_review(&client, &url, common::FIXTURE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_and_serve_agree_byte_for_byte_on_every_chart_fixture() {
    use kafka_listener_injector::preview::manifests::{self, Expansion};
    let server = common::TestServer::start(&[]).await;
    let client = server.client(false);
    let charts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/charts");
    let mut compared = 0;
    for entry in std::fs::read_dir(&charts).unwrap() {
        let file = entry.unwrap().path();
        // What serve answers for each pod the StatefulSet controller would create ...
        let documents = manifests::read_documents(std::slice::from_ref(&file)).unwrap();
        let expansion = Expansion {
            namespace: "default",
            replicas: None,
        };
        let mut served = Vec::new();
        for pod in manifests::pods(&documents, &expansion).unwrap().pods {
            let mut review: Value = serde_json::from_str(common::FIXTURE).unwrap();
            review["request"]["name"] = serde_json::json!(pod.pod.metadata.name);
            review["request"]["namespace"] = serde_json::json!(pod.namespace);
            review["request"]["object"] = serde_json::to_value(&pod.pod).unwrap();
            let answer: Value = common::post_review(&client, &server.url(), review.to_string())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(patch) = answer["response"]["patch"].as_str() {
                let patch = base64::engine::general_purpose::STANDARD
                    .decode(patch)
                    .unwrap();
                served.push(String::from_utf8(patch).unwrap() + "\n");
            }
        }
        // ... and what preview prints for the same manifest, with the same flags.
        let (_, patches) = preview_patches(&file);
        assert_eq!(patches, served.concat(), "{}", file.display());
        compared += served.len();
    }
    assert!(compared >= 13, "only {compared} patches compared");
}

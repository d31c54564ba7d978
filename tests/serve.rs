//! The real TLS server over loopback sockets: real AdmissionReview bodies over HTTP/1.1 and
//! HTTP/2, every bad input of the contract, certificate rotation, metrics.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{TestServer, FIXTURE, FIXTURE_1_37};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = common::post_review(client, url, body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The value of an unlabelled gauge in a metrics text.
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .unwrap()
}

fn decoded_patch(review: &Value) -> Value {
    let patch = base64::engine::general_purpose::STANDARD
        .decode(review["response"]["patch"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&patch).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pod_review_is_patched_over_http1_and_http2() {
    let server = TestServer::start(&[]).await;
    for http2 in [false, true] {
        let client = server.client(http2);
        let response = common::post_review(&client, &server.url(), FIXTURE)
            .send()
            .await
            .unwrap();
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(response.version(), expected);
        assert_eq!(response.status(), 200);
        let review: Value = response.json().await.unwrap();
        assert_eq!(
            review["response"]["uid"],
            "f2bd621b-ea87-45af-aa2a-e0c4a65305fa"
        );
        assert_eq!(review["response"]["allowed"], true);
        let patch = decoded_patch(&review);
        let mut pod: Value =
            serde_json::from_str::<Value>(FIXTURE).unwrap()["request"]["object"].clone();
        json_patch::patch(
            &mut pod,
            &serde_json::from_value::<json_patch::Patch>(patch).unwrap(),
        )
        .unwrap();
        assert_eq!(
            pod["spec"]["containers"][0]["env"][1],
            json!({"name": "KAFKA_ADVERTISED_LISTENERS",
                   "value": "INTERNAL://broker-0.broker-headless.demo.svc:9092,EXTERNAL://broker-0.kafka.example.com:9094"})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pod_without_name_is_allowed_with_a_warning() {
    let server = TestServer::start(&[]).await;
    let body = include_str!("fixtures/review-deployment-pod-without-name.json");
    let (status, review) = post(&server.client(false), &server.url(), body).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"].get("patch").is_none());
    let warning = review["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("generateName"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_status_and_a_json_body_and_the_server_keeps_serving() {
    let server = TestServer::start(&["--max-body-bytes", "65536"]).await;
    let client = server.client(false);
    let url = server.url();

    // Declared too large: answered at once, before any body byte is read.
    let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
    raw.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n").await.unwrap();
    let answer = common::read_to_close(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("--max-body-bytes"), "{answer}");
    // Chunked, so the length is unknown up front: cut off once the limit is passed.
    let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
    raw.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
    let chunk = vec![b' '; 70_000];
    raw.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await
        .unwrap();
    raw.write_all(&chunk).await.unwrap();
    let answer = common::read_to_close(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 405);

    let response = client
        .post(&url)
        .header("content-type", "text/plain")
        .body(FIXTURE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());

    let (status, body) = post(&client, &url, "{\"kind\": ").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("not JSON"));

    let (status, body) = post(
        &client,
        &url,
        "{\"kind\": \"AdmissionReview\", \"apiVersion\": \"admission.k8s.io/v1\"}",
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("no request"),
        "{body}"
    );

    let response = client
        .get(format!("https://{}/other", server.webhook))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let (status, review) = post(&client, &url, FIXTURE).await;
    assert_eq!(status, 200);
    assert_eq!(review["response"]["allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_1_37_review_gets_the_ordinal_from_its_pod_index_label() {
    let server = TestServer::start(&[]).await;
    let (status, review) = post(&server.client(false), &server.url(), FIXTURE_1_37).await;
    assert_eq!(status, 200);
    assert_eq!(
        review["response"]["uid"],
        "e7eaf19f-9f7d-4be7-9904-2dafaab1c8e2"
    );
    assert!(review["response"].get("warnings").is_none(), "{review}");
    let mut pod: Value =
        serde_json::from_str::<Value>(FIXTURE_1_37).unwrap()["request"]["object"].clone();
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "1"
    );
    let patch = serde_json::from_value::<json_patch::Patch>(decoded_patch(&review)).unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    let value_of = |name: &str| env.iter().find(|e| e["name"] == name).unwrap()["value"].clone();
    assert_eq!(
        value_of("KAFKA_ADVERTISED_LISTENERS"),
        "INTERNAL://kafka-1.kafka-headless.kafka.svc:9092,EXTERNAL://kafka-1.kafka.example.com:9094"
    );
    assert_eq!(value_of("KAFKA_NODE_ID"), "101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_durations() {
    let server = TestServer::start(&[]).await;
    let client = server.client(true);
    for _ in 0..3 {
        post(&client, &server.url(), FIXTURE_1_37).await;
    }
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("kafka_listener_injector_admission_requests_total{outcome=\"patched\",reason=\"injected\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kafka_listener_injector_admission_duration_seconds_count 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kafka_listener_injector_admission_duration_seconds_bucket{le=\"5e-5\"}")
            || metrics.contains(
                "kafka_listener_injector_admission_duration_seconds_bucket{le=\"0.00005\"}"
            ),
        "{metrics}"
    );
    let expiry = metrics
        .lines()
        .find(|l| l.starts_with("kafka_listener_injector_certificate_expiry_timestamp_seconds "))
        .unwrap();
    let expiry: f64 = expiry.split(' ').nth(1).unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now && expiry < now + 2.0 * 86400.0, "{expiry}");

    let health = reqwest::get(format!("http://{}/healthz", server.admin))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = reqwest::get(format!("http://{}/readyz", server.admin))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_requests_are_answered_the_same_way() {
    let server = TestServer::start(&[]).await;
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    review["request"]["dryRun"] = json!(true);
    let (status, answer) = post(&server.client(false), &server.url(), review.to_string()).await;
    assert_eq!(status, 200);
    let (_, plain) = post(&server.client(false), &server.url(), FIXTURE).await;
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    assert_eq!(answer["response"]["patch"], plain["response"]["patch"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_mismatched_certificates_fail_fast_naming_the_flag() {
    common::install_crypto();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    common::issue_certs(a.path());
    common::issue_certs(b.path());
    let mut args = common::serve_args(a.path(), &[]);
    args.tls_key = b.path().join("tls.key");
    let error = kafka_listener_injector::webhook::Server::bind(args)
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("do not match"), "{error}");
    let mut args = common::serve_args(a.path(), &[]);
    args.tls_key = a.path().join("missing.key");
    let error = kafka_listener_injector::webhook::Server::bind(args)
        .await
        .err()
        .unwrap();
    assert!(error.to_string().starts_with("--tls-key"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_with_client_ca() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue_certs(dir.path());
    let client_ca = dir.path().join("ca.crt");
    let server = TestServer::start_with(
        dir.path(),
        &issued.ca_pem,
        &["--client-ca", client_ca.to_str().unwrap()],
    )
    .await;
    // No client certificate at all: the handshake or the request fails.
    let result = common::post_review(&server.client(false), &server.url(), FIXTURE)
        .send()
        .await;
    assert!(result.is_err(), "a client without a certificate was served");
}

/// Waits (up to 5 s) until the metrics hold `line`: the certificate is checked every 100 ms.
async fn metric_shows(server: &common::TestServer, line: &str) {
    for _ in 0..50 {
        if server.metrics().await.contains(line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificate_is_served_to_new_connections_without_failed_requests() {
    use std::os::unix::fs::symlink;
    common::install_crypto();
    // The layout of a Secret volume: files are symlinks through `..data` to a timestamped dir.
    let root = tempfile::tempdir().unwrap();
    let first = root.path().join("..2026_01");
    let second = root.path().join("..2026_02");
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    let first_certs = common::issue_certs(&first);
    let second_certs = common::issue_certs(&second);
    symlink("..2026_01", root.path().join("..data")).unwrap();
    symlink("..data/tls.crt", root.path().join("tls.crt")).unwrap();
    symlink("..data/tls.key", root.path().join("tls.key")).unwrap();

    // Both CAs are trusted so that requests keep flowing across the swap.
    let both = format!("{}{}", first_certs.ca_pem, second_certs.ca_pem);
    let server = TestServer::start_with(root.path(), &both, &[]).await;
    assert_eq!(
        common::presented_certificate(server.webhook, &both).await,
        common::pem_to_der(&first_certs.cert_pem)
    );

    let url = server.url();
    let load = {
        let both = both.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, 0u32);
            let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
            while tokio::time::Instant::now() < deadline {
                // A fresh client per round: new connections, new handshakes.
                let client = common::client(&both, ok % 2 == 0);
                match common::post_review(&client, &url, FIXTURE).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The atomic swap a kubelet does: a new symlink renamed over `..data`.
    symlink("..2026_02", root.path().join("..data_tmp")).unwrap();
    std::fs::rename(root.path().join("..data_tmp"), root.path().join("..data")).unwrap();
    let (ok, failed) = load.await.unwrap();
    assert_eq!(
        failed, 0,
        "{failed} requests failed during rotation ({ok} succeeded)"
    );
    assert!(ok > 10);
    assert_eq!(
        common::presented_certificate(server.webhook, &both).await,
        common::pem_to_der(&second_certs.cert_pem)
    );

    // A broken pair (a key that does not match) is rejected and the second pair keeps serving.
    let third = root.path().join("..2026_03");
    std::fs::create_dir(&third).unwrap();
    std::fs::copy(first.join("tls.crt"), third.join("tls.crt")).unwrap();
    std::fs::copy(second.join("tls.key"), third.join("tls.key")).unwrap();
    symlink("..2026_03", root.path().join("..data_tmp")).unwrap();
    std::fs::rename(root.path().join("..data_tmp"), root.path().join("..data")).unwrap();
    // Reported once two checks in a row have read it.
    let failure = "kafka_listener_injector_certificate_reloads_total{result=\"failure\"} 1";
    metric_shows(&server, failure).await;
    assert_eq!(
        common::presented_certificate(server.webhook, &both).await,
        common::pem_to_der(&second_certs.cert_pem)
    );
    let (status, _) = post(&common::client(&both, false), &server.url(), FIXTURE).await;
    assert_eq!(status, 200);
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("kafka_listener_injector_certificate_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(failure), "{metrics}");

    // An expired pair (a stale Secret restored by mistake) is rejected while the served one is
    // valid: counted as rejected, and the expiry gauge keeps showing the served certificate.
    let expiry_before = gauge(
        &metrics,
        "kafka_listener_injector_certificate_expiry_timestamp_seconds",
    );
    let fourth = root.path().join("..2026_04");
    std::fs::create_dir(&fourth).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let expired = kafka_listener_injector::certs::issue_valid(
        &common::certs_args(&fourth),
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .unwrap();
    kafka_listener_injector::certs::write(&fourth, &expired).unwrap();
    symlink("..2026_04", root.path().join("..data_tmp")).unwrap();
    std::fs::rename(root.path().join("..data_tmp"), root.path().join("..data")).unwrap();
    let rejected = "kafka_listener_injector_certificate_reloads_total{result=\"rejected\"} 1";
    metric_shows(&server, rejected).await;
    assert_eq!(
        common::presented_certificate(server.webhook, &both).await,
        common::pem_to_der(&second_certs.cert_pem)
    );
    let metrics = server.metrics().await;
    assert!(metrics.contains(rejected), "{metrics}");
    assert_eq!(
        gauge(
            &metrics,
            "kafka_listener_injector_certificate_expiry_timestamp_seconds"
        ),
        expiry_before
    );
}

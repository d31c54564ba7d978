//! Hostile input against the running TLS server: each gets its documented answer, nothing hangs,
//! and a normal request succeeds right after each.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, FIXTURE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn start() -> TestServer {
    TestServer::start(&["--request-timeout", "1s"]).await
}

/// Posts raw bytes with a JSON content type; returns the status and the body as text.
async fn post_bytes(server: &TestServer, body: Vec<u8>) -> (u16, String) {
    let response = common::post_review(&server.client(false), &server.url(), body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The normal request that must still succeed after each hostile one.
async fn still_serving(server: &TestServer) {
    let (status, body) = post_bytes(server, FIXTURE.as_bytes().to_vec()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"patch\""), "{body}");
}

fn fixture_with(mutate: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_str(FIXTURE).unwrap();
    mutate(&mut value);
    serde_json::to_vec(&value).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_400_with_a_json_error() {
    let server = start().await;
    let truncated = FIXTURE.as_bytes()[..FIXTURE.len() / 2].to_vec();
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    let deep_object = format!(
        "{{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{}{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    )
    .into_bytes();
    let mut non_utf8 = FIXTURE.as_bytes().to_vec();
    non_utf8[40] = 0xff;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", truncated),
        ("deep array", deep_array),
        ("deep object", deep_object),
        ("non-UTF-8", non_utf8),
        ("empty", Vec::new()),
        ("wrong kind", fixture_with(|v| v["kind"] = json!("Pod"))),
        (
            "wrong apiVersion",
            fixture_with(|v| v["apiVersion"] = json!("admission.k8s.io/v2")),
        ),
        (
            "missing uid",
            fixture_with(|v| {
                v["request"].as_object_mut().unwrap().remove("uid");
            }),
        ),
        (
            "no request",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
        ),
    ];
    for (name, body) in cases {
        let (status, text) = post_bytes(&server, body).await;
        assert_eq!(status, 400, "{name}: {text}");
        let error: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{name}: {text}"));
        assert!(error["error"].is_string(), "{name}: {text}");
        still_serving(&server).await;
    }
}

/// Valid JSON nested 300,000 deep inside a field the hot path skips unread. serde_json skips it
/// without recursion; parsers that skip recursively with no depth limit overflow the stack and
/// abort the process (sonic-rs 0.5 did, which is why the hot path does not use it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_in_a_skipped_field_is_answered() {
    let server = start().await;
    let body = FIXTURE
        .replacen(
            "\"userInfo\":",
            &format!(
                "\"skipped\":{}{},\"userInfo\":",
                "[".repeat(300_000),
                "]".repeat(300_000)
            ),
            1,
        )
        .into_bytes();
    let (status, text) = post_bytes(&server, body).await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{text}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviews_that_are_not_pod_creates_are_allowed_unchanged() {
    let server = start().await;
    let cases = vec![
        (
            "UPDATE",
            fixture_with(|v| v["request"]["operation"] = json!("UPDATE")),
        ),
        (
            "DELETE",
            fixture_with(|v| {
                v["request"]["operation"] = json!("DELETE");
                v["request"]["oldObject"] = v["request"]["object"].clone();
                v["request"]["object"] = Value::Null;
            }),
        ),
        (
            "ConfigMap",
            fixture_with(|v| {
                v["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "ConfigMap"});
                v["request"]["object"] = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}});
            }),
        ),
        (
            "Deployment",
            fixture_with(|v| {
                v["request"]["kind"] =
                    json!({"group": "apps", "version": "v1", "kind": "Deployment"});
                v["request"]["object"] = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": 42});
            }),
        ),
        (
            "pods/status",
            fixture_with(|v| v["request"]["subResource"] = json!("status")),
        ),
    ];
    for (name, body) in cases {
        let (status, text) = post_bytes(&server, body).await;
        assert_eq!(status, 200, "{name}: {text}");
        let review: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(review["response"]["allowed"], true, "{name}");
        assert_eq!(
            review["response"]["uid"], "f2bd621b-ea87-45af-aa2a-e0c4a65305fa",
            "{name}"
        );
        assert!(review["response"].get("patch").is_none(), "{name}");
        still_serving(&server).await;
    }
    let (_, text) = post_bytes(
        &server,
        fixture_with(|v| v["apiVersion"] = json!("admission.k8s.io/v1beta1")),
    )
    .await;
    let review: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1beta1");
    assert!(review["response"]["patch"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_default_7_mib_gets_413() {
    let server = TestServer::start(&[]).await;
    let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        7 * 1024 * 1024 + 1
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let answer = common::read_to_close(&mut raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off_and_do_not_block_others() {
    let server = start().await;
    let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
    let started = Instant::now();
    let slow = tokio::spawn(async move {
        // One byte every 300 ms: the whole header would take far longer than --request-timeout.
        for byte in b"POST /mutate HTTP/1.1\r\nhost: x\r\n".iter() {
            if raw.write_all(&[*byte]).await.is_err() || raw.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    });
    still_serving(&server).await;
    slow.await.unwrap();
    let held = started.elapsed();
    assert!(
        held < Duration::from_secs(4),
        "a slow client held its connection for {held:?}"
    );
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_connections_do_not_starve_real_requests() {
    let server = start().await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            tokio::net::TcpStream::connect(server.webhook)
                .await
                .unwrap(),
        );
    }
    for _ in 0..50 {
        idle.push(
            common::raw_connect(server.webhook, &server.ca_pem)
                .await
                .into_inner()
                .0,
        );
    }
    let started = Instant::now();
    still_serving(&server).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    // After --request-timeout the server closes them (TLS ones after a close_notify): reading
    // to the end finishes instead of hanging.
    for i in [0, 349] {
        let stream = &mut idle[i];
        let mut rest = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "idle connection {i} was still open after 3 s");
    }
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_http2_clients_are_closed() {
    let server = start().await;
    let connector =
        tokio_rustls::TlsConnector::from(common::tls_client_config(&server.ca_pem, &[b"h2"]));
    let tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // No connection preface, ever: the server must not keep this forever.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), tls.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "a silent HTTP/2 connection was still open after 4 s"
    );
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_is_closed() {
    let server = start().await;
    let mut tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    tcp.write_all(b"POST /mutate HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection hung");
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"));
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sni_gets_the_same_certificate_which_the_client_rejects() {
    let server = start().await;
    let connector =
        tokio_rustls::TlsConnector::from(common::tls_client_config(&server.ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("wrong.example.com").unwrap();
    let error = connector.connect(name, tcp).await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_1_is_refused_and_tls_1_2_accepted() {
    let server = start().await;
    let s_client = |version: &str| {
        std::process::Command::new("openssl")
            .args([
                "s_client",
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
                "-connect",
            ])
            .arg(server.webhook.to_string())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl must be installed: see .ci/install-deps")
    };
    for old in ["-tls1", "-tls1_1"] {
        let out = s_client(old);
        let text = String::from_utf8_lossy(&out.stdout);
        let errors = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() || text.contains("Cipher is (NONE)"),
            "{old} was accepted: {text}"
        );
        // The refusal must come from the server (an alert), not from a local openssl that could
        // not offer the old version at all ("no protocols available"): else this proves nothing.
        assert!(
            errors.contains("SSL alert number"),
            "{old}: the server sent no alert; is the local openssl able to offer {old}? {errors}"
        );
    }
    let out = s_client("-tls1_2");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Protocol  : TLSv1.2") || text.contains("TLSv1.2"),
        "{text}"
    );
    still_serving(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_accepts_a_signed_client_and_refuses_others() {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let issued = common::issue_certs(dir.path());
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut client_params = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::write(&client_ca, ca_cert.pem()).unwrap();

    let server = TestServer::start_with(
        dir.path(),
        &issued.ca_pem,
        &["--client-ca", client_ca.to_str().unwrap()],
    )
    .await;
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", client_cert.pem(), client_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(issued.ca_pem.as_bytes()).unwrap())
        .identity(identity)
        .build()
        .unwrap();
    let response = common::post_review(&client, &server.url(), FIXTURE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let anonymous = common::post_review(&server.client(false), &server.url(), FIXTURE)
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );

    // A certificate from another CA, with the same name and usage: refused too.
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other_key = KeyPair::generate().unwrap();
    let other_issuer = Issuer::new(other_params, other_key);
    let mut forged_params = CertificateParams::new(vec!["kube-apiserver".to_owned()]).unwrap();
    forged_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let forged_key = KeyPair::generate().unwrap();
    let forged_cert = forged_params.signed_by(&forged_key, &other_issuer).unwrap();
    let forged = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(issued.ca_pem.as_bytes()).unwrap())
        .identity(
            reqwest::Identity::from_pem(
                format!("{}{}", forged_cert.pem(), forged_key.serialize_pem()).as_bytes(),
            )
            .unwrap(),
        )
        .build()
        .unwrap();
    let wrong = common::post_review(&forged, &server.url(), FIXTURE)
        .send()
        .await;
    assert!(
        wrong.is_err(),
        "a client with another CA's certificate was served"
    );
}

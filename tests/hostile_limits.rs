//! The limits that keep one tenant or one client from taking the webhook down (the webhook's
//! availability is every broker pod's availability under `failurePolicy: Fail`): bounded answers
//! to amplifying settings, a connection cap, an in-flight body budget, and keep-alive that
//! outlasts the API server's connection pool while a started request must still finish quickly.

mod common;

use std::time::Duration;

use common::{TestServer, FIXTURE};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn request(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Reads one HTTP/1.1 response (headers and a content-length body) from a kept-alive stream.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed mid-headers"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head + &String::from_utf8(body).unwrap()
}

/// A normal review is answered.
async fn assert_serves(server: &TestServer) {
    let response = common::post_review(&server.client(false), &server.url(), FIXTURE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_outlasts_the_request_timeout_and_idle_connections_close_later() {
    let server = TestServer::start(&["--request-timeout", "1s", "--idle-timeout", "4s"]).await;
    let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
    raw.write_all(&request(FIXTURE.as_bytes())).await.unwrap();
    assert!(read_response(&mut raw).await.starts_with("HTTP/1.1 200"));
    // Idle twice as long as --request-timeout, as a pooled API server connection may be.
    tokio::time::sleep(Duration::from_secs(2)).await;
    raw.write_all(&request(FIXTURE.as_bytes())).await.unwrap();
    assert!(read_response(&mut raw).await.starts_with("HTTP/1.1 200"));
    // Past --idle-timeout the server closes it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an idle connection outlived --idle-timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_and_counted() {
    let server = TestServer::start(&["--max-connections", "4", "--request-timeout", "2s"]).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(common::raw_connect(server.webhook, &server.ca_pem).await);
    }
    // The fifth gets its TCP connection accepted and closed: the handshake fails.
    let connector =
        tokio_rustls::TlsConnector::from(common::tls_client_config(&server.ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(server.webhook)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    assert!(server
        .metrics()
        .await
        .contains("kafka_listener_injector_admission_requests_total{outcome=\"rejected\",reason=\"too-many-connections\"} 1"));
    // Once they are gone, requests are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_beyond_the_in_flight_budget_get_503_and_a_retry_hint() {
    let mib = 1024 * 1024;
    let server = TestServer::start(&[
        "--request-timeout",
        "2s",
        "--max-body-bytes",
        &mib.to_string(),
        "--max-inflight-body-bytes",
        &(2 * mib).to_string(),
    ])
    .await;
    // Two clients each announce a 1 MiB body and send only part of it: the budget is taken.
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut raw = common::raw_connect(server.webhook, &server.ca_pem).await;
        let head = format!(
            "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {mib}\r\n\r\n{{"
        );
        raw.write_all(head.as_bytes()).await.unwrap();
        raw.flush().await.unwrap();
        slow.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = common::post_review(&server.client(false), &server.url(), vec![b' '; mib])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    // The slow bodies time out, their budget returns, and a normal review is answered.
    for mut raw in slow {
        assert!(common::read_to_close(&mut raw).await.contains("408"));
    }
    assert_serves(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amplifying_listeners_annotation_gets_a_short_denial() {
    let server = TestServer::start(&[]).await;
    let mut review: Value = serde_json::from_str(FIXTURE).unwrap();
    let name = format!("{}-0", "b".repeat(240));
    review["request"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["name"] = json!(name);
    review["request"]["object"]["metadata"]["ownerReferences"][0]["name"] = json!("b".repeat(240));
    review["request"]["object"]["metadata"]["annotations"] =
        json!({"kafka-listener-injector.io/listeners": "{pod}".repeat(800)});
    let body = serde_json::to_vec(&review).unwrap();
    let response = common::post_review(&server.client(false), &server.url(), body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    // 800 x 242 bytes would be a 190 KB value; the answer stays small.
    assert!(text.len() < 4096, "{} bytes", text.len());
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert!(answer["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .ends_with("annotation kafka-listener-injector.io/listeners: the rendered value would be over 8192 bytes long"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_its_whole_oversized_body_first_still_reads_the_413() {
    let server = TestServer::start(&[]).await;
    // reqwest writes the body before it reads: without a lingering close the server's early
    // answer would be lost to a connection reset.
    for http2 in [false, true] {
        let response = common::post_review(
            &server.client(http2),
            &server.url(),
            vec![b' '; 8 * 1024 * 1024],
        )
        .send()
        .await
        .unwrap();
        assert_eq!(response.status(), 413);
    }
}

//! Shared harness: certificates in a temp dir, an in-process server on loopback, and clients that
//! trust only the generated CA.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;
use kafka_listener_injector::certs;
use kafka_listener_injector::cli::{Cli, Command};
use kafka_listener_injector::webhook;
use kafka_listener_injector::webhook::Server;
use tokio::sync::oneshot;

pub const FIXTURE: &str = include_str!("../fixtures/review-statefulset-pod.json");
/// Captured from kube-apiserver 1.37 (`make e2e`'s control plane): the example broker StatefulSet
/// with `ordinals.start: 1`, so the pod carries the real `apps.kubernetes.io/pod-index` label.
#[allow(dead_code)]
pub const FIXTURE_1_37: &str = include_str!("../fixtures/review-1.37-statefulset-pod.json");

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `certs` configuration for 127.0.0.1 and localhost into `dir`.
pub fn certs_args(dir: &Path) -> certs::Config {
    certs::Config {
        service: "kafka-listener-injector".into(),
        namespace: "kli".into(),
        dns: vec!["localhost".into()],
        ip: vec!["127.0.0.1".parse().unwrap()],
        out: dir.to_owned(),
        days: 1,
        ca_bundle_patch: None,
    }
}

/// Issues a CA and a serving certificate for 127.0.0.1 and localhost into `dir`.
pub fn issue_certs(dir: &Path) -> certs::Issued {
    let args = certs_args(dir);
    let issued = certs::issue(&args).unwrap();
    certs::write(dir, &issued).unwrap();
    issued
}

pub fn serve_args(cert_dir: &Path, extra: &[&str]) -> webhook::Config {
    let cert = cert_dir.join("tls.crt");
    let key = cert_dir.join("tls.key");
    let mut argv: Vec<String> = [
        "kafka-listener-injector",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--domain",
        "kafka.example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--cert-check-interval") {
        argv.extend(["--cert-check-interval".into(), "100ms".into()]);
    }
    argv.extend(["--tls-cert".into(), cert.display().to_string()]);
    argv.extend(["--tls-key".into(), key.display().to_string()]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Serve(args) => args.config().unwrap(),
        _ => unreachable!(),
    }
}

/// A server running in this process until dropped.
pub struct TestServer {
    pub webhook: SocketAddr,
    pub admin: SocketAddr,
    pub ca_pem: String,
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start(extra: &[&str]) -> Self {
        install_crypto();
        let tmp = tempfile::tempdir().unwrap();
        let issued = issue_certs(tmp.path());
        let mut server = Self::start_with(tmp.path(), &issued.ca_pem, extra).await;
        server._tmp = Some(tmp);
        server
    }

    pub async fn start_with(cert_dir: &Path, ca_pem: &str, extra: &[&str]) -> Self {
        install_crypto();
        let args = serve_args(cert_dir, extra);
        let server = Server::bind(args).await.unwrap();
        let (webhook, admin) = (server.webhook_addr(), server.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            webhook,
            admin,
            ca_pem: ca_pem.to_owned(),
            dir: cert_dir.to_owned(),
            stop: Some(stop),
            _tmp: None,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}/mutate", self.webhook)
    }

    pub fn client(&self, http2: bool) -> reqwest::Client {
        client(&self.ca_pem, http2)
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client that trusts only `ca_pem`; HTTP/2 via ALPN or HTTP/1.1 only.
pub fn client(ca_pem: &str, http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .timeout(std::time::Duration::from_secs(10));
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

/// A rustls client config that trusts only `ca_pem`.
pub fn tls_client_config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Opens a TLS connection and returns the leaf certificate the server presented.
pub async fn presented_certificate(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

pub fn pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// A raw TLS connection for requests a normal client would not send (partial bodies, slow
/// headers).
pub async fn raw_connect(
    addr: SocketAddr,
    ca_pem: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem, &[b"http/1.1"]));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the connection (or 10 s pass) and returns what came.
pub async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A POST of an AdmissionReview body to `url`, as the API server sends it.
pub fn post_review(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
}

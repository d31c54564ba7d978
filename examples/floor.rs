//! The floor of `make bench`: the same TLS and HTTP stack as `serve` (rustls, hyper-util auto,
//! axum), answering every POST with a fixed body of the size of a real admission response, and
//! doing nothing else. `serve`'s throughput is reported as a ratio to this.
//!
//! Usage: floor LISTEN CERT KEY RESPONSE_BYTES

use std::sync::Arc;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, size] = args.as_slice() else {
        panic!("usage: floor LISTEN CERT KEY RESPONSE_BYTES");
    };
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let response = Bytes::from(vec![b' '; size.parse().unwrap()]);
    let router = Router::new().route(
        "/mutate",
        post(move |_body: Bytes| {
            let response = response.clone();
            async move { ([("content-type", "application/json")], response) }
        }),
    );
    let listener = TcpListener::bind(listen).await.unwrap();
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.set_nodelay(true);
        let (acceptor, builder) = (acceptor.clone(), builder.clone());
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            }
        });
    }
}

//! `probe`: the cluster as a client outside sees it. Bootstraps over the Kafka protocol, then for
//! every broker in the metadata resolves its advertised host here, connects to each address,
//! and asks the broker who it is; names each broker such a client cannot use, and why.
//!
//! "Who it is": Kafka has no request that returns the answering broker's own id, but a broker
//! answers `DescribeConfigs` for the BROKER resource only with its own id, and otherwise says
//! "Unexpected broker id, expected N". So a load balancer that leads to the wrong broker is
//! caught, and the broker it leads to is named.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest, RequestHeader, ResponseHeader,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use serde::Serialize;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::inject::template::{Template, Values};

/// A validated `probe` invocation.
#[derive(Debug)]
pub struct Config {
    /// `host:port` of one broker's advertised listener.
    pub bootstrap: String,
    /// Each step (resolve, connect, handshake, one request) gets this long.
    pub timeout: Duration,
    /// What each broker should advertise, rendered per broker: see [`Expectation`].
    pub expect: Option<Expectation>,
    pub security: Security,
    /// Keep one connection per broker idle this long and use it again: catches load balancers
    /// that drop idle connections sooner than Kafka's clients expect.
    pub idle_check: Option<Duration>,
    pub json: bool,
}

/// How to talk to the brokers: TLS (server name from the advertised host) and SASL.
#[derive(Default)]
pub struct Security {
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<Sasl>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials. The password is never printed (`Debug` leaves it out).
pub struct Sasl {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The advertised address a broker should have, from the same template the webhook injects:
/// broker `N` is pod `<statefulset>-<N - node_id_offset>`.
#[derive(Debug)]
pub struct Expectation {
    pub listeners: Template,
    pub listener: String,
    pub statefulset: String,
    pub namespace: String,
    pub service: String,
    pub domain: Option<String>,
    pub node_id_offset: i64,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("{what}: timed out after {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Protocol(String),
}

/// One broker as the probe saw it.
#[derive(Debug, Serialize)]
pub struct BrokerReport {
    pub node_id: i32,
    pub advertised: String,
    pub addresses: Vec<AddressReport>,
    /// Faults, each a sentence naming the broker; empty when a client here can use it.
    pub faults: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AddressReport {
    pub address: String,
    /// Milliseconds to connect, when it connected.
    pub connect_ms: Option<f64>,
    /// The broker id that answered there, when it said.
    pub answers_as: Option<i32>,
    pub error: Option<String>,
}

const CLIENT_ID: &str = "kafka-listener-injector-probe";

/// A broker connection's byte stream, plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// One connection to one broker, speaking just the requests the probe needs.
struct Connection {
    stream: Box<dyn Stream>,
    correlation: i32,
    timeout: Duration,
}

impl Connection {
    /// Connects to `address` (TLS with `host` as the server name when configured), says
    /// ApiVersions and authenticates; returns the connection and the TCP connect time.
    async fn open(
        address: SocketAddr,
        host: &str,
        security: &Security,
        timeout: Duration,
    ) -> Result<(Self, Duration), ProbeError> {
        let started = Instant::now();
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ProbeError::Timeout {
                what: format!("connecting to {address}"),
                after: timeout,
            })?
            .map_err(|e| ProbeError::Io(format!("connecting to {address}: {e}")))?;
        let connect_time = started.elapsed();
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = match &security.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| ProbeError::Io(format!("{host} as a TLS server name: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(tls.clone());
                let handshake = tokio::time::timeout(timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| ProbeError::Timeout {
                        what: format!("the TLS handshake with {address}"),
                        after: timeout,
                    })?
                    .map_err(|e| ProbeError::Io(format!("TLS with {address} as {host}: {e}")))?;
                Box::new(handshake)
            }
        };
        let mut connection = Self {
            stream,
            correlation: 0,
            timeout,
        };
        connection.api_versions().await?;
        if let Some(sasl) = &security.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok((connection, connect_time))
    }

    /// SASL handshake and authentication (PLAIN or SCRAM).
    async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), ProbeError> {
        let refused =
            |what: String| ProbeError::Protocol(format!("SASL {}: {what}", sasl.mechanism.name()));
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
        let response = self.call(&handshake, 1).await?;
        if response.error_code != 0 {
            let offered: Vec<String> = response.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(refused(format!(
                "not enabled here (the broker offers {})",
                offered.join(", ")
            )));
        }
        match sasl.mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", sasl.username, sasl.password);
                self.sasl_step(token.into_bytes()).await.map_err(refused)?;
            }
            Mechanism::ScramSha256 | Mechanism::ScramSha512 => {
                let hash = if sasl.mechanism == Mechanism::ScramSha256 {
                    crate::scram::Hash::Sha256
                } else {
                    crate::scram::Hash::Sha512
                };
                let mut nonce = [0u8; 18];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                    .map_err(|_| refused("no randomness for a nonce".into()))?;
                use base64::Engine;
                let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
                let mut client =
                    crate::scram::Client::new(hash, &sasl.username, &sasl.password, &nonce);
                let server_first = self
                    .sasl_step(client.client_first().into_bytes())
                    .await
                    .map_err(refused)?;
                let server_first = String::from_utf8_lossy(&server_first).into_owned();
                let last = client
                    .client_final(&server_first)
                    .map_err(|e| refused(e.to_string()))?;
                let server_final = self.sasl_step(last.into_bytes()).await.map_err(refused)?;
                client
                    .verify(&String::from_utf8_lossy(&server_final))
                    .map_err(|e| refused(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip; the server's bytes, or why it refused.
    async fn sasl_step(&mut self, token: Vec<u8>) -> Result<Vec<u8>, String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
        let response = self.call(&request, 2).await.map_err(|e| e.to_string())?;
        if response.error_code != 0 {
            return Err(format!(
                "authentication failed: {}",
                response
                    .error_message
                    .as_deref()
                    .unwrap_or("no reason given")
            ));
        }
        Ok(response.auth_bytes.to_vec())
    }

    /// Sends `request` at `version` and reads its response.
    async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ProbeError> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut body = BytesMut::new();
        let protocol = |e: anyhow::Error| ProbeError::Protocol(format!("encoding: {e}"));
        encode_request_header_into_buffer(&mut body, &header).map_err(protocol)?;
        request.encode(&mut body, version).map_err(protocol)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let length = self.stream.read_i32().await?;
            if !(4..=64 * 1024 * 1024).contains(&length) {
                return Err(std::io::Error::other(format!(
                    "a response of {length} bytes"
                )));
            }
            let mut response = vec![0u8; length as usize];
            self.stream.read_exact(&mut response).await?;
            Ok(response)
        };
        let response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ProbeError::Timeout {
                what: format!("request {} (api key {})", self.correlation, R::KEY),
                after: self.timeout,
            })?
            .map_err(|e| ProbeError::Io(e.to_string()))?;
        let mut buf = bytes::Bytes::from(response);
        let header_version = <R::Response as HeaderVersion>::header_version(version);
        let header = ResponseHeader::decode(&mut buf, header_version)
            .map_err(|e| ProbeError::Protocol(format!("response header: {e}")))?;
        if header.correlation_id != self.correlation {
            return Err(ProbeError::Protocol("a response to another request".into()));
        }
        let decoded = R::Response::decode(&mut buf, version)
            .map_err(|e| ProbeError::Protocol(format!("response: {e}")))?;
        let _ = buf.remaining();
        Ok(decoded)
    }

    async fn api_versions(&mut self) -> Result<(), ProbeError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = self.call(&request, 3).await?;
        if response.error_code != 0 {
            return Err(ProbeError::Protocol(format!(
                "ApiVersions error code {}",
                response.error_code
            )));
        }
        Ok(())
    }

    /// The brokers in the metadata: `(node id, host, port)`.
    async fn brokers(&mut self) -> Result<Vec<(i32, String, i32)>, ProbeError> {
        let request = MetadataRequest::default().with_topics(Some(vec![]));
        let response = self.call(&request, 12).await?;
        let mut brokers: Vec<(i32, String, i32)> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        brokers.sort();
        Ok(brokers)
    }

    /// The id of the broker at the other end, when it says.
    async fn identity(&mut self, claimed: i32) -> Result<Option<i32>, ProbeError> {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(4) // BROKER
            .with_resource_name(StrBytes::from_string(claimed.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("broker.id")]));
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = self.call(&request, 4).await?;
        let Some(result) = response.results.first() else {
            return Ok(None);
        };
        if result.error_code == 0 {
            return Ok(Some(claimed));
        }
        // "Unexpected broker id, expected 100 or empty string, but received 102"
        let message = result.error_message.as_deref().unwrap_or("");
        Ok(message
            .rsplit("expected ")
            .next()
            .filter(|_| message.contains(", expected "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok()))
    }
}

async fn resolve(host: &str, port: i32, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let lookup = tokio::net::lookup_host((host, port as u16));
    match tokio::time::timeout(timeout, lookup).await {
        Err(_) => Err(format!("resolving it timed out after {timeout:?}")),
        Ok(Err(_)) => Err("no DNS record here".into()),
        Ok(Ok(addresses)) => {
            let mut addresses: Vec<SocketAddr> = addresses.collect();
            addresses.sort();
            addresses.dedup();
            Ok(addresses)
        }
    }
}

/// Probes the cluster; one report per broker in the metadata.
pub async fn probe(config: &Config) -> Result<Vec<BrokerReport>, ProbeError> {
    let (host, port) = config
        .bootstrap
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<i32>().ok()?,
            ))
        })
        .ok_or_else(|| {
            ProbeError::Io(format!("--bootstrap {}: not host:port", config.bootstrap))
        })?;
    let addresses = resolve(host, port, config.timeout)
        .await
        .map_err(|why| ProbeError::Io(format!("--bootstrap {}: {why}", config.bootstrap)))?;
    let mut last_error = ProbeError::Io(format!("--bootstrap {}: no address", config.bootstrap));
    let mut brokers = None;
    for address in addresses {
        let attempt = async {
            let (mut connection, _) =
                Connection::open(address, host, &config.security, config.timeout).await?;
            connection.brokers().await
        };
        match attempt.await {
            Ok(found) => {
                brokers = Some(found);
                break;
            }
            Err(error) => last_error = error,
        }
    }
    let brokers = brokers.ok_or(last_error)?;
    let mut reports = Vec::with_capacity(brokers.len());
    let mut held = Vec::new();
    for (node_id, host, port) in brokers {
        let (report, connection) = check_broker(config, node_id, &host, port).await;
        if let Some(connection) = connection {
            held.push((reports.len(), connection));
        }
        reports.push(report);
    }
    if let Some(idle) = config.idle_check {
        // One wait for all brokers: every held connection has been idle at least `idle`.
        tokio::time::sleep(idle).await;
        for (index, mut connection) in held {
            if let Err(error) = connection.api_versions().await {
                let report = &mut reports[index];
                report.faults.push(format!(
                    "broker {} advertises {}: a connection idle for {idle:?} was dropped ({error}); a load balancer's idle timeout shorter than the client's connections.max.idle.ms (9 min by default) breaks clients",
                    report.node_id, report.advertised
                ));
            }
        }
    }
    Ok(reports)
}

/// Checks one broker; returns its report and, for `--idle-check`, a connection to it.
async fn check_broker(
    config: &Config,
    node_id: i32,
    host: &str,
    port: i32,
) -> (BrokerReport, Option<Connection>) {
    let advertised = format!("{host}:{port}");
    let mut report = BrokerReport {
        node_id,
        advertised: advertised.clone(),
        addresses: Vec::new(),
        faults: Vec::new(),
    };
    let fault = |why: String| format!("broker {node_id} advertises {advertised}: {why}");
    if let Some(expected) = config
        .expect
        .as_ref()
        .and_then(|e| expected_address(e, node_id))
    {
        if expected != advertised {
            report
                .faults
                .push(fault(format!("expected {expected} from the template (a pod created before the webhook, or a start script that overrides it)")));
        }
    }
    if host.parse::<std::net::IpAddr>().is_ok() {
        report.faults.push(fault(
            "an IP address, not a name: a pod IP reaches no client outside the cluster, and a load balancer's address changes with its Service".into(),
        ));
    }
    let addresses = match resolve(host, port, config.timeout).await {
        Ok(addresses) => addresses,
        Err(why) => {
            report.faults.push(fault(why));
            return (report, None);
        }
    };
    let mut kept = None;
    for address in addresses {
        let mut entry = AddressReport {
            address: address.ip().to_string(),
            connect_ms: None,
            answers_as: None,
            error: None,
        };
        let checked = async {
            let (mut connection, took) =
                Connection::open(address, host, &config.security, config.timeout).await?;
            entry.connect_ms = Some(took.as_secs_f64() * 1000.0);
            let identity = connection.identity(node_id).await?;
            Ok::<_, ProbeError>((identity, connection))
        };
        match checked.await.map(|(identity, connection)| {
            kept.get_or_insert(connection);
            identity
        }) {
            Ok(Some(id)) => {
                entry.answers_as = Some(id);
                if id != node_id {
                    report.faults.push(fault(format!(
                        "resolves to {}, which answers as broker {id}",
                        address.ip()
                    )));
                }
            }
            Ok(None) => {}
            Err(error) => {
                report.faults.push(fault(error.to_string()));
                entry.error = Some(error.to_string());
            }
        }
        report.addresses.push(entry);
    }
    (report, kept)
}

/// The `host:port` broker `node_id` should advertise on the expected listener.
fn expected_address(expectation: &Expectation, node_id: i32) -> Option<String> {
    let ordinal = i64::from(node_id) - expectation.node_id_offset;
    let pod = format!("{}-{ordinal}", expectation.statefulset);
    let value = expectation
        .listeners
        .render(&Values {
            pod: Some(&pod),
            ordinal: Some(ordinal),
            statefulset: Some(&expectation.statefulset),
            namespace: Some(&expectation.namespace),
            service: Some(&expectation.service),
            domain: expectation.domain.as_deref(),
        })
        .ok()?;
    crate::inject::listeners::parse_listeners(&value)
        .ok()?
        .into_iter()
        .find(|l| l.name.eq_ignore_ascii_case(&expectation.listener))
        .map(|l| format!("{}:{}", l.host, l.port))
}

/// Prints the reports; `true` when every broker is usable from here.
pub fn write_reports(
    reports: &[BrokerReport],
    json: bool,
    out: &mut impl std::io::Write,
) -> std::io::Result<bool> {
    let healthy = reports.iter().all(|r| r.faults.is_empty());
    if json {
        serde_json::to_writer_pretty(
            &mut *out,
            &serde_json::json!({"healthy": healthy, "brokers": reports}),
        )?;
        writeln!(out)?;
        return Ok(healthy);
    }
    for report in reports {
        let addresses: Vec<String> = report
            .addresses
            .iter()
            .map(|a| match (a.connect_ms, a.answers_as) {
                (Some(ms), Some(id)) => {
                    format!("{} (connect {ms:.1} ms, answers as broker {id})", a.address)
                }
                (Some(ms), None) => format!("{} (connect {ms:.1} ms)", a.address),
                _ => format!("{} (unreachable)", a.address),
            })
            .collect();
        let verdict = if report.faults.is_empty() {
            "ok"
        } else {
            "FAULT"
        };
        writeln!(
            out,
            "broker {} {} -> {}: {verdict}",
            report.node_id,
            report.advertised,
            if addresses.is_empty() {
                "-".to_owned()
            } else {
                addresses.join(", ")
            }
        )?;
        for fault in &report.faults {
            writeln!(out, "  {fault}")?;
        }
    }
    let faulty = reports.iter().filter(|r| !r.faults.is_empty()).count();
    writeln!(
        out,
        "{} brokers, {faulty} a client here cannot use",
        reports.len()
    )?;
    Ok(healthy)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
    use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
    use kafka_protocol::messages::{
        ApiKey, ApiVersionsResponse, BrokerId, DescribeConfigsResponse, MetadataResponse,
        SaslAuthenticateResponse, SaslHandshakeResponse,
    };
    use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
    use tokio::net::TcpListener;

    use super::*;

    type Advertised = Arc<Mutex<Vec<(i32, String, i32)>>>;

    /// A fake broker on loopback, built from the crate's server-side types: it answers
    /// ApiVersions, Metadata with what `advertised` holds when asked, and DescribeConfigs as a
    /// broker with `own_id` does (its own id succeeds, any other gets Kafka's "Unexpected broker
    /// id" error). With `silent`, it accepts and never answers. Returns its port.
    async fn fake_broker(own_id: i32, advertised: Advertised, silent: bool) -> i32 {
        fake(Fake {
            own_id,
            advertised,
            silent,
            ..Fake::default()
        })
        .await
    }

    /// What a fake broker does besides answering.
    #[derive(Default, Clone)]
    struct Fake {
        own_id: i32,
        advertised: Advertised,
        silent: bool,
        tls: Option<tokio_rustls::TlsAcceptor>,
        /// SASL PLAIN credentials it accepts.
        plain: Option<(String, String)>,
        /// Closes a connection idle this long, as some load balancers do.
        idle_close: Option<Duration>,
    }

    async fn fake(fake: Fake) -> i32 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let fake = fake.clone();
                tokio::spawn(async move {
                    let Fake {
                        own_id,
                        advertised,
                        silent,
                        tls,
                        plain,
                        idle_close,
                    } = fake;
                    if silent {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let mut stream: Box<dyn Stream> = match tls {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => Box::new(tls),
                            Err(_) => return,
                        },
                        None => Box::new(tcp),
                    };
                    let idle = idle_close.unwrap_or(Duration::from_secs(3600));
                    while let Ok(Ok(length)) = tokio::time::timeout(idle, stream.read_i32()).await {
                        let mut frame = vec![0u8; length as usize];
                        stream.read_exact(&mut frame).await.unwrap();
                        let mut buf = bytes::Bytes::from(frame);
                        let header = decode_request_header_from_buffer(&mut buf).unwrap();
                        let version = header.request_api_version;
                        let mut body = BytesMut::new();
                        let header_version = match ApiKey::try_from(header.request_api_key).unwrap()
                        {
                            ApiKey::ApiVersions => {
                                ApiVersionsResponse::default()
                                    .encode(&mut body, version)
                                    .unwrap();
                                ApiVersionsResponse::header_version(version)
                            }
                            ApiKey::Metadata => {
                                let brokers = advertised
                                    .lock()
                                    .unwrap()
                                    .iter()
                                    .map(|(id, host, port)| {
                                        MetadataResponseBroker::default()
                                            .with_node_id(BrokerId(*id))
                                            .with_host(StrBytes::from_string(host.clone()))
                                            .with_port(*port)
                                    })
                                    .collect();
                                MetadataResponse::default()
                                    .with_brokers(brokers)
                                    .encode(&mut body, version)
                                    .unwrap();
                                MetadataResponse::header_version(version)
                            }
                            ApiKey::DescribeConfigs => {
                                let request =
                                    DescribeConfigsRequest::decode(&mut buf, version).unwrap();
                                let asked = request.resources[0].resource_name.to_string();
                                let result = if asked == own_id.to_string() {
                                    DescribeConfigsResult::default()
                                } else {
                                    DescribeConfigsResult::default().with_error_code(42).with_error_message(
                                        Some(StrBytes::from_string(format!(
                                            "Unexpected broker id, expected {own_id} or empty string, but received {asked}"
                                        ))),
                                    )
                                };
                                DescribeConfigsResponse::default()
                                    .with_results(vec![result])
                                    .encode(&mut body, version)
                                    .unwrap();
                                DescribeConfigsResponse::header_version(version)
                            }
                            ApiKey::SaslHandshake => {
                                SaslHandshakeResponse::default()
                                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")])
                                    .with_error_code(if plain.is_some() { 0 } else { 33 })
                                    .encode(&mut body, version)
                                    .unwrap();
                                SaslHandshakeResponse::header_version(version)
                            }
                            ApiKey::SaslAuthenticate => {
                                let request =
                                    SaslAuthenticateRequest::decode(&mut buf, version).unwrap();
                                let (user, pass) = plain.clone().unwrap();
                                let ok = request.auth_bytes.as_ref()
                                    == format!("\0{user}\0{pass}").as_bytes();
                                let mut response = SaslAuthenticateResponse::default();
                                if !ok {
                                    response =
                                        response
                                            .with_error_code(58)
                                            .with_error_message(Some(StrBytes::from_static_str(
                                            "Authentication failed: Invalid username or password",
                                        )));
                                }
                                response.encode(&mut body, version).unwrap();
                                SaslAuthenticateResponse::header_version(version)
                            }
                            other => panic!("unexpected request {other:?}"),
                        };
                        let mut head = BytesMut::new();
                        ResponseHeader::default()
                            .with_correlation_id(header.correlation_id)
                            .encode(&mut head, header_version)
                            .unwrap();
                        let mut frame = BytesMut::new();
                        frame.put_i32((head.len() + body.len()) as i32);
                        frame.extend_from_slice(&head);
                        frame.extend_from_slice(&body);
                        stream.write_all(&frame).await.unwrap();
                    }
                });
            }
        });
        i32::from(port)
    }

    /// Two fake brokers 0 and 1; `advertise` decides what the metadata says, given their ports.
    async fn cluster(advertise: impl Fn(i32, i32) -> Vec<(i32, String, i32)>) -> Config {
        let advertised: Advertised = Arc::default();
        let zero = fake_broker(0, advertised.clone(), false).await;
        let one = fake_broker(1, advertised.clone(), false).await;
        *advertised.lock().unwrap() = advertise(zero, one);
        Config {
            bootstrap: format!("localhost:{zero}"),
            timeout: Duration::from_millis(500),
            expect: None,
            security: Security::default(),
            idle_check: None,
            json: false,
        }
    }

    async fn probed(config: &Config) -> (bool, String) {
        let reports = probe(config).await.unwrap();
        let mut out = Vec::new();
        let healthy = write_reports(&reports, false, &mut out).unwrap();
        (healthy, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn every_broker_reachable_as_itself_is_healthy() {
        let config =
            cluster(|zero, one| vec![(0, "localhost".into(), zero), (1, "localhost".into(), one)])
                .await;
        let (healthy, out) = probed(&config).await;
        assert!(healthy, "{out}");
        assert!(out.contains("(connect "), "{out}");
        assert!(out.contains("answers as broker 1): ok"), "{out}");
        assert!(
            out.ends_with("2 brokers, 0 a client here cannot use\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn an_address_that_leads_to_another_broker_is_named() {
        // Broker 1 advertises broker 0's address: a load balancer pointing at the wrong pod.
        let config =
            cluster(|zero, _| vec![(0, "localhost".into(), zero), (1, "localhost".into(), zero)])
                .await;
        let (healthy, out) = probed(&config).await;
        assert!(!healthy, "{out}");
        assert!(
            out.contains(&format!(
                "broker 1 advertises {}: resolves to 127.0.0.1, which answers as broker 0",
                config.bootstrap
            )),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_and_an_ip_address_are_named() {
        let config = cluster(|zero, _| {
            vec![
                (0, "127.0.0.1".into(), zero),
                (1, "kafka-1.nowhere.invalid".into(), 9094),
            ]
        })
        .await;
        let (healthy, out) = probed(&config).await;
        assert!(!healthy);
        assert!(out.contains("broker 0 advertises 127.0.0.1:"), "{out}");
        assert!(out.contains(": an IP address, not a name"), "{out}");
        assert!(
            out.contains("broker 1 advertises kafka-1.nowhere.invalid:9094: "),
            "{out}"
        );
        assert!(
            out.contains("no DNS record here") || out.contains("resolving it timed out"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_broker_that_never_answers_does_not_hang_the_probe() {
        let advertised: Advertised = Arc::default();
        let zero = fake_broker(0, advertised.clone(), false).await;
        let silent = fake_broker(1, advertised.clone(), true).await;
        *advertised.lock().unwrap() = vec![
            (0, "localhost".into(), zero),
            (1, "localhost".into(), silent),
        ];
        let config = Config {
            bootstrap: format!("localhost:{zero}"),
            timeout: Duration::from_millis(300),
            expect: None,
            security: Security::default(),
            idle_check: None,
            json: false,
        };
        let (healthy, out) = probed(&config).await;
        assert!(!healthy);
        assert!(out.contains("broker 1 advertises localhost:"), "{out}");
        assert!(out.contains("timed out after 300ms"), "{out}");
    }

    #[tokio::test]
    async fn an_address_other_than_the_template_renders_is_named() {
        let mut config = cluster(|zero, one| {
            vec![
                (100, "localhost".into(), zero),
                (101, "localhost".into(), one),
            ]
        })
        .await;
        config.expect = Some(Expectation {
            listeners: Template::parse("EXTERNAL://{pod}.{domain}:9094").unwrap(),
            listener: "EXTERNAL".into(),
            statefulset: "kafka".into(),
            namespace: "kafka".into(),
            service: "kafka-headless".into(),
            domain: Some("kafka.example.com".into()),
            node_id_offset: 100,
        });
        let (_, out) = probed(&config).await;
        assert!(
            out.contains("broker 101 advertises localhost:")
                && out.contains("expected kafka-1.kafka.example.com:9094 from the template"),
            "{out}"
        );
    }

    fn single(config_port: i32) -> Config {
        Config {
            bootstrap: format!("localhost:{config_port}"),
            timeout: Duration::from_millis(500),
            expect: None,
            security: Security::default(),
            idle_check: None,
            json: false,
        }
    }

    #[tokio::test]
    async fn sasl_plain_authenticates_and_a_wrong_password_is_named() {
        let advertised: Advertised = Arc::default();
        let port = fake(Fake {
            own_id: 0,
            advertised: advertised.clone(),
            plain: Some(("alice".into(), "s3cret".into())),
            ..Fake::default()
        })
        .await;
        *advertised.lock().unwrap() = vec![(0, "localhost".into(), port)];
        let mut config = single(port);
        config.security.sasl = Some(Sasl {
            mechanism: Mechanism::Plain,
            username: "alice".into(),
            password: "s3cret".into(),
        });
        let (healthy, out) = probed(&config).await;
        assert!(healthy, "{out}");
        config.security.sasl.as_mut().unwrap().password = "wrong".into();
        let error = probe(&config).await.unwrap_err().to_string();
        assert_eq!(
            error,
            "SASL PLAIN: authentication failed: Authentication failed: Invalid username or password"
        );
        assert!(
            !format!("{:?}", config.security).contains("wrong"),
            "the password is never printed"
        );
    }

    #[tokio::test]
    async fn tls_checks_the_certificate_against_the_advertised_name() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let issued = crate::certs::issue(&crate::certs::Config {
            service: "kafka".into(),
            namespace: "test".into(),
            dns: vec!["localhost".into()],
            ip: vec![],
            out: dir.path().to_owned(),
            days: 1,
            ca_bundle_patch: None,
        })
        .unwrap();
        use rustls::pki_types::pem::PemObject;
        let chain = rustls::pki_types::CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let advertised: Advertised = Arc::default();
        let port = fake(Fake {
            own_id: 5,
            advertised: advertised.clone(),
            tls: Some(tokio_rustls::TlsAcceptor::from(Arc::new(server))),
            ..Fake::default()
        })
        .await;
        *advertised.lock().unwrap() =
            vec![(5, "localhost".into(), port), (6, "127.0.0.1".into(), port)];
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(issued.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = single(port);
        config.security.tls = Some(Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
        let (healthy, out) = probed(&config).await;
        assert!(!healthy);
        assert!(
            out.contains("broker 5 localhost:") && out.contains("answers as broker 5): ok"),
            "{out}"
        );
        // The certificate names localhost, not 127.0.0.1: a client connecting by the advertised
        // IP would fail verification.
        assert!(out.contains("broker 6 advertises 127.0.0.1:"), "{out}");
        assert!(out.contains("TLS with 127.0.0.1:"), "{out}");
    }

    #[tokio::test]
    async fn idle_check_names_a_broker_whose_path_drops_idle_connections() {
        let advertised: Advertised = Arc::default();
        let steady = fake_broker(0, advertised.clone(), false).await;
        let dropping = fake(Fake {
            own_id: 1,
            advertised: advertised.clone(),
            idle_close: Some(Duration::from_millis(200)),
            ..Fake::default()
        })
        .await;
        *advertised.lock().unwrap() = vec![
            (0, "localhost".into(), steady),
            (1, "localhost".into(), dropping),
        ];
        let mut config = single(steady);
        config.idle_check = Some(Duration::from_millis(600));
        let (healthy, out) = probed(&config).await;
        assert!(!healthy);
        assert!(
            out.contains("broker 1 advertises localhost:")
                && out.contains("a connection idle for 600ms was dropped"),
            "{out}"
        );
        assert!(!out.contains("broker 0 advertises"), "{out}");
    }
}

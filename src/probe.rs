//! `probe`: the cluster as a client outside sees it. Bootstraps over the Kafka protocol, then for
//! every broker in the metadata resolves its advertised host here, connects to each address,
//! and asks the broker who it is; names each broker such a client cannot use, and why.
//!
//! "Who it is": Kafka has no request that returns the answering broker's own id, but a broker
//! answers `DescribeConfigs` for the BROKER resource only with its own id, and otherwise says
//! "Unexpected broker id, expected N". So a load balancer that leads to the wrong broker is
//! caught, and the broker it leads to is named.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest, RequestHeader, ResponseHeader,
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
    /// Each step (resolve, connect, one request) gets this long.
    pub timeout: Duration,
    /// What each broker should advertise, rendered per broker: see [`Expectation`].
    pub expect: Option<Expectation>,
    pub json: bool,
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

/// One connection to one broker, speaking just the requests the probe needs.
struct Connection {
    stream: TcpStream,
    correlation: i32,
    timeout: Duration,
}

impl Connection {
    async fn open(address: SocketAddr, timeout: Duration) -> Result<(Self, Duration), ProbeError> {
        let started = Instant::now();
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ProbeError::Timeout {
                what: format!("connecting to {address}"),
                after: timeout,
            })?
            .map_err(|e| ProbeError::Io(format!("connecting to {address}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok((
            Self {
                stream,
                correlation: 0,
                timeout,
            },
            started.elapsed(),
        ))
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
            let (mut connection, _) = Connection::open(address, config.timeout).await?;
            connection.api_versions().await?;
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
    for (node_id, host, port) in brokers {
        reports.push(check_broker(config, node_id, &host, port).await);
    }
    Ok(reports)
}

async fn check_broker(config: &Config, node_id: i32, host: &str, port: i32) -> BrokerReport {
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
            return report;
        }
    };
    for address in addresses {
        let mut entry = AddressReport {
            address: address.ip().to_string(),
            connect_ms: None,
            answers_as: None,
            error: None,
        };
        let checked = async {
            let (mut connection, took) = Connection::open(address, config.timeout).await?;
            entry.connect_ms = Some(took.as_secs_f64() * 1000.0);
            connection.api_versions().await?;
            connection.identity(node_id).await
        };
        match checked.await {
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
                report
                    .faults
                    .push(fault(format!("{} ({}): {error}", address.ip(), address)));
                entry.error = Some(error.to_string());
            }
        }
        report.addresses.push(entry);
    }
    report
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let advertised = advertised.clone();
                tokio::spawn(async move {
                    if silent {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    while let Ok(length) = stream.read_i32().await {
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
}

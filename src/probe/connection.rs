//! One connection to one broker over the Kafka protocol, plain or TLS, speaking just the requests
//! the probe needs (ApiVersions, Metadata, DescribeConfigs, SASL).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, DescribeConfigsRequest, MetadataRequest, RequestHeader,
    ResponseHeader, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::{
    encode_request_header_into_buffer, Decodable, HeaderVersion, Request, StrBytes,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Mechanism, ProbeError, Sasl, Security};

const CLIENT_ID: &str = "kafka-listener-injector-probe";

/// The versions of each request the probe speaks; the highest the broker also speaks is used.
/// Metadata from v1 (where an empty topic list means none, not all).
pub(super) const METADATA: RangeInclusive<i16> = 1..=12;
pub(super) const DESCRIBE_CONFIGS: RangeInclusive<i16> = 1..=4;
const SASL_HANDSHAKE: RangeInclusive<i16> = 1..=1;
const SASL_AUTHENTICATE: RangeInclusive<i16> = 0..=2;
/// ApiVersions v3 (Kafka 2.4+); a broker that does not speak it answers UNSUPPORTED_VERSION and
/// is asked again at v0.
const API_VERSIONS: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

/// A broker connection's byte stream, plain or TLS.
pub(super) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Stream for T {}

/// One connection to one broker, speaking just the requests the probe needs.
pub(crate) struct Connection {
    stream: Box<dyn Stream>,
    correlation: i32,
    timeout: Duration,
    /// The versions the broker speaks, per api key, from its ApiVersions answer.
    offered: BTreeMap<i16, RangeInclusive<i16>>,
}

/// A broker as the metadata names it.
#[derive(Debug)]
pub(super) struct MetadataBroker {
    pub(super) node_id: i32,
    pub(super) host: String,
    pub(super) port: i32,
    /// `broker.rack` (Metadata v1+).
    pub(super) rack: Option<String>,
}

impl Connection {
    /// Connects to `address` (TLS with `host` as the server name when configured), says
    /// ApiVersions and authenticates; returns the connection and the TCP connect time.
    pub(super) async fn open(
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
            offered: BTreeMap::new(),
        };
        connection.api_versions().await?;
        if let Some(sasl) = &security.sasl {
            connection.authenticate(sasl).await?;
        }
        Ok((connection, connect_time))
    }

    /// SASL handshake and authentication (PLAIN or SCRAM).
    pub(super) async fn authenticate(&mut self, sasl: &Sasl) -> Result<(), ProbeError> {
        let refused =
            |what: String| ProbeError::Protocol(format!("SASL {}: {what}", sasl.mechanism.name()));
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(sasl.mechanism.name()));
        let response = self.call_negotiated(&handshake, SASL_HANDSHAKE).await?;
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
                    crate::probe::scram::Hash::Sha256
                } else {
                    crate::probe::scram::Hash::Sha512
                };
                let mut nonce = [0u8; 18];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
                    .map_err(|_| refused("no randomness for a nonce".into()))?;
                use base64::Engine;
                let nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
                let mut client =
                    crate::probe::scram::Client::new(hash, &sasl.username, &sasl.password, &nonce);
                let server_first = self
                    .sasl_step(client.client_first().into_bytes())
                    .await
                    .map_err(refused)?;
                let server_first = String::from_utf8_lossy(&server_first).into_owned();
                // PBKDF2 is seconds of CPU at most (the iterations are bounded): off the
                // runtime's thread, so the probe's other timers keep running.
                let (client_back, last) = tokio::task::spawn_blocking(move || {
                    let last = client.client_final(&server_first);
                    (client, last)
                })
                .await
                .map_err(|e| refused(e.to_string()))?;
                client = client_back;
                let last = last.map_err(|e| refused(e.to_string()))?;
                let server_final = self.sasl_step(last.into_bytes()).await.map_err(refused)?;
                client
                    .verify(&String::from_utf8_lossy(&server_final))
                    .map_err(|e| refused(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip; the server's bytes, or why it refused.
    pub(super) async fn sasl_step(&mut self, token: Vec<u8>) -> Result<Vec<u8>, String> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(token));
        let response = self
            .call_negotiated(&request, SASL_AUTHENTICATE)
            .await
            .map_err(|e| e.to_string())?;
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

    /// Sends `request` at the highest version of `ours` that the broker speaks.
    pub(super) async fn call_negotiated<R: Request>(
        &mut self,
        request: &R,
        ours: RangeInclusive<i16>,
    ) -> Result<R::Response, ProbeError> {
        let version = negotiate(&self.offered, R::KEY, ours)?;
        self.call(request, version).await
    }

    /// Sends `request` at `version` and reads its response.
    pub(super) async fn call<R: Request>(
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

    pub(super) async fn api_versions(&mut self) -> Result<(), ProbeError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response = match self.call(&request, API_VERSIONS).await {
            Ok(response) if response.error_code != UNSUPPORTED_VERSION => response,
            // An older broker answers in the v0 format, which does not decode as v3.
            Ok(_) | Err(ProbeError::Protocol(_)) => self.call(&request, 0).await?,
            Err(error) => return Err(error),
        };
        if response.error_code != 0 {
            return Err(ProbeError::Protocol(format!(
                "ApiVersions error code {}",
                response.error_code
            )));
        }
        self.offered = response
            .api_keys
            .iter()
            .map(|api| (api.api_key, api.min_version..=api.max_version))
            .collect();
        Ok(())
    }

    /// The brokers in the metadata, by node id.
    pub(super) async fn brokers(&mut self) -> Result<Vec<MetadataBroker>, ProbeError> {
        let request = MetadataRequest::default().with_topics(Some(vec![]));
        let response = self.call_negotiated(&request, METADATA).await?;
        let mut brokers: Vec<MetadataBroker> = response
            .brokers
            .iter()
            .map(|b| MetadataBroker {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(ToString::to_string),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        Ok(brokers)
    }

    /// The id of the broker at the other end, when it says.
    /// Which broker answers here: the id it confirms, or why it could not be asked (an ACL that
    /// denies DescribeConfigs, an old broker), which leaves the route unverified.
    pub(super) async fn identity(
        &mut self,
        claimed: i32,
    ) -> Result<Result<i32, String>, ProbeError> {
        let resource = DescribeConfigsResource::default()
            .with_resource_type(4) // BROKER
            .with_resource_name(StrBytes::from_string(claimed.to_string()))
            .with_configuration_keys(Some(vec![StrBytes::from_static_str("broker.id")]));
        let request = DescribeConfigsRequest::default().with_resources(vec![resource]);
        let response = self.call_negotiated(&request, DESCRIBE_CONFIGS).await?;
        let Some(result) = response.results.first() else {
            return Ok(Err("the broker's DescribeConfigs answer is empty".into()));
        };
        if result.error_code == 0 {
            return Ok(Ok(claimed));
        }
        // "Unexpected broker id, expected 100 or empty string, but received 102"
        let message = result.error_message.as_deref().unwrap_or("");
        let other = message
            .rsplit("expected ")
            .next()
            .filter(|_| message.contains(", expected "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|id| id.parse().ok());
        Ok(match other {
            Some(id) => Ok(id),
            None => Err(match result.error_code {
                29 | 31 => "the probe's identity may not describe the broker's configuration (an ACL denies DescribeConfigs), so which broker answers here is unknown: grant DESCRIBE_CONFIGS on the cluster to check the route".to_owned(),
                code => format!("the broker did not say which broker it is (DescribeConfigs error {code}: {message})"),
            }),
        })
    }
}

/// The highest version of `ours` that the broker's `offered` ranges allow for `key`, or the
/// fault that names both ranges.
pub(super) fn negotiate(
    offered: &BTreeMap<i16, RangeInclusive<i16>>,
    key: i16,
    ours: RangeInclusive<i16>,
) -> Result<i16, ProbeError> {
    let name =
        ApiKey::try_from(key).map_or_else(|_| format!("api key {key}"), |k| format!("{k:?}"));
    let Some(theirs) = offered.get(&key) else {
        return Err(ProbeError::Protocol(format!(
            "the broker does not offer {name} (its ApiVersions answer lists {} APIs)",
            offered.len()
        )));
    };
    let version = (*ours.end()).min(*theirs.end());
    if version < *ours.start() || version < *theirs.start() {
        return Err(ProbeError::Protocol(format!(
            "the broker speaks {name} versions {} to {}, the probe {} to {}: no version in common",
            theirs.start(),
            theirs.end(),
            ours.start(),
            ours.end()
        )));
    }
    Ok(version)
}

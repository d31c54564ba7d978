use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeConfigsResponse, MetadataResponse,
    SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::messages::{DescribeConfigsRequest, ResponseHeader, SaslAuthenticateRequest};
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable};
use kafka_protocol::protocol::{Decodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::connection::Stream;
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
    /// Answers DescribeConfigs with Kafka's CLUSTER_AUTHORIZATION_FAILED, as an ACL does.
    deny_describe: bool,
    /// The Metadata versions it speaks, when not all that the crate knows.
    metadata_versions: Option<(i16, i16)>,
    /// Speaks ApiVersions only up to v2, as brokers before Kafka 2.4: a v3 request gets
    /// UNSUPPORTED_VERSION in the v0 format.
    old_api_versions: bool,
}

async fn fake(fake: Fake) -> i32 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(fake.clone().serve(tcp));
        }
    });
    i32::from(port)
}

impl Fake {
    /// Answers one connection's requests until the client goes or it idles out.
    async fn serve(self, tcp: tokio::net::TcpStream) {
        if self.silent {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return;
        }
        let mut stream: Box<dyn Stream> = match self.tls.clone() {
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(tls) => Box::new(tls),
                Err(_) => return,
            },
            None => Box::new(tcp),
        };
        let idle = self.idle_close.unwrap_or(Duration::from_secs(3600));
        while let Ok(Ok(length)) = tokio::time::timeout(idle, stream.read_i32()).await {
            let mut frame = vec![0u8; length as usize];
            stream.read_exact(&mut frame).await.unwrap();
            let mut buf = bytes::Bytes::from(frame);
            let header = decode_request_header_from_buffer(&mut buf).unwrap();
            let key = ApiKey::try_from(header.request_api_key).unwrap();
            let mut body = BytesMut::new();
            let header_version = self.answer(key, header.request_api_version, &mut buf, &mut body);
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
    }

    /// Encodes the answer to one request into `body`; returns the response header version.
    fn answer(
        &self,
        key: ApiKey,
        version: i16,
        buf: &mut bytes::Bytes,
        body: &mut BytesMut,
    ) -> i16 {
        match key {
            ApiKey::ApiVersions => {
                let (version, error) = if self.old_api_versions && version >= 3 {
                    (0, 35)
                } else {
                    (version, 0)
                };
                let offered = [
                    (ApiKey::ApiVersions, 0, 4),
                    (ApiKey::Metadata, 0, 13),
                    (ApiKey::DescribeConfigs, 0, 4),
                    (ApiKey::SaslHandshake, 0, 1),
                    (ApiKey::SaslAuthenticate, 0, 2),
                ]
                .into_iter()
                .map(|(key, min, max)| {
                    let (min, max) = match (key, self.metadata_versions) {
                        (ApiKey::Metadata, Some(range)) => range,
                        _ => (min, max),
                    };
                    ApiVersion::default()
                        .with_api_key(key as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect();
                ApiVersionsResponse::default()
                    .with_error_code(error)
                    .with_api_keys(offered)
                    .encode(body, version)
                    .unwrap();
                ApiVersionsResponse::header_version(version)
            }
            ApiKey::Metadata => {
                let brokers = self
                    .advertised
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
                    .encode(body, version)
                    .unwrap();
                MetadataResponse::header_version(version)
            }
            ApiKey::DescribeConfigs => {
                let request = DescribeConfigsRequest::decode(buf, version).unwrap();
                let asked = request.resources[0].resource_name.to_string();
                let result = if self.deny_describe {
                    DescribeConfigsResult::default()
                        .with_error_code(31)
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Cluster authorization failed.",
                        )))
                } else if asked == self.own_id.to_string() {
                    DescribeConfigsResult::default()
                } else {
                    DescribeConfigsResult::default()
                        .with_error_code(42)
                        .with_error_message(Some(StrBytes::from_string(format!(
                        "Unexpected broker id, expected {} or empty string, but received {asked}",
                        self.own_id
                    ))))
                };
                DescribeConfigsResponse::default()
                    .with_results(vec![result])
                    .encode(body, version)
                    .unwrap();
                DescribeConfigsResponse::header_version(version)
            }
            ApiKey::SaslHandshake => {
                SaslHandshakeResponse::default()
                    .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")])
                    .with_error_code(if self.plain.is_some() { 0 } else { 33 })
                    .encode(body, version)
                    .unwrap();
                SaslHandshakeResponse::header_version(version)
            }
            ApiKey::SaslAuthenticate => {
                let request = SaslAuthenticateRequest::decode(buf, version).unwrap();
                let (user, pass) = self.plain.clone().unwrap();
                let ok = request.auth_bytes.as_ref() == format!("\0{user}\0{pass}").as_bytes();
                let mut response = SaslAuthenticateResponse::default();
                if !ok {
                    response = response.with_error_code(58).with_error_message(Some(
                        StrBytes::from_static_str(
                            "Authentication failed: Invalid username or password",
                        ),
                    ));
                }
                response.encode(body, version).unwrap();
                SaslAuthenticateResponse::header_version(version)
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
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
        cluster(|zero, _| vec![(0, "localhost".into(), zero), (1, "localhost".into(), zero)]).await;
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
    // Reached at its address and answering as itself: a note (a node's address behind a
    // NodePort is advertised so), not a fault.
    assert!(out.contains("broker 0 127.0.0.1:"), "{out}");
    assert!(
        out.contains(": ok\n  note: broker 0 advertises 127.0.0.1:")
            && out.contains(": an IP address, not a name: reached from here"),
        "{out}"
    );
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

#[tokio::test]
async fn a_broker_whose_acl_denies_the_identity_check_is_not_called_ok() {
    // Broker 1's address leads to broker 0, whose ACLs deny DescribeConfigs: the misrouted load
    // balancer must not pass as healthy.
    let advertised: Advertised = Arc::default();
    let zero = fake(Fake {
        own_id: 0,
        advertised: advertised.clone(),
        deny_describe: true,
        ..Fake::default()
    })
    .await;
    *advertised.lock().unwrap() =
        vec![(0, "localhost".into(), zero), (1, "localhost".into(), zero)];
    let (healthy, out) = probed(&single(zero)).await;
    assert!(!healthy, "{out}");
    assert!(out.contains("an ACL denies DescribeConfigs"), "{out}");
    assert!(out.contains("grant DESCRIBE_CONFIGS"), "{out}");
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
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
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
        out.contains("broker 5 localhost:")
            && out.contains("TLS certificate valid for localhost, answers as broker 5): ok"),
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

#[tokio::test]
async fn a_broker_without_a_version_in_common_is_named_and_an_old_one_is_asked_at_v0() {
    let advertised: Advertised = Arc::default();
    let port = fake(Fake {
        advertised: advertised.clone(),
        metadata_versions: Some((0, 0)),
        ..Fake::default()
    })
    .await;
    *advertised.lock().unwrap() = vec![(0, "localhost".into(), port)];
    let error = probe(&single(port)).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "the broker speaks Metadata versions 0 to 0, the probe 1 to 12: no version in common"
    );

    // Before Kafka 2.4 a broker answers ApiVersions v3 with UNSUPPORTED_VERSION (in the v0
    // format); asked again at v0, it says what it speaks, and the probe goes on.
    let port = fake(Fake {
        advertised: advertised.clone(),
        metadata_versions: Some((0, 8)),
        old_api_versions: true,
        ..Fake::default()
    })
    .await;
    *advertised.lock().unwrap() = vec![(0, "localhost".into(), port)];
    let (healthy, out) = probed(&single(port)).await;
    assert!(healthy, "{out}");
}

#[test]
fn the_highest_version_both_speak_is_used() {
    use super::connection::negotiate;
    let offered = [(3, 0..=13), (32, 1..=2)].into_iter().collect();
    assert_eq!(negotiate(&offered, 3, 1..=12).unwrap(), 12);
    assert_eq!(negotiate(&offered, 32, 1..=4).unwrap(), 2);
    assert_eq!(
        negotiate(&offered, 17, 1..=1).unwrap_err().to_string(),
        "the broker does not offer SaslHandshake (its ApiVersions answer lists 2 APIs)"
    );
}

#[tokio::test]
async fn a_bootstrap_list_is_tried_in_order_as_bootstrap_servers() {
    let advertised: Advertised = Arc::default();
    let port = fake_broker(0, advertised.clone(), false).await;
    *advertised.lock().unwrap() = vec![(0, "localhost".into(), port)];
    // The first server's name is gone (a domain changed under a running client): the next one
    // answers.
    let mut config = single(port);
    config.bootstrap = format!("kafka-0.old.invalid:{port}, localhost:{port}");
    let (healthy, out) = probed(&config).await;
    assert!(healthy, "{out}");
    config.bootstrap = "kafka-0.old.invalid:9094".into();
    let error = probe(&config).await.unwrap_err().to_string();
    assert!(
        error.starts_with("--bootstrap kafka-0.old.invalid:9094: "),
        "{error}"
    );
}

#[test]
fn a_start_up_value_in_the_template_stands_for_any_address_or_name_there() {
    use super::advertises;
    assert!(advertises(
        "kafka-0.kafka.example.com:9094",
        "kafka-0.kafka.example.com",
        9094
    ));
    assert!(!advertises(
        "kafka-0.kafka.example.com:9094",
        "kafka-1.kafka.example.com",
        9094
    ));
    assert!(advertises("$(KLI_HOST_IP):31090", "10.0.3.7", 31090));
    assert!(advertises("$(KLI_HOST_IP):31090", "fd00::7", 31090));
    assert!(!advertises("$(KLI_HOST_IP):31090", "10.0.3.7", 31091));
    assert!(!advertises(
        "$(KLI_HOST_IP):31090",
        "node-a.example.com",
        31090
    ));
    assert!(advertises(
        "$(KLI_NODE_NAME):31090",
        "node-a.example.com",
        31090
    ));
    assert!(!advertises("$(BROKER_IP):9094", "10.0.3.7", 9094));
    assert!(!advertises("no-port", "no-port", 0));
}

fn racked(racks: &[(i32, Option<&str>)]) -> Vec<BrokerReport> {
    let mut reports: Vec<BrokerReport> = racks
        .iter()
        .map(|&(node_id, rack)| BrokerReport {
            node_id,
            advertised: format!("kafka-{node_id}.kafka.example.com:9094"),
            rack: rack.map(str::to_owned),
            addresses: Vec::new(),
            faults: Vec::new(),
            notes: Vec::new(),
        })
        .collect();
    super::note_racks(&mut reports);
    reports
}

#[test]
fn an_empty_rack_and_a_missing_one_beside_racks_are_noted() {
    let reports = racked(&[
        (100, Some("zone-a")),
        (101, Some("")),
        (102, None),
        (103, Some("zone-b")),
    ]);
    assert!(reports[0].notes.is_empty() && reports[3].notes.is_empty());
    assert_eq!(reports[1].notes.len(), 1);
    assert!(
        reports[1].notes[0].starts_with(
            "broker 101 registered an empty rack, which Kafka takes for a rack named \"\" (with --rack-env: its pod had no topology.kubernetes.io/zone label"
        ),
        "{:?}",
        reports[1].notes
    );
    assert_eq!(
        reports[2].notes,
        ["broker 102 has no rack while brokers 100, 103 have one: Kafka places replicas as if the brokers without a rack were one more rack (KRaft), or refuses to create topics (ZooKeeper), so replicas are not spread by zone"]
    );
    // Notes say what a reader should know; the brokers stay usable.
    assert!(reports.iter().all(|r| r.faults.is_empty()));
    let mut out = Vec::new();
    assert!(write_reports(&reports, false, &mut out).unwrap());
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("broker 101 (rack \"\") kafka-101"), "{out}");
    assert!(
        out.contains("broker 100 (rack \"zone-a\") kafka-100"),
        "{out}"
    );
}

#[test]
fn one_racked_broker_is_named_in_the_singular() {
    let reports = racked(&[(100, Some("zone-a")), (101, None)]);
    assert!(
        reports[1].notes[0].starts_with("broker 101 has no rack while broker 100 has one:"),
        "{:?}",
        reports[1].notes
    );
}

#[test]
fn no_racks_anywhere_or_racks_everywhere_say_nothing() {
    let none = racked(&[(100, None), (101, None)]);
    let all = racked(&[(100, Some("zone-a")), (101, Some("zone-b"))]);
    assert!(none.iter().chain(&all).all(|r| r.notes.is_empty()));
}

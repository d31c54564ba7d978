//! `probe`: the cluster as a client outside sees it. Bootstraps over the Kafka protocol, then for
//! every broker in the metadata resolves its advertised host here, connects to each address,
//! and asks the broker who it is; names each broker such a client cannot use, and why.
//!
//! "Who it is": Kafka has no request that returns the answering broker's own id, but a broker
//! answers `DescribeConfigs` for the BROKER resource only with its own id, and otherwise says
//! "Unexpected broker id, expected N". So a load balancer that leads to the wrong broker is
//! caught, and the broker it leads to is named.

mod cluster;
mod connection;
mod report;
pub mod scram;

pub use self::cluster::{at_risk, ClusterState, Partition};
pub(crate) use self::connection::Connection;

pub use self::report::write_reports;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use thiserror::Error;

use crate::inject::template::{Runtime, Template, Values};

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
    /// The rack the broker registered with (`broker.rack`), when it has one.
    pub rack: Option<String>,
    pub addresses: Vec<AddressReport>,
    /// Faults, each a sentence naming the broker; empty when a client here can use it.
    pub faults: Vec<String>,
    /// What the reader should know that does not stop a client here.
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct AddressReport {
    pub address: String,
    /// Milliseconds to connect, when it connected.
    pub connect_ms: Option<f64>,
    /// With `--tls`: the name the broker's certificate was verified for (the one sent as SNI, which
    /// a TLS gateway routes by), once the handshake succeeded.
    pub tls_name: Option<String>,
    /// The broker id that answered there, when it said.
    pub answers_as: Option<i32>,
    pub error: Option<String>,
}

async fn resolve(host: &str, port: i32, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let lookup = tokio::net::lookup_host((host, port as u16));
    match tokio::time::timeout(timeout, lookup).await {
        Err(_) => Err(format!("resolving it timed out after {timeout:?}")),
        // getaddrinfo's words: EAI_NONAME and EAI_NODATA are "no record", anything else (a
        // timeout, SERVFAIL, no resolver) is the resolver's fault, not the name's.
        Ok(Err(error)) => {
            let text = error.to_string();
            if text.contains("not known") || text.contains("No address associated") {
                Err("no DNS record here".into())
            } else {
                Err(format!("the resolver here failed: {text}"))
            }
        }
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
    let brokers = bootstrap(config).await?.brokers().await?;
    let mut reports = Vec::with_capacity(brokers.len());
    let mut held = Vec::new();
    for broker in brokers {
        let (mut report, connection) =
            check_broker(config, broker.node_id, &broker.host, broker.port).await;
        report.rack = broker.rack;
        if let Some(connection) = connection {
            held.push((reports.len(), connection));
        }
        reports.push(report);
    }
    note_racks(&mut reports);
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

/// Notes the brokers that break spreading replicas by zone: one registered with an empty rack
/// (`--rack-env` on a pod without the zone label), or one without a rack beside brokers with one.
/// Kafka's KRaft replica placement takes `""` for a rack name and the brokers without a rack for
/// one more rack; with ZooKeeper, mixed racks make topic creation fail.
fn note_racks(reports: &mut [BrokerReport]) {
    let racked: Vec<String> = reports
        .iter()
        .filter(|r| r.rack.as_deref().is_some_and(|rack| !rack.is_empty()))
        .map(|r| r.node_id.to_string())
        .collect();
    let with_racks = match racked.as_slice() {
        [one] => format!("broker {one} has one"),
        many => format!("brokers {} have one", many.join(", ")),
    };
    for report in reports.iter_mut() {
        match report.rack.as_deref() {
            Some("") => report.notes.push(format!(
                "broker {} registered an empty rack, which Kafka takes for a rack named \"\" (with --rack-env: its pod had no topology.kubernetes.io/zone label when it started, because the node has none, or the cluster does not copy it to pods: Kubernetes before 1.35, or PodTopologyLabelsAdmission off)",
                report.node_id
            )),
            None if !racked.is_empty() => report.notes.push(format!(
                "broker {} has no rack while {with_racks}: Kafka places replicas as if the brokers without a rack were one more rack (KRaft), or refuses to create topics (ZooKeeper), so replicas are not spread by zone",
                report.node_id
            )),
            _ => {}
        }
    }
}

/// A connection to the first address of `--bootstrap` that answers: a comma-separated list of
/// `host:port`, tried in order, as Kafka clients' `bootstrap.servers`.
pub(crate) async fn bootstrap(config: &Config) -> Result<Connection, ProbeError> {
    let mut last_error = ProbeError::Io("--bootstrap is empty".into());
    for server in config
        .bootstrap
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let Some((host, port)) = server.rsplit_once(':').and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<i32>().ok()?,
            ))
        }) else {
            return Err(ProbeError::Io(format!(
                "--bootstrap {server}: not host:port"
            )));
        };
        let addresses = match resolve(host, port, config.timeout).await {
            Ok(addresses) => addresses,
            Err(why) => {
                last_error = ProbeError::Io(format!("--bootstrap {server}: {why}"));
                continue;
            }
        };
        for address in addresses {
            match Connection::open(address, host, &config.security, config.timeout).await {
                Ok((connection, _)) => return Ok(connection),
                Err(error) => last_error = error,
            }
        }
    }
    Err(last_error)
}

/// Checks one broker; returns its report and, for `--idle-check`, a connection to it.
pub(crate) async fn check_broker(
    config: &Config,
    node_id: i32,
    host: &str,
    port: i32,
) -> (BrokerReport, Option<Connection>) {
    let advertised = format!("{host}:{port}");
    let mut report = BrokerReport {
        node_id,
        advertised: advertised.clone(),
        rack: None,
        addresses: Vec::new(),
        faults: Vec::new(),
        notes: Vec::new(),
    };
    let fault = |why: String| format!("broker {node_id} advertises {advertised}: {why}");
    if let Some(expected) = config
        .expect
        .as_ref()
        .and_then(|e| expected_address(e, node_id))
    {
        if !advertises(&expected, host, port) {
            report
                .faults
                .push(fault(format!("expected {expected} from the template (a pod created before the webhook, or a start script that overrides it)")));
        }
    }
    let addresses = match resolve(host, port, config.timeout).await {
        Ok(addresses) => addresses,
        Err(why) => {
            report.faults.push(fault(why));
            return (report, None);
        }
    };
    let kept = check_addresses(config, node_id, host, addresses, &mut report, &fault).await;
    // An address is right where the template puts the node's own ({hostIP} behind a NodePort,
    // rendered anew when the broker moves), and wrong anywhere else: say which when it fails.
    if host.parse::<std::net::IpAddr>().is_ok() {
        let reached = !report.addresses.is_empty()
            && report
                .addresses
                .iter()
                .all(|a| a.answers_as == Some(node_id));
        let why = if reached {
            "an IP address, not a name: reached from here, as a node's address behind a NodePort ({hostIP}) is"
        } else {
            "an IP address, not a name: a pod IP reaches no client outside the cluster, and a load balancer's address changes with its Service"
        };
        let entry = fault(why.into());
        if reached {
            report.notes.push(entry);
        } else {
            report.faults.push(entry);
        }
    }
    (report, kept)
}

/// Connects to each address of the broker and asks who answers; returns one connection.
async fn check_addresses(
    config: &Config,
    node_id: i32,
    host: &str,
    addresses: Vec<SocketAddr>,
    report: &mut BrokerReport,
    fault: &impl Fn(String) -> String,
) -> Option<Connection> {
    let mut kept = None;
    for address in addresses {
        let mut entry = AddressReport {
            address: address.ip().to_string(),
            connect_ms: None,
            tls_name: None,
            answers_as: None,
            error: None,
        };
        let checked = async {
            let (mut connection, took) =
                Connection::open(address, host, &config.security, config.timeout).await?;
            entry.connect_ms = Some(took.as_secs_f64() * 1000.0);
            if config.security.tls.is_some() {
                entry.tls_name = Some(host.to_owned());
            }
            let identity = connection.identity(node_id).await?;
            Ok::<_, ProbeError>((identity, connection))
        };
        match checked.await.map(|(identity, connection)| {
            kept.get_or_insert(connection);
            identity
        }) {
            Ok(Ok(id)) => {
                entry.answers_as = Some(id);
                if id != node_id {
                    report.faults.push(fault(format!(
                        "resolves to {}, which answers as broker {id}",
                        address.ip()
                    )));
                }
            }
            Ok(Err(unverified)) => {
                report
                    .faults
                    .push(fault(format!("{}: {unverified}", address.ip())));
                entry.error = Some(unverified);
            }
            Err(error) => {
                report.faults.push(fault(error.to_string()));
                entry.error = Some(error.to_string());
            }
        }
        report.addresses.push(entry);
    }
    kept
}

/// Whether a broker advertising `host:port` advertises what `expected` (rendered from the
/// template) stands for: the same, or, where the template has a value known only at start-up,
/// an address (`{hostIP}`, `{podIP}`) or a name (`{nodeName}`) in its place.
pub(crate) fn advertises(expected: &str, host: &str, port: i32) -> bool {
    let Some((expected_host, expected_port)) = expected.rsplit_once(':') else {
        return false;
    };
    if expected_port != port.to_string() {
        return false;
    }
    let start_up = Runtime::ALL
        .into_iter()
        .find(|runtime| runtime.reference() == expected_host);
    match start_up {
        Some(Runtime::NodeName) => crate::inject::text::is_dns_name(host),
        Some(Runtime::HostIp | Runtime::PodIp) => host.parse::<std::net::IpAddr>().is_ok(),
        None => expected_host == host,
    }
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
    crate::inject::listeners::endpoint_of(&value, &expectation.listener)
        .map(|(host, port)| format!("{host}:{port}"))
}

#[cfg(test)]
mod tests;

//! The cluster's health as one broker's metadata shows it: which partitions are under-replicated
//! or offline, and which one restart would take below `min.insync.replicas`. Used by `roll`.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::{DescribeConfigsRequest, MetadataRequest};
use kafka_protocol::protocol::StrBytes;
use serde::Serialize;

use super::connection::{Connection, DESCRIBE_CONFIGS, METADATA};
use super::ProbeError;

/// One partition's replicas, as the metadata says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    /// `-1` when it has no leader (offline).
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Partition {
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }

    pub fn offline(&self) -> bool {
        self.leader < 0
    }
}

/// The metadata of the whole cluster.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClusterState {
    /// `(node id, host, port)` of every registered broker, by id.
    pub brokers: Vec<(i32, String, i32)>,
    /// The broker the metadata names as controller (under KRaft, any broker: the active
    /// controller itself is not a broker in isolated mode).
    pub controller: i32,
    pub partitions: Vec<Partition>,
}

impl ClusterState {
    /// Partitions not fully replicated: under-replicated or offline.
    pub fn unhealthy(&self) -> impl Iterator<Item = &Partition> {
        self.partitions
            .iter()
            .filter(|p| p.under_replicated() || p.offline())
    }
}

impl Connection {
    /// The metadata of every topic and broker.
    pub(crate) async fn cluster_state(&mut self) -> Result<ClusterState, ProbeError> {
        // No topic list: all topics (from Metadata v1).
        let request = MetadataRequest::default().with_topics(None);
        let response = self.call_negotiated(&request, METADATA).await?;
        let mut brokers: Vec<_> = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.host.to_string(), b.port))
            .collect();
        brokers.sort();
        let mut partitions: Vec<Partition> = response
            .topics
            .iter()
            .filter(|t| !t.is_internal)
            .flat_map(|topic| {
                let name = topic
                    .name
                    .as_ref()
                    .map(|n| n.0.to_string())
                    .unwrap_or_default();
                topic.partitions.iter().map(move |p| Partition {
                    topic: name.clone(),
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                })
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(ClusterState {
            brokers,
            controller: response.controller_id.0,
            partitions,
        })
    }

    /// `min.insync.replicas` of each topic, as the brokers apply it (topic or broker default).
    pub(crate) async fn min_insync_replicas(
        &mut self,
        topics: &[String],
    ) -> Result<Vec<(String, i32)>, ProbeError> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let resources = topics
            .iter()
            .map(|topic| {
                DescribeConfigsResource::default()
                    .with_resource_type(2) // TOPIC
                    .with_resource_name(StrBytes::from_string(topic.clone()))
                    .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                        "min.insync.replicas",
                    )]))
            })
            .collect();
        let request = DescribeConfigsRequest::default().with_resources(resources);
        let response = self.call_negotiated(&request, DESCRIBE_CONFIGS).await?;
        response
            .results
            .iter()
            .map(|result| {
                let topic = result.resource_name.to_string();
                if result.error_code != 0 {
                    return Err(ProbeError::Protocol(format!(
                        "the configuration of topic {topic}: error {} ({})",
                        result.error_code,
                        result.error_message.as_deref().unwrap_or("no message")
                    )));
                }
                let value = result
                    .configs
                    .iter()
                    .find(|c| c.name.as_str() == "min.insync.replicas")
                    .and_then(|c| c.value.as_deref())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                Ok((topic, value))
            })
            .collect()
    }
}

/// The topics that lose availability while one of the `restarting` brokers is away: a partition
/// on it with one replica, or with `min.insync.replicas` equal to (or above) its replication
/// factor, refuses `acks=all` writes (or all access) meanwhile.
pub fn at_risk(
    state: &ClusterState,
    min_insync: &[(String, i32)],
    restarting: &[i32],
) -> Vec<String> {
    let mut topics: Vec<String> = state
        .partitions
        .iter()
        .filter(|p| p.replicas.iter().any(|r| restarting.contains(r)))
        .filter(|p| {
            let min = min_insync
                .iter()
                .find(|(t, _)| *t == p.topic)
                .map_or(1, |(_, m)| *m);
            p.replicas.len() <= 1 || min >= p.replicas.len() as i32
        })
        .map(|p| p.topic.clone())
        .collect();
    topics.dedup();
    topics
}

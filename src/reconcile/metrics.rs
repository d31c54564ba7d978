//! The reconciler's Prometheus metrics: runs, errors, Service actions and the gauges.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::telemetry::registered;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub(super) result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(super) struct ActionLabels {
    pub(super) action: &'static str,
}

/// The reconciler's metrics.
pub struct Metrics {
    pub(super) registry: Registry,
    pub(super) runs: Family<ResultLabels, Counter>,
    pub(super) errors: Family<ResultLabels, Counter>,
    pub(super) actions: Family<ActionLabels, Counter>,
    pub(super) services: Gauge,
    pub(super) names_pending: Gauge,
    pub(super) leader: Gauge,
    /// Per StatefulSet: (Services managed, names not resolving yet), summed into the gauges.
    pub(super) per_statefulset: Mutex<BTreeMap<String, (i64, i64)>>,
}

impl Metrics {
    pub(super) fn new() -> Self {
        let mut registry = Registry::with_prefix("kafka_listener_injector_reconcile");
        let runs = registered(
            &mut registry,
            "runs",
            "Reconciles of a StatefulSet by result",
            Default::default(),
        );
        let errors = registered(
            &mut registry,
            "errors",
            "Reconcile faults by kind: api, render, name-taken",
            Default::default(),
        );
        let actions = registered(
            &mut registry,
            "service_actions",
            "Writes to Services by action: applied, marked-scaled-down, deleted",
            Default::default(),
        );
        let services = registered(
            &mut registry,
            "services_managed",
            "Services this reconciler keeps",
            Default::default(),
        );
        let names_pending = registered(
            &mut registry,
            "names_pending",
            "Broker names that do not resolve to their load balancer yet",
            Default::default(),
        );
        let leader = registered(
            &mut registry,
            "leader",
            "1 while this replica holds the lease (or runs without one)",
            Default::default(),
        );
        Self {
            registry,
            runs,
            errors,
            actions,
            services,
            names_pending,
            leader,
            per_statefulset: Mutex::default(),
        }
    }

    pub(super) fn count_error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&ResultLabels { result: kind })
            .inc();
    }

    pub(super) fn count_action(&self, action: &'static str) {
        self.actions.get_or_create(&ActionLabels { action }).inc();
    }

    /// Keeps only the StatefulSets in `existing` (namespace/name) in the gauges.
    pub(super) fn retain_statefulsets(&self, existing: &HashSet<String>) {
        let mut map = self.per_statefulset.lock().expect("not poisoned");
        map.retain(|key, _| existing.contains(key));
        Self::publish_totals(&map, &self.services, &self.names_pending);
    }

    pub(super) fn set_statefulset_counts(&self, key: String, services: i64, pending: i64) {
        let mut map = self.per_statefulset.lock().expect("not poisoned");
        map.insert(key, (services, pending));
        Self::publish_totals(&map, &self.services, &self.names_pending);
    }

    pub(super) fn publish_totals(
        map: &BTreeMap<String, (i64, i64)>,
        services: &Gauge,
        pending: &Gauge,
    ) {
        services.set(map.values().map(|v| v.0).sum());
        pending.set(map.values().map(|v| v.1).sum());
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(2048);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

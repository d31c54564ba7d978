//! Logging set-up and the Prometheus metrics registry.

mod admin;
pub mod log_format;
pub mod log_writer;
mod signal;

pub use self::admin::admin_router;
pub use self::signal::shutdown_signal;

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Metric, Registry};

use crate::outcome::{Outcome, Reason};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Which command logs: `serve` opens no spans and logs a line per review, so its JSON lines come
/// from [`crate::telemetry::log_format::JsonLines`]; `reconcile` logs inside kube-runtime's spans and keeps
/// tracing-subscriber's JSON, which writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logger {
    Serve,
    Reconcile,
}

/// Installs the global `tracing` subscriber; the level comes from `RUST_LOG` (default `info`).
/// Lines are written to stderr in batches by a background thread (see [`crate::telemetry::log_writer`]), so
/// a request never waits on a `write`; the returned guard writes the rest when dropped, at exit.
pub fn init_logging(format: LogFormat, logger: Logger) -> crate::telemetry::log_writer::FlushGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = crate::telemetry::log_writer::batched(std::io::stderr());
    // Colour codes only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    // A second call (tests start several servers in one process) keeps the first subscriber.
    let _ = match (format, logger) {
        (LogFormat::Json, Logger::Serve) => builder
            .event_format(crate::telemetry::log_format::JsonLines)
            .try_init(),
        (LogFormat::Json, Logger::Reconcile) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Text, _) => builder.try_init(),
    };
    guard
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettingsLabels {
    pub settings: String,
}

/// Registers `metric` under `name` and hands it back, to be kept and updated.
pub fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Distinct settings hashes with a series of their own; further ones share `other`, so pods
/// with ever-new annotations cannot grow the registry without bound.
const MAX_SETTINGS_SERIES: usize = 64;

/// The webhook's metrics; cheap to update from any thread.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histogram,
    certificate_expiry: Gauge<f64, AtomicU64>,
    certificate_reloads: Family<ReloadLabels, Counter>,
    injected: Family<SettingsLabels, Counter>,
    /// The counter of each settings hash that has a series of its own.
    settings_series: std::sync::Mutex<std::collections::HashMap<String, Counter>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kafka_listener_injector");
        let requests = registered(
            &mut registry,
            "admission_requests",
            "Admission requests by outcome and reason",
            Default::default(),
        );
        // 50us, 100us, ... 1.6s: the API server waits on us, so the low end matters.
        let duration = registered(
            &mut registry,
            "admission_duration_seconds",
            "Time from a complete request body to the response, per admission request",
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        );
        let certificate_expiry = registered(
            &mut registry,
            "certificate_expiry_timestamp_seconds",
            "Unix time at which the serving certificate expires",
            Default::default(),
        );
        let certificate_reloads = registered(
            &mut registry,
            "certificate_reloads",
            "Certificate reloads from disk by result",
            Default::default(),
        );
        let injected = registered(&mut registry, "injected_pods", "Pods admitted injected (patched or already up to date) by settings hash: more than one hash for a Kafka cluster is drift", Default::default());
        Self {
            registry,
            requests,
            duration,
            certificate_expiry,
            certificate_reloads,
            injected,
            settings_series: Default::default(),
        }
    }

    pub fn observe_request(&self, outcome: Outcome, reason: Reason, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                outcome: outcome.as_str(),
                reason: reason.as_str(),
            })
            .inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a pod admitted with the settings of hash `settings`. A hash seen before costs a
    /// lookup and an increment, no allocation.
    pub fn count_injected(&self, settings: &str) {
        let mut series = self.settings_series.lock().expect("not poisoned");
        if let Some(counter) = series.get(settings) {
            counter.inc();
            return;
        }
        let label = if series.len() < MAX_SETTINGS_SERIES {
            settings
        } else {
            "other"
        };
        let counter = self
            .injected
            .get_or_create(&SettingsLabels {
                settings: label.to_owned(),
            })
            .clone();
        counter.inc();
        if label != "other" {
            series.insert(settings.to_owned(), counter);
        }
    }

    /// Counts a request refused before it reached admission (bad method, body, ...).
    pub fn count_rejected(&self, reason: Reason) {
        self.requests
            .get_or_create(&RequestLabels {
                outcome: Outcome::Rejected.as_str(),
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn certificate_loaded(&self, not_after_unix: i64) {
        self.certificate_expiry.set(not_after_unix as f64);
    }

    pub fn count_reload(&self, result: &'static str) {
        self.certificate_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

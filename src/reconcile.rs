//! `reconcile`: keeps one Service per broker (and the optional bootstrap Service) for every
//! StatefulSet the webhook injects, as StatefulSets scale. The Services are rendered by
//! [`services::for_statefulset`], the very code of the offline `services` command.
//!
//! Per StatefulSet, one reconcile:
//! 1. renders the Services the StatefulSet's brokers need;
//! 2. applies each (server-side apply, field manager [`FIELD_MANAGER`]), unless a Service of that
//!    name exists that this StatefulSet does not own: that is reported, never modified;
//! 3. marks the Services of removed ordinals with [`SCALED_DOWN_ANNOTATION`] and deletes them once
//!    `--scale-down-grace` has passed since;
//! 4. checks that each broker's advertised name resolves to its load balancer, records the answer
//!    in [`EXTERNAL_NAME_ANNOTATION`] and, for pods with the readiness gate, in the pod condition
//!    [`READINESS_GATE`].
//!
//! Deleting the StatefulSet deletes its Services through their ownerReference.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tracing::{info, warn};

use crate::inject::settings::{INJECT_KEY, READINESS_GATE};
use crate::manifests::POD_NAME_LABEL;
use crate::policy::{Mode, OPT_IN_LABEL};
use crate::services::{
    self, Render, HOSTNAME_ANNOTATION, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL,
};
use crate::telemetry::{registered, LogFormat};

/// The field manager of every write; Services it manages are also labelled
/// `app.kubernetes.io/managed-by: kafka-listener-injector`.
pub const FIELD_MANAGER: &str = "kafka-listener-injector";
/// On a Service whose broker ordinal is gone: when that was first seen (RFC 3339).
pub const SCALED_DOWN_ANNOTATION: &str = "kafka-listener-injector.io/scaled-down-at";
/// On each broker Service: whether its advertised name resolves to its load balancer.
pub const EXTERNAL_NAME_ANNOTATION: &str = "kafka-listener-injector.io/external-name";
/// How often a StatefulSet whose names all resolve is checked again anyway.
const RESYNC: Duration = Duration::from_secs(300);

/// A validated `reconcile` invocation.
#[derive(Debug)]
pub struct Config {
    pub render: Render,
    pub mode: Mode,
    pub scale_down_grace: Duration,
    /// Take over Services that `services` rendered for this StatefulSet and someone applied.
    pub adopt: bool,
    pub dns_server: Option<SocketAddr>,
    pub dns_check_interval: Duration,
    pub admin_listen: SocketAddr,
    pub lease: Option<Lease>,
    pub log_format: LogFormat,
}

/// Leader election through a `coordination.k8s.io` Lease.
#[derive(Debug)]
pub struct Lease {
    pub name: String,
    pub namespace: String,
    pub identity: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0:#}")]
    Render(anyhow::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

/// The reconciler's metrics.
pub struct Metrics {
    registry: Registry,
    runs: Family<ResultLabels, Counter>,
    errors: Family<ResultLabels, Counter>,
    actions: Family<ActionLabels, Counter>,
    services: Gauge,
    names_pending: Gauge,
    leader: Gauge,
    /// Per StatefulSet: (Services managed, names not resolving yet), summed into the gauges.
    per_statefulset: Mutex<BTreeMap<String, (i64, i64)>>,
}

impl Metrics {
    fn new() -> Self {
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

    fn count_error(&self, kind: &'static str) {
        self.errors
            .get_or_create(&ResultLabels { result: kind })
            .inc();
    }

    fn count_action(&self, action: &'static str) {
        self.actions.get_or_create(&ActionLabels { action }).inc();
    }

    /// Keeps only the StatefulSets in `existing` (namespace/name) in the gauges.
    fn retain_statefulsets(&self, existing: &HashSet<String>) {
        let mut map = self.per_statefulset.lock().expect("not poisoned");
        map.retain(|key, _| existing.contains(key));
        Self::publish_totals(&map, &self.services, &self.names_pending);
    }

    fn set_statefulset_counts(&self, key: String, services: i64, pending: i64) {
        let mut map = self.per_statefulset.lock().expect("not poisoned");
        map.insert(key, (services, pending));
        Self::publish_totals(&map, &self.services, &self.names_pending);
    }

    fn publish_totals(map: &BTreeMap<String, (i64, i64)>, services: &Gauge, pending: &Gauge) {
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

struct Context {
    client: Client,
    render: Render,
    mode: Mode,
    grace: Duration,
    adopt: bool,
    dns_check_interval: Duration,
    resolver: TokioResolver,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    /// Warnings already published, per StatefulSet uid: an event each, not one per reconcile.
    warned: Mutex<HashSet<(String, String)>>,
    /// The controller's cache of StatefulSets: the gauges keep only those that still exist.
    statefulsets: Store<StatefulSet>,
}

/// Runs the reconciler until SIGTERM: the admin port at once, the controller once this replica
/// leads (or at once without `--lease-name`).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default().await.map_err(|error| {
        anyhow::anyhow!(
            "no Kubernetes API: {error} (in a pod: its service account; elsewhere: KUBECONFIG)"
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let admin = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|error| anyhow::anyhow!("--admin-listen {}: {error}", config.admin_listen))?;
    info!(admin = %admin.local_addr()?, "reconcile: admin port");
    let router = crate::server::admin_router(
        {
            let metrics = metrics.clone();
            move || metrics.encode()
        },
        ready.clone(),
    );
    tokio::spawn(async move {
        if let Err(error) = axum::serve(admin, router).await {
            warn!(%error, "admin port stopped");
        }
    });

    let resolver = resolver(config.dns_server)?;
    let identity = config
        .lease
        .as_ref()
        .map_or_else(|| "standalone".to_owned(), |l| l.identity.clone());

    let shutdown = crate::server::shutdown_signal();
    tokio::pin!(shutdown);
    let _lease = match &config.lease {
        None => None,
        Some(lease) => {
            // A standby replica is healthy and ready: it serves metrics and waits its turn.
            ready.store(true, Ordering::SeqCst);
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
                .with_namespace(&lease.namespace)
                .with_identity(&lease.identity)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await?;
            let (mut leading, task) = manager.watch().await;
            info!(lease = %lease.name, identity = %lease.identity, "waiting for leadership");
            loop {
                if *leading.borrow_and_update() {
                    break;
                }
                tokio::select! {
                    changed = leading.changed() => changed?,
                    () = &mut shutdown => return Ok(()),
                }
            }
            info!(lease = %lease.name, "leading");
            Some((leading, task))
        }
    };
    metrics.leader.set(1);
    ready.store(true, Ordering::SeqCst);

    let controller = controller(client.clone(), config.mode);
    let context = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(identity),
            },
        ),
        client,
        render: config.render,
        mode: config.mode,
        grace: config.scale_down_grace,
        adopt: config.adopt,
        dns_check_interval: config.dns_check_interval,
        resolver,
        metrics: metrics.clone(),
        warned: Mutex::default(),
        statefulsets: controller.store(),
    });
    let run = controller
        .run(reconcile, error_policy, context.clone())
        .for_each(|result| async {
            match result {
                Ok((object, _)) => tracing::debug!(statefulset = %object, "reconciled"),
                Err(error) => warn!(%error, "reconcile failed"),
            }
        });
    match _lease {
        None => tokio::select! {
            () = run => {},
            () = &mut shutdown => {},
        },
        Some((mut leading, _task)) => {
            let lost = async {
                while leading.changed().await.is_ok() {
                    if !*leading.borrow() {
                        return;
                    }
                }
            };
            tokio::select! {
                () = run => {},
                () = &mut shutdown => {},
                () = lost => {
                    // Another replica leads now: stop at once, and let the pod restart as standby.
                    metrics.leader.set(0);
                    anyhow::bail!("lost the lease; exiting so that only the new leader writes");
                }
            }
        }
    }
    info!("reconcile: stopped");
    Ok(())
}

/// The controller: StatefulSets, the Services they own, their pods (the readiness gate, and a new
/// pod's first check) and namespaces (the opt-in label).
fn controller(client: Client, mode: Mode) -> Controller<StatefulSet> {
    let statefulsets = Api::<StatefulSet>::all(client.clone());
    let controller = Controller::new(statefulsets, watcher::Config::default())
        // By label rather than ownerReference: Services rendered offline (no owner yet) count too.
        .watches(
            Api::<Service>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            |service| {
                let namespace = service.namespace()?;
                let statefulset = service.labels().get(INSTANCE_LABEL)?;
                Some(ObjectRef::new(statefulset).within(&namespace))
            },
        )
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default().labels(POD_NAME_LABEL),
            |pod| {
                let namespace = pod.namespace()?;
                pod.owner_references()
                    .iter()
                    .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
                    .map(|o| ObjectRef::new(&o.name).within(&namespace))
            },
        );
    if mode != Mode::NamespaceOptIn {
        return controller.shutdown_on_signal();
    }
    let store = controller.store();
    controller
        .watches(
            Api::<Namespace>::all(client),
            watcher::Config::default(),
            move |namespace| {
                let name = namespace.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace().as_deref() == Some(name.as_str()))
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
}

fn error_policy(statefulset: Arc<StatefulSet>, error: &Error, context: Arc<Context>) -> Action {
    warn!(
        statefulset = %ObjectRef::from_obj(&*statefulset),
        %error,
        "reconcile failed; retrying in 15 s"
    );
    context
        .metrics
        .runs
        .get_or_create(&ResultLabels { result: "error" })
        .inc();
    Action::requeue(Duration::from_secs(15))
}

/// The resolver that checks the advertised names: no cache, so a record that appears is seen at
/// the next check, not after a negative answer's TTL.
fn resolver(server: Option<SocketAddr>) -> anyhow::Result<TokioResolver> {
    let builder = match server {
        Some(address) => {
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = address.port();
                    c
                })
                .collect();
            let config = ResolverConfig::from_parts(
                None,
                Vec::new(),
                vec![NameServerConfig::new(address.ip(), true, connections)],
            );
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        }
        None => TokioResolver::builder_tokio()
            .map_err(|error| anyhow::anyhow!("reading the system's resolver: {error}"))?,
    };
    let mut builder = builder;
    builder.options_mut().cache_size = 0;
    if server.is_some() {
        builder.options_mut().use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    }
    builder
        .build()
        .map_err(|error| anyhow::anyhow!("--dns-server: {error}"))
}

/// Whether the webhook injects this StatefulSet's pods in `mode`.
async fn selected(statefulset: &StatefulSet, context: &Context) -> Result<bool, kube::Error> {
    let template_label = |key: &str| {
        statefulset
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(key))
            .map(|v| v.trim().to_ascii_lowercase())
    };
    Ok(match context.mode {
        Mode::ClusterWide => template_label(INJECT_KEY).as_deref() == Some("true"),
        Mode::NamespaceOptIn => {
            let namespace = statefulset.namespace().unwrap_or_default();
            let namespace = Api::<Namespace>::all(context.client.clone())
                .get_opt(&namespace)
                .await?;
            let (key, value) = OPT_IN_LABEL;
            namespace.is_some_and(|ns| ns.labels().get(key).map(String::as_str) == Some(value))
        }
    })
}

async fn reconcile(statefulset: Arc<StatefulSet>, context: Arc<Context>) -> Result<Action, Error> {
    let action = reconcile_statefulset(&statefulset, &context).await?;
    context
        .metrics
        .runs
        .get_or_create(&ResultLabels { result: "ok" })
        .inc();
    Ok(action)
}

/// One reconcile of one StatefulSet: render, apply, retire the Services of removed ordinals,
/// check the brokers' names. Each step says when it wants to run again; the soonest wins.
async fn reconcile_statefulset(
    statefulset: &StatefulSet,
    context: &Context,
) -> Result<Action, Error> {
    let run = Run::new(statefulset, context);
    // A StatefulSet deleted since (its Services go with it) leaves the gauges.
    let existing: HashSet<String> = context
        .statefulsets
        .state()
        .iter()
        .filter(|s| s.meta().deletion_timestamp.is_none())
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    context.metrics.retain_statefulsets(&existing);
    if statefulset.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // The garbage collector deletes its Services.
    }
    let rendered = run.render().await?;
    let owned = run.owned_services().await?;
    let (applied, mut next) = run.apply(&rendered, &owned).await?;
    let wanted: BTreeSet<String> = rendered
        .services()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let (lingering, retire_next) = run.retire(&owned, &wanted).await?;
    next = next.min(retire_next);
    let pending = run.check_external_names(&applied).await?;
    context.metrics.set_statefulset_counts(
        run.key(),
        (applied.len() + lingering) as i64,
        pending as i64,
    );
    if pending > 0 {
        next = next.min(context.dns_check_interval);
    }
    Ok(Action::requeue(next))
}

/// What one reconcile works on: the StatefulSet, its namespace's Services, and the context.
struct Run<'a> {
    context: &'a Context,
    statefulset: &'a StatefulSet,
    reference: ObjectReference,
    namespace: String,
    name: String,
    services: Api<Service>,
}

impl<'a> Run<'a> {
    fn new(statefulset: &'a StatefulSet, context: &'a Context) -> Self {
        let namespace = statefulset.namespace().unwrap_or_default();
        Self {
            context,
            statefulset,
            reference: statefulset.object_ref(&()),
            services: Api::namespaced(context.client.clone(), &namespace),
            name: statefulset.name_any(),
            namespace,
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    async fn publish(&self, type_: EventType, reason: &str, note: String) {
        publish(self.context, &self.reference, type_, reason, note).await;
    }

    /// The Services the StatefulSet needs: none when the webhook does not inject it. A render
    /// fault applies and deletes nothing (the webhook denies these pods too); the StatefulSet's
    /// events say why.
    async fn render(&self) -> Result<services::Rendered, Error> {
        if !selected(self.statefulset, self.context).await? {
            return Ok(services::Rendered::default());
        }
        let rendered = match services::for_statefulset(
            &self.context.render,
            self.statefulset,
            &self.namespace,
            None,
        ) {
            Ok(rendered) => rendered,
            Err(error) => {
                self.context.metrics.count_error("render");
                self.publish(
                    EventType::Warning,
                    "RenderFailed",
                    format!("no Services rendered: {error:#}"),
                )
                .await;
                return Err(Error::Render(error));
            }
        };
        let uid = self.statefulset.uid().unwrap_or_default();
        for warning in &rendered.warnings {
            let first_time = (self.context.warned.lock().expect("not poisoned"))
                .insert((uid.clone(), warning.clone()));
            if first_time {
                self.publish(
                    EventType::Warning,
                    "UnencryptedPublicListener",
                    warning.clone(),
                )
                .await;
            }
        }
        Ok(rendered)
    }

    /// The Services this StatefulSet owns (its uid, not only its name), by name.
    async fn owned_services(&self) -> Result<BTreeMap<String, Service>, kube::Error> {
        let uid = self.statefulset.uid().unwrap_or_default();
        let selector = format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{INSTANCE_LABEL}={}",
            self.name
        );
        Ok(self
            .services
            .list(&ListParams::default().labels(&selector))
            .await?
            .items
            .into_iter()
            .filter(|s| owned_by(s, &uid))
            .map(|s| (s.name_any(), s))
            .collect())
    }

    /// Applies each rendered Service, except where the name belongs to someone else; returns the
    /// Services as stored and when to look again.
    async fn apply(
        &self,
        rendered: &services::Rendered,
        owned: &BTreeMap<String, Service>,
    ) -> Result<(Vec<Service>, Duration), kube::Error> {
        let mut applied = Vec::new();
        let mut next = RESYNC;
        for desired in rendered.services() {
            let service_name = desired.metadata.name.clone().unwrap_or_default();
            let mine = owned.get(&service_name);
            let mut adopted = false;
            if mine.is_none() {
                if let Some(existing) = self.services.get_opt(&service_name).await? {
                    if !(self.context.adopt && rendered_for(&existing, &self.name)) {
                        self.context.metrics.count_error("name-taken");
                        self.publish(
                            EventType::Warning,
                            "ServiceNameTaken",
                            format!(
                                "Service {}/{service_name} exists and is not this StatefulSet's ({}); \
                                 it is left untouched and its broker has no Service of ours",
                                self.namespace,
                                describe_owner(&existing)
                            ),
                        )
                        .await;
                        // Its owner may delete it any time; that does not reach this controller.
                        next = next.min(Duration::from_secs(10));
                        continue;
                    }
                    adopted = true;
                }
            }
            if mine.is_some_and(|s| s.annotations().contains_key(SCALED_DOWN_ANNOTATION)) {
                annotate(&self.services, &service_name, SCALED_DOWN_ANNOTATION, None).await?;
                info!(service = %service_name, "ordinal is back: scale-down mark removed");
            }
            let service = self
                .services
                .patch(
                    &service_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(desired),
                )
                .await?;
            if mine.is_none() {
                let (reason, verb) = if adopted {
                    ("ServiceAdopted", "adopted")
                } else {
                    ("ServiceCreated", "created")
                };
                info!(namespace = %self.namespace, service = %service_name, "Service {verb}");
                let host = exposed_host(&service);
                self.publish(
                    EventType::Normal,
                    reason,
                    format!("Service {service_name} {verb} for {host}"),
                )
                .await;
            }
            self.context.metrics.count_action("applied");
            applied.push(service);
        }
        Ok((applied, next))
    }

    /// The owned Services no broker needs any more: marked when first seen so, deleted once the
    /// grace has passed since. Returns how many remain and when the next one is due.
    async fn retire(
        &self,
        owned: &BTreeMap<String, Service>,
        wanted: &BTreeSet<String>,
    ) -> Result<(usize, Duration), kube::Error> {
        let grace = self.context.grace;
        let now = SystemTime::now();
        let mut lingering = 0;
        let mut next = RESYNC;
        for (service_name, service) in owned.iter().filter(|(n, _)| !wanted.contains(*n)) {
            let marked = service
                .annotations()
                .get(SCALED_DOWN_ANNOTATION)
                .and_then(|at| humantime::parse_rfc3339(at).ok());
            let elapsed = marked.map(|at| now.duration_since(at).unwrap_or_default());
            match elapsed {
                None => {
                    let at = humantime::format_rfc3339_seconds(now).to_string();
                    annotate(
                        &self.services,
                        service_name,
                        SCALED_DOWN_ANNOTATION,
                        Some(&at),
                    )
                    .await?;
                    self.context.metrics.count_action("marked-scaled-down");
                    self.publish(
                        EventType::Normal,
                        "ServiceScaledDown",
                        format!(
                            "Service {service_name} has no broker now; deleted after {} unless the ordinal returns",
                            humantime::format_duration(grace)
                        ),
                    )
                    .await;
                    lingering += 1;
                    next = next.min(grace.max(Duration::from_secs(1)));
                }
                Some(elapsed) if elapsed < grace => {
                    lingering += 1;
                    next = next.min(grace - elapsed + Duration::from_millis(500));
                }
                Some(_) => {
                    self.delete(service_name, service).await?;
                    self.context.metrics.count_action("deleted");
                    info!(namespace = %self.namespace, service = %service_name, "Service deleted after the scale-down grace");
                    self.publish(
                        EventType::Normal,
                        "ServiceDeleted",
                        format!(
                            "Service {service_name} deleted: its ordinal was gone for {}",
                            humantime::format_duration(grace)
                        ),
                    )
                    .await;
                }
            }
        }
        Ok((lingering, next))
    }

    /// Deletes exactly this Service (by uid); gone or replaced already is fine.
    async fn delete(&self, service_name: &str, service: &Service) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: service.uid(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.services.delete(service_name, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Checks each broker Service's name, records the answer on it and in its pod's readiness
    /// gate; returns how many do not resolve to their load balancer yet.
    async fn check_external_names(&self, applied: &[Service]) -> Result<usize, kube::Error> {
        let mut pending = 0;
        let brokers = applied.iter().filter(|s| {
            s.labels()
                .get(services::COMPONENT_LABEL)
                .map(String::as_str)
                == Some("broker")
        });
        for service in brokers {
            let state = external_name_state(service, &self.context.resolver).await;
            if !state.resolves() {
                pending += 1;
            }
            record_external_name(&self.services, service, &state, self.context).await?;
            set_readiness_condition(service, &self.namespace, &state, self.context).await?;
        }
        Ok(pending)
    }
}

fn owned_by(service: &Service, uid: &str) -> bool {
    service
        .owner_references()
        .iter()
        .any(|o| o.kind == "StatefulSet" && o.uid == uid && o.controller == Some(true))
}

/// A Service the offline `services` command rendered for this StatefulSet, applied by someone,
/// and owned by nothing: what `--adopt` takes over (same object, so the load balancer stays).
fn rendered_for(service: &Service, statefulset: &str) -> bool {
    let labels = service.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(INSTANCE_LABEL).map(String::as_str) == Some(statefulset)
        && !service
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true))
}

fn describe_owner(service: &Service) -> String {
    if service.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && service.owner_references().is_empty()
    {
        return "rendered by `services` and applied by hand: run with --adopt to take it over"
            .into();
    }
    let manager = service.labels().get(MANAGED_BY_LABEL);
    match (service.owner_references().first(), manager) {
        (Some(owner), _) => format!("owned by {} {}", owner.kind, owner.name),
        (None, Some(manager)) => format!("managed by {manager}"),
        (None, None) => "created by someone else".into(),
    }
}

fn exposed_host(service: &Service) -> &str {
    service
        .annotations()
        .get(HOSTNAME_ANNOTATION)
        .map_or("", String::as_str)
}

/// Sets (or with `None` removes) one annotation, as a merge patch under our field manager.
async fn annotate(
    api: &Api<Service>,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), kube::Error> {
    let patch = json!({ "metadata": { "annotations": { key: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Publishes an event about `regarding`; a failure to publish is logged, never fatal.
async fn publish(
    context: &Context,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(crate::inject::settings::clip_to(&note, 1024)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, regarding).await {
        warn!(%error, reason, "could not publish an event");
    }
}

/// Whether a broker's advertised name resolves to its load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExternalName {
    /// The name resolves to (one of) the load balancer's addresses.
    Resolves {
        host: String,
        addresses: Vec<IpAddr>,
    },
    /// The load balancer has no address yet.
    NoLoadBalancer,
    /// The name does not resolve (yet): no record, or the resolver failed.
    Unresolved { host: String, why: String },
    /// The name resolves, but to addresses that are not the load balancer's.
    Elsewhere {
        host: String,
        addresses: Vec<IpAddr>,
        load_balancer: Vec<IpAddr>,
    },
    /// Not a LoadBalancer Service: nothing to compare with.
    NotLoadBalancer,
}

impl ExternalName {
    fn resolves(&self) -> bool {
        matches!(self, Self::Resolves { .. } | Self::NotLoadBalancer)
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::Resolves { .. } => "Resolves",
            Self::NoLoadBalancer => "NoLoadBalancerAddress",
            Self::Unresolved { .. } => "DoesNotResolve",
            Self::Elsewhere { .. } => "ResolvesElsewhere",
            Self::NotLoadBalancer => "NotLoadBalancer",
        }
    }
}

impl std::fmt::Display for ExternalName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |addresses: &[IpAddr]| {
            addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Self::Resolves { host, addresses } => {
                write!(f, "ready: {host} resolves to {}", list(addresses))
            }
            Self::NoLoadBalancer => write!(f, "pending: the load balancer has no address yet"),
            Self::Unresolved { host, why } => write!(f, "pending: {host} does not resolve ({why})"),
            Self::Elsewhere {
                host,
                addresses,
                load_balancer,
            } => write!(
                f,
                "mismatch: {host} resolves to {}, the load balancer is {}",
                list(addresses),
                list(load_balancer)
            ),
            Self::NotLoadBalancer => write!(f, "ready: not a LoadBalancer Service; not checked"),
        }
    }
}

async fn external_name_state(service: &Service, resolver: &TokioResolver) -> ExternalName {
    if service.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        return ExternalName::NotLoadBalancer;
    }
    let host = exposed_host(service).to_owned();
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let mut load_balancer = Vec::new();
    for entry in &ingress {
        if let Some(ip) = entry.ip.as_deref().and_then(|ip| ip.parse().ok()) {
            load_balancer.push(ip);
        }
        // A provider that gives a name (AWS): its addresses are the load balancer's.
        if let Some(name) = &entry.hostname {
            if let Ok(answer) = resolver.lookup_ip(format!("{name}.")).await {
                load_balancer.extend(answer.iter());
            }
        }
    }
    if load_balancer.is_empty() {
        return ExternalName::NoLoadBalancer;
    }
    let addresses: Vec<IpAddr> = match resolver.lookup_ip(format!("{host}.")).await {
        Ok(answer) => answer.iter().collect(),
        Err(error) => {
            let why = if error.is_no_records_found() {
                "no record".to_owned()
            } else {
                error.to_string()
            };
            return ExternalName::Unresolved { host, why };
        }
    };
    if addresses.iter().any(|a| load_balancer.contains(a)) {
        ExternalName::Resolves { host, addresses }
    } else {
        ExternalName::Elsewhere {
            host,
            addresses,
            load_balancer,
        }
    }
}

/// Writes the answer on the Service, and an event when it changes.
async fn record_external_name(
    api: &Api<Service>,
    service: &Service,
    state: &ExternalName,
    context: &Context,
) -> Result<(), kube::Error> {
    let text = state.to_string();
    if service.annotations().get(EXTERNAL_NAME_ANNOTATION) == Some(&text) {
        return Ok(());
    }
    annotate(
        api,
        &service.name_any(),
        EXTERNAL_NAME_ANNOTATION,
        Some(&text),
    )
    .await?;
    info!(service = %service.name_any(), state = %text, "external name");
    let type_ = if matches!(state, ExternalName::Elsewhere { .. }) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish(
        context,
        &service.object_ref(&()),
        type_,
        state.reason(),
        text,
    )
    .await;
    Ok(())
}

/// Sets the readiness gate's condition on the broker pod the Service selects, when the pod has
/// the gate and the condition differs.
async fn set_readiness_condition(
    service: &Service,
    namespace: &str,
    state: &ExternalName,
    context: &Context,
) -> Result<(), kube::Error> {
    let Some(pod_name) = service
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(|s| s.get(POD_NAME_LABEL))
    else {
        return Ok(());
    };
    let pods = Api::<Pod>::namespaced(context.client.clone(), namespace);
    let Some(pod) = pods.get_opt(pod_name).await? else {
        return Ok(());
    };
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == READINESS_GATE));
    if !gated {
        return Ok(());
    }
    let status = if state.resolves() { "True" } else { "False" };
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == READINESS_GATE));
    if current.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(state.reason())) {
        return Ok(());
    }
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let patch = json!({
        "status": { "conditions": [{
            "type": READINESS_GATE,
            "status": status,
            "reason": state.reason(),
            "message": state.to_string(),
            "lastTransitionTime": now,
        }]}
    });
    pods.patch_status(pod_name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    info!(namespace, pod = %pod_name, status, reason = state.reason(), "readiness gate");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn service(labels: &[(&str, &str)], owner_uid: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("kafka-0-external".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                owner_references: owner_uid.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "StatefulSet".into(),
                        name: "kafka".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..ObjectMeta::default()
            },
            ..Service::default()
        }
    }

    const OURS: [(&str, &str); 2] = [(MANAGED_BY_LABEL, MANAGED_BY), (INSTANCE_LABEL, "kafka")];

    #[test]
    fn only_services_owned_by_this_statefulsets_uid_are_ours() {
        assert!(owned_by(&service(&OURS, Some("uid-1")), "uid-1"));
        // A StatefulSet re-created under the same name is another owner.
        assert!(!owned_by(&service(&OURS, Some("uid-0")), "uid-1"));
        assert!(!owned_by(&service(&OURS, None), "uid-1"));
    }

    #[test]
    fn adopt_takes_only_what_services_rendered_for_this_statefulset_and_nobody_owns() {
        assert!(rendered_for(&service(&OURS, None), "kafka"));
        assert!(!rendered_for(&service(&OURS, None), "other"));
        assert!(!rendered_for(&service(&OURS, Some("uid-0")), "kafka"));
        assert!(!rendered_for(&service(&[], None), "kafka"));
        assert!(!rendered_for(
            &service(
                &[(MANAGED_BY_LABEL, "Helm"), (INSTANCE_LABEL, "kafka")],
                None
            ),
            "kafka"
        ));
        assert_eq!(
            describe_owner(&service(&[(MANAGED_BY_LABEL, "Helm")], None)),
            "managed by Helm"
        );
        assert!(describe_owner(&service(&OURS, None)).contains("--adopt"));
    }

    #[test]
    fn external_name_states_read_as_the_annotation_says_them() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ready = ExternalName::Resolves {
            host: "kafka-3.kafka.example.com".into(),
            addresses: vec![ip("10.77.2.13")],
        };
        assert_eq!(
            ready.to_string(),
            "ready: kafka-3.kafka.example.com resolves to 10.77.2.13"
        );
        assert!(ready.resolves());
        let elsewhere = ExternalName::Elsewhere {
            host: "kafka-3.kafka.example.com".into(),
            addresses: vec![ip("10.77.2.11")],
            load_balancer: vec![ip("10.77.2.13")],
        };
        assert_eq!(
            elsewhere.to_string(),
            "mismatch: kafka-3.kafka.example.com resolves to 10.77.2.11, the load balancer is 10.77.2.13"
        );
        assert!(!elsewhere.resolves());
        assert_eq!(elsewhere.reason(), "ResolvesElsewhere");
        assert!(!ExternalName::NoLoadBalancer.resolves());
        assert!(ExternalName::NotLoadBalancer.resolves());
    }

    #[tokio::test]
    async fn a_name_is_checked_against_the_load_balancer_address_it_has() {
        let mut service = service(&OURS, None);
        service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ..Default::default()
        });
        service.metadata.annotations = Some(
            [(HOSTNAME_ANNOTATION.to_owned(), "localhost".to_owned())]
                .into_iter()
                .collect(),
        );
        let resolver = resolver(None).unwrap();
        assert_eq!(
            external_name_state(&service, &resolver).await,
            ExternalName::NoLoadBalancer
        );
        let with_address = |ip: &str| {
            let mut service = service.clone();
            service.status = Some(k8s_openapi::api::core::v1::ServiceStatus {
                load_balancer: Some(k8s_openapi::api::core::v1::LoadBalancerStatus {
                    ingress: Some(vec![k8s_openapi::api::core::v1::LoadBalancerIngress {
                        ip: Some(ip.into()),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            });
            service
        };
        // The system resolver reads /etc/hosts: localhost is 127.0.0.1 (and maybe ::1).
        assert!(matches!(
            external_name_state(&with_address("127.0.0.1"), &resolver).await,
            ExternalName::Resolves { .. }
        ));
        assert!(matches!(
            external_name_state(&with_address("192.0.2.7"), &resolver).await,
            ExternalName::Elsewhere { .. }
        ));
    }
}

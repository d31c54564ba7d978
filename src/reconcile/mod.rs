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

mod external_name;
mod lease;
mod metrics;
mod objects;
mod steps;

use self::external_name::resolver;
use self::lease::Leadership;
pub use self::lease::Lease;
use self::metrics::{Metrics, ResultLabels};
use self::steps::Run;

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hickory_resolver::TokioResolver;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use crate::inject::settings::{INJECT_KEY, RECORD_KEY};
use crate::policy::{Mode, OPT_IN_LABEL, OPT_OUT_VALUE};
use crate::preview::manifests::POD_NAME_LABEL;
use crate::services::{Render, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
use crate::telemetry::LogFormat;

/// The field manager of every write; Services it manages are also labelled
/// `app.kubernetes.io/managed-by: kafka-listener-injector`.
pub const FIELD_MANAGER: &str = "kafka-listener-injector";
/// On a Service whose broker ordinal is gone: when that was first seen (RFC 3339).
pub const SCALED_DOWN_ANNOTATION: &str = "kafka-listener-injector.io/scaled-down-at";
/// On each broker Service: whether its advertised name resolves to its load balancer.
pub const EXTERNAL_NAME_ANNOTATION: &str = "kafka-listener-injector.io/external-name";
/// How often a StatefulSet whose names all resolve is checked again anyway.
pub(super) const RESYNC: Duration = Duration::from_secs(300);

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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0:#}")]
    Render(anyhow::Error),
}

pub(super) struct Context {
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
}

/// One leadership term: the shared context and this term's controller cache of StatefulSets
/// (the gauges and the warnings keep only those that still exist).
struct Term {
    context: Arc<Context>,
    statefulsets: Store<StatefulSet>,
}

impl Context {
    fn new(
        client: Client,
        config: Config,
        identity: String,
        resolver: TokioResolver,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
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
            metrics,
            warned: Mutex::default(),
        }
    }
}

/// Runs the reconciler until SIGTERM: the admin port at once, the controller while this replica
/// leads (or at once without `--lease-name`).
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = Client::try_default().await.map_err(|error| {
        anyhow::anyhow!(
            "no Kubernetes API: {error} (in a pod: its service account; elsewhere: KUBECONFIG)"
        )
    })?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    serve_admin(config.admin_listen, &metrics, &ready).await?;

    let resolver = resolver(config.dns_server)?;
    let identity = config
        .lease
        .as_ref()
        .map_or_else(|| "standalone".to_owned(), |l| l.identity.clone());
    let mut leadership = match &config.lease {
        Some(lease) => Some(Leadership::start(&client, lease).await?),
        None => None,
    };
    let context = Arc::new(Context::new(
        client.clone(),
        config,
        identity,
        resolver,
        metrics.clone(),
    ));

    let shutdown = crate::telemetry::shutdown_signal();
    tokio::pin!(shutdown);
    // A standby replica is healthy and ready: it serves metrics and waits its turn.
    ready.store(true, Ordering::SeqCst);
    loop {
        if let Some(leadership) = &mut leadership {
            if !leadership.acquired(&mut shutdown).await? {
                break;
            }
        }
        metrics.leader.set(1);
        // A new controller each term: its caches start from what the API server says now.
        let controller = controller(client.clone());
        let term = Arc::new(Term {
            context: context.clone(),
            statefulsets: controller.store(),
        });
        let run = controller
            .run(reconcile, error_policy, term)
            .for_each(|result| async {
                match result {
                    Ok((object, _)) => tracing::debug!(statefulset = %object, "reconciled"),
                    Err(error) => warn!(%error, "reconcile failed"),
                }
            });
        let lost = async {
            match &mut leadership {
                Some(leadership) => leadership.lost().await,
                None => std::future::pending().await,
            }
        };
        // Dropping the controller mid-reconcile stops its writes: nothing is written after the
        // term ends.
        let term_ended = tokio::select! {
            () = run => true,
            () = &mut shutdown => true,
            () = lost => false,
        };
        metrics.leader.set(0);
        if term_ended {
            break;
        }
    }
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    info!("reconcile: stopped");
    Ok(())
}

/// Serves the admin port (health, readiness, metrics) in the background.
async fn serve_admin(
    listen: SocketAddr,
    metrics: &Arc<Metrics>,
    ready: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let admin = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("--admin-listen {listen}: {error}"))?;
    info!(admin = %admin.local_addr()?, "reconcile: admin port");
    let router = crate::telemetry::admin_router(
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
    Ok(())
}

/// The controller: StatefulSets, the Services they own, the pods the webhook injected (the
/// readiness gate, the names running brokers advertise) and namespaces (the opt-in label).
fn controller(client: Client) -> Controller<StatefulSet> {
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
                // Only the pods the webhook injected (they carry its record): a status change
                // of any other StatefulSet pod in the cluster costs no API call.
                if !pod.annotations().contains_key(RECORD_KEY) {
                    return None;
                }
                let namespace = pod.namespace()?;
                pod.owner_references()
                    .iter()
                    .find(|o| o.kind == "StatefulSet" && o.controller == Some(true))
                    .map(|o| ObjectRef::new(&o.name).within(&namespace))
            },
        );
    // Both modes read a namespace label (opt-in, or `injection: disabled`): a change of it
    // reconciles the namespace's StatefulSets at once.
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

fn error_policy(statefulset: Arc<StatefulSet>, error: &Error, term: Arc<Term>) -> Action {
    warn!(
        statefulset = %ObjectRef::from_obj(&*statefulset),
        %error,
        "reconcile failed; retrying in 10-20 s"
    );
    term.context
        .metrics
        .runs
        .get_or_create(&ResultLabels { result: "error" })
        .inc();
    Action::requeue(retry_delay())
}

/// 10 to 20 s, at random: replicas and StatefulSets that failed together (an API server that
/// was away) do not all come back in the same second.
fn retry_delay() -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(10_000 + random % 10_000)
}

/// Whether the webhook injects this StatefulSet's pods in `mode`.
pub(super) async fn selected(
    statefulset: &StatefulSet,
    context: &Context,
) -> Result<bool, kube::Error> {
    // Exactly the webhook configuration's selectors (label values compared as they are, as the
    // API server compares them), so that the reconciler serves the StatefulSets whose pods the
    // webhook injects, no more and no fewer.
    let template_label = |key: &str| {
        statefulset
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(key))
            .cloned()
    };
    let namespace_label = || async {
        let name = statefulset.namespace().unwrap_or_default();
        let namespace = Api::<Namespace>::all(context.client.clone())
            .get_opt(&name)
            .await?;
        let (key, _) = OPT_IN_LABEL;
        Ok::<_, kube::Error>(namespace.and_then(|ns| ns.labels().get(key).cloned()))
    };
    Ok(match context.mode {
        Mode::ClusterWide => {
            template_label(INJECT_KEY).as_deref() == Some("true")
                && namespace_label().await?.as_deref() != Some(OPT_OUT_VALUE)
        }
        Mode::NamespaceOptIn => {
            template_label(INJECT_KEY).as_deref() != Some("false")
                && namespace_label().await?.as_deref() == Some(OPT_IN_LABEL.1)
        }
    })
}

async fn reconcile(statefulset: Arc<StatefulSet>, term: Arc<Term>) -> Result<Action, Error> {
    let action = reconcile_statefulset(&statefulset, &term.context, &term.statefulsets).await?;
    term.context
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
    statefulsets: &Store<StatefulSet>,
) -> Result<Action, Error> {
    let run = Run::new(statefulset, context);
    // A StatefulSet deleted since (its Services go with it) leaves the gauges.
    let existing: HashSet<String> = statefulsets
        .state()
        .iter()
        .filter(|s| s.meta().deletion_timestamp.is_none())
        .map(|s| format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any()))
        .collect();
    context.metrics.retain_statefulsets(&existing);
    // Warnings already published are remembered per StatefulSet uid: forget the deleted ones.
    let uids: HashSet<String> = statefulsets
        .state()
        .iter()
        .filter_map(|s| s.uid())
        .collect();
    (context.warned.lock().expect("not poisoned")).retain(|(uid, _)| uids.contains(uid));
    if statefulset.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change()); // The garbage collector deletes its Services.
    }
    let running = run.running_brokers().await?;
    let rendered = run.render(&running).await?;
    let owned = run.owned_services().await?;
    let (applied, mut next) = run.apply(&rendered, &owned).await?;
    let wanted: BTreeSet<String> = rendered
        .services()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    let (lingering, retire_next) = run.retire(&owned, &wanted, &running).await?;
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

#[cfg(test)]
mod tests;

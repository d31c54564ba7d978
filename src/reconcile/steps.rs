//! One reconcile of one StatefulSet, as named steps over [`Run`]: render, apply, retire, check names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use tracing::{info, warn};

use super::external_name::{
    external_name_state, record_external_name, set_gate, set_readiness_condition, Gate,
};
use super::objects::{advertised_by_running, annotate, exposed_host, publish};
use super::{selected, Context, Error, FIELD_MANAGER, RESYNC, SCALED_DOWN_ANNOTATION};
use crate::inject::ordinal::POD_INDEX_LABEL;
use crate::inject::settings::RECORD_KEY;
use crate::services::{self, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL};

/// What one reconcile works on: the StatefulSet, its namespace's Services, and the context.
pub(super) struct Run<'a> {
    context: &'a Context,
    statefulset: &'a StatefulSet,
    reference: ObjectReference,
    namespace: String,
    name: String,
    services: Api<Service>,
}

impl<'a> Run<'a> {
    pub(super) fn new(statefulset: &'a StatefulSet, context: &'a Context) -> Self {
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

    pub(super) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub(super) async fn publish(&self, type_: EventType, reason: &str, note: String) {
        publish(self.context, &self.reference, type_, reason, note).await;
    }

    /// What the StatefulSet's running brokers advertise, by ordinal: the record the webhook left
    /// on each pod it injected, terminating pods included.
    pub(super) async fn running_brokers(&self) -> Result<services::Advertised, kube::Error> {
        let labels = self
            .statefulset
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.as_ref());
        let Some(labels) = labels.filter(|l| !l.is_empty()) else {
            return Ok(services::Advertised::new());
        };
        let selector: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods: Api<Pod> = Api::namespaced(self.context.client.clone(), &self.namespace);
        let listed = pods
            .list(&ListParams::default().labels(&selector.join(",")))
            .await?;
        Ok(listed
            .items
            .iter()
            // A terminating pod counts: its broker is registered and advertises its name until
            // it has shut down, and clients still connect to it meanwhile.
            .filter_map(|pod| {
                let ordinal = pod.labels().get(POD_INDEX_LABEL)?.parse().ok()?;
                let advertised = pod.annotations().get(RECORD_KEY)?;
                Some((ordinal, advertised.clone()))
            })
            .collect())
    }

    /// The Services the StatefulSet needs: none when the webhook does not inject it. A render
    /// fault applies and deletes nothing (the webhook denies these pods too); the StatefulSet's
    /// events say why.
    pub(super) async fn render(
        &self,
        running: &services::Advertised,
    ) -> Result<services::Rendered, Error> {
        if !selected(self.statefulset, self.context).await? {
            return Ok(services::Rendered::default());
        }
        let rendered = match services::for_statefulset(
            &self.context.render,
            self.statefulset,
            &self.namespace,
            None,
            running,
        ) {
            Ok(rendered) => rendered,
            Err(error) => {
                self.context.metrics.count_error("render");
                let message = format!("no Services rendered: {error:#}");
                // Once per fault: the retries that follow find the same one until the
                // StatefulSet or a namespace label changes.
                if self.first_time(&message) {
                    self.publish(EventType::Warning, "RenderFailed", message.clone())
                        .await;
                }
                let gate = Gate {
                    ready: false,
                    reason: "RenderFailed",
                    message,
                };
                for ordinal in running.keys() {
                    let pod = format!("{}-{ordinal}", self.name);
                    if let Err(error) = set_gate(&pod, &self.namespace, &gate, self.context).await {
                        warn!(%error, %pod, "could not set the readiness gate");
                    }
                }
                return Err(Error::Render(error));
            }
        };
        for warning in &rendered.warnings {
            if self.first_time(&warning.message) {
                self.publish(EventType::Warning, warning.reason, warning.message.clone())
                    .await;
            }
        }
        Ok(rendered)
    }

    /// Whether `message` is news for this StatefulSet: each is published once, not per run.
    fn first_time(&self, message: &str) -> bool {
        let uid = self.statefulset.uid().unwrap_or_default();
        (self.context.warned.lock().expect("not poisoned")).insert((uid, message.to_owned()))
    }

    /// Sets the readiness gate of the broker behind a Service this run cannot apply to `False`.
    async fn gate_unserved(&self, desired: &Service, reason: &'static str, why: &str) {
        let pod = desired
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.get(crate::preview::manifests::POD_NAME_LABEL));
        let Some(pod) = pod else {
            return;
        };
        let gate = Gate {
            ready: false,
            reason,
            message: format!(
                "Service {} has no load balancer of ours: {why}",
                desired.metadata.name.as_deref().unwrap_or_default()
            ),
        };
        if let Err(error) = set_gate(pod, &self.namespace, &gate, self.context).await {
            warn!(%error, %pod, "could not set the readiness gate");
        }
    }

    /// The Services this StatefulSet owns (its uid, not only its name), by name.
    pub(super) async fn owned_services(&self) -> Result<BTreeMap<String, Service>, kube::Error> {
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
    pub(super) async fn apply(
        &self,
        rendered: &services::Rendered,
        owned: &BTreeMap<String, Service>,
    ) -> Result<(Vec<Service>, Duration), kube::Error> {
        let mut applied = Vec::new();
        let mut next = RESYNC;
        let mut refused = None;
        for desired in rendered.services() {
            let service_name = desired.metadata.name.clone().unwrap_or_default();
            let mine = owned.get(&service_name);
            let mut adopted = false;
            let mut reowned = false;
            if mine.is_none() {
                if let Some(existing) = self.services.get_opt(&service_name).await? {
                    // Ours before an orphaning delete and re-create of the StatefulSet
                    // (`--cascade=orphan`, to change volumeClaimTemplates): the garbage collector
                    // removed the ownerReference; the same object keeps its load balancer.
                    let ours = self.context.adopt || applied_by_us(&existing);
                    if !(ours && rendered_for(&existing, &self.name)) {
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
                        self.gate_unserved(desired, "ServiceNameTaken", &describe_owner(&existing))
                            .await;
                        // Its owner may delete it any time; that does not reach this controller.
                        next = next.min(Duration::from_secs(10));
                        continue;
                    }
                    adopted = true;
                    reowned = applied_by_us(&existing);
                }
            }
            if mine.is_some_and(|s| s.annotations().contains_key(SCALED_DOWN_ANNOTATION)) {
                annotate(&self.services, &service_name, SCALED_DOWN_ANNOTATION, None).await?;
                info!(service = %service_name, "ordinal is back: scale-down mark removed");
            }
            let applied_now = self
                .services
                .patch(
                    &service_name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(desired),
                )
                .await;
            // One refused Service (a quota, an admission policy, a bad annotation) must not
            // keep the other brokers from theirs: it is named in an event, its broker's gate says
            // why, and the run goes on; the error comes back at the end for a retry.
            let service = match applied_now {
                Ok(service) => service,
                Err(error) => {
                    self.context.metrics.count_error("apply");
                    let why = error.to_string();
                    self.publish(
                        EventType::Warning,
                        "ServiceApplyFailed",
                        format!(
                            "Service {}/{service_name} was refused: {why}",
                            self.namespace
                        ),
                    )
                    .await;
                    self.gate_unserved(desired, "ServiceApplyFailed", &why)
                        .await;
                    refused.get_or_insert(error);
                    continue;
                }
            };
            if mine.is_none() {
                let (reason, verb) = if reowned {
                    (
                        "ServiceReowned",
                        "owned again after its StatefulSet was re-created",
                    )
                } else if adopted {
                    ("ServiceAdopted", "adopted")
                } else {
                    ("ServiceCreated", "created")
                };
                info!(namespace = %self.namespace, service = %service_name, "Service {verb}");
                let host = match exposed_host(&service) {
                    "" => "its broker's node address",
                    host => host,
                };
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
        match refused {
            Some(error) => Err(error),
            None => Ok((applied, next)),
        }
    }

    /// The owned Services no broker needs any more: marked when first seen so, deleted once the
    /// grace has passed since. Returns how many remain and when the next one is due.
    ///
    /// A Service whose name a running broker still advertises is never retired, whatever the
    /// template, the labels or the namespace say now (an inject label removed while the brokers
    /// run must not release their load balancers); nor is any while the StatefulSet is scaled to
    /// zero, a pause after which the brokers come back under the same names.
    pub(super) async fn retire(
        &self,
        owned: &BTreeMap<String, Service>,
        wanted: &BTreeSet<String>,
        running: &services::Advertised,
    ) -> Result<(usize, Duration), kube::Error> {
        let grace = self.context.grace;
        let now = SystemTime::now();
        let mut lingering = 0;
        let mut next = RESYNC;
        let paused = self.statefulset.spec.as_ref().and_then(|s| s.replicas) == Some(0);
        // The bootstrap Service serves every running broker; a broker's Service, the one that
        // advertises its name.
        let still_advertised = |service: &Service| {
            let bootstrap = service
                .labels()
                .get(services::COMPONENT_LABEL)
                .is_some_and(|c| c == "bootstrap");
            if bootstrap {
                return !running.is_empty();
            }
            advertised_by_running(service, running)
        };
        for (service_name, service) in owned.iter().filter(|(n, _)| !wanted.contains(*n)) {
            if paused || still_advertised(service) {
                lingering += 1;
                if service.annotations().contains_key(SCALED_DOWN_ANNOTATION) {
                    annotate(&self.services, service_name, SCALED_DOWN_ANNOTATION, None).await?;
                }
                continue;
            }
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
    pub(super) async fn delete(
        &self,
        service_name: &str,
        service: &Service,
    ) -> Result<(), kube::Error> {
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
    pub(super) async fn check_external_names(
        &self,
        applied: &[Service],
    ) -> Result<usize, kube::Error> {
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

pub(super) fn owned_by(service: &Service, uid: &str) -> bool {
    service
        .owner_references()
        .iter()
        .any(|o| o.kind == "StatefulSet" && o.uid == uid && o.controller == Some(true))
}

/// A Service the offline `services` command rendered for this StatefulSet, applied by someone,
/// and owned by nothing: what `--adopt` takes over (same object, so the load balancer stays).
pub(super) fn rendered_for(service: &Service, statefulset: &str) -> bool {
    let labels = service.labels();
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && labels.get(INSTANCE_LABEL).map(String::as_str) == Some(statefulset)
        && !service
            .owner_references()
            .iter()
            .any(|o| o.controller == Some(true))
}

/// Whether this reconciler wrote the Service (server-side apply under its field manager): after an
/// orphaning delete its ownerReference is gone, but its managed fields remain.
pub(super) fn applied_by_us(service: &Service) -> bool {
    service
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|entry| {
            entry.manager.as_deref() == Some(FIELD_MANAGER)
                && entry.operation.as_deref() == Some("Apply")
        })
}

pub(super) fn describe_owner(service: &Service) -> String {
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

//! Which running brokers a roll recreates: each live pod against the pod its StatefulSet's
//! template would give it now, injected with the settings in force (the webhook's decision,
//! as `preview` makes it).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde::Serialize;

use crate::inject::listeners::{endpoint_of, parse_listeners};
use crate::inject::settings::{Defaults, RECORD_KEY, SETTINGS_KEY};
use crate::inject::view::PodView;
use crate::inject::Decision;
use crate::preview::manifests::expand_statefulset;

/// The label the StatefulSet controller puts on each pod: the template revision it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";

/// One broker the roll recreates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    pub pod: String,
    pub ordinal: i64,
    /// The broker's id in the cluster's metadata.
    pub node_id: i32,
    /// The advertised listeners the running broker was given, and the ones it will get.
    pub advertised_before: Option<String>,
    pub advertised_after: String,
    pub settings_before: Option<String>,
    pub settings_after: String,
    /// `host:port` the recreated broker must advertise on the listener clients use.
    pub endpoint: String,
    /// Why it is recreated, in words.
    pub why: Vec<String>,
}

/// The roll, before anything is touched.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// In the order they are recreated: highest ordinal first, as the StatefulSet controller.
    pub steps: Vec<Step>,
    /// Pods already on the current template and settings.
    pub current: Vec<String>,
    /// Pods the roll must not recreate, and why (a node id that would change).
    pub refused: Vec<String>,
}

/// Compares each live pod of `statefulset` with the pod its template gives that ordinal now.
pub fn plan(
    statefulset: &StatefulSet,
    live: &[Pod],
    namespace: &str,
    defaults: &Defaults,
    listener: &str,
    node_id_offset: i64,
) -> anyhow::Result<Plan> {
    let name = statefulset.name_any();
    let wanted: BTreeMap<String, Pod> = expand_statefulset(statefulset, namespace, None)
        .map_err(|error| anyhow::anyhow!("statefulset/{name}: {error}"))?
        .into_iter()
        .map(|pod| (pod.name_any(), pod))
        .collect();
    let compare = Compare {
        statefulset,
        namespace,
        defaults,
        listener,
        node_id_offset,
    };
    let mut plan = Plan::default();
    let mut live: Vec<&Pod> = live.iter().collect();
    live.sort_by_key(|pod| std::cmp::Reverse(ordinal_of(pod, &name)));
    for pod in live {
        // An ordinal beyond spec.replicas is about to be removed, not recreated.
        let Some(template) = wanted.get(&pod.name_any()) else {
            continue;
        };
        match compare.pod(pod, template)? {
            Compared::NotInjected => {}
            Compared::Current(id) => plan.current.push(id),
            Compared::Refused(why) => plan.refused.push(why),
            Compared::Recreate(step) => plan.steps.push(step),
        }
    }
    Ok(plan)
}

/// What the roll compares each live pod with.
struct Compare<'a> {
    statefulset: &'a StatefulSet,
    namespace: &'a str,
    defaults: &'a Defaults,
    listener: &'a str,
    node_id_offset: i64,
}

/// One live pod, compared.
enum Compared {
    /// Its next pod is not one the webhook injects.
    NotInjected,
    Current(String),
    Refused(String),
    Recreate(Step),
}

impl Compare<'_> {
    fn pod(&self, pod: &Pod, template: &Pod) -> anyhow::Result<Compared> {
        let pod_name = pod.name_any();
        let id = format!("{}/{pod_name}", self.namespace);
        let view = PodView::from_pod(template)
            .map_err(|error| anyhow::anyhow!("{id}: not a valid Pod: {error}"))?;
        let injection = match crate::inject::inject(&view, self.namespace, self.defaults) {
            Decision::Inject(injection) => injection,
            Decision::Skip { .. } => return Ok(Compared::NotInjected),
            Decision::Deny { message, .. } => {
                anyhow::bail!("{id}: the webhook would deny its next pod: {message}")
            }
        };
        let advertised_after = injection.advertised.clone().ok_or_else(|| {
            anyhow::anyhow!("{id}: the listeners template does not render for this pod")
        })?;
        parse_listeners(&advertised_after)?;
        let endpoint = endpoint_of(&advertised_after, self.listener)
            .map(|(host, port)| format!("{host}:{port}"))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{id}: no listener named {} in {advertised_after:?} (use --listener)",
                    self.listener
                )
            })?;
        let ordinal = ordinal_of(pod, &self.statefulset.name_any());
        if let Some((env, after)) = &injection.node_id {
            let before = live_env(pod, env);
            if let Some(before) = before.filter(|before| *before != after.to_string()) {
                return Ok(Compared::Refused(format!(
                    "{id}: {env} would change from {before} to {after}: the broker would refuse to start on its volume, whose meta.properties holds {before}"
                )));
            }
        }
        let node_id = injection
            .node_id
            .as_ref()
            .map_or(ordinal + self.node_id_offset, |(_, id)| *id);
        let node_id = i32::try_from(node_id)
            .map_err(|_| anyhow::anyhow!("{id}: node id {node_id} is out of range"))?;
        let annotations = pod.annotations();
        let step = Step {
            pod: pod_name,
            ordinal,
            node_id,
            advertised_before: annotations.get(RECORD_KEY).cloned(),
            advertised_after,
            settings_before: annotations.get(SETTINGS_KEY).cloned(),
            settings_after: injection.settings_hash.clone(),
            endpoint,
            why: Vec::new(),
        };
        Ok(self.why(pod, step, id))
    }

    /// The step with what changes in words, or why the pod is current or refused.
    fn why(&self, pod: &Pod, mut step: Step, id: String) -> Compared {
        if step.advertised_before.as_deref() != Some(step.advertised_after.as_str()) {
            step.why.push(format!(
                "advertised listeners {} -> {}",
                step.advertised_before
                    .as_deref()
                    .unwrap_or("(none recorded)"),
                step.advertised_after
            ));
        }
        if step.settings_before.as_deref() != Some(step.settings_after.as_str()) {
            step.why.push(format!(
                "settings {} -> {}",
                step.settings_before.as_deref().unwrap_or("(none)"),
                step.settings_after
            ));
        }
        let update_revision = self
            .statefulset
            .status
            .as_ref()
            .and_then(|s| s.update_revision.as_ref());
        if let (Some(now), Some(wanted)) = (pod.labels().get(REVISION_LABEL), update_revision) {
            if now != wanted {
                if let Some(why_not) = controller_rolls(self.statefulset, step.ordinal) {
                    return Compared::Refused(format!(
                        "{id}: a new template revision, but {why_not}"
                    ));
                }
                step.why
                    .push(format!("template revision {now} -> {wanted}"));
            }
        }
        if step.why.is_empty() {
            Compared::Current(id)
        } else {
            Compared::Recreate(step)
        }
    }
}

/// Why deleting pod `ordinal` would not bring it onto the new template revision, or would race
/// the StatefulSet controller, when it would.
fn controller_rolls(statefulset: &StatefulSet, ordinal: i64) -> Option<String> {
    let strategy = statefulset.spec.as_ref()?.update_strategy.as_ref();
    if strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return None;
    }
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);
    Some(if ordinal < i64::from(partition) {
        format!("it is below the RollingUpdate partition ({partition}): the StatefulSet would recreate it from the old revision; set updateStrategy OnDelete for a roll")
    } else {
        "the StatefulSet controller rolls new revisions itself (RollingUpdate): let it, or set updateStrategy OnDelete for a roll".to_owned()
    })
}

/// The ordinal in the pod's name (`<statefulset>-<ordinal>`), or -1.
fn ordinal_of(pod: &Pod, statefulset: &str) -> i64 {
    pod.name_any()
        .strip_prefix(statefulset)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1)
}

/// The literal value of `env` in the live pod's containers (the last definition wins).
fn live_env(pod: &Pod, env: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.env.iter().flatten())
        .rfind(|v| v.name == env)
        .and_then(|v| v.value.clone())
}

/// Puts the broker that the metadata names as controller last: in combined mode it is the
/// active controller, and restarting it moves the quorum's leadership once, at the end.
pub fn controller_last(steps: &mut [Step], controller: i32) {
    steps.sort_by_key(|step| step.node_id == controller);
}

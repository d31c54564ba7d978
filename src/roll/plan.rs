//! Which running brokers a roll recreates: each live pod against the pod its StatefulSet's
//! template would give it now, injected with the settings in force (the webhook's decision,
//! as `preview` makes it).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde::Serialize;

use crate::inject::listeners::parse_listeners;
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
    let update_revision = statefulset
        .status
        .as_ref()
        .and_then(|s| s.update_revision.clone());
    let wanted: BTreeMap<String, Pod> = expand_statefulset(statefulset, namespace, None)
        .map_err(|error| anyhow::anyhow!("statefulset/{name}: {error}"))?
        .into_iter()
        .map(|pod| (pod.name_any(), pod))
        .collect();
    let mut plan = Plan::default();
    let mut live: Vec<&Pod> = live.iter().collect();
    live.sort_by_key(|pod| std::cmp::Reverse(ordinal_of(pod, &name)));
    for pod in live {
        let pod_name = pod.name_any();
        let id = format!("{namespace}/{pod_name}");
        let Some(template) = wanted.get(&pod_name) else {
            continue; // an ordinal beyond spec.replicas, about to be removed
        };
        let view = PodView::from_pod(template)
            .map_err(|error| anyhow::anyhow!("{id}: not a valid Pod: {error}"))?;
        let injection = match crate::inject::inject(&view, namespace, defaults) {
            Decision::Inject(injection) => injection,
            Decision::Skip { .. } => continue, // not a broker the webhook injects
            Decision::Deny { message, .. } => {
                anyhow::bail!("{id}: the webhook would deny its next pod: {message}")
            }
        };
        let advertised_after = injection.advertised.clone().ok_or_else(|| {
            anyhow::anyhow!("{id}: the listeners template does not render for this pod")
        })?;
        let endpoint = parse_listeners(&advertised_after)?
            .into_iter()
            .find(|l| l.name.eq_ignore_ascii_case(listener))
            .map(|l| format!("{}:{}", l.host, l.port))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{id}: no listener named {listener} in {advertised_after:?} (use --listener)"
                )
            })?;
        let ordinal = ordinal_of(pod, &name);
        let node_id_now = live_env(pod, injection.node_id.as_ref().map(|(env, _)| env.as_str()));
        if let (Some((env, after)), Some(before)) = (&injection.node_id, &node_id_now) {
            if *before != after.to_string() {
                plan.refused.push(format!(
                    "{id}: {env} would change from {before} to {after}: the broker would refuse to start on its volume, whose meta.properties holds {before}"
                ));
                continue;
            }
        }
        let node_id = injection
            .node_id
            .as_ref()
            .map_or(ordinal + node_id_offset, |(_, id)| *id);
        let node_id = i32::try_from(node_id)
            .map_err(|_| anyhow::anyhow!("{id}: node id {node_id} is out of range"))?;
        let annotations = pod.annotations();
        let advertised_before = annotations.get(RECORD_KEY).cloned();
        let settings_before = annotations.get(SETTINGS_KEY).cloned();
        let mut why = Vec::new();
        if advertised_before.as_deref() != Some(advertised_after.as_str()) {
            why.push(format!(
                "advertised listeners {} -> {advertised_after}",
                advertised_before.as_deref().unwrap_or("(none recorded)")
            ));
        }
        if settings_before.as_deref() != Some(injection.settings_hash.as_str()) {
            why.push(format!(
                "settings {} -> {}",
                settings_before.as_deref().unwrap_or("(none)"),
                injection.settings_hash
            ));
        }
        let revision = pod.labels().get(REVISION_LABEL);
        if let (Some(now), Some(wanted)) = (revision, &update_revision) {
            if now != wanted {
                if let Some(why_not) = controller_rolls(statefulset, ordinal) {
                    plan.refused
                        .push(format!("{id}: a new template revision, but {why_not}"));
                    continue;
                }
                why.push(format!("template revision {now} -> {wanted}"));
            }
        }
        if why.is_empty() {
            plan.current.push(id);
            continue;
        }
        plan.steps.push(Step {
            pod: pod_name,
            ordinal,
            node_id,
            advertised_before,
            advertised_after,
            settings_before,
            settings_after: injection.settings_hash.clone(),
            endpoint,
            why,
        });
    }
    Ok(plan)
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
fn live_env(pod: &Pod, env: Option<&str>) -> Option<String> {
    let env = env?;
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

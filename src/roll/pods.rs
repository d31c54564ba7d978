//! What `roll` reads in a pod: whether it came back as planned, and how to say what it shows.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::plan::Step;
use crate::inject::settings::{RECORD_KEY, SETTINGS_KEY};

/// The recreated pod carries the settings and listeners the plan expects.
pub(super) fn recreated_as_planned(pod: &Pod, step: &Step) -> bool {
    let annotations = pod.annotations();
    annotations.get(SETTINGS_KEY) == Some(&step.settings_after)
        && annotations.get(RECORD_KEY) == Some(&step.advertised_after)
}

pub(super) fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod in a few words: phase, readiness, settings, and each container that is not ready with
/// why (waiting reason, restarts, last exit): the cause, as far as the pod's status tells it.
pub(super) fn describe_pod(pod: &Pod) -> String {
    use std::fmt::Write as _;
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let mut text = format!(
        "pod {} {}{} with settings {}",
        pod.uid().unwrap_or_default(),
        phase,
        if ready(pod) { ", Ready" } else { ", not Ready" },
        pod.annotations()
            .get(SETTINGS_KEY)
            .map_or("(none)", String::as_str)
    );
    let containers = status.and_then(|s| s.container_statuses.as_deref());
    for container in containers.unwrap_or_default().iter().filter(|c| !c.ready) {
        let _ = write!(text, "; container {}", container.name);
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        if let Some(reason) = waiting.and_then(|w| w.reason.as_deref()) {
            let _ = write!(text, " {reason}");
        }
        if container.restart_count > 0 {
            let _ = write!(text, ", {} restarts", container.restart_count);
        }
        let last = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref());
        if let Some(exit) = last {
            let _ = write!(
                text,
                ", last exit code {} ({}): see kubectl logs -n {} {} -c {} --previous",
                exit.exit_code,
                exit.reason.as_deref().unwrap_or("terminated"),
                pod.namespace().unwrap_or_default(),
                pod.name_any(),
                container.name
            );
        }
    }
    text
}

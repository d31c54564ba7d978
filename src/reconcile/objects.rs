//! What the reconcile steps and the external-name check share: the host a Service exposes, one
//! annotation set or removed, an event published.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::Context;
use crate::inject::listeners::parse_listeners;
use crate::inject::text::references;
use crate::services::{Advertised, HOSTNAME_ANNOTATION};

/// The host a Service's broker advertises now (the first of its external-dns hostnames; a
/// second is the name its next pod will advertise), or "" for none.
pub(super) fn exposed_host(service: &Service) -> &str {
    service
        .annotations()
        .get(HOSTNAME_ANNOTATION)
        .and_then(|names| names.split(',').next())
        .map_or("", str::trim)
}

/// Whether a running broker still advertises what this broker Service serves: its name, or, for a
/// broker on its node's address (no name; `$(KLI_HOST_IP):31090` in its record), the Service's
/// node port. Such a Service must outlive any change of template, labels or namespace while the
/// broker runs.
pub(super) fn advertised_by_running(service: &Service, running: &Advertised) -> bool {
    let host = exposed_host(service);
    let node_ports: Vec<i32> = service
        .spec
        .iter()
        .flat_map(|spec| spec.ports.iter().flatten())
        .filter_map(|port| port.node_port)
        .collect();
    running.values().any(|value| {
        parse_listeners(value).is_ok_and(|listeners| {
            listeners.iter().any(|listener| {
                if host.is_empty() {
                    !references(listener.host).is_empty()
                        && node_ports.contains(&i32::from(listener.port))
                } else {
                    listener.host == host
                }
            })
        })
    })
}

/// Sets (or with `None` removes) one annotation, as a merge patch under our field manager.
pub(super) async fn annotate(
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
pub(super) async fn publish(
    context: &Context,
    regarding: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = event(type_, reason, &note);
    if let Err(error) = context.recorder.publish(&event, regarding).await {
        warn!(%error, reason, "could not publish an event");
    }
}

/// The event for one note. The recorder counts repeats of an event as a series and keeps the
/// text it first sent, keyed by reason and action but not by note: the action carries a digest
/// of the note, so a new text (another render fault, say) is a new event, and the same text
/// again only counts up.
pub(super) fn event(type_: EventType, reason: &str, note: &str) -> Event {
    // The same note gives the same action in every replica and release.
    let digest = ring::digest::digest(&ring::digest::SHA256, note.as_bytes());
    let short: String = digest.as_ref()[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Event {
        type_,
        reason: reason.into(),
        note: Some(crate::inject::text::clip_to(note, 1024)),
        action: format!("Reconcile/{short}"),
        secondary: None,
    }
}

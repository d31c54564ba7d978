//! `preview`: what `serve` would do to each broker pod of some manifests, with no cluster.

pub mod manifests;
pub mod scripts;
pub mod yaml;

use std::io::Write;

use anyhow::Context;

use self::manifests::{Expansion, ManifestPod, Source};
use crate::inject::settings::{ZONE_FIELD, ZONE_LABEL};
use crate::inject::{self, Decision, Defaults, PodView};

/// What `preview` prints per pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One line per pod: outcome and injected values, warnings, skip reason or denial.
    Summary,
    /// Per injected pod, the JSON patch `serve` returns, one per line.
    Patch,
    /// The pods as they would be stored, as YAML documents.
    Yaml,
    /// One JSON object per pod.
    Json,
}

/// A validated `preview` invocation.
#[derive(Debug)]
pub struct Config {
    pub source: Source,
    pub output: Output,
    pub defaults: Defaults,
}

/// How a preview ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every pod would be admitted (exit 0).
    Admitted,
    /// At least one pod would be denied (exit 1).
    Denied,
    /// No pod would be injected at all (exit 3): a gate in CI must not pass on nothing.
    NothingInjected,
}

/// One pod of the manifests with the view the core saw and its decision.
pub struct Decided {
    pub pod: ManifestPod,
    pub decision: Decision,
}

/// Reads the manifests and decides for each pod, exactly as `serve` would: through the same
/// [`PodView`] deserializer and the same core.
pub fn decide_all(
    source: &Source,
    defaults: &Defaults,
) -> Result<(Vec<Decided>, manifests::Found), anyhow::Error> {
    let documents = manifests::read_documents(&source.files)?;
    let expansion = Expansion {
        namespace: &source.namespace,
        replicas: source.replicas,
    };
    let mut found = manifests::pods(&documents, &expansion)?;
    let mut decided = Vec::with_capacity(found.pods.len());
    for pod in std::mem::take(&mut found.pods) {
        let mut view = PodView::from_pod(&pod.pod).with_context(|| {
            format!(
                "{}/{}: not a valid Pod",
                pod.namespace,
                pod.pod.metadata.name.as_deref().unwrap_or("")
            )
        })?;
        scripts::attach(&mut view, &pod.pod, &pod.namespace, &found.config_maps);
        let mut decision = inject::inject(&view, &pod.namespace, defaults);
        if let Decision::Inject(injection) = &mut decision {
            for finding in service_links(&pod, &view, &found.services, &injection.containers) {
                injection
                    .warnings
                    .push(format!("kafka-listener-injector: {finding}"));
                injection.findings.push(finding);
            }
        }
        decided.push(Decided { pod, decision });
    }
    Ok((decided, found))
}

/// The variables Kubernetes links into every container for each Service of its namespace
/// (`<NAME>_PORT=tcp://...`), which cp-kafka's configure refuses for `KAFKA_PORT` and
/// `KAFKA_ADVERTISED_PORT` (deprecated settings: it exits 1). Only `preview` sees the input's
/// Services; the webhook cannot.
fn service_links(
    pod: &ManifestPod,
    view: &PodView<'_>,
    services: &[(String, String)],
    injected: &[String],
) -> Vec<String> {
    let links_on = pod.pod.spec.as_ref().and_then(|s| s.enable_service_links) != Some(false);
    let refused = [
        ("kafka", "KAFKA_PORT"),
        ("kafka-advertised", "KAFKA_ADVERTISED_PORT"),
    ];
    let linked: Vec<(&str, &str)> = refused
        .into_iter()
        .filter(|(service, _)| {
            services
                .iter()
                .any(|(ns, name)| *ns == pod.namespace && name == service)
        })
        .collect();
    if !links_on || linked.is_empty() {
        return Vec::new();
    }
    let confluent = |image: &str| {
        [
            "confluentinc/cp-kafka",
            "confluentinc/cp-server",
            "confluentinc/cp-enterprise-kafka",
        ]
        .iter()
        .any(|i| image.contains(i))
    };
    view.containers()
        .iter()
        .chain(view.init_containers())
        .filter(|c| injected.iter().any(|name| *name == c.name))
        .filter(|c| confluent(c.image.as_deref().unwrap_or_default()))
        .flat_map(|c| {
            let command = c.command_text();
            linked
                .iter()
                .filter(move |(_, var)| !command.contains(&format!("unset {var}")))
                .map(move |(service, var)| {
                    format!(
                        "Service {service} in namespace {} gives container {} the service-link variable {var}=tcp://..., which cp-kafka's configure refuses (it exits); set enableServiceLinks: false in the pod template",
                        pod.namespace, c.name
                    )
                })
        })
        .collect()
}

pub fn run(config: &Config, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<Verdict> {
    let (decisions, found) = decide_all(&config.source, &config.defaults)?;
    for warning in &found.warnings {
        writeln!(err, "preview: warning: {warning}")?;
    }
    let mut verdict = Verdict::NothingInjected;
    for Decided { pod, decision } in &decisions {
        let drift = live_drift(pod, decision);
        match decision {
            Decision::Deny { .. } => verdict = Verdict::Denied,
            Decision::Inject(_) if drift.as_ref().is_some_and(|d| d.node_id_change.is_some()) => {
                verdict = Verdict::Denied
            }
            Decision::Inject(_) if verdict == Verdict::NothingInjected => {
                verdict = Verdict::Admitted
            }
            _ => {}
        }
        let id = format!(
            "{}/{}",
            pod.namespace,
            pod.pod.metadata.name.as_deref().unwrap_or("<unnamed>")
        );
        match config.output {
            Output::Summary => match &drift {
                Some(drift) => write_drift(out, &id, decision, drift)?,
                None => write_summary(out, &id, decision)?,
            },
            Output::Json => {
                serde_json::to_writer(&mut *out, &json_line(&id, decision))?;
                writeln!(out)?;
            }
            Output::Patch => match decision {
                Decision::Inject(injection) => {
                    serde_json::to_writer(&mut *out, &injection.patch)?;
                    writeln!(out)?;
                }
                other => write_summary(err, &id, other)?,
            },
            Output::Yaml => match decision {
                Decision::Deny { .. } => write_summary(err, &id, decision)?,
                _ => {
                    let mut value = serde_json::to_value(&pod.pod)?;
                    if let Decision::Inject(injection) = decision {
                        json_patch::patch(&mut value, &injection.patch)
                            .with_context(|| format!("{id}: the patch does not apply"))?;
                    }
                    writeln!(out, "---")?;
                    serde_norway::to_writer(&mut *out, &value)?;
                }
            },
        }
    }
    if verdict == Verdict::NothingInjected {
        writeln!(
            err,
            "preview: no pod would be injected; found {}",
            what_was_found(&decisions, &found)
        )?;
    }
    Ok(verdict)
}

/// "3 pods (3 skipped: controller-only); 2 Deployments, 1 Kafka; no StatefulSet"
fn what_was_found(decisions: &[Decided], found: &manifests::Found) -> String {
    let mut parts = Vec::new();
    if !decisions.is_empty() {
        let mut skipped = std::collections::BTreeMap::<&str, usize>::new();
        for decided in decisions {
            if let Decision::Skip { reason, .. } = &decided.decision {
                *skipped.entry(reason.as_str()).or_default() += 1;
            }
        }
        let reasons: Vec<String> = skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.push(format!(
            "{} pod(s), skipped: {}",
            decisions.len(),
            reasons.join(", ")
        ));
    }
    let kinds: Vec<String> = found
        .other_kinds
        .iter()
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    if !kinds.is_empty() {
        parts.push(kinds.join(", "));
    }
    if !decisions.iter().any(|d| d.pod.statefulset.is_some()) {
        parts.push("no StatefulSet".into());
    }
    parts.join("; ")
}

/// One JSON object per pod for machines.
fn json_line(id: &str, decision: &Decision) -> serde_json::Value {
    match decision {
        Decision::Inject(injection) => {
            let mut env = serde_json::Map::new();
            for (name, value) in injection.listeners.iter() {
                env.insert(name.clone(), value.clone().into());
            }
            if let Some((name, id)) = &injection.node_id {
                env.insert(name.clone(), id.to_string().into());
            }
            for (name, value) in &injection.extra_env {
                env.insert(name.clone(), value.clone().into());
            }
            let downward: serde_json::Map<String, serde_json::Value> = injection
                .downward
                .iter()
                .map(|(name, field)| (name.clone(), field.clone().into()))
                .collect();
            serde_json::json!({
                "pod": id, "outcome": "inject", "containers": injection.containers,
                "env": env, "envFromFields": downward, "unchanged": injection.patch.0.is_empty(),
                "envNameReason": injection.env_name_choice.map(inject::EnvNameChoice::as_str),
                "effective": injection.findings.is_empty(), "findings": injection.findings,
                "warnings": injection.warnings, "waitForNames": injection.wait_for_names,
            })
        }
        Decision::Skip { reason, warning } => serde_json::json!({
            "pod": id, "outcome": "skip", "reason": reason.as_str(), "warnings": warning.iter().collect::<Vec<_>>(),
        }),
        Decision::Deny { error, message } => serde_json::json!({
            "pod": id, "outcome": "deny", "reason": crate::outcome::Reason::from(error).as_str(), "message": message,
        }),
    }
}

/// What an admission now would change on a pod that was created before (a live pod from
/// `kubectl get pods -o yaml`, which carries the record of an earlier injection).
struct Drift {
    /// `(before, after)` of the advertised value, when it would change.
    listeners_change: Option<(String, String)>,
    /// `(before, after)` of the node id, when it would change: the broker would then refuse to
    /// start on its volume, whose meta.properties holds the old one.
    node_id_change: Option<(String, String)>,
}

fn live_drift(pod: &ManifestPod, decision: &Decision) -> Option<Drift> {
    let annotations = pod.pod.metadata.annotations.as_ref()?;
    let injected_before = annotations.contains_key(inject::settings::SETTINGS_KEY)
        || annotations.contains_key(inject::settings::RECORD_KEY);
    let Decision::Inject(injection) = decision else {
        return None;
    };
    if pod.statefulset.is_some() || !injected_before {
        return None;
    }
    let env_now = |name: &str| -> Option<String> {
        let spec = pod.pod.spec.as_ref()?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .filter(|c| injection.containers.contains(&c.name))
            .flat_map(|c| c.env.iter().flatten())
            .rev()
            .find(|v| v.name == name)
            .and_then(|v| v.value.clone())
    };
    let listeners_change = injection.listeners.as_ref().and_then(|(name, value)| {
        let before = env_now(name).unwrap_or_default();
        (before != *value).then(|| (before, value.clone()))
    });
    let node_id_change = injection.node_id.as_ref().and_then(|(name, id)| {
        let before = env_now(name)?;
        (before != id.to_string()).then(|| (before, id.to_string()))
    });
    Some(Drift {
        listeners_change,
        node_id_change,
    })
}

fn write_drift(
    out: &mut impl Write,
    id: &str,
    decision: &Decision,
    drift: &Drift,
) -> std::io::Result<()> {
    let Decision::Inject(injection) = decision else {
        return write_summary(out, id, decision);
    };
    if injection.patch.0.is_empty() {
        writeln!(
            out,
            "{id}: up to date (settings {})",
            injection.settings_hash
        )?;
    } else {
        writeln!(
            out,
            "{id}: would change (settings {})",
            injection.settings_hash
        )?;
        if let Some((before, after)) = &drift.listeners_change {
            writeln!(out, "{id}:   advertised listeners {before} -> {after}")?;
        }
        write_wait(out, id, injection)?;
        if let Some((before, after)) = &drift.node_id_change {
            writeln!(
                out,
                "{id}:   ERROR node id {before} -> {after}: the broker would refuse to start on its volume (meta.properties holds {before}); set node-id-offset to keep it"
            )?;
        }
    }
    for warning in &injection.warnings {
        writeln!(out, "{id}:   warning: {warning}")?;
    }
    Ok(())
}

/// The line that says the pod waits for its names, when it does (`--wait-for-name-image`).
fn write_wait(
    out: &mut impl Write,
    id: &str,
    injection: &inject::Injection,
) -> std::io::Result<()> {
    if injection.wait_for_names.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "{id}:   init container {} holds the broker until {} answers at the authoritative DNS servers",
        inject::wait::INIT_CONTAINER,
        injection.wait_for_names.join(", ")
    )
}

fn write_summary(out: &mut impl Write, id: &str, decision: &Decision) -> std::io::Result<()> {
    match decision {
        Decision::Inject(injection) => {
            write!(out, "{id}: inject into {}:", injection.containers.join(","))?;
            for (name, field) in &injection.downward {
                write!(out, " {name} from {field}")?;
            }
            if let Some((name, value)) = &injection.listeners {
                write!(out, " {name}={value}")?;
            }
            if let Some((name, node_id)) = &injection.node_id {
                write!(out, " {name}={node_id}")?;
            }
            for (name, value) in &injection.extra_env {
                write!(out, " {name}={value}")?;
            }
            if injection.patch.0.is_empty() {
                write!(out, " (already injected, empty patch)")?;
            }
            writeln!(out)?;
            write_wait(out, id, injection)?;
            if let Some((name, _)) = injection.downward.iter().find(|(_, f)| f == ZONE_FIELD) {
                writeln!(
                    out,
                    "{id}:   note: {name} is the pod's {ZONE_LABEL} label, which Kubernetes 1.35+ copies from its node at binding (PodTopologyLabels admission, on by default); on older clusters, or nodes without the label, it is empty and the broker has no rack"
                )?;
            }
            for warning in &injection.warnings {
                writeln!(out, "{id}:   warning: {warning}")?;
            }
        }
        Decision::Skip { reason, warning } => {
            writeln!(out, "{id}: skip ({})", reason.as_str())?;
            if let Some(warning) = warning {
                writeln!(out, "{id}:   warning: {warning}")?;
            }
        }
        Decision::Deny { error, .. } => writeln!(out, "{id}: DENY {error}")?,
    }
    Ok(())
}

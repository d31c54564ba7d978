//! `preview`: what `serve` would do to each broker pod of some manifests, with no cluster.

use std::io::Write;

use anyhow::Context;

use crate::cli::{ManifestArgs, PreviewArgs, PreviewOutput};
use crate::inject::{self, display_name, Decision, Defaults};
use crate::manifests::{self, Expansion, ManifestPod};

/// How a preview ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every pod would be admitted.
    Admitted,
    /// At least one pod would be denied.
    Denied,
}

/// Reads the manifests and decides for each pod, exactly as `serve` would.
pub fn decide_all(
    args: &ManifestArgs,
    defaults: &Defaults,
) -> Result<Vec<(ManifestPod, Decision)>, manifests::ManifestError> {
    let documents = manifests::read_documents(&args.files)?;
    let expansion = Expansion {
        namespace: &args.namespace,
        replicas: args.replicas,
    };
    let pods = manifests::pods(&documents, &expansion)?;
    Ok(pods
        .into_iter()
        .map(|pod| {
            let decision = inject::inject(&pod.pod, &pod.namespace, defaults);
            (pod, decision)
        })
        .collect())
}

pub fn run(
    args: &PreviewArgs,
    out: &mut impl Write,
    err: &mut impl Write,
) -> anyhow::Result<Verdict> {
    let defaults = args.injection.defaults()?;
    let decisions = decide_all(&args.manifests, &defaults)?;
    if decisions.is_empty() {
        writeln!(err, "preview: no Pod or StatefulSet in the given manifests")?;
    }
    let mut verdict = Verdict::Admitted;
    for (pod, decision) in &decisions {
        if matches!(decision, Decision::Deny { .. }) {
            verdict = Verdict::Denied;
        }
        let id = format!("{}/{}", pod.namespace, display_name(&pod.pod));
        match args.output {
            PreviewOutput::Summary => write_summary(out, &id, decision)?,
            PreviewOutput::Patch => match decision {
                Decision::Inject(injection) => {
                    serde_json::to_writer(&mut *out, &injection.patch)?;
                    writeln!(out)?;
                }
                other => write_summary(err, &id, other)?,
            },
            PreviewOutput::Yaml => match decision {
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
    Ok(verdict)
}

fn write_summary(out: &mut impl Write, id: &str, decision: &Decision) -> std::io::Result<()> {
    match decision {
        Decision::Inject(injection) => {
            write!(
                out,
                "{id}: inject {}={}",
                injection.env_name, injection.value
            )?;
            if let Some((name, node_id)) = &injection.node_id {
                write!(out, " {name}={node_id}")?;
            }
            if injection.patch.0.is_empty() {
                write!(out, " (already injected, empty patch)")?;
            }
            writeln!(out)?;
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

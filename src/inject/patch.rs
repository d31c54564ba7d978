//! The minimal JSON patch that puts env vars into the named containers and the record annotation
//! on the pod, and nothing more: already-correct state yields no operation, so mutating twice
//! equals mutating once.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde_json::{json, Value};

use super::view::{ContainerList, EnvView, PodView};

/// What to write into the pod.
#[derive(Debug)]
pub struct Target<'a> {
    /// The containers (or init containers) to set the env in, by list and index.
    pub containers: &'a [(ContainerList, usize)],
    /// `(name, value)` pairs to set in each of those containers' env, in order.
    pub env: &'a [(&'a str, &'a str)],
    /// `(key, value)` annotations to set on the pod.
    pub annotations: &'a [(&'a str, &'a str)],
    /// A readiness gate the pod must carry (`spec.readinessGates[].conditionType`).
    pub readiness_gate: Option<&'a str>,
}

/// An env var whose existing definition the patch replaces: `(container, variable)`.
pub type Overridden = (String, String);

/// Builds the patch; returns it with the env vars whose existing definitions it replaces.
pub fn build_patch(pod: &PodView, target: &Target<'_>) -> (Patch, Vec<Overridden>) {
    let mut ops = Vec::new();
    let mut overridden = Vec::new();
    for &(list, index) in target.containers {
        let container = &pod.list(list)[index];
        let index = index.to_string();
        let env_path = |rest: &[&str]| {
            PointerBuf::from_tokens(
                ["spec", list.field(), index.as_str(), "env"]
                    .into_iter()
                    .chain(rest.iter().copied()),
            )
        };
        match &container.env {
            None => ops.push(add(
                env_path(&[]),
                Value::Array(target.env.iter().map(|(n, v)| env_var(n, v)).collect()),
            )),
            Some(existing) => {
                for (name, value) in target.env {
                    if set_env(existing, name, value, &env_path, &mut ops) {
                        overridden.push((container.name.to_string(), (*name).to_owned()));
                    }
                }
            }
        }
    }

    match &pod.metadata.annotations {
        None => ops.push(add(
            PointerBuf::from_tokens(["metadata", "annotations"]),
            Value::Object(
                target
                    .annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                    .collect(),
            ),
        )),
        Some(existing) => {
            for (key, value) in target.annotations {
                if existing.get(*key).map(|v| &**v) != Some(*value) {
                    // `add` on an existing member replaces it, so one op covers both cases.
                    ops.push(add(
                        PointerBuf::from_tokens(["metadata", "annotations", *key]),
                        Value::from(*value),
                    ));
                }
            }
        }
    }
    if let Some(condition) = target.readiness_gate {
        let gates = pod.spec.as_ref().map_or(&[][..], |s| &s.readiness_gates);
        let gate = json!({ "conditionType": condition });
        if gates.is_empty() {
            // Absent, null or empty: one `add` sets the whole list.
            ops.push(add(
                PointerBuf::from_tokens(["spec", "readinessGates"]),
                Value::Array(vec![gate]),
            ));
        } else if !gates.iter().any(|g| g.condition_type == condition) {
            ops.push(add(
                PointerBuf::from_tokens(["spec", "readinessGates", "-"]),
                gate,
            ));
        }
    }
    (Patch(ops), overridden)
}

/// Sets `name` in an existing env list; `true` when a different definition was replaced.
fn set_env(
    existing: &[EnvView<'_>],
    name: &str,
    value: &str,
    env_path: &impl Fn(&[&str]) -> PointerBuf,
    ops: &mut Vec<PatchOperation>,
) -> bool {
    let mut found = false;
    let mut replaced = false;
    // Every definition is replaced: with duplicates, which one a runtime honours is not ours to guess.
    for (i, var) in existing
        .iter()
        .enumerate()
        .filter(|(_, var)| var.name == name)
    {
        found = true;
        let already = var.value.as_deref() == Some(value) && var.value_from.is_none();
        if !already {
            replaced = true;
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: env_path(&[&i.to_string()]),
                value: env_var(name, value),
            }));
        }
    }
    if !found {
        ops.push(add(env_path(&["-"]), env_var(name, value)));
    }
    replaced
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn env_var(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

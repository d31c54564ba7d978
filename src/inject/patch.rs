//! The minimal JSON patch that puts env vars into one container and the record annotation on the
//! pod, and nothing more: already-correct state yields no operation, so mutating twice equals
//! mutating once.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{EnvVar, Pod};
use serde_json::{json, Value};

/// What to write into the pod.
#[derive(Debug)]
pub struct Target<'a> {
    pub container_index: usize,
    /// `(name, value)` pairs to set in that container's env, in order.
    pub env: &'a [(&'a str, &'a str)],
    /// `(key, value)` annotations to set on the pod.
    pub annotations: &'a [(&'a str, &'a str)],
}

/// Builds the patch; returns it with the names of env vars whose existing definitions it replaces.
pub fn build_patch(pod: &Pod, target: &Target<'_>) -> (Patch, Vec<String>) {
    let mut ops = Vec::new();
    let mut overridden = Vec::new();
    let index = target.container_index.to_string();
    let container = &pod
        .spec
        .as_ref()
        .expect("a broker container implies a spec")
        .containers[target.container_index];
    let env_path = |rest: &[&str]| {
        PointerBuf::from_tokens(
            ["spec", "containers", index.as_str(), "env"]
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
                set_env(existing, name, value, &env_path, &mut ops, &mut overridden);
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
                if existing.get(*key).map(String::as_str) != Some(*value) {
                    // `add` on an existing member replaces it, so one op covers both cases.
                    ops.push(add(
                        PointerBuf::from_tokens(["metadata", "annotations", *key]),
                        Value::from(*value),
                    ));
                }
            }
        }
    }
    (Patch(ops), overridden)
}

fn set_env(
    existing: &[EnvVar],
    name: &str,
    value: &str,
    env_path: &impl Fn(&[&str]) -> PointerBuf,
    ops: &mut Vec<PatchOperation>,
    overridden: &mut Vec<String>,
) {
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
    if replaced {
        overridden.push(name.to_owned());
    }
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn env_var(name: &str, value: &str) -> Value {
    json!({ "name": name, "value": value })
}

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
    pub env: &'a [(&'a str, EnvValue<'a>)],
    /// `(key, value)` annotations to set on the pod.
    pub annotations: &'a [(&'a str, &'a str)],
    /// A readiness gate the pod must carry (`spec.readinessGates[].conditionType`).
    pub readiness_gate: Option<&'a str>,
    /// An init container the pod must carry last, as this JSON (found again by its name).
    pub init_container: Option<&'a Value>,
}

/// What an injected variable is set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvValue<'a> {
    /// `value`: text, which may refer to earlier variables as `$(NAME)`.
    Text(&'a str),
    /// `valueFrom.fieldRef.fieldPath`: a downward-API field the kubelet reads when the container
    /// starts (the node's address, a label the API server copies from the node at binding).
    Field(&'a str),
}

impl<'a> EnvValue<'a> {
    fn text(self) -> Option<&'a str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Field(_) => None,
        }
    }

    /// Whether `var` already defines exactly this.
    fn defined_by(self, var: &EnvView<'_>) -> bool {
        match self {
            Self::Text(text) => var.value.as_deref() == Some(text) && var.value_from.is_none(),
            Self::Field(path) => {
                var.field_path() == Some(path) && var.value.as_deref().unwrap_or("").is_empty()
            }
        }
    }

    fn to_json(self, name: &str) -> Value {
        match self {
            Self::Text(text) => json!({ "name": name, "value": text }),
            Self::Field(path) => {
                json!({ "name": name, "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": path } } })
            }
        }
    }
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
        env_ops(
            container.env.as_deref(),
            target.env,
            &env_path,
            &mut ops,
            &mut |name| overridden.push((container.name.to_string(), name.to_owned())),
        );
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
    if let Some(container) = target.init_container {
        init_container_op(pod, container, &mut ops);
    }
    (Patch(ops), overridden)
}

/// Adds `container` at the end of the init containers, or replaces the one of its name when that
/// differs in image or arguments (the only fields the webhook sets that the view reads).
fn init_container_op(pod: &PodView, container: &Value, ops: &mut Vec<PatchOperation>) {
    let name = container["name"].as_str().unwrap_or_default();
    let existing = pod.spec.as_ref().map_or(&[][..], |s| &s.init_containers);
    match existing.iter().position(|c| c.name == name) {
        None if existing.is_empty() => ops.push(add(
            PointerBuf::from_tokens(["spec", "initContainers"]),
            Value::Array(vec![container.clone()]),
        )),
        None => ops.push(add(
            PointerBuf::from_tokens(["spec", "initContainers", "-"]),
            container.clone(),
        )),
        Some(index) => {
            let current = &existing[index];
            let same_args = current.args.as_ref().is_some_and(|args| {
                args.iter().map(|a| Value::from(&**a)).eq(container["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned())
            });
            let same = current.image.as_deref() == container["image"].as_str()
                && current.command.is_none()
                && same_args;
            if !same {
                ops.push(PatchOperation::Replace(ReplaceOperation {
                    path: PointerBuf::from_tokens([
                        "spec",
                        "initContainers",
                        index.to_string().as_str(),
                    ]),
                    value: container.clone(),
                }));
            }
        }
    }
}

/// The operations that set `env` in one container's existing env list (absent, or a list).
/// Existing definitions are replaced where they stand; absent variables are inserted, each
/// before the first entry that refers to it. `replaced` hears of each definition replaced.
fn env_ops(
    existing: Option<&[EnvView<'_>]>,
    env: &[(&str, EnvValue<'_>)],
    env_path: &impl Fn(&[&str]) -> PointerBuf,
    ops: &mut Vec<PatchOperation>,
    replaced: &mut impl FnMut(&str),
) {
    match existing {
        None => {
            let mut order = Vec::new();
            for &(name, value) in env {
                let at = first_reference(&order, name).unwrap_or(order.len());
                order.insert(at, (name, value));
            }
            let list = order
                .iter()
                .map(|(name, value)| value.to_json(name))
                .collect();
            ops.push(add(env_path(&[]), Value::Array(list)));
        }
        Some(existing) => {
            // Existing definitions are replaced where they stand; then the absent variables
            // are inserted, each before the first entry that refers to it.
            let mut absent = Vec::new();
            for &(name, value) in env {
                match replace_env(existing, name, value, env_path, ops) {
                    Definition::Absent => absent.push((name, value)),
                    Definition::Replaced => replaced(name),
                    Definition::Same => {}
                }
            }
            let refers = |value: Option<&str>| value.is_some_and(|v| v.contains("$("));
            let no_references = existing.iter().all(|var| !refers(var.value.as_deref()))
                && env.iter().all(|(_, value)| !refers(value.text()));
            if no_references {
                for (name, value) in absent {
                    ops.push(add(env_path(&["-"]), value.to_json(name)));
                }
                return;
            }
            // The list as it will be once the replacements are applied: a replaced entry refers
            // to what its new value refers to.
            let mut order: Vec<(&str, EnvValue<'_>)> = existing
                .iter()
                .map(|var| {
                    let injected = env.iter().find(|(name, _)| *name == var.name);
                    let value = match injected {
                        Some(&(_, value)) => value,
                        None => EnvValue::Text(var.value.as_deref().unwrap_or_default()),
                    };
                    (&*var.name, value)
                })
                .collect();
            for (name, value) in absent {
                let at = first_reference(&order, name);
                let position = at.map_or_else(|| "-".to_owned(), |at| at.to_string());
                ops.push(add(env_path(&[&position]), value.to_json(name)));
                order.insert(at.unwrap_or(order.len()), (name, value));
            }
        }
    }
}

/// What an existing env list held for a variable.
enum Definition {
    Absent,
    /// Defined with exactly the injected value.
    Same,
    /// Defined otherwise; the patch replaces it.
    Replaced,
}

/// Replaces every definition of `name` in an existing env list that differs from `value`.
fn replace_env(
    existing: &[EnvView<'_>],
    name: &str,
    value: EnvValue<'_>,
    env_path: &impl Fn(&[&str]) -> PointerBuf,
    ops: &mut Vec<PatchOperation>,
) -> Definition {
    let mut definition = Definition::Absent;
    // Every definition is replaced: with duplicates, which one a runtime honours is not ours to guess.
    for (i, var) in existing
        .iter()
        .enumerate()
        .filter(|(_, var)| var.name == name)
    {
        if value.defined_by(var) {
            if matches!(definition, Definition::Absent) {
                definition = Definition::Same;
            }
        } else {
            definition = Definition::Replaced;
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: env_path(&[&i.to_string()]),
                value: value.to_json(name),
            }));
        }
    }
    definition
}

/// The index of the first entry whose value refers to `name` as `$(name)`: Kubernetes expands a
/// reference only to a variable defined before it.
fn first_reference(order: &[(&str, EnvValue<'_>)], name: &str) -> Option<usize> {
    order.iter().position(|(_, value)| {
        value
            .text()
            .is_some_and(|value| super::text::references(value).contains(&name))
    })
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

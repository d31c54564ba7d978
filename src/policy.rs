//! `policy`: the same injection as a native MutatingAdmissionPolicy (Kubernetes 1.36+), for
//! clusters that want nothing running, with a companion ValidatingAdmissionPolicy for the checks
//! CEL can do, and a plain list of what the webhook does that the policy cannot.
//!
//! The mutation is an ApplyConfiguration, not a JSONPatch: containers and env are lists keyed by
//! name, so the server-side-apply merge sets the variable whether or not it exists (no index to
//! compute, no append-vs-replace branch) and applying it twice changes nothing, which keeps
//! `reinvocationPolicy: IfNeeded` exact.

use serde_json::{json, Value};

use crate::inject::settings::{
    EnvName, Setting, BITNAMI_ENV_NAME, DEFAULT_CONTAINER, PLAIN_ENV_NAME, RECORD_KEY, SETTINGS_KEY,
};
use crate::inject::template::{Part, Template, Variable};
use crate::inject::Defaults;
use crate::output::{write_objects, Format};

/// Which pods the policy binds to, as the two webhook installs.
/// The namespace label that opts a namespace in (namespace opt-in mode).
pub const OPT_IN_LABEL: (&str, &str) = ("kafka-listener-injector.io/injection", "enabled");
/// The value of the same namespace label that keeps a namespace out in cluster-wide mode.
pub const OPT_OUT_VALUE: &str = "disabled";

/// Which pods are injected: the two ways to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    ClusterWide,
    NamespaceOptIn,
}

/// A validated `policy` invocation.
#[derive(Debug)]
pub struct Config {
    pub defaults: Defaults,
    pub mode: Mode,
    pub output: Format,
}

const NAME: &str = "kafka-listener-injector";
const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// A CEL string literal.
fn cel_string(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "\\'");
    format!("'{escaped}'")
}

/// The CEL expression that renders `template` for the pod under admission, from the policy's
/// variables; equal to the core's render for every pod the policy matches.
pub fn template_expression(template: &Template) -> String {
    let parts: Vec<String> = template
        .parts()
        .map(|part| match part {
            Part::Literal(text) => cel_string(text),
            Part::Ordinal(0) => "string(variables.ordinal)".to_owned(),
            Part::Ordinal(offset) => format!("string(variables.ordinal + {offset})"),
            Part::Variable(Variable::Pod) => "object.metadata.name".to_owned(),
            Part::Variable(Variable::Namespace) => "namespaceObject.metadata.name".to_owned(),
            Part::Variable(Variable::Service) => "object.spec.subdomain".to_owned(),
            Part::Variable(Variable::StatefulSet) => "variables.statefulset".to_owned(),
            Part::Variable(Variable::Domain) => "variables.domain".to_owned(),
            Part::Variable(Variable::Ordinal) => "string(variables.ordinal)".to_owned(),
            // `render` refuses these (see `downward_refusal`); as text they are the reference.
            Part::Variable(Variable::Runtime(runtime)) => cel_string(runtime.reference()),
        })
        .collect();
    parts.join(" + ")
}

fn uses(template: &Template, variable: Variable) -> bool {
    template
        .parts()
        .any(|part| part == Part::Variable(variable))
}

/// The policy, its binding, the companion validating policy and its binding.
pub fn render(config: &Config) -> anyhow::Result<Vec<Value>> {
    let defaults = &config.defaults;
    if defaults.containers_explicit && defaults.containers.len() > 1 {
        anyhow::bail!(
            "--container: the native policy injects into one container; name one, or use the webhook"
        );
    }
    if let Some(refusal) = downward_refusal(defaults) {
        anyhow::bail!(refusal);
    }
    let env_name = listeners_env_name(defaults);
    let selectors = Selectors::for_mode(config);
    let rules = json!([{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]);
    let mutating = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": NAME},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {"resourceRules": rules, "namespaceSelector": selectors.namespace, "objectSelector": selectors.object},
            "matchConditions": match_conditions(defaults),
            "variables": variables(defaults, env_name.as_deref()),
            "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": apply_expression(defaults, env_name.is_some())}}],
        }
    });
    let mut objects = vec![mutating, binding("MutatingAdmissionPolicyBinding", NAME)];
    if env_name.is_some() {
        let checks = format!("{NAME}-checks");
        objects.push(validating_policy(&checks, &rules, &selectors));
        objects.push(binding("ValidatingAdmissionPolicyBinding", &checks));
    }
    Ok(objects)
}

/// Why the policy cannot do what these settings ask: a downward-API variable (`{hostIP}`,
/// `{nodeName}`, `{podIP}`, `--rack-env`) is `valueFrom.fieldRef`, an atomic struct, which a
/// MutatingAdmissionPolicy's ApplyConfiguration may not set (the API server refuses every pod
/// with "may not mutate atomic arrays, maps or structs").
fn downward_refusal(defaults: &Defaults) -> Option<String> {
    let placeholder = std::iter::once(("--listeners".to_owned(), &defaults.listeners))
        .chain(
            defaults
                .extra_env
                .iter()
                .map(|(name, template)| (format!("--env {name}"), template)),
        )
        .find_map(|(flag, template)| {
            let runtime = *template.runtime().first()?;
            Some(format!(
                "{flag} uses {}",
                Variable::Runtime(runtime).placeholder()
            ))
        });
    let why = match (placeholder, &defaults.rack_env) {
        (Some(placeholder), _) => placeholder,
        (None, Some(_)) => "--rack-env".to_owned(),
        (None, None) => return None,
    };
    Some(format!(
        "{why}, a value the pod learns when it starts, which needs a downward-API variable (valueFrom.fieldRef): a MutatingAdmissionPolicy cannot set one (fieldRef is an atomic struct, which its ApplyConfiguration may not mutate); use the webhook"
    ))
}

fn binding(kind: &str, policy: &str) -> Value {
    let mut spec = json!({"policyName": policy});
    if kind == "ValidatingAdmissionPolicyBinding" {
        spec["validationActions"] = json!(["Deny"]);
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": policy}, "spec": spec})
}

/// A CEL `has(...) && key in annotations` test for a setting's annotation.
fn has_annotation(setting: Setting) -> String {
    format!(
        "has(object.metadata.annotations) && {} in object.metadata.annotations",
        cel_string(setting.annotation())
    )
}

/// The CEL expression for the advertised-listeners variable's name, or `None` for `--env-name none`.
fn listeners_env_name(defaults: &Defaults) -> Option<String> {
    match &defaults.env_name {
        EnvName::Named(name) => Some(cel_string(name)),
        EnvName::None => None,
        // As the webhook's auto: bitnami/kafka images alias the plain name over the KAFKA_CFG_
        // one; other images with KAFKA_CFG_* env read only those.
        EnvName::Auto => Some(format!(
            "object.spec.containers.exists(c, c.name == variables.container && has(c.image) && c.image.contains('bitnami/kafka')) ? {plain} : object.spec.containers.exists(c, c.name == variables.container && has(c.env) && c.env.exists(e, e.name.startsWith('KAFKA_CFG_'))) ? {bitnami} : {plain}",
            bitnami = cel_string(BITNAMI_ENV_NAME),
            plain = cel_string(PLAIN_ENV_NAME)
        )),
    }
}

/// The policy's variables: the container, the ordinal, the StatefulSet, the domain, the value.
fn variables(defaults: &Defaults, env_name: Option<&str>) -> Vec<Value> {
    let domain_default = defaults.domain.as_deref().unwrap_or("");
    let domain = format!(
        "{} ? object.metadata.annotations[{}] : {}",
        has_annotation(Setting::Domain),
        cel_string(Setting::Domain.annotation()),
        cel_string(domain_default)
    );
    let container = if defaults.containers_explicit {
        cel_string(&defaults.containers[0])
    } else {
        format!(
            "object.spec.containers.exists(c, c.name == {kafka}) || size(object.spec.containers) != 1 ? {kafka} : object.spec.containers[0].name",
            kafka = cel_string(DEFAULT_CONTAINER)
        )
    };
    let mut variables = vec![
        json!({"name": "container", "expression": container}),
        json!({"name": "ordinal", "expression": format!("int(object.metadata.labels[{}])", cel_string(POD_INDEX))}),
        json!({"name": "statefulset", "expression": "object.metadata.ownerReferences.filter(o, o.kind == 'StatefulSet')[0].name"}),
        json!({"name": "domain", "expression": domain}),
    ];
    if let Some(env_name) = env_name {
        variables.push(json!({"name": "listenersEnv", "expression": env_name}));
    }
    variables
        .push(json!({"name": "listeners", "expression": template_expression(&defaults.listeners)}));
    variables
}

/// The ApplyConfiguration: the env entries in the broker container and the record annotations.
fn apply_expression(defaults: &Defaults, sets_listeners: bool) -> String {
    let mut env_entries = Vec::new();
    if sets_listeners {
        env_entries.push(
            "Object.spec.containers.env{name: variables.listenersEnv, value: variables.listeners}"
                .to_owned(),
        );
    }
    if let Some(node_id_env) = &defaults.node_id_env {
        env_entries.push(format!(
            "Object.spec.containers.env{{name: {}, value: string(variables.ordinal + {})}}",
            cel_string(node_id_env),
            defaults.node_id_offset
        ));
    }
    for (name, template) in &defaults.extra_env {
        env_entries.push(format!(
            "Object.spec.containers.env{{name: {}, value: {}}}",
            cel_string(name),
            template_expression(template)
        ));
    }
    let mut annotations = Vec::new();
    if sets_listeners {
        annotations.push(format!("{}: variables.listeners", cel_string(RECORD_KEY)));
    }
    annotations.push(format!(
        "{}: {}",
        cel_string(SETTINGS_KEY),
        cel_string("native-policy")
    ));
    format!(
        "Object{{metadata: Object.metadata{{annotations: {{{}}}}}, spec: Object.spec{{containers: [Object.spec.containers{{name: variables.container, env: [{}]}}]}}}}",
        annotations.join(", "),
        env_entries.join(", ")
    )
}

/// Which pods the policy mutates, as CEL: the same scope as the webhook's rules.
fn match_conditions(defaults: &Defaults) -> Vec<Value> {
    let domain_default = defaults.domain.as_deref().unwrap_or("");
    let mut conditions = vec![
        json!({"name": "not-opted-out", "expression": format!(
            "!(has(object.metadata.annotations) && {inject} in object.metadata.annotations && object.metadata.annotations[{inject}].lowerAscii() == 'false')",
            inject = cel_string(crate::inject::settings::INJECT_KEY))}),
        json!({"name": "not-a-kraft-controller-only-pod", "expression":
            "!object.spec.containers.exists(c, has(c.env) && c.env.exists(e, (e.name == 'KAFKA_PROCESS_ROLES' || e.name == 'KAFKA_CFG_PROCESS_ROLES') && has(e.value) && e.value.trim().lowerAscii() == 'controller'))"}),
        json!({"name": "statefulset-pod-with-ordinal", "expression": format!(
            "has(object.metadata.labels) && {pi} in object.metadata.labels && object.metadata.labels[{pi}].matches('^(0|[1-9][0-9]*)$') && has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(o, o.kind == 'StatefulSet')",
            pi = cel_string(POD_INDEX))}),
        json!({"name": "has-the-broker-container", "expression": if defaults.containers_explicit {
            format!("object.spec.containers.exists(c, c.name == {})", cel_string(&defaults.containers[0]))
        } else {
            format!("object.spec.containers.exists(c, c.name == {}) || size(object.spec.containers) == 1", cel_string(DEFAULT_CONTAINER))
        }}),
    ];
    if uses(&defaults.listeners, Variable::Domain) && domain_default.is_empty() {
        conditions
            .push(json!({"name": "has-a-domain", "expression": has_annotation(Setting::Domain)}));
    }
    if uses(&defaults.listeners, Variable::Service) {
        conditions.push(json!({"name": "has-a-subdomain", "expression": "has(object.spec.subdomain) && object.spec.subdomain != ''"}));
    }

    conditions
}

/// The namespace and object selectors of a mode.
struct Selectors {
    namespace: Value,
    object: Value,
}

impl Selectors {
    fn for_mode(config: &Config) -> Self {
        let defaults = &config.defaults;
        let system: Vec<Value> = crate::inject::settings::SYSTEM_NAMESPACES
            .iter()
            .map(|n| json!(n))
            .chain(
                defaults
                    .ignore_namespaces
                    .iter()
                    .filter(|n| !crate::inject::settings::SYSTEM_NAMESPACES.contains(&n.as_str()))
                    .map(|n| json!(n)),
            )
            .chain([json!(NAME)])
            .collect();
        let (namespace_selector, object_selector) = match config.mode {
            Mode::ClusterWide => (
                json!({"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": system},
                    {"key": OPT_IN_LABEL.0, "operator": "NotIn", "values": [OPT_OUT_VALUE]},
                ]}),
                json!({"matchLabels": {"kafka-listener-injector.io/inject": "true"}}),
            ),
            Mode::NamespaceOptIn => (
                json!({"matchLabels": {"kafka-listener-injector.io/injection": "enabled"},
                       "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": system}]}),
                json!({"matchExpressions": [{"key": "kafka-listener-injector.io/inject", "operator": "NotIn", "values": ["false"]}]}),
            ),
        };
        Self {
            namespace: namespace_selector,
            object: object_selector,
        }
    }
}

/// Runs after mutation, on the pod as it will be stored: the advertised names must be in the
/// broker container's protocol map when it sets one, as the webhook checks.
fn validating_policy(name: &str, rules: &Value, selectors: &Selectors) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": rules, "namespaceSelector": selectors.namespace, "objectSelector": selectors.object},
            "matchConditions": [
                {"name": "injected", "expression": format!("has(object.metadata.annotations) && {} in object.metadata.annotations", cel_string(RECORD_KEY))},
            ],
            "variables": [
                {"name": "advertised", "expression": format!("object.metadata.annotations[{}].split(',').map(l, l.split('://')[0].upperAscii())", cel_string(RECORD_KEY))},
                {"name": "maps", "expression": "object.spec.containers.filter(c, has(c.env)).map(c, c.env.filter(e, (e.name == 'KAFKA_LISTENER_SECURITY_PROTOCOL_MAP' || e.name == 'KAFKA_CFG_LISTENER_SECURITY_PROTOCOL_MAP') && has(e.value))).filter(l, size(l) > 0)"},
            ],
            "validations": [{
                "expression": "variables.maps.all(found, variables.advertised.all(name, found[size(found) - 1].value.split(',').exists(pair, pair.split(':')[0].trim().upperAscii() == name)))",
                "messageExpression": format!("'pod ' + namespaceObject.metadata.name + '/' + object.metadata.name + ': the advertised listeners ' + object.metadata.annotations[{}] + ' name a listener that is not in the container\\'s KAFKA_LISTENER_SECURITY_PROTOCOL_MAP'", cel_string(RECORD_KEY)),
                "reason": "Invalid",
            }],
        }
    })
}

/// What the webhook does that the policy cannot, said plainly (on stderr).
pub fn differences(config: &Config) -> Vec<String> {
    let mut out = vec![
        "per-pod annotations other than kafka-listener-injector.io/domain and inject are not read (listeners, env-name, container, env.NAME, node-id-*, rack-env, strict): CEL cannot parse templates; put the settings in the flags of this command, one policy per Kafka cluster".to_owned(),
        "the ordinal comes only from the apps.kubernetes.io/pod-index label (Kubernetes 1.28+), never from the pod name".to_owned(),
        "no admission warnings: an overridden variable, a shell that assigns it, a properties file, envFrom and other effectiveness findings are not reported (run preview in CI)".to_owned(),
        "of the listener checks only one runs (in the companion ValidatingAdmissionPolicy): every advertised name must be in the broker container's protocol map when it sets one; malformed values, KAFKA_LISTENERS, the inter-broker listener and node id ranges are not checked".to_owned(),
        "the settings annotation says native-policy instead of a settings hash, and no metric counts injected pods".to_owned(),
    ];
    if config.defaults.containers_explicit {
        out.push("a named container that is absent skips the pod without a warning".to_owned());
    }
    if config.defaults.wait_for_name.is_some() {
        out.push("--wait-for-name-image is not applied: the policy adds no init container (use the webhook for it)".to_owned());
    }
    if config.defaults.readiness_gate {
        out.push("--readiness-gate is not applied: the policy adds no readiness gate (use the webhook for it)".to_owned());
    }
    out
}

pub fn run(
    config: &Config,
    out: &mut impl std::io::Write,
    err: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    write_objects(config.output, &render(config)?, out)?;
    writeln!(
        err,
        "policy: what the webhook does that this native policy does not:"
    )?;
    for difference in differences(config) {
        writeln!(err, "policy:   - {difference}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cel_interpreter::{Context, Program, Value as Cel};

    use super::*;
    use crate::inject::template::Values;

    /// Evaluates the CEL the policy uses for a template, with the pod facts bound as the API
    /// server binds them, and returns the string.
    fn evaluate(
        expression: &str,
        pod: &str,
        ordinal: i64,
        namespace: &str,
        service: &str,
    ) -> String {
        let program = Program::compile(expression).unwrap();
        let mut context = Context::default();
        let map = |pairs: Vec<(&str, Cel)>| {
            Cel::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned().into(), v))
                    .collect::<HashMap<cel_interpreter::objects::Key, Cel>>()
                    .into(),
            )
        };
        context
            .add_variable(
                "object",
                map(vec![
                    ("metadata", map(vec![("name", pod.into())])),
                    ("spec", map(vec![("subdomain", service.into())])),
                ]),
            )
            .unwrap();
        context
            .add_variable(
                "namespaceObject",
                map(vec![("metadata", map(vec![("name", namespace.into())]))]),
            )
            .unwrap();
        context
            .add_variable(
                "variables",
                map(vec![
                    ("ordinal", Cel::Int(ordinal)),
                    ("statefulset", "kafka".into()),
                    ("domain", "kafka.example.com".into()),
                ]),
            )
            .unwrap();
        match program.execute(&context).unwrap() {
            Cel::String(s) => s.to_string(),
            other => panic!("{expression} gave {other:?}"),
        }
    }

    #[test]
    fn the_policy_renders_every_template_as_the_core_does() {
        let templates = [
            crate::inject::settings::DEFAULT_LISTENERS,
            "EXTERNAL://{pod}.{domain}:{ordinal+31090},INTERNAL://{statefulset}-{ordinal}.{service}:9092",
            "CLIENT://b{ordinal-1}.{namespace}.svc:1{ordinal}",
            "X://it's-{pod}\\\\odd:1",
        ];
        for source in templates {
            let template = Template::parse(source).unwrap();
            let expression = template_expression(&template);
            for (pod, ordinal, namespace) in [
                ("kafka-0", 0, "prod"),
                ("kafka-17", 17, "a-b"),
                ("k-2147", 2147, "n"),
            ] {
                let core = template
                    .render(&Values {
                        pod: Some(pod),
                        ordinal: Some(ordinal),
                        statefulset: Some("kafka"),
                        namespace: Some(namespace),
                        service: Some("kafka-headless"),
                        domain: Some("kafka.example.com"),
                    })
                    .unwrap();
                assert_eq!(
                    evaluate(&expression, pod, ordinal, namespace, "kafka-headless"),
                    core,
                    "{source} as {expression}"
                );
            }
        }
    }

    #[test]
    fn several_containers_are_refused_with_the_flag_named() {
        let config = Config {
            defaults: Defaults {
                containers: vec!["a".into(), "b".into()],
                containers_explicit: true,
                ..Defaults::default()
            },
            mode: Mode::ClusterWide,
            output: Format::Yaml,
        };
        assert!(render(&config)
            .unwrap_err()
            .to_string()
            .starts_with("--container:"));
    }
}

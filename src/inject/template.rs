//! The listeners template: `{placeholder}` syntax, parsed once and rendered per pod.

use std::fmt;

use thiserror::Error;

/// Longest template accepted (flag, annotation): bounds the work one pod's settings can cause.
pub const MAX_TEMPLATE_BYTES: usize = 4096;
/// Longest rendered value: far below what an env value and the 256 KiB annotation budget allow,
/// far above any real listeners value. Rendering stops as soon as it is exceeded, so a template
/// repeating `{pod}` cannot make a response (or a denial message) large.
pub const MAX_RENDERED_BYTES: usize = 8192;

/// A value a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    Pod,
    Ordinal,
    StatefulSet,
    Namespace,
    Service,
    Domain,
    /// Known only when the pod starts: rendered as a reference to a downward-API variable.
    Runtime(Runtime),
}

/// A value the pod gets from its node when it starts, not at admission: the webhook injects a
/// downward-API variable for it, and the template renders as a `$(NAME)` reference to that
/// variable, which the kubelet expands when the container starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Runtime {
    HostIp,
    NodeName,
    PodIp,
}

impl Runtime {
    pub const ALL: [Self; 3] = [Self::HostIp, Self::NodeName, Self::PodIp];

    /// The variable the webhook injects for it.
    pub fn env_name(self) -> &'static str {
        match self {
            Self::HostIp => "KLI_HOST_IP",
            Self::NodeName => "KLI_NODE_NAME",
            Self::PodIp => "KLI_POD_IP",
        }
    }

    /// The downward-API field the variable reads (`valueFrom.fieldRef.fieldPath`).
    pub fn field_path(self) -> &'static str {
        match self {
            Self::HostIp => "status.hostIP",
            Self::NodeName => "spec.nodeName",
            Self::PodIp => "status.podIP",
        }
    }

    /// What the template renders: the reference the kubelet expands.
    pub fn reference(self) -> &'static str {
        match self {
            Self::HostIp => "$(KLI_HOST_IP)",
            Self::NodeName => "$(KLI_NODE_NAME)",
            Self::PodIp => "$(KLI_POD_IP)",
        }
    }
}

impl Variable {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "pod" => Self::Pod,
            "ordinal" => Self::Ordinal,
            "statefulset" => Self::StatefulSet,
            "namespace" => Self::Namespace,
            "service" => Self::Service,
            "domain" => Self::Domain,
            "hostIP" => Self::Runtime(Runtime::HostIp),
            "nodeName" => Self::Runtime(Runtime::NodeName),
            "podIP" => Self::Runtime(Runtime::PodIp),
            _ => return None,
        })
    }

    /// The placeholder as a user writes it, for error messages.
    pub fn placeholder(self) -> &'static str {
        match self {
            Self::Pod => "{pod}",
            Self::Ordinal => "{ordinal}",
            Self::StatefulSet => "{statefulset}",
            Self::Namespace => "{namespace}",
            Self::Service => "{service}",
            Self::Domain => "{domain}",
            Self::Runtime(Runtime::HostIp) => "{hostIP}",
            Self::Runtime(Runtime::NodeName) => "{nodeName}",
            Self::Runtime(Runtime::PodIp) => "{podIP}",
        }
    }
}

/// One piece of a parsed template, for code that translates templates (the native policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'t> {
    Literal(&'t str),
    /// `{ordinal}`, `{ordinal+N}`, `{ordinal-N}`: the offset.
    Ordinal(i64),
    Variable(Variable),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Ordinal { offset: i64 },
    Variable(Variable),
}

/// A parsed template such as `EXTERNAL://{pod}.{domain}:{ordinal+31090}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}} (known: {{pod}}, {{ordinal}}, {{ordinal+N}}, {{ordinal-N}}, {{statefulset}}, {{namespace}}, {{service}}, {{domain}}, {{hostIP}}, {{nodeName}}, {{podIP}})")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' at byte {0}")]
    Unclosed(usize),
    #[error("unmatched '}}' at byte {0}")]
    Unmatched(usize),
    #[error("placeholder {0} has no value for this pod ({1})")]
    Missing(&'static str, &'static str),
    #[error("{{ordinal{0}}} overflows")]
    Overflow(String),
    #[error("the template is empty")]
    Empty,
    #[error("the template is {0} bytes long; at most {MAX_TEMPLATE_BYTES} are accepted")]
    TooLong(usize),
    #[error("the rendered value would be over {MAX_RENDERED_BYTES} bytes long")]
    RenderedTooLong,
}

/// The values of one pod, `None` where the pod does not provide one.
#[derive(Debug, Default, Clone, Copy)]
pub struct Values<'a> {
    pub pod: Option<&'a str>,
    pub ordinal: Option<i64>,
    pub statefulset: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub service: Option<&'a str>,
    pub domain: Option<&'a str>,
}

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLong(source.len()));
        }
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        let mut offset = 0;
        while let Some(i) = rest.find(['{', '}']) {
            if rest.as_bytes()[i] == b'}' {
                return Err(TemplateError::Unmatched(offset + i));
            }
            literal.push_str(&rest[..i]);
            let close = rest[i..]
                .find('}')
                .ok_or(TemplateError::Unclosed(offset + i))?;
            let name = &rest[i + 1..i + close];
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            }
            segments.push(parse_placeholder(name)?);
            offset += i + close + 1;
            rest = &rest[i + close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The start-up values the template refers to, each once, in the order of [`Runtime`].
    pub fn runtime(&self) -> Vec<Runtime> {
        let mut found: Vec<Runtime> = self
            .segments
            .iter()
            .filter_map(|segment| match segment {
                Segment::Variable(Variable::Runtime(runtime)) => Some(*runtime),
                _ => None,
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The template's pieces, in order.
    pub fn parts(&self) -> impl Iterator<Item = Part<'_>> {
        self.segments.iter().map(|segment| match segment {
            Segment::Literal(text) => Part::Literal(text),
            Segment::Ordinal { offset } => Part::Ordinal(*offset),
            Segment::Variable(variable) => Part::Variable(*variable),
        })
    }

    pub fn render(&self, values: &Values<'_>) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len() + 64);
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Ordinal { offset } => {
                    let ordinal = values.ordinal.ok_or(TemplateError::Missing(
                        "{ordinal}",
                        "the pod has no StatefulSet ordinal",
                    ))?;
                    let value = ordinal
                        .checked_add(*offset)
                        .ok_or_else(|| TemplateError::Overflow(format!("{offset:+}")))?;
                    out.push_str(itoa::Buffer::new().format(value));
                }
                Segment::Variable(variable) => out.push_str(lookup(*variable, values)?),
            }
            if out.len() > MAX_RENDERED_BYTES {
                return Err(TemplateError::RenderedTooLong);
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_placeholder(name: &str) -> Result<Segment, TemplateError> {
    let unknown = || TemplateError::UnknownPlaceholder(name.to_owned());
    if let Some(variable) = Variable::from_name(name) {
        return Ok(match variable {
            Variable::Ordinal => Segment::Ordinal { offset: 0 },
            other => Segment::Variable(other),
        });
    }
    let Some(arithmetic) = name.strip_prefix("ordinal") else {
        return Err(unknown());
    };
    let (sign, digits) = match arithmetic.split_at_checked(1) {
        Some(("+", digits)) => (1, digits),
        Some(("-", digits)) => (-1, digits),
        _ => return Err(unknown()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown());
    }
    let magnitude: i64 = digits.parse().map_err(|_| unknown())?;
    Ok(Segment::Ordinal {
        offset: sign * magnitude,
    })
}

fn lookup<'a>(variable: Variable, values: &Values<'a>) -> Result<&'a str, TemplateError> {
    let (value, why) = match variable {
        Variable::Runtime(runtime) => return Ok(runtime.reference()),
        Variable::Pod => (values.pod, "the pod has no name"),
        Variable::StatefulSet => (values.statefulset, "the pod belongs to no StatefulSet"),
        Variable::Namespace => (values.namespace, "the pod has no namespace"),
        Variable::Service => (
            values.service,
            "the pod has no spec.subdomain (the StatefulSet's serviceName)",
        ),
        Variable::Domain => (
            values.domain,
            "no domain is set: use --domain or the kafka-listener-injector.io/domain annotation",
        ),
        Variable::Ordinal => unreachable!("ordinal segments are rendered with their offset"),
    };
    value
        .filter(|v| !v.is_empty())
        .ok_or(TemplateError::Missing(variable.placeholder(), why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            pod: Some("kafka-2"),
            ordinal: Some(2),
            statefulset: Some("kafka"),
            namespace: Some("prod"),
            service: Some("kafka-headless"),
            domain: Some("kafka.example.com"),
        }
    }

    #[test]
    fn default_template_renders_internal_and_external_names() {
        let template = Template::parse(
            "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094",
        )
        .unwrap();
        assert_eq!(
            template.render(&values()).unwrap(),
            "INTERNAL://kafka-2.kafka-headless.prod.svc:9092,EXTERNAL://kafka-2.kafka.example.com:9094"
        );
    }

    #[test]
    fn ordinal_arithmetic_renders_node_ports() {
        let template = Template::parse(
            "EXTERNAL://node.example.com:{ordinal+31090},X://b{ordinal-1}.{statefulset}:1",
        )
        .unwrap();
        assert_eq!(
            template.render(&values()).unwrap(),
            "EXTERNAL://node.example.com:31092,X://b1.kafka:1"
        );
    }

    #[test]
    fn start_up_placeholders_render_as_references_to_their_downward_variables() {
        let template = Template::parse(
            "EXTERNAL://{hostIP}:{ordinal+31090},N://{nodeName}:1,P://{podIP}:2,Q://{hostIP}:3",
        )
        .unwrap();
        assert_eq!(
            template.render(&values()).unwrap(),
            "EXTERNAL://$(KLI_HOST_IP):31092,N://$(KLI_NODE_NAME):1,P://$(KLI_POD_IP):2,Q://$(KLI_HOST_IP):3"
        );
        assert_eq!(template.runtime(), Runtime::ALL);
        let none = Template::parse("EXTERNAL://{pod}.{domain}:9094").unwrap();
        assert!(none.runtime().is_empty());
        // Placeholder names are case-sensitive, as Kubernetes' field names are.
        assert!(Template::parse("{hostip}").is_err());
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = Template::parse("EXTERNAL://{host}:9094").unwrap_err();
        assert_eq!(err, TemplateError::UnknownPlaceholder("host".into()));
        assert!(err.to_string().contains("{host}"));
        for bad in ["{ordinal+}", "{ordinal*2}", "{ordinal+-1}", "{Pod}", "{}"] {
            assert!(
                matches!(
                    Template::parse(bad),
                    Err(TemplateError::UnknownPlaceholder(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unbalanced_braces_are_rejected() {
        assert_eq!(
            Template::parse("A://{pod:1").unwrap_err(),
            TemplateError::Unclosed(4)
        );
        assert_eq!(
            Template::parse("A://pod}:1").unwrap_err(),
            TemplateError::Unmatched(7)
        );
    }

    #[test]
    fn size_limits_bound_the_work_of_one_template() {
        let long = "A".repeat(MAX_TEMPLATE_BYTES + 1);
        assert_eq!(
            Template::parse(&long).unwrap_err(),
            TemplateError::TooLong(MAX_TEMPLATE_BYTES + 1)
        );
        // 800 placeholders fit in a template; rendered with a long pod name they would not.
        let amplifying = Template::parse(&"{pod}".repeat(800)).unwrap();
        let name = "p".repeat(250);
        let err = amplifying
            .render(&Values {
                pod: Some(&name),
                ..values()
            })
            .unwrap_err();
        assert_eq!(err, TemplateError::RenderedTooLong);
    }

    #[test]
    fn domain_without_a_value_names_the_placeholder_and_the_fix() {
        let template = Template::parse("EXTERNAL://{pod}.{domain}:9094").unwrap();
        let err = template
            .render(&Values {
                domain: None,
                ..values()
            })
            .unwrap_err();
        assert!(err.to_string().contains("{domain}"), "{err}");
        assert!(err.to_string().contains("--domain"), "{err}");
    }
}

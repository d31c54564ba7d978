//! Effectiveness findings: whether the variables the webhook injects would reach the broker's
//! configuration, judged from the pod alone. Real charts often build the configuration somewhere
//! else (a shell that exports its own value, a properties file written by an init container,
//! env from ConfigMaps the webhook cannot read); then a correct patch changes nothing, and the
//! user must be told. Warnings by default, denials with `--strict`.
//!
//! The image-specific rules come from the images' start code: apache/kafka
//! (docker/resources/common-scripts/run and configure) and confluentinc/cp-kafka
//! (kafka/include/etc/confluent/docker/run and configure) export `NAME=value` arguments, derive
//! `KAFKA_LISTENERS` from the advertised value when it is unset, and set up a keystore only when
//! the advertised value contains the text `SSL://`.

use super::listeners::parse_listeners;
use super::view::ContainerView;
use super::TargetContainer;

/// What was injected, as the findings need it.
pub struct Injected<'a> {
    /// Every injected variable name.
    pub names: &'a [&'a str],
    /// The advertised-listeners variable and its value, when one is injected.
    pub listeners: Option<(&'a str, &'a str)>,
}

/// One sentence per finding, naming the container and the setting to change.
pub fn effectiveness(targets: &[TargetContainer<'_>], injected: &Injected<'_>) -> Vec<String> {
    let mut findings = Vec::new();
    for target in targets {
        let container = target.container;
        let command = container.command_text();
        // The command and the scripts it runs from ConfigMaps in the input (preview only).
        let script: std::borrow::Cow<'_, str> = if container.scripts.is_empty() {
            command.as_str().into()
        } else {
            let mut script = command.clone();
            for known in &container.scripts {
                script.push('\n');
                script.push_str(&known.text);
            }
            script.into()
        };
        for name in injected.names {
            let assigner = if assigns(&command, name) {
                Some(format!("the command of container {}", container.name))
            } else {
                container
                    .scripts
                    .iter()
                    .find(|s| assigns(&s.text, name))
                    .map(|s| {
                        format!(
                            "{} (ConfigMap {}), which container {} runs,",
                            s.path, s.config_map, container.name
                        )
                    })
            };
            if exported_argument(container, name) {
                findings.push(format!(
                    "container {} passes the argument {name}=..., which the image's run script exports over the injected value; drop the argument",
                    container.name
                ));
            } else if let Some(assigner) = assigner {
                findings.push(format!(
                    "{assigner} assigns {name} itself, so the shell's value replaces the injected one; refer to injected variables in the script instead (e.g. ${{EXTERNAL_HOST}} with --env EXTERNAL_HOST={{pod}}.{{domain}} and --env-name none)"
                ));
            }
        }
        let refers = injected.names.iter().any(|name| refers_to(&script, name));
        if script.contains("kafka-server-start") && !refers {
            findings.push(format!(
                "container {} starts the broker with kafka-server-start.sh, which reads its properties file and --override flags, not env; refer to an injected variable there (--override advertised.listeners=$(KAFKA_ADVERTISED_LISTENERS)), with only listener names the file's listeners and listener.security.protocol.map have",
                container.name
            ));
        } else if let Some(finding) = (refers && script.contains("kafka-server-start"))
            .then(|| super::server_start::undefined_advertised_listeners(container, &script))
            .flatten()
        {
            findings.push(finding);
        } else if let Some(file) = properties_file(container, &command).filter(|_| !refers) {
            findings.push(format!(
                "container {} configures Kafka from {file} and its command refers to no injected variable, so the broker may ignore them; inject into the container that writes the file (--container names init containers too) and use the variables there",
                container.name
            ));
        }
        findings.extend(hidden_env(container));
        if let Some((name, value)) = injected.listeners {
            findings.extend(other_convention(container, name));
            if derives_listeners(container) {
                findings.extend(derived_ports(container, value));
                findings.extend(ssl_by_name(container, value));
            }
        }
    }
    findings
}

/// `envFrom` sources the webhook cannot read.
fn hidden_env(container: &ContainerView) -> Option<String> {
    let hidden: Vec<String> = container
        .env_from
        .iter()
        .flatten()
        .filter_map(|source| {
            let config_map = source.config_map_ref.as_ref().map(|r| ("ConfigMap", r));
            let (kind, name) = config_map.or(source.secret_ref.as_ref().map(|r| ("Secret", r)))?;
            Some(format!("{kind} {}", name.name))
        })
        .collect();
    (!hidden.is_empty()).then(|| {
        format!(
            "container {} takes env from {} (envFrom), which the webhook cannot see: the listener checks ran without it",
            container.name,
            hidden.join(", ")
        )
    })
}

/// Whether an argument `NAME=value` (a whole argv word) is given to the image's own run script,
/// which `export`s it (apache/kafka and cp-kafka `run`).
fn exported_argument(container: &ContainerView, name: &str) -> bool {
    let mut words = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten());
    // No command: the image's entrypoint, which is the run script in apache/kafka and cp-kafka.
    let runs_image_script = container
        .command
        .as_ref()
        .is_none_or(|command| command.iter().any(|word| word.ends_with("/run")));
    runs_image_script
        && words.any(|word| {
            word.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
        })
}

/// Broker settings spelt only in another convention than the injected name: an image that reads
/// one convention would not see the injected value. Images that read both are spared: Bitnami's
/// copy `KAFKA_*` over `KAFKA_CFG_*` (libkafka.sh, kafka_create_alias_environment_variables), so
/// a container with settings in the injected convention too is taken to read it.
fn other_convention(container: &ContainerView, injected: &str) -> Option<String> {
    let bitnami_image = container
        .image
        .as_deref()
        .is_some_and(|i| i.contains("bitnami/kafka"));
    let injected_cfg = injected.starts_with("KAFKA_CFG_");
    if !injected.starts_with("KAFKA_") || (bitnami_image && !injected_cfg) {
        return None;
    }
    let convention = |name: &str| {
        let (cfg, setting) = match name.strip_prefix("KAFKA_CFG_") {
            Some(setting) => (true, setting),
            None => (false, name.strip_prefix("KAFKA_")?),
        };
        super::broker::BROKER_SETTINGS
            .contains(&setting)
            .then_some(cfg)
    };
    let settings = || {
        container
            .env
            .iter()
            .flatten()
            .filter_map(|var| Some((&*var.name, convention(&var.name)?)))
    };
    // Any variable in the injected convention (not only a broker setting) shows the image reads it.
    let same_convention = container.env.iter().flatten().any(|var| {
        var.name != injected
            && var.name.starts_with("KAFKA_")
            && var.name.starts_with("KAFKA_CFG_") == injected_cfg
    });
    if same_convention {
        return None;
    }
    let (other, _) = settings().find(|(_, cfg)| *cfg != injected_cfg)?;
    Some(format!(
        "container {} spells its broker settings only as {} (e.g. {other}), but the injected variable is {injected}; an image that reads one convention will not see it: set env-name to match (auto picks it)",
        container.name,
        if injected_cfg { "KAFKA_*" } else { "KAFKA_CFG_*" }
    ))
}

/// apache/kafka and cp-kafka images: with no `KAFKA_LISTENERS`, the broker binds the advertised
/// ports, which must then be the container's ports.
fn derives_listeners(container: &ContainerView) -> bool {
    let image = container.image.as_deref().unwrap_or_default();
    let known = [
        "apache/kafka",
        "confluentinc/cp-kafka",
        "confluentinc/cp-server",
    ]
    .iter()
    .any(|i| image.contains(i));
    let set = container
        .env
        .iter()
        .flatten()
        .any(|v| v.name == "KAFKA_LISTENERS");
    known && !set
}

fn derived_ports(container: &ContainerView, value: &str) -> Option<String> {
    if container.ports.is_empty() {
        return None;
    }
    let declared = |port: i64| container.ports.iter().any(|p| p.container_port == port);
    let stray: Vec<&str> = value
        .split(',')
        .filter(|entry| {
            let port = entry
                .rsplit_once(':')
                .and_then(|(_, p)| p.trim().parse().ok());
            port.is_some_and(|port| !declared(port))
        })
        .collect();
    (!stray.is_empty()).then(|| {
        format!(
            "container {} sets no KAFKA_LISTENERS, so its image derives the listeners from the advertised value and binds the ports of {}, which the container does not declare; set KAFKA_LISTENERS, or advertise the container's ports",
            container.name,
            stray.join(", ")
        )
    })
}

/// apache/kafka and cp-kafka set up the keystore only when the advertised value contains the text
/// `SSL://`; a listener named otherwise but mapped to SSL would start with no keystore.
fn ssl_by_name(container: &ContainerView, value: &str) -> Option<String> {
    if value.contains("SSL://") {
        return None;
    }
    let (_, map) = container.env_value(&["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"])?;
    let listeners = parse_listeners(value).ok()?;
    let tls = listeners.iter().find(|l| {
        map.split(',').any(|pair| {
            pair.split_once(':').is_some_and(|(name, protocol)| {
                name.trim().eq_ignore_ascii_case(l.name)
                    && matches!(
                        protocol.trim().to_ascii_uppercase().as_str(),
                        "SSL" | "SASL_SSL"
                    )
            })
        })
    })?;
    // A keystore set directly, or per listener (KAFKA_LISTENER_NAME_<NAME>_SSL_KEYSTORE_LOCATION).
    let keystore = container
        .env
        .iter()
        .flatten()
        .any(|v| v.name.ends_with("SSL_KEYSTORE_LOCATION"));
    (!keystore).then(|| {
        format!(
            "listener {} of container {} is mapped to SSL, but the image sets up its keystore only when the advertised value contains the text \"SSL://\" (configure); name the listener SSL or set KAFKA_SSL_KEYSTORE_LOCATION",
            tls.name, container.name
        )
    })
}

/// Whether a shell script assigns `name` (`name=...` or `export name=...`) as a whole word.
fn assigns(script: &str, name: &str) -> bool {
    let pattern = format!("{name}=");
    script.match_indices(&pattern).any(|(at, _)| {
        script[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '{'))
    })
}

/// Whether a script refers to `name` as `$name`, `${name}` or Kubernetes' `$(name)`.
fn refers_to(script: &str, name: &str) -> bool {
    [format!("${{{name}}}"), format!("$({name})")]
        .iter()
        .any(|form| script.contains(form.as_str()))
        || script.match_indices(&format!("${name}")).any(|(at, m)| {
            script[at + m.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
        })
}

/// A `*.properties` file the container reads its configuration from: mounted, or named in its
/// command.
fn properties_file(container: &ContainerView, script: &str) -> Option<String> {
    let mounted = container.volume_mounts.iter().flatten().find_map(|mount| {
        let path = match &mount.sub_path {
            Some(sub) if sub.contains(".properties") => &**sub,
            _ => &*mount.mount_path,
        };
        path.contains(".properties")
            .then(|| format!("a mounted {}", mount.mount_path))
    });
    mounted.or_else(|| {
        script
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ';')
            .find(|word| word.contains(".properties") && !word.contains("meta.properties"))
            .map(|word| format!("{word} (named in its command)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_found_as_a_whole_word_only() {
        assert!(assigns(
            "export KAFKA_ADVERTISED_LISTENERS=x; exec run",
            "KAFKA_ADVERTISED_LISTENERS"
        ));
        assert!(assigns("KAFKA_NODE_ID=$((1+2)) exec run", "KAFKA_NODE_ID"));
        assert!(!assigns("export MY_KAFKA_NODE_ID=1", "KAFKA_NODE_ID"));
        assert!(!assigns("echo ${KAFKA_NODE_ID}", "KAFKA_NODE_ID"));
        assert!(!assigns("exec run", "KAFKA_NODE_ID"));
    }

    #[test]
    fn references_are_found_in_every_form() {
        for script in ["a=${HOST}", "a=$HOST;", "a=$HOST", "--arg=$(HOST)"] {
            assert!(refers_to(script, "HOST"), "{script}");
        }
        assert!(!refers_to("a=$HOSTNAME", "HOST"));
        assert!(!refers_to("HOST", "HOST"));
    }
}

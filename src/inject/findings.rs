//! Effectiveness findings: whether the variables the webhook injects would reach the broker's
//! configuration, judged from the pod alone. Real charts often build the configuration somewhere
//! else (a shell that exports its own value, a properties file written by an init container,
//! env from ConfigMaps the webhook cannot read); then a correct patch changes nothing, and the
//! user must be told. Warnings by default, denials with `--strict`.

use super::view::ContainerView;
use super::TargetContainer;

/// One sentence per finding, naming the container and the setting to change.
pub fn effectiveness(targets: &[TargetContainer<'_>], injected: &[&str]) -> Vec<String> {
    let mut findings = Vec::new();
    for target in targets {
        let container = target.container;
        let script = container.command_text();
        for name in injected {
            if assigns(&script, name) {
                findings.push(format!(
                    "the command of container {} assigns {name} itself, so the shell's value replaces the injected one; refer to injected variables in the script instead (e.g. ${{EXTERNAL_HOST}} with --env EXTERNAL_HOST={{pod}}.{{domain}} and --env-name none)",
                    container.name
                ));
            }
        }
        if let Some(file) = properties_file(container, &script) {
            if !injected.iter().any(|name| refers_to(&script, name)) {
                findings.push(format!(
                    "container {} configures Kafka from {file} and its command refers to no injected variable, so the broker may ignore them; inject into the container that writes the file (--container names init containers too) and use the variables there",
                    container.name
                ));
            }
        }
        let hidden: Vec<String> = container
            .env_from
            .iter()
            .flatten()
            .filter_map(|source| {
                let config_map = source.config_map_ref.as_ref().map(|r| ("ConfigMap", r));
                let (kind, name) =
                    config_map.or(source.secret_ref.as_ref().map(|r| ("Secret", r)))?;
                Some(format!("{kind} {}", name.name))
            })
            .collect();
        if !hidden.is_empty() {
            findings.push(format!(
                "container {} takes env from {} (envFrom), which the webhook cannot see: the listener checks ran without it",
                container.name,
                hidden.join(", ")
            ));
        }
    }
    findings
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
            Some(sub) if sub.ends_with(".properties") => &**sub,
            _ => &*mount.mount_path,
        };
        path.ends_with(".properties")
            .then(|| format!("a mounted {}", mount.mount_path))
    });
    mounted.or_else(|| {
        script
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ';')
            .find(|word| word.ends_with(".properties"))
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

//! The init container that holds a broker until its advertised external names answer at their
//! zone's authoritative DNS servers (`--wait-for-name-image`; the command is `wait-for-name`).

use serde_json::{json, Value};

use super::listeners::parse_listeners;
use super::text::is_dns_name;

/// The init container's name, by which the patch finds it again.
pub const INIT_CONTAINER: &str = "kli-wait-for-name";

/// The init container to add: what the webhook was told to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitForName {
    /// This tool's own image.
    pub image: String,
    /// Authoritative servers to ask; empty: the zone's NS records.
    pub dns_servers: Vec<String>,
    /// As `wait-for-name --timeout` reads it (`10m`, `90s`).
    pub timeout: String,
}

impl WaitForName {
    /// The init container's arguments for `names` (the image's entrypoint is the binary).
    pub fn args(&self, names: &[String]) -> Vec<String> {
        let mut args = vec![
            "wait-for-name".to_owned(),
            "--timeout".to_owned(),
            self.timeout.clone(),
        ];
        for server in &self.dns_servers {
            args.push("--dns-server".to_owned());
            args.push(server.clone());
        }
        args.extend(names.iter().cloned());
        args
    }

    /// The whole init container: small, and allowed by the `restricted` Pod Security Standard.
    pub fn container(&self, names: &[String]) -> Value {
        json!({
            "name": INIT_CONTAINER,
            "image": self.image,
            "args": self.args(names),
            "resources": {
                "requests": { "cpu": "10m", "memory": "16Mi" },
                "limits": { "memory": "64Mi" },
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": { "drop": ["ALL"] },
                "seccompProfile": { "type": "RuntimeDefault" },
            },
        })
    }
}

/// The names in an advertised-listeners value that clients outside look up in public DNS: host
/// names with a dot, not in the cluster's own DNS (a `svc` label), not an address, not a `$(VAR)`
/// the kubelet fills in. Each once, in order.
pub fn external_names(advertised: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    // Entry by entry: one that refers to a variable is skipped, not the whole value.
    for entry in advertised.split(',').filter(|entry| !entry.contains("$(")) {
        let Ok(listeners) = parse_listeners(entry) else {
            continue;
        };
        for listener in listeners {
            let host = listener.host.trim_end_matches('.');
            let public = host.contains('.')
                && is_dns_name(host)
                && host.parse::<std::net::IpAddr>().is_err()
                && !host.split('.').any(|label| label == "svc")
                && !host.ends_with(".local");
            if public && !names.iter().any(|n| n == host) {
                names.push(host.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_names_are_waited_for() {
        let value = "INTERNAL://kafka-0.kafka-headless.kafka.svc:9092,\
                     EXTERNAL://kafka-0.kafka.example.com:9094,\
                     LOCAL://kafka-0.kafka-headless.kafka.svc.cluster.local:9095,\
                     NODE://$(KLI_HOST_IP):31000,IP://10.1.2.3:9096,HOST://localhost:9097,\
                     TLS://kafka-0.kafka.example.com:9443";
        assert_eq!(external_names(value), ["kafka-0.kafka.example.com"]);
        assert!(external_names("not a listeners value").is_empty());
    }

    #[test]
    fn the_container_passes_servers_and_timeout_before_the_names() {
        let wait = WaitForName {
            image: "registry.example/kli:1".into(),
            dns_servers: vec!["10.0.0.2".into()],
            timeout: "5m".into(),
        };
        let names = vec!["kafka-0.kafka.example.com".to_owned()];
        let container = wait.container(&names);
        assert_eq!(container["name"], INIT_CONTAINER);
        assert_eq!(
            container["args"],
            json!([
                "wait-for-name",
                "--timeout",
                "5m",
                "--dns-server",
                "10.0.0.2",
                "kafka-0.kafka.example.com"
            ])
        );
        assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    }
}

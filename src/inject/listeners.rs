//! Validation of a rendered advertised-listeners value against Kafka's rules and the broker's own
//! listener configuration, so a broker is never started with a value it would reject.

use std::net::{IpAddr, Ipv6Addr};

use thiserror::Error;

/// Security protocols Kafka accepts as listener names without a protocol-map entry.
const STANDARD_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

/// One `NAME://host:port` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
}

/// The broker container's own listener configuration, as far as its env tells.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerListenerConfig<'a> {
    /// `(env var, value)` of `KAFKA_LISTENER_SECURITY_PROTOCOL_MAP` or its Bitnami form.
    pub protocol_map: Option<(&'a str, &'a str)>,
    /// `(env var, value)` of `KAFKA_CONTROLLER_LISTENER_NAMES` or its Bitnami form.
    pub controller_names: Option<(&'a str, &'a str)>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ListenerError {
    #[error("entry {0:?} is not NAME://host:port")]
    Malformed(String),
    #[error("listener name {0:?} is not [A-Za-z_][A-Za-z0-9_]*")]
    BadName(String),
    #[error("listener name {0:?} appears twice")]
    Duplicate(String),
    #[error("host {host:?} of listener {name} is neither a DNS name (RFC 1123) nor an IP address")]
    BadHost { name: String, host: String },
    #[error("port {port:?} of listener {name} is not in 1-65535")]
    BadPort { name: String, port: String },
    #[error("listener {name} is not in the container's {var} ({map:?})")]
    NotInProtocolMap {
        name: String,
        var: String,
        map: String,
    },
    #[error("listener {name} is a controller listener (the container's {var}); controllers must not be advertised")]
    ControllerListener { name: String, var: String },
}

/// Parses a comma-separated listeners value.
pub fn parse_listeners(value: &str) -> Result<Vec<Listener<'_>>, ListenerError> {
    value
        .split(',')
        .map(|entry| parse_entry(entry.trim()))
        .collect()
}

fn parse_entry(entry: &str) -> Result<Listener<'_>, ListenerError> {
    let malformed = || ListenerError::Malformed(entry.to_owned());
    let (name, address) = entry.split_once("://").ok_or_else(malformed)?;
    let (host, port) = match address.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, port) = bracketed.split_once("]:").ok_or_else(malformed)?;
            (&address[..ip.len() + 2], port)
        }
        None => address.rsplit_once(':').ok_or_else(malformed)?,
    };
    if !is_listener_name(name) {
        return Err(ListenerError::BadName(name.to_owned()));
    }
    if !is_host(host) {
        return Err(ListenerError::BadHost {
            name: name.to_owned(),
            host: host.to_owned(),
        });
    }
    let port_number = port
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| port.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p != 0)
        .ok_or_else(|| ListenerError::BadPort {
            name: name.to_owned(),
            port: port.to_owned(),
        })?;
    Ok(Listener {
        name,
        host,
        port: port_number,
    })
}

/// Checks Kafka's rules and the broker's own configuration.
pub fn validate(value: &str, config: &BrokerListenerConfig<'_>) -> Result<(), ListenerError> {
    let listeners = parse_listeners(value)?;
    for (i, listener) in listeners.iter().enumerate() {
        // Kafka normalises listener names to upper case.
        if listeners[..i]
            .iter()
            .any(|l| l.name.eq_ignore_ascii_case(listener.name))
        {
            return Err(ListenerError::Duplicate(listener.name.to_owned()));
        }
        if let Some((var, map)) = config.protocol_map {
            let mapped = map
                .split(',')
                .filter_map(|pair| pair.split_once(':'))
                .any(|(name, _)| name.trim().eq_ignore_ascii_case(listener.name));
            let standard = STANDARD_PROTOCOLS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(listener.name));
            if !mapped && !standard {
                return Err(ListenerError::NotInProtocolMap {
                    name: listener.name.to_owned(),
                    var: var.to_owned(),
                    map: map.to_owned(),
                });
            }
        }
        if let Some((var, names)) = config.controller_names {
            if names
                .split(',')
                .any(|name| name.trim().eq_ignore_ascii_case(listener.name))
            {
                return Err(ListenerError::ControllerListener {
                    name: listener.name.to_owned(),
                    var: var.to_owned(),
                });
            }
        }
    }
    Ok(())
}

fn is_listener_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_host(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    host.parse::<IpAddr>().is_ok() || is_dns_name(host)
}

/// An RFC 1123 DNS name: dot-separated labels of letters, digits and inner hyphens, 1-63 bytes
/// each, 253 in all.
pub fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: &str) {
        validate(value, &BrokerListenerConfig::default())
            .unwrap_or_else(|e| panic!("{value}: {e}"));
    }

    fn err(value: &str) -> ListenerError {
        validate(value, &BrokerListenerConfig::default()).unwrap_err()
    }

    #[test]
    fn well_formed_values_pass() {
        ok("INTERNAL://kafka-0.kafka.prod.svc:9092,EXTERNAL://kafka-0.kafka.example.com:9094");
        ok("PLAINTEXT://10.0.0.7:9092");
        ok("SSL://[2001:db8::1]:9093");
        ok("_x://a:65535");
    }

    #[test]
    fn each_fault_is_named() {
        assert_eq!(
            err("kafka:9092"),
            ListenerError::Malformed("kafka:9092".into())
        );
        assert_eq!(err("A://host"), ListenerError::Malformed("A://host".into()));
        assert_eq!(err("1A://h:1"), ListenerError::BadName("1A".into()));
        assert_eq!(err("A-B://h:1"), ListenerError::BadName("A-B".into()));
        assert_eq!(err("A://h:1,a://g:2"), ListenerError::Duplicate("a".into()));
        assert!(matches!(
            err("A://-bad.example.com:1"),
            ListenerError::BadHost { .. }
        ));
        assert!(matches!(
            err("A://under_score.example.com:1"),
            ListenerError::BadHost { .. }
        ));
        assert!(matches!(err("A://:9092"), ListenerError::BadHost { .. }));
        assert!(matches!(err("A://[zz]:1"), ListenerError::BadHost { .. }));
        assert!(matches!(err("A://h:0"), ListenerError::BadPort { .. }));
        assert!(matches!(err("A://h:65536"), ListenerError::BadPort { .. }));
        assert!(matches!(err("A://h:+1"), ListenerError::BadPort { .. }));
        let long = format!("A://{}.com:1", "a".repeat(64));
        assert!(matches!(err(&long), ListenerError::BadHost { .. }));
    }

    #[test]
    fn listener_missing_from_the_protocol_map_is_denied() {
        let config = BrokerListenerConfig {
            protocol_map: Some((
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "INTERNAL:PLAINTEXT, CONTROLLER:PLAINTEXT",
            )),
            controller_names: None,
        };
        assert!(validate("INTERNAL://a:1,SSL://b:2", &config).is_ok());
        let error = validate("INTERNAL://a:1,EXTERNAL://b:2", &config).unwrap_err();
        assert_eq!(
            error.to_string(),
            "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP (\"INTERNAL:PLAINTEXT, CONTROLLER:PLAINTEXT\")"
        );
    }

    #[test]
    fn advertised_controller_listener_is_denied() {
        let config = BrokerListenerConfig {
            protocol_map: None,
            controller_names: Some(("KAFKA_CFG_CONTROLLER_LISTENER_NAMES", "CONTROLLER")),
        };
        let error = validate("INTERNAL://a:1,CONTROLLER://b:2", &config).unwrap_err();
        assert!(
            matches!(error, ListenerError::ControllerListener { ref name, .. } if name == "CONTROLLER")
        );
    }
}

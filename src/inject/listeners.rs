//! Validation of a rendered advertised-listeners value against Kafka's rules and the broker's own
//! listener configuration, so a broker is never started with a value it would reject.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};

use thiserror::Error;

use super::text::{clip, is_dns_name, without_references};

/// Security protocols Kafka accepts as listener names while `listener.security.protocol.map` is
/// not set (its default maps each to itself). A map that is set is the whole map: a standard
/// name missing from it has no protocol either (KafkaConfig.effectiveListenerSecurityProtocolMap).
const STANDARD_PROTOCOLS: [&str; 4] = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
/// More listeners than any broker has; bounds the work of one value.
pub const MAX_LISTENERS: usize = 64;

/// One `NAME://host:port` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub port: u16,
}

/// The broker container's own listener configuration, as far as its env tells: each field is
/// `(env var, value)` of the setting in its `KAFKA_` or `KAFKA_CFG_` form.
#[derive(Debug, Default, Clone, Copy)]
pub struct BrokerListenerConfig<'a> {
    pub protocol_map: Option<(&'a str, &'a str)>,
    pub controller_names: Option<(&'a str, &'a str)>,
    pub listeners: Option<(&'a str, &'a str)>,
    pub inter_broker_name: Option<(&'a str, &'a str)>,
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
    #[error("{0} listeners; at most {MAX_LISTENERS} are accepted")]
    TooMany(usize),
    #[error(
        "listener {name} is not in the container's {var} ({map:?}); use listener names the map has"
    )]
    NotInProtocolMap {
        name: String,
        var: String,
        map: String,
    },
    #[error("listener {name} is not among the container's {var} ({listeners:?}); Kafka refuses advertised listeners it does not listen on")]
    NotInListeners {
        name: String,
        var: String,
        listeners: String,
    },
    #[error("the container's {var} is {name}, which the value does not advertise; Kafka would refuse to start")]
    InterBrokerNotAdvertised { name: String, var: String },
}

/// The host and port of the listener named `name` (as Kafka compares names: ignoring case) in a
/// listeners value; `None` when the value does not parse or has no such listener.
pub fn endpoint_of(value: &str, name: &str) -> Option<(String, u16)> {
    parse_listeners(value)
        .ok()?
        .into_iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
        .map(|l| (l.host.to_owned(), l.port))
}

/// Parses a comma-separated listeners value.
pub fn parse_listeners(value: &str) -> Result<Vec<Listener<'_>>, ListenerError> {
    let count = value.split(',').count();
    if count > MAX_LISTENERS {
        return Err(ListenerError::TooMany(count));
    }
    value
        .split(',')
        .map(|entry| parse_entry(entry.trim()))
        .collect()
}

fn parse_entry(entry: &str) -> Result<Listener<'_>, ListenerError> {
    let malformed = || ListenerError::Malformed(clip(entry));
    let (name, address) = entry.split_once("://").ok_or_else(malformed)?;
    let (host, port) = match address.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, port) = bracketed.split_once("]:").ok_or_else(malformed)?;
            (&address[..ip.len() + 2], port)
        }
        None => address.rsplit_once(':').ok_or_else(malformed)?,
    };
    if !is_listener_name(name) {
        return Err(ListenerError::BadName(clip(name)));
    }
    if !is_host(host) {
        return Err(ListenerError::BadHost {
            name: name.to_owned(),
            host: clip(host),
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
            port: clip(port),
        })?;
    Ok(Listener {
        name,
        host,
        port: port_number,
    })
}

/// Listener names of a comma-separated setting (`NAME:PROTOCOL` pairs or `NAME://host:port`
/// entries or plain names), upper-cased as Kafka normalises them. A hash set: linear time.
fn names_of(setting: &str, separator: &str) -> HashSet<String> {
    setting
        .split(',')
        .filter_map(|entry| {
            let name = entry.split_once(separator).map_or(entry, |(name, _)| name);
            let name = name.trim();
            (!name.is_empty()).then(|| name.to_ascii_uppercase())
        })
        .collect()
}

/// Checks Kafka's rules and the broker's own configuration. Faults a broker would certainly
/// crash on are errors; the returned strings are warnings (for what Kafka accepts but is likely
/// not meant). Linear in the sizes of the value and the settings.
pub fn validate(
    value: &str,
    config: &BrokerListenerConfig<'_>,
) -> Result<Vec<String>, ListenerError> {
    let listeners = parse_listeners(value)?;
    let mut seen = HashSet::with_capacity(listeners.len());
    let map = config
        .protocol_map
        .map(|(var, map)| (var, map, names_of(map, ":")));
    let bound = config
        .listeners
        .map(|(var, value)| (var, value, names_of(value, "://")));
    let controller = config
        .controller_names
        .map(|(var, names)| (var, names_of(names, ":")));
    let mut warnings = Vec::new();
    for listener in &listeners {
        let name = listener.name.to_ascii_uppercase();
        if !seen.insert(name.clone()) {
            return Err(ListenerError::Duplicate(listener.name.to_owned()));
        }
        let standard = STANDARD_PROTOCOLS.contains(&name.as_str());
        match &map {
            Some((var, map, names)) if !names.contains(&name) => {
                return Err(ListenerError::NotInProtocolMap {
                    name: listener.name.to_owned(),
                    var: (*var).to_owned(),
                    map: clip(map),
                })
            }
            // The map may come from somewhere the pod does not show (a properties file, a start
            // script): a warning, not a denial. With env-only configuration Kafka would refuse.
            None if !standard => warnings.push(format!(
                "listener {} is not a standard security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) and the container's env sets no KAFKA_LISTENER_SECURITY_PROTOCOL_MAP; unless the broker gets a map elsewhere it will refuse to start",
                listener.name
            )),
            _ => {}
        }
        if let Some((var, value, names)) = &bound {
            if !names.contains(&name) {
                return Err(ListenerError::NotInListeners {
                    name: listener.name.to_owned(),
                    var: (*var).to_owned(),
                    listeners: clip(value),
                });
            }
        }
        if let Some((var, names)) = &controller {
            if names.contains(&name) {
                warnings.push(format!(
                    "listener {} is a controller listener (the container's {var}); Kafka accepts an advertised controller listener only from 3.9 (KIP-853) and uses it for the controller quorum, not for clients",
                    listener.name
                ));
            }
        }
    }
    // A listener the broker binds but no longer advertises: clients that bootstrap through it
    // get no endpoint of it in the metadata (the controller listener is never advertised).
    if let Some((var, _, names)) = &bound {
        let mut dropped: Vec<&String> = names
            .iter()
            .filter(|name| !seen.contains(*name))
            .filter(|name| !controller.as_ref().is_some_and(|(_, c)| c.contains(*name)))
            .collect();
        dropped.sort();
        for name in dropped {
            warnings.push(format!(
                "listener {name} is in the container's {var} but not in the advertised value: clients that bootstrap through it get no address of this broker; advertise it too (e.g. {name}://{{pod}}.{{service}}.{{namespace}}.svc:PORT)"
            ));
        }
    }
    if let Some((var, name)) = config.inter_broker_name {
        if !seen.contains(&name.trim().to_ascii_uppercase()) {
            return Err(ListenerError::InterBrokerNotAdvertised {
                name: clip(name.trim()),
                var: var.to_owned(),
            });
        }
    }
    Ok(warnings)
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
    // A Kubernetes `$(VAR)` reference is expanded when the container starts (a downward-API pod
    // IP, a name the chart builds): what surrounds it must still make a DNS name.
    host.parse::<IpAddr>().is_ok()
        || is_dns_name(host)
        || (host.contains("$(") && is_dns_name(&without_references(host)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: (&str, &str) = (
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,A:PLAINTEXT,_X:SSL,PLAINTEXT:PLAINTEXT,SSL:SSL",
    );

    fn mapped() -> BrokerListenerConfig<'static> {
        BrokerListenerConfig {
            protocol_map: Some(MAP),
            ..BrokerListenerConfig::default()
        }
    }

    fn ok(value: &str) {
        validate(value, &mapped()).unwrap_or_else(|e| panic!("{value}: {e}"));
    }

    fn err(value: &str) -> ListenerError {
        validate(value, &mapped()).unwrap_err()
    }

    #[test]
    fn a_bound_listener_left_out_of_the_advertised_value_is_a_warning() {
        let config = BrokerListenerConfig {
            listeners: Some((
                "KAFKA_LISTENERS",
                "INTERNAL://:9092,A://:9093,EXTERNAL://:9094,CONTROLLER://:9095",
            )),
            controller_names: Some(("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")),
            ..mapped()
        };
        let warnings = validate("INTERNAL://a:9092,EXTERNAL://b:9094", &config).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "listener A is in the container's KAFKA_LISTENERS but not in the advertised value"
        ));
        assert!(
            validate("INTERNAL://a:9092,A://a:9093,EXTERNAL://b:9094", &config)
                .unwrap()
                .is_empty()
        );
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
            ..BrokerListenerConfig::default()
        };
        // A map that is set is the whole map: a standard protocol's name needs its entry too.
        assert_eq!(
            validate("INTERNAL://a:1,SSL://b:2", &config).unwrap_err().to_string(),
            "listener SSL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP (\"INTERNAL:PLAINTEXT, CONTROLLER:PLAINTEXT\"); use listener names the map has"
        );
        let unset = BrokerListenerConfig::default();
        assert!(validate("PLAINTEXT://a:1,SSL://b:2", &unset).is_ok());
        let error = validate("INTERNAL://a:1,EXTERNAL://b:2", &config).unwrap_err();
        assert_eq!(
            error.to_string(),
            "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP (\"INTERNAL:PLAINTEXT, CONTROLLER:PLAINTEXT\"); use listener names the map has"
        );
    }

    #[test]
    fn without_a_protocol_map_other_names_than_standard_protocols_are_warned_about() {
        let none = BrokerListenerConfig::default();
        assert_eq!(
            validate("PLAINTEXT://a:1,sasl_ssl://b:2", &none),
            Ok(vec![])
        );
        assert_eq!(
            validate("PLAINTEXT://a:1,EXTERNAL://b:2", &none).unwrap(),
            ["listener EXTERNAL is not a standard security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) and the container's env sets no KAFKA_LISTENER_SECURITY_PROTOCOL_MAP; unless the broker gets a map elsewhere it will refuse to start"]
        );
    }

    #[test]
    fn advertised_names_must_be_among_the_listeners() {
        let config = BrokerListenerConfig {
            listeners: Some(("KAFKA_CFG_LISTENERS", "INTERNAL://:9092,CONTROLLER://:9093")),
            ..mapped()
        };
        assert!(validate("internal://a:1", &config).is_ok());
        assert_eq!(
            validate("INTERNAL://a:1,EXTERNAL://b:2", &config)
                .unwrap_err()
                .to_string(),
            "listener EXTERNAL is not among the container's KAFKA_CFG_LISTENERS (\"INTERNAL://:9092,CONTROLLER://:9093\"); Kafka refuses advertised listeners it does not listen on"
        );
    }

    #[test]
    fn the_inter_broker_listener_must_be_advertised() {
        let config = BrokerListenerConfig {
            inter_broker_name: Some(("KAFKA_INTER_BROKER_LISTENER_NAME", "INTERNAL")),
            ..mapped()
        };
        assert!(validate("INTERNAL://a:1,EXTERNAL://b:2", &config).is_ok());
        assert_eq!(
            validate("EXTERNAL://b:2", &config).unwrap_err().to_string(),
            "the container's KAFKA_INTER_BROKER_LISTENER_NAME is INTERNAL, which the value does not advertise; Kafka would refuse to start"
        );
    }

    #[test]
    fn an_advertised_controller_listener_is_a_warning_since_kafka_3_9() {
        let config = BrokerListenerConfig {
            protocol_map: Some((
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            )),
            controller_names: Some(("KAFKA_CFG_CONTROLLER_LISTENER_NAMES", "CONTROLLER")),
            ..BrokerListenerConfig::default()
        };
        let warnings = validate("INTERNAL://a:1,CONTROLLER://b:2", &config).unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("listener CONTROLLER is a controller listener (the container's KAFKA_CFG_CONTROLLER_LISTENER_NAMES); Kafka accepts an advertised controller listener only from 3.9"),
            "{warnings:?}"
        );
    }

    #[test]
    fn the_work_is_bounded_and_linear() {
        let many = vec!["A://h:1"; MAX_LISTENERS + 1].join(",");
        assert_eq!(err(&many), ListenerError::TooMany(MAX_LISTENERS + 1));
        // The largest accepted value against a 20,000-entry map: hash sets, not nested loops.
        let map: String = (0..20_000).map(|i| format!("L{i}:PLAINTEXT,")).collect();
        let value: Vec<String> = (0..MAX_LISTENERS).map(|i| format!("L{i}://h:1")).collect();
        let config = BrokerListenerConfig {
            protocol_map: Some(("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", &map)),
            ..BrokerListenerConfig::default()
        };
        assert!(validate(&value.join(","), &config).is_ok());
    }
}

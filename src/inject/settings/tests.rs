use super::*;
use crate::inject::view::TextMap;

fn annotations(pairs: &[(&str, &str)]) -> TextMap<'static> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}").into(), v.to_string().into()))
        .collect()
}

#[test]
fn annotations_override_flags() {
    let defaults = Defaults {
        domain: Some("a.example.com".into()),
        ..Defaults::default()
    };
    let annotations = annotations(&[
        ("domain", "b.example.com"),
        ("env-name", "KAFKA_CFG_ADVERTISED_LISTENERS"),
        ("container", "broker"),
        ("node-id-env", "KAFKA_NODE_ID"),
        ("node-id-offset", "100"),
        ("listeners", "EXTERNAL://{pod}.{domain}:9094"),
    ]);
    let resolved = resolve(&defaults, Some(&annotations)).unwrap();
    assert_eq!(resolved.domain, Some("b.example.com"));
    assert_eq!(
        resolved.env_name,
        EnvName::Named("KAFKA_CFG_ADVERTISED_LISTENERS".into())
    );
    assert_eq!(resolved.containers, ["broker"]);
    assert!(resolved.containers_explicit);
    assert_eq!(resolved.node_id_env, Some("KAFKA_NODE_ID"));
    assert_eq!(resolved.node_id_offset, 100);
    assert_eq!(
        resolved.listeners(&defaults).as_str(),
        "EXTERNAL://{pod}.{domain}:9094"
    );
}

#[test]
fn bad_annotation_names_the_annotation() {
    let defaults = Defaults::default();
    let annotations = annotations(&[("node-id-offset", "ten")]);
    let err = resolve(&defaults, Some(&annotations)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "annotation kafka-listener-injector.io/node-id-offset: \"ten\" is not an integer"
    );
    let annotations = self::annotations(&[("listeners", "E://{host}:1")]);
    let err = resolve(&defaults, Some(&annotations)).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "annotation kafka-listener-injector.io/listeners: unknown placeholder {host}"
        ),
        "{err}"
    );
}

#[test]
fn bad_flag_names_the_flag() {
    let flags = Flags {
        listeners: "E://{nope}:1".into(),
        env_name: "auto".into(),
        ..Flags::default()
    };
    let err = Defaults::from_flags(flags).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--listeners: unknown placeholder {nope}"),
        "{err}"
    );
    let flags = Flags {
        listeners: DEFAULT_LISTENERS.into(),
        env_name: "1BAD".into(),
        ..Flags::default()
    };
    assert!(Defaults::from_flags(flags)
        .unwrap_err()
        .to_string()
        .starts_with("--env-name:"));
}

#[test]
fn ignore_list_always_holds_the_system_namespaces() {
    let flags = Flags {
        listeners: DEFAULT_LISTENERS.into(),
        env_name: "auto".into(),
        ignore_namespaces: vec!["webhooks".into(), "kube-system".into()],
        ..Flags::default()
    };
    let defaults = Defaults::from_flags(flags).unwrap();
    assert_eq!(
        defaults.ignore_namespaces,
        ["kube-system", "kube-public", "kube-node-lease", "webhooks"]
    );
}

#[test]
fn templated_env_comes_from_flags_and_annotations_which_override_them() {
    let flags = Flags {
        listeners: DEFAULT_LISTENERS.into(),
        env_name: "none".into(),
        env: vec![
            "EXTERNAL_HOST={pod}.{domain}".into(),
            "PORT={ordinal+31090}".into(),
        ],
        ..Flags::default()
    };
    let defaults = Defaults::from_flags(flags).unwrap();
    let annotations = annotations(&[("env.PORT", "{ordinal+9000}"), ("env.ZONE", "a")]);
    let resolved = resolve(&defaults, Some(&annotations)).unwrap();
    let extra: Vec<(&str, &str, String)> = resolved
        .extra_env
        .iter()
        .map(|e| (e.name, e.template.as_str(), e.origin.to_string()))
        .collect();
    assert_eq!(
        extra,
        [
            (
                "EXTERNAL_HOST",
                "{pod}.{domain}",
                "--env EXTERNAL_HOST".into()
            ),
            (
                "PORT",
                "{ordinal+9000}",
                "annotation kafka-listener-injector.io/env.PORT".into()
            ),
            (
                "ZONE",
                "a",
                "annotation kafka-listener-injector.io/env.ZONE".into()
            ),
        ]
    );
}

#[test]
fn every_injected_variable_name_is_distinct() {
    let flags = Flags {
        listeners: DEFAULT_LISTENERS.into(),
        env_name: "auto".into(),
        node_id_env: Some("KAFKA_ADVERTISED_LISTENERS".into()),
        ..Flags::default()
    };
    assert_eq!(
        Defaults::from_flags(flags).unwrap_err().to_string(),
        "--env-name and --node-id-env both set the env var KAFKA_ADVERTISED_LISTENERS; \
         every injected variable must be distinct"
    );
    let flags = Flags {
        listeners: DEFAULT_LISTENERS.into(),
        env_name: "none".into(),
        env: vec!["KAFKA_NODE_ID=1".into()],
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..Flags::default()
    };
    assert!(Defaults::from_flags(flags).is_err());
    let defaults = Defaults {
        node_id_env: Some("KAFKA_NODE_ID".into()),
        ..Defaults::default()
    };
    let annotations = annotations(&[("node-id-env", "KAFKA_CFG_ADVERTISED_LISTENERS")]);
    let resolved = resolve(&defaults, Some(&annotations)).unwrap();
    assert_eq!(
        resolved
            .variable_names(Some("KAFKA_CFG_ADVERTISED_LISTENERS"))
            .unwrap_err()
            .to_string(),
        "--env-name and annotation kafka-listener-injector.io/node-id-env both set the env var \
         KAFKA_CFG_ADVERTISED_LISTENERS; every injected variable must be distinct"
    );
}

#[test]
fn a_domain_may_be_written_fully_qualified() {
    let defaults = Defaults::default();
    let annotations = annotations(&[("domain", "kafka.example.com.")]);
    let resolved = resolve(&defaults, Some(&annotations)).unwrap();
    assert_eq!(resolved.domain, Some("kafka.example.com"));
}

#[test]
fn unrelated_annotations_are_ignored() {
    let mut annotations = annotations(&[("domain", "x.example.com")]);
    annotations.insert("kafka-listener-injector.io".into(), "odd".into());
    annotations.insert("zzz/domain".into(), "nope".into());
    assert_eq!(
        annotation(Some(&annotations), Setting::Domain),
        Some("x.example.com")
    );
}

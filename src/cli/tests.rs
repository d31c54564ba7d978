use super::*;

#[test]
fn every_setting_has_its_flag_env_var_and_annotation_named_alike() {
    use crate::inject::settings::{Setting, PREFIX};
    use clap::CommandFactory;
    let command = Cli::command();
    let preview = command.find_subcommand("preview").unwrap();
    for setting in Setting::ALL {
        let name = setting.flag_name();
        let arg = preview
            .get_arguments()
            .find(|a| a.get_long() == Some(name))
            .unwrap_or_else(|| panic!("no flag --{name}"));
        let env = format!("KLI_{}", name.to_ascii_uppercase().replace('-', "_"));
        assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()));
        assert_eq!(setting.annotation(), format!("{PREFIX}{name}"));
    }
}

#[test]
fn cli_definition_is_consistent() {
    use clap::CommandFactory;
    Cli::command().debug_assert();
}

#[test]
fn a_plain_password_without_tls_is_refused_unless_allowed() {
    let parse = |extra: &[&str]| {
        let mut args = vec![
            "kafka-listener-injector",
            "probe",
            "--bootstrap",
            "kafka-0.kafka.example.com:9094",
            "--sasl-mechanism",
            "PLAIN",
            "--sasl-username",
            "alice",
            "--sasl-password-file",
            "Cargo.toml",
        ];
        args.extend_from_slice(extra);
        let Command::Probe(probe) = Cli::try_parse_from(args).unwrap().command else {
            unreachable!()
        };
        probe.config().map(|_| ()).map_err(|e| e.to_string())
    };
    let refused = parse(&[]).unwrap_err();
    assert!(refused.contains("PLAIN without --tls"), "{refused}");
    parse(&["--allow-plaintext-password"]).unwrap();
    let ca = std::env::temp_dir().join(format!("kli-probe-ca-{}.pem", std::process::id()));
    let certified = rcgen::generate_simple_self_signed(vec!["ca.example.com".into()]).unwrap();
    std::fs::write(&ca, certified.cert.pem()).unwrap();
    parse(&["--tls", "--ca-file", ca.to_str().unwrap()]).unwrap();
    std::fs::remove_file(ca).unwrap();
}

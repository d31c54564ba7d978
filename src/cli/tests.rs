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

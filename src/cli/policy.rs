//! `policy`: the native MutatingAdmissionPolicy render flags.

use clap::{Args, ValueEnum};

use super::{InjectionArgs, ServicesOutput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyMode {
    /// Pods labelled kafka-listener-injector.io/inject=true in any namespace.
    ClusterWide,
    /// Every pod in namespaces labelled kafka-listener-injector.io/injection=enabled.
    NamespaceOptIn,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[arg(long, env = "KLI_MODE", value_enum, default_value_t = PolicyMode::ClusterWide)]
    pub mode: PolicyMode,
    #[arg(short = 'o', long, env = "KLI_OUTPUT", value_enum, default_value_t = ServicesOutput::Yaml)]
    pub output: ServicesOutput,
    #[command(flatten)]
    pub injection: InjectionArgs,
}

impl PolicyArgs {
    pub fn config(&self) -> anyhow::Result<crate::policy::Config> {
        Ok(crate::policy::Config {
            defaults: self.injection.defaults()?,
            mode: match self.mode {
                PolicyMode::ClusterWide => crate::policy::Mode::ClusterWide,
                PolicyMode::NamespaceOptIn => crate::policy::Mode::NamespaceOptIn,
            },
            output: match self.output {
                ServicesOutput::Yaml => crate::output::Format::Yaml,
                ServicesOutput::Json => crate::output::Format::Json,
            },
        })
    }
}

//! The command line: one file per command's arguments (clap derive) and their conversion into
//! that command's validated configuration. Flags become configuration here, once: every other
//! module takes plain, already-checked types, and every message names the flag at fault.

mod certs;
mod injection;
mod policy;
mod preview;
mod probe;
mod reconcile;
mod roll;
mod serve;
mod services;
mod wait_for_name;

pub use self::certs::CertsArgs;
pub use self::injection::InjectionArgs;
pub use self::policy::{PolicyArgs, PolicyMode};
pub use self::preview::{ManifestArgs, PreviewArgs, PreviewOutput};
pub use self::probe::{ProbeArgs, ProbeOutput, SecurityArgs};
pub use self::reconcile::ReconcileArgs;
pub use self::roll::{RollArgs, RollOutput};
pub use self::serve::ServeArgs;
pub use self::services::{
    CloudArg, LoadBalancerScope, RenderArgs, ServiceType, ServicesArgs, ServicesOutput,
    TrafficPolicy,
};
pub use self::wait_for_name::WaitForNameArgs;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kafka-listener-injector",
    version = crate::version::LONG_VERSION,
    about
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTPS admission webhook (POST /mutate) and the plain-HTTP admin port.
    Serve(ServeArgs),
    /// Show, offline, what `serve` would do to each broker pod of some manifests.
    Preview(PreviewArgs),
    /// Render one Service per broker, with the external-dns hostname of its advertised listener.
    Services(ServicesArgs),
    /// Keep one Service per broker in the cluster as StatefulSets scale (the same render as
    /// `services`), and report whether each advertised name resolves to its load balancer.
    Reconcile(ReconcileArgs),
    /// Write a CA and a serving certificate for the webhook, and print the caBundle.
    Certs(CertsArgs),
    /// Print the injection as a native MutatingAdmissionPolicy (Kubernetes 1.36+), with a
    /// companion ValidatingAdmissionPolicy; say on stderr what the webhook does that it cannot.
    Policy(PolicyArgs),
    /// From where a client runs: bootstrap over the Kafka protocol, then resolve, connect to and
    /// identify every advertised broker, and name each one a client here cannot use.
    Probe(ProbeArgs),
    /// Recreate the brokers whose settings changed, one at a time: each waits until the broker
    /// is back at its new endpoint and every partition is in sync (Kafka protocol, as `probe`).
    Roll(RollArgs),
    /// Wait until DNS names answer at their zone's authoritative servers (asked directly, so no
    /// resolver caches their absence): the init container that --wait-for-name-image adds.
    WaitForName(WaitForNameArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// The name the binary answers to as a kubectl plugin (installed as `kubectl-kafka_listeners`).
pub const PLUGIN_NAME: &str = "kubectl kafka-listeners";

impl Cli {
    /// Parses the command line; as a kubectl plugin, help and errors say `kubectl kafka-listeners`.
    pub fn parse_for(program: &str) -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let file = std::path::Path::new(program)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("");
        let mut command = Self::command();
        if file.starts_with("kubectl-kafka_listeners") {
            command = command.name(PLUGIN_NAME).bin_name(PLUGIN_NAME);
        }
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }

    /// Writes the completions for `shell`.
    pub fn completions(shell: clap_complete::Shell, out: &mut impl std::io::Write) {
        use clap::CommandFactory;
        let mut command = Self::command();
        clap_complete::generate(shell, &mut command, "kafka-listener-injector", out);
    }

    /// Writes the man page.
    pub fn man(out: &mut impl std::io::Write) -> std::io::Result<()> {
        use clap::CommandFactory;
        clap_mangen::Man::new(Self::command()).render(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=value"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests;

use std::process::ExitCode;

use clap::Parser;
use kafka_listener_injector::cli::{Cli, Command};
use kafka_listener_injector::preview::{self, Verdict};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Preview(args) => {
            let mut out = std::io::stdout().lock();
            let mut err = std::io::stderr();
            preview::run(&args, &mut out, &mut err).map(|verdict| match verdict {
                Verdict::Admitted => ExitCode::SUCCESS,
                Verdict::Denied => ExitCode::from(1),
            })
        }
        _ => Err(anyhow::anyhow!("not built yet")),
    };
    result.unwrap_or_else(|error| {
        eprintln!("kafka-listener-injector: {error:#}");
        ExitCode::from(2)
    })
}

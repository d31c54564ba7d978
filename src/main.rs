use std::process::ExitCode;

use clap::Parser;
use kafka_listener_injector::cli::{Cli, Command};
use kafka_listener_injector::preview::{self, Verdict};
use kafka_listener_injector::{certs, server, services, telemetry};

fn main() -> ExitCode {
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other crypto provider is installed");
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Command::Preview(args) => {
            let mut out = std::io::stdout().lock();
            preview::run(&args, &mut out, &mut std::io::stderr()).map(|verdict| match verdict {
                Verdict::Admitted => ExitCode::SUCCESS,
                Verdict::Denied => ExitCode::from(1),
                Verdict::NothingInjected => ExitCode::from(3),
            })
        }
        Command::Services(args) => {
            services::run(&args, &mut std::io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }
        Command::Certs(args) => {
            certs::run(&args, &mut std::io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|error| {
        // A closed pipe (`preview ... | head`) ends quietly, as other command-line tools do.
        let broken_pipe = error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
            .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe);
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        eprintln!("kafka-listener-injector: {error:#}");
        ExitCode::from(2)
    })
}

fn serve(args: kafka_listener_injector::cli::ServeArgs) -> anyhow::Result<()> {
    let _flush_logs_at_exit = telemetry::init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = server::Server::bind(&args).await?;
        server.run(server::shutdown_signal()).await
    })
}

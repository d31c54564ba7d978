use std::process::ExitCode;

use kafka_listener_injector::cli::{Cli, Command};
use kafka_listener_injector::preview::{self, Verdict};
use kafka_listener_injector::{certs, policy, reconcile, services, telemetry, webhook};

fn main() -> ExitCode {
    rustls::crypto::ring::default_provider()
        .install_default()
        .expect("no other crypto provider is installed");
    let program = std::env::args().next().unwrap_or_default();
    let cli = Cli::parse_for(&program);
    let result = match cli.command {
        Command::Serve(args) => args.config().and_then(serve).map(|()| ExitCode::SUCCESS),
        Command::Preview(args) => args.config().and_then(|config| {
            let mut out = std::io::stdout().lock();
            preview::run(&config, &mut out, &mut std::io::stderr()).map(|verdict| match verdict {
                Verdict::Admitted => ExitCode::SUCCESS,
                Verdict::Denied => ExitCode::from(1),
                Verdict::NothingInjected => ExitCode::from(3),
            })
        }),
        Command::Services(args) => args.config().and_then(|config| {
            services::run(
                &config,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )
            .map(|()| ExitCode::SUCCESS)
        }),
        Command::Reconcile(args) => args
            .config()
            .and_then(reconcile)
            .map(|()| ExitCode::SUCCESS),
        Command::Policy(args) => args.config().and_then(|config| {
            policy::run(
                &config,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr(),
            )
            .map(|()| ExitCode::SUCCESS)
        }),
        Command::Probe(args) => args.config().and_then(probe),
        Command::Roll(args) => args.config().and_then(roll),
        Command::WaitForName(args) => args.config().and_then(wait_for_name),
        Command::Completions { shell } => {
            Cli::completions(shell, &mut std::io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => Cli::man(&mut std::io::stdout().lock())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Certs(args) => args.config().and_then(|config| {
            certs::run(&config, &mut std::io::stdout().lock()).map(|()| ExitCode::SUCCESS)
        }),
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

/// Exit 0 when every broker is usable from here, 1 when any is not, 2 when the probe could not
/// bootstrap at all.
fn probe(config: kafka_listener_injector::probe::Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let reports = runtime.block_on(kafka_listener_injector::probe::probe(&config))?;
    let healthy = kafka_listener_injector::probe::write_reports(
        &reports,
        config.json,
        &mut std::io::stdout().lock(),
    )?;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Exit 0 when every broker is current (or `--dry-run`), 1 when the roll was refused or stopped.
fn roll(config: kafka_listener_injector::roll::Config) -> anyhow::Result<ExitCode> {
    use kafka_listener_injector::roll::Outcome;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(kafka_listener_injector::roll::run(
        &config,
        &mut std::io::stdout().lock(),
    ))?;
    Ok(match outcome {
        Outcome::Done | Outcome::Planned => ExitCode::SUCCESS,
        Outcome::Refused | Outcome::Stopped => ExitCode::from(1),
    })
}

/// Exit 0 when every name answers, and also when the time runs out, no server can be found or
/// heard, or the wait itself fails (the broker then starts anyway: a DNS fault must not keep it
/// down); 143 on SIGTERM, as the pod is being deleted. Only bad arguments exit 2.
fn wait_for_name(
    config: kafka_listener_injector::wait_for_name::Config,
) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut out = std::io::stdout();
        tokio::select! {
            outcome = kafka_listener_injector::wait_for_name::run(&config, &mut out) => {
                // Any fault of the wait itself (no resolver configuration, ...) lets the broker
                // start too: an init container that fails would hold it down for good.
                if let Err(error) = outcome {
                    eprintln!("wait-for-name: {error:#}; starting the broker anyway");
                }
                Ok(ExitCode::SUCCESS)
            }
            // As PID 1 of its container it must act on SIGTERM itself, or the pod waits out
            // its grace period.
            () = telemetry::shutdown_signal() => Ok(ExitCode::from(143)),
        }
    })
}

fn reconcile(config: reconcile::Config) -> anyhow::Result<()> {
    let _flush_logs_at_exit =
        telemetry::init_logging(config.log_format, telemetry::Logger::Reconcile);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(reconcile::run(config))
}

fn serve(config: webhook::Config) -> anyhow::Result<()> {
    let _flush_logs_at_exit = telemetry::init_logging(config.log_format, telemetry::Logger::Serve);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let server = webhook::Server::bind(config).await?;
        server.run(telemetry::shutdown_signal()).await
    })
}

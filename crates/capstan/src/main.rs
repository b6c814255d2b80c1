//! The `capstan` command line: parses, dispatches, maps failures to exit codes.
//! The work is done in the library crates.

mod preflight;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// capstan: make the 3 a.m. deploy of a database-backed service boring.
#[derive(Debug, Parser)]
#[command(name = "capstan", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, check and run schema migrations (Postgres or SQLite).
    Migrate(capstan_migrate::cli::MigrateArgs),
    /// Check that a migration set can run against the database (pending, ahead, drift).
    Gate(capstan_migrate::cli::GateArgs),
    /// List the instances in the fleet registry: live, departed, expired.
    Fleet(capstan_migrate::cli::FleetArgs),
    /// Lint migrations: locks, rewrites and breaking changes, before review.
    Lint(capstan_lint::cli::LintArgs),
    /// Query a health endpoint for exec probes: exit 0 for pass/warn, 1 for fail or no answer.
    Probe(capstan_probe::ProbeArgs),
    /// Rehearse a deploy: old and new binaries against every schema step, forward and back.
    Rehearse(capstan_rehearse::cli::RehearseArgs),
    /// What migrations copied before destroying it: list, show, restore, purge.
    Archive(capstan_migrate::cli::ArchiveArgs),
    /// The canary judge for Argo Rollouts and Flagger: `judge serve`.
    Judge(capstan_rollout::cli::JudgeArgs),
    /// Progressive rollouts: steps, the judge, automatic rollback (`rollout start|status|pause|resume|promote|abort`).
    Rollout(capstan_rollout::rollout_cli::RolloutArgs),
    /// Wide events: tail, query and compare what the proxy recorded; receive OTLP traces.
    Events(capstan_events::cli::EventsArgs),
    /// Reverse proxy: cohorts, sticky weighted splits, mirroring, one event per request.
    Proxy(capstan_proxy::cli::ProxyArgs),
    /// SLOs and error budgets: check, status, rules, the budget gate, the deploy log.
    Slo(capstan_slo::cli::SloArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    // The linter is synchronous (it starts its own runtime for --schema-from).
    if let Command::Lint(args) = &cli.command {
        let code = capstan_lint::cli::run(args, &mut std::io::stdout(), &mut std::io::stderr());
        std::process::exit(code);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let code = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => {
                capstan_migrate::cli::run_with_hooks(
                    args,
                    capstan_migrate::cli::MigrationSource::Dir,
                    capstan_migrate::cli::Hooks {
                        preflight: Some(&preflight::LintPreflight),
                        detector: Some(std::sync::Arc::new(capstan_lint::hooks::Archivist)),
                    },
                )
                .await
            }
            Command::Archive(args) => capstan_migrate::cli::run_archive(args).await,
            Command::Gate(args) => {
                capstan_migrate::cli::run_gate(args, capstan_migrate::cli::MigrationSource::Dir)
                    .await
            }
            Command::Fleet(args) => capstan_migrate::cli::run_fleet(args).await,
            Command::Probe(args) => capstan_probe::run_probe(args).await,
            Command::Rehearse(args) => capstan_rehearse::cli::run(args).await,
            Command::Judge(args) => capstan_rollout::cli::run(args).await,
            Command::Rollout(args) => capstan_rollout::rollout_cli::run(args).await,
            Command::Events(args) => capstan_events::cli::run(args).await,
            Command::Proxy(args) => capstan_proxy::cli::run(args).await,
            Command::Slo(args) => capstan_slo::cli::run(args).await,
            Command::Lint(_) => unreachable!("handled before the runtime starts"),
        }
    });
    std::process::exit(code);
}

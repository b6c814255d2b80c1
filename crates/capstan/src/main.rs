//! The `capstan` command line: parses, dispatches, maps failures to exit codes.
//! The work is done in the library crates.

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
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Migrate(args) => {
                capstan_migrate::cli::run(args, capstan_migrate::cli::MigrationSource::Dir).await
            }
            Command::Gate(args) => {
                capstan_migrate::cli::run_gate(args, capstan_migrate::cli::MigrationSource::Dir)
                    .await
            }
            Command::Fleet(args) => capstan_migrate::cli::run_fleet(args).await,
        }
    });
    std::process::exit(code);
}

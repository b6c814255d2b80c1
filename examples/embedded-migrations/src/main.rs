//! `notes`: a tiny application that carries its own migrations.
//!
//! - `notes migrate up|status|…` works with no capstan binary installed;
//! - `notes run` applies pending expand migrations at start-up through the
//!   library API, then does its work.

use capstan_migrate::cli::{MigrateArgs, MigrationSource};
use capstan_migrate::{Database, DatabaseUrl, MigrationSet, Migrator};
use clap::Parser;

static MIGRATIONS: &[(&str, &str)] = capstan_migrate::include_migrations!();

/// A notes service.
#[derive(Debug, Parser)]
#[command(name = "notes", version)]
enum Cli {
    /// Manage this service's schema (boxed: the arguments are large next to `Run`).
    Migrate(Box<MigrateArgs>),
    /// Apply pending migrations, insert a note, and print how many there are.
    Run {
        /// Database URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let code = match Cli::parse() {
        Cli::Migrate(args) => {
            capstan_migrate::cli::run(
                *args,
                MigrationSource::Embedded {
                    files: MIGRATIONS,
                    binary_version: concat!("notes ", env!("CARGO_PKG_VERSION")).into(),
                },
            )
            .await
        }
        Cli::Run { database } => match run(&database).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
    };
    std::process::exit(code);
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let set = MigrationSet::from_embedded(MIGRATIONS)?;
    let mut db = Database::connect(&DatabaseUrl::parse(url)?).await?;
    let report = Migrator::new(set)
        .with_binary_version(concat!("notes ", env!("CARGO_PKG_VERSION")))
        .up(&mut db)
        .await?;
    let n = report.ran.len();
    let noun = if n == 1 { "migration" } else { "migrations" };
    println!("applied {n} {noun} at start-up");
    Ok(())
}

//! `migrate`: one module per subcommand, each with its arguments, its run
//! and its rendering; [`run`] dispatches.

mod baseline;
mod down;
mod hash;
mod import;
mod new;
mod plan;
mod rebase;
mod repair;
mod status;
mod up;
mod verify;

use clap::{Args, Subcommand};

pub use baseline::BaselineArgs;
pub use down::DownArgs;
pub use hash::HashArgs;
pub use import::ImportArgs;
pub use new::NewArgs;
pub use plan::PlanArgs;
pub use rebase::RebaseArgs;
pub use repair::RepairArgs;
pub use up::UpArgs;

use super::context::{ConnArgs, Context, TimeoutArgs};
use super::exit::{Exit, Failure};

/// `migrate`: options and subcommand.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Lock and statement timeouts.
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: MigrateCommand,
}

/// The `migrate` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum MigrateCommand {
    /// Write the next numbered migration file from a template and update capstan.sum.
    #[command(after_help = "Examples:
  capstan migrate new \"add user email\"
  capstan migrate new \"drop user name\" --phase contract
  capstan migrate new \"index users email\" --no-transaction")]
    New(NewArgs),
    /// Show every migration: applied, pending, ahead, drifted or dirty.
    #[command(after_help = "Examples:
  capstan migrate status
  capstan migrate status --database postgres://app@db/app --json")]
    Status,
    /// Show what `up` would run, with the SQL. Changes nothing.
    #[command(after_help = "Examples:
  capstan migrate plan
  capstan migrate plan --to 7
  capstan migrate plan --json   # one document: the steps and the lint findings")]
    Plan(PlanArgs),
    /// Apply pending migrations; a contract migration only once no live instance needs what it removes.
    #[command(after_help = "Examples:
  capstan migrate up
  capstan migrate up --to 7
  capstan migrate up --wait --timeout 15m      # wait for old instances to leave
  capstan migrate up --lock-timeout 2s --lock-retries 5")]
    Up(UpArgs),
    /// Roll back with down sections, newest first (default: the newest one).
    #[command(after_help = "Examples:
  capstan migrate down            # the newest migration
  capstan migrate down --to 5     # everything newer than 0005")]
    Down(DownArgs),
    /// On a scratch database: apply all, then check each down restores the schema.
    #[command(after_help = "Examples:
  capstan migrate verify
  capstan migrate verify --database postgres://postgres@localhost/postgres")]
    Verify,
    /// Rewrite capstan.sum after an intended edit; with --accept, record an intended edit of an applied migration.
    #[command(after_help = "Examples:
  capstan migrate hash
  capstan migrate hash --accept 5 --reason \"comment typo in the up section\"")]
    Hash(HashArgs),
    /// Renumber not-yet-applied migrations after the newest one (after a merge).
    #[command(after_help = "Examples:
  capstan migrate rebase migrations/0007_add_email.sql
  capstan migrate rebase --offline migrations/0007_*.sql")]
    Rebase(RebaseArgs),
    /// Explain a dirty migration, and record how it was resolved.
    #[command(after_help = "Examples:
  capstan migrate repair                       # what is dirty, and how to resolve it
  capstan migrate repair --mark-applied 7
  capstan migrate repair --mark-rolled-back 7")]
    Repair(RepairArgs),
    /// Adopt an existing database: record 1..=VERSION as applied without running them.
    #[command(after_help = "Examples:
  capstan migrate baseline 12
  capstan migrate baseline --from goose        # what goose_db_version says goose applied")]
    Baseline(BaselineArgs),
    /// Convert another tool's migration directory into capstan's format.
    #[command(after_help = "Examples:
  capstan migrate import --from diesel ./diesel-migrations
  capstan migrate import --from goose db/migrations --dir migrations")]
    Import(ImportArgs),
}

/// Runs one `migrate` subcommand.
pub(crate) async fn run(cx: &Context<'_>, command: MigrateCommand) -> Result<Exit, Failure> {
    match command {
        MigrateCommand::New(args) => new::run(cx, args),
        MigrateCommand::Status => status::run(cx).await,
        MigrateCommand::Plan(args) => plan::run(cx, args).await,
        MigrateCommand::Up(args) => up::run(cx, args).await,
        MigrateCommand::Down(args) => down::run(cx, args).await,
        MigrateCommand::Verify => verify::run(cx).await,
        MigrateCommand::Hash(args) => hash::run(cx, args).await,
        MigrateCommand::Rebase(args) => rebase::run(cx, args).await,
        MigrateCommand::Repair(args) => repair::run(cx, args).await,
        MigrateCommand::Baseline(args) => baseline::run(cx, args).await,
        MigrateCommand::Import(args) => import::run(cx, args),
    }
}

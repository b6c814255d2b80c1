//! The `migrate` subcommand: the same code behind `capstan migrate …` and
//! behind `myapp migrate …` in an application that embeds its migrations.
//!
//! ```no_run
//! # async fn demo() {
//! use clap::Parser;
//! use capstan_migrate::cli::{MigrateArgs, MigrationSource};
//!
//! #[derive(Parser)]
//! enum Cli {
//!     /// Manage this service's database schema.
//!     Migrate(MigrateArgs),
//! }
//!
//! static MIGRATIONS: &[(&str, &str)] = &[("0001_init.sql", "-- capstan:up\nCREATE TABLE t (id int);")];
//!
//! let Cli::Migrate(args) = Cli::parse();
//! let code = capstan_migrate::cli::run(args, MigrationSource::Embedded {
//!     files: MIGRATIONS,
//!     binary_version: "myapp 1.0.0".into(),
//! }).await;
//! std::process::exit(code);
//! # }
//! ```
//!
//! Exit codes are a documented contract: [`Exit`] lists them, and
//! `docs/exit-codes.md` (generated from the `capstan` binary's table of every
//! command's codes) says what each means.
//!
//! One module per command (`migrate/` holds one per subcommand), each with
//! its arguments, its run and its rendering; a run writes through one
//! [`output::Output`] (human or JSON) and fails with a typed error that
//! carries its [`Exit`] code. Advice in messages names the binary the user
//! ran (`chirpy-v2 migrate repair` in an application that mounts `migrate`).

mod archive;
mod context;
mod exit;
mod fleet;
mod gate;
mod migrate;
mod output;
mod plan_move;
mod preflight;
mod progress;
mod render;
mod schema;

pub use archive::{ArchiveArgs, ArchiveCommand};
pub use context::{ConnArgs, TimeoutArgs};
pub use exit::{
    Exit, Kind, EXIT_BAD_INPUT, EXIT_CONTRACT_HELD, EXIT_DATABASE, EXIT_FAILED, EXIT_FROZEN,
    EXIT_GATE, EXIT_INTERRUPTED, EXIT_LINT, EXIT_LOCK_TIMEOUT, EXIT_OK, EXIT_REFUSED, EXIT_USAGE,
};
pub use fleet::{FleetArgs, FleetCommand, Who};
pub use gate::GateArgs;
pub use migrate::{
    BaselineArgs, DownArgs, HashArgs, ImportArgs, MigrateArgs, MigrateCommand, NewArgs, PlanArgs,
    RebaseArgs, RepairArgs, UpArgs,
};
pub use output::set_quiet;
pub use plan_move::{run_plan_move, PlanMoveArgs};
pub use preflight::{Hooks, Preflight, PreflightFinding};
pub use schema::{SchemaArgs, SchemaCommand};

use context::Context;
use output::Output;

/// Where the migrations come from.
#[derive(Debug, Clone)]
pub enum MigrationSource {
    /// A directory on disk (the `capstan` CLI).
    Dir,
    /// Files compiled into the binary (see [`crate::include_migrations!`]).
    Embedded {
        /// `(file name, text)` pairs.
        files: &'static [(&'static str, &'static str)],
        /// Recorded in history, like `chirpy 1.2.0`.
        binary_version: String,
    },
}

/// Runs a `migrate` command and returns its exit code. Results go to stdout,
/// progress and errors to stderr.
pub async fn run(args: MigrateArgs, source: MigrationSource) -> i32 {
    run_with(args, source, None).await
}

/// [`run`], with a [`Preflight`] that `plan` and `up` consult first.
pub async fn run_with(
    args: MigrateArgs,
    source: MigrationSource,
    preflight: Option<&dyn Preflight>,
) -> i32 {
    run_with_hooks(
        args,
        source,
        Hooks {
            preflight,
            detector: None,
        },
    )
    .await
}

/// [`run`], with the linter's preflight and the archive's detector.
pub async fn run_with_hooks(args: MigrateArgs, source: MigrationSource, hooks: Hooks<'_>) -> i32 {
    let MigrateArgs {
        conn,
        timeouts,
        command,
    } = args;
    let out = Output::new(conn.json).for_source(&source);
    let result = async {
        let mut cx = Context::new(conn, source)?;
        cx.timeouts = timeouts;
        cx.preflight = hooks.preflight;
        cx.detector = hooks.detector;
        migrate::run(&cx, command).await
    };
    out.finish(result.await)
}

/// Runs `gate`: exit 0 when compatible, 8 when not (with the reasons).
pub async fn run_gate(args: GateArgs, source: MigrationSource) -> i32 {
    let out = Output::new(args.conn.json).for_source(&source);
    let result = async {
        let cx = Context::new_for_app(args.conn, source, Some(&args.app))?;
        gate::run(&cx, &args.app).await
    };
    out.finish(result.await)
}

/// Runs `fleet`: lists live and recently departed instances, or registers one.
pub async fn run_fleet(args: FleetArgs) -> i32 {
    let out = Output::new(args.conn.json);
    let result = async {
        let app = match &args.command {
            Some(fleet::FleetCommand::Run { who, .. } | fleet::FleetCommand::Join { who, .. }) => {
                Some(who.app.as_str())
            }
            _ => None,
        };
        let cx = Context::new_for_app(args.conn, MigrationSource::Dir, app)?;
        fleet::run(&cx, args.command).await
    };
    out.finish(result.await)
}

/// Runs `schema dump`.
pub async fn run_schema(args: SchemaArgs) -> i32 {
    let out = Output::new(args.conn.json);
    let result = async {
        let cx = Context::new(args.conn, MigrationSource::Dir)?;
        schema::run(&cx, args.command).await
    };
    out.finish(result.await)
}

/// Runs an `archive` command and returns its exit code.
pub async fn run_archive(args: ArchiveArgs) -> i32 {
    let out = Output::new(args.conn.json);
    let result = async {
        let cx = Context::new(args.conn, MigrationSource::Dir)?;
        archive::run(&cx, args.command).await
    };
    out.finish(result.await)
}

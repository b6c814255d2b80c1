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
//! Exit codes are a documented contract (see `docs/exit-codes.md`):
//! 0 success, 1 a migration failed or verify found differences, 2 usage,
//! 3 bad input (files, sum, config, URL), 4 database unreachable or permission
//! denied, 5 refused by state (dirty, drift, out of order, no down section),
//! 6 `up` stopped before a contract migration, 7 lock timeout retries exhausted.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

mod fleet;
pub use fleet::{FleetCommand, Who};

use crate::archive::{self, ArchiveError, Detector};
use crate::config::{Config, ConfigError, CONFIG_FILE};
use crate::driver::{Direction, FailureKind};
use crate::migrator::{
    ContractPolicy, Database, Error, Event, Migrator, RepairAction, RunReport, Settings, State,
    UpOptions,
};
use crate::source::{parse_duration, parse_timeout, MigrationSet, Phase, SourceError};
use crate::url::{DatabaseUrl, DEFAULT_URL};
use crate::workdir::{self, WorkdirError};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: a migration failed, or `verify` found differences.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad command-line usage (clap's own code).
pub const EXIT_USAGE: i32 = 2;
/// Exit code: bad input — migration files, `capstan.sum`, config, URL.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: the database is unreachable or refused a privilege.
pub const EXIT_DATABASE: i32 = 4;
/// Exit code: refused by the database's state (dirty, drift, out of order, no down).
pub const EXIT_REFUSED: i32 = 5;
/// Exit code: `up` stopped before a contract migration; what could run, ran.
pub const EXIT_CONTRACT_HELD: i32 = 6;
/// Exit code: a lock was not granted after every retry.
pub const EXIT_LOCK_TIMEOUT: i32 = 7;
/// Exit code: `gate` found the migration set incompatible with the database.
pub const EXIT_GATE: i32 = 8;
/// Exit code: `plan`/`up` refused pending migrations with lint errors (see `--unsafe-ok`).
pub const EXIT_LINT: i32 = 9;
/// Exit code: SIGINT or SIGTERM stopped `up` or `down` (what ran is reported;
/// see `capstan_migrate::interrupt`).
pub const EXIT_INTERRUPTED: i32 = 130;
/// Exit code: `up` refused a contract migration: the error budget policy froze deploys.
pub const EXIT_FROZEN: i32 = 10;

/// What the `capstan` binary plugs into the engine: the linter as the
/// preflight of `plan`/`up`, and the detector of data-destroying statements
/// the archive needs. An application that embeds its migrations may pass
/// `capstan_lint::hooks` too, or nothing.
#[derive(Clone, Default)]
pub struct Hooks<'a> {
    /// Checks pending migrations before `plan` and `up`.
    pub preflight: Option<&'a dyn Preflight>,
    /// Finds the statements whose data `up` and `down` archive first.
    pub detector: Option<Arc<dyn Detector>>,
}

/// A finding that stops `plan` and `up` (an error-level lint finding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreflightFinding {
    /// The migration it is in.
    pub version: u64,
    /// `file:line:column: rule: message`.
    pub text: String,
    /// The finding as `capstan lint --format json` prints it (an object with
    /// `rule`, `severity`, `file`, `line`, …), when the preflight has one.
    pub detail: Option<serde_json::Value>,
    /// Whether it refuses the run. A finding that does not (a lock finding on
    /// a table that is small right now) is printed as a warning.
    pub refuses: bool,
}

/// Findings for JSON output: each in the shape of `capstan lint --format
/// json`'s findings, plus the `version` of the migration it is in.
fn findings_json(found: &[PreflightFinding]) -> Vec<serde_json::Value> {
    found
        .iter()
        .map(|f| match &f.detail {
            Some(serde_json::Value::Object(o)) => {
                let mut o = o.clone();
                o.insert("version".into(), f.version.into());
                serde_json::Value::Object(o)
            }
            _ => serde_json::json!({"version": f.version, "message": f.text}),
        })
        .collect()
}

/// Checks pending migrations before `plan` and `up` run them. The `capstan`
/// binary plugs its linter in here; an application that embeds its migrations
/// passes none (its migrations were linted before it was built).
pub trait Preflight: Send + Sync {
    /// The findings that refuse the run, for the `pending` migrations of `set`,
    /// written for `dialect`; `config` is the `capstan.toml` in effect, if any.
    fn check(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
    ) -> Result<Vec<PreflightFinding>, String>;

    /// [`Preflight::check`], knowing the live database (`live`: its table
    /// sizes and session time zone). The default ignores it.
    fn check_live(
        &self,
        set: &MigrationSet,
        pending: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
        live: &crate::live::LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        let _ = live;
        self.check(set, pending, dialect, config)
    }

    /// The findings in the down sections `down` is about to run
    /// (`reverting`, newest first). `down` prints them and goes ahead: a
    /// rollback is not refused. The default finds nothing.
    fn check_down(
        &self,
        set: &MigrationSet,
        reverting: &[u64],
        dialect: crate::split::Dialect,
        config: Option<&Path>,
        live: &crate::live::LiveDb,
    ) -> Result<Vec<PreflightFinding>, String> {
        let _ = (set, reverting, dialect, config, live);
        Ok(Vec::new())
    }

    /// Consulted before `up` applies the contract migrations `contracts`:
    /// `Ok(Some(reason))` freezes the run (nothing is applied). The `capstan`
    /// binary plugs the error budget gate in here; the default lets it run.
    fn contract_gate(
        &self,
        contracts: &[u64],
        config: Option<&Path>,
    ) -> Result<Option<String>, String> {
        let _ = (contracts, config);
        Ok(None)
    }

    /// The phase classifier `migrate import` marks contract migrations
    /// with; the default imports every migration as expand.
    fn phase_classifier(&self) -> Option<&dyn crate::import::PhaseClassifier> {
        None
    }
}

/// Options shared by every command that reads migrations and a database.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Database URL (postgres://… or sqlite://file.db). Default: DATABASE_URL, then
    /// capstan.toml, then sqlite://capstan.db.
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Migration directory. Default: capstan.toml's migrations_dir, then ./migrations.
    #[arg(long, global = true)]
    pub dir: Option<PathBuf>,
    /// Config file (default: ./capstan.toml if it exists).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (see docs/json.md).
    #[arg(long, global = true)]
    pub json: bool,
}

/// The timeouts of the commands that run migrations (`migrate …`); `gate`,
/// `fleet` and `archive` run none, so they take none.
#[derive(Debug, Clone, Default, Args)]
pub struct TimeoutArgs {
    /// Lock timeout for DDL, like 3s: whole milliseconds, at most about 24
    /// days; 0 waits for locks as long as it takes (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub lock_timeout: Option<String>,
    /// Retries after a lock timeout (overrides capstan.toml).
    #[arg(long, global = true, value_name = "N")]
    pub lock_retries: Option<u32>,
    /// Statement timeout, like 5m; 0 for none (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub statement_timeout: Option<String>,
    /// How long to wait for another runner to release the migration lock,
    /// like 10m (default); 0 to give up at once (overrides capstan.toml).
    #[arg(long, global = true, value_name = "DURATION")]
    pub runner_lock_timeout: Option<String>,
}

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

/// `gate`: is this migration set compatible with the database?
#[derive(Debug, Clone, Args)]
pub struct GateArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The application name used in advice (`run \`APP migrate up\``).
    #[arg(long, default_value = "capstan")]
    pub app: String,
}

/// `schema`: the application's schema as SQL.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: SchemaCommand,
}

/// The `schema` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum SchemaCommand {
    /// Print the application's schema (no capstan tables), in a deterministic order.
    #[command(after_help = "Examples:
  capstan schema dump                    # to stdout
  capstan schema dump -o schema.sql      # for sqlc: schema: schema.sql
  capstan migrate up --dump-schema schema.sql

Postgres: pg_dump --schema-only when pg_dump is on PATH and accepts the
server, else the catalog; SQLite: sqlite_master. Set schema_file in
capstan.toml to rewrite it after every up and down.")]
    Dump {
        /// Write it to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs `schema dump`.
pub async fn run_schema(args: SchemaArgs) -> i32 {
    let json = args.conn.json;
    report_exit(json, async {
        let cx = Context::new(args.conn, MigrationSource::Dir)?;
        let SchemaCommand::Dump { output } = args.command;
        let url = cx.url()?;
        let mut db = Database::connect_read_only(&url).await?;
        let dump = crate::schema_dump::dump(&mut db, &url)
            .await
            .map_err(Error::from)?;
        if let Some(note) = &dump.note {
            if !quiet() {
                eprintln!("{note}; dumped from the catalog instead");
            }
        }
        match &output {
            Some(path) => {
                crate::schema_dump::write(path, &dump.sql).map_err(|e| {
                    Failure::new(
                        EXIT_BAD_INPUT,
                        "bad-input",
                        format!("cannot write {}: {e}", path.display()),
                    )
                })?;
                emit(
                    json,
                    &serde_json::json!({"written": path, "method": dump.method}),
                    || format!("wrote the schema to {}", path.display()),
                );
            }
            None if json => emit(
                json,
                &serde_json::json!({"schema": dump.sql, "method": dump.method}),
                String::new,
            ),
            None => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(dump.sql.as_bytes());
            }
        }
        Ok(EXIT_OK)
    })
    .await
}

/// `fleet`: the instances registered in the fleet registry.
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do (default: list).
    #[command(subcommand)]
    pub command: Option<FleetCommand>,
}

/// `archive`: what migrations copied before destroying it.
#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Database, directory and run options.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: ArchiveCommand,
}

/// The `archive` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ArchiveCommand {
    /// Every archive entry: migration, statement, object, rows, size, age.
    #[command(after_help = "Examples:
  capstan archive list
  capstan archive list --json")]
    List,
    /// One entry, with its first rows.
    #[command(after_help = "Examples:
  capstan archive show 3")]
    Show {
        /// The entry id (from `archive list`).
        id: i64,
    },
    /// Put an entry's data back, in one transaction; refuses when today's schema makes a faithful restore impossible.
    #[command(after_help = "Examples:
  capstan archive restore 3")]
    Restore {
        /// The entry id (from `archive list`).
        id: i64,
    },
    /// Drop entries older than --older-than (default: `retention` in capstan.toml), listing each one.
    #[command(after_help = "Examples:
  capstan archive purge
  capstan archive purge --older-than 30d")]
    Purge {
        /// Purge entries archived at least this long ago, like 30d.
        #[arg(long, value_name = "DURATION")]
        older_than: Option<String>,
    },
}

/// Runs an `archive` command and returns its exit code.
pub async fn run_archive(args: ArchiveArgs) -> i32 {
    let json = args.conn.json;
    report_exit(json, async {
        let cx = Context::new(args.conn, MigrationSource::Dir)?;
        let settings = cx.settings()?;
        let identity = crate::driver::Identity::current(concat!(
            "capstan ",
            env!("CARGO_PKG_VERSION")
        ));
        let url = cx.url()?;
        match args.command {
            ArchiveCommand::List => {
                let mut db = Database::connect_read_only(&url).await?;
                let entries = archive::list(db.driver()).await.map_err(Error::from)?;
                emit(json, &serde_json::json!({ "entries": entries }), || {
                    render_entries(&entries)
                });
            }
            ArchiveCommand::Show { id } => {
                let mut db = Database::connect_read_only(&url).await?;
                let entry = archive::get(db.driver(), id)
                    .await
                    .map_err(Error::from)?
                    .ok_or(Error::Archive(ArchiveError::NotFound(id)))?;
                let (names, rows) = archive::preview(db.driver(), &entry, 10)
                    .await
                    .map_err(Error::from)?;
                emit(
                    json,
                    &serde_json::json!({ "entry": entry, "preview": { "columns": names, "rows": rows } }),
                    || render_entry(&entry, &names, &rows),
                );
            }
            ArchiveCommand::Restore { id } => {
                let mut db = Database::connect(&url).await?;
                db.driver()
                    .lock(settings.runner_lock_timeout)
                    .await
                    .map_err(Error::from)?;
                let result = archive::restore(db.driver(), id, &identity).await;
                let unlocked = db.driver().unlock().await;
                let report = result.map_err(Error::from)?;
                unlocked.map_err(Error::from)?;
                emit(json, &report, || {
                    let mut s = format!("restored entry {} ({}):", report.id, report.object);
                    if report.table_created {
                        s.push_str(" re-created the table (columns, types and primary key; other constraints, indexes and defaults are not part of the archive);");
                    }
                    if !report.columns_added.is_empty() {
                        s.push_str(&format!(" re-added {};", report.columns_added.join(", ")));
                    }
                    s.push_str(&format!(" {} rows written back", report.rows_restored));
                    if report.rows_not_restored > 0 {
                        s.push_str(&format!(
                            "; {} archived rows not written back (their key no longer exists, or a row with it exists again and was kept)",
                            report.rows_not_restored
                        ));
                    }
                    s
                });
            }
            ArchiveCommand::Purge { older_than } => {
                let age = match older_than {
                    Some(d) => parse_duration(&d).map_err(|e| {
                        Failure::new(EXIT_BAD_INPUT, "bad-input", format!("--older-than: {e}"))
                    })?,
                    None => settings
                        .archive_retention
                        .ok_or(Error::Archive(ArchiveError::NoRetention))?,
                };
                let mut db = Database::connect(&url).await?;
                db.driver()
                    .lock(settings.runner_lock_timeout)
                    .await
                    .map_err(Error::from)?;
                let result = archive::purge(db.driver(), age).await;
                let unlocked = db.driver().unlock().await;
                let purged = result.map_err(Error::from)?;
                unlocked.map_err(Error::from)?;
                emit(json, &serde_json::json!({ "purged": purged }), || {
                    if purged.is_empty() {
                        return format!(
                            "nothing archived {} ago or earlier; nothing purged",
                            humantime::format_duration(age)
                        );
                    }
                    let mut s = String::new();
                    for e in &purged {
                        s.push_str(&format!(
                            "purged entry {} ({} from {}, {} rows, archived {})\n",
                            e.id,
                            e.object(),
                            e.label(),
                            e.row_count,
                            e.archived_at
                        ));
                    }
                    s.push_str(&format!("purged {}", plural(purged.len(), "entry", "entries")));
                    s
                });
            }
        }
        Ok(EXIT_OK)
    })
    .await
}

fn render_entries(entries: &[archive::ArchiveEntry]) -> String {
    if entries.is_empty() {
        return "the archive is empty".to_string();
    }
    let mut s = String::new();
    for e in entries {
        s.push_str(&format!(
            "{:>4}  {}  {:<11} {:<24} {:>8} rows {:>10}  {} {}{}\n",
            e.id,
            e.archived_at,
            e.kind,
            e.object(),
            e.row_count,
            archive::human_bytes(e.size_bytes),
            e.label(),
            e.direction,
            e.restored_at
                .as_deref()
                .map(|r| format!("  (restored {r})"))
                .unwrap_or_default()
        ));
    }
    s.push_str(&format!(
        "{}; `capstan archive show ID` for one, `capstan archive restore ID` to put it back",
        plural(entries.len(), "entry", "entries")
    ));
    s
}

fn render_entry(
    e: &archive::ArchiveEntry,
    names: &[String],
    rows: &[Vec<Option<String>>],
) -> String {
    let mut s = format!(
        "entry {}: {} of {}\n  migration  {} ({}), line {}\n  statement  {}\n  archived   {} by {} ({})\n  copy       {} ({} rows, {}, scope {}; primary key {})\n",
        e.id,
        e.kind,
        e.object(),
        e.label(),
        e.direction,
        e.line.unwrap_or(0),
        e.statement,
        e.archived_at,
        e.archived_by,
        e.binary_version,
        e.copy_name(),
        e.row_count,
        archive::human_bytes(e.size_bytes),
        e.scope,
        if e.primary_key.is_empty() { "none".to_string() } else { e.primary_key.join(", ") },
    );
    if let Some(r) = &e.restored_at {
        s.push_str(&format!(
            "  restored   {r} by {}\n",
            e.restored_by.as_deref().unwrap_or("?")
        ));
    }
    s.push_str(&format!("  first rows ({}):\n", names.join(", ")));
    for r in rows {
        let cells: Vec<&str> = r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect();
        s.push_str(&format!("    {}\n", cells.join(" | ")));
    }
    s.trim_end().to_string()
}

/// The `migrate` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum MigrateCommand {
    /// Write the next numbered migration file from a template and update capstan.sum.
    #[command(after_help = "Examples:
  capstan migrate new \"add user email\"
  capstan migrate new \"drop user name\" --phase contract
  capstan migrate new \"index users email\" --no-transaction")]
    New {
        /// What the migration does, e.g. "add user email".
        name: String,
        /// expand (default) or contract.
        #[arg(long, default_value = "expand", value_parser = parse_phase)]
        phase: Phase,
        /// Run outside a transaction (for CREATE INDEX CONCURRENTLY).
        #[arg(long)]
        no_transaction: bool,
    },
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
    Plan {
        /// Stop after this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Do not refuse pending migrations with lint errors.
        #[arg(long)]
        unsafe_ok: bool,
        /// Show contract migrations even if live instances block them.
        #[arg(long)]
        force_contract: bool,
        /// As `up --no-archive OBJECT` would: show this object as not archived.
        #[arg(long, value_name = "OBJECT")]
        no_archive: Vec<String>,
    },
    /// Apply pending migrations; a contract migration only once no live instance needs what it removes.
    #[command(after_help = "Examples:
  capstan migrate up
  capstan migrate up --to 7
  capstan migrate up --wait --timeout 15m      # wait for old instances to leave
  capstan migrate up --lock-timeout 2s --lock-retries 5")]
    Up {
        /// Stop after this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Wait for the live instances that block a contract migration to leave.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (default 10m).
        #[arg(long, value_name = "DURATION", requires = "wait")]
        timeout: Option<String>,
        /// Apply contract migrations even though live instances still need what they remove (recorded in history).
        #[arg(long, conflicts_with = "wait")]
        force_contract: bool,
        /// Apply pending migrations despite lint errors (recorded in history).
        #[arg(long)]
        unsafe_ok: bool,
        /// Destroy this object (`users.name`, `users`) without an archive copy (recorded in history); repeatable.
        #[arg(long, value_name = "OBJECT")]
        no_archive: Vec<String>,
        /// Afterwards, write the application's schema to FILE (as `schema dump -o FILE`;
        /// default: capstan.toml's schema_file).
        #[arg(long, value_name = "FILE")]
        dump_schema: Option<PathBuf>,
    },
    /// Roll back with down sections, newest first (default: the newest one).
    #[command(after_help = "Examples:
  capstan migrate down            # the newest migration
  capstan migrate down --to 5     # everything newer than 0005")]
    Down {
        /// Roll back every migration newer than this version (0: all).
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Destroy this object (`users.name`, `users`) without an archive copy (recorded in history); repeatable.
        #[arg(long, value_name = "OBJECT")]
        no_archive: Vec<String>,
        /// Afterwards, write the application's schema to FILE (as `schema dump -o FILE`;
        /// default: capstan.toml's schema_file).
        #[arg(long, value_name = "FILE")]
        dump_schema: Option<PathBuf>,
    },
    /// On a scratch database: apply all, then check each down restores the schema.
    #[command(after_help = "Examples:
  capstan migrate verify
  capstan migrate verify --database postgres://postgres@localhost/postgres")]
    Verify,
    /// Rewrite capstan.sum after an intended edit; with --accept, record an intended edit of an applied migration.
    #[command(after_help = "Examples:
  capstan migrate hash
  capstan migrate hash --accept 5 --reason \"comment typo in the up section\"")]
    Hash {
        /// Record the current file of this applied migration as what ran
        /// (who, when and why, in history), and update its line of capstan.sum only.
        #[arg(long, value_name = "VERSION", requires = "reason")]
        accept: Option<u64>,
        /// Why the edit is intended (recorded in history; required with --accept).
        #[arg(long, value_name = "TEXT", requires = "accept")]
        reason: Option<String>,
    },
    /// Renumber not-yet-applied migrations after the newest one (after a merge).
    #[command(after_help = "Examples:
  capstan migrate rebase migrations/0007_add_email.sql
  capstan migrate rebase --offline migrations/0007_*.sql")]
    Rebase {
        /// The migration files to move.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not ask the database whether they were applied.
        #[arg(long)]
        offline: bool,
    },
    /// Explain a dirty migration, and record how it was resolved.
    #[command(after_help = "Examples:
  capstan migrate repair                       # what is dirty, and how to resolve it
  capstan migrate repair --mark-applied 7
  capstan migrate repair --mark-rolled-back 7")]
    Repair {
        /// The failed migration was completed by hand: record it as applied.
        #[arg(long, value_name = "VERSION", conflicts_with = "mark_rolled_back")]
        mark_applied: Option<u64>,
        /// The failed migration was undone by hand: forget it so `up` runs it again.
        #[arg(long, value_name = "VERSION")]
        mark_rolled_back: Option<u64>,
    },
    /// Adopt an existing database: record 1..=VERSION as applied without running them.
    #[command(after_help = "Examples:
  capstan migrate baseline 12
  capstan migrate baseline --from goose        # what goose_db_version says goose applied")]
    Baseline {
        /// The newest migration the database already matches.
        #[arg(
            value_name = "VERSION",
            required_unless_present = "tool",
            conflicts_with = "tool"
        )]
        target: Option<u64>,
        /// Read what another tool applied from its history table (diesel, sqlx,
        /// goose, dbmate, golang-migrate) and record the migrations imported from it.
        #[arg(long = "from", value_name = "TOOL")]
        tool: Option<String>,
        /// The old tool's history table, when not its default
        /// (`__diesel_schema_migrations`, `_sqlx_migrations`, `goose_db_version`,
        /// `schema_migrations`).
        #[arg(long, value_name = "NAME", requires = "tool")]
        table: Option<String>,
    },
    /// Convert another tool's migration directory into capstan's format.
    #[command(after_help = "Examples:
  capstan migrate import --from diesel ./diesel-migrations
  capstan migrate import --from goose db/migrations --dir migrations")]
    Import {
        /// diesel, sqlx, goose, dbmate or golang-migrate.
        #[arg(long = "from", value_name = "TOOL")]
        tool: String,
        /// The other tool's migration directory.
        source: PathBuf,
    },
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    Phase::parse(s).ok_or_else(|| format!("unknown phase `{s}`; use expand or contract"))
}

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

/// A failure of the CLI, with its exit code.
#[derive(Debug)]
struct Failure {
    code: i32,
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(code: i32, kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            kind,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let (code, kind) = match &e {
            Error::Source(_) | Error::Url(_) => (EXIT_BAD_INPUT, "bad-input"),
            Error::Db(d) => db_exit(d.kind),
            Error::Dirty(_) => (EXIT_REFUSED, "dirty"),
            Error::Drift(_) => (EXIT_REFUSED, "drift"),
            Error::Collision(_) => (EXIT_REFUSED, "collision"),
            Error::NotApplied(_) => (EXIT_REFUSED, "not-applied"),
            Error::MissingReason => (EXIT_USAGE, "usage"),
            Error::OutOfOrder { .. } => (EXIT_REFUSED, "out-of-order"),
            Error::NoDown(_) => (EXIT_REFUSED, "no-down"),
            Error::AlreadyRecorded(_) => (EXIT_REFUSED, "already-recorded"),
            Error::UnknownVersion(_) => (EXIT_REFUSED, "unknown-version"),
            Error::NotDirty(_) => (EXIT_REFUSED, "not-dirty"),
            Error::ToolHistory { .. } => (EXIT_REFUSED, "tool-history"),
            Error::Failed(f) if f.failure.kind.retryable() => (EXIT_LOCK_TIMEOUT, "lock-timeout"),
            Error::Failed(f) if f.failure.kind == FailureKind::Interrupted => {
                (EXIT_INTERRUPTED, "interrupted")
            }
            Error::Interrupted { .. } => (EXIT_INTERRUPTED, "interrupted"),
            Error::Failed(f)
                if matches!(
                    f.failure.kind,
                    FailureKind::PermissionDenied
                        | FailureKind::Untrusted
                        | FailureKind::BadHistory
                ) =>
            {
                db_exit(f.failure.kind)
            }
            Error::Failed(_) => (EXIT_FAILED, "migration-failed"),
            Error::Archive(a) => match a {
                ArchiveError::NotFound(_) => (EXIT_BAD_INPUT, "not-found"),
                ArchiveError::Refused { .. } => (EXIT_REFUSED, "restore-refused"),
                ArchiveError::NoRetention => (EXIT_USAGE, "usage"),
                ArchiveError::Detector(_) | ArchiveError::UnknownObject { .. } => {
                    (EXIT_BAD_INPUT, "bad-input")
                }
                ArchiveError::Db(d) => db_exit(d.kind),
            },
        };
        Failure::new(code, kind, message)
    }
}

/// The exit code and JSON `kind` of a database error outside a migration.
fn db_exit(kind: FailureKind) -> (i32, &'static str) {
    match kind {
        FailureKind::PermissionDenied => (EXIT_DATABASE, "permission-denied"),
        // Another runner held the runner lock past --runner-lock-timeout.
        FailureKind::LockTimeout => (EXIT_LOCK_TIMEOUT, "lock-timeout"),
        FailureKind::Interrupted => (EXIT_INTERRUPTED, "interrupted"),
        FailureKind::Untrusted => (EXIT_REFUSED, "untrusted-schema"),
        FailureKind::BadHistory => (EXIT_REFUSED, "bad-history"),
        _ => (EXIT_DATABASE, "database"),
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::new(EXIT_BAD_INPUT, "bad-input", e.to_string())
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(EXIT_BAD_INPUT, "bad-input", e.to_string())
    }
}

impl From<WorkdirError> for Failure {
    fn from(e: WorkdirError) -> Self {
        let code = match e {
            WorkdirError::AlreadyApplied(_) => EXIT_REFUSED,
            _ => EXIT_BAD_INPUT,
        };
        Failure::new(code, "bad-input", e.to_string())
    }
}

/// Everything a command needs, resolved from flags, environment and config.
struct Context<'p> {
    preflight: Option<&'p dyn Preflight>,
    detector: Option<Arc<dyn Detector>>,
    args: ConnArgs,
    timeouts: TimeoutArgs,
    source: MigrationSource,
    config: Config,
    config_path: PathBuf,
    dir: PathBuf,
}

impl Context<'_> {
    /// The database URL in effect; says once, on stderr, which database
    /// (password hidden) and where its URL came from.
    fn url(&self) -> Result<DatabaseUrl, Failure> {
        let (url, whence) = self.url_and_source()?;
        if !quiet() && !ANNOUNCED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            eprintln!("using database {url} (from {whence})");
        }
        Ok(url)
    }

    /// With no URL anywhere, `up` would create `./capstan.db`: refused when
    /// the migrations are plainly written for Postgres.
    fn check_default_fits(&self) -> Result<(), Failure> {
        if self.url_and_source()?.1 != DEFAULT_WHENCE {
            return Ok(());
        }
        for m in self.set()?.migrations() {
            if let Some((line, what)) = crate::url::postgres_only(&m.up.sql) {
                return Err(Failure::new(
                    EXIT_BAD_INPUT,
                    "bad-input",
                    format!(
                        "no database URL was given (--database, DATABASE_URL or database_url in capstan.toml), so capstan would use its embedded default {DEFAULT_URL}, but these migrations are written for Postgres: {} line {} uses {what}. Set DATABASE_URL or pass --database postgres://…; to use SQLite on purpose, pass --database {DEFAULT_URL}. Nothing was run",
                        m.path.display(),
                        m.up.first_line + line,
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The URL and where it came from: `--database`, `DATABASE_URL`,
    /// capstan.toml, or [`DEFAULT_WHENCE`].
    fn url_and_source(&self) -> Result<(DatabaseUrl, String), Failure> {
        // An empty URL is a mistake (an unset CI secret, a typo), never a
        // request for the default SQLite file.
        let empty = |whence: &str| {
            Failure::new(
                EXIT_BAD_INPUT,
                "bad-input",
                format!("the database URL from {whence} is empty; give a postgres:// or sqlite:// URL (without one, capstan uses capstan.toml's database_url, then {DEFAULT_URL})"),
            )
        };
        let raw = match &self.args.database {
            Some(s) if s.trim().is_empty() => {
                return Err(empty(
                    if std::env::var("DATABASE_URL").as_deref() == Ok(s) {
                        "--database or DATABASE_URL"
                    } else {
                        "--database"
                    },
                ))
            }
            Some(s) if std::env::var("DATABASE_URL").as_deref() == Ok(s) => {
                (s.clone(), "DATABASE_URL".to_string())
            }
            Some(s) => (s.clone(), "--database".to_string()),
            None if std::env::var_os("DATABASE_URL").is_some_and(|v| v.is_empty()) => {
                return Err(empty("DATABASE_URL"))
            }
            None => match &self.config.database_url {
                Some(s) if s.trim().is_empty() => {
                    return Err(empty(&format!(
                        "{} (database_url)",
                        self.config_path.display()
                    )))
                }
                Some(s) => (
                    s.clone(),
                    format!("{} (database_url)", self.config_path.display()),
                ),
                None => (DEFAULT_URL.to_string(), DEFAULT_WHENCE.to_string()),
            },
        };
        let (raw, whence) = raw;
        let url = DatabaseUrl::parse(&raw)
            .map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", format!("{whence}: {e}")))?;
        Ok((url, whence))
    }

    fn settings(&self) -> Result<Settings, Failure> {
        let mut s = self.config.settings(&self.config_path)?;
        let bad = |flag: &str, e: String| {
            Failure::new(EXIT_BAD_INPUT, "bad-input", format!("--{flag}: {e}"))
        };
        if let Some(v) = &self.timeouts.lock_timeout {
            s.lock_timeout = parse_timeout(v).map_err(|e| bad("lock-timeout", e))?;
        }
        if let Some(v) = &self.timeouts.statement_timeout {
            s.statement_timeout = parse_timeout(v).map_err(|e| bad("statement-timeout", e))?;
        }
        if let Some(n) = self.timeouts.lock_retries {
            s.lock_retries = n;
        }
        if let Some(v) = &self.timeouts.runner_lock_timeout {
            s.runner_lock_timeout = parse_duration(v).map_err(|e| bad("runner-lock-timeout", e))?;
        }
        Ok(s)
    }

    fn set(&self) -> Result<MigrationSet, Failure> {
        match &self.source {
            MigrationSource::Dir => {
                if self.dir.exists() && !self.dir.is_dir() {
                    return Err(Failure::new(
                        EXIT_BAD_INPUT,
                        "bad-input",
                        format!(
                            "migration directory {} is not a directory (--dir names the directory that holds the .sql files)",
                            self.dir.display()
                        ),
                    ));
                }
                if !self.dir.is_dir() {
                    return Err(Failure::new(
                        EXIT_BAD_INPUT,
                        "bad-input",
                        format!(
                            "migration directory {} does not exist (use --dir, or create it with `capstan migrate new NAME`)",
                            self.dir.display()
                        ),
                    ));
                }
                Ok(MigrationSet::from_dir(&self.dir)?)
            }
            MigrationSource::Embedded { files, .. } => Ok(MigrationSet::from_embedded(files)?),
        }
    }

    fn migrator(&self) -> Result<Migrator, Failure> {
        let mut m = Migrator::new(self.set()?).with_settings(self.settings()?);
        if let MigrationSource::Embedded { binary_version, .. } = &self.source {
            m = m.with_binary_version(binary_version.clone());
        }
        if let Some(d) = &self.detector {
            m = m.with_detector(d.clone());
        }
        Ok(m)
    }

    async fn run_preflight(
        &self,
        preflight: &dyn Preflight,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
    ) -> Result<Vec<PreflightFinding>, Failure> {
        let config = self
            .config_path
            .exists()
            .then_some(self.config_path.as_path());
        let live = self.live(db).await?;
        preflight
            .check_live(m.set(), pending, db.driver().dialect(), config, &live)
            .map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", e))
    }

    /// The live database's table sizes and time zone, for the preflight.
    /// When they cannot be read (a table the role may not read), the lint
    /// goes on without them: every table counts as large.
    async fn live(&self, db: &mut Database) -> Result<crate::live::LiveDb, Failure> {
        let limit = crate::live::count_up_to(self.config.lint.as_ref());
        match db.driver().live(limit).await {
            Ok(live) => Ok(live),
            Err(e) => {
                eprintln!("warning: cannot read the table sizes ({e}); every table counts as large for the lint");
                Ok(crate::live::LiveDb::default())
            }
        }
    }

    /// Before `down`: lints the down sections of `reverting` and prints what
    /// it finds on stderr. A rollback goes ahead whatever it finds.
    async fn lint_down(
        &self,
        m: &Migrator,
        db: &mut Database,
        reverting: &[u64],
    ) -> Result<(), Failure> {
        let Some(preflight) = self.preflight else {
            return Ok(());
        };
        if reverting.is_empty() {
            return Ok(());
        }
        let config = self
            .config_path
            .exists()
            .then_some(self.config_path.as_path());
        let live = self.live(db).await?;
        let found = preflight
            .check_down(m.set(), reverting, db.driver().dialect(), config, &live)
            .map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", e))?;
        for f in &found {
            eprintln!("{}", f.text);
        }
        if !found.is_empty() {
            eprintln!(
                "warning: {} in the down sections about to run; rolling back anyway (a rollback is not refused)",
                plural(found.len(), "lint error", "lint errors")
            );
        }
        Ok(())
    }

    /// Runs the preflight on `pending` and prints what it found. Returns `None`
    /// when the findings refuse the run (no `--unsafe-ok`), else the findings
    /// overridden (empty when there were none).
    async fn lint_pending(
        &self,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
        unsafe_ok: bool,
    ) -> Result<Option<Vec<PreflightFinding>>, Failure> {
        let (found, refused) = self.lint_findings(m, db, pending, unsafe_ok).await?;
        if !refused {
            return Ok(Some(found));
        }
        if self.args.json {
            println!(
                "{}",
                serde_json::json!({"error": {"kind": "lint", "message": "lint errors in pending migrations", "exit_code": EXIT_LINT, "findings": findings_json(&found)}})
            );
        }
        Ok(None)
    }

    /// [`Self::lint_pending`] without the JSON error: the findings (printed on
    /// stderr) and whether they refuse the run.
    async fn lint_findings(
        &self,
        m: &Migrator,
        db: &mut Database,
        pending: &[u64],
        unsafe_ok: bool,
    ) -> Result<(Vec<PreflightFinding>, bool), Failure> {
        let Some(preflight) = self.preflight else {
            return Ok((Vec::new(), false));
        };
        // A database where nothing is applied yet serves no binary and holds no
        // data: the lock and phase rules protect a live schema, so they wait
        // for the first deploy after this one.
        if db.history().await?.is_empty() {
            return Ok((Vec::new(), false));
        }
        let (found, warned): (Vec<_>, Vec<_>) = self
            .run_preflight(preflight, m, db, pending)
            .await?
            .into_iter()
            .partition(|f| f.refuses);
        for f in &warned {
            eprintln!("{}", f.text);
        }
        if found.is_empty() {
            return Ok((found, false));
        }
        for f in &found {
            eprintln!("{}", f.text);
        }
        if unsafe_ok {
            eprintln!(
                "WARNING: {} in pending migrations; going ahead because of --unsafe-ok (recorded in history)",
                plural(found.len(), "lint error", "lint errors")
            );
            return Ok((found, false));
        }
        eprintln!(
            "error: {} in pending migrations; nothing was run. Fix them, suppress one with `-- capstan:ignore RULE reason` on the line before the statement, or pass --unsafe-ok (recorded in history); details: `capstan lint`",
            plural(found.len(), "lint error", "lint errors")
        );
        Ok((found, true))
    }

    /// After `up`/`down`: rewrites `--dump-schema FILE`, else capstan.toml's
    /// `schema_file`, if either is set.
    async fn keep_schema(&self, db: &mut Database, flag: Option<PathBuf>) -> Result<(), Failure> {
        let Some(path) = flag.or_else(|| self.config.schema_file.clone()) else {
            return Ok(());
        };
        let dump = crate::schema_dump::dump(db, &self.url()?)
            .await
            .map_err(|e| Failure::from(Error::from(e)))?;
        crate::schema_dump::write(&path, &dump.sql).map_err(|e| {
            Failure::new(
                EXIT_FAILED,
                "schema-dump",
                format!(
                    "the run is done, but writing the schema to {} failed: {e}",
                    path.display()
                ),
            )
        })?;
        if !quiet() && !self.args.json {
            eprintln!("wrote the schema to {}", path.display());
        }
        Ok(())
    }

    fn needs_dir(&self, what: &str) -> Result<(), Failure> {
        match self.source {
            MigrationSource::Dir => Ok(()),
            MigrationSource::Embedded { .. } => Err(Failure::new(
                EXIT_USAGE,
                "usage",
                format!("`migrate {what}` edits a migration directory; run it with the capstan CLI in your source tree"),
            )),
        }
    }
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
    let json = args.conn.json;
    let command = args.command.clone();
    report_exit(json, async {
        let mut cx = Context::new(args.conn, source)?;
        cx.timeouts = args.timeouts;
        cx.preflight = hooks.preflight;
        cx.detector = hooks.detector;
        migrate(&cx, command).await
    })
    .await
}

/// Runs `gate`: exit 0 when compatible, 8 when not (with the reasons).
pub async fn run_gate(args: GateArgs, source: MigrationSource) -> i32 {
    let json = args.conn.json;
    report_exit(json, async {
        let cx = Context::new(args.conn, source)?;
        let set = cx.set()?;
        let mut db = Database::connect_read_only(&cx.url()?).await?;
        let version = match &cx.source {
            MigrationSource::Embedded { binary_version, .. } => binary_version.clone(),
            MigrationSource::Dir => format!("{} (migrations in {})", args.app, cx.dir.display()),
        };
        let compat = crate::gate::check_database(&mut db, &set).await?;
        let messages = compat.messages(&args.app, &version);
        emit(json, &compat, || {
            if compat.is_compatible() {
                let mut s =
                    "compatible: this migration set can run against the database".to_string();
                for m in &messages {
                    s.push_str(&format!("\n  {m}"));
                }
                s
            } else {
                let mut s = "incompatible:".to_string();
                for m in &messages {
                    s.push_str(&format!("\n  {m}"));
                }
                s
            }
        });
        Ok(if compat.is_compatible() {
            EXIT_OK
        } else {
            EXIT_GATE
        })
    })
    .await
}

/// Runs `fleet`: lists live and recently departed instances.
pub async fn run_fleet(args: FleetArgs) -> i32 {
    let json = args.conn.json;
    report_exit(json, async {
        let cx = Context::new(args.conn, MigrationSource::Dir)?;
        match args.command {
            None | Some(FleetCommand::List) => {}
            Some(command) => return fleet::run(&cx, command).await,
        }
        let settings = cx.settings()?;
        let mut db = Database::connect_read_only(&cx.url()?).await?;
        let rows = db.driver().fleet_list().await.map_err(Error::from)?;
        #[derive(Serialize)]
        struct Row<'a> {
            #[serde(flatten)]
            row: &'a crate::fleet::InstanceRow,
            live: bool,
        }
        let out: Vec<Row<'_>> = rows
            .iter()
            .map(|row| Row {
                row,
                live: row.is_live(settings.fleet_ttl),
            })
            .collect();
        emit(json, &serde_json::json!({ "instances": out }), || {
            if rows.is_empty() {
                return "no instance has registered".to_string();
            }
            let mut s = String::new();
            for r in &out {
                let state = if r.live {
                    "live"
                } else if r.row.departed_at.is_some() {
                    "departed"
                } else {
                    "expired"
                };
                let versions = r.row.instance.versions.iter().max().map_or_else(|| "none".to_string(), |v| format!("{v:04}"));
                s.push_str(&format!(
                    "{state:<9} {:<12} {:<10} {}  embeds up to {versions}  started {}  seen {:.0}s ago\n",
                    r.row.instance.app, r.row.instance.version, r.row.instance.instance_id, r.row.started_at, r.row.age_secs
                ));
            }
            s.trim_end().to_string()
        });
        Ok(EXIT_OK)
    })
    .await
}

async fn report_exit(
    json: bool,
    work: impl std::future::Future<Output = Result<i32, Failure>>,
) -> i32 {
    match work.await {
        Ok(code) => code,
        Err(f) => {
            if json {
                let v = serde_json::json!({"error": {"kind": f.kind, "message": f.message, "exit_code": f.code}});
                println!("{v}");
            }
            eprintln!("error: {}", f.message);
            f.code
        }
    }
}

impl Context<'_> {
    fn new(args: ConnArgs, source: MigrationSource) -> Result<Context<'static>, Failure> {
        let (config_path, required) = match &args.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(CONFIG_FILE), false),
        };
        let config = Config::load(&config_path, required)?;
        let dir = args
            .dir
            .clone()
            .or_else(|| config.migrations_dir.clone())
            .unwrap_or_else(|| PathBuf::from("migrations"));
        Ok(Context {
            preflight: None,
            detector: None,
            args,
            timeouts: TimeoutArgs::default(),
            source,
            config,
            config_path,
            dir,
        })
    }
}

async fn migrate(cx: &Context<'_>, command: MigrateCommand) -> Result<i32, Failure> {
    let json = cx.args.json;
    match command {
        MigrateCommand::New {
            name,
            phase,
            no_transaction,
        } => {
            cx.needs_dir("new")?;
            let path = workdir::new_migration(&cx.dir, &name, phase, no_transaction)?;
            emit(json, &serde_json::json!({"created": path}), || {
                format!("created {}\nwrite the SQL under `-- capstan:up` (and `-- capstan:down`), then run `capstan migrate hash`", path.display())
            });
            Ok(EXIT_OK)
        }
        MigrateCommand::Hash {
            accept: Some(version),
            reason,
        } => {
            cx.needs_dir("hash")?;
            // The file was edited, so the sum does not match it yet.
            let set = MigrationSet::from_dir_unchecked(&cx.dir)?;
            let file = set
                .get(version)
                .map(|m| m.file_name.clone())
                .ok_or(Error::UnknownVersion(version))?;
            // Refuse a sum that cannot be updated before history changes.
            crate::sum::check_updatable(&cx.dir).map_err(SourceError::from)?;
            let m = Migrator::new(set).with_settings(cx.settings()?);
            let mut db = Database::connect_read_only(&cx.url()?).await?;
            let accepted = m
                .accept(&mut db, version, reason.as_deref().unwrap_or(""))
                .await?;
            let files = crate::source::read_dir_files(&cx.dir)?;
            crate::sum::update(&cx.dir, &files, std::slice::from_ref(&file))
                .map_err(SourceError::from)?;
            emit(json, &accepted, || {
                if accepted.recorded {
                    format!(
                        "accepted the edit of {version:04}_{}: recorded in history on {}, and its line of capstan.sum updated",
                        accepted.name,
                        db.describe()
                    )
                } else {
                    format!(
                        "{version:04}_{} already matches what {} recorded; nothing recorded (its line of capstan.sum updated)",
                        accepted.name,
                        db.describe()
                    )
                }
            });
            Ok(EXIT_OK)
        }
        MigrateCommand::Hash { .. } => {
            cx.needs_dir("hash")?;
            let n = workdir::rehash(&cx.dir)?;
            let sum = cx.dir.join(crate::sum::SUM_FILE);
            emit(json, &serde_json::json!({"sum": sum, "files": n}), || {
                format!(
                    "wrote {} ({})",
                    sum.display(),
                    plural(n, "migration", "migrations")
                )
            });
            Ok(EXIT_OK)
        }
        MigrateCommand::Rebase { files, offline } => {
            cx.needs_dir("rebase")?;
            let history = if offline {
                Vec::new()
            } else {
                let mut db = Database::connect_read_only(&cx.url()?).await?;
                db.history().await?
            };
            let rebased = workdir::rebase(&cx.dir, &files, &history)?;
            let renamed = &rebased.renamed;
            emit(json, &rebased, || {
                let mut lines: Vec<String> = renamed
                    .iter()
                    .map(|r| format!("renamed {} -> {}", r.from.display(), r.to.display()))
                    .collect();
                if renamed.is_empty() {
                    lines.push("nothing to renumber: the files are already the newest".into());
                }
                if !rebased.not_in_directory.is_empty() {
                    lines.push(format!(
                        "the database ran {} but this directory lacks {}: bring {} in (merge the branch that added {}) before `up`",
                        rebased.not_in_directory.join(", "),
                        if rebased.not_in_directory.len() == 1 { "it" } else { "them" },
                        if rebased.not_in_directory.len() == 1 { "its file" } else { "their files" },
                        if rebased.not_in_directory.len() == 1 { "it" } else { "them" },
                    ));
                }
                lines.join("\n")
            });
            Ok(EXIT_OK)
        }
        MigrateCommand::Import { tool, source } => {
            cx.needs_dir("import")?;
            import(cx, &tool, &source, json)
        }
        MigrateCommand::Status => {
            let m = cx.migrator()?;
            let mut db = Database::connect_read_only(&cx.url()?).await?;
            let status = m.status(&mut db).await?;
            emit(json, &status, || render_status(&status, &db.describe()));
            Ok(EXIT_OK)
        }
        MigrateCommand::Plan {
            to,
            force_contract,
            unsafe_ok,
            no_archive,
        } => {
            let contract = if force_contract {
                ContractPolicy::Force
            } else {
                ContractPolicy::Fleet
            };
            let m = cx.migrator()?;
            let mut db = Database::connect_read_only(&cx.url()?).await?;
            let opts = UpOptions {
                to,
                contract,
                no_archive,
                ..UpOptions::default()
            };
            let plan = m.plan(&mut db, &opts).await?;
            let pending: Vec<u64> = plan.steps.iter().map(|s| s.version).collect();
            let (found, refused) = cx.lint_findings(&m, &mut db, &pending, unsafe_ok).await?;
            // One document, also when lint refuses: the plan and its findings.
            let mut doc = serde_json::to_value(&plan).unwrap_or_default();
            if let serde_json::Value::Object(o) = &mut doc {
                o.insert(
                    "lint".into(),
                    serde_json::json!({"refused": refused, "findings": findings_json(&found)}),
                );
            }
            emit(json, &doc, || {
                let mut s = String::new();
                if plan.steps.is_empty() {
                    s.push_str("nothing to apply\n");
                }
                for step in &plan.steps {
                    s.push_str(&format!(
                        "-- {} ({}{}, lock timeout {} ms) {}\n{}\n",
                        capstan_format::label(step.version, &step.name),
                        step.phase,
                        if step.no_transaction {
                            ", no transaction"
                        } else {
                            ""
                        },
                        step.lock_timeout_ms,
                        step.file.display(),
                        step.sql.trim_end()
                    ));
                    for a in &step.archive {
                        s.push_str(&render_planned_archive(a, &m));
                    }
                }
                if let Some(h) = &plan.held_back {
                    s.push_str(&format!("-- stops before: {}\n", h.reason));
                }
                s.trim_end().to_string()
            });
            Ok(if refused { EXIT_LINT } else { EXIT_OK })
        }
        MigrateCommand::Up {
            to,
            wait,
            timeout,
            force_contract,
            unsafe_ok,
            no_archive,
            dump_schema,
        } => {
            let contract = match (wait, force_contract) {
                (_, true) => ContractPolicy::Force,
                (true, _) => ContractPolicy::Wait(match timeout {
                    Some(t) => parse_duration(&t).map_err(|e| {
                        Failure::new(EXIT_BAD_INPUT, "bad-input", format!("--timeout: {e}"))
                    })?,
                    None => Duration::from_secs(600),
                }),
                _ => ContractPolicy::Fleet,
            };
            let m = cx.migrator()?;
            cx.check_default_fits()?;
            let mut db = Database::connect(&cx.url()?).await?;
            let mut opts = UpOptions {
                to,
                contract,
                no_archive,
                ..UpOptions::default()
            };
            let mut progress = Progress::new(json);
            // Everything is decided under the runner lock: what another runner
            // did while this one waited (or is doing, outside a transaction)
            // is seen as done, not as pending or dirty.
            crate::interrupt::install();
            m.lock(&mut db, &mut |e| progress.event(e)).await?;
            let result = async {
                if cx.preflight.is_some() {
                    let pending = m.pending_versions(&mut db, &opts).await?;
                    let Some(overridden) =
                        cx.lint_pending(&m, &mut db, &pending, unsafe_ok).await?
                    else {
                        return Ok(None);
                    };
                    for f in overridden {
                        let note = opts.notes.entry(f.version).or_insert_with(|| {
                            "unsafe-ok: applied despite lint errors:".to_string()
                        });
                        note.push(' ');
                        note.push_str(&f.text);
                    }
                    let contracts: Vec<u64> = m
                        .set()
                        .migrations()
                        .iter()
                        .filter(|x| x.phase == Phase::Contract && pending.contains(&x.version))
                        .map(|x| x.version)
                        .collect();
                    if let (Some(gate), false) = (cx.preflight, contracts.is_empty()) {
                        let config = cx.config_path.exists().then_some(cx.config_path.as_path());
                        if let Some(reason) = gate
                            .contract_gate(&contracts, config)
                            .map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", e))?
                        {
                            return Err(Failure::new(
                                EXIT_FROZEN,
                                "frozen",
                                format!("contract migration {contracts:?} not run: {reason}"),
                            ));
                        }
                    }
                }
                Ok::<_, Failure>(Some(
                    m.up_holding_lock(&mut db, &opts, &mut |e| progress.event(e))
                        .await,
                ))
            }
            .await;
            let unlocked = m.unlock(&mut db).await;
            let Some(result) = result? else {
                return Ok(EXIT_LINT);
            };
            if result.is_ok() {
                unlocked?;
            }
            progress.finish();
            let report = result.map_err(|e| report_partial(json, e))?;
            emit(json, &report, || render_report(&report, "up"));
            cx.keep_schema(&mut db, dump_schema).await?;
            Ok(if report.held_back.is_some() {
                EXIT_CONTRACT_HELD
            } else {
                EXIT_OK
            })
        }
        MigrateCommand::Down {
            to,
            no_archive,
            dump_schema,
        } => {
            let m = cx.migrator()?;
            let mut db = Database::connect(&cx.url()?).await?;
            let reverting = m.reverting(&mut db, to).await?;
            cx.lint_down(&m, &mut db, &reverting).await?;
            let mut progress = Progress::new(json);
            crate::interrupt::install();
            let result = m
                .down_with(&mut db, to, &no_archive, &mut |e| progress.event(e))
                .await;
            progress.finish();
            let report = result.map_err(|e| report_partial(json, e))?;
            emit(json, &report, || render_report(&report, "down"));
            cx.keep_schema(&mut db, dump_schema).await?;
            Ok(EXIT_OK)
        }
        MigrateCommand::Verify => {
            let m = cx.migrator()?;
            let mut db = Database::connect_read_only(&cx.url()?).await?;
            let mut progress = Progress::new(json);
            let result = m
                .verify(&mut db, &mut |e| {
                    if matches!(e, Event::Notice { .. } | Event::Retry { .. }) {
                        progress.event(e)
                    }
                })
                .await;
            progress.finish();
            let report = result?;
            emit(json, &report, || {
                let mut s = String::new();
                for step in &report.steps {
                    let label = capstan_format::label(step.version, &step.name).to_string();
                    if !step.differences.is_empty() {
                        s.push_str(&format!("FAIL {label}\n"));
                        for d in &step.differences {
                            s.push_str(&format!("     {d}\n"));
                        }
                    } else if step.down_checked {
                        s.push_str(&format!(
                            "ok   {label}: down restores the schema, up runs again\n"
                        ));
                    } else {
                        s.push_str(&format!(
                            "ok   {label}: applies (no down section to check)\n"
                        ));
                    }
                }
                s.push_str(&render_invalid_indexes(&report.invalid_indexes));
                s.push_str(if report.ok() {
                    "verify passed"
                } else if report.steps.iter().all(|s| s.differences.is_empty()) {
                    "verify failed: the database has invalid indexes"
                } else {
                    "verify failed: a down section does not undo its up section"
                });
                s
            });
            Ok(if report.ok() { EXIT_OK } else { EXIT_FAILED })
        }
        MigrateCommand::Repair {
            mark_applied,
            mark_rolled_back,
        } => {
            let m = cx.migrator()?;
            let action = mark_applied
                .map(RepairAction::MarkApplied)
                .or(mark_rolled_back.map(RepairAction::MarkRolledBack));
            let Some(action) = action else {
                let mut db = Database::connect_read_only(&cx.url()?).await?;
                let dirty = m.dirty(&mut db).await?;
                let collisions = m.collisions(&mut db).await?;
                emit(
                    json,
                    &serde_json::json!({"dirty": dirty, "collisions": collisions}),
                    || {
                        if dirty.is_empty() && collisions.is_empty() {
                            return "nothing is dirty".to_string();
                        }
                        let mut s = String::new();
                        for c in &collisions {
                            s.push_str(&format!(
                            "{:04} is a collision, not a dirty migration: {c}. There is nothing to repair in the database.\n",
                            c.version
                        ));
                        }
                        for d in &dirty {
                            let (what, when) = match d.direction {
                            Direction::Up => ("it ran outside a transaction and failed part-way", "started"),
                            Direction::Down => ("its down section ran outside a transaction and failed part-way, so it is neither applied nor rolled back", "rollback started"),
                        };
                            s.push_str(&format!(
                            "{} is dirty: {what}.\n  {when} {} by {}\n  error: {}\n",
                            capstan_format::label(d.version, &d.name), d.started_at, d.applied_by,
                            d.error.as_deref().unwrap_or("(the runner stopped before recording one; it may have been killed)")
                        ));
                            match d.direction {
                            Direction::Up => s.push_str(&format!(
                                "  Statements before the failing one are applied; the rest are not. Look at the database, then either\n  - finish the migration by hand and run `capstan migrate repair --mark-applied {v}`, or\n  - undo what it did and run `capstan migrate repair --mark-rolled-back {v}` so that `up` runs it again.\n",
                                v = d.version
                            )),
                            Direction::Down => s.push_str(&format!(
                                "  Down statements before the failing one are done; the rest are not. Look at the database, then either\n  - finish the rollback by hand (the rest of the down section) and run `capstan migrate repair --mark-rolled-back {v}`: it is then pending, and `up` would run it again, or\n  - redo what the down section undid and run `capstan migrate repair --mark-applied {v}`: it stays applied, and `down` can be run again once its down section is fixed.\n",
                                v = d.version
                            )),
                        }
                            if !d.invalid_indexes.is_empty() {
                                s.push_str("  It left invalid indexes (unused, enforcing nothing; `IF NOT EXISTS` would keep them). Drop them before it runs again:
");
                                for x in &d.invalid_indexes {
                                    s.push_str(&format!(
                                        "    {}   -- on {}: {}
",
                                        x.drop_sql(),
                                        x.table,
                                        x.definition
                                    ));
                                }
                            }
                        }
                        s.trim_end().to_string()
                    },
                );
                return Ok(EXIT_OK);
            };
            let mut db = Database::connect(&cx.url()?).await?;
            m.repair(&mut db, action).await?;
            let (v, what) = match action {
                RepairAction::MarkApplied(v) => (v, "applied"),
                RepairAction::MarkRolledBack(v) => (v, "rolled back"),
            };
            emit(
                json,
                &serde_json::json!({"repaired": v, "marked": what}),
                || format!("{v:04} marked {what}"),
            );
            Ok(EXIT_OK)
        }
        MigrateCommand::Baseline {
            tool: Some(tool),
            table,
            ..
        } => {
            let tool: crate::import::Tool =
                tool.parse().map_err(|e: crate::import::UnknownTool| {
                    Failure::new(EXIT_USAGE, "usage", e.to_string())
                })?;
            let m = cx.migrator()?;
            let mut db = Database::connect(&cx.url()?).await?;
            let report = m.baseline_from(&mut db, tool, table.as_deref()).await?;
            emit(json, &report, || {
                match (report.baselined.first(), report.baselined.last()) {
                (Some(_), Some(last)) => format!(
                    "{tool} applied {} per {}: recorded {} (up to {last:04}) as applied without running them",
                    plural(report.baselined.len(), "migration", "migrations"),
                    report.table,
                    plural(report.baselined.len(), "migration", "migrations"),
                ),
                _ => format!(
                    "{} records no applied {tool} migration: nothing recorded; `capstan migrate up` runs them all",
                    report.table
                ),
            }
            });
            Ok(EXIT_OK)
        }
        MigrateCommand::Baseline { target, .. } => {
            let version = target.unwrap_or_default();
            let m = cx.migrator()?;
            let mut db = Database::connect(&cx.url()?).await?;
            let versions = m.baseline(&mut db, version).await?;
            emit(json, &serde_json::json!({"baselined": versions}), || {
                format!(
                    "recorded {} (up to {version:04}) as applied without running them",
                    plural(versions.len(), "migration", "migrations")
                )
            });
            Ok(EXIT_OK)
        }
    }
}

fn import(cx: &Context<'_>, tool: &str, source: &Path, json: bool) -> Result<i32, Failure> {
    let tool: crate::import::Tool = tool.parse().map_err(|e: crate::import::UnknownTool| {
        Failure::new(EXIT_USAGE, "usage", e.to_string())
    })?;
    let classifier = cx.preflight.and_then(|p| p.phase_classifier());
    let report = crate::import::import_with(tool, source, &cx.dir, classifier)
        .map_err(|e| Failure::new(EXIT_BAD_INPUT, "bad-input", e.to_string()))?;

    emit(json, &report, || report.to_string());
    Ok(EXIT_OK)
}

/// Prints what was done before a failure, then turns the error into a Failure.
fn report_partial(json: bool, e: Error) -> Failure {
    let (report, direction) = match &e {
        Error::Failed(f) => (Some(&f.report), f.direction),
        Error::Interrupted {
            report, direction, ..
        } => (Some(&**report), *direction),
        _ => (None, Direction::Up),
    };
    if let Some(report) = report.filter(|r| !json && !r.ran.is_empty()) {
        let what = match direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        eprintln!("{}", render_report(report, what));
    }
    Failure::from(e)
}

/// `1 migration`, `2 migrations`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn emit<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = serde_json::to_writer(&mut out, value);
        let _ = writeln!(out);
    } else {
        let _ = writeln!(out, "{}", human());
    }
}

fn render_status(status: &crate::migrator::Status, target: &str) -> String {
    let mut s = format!("database: {target}\n");
    if status.migrations.is_empty() {
        s.push_str("no migrations\n");
    }
    let width = status
        .migrations
        .iter()
        .map(|e| e.label().len())
        .max()
        .unwrap_or(0);
    for e in &status.migrations {
        let mut line = format!(
            "{:<8} {:<width$}  {:<8}",
            e.state.as_str(),
            e.label(),
            e.phase,
        );
        if let Some(a) = &e.applied {
            line.push_str(&format!(
                "  {} by {} ({}, {} ms)",
                a.applied_at, a.applied_by, a.binary_version, a.duration_ms
            ));
        }
        match e.state {
            State::Drifted => line.push_str(
                "  <- up section changed after it was applied (see `migrate hash --accept`)",
            ),
            State::Collision => {
                if let Some(a) = &e.applied {
                    line.push_str(&format!(
                        "  <- the database ran {} as {:04}: a different migration (rebase this file)",
                        capstan_format::label(a.version, &a.name), e.version
                    ));
                }
            }
            State::Applied if e.down_changed => line.push_str(
                "  <- down section edited since it ran (allowed; recorded at the next up or down)",
            ),
            State::Ahead => line.push_str("  <- in the database, not in this directory"),
            State::Dirty => line.push_str("  <- failed part-way; see `capstan migrate repair`"),
            State::InProgress => {
                line.push_str("  <- a runner is applying it now (it holds the migration lock)")
            }
            _ => {}
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    let count = |st| status.in_state(st).count();
    s.push_str(&format!(
        "{} applied, {} pending, {} ahead, {} drifted, {} dirty",
        count(State::Applied),
        count(State::Pending),
        count(State::Ahead),
        count(State::Drifted),
        count(State::Dirty)
    ));
    if count(State::InProgress) > 0 {
        s.push_str(&format!(", {} in progress", count(State::InProgress)));
    }
    if count(State::Collision) > 0 {
        s.push_str(&format!(
            ", {} {} (a different migration ran under the same number)",
            count(State::Collision),
            if count(State::Collision) == 1 {
                "collision"
            } else {
                "collisions"
            }
        ));
    }
    if !status.invalid_indexes.is_empty() {
        s.push('\n');
        s.push_str(render_invalid_indexes(&status.invalid_indexes).trim_end());
    }
    s
}

/// One warning line per invalid index, saying how to drop it.
fn render_invalid_indexes(invalid: &[crate::indexes::InvalidIndex]) -> String {
    invalid
        .iter()
        .map(|x| {
            format!(
                "WARNING: index {} on {} is INVALID (a CREATE INDEX CONCURRENTLY failed): it is not used and enforces nothing; drop it with `{}` and build it again\n",
                x.qualified(),
                x.table,
                x.drop_sql()
            )
        })
        .collect()
}

fn render_report(report: &RunReport, what: &str) -> String {
    let mut s = String::new();
    if report.ran.is_empty() {
        s.push_str(match (what, &report.held_back) {
            ("up", None) => "nothing to apply: the database is up to date",
            ("up", Some(_)) => "nothing applied",
            _ => "nothing to roll back",
        });
    } else {
        let total: u64 = report.ran.iter().map(|r| r.duration_ms).sum();
        let verb = if what == "up" {
            "applied"
        } else {
            "rolled back"
        };
        s.push_str(&format!(
            "{verb} {} in {total} ms",
            plural(report.ran.len(), "migration", "migrations")
        ));
    }
    if !report.done_by_other_runner.is_empty() {
        s.push_str(&format!(
            "\n{} applied by another runner at the same time",
            match report.done_by_other_runner.len() {
                1 => "1 migration was".to_string(),
                n => format!("{n} migrations were"),
            }
        ));
    }
    if let Some(h) = &report.held_back {
        s.push_str(&format!(
            "\nstopped before {}: {}",
            capstan_format::label(h.version, &h.name),
            h.reason
        ));
    }
    if !report.archived.is_empty() {
        let rows: u64 = report.archived.iter().map(|e| e.row_count).sum();
        s.push_str(&format!(
            "\narchived {} ({}) before destroying them: `capstan archive list`",
            plural(report.archived.len(), "object", "objects"),
            plural(rows as usize, "row", "rows")
        ));
    }
    s
}

fn render_planned_archive(a: &archive::PlannedArchive, m: &Migrator) -> String {
    let what = if a.skipped {
        "not archived (--no-archive)".to_string()
    } else {
        match (a.rows, a.bytes) {
            (Some(r), Some(b)) => format!(
                "archives {r} rows, about {}{}",
                archive::human_bytes(b),
                if a.over_limit {
                    format!(
                        " — over the limit of {}: `up` refuses unless --no-archive {}",
                        m.settings()
                            .archive_max_bytes
                            .map_or_else(|| "none".into(), archive::human_bytes),
                        a.object
                    )
                } else {
                    String::new()
                }
            ),
            _ => "archives it (the table does not exist yet; sized when it runs)".to_string(),
        }
    };
    format!("--   line {}: {} {} — {what}\n", a.line, a.kind, a.object)
}

/// Where the URL came from when nothing names one.
const DEFAULT_WHENCE: &str =
    "the embedded default: no --database, DATABASE_URL or database_url in capstan.toml";

/// The "using database" line was printed (once per process).
static ANNOUNCED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `-q`: print no progress on stderr (what runs, how long it takes, waits and
/// retries); results, warnings and errors still print. For the whole process.
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// How often a running migration reports its elapsed time when stderr is not
/// a terminal: `CAPSTAN_PROGRESS_INTERVAL` (a duration like `5s`), default 5 s.
fn progress_interval() -> Duration {
    std::env::var("CAPSTAN_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(5))
}

/// Prints "still applying X (12 s)" every interval while a migration runs.
/// The thread ends when the sender is dropped.
fn spawn_ticker(interval: Duration) -> std::sync::mpsc::Sender<Option<String>> {
    let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut running: Option<(String, std::time::Instant)> = None;
        loop {
            match rx.recv_timeout(interval) {
                Ok(next) => running = next.map(|what| (what, std::time::Instant::now())),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Some((what, since)) = &running {
                        eprintln!("still {what} ({} s)", since.elapsed().as_secs());
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    });
    tx
}

/// Progress on stderr: an "applying …" line before each migration, and then a
/// live spinner on a terminal, or a "still applying …" line every few seconds
/// otherwise.
struct Progress {
    quiet: bool,
    bar: Option<indicatif::ProgressBar>,
    ticker: Option<std::sync::mpsc::Sender<Option<String>>>,
}

impl Progress {
    fn new(json: bool) -> Self {
        let quiet = json || quiet();
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && !quiet).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        let ticker = (!tty && !quiet).then(|| spawn_ticker(progress_interval()));
        Progress { quiet, bar, ticker }
    }

    fn line(&self, s: String) {
        match &self.bar {
            Some(b) => b.println(s),
            None if !self.quiet => eprintln!("{s}"),
            None => {}
        }
    }

    fn event(&mut self, e: Event<'_>) {
        match e {
            Event::Start {
                migration,
                direction,
            } => {
                let verb = if direction == Direction::Up {
                    "applying"
                } else {
                    "rolling back"
                };
                let what = format!("{verb} {}", migration.label());
                self.line(format!("{what} …"));
                if let Some(t) = &self.ticker {
                    let _ = t.send(Some(what.clone()));
                }
                if let Some(b) = &self.bar {
                    b.set_message(what);
                    b.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    b.reset_elapsed();
                }
            }
            Event::Retry {
                migration,
                attempt,
                wait,
                message,
            } => self.line(format!(
                "{}: {message}; attempt {attempt} failed, retrying in {} ms",
                migration.label(),
                wait.as_millis()
            )),
            Event::Notice {
                migration,
                notice,
                line,
            } => {
                let at = line.map(|l| format!(":{l}")).unwrap_or_default();
                self.line(format!(
                    "{}{at}: {}: {}",
                    migration.path.display(),
                    notice.severity,
                    notice.message
                ));
            }
            Event::LockWait => self.line(
                "another runner holds the migration lock; waiting for it to finish".to_string(),
            ),
            Event::Waiting {
                migration,
                blockers,
            } => self.line(format!(
                "waiting before contract migration {}: live instances still need what it removes: {}",
                migration.label(),
                blockers.iter().map(|b| b.describe()).collect::<Vec<_>>().join(", ")
            )),
            Event::Forced {
                migration,
                blockers,
            } => {
                let msg = format!(
                    "WARNING: forcing contract migration {} although live instances do not embed it: {}. They may fail on the changed schema. This is recorded in history.",
                    migration.label(),
                    blockers.iter().map(|b| b.describe()).collect::<Vec<_>>().join(", ")
                );
                match &self.bar {
                    Some(b) => b.println(msg),
                    None => eprintln!("{msg}"),
                }
            }
            Event::Archived { migration, entry } if entry.archive_table.is_none() => {
                self.line(format!(
                    "{}:{}: recorded {} before {}: no rows, so no copy (entry {})",
                    migration.path.display(),
                    entry.line.unwrap_or(0),
                    entry.object(),
                    entry.kind,
                    entry.id
                ))
            }
            Event::Archived { migration, entry } => self.line(format!(
                "{}:{}: archived {} before {}: {} rows ({}) in {} (entry {}; `capstan archive restore {}` puts it back)",
                migration.path.display(),
                entry.line.unwrap_or(0),
                entry.object(),
                entry.kind,
                entry.row_count,
                archive::human_bytes(entry.size_bytes),
                entry.copy_name(),
                entry.id,
                entry.id
            )),
            Event::Done {
                migration,
                direction,
                duration,
                done_here,
            } => {
                if let Some(t) = &self.ticker {
                    let _ = t.send(None);
                }
                let verb = match (direction, done_here) {
                    (_, false) => "done by another runner",
                    (Direction::Up, true) => "applied",
                    (Direction::Down, true) => "rolled back",
                };
                self.line(format!(
                    "{verb} {} ({} ms)",
                    migration.label(),
                    duration.as_millis()
                ));
            }
        }
    }

    fn finish(&mut self) {
        self.ticker = None;
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

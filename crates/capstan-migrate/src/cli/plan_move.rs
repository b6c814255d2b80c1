//! `plan-move`: writes the migrations that move a table from the service
//! that owns it to another one (see [`crate::move_table`]).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::exit::{Exit, Failure, Kind};
use super::output::{program, Output};
use crate::config::{Config, CONFIG_FILE};
use crate::migrator::Database;
use crate::move_table::{self, Inspection, MoveError, MovePlan, MoveRequest};
use crate::url::DatabaseUrl;

/// The arguments of `plan-move`.
#[derive(Debug, Clone, Args)]
pub struct PlanMoveArgs {
    /// The table to move: `schema.table` (`table` alone is in `public`).
    #[arg(value_name = "SCHEMA.TABLE")]
    pub table: String,
    /// The service that will own it (a `[[service]]` of capstan.toml).
    #[arg(long, value_name = "SERVICE")]
    pub to: String,
    /// The schema to move it into (default: the first schema the target owns).
    #[arg(long, value_name = "SCHEMA")]
    pub schema: Option<String>,
    /// Check the move against this database first (Postgres): the table
    /// exists, a view can stand for it, and what depends on it.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Config file declaring the services (default: ./capstan.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the files instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Print machine-readable JSON on stdout (see docs/json.md).
    #[arg(long)]
    pub json: bool,
}

/// Runs `plan-move` and returns its exit code: 0 planned (files written
/// unless `--dry-run`), 3 bad input (nothing written), 4 the database.
pub async fn run_plan_move(args: PlanMoveArgs) -> i32 {
    let out = Output::new(args.json);
    let result = run(&out, args).await;
    out.finish(result)
}

#[derive(Serialize)]
struct Report<'a> {
    #[serde(flatten)]
    plan: &'a MovePlan,
    written: bool,
    checked: bool,
    #[serde(flatten)]
    inspection: &'a Inspection,
}

impl From<MoveError> for Failure {
    fn from(e: MoveError) -> Self {
        match &e {
            MoveError::Db(d) => {
                let exit = if d.kind == crate::driver::FailureKind::PermissionDenied {
                    (Exit::Database, Kind::PermissionDenied)
                } else {
                    (Exit::Database, Kind::Database)
                };
                Failure::new(exit.0, exit.1, e.to_string())
            }
            _ => Failure::bad_input(format!("{e}; nothing was written")),
        }
    }
}

async fn run(out: &Output, args: PlanMoveArgs) -> Result<Exit, Failure> {
    let config = args.config.unwrap_or_else(|| PathBuf::from(CONFIG_FILE));
    // The whole file is checked as every command checks it; the services
    // are what the move reads.
    let services = Config::load(&config, true)?.services;
    let request = MoveRequest {
        table: &args.table,
        to: &args.to,
        schema: args.schema.as_deref(),
        config: &config,
    };
    let resolved = move_table::resolve(&services, &request)?;
    let plan = move_table::plan(
        &resolved,
        move_table::next_version(&resolved.target_dir)?,
        move_table::next_version(&resolved.source_dir)?,
    );
    let mut inspection = Inspection::default();
    if let Some(raw) = &args.database {
        let url = DatabaseUrl::parse(raw).map_err(|e| Failure::bad_input(e.to_string()))?;
        if !matches!(url, DatabaseUrl::Postgres { .. }) {
            return Err(MoveError::Sqlite.into());
        }
        let mut db = Database::connect_read_only(&url).await?;
        inspection = move_table::inspect(db.driver(), &plan).await?;
    }
    if !args.dry_run {
        move_table::write(&plan)?;
    }
    for w in &inspection.warnings {
        out.note(format_args!("warning: {w}"));
    }
    for n in &inspection.notes {
        out.note(format_args!("note: {n}"));
    }
    let report = Report {
        plan: &plan,
        written: !args.dry_run,
        checked: args.database.is_some(),
        inspection: &inspection,
    };
    out.result(&report, || {
        human(&plan, args.dry_run, args.database.is_none())
    });
    Ok(Exit::Ok)
}

fn human(plan: &MovePlan, dry_run: bool, unchecked: bool) -> String {
    let mut s = String::new();
    let (old, new) = (plan.old_name(), plan.new_name());
    if dry_run {
        for f in &plan.files {
            s.push_str(&format!("-- {}\n{}\n", f.path.display(), f.text));
        }
    }
    s.push_str(&format!(
        "moving {old} from service `{}` to service `{}` as {new}:\n",
        plan.source, plan.target
    ));
    let verb = if dry_run { "would write" } else { "wrote" };
    let p = program();
    for f in &plan.files {
        let what = match f.step {
            move_table::Step::CreateSchema => "create the schema",
            move_table::Step::MoveTable => "move the table, keep the old name as a view",
            move_table::Step::DropView => "drop the old name (held until no old binary runs)",
        };
        s.push_str(&format!(
            "  step {}: {verb} {} ({}, {}): {what}\n",
            f.step.number(),
            f.path.display(),
            f.service,
            f.phase
        ));
        if f.step == move_table::Step::MoveTable {
            s.push_str(&format!(
                "  step 3: deploy binaries that use {new} (nothing to migrate)\n"
            ));
        }
    }
    s.push_str(&format!(
        "apply in this order with `{p} migrate up --service NAME`; docs/services.md has every step's rollback"
    ));
    for a in &plan.config_advice {
        s.push_str(&format!("\ncapstan.toml: {a}"));
    }
    if unchecked {
        s.push_str(&format!(
            "\nnot checked against a database: pass --database to check that {old} exists and what depends on it"
        ));
    }
    s
}

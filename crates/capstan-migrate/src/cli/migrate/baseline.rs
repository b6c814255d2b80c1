//! `migrate baseline`: adopt an existing database, recording migrations as
//! applied without running them (up to a version, or what another tool applied).

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::output::{plural, program};

/// The arguments of `migrate baseline`.
#[derive(Debug, Clone, Args)]
pub struct BaselineArgs {
    /// The newest migration the database already matches.
    #[arg(
        value_name = "VERSION",
        required_unless_present = "tool",
        conflicts_with = "tool"
    )]
    pub target: Option<u64>,
    /// Read what another tool applied from its history table (diesel, sqlx,
    /// goose, dbmate, golang-migrate) and record the migrations imported from it.
    #[arg(long = "from", value_name = "TOOL")]
    pub tool: Option<String>,
    /// The old tool's history table, when not its default
    /// (`__diesel_schema_migrations`, `_sqlx_migrations`, `goose_db_version`,
    /// `schema_migrations`).
    #[arg(long, value_name = "NAME", requires = "tool")]
    pub table: Option<String>,
}

pub(super) async fn run(cx: &Context<'_>, args: BaselineArgs) -> Result<Exit, Failure> {
    match args.tool {
        Some(tool) => from_tool(cx, &tool, args.table.as_deref()).await,
        None => up_to(cx, args.target.unwrap_or_default()).await,
    }
}

async fn up_to(cx: &Context<'_>, version: u64) -> Result<Exit, Failure> {
    let m = cx.migrator()?;
    let mut db = cx.connect().await?;
    let versions = m.baseline(&mut db, version).await?;
    cx.out
        .result(&serde_json::json!({"baselined": versions}), || {
            format!(
                "recorded {} (up to {version:04}) as applied without running them",
                plural(versions.len(), "migration", "migrations")
            )
        });
    Ok(Exit::Ok)
}

async fn from_tool(cx: &Context<'_>, tool: &str, table: Option<&str>) -> Result<Exit, Failure> {
    let tool: crate::import::Tool = tool
        .parse()
        .map_err(|e: crate::import::UnknownTool| Failure::usage(e.to_string()))?;
    let m = cx.migrator()?;
    let mut db = cx.connect().await?;
    let report = m.baseline_from(&mut db, tool, table).await?;
    cx.out.result(&report, || {
        match (report.baselined.first(), report.baselined.last()) {
            (Some(_), Some(last)) => format!(
                "{tool} applied {} per {}: recorded {} (up to {last:04}) as applied without running them",
                plural(report.baselined.len(), "migration", "migrations"),
                report.table,
                plural(report.baselined.len(), "migration", "migrations"),
            ),
            _ => format!(
                "{} records no applied {tool} migration: nothing recorded; `{} migrate up` runs them all",
                report.table,
                program()
            ),
        }
    });
    Ok(Exit::Ok)
}

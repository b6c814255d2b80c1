//! `archive`: what migrations copied before destroying it: list, show,
//! restore, purge.

use clap::{Args, Subcommand};

use super::context::{ConnArgs, Context};
use super::exit::{Exit, Failure};
use super::output::{plural, program};
use crate::archive::{self, ArchiveError};
use crate::migrator::{Database, Error};
use crate::source::parse_duration;

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

pub(super) async fn run(cx: &Context<'_>, command: ArchiveCommand) -> Result<Exit, Failure> {
    let settings = cx.settings()?;
    let identity = crate::driver::Identity::current(concat!("capstan ", env!("CARGO_PKG_VERSION")));
    let url = cx.url()?;
    match command {
        ArchiveCommand::List => {
            let mut db = Database::connect_read_only(&url)
                .await?
                .for_service(cx.service());
            let entries = archive::list(db.driver()).await.map_err(Error::from)?;
            cx.out
                .result(&serde_json::json!({ "entries": entries }), || {
                    render_entries(&entries)
                });
        }
        ArchiveCommand::Show { id } => {
            let mut db = Database::connect_read_only(&url)
                .await?
                .for_service(cx.service());
            let entry = archive::get(db.driver(), id)
                .await
                .map_err(Error::from)?
                .ok_or(Error::Archive(ArchiveError::NotFound(id)))?;
            let (names, rows) = archive::preview(db.driver(), &entry, 10)
                .await
                .map_err(Error::from)?;
            cx.out.result(
                    &serde_json::json!({ "entry": entry, "preview": { "columns": names, "rows": rows } }),
                    || render_entry(&entry, &names, &rows),
                );
        }
        ArchiveCommand::Restore { id } => {
            let mut db = Database::connect(&url).await?.for_service(cx.service());
            db.driver()
                .lock(settings.runner_lock_timeout)
                .await
                .map_err(Error::from)?;
            let result = archive::restore(db.driver(), id, &identity).await;
            let unlocked = db.driver().unlock().await;
            let report = result.map_err(Error::from)?;
            unlocked.map_err(Error::from)?;
            cx.out.result(&report, || {
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
                Some(d) => parse_duration(&d)
                    .map_err(|e| Failure::bad_input(format!("--older-than: {e}")))?,
                None => settings
                    .archive_retention
                    .ok_or(Error::Archive(ArchiveError::NoRetention))?,
            };
            let mut db = Database::connect(&url).await?.for_service(cx.service());
            db.driver()
                .lock(settings.runner_lock_timeout)
                .await
                .map_err(Error::from)?;
            let result = archive::purge(db.driver(), age).await;
            let unlocked = db.driver().unlock().await;
            let purged = result.map_err(Error::from)?;
            unlocked.map_err(Error::from)?;
            cx.out.result(&serde_json::json!({ "purged": purged }), || {
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
                s.push_str(&format!(
                    "purged {}",
                    plural(purged.len(), "entry", "entries")
                ));
                s
            });
        }
    }
    Ok(Exit::Ok)
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
        "{}; `{bin} archive show ID` for one, `{bin} archive restore ID` to put it back",
        plural(entries.len(), "entry", "entries"),
        bin = program()
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

//! `migrate hash`: rewrite capstan.sum, or (`--accept`) record an intended
//! edit of an applied migration.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::output::plural;
use crate::migrator::{Error, Migrator};
use crate::source::{MigrationSet, SourceError};
use crate::workdir;

/// The arguments of `migrate hash`.
#[derive(Debug, Clone, Args)]
pub struct HashArgs {
    /// Record the current file of this applied migration as what ran
    /// (who, when and why, in history), and update its line of capstan.sum only.
    #[arg(long, value_name = "VERSION", requires = "reason")]
    pub accept: Option<u64>,
    /// Why the edit is intended (recorded in history; required with --accept).
    #[arg(long, value_name = "TEXT", requires = "accept")]
    pub reason: Option<String>,
}

pub(super) async fn run(cx: &Context<'_>, args: HashArgs) -> Result<Exit, Failure> {
    cx.needs_dir("hash")?;
    match args.accept {
        Some(version) => accept(cx, version, args.reason.as_deref().unwrap_or("")).await,
        None => rehash(cx),
    }
}

fn rehash(cx: &Context<'_>) -> Result<Exit, Failure> {
    let n = workdir::rehash(&cx.dir)?;
    let sum = cx.dir.join(crate::sum::SUM_FILE);
    cx.out
        .result(&serde_json::json!({"sum": sum, "files": n}), || {
            format!(
                "wrote {} ({})",
                sum.display(),
                plural(n, "migration", "migrations")
            )
        });
    Ok(Exit::Ok)
}

async fn accept(cx: &Context<'_>, version: u64, reason: &str) -> Result<Exit, Failure> {
    // The file was edited, so the sum does not match it yet.
    let set = MigrationSet::from_dir_unchecked(&cx.dir)?;
    let file = set
        .get(version)
        .map(|m| m.file_name.clone())
        .ok_or(Error::UnknownVersion(version))?;
    // Refuse a sum that cannot be updated before history changes.
    crate::sum::check_updatable(&cx.dir).map_err(SourceError::from)?;
    let m = Migrator::new(set).with_settings(cx.settings()?);
    let mut db = cx.connect_read_only().await?;
    let accepted = m.accept(&mut db, version, reason).await?;
    let files = crate::source::read_dir_files(&cx.dir)?;
    crate::sum::update(&cx.dir, &files, std::slice::from_ref(&file)).map_err(SourceError::from)?;
    cx.out.result(&accepted, || {
        if accepted.recorded {
            format!(
                "accepted the edit of {}: recorded in history on {}, and its line of capstan.sum updated",
                capstan_format::label(version, &accepted.name),
                db.describe()
            )
        } else {
            format!(
                "{} already matches what {} recorded; nothing recorded (its line of capstan.sum updated)",
                capstan_format::label(version, &accepted.name),
                db.describe()
            )
        }
    });
    Ok(Exit::Ok)
}

//! `migrate down`: roll back with down sections, newest first.

use std::path::PathBuf;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::render::{render_report, report_partial};

/// The arguments of `migrate down`.
#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// Roll back every migration newer than this version (0: all).
    #[arg(long, value_name = "VERSION")]
    pub to: Option<u64>,
    /// Destroy this object (`users.name`, `users`) without an archive copy (recorded in history); repeatable.
    #[arg(long, value_name = "OBJECT")]
    pub no_archive: Vec<String>,
    /// Afterwards, write the application's schema to FILE (as `schema dump -o FILE`;
    /// default: capstan.toml's schema_file).
    #[arg(long, value_name = "FILE")]
    pub dump_schema: Option<PathBuf>,
}

pub(super) async fn run(cx: &Context<'_>, args: DownArgs) -> Result<Exit, Failure> {
    let m = cx.migrator()?;
    let mut db = cx.connect().await?;
    let reverting = m.reverting(&mut db, args.to).await?;
    cx.lint_down(&m, &mut db, &reverting).await?;
    let mut progress = cx.out.progress();
    crate::interrupt::install();
    let result = m
        .down_with(&mut db, args.to, &args.no_archive, &mut |e| {
            progress.event(e)
        })
        .await;
    progress.finish();
    let report = result.map_err(|e| report_partial(&cx.out, e))?;
    cx.out.result(&report, || render_report(&report, "down"));
    cx.keep_schema(&mut db, args.dump_schema).await?;
    Ok(Exit::Ok)
}

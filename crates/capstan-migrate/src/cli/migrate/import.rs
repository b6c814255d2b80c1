//! `migrate import`: another tool's migration directory in capstan's format.

use std::path::PathBuf;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};

/// The arguments of `migrate import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// diesel, sqlx, goose, dbmate or golang-migrate.
    #[arg(long = "from", value_name = "TOOL")]
    pub tool: String,
    /// The other tool's migration directory.
    pub source: PathBuf,
}

pub(super) fn run(cx: &Context<'_>, args: ImportArgs) -> Result<Exit, Failure> {
    cx.needs_dir("import")?;
    let tool: crate::import::Tool = args
        .tool
        .parse()
        .map_err(|e: crate::import::UnknownTool| Failure::usage(e.to_string()))?;
    let classifier = cx.preflight.and_then(|p| p.phase_classifier());
    let report = crate::import::import_with(tool, &args.source, &cx.dir, classifier)
        .map_err(|e| Failure::bad_input(e.to_string()))?;
    cx.out.result(&report, || report.to_string());
    Ok(Exit::Ok)
}

//! `migrate rebase`: renumber not-yet-applied migrations after the newest.

use std::path::PathBuf;

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};

use crate::workdir;

/// The arguments of `migrate rebase`.
#[derive(Debug, Clone, Args)]
pub struct RebaseArgs {
    /// The migration files to move.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Do not ask the database whether they were applied.
    #[arg(long)]
    pub offline: bool,
}

pub(super) async fn run(cx: &Context<'_>, args: RebaseArgs) -> Result<Exit, Failure> {
    cx.needs_dir("rebase")?;
    let history = if args.offline {
        Vec::new()
    } else {
        let mut db = cx.connect_read_only().await?;
        db.history().await?
    };
    let rebased = workdir::rebase(&cx.dir, &args.files, &history)?;
    cx.out.result(&rebased, || render(&rebased));
    Ok(Exit::Ok)
}

fn render(rebased: &workdir::Rebased) -> String {
    let renamed = &rebased.renamed;
    let mut lines: Vec<String> = renamed
        .iter()
        .map(|r| format!("renamed {} -> {}", r.from.display(), r.to.display()))
        .collect();
    if renamed.is_empty() {
        lines.push("nothing to renumber: the files are already the newest".into());
    }
    let lacking = &rebased.not_in_directory;
    if !lacking.is_empty() {
        let one = lacking.len() == 1;
        lines.push(format!(
            "the database ran {} but this directory lacks {}: bring {} in (merge the branch that added {}) before `up`",
            lacking.join(", "),
            if one { "it" } else { "them" },
            if one { "its file" } else { "their files" },
            if one { "it" } else { "them" },
        ));
    }
    lines.join("\n")
}

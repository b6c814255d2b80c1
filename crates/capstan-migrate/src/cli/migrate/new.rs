//! `migrate new`: the next numbered migration file, from a template.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::output::program;
use crate::source::Phase;
use crate::workdir;

/// The arguments of `migrate new`.
#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// What the migration does, e.g. "add user email".
    pub name: String,
    /// expand (default) or contract.
    #[arg(long, default_value = "expand", value_parser = parse_phase)]
    pub phase: Phase,
    /// Run outside a transaction (for CREATE INDEX CONCURRENTLY).
    #[arg(long)]
    pub no_transaction: bool,
}

fn parse_phase(s: &str) -> Result<Phase, String> {
    Phase::parse(s).ok_or_else(|| format!("unknown phase `{s}`; use expand or contract"))
}

pub(super) fn run(cx: &Context<'_>, args: NewArgs) -> Result<Exit, Failure> {
    cx.needs_dir("new")?;
    let path = workdir::new_migration(&cx.dir, &args.name, args.phase, args.no_transaction)?;
    cx.out.result(&serde_json::json!({"created": path}), || {
        format!(
            "created {}\nwrite the SQL under `-- capstan:up` (and `-- capstan:down`), then run `{} migrate hash`",
            path.display(),
            program()
        )
    });
    Ok(Exit::Ok)
}

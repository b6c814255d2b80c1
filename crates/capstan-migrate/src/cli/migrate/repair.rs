//! `migrate repair`: explain a dirty migration, and record how it was resolved.

use clap::Args;

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::output::program;
use crate::driver::Direction;
use crate::migrator::{CollisionInfo, DirtyInfo, RepairAction};

/// The arguments of `migrate repair`.
#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    /// The failed migration was completed by hand: record it as applied.
    #[arg(long, value_name = "VERSION", conflicts_with = "mark_rolled_back")]
    pub mark_applied: Option<u64>,
    /// The failed migration was undone by hand: forget it so `up` runs it again.
    #[arg(long, value_name = "VERSION")]
    pub mark_rolled_back: Option<u64>,
}

pub(super) async fn run(cx: &Context<'_>, args: RepairArgs) -> Result<Exit, Failure> {
    let m = cx.migrator()?;
    let action = args
        .mark_applied
        .map(RepairAction::MarkApplied)
        .or(args.mark_rolled_back.map(RepairAction::MarkRolledBack));
    let Some(action) = action else {
        let mut db = cx.connect_read_only().await?;
        let dirty = m.dirty(&mut db).await?;
        let collisions = m.collisions(&mut db).await?;
        cx.out.result(
            &serde_json::json!({"dirty": dirty, "collisions": collisions}),
            || explain(&dirty, &collisions),
        );
        return Ok(Exit::Ok);
    };
    let mut db = cx.connect().await?;
    m.repair(&mut db, action).await?;
    let (v, what) = match action {
        RepairAction::MarkApplied(v) => (v, "applied"),
        RepairAction::MarkRolledBack(v) => (v, "rolled back"),
    };
    cx.out
        .result(&serde_json::json!({"repaired": v, "marked": what}), || {
            format!("{v:04} marked {what}")
        });
    Ok(Exit::Ok)
}

/// What is dirty (and which versions are collisions instead), and the two
/// ways out of each.
fn explain(dirty: &[DirtyInfo], collisions: &[CollisionInfo]) -> String {
    if dirty.is_empty() && collisions.is_empty() {
        return "nothing is dirty".to_string();
    }
    let bin = program();
    let mut s = String::new();
    for c in collisions {
        s.push_str(&format!(
            "{:04} is a collision, not a dirty migration: {c}. There is nothing to repair in the database.\n",
            c.version
        ));
    }
    for d in dirty {
        let (what, when) = match d.direction {
            Direction::Up => ("it ran outside a transaction and failed part-way", "started"),
            Direction::Down => ("its down section ran outside a transaction and failed part-way, so it is neither applied nor rolled back", "rollback started"),
        };
        s.push_str(&format!(
            "{} is dirty: {what}.\n  {when} {} by {}\n  error: {}\n",
            capstan_format::label(d.version, &d.name),
            d.started_at,
            d.applied_by,
            d.error
                .as_deref()
                .unwrap_or("(the runner stopped before recording one; it may have been killed)")
        ));
        match d.direction {
            Direction::Up => s.push_str(&format!(
                "  Statements before the failing one are applied; the rest are not. Look at the database, then either\n  - finish the migration by hand and run `{bin} migrate repair --mark-applied {v}`, or\n  - undo what it did and run `{bin} migrate repair --mark-rolled-back {v}` so that `up` runs it again.\n",
                v = d.version
            )),
            Direction::Down => s.push_str(&format!(
                "  Down statements before the failing one are done; the rest are not. Look at the database, then either\n  - finish the rollback by hand (the rest of the down section) and run `{bin} migrate repair --mark-rolled-back {v}`: it is then pending, and `up` would run it again, or\n  - redo what the down section undid and run `{bin} migrate repair --mark-applied {v}`: it stays applied, and `down` can be run again once its down section is fixed.\n",
                v = d.version
            )),
        }
        if !d.invalid_indexes.is_empty() {
            s.push_str("  It left invalid indexes (unused, enforcing nothing; `IF NOT EXISTS` would keep them). Drop them before it runs again:\n");
            for x in &d.invalid_indexes {
                s.push_str(&format!(
                    "    {}   -- on {}: {}\n",
                    x.drop_sql(),
                    x.table,
                    x.definition
                ));
            }
        }
    }
    s.trim_end().to_string()
}

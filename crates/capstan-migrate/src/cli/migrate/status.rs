//! `migrate status`: every migration and its state.

use crate::cli::context::Context;
use crate::cli::exit::{Exit, Failure};
use crate::cli::output::program;
use crate::cli::render::render_invalid_indexes;
use crate::migrator::State;

pub(super) async fn run(cx: &Context<'_>) -> Result<Exit, Failure> {
    let m = cx.migrator()?;
    let mut db = cx.connect_read_only().await?;
    let status = m.status(&mut db).await?;
    cx.out.result(&status, || render(&status, &db.describe()));
    Ok(Exit::Ok)
}

fn render(status: &crate::migrator::Status, target: &str) -> String {
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
                        capstan_format::label(a.version, &a.name),
                        e.version
                    ));
                }
            }
            State::Applied if e.down_changed => line.push_str(
                "  <- down section edited since it ran (allowed; recorded at the next up or down)",
            ),
            State::Ahead => line.push_str("  <- in the database, not in this directory"),
            State::Dirty => line.push_str(&format!(
                "  <- failed part-way; see `{} migrate repair`",
                program()
            )),
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

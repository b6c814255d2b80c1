//! Renderings shared by several commands: a run's report, invalid indexes.

use super::exit::Failure;
use super::output::{plural, program, Output};
use crate::driver::Direction;
use crate::migrator::{Error, RunReport};

/// Prints what was done before a failure, then turns the error into a Failure.
pub(crate) fn report_partial(out: &Output, e: Error) -> Failure {
    let (report, direction) = match &e {
        Error::Failed(f) => (Some(&f.report), f.direction),
        Error::Interrupted {
            report, direction, ..
        } => (Some(&**report), *direction),
        _ => (None, Direction::Up),
    };
    if let Some(report) = report.filter(|r| !out.json() && !r.ran.is_empty()) {
        let what = match direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        out.warn(render_report(report, what));
    }
    Failure::from(e)
}

/// One warning line per invalid index, saying how to drop it.
pub(crate) fn render_invalid_indexes(invalid: &[crate::indexes::InvalidIndex]) -> String {
    invalid
        .iter()
        .map(|x| {
            format!(
                "WARNING: index {} on {} is INVALID (a CREATE INDEX CONCURRENTLY failed): it is not used and enforces nothing; drop it with `{}` and build it again\n",
                x.qualified(),
                x.table,
                x.drop_sql()
            )
        })
        .collect()
}

/// What `up` or `down` (`what`) did: counts, other runners, what held it
/// back, what it archived.
pub(crate) fn render_report(report: &RunReport, what: &str) -> String {
    let mut s = String::new();
    if report.ran.is_empty() {
        s.push_str(match (what, &report.held_back) {
            ("up", None) => "nothing to apply: the database is up to date",
            ("up", Some(_)) => "nothing applied",
            _ => "nothing to roll back",
        });
    } else {
        let total: u64 = report.ran.iter().map(|r| r.duration_ms).sum();
        let verb = if what == "up" {
            "applied"
        } else {
            "rolled back"
        };
        s.push_str(&format!(
            "{verb} {} in {total} ms",
            plural(report.ran.len(), "migration", "migrations")
        ));
    }
    if !report.done_by_other_runner.is_empty() {
        s.push_str(&format!(
            "\n{} applied by another runner at the same time",
            match report.done_by_other_runner.len() {
                1 => "1 migration was".to_string(),
                n => format!("{n} migrations were"),
            }
        ));
    }
    if let Some(h) = &report.held_back {
        s.push_str(&format!(
            "\nstopped before {}: {}",
            capstan_format::label(h.version, &h.name),
            h.reason
        ));
    }
    if !report.archived.is_empty() {
        let rows: u64 = report.archived.iter().map(|e| e.row_count).sum();
        s.push_str(&format!(
            "\narchived {} ({}) before destroying them: `{} archive list`",
            plural(report.archived.len(), "object", "objects"),
            plural(rows as usize, "row", "rows"),
            program()
        ));
    }
    s
}

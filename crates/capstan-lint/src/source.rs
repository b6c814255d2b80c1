//! What the linter needs to know about a migration file: its phase, its
//! directives, where its up and down sections are, and what is wrong with
//! its format. The format itself is read by `capstan_format::scan`, the
//! same reading the migration engine refuses a file with.

use crate::finding::SectionKind;
use std::time::Duration;

pub(crate) use capstan_format::Phase;

/// A section of SQL: a byte range of the original file and the 1-based line it starts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Section {
    pub kind: SectionKind,
    pub start: usize,
    pub end: usize,
}

/// A problem with the file's format (not with its SQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FormatProblem {
    pub offset: usize,
    pub message: String,
}

/// What the linter needs to know about a migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MigrationSource {
    pub phase: Phase,
    /// Byte offset of the `-- capstan:phase` directive, when there is one.
    pub phase_offset: Option<usize>,
    pub no_transaction: bool,
    #[allow(dead_code)]
    pub lock_timeout: Option<Duration>,
    pub up: Section,
    pub down: Option<Section>,
    /// Byte offset where the up section starts: comments before it are the file's header.
    pub header_end: usize,
    pub problems: Vec<FormatProblem>,
}

/// Parses a version from a file name like `0007_add_email.sql` (or another
/// tool's `1_add_email.sql`).
pub(crate) fn version_of(file_name: &str) -> Option<u64> {
    capstan_format::version_prefix(file_name)
}

/// The text after `-- capstan:` on a comment line, `None` for any other line.
pub(crate) fn directive_of(line: &str) -> Option<&str> {
    capstan_format::directive_body(line)
}

/// Splits `text` into directives and sections. Never fails: format problems are
/// reported in `problems`, and a file without `-- capstan:up` is linted whole, like
/// plain SQL (SQL before a marker it does not have is no problem).
pub(crate) fn split(text: &str) -> MigrationSource {
    let layout = capstan_format::scan(text);
    let plain = layout.up.is_none();
    let problems = layout
        .problems
        .iter()
        .filter(|p| !(plain && p.kind == capstan_format::ProblemKind::SqlBeforeUp))
        .map(|p| FormatProblem {
            offset: p.offset,
            message: p.message.clone(),
        })
        .collect();
    let whole = if text.starts_with('\u{feff}') { 3 } else { 0 }..text.len();
    let up = layout.up_range(text.len()).unwrap_or(whole);
    MigrationSource {
        phase: layout.phase.unwrap_or_default(),
        phase_offset: layout.phase_offset,
        no_transaction: layout.no_transaction,
        lock_timeout: layout.lock_timeout,
        header_end: layout.up.map_or(0, |m| m.body),
        up: Section {
            kind: SectionKind::Up,
            start: up.start,
            end: up.end,
        },
        down: layout.down_range(text.len()).map(|r| Section {
            kind: SectionKind::Down,
            start: r.start,
            end: r.end,
        }),
        problems,
    }
}

#[cfg(test)]
mod tests;

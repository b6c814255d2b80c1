//! Findings: what the linter reports. Findings are data, never errors.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a finding is. Ordered: `Info < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never fails a run unless `--fail-on info`.
    Info,
    /// Likely a problem; fails the run with `--fail-on warning`.
    Warning,
    /// Blocks traffic, breaks a running binary or loses data; fails the run by default.
    Error,
}

impl Severity {
    /// The lowercase name used in output and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    /// Parses `info`, `warning` (or `warn`) and `error`.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "info" | "hint" => Some(Severity::Info),
            "warning" | "warn" => Some(Severity::Warning),
            "error" => Some(Severity::Error),
            _ => None,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which section of a migration file a finding is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SectionKind {
    /// The `-- capstan:up` section (or the whole file for plain SQL).
    Up,
    /// The `-- capstan:down` section.
    Down,
}

/// One problem found in one migration file.
///
/// `line` and `column` are 1-based positions in the original file (columns count
/// characters), pointing at the statement or, where the parser knows it, at the
/// clause the finding is about. `end_line`/`end_column` mark the end of the statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable kebab-case rule name, e.g. `require-concurrent-index-creation`.
    pub rule: String,
    /// Effective severity (after configuration overrides).
    pub severity: Severity,
    /// The file as it was given (a path, or `<stdin>`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// 1-based line where the statement ends.
    pub end_line: usize,
    /// 1-based column (exclusive) where the statement ends.
    pub end_column: usize,
    /// What is wrong, naming the objects involved.
    pub message: String,
    /// What to do instead.
    pub help: Option<String>,
    /// The section the statement is in.
    pub section: SectionKind,
}

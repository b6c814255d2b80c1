//! `-- capstan:` directives and the layout of a migration file: its header,
//! its up and down markers, and everything wrong with them.

use std::time::Duration;

use crate::duration::{parse_timeout, DurationError};
use crate::Phase;

/// The directive names, for messages.
const KNOWN: &str = "phase, no-transaction, lock-timeout, statement-timeout, up, down, ignore";

/// One `-- capstan:` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `-- capstan:up`: the up section starts on the next line.
    Up,
    /// `-- capstan:down`: the down section starts on the next line.
    Down,
    /// `-- capstan:phase expand|contract`.
    Phase(Phase),
    /// `-- capstan:no-transaction`: run statement by statement, outside a transaction.
    NoTransaction,
    /// `-- capstan:lock-timeout D`.
    LockTimeout(Duration),
    /// `-- capstan:statement-timeout D`.
    StatementTimeout(Duration),
    /// A linter suppression (`ignore`, `ignore-file`, `lint-…`), with its
    /// lower-case name; its arguments are the linter's to read.
    Suppression(String),
}

impl Directive {
    /// True for the directives that belong to the file's header, before `-- capstan:up`.
    fn is_header(key: &str) -> bool {
        matches!(
            key,
            "phase" | "no-transaction" | "lock-timeout" | "statement-timeout"
        )
    }

    /// Parses the text after `-- capstan:` ([`directive_body`]). Names are
    /// case-insensitive, like SQL keywords, so `-- CAPSTAN:UP` is never a
    /// comment that silently does nothing. The error says what is wrong.
    pub fn parse(body: &str) -> Result<Directive, String> {
        if body.is_empty() || body.starts_with(char::is_whitespace) {
            return Err("a `-- capstan:` directive must follow the colon without a space, e.g. `-- capstan:no-transaction`".into());
        }
        let mut parts = body.split_whitespace();
        let key = parts.next().unwrap_or("").to_ascii_lowercase();
        let args: Vec<&str> = parts.collect();
        let no_args = |d: Directive| {
            if args.is_empty() {
                Ok(d)
            } else {
                Err(format!(
                    "`-- capstan:{key}` takes no argument, found `{}`",
                    args.join(" ")
                ))
            }
        };
        match key.as_str() {
            "up" => no_args(Directive::Up),
            "down" => no_args(Directive::Down),
            "no-transaction" => no_args(Directive::NoTransaction),
            "phase" => {
                let [value] = args[..] else {
                    return Err("`-- capstan:phase` needs one value: expand or contract".into());
                };
                Phase::parse(&value.to_ascii_lowercase())
                    .map(Directive::Phase)
                    .ok_or_else(|| {
                        format!("unknown phase `{value}`; `-- capstan:phase` takes `expand` or `contract`")
                    })
            }
            "lock-timeout" | "statement-timeout" => {
                let [value] = args[..] else {
                    return Err(format!(
                        "`-- capstan:{key}` needs one duration, like 2s or 500ms"
                    ));
                };
                let d = parse_timeout(value).map_err(|e| match e {
                    DurationError::Syntax { .. } => format!(
                        "`-- capstan:{key}` needs a duration like `2s` or `500ms`, not `{value}`"
                    ),
                    e => format!("{key} `{value}`: {e}"),
                })?;
                Ok(if key == "lock-timeout" {
                    Directive::LockTimeout(d)
                } else {
                    Directive::StatementTimeout(d)
                })
            }
            "ignore" | "ignore-file" => Ok(Directive::Suppression(key)),
            k if k.starts_with("lint-") => Ok(Directive::Suppression(key)),
            other => Err(format!(
                "unknown directive `-- capstan:{other}` (known: {KNOWN})"
            )),
        }
    }
}

/// The text after `-- capstan:` on a (trimmed) comment line, `capstan:` in
/// any case and any blanks after `--`; `None` for any other line.
pub fn directive_body(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("--")?.trim_start();
    rest.get(..8)?
        .eq_ignore_ascii_case("capstan:")
        .then(|| &rest[8..])
}

/// A `-- capstan:up` or `-- capstan:down` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// 1-based line of the marker.
    pub line: usize,
    /// Byte offset of the start of the marker's line.
    pub offset: usize,
    /// Byte offset just after the marker's line: where the section's SQL begins.
    pub body: usize,
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A directive that is malformed, unknown, duplicated or misplaced.
    Directive,
    /// SQL before `-- capstan:up` (in a file that has one, the linter's
    /// only concern; the engine refuses it in any file).
    SqlBeforeUp,
}

/// Something wrong with a file's directives, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// Byte offset of the start of that line.
    pub offset: usize,
    /// What kind of problem.
    pub kind: ProblemKind,
    /// What is wrong, and how to fix it.
    pub message: String,
}

/// The layout of a migration file as [`scan`] reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The declared phase, when there is a `-- capstan:phase`.
    pub phase: Option<Phase>,
    /// Byte offset of the `-- capstan:phase` line.
    pub phase_offset: Option<usize>,
    /// `-- capstan:no-transaction`.
    pub no_transaction: bool,
    /// `-- capstan:lock-timeout D`.
    pub lock_timeout: Option<Duration>,
    /// `-- capstan:statement-timeout D`.
    pub statement_timeout: Option<Duration>,
    /// The `-- capstan:up` marker.
    pub up: Option<Marker>,
    /// The `-- capstan:down` marker (only ever after the up marker).
    pub down: Option<Marker>,
    /// Every problem, in line order. A problem leaves the directive it is
    /// about without effect; the rest of the file is still read.
    pub problems: Vec<Problem>,
}

impl Layout {
    /// The byte range of the up section in a text of `len` bytes: after the
    /// up marker, up to the down marker; `None` without an up marker.
    pub fn up_range(&self, len: usize) -> Option<std::ops::Range<usize>> {
        let up = self.up?;
        Some(up.body..self.down.map_or(len, |d| d.offset))
    }

    /// The byte range of the down section in a text of `len` bytes.
    pub fn down_range(&self, len: usize) -> Option<std::ops::Range<usize>> {
        self.down.map(|d| d.body..len)
    }
}

/// Reads the directives of a migration file's text and finds its sections.
/// Never fails: every problem is listed in [`Layout::problems`], so the
/// engine can refuse the file at the first and the linter report them all,
/// from the same reading. A leading byte-order mark is not part of the
/// first line.
pub fn scan(text: &str) -> Layout {
    let mut l = Layout::default();
    let mut sql_before_up: Option<(usize, usize)> = None;
    let mut offset = 0;
    for (idx, raw) in text.split_inclusive('\n').enumerate() {
        let line_no = idx + 1;
        let line_start = offset;
        offset += raw.len();
        let raw = if idx == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        };
        let line = raw.trim();
        let mut problem = |kind, message: String| {
            l.problems.push(Problem {
                line: line_no,
                offset: line_start,
                kind,
                message,
            })
        };
        let Some(body) = directive_body(line) else {
            let sql = !line.is_empty() && !line.starts_with("--") && !line.starts_with("/*");
            if sql && l.up.is_none() && sql_before_up.is_none() {
                sql_before_up = Some((line_no, line_start));
            }
            continue;
        };
        let key = body
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let spaced = body.is_empty() || body.starts_with(char::is_whitespace);
        if Directive::is_header(&key) && l.up.is_some() && !spaced {
            problem(
                ProblemKind::Directive,
                format!("`-- capstan:{key}` must come before `-- capstan:up`"),
            );
            continue;
        }
        let directive = match Directive::parse(body) {
            Ok(d) => d,
            Err(message) => {
                problem(ProblemKind::Directive, message);
                // A marker with a stray argument still marks its section.
                match key.as_str() {
                    "up" => Directive::Up,
                    "down" => Directive::Down,
                    _ => continue,
                }
            }
        };
        let twice = |what: &str| format!("{what} is declared twice");
        match directive {
            Directive::Up if l.up.is_some() => problem(
                ProblemKind::Directive,
                "a second `-- capstan:up` marker".into(),
            ),
            Directive::Up => {
                l.up = Some(Marker {
                    line: line_no,
                    offset: line_start,
                    body: offset,
                })
            }
            Directive::Down if l.up.is_none() => problem(
                ProblemKind::Directive,
                "`-- capstan:down` before `-- capstan:up`; the up section comes first".into(),
            ),
            Directive::Down if l.down.is_some() => problem(
                ProblemKind::Directive,
                "a second `-- capstan:down` marker".into(),
            ),
            Directive::Down => {
                l.down = Some(Marker {
                    line: line_no,
                    offset: line_start,
                    body: offset,
                })
            }
            Directive::Phase(_) if l.phase.is_some() => {
                problem(ProblemKind::Directive, twice("phase"))
            }
            Directive::Phase(p) => {
                l.phase = Some(p);
                l.phase_offset = Some(line_start);
            }
            Directive::NoTransaction if l.no_transaction => {
                problem(ProblemKind::Directive, twice("no-transaction"))
            }
            Directive::NoTransaction => l.no_transaction = true,
            Directive::LockTimeout(_) if l.lock_timeout.is_some() => {
                problem(ProblemKind::Directive, twice("lock-timeout"))
            }
            Directive::LockTimeout(d) => l.lock_timeout = Some(d),
            Directive::StatementTimeout(_) if l.statement_timeout.is_some() => {
                problem(ProblemKind::Directive, twice("statement-timeout"))
            }
            Directive::StatementTimeout(d) => l.statement_timeout = Some(d),
            Directive::Suppression(_) => {}
        }
    }
    if let Some((line, offset)) = sql_before_up {
        l.problems.push(Problem {
            line,
            offset,
            kind: ProblemKind::SqlBeforeUp,
            message: "SQL before `-- capstan:up`; put statements in the up section".into(),
        });
        l.problems.sort_by_key(|p| p.line);
    }
    l
}

#[cfg(test)]
mod tests;

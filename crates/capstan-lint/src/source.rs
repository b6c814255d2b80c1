//! Splits a migration file into its directives and its up/down sections.
//!
//! This is the only place that knows capstan's migration file format. It mirrors
//! `capstan_migrate::source` (which owns the format) closely enough to be swapped for
//! it: the linter only uses [`MigrationSource`] and [`split`].

use crate::finding::SectionKind;
use std::time::Duration;

/// Declared phase of a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Expand,
    Contract,
}

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

/// Parses a version from a file name like `0007_add_email.sql`.
pub(crate) fn version_of(file_name: &str) -> Option<u64> {
    let stem = file_name.strip_suffix(".sql")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.is_empty() || name.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The text after `-- capstan:` on a comment line (`capstan:` in any case,
/// like `capstan_migrate::source`), `None` for any other line.
pub(crate) fn directive_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("--")?.trim_start();
    rest.get(..8)?
        .eq_ignore_ascii_case("capstan:")
        .then(|| &rest[8..])
}

fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "min" | "m" => Some(Duration::from_secs(n * 60)),
        "h" => Some(Duration::from_secs(n * 3600)),
        _ => None,
    }
}

/// Splits `text` into directives and sections. Never fails: format problems are
/// reported in `problems`, and a file without `-- capstan:up` is linted whole, like
/// plain SQL.
pub(crate) fn split(text: &str) -> MigrationSource {
    let mut src = MigrationSource {
        phase: Phase::Expand,
        phase_offset: None,
        no_transaction: false,
        lock_timeout: None,
        up: Section {
            kind: SectionKind::Up,
            start: if text.starts_with('\u{feff}') { 3 } else { 0 },
            end: text.len(),
        },
        down: None,
        header_end: 0,
        problems: Vec::new(),
    };
    let mut up_at: Option<(usize, usize)> = None; // (marker offset, body start)
    let mut down_at: Option<(usize, usize)> = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let line_start = offset;
        offset += raw.len();
        // A byte-order mark before the first line is not part of it.
        let line = if line_start == 0 {
            raw.trim_start_matches('\u{feff}')
        } else {
            raw
        }
        .trim();
        let Some(directive) = directive_of(line) else {
            continue;
        };
        if directive.starts_with(char::is_whitespace) || directive.is_empty() {
            src.problems.push(FormatProblem {
                offset: line_start,
                message: "a `-- capstan:` directive must follow the colon without a space, e.g. `-- capstan:no-transaction`".into(),
            });
            continue;
        }
        let mut words = directive.split_whitespace();
        // Case-insensitive, as the engine reads them.
        let name = words.next().unwrap_or("").to_ascii_lowercase();
        let name = name.as_str();
        let arg = words.next();
        let in_header = up_at.is_none();
        let problem = |message: String| FormatProblem {
            offset: line_start,
            message,
        };
        match name {
            "up" => {
                if up_at.is_some() {
                    src.problems.push(problem("a second `-- capstan:up` marker".into()));
                } else if down_at.is_some() {
                    src.problems.push(problem("`-- capstan:up` must come before `-- capstan:down`".into()));
                } else {
                    up_at = Some((line_start, offset));
                }
            }
            "down" => {
                if down_at.is_some() {
                    src.problems.push(problem("a second `-- capstan:down` marker".into()));
                } else {
                    down_at = Some((line_start, offset));
                }
            }
            "phase" | "no-transaction" | "lock-timeout" | "statement-timeout"
                if !in_header || down_at.is_some() =>
            {
                src.problems.push(problem(format!(
                    "`-- capstan:{name}` must come before `-- capstan:up`"
                )));
            }
            "phase" => match arg.map(str::to_ascii_lowercase).as_deref() {
                Some("expand") => {
                    src.phase = Phase::Expand;
                    src.phase_offset = Some(line_start);
                }
                Some("contract") => {
                    src.phase = Phase::Contract;
                    src.phase_offset = Some(line_start);
                }
                other => src.problems.push(problem(format!(
                    "`-- capstan:phase` takes `expand` or `contract`, not `{}`",
                    other.unwrap_or("")
                ))),
            },
            "no-transaction" => src.no_transaction = true,
            "lock-timeout" => match arg.and_then(parse_duration) {
                Some(d) => src.lock_timeout = Some(d),
                None => src.problems.push(problem(format!(
                    "`-- capstan:lock-timeout` needs a duration like `2s` or `500ms`, not `{}`",
                    arg.unwrap_or("")
                ))),
            },
            "statement-timeout" => {
                if arg.and_then(parse_duration).is_none() {
                    src.problems.push(problem(format!(
                        "`-- capstan:statement-timeout` needs a duration like `5m` or `30s`, not `{}`",
                        arg.unwrap_or("")
                    )));
                }
            }
            // Suppression comments are read by the suppression module.
            "ignore" | "lint-ignore" | "ignore-file" => {}
            other => src.problems.push(problem(format!(
                "unknown directive `-- capstan:{other}` (known: phase, no-transaction, lock-timeout, statement-timeout, up, down, ignore)"
            ))),
        }
    }
    match (up_at, down_at) {
        (Some((_, up_body)), Some((down_marker, down_body))) => {
            src.up = Section {
                kind: SectionKind::Up,
                start: up_body,
                end: down_marker,
            };
            src.down = Some(Section {
                kind: SectionKind::Down,
                start: down_body,
                end: text.len(),
            });
            src.header_end = up_body;
        }
        (Some((_, up_body)), None) => {
            src.up.start = up_body;
            src.header_end = up_body;
        }
        (None, Some((down_marker, _))) => {
            src.problems.push(FormatProblem {
                offset: down_marker,
                message: "`-- capstan:down` without a `-- capstan:up` section".into(),
            });
        }
        (None, None) => {}
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sections_and_directives() {
        let text = "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:lock-timeout 2s\n-- capstan:up\nSELECT 1;\n-- capstan:down\nSELECT 2;\n";
        let src = split(text);
        assert_eq!(src.phase, Phase::Contract);
        assert!(src.no_transaction);
        assert_eq!(src.lock_timeout, Some(Duration::from_secs(2)));
        assert_eq!(&text[src.up.start..src.up.end], "SELECT 1;\n");
        let down = src.down.unwrap();
        assert_eq!(&text[down.start..down.end], "SELECT 2;\n");
        assert!(src.problems.is_empty());
    }

    #[test]
    fn plain_sql_is_all_up() {
        let src = split("CREATE TABLE t (id int);\n");
        assert_eq!((src.up.start, src.up.end), (0, 25));
        assert_eq!(src.phase, Phase::Expand);
    }

    #[test]
    fn unknown_directive_and_bad_values_are_problems() {
        let src = split("-- capstan:phase sideways\n-- capstan:no-transation\n-- capstan:up\nSELECT 1;\n-- capstan:phase expand\n");
        assert_eq!(src.problems.len(), 3, "{:?}", src.problems);
        assert!(src.problems[1].message.contains("no-transation"));
    }

    #[test]
    fn directives_are_case_insensitive_and_a_bom_is_not_a_line() {
        let src = split("\u{feff}-- CAPSTAN:Phase CONTRACT\n-- Capstan:NO-TRANSACTION\n-- capstan:UP\nSELECT 1;\n");
        assert!(src.problems.is_empty(), "{:?}", src.problems);
        assert_eq!(src.phase, Phase::Contract);
        assert!(src.no_transaction);
        assert_eq!(src.header_end, src.up.start);
        assert!(
            split("-- CAPSTAN:no-transation\n-- capstan:up\nSELECT 1;\n").problems[0]
                .message
                .contains("no-transation")
        );
    }

    /// The engine (`capstan_migrate::source`) owns the format; the linter's
    /// copy must read every form the same way: the same directives take
    /// effect, and a file one of them refuses the other refuses too.
    #[cfg(feature = "migrate")]
    #[test]
    fn directives_read_as_the_engine_reads_them() {
        let headers = [
            "-- capstan:no-transaction\n",
            "-- CAPSTAN:no-transaction\n",
            "-- Capstan:No-Transaction\n",
            "--capstan:NO-TRANSACTION\n",
            "--   CaPsTaN:no-transaction\n",
            "-- capstan:no-transation\n",
            "-- CAPSTAN:NO-TRANSATION\n",
            "-- capstan:phase contract\n",
            "-- CAPSTAN:PHASE CONTRACT\n",
            "-- capstan:phase Expand\n",
            "-- capstan:phase sideways\n",
            "-- capstan:Phase\n",
            "-- capstan: no-transaction\n",
            "-- capstan:lock-timeout 2s\n",
            "-- CAPSTAN:LOCK-TIMEOUT 500ms\n",
            "-- capstan:lock-timeout soon\n",
            "-- capstan:frobnicate\n",
            "-- capstanx:no-transaction\n",
            "-- not capstan:no-transaction\n",
            "\u{feff}-- capstan:no-transaction\n",
            "\u{feff}-- CAPSTAN:PHASE contract\n",
        ];
        let markers = [
            ("-- capstan:up\n", "-- capstan:down\n"),
            ("-- CAPSTAN:UP\n", "-- Capstan:Down\n"),
        ];
        for header in headers {
            for (up, down) in markers {
                let text = format!("{header}{up}SELECT 1;\n{down}SELECT 2;\n");
                let engine = capstan_migrate::source::parse_migration(
                    std::path::Path::new("0001_x.sql"),
                    text.as_bytes(),
                )
                .map(|m| {
                    (
                        m.no_transaction,
                        m.phase == capstan_migrate::source::Phase::Contract,
                        m.down.is_some(),
                    )
                });
                let lint = split(&text);
                let linted = if lint.problems.is_empty() {
                    Ok((
                        lint.no_transaction,
                        lint.phase == Phase::Contract,
                        lint.down.is_some(),
                    ))
                } else {
                    Err(lint.problems)
                };
                match (&engine, &linted) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                    (Err(_), Err(_)) => {}
                    _ => panic!("{text:?}: the engine reads {engine:?}, the linter {linted:?}"),
                }
            }
        }
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(version_of("0007_add_email.sql"), Some(7));
        assert_eq!(version_of("add_email.sql"), None);
        assert_eq!(version_of("0007.sql"), None);
    }
}

//! What a section's statements say about transactions, and names.

use super::*;

/// Drops blank lines before the first line with text, and trailing whitespace.
pub(super) fn trim_section(text: &str) -> &str {
    let Some(first) = text.find(|c: char| !c.is_whitespace()) else {
        return "";
    };
    let start = text[..first].rfind('\n').map_or(0, |i| i + 1);
    text[start..].trim_end()
}

pub(super) fn is_transaction_control(words: &[String]) -> bool {
    match words.first().map(String::as_str) {
        Some("BEGIN" | "COMMIT" | "ROLLBACK" | "END" | "ABORT" | "SAVEPOINT" | "RELEASE") => true,
        Some("START") => words.get(1).map(String::as_str) == Some("TRANSACTION"),
        _ => false,
    }
}

pub(super) fn control(part: &Part, stmts: &[Statement]) -> Control {
    let words: Vec<Vec<String>> = stmts
        .iter()
        .map(|s| words(&part.text[s.range.clone()]))
        .collect();
    let tc: Vec<usize> = (0..stmts.len())
        .filter(|&i| is_transaction_control(&words[i]))
        .collect();
    let Some(&first) = tc.first() else {
        return Control::None;
    };
    let plain = |w: &[String], options: &[&[&str]]| {
        options
            .iter()
            .any(|o| o.len() == w.len() && o.iter().zip(w).all(|(a, b)| a == b))
    };
    let last = stmts.len() - 1;
    if tc == [0, last]
        && last > 0
        && plain(
            &words[0],
            &[
                &["BEGIN"],
                &["BEGIN", "WORK"],
                &["BEGIN", "TRANSACTION"],
                &["START", "TRANSACTION"],
            ],
        )
        && plain(
            &words[last],
            &[
                &["COMMIT"],
                &["COMMIT", "WORK"],
                &["COMMIT", "TRANSACTION"],
                &["END"],
                &["END", "WORK"],
                &["END", "TRANSACTION"],
            ],
        )
    {
        return Control::Wrapped {
            begin: statement_span(&part.text, &stmts[0].range),
            commit: statement_span(&part.text, &stmts[last].range),
            lines: (stmts[0].line_offset, stmts[last].line_offset),
        };
    }
    Control::Own {
        offset: stmts[first].line_offset,
        what: words[first].join(" "),
    }
}

/// The bytes to remove for a statement: its text, its `;`, and its whole line
/// when nothing else is on it.
pub(super) fn statement_span(text: &str, range: &Range<usize>) -> Range<usize> {
    let b = text.as_bytes();
    let mut end = range.end;
    if b.get(end) == Some(&b';') {
        end += 1;
    }
    let mut after = end;
    while matches!(b.get(after), Some(b' ' | b'\t' | b'\r')) {
        after += 1;
    }
    let line_start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let alone_before = text[line_start..range.start].trim().is_empty();
    if alone_before && (after == b.len() || b[after] == b'\n') {
        line_start..(after + 1).min(b.len())
    } else {
        range.start..end
    }
}

/// What makes a statement impossible inside a transaction block, if anything.
pub(super) fn cannot_run_in_transaction(words: &[String]) -> Option<&'static str> {
    let w = |i: usize| words.get(i).map_or("", String::as_str);
    let has = |x: &str| words.iter().any(|v| v == x);
    match (w(0), w(1)) {
        ("VACUUM", _) => Some("VACUUM"),
        ("CREATE", "DATABASE") => Some("CREATE DATABASE"),
        ("DROP", "DATABASE") => Some("DROP DATABASE"),
        ("CREATE", "TABLESPACE") => Some("CREATE TABLESPACE"),
        ("DROP", "TABLESPACE") => Some("DROP TABLESPACE"),
        ("ALTER", "SYSTEM") => Some("ALTER SYSTEM"),
        ("CREATE", "INDEX") if w(2) == "CONCURRENTLY" => Some("CREATE INDEX CONCURRENTLY"),
        ("CREATE", "UNIQUE") if w(2) == "INDEX" && w(3) == "CONCURRENTLY" => {
            Some("CREATE UNIQUE INDEX CONCURRENTLY")
        }
        ("DROP", "INDEX") if w(2) == "CONCURRENTLY" => Some("DROP INDEX CONCURRENTLY"),
        ("REINDEX", _) if has("CONCURRENTLY") => Some("REINDEX CONCURRENTLY"),
        ("REINDEX", _) if has("SYSTEM") || has("DATABASE") => Some("REINDEX DATABASE/SYSTEM"),
        ("ALTER", "TABLE")
            if has("DETACH") && words.last().is_some_and(|l| l == "CONCURRENTLY") =>
        {
            Some("DETACH PARTITION … CONCURRENTLY")
        }
        _ => None,
    }
}

/// A source name in capstan's `[a-z][a-z0-9_]*`: lower-case, anything else
/// to `_`, repeats collapsed, `m_` in front of a leading digit, `migration`
/// when nothing is left.
pub fn snake_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let trimmed = out.trim_matches('_');
    if trimmed.is_empty() {
        return "migration".into();
    }
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        format!("m_{trimmed}")
    } else {
        trimmed.to_string()
    }
}

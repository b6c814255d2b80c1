//! Splitting a section of SQL into statements.
//!
//! Written by hand rather than with a full parser so the embedded library needs
//! no C toolchain: it only has to find statement boundaries the way `psql` and
//! the `sqlite3` shell do. It understands single-quoted strings (with `E''`
//! escapes), quoted identifiers, dollar quotes, line and nested block
//! comments, SQL-standard function bodies (`BEGIN ATOMIC … END`) on Postgres
//! and trigger bodies (`BEGIN … END`) on SQLite.

use std::ops::Range;

/// The SQL dialect a section is split for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// One statement of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte range of the statement in the section text, without the `;`.
    pub range: Range<usize>,
    /// 0-based line offset of the statement's first token within the section.
    pub line_offset: usize,
    /// Column (1-based, in characters) of the statement's first token.
    pub column: usize,
    /// The first keyword, upper-cased (`CREATE`, `BEGIN`, …).
    pub keyword: String,
}

/// A section that cannot be split: an unterminated quote or comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} starting on line {line_offset} (relative) is never closed")]
pub struct SplitError {
    /// What was left open (`string`, `quoted identifier`, `block comment`, …).
    pub what: &'static str,
    /// 0-based line offset where it opened.
    pub line_offset: usize,
}

/// Splits `sql` into its statements. Empty statements (only whitespace and
/// comments) are dropped, as the server drops them.
pub fn split(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, SplitError> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 0usize;
    let mut line_start = 0usize;
    // Current statement state.
    let mut start: Option<(usize, usize, usize)> = None; // (byte, line, col)
    let mut words: Vec<String> = Vec::new(); // first few upper-cased words
    let mut body_depth = 0usize; // BEGIN … END nesting inside a routine/trigger body
    let mut prev_word = String::new();

    let col_of = |pos: usize, line_start: usize| sql[line_start..pos].chars().count() + 1;

    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                line_start = i + 1;
                i += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let open_line = line;
                let mut depth = 0usize;
                loop {
                    if i >= b.len() {
                        return Err(SplitError {
                            what: "block comment",
                            line_offset: open_line,
                        });
                    }
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                        // SQLite block comments do not nest.
                        if dialect == Dialect::Sqlite && depth > 1 {
                            depth = 1;
                        }
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        if b[i] == b'\n' {
                            line += 1;
                            line_start = i + 1;
                        }
                        i += 1;
                    }
                }
            }
            b';' => {
                if body_depth > 0 {
                    i += 1;
                    continue;
                }
                if let Some((s, l, col)) = start.take() {
                    out.push(Statement {
                        range: s..i,
                        line_offset: l,
                        column: col,
                        keyword: words.first().cloned().unwrap_or_default(),
                    });
                }
                words.clear();
                prev_word.clear();
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                if start.is_none() {
                    start = Some((i, line, col_of(i, line_start)));
                }
                if c == b'\'' || c == b'"' || c == b'`' || (c == b'[' && dialect == Dialect::Sqlite)
                {
                    let close = if c == b'[' { b']' } else { c };
                    let backslash = c == b'\''
                        && dialect == Dialect::Postgres
                        && i > 0
                        && matches!(b[i - 1], b'e' | b'E')
                        && (i < 2 || !is_ident_byte(b[i - 2]));
                    let open_line = line;
                    i += 1;
                    loop {
                        if i >= b.len() {
                            return Err(SplitError {
                                what: if c == b'\'' {
                                    "string literal"
                                } else {
                                    "quoted identifier"
                                },
                                line_offset: open_line,
                            });
                        }
                        let d = b[i];
                        if d == b'\n' {
                            line += 1;
                            line_start = i + 1;
                        }
                        if backslash && d == b'\\' {
                            i += 2;
                            continue;
                        }
                        if d == close {
                            if b.get(i + 1) == Some(&close) && close != b']' {
                                i += 2;
                                continue;
                            }
                            i += 1;
                            break;
                        }
                        i += 1;
                    }
                    prev_word.clear();
                } else if c == b'$' && dialect == Dialect::Postgres && dollar_tag(b, i).is_some() {
                    let tag_len = dollar_tag(b, i).unwrap_or(0);
                    let tag = &b[i..i + tag_len];
                    let open_line = line;
                    i += tag_len;
                    loop {
                        if i >= b.len() {
                            return Err(SplitError {
                                what: "dollar-quoted string",
                                line_offset: open_line,
                            });
                        }
                        if b[i] == b'$' && b[i..].starts_with(tag) {
                            i += tag_len;
                            break;
                        }
                        if b[i] == b'\n' {
                            line += 1;
                            line_start = i + 1;
                        }
                        i += 1;
                    }
                    prev_word.clear();
                } else if is_ident_start(c) {
                    let s = i;
                    while i < b.len() && is_ident_byte(b[i]) {
                        i += 1;
                    }
                    let word = sql[s..i].to_ascii_uppercase();
                    if words.len() < 6 {
                        words.push(word.clone());
                    }
                    body_depth = track_body(dialect, &words, &prev_word, &word, body_depth);
                    prev_word = word;
                } else {
                    i += 1;
                    prev_word.clear();
                }
            }
        }
    }
    if let Some((s, l, col)) = start {
        let end = sql.len();
        out.push(Statement {
            range: s..end,
            line_offset: l,
            column: col,
            keyword: words.first().cloned().unwrap_or_default(),
        });
    }
    // Trim trailing whitespace/comments-only tails of each range is not needed:
    // ranges start at the first token and end at the `;`.
    Ok(out)
}

/// Tracks `BEGIN … END` bodies whose inner `;` do not end the statement.
fn track_body(dialect: Dialect, words: &[String], prev: &str, word: &str, depth: usize) -> usize {
    let is_routine = words.first().map(String::as_str) == Some("CREATE")
        && words
            .iter()
            .skip(1)
            .any(|w| matches!(w.as_str(), "FUNCTION" | "PROCEDURE" | "TRIGGER"));
    if !is_routine {
        return 0;
    }
    match (dialect, word) {
        (Dialect::Postgres, "ATOMIC") if prev == "BEGIN" => depth + 1,
        (Dialect::Sqlite, "BEGIN") => depth + 1,
        (_, "CASE") if depth > 0 => depth + 1,
        (_, "END") if depth > 0 => depth - 1,
        _ => depth,
    }
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// Length of a dollar-quote tag (`$$`, `$body$`) starting at `i`, if one does.
fn dollar_tag(b: &[u8], i: usize) -> Option<usize> {
    if i > 0 && is_ident_byte(b[i - 1]) {
        return None; // part of an identifier like `a$b`
    }
    let mut j = i + 1;
    while j < b.len() && b[j] != b'$' {
        let ok = if j == i + 1 {
            is_ident_start(b[j])
        } else {
            is_ident_byte(b[j]) && b[j] != b'$'
        };
        if !ok {
            return None;
        }
        j += 1;
    }
    (j < b.len()).then_some(j + 1 - i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str, d: Dialect) -> Vec<String> {
        split(sql, d)
            .unwrap()
            .iter()
            .map(|s| sql[s.range.clone()].to_string())
            .collect()
    }

    #[test]
    fn splits_simple_statements_and_drops_empty_ones() {
        let sql = "CREATE TABLE a (id int);\n\n;-- only a comment\nINSERT INTO a VALUES (1)";
        assert_eq!(
            texts(sql, Dialect::Postgres),
            vec!["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"]
        );
    }

    #[test]
    fn semicolons_inside_quotes_and_comments_do_not_split() {
        let sql = "SELECT 'a;b', \"c;d\", E'x\\';y' /* ; /* nested ; */ */ ; SELECT 2 -- ;\n;";
        let t = texts(sql, Dialect::Postgres);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].starts_with("SELECT 'a;b'"));
    }

    #[test]
    fn dollar_quoted_function_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\nSELECT 1;";
        let t = texts(sql, Dialect::Postgres);
        assert_eq!(t.len(), 2);
        assert!(t[0].ends_with("plpgsql"));
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT 2; END;\nSELECT 3;";
        let t = texts(sql, Dialect::Postgres);
        assert_eq!(t.len(), 2, "{t:?}");
    }

    #[test]
    fn sqlite_trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = n + 1; DELETE FROM c; END;\nSELECT 1;";
        let t = texts(sql, Dialect::Sqlite);
        assert_eq!(t.len(), 2, "{t:?}");
    }

    #[test]
    fn reports_lines_columns_and_keywords() {
        let sql = "\n  create table a (id int);\nselect 1;";
        let s = split(sql, Dialect::Postgres).unwrap();
        assert_eq!(
            (s[0].line_offset, s[0].column, s[0].keyword.as_str()),
            (1, 3, "CREATE")
        );
        assert_eq!((s[1].line_offset, s[1].column), (2, 1));
    }

    #[test]
    fn unterminated_string_is_an_error_with_its_line() {
        let e = split("SELECT 1;\nSELECT 'oops;\n", Dialect::Postgres).unwrap_err();
        assert_eq!(e.what, "string literal");
        assert_eq!(e.line_offset, 1);
    }

    #[test]
    fn positional_parameters_and_identifiers_with_dollars_are_not_quotes() {
        let t = texts("SELECT a$b, $1 FROM t; SELECT 2;", Dialect::Postgres);
        assert_eq!(t.len(), 2);
    }
}

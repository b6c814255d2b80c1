//! Statement boundaries, built on the [`Lexer`].

use std::ops::Range;

use crate::lex::{Lexer, Token, TokenKind};
use crate::Dialect;

/// One statement of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Byte range of the statement in the section text, from its first token
    /// to its `;` (excluded), or to the end of the text for the last one.
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
    /// What was left open (`string literal`, `quoted identifier`, `block comment`, …).
    pub what: &'static str,
    /// 0-based line offset where it opened.
    pub line_offset: usize,
}

/// Splits `sql` into its statements. Empty statements (only whitespace and
/// comments) are dropped, as the server drops them. Semicolons inside a
/// routine's body (`BEGIN ATOMIC … END` on Postgres, a trigger's
/// `BEGIN … END` on SQLite) do not end the statement.
pub fn split(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, SplitError> {
    let mut out = Vec::new();
    let mut current: Option<(Token, Bodies)> = None;
    for t in Lexer::new(sql, dialect) {
        if !t.terminated {
            return Err(SplitError {
                what: t.kind.describe(),
                line_offset: t.line,
            });
        }
        if t.kind.is_comment() {
            continue;
        }
        if t.kind == TokenKind::Semicolon {
            match &current {
                Some((_, bodies)) if bodies.depth > 0 => continue,
                Some(_) => {
                    let (first, bodies) = current.take().unwrap_or_else(|| unreachable!());
                    out.push(statement(sql, &first, t.range.start, bodies));
                }
                None => {}
            }
            continue;
        }
        let (_, bodies) = current.get_or_insert_with(|| (t.clone(), Bodies::new(dialect)));
        bodies.see(sql, &t);
    }
    if let Some((first, bodies)) = current {
        out.push(statement(sql, &first, sql.len(), bodies));
    }
    Ok(out)
}

fn statement(sql: &str, first: &Token, end: usize, bodies: Bodies) -> Statement {
    Statement {
        range: first.range.start..end,
        line_offset: first.line,
        column: first.column(sql),
        keyword: bodies.keyword(sql),
    }
}

/// Splits `sql` after each top-level `;` without ever failing: each piece
/// keeps its leading whitespace and comments and its `;`, a quote or comment
/// left open runs to the end, and a last piece holding only whitespace and
/// comments is dropped. For a parser to read piece by piece (Postgres).
pub fn pieces(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bodies = Bodies::new(Dialect::Postgres);
    let mut has_code = false;
    for t in Lexer::new(sql, Dialect::Postgres) {
        if t.kind.is_comment() {
            continue;
        }
        if t.kind == TokenKind::Semicolon && bodies.depth == 0 {
            out.push(&sql[start..t.range.end]);
            start = t.range.end;
            bodies = Bodies::new(Dialect::Postgres);
            has_code = false;
            continue;
        }
        has_code = true;
        bodies.see(sql, &t);
    }
    if has_code {
        out.push(&sql[start..]);
    }
    out
}

/// The words (keywords and unquoted identifiers) of a statement, upper-cased,
/// outside strings, quoted identifiers, dollar quotes and comments.
pub fn words(sql: &str) -> Vec<String> {
    Lexer::new(sql, Dialect::Postgres)
        .filter(|t| t.kind == TokenKind::Word)
        .map(|t| sql[t.range].to_ascii_uppercase())
        .collect()
}

/// Tracks the routine bodies of one statement, whose inner `;` do not end
/// it: `BEGIN ATOMIC … END` on Postgres, a `CREATE TRIGGER`'s (or any
/// routine's) `BEGIN … END` on SQLite, with `CASE … END` and nested
/// `BEGIN … END` inside.
struct Bodies {
    dialect: Dialect,
    /// The statement's first words (byte ranges).
    words: [Range<usize>; 6],
    /// How many of `words` are set.
    count: usize,
    /// True when the previous token was the word `BEGIN`.
    after_begin: bool,
    depth: usize,
}

impl Bodies {
    fn new(dialect: Dialect) -> Self {
        Bodies {
            dialect,
            words: Default::default(),
            count: 0,
            after_begin: false,
            depth: 0,
        }
    }

    /// The first word, upper-cased.
    fn keyword(&self, sql: &str) -> String {
        match self.count {
            0 => String::new(),
            _ => sql[self.words[0].clone()].to_ascii_uppercase(),
        }
    }

    /// `CREATE … FUNCTION|PROCEDURE|TRIGGER`.
    fn routine(&self, sql: &str) -> bool {
        let word = |i: usize| &sql[self.words[i].clone()];
        self.count > 1
            && word(0).eq_ignore_ascii_case("CREATE")
            && (1..self.count).any(|i| {
                let w = word(i);
                ["FUNCTION", "PROCEDURE", "TRIGGER"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k))
            })
    }

    fn see(&mut self, sql: &str, t: &Token) {
        if t.kind != TokenKind::Word {
            self.after_begin = false;
            return;
        }
        if self.count < self.words.len() {
            self.words[self.count] = t.range.clone();
            self.count += 1;
        }
        let word = &sql[t.range.clone()];
        let is = |k: &str| word.eq_ignore_ascii_case(k);
        self.depth = if self.depth == 0 {
            match self.dialect {
                Dialect::Postgres if self.after_begin && is("ATOMIC") => 1,
                Dialect::Sqlite if is("BEGIN") && self.routine(sql) => 1,
                _ => 0,
            }
        } else if is("CASE") || is("BEGIN") {
            self.depth + 1
        } else if is("END") {
            self.depth - 1
        } else {
            self.depth
        };
        self.after_begin = is("BEGIN");
    }
}

#[cfg(test)]
mod tests;

//! The SQL lexer: the one place that knows where strings, quoted
//! identifiers, dollar quotes and comments begin and end.
//!
//! It finds token boundaries the way `psql` and the `sqlite3` shell do, not
//! a grammar: single-quoted strings (with `E''` backslash escapes on
//! Postgres), quoted identifiers (`""`, and on SQLite `` ` `` and `[]`),
//! dollar quotes (`$$`, `$tag$`, Postgres), line comments, and block
//! comments (nested on Postgres, not on SQLite). A token left open at the
//! end of the text is returned with `terminated: false`; whether that is an
//! error is the caller's choice.

use std::ops::Range;

use crate::Dialect;

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A keyword or unquoted identifier (`CREATE`, `users`, `a$b`).
    Word,
    /// A run of digits and identifier characters starting with a digit (`1`, `1e5`).
    Number,
    /// A single-quoted string, `E''` included.
    String,
    /// A quoted identifier: `"…"`, and on SQLite `` `…` `` or `[…]`.
    QuotedIdent,
    /// A dollar-quoted string, `$tag$ … $tag$`.
    DollarString,
    /// `-- …` up to (not including) the end of the line.
    LineComment,
    /// `/* … */`.
    BlockComment,
    /// `;`.
    Semicolon,
    /// Any other character (operators, punctuation, `$1`'s `$`).
    Other,
}

impl TokenKind {
    /// True for comments, which separate tokens but are not part of a statement's text.
    pub fn is_comment(self) -> bool {
        matches!(self, TokenKind::LineComment | TokenKind::BlockComment)
    }

    /// What an unterminated token of this kind is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            TokenKind::String => "string literal",
            TokenKind::QuotedIdent => "quoted identifier",
            TokenKind::DollarString => "dollar-quoted string",
            TokenKind::BlockComment => "block comment",
            TokenKind::LineComment => "line comment",
            TokenKind::Word => "word",
            TokenKind::Number => "number",
            TokenKind::Semicolon => "semicolon",
            TokenKind::Other => "character",
        }
    }
}

/// One token of SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes in the text.
    pub range: Range<usize>,
    /// 0-based line of its first byte.
    pub line: usize,
    /// Byte offset of the start of that line.
    pub line_start: usize,
    /// False when a string, quoted identifier, dollar quote or block comment
    /// runs to the end of the text without being closed.
    pub terminated: bool,
}

impl Token {
    /// 1-based column, in characters, of the token's first byte in `text`.
    pub fn column(&self, text: &str) -> usize {
        text[self.line_start..self.range.start].chars().count() + 1
    }
}

/// Iterates over the tokens of a text; whitespace is skipped.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    dialect: Dialect,
    pos: usize,
    line: usize,
    line_start: usize,
}

impl<'a> Lexer<'a> {
    /// A lexer over `text` for `dialect`.
    pub fn new(text: &'a str, dialect: Dialect) -> Self {
        Lexer {
            text,
            dialect,
            pos: 0,
            line: 0,
            line_start: 0,
        }
    }

    /// Counts the newlines of `pos..to` and moves the position to `to`.
    fn advance(&mut self, to: usize) {
        let seg = &self.text.as_bytes()[self.pos..to];
        let newlines = seg.iter().filter(|&&c| c == b'\n').count();
        if newlines > 0 {
            self.line += newlines;
            self.line_start = self.pos + seg.iter().rposition(|&c| c == b'\n').unwrap_or(0) + 1;
        }
        self.pos = to;
    }

    /// End of the token of `kind` starting at `i`, and whether it is closed.
    fn token_at(&self, i: usize) -> (TokenKind, usize, bool) {
        let b = self.text.as_bytes();
        let pg = self.dialect == Dialect::Postgres;
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                let end = b[i..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| i + p);
                (TokenKind::LineComment, end, true)
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                let mut j = i;
                while j < b.len() {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        // SQLite block comments do not nest.
                        depth = if pg { depth + 1 } else { 1 };
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            return (TokenKind::BlockComment, j, true);
                        }
                    } else {
                        j += 1;
                    }
                }
                (TokenKind::BlockComment, b.len(), false)
            }
            b';' => (TokenKind::Semicolon, i + 1, true),
            b'\'' => quoted(b, i, b'\'', false, TokenKind::String),
            b'"' => quoted(b, i, b'"', false, TokenKind::QuotedIdent),
            b'`' if !pg => quoted(b, i, b'`', false, TokenKind::QuotedIdent),
            b'[' if !pg => {
                let end = b[i..].iter().position(|&x| x == b']');
                match end {
                    Some(p) => (TokenKind::QuotedIdent, i + p + 1, true),
                    None => (TokenKind::QuotedIdent, b.len(), false),
                }
            }
            b'$' if pg => match dollar_tag(b, i) {
                Some(tag_len) => {
                    let tag = &b[i..i + tag_len];
                    let body = i + tag_len;
                    match find(&b[body..], tag) {
                        Some(p) => (TokenKind::DollarString, body + p + tag_len, true),
                        None => (TokenKind::DollarString, b.len(), false),
                    }
                }
                None => (TokenKind::Other, i + 1, true),
            },
            c if is_ident_start(c) => {
                let mut j = i;
                while j < b.len() && is_ident_byte(b[j]) {
                    j += 1;
                }
                // `E'…'`: a string with backslash escapes (Postgres).
                if pg && j == i + 1 && matches!(c, b'e' | b'E') && b.get(j) == Some(&b'\'') {
                    return quoted(b, i + 1, b'\'', true, TokenKind::String);
                }
                (TokenKind::Word, j, true)
            }
            c if c.is_ascii_digit() => {
                let mut j = i;
                while j < b.len() && is_ident_byte(b[j]) && b[j] != b'$' {
                    j += 1;
                }
                (TokenKind::Number, j, true)
            }
            _ => (TokenKind::Other, i + 1, true),
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        let b = self.text.as_bytes();
        let start = self.pos
            + b[self.pos..]
                .iter()
                .position(|c| !c.is_ascii_whitespace())?;
        self.advance(start);
        let (kind, end, terminated) = self.token_at(start);
        let token = Token {
            kind,
            range: start..end,
            line: self.line,
            line_start: self.line_start,
            terminated,
        };
        self.advance(end);
        Some(token)
    }
}

/// A quoted token from the quote at `open` to its closing `close`; a doubled
/// quote is one quote character, and `backslash` makes `\x` one character.
fn quoted(
    b: &[u8],
    open: usize,
    close: u8,
    backslash: bool,
    kind: TokenKind,
) -> (TokenKind, usize, bool) {
    let mut j = open + 1;
    while j < b.len() {
        let d = b[j];
        if backslash && d == b'\\' {
            j += 2;
            continue;
        }
        if d == close {
            if b.get(j + 1) == Some(&close) {
                j += 2;
                continue;
            }
            return (kind, j + 1, true);
        }
        j += 1;
    }
    (kind, b.len(), false)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// True for a byte that can start an unquoted identifier.
pub(crate) fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

/// True for a byte that can continue an unquoted identifier.
pub(crate) fn is_ident_byte(c: u8) -> bool {
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
            is_ident_byte(b[j])
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

    fn kinds(sql: &str, d: Dialect) -> Vec<(TokenKind, &str, bool)> {
        Lexer::new(sql, d)
            .map(|t| (t.kind, &sql[t.range], t.terminated))
            .collect()
    }

    #[test]
    fn tokens_of_each_kind() {
        use TokenKind::*;
        let sql = "SELECT 'a;b', E'it\\'s', \"we;ird\", $f$ ; $f$, $1, a$b -- c\n/* x /* y */ */;";
        let got: Vec<_> = kinds(sql, Dialect::Postgres)
            .into_iter()
            .filter(|(k, _, _)| *k != Other)
            .map(|(k, s, _)| (k, s))
            .collect();
        assert_eq!(
            got,
            vec![
                (Word, "SELECT"),
                (String, "'a;b'"),
                (String, "E'it\\'s'"),
                (QuotedIdent, "\"we;ird\""),
                (DollarString, "$f$ ; $f$"),
                (Number, "1"),
                (Word, "a$b"),
                (LineComment, "-- c"),
                (BlockComment, "/* x /* y */ */"),
                (Semicolon, ";"),
            ]
        );
    }

    #[test]
    fn sqlite_quotes_and_flat_comments() {
        use TokenKind::*;
        let got = kinds("`a;b` [c;d] /* x /* y */ z", Dialect::Sqlite);
        assert_eq!(got[0], (QuotedIdent, "`a;b`", true));
        assert_eq!(got[1], (QuotedIdent, "[c;d]", true));
        assert_eq!(got[2], (BlockComment, "/* x /* y */", true));
        assert_eq!(got[3], (Word, "z", true));
    }

    #[test]
    fn open_tokens_run_to_the_end_and_say_so() {
        for (sql, kind) in [
            ("'abc", TokenKind::String),
            ("\"abc", TokenKind::QuotedIdent),
            ("$x$ abc", TokenKind::DollarString),
            ("/* abc", TokenKind::BlockComment),
        ] {
            let t = Lexer::new(sql, Dialect::Postgres).next().unwrap();
            assert_eq!(
                (t.kind, t.range.end, t.terminated),
                (kind, sql.len(), false),
                "{sql}"
            );
        }
    }

    #[test]
    fn lines_and_columns() {
        let sql = "a\n  'x\ny' é b";
        let toks: Vec<Token> = Lexer::new(sql, Dialect::Postgres).collect();
        assert_eq!((toks[1].line, toks[1].column(sql)), (1, 3));
        assert_eq!((toks[2].line, toks[2].column(sql)), (2, 4));
        assert_eq!(&sql[toks[3].range.clone()], "b");
        assert_eq!(toks[3].column(sql), 6);
    }
}

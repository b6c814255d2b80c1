//! Parsing sections: whole (through the [`SectionParser`] the command line may
//! hand in), statement by statement when the whole does not parse, and in
//! parallel pieces when a section is too large to parse at once.

use super::text::skip_trivia;
use crate::source::{self, Section};
use pg_query::NodeEnum;

pub(super) struct Parsed {
    /// (file offset of the parsed text, its parse tree, file offset where it ends)
    pub chunks: Vec<(usize, pg_query::protobuf::ParseResult, usize)>,
    /// (file offset, message) of each statement Postgres rejects.
    pub errors: Vec<(usize, String)>,
}

/// Parses whole sections for the linter, instead of `pg_query::parse`: the
/// command line hands the linter trees it parsed ahead, on several threads, or
/// read from its cache. It must give what `pg_query::parse(sql)` would.
pub trait SectionParser: Send + Sync {
    /// The parse tree of `sql`, a whole section.
    fn parse(&self, sql: &str) -> Result<pg_query::protobuf::ParseResult, pg_query::Error>;
}

/// `pg_query::parse`, the default [`SectionParser`].
pub fn parse_protobuf(sql: &str) -> Result<pg_query::protobuf::ParseResult, pg_query::Error> {
    pg_query::parse(sql, 0).map(|r| r.protobuf)
}

#[derive(Clone)]
pub(super) struct ParserHook(pub(super) Option<std::sync::Arc<dyn SectionParser>>);

impl std::fmt::Debug for ParserHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "SectionParser"
        } else {
            "pg_query"
        })
    }
}

impl ParserHook {
    fn parse(&self, sql: &str) -> Result<pg_query::protobuf::ParseResult, pg_query::Error> {
        match &self.0 {
            Some(p) => p.parse(sql),
            None => parse_protobuf(sql),
        }
    }
}

/// The sections of a migration file that [`Linter::lint`] (`lint = true`,
/// with `lint_down`) or [`Linter::replay`] parse whole, as the exact text
/// handed to the [`SectionParser`]. Large sections are parsed piecewise and
/// are not listed.
pub fn whole_sections(source: &str, lint: bool, lint_down: bool) -> Vec<String> {
    let text = without_bom(source);
    let src = source::split(&text);
    let mut out = vec![src.up];
    if let (Some(down), true) = (src.down, lint && lint_down) {
        out.push(down);
    }
    out.into_iter()
        .map(|sec| &text[sec.start..sec.end])
        .filter(|sql| sql.len() < STREAM_THRESHOLD || !lint)
        .map(str::to_string)
        .collect()
}

/// Parses a section; when the whole does not parse, parses statement by statement so
/// one bad statement does not hide the others.
pub(super) fn parse_section(text: &str, sec: Section, parser: &ParserHook) -> Parsed {
    let sql = &text[sec.start..sec.end];
    match parser.parse(sql) {
        Ok(r) => Parsed {
            chunks: vec![(sec.start, r, sec.end)],
            errors: vec![],
        },
        Err(e) => {
            let mut parsed = Parsed {
                chunks: vec![],
                errors: vec![],
            };
            let pieces = capstan_format::pieces(sql);
            for piece in pieces {
                let off = sec.start + (piece.as_ptr() as usize - sql.as_ptr() as usize);
                match pg_query::parse(piece, 0) {
                    Ok(r) => parsed.chunks.push((off, r.protobuf, off + piece.len())),
                    Err(err) => {
                        let msg = match err {
                            pg_query::Error::Parse(m) => m,
                            pg_query::Error::Conversion(_) => {
                                "the SQL contains a NUL byte".to_string()
                            }
                            other => other.to_string(),
                        };
                        parsed.errors.push((off + error_offset(piece, &msg), msg));
                    }
                }
            }
            if parsed.errors.is_empty() {
                // The scanner split differently from the parser; report the original error.
                let msg = match e {
                    pg_query::Error::Parse(m) => m,
                    other => other.to_string(),
                };
                parsed
                    .errors
                    .push((sec.start + error_offset(sql, &msg), msg));
            }
            parsed
        }
    }
}

/// Best-effort position of a parse error: the token named in `at or near "X"`.
pub(super) fn error_offset(piece: &str, msg: &str) -> usize {
    let start = skip_trivia(piece, 0);
    if let Some(rest) = msg.split("at or near \"").nth(1) {
        if let Some(tok) = rest.strip_suffix('"') {
            if let Some(i) = piece[start..].find(tok) {
                return start + i;
            }
        }
    }
    if msg.contains("at end of input") {
        return piece.trim_end().len();
    }
    start
}

/// The text with a leading UTF-8 byte order mark blanked (same byte offsets), which
/// editors on Windows add and the Postgres grammar rejects.
pub(super) fn without_bom(text: &str) -> std::borrow::Cow<'_, str> {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => std::borrow::Cow::Owned(format!("   {rest}")),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// Sections larger than this are parsed statement by statement, in parallel.
pub(super) const STREAM_THRESHOLD: usize = 1 << 20;

/// Parses one statement of a large section. Plain `INSERT`s — the bulk of big files —
/// are checked by the Postgres parser without building their tree (no rule needs it),
/// and stand in the walk as an empty `InsertStmt` with their real location.
pub(super) fn parse_piece(piece: &str) -> Result<pg_query::protobuf::ParseResult, String> {
    let start = skip_trivia(piece, 0);
    let is_insert =
        piece.len() >= start + 6 && piece[start..start + 6].eq_ignore_ascii_case("insert");
    if !is_insert {
        return pg_query::parse(piece, 0)
            .map(|r| r.protobuf)
            .map_err(error_text);
    }
    let stmts = pg_query::split_with_parser(piece).map_err(|e| match e {
        pg_query::Error::Split(m) => m,
        other => error_text(other),
    })?;
    let stmts = stmts
        .into_iter()
        .map(|s| pg_query::protobuf::RawStmt {
            stmt: Some(Box::new(pg_query::protobuf::Node {
                node: Some(NodeEnum::InsertStmt(Box::default())),
            })),
            stmt_location: (s.as_ptr() as usize - piece.as_ptr() as usize) as i32,
            stmt_len: s.len() as i32,
        })
        .collect();
    Ok(pg_query::protobuf::ParseResult { version: 0, stmts })
}

fn error_text(e: pg_query::Error) -> String {
    match e {
        pg_query::Error::Parse(m) => m,
        pg_query::Error::Conversion(_) => "the SQL contains a NUL byte".to_string(),
        other => other.to_string(),
    }
}

/// Whether a statement's first keyword makes it DDL (used where the section is not
/// parsed as a whole).
pub(super) fn starts_with_ddl_keyword(piece: &str) -> bool {
    let start = skip_trivia(piece, 0);
    let word: String = piece[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    matches!(
        word.as_str(),
        "CREATE"
            | "ALTER"
            | "DROP"
            | "TRUNCATE"
            | "REINDEX"
            | "CLUSTER"
            | "REFRESH"
            | "IMPORT"
            | "SECURITY"
    )
}

//! The linting engine: parses each section, walks its statements with the schema
//! model and transaction state, runs the rules and turns their hits into findings.

use crate::config::Config;
use crate::finding::{Finding, SectionKind, Severity};
use crate::rules::{self, Rule};
use crate::schema::Schema;
use crate::source::{self, MigrationSource, Phase, Section};
use crate::suppress::{self, Ignore};
use pg_query::protobuf::TransactionStmtKind;
use pg_query::NodeEnum;

/// One statement being checked.
pub(crate) struct Stmt<'a> {
    pub node: &'a NodeEnum,
    /// File offset that node locations are relative to.
    pub base: usize,
    /// File offset of the statement's first token.
    pub start: usize,
    /// File offset just past the statement.
    pub end: usize,
    /// The statement's text.
    pub sql: &'a str,
}

impl Stmt<'_> {
    /// File offset of a node location (`-1` means unknown: the statement start).
    pub fn at(&self, location: i32) -> usize {
        if location >= 0 {
            self.base + location as usize
        } else {
            self.start
        }
    }

    /// File offset of the `nth` (0-based) occurrence of a clause such as
    /// `SET NOT NULL` in the statement (words matched case-insensitively, any
    /// whitespace between them), for commands the parser gives no location; the
    /// statement start when it is not found.
    pub fn clause(&self, phrase: &str, nth: usize) -> usize {
        self.find_clause(phrase, nth).unwrap_or(self.start)
    }

    /// The first of `phrases` found in the statement (see [`Stmt::clause`]).
    pub fn clause_any(&self, phrases: &[String]) -> usize {
        phrases
            .iter()
            .find_map(|p| self.find_clause(p, 0))
            .unwrap_or(self.start)
    }

    fn find_clause(&self, phrase: &str, nth: usize) -> Option<usize> {
        let words: Vec<&str> = phrase.split_whitespace().collect();
        let sql = self.sql;
        let b = sql.as_bytes();
        let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut found = 0;
        let mut i = 0;
        while i < b.len() {
            if (i == 0 || !is_word(b[i - 1])) && matches_words(sql, i, &words) {
                if found == nth {
                    return Some(self.start + i);
                }
                found += 1;
            }
            i += 1;
        }
        None
    }
}

/// Whether `words` follow each other at `at` (case-insensitive, whitespace between).
fn matches_words(sql: &str, mut at: usize, words: &[&str]) -> bool {
    let b = sql.as_bytes();
    for (k, w) in words.iter().enumerate() {
        if k > 0 {
            let before = at;
            while at < b.len() && b[at].is_ascii_whitespace() {
                at += 1;
            }
            if at == before {
                return false;
            }
        }
        let end = at + w.len();
        if end > b.len() || !sql.is_char_boundary(end) || !sql[at..end].eq_ignore_ascii_case(w) {
            return false;
        }
        if end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            return false;
        }
        at = end;
    }
    true
}

/// What a rule knows besides the statement.
pub(crate) struct Ctx<'a> {
    pub schema: &'a Schema,
    pub pg: u32,
    /// The statement runs inside a transaction block.
    pub in_transaction: bool,
    /// The file carries `-- capstan:no-transaction`.
    pub no_transaction: bool,
    /// Explicit `BEGIN`s open before this statement.
    pub explicit_depth: u32,
    pub section: SectionKind,
    pub phase: Phase,
    /// The section contains schema changes (DDL).
    pub section_has_ddl: bool,
    /// Constraints added `NOT VALID` earlier in the current transaction: (table, name).
    pub not_valid_in_tx: &'a [(String, String)],
    /// Enum labels added earlier in the current transaction: (type, label).
    pub enum_values_in_tx: &'a [(String, String)],
    /// The text of the section after this statement.
    pub rest_sql: &'a str,
    /// The session time zone, when known: the migration's own `SET TIME ZONE`,
    /// else the live server's, else `capstan.toml`'s.
    pub time_zone: Option<&'a str>,
}

impl Ctx<'_> {
    /// Whether the table was created by the migration being linted (nobody uses it yet).
    pub fn is_new(&self, table: &str) -> bool {
        self.schema.table(table).is_some_and(|t| t.new)
    }
}

/// A rule's report before positions and configuration are applied.
pub(crate) struct Hit {
    pub rule: &'static Rule,
    pub at: usize,
    pub message: String,
    pub help: Option<String>,
    /// File offset where the statement ends (set by the engine).
    pub end: usize,
    /// The table the statement locks or rewrites, when it has one (set by the
    /// engine; sizes it against [`crate::Live`]).
    pub table: Option<String>,
}

/// Collects hits for one statement.
pub(crate) struct Hits {
    pub(crate) list: Vec<Hit>,
}

impl Hits {
    pub fn push(&mut self, rule: &'static Rule, at: usize, message: impl Into<String>) {
        self.list.push(Hit {
            rule,
            at,
            message: message.into(),
            help: None,
            end: 0,
            table: None,
        });
    }
    pub fn push_help(
        &mut self,
        rule: &'static Rule,
        at: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.list.push(Hit {
            rule,
            at,
            message: message.into(),
            help: Some(help.into()),
            end: 0,
            table: None,
        });
    }
}

/// Maps byte offsets to 1-based line and character column.
pub(crate) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }
    pub fn pos(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// Skips whitespace and comments from `offset`.
pub(crate) fn skip_trivia(text: &str, mut i: usize) -> usize {
    let b = text.as_bytes();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            return i;
        }
    }
}

/// Whether a statement changes the schema (as opposed to data or session state).
pub(crate) fn is_ddl(node: &NodeEnum) -> bool {
    !matches!(
        node,
        NodeEnum::InsertStmt(_)
            | NodeEnum::UpdateStmt(_)
            | NodeEnum::DeleteStmt(_)
            | NodeEnum::SelectStmt(_)
            | NodeEnum::MergeStmt(_)
            | NodeEnum::TransactionStmt(_)
            | NodeEnum::VariableSetStmt(_)
            | NodeEnum::VariableShowStmt(_)
            | NodeEnum::CopyStmt(_)
            | NodeEnum::CallStmt(_)
            | NodeEnum::DoStmt(_)
            | NodeEnum::ExplainStmt(_)
            | NodeEnum::NotifyStmt(_)
            | NodeEnum::CommentStmt(_)
            | NodeEnum::GrantStmt(_)
            | NodeEnum::GrantRoleStmt(_)
            | NodeEnum::VacuumStmt(_)
            | NodeEnum::LockStmt(_)
    )
}

struct Parsed {
    /// (file offset of the parsed text, its parse tree)
    chunks: Vec<(usize, pg_query::protobuf::ParseResult, usize)>,
    errors: Vec<(usize, String)>,
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
struct ParserHook(Option<std::sync::Arc<dyn SectionParser>>);

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
fn parse_section(text: &str, sec: Section, parser: &ParserHook) -> Parsed {
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
fn error_offset(piece: &str, msg: &str) -> usize {
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

/// The linter, holding the schema model between files.
#[derive(Debug, Clone)]
pub struct Linter {
    config: Config,
    schema: Schema,
    release: bool,
    parser: ParserHook,
    /// The first contract statement of the last up section linted (offset, why).
    last_contract: Option<(usize, String)>,
    live: Option<crate::live::Live>,
}

/// One migration file to lint: its display name and its text.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The file name as it should appear in findings.
    pub file: &'a str,
    /// The file's contents.
    pub source: &'a str,
}

impl Linter {
    /// A linter starting from an empty schema.
    pub fn new(config: Config) -> Linter {
        Linter {
            config,
            schema: Schema::default(),
            release: false,
            parser: ParserHook(None),
            last_contract: None,
            live: None,
        }
    }

    /// Parses whole sections with `parser` instead of `pg_query::parse`.
    pub fn with_parser(mut self, parser: std::sync::Arc<dyn SectionParser>) -> Linter {
        self.parser = ParserHook(Some(parser));
        self
    }

    /// A linter starting from a known schema (e.g. read from a live database). Tables
    /// created by the files linted after it count as new for the whole run: they are
    /// part of the release being deployed.
    pub fn with_schema(config: Config, schema: Schema) -> Linter {
        Linter {
            config,
            schema,
            release: true,
            parser: ParserHook(None),
            last_contract: None,
            live: None,
        }
    }

    /// Lints against the live database about to be changed: a lock or rewrite
    /// finding on a table that is small right now (see
    /// [`Config::small_table_rows`]) becomes a warning that says so, and its
    /// session time zone is known.
    pub fn with_live(mut self, live: crate::live::Live) -> Linter {
        self.live = Some(live);
        self
    }

    /// The schema model as it stands.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a migration's up section to the model without linting it (an earlier
    /// migration of the directory).
    pub fn replay(&mut self, input: Input<'_>) {
        let text = without_bom(input.source);
        let src = source::split(&text);
        let parsed = parse_section(&text, src.up, &self.parser);
        for (_, tree, _) in &parsed.chunks {
            for raw in &tree.stmts {
                if let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) {
                    self.schema.apply(node);
                }
            }
        }
        if !self.release {
            self.schema.settle();
        }
    }

    /// Starts the release being deployed: from now on, objects created by the
    /// migrations replayed or linted stay "new" (exempt from locking rules) for the
    /// rest of the run, since no running binary uses them yet.
    pub fn begin_release(&mut self) {
        if !self.release {
            self.schema.settle();
            self.release = true;
        }
    }

    /// [`Linter::lint`], and the first statement of the up section that the
    /// phase classifier calls a contract change (what `wrong-phase` reports
    /// in an expand migration): its line and what it does (`drops column
    /// users.name`). `None` when the migration is expand (or neutral).
    pub fn lint_classified(&mut self, input: Input<'_>) -> (Vec<Finding>, Option<(usize, String)>) {
        self.last_contract = None;
        let findings = self.lint(input);
        let contract = self.last_contract.take().map(|(offset, why)| {
            let line = input.source[..offset.min(input.source.len())]
                .matches('\n')
                .count()
                + 1;
            (line, why)
        });
        (findings, contract)
    }

    /// Lints one migration file against the model, then applies its up section.
    pub fn lint(&mut self, input: Input<'_>) -> Vec<Finding> {
        if !self.release {
            self.schema.settle();
        }
        let cleaned = without_bom(input.source);
        let text: &str = &cleaned;
        let src = source::split(text);
        let lines = LineIndex::new(input.source);
        let mut hits: Vec<(Hit, Option<(SectionKind, usize)>)> = Vec::new();
        for p in &src.problems {
            hits.push((
                Hit {
                    rule: &rules::migration_format::RULE,
                    at: p.offset,
                    message: p.message.clone(),
                    help: None,
                    end: 0,
                    table: None,
                },
                None,
            ));
        }
        let mut starts: Vec<(SectionKind, Vec<usize>, usize)> = Vec::new();
        let up_starts = self.lint_section(text, &src, src.up, true, &mut hits);
        starts.push((SectionKind::Up, up_starts, src.up.end));
        if let (Some(down), true) = (src.down, self.config.lint_down) {
            let saved = self.schema.clone();
            let down_starts = self.lint_section(text, &src, down, false, &mut hits);
            starts.push((SectionKind::Down, down_starts, down.end));
            self.schema = saved;
        }
        let ignores = suppress::collect(text, &src);
        self.finish(input.file, text, &lines, hits, &starts, ignores)
    }

    /// Lints only the down section of one migration file against the model
    /// as it stands (the database with this migration applied, before `down`
    /// runs it); the model is left unchanged. Empty without a down section.
    pub fn lint_down(&mut self, input: Input<'_>) -> Vec<Finding> {
        if !self.release {
            self.schema.settle();
        }
        let cleaned = without_bom(input.source);
        let text: &str = &cleaned;
        let src = source::split(text);
        let Some(down) = src.down else {
            return Vec::new();
        };
        let lines = LineIndex::new(input.source);
        let mut hits = Vec::new();
        let saved = self.schema.clone();
        let starts = self.lint_section(text, &src, down, false, &mut hits);
        self.schema = saved;
        let ignores = suppress::collect(text, &src);
        let starts = [(SectionKind::Down, starts, down.end)];
        self.finish(input.file, text, &lines, hits, &starts, ignores)
            .into_iter()
            .filter(|f| f.section == SectionKind::Down && f.rule != rules::unused_ignore::RULE.name)
            .collect()
    }

    fn finish(
        &self,
        file: &str,
        text: &str,
        lines: &LineIndex<'_>,
        hits: Vec<(Hit, Option<(SectionKind, usize)>)>,
        starts: &[(SectionKind, Vec<usize>, usize)],
        mut ignores: Vec<Ignore>,
    ) -> Vec<Finding> {
        // Which statement each statement-scoped ignore belongs to.
        for ig in ignores.iter_mut().filter(|i| !i.file_wide) {
            ig.target = starts.iter().find_map(|(kind, list, end)| {
                let idx = list.partition_point(|&s| s <= ig.offset);
                (idx < list.len() && ig.offset < *end && list[idx] < *end).then_some((*kind, idx))
            });
        }
        let mut out = Vec::new();
        for (hit, stmt) in hits {
            let name = hit.rule.name;
            if !self.config.enabled(name) {
                continue;
            }
            let mut suppressed = false;
            for ig in ignores.iter_mut() {
                let applies = ig.file_wide || (stmt.is_some() && ig.target == stmt);
                if applies && ig.covers(name) {
                    ig.used = true;
                    suppressed = true;
                }
            }
            if suppressed {
                continue;
            }
            out.push(self.finding(file, text, lines, &hit, stmt.map(|s| s.0)));
        }
        if self.config.enabled(rules::unused_ignore::RULE.name) {
            for ig in &ignores {
                for problem in ig.problems() {
                    let hit = Hit {
                        rule: &rules::unused_ignore::RULE,
                        at: ig.offset,
                        message: problem,
                        help: None,
                        end: 0,
                        table: None,
                    };
                    out.push(self.finding(file, text, lines, &hit, None));
                }
            }
        }
        out.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
        out
    }

    fn finding(
        &self,
        file: &str,
        text: &str,
        lines: &LineIndex<'_>,
        hit: &Hit,
        section: Option<SectionKind>,
    ) -> Finding {
        let (line, column) = lines.pos(hit.at);
        // The end of the statement (or of the line) containing the hit.
        let end = if hit.end > hit.at {
            hit.end
        } else {
            line_end(text, hit.at)
        };
        let (end_line, end_column) = lines.pos(end);
        let mut severity = self.config.severity_of(hit.rule.name, hit.rule.severity);
        let mut message = hit.message.clone();
        if let Some(note) = self
            .small_table(hit)
            .filter(|_| severity > Severity::Warning)
        {
            severity = Severity::Warning;
            message = format!("{message}; {note}");
        }
        Finding {
            rule: hit.rule.name.to_string(),
            severity,
            file: file.to_string(),
            line,
            column,
            end_line,
            end_column,
            message,
            help: hit
                .help
                .clone()
                .or_else(|| (!hit.rule.help.is_empty()).then(|| hit.rule.help.to_string())),
            section: section.unwrap_or(SectionKind::Up),
        }
    }

    /// For a lock or rewrite finding on a table the live database holds at or
    /// under both size thresholds: why it is only a warning.
    fn small_table(&self, hit: &Hit) -> Option<String> {
        let live = self.live.as_ref()?;
        if !rules::SIZE_BOUND.contains(&hit.rule.name) {
            return None;
        }
        let table = hit.table.as_deref()?;
        let size = live.tables.get(table)?;
        if self.config.small_table_rows == 0
            || size.rows > self.config.small_table_rows
            || size.bytes > self.config.small_table_bytes
        {
            return None;
        }
        let mode: String = hit
            .rule
            .lock
            .split_whitespace()
            .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase()))
            .collect::<Vec<_>>()
            .join(" ");
        let lock = if mode.is_empty() {
            "its lock".to_string()
        } else {
            format!("the {mode} lock")
        };
        Some(format!(
            "{table} has {} {} ({}) right now: {lock} is held for milliseconds, so this is a warning (small_table_rows = {}, small_table_bytes = {})",
            crate::live::thousands(size.rows),
            if size.rows == 1 { "row" } else { "rows" },
            crate::live::human_bytes(size.bytes),
            self.config.small_table_rows,
            self.config.small_table_bytes
        ))
    }

    /// Lints one section; returns the start offsets of its statements.
    ///
    /// Small sections are parsed whole. A section above [`STREAM_THRESHOLD`] is split
    /// with the Postgres scanner and parsed statement by statement on worker threads,
    /// in order, so memory stays bounded by a few batches of statements whatever the
    /// file size.
    fn lint_section(
        &mut self,
        text: &str,
        src: &MigrationSource,
        sec: Section,
        is_up: bool,
        hits: &mut Vec<(Hit, Option<(SectionKind, usize)>)>,
    ) -> Vec<usize> {
        let sql = &text[sec.start..sec.end];
        let mut walk = Walk {
            enabled: rules::ALL
                .iter()
                .copied()
                .filter(|r| self.config.enabled(r.name) && (is_up || !r.up_only))
                .collect(),
            section_has_ddl: false,
            starts: Vec::new(),
            depth: 0,
            not_valid: Vec::new(),
            enum_added: Vec::new(),
            last_begin: sec.start,
            out: Hits { list: Vec::new() },
            justifies_contract: false,
            errors: 0,
            first_contract: None,
            time_zone: None,
        };
        let syntax = |hits: &mut Vec<(Hit, Option<(SectionKind, usize)>)>, at: usize, msg: &str| {
            hits.push((
                Hit {
                    rule: &rules::syntax_error::RULE,
                    at,
                    message: format!("Postgres rejects this SQL: {msg}"),
                    help: None,
                    end: 0,
                    table: None,
                },
                Some((sec.kind, usize::MAX)),
            ));
        };
        if sql.len() < STREAM_THRESHOLD {
            let parsed = parse_section(text, sec, &self.parser);
            walk.errors = parsed.errors.len();
            for (at, msg) in &parsed.errors {
                syntax(hits, *at, msg);
            }
            walk.section_has_ddl = parsed.chunks.iter().any(|(_, tree, _)| {
                tree.stmts.iter().any(|s| {
                    s.stmt
                        .as_ref()
                        .and_then(|n| n.node.as_ref())
                        .is_some_and(is_ddl)
                })
            });
            for (base, tree, chunk_end) in &parsed.chunks {
                for raw in &tree.stmts {
                    self.visit(
                        &mut walk, text, src, sec, is_up, *base, *chunk_end, raw, hits,
                    );
                }
            }
        } else {
            let pieces = capstan_format::pieces(sql);
            walk.section_has_ddl = pieces.iter().any(|p| starts_with_ddl_keyword(p));
            let offset = |p: &str| sec.start + (p.as_ptr() as usize - sql.as_ptr() as usize);
            let batches: Vec<&[&str]> = pieces.chunks(256).collect();
            let workers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, 4);
            std::thread::scope(|scope| {
                let (tx, rx) = std::sync::mpsc::sync_channel::<(
                    usize,
                    Vec<Result<pg_query::protobuf::ParseResult, String>>,
                )>(workers * 2);
                for w in 0..workers {
                    let tx = tx.clone();
                    let batches = &batches;
                    scope.spawn(move || {
                        for (i, batch) in batches.iter().enumerate().skip(w).step_by(workers) {
                            let parsed = batch.iter().map(|p| parse_piece(p)).collect();
                            if tx.send((i, parsed)).is_err() {
                                return;
                            }
                        }
                    });
                }
                drop(tx);
                let mut pending = std::collections::BTreeMap::new();
                let mut next = 0;
                for (i, batch) in rx {
                    pending.insert(i, batch);
                    while let Some(batch) = pending.remove(&next) {
                        for (piece, result) in batches[next].iter().zip(batch) {
                            let base = offset(piece);
                            match result {
                                Ok(tree) => {
                                    for raw in &tree.stmts {
                                        self.visit(
                                            &mut walk,
                                            text,
                                            src,
                                            sec,
                                            is_up,
                                            base,
                                            base + piece.len(),
                                            raw,
                                            hits,
                                        );
                                    }
                                }
                                Err(msg) => {
                                    walk.errors += 1;
                                    syntax(hits, base + error_offset(piece, &msg), &msg);
                                }
                            }
                        }
                        next += 1;
                    }
                }
            });
        }
        if src.no_transaction
            && walk.depth > 0
            && self.config.enabled(rules::transaction_nesting::RULE.name)
        {
            hits.push((
                Hit {
                    rule: &rules::transaction_nesting::RULE,
                    at: walk.last_begin,
                    message: "this BEGIN is never committed: the rest of the migration runs in a transaction that is left open (or rolled back when the session ends)".into(),
                    help: Some("end the block with COMMIT; before the end of the section".into()),
                    end: 0,
                    table: None,
                },
                None,
            ));
        }
        if is_up && src.phase == Phase::Contract && !walk.justifies_contract && walk.errors == 0 {
            if let Some(at) = src.phase_offset {
                hits.push((
                    Hit {
                        rule: &rules::wrong_phase::RULE,
                        at,
                        message: "this migration is declared `contract` but contains no contract statement: it will wait for every running instance to be upgraded for nothing".into(),
                        help: Some("declare it `-- capstan:phase expand` (or remove the directive: expand is the default)".into()),
                        end: 0,
                        table: None,
                    },
                    None,
                ));
            }
        }
        if is_up {
            self.last_contract = walk.first_contract;
        }
        walk.starts
    }

    /// Checks one statement with every rule, then updates the transaction state and
    /// the schema model.
    #[allow(clippy::too_many_arguments)]
    fn visit(
        &mut self,
        walk: &mut Walk,
        text: &str,
        src: &MigrationSource,
        sec: Section,
        is_up: bool,
        base: usize,
        chunk_end: usize,
        raw: &pg_query::protobuf::RawStmt,
        hits: &mut Vec<(Hit, Option<(SectionKind, usize)>)>,
    ) {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            return;
        };
        let loc = base + raw.stmt_location.max(0) as usize;
        let start = skip_trivia(text, loc).min(chunk_end);
        let end = if raw.stmt_len > 0 {
            loc + raw.stmt_len as usize
        } else {
            chunk_end
        };
        let stmt = Stmt {
            node,
            base,
            start,
            end,
            sql: text.get(start..end.max(start)).unwrap_or(""),
        };
        let in_tx = !src.no_transaction || walk.depth > 0;
        let ctx = Ctx {
            schema: &self.schema,
            pg: self.config.pg_version,
            in_transaction: in_tx,
            no_transaction: src.no_transaction,
            explicit_depth: walk.depth,
            section: sec.kind,
            phase: src.phase,
            section_has_ddl: walk.section_has_ddl,
            not_valid_in_tx: &walk.not_valid,
            enum_values_in_tx: &walk.enum_added,
            rest_sql: text.get(end..sec.end).unwrap_or(""),
            time_zone: walk
                .time_zone
                .as_deref()
                .or(self.live.as_ref().and_then(|l| l.time_zone.as_deref()))
                .or(self.config.time_zone.as_deref()),
        };
        let idx = walk.starts.len();
        walk.starts.push(start);
        for rule in &walk.enabled {
            (rule.check)(&stmt, &ctx, &mut walk.out);
        }
        if walk
            .out
            .list
            .iter()
            .any(|h| rules::wrong_phase::SUPERSEDED_BY.contains(&h.rule.name))
        {
            walk.out
                .list
                .retain(|h| h.rule.name != rules::wrong_phase::RULE.name);
        }
        if is_up && walk.first_contract.is_none() {
            if let (crate::phase::Class::Contract, why) = crate::phase::classify(&stmt, &ctx) {
                walk.first_contract = Some((stmt.start, why));
            }
        }
        if is_up && src.phase == Phase::Contract && !walk.justifies_contract {
            // A contract migration is "wrong" only when everything in it is plainly
            // expand: a neutral statement (data, maintenance, an index the model does
            // not know) may be why it waits for the fleet.
            match crate::phase::classify(&stmt, &ctx).0 {
                crate::phase::Class::Contract => walk.justifies_contract = true,
                crate::phase::Class::Neutral
                    if !matches!(
                        node,
                        NodeEnum::TransactionStmt(_) | NodeEnum::VariableSetStmt(_)
                    ) =>
                {
                    walk.justifies_contract = true
                }
                _ => {}
            }
        }
        let table = target_table(node, &self.schema);
        hits.extend(walk.out.list.drain(..).map(|mut h| {
            h.table.clone_from(&table);
            h.end = if h.at == stmt.start {
                stmt.end
            } else {
                clause_end(text, h.at, stmt.end)
            };
            (h, Some((sec.kind, idx)))
        }));
        // Transaction bookkeeping.
        let mut tx_ended = !in_tx;
        match node {
            NodeEnum::TransactionStmt(t) => match TransactionStmtKind::try_from(t.kind) {
                Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                    walk.depth += 1;
                    walk.last_begin = start;
                    tx_ended = false;
                }
                Ok(
                    TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback,
                ) => {
                    walk.depth = walk.depth.saturating_sub(1);
                    tx_ended = true;
                }
                _ => {}
            },
            NodeEnum::AlterTableStmt(a) => {
                let table = crate::ast::opt_rv_name(a.relation.as_ref());
                for cmd in &a.cmds {
                    if let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() {
                        if let Some(NodeEnum::Constraint(c)) =
                            cmd.def.as_ref().and_then(|d| d.node.as_ref())
                        {
                            if c.skip_validation {
                                walk.not_valid.push((table.clone(), c.conname.clone()));
                            }
                        }
                    }
                }
            }
            NodeEnum::VariableSetStmt(v) if v.name.eq_ignore_ascii_case("timezone") => {
                walk.time_zone = v.args.first().and_then(|a| match a.node.as_ref() {
                    Some(NodeEnum::AConst(c)) => match c.val.as_ref() {
                        Some(pg_query::protobuf::a_const::Val::Sval(s)) => Some(s.sval.clone()),
                        Some(pg_query::protobuf::a_const::Val::Ival(i)) => Some(i.ival.to_string()),
                        _ => None,
                    },
                    _ => None,
                });
            }
            NodeEnum::AlterEnumStmt(e) if e.old_val.is_empty() => {
                walk.enum_added
                    .push((crate::ast::list_name(&e.type_name), e.new_val.clone()));
            }
            _ => {}
        }
        if tx_ended {
            walk.not_valid.clear();
            walk.enum_added.clear();
        }
        self.schema.apply(node);
    }
}

/// The one table a statement locks or rewrites, for sizing it: the relation of
/// an `ALTER TABLE`, `CREATE INDEX`, `UPDATE`, `DELETE`, `CLUSTER`, `REFRESH`,
/// a one-table `VACUUM`, or the table of a dropped or reindexed index.
fn target_table(node: &NodeEnum, schema: &Schema) -> Option<String> {
    use crate::ast::{object_name, rv_name};
    let rv = |r: &Option<pg_query::protobuf::RangeVar>| r.as_ref().map(rv_name);
    let index_table = |name: &str| schema.indexes.get(name).map(|i| i.table.clone());
    match node {
        NodeEnum::AlterTableStmt(a) => rv(&a.relation),
        NodeEnum::IndexStmt(i) => rv(&i.relation),
        NodeEnum::UpdateStmt(u) => rv(&u.relation),
        NodeEnum::DeleteStmt(d) => rv(&d.relation),
        NodeEnum::ClusterStmt(c) => rv(&c.relation),
        NodeEnum::RefreshMatViewStmt(r) => rv(&r.relation),
        NodeEnum::CreateTrigStmt(t) => rv(&t.relation),
        NodeEnum::VacuumStmt(v) if v.rels.len() == 1 => match v.rels[0].node.as_ref() {
            Some(NodeEnum::VacuumRelation(r)) => rv(&r.relation),
            _ => None,
        },
        NodeEnum::DropStmt(d)
            if d.remove_type == pg_query::protobuf::ObjectType::ObjectIndex as i32
                && d.objects.len() == 1 =>
        {
            index_table(&object_name(&d.objects[0]))
        }
        NodeEnum::ReindexStmt(r) => {
            let name = rv(&r.relation)?;
            if r.kind == pg_query::protobuf::ReindexObjectType::ReindexObjectIndex as i32 {
                index_table(&name)
            } else {
                Some(name)
            }
        }
        _ => None,
    }
}

/// The text with a leading UTF-8 byte order mark blanked (same byte offsets), which
/// editors on Windows add and the Postgres grammar rejects.
fn without_bom(text: &str) -> std::borrow::Cow<'_, str> {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => std::borrow::Cow::Owned(format!("   {rest}")),
        None => std::borrow::Cow::Borrowed(text),
    }
}

/// Sections larger than this are parsed statement by statement, in parallel.
const STREAM_THRESHOLD: usize = 1 << 20;

/// State of the walk through one section.
struct Walk {
    enabled: Vec<&'static Rule>,
    section_has_ddl: bool,
    starts: Vec<usize>,
    depth: u32,
    not_valid: Vec<(String, String)>,
    enum_added: Vec<(String, String)>,
    last_begin: usize,
    out: Hits,
    justifies_contract: bool,
    errors: usize,
    /// The first statement of an up section the phase classifier calls contract.
    first_contract: Option<(usize, String)>,
    /// Set by `SET TIME ZONE` in the section.
    time_zone: Option<String>,
}

/// Parses one statement of a large section. Plain `INSERT`s — the bulk of big files —
/// are checked by the Postgres parser without building their tree (no rule needs it),
/// and stand in the walk as an empty `InsertStmt` with their real location.
fn parse_piece(piece: &str) -> Result<pg_query::protobuf::ParseResult, String> {
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
fn starts_with_ddl_keyword(piece: &str) -> bool {
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

/// End of what a hit inside a statement points at: a clause led by a keyword (`SET NOT
/// NULL`, `DROP COLUMN x`, `ADD CONSTRAINT ...`) runs to the end of its line (or of the
/// statement); anything else (a type, a name) is one token.
fn clause_end(text: &str, at: usize, stmt_end: usize) -> usize {
    const LEADS: [&str; 9] = [
        "SET",
        "DROP",
        "ALTER",
        "ATTACH",
        "DETACH",
        "VALIDATE",
        "ADD",
        "RENAME",
        "CONSTRAINT",
    ];
    let rest = &text[at.min(text.len())..];
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if LEADS.iter().any(|l| l.eq_ignore_ascii_case(&word)) {
        let line_end = rest.find('\n').map_or(text.len(), |i| at + i);
        let end = line_end.min(stmt_end.max(at + word.len()));
        // Trim trailing spaces and a trailing comma.
        let trimmed = text[at..end].trim_end().trim_end_matches(',').trim_end();
        return at + trimmed.len();
    }
    token_end(text, at)
}

/// End of the token (or parenthesised type like `varchar(20)`) starting at `at`.
fn token_end(text: &str, at: usize) -> usize {
    let mut depth = 0i32;
    for (i, c) in text[at.min(text.len())..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            ')' | ',' | ';' => return at + i,
            c if c.is_whitespace() && depth == 0 => return at + i,
            '\n' => return at + i,
            _ => {}
        }
    }
    text.len()
}

/// End of the line containing `at` (trailing whitespace excluded).
fn line_end(text: &str, at: usize) -> usize {
    let rest = &text[at.min(text.len())..];
    let line = rest.split('\n').next().unwrap_or("");
    at + line.trim_end().len()
}

/// Lints one file on its own, against an empty schema.
///
/// ```
/// use capstan_lint::{lint, Config, Input};
/// let findings = lint(
///     Input { file: "0002_idx.sql", source: "CREATE INDEX users_email ON users (email);" },
///     &Config::default(),
/// );
/// assert_eq!(findings[0].rule, "require-concurrent-index-creation");
/// assert_eq!((findings[0].line, findings[0].column), (1, 1));
/// ```
pub fn lint(input: Input<'_>, config: &Config) -> Vec<Finding> {
    Linter::new(config.clone()).lint(input)
}

/// Whether any finding is at or above `level`.
pub fn fails(findings: &[Finding], level: Severity) -> bool {
    findings.iter().any(|f| f.severity >= level)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A section above the streaming threshold gives the same findings, at the same
    /// positions, as small sections do.
    #[test]
    fn large_sections_stream_with_the_same_findings() {
        let mut sql = String::from("CREATE TABLE users (id bigint, email text);\n");
        let mut n = 0;
        while sql.len() < STREAM_THRESHOLD + 1000 {
            sql.push_str(&format!(
                "INSERT INTO users (id, email) VALUES ({n}, 'u{n}@example.com; not a split');\n"
            ));
            n += 1;
        }
        sql.push_str("CREATE TABEL oops (a int);\n");
        sql.push_str("CREATE INDEX users_email_idx ON users (email);\n");
        sql.push_str(
            "ALTER TABLE users RENAME TO accounts;\nCREATE VIEW users AS SELECT * FROM accounts;\n",
        );
        assert!(sql.len() > STREAM_THRESHOLD);
        let mut linter = Linter::new(Config::default());
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: &sql[sql.find('\n').unwrap() + 1..],
        });
        let got: Vec<(&str, usize)> = f.iter().map(|f| (f.rule.as_str(), f.line)).collect();
        let lines = n + 1;
        assert_eq!(
            got,
            vec![
                ("syntax-error", lines),
                ("require-concurrent-index-creation", lines + 1)
            ],
            "{f:#?}"
        );
        assert_eq!(f[0].column, 8);
    }

    #[test]
    fn line_index_counts_characters() {
        let idx = LineIndex::new("ab\nçé x\n");
        assert_eq!(idx.pos(0), (1, 1));
        assert_eq!(idx.pos(3), (2, 1));
        assert_eq!(idx.pos(8), (2, 4));
    }
}

#[cfg(test)]
mod section_tests {
    use super::*;

    #[test]
    fn down_sections_are_linted_as_their_own_unit_with_file_lines() {
        let mut linter = Linter::new(Config::default());
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);\nCREATE INDEX users_email_idx ON users (email);",
        });
        let src = "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS users_email_idx;\n-- capstan:down\nCREATE INDEX users_email_idx ON users (email);\n";
        let f = linter.lint(Input {
            file: "0002.sql",
            source: src,
        });
        let got: Vec<(&str, usize, SectionKind)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.section))
            .collect();
        assert_eq!(
            got,
            vec![
                ("non-idempotent-no-transaction", 5, SectionKind::Down),
                ("require-concurrent-index-creation", 5, SectionKind::Down),
            ]
        );
        // The down section does not change the model: the index stays dropped.
        assert!(!linter.schema().indexes.contains_key("users_email_idx"));
        let cfg = Config {
            lint_down: false,
            ..Config::default()
        };
        let mut linter = Linter::new(cfg);
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id bigint, email text);\nCREATE INDEX users_email_idx ON users (email);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: src,
        });
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn a_byte_order_mark_is_not_a_syntax_error() {
        let mut linter = Linter::new(Config::default());
        let f = linter.lint(Input {
            file: "0001.sql",
            source: "\u{feff}CREATE TABLE t (a int);\nCREATE INDEX i ON t2 (a);\n",
        });
        let got: Vec<(&str, usize, usize)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.column))
            .collect();
        assert_eq!(got, vec![("require-concurrent-index-creation", 2, 1)]);
    }

    #[test]
    fn lock_findings_on_small_live_tables_are_warnings_that_say_why() {
        let setup = "CREATE TABLE users (id bigint, name text);\nCREATE TABLE big (id bigint, name text);\n";
        let sql = "-- capstan:up\nCREATE INDEX users_name ON users (name);\nCREATE INDEX big_name ON big (name);\nALTER TABLE users RENAME COLUMN name TO full_name;\n";
        let mut live = crate::Live::default();
        live.tables.insert(
            "users".into(),
            crate::TableSize {
                rows: 1204,
                bytes: 73728,
            },
        );
        live.tables.insert(
            "big".into(),
            crate::TableSize {
                rows: 50_000_000,
                bytes: 8 << 30,
            },
        );
        let mut linter = Linter::new(Config::default()).with_live(live.clone());
        linter.replay(Input {
            file: "1.sql",
            source: setup,
        });
        let found = linter.lint(Input {
            file: "2.sql",
            source: sql,
        });
        let of = |line: usize, rule: &str| {
            found
                .iter()
                .find(|f| f.line == line && f.rule == rule)
                .unwrap_or_else(|| panic!("{rule} on line {line}: {found:#?}"))
        };
        let small = of(2, "require-concurrent-index-creation");
        assert_eq!(small.severity, Severity::Warning);
        assert!(
            small.message.contains(
                "users has 1,204 rows (72 kB) right now: the SHARE lock is held for milliseconds"
            ),
            "{}",
            small.message
        );
        assert_eq!(
            of(3, "require-concurrent-index-creation").severity,
            Severity::Error
        );
        // Breaking changes stay errors whatever the size.
        assert_eq!(of(4, "renaming-column").severity, Severity::Error);
        // A row threshold of 0: no table is small, not even an empty one.
        live.tables.insert(
            "users".into(),
            crate::TableSize {
                rows: 0,
                bytes: 8192,
            },
        );
        let strict = Config {
            small_table_rows: 0,
            ..Config::default()
        };
        let mut linter = Linter::new(strict).with_live(live);
        linter.replay(Input {
            file: "1.sql",
            source: setup,
        });
        let found = linter.lint(Input {
            file: "2.sql",
            source: sql,
        });
        assert!(
            found.iter().all(|f| f.severity == Severity::Error),
            "{found:#?}"
        );
    }

    #[test]
    fn tables_created_by_earlier_files_are_not_new() {
        let mut linter = Linter::new(Config::default());
        assert!(linter
            .lint(Input {
                file: "0001.sql",
                source: "CREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);"
            })
            .is_empty());
        let f = linter.lint(Input {
            file: "0002.sql",
            source: "CREATE INDEX t_a2 ON t (a);",
        });
        assert_eq!(f[0].rule, "require-concurrent-index-creation");
    }
}

#[cfg(test)]
mod sqlite_tests {
    use super::*;
    use crate::config::Dialect;

    #[test]
    fn sqlite_keeps_compatibility_rules_and_drops_postgres_lock_rules() {
        let cfg = Config {
            dialect: Dialect::Sqlite,
            ..Config::default()
        };
        let mut linter = Linter::new(cfg);
        linter.replay(Input {
            file: "0001.sql",
            source: "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT);",
        });
        let f = linter.lint(Input {
            file: "0002.sql",
            source: "CREATE INDEX users_email ON users (email);\n\
                     ALTER TABLE users RENAME COLUMN email TO mail;\n\
                     CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT);\n\
                     ALTER TABLE users ADD COLUMN plan TEXT NOT NULL;\n",
        });
        let got: Vec<(&str, usize, Severity)> = f
            .iter()
            .map(|f| (f.rule.as_str(), f.line, f.severity))
            .collect();
        assert_eq!(
            got,
            vec![
                ("renaming-column", 2, Severity::Error),
                ("syntax-error", 3, Severity::Info),
                ("wrong-phase", 4, Severity::Error),
                ("adding-required-column", 4, Severity::Error),
            ],
            "{f:#?}"
        );
    }
}

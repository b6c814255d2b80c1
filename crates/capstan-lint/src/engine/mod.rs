//! The linting engine: parses each section, walks its statements with the schema
//! model and transaction state, runs the rules and turns their hits into findings.
//!
//! `parse` turns sections into trees, `walk` shows each statement to the rules
//! and replays it into the schema model, `text` maps offsets to positions; this
//! module holds the [`Linter`] and turns hits into [`Finding`]s.

mod parse;
mod text;
mod walk;

#[cfg(test)]
mod tests;

#[cfg(feature = "cli")]
pub(crate) use parse::parse_protobuf;
pub use parse::{whole_sections, SectionParser};

use crate::config::Config;
use crate::finding::{Finding, SectionKind, Severity};
use crate::rule::{Hit, RuleId};
use crate::rules;
use crate::schema::Schema;
use crate::source;
use crate::suppress::{self, Ignore};
use parse::{parse_section, without_bom, ParserHook};
use text::{line_end, LineIndex};

/// A hit and the statement it belongs to (section, index), when it belongs to one.
type Tagged = (Hit, Option<(SectionKind, usize)>);

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
        let mut hits: Vec<Tagged> = Vec::new();
        for p in &src.problems {
            hits.push((
                Hit::new(
                    rules::get(RuleId::MigrationFormat),
                    p.offset,
                    p.message.clone(),
                ),
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
            .filter(|f| f.section == SectionKind::Down && f.rule != RuleId::UnusedIgnore.name())
            .collect()
    }

    fn finish(
        &self,
        file: &str,
        text: &str,
        lines: &LineIndex<'_>,
        hits: Vec<Tagged>,
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
            let name = hit.rule.name();
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
        if self.config.enabled(RuleId::UnusedIgnore.name()) {
            for ig in &ignores {
                for problem in ig.problems() {
                    let hit = Hit::new(rules::get(RuleId::UnusedIgnore), ig.offset, problem);
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
        let mut severity = hit
            .severity
            .unwrap_or_else(|| self.config.severity_of(hit.rule.name(), hit.rule.severity));
        let mut message = hit.message.clone();
        if let Some(note) = self
            .small_table(hit)
            .filter(|_| severity > Severity::Warning)
        {
            severity = Severity::Warning;
            message = format!("{message}; {note}");
        }
        Finding {
            rule: hit.rule.name().to_string(),
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
        if !hit.rule.size_bound {
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

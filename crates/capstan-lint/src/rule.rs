//! The rule API: what a rule is ([`Rule`], named by a [`RuleId`]), what it is
//! shown ([`Stmt`], [`Ctx`]) and how it reports ([`Hits`]).
//!
//! This module is a leaf: it knows the finding, schema and file-format types
//! and nothing of the engine or of any rule. Rules, the phase classifier and the
//! engine import it; it imports none of them.

use crate::finding::{SectionKind, Severity};
use crate::schema::Schema;
use capstan_format::{Dialect, Phase};
use pg_query::NodeEnum;

macro_rules! rule_ids {
    ($($variant:ident = $name:literal,)*) => {
        /// The identity of a rule. Each variant is one rule; [`RuleId::name`] is
        /// its stable kebab-case name, the one findings, `capstan.toml` and
        /// `-- capstan:ignore` use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum RuleId {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl RuleId {
            /// Every rule, in documentation order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant),*];

            /// The stable kebab-case name, e.g. `setting-not-null`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(RuleId::$variant => $name,)*
                }
            }
        }
    };
}

rule_ids! {
    RequireConcurrentIndexCreation = "require-concurrent-index-creation",
    RequireConcurrentIndexDeletion = "require-concurrent-index-deletion",
    RequireConcurrentReindex = "require-concurrent-reindex",
    RequireConcurrentDetachPartition = "require-concurrent-detach-partition",
    RequireConcurrentRefresh = "require-concurrent-refresh",
    ConcurrentlyInTransaction = "concurrently-in-transaction",
    BanVacuumFull = "ban-vacuum-full",
    BanCluster = "ban-cluster",
    AddingForeignKeyConstraint = "adding-foreign-key-constraint",
    AddingCheckConstraint = "adding-check-constraint",
    AddingUniqueConstraint = "adding-unique-constraint",
    AddingPrimaryKeyConstraint = "adding-primary-key-constraint",
    AddingExclusionConstraint = "adding-exclusion-constraint",
    ValidateInSameTransaction = "validate-in-same-transaction",
    SettingNotNull = "setting-not-null",
    AddingRequiredColumn = "adding-required-column",
    AddingVolatileDefault = "adding-volatile-default",
    AddingStoredGeneratedColumn = "adding-stored-generated-column",
    AddingSerialOrIdentityColumn = "adding-serial-or-identity-column",
    ChangingColumnType = "changing-column-type",
    DroppingColumn = "dropping-column",
    DroppingTable = "dropping-table",
    DroppingObject = "dropping-object",
    DroppingConstraint = "dropping-constraint",
    DroppingDefault = "dropping-default",
    DroppingNotNull = "dropping-not-null",
    RenamingColumn = "renaming-column",
    RenamingTable = "renaming-table",
    RenamingObject = "renaming-object",
    ChangingSchema = "changing-schema",
    TruncateCascade = "truncate-cascade",
    DomainCheckConstraint = "domain-check-constraint",
    EnumAddValue = "enum-add-value",
    AttachPartitionWithoutCheck = "attach-partition-without-check",
    LockTable = "lock-table",
    CreatingTrigger = "creating-trigger",
    SetLoggedUnlogged = "set-logged-unlogged",
    PreferJsonb = "prefer-jsonb",
    TransactionNesting = "transaction-nesting",
    NonIdempotentNoTransaction = "non-idempotent-no-transaction",
    UnboundedBackfill = "unbounded-backfill",
    PreferBigint = "prefer-bigint",
    PreferIdentity = "prefer-identity",
    PreferTimestamptz = "prefer-timestamptz",
    PreferText = "prefer-text",
    IdentifierTooLong = "identifier-too-long",
    WrongPhase = "wrong-phase",
    ServiceBoundary = "service-boundary",
    CrossServiceReference = "cross-service-reference",
    SyntaxError = "syntax-error",
    MigrationFormat = "migration-format",
    UnusedIgnore = "unused-ignore",
}

impl RuleId {
    /// The rule with this kebab-case name.
    pub fn from_name(name: &str) -> Option<RuleId> {
        RuleId::ALL.iter().copied().find(|id| id.name() == name)
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The dialects of a rule that applies to every migration: phase, compatibility
/// with running binaries, transaction structure, backfills, hygiene of the file.
pub const ANY_DIALECT: &[Dialect] = &[Dialect::Postgres, Dialect::Sqlite];

/// The dialects of a rule about Postgres locks, rewrites, types or syntax:
/// SQLite has no concurrent DDL, `NOT VALID` constraints or lock modes.
pub const POSTGRES_ONLY: &[Dialect] = &[Dialect::Postgres];

/// A lint rule and its documentation.
pub struct Rule {
    /// Which rule this is (its name is `id.name()`).
    pub id: RuleId,
    /// Default severity.
    pub severity: Severity,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// The lock the flagged statement takes and what it blocks (empty when not about locks).
    pub lock: &'static str,
    /// Why it hurts running or older binaries.
    pub why: &'static str,
    /// The short advice printed with every finding.
    pub help: &'static str,
    /// Schema the examples assume (an earlier migration).
    pub setup: &'static str,
    /// A migration the rule flags.
    pub bad: &'static str,
    /// The safe alternative, as a complete migration file; empty when none exists.
    pub safe: &'static str,
    /// Whether the rule is only about the up section (phase, hygiene of new objects).
    pub up_only: bool,
    /// The migration dialects the rule applies to ([`ANY_DIALECT`] or [`POSTGRES_ONLY`]).
    pub dialects: &'static [Dialect],
    /// Whether its harm grows with the size of the table: it holds a lock while
    /// every row is rewritten, scanned, indexed or updated. With live sizes
    /// (`migrate up`), its finding on a small table is a warning. Rules about
    /// compatibility with running binaries never are: their harm does not
    /// depend on size.
    pub size_bound: bool,
    pub(crate) check: fn(&Stmt<'_>, &Ctx<'_>, &mut Hits),
}

impl Rule {
    /// The stable kebab-case name.
    pub fn name(&self) -> &'static str {
        self.id.name()
    }

    /// Whether the rule applies to migrations written in `dialect`.
    pub fn applies_to(&self, dialect: Dialect) -> bool {
        self.dialects.contains(&dialect)
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name()).finish()
    }
}

/// The check of a rule the engine reports itself (syntax errors, the file
/// format, unused ignores): it looks at no statement.
pub(crate) fn no_check(_: &Stmt<'_>, _: &Ctx<'_>, _: &mut Hits) {}

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
    /// The services sharing the database (empty: none declared).
    pub services: &'a capstan_service::Services,
    /// The service whose migration this is, when known.
    pub service: Option<&'a str>,
    /// The schema unqualified names resolve to: the first of the section's
    /// `SET search_path`, else `public`.
    pub search_schema: &'a str,
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
    /// A severity of its own for this hit, instead of the rule's (a
    /// cross-service reference the services declare is only `info`).
    pub severity: Option<Severity>,
}

impl Hit {
    /// A hit of `rule` at file offset `at`, with the rule's own help.
    pub fn new(rule: &'static Rule, at: usize, message: impl Into<String>) -> Hit {
        Hit {
            rule,
            at,
            message: message.into(),
            help: None,
            end: 0,
            table: None,
            severity: None,
        }
    }

    /// A hit with help of its own instead of the rule's.
    pub fn with_help(
        rule: &'static Rule,
        at: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Hit {
        Hit {
            help: Some(help.into()),
            ..Hit::new(rule, at, message)
        }
    }
}

impl Hit {
    /// The same hit at a severity of its own.
    pub fn at_severity(self, severity: Severity) -> Hit {
        Hit {
            severity: Some(severity),
            ..self
        }
    }
}

/// Collects hits for one statement.
#[derive(Default)]
pub(crate) struct Hits {
    pub(crate) list: Vec<Hit>,
}

impl Hits {
    /// Reports `message` at file offset `at`.
    pub fn push(&mut self, rule: &'static Rule, at: usize, message: impl Into<String>) {
        self.list.push(Hit::new(rule, at, message));
    }

    /// Adds a hit built by the rule.
    pub fn add(&mut self, hit: Hit) {
        self.list.push(hit);
    }

    /// Reports `message` at `at` with help of its own instead of the rule's.
    pub fn push_help(
        &mut self,
        rule: &'static Rule,
        at: usize,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.list.push(Hit::with_help(rule, at, message, help));
    }
}

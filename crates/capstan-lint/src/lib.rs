//! `capstan-lint`: a schema-aware linter for Postgres migrations.
//!
//! It parses each migration with the real Postgres grammar (`pg_query`), replays the
//! earlier migrations of the directory into a [`Schema`] model, and reports
//! [`Finding`]s: the locks a statement takes and what they block, the changes that
//! break a running (or an older) binary, and the expand/contract phase a statement
//! belongs to. Every finding names the rule, the file, line and column, and the safe
//! alternative. The library is pure: no IO, no async; findings are data.
//!
//! ```
//! use capstan_lint::{Config, Input, Linter};
//!
//! let mut linter = Linter::new(Config::default());
//! linter.replay(Input { file: "0001_users.sql", source: "CREATE TABLE users (id bigint, email text);" });
//! let findings = linter.lint(Input {
//!     file: "0002_email.sql",
//!     source: "-- capstan:up\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
//! });
//! assert!(findings.iter().any(|f| f.rule == "setting-not-null" && f.line == 2));
//! ```
//!
//! # The `capstan lint` command
//!
//! With the default `cli` feature, [`LintArgs`] (clap) and [`run_lint`] are the
//! `capstan lint` subcommand.
//!
//! Exit codes (a stable contract):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | no finding at or above `--fail-on` (default `error`) |
//! | 1 | at least one finding at or above `--fail-on` (`--deny-warnings` means `--fail-on warning`) |
//! | 2 | usage error (bad flag, unknown rule for `--explain`) |
//! | 3 | bad input: SQL that Postgres rejects, unreadable path, invalid UTF-8 (the file is named), bad `capstan.toml` (services included, with their line), a `--service` it does not declare, unreachable `--schema-from` database |
//!
//! # Suppressing a finding
//!
//! `-- capstan:ignore RULE[,RULE] reason` (or `-- capstan:lint-ignore RULE`) on the
//! line before a statement silences those rules for that statement; in the header of a
//! migration (before `-- capstan:up`) or as `-- capstan:ignore-file RULE`, for the whole
//! file. An ignore that matches nothing is reported (`unused-ignore`).
//!
//! # Configuration
//!
//! The `[lint]` table of `capstan.toml`:
//!
//! ```toml
//! [lint]
//! pg_version = 15              # target Postgres major version (default 15)
//! disable = ["prefer-text"]    # rules switched off
//! fail_on = "error"            # info | warning | error
//! lint_down = true             # lint -- capstan:down sections too
//! dialect = "postgres"         # or "sqlite": phase and compatibility rules only
//! small_table_rows = 10000     # `migrate up`: a lock or rewrite finding on a table at
//! small_table_bytes = 8388608  #   or under both sizes right now is a warning
//! time_zone = "UTC"            # the session time zone migrations run with, if known
//! [lint.severity]
//! prefer-bigint = "error"      # re-level a rule
//! ```
//!
//! Unknown keys and unknown rule names are errors that name them.

// The layers, bottom up (a module imports only from the layers below it):
// 1. `finding`, `schema`, `ast`, `source`, `live`, `config`: data;
// 2. `rule`: the rule API (a leaf: no rule, no engine);
// 3. `facts`: what a statement does, shared by the rules, `phase` and `destroy`;
//    `reach`: what it reaches across service boundaries (the boundary rules);
// 4. `phase`, then `rules/` (one file per rule, and `rules/family.rs`);
// 5. `engine` (walks sections, runs the rules), `suppress`, `docs`;
// 6. `destroy` and `hooks` (feature `migrate`), `cli` (feature `cli`).
// Every module is private; the items below are the crate's public surface.

mod ast;
#[cfg(feature = "cli")]
mod cli;
mod config;
#[cfg(feature = "migrate")]
mod destroy;
mod docs;
mod engine;
mod facts;
mod finding;
#[cfg(feature = "migrate")]
mod hooks;
mod live;
mod phase;
mod reach;
mod rule;
mod rules;
mod schema;
mod source;
mod suppress;

pub use ast::ColType;
#[cfg(feature = "cli")]
pub use cli::deps::{run as run_deps, DepsArgs, DepsFormat};
#[cfg(feature = "cli")]
pub use cli::{
    run as run_lint, CliError, DialectArg, Format, Level, LintArgs, EXIT_BAD_INPUT, EXIT_FINDINGS,
    EXIT_OK, EXIT_USAGE,
};
pub use config::{
    Config, ConfigError, Dialect, DEFAULT_PG_VERSION, DEFAULT_SMALL_TABLE_BYTES,
    DEFAULT_SMALL_TABLE_ROWS,
};
#[cfg(feature = "migrate")]
pub use destroy::Tracker;
pub use docs::{generate as rule_docs, render_index, render_rule};
pub use engine::{fails, lint, whole_sections, Input, Linter, SectionParser};
pub use finding::{Finding, SectionKind, Severity};
#[cfg(feature = "migrate")]
pub use hooks::{Archivist, PhaseSorter};
pub use live::{Live, TableSize};
pub use rule::{Rule, RuleId, ANY_DIALECT, POSTGRES_ONLY};
pub use rules::{find as find_rule, ALL as RULES};
pub use schema::{Column, Constraint, ConstraintKind, Index, Schema, Table};

/// Parses a migration version from a file name like `0007_add_email.sql`.
pub fn migration_version(file_name: &str) -> Option<u64> {
    source::version_of(file_name)
}

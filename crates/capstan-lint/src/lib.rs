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
//! With the default `cli` feature, [`cli`] provides the `capstan lint` subcommand
//! (`cli::LintArgs` and `cli::run`).
//!
//! Exit codes (a stable contract):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | no finding at or above `--fail-on` (default `error`) |
//! | 1 | at least one finding at or above `--fail-on` (`--deny-warnings` means `--fail-on warning`) |
//! | 2 | usage error (bad flag, unknown rule for `--explain`) |
//! | 3 | bad input: SQL that Postgres rejects, unreadable path, invalid UTF-8 (the file is named), bad `capstan.toml`, unreachable `--schema-from` database |
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

pub(crate) mod ast;
pub mod config;
#[cfg(feature = "migrate")]
pub mod destroy;
pub mod docs;
mod engine;
pub mod finding;
pub mod live;
mod phase;
pub mod rules;
pub mod schema;
mod source;
mod suppress;

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "migrate")]
pub mod hooks;

pub use ast::ColType;
pub use config::{Config, ConfigError, Dialect};
pub use engine::{fails, lint, whole_sections, Input, Linter, SectionParser};
pub use finding::{Finding, SectionKind, Severity};
pub use live::{Live, TableSize};
pub use rules::Rule;
pub use schema::Schema;

/// Parses a migration version from a file name like `0007_add_email.sql`.
pub fn migration_version(file_name: &str) -> Option<u64> {
    source::version_of(file_name)
}

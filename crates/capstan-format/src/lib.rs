//! The capstan migration file format, parsed in one place.
//!
//! A migration file is named `NNNN_snake_name.sql` and looks like this:
//!
//! ```sql
//! -- capstan:phase contract
//! -- capstan:lock-timeout 2s
//! -- capstan:up
//! ALTER TABLE users DROP COLUMN name;
//! -- capstan:down
//! ALTER TABLE users ADD COLUMN name text;
//! ```
//!
//! This crate knows that format and nothing else: file names and the
//! [`MigrationId`] they carry, the `-- capstan:` directives and
//! where the up and down sections are ([`scan`]), the [`Phase`] and
//! [`Dialect`] enums, the duration and timeout syntax ([`parse_duration`],
//! [`parse_timeout`]), and the one SQL lexer every statement boundary is
//! found with ([`Lexer`], [`split`], [`pieces`], [`words`]). The migration
//! engine, the linter, the importer and the rehearsal all read files through
//! it, so a file one of them accepts the others accept too.

mod directive;
mod duration;
mod lex;
mod name;
mod phase;
mod split;

pub use directive::{directive_body, scan, Directive, Layout, Marker, Problem, ProblemKind};
pub use duration::{parse_duration, parse_timeout, DurationError, MAX_TIMEOUT};
pub use lex::{Lexer, Token, TokenKind};
pub use name::{label, parse_file_name, version_prefix, Label, MigrationId};
pub use phase::{Dialect, Phase, UnknownDialect};
pub use split::{pieces, split, words, SplitError, Statement};

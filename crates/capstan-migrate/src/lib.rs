//! Safe, embeddable schema migrations for Postgres and SQLite.
//!
//! A migration directory holds `NNNN_snake_name.sql` files with `-- capstan:up`
//! and optional `-- capstan:down` sections, phase directives (`expand`, the
//! default, or `contract`) and a `capstan.sum`. The same engine runs from the
//! `capstan` CLI and from an application that embeds its migrations.

pub mod import;
pub mod source;
pub mod split;
pub mod sum;

pub use source::{Migration, MigrationSet, Phase, Section, SourceError};

//! Safe, embeddable schema migrations for Postgres and SQLite.
//!
//! A migration directory holds `NNNN_snake_name.sql` files with `-- capstan:up`
//! and optional `-- capstan:down` sections, phase directives (`expand`, the
//! default, or `contract`) and a `capstan.sum`. The same engine runs from the
//! `capstan` CLI and from an application that embeds its migrations.

pub mod archive;
mod backoff;
pub mod connstr;
pub mod driver;
pub mod import;
pub mod indexes;
pub mod interrupt;
pub mod live;
#[cfg(feature = "postgres")]
pub mod pgconn;
#[cfg(feature = "postgres")]
pub mod postgres;
mod redact;
pub mod source;
pub mod split;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod sum;
pub mod url;

pub use source::{Migration, MigrationSet, Phase, Section, SourceError};
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod config;
mod database;
pub mod embed;
mod error;
pub mod fleet;
pub mod gate;
pub mod migrator;
#[cfg(feature = "cli")]
pub mod move_table;
pub mod schema_dump;
pub mod workdir;

pub use driver::{AppliedRow, Direction, Driver, Identity};
pub use migrator::{
    compare, Database, Entry, Error, Event, Migrator, Plan, RepairAction, RunReport, Settings,
    State, Status, UpOptions, VerifyReport,
};
pub use url::DatabaseUrl;

//! Safe, embeddable schema migrations for Postgres and SQLite.
//!
//! A migration directory holds `NNNN_snake_name.sql` files with `-- capstan:up`
//! and optional `-- capstan:down` sections, phase directives (`expand`, the
//! default, or `contract`) and a `capstan.sum`. The same engine runs from the
//! `capstan` CLI and from an application that embeds its migrations.

//!
//! # The public surface
//!
//! Every module is private; the items re-exported here are the crate's API:
//!
//! - running migrations: [`Migrator`] over a [`Database`] (opened from a
//!   [`DatabaseUrl`]), its [`Settings`], [`Plan`], [`Event`]s and reports;
//! - the migration files: [`MigrationSet`], [`Migration`], [`Phase`],
//!   [`Section`], `capstan.sum` ([`write_sum`], [`rehash`]);
//! - the startup gate ([`check_gate`], [`check_gate_database`]) and the fleet
//!   of running instances ([`Heartbeat`], [`InstanceRow`]);
//! - the archive of destroyed data ([`Detector`], [`Destruction`],
//!   [`archive_entries`]);
//! - Postgres connection strings and connections ([`ConnSpec`],
//!   [`connect_postgres`]) and their redaction ([`redact`], [`redact_text`]);
//! - `capstan.toml` ([`Config`], feature `cli`).
//!
//! [`Driver`] is the seam between the engine and a database; only this
//! crate's drivers implement it, and its job and store types stay private.
//!
//! Three public modules are sub-APIs of their own, each a small facade:
//! [`cli`] (feature `cli`), the subcommands the `capstan` binary and an
//! application mount; [`embed`], for a `build.rs` that embeds the migrations;
//! [`import`], converting another tool's migration directory.

mod archive;
mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
mod config;
mod connstr;
mod database;
mod driver;
pub mod embed;
mod error;
mod fleet;
mod gate;
pub mod import;
mod indexes;
mod interrupt;
mod live;
mod migrator;
#[cfg(feature = "cli")]
mod move_table;
#[cfg(feature = "postgres")]
mod pgconn;
#[cfg(feature = "postgres")]
mod postgres;
mod redact;
#[cfg(feature = "cli")]
mod schema_dump;
mod source;
mod split;
#[cfg(feature = "sqlite")]
mod sqlite;
mod sum;
mod url;
mod workdir;

pub use archive::{
    list as archive_entries, ArchiveEntry, ArchiveError, Destruction, Detected, Detector,
    Kind as DestructionKind, PlannedArchive,
};
#[cfg(feature = "cli")]
pub use config::{
    ArchiveConfig, Config, ConfigError, FleetConfig, MigrateConfig, SloConfig, SloPolicyConfig,
};
pub use connstr::{is_key_value, is_pg_url, with_dbname, ConnSpec, Endpoint, Host, SslMode};
pub use driver::{
    AppliedRow, DbError, Direction, Driver, FailureKind, Identity, RowState, Scope as ArchiveScope,
    DEFAULT_SERVICE, LAYOUT as TABLES_LAYOUT,
};
pub use fleet::{Heartbeat, Instance, InstanceRow, DEFAULT_HEARTBEAT, DEFAULT_TTL};
pub use gate::{
    check as check_gate, check_database as check_gate_database, Compatibility, GateItem,
};
pub use live::{LiveDb, TableSize, DEFAULT_COUNT_UP_TO};
pub use migrator::{
    compare, Accepted, CollisionInfo, ContractPolicy, Database, DirtyInfo, Entry, Error, Event,
    HeldBack, MigrationFailure, Migrator, Plan, PlanStep, Ran, RepairAction, RunReport, Settings,
    State, Status, ToolBaseline, UpOptions, VerifyReport, VerifyStep,
};
#[cfg(feature = "postgres")]
pub use pgconn::{
    connect as connect_postgres, connect_str as connect_postgres_str, ConnectError, Connected,
};
pub use source::{
    parse_duration, parse_migration, Migration, MigrationSet, Phase, Section, SourceError,
};
pub use split::Dialect;
pub use sum::{write as write_sum, SumError};
pub use url::{redact, redact_text, DatabaseUrl, UrlError};
pub use workdir::{rehash, WorkdirError};

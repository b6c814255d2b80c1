//! Wide events: one record per request, stored in SQLite with per-minute rollups.
//!
//! The proxy builds an [`Event`] per request and hands it to a [`Recorder`], which
//! never blocks: events go through a bounded channel to a task that writes them to the
//! [`Store`] in batches, and when the channel is full they are dropped and counted.
//! Readers select events with an [`Expr`] (`status >= 500 and release = "2.0.0"`).

pub mod cli;
mod event;
mod expr;
mod otlp;
mod query;
mod recorder;
mod store;

pub use compact_str::CompactString;
pub use event::{is_client_body, is_release_error, Event, MirrorComparison, CLIENT_ERROR_KINDS};
pub use expr::{Column, Expr, ExprError, Field};
pub use otlp::{otlp_router, otlp_router_with_limit, request_span_events, DEFAULT_MAX_BODY};
pub use query::{
    ks_statistic, percentile, Calc, CalcKind, Comparison, FieldDiff, Quantiles, Query, QueryResult,
    QueryRow, Share, ValueShares,
};
pub use recorder::{NotQueued, Recorder, RecorderTask, Written};
pub use store::{
    bucket_index, minute_of, MinuteCount, MinuteCounts, Outcome, PruneReport, Retention, Rollup,
    Store, StoredEvent, BUCKET_BOUNDS_MS, SCHEMA_VERSION, WRITER_NICE,
};

/// What can go wrong opening, writing or reading an event store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// SQLite refused an operation on the store.
    #[error("event store {path}: {source}")]
    Sqlite {
        /// The store's file.
        path: String,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The store was written by a newer capstan.
    #[error("event store {path}: schema version {found} is newer than this capstan understands ({supported})")]
    SchemaTooNew {
        /// The store's file.
        path: String,
        /// The version found in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// An expression could not be parsed.
    #[error(transparent)]
    Expr(#[from] ExprError),
    /// The recorder's writer thread ended abnormally.
    #[error("event recorder: {0}")]
    Recorder(String),
    /// A retention that would break the store's promises.
    #[error("event store retention: {0}")]
    Retention(String),
}

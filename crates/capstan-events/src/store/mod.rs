//! The SQLite event store with per-minute rollups (schema in `docs/events.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use compact_str::CompactString;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{Error, Event, MirrorComparison};

mod rollup;
mod schema;
mod writer;

pub use writer::WRITER_NICE;

/// Upper bounds (ms, inclusive) of the rollup latency histogram buckets; the last is +inf.
pub const BUCKET_BOUNDS_MS: [f64; 13] = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    300.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    f64::INFINITY,
];

/// The store schema this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

const MINUTE_MS: i64 = 60_000;

/// The index of the histogram bucket `duration_ms` falls in.
pub fn bucket_index(duration_ms: f64) -> usize {
    BUCKET_BOUNDS_MS
        .iter()
        .position(|b| duration_ms <= *b)
        .unwrap_or(BUCKET_BOUNDS_MS.len() - 1)
}

/// The start (unix ms) of the minute `time_ms` falls in.
pub fn minute_of(time_ms: i64) -> i64 {
    time_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

fn ceil_minute(ms: i64) -> i64 {
    minute_of(ms.saturating_add(MINUTE_MS - 1))
}

/// Events in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCount {
    /// Start of the minute, unix ms.
    pub minute_ms: i64,
    /// Matching events in the minute.
    pub count: u64,
}

/// Events in one minute, for each of several expressions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MinuteCounts {
    /// Start of the minute, unix ms.
    pub minute_ms: i64,
    /// Matching events in the minute, one count per expression asked.
    pub counts: Vec<u64>,
}

/// How long and how much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// Raw events older than this are deleted.
    pub raw_max_age: Duration,
    /// When the store's live pages exceed this many bytes, the oldest raw events
    /// go (all but the newest), then the oldest rollup minutes. A dimension
    /// row (`rollup_dims`) goes once no rollup row uses it.
    pub max_bytes: u64,
    /// Rollup minutes older than this are deleted.
    pub rollup_max_age: Duration,
}

impl Default for Retention {
    /// Raw events for 7 days within 1 GiB; rollups for 400 days.
    fn default() -> Self {
        Retention {
            raw_max_age: Duration::from_secs(7 * 86_400),
            max_bytes: 1 << 30,
            rollup_max_age: Duration::from_secs(400 * 86_400),
        }
    }
}

/// What [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PruneReport {
    /// Raw events deleted for age.
    pub raw_by_age: u64,
    /// Raw events deleted for size.
    pub raw_by_size: u64,
    /// Rollup rows deleted for age.
    pub rollups: u64,
    /// Rollup rows deleted for size, oldest minutes first: only once the newest
    /// raw event, which pruning keeps, is the only one left and the store is
    /// still over its size.
    pub rollups_by_size: u64,
    /// Dimension rows (`rollup_dims`) deleted because the rollup rows deleted
    /// were the last ones using them.
    pub dims: u64,
}

/// One per-minute rollup row: counts and latency buckets for one combination of
/// service, route, release, cohort and status class in one minute.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rollup {
    /// Start of the minute, unix ms.
    pub minute_ms: i64,
    /// Service.
    pub service: String,
    /// Route template.
    pub route: String,
    /// Release.
    pub release: String,
    /// Cohort.
    pub cohort: String,
    /// `status / 100` (0: no response).
    pub status_class: u16,
    /// Events.
    pub count: u64,
    /// Sum of `duration_ms`.
    pub sum_duration_ms: f64,
    /// Events per latency bucket ([`BUCKET_BOUNDS_MS`]; not cumulative).
    pub buckets: [u64; 13],
}

/// A raw event with its row id (ids grow with insertion and are never reused:
/// pruning keeps the newest row).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// The event.
    pub event: Event,
}

/// One request as a canary judge sees it ([`Store::outcomes`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Row id.
    pub id: i64,
    /// When the request started, Unix ms.
    pub time_ms: i64,
    /// The release that served it.
    pub release: String,
    /// HTTP status (0 when there was no answer).
    pub status: u16,
    /// Whether the event records an error kind of the release (connect,
    /// timeout, ...); the client's own ([`crate::CLIENT_ERROR_KINDS`]) are
    /// not. With `status >= 500`, [`crate::is_release_error`].
    pub failed: bool,
    /// The client's request body broke off or stalled (`client_body`): the
    /// request says nothing about the release, and its duration is the
    /// client's sending, so a judge leaves it out.
    pub client_body: bool,
    /// Total duration, ms.
    pub duration_ms: f64,
    /// The mirror comparison, for a mirrored request.
    pub mirror: Option<MirrorComparison>,
}

type DimKey = (String, String, String, String, u16);

/// The writer's rollup dimension ids, as of one `dims_generation` of the
/// store. A prune that deletes dimension rows bumps the generation in the
/// same transaction, and a batch compares it (under the write lock) before it
/// uses a cached id, so an id another process's prune freed, and a new
/// dimension may have taken, is never used for the old one.
#[derive(Debug, Default)]
struct DimsCache {
    /// The generation the ids were read at; `None` before the first batch.
    generation: Option<i64>,
    ids: HashMap<DimKey, i64>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    dims: Mutex<DimsCache>,
    retention: Retention,
    last_prune_ms: Mutex<i64>,
    /// The last prune left dead dimension rows behind (it deleted as many
    /// as one prune may): the next prune goes on with them.
    dims_backlog: std::sync::atomic::AtomicBool,
}

/// The event store: a SQLite file (default `capstan-events.db`) in WAL mode. Cheap
/// to clone; writes and reads use separate connections, so a long query does not
/// hold up the recorder.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

const EVENT_COLUMNS: &str = "id, time_ms, service, method, route, path, status, duration_ms, \
    upstream_ms, bytes_in, bytes_out, release, instance, cohort, user, trace_id, error, mirror, fields";

impl Store {
    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.inner.path.display().to_string(),
            source,
        }
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.inner.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes in the store's pages that hold data (the file minus its free pages).
    pub fn live_bytes(&self) -> Result<u64, Error> {
        live_bytes(&self.reader()).map_err(self.sql())
    }

    /// Calls `f` with every raw event whose time is in `[from_ms, to_ms)` (optionally of
    /// one service), oldest first, until `f` returns false.
    pub fn scan(
        &self,
        from_ms: i64,
        to_ms: i64,
        service: Option<&str>,
        mut f: impl FnMut(StoredEvent) -> bool,
    ) -> Result<(), Error> {
        let sql = self.sql();
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE time_ms >= ?1 AND time_ms < ?2 \
                 AND (?3 IS NULL OR service = ?3) ORDER BY time_ms, id"
            ))
            .map_err(&sql)?;
        let mut rows = stmt.query(params![from_ms, to_ms, service]).map_err(&sql)?;
        while let Some(r) = rows.next().map_err(&sql)? {
            if !f(row_to_event(r).map_err(&sql)?) {
                break;
            }
        }
        Ok(())
    }

    /// Up to `limit` raw events with an id above `after_id`, in id order (for following
    /// the store as it grows).
    pub fn events_after(&self, after_id: i64, limit: usize) -> Result<Vec<StoredEvent>, Error> {
        let sql = self.sql();
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![after_id, limit as i64], row_to_event)
            .map_err(&sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sql)
    }

    /// Calls `f` with the [`Outcome`] of every event of `service` whose time is at or
    /// after `from_ms`: all of them when `after_id` is `None`, else only those with
    /// an id above it. Reads one snapshot and returns the highest id in it, the
    /// `after_id` of the next call: an event stored later has a higher id, so
    /// following the store this way reads each event once (a canary judge looking
    /// every few seconds at a step's growing traffic). Only the columns a judge
    /// needs are read.
    pub fn outcomes(
        &self,
        after_id: Option<i64>,
        from_ms: i64,
        service: &str,
        mut f: impl FnMut(Outcome),
    ) -> Result<i64, Error> {
        let sql = self.sql();
        let mut conn = self.reader();
        let tx = conn.transaction().map_err(&sql)?;
        let last: i64 = tx
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(&sql)?;
        // `is_release_error` and `is_client_body` in SQL (a test holds
        // them equal).
        const COLUMNS: &str = "id, time_ms, release, status, \
             error IS NOT NULL AND error NOT IN ('client_body', 'client_cancel'), \
             duration_ms, mirror, error IS 'client_body'";
        {
            // The first read goes by time (its index); later ones by id.
            let (mut stmt, mut rows);
            if let Some(id) = after_id {
                stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM events WHERE id > ?1 AND id <= ?2 \
                         AND time_ms >= ?3 AND service = ?4 ORDER BY id"
                    ))
                    .map_err(&sql)?;
                rows = stmt
                    .query(params![id, last, from_ms, service])
                    .map_err(&sql)?;
            } else {
                stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM events WHERE time_ms >= ?1 AND service = ?2 \
                         AND id <= ?3"
                    ))
                    .map_err(&sql)?;
                rows = stmt.query(params![from_ms, service, last]).map_err(&sql)?;
            }
            while let Some(r) = rows.next().map_err(&sql)? {
                let mirror: Option<String> = r.get(6).map_err(&sql)?;
                let mirror = match mirror {
                    Some(m) => Some(serde_json::from_str(&m).map_err(|e| {
                        sql(rusqlite::Error::FromSqlConversionFailure(
                            6,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        ))
                    })?),
                    None => None,
                };
                f(Outcome {
                    id: r.get(0).map_err(&sql)?,
                    time_ms: r.get(1).map_err(&sql)?,
                    release: r.get(2).map_err(&sql)?,
                    status: r.get(3).map_err(&sql)?,
                    failed: r.get(4).map_err(&sql)?,
                    duration_ms: r.get(5).map_err(&sql)?,
                    mirror,
                    client_body: r.get(7).map_err(&sql)?,
                });
            }
        }
        tx.finish().map_err(&sql)?;
        Ok(last)
    }

    /// The highest event id so far (0 when empty).
    pub fn last_id(&self) -> Result<i64, Error> {
        let conn = self.reader();
        conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .optional()
            .map(|o| o.unwrap_or(0))
            .map_err(self.sql())
    }

    /// The number of raw events stored.
    pub fn count(&self) -> Result<u64, Error> {
        let conn = self.reader();
        conn.query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.sql())
    }

    /// The store's own salt for user-key hashes, 32 hex digits: 16 random
    /// bytes made the first time any process asks, then kept
    /// (`store_meta.user_salt`). Every proxy writing the store hashes a user
    /// key the same way, across restarts, and the hash of a known key (an
    /// email address) cannot be computed without the store file.
    pub fn user_salt(&self) -> Result<String, Error> {
        let conn = self.writer();
        // A blob: the column's integer affinity leaves it as it is.
        conn.execute(
            "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('user_salt', randomblob(16))",
            [],
        )
        .map_err(self.sql())?;
        let salt: Vec<u8> = conn
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'user_salt'",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        Ok(crate::otlp::hex(&salt))
    }
}

fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

/// Column `i` as text, read in place (no intermediate `String`).
fn text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<CompactString> {
    let v = r.get_ref(i)?;
    let s = v
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))?;
    Ok(CompactString::from(s))
}

/// Column `i` as text, or `None` when it is NULL.
fn opt_text(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<CompactString>> {
    let v = r.get_ref(i)?;
    let s = v
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, v.data_type(), Box::new(e)))?;
    Ok(s.map(CompactString::from))
}

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let mirror: Option<String> = r.get(17)?;
    let fields: String = r.get(18)?;
    let bad_json = |i: usize, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    };
    Ok(StoredEvent {
        id: r.get(0)?,
        event: Event {
            time_ms: r.get(1)?,
            service: text(r, 2)?,
            method: text(r, 3)?,
            route: text(r, 4)?,
            path: text(r, 5)?,
            status: r.get(6)?,
            duration_ms: r.get(7)?,
            upstream_ms: r.get(8)?,
            bytes_in: r.get::<_, i64>(9)? as u64,
            bytes_out: r.get::<_, i64>(10)? as u64,
            release: text(r, 11)?,
            instance: text(r, 12)?,
            cohort: text(r, 13)?,
            user: opt_text(r, 14)?,
            trace_id: opt_text(r, 15)?,
            error: opt_text(r, 16)?,
            mirror: match mirror {
                Some(m) => Some(
                    serde_json::from_str::<MirrorComparison>(&m).map_err(|e| bad_json(17, e))?,
                ),
                None => None,
            },
            fields: serde_json::from_str(&fields).map_err(|e| bad_json(18, e))?,
        },
    })
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

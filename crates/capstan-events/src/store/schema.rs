//! The store's schema: its steps from one version to the next, and opening
//! (creating or upgrading) a store file.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;

use super::{Inner, Retention, Store, SCHEMA_VERSION};
use crate::Error;

/// Schema steps: step `i` takes a store from version `i` to `i + 1`.
const MIGRATIONS: [&str; 5] = [
    SCHEMA_V1,
    // minute_counts for one service reads its dimensions' rows only.
    "CREATE INDEX IF NOT EXISTS rollups_by_dim ON rollups (dim_id, minute_ms);",
    // The same, covering `count`: a status-only SLI (`status < 500`) sums counts
    // from the index alone instead of looking every row up in the table. It
    // replaces the step-2 index, which is its prefix.
    "CREATE INDEX IF NOT EXISTS rollups_by_dim_count ON rollups (dim_id, minute_ms, count);
     DROP INDEX IF EXISTS rollups_by_dim;",
    // The rollups clustered by dimension, then minute: one service's minutes are
    // contiguous in the table itself, so a read of any column (the latency
    // buckets of `duration_ms <= 300` too) is a range scan with no lookup per
    // row, and no second copy of the columns in an index. Pruning by age and
    // time-ordered listing use the minute index.
    "CREATE TABLE rollups_v4 (
         minute_ms INTEGER NOT NULL,
         dim_id INTEGER NOT NULL REFERENCES rollup_dims (id),
         count INTEGER NOT NULL,
         sum_duration_ms REAL NOT NULL,
         b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
         b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL, b7 INTEGER NOT NULL,
         b8 INTEGER NOT NULL, b9 INTEGER NOT NULL, b10 INTEGER NOT NULL, b11 INTEGER NOT NULL,
         b12 INTEGER NOT NULL,
         PRIMARY KEY (dim_id, minute_ms)
     ) WITHOUT ROWID;
     INSERT INTO rollups_v4 (minute_ms, dim_id, count, sum_duration_ms, b0, b1, b2, b3, b4, b5,
         b6, b7, b8, b9, b10, b11, b12)
       SELECT minute_ms, dim_id, count, sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9,
         b10, b11, b12 FROM rollups ORDER BY dim_id, minute_ms;
     DROP TABLE rollups;
     ALTER TABLE rollups_v4 RENAME TO rollups;
     CREATE INDEX rollups_by_minute ON rollups (minute_ms);",
    // Dimension rows are pruned once no rollup row uses them. Their ids may
    // then be taken by new dimensions, so every prune that deletes some bumps
    // `dims_generation`, and writers drop the ids they cached when it moved.
    "CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)
       WITHOUT ROWID;
     INSERT OR IGNORE INTO store_meta (key, value) VALUES ('dims_generation', 0);",
];

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    service TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    upstream_ms REAL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    release TEXT NOT NULL,
    instance TEXT NOT NULL,
    cohort TEXT NOT NULL,
    user TEXT,
    trace_id TEXT,
    error TEXT,
    mirror TEXT,
    fields TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time_ms);
CREATE TABLE IF NOT EXISTS rollup_dims (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    route TEXT NOT NULL,
    release TEXT NOT NULL,
    cohort TEXT NOT NULL,
    status_class INTEGER NOT NULL,
    UNIQUE (service, route, release, cohort, status_class)
);
CREATE TABLE IF NOT EXISTS rollups (
    minute_ms INTEGER NOT NULL,
    dim_id INTEGER NOT NULL REFERENCES rollup_dims (id),
    count INTEGER NOT NULL,
    sum_duration_ms REAL NOT NULL,
    b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
    b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL, b7 INTEGER NOT NULL,
    b8 INTEGER NOT NULL, b9 INTEGER NOT NULL, b10 INTEGER NOT NULL, b11 INTEGER NOT NULL,
    b12 INTEGER NOT NULL,
    PRIMARY KEY (minute_ms, dim_id)
) WITHOUT ROWID;
";

impl Store {
    /// Opens (creating if needed) the store at `path` with the default [`Retention`].
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, Retention::default())
    }

    /// Opens (creating if needed) the store at `path`.
    ///
    /// Rollups must be kept at least as long as raw events: the minute counts
    /// come from the rollups and must agree with the raw events while those
    /// are kept, so a shorter rollup retention is refused.
    pub fn open_with(path: &Path, retention: Retention) -> Result<Store, Error> {
        if retention.rollup_max_age < retention.raw_max_age {
            return Err(Error::Retention(format!(
                "rollups kept for {}, less than raw events ({}): rollups must be kept at least as long",
                humantime::format_duration(retention.rollup_max_age),
                humantime::format_duration(retention.raw_max_age)
            )));
        }
        let sql = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let writer = Connection::open(path).map_err(sql)?;
        writer.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        // 16 KiB pages for a new store; an existing one keeps its own (SQLite
        // ignores page_size once a file has content, and WAL mode cannot
        // change it). It must come before journal_mode = WAL, which writes the
        // header. Appending rows splits fewer pages per event, in larger WAL
        // frames. In alternating proxy runs the writer's CPU per request went
        // from 1.42 to 1.27 µs; a raw-event query over 1.7 million events took
        // about as long (1.50 s with 16 KiB pages against 1.55 s with 4 KiB).
        writer
            .pragma_update(None, "page_size", 16384)
            .map_err(sql)?;
        wal_mode(&writer).map_err(sql)?;
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        let version: i64 = writer
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        let too_new = |found| Error::SchemaTooNew {
            path: path.display().to_string(),
            found,
            supported: SCHEMA_VERSION,
        };
        if version > SCHEMA_VERSION {
            return Err(too_new(version));
        }
        if version < SCHEMA_VERSION {
            // Another process may be creating or upgrading the same file right
            // now. Take the write lock first (waiting out the busy timeout), then
            // read the version again: a deferred transaction that read first
            // could not take the lock once the other committed ("database is
            // locked"), and would run steps already done.
            let tx = rusqlite::Transaction::new_unchecked(
                &writer,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(sql)?;
            let version: i64 = tx
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .map_err(sql)?;
            if version > SCHEMA_VERSION {
                return Err(too_new(version));
            }
            if version < SCHEMA_VERSION {
                for step in &MIGRATIONS[version.max(0) as usize..] {
                    tx.execute_batch(step).map_err(sql)?;
                }
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                    .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
        }
        let reader = Connection::open(path).map_err(sql)?;
        reader.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                dims: Mutex::new(super::DimsCache::default()),
                retention,
                last_prune_ms: Mutex::new(0),
                dims_backlog: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

/// Puts the file in WAL mode. SQLite answers "database is locked" at once,
/// without waiting out the busy timeout, when another connection holds the
/// file while this one switches it (two processes creating one store
/// together), so this retries every 10 ms for at most 5 s.
fn wal_mode(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(e)
                if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            done => return done,
        }
    }
}

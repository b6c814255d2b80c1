//! The SQLite event store with per-minute rollups (schema in `docs/events.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::event::Value;
use crate::expr::{eval, Column, Field, Lit, Node, Op};
use crate::recorder::{Counters, Recorder, RecorderTask};
use crate::{Error, Event, Expr, MirrorComparison};

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
pub const SCHEMA_VERSION: i64 = 4;

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
    /// When the store's live pages exceed this many bytes, the oldest raw events go.
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

/// A raw event with its row id (ids grow with insertion).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// The event.
    pub event: Event,
}

type DimKey = (String, String, String, String, u16);

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    dims: Mutex<HashMap<DimKey, i64>>,
    retention: Retention,
    last_prune_ms: Mutex<i64>,
}

/// The event store: a SQLite file (default `capstan-events.db`) in WAL mode. Cheap
/// to clone; writes and reads use separate connections, so a long query does not
/// hold up the recorder.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// Schema steps: step `i` takes a store from version `i` to `i + 1`.
const MIGRATIONS: [&str; 4] = [
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

const EVENT_COLUMNS: &str = "id, time_ms, service, method, route, path, status, duration_ms, \
    upstream_ms, bytes_in, bytes_out, release, instance, cohort, user, trace_id, error, mirror, fields";

impl Store {
    /// Opens (creating if needed) the store at `path` with the default [`Retention`].
    pub fn open(path: &Path) -> Result<Store, Error> {
        Store::open_with(path, Retention::default())
    }

    /// Opens (creating if needed) the store at `path`.
    pub fn open_with(path: &Path, retention: Retention) -> Result<Store, Error> {
        let sql = |source| Error::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let writer = Connection::open(path).map_err(sql)?;
        writer.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        writer
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        writer
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        let version: i64 = writer
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < SCHEMA_VERSION {
            let tx = writer.unchecked_transaction().map_err(sql)?;
            for step in &MIGRATIONS[version.max(0) as usize..] {
                tx.execute_batch(step).map_err(sql)?;
            }
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let reader = Connection::open(path).map_err(sql)?;
        reader.busy_timeout(Duration::from_secs(5)).map_err(sql)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                dims: Mutex::new(HashMap::new()),
                retention,
                last_prune_ms: Mutex::new(0),
            }),
        })
    }

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

    /// Starts the writer task (needs a tokio runtime) with a queue of `capacity`
    /// events. The task writes a batch when it has 4,096 events or 100 ms after the
    /// first event of the batch arrived, prunes by the retention at most every 30 s,
    /// and ends when every [`Recorder`] clone is dropped.
    pub fn spawn_recorder(self, capacity: usize) -> (Recorder, RecorderTask) {
        const BATCH: usize = 4096;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let task_counters = counters.clone();
        let handle = tokio::spawn(async move {
            let mut buf: Vec<Event> = Vec::with_capacity(BATCH);
            loop {
                if rx.recv_many(&mut buf, BATCH).await == 0 {
                    return Ok(());
                }
                let deadline = tokio::time::Instant::now() + Duration::from_millis(100);
                let mut closed = false;
                while buf.len() < BATCH {
                    let want = BATCH - buf.len();
                    match tokio::time::timeout_at(deadline, rx.recv_many(&mut buf, want)).await {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                let batch = std::mem::replace(&mut buf, Vec::with_capacity(BATCH));
                let store = self.clone();
                let counters = task_counters.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let n = batch.len() as u64;
                    match store.insert_batch(&batch) {
                        Ok(()) => counters
                            .stored
                            .fetch_add(n, std::sync::atomic::Ordering::Relaxed),
                        Err(e) => {
                            counters
                                .failed
                                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!("event store: {n} events not written: {e}");
                            0
                        }
                    };
                    let now = now_ms();
                    if let Err(e) = store.prune_if_due(now) {
                        tracing::warn!("event store: pruning failed: {e}");
                    }
                })
                .await;
                if let Err(e) = res {
                    return Err(Error::Recorder(e.to_string()));
                }
                if closed {
                    return Ok(());
                }
            }
        });
        (Recorder { tx, counters }, RecorderTask { handle })
    }

    /// Writes events in one transaction, updating the rollups in the same transaction.
    pub fn insert_batch(&self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = self.sql();
        // Rollup deltas for the batch, keyed by minute and dimensions.
        type Key<'a> = (i64, &'a str, &'a str, &'a str, &'a str, u16);
        let mut deltas: HashMap<Key<'_>, (u64, f64, [u64; 13])> = HashMap::new();
        for e in events {
            let key = (
                minute_of(e.time_ms),
                e.service.as_str(),
                e.route.as_str(),
                e.release.as_str(),
                e.cohort.as_str(),
                e.status / 100,
            );
            let d = deltas.entry(key).or_insert((0, 0.0, [0; 13]));
            d.0 += 1;
            d.1 += e.duration_ms;
            d.2[bucket_index(e.duration_ms)] += 1;
        }
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(&sql)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO events (time_ms, service, method, route, path, status, duration_ms, \
                     upstream_ms, bytes_in, bytes_out, release, instance, cohort, user, trace_id, error, \
                     mirror, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18)",
                )
                .map_err(&sql)?;
            let mut fields_json = String::new();
            for e in events {
                fields_json.clear();
                write_fields_json(&e.fields, &mut fields_json);
                let mirror = e
                    .mirror
                    .as_ref()
                    .map(|m| serde_json::to_string(m).unwrap_or_default());
                ins.execute(params![
                    e.time_ms,
                    e.service,
                    e.method,
                    e.route,
                    e.path,
                    e.status,
                    e.duration_ms,
                    e.upstream_ms,
                    e.bytes_in as i64,
                    e.bytes_out as i64,
                    e.release,
                    e.instance,
                    e.cohort,
                    e.user,
                    e.trace_id,
                    e.error,
                    mirror,
                    fields_json,
                ])
                .map_err(&sql)?;
            }
            let mut dims = self.inner.dims.lock().unwrap_or_else(|p| p.into_inner());
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO rollups (minute_ms, dim_id, count, sum_duration_ms, b0, b1, b2, b3, \
                     b4, b5, b6, b7, b8, b9, b10, b11, b12) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                     ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17) \
                     ON CONFLICT (minute_ms, dim_id) DO UPDATE SET count = count + excluded.count, \
                     sum_duration_ms = sum_duration_ms + excluded.sum_duration_ms, \
                     b0 = b0 + excluded.b0, b1 = b1 + excluded.b1, b2 = b2 + excluded.b2, \
                     b3 = b3 + excluded.b3, b4 = b4 + excluded.b4, b5 = b5 + excluded.b5, \
                     b6 = b6 + excluded.b6, b7 = b7 + excluded.b7, b8 = b8 + excluded.b8, \
                     b9 = b9 + excluded.b9, b10 = b10 + excluded.b10, b11 = b11 + excluded.b11, \
                     b12 = b12 + excluded.b12",
                )
                .map_err(&sql)?;
            for ((minute, service, route, release, cohort, class), (count, sum, b)) in &deltas {
                let key: DimKey = (
                    service.to_string(),
                    route.to_string(),
                    release.to_string(),
                    cohort.to_string(),
                    *class,
                );
                let dim_id = match dims.get(&key) {
                    Some(id) => *id,
                    None => {
                        tx.execute(
                            "INSERT OR IGNORE INTO rollup_dims (service, route, release, cohort, status_class) \
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![service, route, release, cohort, class],
                        )
                        .map_err(&sql)?;
                        let id: i64 = tx
                            .query_row(
                                "SELECT id FROM rollup_dims WHERE service = ?1 AND route = ?2 \
                                 AND release = ?3 AND cohort = ?4 AND status_class = ?5",
                                params![service, route, release, cohort, class],
                                |r| r.get(0),
                            )
                            .map_err(&sql)?;
                        id
                    }
                };
                up.execute(params![
                    minute,
                    dim_id,
                    *count as i64,
                    sum,
                    b[0] as i64,
                    b[1] as i64,
                    b[2] as i64,
                    b[3] as i64,
                    b[4] as i64,
                    b[5] as i64,
                    b[6] as i64,
                    b[7] as i64,
                    b[8] as i64,
                    b[9] as i64,
                    b[10] as i64,
                    b[11] as i64,
                    b[12] as i64
                ])
                .map_err(&sql)?;
                dims.entry(key).or_insert(dim_id);
            }
            drop(dims);
        }
        let committed = tx.commit();
        if committed.is_err() {
            // Ids handed out in the failed transaction may be reused for other dimensions.
            self.inner
                .dims
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
        committed.map_err(&sql)
    }

    /// Deletes what the retention no longer keeps, if the last prune was 30 s or more ago.
    fn prune_if_due(&self, now_ms: i64) -> Result<(), Error> {
        {
            let mut last = self
                .inner
                .last_prune_ms
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if now_ms - *last < 30_000 {
                return Ok(());
            }
            *last = now_ms;
        }
        self.prune(now_ms).map(|_| ())
    }

    /// Deletes raw events older than the retention's raw age, then the oldest raw
    /// events while the store's live pages exceed its size, and rollups older than
    /// the rollup age. `now_ms` is the current unix time in ms.
    pub fn prune(&self, now_ms: i64) -> Result<PruneReport, Error> {
        let sql = self.sql();
        let r = self.inner.retention;
        let conn = self.writer();
        let mut report = PruneReport::default();
        let raw_cutoff = now_ms.saturating_sub(r.raw_max_age.as_millis() as i64);
        report.raw_by_age = conn
            .execute("DELETE FROM events WHERE time_ms < ?1", [raw_cutoff])
            .map_err(&sql)? as u64;
        let rollup_cutoff = minute_of(now_ms.saturating_sub(r.rollup_max_age.as_millis() as i64));
        report.rollups = conn
            .execute("DELETE FROM rollups WHERE minute_ms < ?1", [rollup_cutoff])
            .map_err(&sql)? as u64;
        // Size: freed pages are reused, so deleting the oldest raw events keeps the
        // file from growing past the limit (it does not shrink without VACUUM).
        for _ in 0..8 {
            let used = live_bytes(&conn).map_err(&sql)?;
            if used <= r.max_bytes {
                break;
            }
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
                .map_err(&sql)?;
            if rows == 0 {
                break;
            }
            // Delete the share of rows that brings the size to 90% of the limit.
            let keep = (r.max_bytes as f64 * 0.9) / used as f64;
            let delete = ((rows as f64) * (1.0 - keep)).ceil().max(1.0) as i64;
            let n = conn
                .execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
                    [delete],
                )
                .map_err(&sql)?;
            report.raw_by_size += n as u64;
        }
        Ok(report)
    }

    /// Bytes in the store's pages that hold data (the file minus its free pages).
    pub fn live_bytes(&self) -> Result<u64, Error> {
        live_bytes(&self.reader()).map_err(self.sql())
    }

    /// Per-minute counts of events matching `expr` in the minutes that start in
    /// `[from_ms, to_ms)`, optionally for one service. Minutes with no events are omitted.
    ///
    /// Answered from the rollups when every condition in `expr` is on `service`,
    /// `route`, `release`, `cohort`, `status` with a bound that does not split a
    /// status class (`status >= 500`, `status < 400`, not `status = 503`), or
    /// `duration_ms` with a bound on a bucket edge (`duration_ms <= 300`,
    /// `duration_ms > 1000`, not `duration_ms < 300`); otherwise by scanning raw events.
    pub fn minute_counts(
        &self,
        service: Option<&str>,
        expr: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCount>, Error> {
        Ok(self
            .minute_counts_many(service, &[expr], from_ms, to_ms)?
            .into_iter()
            .filter(|m| m.counts[0] > 0)
            .map(|m| MinuteCount {
                minute_ms: m.minute_ms,
                count: m.counts[0],
            })
            .collect())
    }

    /// [`Store::minute_counts`] of several expressions in one pass over the
    /// data: for each minute with an event matching any of them, the count of
    /// each (in the order given). From the rollups when every expression can
    /// be answered there, else from one scan of the raw events.
    pub fn minute_counts_many(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCounts>, Error> {
        if exprs.iter().all(|e| rollup_answerable(&e.node)) {
            return self.minute_counts_rollup(service, exprs, from_ms, to_ms);
        }
        let mut counts: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
        self.scan(ceil_minute(from_ms), ceil_minute(to_ms), service, |e| {
            for (i, x) in exprs.iter().enumerate() {
                if x.matches(&e.event) {
                    counts
                        .entry(minute_of(e.event.time_ms))
                        .or_insert_with(|| vec![0; exprs.len()])[i] += 1;
                }
            }
            true
        })?;
        Ok(counts
            .into_iter()
            .map(|(minute_ms, counts)| MinuteCounts { minute_ms, counts })
            .collect())
    }

    /// The number of events matching each expression in the minutes that
    /// start in `[from_ms, to_ms)`: the sums of [`Store::minute_counts_many`],
    /// added up by SQLite without a row per minute (from the rollups when every
    /// expression can be answered there).
    pub fn sums(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<u64>, Error> {
        if !exprs.iter().all(|e| rollup_answerable(&e.node)) {
            let mut out = vec![0u64; exprs.len()];
            for m in self.minute_counts_many(service, exprs, from_ms, to_ms)? {
                for (o, n) in out.iter_mut().zip(m.counts) {
                    *o += n;
                }
            }
            return Ok(out);
        }
        let sql = self.sql();
        let conn = self.reader();
        let dims = dim_buckets(&conn, service, exprs).map_err(&sql)?;
        let Some((cases, ids)) = rollup_cases(&dims, exprs.len()) else {
            return Ok(vec![0; exprs.len()]);
        };
        let sums: Vec<String> = cases.iter().map(|c| format!("SUM({c})")).collect();
        let q = format!(
            "SELECT {} FROM rollups WHERE dim_id IN ({ids}) AND minute_ms >= ?1 AND minute_ms < ?2",
            sums.join(", ")
        );
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let row = stmt
            .query_row([from_ms, to_ms], |r| {
                (0..exprs.len())
                    .map(|i| Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64))
                    .collect::<rusqlite::Result<Vec<u64>>>()
            })
            .map_err(&sql)?;
        Ok(row)
    }

    /// Whether every event `inner` matches is also matched by `outer`, as the
    /// rollups tell it: both are answered from the rollups and, in every
    /// dimension (of `service`) and latency bucket, `inner` counts nothing
    /// `outer` does not. Then `inner`'s count is at most `outer`'s in any
    /// minute, and a difference of sums equals the sum of the per-minute
    /// differences. False when it cannot be shown.
    pub fn contained(
        &self,
        service: Option<&str>,
        inner: &Expr,
        outer: &Expr,
    ) -> Result<bool, Error> {
        if !rollup_answerable(&inner.node) || !rollup_answerable(&outer.node) {
            return Ok(false);
        }
        let conn = self.reader();
        let dims = dim_buckets(&conn, service, &[inner, outer]).map_err(self.sql())?;
        Ok(dims.iter().all(|(_, m)| m[0] & !m[1] == 0))
    }

    /// Per minute that starts in `[from_ms, to_ms)` and has events matching
    /// `filter` (optionally of one service): their count, summed duration and
    /// latency histogram, from the rollups. `None` when the rollups cannot
    /// answer exactly: `filter` has a condition the rollups do not keep, or
    /// splits a dimension's events by latency (`duration_ms` in a filter would
    /// leave the summed duration of other buckets in). The rows of a minute are
    /// merged: `service` is the one asked for (empty for all), the other
    /// dimensions are empty.
    pub fn minute_histograms(
        &self,
        service: Option<&str>,
        filter: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<Rollup>>, Error> {
        if !rollup_answerable(&filter.node) {
            return Ok(None);
        }
        const ALL: u16 = (1 << BUCKET_BOUNDS_MS.len()) - 1;
        let sql = self.sql();
        let conn = self.reader();
        let dims = dim_buckets(&conn, service, &[filter]).map_err(&sql)?;
        if dims.iter().any(|(_, m)| m[0] != 0 && m[0] != ALL) {
            return Ok(None);
        }
        let ids: Vec<String> = dims
            .iter()
            .filter(|(_, m)| m[0] == ALL)
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let q = format!(
            "SELECT minute_ms, count, sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, \
             b10, b11, b12 FROM rollups WHERE dim_id IN ({}) AND minute_ms >= ?1 AND minute_ms < ?2",
            ids.join(",")
        );
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let mut rows = stmt.query([from_ms, to_ms]).map_err(&sql)?;
        let mut by_minute: std::collections::BTreeMap<i64, Rollup> = Default::default();
        while let Some(r) = rows.next().map_err(&sql)? {
            let minute_ms: i64 = r.get(0).map_err(&sql)?;
            let m = by_minute.entry(minute_ms).or_insert_with(|| Rollup {
                minute_ms,
                service: service.unwrap_or_default().to_string(),
                route: String::new(),
                release: String::new(),
                cohort: String::new(),
                status_class: 0,
                count: 0,
                sum_duration_ms: 0.0,
                buckets: [0; 13],
            });
            m.count += r.get::<_, i64>(1).map_err(&sql)?.max(0) as u64;
            m.sum_duration_ms += r.get::<_, f64>(2).map_err(&sql)?;
            for (i, b) in m.buckets.iter_mut().enumerate() {
                *b += r.get::<_, i64>(3 + i).map_err(&sql)?.max(0) as u64;
            }
        }
        Ok(Some(
            by_minute.into_values().filter(|m| m.count > 0).collect(),
        ))
    }

    /// Whether [`Store::minute_counts`] answers `expr` from the rollups.
    pub fn uses_rollups(expr: &Expr) -> bool {
        rollup_answerable(&expr.node)
    }

    /// [`Store::minute_counts`] answered by scanning raw events (for checking the rollups).
    pub fn minute_counts_raw(
        &self,
        service: Option<&str>,
        expr: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCount>, Error> {
        let mut counts: std::collections::BTreeMap<i64, u64> = Default::default();
        self.scan(ceil_minute(from_ms), ceil_minute(to_ms), service, |e| {
            if expr.matches(&e.event) {
                *counts.entry(minute_of(e.event.time_ms)).or_default() += 1;
            }
            true
        })?;
        Ok(counts
            .into_iter()
            .map(|(minute_ms, count)| MinuteCount { minute_ms, count })
            .collect())
    }

    fn minute_counts_rollup(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCounts>, Error> {
        let sql = self.sql();
        let conn = self.reader();
        let dims = dim_buckets(&conn, service, exprs).map_err(&sql)?;
        let Some((cases, ids)) = rollup_cases(&dims, exprs.len()) else {
            return Ok(Vec::new());
        };
        // The rows come straight off the table's (dim_id, minute_ms) key and are
        // summed per minute here: a SQL `GROUP BY minute_ms` over several dimensions
        // sorts every row through a temporary b-tree.
        let q = format!(
            "SELECT minute_ms, {} FROM rollups WHERE dim_id IN ({ids}) \
             AND minute_ms >= ?1 AND minute_ms < ?2",
            cases.join(", ")
        );
        let k = exprs.len();
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let mut rows = stmt.query([from_ms, to_ms]).map_err(&sql)?;
        // Flat: minute, then k counts per row.
        let mut all: Vec<(i64, usize)> = Vec::new();
        let mut flat: Vec<u64> = Vec::new();
        while let Some(r) = rows.next().map_err(&sql)? {
            let start = flat.len();
            let mut any = false;
            for i in 0..k {
                let n = r.get::<_, i64>(1 + i).map_err(&sql)?.max(0) as u64;
                any |= n > 0;
                flat.push(n);
            }
            if any {
                all.push((r.get(0).map_err(&sql)?, start));
            } else {
                flat.truncate(start);
            }
        }
        all.sort_unstable_by_key(|&(minute_ms, _)| minute_ms);
        let mut out: Vec<MinuteCounts> = Vec::new();
        for (minute_ms, start) in all {
            let row = &flat[start..start + k];
            match out.last_mut() {
                Some(last) if last.minute_ms == minute_ms => {
                    for (c, n) in last.counts.iter_mut().zip(row) {
                        *c += n;
                    }
                }
                _ => out.push(MinuteCounts {
                    minute_ms,
                    counts: row.to_vec(),
                }),
            }
        }
        Ok(out)
    }
    /// Rollup rows for the minutes that start in `[from_ms, to_ms)`, optionally for one service.
    pub fn rollups(
        &self,
        service: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, Error> {
        let sql = self.sql();
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.minute_ms, d.service, d.route, d.release, d.cohort, d.status_class, r.count, \
                 r.sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12 \
                 FROM rollups r JOIN rollup_dims d ON d.id = r.dim_id \
                 WHERE r.minute_ms >= ?1 AND r.minute_ms < ?2 AND (?3 IS NULL OR d.service = ?3) \
                 ORDER BY r.minute_ms, d.id",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![from_ms, to_ms, service], |r| {
                let mut buckets = [0u64; 13];
                for (i, b) in buckets.iter_mut().enumerate() {
                    *b = r.get::<_, i64>(8 + i)? as u64;
                }
                Ok(Rollup {
                    minute_ms: r.get(0)?,
                    service: r.get(1)?,
                    route: r.get(2)?,
                    release: r.get(3)?,
                    cohort: r.get(4)?,
                    status_class: r.get(5)?,
                    count: r.get::<_, i64>(6)? as u64,
                    sum_duration_ms: r.get(7)?,
                    buckets,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sql)
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
}

fn live_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(((pages - free).max(0) * size) as u64)
}

fn write_fields_json(fields: &std::collections::BTreeMap<String, String>, out: &mut String) {
    if fields.is_empty() {
        out.push_str("{}");
    } else {
        out.push_str(&serde_json::to_string(fields).unwrap_or_else(|_| "{}".into()));
    }
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
            service: r.get(2)?,
            method: r.get(3)?,
            route: r.get(4)?,
            path: r.get(5)?,
            status: r.get(6)?,
            duration_ms: r.get(7)?,
            upstream_ms: r.get(8)?,
            bytes_in: r.get::<_, i64>(9)? as u64,
            bytes_out: r.get::<_, i64>(10)? as u64,
            release: r.get(11)?,
            instance: r.get(12)?,
            cohort: r.get(13)?,
            user: r.get(14)?,
            trace_id: r.get(15)?,
            error: r.get(16)?,
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

/// For every rollup dimension (of `service`, when given), its id and, per
/// expression, the latency buckets whose events it counts (bit `i`: bucket
/// `i`). The expressions must be answerable from the rollups: within a status
/// class and a bucket they are constant, so one representative value of each
/// decides.
fn dim_buckets(
    conn: &Connection,
    service: Option<&str>,
    exprs: &[&Expr],
) -> rusqlite::Result<Vec<(i64, Vec<u16>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, service, route, release, cohort, status_class FROM rollup_dims",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let svc: String = r.get(1)?;
        if service.is_some_and(|s| s != svc) {
            continue;
        }
        let route: String = r.get(2)?;
        let release: String = r.get(3)?;
        let cohort: String = r.get(4)?;
        let class: u16 = r.get(5)?;
        let masks = exprs
            .iter()
            .map(|expr| {
                let mut mask = 0u16;
                for (i, bound) in BUCKET_BOUNDS_MS.iter().enumerate() {
                    let duration = if bound.is_finite() { *bound } else { f64::MAX };
                    let get = |f: &Field| -> Value<'_> {
                        match f {
                            Field::Column(Column::Service) => Value::Str(&svc),
                            Field::Column(Column::Route) => Value::Str(&route),
                            Field::Column(Column::Release) => Value::Str(&release),
                            Field::Column(Column::Cohort) => Value::Str(&cohort),
                            Field::Column(Column::Status) => Value::Num(f64::from(class) * 100.0),
                            Field::Column(Column::DurationMs) => Value::Num(duration),
                            _ => Value::Missing,
                        }
                    };
                    if eval(&expr.node, &get) {
                        mask |= 1 << i;
                    }
                }
                mask
            })
            .collect();
        out.push((id, masks));
    }
    Ok(out)
}

/// One SQL `CASE` per expression summing, for each dimension, the buckets it
/// counts (`count` for all of them), and the ids of the dimensions any of them
/// reads; `None` when none does. Ids and column names are generated, never
/// user text.
fn rollup_cases(dims: &[(i64, Vec<u16>)], k: usize) -> Option<(Vec<String>, String)> {
    const ALL: u16 = (1 << BUCKET_BOUNDS_MS.len()) - 1;
    let ids: Vec<String> = dims
        .iter()
        .filter(|(_, m)| m.iter().any(|&b| b != 0))
        .map(|(id, _)| id.to_string())
        .collect();
    if ids.is_empty() {
        return None;
    }
    let cases = (0..k)
        .map(|i| {
            let mut by_mask: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
            for (id, m) in dims {
                if m[i] != 0 {
                    by_mask.entry(m[i]).or_default().push(id.to_string());
                }
            }
            if by_mask.is_empty() {
                return "0".to_string();
            }
            let mut case = String::from("CASE");
            for (mask, ids) in &by_mask {
                let sum = if *mask == ALL {
                    "count".to_string()
                } else {
                    (0..BUCKET_BOUNDS_MS.len())
                        .filter(|b| mask & (1 << b) != 0)
                        .map(|b| format!("b{b}"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                };
                case.push_str(&format!(" WHEN dim_id IN ({}) THEN {sum}", ids.join(",")));
            }
            case.push_str(" ELSE 0 END");
            case
        })
        .collect();
    Some((cases, ids.join(",")))
}

/// Whether every condition in `n` is decided by the rollup dimensions alone.
fn rollup_answerable(n: &Node) -> bool {
    match n {
        Node::Or(a, b) | Node::And(a, b) => rollup_answerable(a) && rollup_answerable(b),
        Node::Not(a) => rollup_answerable(a),
        Node::Exists(Field::Column(c)) => matches!(
            c,
            Column::Service
                | Column::Route
                | Column::Release
                | Column::Cohort
                | Column::Status
                | Column::DurationMs
        ),
        Node::Exists(Field::Custom(_)) => false,
        Node::Cmp(f, op, lit) => atom_answerable(f, *op, lit),
        Node::In(f, lits) => lits.iter().all(|l| atom_answerable(f, Op::Eq, l)),
    }
}

fn atom_answerable(f: &Field, op: Op, lit: &Lit) -> bool {
    match f {
        Field::Column(Column::Service | Column::Route | Column::Release | Column::Cohort) => true,
        Field::Column(Column::Status) => {
            // Constant within every status class.
            (0u32..=655).all(|class| {
                let lo = class * 100;
                let hi = (lo + 99).min(u32::from(u16::MAX));
                let first = crate::expr::compare(&Value::Num(f64::from(lo)), op, lit);
                (lo..=hi).all(|s| crate::expr::compare(&Value::Num(f64::from(s)), op, lit) == first)
            })
        }
        Field::Column(Column::DurationMs) => {
            let Lit::Num(x) = lit else { return false };
            let x = *x;
            // Constant on every bucket (lo, hi].
            let mut lo = f64::NEG_INFINITY;
            BUCKET_BOUNDS_MS.iter().all(|&hi| {
                let ok = match op {
                    Op::Le | Op::Gt => x <= lo || x >= hi,
                    Op::Lt | Op::Ge => x <= lo || x > hi,
                    Op::Eq | Op::Ne => x <= lo || x > hi,
                    Op::Contains => false,
                };
                lo = hi;
                ok
            })
        }
        _ => false,
    }
}

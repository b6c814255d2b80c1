//! Writing: batches of events with their rollups in one transaction, the
//! recorder's writer thread, and retention.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::params;
use tokio::sync::mpsc::error::TryRecvError;

use super::{bucket_index, live_bytes, minute_of, now_ms, DimKey, PruneReport, Store};
use crate::recorder::{Counters, Recorder, RecorderTask};
use crate::{Error, Event};

/// How often the recorder's writer thread takes what is queued while events
/// flow. Each wake-up is one transaction, and each commit rewrites the
/// partly filled last pages of the table and its index into the WAL, so
/// fewer, larger batches cost less per event (5 ms → 25 ms: 1.63 → 1.41 µs
/// of writer CPU per proxied request). A longer batch need not stall the
/// request path: the thread runs at [`WRITER_NICE`], so a woken worker
/// takes its core. At 20,000 requests/s the proxy's p99 stayed inside its
/// round-to-round spread (medians of seven alternating rounds 4.20 ms
/// against 3.94 ms at 5 ms, single rounds of either 3.3–4.5 ms).
const FLUSH_BUSY: Duration = Duration::from_millis(25);
/// How long it waits after finding the queue empty.
const FLUSH_IDLE: Duration = Duration::from_millis(50);
/// Events written per transaction at most.
const BATCH: usize = 4096;
/// Dimension rows a prune deletes at most (the rest go at the next prunes).
const DIMS_PER_PRUNE: u64 = 10_000;
/// The writer thread's niceness: below the request path's (0), so a worker
/// woken by traffic takes a core from the writer at once instead of waiting
/// out its batch. At nice 10 it still gets about a tenth of a core that
/// others want, several times what a saturated proxy's events need.
pub const WRITER_NICE: i32 = 10;

impl Store {
    /// Starts the writer thread (`capstan-events`, at nice [`WRITER_NICE`])
    /// with a queue of `capacity` events. Every 25 ms while events flow (50 ms
    /// once the queue is found empty) the thread takes what is queued and
    /// writes it in batches of at most 4,096 events; it prunes by the
    /// retention at most every 30 s, and ends when every [`Recorder`] clone is
    /// dropped and the queue is written.
    ///
    /// The thread drains the queue on its own clock instead of waiting on it,
    /// so [`Recorder::record`] never wakes it: a request path recording tens of
    /// thousands of events a second pays a queue push each, not a cross-thread
    /// wake-up and a context switch. It is a thread of its own, not a task: its
    /// only wake-up is its own clock's, and its priority can be lowered without
    /// touching a runtime's threads.
    pub fn spawn_recorder(self, capacity: usize) -> (Recorder, RecorderTask) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Event>(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("capstan-events".into())
            .spawn(move || {
                lower_priority();
                self.write_until_closed(rx, &thread_counters);
                // This handle on the store goes before the news: a caller
                // that waited is not racing the thread's last use of it.
                drop(self);
                let _ = done_tx.send(());
            })
            .expect("start the event writer thread");
        (
            Recorder {
                tx,
                counters: counters.clone(),
            },
            RecorderTask { done, counters },
        )
    }

    /// The writer thread's loop: wait, write what is queued, until every
    /// sender is gone and the queue is empty.
    fn write_until_closed(&self, mut rx: tokio::sync::mpsc::Receiver<Event>, counters: &Counters) {
        let mut wait = FLUSH_IDLE;
        let mut batch = Vec::new();
        loop {
            std::thread::sleep(wait);
            wait = FLUSH_IDLE;
            let mut closed = false;
            loop {
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                }
                let full = batch.len() == BATCH;
                if !batch.is_empty() {
                    wait = FLUSH_BUSY;
                    self.write_queued(&batch, counters);
                    batch.clear();
                }
                if !full {
                    break;
                }
            }
            if closed {
                return;
            }
        }
    }

    /// Writes one batch from the queue, counts it as stored or failed, and
    /// prunes when due.
    fn write_queued(&self, batch: &[Event], counters: &Counters) {
        let n = batch.len() as u64;
        match self.insert_batch(batch) {
            Ok(()) => counters.stored.fetch_add(n, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!("event store: {n} events not written: {e}");
                counters.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
        if let Err(e) = self.prune_if_due(now_ms()) {
            tracing::warn!("event store: pruning failed: {e}");
        }
    }

    /// Writes events in one transaction, updating the rollups in the same transaction.
    pub fn insert_batch(&self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = self.sql();
        // Rollup deltas for the batch, keyed by minute and dimensions. Events
        // come in runs of one key (one route, one release), so each is first
        // compared with the previous event's key: equal strings, no hashing.
        type Key<'a> = (i64, &'a str, &'a str, &'a str, &'a str, u16);
        /// Count, summed duration and histogram buckets of one key.
        type Delta = (u64, f64, [u64; 13]);
        let mut deltas: Vec<(Key<'_>, Delta)> = Vec::new();
        let mut index: HashMap<Key<'_>, usize> = HashMap::new();
        let mut last = usize::MAX;
        for e in events {
            let key = (
                minute_of(e.time_ms),
                e.service.as_str(),
                e.route.as_str(),
                e.release.as_str(),
                e.cohort.as_str(),
                e.status / 100,
            );
            if deltas.get(last).is_none_or(|(k, _)| *k != key) {
                last = *index.entry(key).or_insert_with(|| {
                    deltas.push((key, (0, 0.0, [0; 13])));
                    deltas.len() - 1
                });
            }
            let d = &mut deltas[last].1;
            d.0 += 1;
            d.1 += e.duration_ms;
            d.2[bucket_index(e.duration_ms)] += 1;
        }
        let mut conn = self.writer();
        let tx = conn.transaction().map_err(&sql)?;
        // Dimensions this batch adds to `rollup_dims`, cached once it commits.
        let mut new_dims: HashMap<DimKey, i64> = HashMap::new();
        {
            // Rows go in ROWS at a time: one statement step writes them all,
            // so the per-statement work (reset, step, affinity checks) is paid
            // once per ROWS events instead of once per event.
            let mut many = tx.prepare_cached(&INSERT_MANY).map_err(&sql)?;
            let mut one = tx.prepare_cached(&INSERT_ONE).map_err(&sql)?;
            let mut fields_json = String::new();
            let mut groups = events.chunks_exact(ROWS);
            for group in &mut groups {
                for (i, e) in group.iter().enumerate() {
                    bind_event(&mut many, i * COLUMNS, e, &mut fields_json).map_err(&sql)?;
                }
                many.raw_execute().map_err(&sql)?;
            }
            for e in groups.remainder() {
                bind_event(&mut one, 0, e, &mut fields_json).map_err(&sql)?;
                one.raw_execute().map_err(&sql)?;
            }
            // The write lock is held now (the inserts took it): the generation
            // read here stays current until the commit.
            let generation: i64 = tx
                .prepare_cached("SELECT value FROM store_meta WHERE key = 'dims_generation'")
                .and_then(|mut q| q.query_row([], |r| r.get(0)))
                .map_err(&sql)?;
            let mut cache = self.inner.dims.lock().unwrap_or_else(|p| p.into_inner());
            if cache.generation != Some(generation) {
                cache.ids.clear();
                cache.generation = Some(generation);
            }
            let dims = &cache.ids;
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
                let dim_id = match dims.get(&key).or_else(|| new_dims.get(&key)) {
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
                        new_dims.insert(key, id);
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
            }
            drop(cache);
        }
        tx.commit().map_err(&sql)?;
        // Only now are the new dimension rows there for good: an id learnt in a
        // transaction that was rolled back may be handed to another dimension.
        // (This process's prunes wait for the writer connection held here.)
        self.inner
            .dims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .extend(new_dims);
        Ok(())
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

    /// Deletes raw events older than the retention's raw age and rollups older
    /// than the rollup age, then the oldest raw events while the store's live
    /// pages exceed its size. The newest raw event always stays. When the store
    /// is still over its size with only that event left, the oldest rollup
    /// minutes go too, once per call, never the kept event's minute or the
    /// current one. When rollup rows went, so do the dimension rows no rollup
    /// row uses any more. `now_ms` is the current unix time in ms.
    pub fn prune(&self, now_ms: i64) -> Result<PruneReport, Error> {
        let sql = self.sql();
        let r = self.inner.retention;
        let conn = self.writer();
        let mut report = PruneReport::default();
        let raw_cutoff = now_ms.saturating_sub(millis(r.raw_max_age));
        // Neither delete takes the newest row: ids are `max(id) + 1`, so
        // without it the next event would take an id a follower of
        // `events_after` or `outcomes` has already seen, and be skipped.
        report.raw_by_age = conn
            .execute(
                "DELETE FROM events WHERE time_ms < ?1 AND id < (SELECT max(id) FROM events)",
                [raw_cutoff],
            )
            .map_err(&sql)? as u64;
        let rollup_cutoff = minute_of(now_ms.saturating_sub(millis(r.rollup_max_age)));
        report.rollups = conn
            .execute("DELETE FROM rollups WHERE minute_ms < ?1", [rollup_cutoff])
            .map_err(&sql)? as u64;
        // Size: freed pages are reused, so deleting the oldest raw events keeps the
        // file from growing past the limit (it does not shrink without VACUUM).
        for _ in 0..16 {
            let used = live_bytes(&conn).map_err(&sql)?;
            if used <= r.max_bytes {
                break;
            }
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
                .map_err(&sql)?;
            // Delete the share of rows that brings the size to 90% of the limit.
            let keep = (r.max_bytes as f64 * 0.9) / used as f64;
            if rows <= 1 {
                // The rollups alone are over the size (many routes: a path that
                // matches no template is its own route). Their oldest minutes
                // go, whole minutes, about the same share of their rows, and
                // only once per call: deleting old minutes thins every
                // dimension's pages before it empties any, so the pages freed
                // show later; the next prune measures again. The kept event's
                // minute and the current one stay, so rollups and raw events
                // still agree where both are kept.
                let kept_event_ms: Option<i64> = conn
                    .query_row("SELECT min(time_ms) FROM events", [], |row| row.get(0))
                    .map_err(&sql)?;
                let floor = minute_of(kept_event_ms.unwrap_or(now_ms).min(now_ms));
                report.rollups_by_size +=
                    prune_oldest_rollups(&conn, 1.0 - keep, floor).map_err(&sql)?;
                break;
            }
            let delete = ((rows as f64) * (1.0 - keep)).ceil().max(1.0) as i64;
            let n = conn
                .execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1) \
                     AND id < (SELECT max(id) FROM events)",
                    [delete],
                )
                .map_err(&sql)?;
            report.raw_by_size += n as u64;
        }
        let backlog = self
            .inner
            .dims_backlog
            .load(std::sync::atomic::Ordering::Relaxed);
        if report.rollups + report.rollups_by_size > 0 || backlog {
            report.dims = self.prune_dims(&conn).map_err(&sql)?;
        }
        Ok(report)
    }

    /// Deletes the dimension rows no rollup row uses any more, and bumps
    /// `dims_generation` in the same transaction when it deleted any, so
    /// that every writer (this one and other processes') drops the ids it
    /// cached before it writes again; the rows deleted.
    ///
    /// The row with the highest id stays, used or not: new ids are
    /// `max(id) + 1`, so no id ever names a second dimension, even for a
    /// writer of an older version that does not read the generation.
    fn prune_dims(&self, conn: &rusqlite::Connection) -> rusqlite::Result<u64> {
        // At most DIMS_PER_PRUNE rows per prune, the rest at the next ones:
        // the first prune of a store with many dead dimensions does not hold
        // the write lock long enough for other writers' busy timeouts to run
        // out (back-to-back transactions would not let them in either).
        let tx =
            rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
        // The rollups' key starts with `dim_id`: one seek per dimension.
        let n = tx.execute(
            "DELETE FROM rollup_dims WHERE id IN (SELECT id FROM rollup_dims \
             WHERE id < (SELECT max(id) FROM rollup_dims) AND NOT EXISTS \
             (SELECT 1 FROM rollups WHERE rollups.dim_id = rollup_dims.id) LIMIT ?1)",
            [DIMS_PER_PRUNE],
        )? as u64;
        if n > 0 {
            tx.execute(
                "UPDATE store_meta SET value = value + 1 WHERE key = 'dims_generation'",
                [],
            )?;
        }
        tx.commit()?;
        // Every writer's cached ids (this one's too) go at its next batch,
        // which finds the generation moved.
        self.inner
            .dims_backlog
            .store(n == DIMS_PER_PRUNE, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Puts the calling thread in the normal time-sharing policy at nice
/// [`WRITER_NICE`], whatever policy it inherited (a real-time one would
/// put it above the request path); where that is refused the writer runs
/// as it is (logged).
fn lower_priority() {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityValue};
    // thread-priority maps 0..=99 onto nice 19..=-20: 22 is nice 10 (a test
    // reads the thread's niceness back).
    let value = ThreadPriorityValue::try_from(22u8).expect("0..=99");
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
    ) {
        tracing::warn!("event writer keeps its priority: {e:?}");
    }
}

/// Deletes the rollup rows of the oldest minutes before `floor_ms`: about
/// `share` of all rows, at least one minute unless none is before
/// `floor_ms`; the rows deleted.
fn prune_oldest_rollups(
    conn: &rusqlite::Connection,
    share: f64,
    floor_ms: i64,
) -> rusqlite::Result<u64> {
    let rows: i64 = conn.query_row("SELECT count(*) FROM rollups", [], |r| r.get(0))?;
    if rows == 0 {
        return Ok(0);
    }
    let skip = ((rows as f64 * share).ceil() as i64).clamp(1, rows) - 1;
    // The minute of the row at that place in minute order: it and every
    // older minute go, none from `floor_ms` on.
    let last: i64 = conn.query_row(
        "SELECT minute_ms FROM rollups ORDER BY minute_ms LIMIT 1 OFFSET ?1",
        [skip],
        |r| r.get(0),
    )?;
    Ok(conn.execute(
        "DELETE FROM rollups WHERE minute_ms <= ?1 AND minute_ms < ?2",
        [last, floor_ms],
    )? as u64)
}

/// `d` in milliseconds, saturating: a retention of a billion years keeps
/// everything instead of wrapping to a negative age that deletes everything.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Events per multi-row insert.
const ROWS: usize = 16;
/// Columns each event binds.
const COLUMNS: usize = 18;

/// `INSERT OR FAIL INTO events (...) VALUES (...)` for `rows` rows.
///
/// `OR FAIL` instead of the default `ABORT`: a failed row leaves the
/// statement's earlier rows in place instead of undoing them, so SQLite opens
/// no statement journal for the insert and copies no page into one. This is
/// safe only because [`Store::insert_batch`] never carries on after an error:
/// every error leaves it before the commit, and the dropped transaction rolls
/// the whole batch back.
fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; COLUMNS].join(", "));
    format!(
        "INSERT OR FAIL INTO events (time_ms, service, method, route, path, status, duration_ms, \
         upstream_ms, bytes_in, bytes_out, release, instance, cohort, user, trace_id, error, \
         mirror, fields) VALUES {}",
        vec![row.as_str(); rows].join(", ")
    )
}

static INSERT_ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));
static INSERT_MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(ROWS));

/// Binds `e` to the parameters after `offset` (0-based) of an insert;
/// `fields_json` is room for its fields' JSON, reused from event to event
/// (SQLite copies bound text).
fn bind_event(
    st: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    e: &Event,
    fields_json: &mut String,
) -> rusqlite::Result<()> {
    fields_json.clear();
    write_fields_json(&e.fields, fields_json);
    let mirror = e
        .mirror
        .as_ref()
        .map(|m| serde_json::to_string(m).unwrap_or_default());
    let at = |i: usize| offset + i;
    st.raw_bind_parameter(at(1), e.time_ms)?;
    st.raw_bind_parameter(at(2), e.service.as_str())?;
    st.raw_bind_parameter(at(3), e.method.as_str())?;
    st.raw_bind_parameter(at(4), e.route.as_str())?;
    st.raw_bind_parameter(at(5), e.path.as_str())?;
    st.raw_bind_parameter(at(6), e.status)?;
    st.raw_bind_parameter(at(7), e.duration_ms)?;
    st.raw_bind_parameter(at(8), e.upstream_ms)?;
    st.raw_bind_parameter(at(9), e.bytes_in as i64)?;
    st.raw_bind_parameter(at(10), e.bytes_out as i64)?;
    st.raw_bind_parameter(at(11), e.release.as_str())?;
    st.raw_bind_parameter(at(12), e.instance.as_str())?;
    st.raw_bind_parameter(at(13), e.cohort.as_str())?;
    st.raw_bind_parameter(at(14), e.user.as_deref())?;
    st.raw_bind_parameter(at(15), e.trace_id.as_deref())?;
    st.raw_bind_parameter(at(16), e.error.as_deref())?;
    st.raw_bind_parameter(at(17), mirror)?;
    st.raw_bind_parameter(at(18), fields_json.as_str())?;
    Ok(())
}

fn write_fields_json(fields: &std::collections::BTreeMap<String, String>, out: &mut String) {
    if fields.is_empty() {
        out.push_str("{}");
    } else {
        out.push_str(&serde_json::to_string(fields).unwrap_or_else(|_| "{}".into()));
    }
}

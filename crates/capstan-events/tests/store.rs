//! The store: rollups agree with raw scans and with counts computed here; retention;
//! the recorder writes everything it accepted and counts what it dropped.

mod common;

use std::time::Duration;

use capstan_events::{minute_of, Event, Expr, Retention, Store};
use common::{generate, temp_store, T0};

fn independent(
    events: &[Event],
    service: Option<&str>,
    pred: impl Fn(&Event) -> bool,
) -> Vec<(i64, u64)> {
    let mut m = std::collections::BTreeMap::new();
    for e in events {
        if service.is_none_or(|s| e.service == s) && pred(e) {
            *m.entry(minute_of(e.time_ms)).or_insert(0u64) += 1;
        }
    }
    m.into_iter().collect()
}

fn recent(mut events: Vec<Event>) -> Vec<Event> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for e in &mut events {
        e.time_ms = e.time_ms - T0 + now - 600_000;
    }
    events
}

fn pairs(v: Vec<capstan_events::MinuteCount>) -> Vec<(i64, u64)> {
    v.into_iter().map(|c| (c.minute_ms, c.count)).collect()
}

#[test]
fn minute_counts_from_rollups_and_raw_agree_with_independent_counts() {
    let (_dir, store) = temp_store();
    let events = generate(8_000, 30, 7);
    for chunk in events.chunks(3000) {
        store.insert_batch(chunk).unwrap();
    }
    type Pred = fn(&Event) -> bool;
    let cases: Vec<(&str, bool, Pred)> = vec![
        ("status >= 500", true, |e| e.status >= 500),
        ("status < 500", true, |e| e.status < 500),
        ("duration_ms <= 300", true, |e| e.duration_ms <= 300.0),
        ("status < 500 and duration_ms <= 300", true, |e| {
            e.status < 500 && e.duration_ms <= 300.0
        }),
        (
            r#"release = "2.0.0" and not (cohort = "internal") and duration_ms > 100"#,
            true,
            |e| e.release == "2.0.0" && e.cohort != "internal" && e.duration_ms > 100.0,
        ),
        (
            r#"route in ("/api/chirps", "/api/users") or status >= 400 and status < 500"#,
            true,
            |e| {
                e.route == "/api/chirps"
                    || e.route == "/api/users"
                    || (400..500).contains(&e.status)
            },
        ),
        // Not answerable from rollups: raw scan.
        ("status = 503", false, |e| e.status == 503),
        ("duration_ms < 300", false, |e| e.duration_ms < 300.0),
        (r#"plan = "pro""#, false, |e| {
            e.fields.get("plan").is_some_and(|p| p == "pro")
        }),
        (r#"route ~ "chirps" and method = "GET""#, false, |e| {
            e.route.contains("chirps") && e.method == "GET"
        }),
    ];
    let (from, to) = (T0 + 5 * 60_000, T0 + 25 * 60_000);
    for (src, rollup, pred) in cases {
        let expr = Expr::parse(src).unwrap();
        assert_eq!(Store::uses_rollups(&expr), rollup, "{src}");
        for service in [None, Some("chirpy")] {
            let windowed: Vec<Event> = events
                .iter()
                .filter(|e| e.time_ms >= from && e.time_ms < to)
                .cloned()
                .collect();
            let want = independent(&windowed, service, pred);
            assert!(!want.is_empty(), "{src}");
            let got = pairs(store.minute_counts(service, &expr, from, to).unwrap());
            assert_eq!(got, want, "{src} {service:?}");
            let raw = pairs(store.minute_counts_raw(service, &expr, from, to).unwrap());
            assert_eq!(raw, want, "raw {src} {service:?}");
        }
    }
}

#[test]
fn many_expressions_in_one_pass_agree_with_each_alone_and_their_sums_add_up() {
    let (_dir, store) = temp_store();
    let events = generate(6_000, 30, 11);
    store.insert_batch(&events).unwrap();
    let srcs = [
        "status < 500",
        "status >= 0",
        "duration_ms <= 300",
        "status >= 100 and status < 500",
        "status = 503",
    ];
    let exprs: Vec<Expr> = srcs.iter().map(|s| Expr::parse(s).unwrap()).collect();
    let (from, to) = (T0 + 3 * 60_000 + 1, T0 + 27 * 60_000);
    for service in [None, Some("billing")] {
        // Rollups only (the first four), and with a raw-only expression.
        for k in [4, 5] {
            let refs: Vec<&Expr> = exprs[..k].iter().collect();
            let many = store.minute_counts_many(service, &refs, from, to).unwrap();
            let sums = store.sums(service, &refs, from, to).unwrap();
            for (i, e) in refs.iter().enumerate() {
                let alone = pairs(store.minute_counts(service, e, from, to).unwrap());
                let from_many: Vec<(i64, u64)> = many
                    .iter()
                    .filter(|m| m.counts[i] > 0)
                    .map(|m| (m.minute_ms, m.counts[i]))
                    .collect();
                assert_eq!(from_many, alone, "{} {service:?} k={k}", srcs[i]);
                let total: u64 = alone.iter().map(|p| p.1).sum();
                assert!(total > 0, "{}", srcs[i]);
                assert_eq!(sums[i], total, "{} {service:?} k={k}", srcs[i]);
            }
        }
    }
    // Containment, as the rollups can show it.
    let contained = |a: usize, b: usize| {
        store
            .contained(Some("chirpy"), &exprs[a], &exprs[b])
            .unwrap()
    };
    assert!(contained(0, 1), "status < 500 within status >= 0");
    assert!(contained(2, 1), "duration_ms <= 300 within status >= 0");
    assert!(contained(3, 0));
    // Events without a response (status 0) are good for `status < 500` but
    // outside `status >= 100`.
    assert!(!contained(0, 3));
    // Not answerable from the rollups: not shown.
    assert!(!contained(4, 1));
}

#[test]
fn rollup_rows_sum_to_the_events_and_their_durations() {
    let (_dir, store) = temp_store();
    let events = generate(5000, 10, 3);
    store.insert_batch(&events).unwrap();
    let rollups = store.rollups(None, T0, T0 + 10 * 60_000).unwrap();
    let total: u64 = rollups.iter().map(|r| r.count).sum();
    assert_eq!(total, 5000);
    for r in &rollups {
        assert_eq!(r.buckets.iter().sum::<u64>(), r.count);
    }
    let sum: f64 = rollups.iter().map(|r| r.sum_duration_ms).sum();
    let want: f64 = events.iter().map(|e| e.duration_ms).sum();
    assert!((sum - want).abs() < 1e-6 * want, "{sum} {want}");
    assert_eq!(store.count().unwrap(), 5000);
}

#[test]
fn events_round_trip_with_fields_and_mirror() {
    let (_dir, store) = temp_store();
    let mut e = generate(1, 1, 1).remove(0);
    e.fields.insert("quote\"d".into(), "ü \\ x".into());
    e.mirror = Some(capstan_events::MirrorComparison {
        status_class_equal: true,
        body_hash_equal: false,
        shadow_status: 200,
        shadow_ms: 1.5,
    });
    store.insert_batch(std::slice::from_ref(&e)).unwrap();
    let got = store.events_after(0, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, e);
    assert!(
        Expr::parse("mirror.body_hash_equal = false and mirror.shadow_status = 200")
            .unwrap()
            .matches(&got[0].event)
    );
}

#[test]
fn a_batch_written_in_multi_row_groups_reads_back_row_for_row() {
    // 37 events: two full groups of rows written by one statement each, and
    // a remainder written one by one; every column differs between neighbours.
    let (_dir, store) = temp_store();
    let mut events = generate(37, 3, 9);
    for (i, e) in events.iter_mut().enumerate() {
        e.fields.insert("n".into(), i.to_string());
        if i % 3 == 0 {
            e.mirror = Some(capstan_events::MirrorComparison {
                status_class_equal: i % 2 == 0,
                body_hash_equal: true,
                shadow_status: 200 + i as u16,
                shadow_ms: i as f64,
            });
        }
    }
    store.insert_batch(&events).unwrap();
    let got: Vec<Event> = store
        .events_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .collect();
    assert_eq!(got, events);
}

#[test]
fn retention_prunes_old_raw_events_but_keeps_rollups_longer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        &dir.path().join("e.db"),
        Retention {
            raw_max_age: Duration::from_secs(3600),
            max_bytes: 1 << 30,
            rollup_max_age: Duration::from_secs(3 * 3600),
        },
    )
    .unwrap();
    let hour = 3_600_000;
    let mut events = Vec::new();
    for (i, age_h) in [0i64, 2, 5].iter().enumerate() {
        for mut e in generate(100, 10, i as u64) {
            e.time_ms = e.time_ms - T0 + (T0 - age_h * hour);
            events.push(e);
        }
    }
    store.insert_batch(&events).unwrap();
    let report = store.prune(T0 + 10 * 60_000).unwrap();
    // The newest row (the last 5-hour-old event) stays: it holds the ids.
    assert_eq!(report.raw_by_age, 199);
    assert_eq!(report.raw_by_size, 0);
    assert!(report.rollups > 0);
    assert_eq!(store.count().unwrap(), 101);
    assert_eq!(store.last_id().unwrap(), 300);
    let all = Expr::parse("status >= 0").unwrap();
    // The 2-hour-old minutes are still in the rollups, the 5-hour-old ones are gone.
    let counts = store
        .minute_counts(None, &all, T0 - 6 * hour, T0 + hour)
        .unwrap();
    let total: u64 = counts.iter().map(|c| c.count).sum();
    assert_eq!(total, 200);
    assert!(counts.iter().all(|c| c.minute_ms >= T0 - 2 * hour));
}

/// Ages too long for milliseconds in an i64 keep everything: before, they
/// wrapped to a negative age, and the first prune deleted every event but
/// the newest and every rollup.
#[test]
fn retention_of_a_billion_years_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let forever = Duration::from_secs(86_400 * 365 * 1_000_000_000);
    let store = Store::open_with(
        &dir.path().join("e.db"),
        Retention {
            raw_max_age: forever,
            max_bytes: 1 << 30,
            rollup_max_age: forever,
        },
    )
    .unwrap();
    store.insert_batch(&generate(500, 10, 4)).unwrap();
    let report = store.prune(T0 + 60_000).unwrap();
    assert_eq!((report.raw_by_age, report.rollups), (0, 0));
    assert_eq!(store.count().unwrap(), 500);
}

/// Rollups kept for less time than raw events would make the minute counts
/// (from rollups) disagree with the raw events still kept: refused, and no
/// store file is made.
#[test]
fn rollups_kept_shorter_than_raw_events_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let err = Store::open_with(
        &path,
        Retention {
            raw_max_age: Duration::from_secs(7 * 86_400),
            max_bytes: 1 << 30,
            rollup_max_age: Duration::from_secs(86_400),
        },
    )
    .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("rollups kept for 1day, less than raw events (7days)"),
        "{msg}"
    );
    assert!(!path.exists());
}

/// A store in a new directory kept by size only (ages of a year).
fn size_limited(limit: u64) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        &dir.path().join("e.db"),
        Retention {
            raw_max_age: Duration::from_secs(86_400 * 365),
            max_bytes: limit,
            rollup_max_age: Duration::from_secs(86_400 * 365),
        },
    )
    .unwrap();
    (dir, store)
}

#[test]
fn retention_by_size_deletes_the_oldest_raw_events() {
    let limit = 2 << 20;
    let (_dir, store) = size_limited(limit);
    let events = generate(30_000, 30, 9);
    store.insert_batch(&events).unwrap();
    assert!(store.live_bytes().unwrap() > limit);
    let report = store.prune(T0).unwrap();
    assert!(report.raw_by_size > 0);
    assert!(
        store.live_bytes().unwrap() <= limit,
        "{}",
        store.live_bytes().unwrap()
    );
    let left = store.count().unwrap();
    assert_eq!(left + report.raw_by_size, 30_000);
    // What is left is the newest: every kept id is above every deleted one.
    let first = store.events_after(0, 1).unwrap();
    assert_eq!(first[0].id, report.raw_by_size as i64 + 1);
}

#[tokio::test]
async fn recorder_writes_everything_it_accepted_and_counts_drops() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(1000);
    // No await in between: the writer cannot drain, so the queue fills at 1000.
    // Recent events: the writer prunes by age (7 days by default) after a batch.
    for e in recent(generate(1500, 5, 2)) {
        rec.record(e);
    }
    assert_eq!(rec.recorded(), 1000);
    assert_eq!(rec.dropped(), 500);
    let rec2 = rec.clone();
    drop(rec);
    drop(rec2);
    task.shutdown().await.unwrap();
    assert_eq!(store.count().unwrap(), 1000);
}

#[tokio::test]
async fn batches_are_queued_whole_while_they_fit_then_event_by_event() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(100);
    let mut events = recent(generate(150, 5, 3));
    let mut batch: Vec<Event> = events.drain(..60).collect();
    rec.record_many(&mut batch);
    assert!(batch.is_empty());
    assert_eq!((rec.recorded(), rec.dropped()), (60, 0));
    // 40 places left for 90 events: the first 40 go, the other 50 are dropped.
    batch.extend(events);
    rec.record_many(&mut batch);
    assert!(batch.is_empty());
    assert_eq!((rec.recorded(), rec.dropped()), (100, 50));
    drop(rec);
    task.shutdown().await.unwrap();
    assert_eq!(store.count().unwrap(), 100);
}

#[tokio::test]
async fn recorder_writes_within_a_bounded_time() {
    let (_dir, store) = temp_store();
    let (rec, _task) = store.clone().spawn_recorder(100);
    rec.record(recent(generate(1, 1, 5)).remove(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.count().unwrap() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "event not written within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec.stored(), 1);
}

#[test]
fn a_store_from_a_newer_capstan_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    drop(Store::open(&path).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let err = Store::open(&path).unwrap_err().to_string();
    assert!(err.contains("schema version 99"), "{err}");
}

/// A store `e.db` in a new directory, with ten events, taken back to schema
/// `version`; and its rollups before.
fn older_store(version: i64) -> (tempfile::TempDir, Vec<capstan_events::Rollup>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let store = Store::open(&path).unwrap();
    store.insert_batch(&generate(10, 1, 4)).unwrap();
    let before = store.rollups(None, 0, i64::MAX).unwrap();
    drop(store);
    downgrade(&path, version);
    (dir, before)
}

/// Turns a fresh store at `path` back into what schema `version` wrote: the
/// rollups keyed by minute first, and the index of that version.
fn downgrade(path: &std::path::Path, version: i64) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("DROP TABLE store_meta;").unwrap();
    if version == 4 {
        c.pragma_update(None, "user_version", version).unwrap();
        return;
    }
    c.execute_batch(
        "CREATE TABLE old (minute_ms INTEGER NOT NULL, dim_id INTEGER NOT NULL REFERENCES rollup_dims (id),
           count INTEGER NOT NULL, sum_duration_ms REAL NOT NULL,
           b0 INTEGER NOT NULL, b1 INTEGER NOT NULL, b2 INTEGER NOT NULL, b3 INTEGER NOT NULL,
           b4 INTEGER NOT NULL, b5 INTEGER NOT NULL, b6 INTEGER NOT NULL, b7 INTEGER NOT NULL,
           b8 INTEGER NOT NULL, b9 INTEGER NOT NULL, b10 INTEGER NOT NULL, b11 INTEGER NOT NULL,
           b12 INTEGER NOT NULL, PRIMARY KEY (minute_ms, dim_id)) WITHOUT ROWID;
         INSERT INTO old SELECT minute_ms, dim_id, count, sum_duration_ms, b0, b1, b2, b3, b4, b5,
           b6, b7, b8, b9, b10, b11, b12 FROM rollups;
         DROP TABLE rollups;
         ALTER TABLE old RENAME TO rollups;",
    )
    .unwrap();
    match version {
        2 => c
            .execute_batch("CREATE INDEX rollups_by_dim ON rollups (dim_id, minute_ms);")
            .unwrap(),
        3 => c
            .execute_batch(
                "CREATE INDEX rollups_by_dim_count ON rollups (dim_id, minute_ms, count);",
            )
            .unwrap(),
        _ => {}
    }
    c.pragma_update(None, "user_version", version).unwrap();
}

fn indexes(path: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'rollups' AND sql IS NOT NULL ORDER BY name")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.collect::<Result<_, _>>().unwrap()
}

fn primary_key(path: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut stmt = c
        .prepare("SELECT name FROM pragma_table_info('rollups') WHERE pk > 0 ORDER BY pk")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.collect::<Result<_, _>>().unwrap()
}

#[test]
fn an_older_store_is_brought_up_to_date_keeping_its_events_and_rollups() {
    for version in [1, 2, 3, 4] {
        let (dir, before) = older_store(version);
        let path = dir.path().join("e.db");
        if version < 4 {
            assert_eq!(primary_key(&path), ["minute_ms", "dim_id"]);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.count().unwrap(), 10);
        assert_eq!(store.rollups(None, 0, i64::MAX).unwrap(), before);
        // The upgraded table takes new increments like a fresh one.
        store.insert_batch(&generate(10, 1, 4)).unwrap();
        let after = store.rollups(None, 0, i64::MAX).unwrap();
        assert_eq!(after.len(), before.len(), "from version {version}");
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(a.count, 2 * b.count, "from version {version}");
        }
        drop(store);
        let c = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, capstan_events::SCHEMA_VERSION, "from version {version}");
        assert_eq!(
            indexes(&path),
            ["rollups_by_minute"],
            "from version {version}"
        );
        assert_eq!(primary_key(&path), ["dim_id", "minute_ms"]);
        let generation: i64 = c
            .query_row(
                "SELECT value FROM store_meta WHERE key = 'dims_generation'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(generation, 0, "from version {version}");
    }
}

fn plan(c: &rusqlite::Connection, query: &str) -> Vec<String> {
    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {query}")).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn rollup_reads_are_range_scans_of_the_table_key_without_a_sort() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let store = Store::open(&path).unwrap();
    store.insert_batch(&generate(10, 1, 4)).unwrap();
    drop(store);
    let c = rusqlite::Connection::open(&path).unwrap();
    // The shapes of the queries minute_counts_many and sums send for a ratio of
    // `duration_ms <= 300` (bucket columns) over `status >= 0` (count).
    let good = "CASE WHEN dim_id IN (1,2) THEN b0 + b1 + b2 + b3 + b4 + b5 + b6 ELSE 0 END";
    let total = "CASE WHEN dim_id IN (1,2) THEN count ELSE 0 END";
    let range =
        "FROM rollups WHERE dim_id IN (1,2) AND minute_ms >= 0 AND minute_ms < 9999999999999";
    for q in [
        format!("SELECT minute_ms, {good}, {total} {range}"),
        format!("SELECT SUM({good}), SUM({total}) {range}"),
    ] {
        let p = plan(&c, &q);
        assert!(
            p.iter().any(|l| l.contains(
                "SEARCH rollups USING PRIMARY KEY (dim_id=? AND minute_ms>? AND minute_ms<?)"
            )),
            "{p:?}"
        );
        assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "{p:?}");
    }
    // Pruning by age uses the minute index.
    let p = plan(&c, "DELETE FROM rollups WHERE minute_ms < 5");
    assert!(p.iter().any(|l| l.contains("rollups_by_minute")), "{p:?}");
}

#[test]
fn outcomes_followed_by_id_read_each_event_of_the_window_once() {
    let (_dir, store) = temp_store();
    let ev = |time_ms: i64, service: &str, status: u16| Event {
        time_ms,
        service: service.into(),
        release: "2.0.0".into(),
        status,
        duration_ms: 3.0,
        ..Default::default()
    };
    let from = T0 + 60_000;
    // Before the window, another service, and two inside it.
    store
        .insert_batch(&[
            ev(from - 1, "api", 200),
            ev(from, "api", 500),
            ev(from + 5, "web", 200),
            ev(from + 10, "api", 200),
        ])
        .unwrap();
    let mut seen = Vec::new();
    let last = store
        .outcomes(None, from, "api", |o| seen.push((o.time_ms, o.status)))
        .unwrap();
    seen.sort();
    assert_eq!(seen, [(from, 500), (from + 10, 200)]);
    assert_eq!(last, 4, "the highest id of the snapshot, whatever matched");

    // Nothing new: nothing read again.
    let mut again = Vec::new();
    let same = store
        .outcomes(Some(last), from, "api", |o| again.push(o.id))
        .unwrap();
    assert_eq!((again.len(), same), (0, 4));

    // A late event written after the first read (its time inside the window),
    // one before the window and one of another service: only the first counts.
    store
        .insert_batch(&[
            ev(from + 1, "api", 503),
            ev(from - 100, "api", 200),
            ev(from + 20, "web", 500),
        ])
        .unwrap();
    let mut new = Vec::new();
    let next = store
        .outcomes(Some(last), from, "api", |o| {
            new.push((o.id, o.status, o.failed))
        })
        .unwrap();
    assert_eq!(new, [(5, 503, false)]);
    assert_eq!(next, 7);
}

/// The niceness of this process's thread named `name`, if there is one.
fn thread_nice(name: &str) -> Option<i32> {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after "pid (comm) ": state is field 3, nice field 19.
        let after = &stat[stat.rfind(") ")? + 2..];
        return after.split(' ').nth(16)?.parse().ok();
    }
    None
}

/// The writer runs on a thread of its own below the request path's
/// priority, and still writes everything it was given.
#[tokio::test]
async fn the_writer_thread_runs_below_the_request_path() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(1_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while thread_nice("capstan-events") != Some(capstan_events::WRITER_NICE) {
        assert!(
            std::time::Instant::now() < deadline,
            "no capstan-events thread at nice {}: {:?}",
            capstan_events::WRITER_NICE,
            thread_nice("capstan-events")
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for e in recent(generate(500, 2, 3)) {
        rec.record(e);
    }
    drop(rec);
    task.shutdown().await.unwrap();
    assert_eq!(store.count().unwrap(), 500);
}

/// Two writers on one store file (a proxy and an OTLP receiver, say) each
/// write every batch, and every event is found by time.
#[test]
fn two_writers_on_one_file_write_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let stores = [Store::open(&path).unwrap(), Store::open(&path).unwrap()];
    std::thread::scope(|s| {
        for (w, store) in stores.iter().enumerate() {
            s.spawn(move || {
                for b in 0..100 {
                    let batch: Vec<Event> = (0..20)
                        .map(|i| Event {
                            time_ms: T0 + b * 1_000 + i,
                            service: format!("w{w}").into(),
                            ..Event::default()
                        })
                        .collect();
                    store.insert_batch(&batch).unwrap();
                }
            });
        }
    });
    let mut seen = std::collections::HashSet::new();
    stores[0]
        .scan(T0, T0 + 100_000, None, |se| {
            assert!(seen.insert(se.id));
            true
        })
        .unwrap();
    assert_eq!(seen.len(), 4_000);
}

/// A batch rolled back after it added a dimension leaves no id of it behind:
/// when another writer takes that id for a different dimension, the next
/// batch of the first dimension still counts under its own.
#[test]
fn a_rolled_back_batch_leaves_no_dimension_id_behind() {
    let (dir, store) = temp_store();
    let side = rusqlite::Connection::open(dir.path().join("events.db")).unwrap();
    // The rollup of service `boom` is refused, after `mine`'s went in.
    side.execute_batch(
        "CREATE TABLE refuse (x);
         INSERT INTO refuse VALUES (1);
         CREATE TRIGGER refuse_rollups BEFORE INSERT ON rollups
           WHEN EXISTS (SELECT 1 FROM refuse)
             AND NEW.dim_id IN (SELECT id FROM rollup_dims WHERE service = 'boom')
           BEGIN SELECT RAISE(FAIL, 'refused'); END;",
    )
    .unwrap();
    let event = |i: i64, service: &str| Event {
        time_ms: T0 + i,
        service: service.into(),
        status: 200,
        ..Event::default()
    };
    let batch: Vec<Event> = (0..10).map(|i| event(i, "mine")).collect();
    let mut failing = batch.clone();
    failing.push(event(10, "boom"));
    let err = store.insert_batch(&failing).unwrap_err().to_string();
    assert!(err.contains("refused"), "{err}");
    assert_eq!(
        store.count().unwrap(),
        0,
        "the failed batch is rolled back whole"
    );
    // Another writer takes the id the rolled-back dimension had.
    side.execute_batch(
        "DELETE FROM refuse;
         INSERT INTO rollup_dims (service, route, release, cohort, status_class)
           VALUES ('theirs', '/', '', '', 2);",
    )
    .unwrap();
    store.insert_batch(&batch).unwrap();
    let count = |service| -> u64 {
        let rows = store.rollups(Some(service), T0, T0 + 60_000).unwrap();
        rows.iter().map(|r| r.count).sum()
    };
    assert_eq!(count("mine"), 10);
    assert_eq!(count("theirs"), 0);
}

/// A new store has 16 KiB pages; a store made with 4 KiB pages keeps them
/// and takes batches as before.
#[test]
fn new_stores_have_16_kib_pages_and_older_ones_keep_theirs() {
    let page_size = |path: &std::path::Path| -> i64 {
        let c = rusqlite::Connection::open(path).unwrap();
        c.pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    Store::open(&fresh).unwrap();
    assert_eq!(page_size(&fresh), 16384);

    let old = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&old).unwrap();
        c.pragma_update(None, "page_size", 4096).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.execute_batch("CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
    }
    let store = Store::open(&old).unwrap();
    store.insert_batch(&generate(1000, 2, 7)).unwrap();
    assert_eq!(store.count().unwrap(), 1000);
    drop(store);
    assert_eq!(page_size(&old), 4096);
}

/// A store left idle past its retention has every event pruned but the
/// newest, so the next event's id is above every id a follower has seen
/// (`events tail`, a rollout's judge reading `outcomes` after its last id).
#[test]
fn ids_keep_growing_after_everything_old_is_pruned() {
    let (_dir, store) = temp_store();
    store.insert_batch(&generate(100, 1, 11)).unwrap();
    let seen = store.last_id().unwrap();
    assert_eq!(seen, 100);
    // A week and a day later, with no traffic in between.
    let later = T0 + 8 * 86_400_000;
    let report = store.prune(later).unwrap();
    assert_eq!(report.raw_by_age, 99);
    let e = Event {
        time_ms: later,
        service: "late".into(),
        ..Event::default()
    };
    store.insert_batch(&[e]).unwrap();
    let new = store.events_after(seen, 10).unwrap();
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].event.service.as_str(), "late");
    assert_eq!(new[0].id, seen + 1);
}

/// Processes opening a new or an older store at the same moment (a proxy
/// and an OTLP receiver starting together, a proxy restarting while
/// `capstan slo` reads) all open it: one creates or upgrades it, the others
/// wait for that and find it current, and nothing is lost or counted twice.
#[test]
fn openers_racing_on_a_new_or_older_store_all_open_it() {
    /// Four threads open `path` at once; each store it opened.
    fn race(path: &std::path::Path, what: &str) -> Vec<Store> {
        let start = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        Store::open(path).unwrap_or_else(|e| panic!("{what}: {e}"))
                    })
                })
                .collect();
            openers.into_iter().map(|o| o.join().unwrap()).collect()
        })
    }
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.db");
        race(&path, &format!("new, round {round}"));
        assert_eq!(indexes(&path), ["rollups_by_minute"], "round {round}");
    }
    for round in 0..10 {
        let (dir, before) = older_store(1);
        let path = dir.path().join("e.db");
        for store in race(&path, &format!("older, round {round}")) {
            assert_eq!(store.count().unwrap(), 10);
            let after = store.rollups(None, 0, i64::MAX).unwrap();
            assert_eq!(after, before, "round {round}");
        }
        assert_eq!(indexes(&path), ["rollups_by_minute"], "round {round}");
    }
}

/// When the rollups alone are over the size (many routes), pruning by size
/// deletes every raw event but the newest, then the oldest rollup minutes,
/// one step per prune, until the store fits; the newest minutes stay. With a
/// size even the newest minutes cannot fit under, it stops at the minute of
/// the event it keeps.
#[test]
fn retention_by_size_deletes_the_oldest_rollup_minutes_when_raw_events_are_not_enough() {
    let minutes = 120;
    let events: Vec<Event> = (0..minutes)
        .flat_map(|m| {
            (0..500).map(move |r| Event {
                time_ms: T0 + m * 60_000 + r,
                service: "api".into(),
                route: format!("/p/{r}").into(),
                status: 200,
                ..Event::default()
            })
        })
        .collect();
    let newest = T0 + (minutes - 1) * 60_000;
    let now = newest + 60_000;
    let rollups = |store: &Store| store.rollups(None, 0, i64::MAX).unwrap();

    let limit = 1 << 20;
    let (_dir, store) = size_limited(limit);
    store.insert_batch(&events).unwrap();
    assert!(store.live_bytes().unwrap() > limit);
    let mut deleted = 0;
    let mut prunes = 0;
    while store.live_bytes().unwrap() > limit {
        prunes += 1;
        assert!(prunes <= 10, "still {} bytes", store.live_bytes().unwrap());
        deleted += store.prune(now).unwrap().rollups_by_size;
    }
    assert_eq!(store.count().unwrap(), 1);
    assert!(deleted > 0);
    // Not much more than needed went.
    assert!(store.live_bytes().unwrap() >= limit / 2);
    let left = rollups(&store);
    let total: u64 = left.iter().map(|r| r.count).sum();
    assert_eq!(total + deleted, (minutes * 500) as u64);
    // Whole minutes went, oldest first.
    let first = left.iter().map(|r| r.minute_ms).min().unwrap();
    assert!(first > T0, "{first}");
    assert_eq!(left.iter().filter(|r| r.minute_ms == first).count(), 500);
    assert_eq!(left.iter().filter(|r| r.minute_ms == newest).count(), 500);

    // A limit below what the dimensions alone take: the kept event's minute
    // keeps its rollups, however often it prunes.
    let (_dir, store) = size_limited(16 << 10);
    store.insert_batch(&events).unwrap();
    for _ in 0..5 {
        store.prune(now).unwrap();
    }
    assert_eq!(store.count().unwrap(), 1);
    let left = rollups(&store);
    assert!(left.iter().all(|r| r.minute_ms == newest), "{}", left.len());
    assert_eq!(left.iter().map(|r| r.count).sum::<u64>(), 500);
}

/// Raw events kept an hour and rollups three, no size limit to speak of:
/// a rollup five hours old goes at the next prune.
fn hour_raw_three_hours_rollups() -> Retention {
    Retention {
        raw_max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        rollup_max_age: Duration::from_secs(3 * 3600),
    }
}

/// Dimension rows go with the last rollup rows that used them, except the
/// one with the highest id, so an id is never given to a second dimension
/// (ids are `max(id) + 1`). A writer in another process that cached the id
/// of a deleted one does not use it again: its counts would be lost.
#[test]
fn dimension_rows_go_with_their_last_rollups_and_no_writer_reuses_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let retention = hour_raw_three_hours_rollups();
    // Two stores on one file: two processes, each with its own cache.
    let proxy = Store::open_with(&path, retention).unwrap();
    let other = Store::open_with(&path, retention).unwrap();
    let hour = 3_600_000;
    let now = T0 + 10 * hour;
    let event = |time_ms: i64, route: &str| Event {
        time_ms,
        service: "s".into(),
        route: route.into(),
        status: 200,
        ..Event::default()
    };
    // `/old` and `/mid` are only seen five hours ago, `/old` in the other
    // process too.
    proxy
        .insert_batch(&[event(now - 5 * hour, "/old"), event(now - 5 * hour, "/mid")])
        .unwrap();
    other
        .insert_batch(&[event(now - 5 * hour, "/old")])
        .unwrap();
    let dims = |path: &std::path::Path| -> Vec<(i64, String)> {
        let c = rusqlite::Connection::open(path).unwrap();
        let mut q = c
            .prepare("SELECT id, route FROM rollup_dims ORDER BY id")
            .unwrap();
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let routes = |path: &std::path::Path| -> Vec<String> {
        dims(path).into_iter().map(|(_, r)| r).collect()
    };
    assert_eq!(routes(&path), ["/old", "/mid"]);
    let highest = dims(&path)[1].0;

    // `/mid`, unused too, is kept: it holds the highest id.
    let report = other.prune(now).unwrap();
    assert_eq!((report.rollups, report.dims), (2, 1));
    assert_eq!(routes(&path), ["/mid"]);
    // A new route takes a new id, not the freed one.
    other.insert_batch(&[event(now, "/new")]).unwrap();
    assert_eq!(routes(&path), ["/mid", "/new"]);
    assert!(dims(&path)[1].0 > highest, "{:?}", dims(&path));
    // The first process sees `/old` again; the id it cached is gone.
    proxy.insert_batch(&[event(now, "/old")]).unwrap();
    other.insert_batch(&[event(now, "/old")]).unwrap();
    let count = |route: &str| -> u64 {
        let rows = proxy.rollups(Some("s"), now - hour, now + hour).unwrap();
        rows.iter()
            .filter(|r| r.route == route)
            .map(|r| r.count)
            .sum()
    };
    assert_eq!(count("/new"), 1);
    assert_eq!(count("/old"), 2);

    // A prune that deletes rollup rows of a dimension still in use keeps
    // its row; `/mid`, unused and no longer the highest, goes.
    proxy
        .insert_batch(&[event(now - 5 * hour, "/new")])
        .unwrap();
    let report = proxy.prune(now).unwrap();
    assert_eq!((report.rollups, report.dims), (1, 1));
    assert_eq!(routes(&path), ["/new", "/old"]);
}

/// The client's own failures are not the release's errors in the outcomes
/// a rollout judges; every other error kind is.
#[test]
fn outcomes_do_not_count_the_clients_own_failures_against_the_release() {
    let (_dir, store) = temp_store();
    let kinds: Vec<Option<&str>> = capstan_events::CLIENT_ERROR_KINDS
        .iter()
        .copied()
        .map(Some)
        .chain([
            Some("connect"),
            Some("timeout"),
            Some("upstream_5xx"),
            Some("bad_uri"),
            None,
        ])
        .collect();
    let events: Vec<Event> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| Event {
            time_ms: T0 + i as i64,
            service: "s".into(),
            status: 200,
            error: k.map(Into::into),
            ..Event::default()
        })
        .collect();
    store.insert_batch(&events).unwrap();
    let mut got = Vec::new();
    store
        .outcomes(None, T0, "s", |o| got.push((o.failed, o.client_body)))
        .unwrap();
    assert_eq!(
        got,
        [
            (false, true),
            (false, false),
            (true, false),
            (true, false),
            (true, false),
            (true, false),
            (false, false)
        ],
        "{kinds:?}"
    );
    // The one rule, for readers of whole events.
    let rule: Vec<bool> = kinds
        .iter()
        .map(|k| capstan_events::is_release_error(200, *k))
        .collect();
    assert_eq!(rule, got.iter().map(|g| g.0).collect::<Vec<_>>());
    let body: Vec<bool> = kinds
        .iter()
        .map(|k| capstan_events::is_client_body(*k))
        .collect();
    assert_eq!(body, got.iter().map(|g| g.1).collect::<Vec<_>>());
    assert!(capstan_events::is_release_error(503, Some("client_cancel")));
}

/// A store's user salt is made once, by whichever process asks first, and
/// kept; another store has its own.
#[test]
fn a_stores_user_salt_is_random_once_and_then_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let first = Store::open(&a).unwrap();
    let second = Store::open(&a).unwrap();
    let salt = first.user_salt().unwrap();
    assert_eq!(salt.len(), 32);
    assert!(salt.bytes().all(|c| c.is_ascii_hexdigit()), "{salt}");
    assert_eq!(second.user_salt().unwrap(), salt);
    drop((first, second));
    assert_eq!(Store::open(&a).unwrap().user_salt().unwrap(), salt);
    assert_ne!(Store::open(&b).unwrap().user_salt().unwrap(), salt);
}

/// Many dead dimensions go 10,000 per prune, in the prunes that follow
/// (which delete no rollup rows themselves), all of them but the highest.
#[test]
fn a_prune_deletes_many_dead_dimensions_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.db");
    let retention = hour_raw_three_hours_rollups();
    let store = Store::open_with(&path, retention).unwrap();
    let hour = 3_600_000;
    let now = T0 + 10 * hour;
    let events: Vec<Event> = (0..25_001)
        .map(|i| Event {
            time_ms: now - 5 * hour,
            service: "s".into(),
            route: format!("/r/{i}").into(),
            status: 200,
            ..Event::default()
        })
        .collect();
    store.insert_batch(&events).unwrap();
    let deleted: Vec<u64> = (0..4).map(|_| store.prune(now).unwrap().dims).collect();
    assert_eq!(deleted, [10_000, 10_000, 5_000, 0]);
    let c = rusqlite::Connection::open(&path).unwrap();
    let left: i64 = c
        .query_row("SELECT count(*) FROM rollup_dims", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 1);
    let generation: i64 = c
        .query_row(
            "SELECT value FROM store_meta WHERE key = 'dims_generation'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(generation, 3, "one bump per prune that deleted some");
}

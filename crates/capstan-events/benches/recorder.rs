//! Recorder throughput: events per second from `Recorder::record` into the SQLite
//! store (with rollups), against the limit: the same rows inserted with plain
//! rusqlite in one transaction per batch into the same table, no rollups. Also the
//! cost of one `record` call on the request path. Run by `bench/events/run.sh`.

use std::time::{Duration, Instant};

use capstan_events::{Event, Store};

fn events(n: usize, t0: i64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = Event {
                time_ms: t0 + (i as i64 % 60_000),
                service: "chirpy".into(),
                method: "GET".into(),
                route: ["/api/chirps", "/api/chirps/{id}", "/api/users", "/healthz"][i % 4].into(),
                path: format!("/api/chirps/{i}").into(),
                status: if i % 50 == 0 { 503 } else { 200 },
                duration_ms: (i % 400) as f64 * 0.75,
                upstream_ms: Some((i % 400) as f64 * 0.7),
                bytes_in: 0,
                bytes_out: 512,
                release: if i % 10 == 0 { "2.0.0" } else { "1.0.0" }.into(),
                instance: "127.0.0.1:8081".into(),
                cohort: Default::default(),
                user: Some(format!("{:016x}", i % 1000).into()),
                trace_id: Some(format!("{:032x}", i).into()),
                ..Event::default()
            };
            e.fields.insert("plan".into(), "pro".into());
            e
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The limit: plain inserts, one transaction per 4,096 rows, same table and index.
fn limit_run(evs: &[Event]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limit.db");
    drop(Store::open(&path).unwrap()); // same schema
    let mut c = rusqlite::Connection::open(&path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    let start = Instant::now();
    for chunk in evs.chunks(4096) {
        let tx = c.transaction().unwrap();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events (time_ms, service, method, route, path, status, duration_ms, \
                     upstream_ms, bytes_in, bytes_out, release, instance, cohort, user, trace_id, error, \
                     mirror, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
                     ?15, ?16, ?17, ?18)",
                )
                .unwrap();
            for e in chunk {
                st.execute(rusqlite::params![
                    e.time_ms,
                    e.service.as_str(),
                    e.method.as_str(),
                    e.route.as_str(),
                    e.path.as_str(),
                    e.status,
                    e.duration_ms,
                    e.upstream_ms,
                    e.bytes_in as i64,
                    e.bytes_out as i64,
                    e.release.as_str(),
                    e.instance.as_str(),
                    e.cohort.as_str(),
                    e.user.as_deref(),
                    e.trace_id.as_deref(),
                    e.error.as_deref(),
                    None::<String>,
                    "{\"plan\":\"pro\"}"
                ])
                .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    evs.len() as f64 / start.elapsed().as_secs_f64()
}

/// capstan: `record` from a producer task as fast as it goes, until every event is stored.
fn capstan_run(rt: &tokio::runtime::Runtime, evs: Vec<Event>) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("events.db")).unwrap();
    let n = evs.len() as u64;
    rt.block_on(async move {
        let (rec, task) = store.clone().spawn_recorder(65_536);
        let start = Instant::now();
        let mut record_ns = 0u128;
        let mut it = evs.into_iter();
        // 1,000-event bursts, yielding between them like request handlers would.
        loop {
            let burst: Vec<Event> = it.by_ref().take(1000).collect();
            if burst.is_empty() {
                break;
            }
            let t = Instant::now();
            for e in burst {
                rec.record(e);
            }
            record_ns += t.elapsed().as_nanos();
            while rec.recorded() + rec.dropped() - rec.stored() > 60_000 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::task::yield_now().await;
        }
        let dropped = rec.dropped();
        drop(rec);
        task.shutdown().await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(store.count().unwrap() + dropped, n);
        (n as f64 / secs, record_ns as f64 / n as f64, dropped)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let evs = events(n, now_ms() - 60_000);
    let (mut lim, mut cap, mut rec_ns, mut drops) = (vec![], vec![], vec![], 0);
    for _ in 0..rounds {
        lim.push(limit_run(&evs));
        let (eps, ns, d) = capstan_run(&rt, evs.clone());
        cap.push(eps);
        rec_ns.push(ns);
        drops += d;
    }
    let (l, c) = (median(lim), median(cap));
    println!("events per run:                 {n} ({rounds} alternating runs, medians)");
    println!("limit (plain inserts, no rollups): {:>10.0} events/s", l);
    println!("capstan recorder -> store:        {:>10.0} events/s", c);
    println!("ratio capstan / limit:            {:>10.2}", c / l);
    println!(
        "Recorder::record call:            {:>10.0} ns",
        median(rec_ns)
    );
    println!("dropped (queue 65,536, producer paced): {drops}");
}

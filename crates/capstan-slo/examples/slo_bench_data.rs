//! Writes the data of `bench/slo/run.sh` into DIR: an event store whose
//! per-minute rollups are written directly (SERVICES services × 30 days and 3
//! hours of minutes, about 200 requests/s in all), the same traffic as
//! OpenMetrics counters for `promtool tsdb create-blocks-from openmetrics`,
//! and one OpenSLO file per service for each source.
//!
//! Usage: `slo_bench_data DIR NOW_MS [SERVICES]`

use std::io::Write as _;
use std::path::Path;

const MIN: i64 = 60_000;

/// Requests in minute `m` of service `s`: about 600 a minute with a daily swing.
fn total(s: usize, m: i64) -> u64 {
    let day = (m.rem_euclid(1440 * MIN)) as f64 / (1440.0 * MIN as f64);
    let swing = (day * std::f64::consts::TAU + s as f64).sin();
    (600.0 + 300.0 * swing).round() as u64
}

/// Failed requests: 1 in 4000, with an incident of 30 minutes (20 %) per service.
fn bad(s: usize, m: i64, now: i64, t: u64) -> u64 {
    let incident = now - (2 + s as i64) * 1440 * MIN;
    if (incident..incident + 30 * MIN).contains(&m) {
        t / 5
    } else if (m / MIN + s as i64) % 4000 < (t as i64 % 2) {
        1
    } else {
        0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (dir, now): (&Path, i64) = match args.as_slice() {
        [_, d, n, ..] => (Path::new(d), n.parse().expect("NOW_MS")),
        _ => {
            eprintln!("usage: slo_bench_data DIR NOW_MS [SERVICES]");
            std::process::exit(2);
        }
    };
    let services: usize = args
        .get(3)
        .map(|s| s.parse().expect("SERVICES"))
        .unwrap_or(20);
    let now = now / MIN * MIN;
    let first = now - 30 * 1440 * MIN - 180 * MIN;
    std::fs::create_dir_all(dir.join("slos-store")).unwrap();
    std::fs::create_dir_all(dir.join("slos-prom")).unwrap();
    let db = dir.join("capstan-events.db");
    let _ = std::fs::remove_file(&db);
    // The store creates its schema; the rollups are then written directly.
    drop(capstan_events::Store::open(&db).expect("create the store"));
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let tx = conn.transaction().unwrap();
    let mut om = std::io::BufWriter::new(std::fs::File::create(dir.join("traffic.om")).unwrap());
    writeln!(om, "# TYPE http_requests counter").unwrap();
    let mut requests: u64 = 0;
    for s in 0..services {
        let svc = format!("svc{s:02}");
        let mut ids = [0i64; 2];
        for (i, class) in [2, 5].into_iter().enumerate() {
            tx.execute(
                "INSERT INTO rollup_dims (service, route, release, cohort, status_class) VALUES (?1, '/', '1', '', ?2)",
                rusqlite::params![svc, class],
            )
            .unwrap();
            ids[i] = tx.last_insert_rowid();
        }
        let mut ins = tx
            .prepare(
                "INSERT INTO rollups (minute_ms, dim_id, count, sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12)
                 VALUES (?1, ?2, ?3, ?4, 0, 0, ?3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
            )
            .unwrap();
        let (mut good_sum, mut bad_sum) = (0u64, 0u64);
        let mut good_lines = Vec::new();
        let mut bad_lines = Vec::new();
        let ts = |m: i64| m / 1000;
        good_lines.push(format!(
            "http_requests_total{{service=\"{svc}\",code=\"200\"}} 0 {}",
            ts(first)
        ));
        bad_lines.push(format!(
            "http_requests_total{{service=\"{svc}\",code=\"500\"}} 0 {}",
            ts(first)
        ));
        let mut m = first;
        while m < now {
            let t = total(s, m);
            let b = bad(s, m, now, t);
            requests += t;
            ins.execute(rusqlite::params![
                m,
                ids[0],
                (t - b) as i64,
                (t - b) as f64 * 20.0
            ])
            .unwrap();
            if b > 0 {
                ins.execute(rusqlite::params![m, ids[1], b as i64, b as f64 * 20.0])
                    .unwrap();
            }
            good_sum += t - b;
            bad_sum += b;
            good_lines.push(format!(
                "http_requests_total{{service=\"{svc}\",code=\"200\"}} {good_sum} {}",
                ts(m + MIN)
            ));
            bad_lines.push(format!(
                "http_requests_total{{service=\"{svc}\",code=\"500\"}} {bad_sum} {}",
                ts(m + MIN)
            ));
            m += MIN;
        }
        for l in good_lines.iter().chain(&bad_lines) {
            writeln!(om, "{l}").unwrap();
        }
        let slo = |name: &str, good: String, total: String, kind: &str| {
            format!(
                "apiVersion: openslo/v1\nkind: SLO\nmetadata:\n  name: {name}\nspec:\n  service: {svc}\n  indicator:\n    metadata:\n      name: {name}-sli\n    spec:\n      ratioMetric:\n        good:\n          metricSource:\n            type: {kind}\n            spec:\n              query: '{good}'\n        total:\n          metricSource:\n            type: {kind}\n            spec:\n              query: '{total}'\n  timeWindow:\n    - duration: 30d\n      isRolling: true\n  budgetingMethod: Occurrences\n  objectives:\n    - target: 0.999\n"
            )
        };
        std::fs::write(
            dir.join(format!("slos-store/{svc}.yaml")),
            slo(
                &format!("{svc}-availability"),
                "status < 500".into(),
                "status >= 0".into(),
                "capstan",
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("slos-prom/{svc}.yaml")),
            slo(
                &format!("{svc}-availability"),
                format!("sum(increase(http_requests_total{{service=\"{svc}\",code!~\"5..\"}}[{{{{.window}}}}]))"),
                format!("sum(increase(http_requests_total{{service=\"{svc}\"}}[{{{{.window}}}}]))"),
                "Prometheus",
            ),
        )
        .unwrap();
    }
    writeln!(om, "# EOF").unwrap();
    drop(om);
    tx.commit().unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM rollups", [], |r| r.get(0))
        .unwrap();
    println!(
        "{services} services, {rows} rollup rows, {requests} requests ({:.0}/s)",
        requests as f64 / ((now - first) as f64 / 1000.0)
    );
}

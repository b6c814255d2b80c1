//! `compare` over sparse `fields` keys (span attributes such as `exception.*`
//! that few events have): right scores, in memory that does not grow with the
//! number of events times the number of keys. A test binary of its own, since
//! it reads the peak memory of the whole process.

mod common;

use capstan_events::{Event, Expr, Share};
use common::{temp_store, T0};

/// The process's peak resident memory in bytes (`VmHWM`), where Linux tells it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line["VmHWM:".len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// 5,000 events, each with a `fields` key no other event has; one in ten in
/// set A. Each key's score is the total variation distance between "its one
/// value in one event, `(none)` in the rest of that set" and "`(none)` in the
/// whole other set": 1 / (the size of the set holding the event).
#[test]
fn compare_of_many_sparse_keys_is_right_and_small() {
    const N: usize = 5_000;
    let (_dir, store) = temp_store();
    let events: Vec<Event> = (0..N)
        .map(|i| {
            let mut e = Event {
                time_ms: T0 + i as i64,
                service: "chirpy".into(),
                method: "GET".into(),
                route: "/a".into(),
                path: "/a".into(),
                status: if i % 10 == 0 { 503 } else { 200 },
                duration_ms: 10.0,
                release: "1.0.0".into(),
                ..Event::default()
            };
            e.fields
                .insert(format!("exception.k{i:04}"), format!("v{i}"));
            e
        })
        .collect();
    store.insert_batch(&events).unwrap();
    drop(events);

    let a = Expr::parse("status >= 500").unwrap();
    let started = std::time::Instant::now();
    let cmp = store.compare(&a, None, T0, T0 + 60_000).unwrap();
    let took = started.elapsed();
    // A list per key as long as the set (the quadratic layout) took over
    // 600 MB here; the events, the store and the answer take a few dozen.
    if let Some(peak) = peak_rss() {
        assert!(
            peak < 256 << 20,
            "compare of {N} sparse keys: the process peaked at {} MiB",
            peak >> 20
        );
    }
    assert!(
        took.as_secs() < 30,
        "compare of {N} sparse keys took {took:?}"
    );

    let (na, nb) = (N as u64 / 10, N as u64 - N as u64 / 10);
    assert_eq!((cmp.a_count, cmp.b_count), (na, nb));
    assert_eq!(cmp.fields[0].field, "status");
    let keys: Vec<_> = cmp
        .fields
        .iter()
        .filter(|f| f.field.starts_with("exception."))
        .collect();
    assert_eq!(keys.len(), N);
    let round9 = |x: f64| (x * 1e9).round() / 1e9;
    for f in keys {
        let i: usize = f.field["exception.k".len()..].parse().unwrap();
        let value = format!("v{i}");
        let (own, own_n, other_n) = if i % 10 == 0 {
            (&f.a_top, na, nb)
        } else {
            (&f.b_top, nb, na)
        };
        let other = if i % 10 == 0 { &f.b_top } else { &f.a_top };
        assert_eq!(f.kind, "categorical", "{}", f.field);
        assert!(!f.high_cardinality, "{}", f.field);
        assert_eq!(f.score, round9(1.0 / own_n as f64), "{}", f.field);
        let tops = |v: &[Share]| {
            v.iter()
                .map(|s| (s.value.clone(), s.count))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            tops(own),
            [("(none)".to_string(), own_n - 1), (value, 1)],
            "{}",
            f.field
        );
        assert_eq!(
            tops(other),
            [("(none)".to_string(), other_n)],
            "{}",
            f.field
        );
        let most = f.most_different.as_ref().unwrap();
        assert_eq!(most.value, "(none)", "{}", f.field);
    }
    // Ranked by score: set A's keys (1/500) before set B's (1/4500), each
    // group by name.
    let order: Vec<&str> = cmp
        .fields
        .iter()
        .filter(|f| f.field.starts_with("exception."))
        .map(|f| f.field.as_str())
        .collect();
    let mut want: Vec<String> = (0..N)
        .filter(|i| i % 10 == 0)
        .chain((0..N).filter(|i| i % 10 != 0))
        .map(|i| format!("exception.k{i:04}"))
        .collect();
    want[..N / 10].sort();
    want[N / 10..].sort();
    assert_eq!(order, want);
}

//! Property: for random events and random expressions over rollup dimensions with
//! status-class and bucket-edge bounds, the rollup answer equals the raw scan.

use capstan_events::{Event, Expr, Store, BUCKET_BOUNDS_MS};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000_000;

fn event() -> impl Strategy<Value = Event> {
    let statuses = prop::sample::select(vec![
        0u16, 101, 199, 200, 204, 302, 399, 400, 404, 499, 500, 503, 599,
    ]);
    // Durations on, just below and just above every bucket edge, and in between.
    let mut durations: Vec<f64> = vec![0.0, 0.5, 12345.0, 99999.0];
    for b in BUCKET_BOUNDS_MS.iter().filter(|b| b.is_finite()) {
        durations.extend([*b, b - 0.001, b + 0.001]);
    }
    (
        0..300_000i64,
        statuses,
        prop::sample::select(durations),
        prop::sample::select(vec!["1.0.0", "2.0.0"]),
        prop::sample::select(vec!["", "internal"]),
        prop::sample::select(vec!["/a", "/b", "/c"]),
        prop::sample::select(vec!["chirpy", "billing"]),
    )
        .prop_map(
            |(t, status, duration_ms, release, cohort, route, service)| Event {
                time_ms: T0 + t,
                service: service.into(),
                route: route.into(),
                status,
                duration_ms,
                release: release.into(),
                cohort: cohort.into(),
                ..Event::default()
            },
        )
}

fn atom() -> impl Strategy<Value = String> {
    let bounds: Vec<f64> = BUCKET_BOUNDS_MS
        .iter()
        .copied()
        .filter(|b| b.is_finite())
        .collect();
    prop_oneof![
        (0u16..7, prop::sample::select(vec![">=", "<"]))
            .prop_map(|(c, op)| format!("status {op} {}", c * 100)),
        (0u16..7, prop::sample::select(vec![">", "<="]))
            .prop_map(|(c, op)| format!("status {op} {}", c * 100 + 99)),
        (
            prop::sample::select(bounds),
            prop::sample::select(vec!["<=", ">"])
        )
            .prop_map(|(b, op)| format!("duration_ms {op} {b}")),
        prop::sample::select(vec!["1.0.0", "2.0.0"]).prop_map(|r| format!("release = \"{r}\"")),
        Just("cohort != \"internal\"".to_string()),
        Just("route in (\"/a\", \"/b\")".to_string()),
        Just("service = \"chirpy\"".to_string()),
        Just("exists(duration_ms)".to_string()),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rollup_counts_equal_raw_counts(
        events in prop::collection::vec(event(), 1..150),
        src in expr(),
        service in prop::option::of(prop::sample::select(vec!["chirpy", "billing"])),
        from_min in 0i64..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.db")).unwrap();
        let (first, rest) = events.split_at(events.len() / 2);
        store.insert_batch(first).unwrap();
        store.insert_batch(rest).unwrap();
        let e = Expr::parse(&src).unwrap();
        prop_assert!(Store::uses_rollups(&e), "{}", src);
        let (from, to) = (T0 + from_min * 60_000, T0 + 5 * 60_000);
        let rollup = store.minute_counts(service, &e, from, to).unwrap();
        let raw = store.minute_counts_raw(service, &e, from, to).unwrap();
        prop_assert_eq!(&rollup, &raw, "{}", src);
        let want: u64 = events
            .iter()
            .filter(|ev| ev.time_ms >= from && service.is_none_or(|s| ev.service == s) && e.matches(ev))
            .count() as u64;
        prop_assert_eq!(rollup.iter().map(|c| c.count).sum::<u64>(), want);
    }
}

/// Any comparison on status or duration, answerable from the rollups or not:
/// `minute_counts` (rollups when it judges them exact) equals the raw scan, so the
/// judgement itself is tested.
fn any_atom() -> impl Strategy<Value = String> {
    let ops = prop::sample::select(vec!["=", "!=", "<", "<=", ">", ">="]);
    let mut values: Vec<f64> = vec![
        0.0, 1.0, 99.0, 100.0, 199.0, 200.0, 250.0, 499.0, 500.0, 503.0, 599.0, 600.0,
    ];
    for b in BUCKET_BOUNDS_MS.iter().filter(|b| b.is_finite()) {
        values.extend([*b, b - 0.001, b + 0.001, b - 1.0]);
    }
    (
        prop::sample::select(vec!["status", "duration_ms"]),
        ops,
        prop::sample::select(values),
    )
        .prop_map(|(f, op, v)| format!("{f} {op} {v}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn minute_counts_equal_raw_counts_for_any_bound(
        events in prop::collection::vec(event(), 20..150),
        atoms in prop::collection::vec(any_atom(), 1..4),
        join in prop::sample::select(vec![" and ", " or "]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.db")).unwrap();
        store.insert_batch(&events).unwrap();
        let src = atoms.join(join);
        let e = Expr::parse(&src).unwrap();
        let (from, to) = (T0, T0 + 5 * 60_000);
        let got = store.minute_counts(None, &e, from, to).unwrap();
        let raw = store.minute_counts_raw(None, &e, from, to).unwrap();
        prop_assert_eq!(got, raw, "{} (rollups: {})", src, Store::uses_rollups(&e));
    }
}

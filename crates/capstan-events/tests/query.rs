//! `query` and `compare` answers checked against numbers computed here from the
//! same generated events.

mod common;

use std::collections::HashMap;

use capstan_events::{Calc, Event, Expr, Field, Query};
use common::{generate, temp_store, T0};

fn nearest_rank(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.max(1) - 1]
}

#[test]
fn query_groups_and_calculations_match_independent_numbers() {
    let (_dir, store) = temp_store();
    let events = generate(6000, 20, 11);
    store.insert_batch(&events).unwrap();
    let q = Query {
        filter: Expr::parse(r#"service = "chirpy" and method = "GET""#).unwrap(),
        group_by: vec![Field::from_name("route"), Field::from_name("plan")],
        calcs: Calc::parse_list(
            "count, p50(duration_ms), p99(duration_ms), avg(bytes_out), min(duration_ms), max(duration_ms), sum(bytes_in), error_rate",
        )
        .unwrap(),
        from_ms: T0 + 60_000,
        to_ms: T0 + 19 * 60_000,
    };
    let res = store.query(&q).unwrap();
    assert_eq!(res.group_by, ["route", "plan"]);
    let mut want: HashMap<(String, Option<String>), Vec<&Event>> = HashMap::new();
    for e in &events {
        if e.service == "chirpy"
            && e.method == "GET"
            && e.time_ms >= q.from_ms
            && e.time_ms < q.to_ms
        {
            want.entry((e.route.to_string(), e.fields.get("plan").cloned()))
                .or_default()
                .push(e);
        }
    }
    assert_eq!(res.rows.len(), want.len());
    let mut last_count = f64::MAX;
    for row in &res.rows {
        let key = (row.group[0].clone().unwrap(), row.group[1].clone());
        let es = &want[&key];
        let d: Vec<f64> = es.iter().map(|e| e.duration_ms).collect();
        let n = es.len() as f64;
        let v = |i: usize| row.values[i].unwrap();
        assert_eq!(v(0), n, "{key:?}");
        assert!(
            v(0) <= last_count,
            "rows are ordered by count, largest first"
        );
        last_count = v(0);
        assert_eq!(v(1), nearest_rank(d.clone(), 50.0));
        assert_eq!(v(2), nearest_rank(d.clone(), 99.0));
        let avg_out = es.iter().map(|e| e.bytes_out as f64).sum::<f64>() / n;
        assert!((v(3) - avg_out).abs() < 1e-9);
        assert_eq!(v(4), d.iter().cloned().fold(f64::MAX, f64::min));
        assert_eq!(v(5), d.iter().cloned().fold(f64::MIN, f64::max));
        assert_eq!(v(6), es.iter().map(|e| e.bytes_in as f64).sum::<f64>());
        let errors = es
            .iter()
            .filter(|e| e.status >= 500 || e.error.is_some())
            .count() as f64;
        assert!((v(7) - errors / n).abs() < 1e-12);
    }
}

#[test]
fn query_without_group_by_is_one_row() {
    let (_dir, store) = temp_store();
    let events = generate(1000, 5, 12);
    store.insert_batch(&events).unwrap();
    let q = Query {
        filter: Expr::parse("status >= 500").unwrap(),
        group_by: vec![],
        calcs: Calc::parse_list("count").unwrap(),
        from_ms: T0,
        to_ms: T0 + 5 * 60_000,
    };
    let res = store.query(&q).unwrap();
    let want = events.iter().filter(|e| e.status >= 500).count() as f64;
    assert_eq!(res.rows.len(), 1);
    assert_eq!(res.rows[0].values[0], Some(want));
}

fn share_map(events: &[&Event], f: impl Fn(&Event) -> String) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry(f(e)).or_insert(0.0) += 1.0 / events.len() as f64;
    }
    m
}

fn tvd(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> f64 {
    let keys: std::collections::HashSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .map(|k| (a.get(k).unwrap_or(&0.0) - b.get(k).unwrap_or(&0.0)).abs())
        .sum::<f64>()
        / 2.0
}

#[test]
fn compare_ranks_fields_by_how_differently_they_are_distributed() {
    let (_dir, store) = temp_store();
    let mut events = generate(4000, 10, 13);
    // In set B (status >= 500), "plan" is mostly "team": compare must find it.
    for (i, e) in events.iter_mut().enumerate() {
        if e.status >= 500 && i % 5 != 0 {
            e.fields.insert("plan".into(), "team".into());
        }
    }
    store.insert_batch(&events).unwrap();
    let a = Expr::parse("status < 500").unwrap();
    let b = Expr::parse("status >= 500").unwrap();
    let cmp = store.compare(&a, Some(&b), T0, T0 + 10 * 60_000).unwrap();
    let sa: Vec<&Event> = events.iter().filter(|e| e.status < 500).collect();
    let sb: Vec<&Event> = events.iter().filter(|e| e.status >= 500).collect();
    assert_eq!(cmp.a_count, sa.len() as u64);
    assert_eq!(cmp.b_count, sb.len() as u64);
    let field = |name: &str| cmp.fields.iter().find(|f| f.field == name).unwrap();
    // status and error separate the sets completely.
    assert_eq!(field("status").score, 1.0);
    assert_eq!(field("error").score, 1.0);
    for (name, get) in [
        (
            "plan",
            (|e: &Event| e.fields.get("plan").cloned().unwrap_or("(none)".into()))
                as fn(&Event) -> String,
        ),
        ("route", |e: &Event| e.route.to_string()),
        ("release", |e: &Event| e.release.to_string()),
    ] {
        let want = tvd(&share_map(&sa, get), &share_map(&sb, get));
        assert!(
            (field(name).score - want).abs() < 1e-9,
            "{name}: {} vs {want}",
            field(name).score
        );
    }
    // plan is the most different field after the ones that define the sets.
    let ranked: Vec<&str> = cmp.fields.iter().map(|f| f.field.as_str()).collect();
    let plan_pos = ranked.iter().position(|f| *f == "plan").unwrap();
    assert!(plan_pos <= 3, "{ranked:?}");
    assert!(cmp
        .fields
        .windows(2)
        .all(|w| (!w[0].high_cardinality && w[1].high_cardinality) || w[0].score >= w[1].score));
    let plan = field("plan");
    assert_eq!(plan.b_top[0].value, "team");
    let team_b = sb
        .iter()
        .filter(|e| e.fields.get("plan").is_some_and(|p| p == "team"))
        .count();
    assert_eq!(plan.b_top[0].count, team_b as u64);
    assert_eq!(plan.most_different.as_ref().unwrap().value, "team");
    // Numeric: the KS statistic of durations, computed here.
    let mut da: Vec<f64> = sa.iter().map(|e| e.duration_ms).collect();
    let mut db: Vec<f64> = sb.iter().map(|e| e.duration_ms).collect();
    da.sort_by(f64::total_cmp);
    db.sort_by(f64::total_cmp);
    let mut ks: f64 = 0.0;
    for x in da.iter().chain(db.iter()) {
        let fa = da.iter().filter(|v| *v <= x).count() as f64 / da.len() as f64;
        let fb = db.iter().filter(|v| *v <= x).count() as f64 / db.len() as f64;
        ks = ks.max((fa - fb).abs());
    }
    assert!((field("duration_ms").score - ks).abs() < 1e-9);
    assert_eq!(field("duration_ms").kind, "numeric");
    // Its percentiles by nearest rank, computed here; none for a category.
    let rank = |v: &[f64], p: f64| v[((p / 100.0 * v.len() as f64).ceil() as usize).max(1) - 1];
    for (q, sorted) in [
        (field("duration_ms").a_quantiles.unwrap(), &da),
        (field("duration_ms").b_quantiles.unwrap(), &db),
    ] {
        assert_eq!(
            (q.p50, q.p90, q.p99),
            (rank(sorted, 50.0), rank(sorted, 90.0), rank(sorted, 99.0))
        );
    }
    assert!(field("plan").a_quantiles.is_none());
}

#[test]
fn compare_without_b_takes_the_rest() {
    let (_dir, store) = temp_store();
    let events = generate(2000, 10, 14);
    store.insert_batch(&events).unwrap();
    let a = Expr::parse(r#"release = "2.0.0""#).unwrap();
    let cmp = store.compare(&a, None, T0, T0 + 10 * 60_000).unwrap();
    let na = events.iter().filter(|e| e.release == "2.0.0").count() as u64;
    assert_eq!(cmp.a_count, na);
    assert_eq!(cmp.b_count, 2000 - na);
    assert_eq!(cmp.fields[0].field, "release");
    assert_eq!(cmp.fields[0].score, 1.0);
    // 2.0.0 is generated slower: durations differ, and markedly.
    let d = cmp
        .fields
        .iter()
        .find(|f| f.field == "duration_ms")
        .unwrap();
    assert!(d.score > 0.3, "{}", d.score);
}

/// An event at `T0 + i` ms of `release`, with `fields.key = value` when given.
fn event_with(i: usize, release: &str, field: Option<(&str, String)>) -> Event {
    let mut e = Event {
        time_ms: T0 + i as i64,
        service: "chirpy".into(),
        release: release.into(),
        status: 200,
        duration_ms: 10.0,
        ..Event::default()
    };
    if let Some((k, v)) = field {
        e.fields.insert(k.into(), v);
    }
    e
}

fn calc_row(
    store: &capstan_events::Store,
    group_by: &str,
    calcs: &str,
) -> Vec<(String, Vec<Option<f64>>)> {
    let res = store
        .query(&Query {
            filter: Expr::all(),
            group_by: vec![Field::from_name(group_by)],
            calcs: Calc::parse_list(calcs).unwrap(),
            from_ms: T0,
            to_ms: T0 + 60_000,
        })
        .unwrap();
    let mut rows: Vec<(String, Vec<Option<f64>>)> = res
        .rows
        .into_iter()
        .map(|r| (r.group[0].clone().unwrap_or_default(), r.values))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// `NaN`, `inf` and numbers too large for a float parse in Rust, but they are
/// not numbers a calculation can use: they are skipped like any other text.
#[test]
fn calculations_skip_nan_and_infinite_field_values() {
    let (_dir, store) = temp_store();
    let values = ["1", "2", "NaN", "inf", "-infinity", "1e999", "abc"];
    let events: Vec<Event> = values
        .iter()
        .enumerate()
        .map(|(i, v)| event_with(i, "1.0.0", Some(("items", v.to_string()))))
        .collect();
    store.insert_batch(&events).unwrap();
    let rows = calc_row(
        &store,
        "release",
        "count, avg(items), sum(items), min(items), max(items), p99(items)",
    );
    assert_eq!(
        rows,
        [(
            "1.0.0".to_string(),
            vec![
                Some(7.0),
                Some(1.5),
                Some(3.0),
                Some(1.0),
                Some(2.0),
                Some(2.0)
            ]
        )]
    );
}

/// Both sets hold `NaN` in a `fields` key of many distinct numbers: compare
/// must still finish (it once stalled in its ordered walk over the values).
#[test]
fn compare_finishes_when_both_sets_have_nan_in_a_numeric_field() {
    let (_dir, store) = temp_store();
    let mut events = Vec::new();
    for i in 0..60 {
        let release = if i % 2 == 0 { "1.0.0" } else { "2.0.0" };
        let v = if i < 4 {
            "NaN".to_string()
        } else {
            format!("{}", i * 3)
        };
        events.push(event_with(i, release, Some(("latency", v))));
    }
    store.insert_batch(&events).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let st = store.clone();
    std::thread::spawn(move || {
        let a = Expr::parse(r#"release = "1.0.0""#).unwrap();
        let _ = tx.send(st.compare(&a, None, T0, T0 + 60_000).unwrap());
    });
    let cmp = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("compare did not finish");
    assert_eq!((cmp.a_count, cmp.b_count), (30, 30));
    let latency = cmp.fields.iter().find(|f| f.field == "latency").unwrap();
    assert!(latency.score.is_finite() && (0.0..=1.0).contains(&latency.score));
}

/// A numeric field that one set has no value of (`upstream_ms` of requests
/// that never reached the upstream, a `fields` key only one release sends)
/// scores 0, as a categorical field of an empty set does, not 1 at the top.
#[test]
fn a_numeric_field_without_values_in_one_set_scores_zero() {
    let (_dir, store) = temp_store();
    let mut events = Vec::new();
    for i in 0..60 {
        let mut e = if i % 2 == 0 {
            event_with(i, "1.0.0", None)
        } else {
            event_with(i, "2.0.0", Some(("latency", format!("{}", i * 7))))
        };
        if i % 2 == 1 {
            e.upstream_ms = Some(i as f64);
        }
        events.push(e);
    }
    store.insert_batch(&events).unwrap();
    let a = Expr::parse(r#"release = "1.0.0""#).unwrap();
    let cmp = store.compare(&a, None, T0, T0 + 60_000).unwrap();
    let field = |name: &str| cmp.fields.iter().find(|f| f.field == name).unwrap();
    assert_eq!(cmp.fields[0].field, "release");
    for name in ["upstream_ms", "latency"] {
        assert_eq!(field(name).kind, "numeric", "{name}");
        assert_eq!(field(name).score, 0.0, "{name}");
        assert!(field(name).a_quantiles.is_none(), "{name}");
    }
}

/// A sum, like every calculation over a field, is null for a group where no
/// event has the field: "none" is not "zero items".
#[test]
fn sum_is_null_when_no_event_of_the_group_has_the_field() {
    let (_dir, store) = temp_store();
    let events = vec![
        event_with(0, "1.0.0", Some(("items", "4".into()))),
        event_with(1, "1.0.0", Some(("items", "0".into()))),
        event_with(2, "2.0.0", None),
        event_with(3, "2.0.0", Some(("items", "many".into()))),
    ];
    store.insert_batch(&events).unwrap();
    let rows = calc_row(&store, "release", "sum(items), avg(items), count");
    assert_eq!(
        rows,
        [
            ("1.0.0".to_string(), vec![Some(4.0), Some(2.0), Some(2.0)]),
            ("2.0.0".to_string(), vec![None, None, Some(2.0)]),
        ]
    );
}

/// `error_rate` counts as the rollout's judge does: the client's own
/// failures are no errors, and a body the client broke off is not counted
/// at all.
#[test]
fn error_rate_leaves_the_clients_failures_out_as_the_judge_does() {
    let (_dir, store) = temp_store();
    let kinds = [
        (200, None),
        (499, Some("client_cancel")),
        (408, Some("client_body")),
        (400, Some("client_body")),
        (502, Some("connect")),
        (200, Some("upstream_body")),
    ];
    let events: Vec<Event> = kinds
        .iter()
        .enumerate()
        .map(|(i, (status, error))| Event {
            time_ms: T0 + i as i64,
            service: "s".into(),
            release: if i < 4 { "a" } else { "b" }.into(),
            status: *status,
            error: error.map(Into::into),
            ..Event::default()
        })
        .collect();
    store.insert_batch(&events).unwrap();
    let q = Query {
        filter: Expr::parse(r#"service = "s""#).unwrap(),
        group_by: vec![Field::from_name("release")],
        calcs: Calc::parse_list("count, error_rate").unwrap(),
        from_ms: T0,
        to_ms: T0 + 60_000,
    };
    let res = store.query(&q).unwrap();
    let by: HashMap<String, Vec<Option<f64>>> = res
        .rows
        .into_iter()
        .map(|r| (r.group[0].clone().unwrap(), r.values))
        .collect();
    // a: one success and one cancel judged (the two broken bodies are not).
    assert_eq!(by["a"], [Some(4.0), Some(0.0)]);
    assert_eq!(by["b"], [Some(2.0), Some(1.0)]);
    // Only broken bodies: nothing judged, no rate.
    let q = Query {
        filter: Expr::parse(r#"error = "client_body""#).unwrap(),
        group_by: vec![],
        ..q
    };
    assert_eq!(store.query(&q).unwrap().rows[0].values, [Some(2.0), None]);
}

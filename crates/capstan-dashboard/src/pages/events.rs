//! The events page: the query builder, the heatmap, compare and raw events.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use capstan_events::{Calc, Event, Expr, Field, Store, BUCKET_BOUNDS_MS};
use serde::Deserialize;

use super::{page, raw, time};
use crate::svg;
use crate::AppState;

/// The events page's form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsForm {
    #[serde(rename = "where", default)]
    filter: String,
    #[serde(default)]
    group_by: String,
    #[serde(default)]
    calc: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

/// A row of the query result.
pub struct ResultRow {
    /// Group values.
    pub group: Vec<String>,
    /// Values as text and raw.
    pub values: Vec<(String, String)>,
}

/// A raw event row.
pub struct EventView {
    /// Time.
    pub at: String,
    /// Service.
    pub service: String,
    /// Method and route.
    pub route: String,
    /// Status.
    pub status: u16,
    /// Duration.
    pub duration: String,
    /// Release.
    pub release: String,
    /// Cohort.
    pub cohort: String,
}

/// A compare row.
pub struct DiffRow {
    /// Field.
    pub field: String,
    /// Score.
    pub score: String,
    /// The value that differs most, with its shares.
    pub most: String,
    /// Top values of A.
    pub a_top: String,
    /// Top values of B.
    pub b_top: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    nav: &'static str,
    title: String,
    at: String,
    generation: u64,
    f: EventsForm,
    error: Option<String>,
    range: String,
    group_by: Vec<String>,
    calcs: Vec<String>,
    rows: Vec<ResultRow>,
    heatmap: Option<String>,
    raw: Vec<EventView>,
    compare: Option<(u64, u64, Vec<DiffRow>)>,
}

fn event_view(e: &Event) -> EventView {
    EventView {
        at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(e.time_ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default(),
        service: e.service.to_string(),
        route: format!("{} {}", e.method, e.route),
        status: e.status,
        duration: format!("{:.1}", e.duration_ms),
        release: e.release.to_string(),
        cohort: e.cohort.to_string(),
    }
}

/// One raw event as a table row (the live stream sends these).
pub fn event_row(e: &Event) -> String {
    let v = event_view(e);
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        svg::esc(&v.at),
        svg::esc(&v.service),
        svg::esc(&v.route),
        v.status,
        v.duration,
        svg::esc(&v.release),
        svg::esc(&v.cohort)
    )
}

fn fmt_value(v: Option<f64>) -> (String, String) {
    match v {
        None => ("-".into(), "null".into()),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => (format!("{x:.0}"), raw(x)),
        Some(x) => (format!("{x:.3}"), raw(x)),
    }
}

fn bucket_labels() -> Vec<String> {
    BUCKET_BOUNDS_MS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let ms = |x: f64| {
                if x >= 1000.0 {
                    format!("{} s", x / 1000.0)
                } else {
                    format!("{x} ms")
                }
            };
            if b.is_finite() {
                format!("≤ {}", ms(*b))
            } else {
                format!("> {}", ms(BUCKET_BOUNDS_MS[i.saturating_sub(1)]))
            }
        })
        .collect()
}

/// A field's value as the compare table shows it: an empty one said so.
fn value_text(v: &str) -> &str {
    if v.is_empty() {
        "(empty)"
    } else {
        v
    }
}

fn shares(v: &[capstan_events::Share]) -> String {
    v.iter()
        .map(|s| format!("{} ({:.1} %)", value_text(&s.value), s.share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One set's side of a compared field: a numeric field's percentiles (its
/// score compares exact values, which a few buckets can hide), else the
/// most common values.
fn side(top: &[capstan_events::Share], q: Option<capstan_events::Quantiles>) -> String {
    match q {
        Some(q) => q.to_string(),
        None => shares(top),
    }
}

pub(crate) async fn events(State(state): State<AppState>, Query(f): Query<EventsForm>) -> Response {
    let snap = state.snapshot();
    let store_path = state.sources().settings.store.clone();
    let f2 = EventsForm {
        filter: f.filter.clone(),
        group_by: f.group_by.clone(),
        calc: f.calc.clone(),
        since: f.since.clone(),
        from: f.from.clone(),
        to: f.to.clone(),
        a: f.a.clone(),
        b: f.b.clone(),
    };
    let work = tokio::task::spawn_blocking(move || events_work(&store_path, &f2))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut p = EventsPage {
        nav: "events",
        title: "Events".into(),
        at: time(snap.at_ms),
        generation: snap.generation,
        f,
        error: None,
        range: String::new(),
        group_by: vec![],
        calcs: vec![],
        rows: vec![],
        heatmap: None,
        raw: vec![],
        compare: None,
    };
    match work {
        Ok(w) => {
            p.range = w.range;
            p.group_by = w.group_by;
            p.calcs = w.calcs;
            p.rows = w.rows;
            p.heatmap = w.heatmap;
            p.raw = w.raw;
            p.compare = w.compare;
        }
        Err(e) => p.error = Some(e),
    }
    let mut r = page(p);
    if r.status() == StatusCode::OK {
        // A bad expression is the form's fault, said on the page.
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

struct EventsWork {
    range: String,
    group_by: Vec<String>,
    calcs: Vec<String>,
    rows: Vec<ResultRow>,
    heatmap: Option<String>,
    raw: Vec<EventView>,
    compare: Option<(u64, u64, Vec<DiffRow>)>,
}

fn events_work(store_path: &std::path::Path, f: &EventsForm) -> Result<EventsWork, String> {
    let nz = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let range = capstan_events::cli::TimeRange {
        since: nz(&f.since).filter(|_| nz(&f.from).is_none()),
        from: nz(&f.from),
        to: nz(&f.to),
    };
    let (from_ms, to_ms) = range
        .resolve(chrono::Utc::now().timestamp_millis())
        .map_err(|e| format!("time range: {e}"))?;
    let filter = match nz(&f.filter) {
        Some(s) => Expr::parse(&s).map_err(|e| format!("where: {e}"))?,
        None => Expr::all(),
    };
    let calc = nz(&f.calc).unwrap_or_else(|| "count".into());
    let calcs = Calc::parse_list(&calc).map_err(|e| format!("calculations: {e}"))?;
    let group_by: Vec<Field> = f
        .group_by
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Field::from_user_name(s).map_err(|m| format!("group by: {m}")))
        .collect::<Result<_, _>>()?;
    if !store_path.exists() {
        return Err(format!(
            "no event store at {} (record events with the proxy first)",
            store_path.display()
        ));
    }
    let store = Store::open(store_path).map_err(|e| e.to_string())?;
    let res = store
        .query(&capstan_events::Query {
            filter: filter.clone(),
            group_by,
            calcs,
            from_ms,
            to_ms,
        })
        .map_err(|e| e.to_string())?;
    let rows = res
        .rows
        .iter()
        .take(500)
        .map(|r| ResultRow {
            group: r
                .group
                .iter()
                .map(|g| g.clone().unwrap_or_else(|| "-".into()))
                .collect(),
            values: r.values.iter().map(|v| fmt_value(*v)).collect(),
        })
        .collect();
    // Heatmap from the rollups: up to 60 columns over the range.
    let rollups = store
        .rollups(None, from_ms, to_ms)
        .map_err(|e| e.to_string())?;
    let cols = 60usize;
    let width = ((to_ms - from_ms) / cols as i64).max(60_000);
    let mut cells = vec![vec![0u64; BUCKET_BOUNDS_MS.len()]; cols];
    let mut any = false;
    for r in &rollups {
        let i = (((r.minute_ms - from_ms).max(0)) / width) as usize;
        if let Some(col) = cells.get_mut(i.min(cols - 1)) {
            for (j, n) in r.buckets.iter().enumerate() {
                col[j] += n;
                any |= *n > 0;
            }
        }
    }
    let heatmap = any.then(|| svg::heatmap("heat", from_ms, to_ms, &cells, &bucket_labels()));
    // The newest 50 matching events.
    let mut raw: std::collections::VecDeque<EventView> = Default::default();
    store
        .scan(from_ms, to_ms, None, |se| {
            if filter.matches(&se.event) {
                raw.push_back(event_view(&se.event));
                if raw.len() > 50 {
                    raw.pop_front();
                }
            }
            true
        })
        .map_err(|e| e.to_string())?;
    let compare = match nz(&f.a) {
        None => None,
        Some(a) => {
            let ea = Expr::parse(&a).map_err(|e| format!("set A: {e}"))?;
            let eb = match nz(&f.b) {
                Some(b) => Some(Expr::parse(&b).map_err(|e| format!("set B: {e}"))?),
                None => None,
            };
            let c = store
                .compare(&ea, eb.as_ref(), from_ms, to_ms)
                .map_err(|e| e.to_string())?;
            Some((
                c.a_count,
                c.b_count,
                c.fields
                    .iter()
                    .take(15)
                    .map(|d| DiffRow {
                        field: d.field.clone(),
                        score: format!("{:.3}", d.score),
                        most: d
                            .most_different
                            .as_ref()
                            .map(|m| {
                                format!(
                                    "{}: {:.1} % vs {:.1} %",
                                    value_text(&m.value),
                                    m.a_share * 100.0,
                                    m.b_share * 100.0
                                )
                            })
                            .unwrap_or_default(),
                        a_top: side(&d.a_top, d.a_quantiles),
                        b_top: side(&d.b_top, d.b_quantiles),
                    })
                    .collect(),
            ))
        }
    };
    Ok(EventsWork {
        range: format!("{} to {}", time(from_ms), time(to_ms)),
        group_by: res.group_by,
        calcs: res.calcs,
        rows,
        heatmap,
        raw: raw.into_iter().rev().collect(),
        compare,
    })
}

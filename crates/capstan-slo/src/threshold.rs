//! `thresholdMetric` SLOs over the capstan event store.
//!
//! The metric is a calculation over each minute's events, optionally
//! filtered: `p99(duration_ms)`, `avg(duration_ms) where route = "/api"`,
//! `count where status < 500`. Each minute with a value is one data point,
//! good when `value op threshold` holds (the objective's `op` and `value`),
//! like a metric scraped once a minute. Time slices then judge the data
//! points: with `Timeslices` a slice is good when its share of good points
//! reaches `timeSliceTarget` (a slice without points is good); with
//! `RatioTimeslices` the SLI is the mean of the slices' good shares. So the
//! per-minute good/bad points feed the same math as a ratio SLO's counts.
//!
//! Only what the per-minute rollups answer exactly is accepted: `count`
//! (every minute is a point, 0 without events), `avg(duration_ms)` (minutes
//! with events) and `pNN(duration_ms)` (nearest rank, minutes with events)
//! with `op: lte` or `gt` and a `value` on a latency bucket edge (5, 10, 25,
//! 50, 100, 250, 300, 500, 1000, 2500, 5000, 10000 ms), where the rank's
//! bucket decides the comparison; filters on service, route, release,
//! cohort and status classes.

use std::path::Path;

use capstan_events::{CalcKind, Expr, Store, BUCKET_BOUNDS_MS};

use crate::math::{Series, MINUTE_MS};
use crate::source::SourceError;
use crate::spec::Op;

/// What a capstan threshold metric computes per minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calc {
    /// Events in the minute.
    Count,
    /// Mean `duration_ms` of the minute's events.
    Avg,
    /// Nearest-rank percentile of `duration_ms` (0 < p < 100).
    Percentile(f64),
}

/// A parsed capstan threshold metric: `CALC [where FILTER]`.
#[derive(Debug, Clone)]
pub struct Metric {
    /// The calculation.
    pub calc: Calc,
    /// The filter (`None`: every event of the service).
    pub filter: Option<Expr>,
}

const SUPPORTED: &str = "a capstan thresholdMetric is `count`, `avg(duration_ms)` or `pNN(duration_ms)`, optionally followed by `where EXPR` on service, route, release, cohort or status classes";

/// Parses `CALC [where FILTER]`; the message says what is accepted.
pub fn parse(text: &str) -> Result<Metric, String> {
    let lower = text.to_ascii_lowercase();
    let (calc_text, filter_text) = match lower.find(" where ") {
        Some(i) => (&text[..i], Some(text[i + 7..].trim())),
        None => (text, None),
    };
    let calcs = capstan_events::Calc::parse_list(calc_text.trim())
        .map_err(|e| format!("`{text}`: {e}; {SUPPORTED}"))?;
    let [c] = calcs.as_slice() else {
        return Err(format!("`{text}`: one calculation only; {SUPPORTED}"));
    };
    let on_duration = c.field.as_ref().is_some_and(|f| f.name() == "duration_ms");
    let calc = match c.kind {
        CalcKind::Count => Calc::Count,
        CalcKind::Avg if on_duration => Calc::Avg,
        CalcKind::Percentile(p) if on_duration => Calc::Percentile(f64::from(p)),
        _ => {
            return Err(format!(
                "`{text}`: `{}` is not read from the per-minute rollups; {SUPPORTED}",
                c.name()
            ))
        }
    };
    let filter = match filter_text {
        None => None,
        Some(f) => {
            let e = Expr::parse(f).map_err(|e| format!("`{text}`: {e}"))?;
            if !Store::uses_rollups(&e) || f.contains("duration_ms") {
                return Err(format!(
                    "`{text}`: the filter `{f}` is not answered from the per-minute rollups; {SUPPORTED}"
                ));
            }
            Some(e)
        }
    };
    Ok(Metric { calc, filter })
}

/// Whether an objective's `op` and `value` can be judged exactly for
/// `metric`; the message says what can.
pub fn check_objective(metric: &Metric, op: Op, value: f64) -> Result<(), String> {
    if let Calc::Percentile(_) = metric.calc {
        let on_edge = BUCKET_BOUNDS_MS
            .iter()
            .any(|b| b.is_finite() && *b == value);
        if !matches!(op, Op::Lte | Op::Gt) || !on_edge {
            return Err(format!(
                "a percentile is compared exactly from the latency buckets only with `op: lte` or `gt` and a `value` on a bucket edge ({})",
                BUCKET_BOUNDS_MS
                    .iter()
                    .filter(|b| b.is_finite())
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    Ok(())
}

/// Whether one minute's histogram meets `value op threshold`; `None` when
/// the minute has no data point (no events, for `avg` and percentiles).
pub fn minute_holds(
    calc: Calc,
    count: u64,
    sum_duration_ms: f64,
    buckets: &[u64; 13],
    op: Op,
    threshold: f64,
) -> Option<bool> {
    match calc {
        Calc::Count => Some(op.holds(count as f64, threshold)),
        Calc::Avg => (count > 0).then(|| op.holds(sum_duration_ms / count as f64, threshold)),
        Calc::Percentile(p) => {
            if count == 0 {
                return None;
            }
            // Nearest rank, as `capstan events query` computes it: the
            // percentile is at most the edge when that many events are.
            let rank = ((p / 100.0) * count as f64).ceil().clamp(1.0, count as f64) as u64;
            let edge = BUCKET_BOUNDS_MS.iter().position(|b| *b == threshold)?;
            let at_most: u64 = buckets[..=edge].iter().sum();
            let le = at_most >= rank;
            Some(match op {
                Op::Lte => le,
                Op::Gt => !le,
                // Refused by `check_objective`.
                Op::Lt | Op::Gte => return None,
            })
        }
    }
}

/// The per-minute data points of `metric` for `service` over `[from_ms,
/// to_ms)` as a series of (bad, 1) per point, for the slice methods.
pub fn series(
    store_path: &Path,
    service: &str,
    metric: &Metric,
    op: Op,
    threshold: f64,
    from_ms: i64,
    to_ms: i64,
) -> Result<Series, SourceError> {
    if !store_path.exists() {
        return Err(SourceError::Store {
            path: store_path.to_path_buf(),
            message: "no such file (record events with the proxy first, or give --store)".into(),
        });
    }
    let store = Store::open(store_path).map_err(|e| SourceError::Events(e.to_string()))?;
    let all = Expr::parse("status >= 0").expect("a valid expression");
    let filter = metric.filter.as_ref().unwrap_or(&all);
    let minutes = store
        .minute_histograms(Some(service), filter, from_ms, to_ms)
        .map_err(|e| SourceError::Events(e.to_string()))?
        .ok_or_else(|| {
            SourceError::Unsupported(
                "the threshold metric's filter is not answered from the per-minute rollups"
                    .to_string(),
            )
        })?;
    let mut rows: Vec<(i64, f64, f64)> = Vec::new();
    let mut point = |minute_ms: i64, holds: Option<bool>| {
        if let Some(h) = holds {
            rows.push((minute_ms, if h { 0.0 } else { 1.0 }, 1.0));
        }
    };
    if metric.calc == Calc::Count {
        // Every minute is a data point; a minute without events counts 0.
        let first = from_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let first = if first < from_ms {
            first + MINUTE_MS
        } else {
            first
        };
        let mut it = minutes.iter().peekable();
        let mut m = first;
        while m < to_ms {
            let count = match it.peek() {
                Some(r) if r.minute_ms == m => it.next().map(|r| r.count).unwrap_or(0),
                _ => 0,
            };
            point(
                m,
                minute_holds(Calc::Count, count, 0.0, &[0; 13], op, threshold),
            );
            m += MINUTE_MS;
        }
    } else {
        for r in &minutes {
            point(
                r.minute_ms,
                minute_holds(
                    metric.calc,
                    r.count,
                    r.sum_duration_ms,
                    &r.buckets,
                    op,
                    threshold,
                ),
            );
        }
    }
    Ok(Series::new(rows))
}

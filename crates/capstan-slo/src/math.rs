//! The SLO math: SLI, error budget, burn rates, multi-window multi-burn-rate
//! alerts, exhaustion forecast and per-deploy attribution.
//!
//! Pure: no IO, no async, no clock. The caller passes `now` and the counts
//! (a [`Windows`] implementation: per-minute [`Series`] from the event store,
//! or counts fetched from Prometheus for the windows [`required_windows`] names).

use chrono::{DateTime, Duration, LocalResult, Months, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::spec::{Budgeting, CalendarUnit, Objective, TimeWindow};

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// Bad and total events in a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Bad events (total minus good for a `good` ratio).
    pub bad: f64,
    /// All events.
    pub total: f64,
}

impl Counts {
    /// Bad over total; `None` without events.
    pub fn error_ratio(&self) -> Option<f64> {
        (self.total > 0.0).then(|| (self.bad / self.total).clamp(0.0, 1.0))
    }
}

/// Counts over spans of time: what the math reads.
pub trait Windows {
    /// Events in `[from_ms, to_ms)`.
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts;
}

/// Per-minute counts with prefix sums: any span in O(log n).
#[derive(Debug, Clone, Default)]
pub struct Series {
    minutes: Vec<i64>,
    prefix_bad: Vec<f64>,
    prefix_total: Vec<f64>,
}

impl Series {
    /// Builds a series from `(minute_ms, bad, total)` rows in any order;
    /// rows of the same minute add up.
    pub fn new(mut rows: Vec<(i64, f64, f64)>) -> Series {
        rows.sort_by_key(|r| r.0);
        let mut s = Series {
            minutes: Vec::with_capacity(rows.len()),
            prefix_bad: vec![0.0],
            prefix_total: vec![0.0],
        };
        for (m, bad, total) in rows {
            if s.minutes.last() == Some(&m) {
                *s.prefix_bad.last_mut().expect("non-empty") += bad;
                *s.prefix_total.last_mut().expect("non-empty") += total;
                continue;
            }
            let (b, t) = (
                *s.prefix_bad.last().expect("non-empty"),
                *s.prefix_total.last().expect("non-empty"),
            );
            s.minutes.push(m);
            s.prefix_bad.push(b + bad);
            s.prefix_total.push(t + total);
        }
        s
    }

    /// Builds a series from per-minute good (or bad) and total counts.
    /// `numerator_is_good`: the first list counts good events (bad = total −
    /// good, never below 0); else it counts bad events.
    pub fn from_counts(
        numerator: &[(i64, u64)],
        total: &[(i64, u64)],
        numerator_is_good: bool,
    ) -> Series {
        let mut map: std::collections::BTreeMap<i64, (f64, f64)> = Default::default();
        for &(m, n) in total {
            map.entry(m).or_default().1 += n as f64;
        }
        for &(m, n) in numerator {
            map.entry(m).or_default().0 += n as f64;
        }
        Series::new(
            map.into_iter()
                .map(|(m, (num, total))| {
                    let bad = if numerator_is_good {
                        (total - num).max(0.0)
                    } else {
                        num.min(total)
                    };
                    (m, bad, total)
                })
                .collect(),
        )
    }

    /// Number of minutes with events.
    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    /// Whether no minute has events.
    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }
}

impl Windows for Series {
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts {
        if to_ms <= from_ms {
            return Counts::default();
        }
        let a = self.minutes.partition_point(|&m| m < from_ms);
        let b = self.minutes.partition_point(|&m| m < to_ms);
        Counts {
            bad: self.prefix_bad[b] - self.prefix_bad[a],
            total: self.prefix_total[b] - self.prefix_total[a],
        }
    }
}

/// The burn-rate windows reported, with their names.
pub const BURN_WINDOWS: [(&str, i64); 7] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1440),
    ("3d", 4320),
];

/// A multi-window alert condition of the SRE workbook: fires when both the
/// long and the short window burn faster than `factor`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Condition {
    /// `page` or `ticket`.
    pub severity: Severity,
    /// Long window, minutes.
    pub long_minutes: i64,
    /// Short window, minutes.
    pub short_minutes: i64,
    /// Share of the whole budget this condition lets burn in its long window.
    pub budget_share: f64,
    /// Burn-rate threshold, scaled to the SLO's window.
    pub factor: f64,
}

/// Alert severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing fires.
    Ok,
    /// Slow burn: someone should look within a day.
    Ticket,
    /// Fast burn: wake someone up.
    Page,
}

/// The workbook's four conditions for an SLO window of `window_minutes`.
///
/// The workbook's factors (14.4, 6, 3, 1) are for 30 days: each is the burn
/// rate that spends a fixed share of the budget (2 %, 5 %, 10 %, 10 %) in its
/// long window (1h, 6h, 1d, 3d). For another window the share stays and the
/// factor is `share × window / long window`: a 28-day SLO pages at 13.44×.
pub fn conditions(window_minutes: i64) -> [Condition; 4] {
    let c = |severity, long_minutes: i64, short_minutes, budget_share: f64| Condition {
        severity,
        long_minutes,
        short_minutes,
        budget_share,
        factor: budget_share * window_minutes as f64 / long_minutes as f64,
    };
    [
        c(Severity::Page, 60, 5, 0.02),
        c(Severity::Page, 360, 30, 0.05),
        c(Severity::Ticket, 1440, 120, 0.10),
        c(Severity::Ticket, 4320, 360, 0.10),
    ]
}

/// The span being evaluated and the period the budget is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    /// Start of the evaluated span (rolling: `now − window`; calendar: the
    /// period's start), unix ms.
    pub start_ms: i64,
    /// End of the budget period (rolling: `now`; calendar: the period's end).
    pub end_ms: i64,
    /// `now`.
    pub now_ms: i64,
}

impl Period {
    /// Length of the budget period in minutes.
    pub fn minutes(&self) -> i64 {
        (self.end_ms - self.start_ms) / MINUTE_MS
    }
}

/// The period `now` falls in.
pub fn period(window: &TimeWindow, now_ms: i64) -> Period {
    match *window {
        TimeWindow::Rolling { minutes } => Period {
            start_ms: now_ms - minutes * MINUTE_MS,
            end_ms: now_ms,
            now_ms,
        },
        TimeWindow::Calendar {
            count,
            unit,
            start,
            zone,
        } => {
            let (a, b) = calendar_bounds(count, unit, start, zone, now_ms);
            Period {
                start_ms: a,
                end_ms: b,
                now_ms,
            }
        }
    }
}

/// Unix ms of a local time in `zone`. A time skipped by a DST change moves
/// forward by the gap; a repeated time takes its first occurrence.
fn local_ms(zone: Tz, t: NaiveDateTime) -> i64 {
    match zone.from_local_datetime(&t) {
        LocalResult::Single(d) => d.timestamp_millis(),
        LocalResult::Ambiguous(a, _) => a.timestamp_millis(),
        LocalResult::None => {
            // Inside a gap: the first valid minute after it.
            let mut probe = t;
            for _ in 0..(4 * 60) {
                probe += Duration::minutes(1);
                if let Some(d) = zone.from_local_datetime(&probe).earliest() {
                    return d.timestamp_millis();
                }
            }
            Utc.from_utc_datetime(&t).timestamp_millis()
        }
    }
}

fn nth_start(count: u32, unit: CalendarUnit, start: NaiveDateTime, k: i64) -> NaiveDateTime {
    let months = |n: i64| -> NaiveDateTime {
        if n >= 0 {
            start + Months::new(n as u32)
        } else {
            start - Months::new((-n) as u32)
        }
    };
    let c = i64::from(count);
    match unit {
        CalendarUnit::Day => start + Duration::days(c * k),
        CalendarUnit::Week => start + Duration::days(7 * c * k),
        CalendarUnit::Month => months(c * k),
        CalendarUnit::Quarter => months(3 * c * k),
        CalendarUnit::Year => months(12 * c * k),
    }
}

/// `[start, end)` in unix ms of the calendar period containing `now_ms`.
pub fn calendar_bounds(
    count: u32,
    unit: CalendarUnit,
    start: NaiveDateTime,
    zone: Tz,
    now_ms: i64,
) -> (i64, i64) {
    let at = |k: i64| local_ms(zone, nth_start(count, unit, start, k));
    // Estimate k from the average period length, then correct.
    let approx_days = match unit {
        CalendarUnit::Day => 1.0,
        CalendarUnit::Week => 7.0,
        CalendarUnit::Month => 30.436_875,
        CalendarUnit::Quarter => 91.310_625,
        CalendarUnit::Year => 365.2425,
    } * f64::from(count);
    let origin = at(0);
    let mut k = ((now_ms - origin) as f64 / (approx_days * 86_400_000.0)).floor() as i64;
    while at(k) > now_ms {
        k -= 1;
    }
    while at(k + 1) <= now_ms {
        k += 1;
    }
    (at(k), at(k + 1))
}

/// The error budget.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Budget {
    /// The budget as a ratio: `1 − target`.
    pub total_ratio: f64,
    /// Share of the budget spent (may exceed 1 when overspent).
    pub consumed: f64,
    /// Share left, in [0, 1] (0 once spent).
    pub remaining: f64,
    /// For availability SLOs: the period's budget in minutes of downtime.
    pub minutes_total: Option<f64>,
    /// For availability SLOs: minutes of downtime left (never negative).
    pub minutes_left: Option<f64>,
}

/// One burn rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BurnRate {
    /// `5m`, `30m`, ... `3d`.
    pub window: &'static str,
    /// Its length in minutes.
    pub minutes: i64,
    /// Error ratio over the window divided by the budget ratio (0 without errors).
    pub rate: f64,
}

/// The alert state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The most severe condition firing (`ok` when none).
    pub state: Severity,
    /// The conditions that fire.
    pub firing: Vec<Condition>,
}

/// When the budget runs out at the current burn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// The burn rate the forecast assumes (the 1h burn rate).
    pub burn_rate: f64,
    /// Unix ms when the remaining budget is spent; `None`: not at this burn
    /// rate (nothing is burning).
    pub exhausted_at_ms: Option<i64>,
    /// Whether it is already spent.
    pub exhausted: bool,
}

/// A deploy to attribute budget to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployMark {
    /// When it happened, unix ms.
    pub time_ms: i64,
    /// What it was, like `release 2.1.0` or `migration 12 (contract)`.
    pub label: String,
}

/// Budget spent after one deploy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The deploy.
    pub deploy: DeployMark,
    /// End of the span charged to it: one hour later, or the next deploy.
    pub until_ms: i64,
    /// Bad events (or bad slices) in the span.
    pub bad: f64,
    /// Share of the period's budget spent in the span.
    pub budget_share: f64,
    /// The same as minutes of downtime (availability SLOs).
    pub minutes: Option<f64>,
}

/// Everything `slo status` shows for one objective.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// The period.
    pub period: Period,
    /// The objective's target.
    pub target: f64,
    /// The SLI over `[period.start_ms, now)`; `None` without events.
    pub sli: Option<f64>,
    /// Events in the span (slices for `Timeslices`).
    pub counts: Counts,
    /// The budget.
    pub budget: Budget,
    /// Burn rates over [`BURN_WINDOWS`].
    pub burn_rates: Vec<BurnRate>,
    /// The alert state.
    pub alert: Alert,
    /// The exhaustion forecast.
    pub forecast: Forecast,
    /// Budget spent after each deploy in the span.
    pub deploys: Vec<Attribution>,
}

/// How an objective turns counts into an error ratio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Bad events over all events.
    Occurrences,
    /// Bad slices over all slices; a slice is bad when its good ratio is
    /// below `slice_target`. A slice without events is good.
    Timeslices {
        /// Slice length in minutes.
        slice_minutes: i64,
        /// Good ratio a good slice reaches.
        slice_target: f64,
    },
    /// The mean of the slices' error ratios (slices with events only).
    RatioTimeslices {
        /// Slice length in minutes.
        slice_minutes: i64,
    },
}

impl Method {
    /// The method of an objective under a budgeting method.
    pub fn of(budgeting: Budgeting, o: &Objective) -> Method {
        match budgeting {
            Budgeting::Occurrences => Method::Occurrences,
            Budgeting::Timeslices => Method::Timeslices {
                slice_minutes: o.time_slice_minutes.unwrap_or(1),
                slice_target: o.time_slice_target.unwrap_or(1.0),
            },
            Budgeting::RatioTimeslices => Method::RatioTimeslices {
                slice_minutes: o.time_slice_minutes.unwrap_or(1),
            },
        }
    }

    /// (bad, total) over `[from, to)`: events, or slices for the slice
    /// methods (slices are aligned to the unix epoch; partial slices at the
    /// edges count as whole ones).
    pub fn measure(&self, w: &dyn Windows, from_ms: i64, to_ms: i64) -> Counts {
        match *self {
            Method::Occurrences => w.counts(from_ms, to_ms),
            Method::Timeslices {
                slice_minutes,
                slice_target,
            } => {
                let mut out = Counts::default();
                for_slices(slice_minutes, from_ms, to_ms, |a, b| {
                    let c = w.counts(a, b);
                    out.total += 1.0;
                    if let Some(e) = c.error_ratio() {
                        // Good ratio below the slice target, with a little
                        // room for float error.
                        if 1.0 - e < slice_target - 1e-12 {
                            out.bad += 1.0;
                        }
                    }
                });
                out
            }
            Method::RatioTimeslices { slice_minutes } => {
                let mut out = Counts::default();
                for_slices(slice_minutes, from_ms, to_ms, |a, b| {
                    if let Some(e) = w.counts(a, b).error_ratio() {
                        out.total += 1.0;
                        out.bad += e;
                    }
                });
                out
            }
        }
    }
}

fn for_slices(slice_minutes: i64, from_ms: i64, to_ms: i64, mut f: impl FnMut(i64, i64)) {
    let len = slice_minutes.max(1) * MINUTE_MS;
    let mut a = from_ms.div_euclid(len) * len;
    while a < to_ms {
        f(a.max(from_ms), (a + len).min(to_ms));
        a += len;
    }
}

/// Burn rate: the error ratio over the budget ratio.
pub fn burn_rate(error_ratio: Option<f64>, target: f64) -> f64 {
    let budget = 1.0 - target;
    match error_ratio {
        Some(e) if budget > 0.0 => e / budget,
        Some(e) if e > 0.0 => f64::INFINITY,
        _ => 0.0,
    }
}

/// The budget from the error ratio so far. `minutes`: the period's length
/// when the budget is also shown as minutes of downtime.
pub fn budget(error_ratio: Option<f64>, target: f64, period_minutes: Option<i64>) -> Budget {
    let total_ratio = 1.0 - target;
    let consumed = match error_ratio {
        None => 0.0,
        Some(e) if total_ratio > 0.0 => e / total_ratio,
        Some(e) if e > 0.0 => f64::INFINITY,
        Some(_) => 0.0,
    };
    let remaining = (1.0 - consumed).clamp(0.0, 1.0);
    let minutes_total = period_minutes.map(|m| m as f64 * total_ratio);
    Budget {
        total_ratio,
        consumed,
        remaining,
        minutes_total,
        minutes_left: minutes_total.map(|t| t * remaining),
    }
}

/// The alert state from burn rates (looked up by window length in minutes).
pub fn alert(window_minutes: i64, burn: &dyn Fn(i64) -> f64) -> Alert {
    let firing: Vec<Condition> = conditions(window_minutes)
        .into_iter()
        .filter(|c| burn(c.long_minutes) > c.factor && burn(c.short_minutes) > c.factor)
        .collect();
    Alert {
        state: firing
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Ok),
        firing,
    }
}

/// When the remaining budget runs out at `burn` (a burn rate of 1 spends the
/// whole budget in one period).
pub fn forecast(remaining: f64, burn: f64, period_minutes: i64, now_ms: i64) -> Forecast {
    if remaining <= 0.0 {
        return Forecast {
            burn_rate: burn,
            exhausted_at_ms: Some(now_ms),
            exhausted: true,
        };
    }
    let exhausted_at_ms = (burn > 0.0 && burn.is_finite()).then(|| {
        let ms = remaining * period_minutes as f64 * MINUTE_MS as f64 / burn;
        now_ms.saturating_add(ms.min(i64::MAX as f64 / 2.0) as i64)
    });
    Forecast {
        burn_rate: burn,
        exhausted_at_ms,
        exhausted: false,
    }
}

/// Every `[from, to)` span [`evaluate`] reads, so a source that answers per
/// span (Prometheus) can fetch them first. The first one is the whole span.
pub fn required_windows(period: &Period, deploys: &[DeployMark]) -> Vec<(i64, i64)> {
    let now = period.now_ms;
    let mut v = vec![(period.start_ms, now)];
    for (_, m) in BURN_WINDOWS {
        v.push((now - m * MINUTE_MS, now));
    }
    for (_, a, b) in attribution_spans(period, deploys) {
        v.push((a, b));
    }
    v
}

/// Each deploy in the span with the span charged to it: until one hour
/// later, the next deploy, or now, whichever comes first.
fn attribution_spans(period: &Period, deploys: &[DeployMark]) -> Vec<(DeployMark, i64, i64)> {
    let mut marks: Vec<&DeployMark> = deploys
        .iter()
        .filter(|d| d.time_ms >= period.start_ms && d.time_ms < period.now_ms)
        .collect();
    marks.sort_by_key(|d| d.time_ms);
    let mut spans = Vec::new();
    for (i, d) in marks.iter().enumerate() {
        let mut until = (d.time_ms + 60 * MINUTE_MS).min(period.now_ms);
        if let Some(next) = marks.get(i + 1) {
            until = until.min(next.time_ms);
        }
        spans.push(((*d).clone(), d.time_ms, until));
    }
    spans
}

/// Evaluates one objective at `period.now_ms`.
///
/// `availability`: also express the budget as minutes of downtime.
pub fn evaluate(
    w: &dyn Windows,
    method: Method,
    target: f64,
    window: &TimeWindow,
    now_ms: i64,
    deploys: &[DeployMark],
    availability: bool,
) -> Evaluation {
    let period = period(window, now_ms);
    let span = method.measure(w, period.start_ms, now_ms);
    let error_ratio = span.error_ratio();
    let period_minutes = period.minutes();
    let budget = budget(error_ratio, target, availability.then_some(period_minutes));
    let rate_of = |minutes: i64| {
        burn_rate(
            method
                .measure(w, now_ms - minutes * MINUTE_MS, now_ms)
                .error_ratio(),
            target,
        )
    };
    let burn_rates: Vec<BurnRate> = BURN_WINDOWS
        .iter()
        .map(|&(name, minutes)| BurnRate {
            window: name,
            minutes,
            rate: rate_of(minutes),
        })
        .collect();
    let lookup = |m: i64| {
        burn_rates
            .iter()
            .find(|b| b.minutes == m)
            .map(|b| b.rate)
            .unwrap_or(0.0)
    };
    let alert = alert(period_minutes, &lookup);
    let forecast = forecast(budget.remaining, lookup(60), period_minutes, now_ms);
    // Attribution: the allowed bad events (or slices) of the span so far.
    let allowed = span.total * (1.0 - target);
    let deploys = attribution_spans(&period, deploys)
        .into_iter()
        .map(|(deploy, a, b)| {
            let bad = method.measure(w, a, b).bad;
            let share = if allowed > 0.0 {
                bad / allowed
            } else if bad > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            Attribution {
                deploy,
                until_ms: b,
                bad,
                budget_share: share,
                minutes: budget.minutes_total.map(|t| t * share),
            }
        })
        .collect();
    Evaluation {
        period,
        target,
        sli: error_ratio.map(|e| 1.0 - e),
        counts: span,
        budget,
        burn_rates,
        alert,
        forecast,
        deploys,
    }
}

/// Unix ms as RFC 3339 UTC, for reports.
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workbook_factors_for_thirty_days() {
        let c = conditions(30 * 1440);
        let f: Vec<f64> = c
            .iter()
            .map(|c| (c.factor * 1000.0).round() / 1000.0)
            .collect();
        assert_eq!(f, vec![14.4, 6.0, 3.0, 1.0]);
        let c28 = conditions(28 * 1440);
        assert!((c28[0].factor - 13.44).abs() < 1e-9);
    }

    #[test]
    fn budget_of_three_nines_is_43_minutes_a_month() {
        let b = budget(Some(0.0), 0.999, Some(30 * 1440));
        assert!((b.minutes_total.unwrap() - 43.2).abs() < 1e-9);
        assert_eq!(b.minutes_left, b.minutes_total);
    }
}

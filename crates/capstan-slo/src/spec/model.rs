//! The validated model of an SLO file: what the rest of the crate reads.

use std::path::PathBuf;

use chrono::NaiveDateTime;
use chrono_tz::Tz;

/// One problem in an SLO file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{}:{line}: {field}: {message}", file.display())]
pub struct SpecError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line of the field (or of the document when the field is missing).
    pub line: usize,
    /// Dotted path of the field, like `spec.objectives[0].target`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Where an SLO was defined.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Origin {
    /// The file.
    pub file: PathBuf,
    /// 1-based line where its document starts.
    pub line: usize,
    /// 1-based line of `spec.service`.
    pub service_line: usize,
}

/// A query against one metric source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Query {
    /// A `capstan events` expression over the event store's rollups.
    Capstan {
        /// The expression, like `status < 500`.
        expr: String,
        /// The service whose events count (the SLO's `service` unless given).
        service: String,
    },
    /// PromQL; `{{.window}}` is replaced with the range (`5m`, `30d`, ...).
    Prometheus {
        /// The query text.
        query: String,
    },
}

impl Query {
    /// The source kind, for messages: `capstan` or `prometheus`.
    pub fn kind(&self) -> &'static str {
        match self {
            Query::Capstan { .. } => "capstan",
            Query::Prometheus { .. } => "prometheus",
        }
    }
}

/// Whether the ratio's numerator counts good or bad events.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Counted {
    /// Good events over total.
    Good(Query),
    /// Bad events over total.
    Bad(Query),
}

impl Counted {
    /// The numerator's query.
    pub fn query(&self) -> &Query {
        match self {
            Counted::Good(q) | Counted::Bad(q) => q,
        }
    }
}

/// Comparison of a threshold metric with an objective's `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

impl Op {
    /// Whether `x op value` holds.
    pub fn holds(self, x: f64, value: f64) -> bool {
        match self {
            Op::Lt => x < value,
            Op::Lte => x <= value,
            Op::Gt => x > value,
            Op::Gte => x >= value,
        }
    }
}

/// What the SLO measures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Indicator {
    /// Good (or bad) events over total events.
    Ratio {
        /// The numerator.
        counted: Counted,
        /// The denominator.
        total: Query,
    },
    /// One metric compared with each objective's `op` and `value`.
    Threshold {
        /// The metric.
        metric: Query,
    },
}

impl Indicator {
    /// The source kind all of the indicator's queries use.
    pub fn source_kind(&self) -> &'static str {
        match self {
            Indicator::Ratio { total, .. } => total.kind(),
            Indicator::Threshold { metric } => metric.kind(),
        }
    }
}

/// A unit of a calendar window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CalendarUnit {
    /// Days (local, so 23 or 25 hours across a DST change).
    Day,
    /// Weeks.
    Week,
    /// Months.
    Month,
    /// Quarters (three months).
    Quarter,
    /// Years.
    Year,
}

/// The SLO's time window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TimeWindow {
    /// The last `minutes` minutes, ending now.
    Rolling {
        /// Window length in minutes.
        minutes: i64,
    },
    /// Calendar periods `count` × `unit` long, the first starting at `start`
    /// (local time in `zone`); the current period is evaluated.
    Calendar {
        /// Units per period.
        count: u32,
        /// The unit.
        unit: CalendarUnit,
        /// Local start of the first period.
        #[serde(serialize_with = "ser_naive")]
        start: NaiveDateTime,
        /// IANA time zone.
        #[serde(serialize_with = "ser_tz")]
        zone: Tz,
    },
}

fn ser_naive<S: serde::Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn ser_tz<S: serde::Serializer>(t: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.name())
}

/// How the budget is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Budgeting {
    /// Good events over all events in the window.
    Occurrences,
    /// Good time slices over all slices.
    Timeslices,
    /// The average of the slices' ratios.
    RatioTimeslices,
}

/// One objective of an SLO.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Objective {
    /// `displayName`, if any.
    pub display_name: Option<String>,
    /// Target ratio in [0, 1).
    pub target: f64,
    /// For `thresholdMetric`: the comparison.
    pub op: Option<Op>,
    /// For `thresholdMetric`: the threshold.
    pub value: Option<f64>,
    /// For `Timeslices`: the ratio a slice needs to be good.
    pub time_slice_target: Option<f64>,
    /// For `Timeslices` / `RatioTimeslices`: slice length in minutes.
    pub time_slice_minutes: Option<i64>,
    /// 1-based line of its `target` (or `targetPercent`) in the file.
    pub line: usize,
}

/// A validated SLO.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Slo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.displayName`, if any.
    pub display_name: Option<String>,
    /// `spec.service`.
    pub service: String,
    /// `spec.description`, if any.
    pub description: Option<String>,
    /// The indicator (inline or resolved from `indicatorRef`).
    pub indicator: Indicator,
    /// The time window.
    pub window: TimeWindow,
    /// The budgeting method.
    pub budgeting: Budgeting,
    /// The objectives (at least one).
    pub objectives: Vec<Objective>,
    /// Where it was defined.
    pub origin: Origin,
}

impl Slo {
    /// Whether this is an availability SLO: a ratio over the capstan store
    /// whose good events are `status < 500`-like (no latency term). Budgets
    /// of availability SLOs are also shown as minutes of downtime.
    pub fn is_availability(&self) -> bool {
        match &self.indicator {
            Indicator::Ratio { counted, .. } => {
                let text = match counted.query() {
                    Query::Capstan { expr, .. } => expr,
                    Query::Prometheus { query } => query,
                };
                !text.contains("duration") && !text.contains("latency") && !text.contains("le=")
            }
            Indicator::Threshold { .. } => false,
        }
    }
}

// ---------------------------------------------------------------- durations

/// Parses an OpenSLO duration shorthand: a positive integer and one of
/// `s m h d w M Q Y` (`m` is minutes, `M` months).
pub fn parse_duration(s: &str) -> Result<(u32, char), String> {
    let s = s.trim();
    let unit = s
        .chars()
        .last()
        .ok_or_else(|| "empty duration".to_string())?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if !"smhdwMQY".contains(unit) {
        return Err(format!(
            "`{s}`: unknown unit `{unit}`; use s, m (minutes), h, d, w, M (months), Q or Y"
        ));
    }
    let n: u32 = digits
        .parse()
        .ok()
        .filter(|n| *n > 0 && !digits.starts_with('0') && !digits.starts_with('+'))
        .ok_or_else(|| format!("`{s}`: expected a positive whole number and a unit, like 30d"))?;
    Ok((n, unit))
}

/// Length of a fixed-length duration in seconds (`None` for M, Q, Y).
pub fn fixed_seconds(n: u32, unit: char) -> Option<i64> {
    let per = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    Some(i64::from(n) * per)
}

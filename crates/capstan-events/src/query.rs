//! Queries over raw events: filter, group, calculate; and compare two sets.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::event::{parse_num, Value};
use crate::expr::{Column, Field};
use crate::{Error, Event, Expr, ExprError, Store, BUCKET_BOUNDS_MS};

/// What a calculation computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalcKind {
    /// Matching events.
    Count,
    /// Share of the release's errors ([`crate::is_release_error`]) among
    /// the events a judge counts: all but those whose body the client broke
    /// off (`client_body`), as the rollout's judge counts them.
    ErrorRate,
    /// Exact percentile (nearest rank) of a field, 0 < p < 100.
    Percentile(u8),
    /// Mean of a field.
    Avg,
    /// Smallest value of a field.
    Min,
    /// Largest value of a field.
    Max,
    /// Sum of a field.
    Sum,
}

/// One calculation of a query, such as `count` or `p99(duration_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Calc {
    /// What it computes.
    pub kind: CalcKind,
    /// The field it reads (none for `count` and `error_rate`).
    pub field: Option<Field>,
}

impl Calc {
    /// The calculation as written: `count`, `p99(duration_ms)`.
    pub fn name(&self) -> String {
        let f = self.field.as_ref().map(Field::name).unwrap_or_default();
        match self.kind {
            CalcKind::Count => "count".into(),
            CalcKind::ErrorRate => "error_rate".into(),
            CalcKind::Percentile(p) => format!("p{p}({f})"),
            CalcKind::Avg => format!("avg({f})"),
            CalcKind::Min => format!("min({f})"),
            CalcKind::Max => format!("max({f})"),
            CalcKind::Sum => format!("sum({f})"),
        }
    }

    /// Parses a comma-separated list: `count, p50(duration_ms), error_rate`. Errors
    /// carry the 1-based column, like expression errors.
    pub fn parse_list(s: &str) -> Result<Vec<Calc>, ExprError> {
        let err = |column: usize, message: String| ExprError {
            column,
            message,
            source_text: s.to_string(),
        };
        let mut out = Vec::new();
        let mut col = 1;
        for part in s.split(',') {
            let lead = part.chars().take_while(|c| c.is_whitespace()).count();
            let start = col + lead;
            let item = part.trim();
            col += part.chars().count() + 1;
            if item.is_empty() {
                return Err(err(start, "expected a calculation (count, error_rate, p50(f), p90(f), p95(f), p99(f), avg(f), min(f), max(f), sum(f))".into()));
            }
            let (name, field) = match item.find('(') {
                None => (item, None),
                Some(open) => {
                    let Some(inner) = item[open + 1..].strip_suffix(')') else {
                        return Err(err(
                            start + item.chars().count(),
                            format!("`{item}` needs a closing `)`"),
                        ));
                    };
                    // The name's own column, past any space after `(`.
                    let field_col = start
                        + item[..open + 1].chars().count()
                        + (inner.chars().count() - inner.trim_start().chars().count());
                    let inner = inner.trim();
                    if inner.is_empty()
                        || !inner
                            .chars()
                            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    {
                        return Err(err(field_col, format!("`{inner}` is not a field name")));
                    }
                    let field = Field::from_user_name(inner).map_err(|m| err(field_col, m))?;
                    (item[..open].trim(), Some(field))
                }
            };
            let kind = match name.to_ascii_lowercase().as_str() {
                "count" => CalcKind::Count,
                "error_rate" => CalcKind::ErrorRate,
                "avg" => CalcKind::Avg,
                "min" => CalcKind::Min,
                "max" => CalcKind::Max,
                "sum" => CalcKind::Sum,
                "p50" => CalcKind::Percentile(50),
                "p90" => CalcKind::Percentile(90),
                "p95" => CalcKind::Percentile(95),
                "p99" => CalcKind::Percentile(99),
                other => {
                    return Err(err(
                        start,
                        format!("unknown calculation `{other}` (count, error_rate, p50, p90, p95, p99, avg, min, max, sum)"),
                    ))
                }
            };
            let needs_field = !matches!(kind, CalcKind::Count | CalcKind::ErrorRate);
            match (&field, needs_field) {
                (None, true) => {
                    return Err(err(
                        start,
                        format!("`{name}` needs a field, e.g. {name}(duration_ms)"),
                    ))
                }
                (Some(_), false) => {
                    return Err(err(start, format!("`{name}` takes no field")));
                }
                _ => {}
            }
            out.push(Calc { kind, field });
        }
        Ok(out)
    }
}

/// A query over the raw events in a time range.
#[derive(Debug, Clone)]
pub struct Query {
    /// Which events count.
    pub filter: Expr,
    /// Fields to group by (none: one row for everything).
    pub group_by: Vec<Field>,
    /// What to compute per group.
    pub calcs: Vec<Calc>,
    /// Start of the range, unix ms (inclusive).
    pub from_ms: i64,
    /// End of the range, unix ms (exclusive).
    pub to_ms: i64,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The group-by field names, in order.
    pub group_by: Vec<String>,
    /// The calculation names, in order.
    pub calcs: Vec<String>,
    /// One row per group, the largest first calculation first.
    pub rows: Vec<QueryRow>,
}

/// One group of a [`QueryResult`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRow {
    /// The group's value of each group-by field (null when the event has none).
    pub group: Vec<Option<String>>,
    /// Each calculation's value (null when no event of the group had the field).
    pub values: Vec<Option<f64>>,
}

fn is_error(e: &Event) -> bool {
    crate::is_release_error(e.status, e.error.as_deref())
}

/// Nearest-rank percentile of sorted values: the value at rank ceil(p/100 * n).
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Default)]
struct Acc {
    count: u64,
    /// Events other than `client_body` ones: `error_rate`'s denominator.
    judged: u64,
    errors: u64,
    values: Vec<Vec<f64>>,
}

impl Store {
    /// Runs a query over the raw events (percentiles are exact).
    pub fn query(&self, q: &Query) -> Result<QueryResult, Error> {
        // Each distinct calculation field's values are kept once per group.
        let mut value_fields: Vec<Field> = Vec::new();
        for c in &q.calcs {
            if let Some(f) = &c.field {
                if !value_fields.contains(f) {
                    value_fields.push(f.clone());
                }
            }
        }
        let mut groups: HashMap<Vec<Option<String>>, Acc> = HashMap::new();
        self.scan(q.from_ms, q.to_ms, None, |se| {
            let e = &se.event;
            if !q.filter.matches(e) {
                return true;
            }
            let key: Vec<Option<String>> = q
                .group_by
                .iter()
                .map(|f| match e.value(f) {
                    Value::Missing => None,
                    v => Some(v.as_text().into_owned()),
                })
                .collect();
            let acc = groups.entry(key).or_insert_with(|| Acc {
                values: vec![Vec::new(); value_fields.len()],
                ..Acc::default()
            });
            acc.count += 1;
            acc.judged += u64::from(!crate::is_client_body(e.error.as_deref()));
            acc.errors += u64::from(is_error(e));
            for (i, f) in value_fields.iter().enumerate() {
                if let Some(x) = e.value(f).as_num() {
                    acc.values[i].push(x);
                }
            }
            true
        })?;
        let mut rows: Vec<QueryRow> = groups
            .into_iter()
            .map(|(group, mut acc)| {
                for v in &mut acc.values {
                    v.sort_by(f64::total_cmp);
                }
                let values = q
                    .calcs
                    .iter()
                    .map(|c| {
                        let vals = c
                            .field
                            .as_ref()
                            .and_then(|f| value_fields.iter().position(|x| x == f))
                            .map(|i| acc.values[i].as_slice())
                            .unwrap_or(&[]);
                        match c.kind {
                            CalcKind::Count => Some(acc.count as f64),
                            CalcKind::ErrorRate => {
                                (acc.judged > 0).then(|| acc.errors as f64 / acc.judged as f64)
                            }
                            CalcKind::Percentile(p) => percentile(vals, f64::from(p)),
                            CalcKind::Avg => (!vals.is_empty())
                                .then(|| vals.iter().sum::<f64>() / vals.len() as f64),
                            CalcKind::Min => vals.first().copied(),
                            CalcKind::Max => vals.last().copied(),
                            CalcKind::Sum => (!vals.is_empty()).then(|| vals.iter().sum()),
                        }
                    })
                    .collect();
                QueryRow { group, values }
            })
            .collect();
        rows.sort_by(|a, b| {
            let first = |r: &QueryRow| r.values.first().copied().flatten().unwrap_or(f64::MIN);
            first(b)
                .total_cmp(&first(a))
                .then_with(|| a.group.cmp(&b.group))
        });
        Ok(QueryResult {
            group_by: q.group_by.iter().map(Field::name).collect(),
            calcs: q.calcs.iter().map(Calc::name).collect(),
            rows,
        })
    }

    /// Compares the events matching `a` with those matching `b` (or, without `b`, all
    /// other events) in `[from_ms, to_ms)`: every field, ranked by how differently it
    /// is distributed in the two sets.
    pub fn compare(
        &self,
        a: &Expr,
        b: Option<&Expr>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Comparison, Error> {
        let mut set_a = FieldStats::default();
        let mut set_b = FieldStats::default();
        self.scan(from_ms, to_ms, None, |se| {
            let e = &se.event;
            let in_a = a.matches(e);
            let in_b = match b {
                Some(b) => b.matches(e),
                None => !in_a,
            };
            if in_a {
                set_a.add(e);
            }
            if in_b {
                set_b.add(e);
            }
            true
        })?;
        Ok(compare_stats(set_a, set_b))
    }
}

/// The fields compare looks at: every column but the time and the trace id (unique
/// per event, so always "different"), then every `fields` key seen.
fn compared_columns() -> impl Iterator<Item = Column> {
    Column::ALL
        .into_iter()
        .filter(|c| !matches!(c, Column::TimeMs | Column::TraceId))
}

/// Numeric columns compared as distributions; status codes are categories.
fn is_distribution(c: Column) -> bool {
    c.is_numeric() && !matches!(c, Column::Status | Column::MirrorShadowStatus)
}

#[derive(Default)]
struct FieldStats {
    n: u64,
    categorical: BTreeMap<Field, HashMap<String, u64>>,
    numeric: BTreeMap<Field, Vec<f64>>,
    custom: BTreeMap<String, CustomStats>,
}

/// One `fields` key in one set: what the ranking reads, in memory that grows
/// with the values the key has, not with the set's size. Its absent events,
/// `(none)`, are the set's size less `present`, and its numbers (when every
/// value is one) come from the counts, since each distinct value parses to
/// one number: a key that a single event of a day's traffic has costs one
/// entry, not one per event.
#[derive(Default)]
struct CustomStats {
    /// Events with the key.
    present: u64,
    /// Events per value.
    counts: HashMap<String, u64>,
}

const NONE: &str = "(none)";

impl FieldStats {
    fn add(&mut self, e: &Event) {
        self.n += 1;
        for c in compared_columns() {
            let f = Field::Column(c);
            let v = e.value(&f);
            if is_distribution(c) {
                if let Some(x) = v.as_num() {
                    self.numeric.entry(f).or_default().push(x);
                }
            } else {
                let text = match v {
                    Value::Missing => NONE.to_string(),
                    v => v.as_text().into_owned(),
                };
                *self
                    .categorical
                    .entry(f)
                    .or_default()
                    .entry(text)
                    .or_default() += 1;
            }
        }
        // `fields` keys are decided once both sets are seen (numeric or not).
        for (k, v) in &e.fields {
            let stats = match self.custom.get_mut(k) {
                Some(stats) => stats,
                None => self.custom.entry(k.clone()).or_default(),
            };
            stats.present += 1;
            match stats.counts.get_mut(v) {
                Some(c) => *c += 1,
                None => {
                    stats.counts.insert(v.clone(), 1);
                }
            }
        }
    }
}

/// The result of [`Store::compare`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Events in set A.
    pub a_count: u64,
    /// Events in set B.
    pub b_count: u64,
    /// Every field, the most differently distributed first.
    pub fields: Vec<FieldDiff>,
}

/// How one field is distributed in the two sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// The field's name as expressions write it.
    pub field: String,
    /// `categorical` (score: total variation distance) or `numeric` (score:
    /// Kolmogorov-Smirnov statistic; values are histogram buckets).
    pub kind: &'static str,
    /// 0 (same distribution) to 1 (no overlap).
    pub score: f64,
    /// A categorical field with nearly one value per event (a path with ids, a
    /// user): its score is close to 1 for any two sets and says little, so such
    /// fields are ranked after all others.
    pub high_cardinality: bool,
    /// The value whose share differs most between the sets.
    pub most_different: Option<ValueShares>,
    /// The most common values in set A (up to 5).
    pub a_top: Vec<Share>,
    /// The most common values in set B (up to 5).
    pub b_top: Vec<Share>,
    /// A numeric field's p50, p90 and p99 in set A (exact, nearest rank;
    /// `None` for a categorical field or an empty set): where the buckets
    /// are too coarse to show what the score measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_quantiles: Option<Quantiles>,
    /// The same for set B.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_quantiles: Option<Quantiles>,
}

/// A numeric field's exact percentiles in one set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
}

/// `p50 1.035, p90 1.185, p99 1.335`: each with at most three decimals.
impl std::fmt::Display for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |x: f64| crate::expr::fmt_num((x * 1000.0).round() / 1000.0);
        write!(
            f,
            "p50 {}, p90 {}, p99 {}",
            n(self.p50),
            n(self.p90),
            n(self.p99)
        )
    }
}

impl Quantiles {
    /// The percentiles of a sorted sample; `None` when it is empty.
    pub fn of_sorted(sorted: &[f64]) -> Option<Quantiles> {
        Some(Quantiles {
            p50: percentile(sorted, 50.0)?,
            p90: percentile(sorted, 90.0)?,
            p99: percentile(sorted, 99.0)?,
        })
    }
}

/// A value's share of a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Share {
    /// The value (for numeric fields, a bucket such as `(100, 250]`).
    pub value: String,
    /// Events with the value.
    pub count: u64,
    /// `count` over the set's size.
    pub share: f64,
}

/// A value's share of each set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueShares {
    /// The value.
    pub value: String,
    /// Its share of set A.
    pub a_share: f64,
    /// Its share of set B.
    pub b_share: f64,
}

const TOP: usize = 5;

/// Scores rounded to 9 decimals, so sums of shares that are 1 print and rank as 1.
fn round9(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

fn top(counts: &HashMap<String, u64>, n: u64) -> Vec<Share> {
    let mut v: Vec<(&String, &u64)> = counts.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    v.into_iter()
        .take(TOP)
        .map(|(value, count)| Share {
            value: value.clone(),
            count: *count,
            share: if n == 0 {
                0.0
            } else {
                *count as f64 / n as f64
            },
        })
        .collect()
}

fn categorical_diff(
    field: String,
    a: &HashMap<String, u64>,
    na: u64,
    b: &HashMap<String, u64>,
    nb: u64,
) -> FieldDiff {
    let share = |m: &HashMap<String, u64>, n: u64, k: &str| {
        if n == 0 {
            0.0
        } else {
            m.get(k).copied().unwrap_or(0) as f64 / n as f64
        }
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let keys_len = keys.len();
    let mut tvd = 0.0;
    let mut most: Option<ValueShares> = None;
    for k in keys {
        let (pa, pb) = (share(a, na, k), share(b, nb, k));
        tvd += (pa - pb).abs();
        if most
            .as_ref()
            .is_none_or(|m| (pa - pb).abs() > (m.a_share - m.b_share).abs())
        {
            most = Some(ValueShares {
                value: k.clone(),
                a_share: pa,
                b_share: pb,
            });
        }
    }
    let distinct = keys_len;
    FieldDiff {
        field,
        kind: "categorical",
        high_cardinality: distinct > 50 && distinct as f64 > 0.5 * (na + nb) as f64,
        score: if na == 0 || nb == 0 {
            0.0
        } else {
            round9(tvd / 2.0)
        },
        most_different: most,
        a_top: top(a, na),
        b_top: top(b, nb),
        a_quantiles: None,
        b_quantiles: None,
    }
}

/// Kolmogorov-Smirnov statistic of two sorted samples; 0 when either is empty.
///
/// A sample with no values has no distribution to differ from the other's, so
/// it scores 0, as a categorical field of an empty set does: a field that one set
/// simply lacks (`upstream_ms` of requests that never reached the upstream) is not
/// ranked above the fields whose values really differ.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        if x.is_nan() {
            // Both next values are NaN, which is `<=` nothing: no step is left to take.
            break;
        }
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

fn bucket_label(bounds: &[f64], i: usize) -> String {
    let fmt = crate::expr::fmt_num;
    match i {
        0 => format!("<= {}", fmt(bounds[0])),
        i if !bounds[i].is_finite() => format!("> {}", fmt(bounds[i - 1])),
        i => format!("({}, {}]", fmt(bounds[i - 1]), fmt(bounds[i])),
    }
}

fn numeric_diff(field: String, a: &mut [f64], b: &mut [f64]) -> FieldDiff {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let bounds: &[f64] = if field.ends_with("_ms") {
        &BUCKET_BOUNDS_MS
    } else {
        &[0.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, f64::INFINITY]
    };
    let hist = |v: &[f64]| {
        let mut m: HashMap<String, u64> = HashMap::new();
        for x in v {
            let i = bounds
                .iter()
                .position(|b| x <= b)
                .unwrap_or(bounds.len() - 1);
            *m.entry(bucket_label(bounds, i)).or_default() += 1;
        }
        m
    };
    let (ha, hb) = (hist(a), hist(b));
    let mut d = categorical_diff(field, &ha, a.len() as u64, &hb, b.len() as u64);
    d.kind = "numeric";
    d.high_cardinality = false;
    d.score = round9(ks_statistic(a, b));
    d.a_quantiles = Quantiles::of_sorted(a);
    d.b_quantiles = Quantiles::of_sorted(b);
    d
}

fn compare_stats(mut a: FieldStats, mut b: FieldStats) -> Comparison {
    let mut out = Vec::new();
    let empty_c = HashMap::new();
    for c in compared_columns() {
        let f = Field::Column(c);
        if is_distribution(c) {
            let mut x = a.numeric.remove(&f).unwrap_or_default();
            let mut y = b.numeric.remove(&f).unwrap_or_default();
            if !(x.is_empty() && y.is_empty()) {
                out.push(numeric_diff(f.name(), &mut x, &mut y));
            }
        } else {
            let x = a.categorical.get(&f).unwrap_or(&empty_c);
            let y = b.categorical.get(&f).unwrap_or(&empty_c);
            let only_none = |m: &HashMap<String, u64>| m.keys().all(|k| k == NONE);
            if !(only_none(x) && only_none(y)) {
                out.push(categorical_diff(f.name(), x, a.n, y, b.n));
            }
        }
    }
    let mut keys: Vec<String> = a.custom.keys().chain(b.custom.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let name = Field::Custom(k.clone()).name();
        let (va, vb) = (
            a.custom.remove(&k).unwrap_or_default(),
            b.custom.remove(&k).unwrap_or_default(),
        );
        let mut distinct = std::collections::HashSet::new();
        let mut all_numeric = true;
        for v in va.counts.keys().chain(vb.counts.keys()) {
            all_numeric &= parse_num(v).is_some();
            distinct.insert(v.as_str());
        }
        // Many distinct numbers: a measurement, compared as a distribution.
        if all_numeric && distinct.len() > 20 {
            // Each value as often as it was seen; `numeric_diff` sorts them.
            let nums = |v: &CustomStats| -> Vec<f64> {
                let mut out = Vec::with_capacity(v.present as usize);
                for (s, &c) in &v.counts {
                    if let Some(x) = parse_num(s) {
                        out.extend(std::iter::repeat_n(x, c as usize));
                    }
                }
                out
            };
            out.push(numeric_diff(name, &mut nums(&va), &mut nums(&vb)));
        } else {
            // The events without the key count as the value `(none)`.
            let counts = |v: CustomStats, n: u64| {
                let mut m = v.counts;
                if n > v.present {
                    *m.entry(NONE.into()).or_default() += n - v.present;
                }
                m
            };
            out.push(categorical_diff(
                name,
                &counts(va, a.n),
                a.n,
                &counts(vb, b.n),
                b.n,
            ));
        }
    }
    out.sort_by(|x, y| {
        x.high_cardinality
            .cmp(&y.high_cardinality)
            .then_with(|| y.score.total_cmp(&x.score))
            .then_with(|| x.field.cmp(&y.field))
    });
    Comparison {
        a_count: a.n,
        b_count: b.n,
        fields: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn ks_of_equal_and_disjoint_samples() {
        assert_eq!(ks_statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ks_statistic(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert_eq!(ks_statistic(&[1.0, 2.0, 3.0, 4.0], &[3.0, 4.0]), 0.5);
    }

    #[test]
    fn ks_with_an_empty_sample_is_zero() {
        assert_eq!(ks_statistic(&[], &[1.0, 2.0]), 0.0);
        assert_eq!(ks_statistic(&[1.0, 2.0], &[]), 0.0);
        assert_eq!(ks_statistic(&[], &[]), 0.0);
    }

    #[test]
    fn calc_list_errors_have_columns() {
        let e = Calc::parse_list("count, p42(duration_ms)").unwrap_err();
        assert_eq!(e.column, 8);
        let e = Calc::parse_list("count,, avg(duration_ms)").unwrap_err();
        assert_eq!(e.column, 7);
        let e = Calc::parse_list("count, avg").unwrap_err();
        assert_eq!(e.column, 8);
        let e = Calc::parse_list("p99(duration_ms").unwrap_err();
        assert_eq!(e.column, 16);
        // The field's own column, past the spaces after `(`.
        let e = Calc::parse_list("count, p99(  duration)").unwrap_err();
        assert_eq!(e.column, 14, "{e}");
        let e = Calc::parse_list("count, p99(duration)").unwrap_err();
        assert_eq!(e.column, 12, "{e}");
        let c = Calc::parse_list("count, p50(duration_ms), error_rate, sum(fields.items)").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c[3].name(), "sum(items)");
    }
}

//! Reads answered from the per-minute rollups when the expression allows
//! it, else from a raw scan that counts the same way.

use rusqlite::{params, Connection};

use super::{ceil_minute, minute_of, MinuteCount, MinuteCounts, Rollup, Store, BUCKET_BOUNDS_MS};
use crate::event::Value;
use crate::expr::{eval, Column, Field, Lit, Node, Op};
use crate::{Error, Expr};

impl Store {
    /// Per-minute counts of events matching `expr` in the minutes that start in
    /// `[from_ms, to_ms)`, optionally for one service. Minutes with no events are omitted.
    ///
    /// Answered from the rollups when every condition in `expr` is on `service`,
    /// `route`, `release`, `cohort`, `status` with a bound that does not split a
    /// status class (`status >= 500`, `status < 400`, not `status = 503`), or
    /// `duration_ms` with a bound on a bucket edge (`duration_ms <= 300`,
    /// `duration_ms > 1000`, not `duration_ms < 300`); otherwise by scanning raw events.
    pub fn minute_counts(
        &self,
        service: Option<&str>,
        expr: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCount>, Error> {
        Ok(self
            .minute_counts_many(service, &[expr], from_ms, to_ms)?
            .into_iter()
            .filter(|m| m.counts[0] > 0)
            .map(|m| MinuteCount {
                minute_ms: m.minute_ms,
                count: m.counts[0],
            })
            .collect())
    }

    /// [`Store::minute_counts`] of several expressions in one pass over the
    /// data: for each minute with an event matching any of them, the count of
    /// each (in the order given). From the rollups when every expression can
    /// be answered there, else from one scan of the raw events.
    pub fn minute_counts_many(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCounts>, Error> {
        if exprs.iter().all(|e| rollup_answerable(&e.node)) {
            return self.minute_counts_rollup(service, exprs, from_ms, to_ms);
        }
        let mut counts: std::collections::BTreeMap<i64, Vec<u64>> = Default::default();
        self.scan(ceil_minute(from_ms), ceil_minute(to_ms), service, |e| {
            for (i, x) in exprs.iter().enumerate() {
                if x.matches(&e.event) {
                    counts
                        .entry(minute_of(e.event.time_ms))
                        .or_insert_with(|| vec![0; exprs.len()])[i] += 1;
                }
            }
            true
        })?;
        Ok(counts
            .into_iter()
            .map(|(minute_ms, counts)| MinuteCounts { minute_ms, counts })
            .collect())
    }

    /// The number of events matching each expression in the minutes that
    /// start in `[from_ms, to_ms)`: the sums of [`Store::minute_counts_many`],
    /// added up by SQLite without a row per minute (from the rollups when every
    /// expression can be answered there).
    pub fn sums(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<u64>, Error> {
        if !exprs.iter().all(|e| rollup_answerable(&e.node)) {
            let mut out = vec![0u64; exprs.len()];
            for m in self.minute_counts_many(service, exprs, from_ms, to_ms)? {
                for (o, n) in out.iter_mut().zip(m.counts) {
                    *o += n;
                }
            }
            return Ok(out);
        }
        let sql = self.sql();
        let mut conn = self.reader();
        // One read transaction: the dimensions and the rows they select come
        // from one snapshot, not from either side of a batch's commit.
        let conn = conn.transaction().map_err(&sql)?;
        let dims = dim_buckets(&conn, service, exprs).map_err(&sql)?;
        let Some((cases, ids)) = rollup_cases(&dims, exprs.len()) else {
            return Ok(vec![0; exprs.len()]);
        };
        let sums: Vec<String> = cases.iter().map(|c| format!("SUM({c})")).collect();
        let q = format!(
            "SELECT {} FROM rollups WHERE dim_id IN ({ids}) AND minute_ms >= ?1 AND minute_ms < ?2",
            sums.join(", ")
        );
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let row = stmt
            .query_row([from_ms, to_ms], |r| {
                (0..exprs.len())
                    .map(|i| Ok(r.get::<_, Option<i64>>(i)?.unwrap_or(0).max(0) as u64))
                    .collect::<rusqlite::Result<Vec<u64>>>()
            })
            .map_err(&sql)?;
        Ok(row)
    }

    /// Whether every event `inner` matches is also matched by `outer`, as the
    /// rollups tell it: both are answered from the rollups and, in every
    /// dimension (of `service`) and latency bucket, `inner` counts nothing
    /// `outer` does not. Then `inner`'s count is at most `outer`'s in any
    /// minute, and a difference of sums equals the sum of the per-minute
    /// differences. False when it cannot be shown.
    pub fn contained(
        &self,
        service: Option<&str>,
        inner: &Expr,
        outer: &Expr,
    ) -> Result<bool, Error> {
        if !rollup_answerable(&inner.node) || !rollup_answerable(&outer.node) {
            return Ok(false);
        }
        let conn = self.reader();
        let dims = dim_buckets(&conn, service, &[inner, outer]).map_err(self.sql())?;
        Ok(dims.iter().all(|(_, m)| m[0] & !m[1] == 0))
    }

    /// Per minute that starts in `[from_ms, to_ms)` and has events matching
    /// `filter` (optionally of one service): their count, summed duration and
    /// latency histogram, from the rollups. `None` when the rollups cannot
    /// answer exactly: `filter` has a condition the rollups do not keep, or
    /// splits a dimension's events by latency (`duration_ms` in a filter would
    /// leave the summed duration of other buckets in). The rows of a minute are
    /// merged: `service` is the one asked for (empty for all), the other
    /// dimensions are empty.
    pub fn minute_histograms(
        &self,
        service: Option<&str>,
        filter: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Option<Vec<Rollup>>, Error> {
        if !rollup_answerable(&filter.node) {
            return Ok(None);
        }
        const ALL: u16 = (1 << BUCKET_BOUNDS_MS.len()) - 1;
        let sql = self.sql();
        let mut conn = self.reader();
        // One read transaction: the dimensions and the rows they select come
        // from one snapshot, not from either side of a batch's commit.
        let conn = conn.transaction().map_err(&sql)?;
        let dims = dim_buckets(&conn, service, &[filter]).map_err(&sql)?;
        if dims.iter().any(|(_, m)| m[0] != 0 && m[0] != ALL) {
            return Ok(None);
        }
        let ids: Vec<String> = dims
            .iter()
            .filter(|(_, m)| m[0] == ALL)
            .map(|(id, _)| id.to_string())
            .collect();
        if ids.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let q = format!(
            "SELECT minute_ms, count, sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, \
             b10, b11, b12 FROM rollups WHERE dim_id IN ({}) AND minute_ms >= ?1 AND minute_ms < ?2",
            ids.join(",")
        );
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let mut rows = stmt.query([from_ms, to_ms]).map_err(&sql)?;
        let mut by_minute: std::collections::BTreeMap<i64, Rollup> = Default::default();
        while let Some(r) = rows.next().map_err(&sql)? {
            let minute_ms: i64 = r.get(0).map_err(&sql)?;
            let m = by_minute.entry(minute_ms).or_insert_with(|| Rollup {
                minute_ms,
                service: service.unwrap_or_default().to_string(),
                route: String::new(),
                release: String::new(),
                cohort: String::new(),
                status_class: 0,
                count: 0,
                sum_duration_ms: 0.0,
                buckets: [0; 13],
            });
            m.count += r.get::<_, i64>(1).map_err(&sql)?.max(0) as u64;
            m.sum_duration_ms += r.get::<_, f64>(2).map_err(&sql)?;
            for (i, b) in m.buckets.iter_mut().enumerate() {
                *b += r.get::<_, i64>(3 + i).map_err(&sql)?.max(0) as u64;
            }
        }
        Ok(Some(
            by_minute.into_values().filter(|m| m.count > 0).collect(),
        ))
    }

    /// Whether [`Store::minute_counts`] answers `expr` from the rollups.
    pub fn uses_rollups(expr: &Expr) -> bool {
        rollup_answerable(&expr.node)
    }

    /// [`Store::minute_counts`] answered by scanning raw events: for checking
    /// the rollups, and for a count that must come from the same source as
    /// another that the rollups cannot answer.
    pub fn minute_counts_raw(
        &self,
        service: Option<&str>,
        expr: &Expr,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCount>, Error> {
        let mut counts: std::collections::BTreeMap<i64, u64> = Default::default();
        self.scan(ceil_minute(from_ms), ceil_minute(to_ms), service, |e| {
            if expr.matches(&e.event) {
                *counts.entry(minute_of(e.event.time_ms)).or_default() += 1;
            }
            true
        })?;
        Ok(counts
            .into_iter()
            .map(|(minute_ms, count)| MinuteCount { minute_ms, count })
            .collect())
    }

    fn minute_counts_rollup(
        &self,
        service: Option<&str>,
        exprs: &[&Expr],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<MinuteCounts>, Error> {
        let sql = self.sql();
        let mut conn = self.reader();
        // One read transaction: the dimensions and the rows they select come
        // from one snapshot, not from either side of a batch's commit.
        let conn = conn.transaction().map_err(&sql)?;
        let dims = dim_buckets(&conn, service, exprs).map_err(&sql)?;
        let Some((cases, ids)) = rollup_cases(&dims, exprs.len()) else {
            return Ok(Vec::new());
        };
        // The rows come straight off the table's (dim_id, minute_ms) key and are
        // summed per minute here: a SQL `GROUP BY minute_ms` over several dimensions
        // sorts every row through a temporary b-tree.
        let q = format!(
            "SELECT minute_ms, {} FROM rollups WHERE dim_id IN ({ids}) \
             AND minute_ms >= ?1 AND minute_ms < ?2",
            cases.join(", ")
        );
        let k = exprs.len();
        let mut stmt = conn.prepare(&q).map_err(&sql)?;
        let mut rows = stmt.query([from_ms, to_ms]).map_err(&sql)?;
        // Flat: minute, then k counts per row.
        let mut all: Vec<(i64, usize)> = Vec::new();
        let mut flat: Vec<u64> = Vec::new();
        while let Some(r) = rows.next().map_err(&sql)? {
            let start = flat.len();
            let mut any = false;
            for i in 0..k {
                let n = r.get::<_, i64>(1 + i).map_err(&sql)?.max(0) as u64;
                any |= n > 0;
                flat.push(n);
            }
            if any {
                all.push((r.get(0).map_err(&sql)?, start));
            } else {
                flat.truncate(start);
            }
        }
        all.sort_unstable_by_key(|&(minute_ms, _)| minute_ms);
        let mut out: Vec<MinuteCounts> = Vec::new();
        for (minute_ms, start) in all {
            let row = &flat[start..start + k];
            match out.last_mut() {
                Some(last) if last.minute_ms == minute_ms => {
                    for (c, n) in last.counts.iter_mut().zip(row) {
                        *c += n;
                    }
                }
                _ => out.push(MinuteCounts {
                    minute_ms,
                    counts: row.to_vec(),
                }),
            }
        }
        Ok(out)
    }

    /// Rollup rows for the minutes that start in `[from_ms, to_ms)`, optionally for one service.
    pub fn rollups(
        &self,
        service: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Rollup>, Error> {
        let sql = self.sql();
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT r.minute_ms, d.service, d.route, d.release, d.cohort, d.status_class, r.count, \
                 r.sum_duration_ms, b0, b1, b2, b3, b4, b5, b6, b7, b8, b9, b10, b11, b12 \
                 FROM rollups r JOIN rollup_dims d ON d.id = r.dim_id \
                 WHERE r.minute_ms >= ?1 AND r.minute_ms < ?2 AND (?3 IS NULL OR d.service = ?3) \
                 ORDER BY r.minute_ms, d.id",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map(params![from_ms, to_ms, service], |r| {
                let mut buckets = [0u64; 13];
                for (i, b) in buckets.iter_mut().enumerate() {
                    *b = r.get::<_, i64>(8 + i)? as u64;
                }
                Ok(Rollup {
                    minute_ms: r.get(0)?,
                    service: r.get(1)?,
                    route: r.get(2)?,
                    release: r.get(3)?,
                    cohort: r.get(4)?,
                    status_class: r.get(5)?,
                    count: r.get::<_, i64>(6)? as u64,
                    sum_duration_ms: r.get(7)?,
                    buckets,
                })
            })
            .map_err(&sql)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(&sql)
    }
}

/// For every rollup dimension (of `service`, when given), its id and, per
/// expression, the latency buckets whose events it counts (bit `i`: bucket
/// `i`). The expressions must be answerable from the rollups: within a status
/// class and a bucket they are constant, so one representative value of each
/// decides.
fn dim_buckets(
    conn: &Connection,
    service: Option<&str>,
    exprs: &[&Expr],
) -> rusqlite::Result<Vec<(i64, Vec<u16>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, service, route, release, cohort, status_class FROM rollup_dims",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let svc: String = r.get(1)?;
        if service.is_some_and(|s| s != svc) {
            continue;
        }
        let route: String = r.get(2)?;
        let release: String = r.get(3)?;
        let cohort: String = r.get(4)?;
        let class: u16 = r.get(5)?;
        let masks = exprs
            .iter()
            .map(|expr| {
                let mut mask = 0u16;
                for (i, bound) in BUCKET_BOUNDS_MS.iter().enumerate() {
                    let duration = if bound.is_finite() { *bound } else { f64::MAX };
                    let get = |f: &Field| -> Value<'_> {
                        match f {
                            Field::Column(Column::Service) => Value::Str(&svc),
                            Field::Column(Column::Route) => Value::Str(&route),
                            Field::Column(Column::Release) => Value::Str(&release),
                            Field::Column(Column::Cohort) => Value::Str(&cohort),
                            Field::Column(Column::Status) => Value::Num(f64::from(class) * 100.0),
                            Field::Column(Column::DurationMs) => Value::Num(duration),
                            _ => Value::Missing,
                        }
                    };
                    if eval(&expr.node, &get) {
                        mask |= 1 << i;
                    }
                }
                mask
            })
            .collect();
        out.push((id, masks));
    }
    Ok(out)
}

/// One SQL `CASE` per expression summing, for each dimension, the buckets it
/// counts (`count` for all of them), and the ids of the dimensions any of them
/// reads; `None` when none does. Ids and column names are generated, never
/// user text.
fn rollup_cases(dims: &[(i64, Vec<u16>)], k: usize) -> Option<(Vec<String>, String)> {
    const ALL: u16 = (1 << BUCKET_BOUNDS_MS.len()) - 1;
    let ids: Vec<String> = dims
        .iter()
        .filter(|(_, m)| m.iter().any(|&b| b != 0))
        .map(|(id, _)| id.to_string())
        .collect();
    if ids.is_empty() {
        return None;
    }
    let cases = (0..k)
        .map(|i| {
            let mut by_mask: std::collections::BTreeMap<u16, Vec<String>> = Default::default();
            for (id, m) in dims {
                if m[i] != 0 {
                    by_mask.entry(m[i]).or_default().push(id.to_string());
                }
            }
            if by_mask.is_empty() {
                return "0".to_string();
            }
            let mut case = String::from("CASE");
            for (mask, ids) in &by_mask {
                let sum = if *mask == ALL {
                    "count".to_string()
                } else {
                    (0..BUCKET_BOUNDS_MS.len())
                        .filter(|b| mask & (1 << b) != 0)
                        .map(|b| format!("b{b}"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                };
                case.push_str(&format!(" WHEN dim_id IN ({}) THEN {sum}", ids.join(",")));
            }
            case.push_str(" ELSE 0 END");
            case
        })
        .collect();
    Some((cases, ids.join(",")))
}

/// Whether every condition in `n` is decided by the rollup dimensions alone.
fn rollup_answerable(n: &Node) -> bool {
    match n {
        Node::Or(a, b) | Node::And(a, b) => rollup_answerable(a) && rollup_answerable(b),
        Node::Not(a) => rollup_answerable(a),
        Node::Exists(Field::Column(c)) => matches!(
            c,
            Column::Service
                | Column::Route
                | Column::Release
                | Column::Cohort
                | Column::Status
                | Column::DurationMs
        ),
        Node::Exists(Field::Custom(_)) => false,
        Node::Cmp(f, op, lit) => atom_answerable(f, *op, lit),
        Node::In(f, lits) => lits.iter().all(|l| atom_answerable(f, Op::Eq, l)),
    }
}

fn atom_answerable(f: &Field, op: Op, lit: &Lit) -> bool {
    match f {
        Field::Column(Column::Service | Column::Route | Column::Release | Column::Cohort) => true,
        Field::Column(Column::Status) => {
            // Constant within every status class.
            (0u32..=655).all(|class| {
                let lo = class * 100;
                let hi = (lo + 99).min(u32::from(u16::MAX));
                let first = crate::expr::compare(&Value::Num(f64::from(lo)), op, lit);
                (lo..=hi).all(|s| crate::expr::compare(&Value::Num(f64::from(s)), op, lit) == first)
            })
        }
        Field::Column(Column::DurationMs) => {
            let Lit::Num(x) = lit else { return false };
            let x = *x;
            // Constant on every bucket (lo, hi].
            let mut lo = f64::NEG_INFINITY;
            BUCKET_BOUNDS_MS.iter().all(|&hi| {
                let ok = match op {
                    Op::Le | Op::Gt => x <= lo || x >= hi,
                    Op::Lt | Op::Ge => x <= lo || x > hi,
                    Op::Eq | Op::Ne => x <= lo || x > hi,
                    Op::Contains => false,
                };
                lo = hi;
                ok
            })
        }
        _ => false,
    }
}

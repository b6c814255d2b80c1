//! Where counts come from: the capstan event store's per-minute rollups, or
//! Prometheus's HTTP API. Both answer with something the pure math reads
//! ([`Windows`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::math::{self, Counts, DeployMark, Period, Series, Windows, MINUTE_MS};
use crate::spec::{Budgeting, Counted, Indicator, Query, Slo};

/// A source could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The event store failed.
    #[error("event store {}: {message}", path.display())]
    Store {
        /// The store file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The event store refused (its message names the file).
    #[error("{0}")]
    Events(String),
    /// Prometheus did not answer in time or refused the connection.
    #[error("Prometheus at {url} is unreachable: {message}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// Prometheus answered with an error (bad PromQL, timeout on its side).
    #[error("Prometheus refused the query `{query}`: {error_type}: {message}")]
    PromQl {
        /// The query, with the window filled in.
        query: String,
        /// Prometheus's `errorType`.
        error_type: String,
        /// Prometheus's `error`.
        message: String,
    },
    /// The answer had an unexpected shape.
    #[error("Prometheus answered `{query}` with {message}")]
    Shape {
        /// The query.
        query: String,
        /// What was wrong.
        message: String,
    },
    /// The SLO cannot be evaluated from this source.
    #[error("{0}")]
    Unsupported(String),
}

/// Counts for fixed spans, fetched ahead (from Prometheus).
#[derive(Debug, Clone, Default)]
pub struct SpanCounts {
    spans: HashMap<(i64, i64), Counts>,
}

impl SpanCounts {
    /// Records the counts of `[from_ms, to_ms)`.
    pub fn insert(&mut self, from_ms: i64, to_ms: i64, c: Counts) {
        self.spans.insert((from_ms, to_ms), c);
    }
}

impl Windows for SpanCounts {
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts {
        self.spans
            .get(&(from_ms, to_ms))
            .copied()
            .unwrap_or_default()
    }
}

/// Counts of a capstan-sourced SLO read the cheap way: per minute for the
/// recent minutes (every burn window lies in them), and one sum for each
/// older span the evaluation reads (the period's older part, older deploys'
/// hours), added up by SQLite.
#[derive(Debug, Clone)]
pub struct StoreCounts {
    cut_ms: i64,
    recent: Series,
    old: HashMap<(i64, i64), Counts>,
}

impl Windows for StoreCounts {
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts {
        if from_ms >= self.cut_ms || to_ms <= from_ms {
            return self.recent.counts(from_ms, to_ms);
        }
        let old = self.old.get(&(from_ms, to_ms.min(self.cut_ms)));
        debug_assert!(
            old.is_some(),
            "span [{from_ms}, {to_ms}) was not read ahead"
        );
        let mut c = old.copied().unwrap_or_default();
        if to_ms > self.cut_ms {
            let r = self.recent.counts(self.cut_ms, to_ms);
            c.bad += r.bad;
            c.total += r.total;
        }
        c
    }
}

/// Counts for one SLO: per-minute (capstan), per-minute and per-span
/// (capstan, long windows), or per-span (Prometheus).
#[derive(Debug, Clone)]
pub enum Loaded {
    /// Per-minute series; any span can be read.
    Series(Series),
    /// Recent minutes and the older spans asked for.
    Store(StoreCounts),
    /// Only the spans asked for.
    Spans(SpanCounts),
}

impl Windows for Loaded {
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts {
        match self {
            Loaded::Series(s) => s.counts(from_ms, to_ms),
            Loaded::Store(s) => s.counts(from_ms, to_ms),
            Loaded::Spans(s) => s.counts(from_ms, to_ms),
        }
    }
}

/// The numerator and total expressions of a capstan-sourced ratio SLO, and
/// the store they read.
struct StoreRatio {
    store: capstan_events::Store,
    /// The service of the numerator, and of the total when it differs.
    service: String,
    total_service: Option<String>,
    num: capstan_events::Expr,
    total: capstan_events::Expr,
    num_is_good: bool,
}

impl StoreRatio {
    fn open(store_path: &Path, slo: &Slo) -> Result<StoreRatio, SourceError> {
        let Indicator::Ratio { counted, total } = &slo.indicator else {
            return Err(SourceError::Unsupported(format!(
                "SLO `{}`: a thresholdMetric is not read as a ratio",
                slo.name
            )));
        };
        let err = |message: String| SourceError::Store {
            path: store_path.to_path_buf(),
            message,
        };
        if !store_path.exists() {
            return Err(err(
                "no such file (record events with the proxy first, or give --store)".into(),
            ));
        }
        let parse = |q: &Query| -> Result<(capstan_events::Expr, String), SourceError> {
            let Query::Capstan { expr, service } = q else {
                return Err(SourceError::Unsupported(
                    "mixed sources in one SLO".to_string(),
                ));
            };
            let e = capstan_events::Expr::parse(expr).map_err(|e| err(format!("`{expr}`: {e}")))?;
            Ok((e, service.clone()))
        };
        let (num, service) = parse(counted.query())?;
        let (total, total_service) = parse(total)?;
        let store = capstan_events::Store::open(store_path)
            .map_err(|e| SourceError::Events(e.to_string()))?;
        Ok(StoreRatio {
            store,
            total_service: (total_service != service).then_some(total_service),
            service,
            num,
            total,
            num_is_good: matches!(counted, Counted::Good(_)),
        })
    }

    fn events(e: capstan_events::Error) -> SourceError {
        SourceError::Events(e.to_string())
    }

    /// Per-minute counts of `[from_ms, to_ms)`, both expressions in one pass.
    fn series(&self, from_ms: i64, to_ms: i64) -> Result<Series, SourceError> {
        if let Some(total_service) = &self.total_service {
            // Both from the rollups or both from raw events, like the one-service
            // read below: raw events are kept for less time than rollups, so a
            // numerator from raw and a total from rollups would find 0 good of N
            // in every minute older than the raw retention.
            let rollups = capstan_events::Store::uses_rollups(&self.num)
                && capstan_events::Store::uses_rollups(&self.total);
            let read = |service: &str, e: &capstan_events::Expr| {
                let counts = if rollups {
                    self.store.minute_counts(Some(service), e, from_ms, to_ms)
                } else {
                    self.store
                        .minute_counts_raw(Some(service), e, from_ms, to_ms)
                };
                counts
                    .map(|v| v.into_iter().map(|m| (m.minute_ms, m.count)).collect())
                    .map_err(Self::events)
            };
            let num: Vec<(i64, u64)> = read(&self.service, &self.num)?;
            let tot: Vec<(i64, u64)> = read(total_service, &self.total)?;
            return Ok(Series::from_counts(&num, &tot, self.num_is_good));
        }
        let rows = self
            .store
            .minute_counts_many(
                Some(&self.service),
                &[&self.num, &self.total],
                from_ms,
                to_ms,
            )
            .map_err(Self::events)?;
        let num: Vec<(i64, u64)> = rows.iter().map(|m| (m.minute_ms, m.counts[0])).collect();
        let tot: Vec<(i64, u64)> = rows.iter().map(|m| (m.minute_ms, m.counts[1])).collect();
        Ok(Series::from_counts(&num, &tot, self.num_is_good))
    }
}

/// Reads the per-minute counts of a capstan-sourced ratio SLO from the event
/// store, for minutes in `[from_ms, to_ms)`.
pub fn capstan_series(
    store_path: &Path,
    slo: &Slo,
    from_ms: i64,
    to_ms: i64,
) -> Result<Series, SourceError> {
    if let Indicator::Threshold { .. } = &slo.indicator {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: a thresholdMetric has no per-minute good and total counts",
            slo.name
        )));
    }
    StoreRatio::open(store_path, slo)?.series(from_ms, to_ms)
}

/// Reads what [`crate::math::evaluate`] needs of a capstan-sourced ratio SLO
/// at `period.now_ms`: with `Occurrences`, the per-minute counts of the last
/// `recent_minutes` (the longest burn window) and one sum per older span of
/// [`crate::math::required_windows`]; with time slices (every slice of the
/// period counts), the per-minute counts of the whole period.
///
/// The numbers are those of the per-minute series: an older span's bad events
/// are its total minus its good ones only when the store shows that every good
/// event is also in the total (so no minute has more good than total events,
/// which the per-minute series would clamp); otherwise the older spans are
/// read per minute too.
pub fn capstan_counts(
    store_path: &Path,
    slo: &Slo,
    period: &Period,
    deploys: &[DeployMark],
    recent_minutes: i64,
) -> Result<Loaded, SourceError> {
    if let Indicator::Threshold { .. } = &slo.indicator {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: a thresholdMetric has no good and total counts",
            slo.name
        )));
    }
    let r = StoreRatio::open(store_path, slo)?;
    let now = period.now_ms;
    let cut = now - recent_minutes * MINUTE_MS;
    if slo.budgeting != Budgeting::Occurrences {
        return Ok(Loaded::Series(r.series(period.start_ms.min(cut), now)?));
    }
    let recent = r.series(cut, now)?;
    let spans: Vec<(i64, i64)> = math::required_windows(period, deploys)
        .into_iter()
        .filter(|&(a, b)| a < cut && b > a)
        .map(|(a, b)| (a, b.min(cut)))
        .collect();
    let mut old = HashMap::new();
    if spans.is_empty() {
        return Ok(Loaded::Store(StoreCounts {
            cut_ms: cut,
            recent,
            old,
        }));
    }
    let service = Some(r.service.as_str());
    let exact = r.total_service.is_none()
        && r.store
            .contained(service, &r.num, &r.total)
            .map_err(StoreRatio::events)?;
    if exact {
        for (a, b) in spans {
            if old.contains_key(&(a, b)) {
                continue;
            }
            let s = r
                .store
                .sums(service, &[&r.num, &r.total], a, b)
                .map_err(StoreRatio::events)?;
            let (num, total) = (s[0], s[1]);
            let bad = if r.num_is_good {
                total.saturating_sub(num)
            } else {
                num
            };
            old.insert(
                (a, b),
                Counts {
                    bad: bad as f64,
                    total: total as f64,
                },
            );
        }
    } else {
        let from = spans.iter().map(|s| s.0).min().unwrap_or(cut);
        let series = r.series(from, cut)?;
        for (a, b) in spans {
            old.insert((a, b), series.counts(a, b));
        }
    }
    Ok(Loaded::Store(StoreCounts {
        cut_ms: cut,
        recent,
        old,
    }))
}

/// A Prometheus server's HTTP API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

/// A Prometheus range for `ms` milliseconds: `30d`, `6h`, `90m`, else seconds.
pub fn prom_duration(ms: i64) -> String {
    if ms % (1440 * MINUTE_MS) == 0 {
        format!("{}d", ms / (1440 * MINUTE_MS))
    } else if ms % (60 * MINUTE_MS) == 0 {
        format!("{}h", ms / (60 * MINUTE_MS))
    } else if ms % MINUTE_MS == 0 {
        format!("{}m", ms / MINUTE_MS)
    } else {
        format!("{}s", (ms / 1000).max(1))
    }
}

impl Prometheus {
    /// A client for `base` (like `http://localhost:9090`); every request,
    /// connection included, is bounded by `timeout`.
    pub fn new(base: &str, timeout: Duration) -> Result<Prometheus, SourceError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| SourceError::Unreachable {
                url: base.to_string(),
                message: e.to_string(),
            })?;
        Ok(Prometheus {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// Evaluates an instant query at `time_ms`; the sum of the returned
    /// series' values (0 when there is none).
    pub async fn instant(&self, query: &str, time_ms: i64) -> Result<f64, SourceError> {
        let url = format!("{}/api/v1/query", self.base);
        let time = format!("{:.3}", time_ms as f64 / 1000.0);
        let resp = self
            .client
            .post(&url)
            .form(&[("query", query), ("time", time.as_str())])
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                url: self.base.clone(),
                message: describe_reqwest(&e),
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| SourceError::Shape {
            query: query.to_string(),
            message: format!("HTTP {status} and a body that is not JSON: {e}"),
        })?;
        if body["status"] != "success" {
            return Err(SourceError::PromQl {
                query: query.to_string(),
                error_type: body["errorType"].as_str().unwrap_or("error").to_string(),
                message: body["error"].as_str().unwrap_or("no message").to_string(),
            });
        }
        let data = &body["data"];
        let parse = |v: &serde_json::Value| -> Result<f64, SourceError> {
            let s = v[1].as_str().unwrap_or("");
            match s {
                "NaN" => Ok(0.0),
                _ => s.parse::<f64>().map_err(|_| SourceError::Shape {
                    query: query.to_string(),
                    message: format!("a sample value `{s}` that is not a number"),
                }),
            }
        };
        match data["resultType"].as_str() {
            Some("vector") => {
                let mut sum = 0.0;
                for r in data["result"].as_array().into_iter().flatten() {
                    sum += parse(&r["value"])?;
                }
                Ok(sum)
            }
            Some("scalar") => parse(&data["result"]),
            other => Err(SourceError::Shape {
                query: query.to_string(),
                message: format!(
                    "result type {}; write a query that returns one number (wrap it in sum())",
                    other.unwrap_or("(none)")
                ),
            }),
        }
    }

    /// Counts for each span of a Prometheus-sourced ratio SLO: the queries
    /// with `{{.window}}` replaced by the span's length, evaluated at its end.
    /// A query written with `rate()` is a per-second rate, so it is
    /// multiplied by the span's seconds to count events.
    pub async fn spans(&self, slo: &Slo, spans: &[(i64, i64)]) -> Result<SpanCounts, SourceError> {
        let (counted, num, tot) = prometheus_ratio(slo)?;
        let mut out = SpanCounts::default();
        for &(from, to) in spans {
            if to <= from {
                continue;
            }
            let w = prom_duration(to - from);
            let count = |q: &str| {
                let filled = q.replace("{{.window}}", &w).replace("{{ .window }}", &w);
                let per_second = q.contains("rate(") && !q.contains("increase(");
                async move {
                    let v = self.instant(&filled, to).await?;
                    Ok::<f64, SourceError>(if per_second {
                        v * (to - from) as f64 / 1000.0
                    } else {
                        v
                    })
                }
            };
            let n = count(num).await?;
            let t = count(tot).await?;
            out.insert(from, to, ratio_counts(counted, n, t));
        }
        Ok(out)
    }
}

/// The counted side and both queries of a Prometheus-sourced ratio SLO.
fn prometheus_ratio(slo: &Slo) -> Result<(&Counted, &str, &str), SourceError> {
    let Indicator::Ratio { counted, total } = &slo.indicator else {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: thresholdMetric is not evaluated; use a ratioMetric",
            slo.name
        )));
    };
    let (Query::Prometheus { query: num }, Query::Prometheus { query: tot }) =
        (counted.query(), total)
    else {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}` does not read Prometheus",
            slo.name
        )));
    };
    Ok((counted, num, tot))
}

impl Prometheus {
    /// Evaluates a range query at `start_ms`, `start_ms + step_ms`, … up to
    /// `end_ms`; per evaluation time, the sum of the returned series' values
    /// (times without a sample are absent).
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<BTreeMap<i64, f64>, SourceError> {
        let url = format!("{}/api/v1/query_range", self.base);
        let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
        let resp = self
            .client
            .post(&url)
            .form(&[
                ("query", query),
                ("start", secs(start_ms).as_str()),
                ("end", secs(end_ms).as_str()),
                ("step", secs(step_ms).as_str()),
            ])
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                url: self.base.clone(),
                message: describe_reqwest(&e),
            })?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.map_err(|e| SourceError::Shape {
            query: query.to_string(),
            message: format!("HTTP {status} and a body that is not JSON: {e}"),
        })?;
        if body["status"] != "success" {
            return Err(SourceError::PromQl {
                query: query.to_string(),
                error_type: body["errorType"].as_str().unwrap_or("error").to_string(),
                message: body["error"].as_str().unwrap_or("no message").to_string(),
            });
        }
        let shape = |message: String| SourceError::Shape {
            query: query.to_string(),
            message,
        };
        if body["data"]["resultType"] != "matrix" {
            return Err(shape(format!(
                "result type {} from a range query",
                body["data"]["resultType"]
            )));
        }
        let mut out = BTreeMap::new();
        for series in body["data"]["result"].as_array().into_iter().flatten() {
            for point in series["values"].as_array().into_iter().flatten() {
                let t = point[0].as_f64().ok_or_else(|| {
                    shape(format!("a sample time {} that is not a number", point[0]))
                })?;
                let s = point[1].as_str().unwrap_or("");
                let v = match s {
                    "NaN" => 0.0,
                    _ => s
                        .parse::<f64>()
                        .map_err(|_| shape(format!("a sample value `{s}` that is not a number")))?,
                };
                *out.entry((t * 1000.0).round() as i64).or_insert(0.0) += v;
            }
        }
        Ok(out)
    }

    /// Counts of consecutive buckets `[start_ms + i·step_ms, … + step_ms)`
    /// up to `end_ms` (the last one cut there) of a Prometheus-sourced ratio
    /// SLO, for charts: one range query per expression with `{{.window}}`
    /// as the step, and instant queries for a last, shorter bucket. A bucket
    /// Prometheus has no sample for counts nothing.
    pub async fn buckets(
        &self,
        slo: &Slo,
        start_ms: i64,
        step_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<(i64, i64, Counts)>, SourceError> {
        let (counted, num, tot) = prometheus_ratio(slo)?;
        if step_ms <= 0 || end_ms <= start_ms {
            return Ok(Vec::new());
        }
        let whole = (end_ms - start_ms) / step_ms;
        let w = prom_duration(step_ms);
        let fill = |q: &str| q.replace("{{.window}}", &w).replace("{{ .window }}", &w);
        let scale = |q: &str, ms: i64| {
            if q.contains("rate(") && !q.contains("increase(") {
                ms as f64 / 1000.0
            } else {
                1.0
            }
        };
        let mut out = Vec::new();
        if whole > 0 {
            let last = start_ms + whole * step_ms;
            let n = self
                .range(&fill(num), start_ms + step_ms, last, step_ms)
                .await?;
            let t = self
                .range(&fill(tot), start_ms + step_ms, last, step_ms)
                .await?;
            for i in 0..whole {
                let to = start_ms + (i + 1) * step_ms;
                let total = t.get(&to).copied().unwrap_or(0.0) * scale(tot, step_ms);
                let n = n.get(&to).copied().unwrap_or(0.0) * scale(num, step_ms);
                out.push((to - step_ms, to, ratio_counts(counted, n, total)));
            }
        }
        let from = start_ms + whole * step_ms;
        if from < end_ms {
            let rest = self.spans(slo, &[(from, end_ms)]).await?;
            out.push((from, end_ms, rest.counts(from, end_ms)));
        }
        Ok(out)
    }
}

/// Bad and total from the counted side's count and the total.
fn ratio_counts(counted: &Counted, n: f64, total: f64) -> Counts {
    let bad = match counted {
        Counted::Good(_) => (total - n).max(0.0),
        Counted::Bad(_) => n.min(total),
    };
    Counts { bad, total }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the timeout".to_string()
    } else if e.is_connect() {
        format!("cannot connect ({})", root_cause(e))
    } else {
        root_cause(e)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

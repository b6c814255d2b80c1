//! Where counts come from: the capstan event store's per-minute rollups, or
//! Prometheus's HTTP API. Both answer with something the pure math reads
//! ([`Windows`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::math::{Counts, Series, Windows, MINUTE_MS};
use crate::spec::{Counted, Indicator, Query, Slo};

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

/// Counts for one SLO: per-minute (capstan) or per-span (Prometheus).
#[derive(Debug, Clone)]
pub enum Loaded {
    /// Per-minute series; any span can be read.
    Series(Series),
    /// Only the spans asked for.
    Spans(SpanCounts),
}

impl Windows for Loaded {
    fn counts(&self, from_ms: i64, to_ms: i64) -> Counts {
        match self {
            Loaded::Series(s) => s.counts(from_ms, to_ms),
            Loaded::Spans(s) => s.counts(from_ms, to_ms),
        }
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
    let Indicator::Ratio { counted, total } = &slo.indicator else {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: a thresholdMetric is not evaluated from the event store; write it as a ratioMetric (good: duration_ms <= 300, total: status >= 0)",
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
    let store =
        capstan_events::Store::open(store_path).map_err(|e| SourceError::Events(e.to_string()))?;
    let read = |q: &Query| -> Result<Vec<(i64, u64)>, SourceError> {
        let Query::Capstan { expr, service } = q else {
            return Err(SourceError::Unsupported(
                "mixed sources in one SLO".to_string(),
            ));
        };
        let e = capstan_events::Expr::parse(expr).map_err(|e| err(format!("`{expr}`: {e}")))?;
        Ok(store
            .minute_counts(Some(service), &e, from_ms, to_ms)
            .map_err(|e| SourceError::Events(e.to_string()))?
            .into_iter()
            .map(|m| (m.minute_ms, m.count))
            .collect())
    };
    let num = read(counted.query())?;
    let tot = read(total)?;
    Ok(Series::from_counts(
        &num,
        &tot,
        matches!(counted, Counted::Good(_)),
    ))
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
            let bad = match counted {
                Counted::Good(_) => (t - n).max(0.0),
                Counted::Bad(_) => n.min(t),
            };
            out.insert(from, to, Counts { bad, total: t });
        }
        Ok(out)
    }
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

//! Prometheus as the judge's metric source: instant and range queries over the
//! HTTP API (`/api/v1/query`, `/api/v1/query_range`), each bounded by a timeout,
//! turned into the judge's observations.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{render, Gate, JudgeConfig, PrometheusSource, Queries};
use crate::judge::{Counts, Observed, Samples};

/// Errors talking to Prometheus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromError {
    /// No answer within the bound, connection refused, or similar.
    #[error("prometheus {url}: {detail}")]
    Unreachable {
        /// The endpoint (no query string).
        url: String,
        /// What happened.
        detail: String,
    },
    /// Prometheus answered with an error (bad PromQL, timeout on its side).
    #[error("prometheus refused {query:?}: {detail}")]
    Query {
        /// The query.
        query: String,
        /// Prometheus' errorType and error.
        detail: String,
    },
    /// An answer that is not the documented JSON.
    #[error("prometheus answered {query:?} with something unexpected: {detail}")]
    Malformed {
        /// The query.
        query: String,
        /// What was wrong.
        detail: String,
    },
}

/// One series of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The series' labels.
    pub labels: BTreeMap<String, String>,
    /// The value (may be NaN or infinite, as Prometheus sends them).
    pub value: f64,
}

/// A Prometheus HTTP API client with a bounded timeout per query.
#[derive(Debug, Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: url::Url,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    data: Option<Data>,
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: Option<(f64, String)>,
    values: Option<Vec<(f64, String)>>,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

impl Prometheus {
    /// A client for `source`.
    pub fn new(source: &PrometheusSource) -> Result<Prometheus, PromError> {
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .connect_timeout(source.timeout)
            .build()
            .map_err(|e| PromError::Unreachable {
                url: source.url.to_string(),
                detail: e.to_string(),
            })?;
        Ok(Prometheus {
            http,
            base: source.url.clone(),
        })
    }

    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Data, PromError> {
        let mut url = self.base.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| PromError::Unreachable {
                    url: self.base.to_string(),
                    detail: "not a base URL".into(),
                })?;
            segments.pop_if_empty();
            for part in path.split('/') {
                segments.push(part);
            }
        }
        let endpoint = url.to_string();
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let unreachable = |e: reqwest::Error| PromError::Unreachable {
            url: endpoint.clone(),
            detail: if e.is_timeout() {
                "no answer within the timeout".into()
            } else {
                e.to_string()
            },
        };
        let response = self.http.get(url).send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        let envelope: Envelope =
            serde_json::from_slice(&body).map_err(|e| PromError::Malformed {
                query: query.into(),
                detail: format!("HTTP {status}: {e}"),
            })?;
        if envelope.status != "success" {
            return Err(PromError::Query {
                query: query.into(),
                detail: format!(
                    "{}: {}",
                    envelope.error_type.unwrap_or_default(),
                    envelope.error.unwrap_or_default()
                ),
            });
        }
        envelope.data.ok_or_else(|| PromError::Malformed {
            query: query.into(),
            detail: "no data".into(),
        })
    }

    /// An instant query at `time_ms`: one point per series (a scalar is one
    /// point without labels).
    pub async fn instant(&self, query: &str, time_ms: i64) -> Result<Vec<Point>, PromError> {
        let data = self
            .get(
                "api/v1/query",
                &[("query", query.into()), ("time", seconds(time_ms))],
                query,
            )
            .await?;
        let malformed = |detail: String| PromError::Malformed {
            query: query.into(),
            detail,
        };
        match data.result_type.as_str() {
            "vector" => {
                let series: Vec<Series> =
                    serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
                series
                    .into_iter()
                    .map(|s| {
                        let (_, v) = s
                            .value
                            .ok_or_else(|| malformed("a vector sample without value".into()))?;
                        let value =
                            parse_value(&v).ok_or_else(|| malformed(format!("value {v:?}")))?;
                        Ok(Point {
                            labels: s.metric,
                            value,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let (_, v): (f64, String) =
                    serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
                let value = parse_value(&v).ok_or_else(|| malformed(format!("value {v:?}")))?;
                Ok(vec![Point {
                    labels: BTreeMap::new(),
                    value,
                }])
            }
            other => Err(malformed(format!(
                "result type {other:?} (expected vector or scalar)"
            ))),
        }
    }

    /// A range query: every value of every series, in order.
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step: Duration,
    ) -> Result<Vec<f64>, PromError> {
        let data = self
            .get(
                "api/v1/query_range",
                &[
                    ("query", query.into()),
                    ("start", seconds(start_ms)),
                    ("end", seconds(end_ms)),
                    ("step", format!("{}", step.as_secs_f64())),
                ],
                query,
            )
            .await?;
        let malformed = |detail: String| PromError::Malformed {
            query: query.into(),
            detail,
        };
        if data.result_type != "matrix" {
            return Err(malformed(format!(
                "result type {:?} (expected matrix)",
                data.result_type
            )));
        }
        let series: Vec<Series> =
            serde_json::from_value(data.result).map_err(|e| malformed(e.to_string()))?;
        let mut out = Vec::new();
        for s in series {
            for (_, v) in s.values.unwrap_or_default() {
                let value = parse_value(&v).ok_or_else(|| malformed(format!("value {v:?}")))?;
                if value.is_finite() {
                    out.push(value);
                }
            }
        }
        Ok(out)
    }
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The sum over the series an instant query returns; `None` when it returned none
/// or a value that is not finite.
async fn sum(prom: &Prometheus, query: &str, at_ms: i64) -> Result<Option<f64>, PromError> {
    let points = prom.instant(query, at_ms).await?;
    if points.is_empty() {
        return Ok(None);
    }
    let total: f64 = points.iter().map(|p| p.value).sum();
    Ok(total.is_finite().then_some(total))
}

/// Errors of a request: a placeholder without value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// A `{{name}}` in a query had no value in the request.
    #[error("metric {metric}: {detail}")]
    Placeholder {
        /// The metric or gate.
        metric: String,
        /// Which placeholder.
        detail: String,
    },
}

/// Fetches one observation per configured metric for the interval ending at
/// `at_ms`. A metric whose source fails or returns nothing is
/// [`Observed::Missing`] with the reason (so the verdict is inconclusive, never a
/// pass); only a placeholder without value is an error, because it is the
/// caller's.
pub async fn observe(
    prom: &Prometheus,
    config: &JudgeConfig,
    vars: &BTreeMap<String, String>,
    at_ms: i64,
) -> Result<Vec<Observed>, RequestError> {
    let from_ms = at_ms - config.lookback.as_millis() as i64;
    let mut vars = vars.clone();
    vars.insert("interval".into(), format!("{}s", config.lookback.as_secs()));
    let mut out = Vec::with_capacity(config.metrics.len());
    for (spec, queries) in &config.metrics {
        let r = |q: &str| {
            render(q, &vars).map_err(|detail| RequestError::Placeholder {
                metric: spec.name.clone(),
                detail,
            })
        };
        let observed = match queries {
            Queries::ErrorRatio {
                canary_errors,
                canary_total,
                baseline_errors,
                baseline_total,
            } => {
                let qs = [
                    r(canary_errors)?,
                    r(canary_total)?,
                    r(baseline_errors)?,
                    r(baseline_total)?,
                ];
                let mut values = [0u64; 4];
                let mut missing = None;
                for (i, (q, field)) in qs
                    .iter()
                    .zip([
                        "canary_errors",
                        "canary_total",
                        "baseline_errors",
                        "baseline_total",
                    ])
                    .enumerate()
                {
                    match sum(prom, q, at_ms).await {
                        Ok(Some(v)) if v >= 0.0 => values[i] = v.round() as u64,
                        Ok(Some(v)) => {
                            missing = Some(format!("{field} is negative ({v})"));
                            break;
                        }
                        // No series: nothing happened on that side. Zero errors is
                        // a count; zero requests makes the side too small anyway.
                        Ok(None) => values[i] = 0,
                        Err(e) => {
                            missing = Some(format!("{field}: {e}"));
                            break;
                        }
                    }
                }
                match missing {
                    Some(reason) => Observed::Missing { reason },
                    None => Observed::Counts {
                        canary: Counts {
                            errors: values[0],
                            total: values[1],
                        },
                        baseline: Counts {
                            errors: values[2],
                            total: values[3],
                        },
                    },
                }
            }
            Queries::Histogram {
                canary,
                baseline,
                scale,
            } => {
                let (qc, qb) = (r(canary)?, r(baseline)?);
                let mut sides = Vec::new();
                for (q, side) in [(qc, "canary"), (qb, "baseline")] {
                    sides.push(
                        histogram(prom, &q, at_ms, *scale)
                            .await
                            .map_err(|e| format!("{side}: {e}")),
                    );
                }
                let b = sides.pop().expect("two sides");
                let c = sides.pop().expect("two sides");
                match (c, b) {
                    (Ok(canary), Ok(baseline)) => Observed::Samples { canary, baseline },
                    (Err(reason), _) | (_, Err(reason)) => Observed::Missing { reason },
                }
            }
            Queries::Range {
                canary,
                baseline,
                step,
            } => {
                let (qc, qb) = (r(canary)?, r(baseline)?);
                let c = prom.range(&qc, from_ms, at_ms, *step).await;
                let b = prom.range(&qb, from_ms, at_ms, *step).await;
                match (c, b) {
                    (Ok(c), Ok(b)) => match (Samples::from_values(c), Samples::from_values(b)) {
                        (Ok(canary), Ok(baseline)) => Observed::Samples { canary, baseline },
                        (Err(e), _) | (_, Err(e)) => Observed::Missing {
                            reason: e.to_string(),
                        },
                    },
                    (Err(e), _) => Observed::Missing {
                        reason: format!("canary: {e}"),
                    },
                    (_, Err(e)) => Observed::Missing {
                        reason: format!("baseline: {e}"),
                    },
                }
            }
        };
        if let Observed::Missing { reason } = &observed {
            tracing::warn!(metric = %spec.name, %reason, "no data for metric");
        }
        out.push(observed);
    }
    Ok(out)
}

async fn histogram(
    prom: &Prometheus,
    query: &str,
    at_ms: i64,
    scale: f64,
) -> Result<Samples, String> {
    let points = prom
        .instant(query, at_ms)
        .await
        .map_err(|e| e.to_string())?;
    let mut buckets = Vec::with_capacity(points.len());
    for p in points {
        let le = p
            .labels
            .get("le")
            .ok_or_else(|| format!("a series without an `le` label: {:?}", p.labels))?;
        let bound = parse_value(le).ok_or_else(|| format!("le={le:?} is not a number"))?;
        if p.value.is_nan() {
            continue;
        }
        buckets.push((bound * scale, p.value));
    }
    Samples::from_histogram(&buckets).map_err(|e| e.to_string())
}

/// One gate's state.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateResult {
    /// The gate's name.
    pub name: String,
    /// Whether it lets the hook go ahead.
    pub open: bool,
    /// The query's value, when it had one.
    pub value: Option<f64>,
    /// Why it is open or closed.
    pub reason: String,
}

/// Evaluates the gates guarding `hook` at `at_ms`. A gate whose query fails or
/// returns nothing is closed: a gate never opens without evidence.
pub async fn check_gates(
    prom: &Prometheus,
    gates: &[Gate],
    hook: &str,
    vars: &BTreeMap<String, String>,
    at_ms: i64,
) -> Result<Vec<GateResult>, RequestError> {
    let mut out = Vec::new();
    for g in gates.iter().filter(|g| g.hooks.iter().any(|h| h == hook)) {
        let query = render(&g.query, vars).map_err(|detail| RequestError::Placeholder {
            metric: format!("gate {}", g.name),
            detail,
        })?;
        let (open, value, reason) = match sum(prom, &query, at_ms).await {
            Ok(Some(v)) => {
                let low = g.min.is_some_and(|m| v < m);
                let high = g.max.is_some_and(|m| v > m);
                let reason = if low {
                    format!("{v} is below the minimum {}", g.min.unwrap_or_default())
                } else if high {
                    format!("{v} is above the maximum {}", g.max.unwrap_or_default())
                } else {
                    format!("{v} is within bounds")
                };
                (!low && !high, Some(v), reason)
            }
            Ok(None) => (false, None, "the query returned no value".to_string()),
            Err(e) => (false, None, e.to_string()),
        };
        out.push(GateResult {
            name: g.name.clone(),
            open,
            value,
            reason,
        });
    }
    Ok(out)
}

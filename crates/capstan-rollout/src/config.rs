//! `judge.toml`: the thresholds, the Prometheus source, the metrics with their
//! PromQL per side, group weights and gates.
//!
//! ```toml
//! [judge]
//! lookback = "10m"          # the interval judged ends now and lasts this long
//! pass_score = 95
//!
//! [prometheus]
//! url = "http://prometheus.monitoring:9090"
//! timeout = "5s"
//!
//! [groups]
//! availability = 2
//! latency = 1
//!
//! [[metric]]
//! name = "errors"
//! kind = "error_ratio"
//! group = "availability"
//! critical = true
//! canary_errors = 'sum(increase(http_requests_total{release="{{canary}}",code=~"5.."}[{{interval}}]))'
//! canary_total = 'sum(increase(http_requests_total{release="{{canary}}"}[{{interval}}]))'
//! baseline_errors = 'sum(increase(http_requests_total{release="{{baseline}}",code=~"5.."}[{{interval}}]))'
//! baseline_total = 'sum(increase(http_requests_total{release="{{baseline}}"}[{{interval}}]))'
//! ```
//!
//! `{{interval}}` is the lookback in seconds (`600s`); any other `{{name}}` comes
//! from the request (the Web provider's query string, Flagger's payload and
//! metadata). An unknown placeholder is a bad request, never an empty string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::judge::{Direction, JudgeError, MetricSpec, Rule, Thresholds};

/// Errors reading `judge.toml`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or unknown (the message has the
    /// line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value out of range or missing for its kind; `field` names it.
    #[error("{path}: {field}: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, e.g. `metric[1] (latency).canary_buckets`.
        field: String,
        /// What was wrong.
        detail: String,
    },
}

/// Where the judge reads metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusSource {
    /// Base URL, e.g. `http://prometheus:9090`.
    pub url: url::Url,
    /// Bound on each query.
    pub timeout: Duration,
}

/// The PromQL behind one metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Queries {
    /// Four instant queries, each summed over the series it returns.
    ErrorRatio {
        /// Canary errors in the interval.
        canary_errors: String,
        /// Canary requests in the interval.
        canary_total: String,
        /// Baseline errors.
        baseline_errors: String,
        /// Baseline requests.
        baseline_total: String,
    },
    /// Two instant queries returning cumulative histogram buckets (one series per
    /// `le` label), e.g. `sum by (le) (increase(x_bucket{...}[{{interval}}]))`.
    Histogram {
        /// The canary's buckets.
        canary: String,
        /// The baseline's buckets.
        baseline: String,
        /// Multiplies the bucket bounds (1000 turns seconds into milliseconds).
        scale: f64,
    },
    /// Two range queries over the interval at `step`: every point of every series is
    /// a sample.
    Range {
        /// The canary's.
        canary: String,
        /// The baseline's.
        baseline: String,
        /// Resolution.
        step: Duration,
    },
}

/// A gate: one instant query whose value must lie within bounds for the named
/// Flagger hooks to answer "go".
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Name, for the answer.
    pub name: String,
    /// PromQL, summed over the series it returns. No series: the gate is closed.
    pub query: String,
    /// Open when the value is at least this.
    pub min: Option<f64>,
    /// Open when the value is at most this.
    pub max: Option<f64>,
    /// Hooks it guards: `confirm-rollout`, `confirm-promotion`.
    pub hooks: Vec<String>,
}

/// A parsed, validated `judge.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeConfig {
    /// The thresholds.
    pub thresholds: Thresholds,
    /// The judged interval's length.
    pub lookback: Duration,
    /// The metric source.
    pub prometheus: PrometheusSource,
    /// Group weights (groups not listed weigh 1).
    pub groups: BTreeMap<String, f64>,
    /// The metrics and their queries, in file order.
    pub metrics: Vec<(MetricSpec, Queries)>,
    /// The gates.
    pub gates: Vec<Gate>,
    /// Where Flagger's events are appended as JSON lines, if anywhere.
    pub event_log: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    judge: RawJudge,
    prometheus: RawPrometheus,
    #[serde(default)]
    groups: BTreeMap<String, f64>,
    #[serde(default)]
    metric: Vec<RawMetric>,
    #[serde(default)]
    gate: Vec<RawGate>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    lookback: Option<String>,
    event_log: Option<PathBuf>,
    alpha: Option<f64>,
    confidence: Option<f64>,
    pass_score: Option<f64>,
    marginal_score: Option<f64>,
    min_data_fraction: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    timeout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    kind: String,
    group: Option<String>,
    #[serde(default)]
    critical: bool,
    direction: Option<Direction>,
    min_requests: Option<u64>,
    min_samples: Option<u64>,
    relative_tolerance: Option<f64>,
    absolute_tolerance: Option<f64>,
    shift_tolerance: Option<f64>,
    p99_tolerance: Option<f64>,
    tolerance: Option<f64>,
    canary_errors: Option<String>,
    canary_total: Option<String>,
    baseline_errors: Option<String>,
    baseline_total: Option<String>,
    canary_buckets: Option<String>,
    baseline_buckets: Option<String>,
    scale: Option<f64>,
    canary: Option<String>,
    baseline: Option<String>,
    step: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    name: String,
    query: String,
    min: Option<f64>,
    max: Option<f64>,
    hooks: Option<Vec<String>>,
}

/// The Flagger hooks a gate may guard.
pub const GATE_HOOKS: [&str; 2] = ["confirm-rollout", "confirm-promotion"];

impl JudgeConfig {
    /// Reads and validates a `judge.toml`.
    pub fn load(path: &Path) -> Result<JudgeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        JudgeConfig::parse(&text, path)
    }

    /// Parses and validates the text of a `judge.toml`; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<JudgeConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |field: String, detail: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            detail,
        };
        let from_judge_error = |prefix: &str, e: JudgeError| match e {
            JudgeError::BadSetting { field, detail } => invalid(format!("{prefix}{field}"), detail),
            other => invalid(prefix.trim_end_matches('.').to_string(), other.to_string()),
        };

        let d = Thresholds::default();
        let rt = &raw.judge;
        let thresholds = Thresholds {
            alpha: rt.alpha.unwrap_or(d.alpha),
            confidence: rt.confidence.unwrap_or(d.confidence),
            pass_score: rt.pass_score.unwrap_or(d.pass_score),
            marginal_score: rt.marginal_score.unwrap_or(d.marginal_score),
            min_data_fraction: rt.min_data_fraction.unwrap_or(d.min_data_fraction),
        };
        thresholds
            .validate()
            .map_err(|e| from_judge_error("judge.", e))?;
        let duration = |field: String, text: &str| {
            humantime::parse_duration(text)
                .map_err(|e| invalid(field.clone(), format!("{text:?} is not a duration: {e}")))
                .and_then(|d| {
                    if d.is_zero() {
                        Err(invalid(field, "must be longer than zero".into()))
                    } else {
                        Ok(d)
                    }
                })
        };
        let lookback = match &raw.judge.lookback {
            Some(t) => duration("judge.lookback".into(), t)?,
            None => Duration::from_secs(600),
        };
        if lookback.as_secs() == 0 {
            return Err(invalid(
                "judge.lookback".into(),
                "must be at least 1s".into(),
            ));
        }

        let url = url::Url::parse(&raw.prometheus.url)
            .map_err(|e| invalid("prometheus.url".into(), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(
                "prometheus.url".into(),
                format!("scheme {:?} is not http or https", url.scheme()),
            ));
        }
        let timeout = match &raw.prometheus.timeout {
            Some(t) => duration("prometheus.timeout".into(), t)?,
            None => Duration::from_secs(5),
        };

        for (name, w) in &raw.groups {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(invalid(
                    format!("groups.{name}"),
                    "weight must be a number ≥ 0".into(),
                ));
            }
        }

        let mut metrics = Vec::new();
        for (i, m) in raw.metric.iter().enumerate() {
            let at = format!("metric[{i}] ({})", m.name);
            if m.name.trim().is_empty() {
                return Err(invalid(
                    format!("metric[{i}].name"),
                    "must not be empty".into(),
                ));
            }
            if raw.metric[..i].iter().any(|o| o.name == m.name) {
                return Err(invalid(
                    format!("{at}.name"),
                    "is used by an earlier metric".into(),
                ));
            }
            let need = |field: &str, v: &Option<String>| {
                v.clone().filter(|q| !q.trim().is_empty()).ok_or_else(|| {
                    invalid(
                        format!("{at}.{field}"),
                        format!("is required for kind {:?}", m.kind),
                    )
                })
            };
            // Fields that belong to another kind are refused: they would silently do nothing.
            let refuse = |fields: &[(&str, bool)]| {
                for (f, present) in fields {
                    if *present {
                        return Err(invalid(
                            format!("{at}.{f}"),
                            format!("does not apply to kind {:?}", m.kind),
                        ));
                    }
                }
                Ok(())
            };
            let (rule, queries) = match m.kind.as_str() {
                "error_ratio" => {
                    refuse(&[
                        ("min_samples", m.min_samples.is_some()),
                        ("shift_tolerance", m.shift_tolerance.is_some()),
                        ("p99_tolerance", m.p99_tolerance.is_some()),
                        ("tolerance", m.tolerance.is_some()),
                        ("canary_buckets", m.canary_buckets.is_some()),
                        ("baseline_buckets", m.baseline_buckets.is_some()),
                        ("scale", m.scale.is_some()),
                        ("canary", m.canary.is_some()),
                        ("baseline", m.baseline.is_some()),
                        ("step", m.step.is_some()),
                    ])?;
                    let Rule::ErrorRatio {
                        direction,
                        min_requests,
                        relative_tolerance,
                        absolute_tolerance,
                    } = Rule::error_ratio()
                    else {
                        unreachable!("error_ratio() is an ErrorRatio")
                    };
                    (
                        Rule::ErrorRatio {
                            direction: m.direction.unwrap_or(direction),
                            min_requests: m.min_requests.unwrap_or(min_requests),
                            relative_tolerance: m.relative_tolerance.unwrap_or(relative_tolerance),
                            absolute_tolerance: m.absolute_tolerance.unwrap_or(absolute_tolerance),
                        },
                        Queries::ErrorRatio {
                            canary_errors: need("canary_errors", &m.canary_errors)?,
                            canary_total: need("canary_total", &m.canary_total)?,
                            baseline_errors: need("baseline_errors", &m.baseline_errors)?,
                            baseline_total: need("baseline_total", &m.baseline_total)?,
                        },
                    )
                }
                "latency" => {
                    refuse(&[
                        ("direction", m.direction.is_some()),
                        ("min_requests", m.min_requests.is_some()),
                        ("relative_tolerance", m.relative_tolerance.is_some()),
                        ("absolute_tolerance", m.absolute_tolerance.is_some()),
                        ("tolerance", m.tolerance.is_some()),
                        ("canary_errors", m.canary_errors.is_some()),
                        ("canary_total", m.canary_total.is_some()),
                        ("baseline_errors", m.baseline_errors.is_some()),
                        ("baseline_total", m.baseline_total.is_some()),
                        ("canary", m.canary.is_some()),
                        ("baseline", m.baseline.is_some()),
                        ("step", m.step.is_some()),
                    ])?;
                    let Rule::Latency {
                        min_samples,
                        shift_tolerance,
                        p99_tolerance,
                    } = Rule::latency()
                    else {
                        unreachable!("latency() is a Latency")
                    };
                    let scale = m.scale.unwrap_or(1.0);
                    if !(scale.is_finite() && scale > 0.0) {
                        return Err(invalid(
                            format!("{at}.scale"),
                            "must be a number > 0".into(),
                        ));
                    }
                    (
                        Rule::Latency {
                            min_samples: m.min_samples.unwrap_or(min_samples),
                            shift_tolerance: m.shift_tolerance.unwrap_or(shift_tolerance),
                            p99_tolerance: m.p99_tolerance.unwrap_or(p99_tolerance),
                        },
                        Queries::Histogram {
                            canary: need("canary_buckets", &m.canary_buckets)?,
                            baseline: need("baseline_buckets", &m.baseline_buckets)?,
                            scale,
                        },
                    )
                }
                "custom" => {
                    refuse(&[
                        ("min_requests", m.min_requests.is_some()),
                        ("relative_tolerance", m.relative_tolerance.is_some()),
                        ("absolute_tolerance", m.absolute_tolerance.is_some()),
                        ("shift_tolerance", m.shift_tolerance.is_some()),
                        ("p99_tolerance", m.p99_tolerance.is_some()),
                        ("canary_errors", m.canary_errors.is_some()),
                        ("canary_total", m.canary_total.is_some()),
                        ("baseline_errors", m.baseline_errors.is_some()),
                        ("baseline_total", m.baseline_total.is_some()),
                        ("canary_buckets", m.canary_buckets.is_some()),
                        ("baseline_buckets", m.baseline_buckets.is_some()),
                        ("scale", m.scale.is_some()),
                    ])?;
                    let direction = m.direction.ok_or_else(|| {
                        invalid(
                            format!("{at}.direction"),
                            "is required for kind \"custom\": increase, decrease or either".into(),
                        )
                    })?;
                    let Rule::Custom {
                        min_samples,
                        tolerance,
                        ..
                    } = Rule::custom(direction)
                    else {
                        unreachable!("custom() is a Custom")
                    };
                    let step = match &m.step {
                        Some(s) => duration(format!("{at}.step"), s)?,
                        None => Duration::from_secs(15),
                    };
                    (
                        Rule::Custom {
                            direction,
                            min_samples: m.min_samples.unwrap_or(min_samples),
                            tolerance: m.tolerance.unwrap_or(tolerance),
                        },
                        Queries::Range {
                            canary: need("canary", &m.canary)?,
                            baseline: need("baseline", &m.baseline)?,
                            step,
                        },
                    )
                }
                other => {
                    return Err(invalid(
                        format!("{at}.kind"),
                        format!("{other:?} is not one of error_ratio, latency, custom"),
                    ))
                }
            };
            rule.validate(&m.name)
                .map_err(|e| from_judge_error("", e))?;
            metrics.push((
                MetricSpec {
                    name: m.name.clone(),
                    group: m.group.clone().unwrap_or_else(|| "default".into()),
                    critical: m.critical,
                    rule,
                },
                queries,
            ));
        }
        if metrics.is_empty() {
            return Err(invalid(
                "metric".into(),
                "at least one [[metric]] is required".into(),
            ));
        }

        let mut gates = Vec::new();
        for (i, g) in raw.gate.into_iter().enumerate() {
            let at = format!("gate[{i}] ({})", g.name);
            if g.min.is_none() && g.max.is_none() {
                return Err(invalid(
                    format!("{at}.min"),
                    "a gate needs min, max or both".into(),
                ));
            }
            let hooks = g
                .hooks
                .unwrap_or_else(|| GATE_HOOKS.iter().map(|h| h.to_string()).collect());
            if let Some(h) = hooks.iter().find(|h| !GATE_HOOKS.contains(&h.as_str())) {
                return Err(invalid(
                    format!("{at}.hooks"),
                    format!("{h:?} is not one of {}", GATE_HOOKS.join(", ")),
                ));
            }
            if g.query.trim().is_empty() {
                return Err(invalid(format!("{at}.query"), "must not be empty".into()));
            }
            gates.push(Gate {
                name: g.name,
                query: g.query,
                min: g.min,
                max: g.max,
                hooks,
            });
        }

        Ok(JudgeConfig {
            thresholds,
            lookback,
            prometheus: PrometheusSource { url, timeout },
            groups: raw.groups,
            metrics,
            gates,
            event_log: raw.judge.event_log,
        })
    }
}

/// Replaces `{{name}}` placeholders from `vars`; an unknown one is an error naming it.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {template:?}"))?;
        let key = after[..end].trim();
        let value = vars.get(key).ok_or_else(|| {
            format!("placeholder {{{{{key}}}}} has no value (pass it as a parameter)")
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_fills_placeholders_and_names_a_missing_one() {
        let vars = BTreeMap::from([("canary".to_string(), "2.0.0".to_string())]);
        assert_eq!(
            render("a{release=\"{{ canary }}\"}", &vars).unwrap(),
            "a{release=\"2.0.0\"}"
        );
        let e = render("{{baseline}}", &vars).unwrap_err();
        assert!(e.contains("{{baseline}}"), "{e}");
    }

    #[test]
    fn a_field_of_another_kind_is_refused_by_name() {
        let text = r#"
[prometheus]
url = "http://127.0.0.1:9090"
[[metric]]
name = "lat"
kind = "latency"
canary_buckets = "a"
baseline_buckets = "b"
relative_tolerance = 0.1
"#;
        let e = JudgeConfig::parse(text, Path::new("judge.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "judge.toml: metric[0] (lat).relative_tolerance: does not apply to kind \"latency\""
        );
    }

    fn error_of(text: &str) -> String {
        JudgeConfig::parse(text, Path::new("judge.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = "[prometheus]\nurl = \"http://127.0.0.1:9090\"\n";
        let metric = "[[metric]]\nname = \"e\"\nkind = \"error_ratio\"\ncanary_errors = \"a\"\ncanary_total = \"b\"\nbaseline_errors = \"c\"\nbaseline_total = \"d\"\n";
        assert!(error_of(&format!(
            "[judge]\nlookback = \"ten minutes\"\n{base}{metric}"
        ))
        .starts_with("judge.toml: judge.lookback: \"ten minutes\" is not a duration"));
        assert_eq!(
            error_of(&format!("[judge]\nalpha = 0.7\n{base}{metric}")),
            "judge.toml: judge.alpha: must be between 0 and 0.5 (exclusive)"
        );
        assert_eq!(
            error_of(&format!("{base}{metric}min_requests = 0\n")),
            "judge.toml: metric.e.min_requests: must be at least 1"
        );
        assert_eq!(
            error_of(&format!(
                "{base}{}",
                metric.replace("canary_total = \"b\"\n", "")
            )),
            "judge.toml: metric[0] (e).canary_total: is required for kind \"error_ratio\""
        );
        assert_eq!(
            error_of(&format!(
                "{base}{metric}[[gate]]\nname = \"g\"\nquery = \"q\"\n"
            )),
            "judge.toml: gate[0] (g).min: a gate needs min, max or both"
        );
        assert_eq!(
            error_of(base),
            "judge.toml: metric: at least one [[metric]] is required"
        );
        assert_eq!(
            error_of(&format!("{base}{metric}{}", metric)),
            "judge.toml: metric[1] (e).name: is used by an earlier metric"
        );
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let text = "[prometheus]\nurl = \"http://x\"\nbogus = 1\n";
        let e = JudgeConfig::parse(text, Path::new("judge.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("bogus"), "{e}");
    }
}

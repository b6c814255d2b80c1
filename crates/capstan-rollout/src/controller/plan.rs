//! `rollout.toml`: the steps, their minimums, the limits, and where the proxy,
//! the event store and the state live.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{Limits, PageBurn, Step, Target};

/// A plan could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bad TOML, an unknown key or a bad value (the message names the line and key).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A value out of range.
    #[error("{}: {field}: {detail}", path.display())]
    Invalid {
        /// The file (or `flags`).
        path: PathBuf,
        /// The key.
        field: String,
        /// What is wrong.
        detail: String,
    },
}

/// Durations, minimums and interval a step may set (missing: `[defaults]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    /// The canary's percentage (weight steps only; 1–100).
    pub weight: Option<u8>,
    /// The share of requests mirrored to the canary (the shadow step only; 1–100).
    pub percent: Option<u8>,
    /// Least time in the step.
    #[serde(default, with = "humantime_serde_opt")]
    pub min_duration: Option<Duration>,
    /// Least requests on each side before a pass counts.
    pub min_requests: Option<u64>,
    /// Time between analyses.
    #[serde(default, with = "humantime_serde_opt")]
    pub interval: Option<Duration>,
}

/// The judge's tolerances for the controller's two metrics.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    /// Significance level.
    pub alpha: f64,
    /// Error ratio: relative tolerance.
    pub relative_tolerance: f64,
    /// Error ratio: absolute tolerance.
    pub absolute_tolerance: f64,
    /// Latency: Hodges–Lehmann shift tolerance (fraction of the baseline median).
    pub shift_tolerance: f64,
    /// Latency: p99 ratio tolerance.
    pub p99_tolerance: f64,
    /// Looks between two analyses that may only roll back: the judge runs this
    /// many extra times per interval, evenly spaced, at `alpha / (early_looks + 1)`,
    /// and only a failing verdict (or a page-rate burn) acts on one. 0 turns
    /// them off.
    pub early_looks: u32,
}

impl Default for Analysis {
    fn default() -> Self {
        Analysis {
            alpha: 0.01,
            relative_tolerance: 0.2,
            absolute_tolerance: 0.001,
            shift_tolerance: 0.05,
            p99_tolerance: 1.2,
            early_looks: 3,
        }
    }
}

/// The proxy's admin API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyFile {
    /// e.g. `http://127.0.0.1:9090`.
    pub admin_url: Option<String>,
    /// The bearer token (else `CAPSTAN_PROXY_ADMIN_TOKEN`).
    pub token: Option<String>,
    /// Bound on each admin request (default 5 s).
    #[serde(default, with = "humantime_serde_opt")]
    pub timeout: Option<Duration>,
}

/// `rollout.toml` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanFile {
    /// The service (events' `service`).
    pub service: Option<String>,
    /// The release serving everyone now (default: the first other release in the
    /// proxy's table).
    pub baseline: Option<String>,
    /// The release rolled out.
    pub canary: Option<String>,
    /// Holds allowed in a row in a step (default 5).
    pub hold_limit: Option<u32>,
    /// A shell command run after a rollback (`sh -c`), e.g. to stop the canary.
    pub rollback_hook: Option<String>,
    /// The event store (and deploy log) file (default `capstan-events.db`).
    pub events: Option<PathBuf>,
    /// The state file (default `capstan-rollout.db`).
    pub state: Option<PathBuf>,
    /// `capstan.toml` with `[slo.policy]`: the budget gate before the rollout.
    pub slo_config: Option<PathBuf>,
    /// The application's database URL: the schema and fleet gates read its
    /// migration history and fleet registry.
    pub database: Option<String>,
    /// The application's name in the fleet registry (default: the service).
    pub app: Option<String>,
    /// The canary's migration directory: the schema gate refuses while an
    /// expand migration in it is not applied.
    pub canary_migrations: Option<PathBuf>,
    /// The proxy.
    #[serde(default)]
    pub proxy: ProxyFile,
    /// Step settings used where a step says nothing.
    #[serde(default)]
    pub defaults: StepFile,
    /// The shadow step, first: `percent` % of requests mirrored to the canary,
    /// whose answers no user sees.
    pub shadow: Option<StepFile>,
    /// The internal step, before the weight steps.
    pub internal: Option<StepFile>,
    /// The weight steps (default 1, 5, 25, 50, 100).
    #[serde(default)]
    pub step: Vec<StepFile>,
    /// The judge's tolerances.
    #[serde(default)]
    pub analysis: Analysis,
    /// Abort when the canary burns budget at page rate.
    pub page_burn: Option<PageBurn>,
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The service.
    pub service: String,
    /// The baseline, when known before asking the proxy.
    pub baseline: Option<String>,
    /// The canary.
    pub canary: String,
    /// The steps; the last is weight 100.
    pub steps: Vec<Step>,
    /// Hold limit and page burn.
    pub limits: Limits,
    /// Rollback hook.
    pub rollback_hook: Option<String>,
    /// Event store file.
    pub events: PathBuf,
    /// State file.
    pub state: PathBuf,
    /// SLO gate configuration.
    pub slo_config: Option<PathBuf>,
    /// The application's database (schema and fleet gates).
    pub database: Option<String>,
    /// The application's name in the fleet registry.
    pub app: String,
    /// The canary's migration directory (the schema gate's pending expands).
    pub canary_migrations: Option<PathBuf>,
    /// Proxy admin URL.
    pub admin_url: String,
    /// Proxy admin token.
    pub token: String,
    /// Proxy request bound.
    pub timeout: Duration,
    /// Judge tolerances.
    pub analysis: Analysis,
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            humantime::parse_duration(&s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .transpose()
    }
}

impl PlanFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<PlanFile, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.into(),
            source,
        })?;
        PlanFile::parse(path, &text)
    }

    /// Parses `text` (errors name `path`, the line and the key).
    pub fn parse(path: &Path, text: &str) -> Result<PlanFile, PlanError> {
        toml::from_str(text).map_err(|e: toml::de::Error| PlanError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Checks ranges and fills defaults. `path` names the source in errors.
    pub fn validate(self, path: &Path) -> Result<Plan, PlanError> {
        let bad = |field: &str, detail: &str| PlanError::Invalid {
            path: path.into(),
            field: field.into(),
            detail: detail.into(),
        };
        let service = self
            .service
            .ok_or_else(|| bad("service", "required (--service)"))?;
        let canary = self
            .canary
            .ok_or_else(|| bad("canary", "required (--release)"))?;
        let admin_url = self
            .proxy
            .admin_url
            .ok_or_else(|| bad("proxy.admin_url", "required (--proxy-admin)"))?;
        url::Url::parse(&admin_url)
            .map_err(|e| bad("proxy.admin_url", &format!("{admin_url:?}: {e}")))?;
        let token = self
            .proxy
            .token
            .or_else(|| std::env::var("CAPSTAN_PROXY_ADMIN_TOKEN").ok())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                bad(
                    "proxy.token",
                    "required (--proxy-token or CAPSTAN_PROXY_ADMIN_TOKEN)",
                )
            })?;
        let d = &self.defaults;
        let make = |field: String, s: &StepFile, target: Target| -> Result<Step, PlanError> {
            let min_duration = s
                .min_duration
                .or(d.min_duration)
                .unwrap_or(Duration::from_secs(60));
            let interval = s.interval.or(d.interval).unwrap_or(Duration::from_secs(10));
            if interval < Duration::from_millis(100) {
                return Err(bad(&format!("{field}.interval"), "must be at least 100ms"));
            }
            Ok(Step {
                target,
                min_duration_ms: min_duration.as_millis() as u64,
                min_requests: s.min_requests.or(d.min_requests).unwrap_or(200),
                interval_ms: interval.as_millis() as u64,
            })
        };
        if d.weight.is_some() {
            return Err(bad("defaults.weight", "a weight belongs to a [[step]]"));
        }
        if d.percent.is_some() {
            return Err(bad("defaults.percent", "a percent belongs to [shadow]"));
        }
        let mut steps = Vec::new();
        if let Some(shadow) = &self.shadow {
            if shadow.weight.is_some() {
                return Err(bad(
                    "shadow.weight",
                    "the shadow step has no weight (no user sees the canary); set percent",
                ));
            }
            let percent = shadow
                .percent
                .ok_or_else(|| bad("shadow.percent", "required: the share of requests mirrored"))?;
            if percent == 0 || percent > 100 {
                return Err(bad("shadow.percent", "must be 1–100"));
            }
            steps.push(make("shadow".into(), shadow, Target::Shadow { percent })?);
        }
        if let Some(internal) = &self.internal {
            if internal.weight.is_some() {
                return Err(bad("internal.weight", "the internal step has no weight"));
            }
            if internal.percent.is_some() {
                return Err(bad("internal.percent", "a percent belongs to [shadow]"));
            }
            steps.push(make("internal".into(), internal, Target::Internal)?);
        }
        let files = if self.step.is_empty() {
            [1, 5, 25, 50, 100]
                .into_iter()
                .map(|w| StepFile {
                    weight: Some(w),
                    ..StepFile::default()
                })
                .collect()
        } else {
            self.step
        };
        let mut last = 0u8;
        for (i, s) in files.iter().enumerate() {
            let field = format!("step[{i}]");
            if s.percent.is_some() {
                return Err(bad(
                    &format!("{field}.percent"),
                    "a percent belongs to [shadow]; a step has a weight",
                ));
            }
            let w = s
                .weight
                .ok_or_else(|| bad(&format!("{field}.weight"), "required"))?;
            if w == 0 || w > 100 || w <= last {
                return Err(bad(
                    &format!("{field}.weight"),
                    "must be 1–100 and grow from step to step",
                ));
            }
            last = w;
            steps.push(make(field, s, Target::Weight { percent: w })?);
        }
        if last != 100 {
            return Err(bad("step", "the last step must be weight 100"));
        }
        if steps.len() < 2 {
            return Err(bad(
                "step",
                "at least one analysed step must come before weight 100",
            ));
        }
        if let Some(b) = &self.page_burn {
            if !(b.objective > 0.0 && b.objective < 1.0) {
                return Err(bad("page_burn.objective", "must be between 0 and 1"));
            }
            if !(b.rate > 0.0 && b.rate.is_finite()) {
                return Err(bad("page_burn.rate", "must be a number > 0"));
            }
        }
        let a = &self.analysis;
        if !(a.alpha > 0.0 && a.alpha < 0.5) {
            return Err(bad("analysis.alpha", "must be between 0 and 0.5"));
        }
        if a.early_looks > 9 {
            return Err(bad("analysis.early_looks", "must be at most 9"));
        }
        if self.baseline.as_deref() == Some(canary.as_str()) {
            return Err(bad("baseline", "must differ from the canary"));
        }
        let app = self.app.clone().unwrap_or_else(|| service.clone());
        Ok(Plan {
            database: self.database.filter(|d| !d.trim().is_empty()),
            app,
            canary_migrations: self.canary_migrations,
            service,
            baseline: self.baseline,
            canary,
            steps,
            limits: Limits {
                hold_limit: self.hold_limit.unwrap_or(5),
                page_burn: self.page_burn,
            },
            rollback_hook: self.rollback_hook.filter(|h| !h.trim().is_empty()),
            events: self
                .events
                .unwrap_or_else(|| PathBuf::from("capstan-events.db")),
            state: self
                .state
                .unwrap_or_else(|| PathBuf::from("capstan-rollout.db")),
            slo_config: self.slo_config,
            admin_url: admin_url.trim_end_matches('/').to_string(),
            token,
            timeout: self.proxy.timeout.unwrap_or(Duration::from_secs(5)),
            analysis: self.analysis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<Plan, PlanError> {
        let p = Path::new("rollout.toml");
        PlanFile::parse(p, text)?.validate(p)
    }

    const BASE: &str = "service = \"chirpy\"\ncanary = \"2.0.0\"\n[proxy]\nadmin_url = \"http://127.0.0.1:9\"\ntoken = \"t\"\n";

    #[test]
    fn defaults_are_1_5_25_50_100() {
        let p = plan(BASE).unwrap();
        let w: Vec<u8> = p.steps.iter().map(|s| s.target.weight()).collect();
        assert_eq!(w, vec![1, 5, 25, 50, 100]);
        assert_eq!(p.limits.hold_limit, 5);
    }

    #[test]
    fn internal_step_and_overrides() {
        let p = plan(&format!(
            "{BASE}[defaults]\ninterval = \"1s\"\nmin_requests = 50\n[internal]\nmin_duration = \"2s\"\n[[step]]\nweight = 10\n[[step]]\nweight = 100\n"
        ))
        .unwrap();
        assert_eq!(p.steps[0].target, Target::Internal);
        assert_eq!(p.steps[0].min_duration_ms, 2000);
        assert_eq!(p.steps[1].interval_ms, 1000);
        assert_eq!(p.steps[1].min_requests, 50);
    }

    #[test]
    fn a_shadow_step_comes_first_and_takes_a_percent() {
        let p = plan(&format!(
            "{BASE}[shadow]\npercent = 10\nmin_requests = 300\n[internal]\n[[step]]\nweight = 50\n[[step]]\nweight = 100\n"
        ))
        .unwrap();
        assert_eq!(p.steps[0].target, Target::Shadow { percent: 10 });
        assert_eq!(p.steps[0].target.weight(), 0);
        assert_eq!(p.steps[0].target.label(), "shadow 10 %");
        assert_eq!(p.steps[0].min_requests, 300);
        assert_eq!(p.steps[1].target, Target::Internal);
        assert_eq!(p.steps.len(), 4);
        for (body, field) in [
            ("[shadow]\nmin_requests = 5\n", "shadow.percent"),
            ("[shadow]\npercent = 0\n", "shadow.percent"),
            ("[shadow]\npercent = 101\n", "shadow.percent"),
            ("[shadow]\npercent = 5\nweight = 5\n", "shadow.weight"),
            ("[[step]]\nweight = 100\npercent = 5\n", "step[0].percent"),
            ("[defaults]\npercent = 5\n", "defaults.percent"),
        ] {
            let e = plan(&format!("{BASE}{body}")).unwrap_err().to_string();
            assert!(e.contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = plan(&format!("{BASE}[defaults]\nintervall = \"1s\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rollout.toml") && e.contains("line 7") && e.contains("intervall"),
            "{e}"
        );
        let e = plan(&format!(
            "{BASE}[[step]]\nweight = 50\n[[step]]\nweight = 25\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("step[1].weight"), "{e}");
        let e = plan(&format!("{BASE}[[step]]\nweight = 50\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("weight 100"), "{e}");
        let e = plan(&format!("{BASE}[defaults]\ninterval = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 7") && e.contains("soon"), "{e}");
    }
}

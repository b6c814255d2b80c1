//! A judge's report as the rollouts page shows it: the verdict, and each
//! metric's outcome with its evidence (sample sizes, statistics, p-values,
//! effect sizes) as table cells. Every number carries its raw value in
//! `data-value`, as `capstan rollout status --json` prints it.

use capstan_rollout::controller::StepVerdict;
use capstan_rollout::judge::{Evidence, MetricResult};

use super::{raw, time};

/// One figure of a metric's evidence.
pub struct Stat {
    /// The field's name in the report's JSON (`p_higher`, `canary.total`).
    pub field: &'static str,
    /// What it is, in words.
    pub label: &'static str,
    /// The value, formatted.
    pub text: String,
    /// The value as the JSON has it (`null` when not finite).
    pub raw: String,
}

fn stat(field: &'static str, label: &'static str, x: f64, digits: usize) -> Stat {
    Stat {
        field,
        label,
        text: if x.is_finite() {
            format!("{x:.digits$}")
        } else {
            "n/a".into()
        },
        raw: raw(x),
    }
}

fn count(field: &'static str, label: &'static str, n: u64) -> Stat {
    Stat {
        field,
        label,
        text: n.to_string(),
        raw: n.to_string(),
    }
}

/// A p-value: three significant digits, scientific below 0.001.
fn p(field: &'static str, label: &'static str, x: f64) -> Stat {
    let mut s = stat(field, label, x, 3);
    if x.is_finite() && x != 0.0 && x.abs() < 1e-3 {
        s.text = format!("{x:.2e}");
    }
    s
}

/// One metric of a verdict.
pub struct MetricView {
    /// Its name.
    pub name: String,
    /// `error_ratio`, `latency`, `custom`.
    pub kind: String,
    /// Whether a failure fails the verdict.
    pub critical: bool,
    /// `pass`, `high`, `low`, `no_data`.
    pub outcome: String,
    /// Why, in one sentence.
    pub reason: String,
    /// The test behind it.
    pub test: &'static str,
    /// The canary's sample.
    pub canary: Vec<Stat>,
    /// The baseline's sample.
    pub baseline: Vec<Stat>,
    /// Test statistics and p-values.
    pub stats: Vec<Stat>,
    /// Effect sizes.
    pub effects: Vec<Stat>,
}

/// A verdict with its metrics.
pub struct VerdictView {
    /// The step judged, 1-based.
    pub step: usize,
    /// When it was judged.
    pub at: String,
    /// The interval's start.
    pub from: String,
    /// `pass`, `marginal`, `fail`, `inconclusive`.
    pub verdict: String,
    /// The score, formatted.
    pub score: String,
    /// The score as the JSON has it.
    pub score_raw: String,
    /// Why, in one sentence.
    pub reason: String,
    /// Each metric.
    pub metrics: Vec<MetricView>,
}

/// A verdict or outcome as its JSON word.
fn word<T: serde::Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn metric_view(m: &MetricResult) -> MetricView {
    let mut v = MetricView {
        name: m.name.clone(),
        kind: m.kind.clone(),
        critical: m.critical,
        outcome: word(m.outcome),
        reason: m.reason.clone(),
        test: "none (no data)",
        canary: vec![],
        baseline: vec![],
        stats: vec![],
        effects: vec![],
    };
    match &m.evidence {
        Evidence::None => {}
        Evidence::FisherExact {
            canary,
            baseline,
            p_higher,
            p_lower,
            difference,
            relative,
        } => {
            v.test = "Fisher's exact";
            v.canary = vec![
                count("canary.total", "requests", canary.total),
                count("canary.errors", "errors", canary.errors),
                stat("canary.ratio", "ratio", canary.ratio, 5),
            ];
            v.baseline = vec![
                count("baseline.total", "requests", baseline.total),
                count("baseline.errors", "errors", baseline.errors),
                stat("baseline.ratio", "ratio", baseline.ratio, 5),
            ];
            v.stats.push(p("p_higher", "p (higher)", *p_higher));
            v.stats.push(p("p_lower", "p (lower)", *p_lower));
            v.effects
                .push(stat("difference", "difference", *difference, 5));
            v.effects.push(stat(
                "relative",
                "relative",
                relative.unwrap_or(f64::NAN),
                3,
            ));
        }
        Evidence::MannWhitney {
            canary,
            baseline,
            mann_whitney,
            hodges_lehmann,
            relative_shift,
            tail,
        } => {
            v.test = if tail.is_some() {
                "Mann–Whitney U, tail (Fisher)"
            } else {
                "Mann–Whitney U"
            };
            v.canary = vec![
                count("canary.n", "n", canary.n),
                stat("canary.median", "median", canary.median, 3),
                stat("canary.p99", "p99", canary.p99, 3),
            ];
            v.baseline = vec![
                count("baseline.n", "n", baseline.n),
                stat("baseline.median", "median", baseline.median, 3),
                stat("baseline.p99", "p99", baseline.p99, 3),
            ];
            let mw = mann_whitney;
            v.stats.push(stat("mann_whitney.z", "z", mw.z, 3));
            v.stats
                .push(p("mann_whitney.p_greater", "p (higher)", mw.p_greater));
            v.stats
                .push(p("mann_whitney.p_less", "p (lower)", mw.p_less));
            if let Some(t) = tail {
                v.stats.push(p("tail.p_value", "tail p", t.p_value));
                v.stats
                    .push(stat("tail.threshold", "pooled p99", t.threshold, 3));
            }
            let hl = hodges_lehmann;
            v.effects
                .push(stat("hodges_lehmann.shift", "shift", hl.shift, 4));
            v.effects
                .push(stat("hodges_lehmann.ci_low", "CI low", hl.ci_low, 4));
            v.effects
                .push(stat("hodges_lehmann.ci_high", "CI high", hl.ci_high, 4));
            v.effects.push(stat(
                "relative_shift",
                "relative shift",
                relative_shift.unwrap_or(f64::NAN),
                4,
            ));
            v.effects.push(stat(
                "mann_whitney.common_language_effect",
                "P(canary > baseline)",
                mw.common_language_effect,
                3,
            ));
            if let Some(t) = tail {
                v.effects
                    .push(stat("tail.p99_ratio", "p99 ratio", t.p99_ratio, 3));
            }
        }
    }
    v
}

/// The view of a kept verdict.
pub fn verdict_view(sv: &StepVerdict) -> VerdictView {
    let r = &sv.report;
    VerdictView {
        step: sv.step + 1,
        at: time(r.interval.at_ms),
        from: time(r.interval.from_ms),
        verdict: word(r.verdict),
        score: format!("{:.0}", r.score),
        score_raw: raw(r.score),
        reason: r.reason.clone(),
        metrics: r.metrics.iter().map(metric_view).collect(),
    }
}

//! `thresholdMetric` SLOs: objectives judged on per-minute data points.

use crate::math::{self, DeployMark, Method};
use crate::source::SourceError;
use crate::spec::{self, Slo};

use super::settings::Settings;
use super::status::{recent_minutes, window_label, ObjectiveStatus};

/// Evaluates each objective of a `thresholdMetric` SLO: the metric's
/// per-minute data points, good or bad against the objective's `op` and
/// `value`, judged in time slices (see [`crate::threshold`]).
pub(super) fn evaluate_threshold(
    settings: &Settings,
    slo: &Slo,
    metric: &spec::Query,
    period: &math::Period,
    deploys: &[DeployMark],
) -> Result<Vec<ObjectiveStatus>, SourceError> {
    let spec::Query::Capstan { expr, service } = metric else {
        return Err(SourceError::Unsupported(format!(
            "SLO `{}`: a thresholdMetric is evaluated from the capstan event store only",
            slo.name
        )));
    };
    let parsed = crate::threshold::parse(expr)
        .map_err(|e| SourceError::Unsupported(format!("SLO `{}`: {e}", slo.name)))?;
    let now_ms = period.now_ms;
    let from = period
        .start_ms
        .min(now_ms - recent_minutes() * math::MINUTE_MS);
    let mut out = Vec::new();
    for o in &slo.objectives {
        let (Some(op), Some(value)) = (o.op, o.value) else {
            return Err(SourceError::Unsupported(format!(
                "SLO `{}`: a thresholdMetric objective needs `op` and `value`",
                slo.name
            )));
        };
        crate::threshold::check_objective(&parsed, op, value)
            .map_err(|e| SourceError::Unsupported(format!("SLO `{}`: {e}", slo.name)))?;
        let points =
            crate::threshold::series(&settings.store, service, &parsed, op, value, from, now_ms)?;
        let evaluation = math::evaluate(
            &points,
            Method::of(slo.budgeting, o),
            o.target,
            &slo.window,
            now_ms,
            deploys,
            false,
        );
        out.push(ObjectiveStatus {
            slo: slo.name.clone(),
            service: slo.service.clone(),
            objective: o.display_name.clone(),
            source: slo.indicator.source_kind(),
            window: window_label(&slo.window),
            budgeting: slo.budgeting,
            availability: false,
            evaluation,
        });
    }
    Ok(out)
}

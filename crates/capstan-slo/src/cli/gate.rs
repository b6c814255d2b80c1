//! The error budget gate: `slo gate` and the contract gate `migrate up` asks.

use std::path::Path;

use crate::deploys::DeployLog;
use crate::math::rfc3339;
use crate::policy::{self, Policy, Verdict};
use crate::source::SourceError;
use crate::spec::{Slo, SpecError};

use super::settings::Settings;
use super::status::{evaluate_all, load_slos, ObjectiveStatus};

/// The gate's decision for the SLOs `settings` names, at `now_ms`.
pub async fn gate(
    settings: &Settings,
    policy: &Policy,
    service: Option<&str>,
    now_ms: i64,
) -> Result<(Verdict, Vec<ObjectiveStatus>), StatusError> {
    let catalog = load_slos(&settings.slo_paths).map_err(StatusError::Spec)?;
    let slos: Vec<Slo> = catalog
        .slos
        .into_iter()
        .filter(|s| policy.covers(&s.service))
        .collect();
    let statuses = evaluate_all(settings, &slos, service, now_ms)
        .await
        .map_err(StatusError::Source)?;
    let reasons: Vec<String> = statuses
        .iter()
        .filter_map(|s| policy::freeze_reason(policy, &s.slo, &s.evaluation))
        .collect();
    let over = match DeployLog::open_existing(&settings.store).map_err(|e| {
        StatusError::Source(SourceError::Store {
            path: settings.store.clone(),
            message: e.to_string(),
        })
    })? {
        Some(log) => log
            .override_since(service, now_ms - policy.override_for_ms)
            .map_err(|e| {
                StatusError::Source(SourceError::Store {
                    path: settings.store.clone(),
                    message: e.to_string(),
                })
            })?,
        None => None,
    };
    Ok((policy::decide(reasons, over), statuses))
}

/// Why `slo status` or the gate could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The SLO files are invalid.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<SpecError>),
    /// A source failed.
    #[error(transparent)]
    Source(SourceError),
}

/// The gate of `capstan migrate up` before a contract migration: when
/// `[slo.policy]` is configured in `config`, `Ok(Some(reason))` freezes.
/// Runs on its own thread and runtime, so it can be called from async code.
pub fn contract_gate(config: Option<&Path>) -> Result<Option<String>, String> {
    let Some(config) = config else {
        return Ok(None);
    };
    let settings = Settings::load(config)?;
    let Some(policy) = settings.policy.clone() else {
        return Ok(None);
    };
    let now = chrono::Utc::now().timestamp_millis();
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(gate(&settings, &policy, None, now))
                .map_err(|e| format!("error budget gate: {e}"))
        })
        .join()
        .map_err(|_| "error budget gate panicked".to_string())?
    })?;
    match result.0 {
        Verdict::Ship => Ok(None),
        Verdict::Overridden { reasons, by } => {
            eprintln!(
                "warning: error budget gate overridden at {} ({}): {}",
                rfc3339(by.time_ms),
                by.detail,
                reasons.join("; ")
            );
            Ok(None)
        }
        Verdict::Frozen { reasons } => Ok(Some(format!(
            "deploys are frozen by the error budget policy: {}; override with `capstan slo gate --override \"reason\"`",
            reasons.join("; ")
        ))),
    }
}

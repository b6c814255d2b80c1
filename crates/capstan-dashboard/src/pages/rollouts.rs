//! The rollouts page and its actions.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use capstan_rollout::controller::store::StateStore;
use capstan_rollout::controller::{Command, Phase, State as RolloutState};
use capstan_slo::DeployKind;
use serde::Deserialize;

use super::verdict::{verdict_view, VerdictView};
use super::{deploy_row, message, page, time, DeployRow};
use crate::AppState;

/// A rollout on its page.
pub struct RolloutView {
    /// Service.
    pub service: String,
    /// Baseline → canary.
    pub releases: String,
    /// The step, 1-based.
    pub step: usize,
    /// The step's target, from the last step entry (`weight 25`).
    pub target: String,
    /// Who gets what share of the public now.
    pub weights: String,
    /// When the step's data started counting.
    pub step_started: String,
    /// Phase name.
    pub phase: &'static str,
    /// Why it is paused, stopped, rolled back.
    pub reason: String,
    /// Holds in a row.
    pub holds: u32,
    /// Started.
    pub started: String,
    /// Last verdict.
    pub last_verdict: String,
    /// Whether actions apply.
    pub active: bool,
    /// The last verdict with every metric's evidence.
    pub verdict: Option<VerdictView>,
    /// Decisions, newest first.
    pub history: Vec<HistoryRow>,
}

/// A decision, with the verdict it was made on when the state kept it.
pub struct HistoryRow {
    /// The deploy log's entry.
    pub row: DeployRow,
    /// The verdict judged at the same moment.
    pub verdict: Option<VerdictView>,
}

/// The public's split, from the step's target and the phase.
fn weights(r: &RolloutState, target: &str) -> String {
    let split = |canary: u8| format!("{} {} %, {} {canary} %", r.baseline, 100 - canary, r.canary);
    match &r.phase {
        Phase::Promoted => split(100),
        Phase::RolledBack { .. } => split(0),
        _ if target == "internal" => format!("{}; the internal cohort: {}", split(0), r.canary),
        _ => match target
            .strip_prefix("weight ")
            .and_then(|w| w.parse::<u8>().ok())
        {
            Some(w) if w <= 100 => format!("{}; the internal cohort: {}", split(w), r.canary),
            _ => "unknown (no step entry in the deploy log)".into(),
        },
    }
}

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    nav: &'static str,
    title: String,
    at: String,
    generation: u64,
    error: Option<String>,
    rollouts: Vec<RolloutView>,
    actions: bool,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Notice {
    done: Option<String>,
}

pub(crate) async fn rollouts(State(state): State<AppState>, Query(n): Query<Notice>) -> Response {
    let snap = state.snapshot();
    let (error, list) = match &snap.rollouts {
        Ok(l) => (None, l.clone()),
        Err(e) => (Some(e.clone()), vec![]),
    };
    let rollouts = list
        .iter()
        .map(|r| {
            let history: Vec<DeployRow> = match &snap.deploys {
                Ok(d) => d
                    .iter()
                    .filter(|d| {
                        d.service == r.service
                            && d.time_ms >= r.started_ms
                            && matches!(d.kind, DeployKind::Rollout | DeployKind::Rollback)
                    })
                    .rev()
                    .map(deploy_row)
                    .collect(),
                Err(_) => vec![],
            };
            let target = history
                .iter()
                .find(|h| h.detail.starts_with("step"))
                .and_then(|h| {
                    let s = &h.subject;
                    s.find('(')
                        .map(|i| s[i + 1..].trim_end_matches(')').to_string())
                })
                .unwrap_or_default();
            // A verdict's evidence goes with the first line it wrote (the
            // oldest of the lines at its time; the list is newest first).
            let mut shown = std::collections::BTreeSet::new();
            let mut history: Vec<HistoryRow> = history
                .into_iter()
                .rev()
                .map(|row| HistoryRow {
                    verdict: r
                        .decisive_verdicts
                        .iter()
                        .rev()
                        .find(|v| v.report.interval.at_ms == row.time_ms)
                        .filter(|_| shown.insert(row.time_ms))
                        .map(verdict_view),
                    row,
                })
                .collect();
            history.reverse();
            RolloutView {
                service: r.service.clone(),
                releases: format!("{} → {}", r.baseline, r.canary),
                step: r.step + 1,
                weights: weights(r, &target),
                step_started: time(r.step_started_ms),
                verdict: r.last_judgement.as_ref().map(verdict_view),
                target,
                phase: r.phase.name(),
                reason: match &r.phase {
                    Phase::Paused { reason }
                    | Phase::NeedsHuman { reason }
                    | Phase::RolledBack { reason } => reason.clone(),
                    _ => String::new(),
                },
                holds: r.holds,
                started: time(r.started_ms),
                last_verdict: r
                    .last_verdict_ms
                    .map(time)
                    .unwrap_or_else(|| "none yet".into()),
                active: !r.phase.is_terminal(),
                history,
            }
        })
        .collect();
    page(RolloutsPage {
        nav: "rollouts",
        title: "Rollouts".into(),
        at: time(snap.at_ms),
        generation: snap.generation,
        error,
        rollouts,
        actions: state.inner.auth.enabled(),
        notice: n.done,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    token: Option<String>,
}

pub(crate) async fn rollout_action(
    State(state): State<AppState>,
    Path((service, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let Some(command) = Command::parse(&action) else {
        return message(
            &state,
            StatusCode::NOT_FOUND,
            "Unknown action",
            format!("`{action}` is not an action; use pause, resume, promote or abort."),
        );
    };
    if !state.inner.auth.enabled() {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "Actions are disabled",
            "This dashboard is read-only: start it with --token-file (or CAPSTAN_DASHBOARD_TOKEN) or --trusted-header to allow rollout actions.".into(),
        );
    }
    let Some(actor) = state.inner.auth.check(&headers, f.token.as_deref()) else {
        return message(
            &state,
            StatusCode::FORBIDDEN,
            "Refused",
            format!(
                "{} of {service} refused: the token is missing or wrong.",
                command.as_str()
            ),
        );
    };
    let path = state.sources().rollout_state.clone();
    let svc = service.clone();
    let res = tokio::task::spawn_blocking(move || -> Result<bool, String> {
        let store = StateStore::open(&path).map_err(|e| e.to_string())?;
        match store.load(&svc).map_err(|e| e.to_string())? {
            Some(s) if !s.phase.is_terminal() => {}
            _ => return Ok(false),
        }
        store
            .push_command(&svc, command, chrono::Utc::now().timestamp_millis())
            .map_err(|e| e.to_string())?;
        Ok(true)
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match res {
        Ok(true) => {
            tracing::info!(
                "{} of {service} queued by {}",
                command.as_str(),
                actor.label()
            );
            state.inner.refresh_now.notify_one();
            Redirect::to(&format!(
                "/rollouts?done={}+queued+for+{}",
                command.as_str(),
                percent(&service)
            ))
            .into_response()
        }
        Ok(false) => message(
            &state,
            StatusCode::CONFLICT,
            "No rollout",
            format!("{service} has no unfinished rollout."),
        ),
        Err(e) => message(&state, StatusCode::INTERNAL_SERVER_ERROR, "Failed", e),
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

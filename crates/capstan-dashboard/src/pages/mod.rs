//! The pages: handlers turn the snapshot (or an event store query) into
//! view structs, and askama templates (`templates/`) into HTML.

//!
//! One module per page, each with its handler and its view model; what
//! several pages show (an objective's summary, a deploy row, the message
//! page) lives here.

mod deps;
mod events;
mod overview;
mod rollouts;
mod service;
mod verdict;

pub(crate) use events::{event_row, events};
pub(crate) use overview::overview;
pub(crate) use rollouts::{rollout_action, rollouts};
pub(crate) use service::service;

use askama::Template;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use capstan_slo::math::{rfc3339, Severity};
use capstan_slo::{Deploy, ObjectiveStatus};

use crate::snapshot::Snapshot;
use crate::AppState;

fn page<T: Template>(t: T) -> Response {
    match t.render() {
        Ok(s) => Html(s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("template: {e}")).into_response(),
    }
}

/// `99.912 %`; `∞ %` for an infinite share.
pub fn pct(x: f64) -> String {
    if x.is_infinite() {
        "∞ %".into()
    } else {
        format!("{:.3} %", x * 100.0)
    }
}

/// The raw number for `data-value` attributes (what `--json` prints).
fn raw(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

fn time(ms: i64) -> String {
    rfc3339(ms)
}

/// One objective, as the overview and the service page show it.
pub struct ObjView {
    /// `slo` or `slo / objective`.
    pub name: String,
    /// The SLO's name.
    pub slo: String,
    /// Index among the service page's objectives (for element ids).
    pub idx: usize,
    /// The window label.
    pub window: String,
    /// Objective as text.
    pub target: String,
    /// SLI as text.
    pub sli: String,
    /// Raw SLI.
    pub sli_raw: String,
    /// Budget remaining as text.
    pub remaining: String,
    /// Raw budget remaining.
    pub remaining_raw: String,
    /// Remaining share for sorting.
    pub remaining_f: f64,
    /// Width of the budget bar, percent.
    pub bar: String,
    /// Budget consumed as text.
    pub consumed: String,
    /// Minutes of downtime left, as text (empty when not an availability SLO).
    pub minutes_left: String,
    /// Raw minutes left.
    pub minutes_raw: String,
    /// Minutes in the whole budget, as text.
    pub minutes_total: String,
    /// Burn rate over 1h.
    pub burn_1h: String,
    /// Burn rate over 5m.
    pub burn_5m: String,
    /// `ok`, `ticket`, `page`.
    pub alert: &'static str,
    /// The forecast, in words.
    pub forecast: String,
    /// Bad and total counts, in words.
    pub counts: String,
    /// Source (`capstan`, `prometheus`).
    pub source: &'static str,
}

fn burn(st: &ObjectiveStatus, w: &str) -> String {
    st.evaluation
        .burn_rates
        .iter()
        .find(|b| b.window == w)
        .map(|b| format!("{:.2}×", b.rate))
        .unwrap_or_default()
}

fn obj_view(st: &ObjectiveStatus, idx: usize) -> ObjView {
    let e = &st.evaluation;
    ObjView {
        name: match &st.objective {
            Some(o) => format!("{} / {o}", st.slo),
            None => st.slo.clone(),
        },
        slo: st.slo.clone(),
        idx,
        window: st.window.clone(),
        target: pct(e.target),
        sli: e.sli.map(pct).unwrap_or_else(|| "no events".into()),
        sli_raw: e.sli.map(raw).unwrap_or_else(|| "null".into()),
        remaining: pct(e.budget.remaining),
        remaining_raw: raw(e.budget.remaining),
        remaining_f: e.budget.remaining,
        bar: format!("{:.1}", e.budget.remaining * 100.0),
        consumed: pct(e.budget.consumed),
        minutes_left: e
            .budget
            .minutes_left
            .map(|m| format!("{m:.1}"))
            .unwrap_or_default(),
        minutes_raw: e
            .budget
            .minutes_left
            .map(raw)
            .unwrap_or_else(|| "null".into()),
        minutes_total: e
            .budget
            .minutes_total
            .map(|m| format!("{m:.1}"))
            .unwrap_or_default(),
        burn_1h: burn(st, "1h"),
        burn_5m: burn(st, "5m"),
        alert: match e.alert.state {
            Severity::Ok => "ok",
            Severity::Ticket => "ticket",
            Severity::Page => "page",
        },
        forecast: match (e.forecast.exhausted, e.forecast.exhausted_at_ms) {
            (true, _) => "budget exhausted".into(),
            (false, None) => "not burning".into(),
            (false, Some(t)) => format!(
                "runs out {} at the 1h burn rate ({:.2}×)",
                time(t),
                e.forecast.burn_rate
            ),
        },
        counts: format!("{:.0} bad of {:.0}", e.counts.bad, e.counts.total),
        source: st.source,
    }
}

fn rollout_words(snap: &Snapshot, service: &str) -> String {
    match &snap.rollouts {
        Ok(rs) => rs
            .iter()
            .find(|r| r.service == service)
            .map(|r| {
                format!(
                    "{} → {}: step {}, {}",
                    r.baseline,
                    r.canary,
                    r.step + 1,
                    r.phase.name().replace('_', " ")
                )
            })
            .unwrap_or_else(|| "none".into()),
        Err(e) => format!("unreadable: {e}"),
    }
}

/// A row of a deploy table.
pub struct DeployRow {
    /// When, unix ms.
    pub time_ms: i64,
    /// When.
    pub at: String,
    /// Kind.
    pub kind: &'static str,
    /// What.
    pub subject: String,
    /// Note.
    pub detail: String,
    /// Service (`*` for all).
    pub service: String,
}

fn deploy_row(d: &Deploy) -> DeployRow {
    DeployRow {
        time_ms: d.time_ms,
        at: time(d.time_ms),
        kind: d.kind.as_str(),
        subject: d.subject.clone(),
        detail: d.detail.clone(),
        service: if d.service.is_empty() {
            "*".into()
        } else {
            d.service.clone()
        },
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    nav: &'static str,
    title: String,
    at: String,
    generation: u64,
    message: String,
}

fn message(state: &AppState, code: StatusCode, title: &str, message: String) -> Response {
    let snap = state.snapshot();
    let mut r = page(MessagePage {
        nav: "",
        title: title.into(),
        at: time(snap.at_ms),
        generation: snap.generation,
        message,
    });
    *r.status_mut() = code;
    r
}

/// `/api/status`: the snapshot's SLO status, the document `capstan slo
/// status --json` prints for the same time.
pub(crate) async fn api_status(State(state): State<AppState>) -> Response {
    let snap = state.snapshot();
    match &snap.status {
        Some(Ok(r)) => axum::Json(r).into_response(),
        Some(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"message": e}})),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"error": {"message": "no snapshot yet"}})),
        )
            .into_response(),
    }
}

pub(crate) async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../static/app.js"),
    )
        .into_response()
}

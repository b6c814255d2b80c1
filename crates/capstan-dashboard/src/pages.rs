//! The pages: handlers turn the snapshot (or an event store query) into
//! view structs, and askama templates (`templates/`) into HTML.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use capstan_events::{Calc, Event, Expr, Field, Store, BUCKET_BOUNDS_MS};
use capstan_rollout::controller::store::StateStore;
use capstan_rollout::controller::{Command, Phase};
use capstan_slo::cli::ObjectiveStatus;
use capstan_slo::deploys::{Deploy, DeployKind};
use capstan_slo::math::{conditions, rfc3339, Severity};
use capstan_slo::policy::minutes_label;
use serde::Deserialize;

use crate::snapshot::Snapshot;
use crate::svg::{self, Marker};
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

/// A service on the overview.
pub struct ServiceCard {
    /// Its name.
    pub name: String,
    /// Its objectives, least budget first.
    pub objectives: Vec<ObjView>,
    /// Releases serving it in the last 15 minutes, with events.
    pub releases: Vec<(String, u64)>,
    /// Live instances by version.
    pub instances: Vec<(String, usize)>,
    /// The rollout, in words.
    pub rollout: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
    title: String,
    at: String,
    generation: u64,
    error: Option<String>,
    services: Vec<ServiceCard>,
}

fn live_instances(snap: &Snapshot, app: &str) -> Vec<(String, usize)> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(Ok(rows)) = &snap.fleet {
        for r in rows {
            if r.instance.app == app && r.departed_at.is_none() && r.age_secs < 60.0 {
                *by.entry(r.instance.version.clone()).or_default() += 1;
            }
        }
    }
    by.into_iter().collect()
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

pub(crate) async fn overview(State(state): State<AppState>) -> Response {
    let snap = state.snapshot();
    let (error, statuses) = match &snap.status {
        None => (
            Some("the first snapshot is being taken".to_string()),
            vec![],
        ),
        Some(Err(e)) => (Some(e.clone()), vec![]),
        Some(Ok(r)) => (None, r.slos.clone()),
    };
    let mut by: BTreeMap<String, Vec<ObjView>> = BTreeMap::new();
    for (i, st) in statuses.iter().enumerate() {
        by.entry(st.service.clone())
            .or_default()
            .push(obj_view(st, i));
    }
    let mut services: Vec<ServiceCard> = by
        .into_iter()
        .map(|(name, mut objectives)| {
            objectives.sort_by(|a, b| a.remaining_f.total_cmp(&b.remaining_f));
            ServiceCard {
                releases: snap.releases.get(&name).cloned().unwrap_or_default(),
                instances: live_instances(&snap, &name),
                rollout: rollout_words(&snap, &name),
                name,
                objectives,
            }
        })
        .collect();
    services.sort_by(|a, b| {
        let m = |s: &ServiceCard| s.objectives.first().map_or(1.0, |o| o.remaining_f);
        m(a).total_cmp(&m(b)).then(a.name.cmp(&b.name))
    });
    page(OverviewPage {
        nav: "overview",
        title: "Overview".into(),
        at: time(snap.at_ms),
        generation: snap.generation,
        error,
        services,
    })
}

/// A row of the burn-rate table.
pub struct AlertRow {
    /// `page` or `ticket`.
    pub severity: &'static str,
    /// `1h`.
    pub long: String,
    /// `5m`.
    pub short: String,
    /// The threshold.
    pub factor: String,
    /// Burn over the long window.
    pub long_burn: String,
    /// Burn over the short window.
    pub short_burn: String,
    /// Whether both exceed the factor.
    pub firing: bool,
}

/// A row of the attribution table.
pub struct AttrRow {
    /// When.
    pub at: String,
    /// The deploy.
    pub label: String,
    /// Bad events in the hour after.
    pub bad: String,
    /// Share of the budget.
    pub share: String,
    /// Raw share.
    pub share_raw: String,
    /// Minutes of downtime.
    pub minutes: String,
}

/// An objective on the service page.
pub struct ObjDetail {
    /// The summary.
    pub v: ObjView,
    /// The SLI chart (SVG), if drawn.
    pub sli_svg: Option<String>,
    /// The burn-down chart.
    pub burn_svg: Option<String>,
    /// Burn rates over every window.
    pub burns: Vec<(String, String)>,
    /// The workbook's conditions.
    pub alerts: Vec<AlertRow>,
    /// Budget spent after each deploy.
    pub attribution: Vec<AttrRow>,
}

/// A row of a deploy table.
pub struct DeployRow {
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

/// A fleet instance.
pub struct InstanceView {
    /// Id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Started.
    pub started: String,
    /// Seconds since the last heartbeat.
    pub age: String,
    /// live, departed, expired.
    pub state: &'static str,
}

/// A migration.
pub struct MigrationView {
    /// `0007_drop_name`.
    pub label: String,
    /// expand / contract.
    pub phase: String,
    /// applied, pending, …
    pub state: &'static str,
    /// When it was applied.
    pub applied_at: String,
}

/// An archive entry.
pub struct ArchiveView {
    /// Id.
    pub id: i64,
    /// The migration.
    pub migration: String,
    /// What it destroyed.
    pub object: String,
    /// Kind.
    pub kind: String,
    /// Rows.
    pub rows: String,
}

#[derive(Template)]
#[template(path = "service.html")]
struct ServicePage {
    nav: &'static str,
    title: String,
    name: String,
    at: String,
    generation: u64,
    error: Option<String>,
    objectives: Vec<ObjDetail>,
    deploys: Vec<DeployRow>,
    deploys_error: Option<String>,
    instances: Option<Result<Vec<InstanceView>, String>>,
    migrations: Option<Result<Vec<MigrationView>, String>>,
    archive: Option<Result<Vec<ArchiveView>, String>>,
    database: String,
    rollout: String,
}

fn marker_kind(k: DeployKind) -> &'static str {
    match k {
        DeployKind::Release => "release",
        DeployKind::Migration => "migration",
        DeployKind::Rollout => "rollout",
        DeployKind::Rollback => "rollback",
        _ => "override",
    }
}

pub(crate) async fn service(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let snap = state.snapshot();
    let statuses: Vec<ObjectiveStatus> = match &snap.status {
        Some(Ok(r)) => r
            .slos
            .iter()
            .filter(|s| s.service == name)
            .cloned()
            .collect(),
        _ => vec![],
    };
    let error = match &snap.status {
        None => Some("the first snapshot is being taken".to_string()),
        Some(Err(e)) => Some(e.clone()),
        Some(Ok(_)) if statuses.is_empty() => Some(format!("no SLO names the service `{name}`")),
        _ => None,
    };
    let mine: Vec<&Deploy> = match &snap.deploys {
        Ok(d) => d
            .iter()
            .filter(|d| d.service.is_empty() || d.service == name)
            .collect(),
        Err(_) => vec![],
    };
    let marks: Vec<Marker> = mine
        .iter()
        .map(|d| Marker {
            t_ms: d.time_ms,
            kind: marker_kind(d.kind),
            label: format!("{} {}", time(d.time_ms), d.label()),
        })
        .collect();
    // Objective index within the SLO: objectives of one SLO are consecutive.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let objectives = statuses
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let k = seen.entry(st.slo.clone()).or_insert(0);
            let oi = *k;
            *k += 1;
            let e = &st.evaluation;
            let chart = snap.charts.get(&(st.slo.clone(), oi));
            let rate = |m: i64| {
                e.burn_rates
                    .iter()
                    .find(|b| b.minutes == m)
                    .map_or(0.0, |b| b.rate)
            };
            ObjDetail {
                v: obj_view(st, i),
                sli_svg: chart.map(|c| svg::sli_chart(&format!("sli{i}"), c, e.target, &marks)),
                burn_svg: chart.map(|c| svg::burn_down(&format!("bd{i}"), c, &marks)),
                burns: e
                    .burn_rates
                    .iter()
                    .map(|b| (b.window.to_string(), format!("{:.2}×", b.rate)))
                    .collect(),
                alerts: conditions(e.period.minutes())
                    .iter()
                    .map(|c| AlertRow {
                        severity: if c.severity == Severity::Page {
                            "page"
                        } else {
                            "ticket"
                        },
                        long: minutes_label(c.long_minutes),
                        short: minutes_label(c.short_minutes),
                        factor: format!("{:.2}×", c.factor),
                        long_burn: format!("{:.2}×", rate(c.long_minutes)),
                        short_burn: format!("{:.2}×", rate(c.short_minutes)),
                        firing: e.alert.firing.iter().any(|f| {
                            f.long_minutes == c.long_minutes && f.short_minutes == c.short_minutes
                        }),
                    })
                    .collect(),
                attribution: e
                    .deploys
                    .iter()
                    .map(|a| AttrRow {
                        at: time(a.deploy.time_ms),
                        label: a.deploy.label.clone(),
                        bad: format!("{:.0}", a.bad),
                        share: pct(a.budget_share),
                        share_raw: raw(a.budget_share),
                        minutes: a.minutes.map(|m| format!("{m:.1}")).unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    let instances = snap.fleet.as_ref().map(|f| {
        f.as_ref()
            .map(|rows| {
                rows.iter()
                    .filter(|r| r.instance.app == name)
                    .map(|r| InstanceView {
                        id: r.instance.instance_id.clone(),
                        version: r.instance.version.clone(),
                        started: r.started_at.clone(),
                        age: format!("{:.0} s", r.age_secs),
                        state: if r.departed_at.is_some() {
                            "departed"
                        } else if r.age_secs < 60.0 {
                            "live"
                        } else {
                            "expired"
                        },
                    })
                    .collect()
            })
            .map_err(Clone::clone)
    });
    let migrations = snap.migrations.as_ref().map(|m| {
        m.as_ref()
            .map(|rows| {
                rows.iter()
                    .map(|e| MigrationView {
                        label: e.label(),
                        phase: e.phase.clone(),
                        state: e.state.as_str(),
                        applied_at: e
                            .applied
                            .as_ref()
                            .map(|a| a.applied_at.clone())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .map_err(Clone::clone)
    });
    let archive = snap.archive.as_ref().map(|m| {
        m.as_ref()
            .map(|rows| {
                rows.iter()
                    .map(|a| ArchiveView {
                        id: a.id,
                        migration: capstan_format::label(a.version, &a.migration).to_string(),
                        object: a.object(),
                        kind: a.kind.clone(),
                        rows: a.row_count.to_string(),
                    })
                    .collect()
            })
            .map_err(Clone::clone)
    });
    page(ServicePage {
        nav: "service",
        title: format!("Service {name}"),
        at: time(snap.at_ms),
        generation: snap.generation,
        error,
        objectives,
        deploys: mine.iter().rev().map(|d| deploy_row(d)).collect(),
        deploys_error: snap.deploys.as_ref().err().cloned(),
        instances,
        migrations,
        archive,
        database: snap.database.clone().unwrap_or_default(),
        rollout: rollout_words(&snap, &name),
        name,
    })
}

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
    /// Decisions, newest first.
    pub history: Vec<DeployRow>,
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
            RolloutView {
                service: r.service.clone(),
                releases: format!("{} → {}", r.baseline, r.canary),
                step: r.step + 1,
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

/// The events page's form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsForm {
    #[serde(rename = "where", default)]
    filter: String,
    #[serde(default)]
    group_by: String,
    #[serde(default)]
    calc: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    a: String,
    #[serde(default)]
    b: String,
}

/// A row of the query result.
pub struct ResultRow {
    /// Group values.
    pub group: Vec<String>,
    /// Values as text and raw.
    pub values: Vec<(String, String)>,
}

/// A raw event row.
pub struct EventView {
    /// Time.
    pub at: String,
    /// Service.
    pub service: String,
    /// Method and route.
    pub route: String,
    /// Status.
    pub status: u16,
    /// Duration.
    pub duration: String,
    /// Release.
    pub release: String,
    /// Cohort.
    pub cohort: String,
}

/// A compare row.
pub struct DiffRow {
    /// Field.
    pub field: String,
    /// Score.
    pub score: String,
    /// The value that differs most, with its shares.
    pub most: String,
    /// Top values of A.
    pub a_top: String,
    /// Top values of B.
    pub b_top: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    nav: &'static str,
    title: String,
    at: String,
    generation: u64,
    f: EventsForm,
    error: Option<String>,
    range: String,
    group_by: Vec<String>,
    calcs: Vec<String>,
    rows: Vec<ResultRow>,
    heatmap: Option<String>,
    raw: Vec<EventView>,
    compare: Option<(u64, u64, Vec<DiffRow>)>,
}

fn event_view(e: &Event) -> EventView {
    EventView {
        at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(e.time_ms)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default(),
        service: e.service.clone(),
        route: format!("{} {}", e.method, e.route),
        status: e.status,
        duration: format!("{:.1}", e.duration_ms),
        release: e.release.clone(),
        cohort: e.cohort.clone(),
    }
}

/// One raw event as a table row (the live stream sends these).
pub fn event_row(e: &Event) -> String {
    let v = event_view(e);
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
        svg::esc(&v.at),
        svg::esc(&v.service),
        svg::esc(&v.route),
        v.status,
        v.duration,
        svg::esc(&v.release),
        svg::esc(&v.cohort)
    )
}

fn fmt_value(v: Option<f64>) -> (String, String) {
    match v {
        None => ("-".into(), "null".into()),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => (format!("{x:.0}"), raw(x)),
        Some(x) => (format!("{x:.3}"), raw(x)),
    }
}

fn bucket_labels() -> Vec<String> {
    BUCKET_BOUNDS_MS
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let ms = |x: f64| {
                if x >= 1000.0 {
                    format!("{} s", x / 1000.0)
                } else {
                    format!("{x} ms")
                }
            };
            if b.is_finite() {
                format!("≤ {}", ms(*b))
            } else {
                format!("> {}", ms(BUCKET_BOUNDS_MS[i.saturating_sub(1)]))
            }
        })
        .collect()
}

fn shares(v: &[capstan_events::Share]) -> String {
    v.iter()
        .map(|s| format!("{} ({:.1} %)", s.value, s.share * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn events(State(state): State<AppState>, Query(f): Query<EventsForm>) -> Response {
    let snap = state.snapshot();
    let store_path = state.sources().settings.store.clone();
    let f2 = EventsForm {
        filter: f.filter.clone(),
        group_by: f.group_by.clone(),
        calc: f.calc.clone(),
        since: f.since.clone(),
        from: f.from.clone(),
        to: f.to.clone(),
        a: f.a.clone(),
        b: f.b.clone(),
    };
    let work = tokio::task::spawn_blocking(move || events_work(&store_path, &f2))
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    let mut p = EventsPage {
        nav: "events",
        title: "Events".into(),
        at: time(snap.at_ms),
        generation: snap.generation,
        f,
        error: None,
        range: String::new(),
        group_by: vec![],
        calcs: vec![],
        rows: vec![],
        heatmap: None,
        raw: vec![],
        compare: None,
    };
    match work {
        Ok(w) => {
            p.range = w.range;
            p.group_by = w.group_by;
            p.calcs = w.calcs;
            p.rows = w.rows;
            p.heatmap = w.heatmap;
            p.raw = w.raw;
            p.compare = w.compare;
        }
        Err(e) => p.error = Some(e),
    }
    let mut r = page(p);
    if r.status() == StatusCode::OK {
        // A bad expression is the form's fault, said on the page.
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("static"));
    r
}

struct EventsWork {
    range: String,
    group_by: Vec<String>,
    calcs: Vec<String>,
    rows: Vec<ResultRow>,
    heatmap: Option<String>,
    raw: Vec<EventView>,
    compare: Option<(u64, u64, Vec<DiffRow>)>,
}

fn events_work(store_path: &std::path::Path, f: &EventsForm) -> Result<EventsWork, String> {
    let nz = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let range = capstan_events::cli::TimeRange {
        since: nz(&f.since).filter(|_| nz(&f.from).is_none()),
        from: nz(&f.from),
        to: nz(&f.to),
    };
    let (from_ms, to_ms) = range
        .resolve(chrono::Utc::now().timestamp_millis())
        .map_err(|e| format!("time range: {e}"))?;
    let filter = match nz(&f.filter) {
        Some(s) => Expr::parse(&s).map_err(|e| format!("where: {e}"))?,
        None => Expr::all(),
    };
    let calc = nz(&f.calc).unwrap_or_else(|| "count".into());
    let calcs = Calc::parse_list(&calc).map_err(|e| format!("calculations: {e}"))?;
    let group_by: Vec<Field> = f
        .group_by
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Field::from_name)
        .collect();
    if !store_path.exists() {
        return Err(format!(
            "no event store at {} (record events with the proxy first)",
            store_path.display()
        ));
    }
    let store = Store::open(store_path).map_err(|e| e.to_string())?;
    let res = store
        .query(&capstan_events::Query {
            filter: filter.clone(),
            group_by,
            calcs,
            from_ms,
            to_ms,
        })
        .map_err(|e| e.to_string())?;
    let rows = res
        .rows
        .iter()
        .take(500)
        .map(|r| ResultRow {
            group: r
                .group
                .iter()
                .map(|g| g.clone().unwrap_or_else(|| "-".into()))
                .collect(),
            values: r.values.iter().map(|v| fmt_value(*v)).collect(),
        })
        .collect();
    // Heatmap from the rollups: up to 60 columns over the range.
    let rollups = store
        .rollups(None, from_ms, to_ms)
        .map_err(|e| e.to_string())?;
    let cols = 60usize;
    let width = ((to_ms - from_ms) / cols as i64).max(60_000);
    let mut cells = vec![vec![0u64; BUCKET_BOUNDS_MS.len()]; cols];
    let mut any = false;
    for r in &rollups {
        let i = (((r.minute_ms - from_ms).max(0)) / width) as usize;
        if let Some(col) = cells.get_mut(i.min(cols - 1)) {
            for (j, n) in r.buckets.iter().enumerate() {
                col[j] += n;
                any |= *n > 0;
            }
        }
    }
    let heatmap = any.then(|| svg::heatmap("heat", from_ms, to_ms, &cells, &bucket_labels()));
    // The newest 50 matching events.
    let mut raw: std::collections::VecDeque<EventView> = Default::default();
    store
        .scan(from_ms, to_ms, None, |se| {
            if filter.matches(&se.event) {
                raw.push_back(event_view(&se.event));
                if raw.len() > 50 {
                    raw.pop_front();
                }
            }
            true
        })
        .map_err(|e| e.to_string())?;
    let compare = match nz(&f.a) {
        None => None,
        Some(a) => {
            let ea = Expr::parse(&a).map_err(|e| format!("set A: {e}"))?;
            let eb = match nz(&f.b) {
                Some(b) => Some(Expr::parse(&b).map_err(|e| format!("set B: {e}"))?),
                None => None,
            };
            let c = store
                .compare(&ea, eb.as_ref(), from_ms, to_ms)
                .map_err(|e| e.to_string())?;
            Some((
                c.a_count,
                c.b_count,
                c.fields
                    .iter()
                    .take(15)
                    .map(|d| DiffRow {
                        field: d.field.clone(),
                        score: format!("{:.3}", d.score),
                        most: d
                            .most_different
                            .as_ref()
                            .map(|m| {
                                format!(
                                    "{}: {:.1} % vs {:.1} %",
                                    m.value,
                                    m.a_share * 100.0,
                                    m.b_share * 100.0
                                )
                            })
                            .unwrap_or_default(),
                        a_top: shares(&d.a_top),
                        b_top: shares(&d.b_top),
                    })
                    .collect(),
            ))
        }
    };
    Ok(EventsWork {
        range: format!("{} to {}", time(from_ms), time(to_ms)),
        group_by: res.group_by,
        calcs: res.calcs,
        rows,
        heatmap,
        raw: raw.into_iter().rev().collect(),
        compare,
    })
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
        include_str!("../static/app.css"),
    )
        .into_response()
}

pub(crate) async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../static/app.js"),
    )
        .into_response()
}

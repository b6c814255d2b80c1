//! A service's page: its dependencies and their budgets, charts with deploy
//! markers, burn rates, attribution, fleet, migrations and archive.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use capstan_migrate::{ArchiveEntry, Entry, InstanceRow};
use capstan_slo::math::{conditions, Severity};
use capstan_slo::{minutes_label, Deploy, DeployKind, ObjectiveStatus};

use super::deps::{deps_view, DepsView};
use super::{deploy_row, obj_view, page, pct, raw, rollout_words, time, DeployRow, ObjView};
use crate::snapshot::RowsFor;
use crate::svg::{self, Marker};
use crate::AppState;

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
    /// The database service whose rows the panels show (empty: none).
    db_service: String,
    database: String,
    rollout: String,
    deps: Option<DepsView>,
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
    let deps = match &snap.status {
        Some(Ok(r)) => deps_view(&state.sources().settings.services, &name, &r.slos),
        _ => None,
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
    // The database service this page shows: the one of this name, else
    // `default` (its fleet told apart by application name).
    let rows: Option<Result<Option<RowsFor>, String>> = match &snap.services {
        None => None,
        Some(Err(e)) => Some(Err(e.clone())),
        Some(Ok(_)) => Some(Ok(snap.rows_for(&name))),
    };
    let db_service = match &rows {
        Some(Ok(Some(r))) => r.rows.name.clone(),
        _ => String::new(),
    };
    let instances = panel(&rows, |r| {
        r.rows.fleet.as_ref().map_err(Clone::clone)?;
        Ok(r.instances().map(instance_view).collect())
    });
    let migrations = panel(&rows, |r| {
        Ok(r.rows
            .migrations
            .as_ref()?
            .iter()
            .map(migration_view)
            .collect())
    });
    let archive = panel(&rows, |r| {
        Ok(r.rows.archive.as_ref()?.iter().map(archive_view).collect())
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
        db_service,
        database: snap.database.clone().unwrap_or_default(),
        rollout: rollout_words(&snap, &name),
        deps,
        name,
    })
}

/// A database panel of the page: `None` without a database, the error when
/// it could not be read, nothing when it has no rows of this service, else
/// what `f` makes of them.
fn panel<T>(
    rows: &Option<Result<Option<RowsFor>, String>>,
    f: impl FnOnce(&RowsFor) -> Result<Vec<T>, String>,
) -> Option<Result<Vec<T>, String>> {
    match rows {
        None => None,
        Some(Err(e)) => Some(Err(e.clone())),
        Some(Ok(None)) => Some(Ok(Vec::new())),
        Some(Ok(Some(r))) => Some(f(r)),
    }
}

/// A fleet row as the page shows it.
pub(crate) fn instance_view(r: &InstanceRow) -> InstanceView {
    InstanceView {
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
    }
}

/// A migration as the page shows it.
fn migration_view(e: &Entry) -> MigrationView {
    MigrationView {
        label: e.label(),
        phase: e.phase.to_string(),
        state: e.state.as_str(),
        applied_at: e
            .applied
            .as_ref()
            .map(|a| a.applied_at.clone())
            .unwrap_or_default(),
    }
}

/// An archive entry as the page shows it.
fn archive_view(a: &ArchiveEntry) -> ArchiveView {
    ArchiveView {
        id: a.id,
        migration: capstan_format::label(a.version, &a.migration).to_string(),
        object: a.object(),
        kind: a.kind.to_string(),
        rows: a.row_count.to_string(),
    }
}

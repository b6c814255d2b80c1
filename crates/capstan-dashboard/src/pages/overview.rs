//! The overview: every service, the least budget left first.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::deps::{deps_view, DepsView};
use super::{obj_view, page, rollout_words, time, ObjView};
use crate::snapshot::{ServiceRows, Snapshot};
use crate::AppState;

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
    /// Its dependencies (`depends_on` in `capstan.toml`), if any.
    pub deps: Option<DepsView>,
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
    database: Option<Result<Vec<DbServiceRow>, String>>,
}

/// A service of the database, on the overview's database table.
pub struct DbServiceRow {
    /// Its name.
    pub name: String,
    /// Migrations applied.
    pub applied: usize,
    /// Migrations pending.
    pub pending: usize,
    /// Migrations in any other state, like `dirty × 1` (empty: none).
    pub other: String,
    /// Live instances.
    pub live: usize,
    /// Archive entries.
    pub archived: usize,
    /// What of its rows could not be read (empty: everything was).
    pub error: String,
}

fn live_instances(snap: &Snapshot, name: &str) -> Vec<(String, usize)> {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    if let Some(rows) = snap.rows_for(name) {
        for r in rows.instances() {
            if r.departed_at.is_none() && r.age_secs < 60.0 {
                *by.entry(r.instance.version.clone()).or_default() += 1;
            }
        }
    }
    by.into_iter().collect()
}

/// Every service of the database with its migrations, fleet and archive in
/// figures; `None` without a database.
fn database(snap: &Snapshot) -> Option<Result<Vec<DbServiceRow>, String>> {
    let list = match snap.services.as_ref()? {
        Ok(l) => l,
        Err(e) => return Some(Err(e.clone())),
    };
    Some(Ok(list
        .iter()
        .map(|s: &ServiceRows| {
            let mut states: BTreeMap<&'static str, usize> = BTreeMap::new();
            for e in s.migrations.iter().flatten() {
                *states.entry(e.state.as_str()).or_default() += 1;
            }
            let applied = states.remove("applied").unwrap_or(0);
            let pending = states.remove("pending").unwrap_or(0);
            let errors: Vec<&str> = [
                s.migrations.as_ref().err(),
                s.fleet.as_ref().err(),
                s.archive.as_ref().err(),
            ]
            .into_iter()
            .flatten()
            .map(|e| e.as_str())
            .collect();
            DbServiceRow {
                name: s.name.clone(),
                applied,
                pending,
                other: states
                    .iter()
                    .map(|(k, n)| format!("{k} × {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                live: s
                    .fleet
                    .iter()
                    .flatten()
                    .filter(|r| r.departed_at.is_none() && r.age_secs < 60.0)
                    .count(),
                archived: s.archive.as_ref().map_or(0, Vec::len),
                error: errors.join("; "),
            }
        })
        .collect()))
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
                deps: deps_view(&state.sources().settings.services, &name, &statuses),
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
        database: database(&snap),
    })
}

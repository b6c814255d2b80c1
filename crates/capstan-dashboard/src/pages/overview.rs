//! The overview: every service, the least budget left first.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::deps::{deps_view, DepsView};
use super::{obj_view, page, rollout_words, time, ObjView};
use crate::snapshot::Snapshot;
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
    })
}

//! `capstan dashboard`: a live web view of every service's SLOs, error
//! budgets, deploys, rollouts and wide events.
//!
//! Server-rendered HTML (askama templates, checked at compile time) with
//! charts drawn as SVG ([`svg`]); live updates by server-sent events; a small
//! plain script that only enhances pages which work without it. The numbers
//! come from the same functions as the CLI: SLO status from
//! [`capstan_slo::status`] (the function behind `capstan slo status`),
//! event queries from [`capstan_events::Store::query`]. A background task
//! rebuilds a [`Snapshot`]; requests only read it.
//!
//! Read-only by default: rollout actions need the token or a trusted header
//! ([`Auth`]).
//!
//! The modules are private; this page lists what the crate offers: [`run`]
//! and [`DashboardArgs`] (the `capstan dashboard` command), [`app`] and
//! [`AppState`] (the router, for tests and embedding), [`Sources`] and
//! [`Snapshot`] (what it reads and what it shows).

mod auth;
mod cli;
mod live;
mod pages;
mod snapshot;
mod svg;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{broadcast, watch};

pub use auth::{Actor, Auth};
pub use cli::{run, DashboardArgs, EXIT_BAD_INPUT, EXIT_LISTEN, EXIT_OK};
pub use snapshot::{Chart, ChartPoint, Partial, Snapshot, Sources, CHART_POINTS};

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    sources: Sources,
    auth: Auth,
    snapshot: RwLock<Arc<Snapshot>>,
    generation: watch::Sender<u64>,
    events: broadcast::Sender<Arc<Vec<capstan_events::StoredEvent>>>,
    refresh_now: tokio::sync::Notify,
}

impl AppState {
    /// A state with an empty snapshot; [`AppState::refresh`] or the loops of
    /// [`AppState::spawn_background`] fill it.
    pub fn new(sources: Sources, auth: Auth) -> AppState {
        let (generation, _) = watch::channel(0);
        let (events, _) = broadcast::channel(256);
        AppState {
            inner: Arc::new(Inner {
                sources,
                auth,
                snapshot: RwLock::new(Arc::new(Snapshot::default())),
                generation,
                events,
                refresh_now: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The last snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The sources it reads.
    pub fn sources(&self) -> &Sources {
        &self.inner.sources
    }

    /// Rebuilds the snapshot now (at the current second) and publishes it.
    pub async fn refresh(&self) -> Arc<Snapshot> {
        self.refresh_at(chrono::Utc::now().timestamp_millis()).await
    }

    /// Rebuilds the snapshot as of `now_ms` (cut to its second) and
    /// publishes it: what the pages showed then, as `slo status --at` would.
    pub async fn refresh_at(&self, now_ms: i64) -> Arc<Snapshot> {
        let now = now_ms.div_euclid(1000) * 1000;
        let generation = self.snapshot().generation + 1;
        let snap = Arc::new(snapshot::build(&self.inner.sources, generation, now).await);
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|e| e.into_inner()) = snap.clone();
        self.inner.generation.send_replace(generation);
        snap
    }

    /// Starts the loops: the snapshot every `every` (and right after an
    /// action), and the event store's new events every 200 ms. The snapshot
    /// is built on a thread of its own (the SLO sources hold SQLite handles,
    /// which stay on one thread), so pages are served while it runs.
    /// Must be called within a Tokio runtime.
    pub fn spawn_background(&self, every: Duration) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("dashboard-snapshot".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("dashboard snapshot runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    loop {
                        me.refresh().await;
                        let _ = tokio::time::timeout(every, me.inner.refresh_now.notified()).await;
                    }
                });
            })
            .expect("spawn the snapshot thread");
        let me = self.clone();
        tokio::spawn(live::follow_store(me));
    }
}

/// The dashboard's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/service/{name}", get(pages::service))
        .route("/rollouts", get(pages::rollouts))
        .route("/rollouts/{service}/{action}", post(pages::rollout_action))
        .route("/events", get(pages::events))
        .route("/live", get(live::sse))
        .route("/api/status", get(pages::api_status))
        .route("/static/app.css", get(pages::css))
        .route("/static/app.js", get(pages::js))
        .with_state(state)
}

//! Health probes that tell the orchestrator the truth, and a shutdown that drains.
//!
//! An application creates one [`Health`], adds a check per dependency, reports its
//! startup gate and warm-up, and serves the probes:
//!
//! | endpoint | passes when | never does |
//! |---|---|---|
//! | `/livez` | the process answers | check a dependency |
//! | `/readyz` | the gate is compatible, not draining, every [private](DependencyKind::Private) dependency is up | fail for a [shared](DependencyKind::Shared) dependency (that is `warn`, HTTP 200) |
//! | `/startupz` | the gate is compatible and warm-up finished | |
//! | `/metrics` | (Prometheus: `capstan_check_up{check,kind}`, `capstan_check_duration_seconds`, `capstan_check_failures_total`, `capstan_ready`, `capstan_started`, `capstan_draining`, `capstan_gate_compatible`) | |
//!
//! Checks run in the background, each on its own interval and timeout, and flip
//! between up and down only after `failure_threshold` failures or
//! `success_threshold` successes in a row. A probe request reads a pre-rendered
//! snapshot: it answers in microseconds while a dependency hangs, and a probe storm
//! never reaches the database. A run that outlives its timeout counts as a failure,
//! and no new run starts while it is still pending.
//!
//! Bodies are `application/health+json` (draft-inadarei-api-health-check):
//!
//! ```json
//! {"status":"warn","serviceId":"chirpy","output":"billing: timed out after 1s",
//!  "checks":{"billing:responseTime":[{"componentId":"billing","componentType":"component",
//!   "observedValue":1000.0,"observedUnit":"ms","status":"warn",
//!   "time":"2026-11-22T03:00:00.000Z","output":"timed out after 1s"}], "...": []}}
//! ```
//!
//! `fail` answers 503, `pass` and `warn` 200. [`Details::Status`] answers only
//! `{"status":"..."}`, for a listener the public reaches; [`Details::Full`] the lot.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use capstan_probe::{check_fn, CheckConfig, Details, GateStatus, Health, Observation, ShutdownConfig};
//!
//! # async fn ping_database() -> Result<(), String> { Ok(()) }
//! # async fn warm_caches() {}
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let health = Health::builder().service_id("chirpy").version("2.0.0").build();
//!     // This instance's connection pool: while it fails, take the instance out.
//!     health.add_check(
//!         CheckConfig::private("postgres").component_type("datastore"),
//!         check_fn(|| async {
//!             ping_database().await?;
//!             Ok(Observation::ok())
//!         }),
//!     )?;
//!     health.set_gate(GateStatus::Compatible); // after the startup gate's check
//!     warm_caches().await;
//!     health.set_warmed_up();
//!
//!     let app = axum::Router::new()
//!         .route("/", axum::routing::get(|| async { "hello" }))
//!         .merge(health.router(Details::Full));
//!     let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
//!     let shutdown = ShutdownConfig { drain: Duration::from_secs(5), grace: Duration::from_secs(20) };
//!     capstan_probe::serve(listener, app, health, shutdown, async {
//!         // deregister this instance from the fleet here
//!     })
//!     .await?;
//!     Ok(())
//! }
//! ```
//!
//! To keep check outputs off the public listener, serve the public router with
//! [`Details::Status`] through [`serve`], and spawn a second, internal listener with
//! `axum::serve(internal, health.router(Details::Full))`: it serves until the process
//! exits, through the drain.
//!
//! Without axum, send [`Health::respond`]'s answer from any server:
//!
//! ```
//! # use capstan_probe::{Details, Health};
//! # let health = Health::new();
//! if let Some(answer) = health.respond("/readyz", Details::Status) {
//!     let response: http::Response<bytes::Bytes> = answer.into_http();
//!     # let _ = response;
//! }
//! ```
//!
//! With the default `cli` feature, [`ProbeArgs`] and [`run_probe`] make the
//! `probe URL [--timeout]` subcommand for exec probes in images without curl.

mod check;
#[cfg(feature = "cli")]
mod cli;
mod endpoints;
mod health;
mod metrics;
mod probe;
mod report;
mod serve;
mod state;

pub use check::{check_fn, Check, CheckConfig, CheckFn, DependencyKind, Observation};
#[cfg(feature = "cli")]
pub use cli::{run_probe, ProbeArgs};
pub use endpoints::{Details, ProbeResponse};
pub use health::{GateStatus, Health, HealthBuilder};
pub use metrics::OPENMETRICS_TEXT;
pub use probe::{probe, ProbeOutcome};
pub use report::{CheckResult, HealthReport, Status, HEALTH_JSON};
pub use serve::{serve, serve_with_shutdown, shutdown_signal, ShutdownConfig};

/// Re-exported so checks can be written without naming the crate.
pub use async_trait::async_trait;

/// What can go wrong setting up or serving probes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A check's settings can't work (empty id, zero interval, timeout or threshold).
    #[error("check {id:?}: {reason}")]
    InvalidCheck {
        /// The check's id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// Two checks with the same id.
    #[error("check {id:?} is already added")]
    DuplicateCheck {
        /// The check's id.
        id: String,
    },
    /// Checks run on Tokio; `add_check` was called outside a runtime.
    #[error("no Tokio runtime: add checks from inside the runtime that serves the probes")]
    NoRuntime,
    /// The HTTP server failed.
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

//! [`Health`]: the shared handle the application, the check runners and the probe
//! handlers use.
//!
//! Architecture Invariant: a probe request never waits on a dependency or a lock
//! that a check holds. Writers (check runners, the application's setters) update the
//! model under a mutex and publish a pre-rendered snapshot through an `ArcSwap`;
//! readers only load that snapshot.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::check::{Check, CheckConfig, Observation};
use crate::metrics::{CheckLabels, Metrics};
use crate::report::{HealthReport, Status};
use crate::state::{CheckRecord, Model, Run, ServiceInfo};
use crate::Error;

/// What the startup gate (schema compatibility) says, as the application reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStatus {
    /// The binary can run against the schema: startup and readiness may pass.
    Compatible,
    /// Not yet compatible, still checking (the gate's wait mode): not started, not
    /// ready. The text says what it waits for.
    Waiting(String),
    /// Incompatible: not started, not ready. The text says why and what to do.
    Refused(String),
}

impl Default for GateStatus {
    /// `Waiting("not checked yet")`: nothing passes until the application reports.
    fn default() -> Self {
        GateStatus::Waiting("not checked yet".to_owned())
    }
}

/// Builds a [`Health`] with the service's identity, which full reports carry.
#[derive(Debug, Clone, Default)]
pub struct HealthBuilder {
    info: ServiceInfo,
}

impl HealthBuilder {
    /// The service's name (`serviceId`).
    #[must_use]
    pub fn service_id(mut self, id: impl Into<String>) -> Self {
        self.info.service_id = Some(id.into());
        self
    }

    /// The service's public version (`version`).
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.info.version = Some(version.into());
        self
    }

    /// The release, a build or commit id (`releaseId`).
    #[must_use]
    pub fn release_id(mut self, release: impl Into<String>) -> Self {
        self.info.release_id = Some(release.into());
        self
    }

    /// A human-friendly description (`description`).
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.info.description = Some(description.into());
        self
    }

    /// The handle, with the gate waiting, not warmed up, not draining, no checks.
    pub fn build(self) -> Health {
        let now = SystemTime::now();
        let info = self.info.clone();
        let model = Model::new(self.info, now);
        let metrics = Metrics::new();
        let snapshot = Snapshot::of(&model);
        let inner = Inner {
            model: Mutex::new(model),
            info,
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            started_at: std::time::Instant::now(),
            stop: CancellationToken::new(),
        };
        let health = Health {
            inner: Arc::new(inner),
        };
        health.publish(&health.model());
        health
    }
}

/// The application's health: dependency checks running in the background, the
/// startup gate, warm-up and draining, and the probe answers made from them.
///
/// Cloning is cheap and every clone is the same handle. The background checks stop
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    model: Mutex<Model>,
    info: ServiceInfo,
    snapshot: ArcSwap<Snapshot>,
    metrics: Metrics,
    started_at: std::time::Instant,
    stop: CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What probe requests read: pre-rendered bodies.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub readyz: Rendered,
    pub startupz: Rendered,
}

#[derive(Debug)]
pub(crate) struct Rendered {
    pub report: HealthReport,
    pub full: Bytes,
    pub status_only: Bytes,
}

impl Rendered {
    fn of(report: HealthReport) -> Self {
        let full = to_bytes(&report);
        let status_only = to_bytes(&HealthReport::status_only(report.status));
        Self {
            report,
            full,
            status_only,
        }
    }
}

pub(crate) fn to_bytes(report: &HealthReport) -> Bytes {
    // Serialising these plain structs cannot fail.
    Bytes::from(serde_json::to_vec(report).unwrap_or_default())
}

impl Snapshot {
    fn of(model: &Model) -> Self {
        Self {
            readyz: Rendered::of(model.readyz()),
            startupz: Rendered::of(model.startupz()),
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// A handle with no service identity; see [`Health::builder`].
    pub fn new() -> Self {
        HealthBuilder::default().build()
    }

    /// A builder to set the service's identity.
    pub fn builder() -> HealthBuilder {
        HealthBuilder::default()
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        // The model stays consistent even if a writer panicked: each write is one
        // assignment or one `record`.
        self.inner.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the snapshot of `model` and the gauges. Called with the model
    /// locked, so snapshots are published in order.
    fn publish(&self, model: &Model) {
        let snapshot = Snapshot::of(model);
        let m = &self.inner.metrics;
        m.ready
            .set(i64::from(snapshot.readyz.report.status != Status::Fail));
        m.started
            .set(i64::from(snapshot.startupz.report.status != Status::Fail));
        m.draining.set(i64::from(model.draining.is_some()));
        m.gate_compatible
            .set(i64::from(model.gate == GateStatus::Compatible));
        self.inner.snapshot.store(Arc::new(snapshot));
    }

    /// Adds a dependency check and starts running it in the background at once,
    /// then every `config.interval`.
    ///
    /// Until it has succeeded `success_threshold` times, the check counts as down.
    /// Must be called from within a Tokio runtime.
    pub fn add_check(&self, config: CheckConfig, check: impl Check) -> Result<(), Error> {
        config.validate().map_err(|reason| Error::InvalidCheck {
            id: config.id.clone(),
            reason,
        })?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let config = Arc::new(config);
        let index = {
            let mut model = self.model();
            if model.checks.iter().any(|c| c.config.id == config.id) {
                return Err(Error::DuplicateCheck {
                    id: config.id.clone(),
                });
            }
            let labels = CheckLabels::of(&config);
            let m = &self.inner.metrics;
            m.check_up.get_or_create(&labels).set(0);
            m.check_duration.get_or_create(&labels).set(0.0);
            m.check_failures.get_or_create(&labels).inc_by(0);
            model.checks.push(CheckRecord::new(config.clone()));
            self.publish(&model);
            model.checks.len() - 1
        };
        let runner = Runner {
            health: Arc::downgrade(&self.inner),
            index,
            config,
            check: Arc::new(check),
            stop: self.inner.stop.clone(),
        };
        runtime.spawn(runner.run());
        Ok(())
    }

    /// Reports what the startup gate says.
    pub fn set_gate(&self, gate: GateStatus) {
        let mut model = self.model();
        if model.gate != gate {
            model.gate = gate;
            model.gate_since = SystemTime::now();
            self.publish(&model);
        }
    }

    /// What the startup gate last reported.
    pub fn gate(&self) -> GateStatus {
        self.model().gate.clone()
    }

    /// Reports that warm-up finished (caches filled, connections opened).
    pub fn set_warmed_up(&self) {
        let mut model = self.model();
        if model.warmed_up.is_none() {
            model.warmed_up = Some(SystemTime::now());
            self.publish(&model);
        }
    }

    /// Fails readiness from now on, with output `"draining"`, so load balancers stop
    /// sending new traffic. [`serve`](crate::serve) calls it on the shutdown signal.
    pub fn start_draining(&self) {
        let mut model = self.model();
        if model.draining.is_none() {
            model.draining = Some(SystemTime::now());
            tracing::info!("draining: readiness fails from now on");
            self.publish(&model);
        }
    }

    /// Whether [`start_draining`](Health::start_draining) was called.
    pub fn is_draining(&self) -> bool {
        self.model().draining.is_some()
    }

    /// The `/readyz` status: pass, warn (a shared dependency is down) or fail.
    pub fn readiness(&self) -> Status {
        self.inner.snapshot.load().readyz.report.status
    }

    /// The `/startupz` status.
    pub fn startup(&self) -> Status {
        self.inner.snapshot.load().startupz.report.status
    }

    /// The full `/readyz` report.
    pub fn readyz_report(&self) -> HealthReport {
        self.inner.snapshot.load().readyz.report.clone()
    }

    /// The full `/startupz` report.
    pub fn startupz_report(&self) -> HealthReport {
        self.inner.snapshot.load().startupz.report.clone()
    }

    /// The full `/livez` report: always pass, with the process's uptime.
    pub fn livez_report(&self) -> HealthReport {
        self.inner
            .info
            .livez(self.inner.started_at.elapsed(), SystemTime::now())
    }

    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.snapshot.load()
    }

    /// Lets the application register its own metrics next to capstan's, so one
    /// `/metrics` endpoint serves both.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut registry = self
            .inner
            .metrics
            .registry
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f(&mut registry)
    }

    /// The metrics in OpenMetrics text format.
    pub fn encode_metrics(&self) -> String {
        self.inner.metrics.encode()
    }

    fn record(&self, index: usize, run: Run) {
        let mut model = self.model();
        let record = &mut model.checks[index];
        let ok = run.result.is_ok();
        let duration = run.duration;
        let flipped = record.record(run);
        let labels = CheckLabels::of(&record.config);
        let m = &self.inner.metrics;
        m.check_up
            .get_or_create(&labels)
            .set(i64::from(record.state.up));
        m.check_duration
            .get_or_create(&labels)
            .set(duration.as_secs_f64());
        if !ok {
            m.check_failures.get_or_create(&labels).inc();
        }
        if flipped {
            let id = &record.config.id;
            let kind = record.config.kind.as_str();
            if record.state.up {
                tracing::info!(check = %id, kind, "check is up");
            } else {
                let why = record
                    .last
                    .as_ref()
                    .and_then(|r| r.result.as_ref().err())
                    .cloned()
                    .unwrap_or_default();
                tracing::warn!(check = %id, kind, error = %why, "check is down");
            }
        }
        self.publish(&model);
    }
}

type CheckResultOf = Result<Observation, String>;

/// Runs one check forever: at most one run at a time, each bounded by the timeout.
struct Runner {
    health: Weak<Inner>,
    index: usize,
    config: Arc<CheckConfig>,
    check: Arc<dyn Check>,
    stop: CancellationToken,
}

impl Runner {
    async fn run(self) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // A run that outlived its timeout: never start another while it is pending,
        // so a hung dependency can't pile up connections or blocked threads.
        let mut pending: Option<(JoinHandle<CheckResultOf>, Instant)> = None;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let (result, duration) = match pending.take() {
                Some((handle, since)) if !handle.is_finished() => {
                    let waited = since.elapsed();
                    pending = Some((handle, since));
                    (
                        Err(format!(
                            "the previous run is still pending after {}",
                            human(waited)
                        )),
                        waited,
                    )
                }
                _ => {
                    let started = Instant::now();
                    let check = self.check.clone();
                    let mut handle = tokio::spawn(async move { check.check().await });
                    let outcome = tokio::select! {
                        _ = self.stop.cancelled() => {
                            handle.abort();
                            break;
                        }
                        outcome = tokio::time::timeout(self.config.timeout, &mut handle) => outcome,
                    };
                    let result = match outcome {
                        Ok(Ok(result)) => result,
                        Ok(Err(join)) if join.is_panic() => Err("the check panicked".to_owned()),
                        Ok(Err(_)) => Err("the check was cancelled".to_owned()),
                        Err(_) => {
                            pending = Some((handle, started));
                            Err(format!("timed out after {}", human(self.config.timeout)))
                        }
                    };
                    (result, started.elapsed())
                }
            };
            let Some(inner) = self.health.upgrade() else {
                break;
            };
            let health = Health { inner };
            health.record(
                self.index,
                Run {
                    at: SystemTime::now(),
                    duration,
                    result,
                },
            );
        }
        if let Some((handle, _)) = pending {
            handle.abort();
        }
    }
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(10) {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

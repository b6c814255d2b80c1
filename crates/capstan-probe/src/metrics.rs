//! Check states as Prometheus metrics (`prometheus-client`, OpenMetrics text).

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::check::CheckConfig;

/// The content type of the `/metrics` body.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct CheckLabels {
    check: String,
    kind: String,
}

impl CheckLabels {
    pub fn of(config: &CheckConfig) -> Self {
        Self {
            check: config.id.clone(),
            kind: config.kind.as_str().to_owned(),
        }
    }
}

/// The metrics every [`Health`](crate::Health) exports, all prefixed `capstan_`.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub registry: Mutex<Registry>,
    pub check_up: Family<CheckLabels, Gauge>,
    pub check_duration: Family<CheckLabels, Gauge<f64, AtomicU64>>,
    pub check_failures: Family<CheckLabels, Counter>,
    pub ready: Gauge,
    pub started: Gauge,
    pub draining: Gauge,
    pub gate_compatible: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            check_up: Family::default(),
            check_duration: Family::default(),
            check_failures: Family::default(),
            ready: Gauge::default(),
            started: Gauge::default(),
            draining: Gauge::default(),
            gate_compatible: Gauge::default(),
        };
        registry.register(
            "check_up",
            "1 while the check counts as up (after its thresholds), 0 while down",
            m.check_up.clone(),
        );
        registry.register(
            "check_duration_seconds",
            "How long the check's last run took, or how long it had been pending",
            m.check_duration.clone(),
        );
        registry.register(
            "check_failures",
            "Runs of the check that failed, timed out or were still pending",
            m.check_failures.clone(),
        );
        registry.register(
            "ready",
            "1 while /readyz answers pass or warn",
            m.ready.clone(),
        );
        registry.register(
            "started",
            "1 once /startupz passes: the gate passed and warm-up finished",
            m.started.clone(),
        );
        registry.register(
            "draining",
            "1 from the shutdown signal on",
            m.draining.clone(),
        );
        registry.register(
            "gate_compatible",
            "1 while the startup gate reports the schema compatible",
            m.gate_compatible.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

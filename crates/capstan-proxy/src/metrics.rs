//! Prometheus metrics of the proxy (`GET /metrics` on the admin listener).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of request counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Release that served (empty when none could).
    pub release: String,
    /// `internal` or `public`.
    pub cohort: &'static str,
    /// `2xx` … `5xx`, or `none` without a response.
    pub status_class: &'static str,
}

/// Labels of errors.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Release.
    pub release: String,
    /// Cohort.
    pub cohort: &'static str,
    /// `connect`, `timeout`, `upstream_5xx`, `no_upstream`, `draining`,
    /// `proxy_panic`, `client` (the client's own failures), `upstream`.
    pub kind: &'static str,
}

/// Labels of the latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    /// Release.
    pub release: String,
    /// Cohort.
    pub cohort: &'static str,
}

/// The proxy's metrics.
pub struct Metrics {
    registry: Registry,
    /// `capstan_proxy_requests_total`.
    pub requests: Family<RequestLabels, Counter>,
    /// `capstan_proxy_errors_total`.
    pub errors: Family<ErrorLabels, Counter>,
    /// `capstan_proxy_request_duration_seconds`.
    pub duration: Family<LatencyLabels, Histogram>,
    /// `capstan_proxy_events_dropped_total` (synced from the recorder at scrape).
    pub events_dropped: Counter,
    /// `capstan_proxy_events_recorded_total` (synced from the recorder at scrape).
    pub events_recorded: Counter,
    /// `capstan_proxy_mirrored_total`.
    pub mirrored: Counter,
    /// `capstan_proxy_fleet_up`: 1 while the last poll of the fleet registry
    /// succeeded, 0 while the proxy serves the last known instances.
    pub fleet_up: Gauge,
    /// `capstan_proxy_fleet_poll_errors_total`.
    pub fleet_poll_errors: Counter,
    /// `capstan_proxy_fleet_last_success_timestamp_seconds`.
    pub fleet_last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `capstan_proxy_fleet_instances`: addresses the last good poll found.
    pub fleet_instances: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(false)
    }
}

impl Metrics {
    /// The proxy's metrics; the `fleet_*` ones are registered only when
    /// upstreams are discovered in the fleet registry.
    pub fn new(fleet: bool) -> Self {
        let mut registry = Registry::with_prefix("capstan_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            // The event store's rollup bounds, in seconds.
            Histogram::new(
                capstan_events::BUCKET_BOUNDS_MS
                    .iter()
                    .filter(|b| b.is_finite())
                    .map(|ms| ms / 1000.0),
            )
        });
        let events_dropped = Counter::default();
        let events_recorded = Counter::default();
        let mirrored = Counter::default();
        registry.register(
            "requests",
            "Requests answered, by release, cohort and status class",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Requests that failed or got a 5xx, by release, cohort and kind",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "events_dropped",
            "Events dropped because the recorder's queue was full",
            events_dropped.clone(),
        );
        registry.register(
            "events_recorded",
            "Events handed to the recorder",
            events_recorded.clone(),
        );
        registry.register(
            "mirrored",
            "Requests copied to a shadow release",
            mirrored.clone(),
        );
        let fleet_up = Gauge::default();
        let fleet_poll_errors = Counter::default();
        let fleet_last_success = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        let fleet_instances = Gauge::default();
        if fleet {
            registry.register(
                "fleet_up",
                "1 when the last poll of the fleet registry succeeded; 0 while the last known instances are served",
                fleet_up.clone(),
            );
            registry.register(
                "fleet_poll_errors",
                "Polls of the fleet registry that failed or timed out",
                fleet_poll_errors.clone(),
            );
            registry.register(
                "fleet_last_success_timestamp_seconds",
                "Unix time of the last successful poll of the fleet registry",
                fleet_last_success.clone(),
            );
            registry.register(
                "fleet_instances",
                "Live instances with an address that the last good poll found for the proxy's releases",
                fleet_instances.clone(),
            );
        }
        Metrics {
            registry,
            requests,
            errors,
            duration,
            events_dropped,
            events_recorded,
            mirrored,
            fleet_up,
            fleet_poll_errors,
            fleet_last_success,
            fleet_instances,
        }
    }

    /// The OpenMetrics text, after syncing the recorder's counters.
    pub fn encode(&self, recorder: Option<&capstan_events::Recorder>) -> String {
        if let Some(r) = recorder {
            sync(&self.events_dropped, r.dropped());
            sync(&self.events_recorded, r.recorded());
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn sync(c: &Counter, to: u64) {
    let now = c.get();
    if to > now {
        c.inc_by(to - now);
    }
}

/// Every `status_class` label value, in [`status_class_index`] order.
pub const STATUS_CLASSES: [&str; 6] = ["none", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// The position of `status`'s class in [`STATUS_CLASSES`] (0, `none`, for 0).
pub fn status_class_index(status: u16) -> usize {
    match status / 100 {
        c @ 1..=5 => usize::from(c),
        _ => 0,
    }
}

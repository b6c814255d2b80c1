//! The wide event: one per request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One request as the proxy (or an OTLP root span) saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in milliseconds at which the request started.
    pub time_ms: i64,
    /// The service the request was for.
    pub service: String,
    /// HTTP method.
    pub method: String,
    /// Route template (`/api/chirps/{id}`), or the path when no template matched.
    pub route: String,
    /// The request path.
    pub path: String,
    /// Response status; 0 when there was no response (connect error, timeout).
    pub status: u16,
    /// Total duration as seen by the proxy, in milliseconds.
    pub duration_ms: f64,
    /// Time spent waiting on the upstream, in milliseconds.
    pub upstream_ms: Option<f64>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// The release that served the request.
    pub release: String,
    /// Upstream address or instance id.
    pub instance: String,
    /// `internal`, or empty / `public`.
    pub cohort: String,
    /// Hashed user key (never the raw key).
    pub user: Option<String>,
    /// W3C trace id.
    pub trace_id: Option<String>,
    /// Error kind: `connect`, `timeout`, `upstream_5xx`, ...
    pub error: Option<String>,
    /// How the shadow's response compared, for mirrored requests.
    pub mirror: Option<MirrorComparison>,
    /// Fields the application added (`x-capstan-<name>` response headers) or span attributes.
    pub fields: BTreeMap<String, String>,
}

/// How a mirrored request's shadow response compared with the user-visible one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorComparison {
    /// Both statuses are in the same class (2xx, 3xx, ...).
    pub status_class_equal: bool,
    /// Both bodies hash to the same value.
    pub body_hash_equal: bool,
    /// The shadow's status (0 when it did not answer).
    pub shadow_status: u16,
    /// The shadow's total duration in milliseconds.
    pub shadow_ms: f64,
}

//! The probe answers as plain values, and the axum router that serves them.

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, StatusCode};

use crate::health::{to_bytes, Health, Rendered};
use crate::metrics::OPENMETRICS_TEXT;
use crate::report::{HealthReport, Status, HEALTH_JSON};

/// How much a probe endpoint tells.
///
/// There is no default: choose per listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Details {
    /// Every check with its output, the service's identity, and `/metrics`: for an
    /// internal listener (the orchestrator, the operators).
    Full,
    /// Only `{"status": ...}`, and no `/metrics`: for a listener the public reaches.
    Status,
}

/// One probe answer: status code, content type and body, with no HTTP framework in
/// it, so any server can send it.
///
/// ```
/// # use capstan_probe::{Details, Health};
/// let health = Health::new();
/// let answer = health.readyz_response(Details::Status);
/// assert_eq!(answer.status.as_u16(), 503); // the gate has not reported yet
/// let response: http::Response<bytes::Bytes> = answer.into_http();
/// assert_eq!(response.headers()["content-type"], "application/health+json");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResponse {
    /// 200 for pass and warn, 503 for fail.
    pub status: StatusCode,
    /// `application/health+json`, or OpenMetrics text for `/metrics`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl ProbeResponse {
    fn health(status: Status, body: Bytes) -> Self {
        Self {
            status: status.http_status(),
            content_type: HEALTH_JSON,
            body,
        }
    }

    fn rendered(r: &Rendered, details: Details) -> Self {
        let body = match details {
            Details::Full => r.full.clone(),
            Details::Status => r.status_only.clone(),
        };
        Self::health(r.report.status, body)
    }

    /// An `http::Response` with any body type made from `Bytes` (axum's `Body`,
    /// `http_body_util::Full<Bytes>`, `Bytes` itself), with `Content-Type` and
    /// `Cache-Control: no-store`.
    pub fn into_http<B: From<Bytes>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl IntoResponse for ProbeResponse {
    fn into_response(self) -> axum::response::Response {
        self.into_http()
    }
}

impl Health {
    /// `/livez`: always pass while the process answers; no dependency is checked.
    pub fn livez_response(&self, details: Details) -> ProbeResponse {
        let body = match details {
            Details::Full => to_bytes(&self.livez_report()),
            Details::Status => Bytes::from_static(br#"{"status":"pass"}"#),
        };
        ProbeResponse::health(Status::Pass, body)
    }

    /// `/readyz`, from the cached state: never waits on a dependency.
    pub fn readyz_response(&self, details: Details) -> ProbeResponse {
        ProbeResponse::rendered(&self.snapshot().readyz, details)
    }

    /// `/startupz`, from the cached state.
    pub fn startupz_response(&self, details: Details) -> ProbeResponse {
        ProbeResponse::rendered(&self.snapshot().startupz, details)
    }

    /// `/metrics` in OpenMetrics text.
    pub fn metrics_response(&self) -> ProbeResponse {
        ProbeResponse {
            status: StatusCode::OK,
            content_type: OPENMETRICS_TEXT,
            body: Bytes::from(self.encode_metrics()),
        }
    }

    /// The answer for a request path, without its query (`/livez`, `/readyz`, `/startupz`, and
    /// `/metrics` with [`Details::Full`]), or `None` for any other path: the whole
    /// routing a plain hyper service needs.
    pub fn respond(&self, path: &str, details: Details) -> Option<ProbeResponse> {
        match path {
            "/livez" => Some(self.livez_response(details)),
            "/readyz" => Some(self.readyz_response(details)),
            "/startupz" => Some(self.startupz_response(details)),
            "/metrics" if details == Details::Full => Some(self.metrics_response()),
            _ => None,
        }
    }

    /// An axum router serving `/livez`, `/readyz`, `/startupz` and, with
    /// [`Details::Full`], `/metrics`. Merge it into the application's router, or
    /// serve it alone on an internal listener.
    pub fn router<S>(&self, details: Details) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let (live, ready, startup) = (self.clone(), self.clone(), self.clone());
        let router = Router::new()
            .route(
                "/livez",
                get(move || async move { live.livez_response(details) }),
            )
            .route(
                "/readyz",
                get(move || async move { ready.readyz_response(details) }),
            )
            .route(
                "/startupz",
                get(move || async move { startup.startupz_response(details) }),
            );
        match details {
            Details::Full => {
                let metrics = self.clone();
                router.route(
                    "/metrics",
                    get(move || async move { metrics.metrics_response() }),
                )
            }
            Details::Status => router,
        }
    }
}

/// Parses a health body as far as it can: a full report, or at least its status.
pub(crate) fn parse_report(body: &[u8]) -> Option<HealthReport> {
    serde_json::from_slice(body).ok()
}

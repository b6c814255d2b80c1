//! The `application/health+json` body (IETF draft-inadarei-api-health-check) as data.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The media type of every health body.
pub const HEALTH_JSON: &str = "application/health+json";

/// A health status, ordered from best to worst (`Pass < Warn < Fail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Healthy: HTTP 200.
    Pass,
    /// Healthy, with a problem worth a look (a shared dependency is down): HTTP 200.
    Warn,
    /// Unhealthy: HTTP 503.
    Fail,
}

impl Status {
    /// `"pass"`, `"warn"` or `"fail"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The HTTP status code of a probe answer with this status.
    pub fn http_status(self) -> http::StatusCode {
        match self {
            Status::Pass | Status::Warn => http::StatusCode::OK,
            Status::Fail => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A whole health body. Fields that are `None` or empty are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// The overall status.
    pub status: Status,
    /// The public version of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release of the service (a build or commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<String>,
    /// The service's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    /// A human-friendly description of the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why the status is `warn` or `fail`, e.g. `"draining"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Results by `"<componentId>:<measurement>"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checks: BTreeMap<String, Vec<CheckResult>>,
}

impl HealthReport {
    /// A report that carries nothing but `status`, what [`Details::Status`] answers.
    ///
    /// [`Details::Status`]: crate::Details::Status
    pub fn status_only(status: Status) -> Self {
        Self {
            status,
            version: None,
            release_id: None,
            service_id: None,
            description: None,
            output: None,
            checks: BTreeMap::new(),
        }
    }
}

/// The result of one component's measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// The component, e.g. `"postgres"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    /// `"datastore"`, `"component"`, `"system"` or another name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    /// The value measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_value: Option<serde_json::Value>,
    /// The unit of `observed_value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_unit: Option<String>,
    /// The component's status.
    pub status: Status,
    /// When it was measured, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// Why, in words: an error message, or what the component reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

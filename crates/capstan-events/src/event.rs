//! The wide event: one per request.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::expr::{Column, Field};

/// Error kinds the client caused, not the release that served it: a request
/// body that broke off or stalled (`client_body`), a request the client
/// left before its answer ended (`client_cancel`). Neither is an error of
/// the release ([`is_release_error`]), and the proxy's metrics count them
/// under kind `client`.
pub const CLIENT_ERROR_KINDS: [&str; 2] = ["client_body", "client_cancel"];

/// Whether the client's request body broke off or stalled (`client_body`):
/// such a request says nothing of the release, and a judge leaves it out
/// altogether, as a request and as a latency.
pub fn is_client_body(error: Option<&str>) -> bool {
    error == Some("client_body")
}

/// Whether an event with this status and error kind records an error of
/// the release that served it: a `5xx`, or any error kind but the client's
/// own ([`CLIENT_ERROR_KINDS`]). The one rule `error_rate`, the rollout's
/// judge and the dashboard count errors by.
pub fn is_release_error(status: u16, error: Option<&str>) -> bool {
    status >= 500 || error.is_some_and(|k| !CLIENT_ERROR_KINDS.contains(&k))
}

/// One request as the proxy (or an OTLP server or root span) saw it.
///
/// Text fields are [`CompactString`]s: values of up to 24 bytes (a service,
/// a release, a route, an address) are stored inline, so an event built on the
/// request path costs no allocation for them, and none to free on the writer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix time in milliseconds at which the request started.
    pub time_ms: i64,
    /// The service the request was for.
    pub service: CompactString,
    /// HTTP method.
    pub method: CompactString,
    /// Route template (`/api/chirps/{id}`), or the path when no template matched.
    pub route: CompactString,
    /// The request path.
    pub path: CompactString,
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
    pub release: CompactString,
    /// Upstream address or instance id.
    pub instance: CompactString,
    /// `internal`, or empty / `public`.
    pub cohort: CompactString,
    /// Hashed user key (never the raw key).
    pub user: Option<CompactString>,
    /// W3C trace id.
    pub trace_id: Option<CompactString>,
    /// Error kind: `connect`, `timeout`, `upstream_5xx`, ...
    pub error: Option<CompactString>,
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

/// A field's value in one event, as expressions see it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// A number column.
    Num(f64),
    /// A text column or a `fields` value.
    Str(&'a str),
    /// An unset optional column or an absent `fields` key.
    Missing,
}

impl Value<'_> {
    /// The value as text (numbers without a fraction print as integers).
    pub(crate) fn as_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::Num(n) => crate::expr::fmt_num(*n).into(),
            Value::Str(s) => (*s).into(),
            Value::Missing => "".into(),
        }
    }

    /// The value as a number, when it is one or a `fields` value that parses as
    /// a finite one (see [`parse_num`]).
    pub(crate) fn as_num(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            Value::Str(s) => parse_num(s),
            Value::Missing => None,
        }
    }
}

/// A `fields` value read as a number: trimmed, and only when it parses as a
/// finite one. Rust's float parser also takes `NaN`, `inf` and `1e999`; those
/// are text here, so they never turn a sum or a mean into NaN or infinity, never
/// compare greater than every number, and never stall the ordered walk of a
/// comparison.
pub(crate) fn parse_num(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

impl Event {
    /// The value of `field` in this event.
    pub(crate) fn value(&self, field: &Field) -> Value<'_> {
        fn opt(o: &Option<CompactString>) -> Value<'_> {
            match o {
                Some(s) => Value::Str(s.as_str()),
                None => Value::Missing,
            }
        }
        let mirror = |f: &dyn Fn(&MirrorComparison) -> Value<'static>| match &self.mirror {
            Some(m) => f(m),
            None => Value::Missing,
        };
        let b = |x: bool| Value::Str(if x { "true" } else { "false" });
        match field {
            Field::Custom(k) => match self.fields.get(k) {
                Some(v) => Value::Str(v),
                None => Value::Missing,
            },
            Field::Column(c) => match c {
                Column::TimeMs => Value::Num(self.time_ms as f64),
                Column::Service => Value::Str(&self.service),
                Column::Method => Value::Str(&self.method),
                Column::Route => Value::Str(&self.route),
                Column::Path => Value::Str(&self.path),
                Column::Status => Value::Num(f64::from(self.status)),
                Column::DurationMs => Value::Num(self.duration_ms),
                Column::UpstreamMs => self.upstream_ms.map_or(Value::Missing, Value::Num),
                Column::BytesIn => Value::Num(self.bytes_in as f64),
                Column::BytesOut => Value::Num(self.bytes_out as f64),
                Column::Release => Value::Str(&self.release),
                Column::Instance => Value::Str(&self.instance),
                Column::Cohort => Value::Str(&self.cohort),
                Column::User => opt(&self.user),
                Column::TraceId => opt(&self.trace_id),
                Column::Error => opt(&self.error),
                Column::MirrorStatusClassEqual => mirror(&|m| b(m.status_class_equal)),
                Column::MirrorBodyHashEqual => mirror(&|m| b(m.body_hash_equal)),
                Column::MirrorShadowStatus => mirror(&|m| Value::Num(f64::from(m.shadow_status))),
                Column::MirrorShadowMs => mirror(&|m| Value::Num(m.shadow_ms)),
            },
        }
    }
}

//! OTLP/HTTP receiver: `POST /v1/traces` (protobuf or JSON) stores the spans that
//! stand for a request a service received (server spans and root spans) as events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use compact_str::CompactString;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use tokio::sync::Semaphore;

use crate::{Event, NotQueued, Recorder};

mod count;
use count::{count_json, count_protobuf};

/// The largest request body the receiver reads by default: 4 MiB.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;

/// The most spans one export may carry, and the most resource and scope
/// groups (`resourceSpans`, `scopeSpans`). A body within the size limit can
/// hold two million empty spans of two bytes each, each some 280 bytes once
/// decoded and an event if kept: counted first, such a body is refused before
/// it is decoded. SDKs send far fewer: the OpenTelemetry SDK's batch span
/// processor 512 a batch, the Collector's batch processor 8,192.
const MAX_SPANS_PER_REQUEST: usize = 50_000;

/// How long a request waits for a decode slot before it is answered 503.
const DECODE_WAIT: Duration = Duration::from_secs(3);

#[derive(Clone)]
struct Receiver {
    recorder: Recorder,
    max_body: usize,
    /// One permit a core: how many bodies are inflated and decoded at once,
    /// so simultaneous large exports cannot multiply what decoding takes.
    decodes: Arc<Semaphore>,
    decode_wait: Duration,
}

/// The OTLP/HTTP trace receiver as a router to mount or serve: `POST /v1/traces`
/// with `application/x-protobuf` or `application/json`, bodies up to 4 MiB.
pub fn otlp_router(recorder: Recorder) -> Router {
    otlp_router_with_limit(recorder, DEFAULT_MAX_BODY)
}

/// [`otlp_router`] with another body size limit (bytes).
pub fn otlp_router_with_limit(recorder: Recorder, max_body: usize) -> Router {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    router(recorder, max_body, cores, DECODE_WAIT)
}

fn router(recorder: Recorder, max_body: usize, decodes: usize, decode_wait: Duration) -> Router {
    Router::new()
        .route("/v1/traces", post(export))
        .with_state(Receiver {
            recorder,
            max_body,
            decodes: Arc::new(Semaphore::new(decodes)),
            decode_wait,
        })
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Protobuf,
    Json,
}

/// `google.rpc.Status` without its `details`: what OTLP/HTTP answers an
/// error with, in the request's encoding. Defined here because the OTLP
/// messages crate does not carry the `google.rpc` package.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn reject(status: StatusCode, enc: Encoding, message: String) -> Response {
    // OTLP answers errors with a google.rpc.Status: {"code", "message"} in
    // JSON, the encoded message for protobuf, so an SDK logs the reason.
    let code = grpc_code(status);
    let (ctype, body) = match enc {
        Encoding::Json => (
            "application/json",
            serde_json::json!({ "code": code, "message": message })
                .to_string()
                .into_bytes(),
        ),
        Encoding::Protobuf => (
            "application/x-protobuf",
            RpcStatus { code, message }.encode_to_vec(),
        ),
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// A 503 with `Retry-After: 1`: OTLP exporters retry it.
fn retry_later(enc: Encoding, message: String) -> Response {
    let mut r = reject(StatusCode::SERVICE_UNAVAILABLE, enc, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn grpc_code(s: StatusCode) -> i32 {
    match s {
        StatusCode::BAD_REQUEST => 3,            // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,      // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,   // UNAVAILABLE
        StatusCode::INTERNAL_SERVER_ERROR => 13, // INTERNAL
        _ => 12,                                 // UNIMPLEMENTED
    }
}

async fn export(State(rx): State<Receiver>, headers: HeaderMap, body: Body) -> Response {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let enc = match ctype.as_str() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Encoding::Json,
                format!(
                    "content-type {other:?} is not OTLP/HTTP: send application/x-protobuf or application/json"
                ),
            )
        }
    };
    // Codings are case-insensitive; `x-gzip` is gzip (RFC 9110 §8.4.1.3).
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.as_bytes().trim_ascii().to_ascii_lowercase());
    let gzip = match coding.as_deref() {
        None | Some(b"identity") => false,
        Some(b"gzip" | b"x-gzip") => true,
        Some(other) => {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                enc,
                format!(
                    "content-encoding {:?} is not supported: send gzip or uncompressed bodies",
                    String::from_utf8_lossy(other)
                ),
            );
        }
    };
    let too_large = || {
        reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            format!("request body is larger than {} bytes", rx.max_body),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rx.max_body as u64) {
        return too_large();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, rx.max_body).await {
        Ok(b) => b,
        Err(e) => {
            // to_bytes fails on the limit or on a broken connection.
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                return too_large();
            }
            return reject(
                StatusCode::BAD_REQUEST,
                enc,
                format!("cannot read the request body: {e}"),
            );
        }
    };
    // Inflating, counting, decoding and building events take memory and CPU
    // in proportion to the body: only as many at once as there are cores.
    let Ok(Ok(_permit)) = tokio::time::timeout(rx.decode_wait, rx.decodes.acquire()).await else {
        return retry_later(
            enc,
            "the receiver is busy decoding other exports; retry later".into(),
        );
    };
    let bytes = if gzip {
        // The limit holds for what the body inflates to as well.
        let mut out = Vec::new();
        let mut inflate = std::io::Read::take(
            // Every member: a gzip body may be several concatenated.
            flate2::read::MultiGzDecoder::new(bytes.as_ref()),
            rx.max_body as u64 + 1,
        );
        if let Err(e) = std::io::Read::read_to_end(&mut inflate, &mut out) {
            return reject(
                StatusCode::BAD_REQUEST,
                enc,
                format!("the gzip body does not inflate: {e}"),
            );
        }
        if out.len() > rx.max_body {
            return too_large();
        }
        Bytes::from(out)
    } else {
        bytes
    };
    let counted = match enc {
        Encoding::Protobuf => count_protobuf(&bytes)
            .map_err(|e| format!("body is not an OTLP ExportTraceServiceRequest in protobuf: {e}")),
        Encoding::Json => count_json(&bytes)
            .map_err(|e| format!("body is not an OTLP ExportTraceServiceRequest in JSON: {e}")),
    };
    let counted = match counted {
        Ok(c) => c,
        Err(message) => return reject(StatusCode::BAD_REQUEST, enc, message),
    };
    if let Some(message) = counted.over_limit() {
        return reject(StatusCode::PAYLOAD_TOO_LARGE, enc, message);
    }
    let req = match enc {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(bytes.as_ref())
            .map_err(|e| format!("body is not an OTLP ExportTraceServiceRequest in protobuf: {e}")),
        Encoding::Json => serde_json::from_slice::<ExportTraceServiceRequest>(&bytes)
            .map_err(|e| format!("body is not an OTLP ExportTraceServiceRequest in JSON: {e}")),
    };
    let req = match req {
        Ok(r) => r,
        Err(message) => return reject(StatusCode::BAD_REQUEST, enc, message),
    };
    let events = request_span_events(&req);
    let capacity = rx.recorder.capacity();
    if events.len() > capacity {
        // Never fits, however long the sender waits: not a 503 to retry forever.
        return reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            enc,
            format!(
                "{} request spans (server or root spans) in one export, more than the event \
                 queue holds ({capacity}, `capstan events serve --queue`); send smaller \
                 batches or raise --queue",
                events.len()
            ),
        );
    }
    match rx.recorder.try_record_all(events) {
        Ok(()) => {}
        Err(NotQueued::Full) => {
            return retry_later(enc, "the event queue is full; retry later".into());
        }
        // Not a 503: no retry will ever be taken. The sender's log says why.
        Err(e @ NotQueued::WriterStopped) => {
            tracing::error!("OTLP export refused: {e}");
            return reject(
                StatusCode::INTERNAL_SERVER_ERROR,
                enc,
                format!("{e} (its thread ended abnormally; see this server's log and restart it)"),
            );
        }
    }
    let resp = ExportTraceServiceResponse {
        partial_success: None,
    };
    match enc {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            resp.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&resp).unwrap_or_else(|_| b"{}".to_vec()),
        )
            .into_response(),
    }
}

fn any_to_string(v: &AnyValue) -> Option<String> {
    Some(match v.value.as_ref()? {
        Any::StringValue(s) => s.clone(),
        Any::BoolValue(b) => b.to_string(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(d) => crate::expr::fmt_num(*d),
        Any::BytesValue(b) => hex(b),
        Any::ArrayValue(a) => {
            let items: Vec<String> = a.values.iter().filter_map(any_to_string).collect();
            serde_json::to_string(&items).unwrap_or_default()
        }
        Any::KvlistValue(kv) => {
            let m: BTreeMap<&str, String> = kv
                .values
                .iter()
                .filter_map(|k| Some((k.key.as_str(), any_to_string(k.value.as_ref()?)?)))
                .collect();
            serde_json::to_string(&m).unwrap_or_default()
        }
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

fn attrs(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .filter_map(|kv| Some((kv.key.clone(), any_to_string(kv.value.as_ref()?)?)))
        .collect()
}

/// Lowercase hex of `b`.
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether a span stands for a request, and so becomes an event: it is a
/// server span (the service received a request), or it has no parent (the
/// trace starts there). A server span behind `capstan proxy`, or behind any
/// caller that propagates a traceparent, always has a parent: keeping root
/// spans only would store nothing of such a service.
fn is_request_span(span: &Span) -> bool {
    span.parent_span_id.is_empty() || span.kind == SpanKind::Server as i32
}

/// The events of an export request: one per span that stands for a request,
/// a server span or a root span (no parent span id); other spans (a
/// database call, an internal step) are left out.
pub fn request_span_events(req: &ExportTraceServiceRequest) -> Vec<Event> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let res = rs
            .resource
            .as_ref()
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in ss.spans.iter().filter(|s| is_request_span(s)) {
                out.push(span_event(&res, span));
            }
        }
    }
    out
}

/// A path or route without its query string or fragment (`None` if nothing is
/// left). The older `http.target` carries the query (`/search?q=abc&token=x`):
/// kept, every query string would be a route and a rollup dimension of its own,
/// and tokens in it would be stored.
fn without_query(mut s: String) -> Option<String> {
    cut_query(&mut s);
    (!s.is_empty()).then_some(s)
}

/// Cuts `s` at its query string or fragment, if it has one.
fn cut_query(s: &mut String) {
    if let Some(i) = s.find(['?', '#']) {
        s.truncate(i);
    }
}

fn span_event(res: &BTreeMap<String, String>, span: &Span) -> Event {
    let mut fields = attrs(&span.attributes);
    // The query string goes from the URL attributes that carry it too:
    // `url.query` is dropped, `url.full` and `http.url` keep the URL without it.
    fields.remove("url.query");
    for k in ["url.full", "http.url"] {
        if let Some(v) = fields.get_mut(k) {
            cut_query(v);
        }
    }
    let mut take = |keys: &[&str]| -> Option<String> {
        let mut found = None;
        for k in keys {
            if let Some(v) = fields.remove(*k) {
                found.get_or_insert(v);
            }
        }
        found
    };
    let method = take(&["http.request.method", "http.method"]).unwrap_or_default();
    let route = take(&["http.route"]).and_then(without_query);
    let path = take(&["url.path", "http.target"]).and_then(without_query);
    let status = take(&["http.response.status_code", "http.status_code"])
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    let bytes_in = take(&["http.request.body.size", "http.request_content_length"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let bytes_out = take(&["http.response.body.size", "http.response_content_length"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let start = span.start_time_unix_nano;
    let end = span.end_time_unix_nano.max(start);
    let error = span.status.as_ref().and_then(|s| {
        (s.code == SpanStatus::Error as i32).then(|| {
            if s.message.is_empty() {
                "span_error".to_string()
            } else {
                s.message.clone()
            }
        })
    });
    fields.insert("span.name".into(), span.name.clone());
    let route = route
        .or_else(|| path.clone())
        .unwrap_or_else(|| span.name.clone());
    Event {
        time_ms: (start / 1_000_000) as i64,
        service: res.get("service.name").cloned().unwrap_or_default().into(),
        method: method.into(),
        path: path.unwrap_or_else(|| route.clone()).into(),
        route: route.into(),
        status,
        duration_ms: (end - start) as f64 / 1e6,
        upstream_ms: None,
        bytes_in,
        bytes_out,
        release: res
            .get("service.version")
            .cloned()
            .unwrap_or_default()
            .into(),
        instance: res
            .get("service.instance.id")
            .or_else(|| res.get("host.name"))
            .cloned()
            .unwrap_or_default()
            .into(),
        cohort: CompactString::default(),
        user: None,
        trace_id: (!span.trace_id.is_empty()).then(|| hex(&span.trace_id).into()),
        error: error.map(Into::into),
        mirror: None,
        fields,
    }
}

#[cfg(test)]
mod tests {

    use axum::http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    use super::*;

    /// A writer thread that has died has dropped its end of the queue: an
    /// export is refused with a 500 that says so, not a 503 to retry forever.
    #[tokio::test]
    async fn an_export_after_the_writer_died_is_a_500_naming_it() {
        let recorder = stopped_recorder();
        assert_eq!(
            recorder.try_record_all(vec![Event::default()]),
            Err(NotQueued::WriterStopped)
        );
        // A batch over the capacity is refused for the same reason, not as "full".
        assert_eq!(
            recorder.try_record_all(vec![Event::default(); 9]),
            Err(NotQueued::WriterStopped)
        );
        let body = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [
            {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "name": "GET /", "kind": 2,
             "startTimeUnixNano": "1790000000000000000",
             "endTimeUnixNano": "1790000000001000000"}]}]}]});
        let resp = otlp_router(recorder)
            .oneshot(
                Request::post("/v1/traces")
                    .header("content-type", "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["code"], 13);
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("event writer has stopped"), "{msg}");
    }
    /// A recorder whose writer has stopped, for answers given before it is used.
    fn stopped_recorder() -> Recorder {
        let (tx, _) = tokio::sync::mpsc::channel::<Event>(8);
        Recorder {
            tx,
            counters: Arc::default(),
        }
    }

    /// When every decode slot stays taken for the whole wait, the export is
    /// answered 503 with `Retry-After`, as when the queue is full.
    #[tokio::test]
    async fn an_export_waiting_too_long_for_a_decode_is_a_503_to_retry() {
        let app = router(
            stopped_recorder(),
            DEFAULT_MAX_BODY,
            0,
            Duration::from_millis(50),
        );
        let resp = app
            .oneshot(
                Request::post("/v1/traces")
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["code"], 14);
        assert!(v["message"].as_str().unwrap().contains("busy"), "{v}");
    }
}

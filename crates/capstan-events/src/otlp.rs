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
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use tokio::sync::Semaphore;

use crate::{Event, NotQueued, Recorder};

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

/// What an export carries, counted before it is decoded.
#[derive(Debug, Default, PartialEq)]
struct Counted {
    spans: usize,
    /// `ResourceSpans` and `ScopeSpans`: empty ones are two bytes of
    /// protobuf too, and some 100 bytes decoded.
    groups: usize,
}

impl Counted {
    /// Why an export this size is refused, if it is.
    fn over_limit(&self) -> Option<String> {
        let max = MAX_SPANS_PER_REQUEST;
        if self.spans > max {
            Some(format!(
                "{} spans in one export, more than the {max} a request may carry; \
                 send smaller batches",
                self.spans
            ))
        } else if self.groups > max {
            Some(format!(
                "{} resource and scope span groups in one export, more than the {max} \
                 a request may carry; send smaller batches",
                self.groups
            ))
        } else {
            None
        }
    }
}

// Counting protobuf by hand: prost decodes a message whole, into its types,
// and has no way to count a repeated field's elements without decoding
// them. These few functions walk the wire format (keys, varints, lengths)
// and allocate nothing. Their errors are the decoder's for the same bytes.

/// A base-128 varint from the front of `buf`.
fn varint(buf: &mut &[u8]) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = buf.split_first().ok_or("buffer underflow")?;
        *buf = rest;
        if i == 9 && b > 1 {
            break; // more than 64 bits
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("invalid varint")
}

/// A field's key from the front of `buf`: its number and wire type.
fn key(buf: &mut &[u8]) -> Result<(u64, u8), String> {
    let key = varint(buf)?;
    if key > u64::from(u32::MAX) {
        return Err(format!("invalid key value: {key}"));
    }
    let wire = (key & 7) as u8;
    if wire > 5 {
        return Err(format!("invalid wire type value: {wire}"));
    }
    if key >> 3 == 0 {
        return Err("invalid tag value: 0".into());
    }
    Ok((key >> 3, wire))
}

/// The bytes of a length-delimited field whose length is at the front of `buf`.
fn delimited<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], &'static str> {
    let len = varint(buf)?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= buf.len())
        .ok_or("buffer underflow")?;
    let (bytes, rest) = buf.split_at(len);
    *buf = rest;
    Ok(bytes)
}

/// Skips the value of field `number` of wire type `wire` (a group whole,
/// nested up to prost's recursion limit of 100).
fn skip(number: u64, wire: u8, buf: &mut &[u8], depth: u32) -> Result<(), String> {
    let fixed = |buf: &mut &[u8], n: usize| {
        *buf = buf.get(n..).ok_or("buffer underflow")?;
        Ok::<_, String>(())
    };
    match wire {
        0 => varint(buf).map(drop)?,
        1 => fixed(buf, 8)?,
        2 => delimited(buf).map(drop)?,
        3 => loop {
            if depth >= 100 {
                return Err("recursion limit reached".into());
            }
            let (n, w) = key(buf)?;
            if w == 4 {
                if n != number {
                    return Err("unexpected end group tag".into());
                }
                break;
            }
            skip(n, w, buf, depth + 1)?;
        },
        4 => return Err("unexpected end group tag".into()),
        _ => fixed(buf, 4)?,
    }
    Ok(())
}

/// Calls `each` with the bytes of every element of the repeated message
/// field `number` of the message `msg`, skipping its other fields.
fn each_element(
    mut msg: &[u8],
    number: u64,
    mut each: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    while !msg.is_empty() {
        let (n, wire) = key(&mut msg)?;
        if n != number {
            skip(n, wire, &mut msg, 0)?;
        } else if wire == 2 {
            each(delimited(&mut msg)?)?;
        } else {
            return Err(format!(
                "invalid wire type value {wire} for field {n} (expected 2, length-delimited)"
            ));
        }
    }
    Ok(())
}

/// Counts the spans of a protobuf `ExportTraceServiceRequest` without
/// decoding it: `resource_spans` (1) → `scope_spans` (2) → `spans` (2).
fn count_protobuf(body: &[u8]) -> Result<Counted, String> {
    let mut c = Counted::default();
    each_element(body, 1, |resource| {
        c.groups += 1;
        each_element(resource, 2, |scope| {
            c.groups += 1;
            each_element(scope, 2, |_span| {
                c.spans += 1;
                Ok(())
            })
        })
    })?;
    Ok(c)
}

/// Counts the spans of an OTLP/JSON `ExportTraceServiceRequest` without
/// decoding it: `resourceSpans[].scopeSpans[].spans[]`, every other value
/// skipped as [`IgnoredAny`], nothing allocated a span. The names are the
/// decoder's (camelCase only: it ignores `resource_spans` as an unknown
/// field, and so does the count).
fn count_json(body: &[u8]) -> Result<Counted, serde_json::Error> {
    let mut c = Counted::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    Message {
        level: Level::Request,
        counted: &mut c,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(c)
}

/// A message on the way to the spans, and the field of it that leads there.
#[derive(Clone, Copy)]
enum Level {
    Request,
    ResourceSpans,
    ScopeSpans,
}

impl Level {
    /// The message's name, its fields in order (serde takes a struct as a
    /// map or as an array of its fields), and the index of the one to follow.
    fn shape(self) -> (&'static str, &'static [&'static str], usize) {
        match self {
            Level::Request => ("ExportTraceServiceRequest", &["resourceSpans"], 0),
            Level::ResourceSpans => ("ResourceSpans", &["resource", "scopeSpans", "schemaUrl"], 1),
            Level::ScopeSpans => ("ScopeSpans", &["scope", "spans", "schemaUrl"], 1),
        }
    }

    /// What the followed field holds a list of (`None`: spans).
    fn inner(self) -> Option<Level> {
        match self {
            Level::Request => Some(Level::ResourceSpans),
            Level::ResourceSpans => Some(Level::ScopeSpans),
            Level::ScopeSpans => None,
        }
    }
}

/// Counts within one message at `level`.
struct Message<'c> {
    level: Level,
    counted: &'c mut Counted,
}

/// Counts the elements of a list of `level` messages (`None`: of spans).
struct List<'c> {
    level: Option<Level>,
    counted: &'c mut Counted,
}

/// Whether a map key is `name`.
struct KeyIs(&'static str);

impl<'de> DeserializeSeed<'de> for KeyIs {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeyIs {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("field identifier")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let (name, fields, _) = self.level.shape();
        d.deserialize_struct(name, fields, self)
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "struct {}", self.level.shape().0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (_, fields, follow) = self.level.shape();
        let mut seen = false;
        while let Some(is_followed) = map.next_key_seed(KeyIs(fields[follow]))? {
            if !is_followed {
                map.next_value::<IgnoredAny>()?;
            } else if seen {
                return Err(de::Error::duplicate_field(fields[follow]));
            } else {
                seen = true;
                map.next_value_seed(List {
                    level: self.level.inner(),
                    counted: &mut *self.counted,
                })?;
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (_, _, follow) = self.level.shape();
        for i in 0.. {
            let more = if i == follow {
                seq.next_element_seed(List {
                    level: self.level.inner(),
                    counted: &mut *self.counted,
                })?
                .is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                break;
            }
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for List<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for List<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        match self.level {
            None => {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    self.counted.spans += 1;
                }
            }
            Some(level) => {
                while seq
                    .next_element_seed(Message {
                        level,
                        counted: &mut *self.counted,
                    })?
                    .is_some()
                {
                    self.counted.groups += 1;
                }
            }
        }
        Ok(())
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

    /// A request with spans, attributes, a resource and unknown fields of
    /// every wire type, as prost writes it and as serde writes it.
    fn sample() -> ExportTraceServiceRequest {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Any::StringValue(v.into())),
            }),
            ..Default::default()
        };
        let span = |n: u8| Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            name: format!("span {n}"),
            kind: 2,
            start_time_unix_nano: 1_790_000_000_000_000_000,
            end_time_unix_nano: 1_790_000_000_001_000_000,
            attributes: vec![kv("http.route", "/a")],
            ..Default::default()
        };
        let scope = |spans: Vec<Span>| ScopeSpans {
            spans,
            schema_url: "s".into(),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", "svc")],
                        ..Default::default()
                    }),
                    scope_spans: vec![scope(vec![span(1), span(2)]), scope(vec![])],
                    schema_url: "u".into(),
                },
                ResourceSpans {
                    scope_spans: vec![scope(vec![span(3)])],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn the_counts_are_what_the_decoders_find() {
        let want = Counted {
            spans: 3,
            groups: 5,
        };
        let req = sample();
        let mut pb = req.encode_to_vec();
        assert_eq!(count_protobuf(&pb).unwrap(), want);
        // Unknown fields of each wire type, a group among them, are skipped
        // by both.
        pb.extend_from_slice(&[0x78, 0x05]); // 15, varint
        pb.extend_from_slice(&[0x81, 0x01, 1, 2, 3, 4, 5, 6, 7, 8]); // 16, fixed64
        pb.extend_from_slice(&[0x8d, 0x01, 1, 2, 3, 4]); // 17, fixed32
        pb.extend_from_slice(&[0x93, 0x01, 0x08, 0x01, 0x94, 0x01]); // 18, a group
        assert_eq!(
            ExportTraceServiceRequest::decode(pb.as_slice()).unwrap(),
            req
        );
        assert_eq!(count_protobuf(&pb).unwrap(), want);

        let json = serde_json::to_vec(&req).unwrap();
        assert_eq!(count_json(&json).unwrap(), want);
        // serde also takes a struct as the array of its fields.
        let arrays = br#"[[null, [[null, [{}, {}], ""]], ""], {"scopeSpans": []}]"#;
        let mut as_array = br#"{"resourceSpans": "#.to_vec();
        as_array.extend_from_slice(arrays);
        as_array.push(b'}');
        let decoded: ExportTraceServiceRequest = serde_json::from_slice(&as_array).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 2);
        assert_eq!(
            count_json(&as_array).unwrap(),
            Counted {
                spans: 2,
                groups: 3
            }
        );
    }

    /// Bytes the decoder refuses are refused by the count too.
    #[test]
    fn what_the_decoders_refuse_the_counts_refuse() {
        let pb = sample().encode_to_vec();
        // Cut anywhere but between two resources, the first length runs
        // past the end.
        for cut in 1..pb.len() {
            let part = &pb[..cut];
            assert_eq!(
                count_protobuf(part).is_err(),
                ExportTraceServiceRequest::decode(part).is_err(),
                "cut at {cut}"
            );
        }
        for bad in [
            &[0xff, 0xff, 0xff, 0x01][..], // wire type 7
            &[0x0a, 0x05, 0x12],           // length past the end
            &[0x08, 0x01],                 // resource_spans as a varint
            &[0x00],                       // field 0
            &[0x0c],                       // an end group with no start
            &[0x0b, 0x08],                 // a group never ended
            &[
                0x78, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ], // varint overflow
        ] {
            assert!(ExportTraceServiceRequest::decode(bad).is_err(), "{bad:?}");
            assert!(count_protobuf(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &br#"{"resourceSpans": 7}"#[..],
            br#"{"resourceSpans": null}"#,
            br#"{"resourceSpans": [], "resourceSpans": []}"#,
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": {}}]}]}"#,
            br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}"#,
            br#"{} {}"#,
            br#"7"#,
        ] {
            let text = String::from_utf8_lossy(bad);
            assert!(
                serde_json::from_slice::<ExportTraceServiceRequest>(bad).is_err(),
                "{text}"
            );
            assert!(count_json(bad).is_err(), "{text}");
        }
    }

    /// Empty resource and scope groups are bounded as spans are.
    #[test]
    fn too_many_empty_groups_are_over_the_limit() {
        let body = b"\x0a\x00".repeat(MAX_SPANS_PER_REQUEST + 1);
        let c = count_protobuf(&body).unwrap();
        assert_eq!(c.spans, 0);
        let msg = c.over_limit().unwrap();
        assert!(
            msg.contains("50001 resource and scope span groups"),
            "{msg}"
        );
        assert!(count_protobuf(&body[2..]).unwrap().over_limit().is_none());
    }
}

//! The OTLP/HTTP receiver: spans from the official Rust exporter are stored and
//! queryable; garbage, oversized and mistyped bodies are refused and store nothing.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use capstan_events::{otlp_router, otlp_router_with_limit, Expr, Store};
use common::temp_store;
use http_body_util::BodyExt as _;
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use tower::ServiceExt as _;

/// Sends `n` requests' worth of spans (a root span with an HTTP status and a child)
/// with the official exporter, from a plain thread as the SDK's blocking client wants.
fn export_with_official_exporter(endpoint: String, protocol: Protocol, n: usize) {
    std::thread::spawn(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("chirpy")
                    .with_attribute(KeyValue::new("service.version", "2.0.0"))
                    .build(),
            )
            .build();
        let tracer = provider.tracer("capstan-test");
        for i in 0..n {
            let mut root = tracer.start("GET /api/chirps/{id}");
            root.set_attribute(KeyValue::new("http.request.method", "GET"));
            root.set_attribute(KeyValue::new("http.route", "/api/chirps/{id}"));
            root.set_attribute(KeyValue::new("url.path", format!("/api/chirps/{i}")));
            root.set_attribute(KeyValue::new(
                "http.response.status_code",
                if i % 4 == 0 { 500 } else { 200 },
            ));
            root.set_attribute(KeyValue::new("plan", "pro"));
            let cx = opentelemetry::Context::current_with_span(root);
            let mut child = tracer.start_with_context("SELECT chirps", &cx);
            child.set_attribute(KeyValue::new("db.system", "postgresql"));
            child.end();
            drop(cx);
        }
        provider.shutdown().unwrap();
    })
    .join()
    .unwrap();
}

/// A receiver on loopback writing into `store`: its endpoint, its writer
/// task, and a handle on its recorder (for its counters).
async fn serve(
    store: &Store,
) -> (
    String,
    capstan_events::RecorderTask,
    capstan_events::Recorder,
) {
    let (rec, task) = store.clone().spawn_recorder(10_000);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = rec.clone();
    tokio::spawn(async move { axum::serve(listener, otlp_router(served)).await });
    (format!("http://{addr}/v1/traces"), task, rec)
}

async fn wait_for_count(store: &Store, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.count().unwrap() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} events stored",
            store.count().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn official_exporter_spans_are_stored_and_queryable(protocol: Protocol) {
    let (_dir, store) = temp_store();
    let (endpoint, _task, rec) = serve(&store).await;
    let before = std::time::SystemTime::now();
    tokio::task::spawn_blocking(move || export_with_official_exporter(endpoint, protocol, 8))
        .await
        .unwrap();
    wait_for_count(&store, 8).await;
    // The children (internal spans) do not become events: every request
    // was answered once its events were queued, and once all the queued
    // ones are written there are still 8.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rec.stored() + rec.failed() < rec.recorded() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue written within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec.recorded(), 8);
    assert_eq!(store.count().unwrap(), 8);
    let events = store.events_after(0, 100).unwrap();
    let e = &events[1].event;
    assert_eq!(e.service, "chirpy");
    assert_eq!(e.release, "2.0.0");
    assert_eq!(e.method, "GET");
    assert_eq!(e.route, "/api/chirps/{id}");
    assert_eq!(e.path, "/api/chirps/1");
    assert_eq!(e.status, 200);
    assert_eq!(e.fields.get("plan").map(String::as_str), Some("pro"));
    assert_eq!(e.trace_id.as_ref().map(|t| t.len()), Some(32));
    assert!(e.duration_ms >= 0.0 && e.duration_ms < 10_000.0);
    let since = before
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1000;
    assert!(e.time_ms >= since);
    let q = capstan_events::Query {
        filter: Expr::parse(r#"service = "chirpy" and status >= 500 and plan = "pro""#).unwrap(),
        group_by: vec![],
        calcs: capstan_events::Calc::parse_list("count").unwrap(),
        from_ms: since,
        to_ms: since + 3_600_000,
    };
    assert_eq!(store.query(&q).unwrap().rows[0].values[0], Some(2.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_exporter_protobuf_spans_are_stored_and_queryable() {
    official_exporter_spans_are_stored_and_queryable(Protocol::HttpBinary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_exporter_json_spans_are_stored_and_queryable() {
    official_exporter_spans_are_stored_and_queryable(Protocol::HttpJson).await;
}

async fn post(app: axum::Router, ctype: &str, body: Vec<u8>) -> (StatusCode, String) {
    post_coded(app, ctype, None, body).await
}

/// Posts `body` to the receiver with a content type and, if given, a
/// content coding; the status and the body (as text).
async fn post_coded(
    app: axum::Router,
    ctype: &str,
    coding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, String) {
    let mut req = Request::post("/v1/traces").header("content-type", ctype);
    if let Some(c) = coding {
        req = req.header("content-encoding", c);
    }
    let resp = app
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn garbage_oversized_and_mistyped_bodies_are_refused_and_store_nothing() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(100);
    let app = otlp_router_with_limit(rec.clone(), 1024);

    // A protobuf request's error is a protobuf google.rpc.Status.
    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .body(Body::from(vec![0xff, 0xff, 0xff, 0x01]))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let status = <common::RpcStatus as prost::Message>::decode(bytes).unwrap();
    assert_eq!(status.code, 3);
    assert!(
        status
            .message
            .contains("not an OTLP ExportTraceServiceRequest in protobuf"),
        "{status:?}"
    );

    let (s, msg) = post(
        app.clone(),
        "application/json",
        b"{\"resourceSpans\": 7}".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(v["code"], 3);
    assert!(v["message"].as_str().unwrap().contains("in JSON"), "{msg}");

    let (s, msg) = post(app.clone(), "application/json", vec![b' '; 2048]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(msg.contains("larger than 1024 bytes"), "{msg}");

    // Without a content-length (streamed), the limit still holds.
    let stream = futures_stream(vec![vec![b' '; 700], vec![b' '; 700]]);
    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/traces")
                .header("content-type", "application/x-protobuf")
                .body(stream)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let (s, msg) = post(app.clone(), "text/plain", b"hello".to_vec()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        msg.contains("application/x-protobuf or application/json"),
        "{msg}"
    );

    // A valid empty request is accepted.
    let (s, msg) = post(app.clone(), "application/json", b"{}".to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{msg}");

    drop(app);
    drop(rec);
    task.shutdown().await.unwrap();
    assert_eq!(store.count().unwrap(), 0);
}

fn futures_stream(chunks: Vec<Vec<u8>>) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for c in chunks {
            if tx.send(Ok(c.into())).await.is_err() {
                break;
            }
        }
    });
    Body::from_stream(tokio_stream_from(rx))
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// OTLP/JSON as the Go and Python SDKs write it: nanoseconds and ints as strings,
/// older semantic conventions, a child span that must not become an event.
#[tokio::test]
async fn otlp_json_from_other_sdks_maps_to_events() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(100);
    let start_ms = a_minute_ago_ms();
    let ns = |ms: i64, extra: i64| (ms as i128 * 1_000_000 + extra as i128).to_string();
    let body = serde_json::json!({"resourceSpans": [{
    "resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "billing"}},
        {"key": "service.version", "value": {"stringValue": "3.1.0"}},
        {"key": "host.name", "value": {"stringValue": "web-1"}}]},
    "scopeSpans": [{"scope": {"name": "otelhttp"}, "spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "name": "POST /invoices", "kind": 2,
         "startTimeUnixNano": ns(start_ms, 0), "endTimeUnixNano": ns(start_ms, 250_000_000),
         "attributes": [
            {"key": "http.method", "value": {"stringValue": "POST"}},
            {"key": "http.target", "value": {"stringValue": "/invoices?x=1"}},
            {"key": "http.status_code", "value": {"intValue": "502"}},
            {"key": "customer.tier", "value": {"stringValue": "gold"}},
            {"key": "retries", "value": {"intValue": 2}}],
         "status": {"code": 2, "message": "upstream failed"}},
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175",
         "parentSpanId": "eee19b7ec3c1b174", "name": "SELECT",
         "startTimeUnixNano": ns(start_ms, 10_000_000), "endTimeUnixNano": ns(start_ms, 20_000_000)}
    ]}]}]});
    let app = otlp_router(rec.clone());
    let (s, msg) = post(
        app.clone(),
        "application/json; charset=utf-8",
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{msg}");
    drop(app);
    drop(rec);
    task.shutdown().await.unwrap();
    let got = store.events_after(0, 10).unwrap();
    assert_eq!(got.len(), 1);
    let e = &got[0].event;
    assert_eq!(e.time_ms, start_ms);
    assert_eq!(e.duration_ms, 250.0);
    assert_eq!(
        (e.service.as_str(), e.release.as_str(), e.instance.as_str()),
        ("billing", "3.1.0", "web-1")
    );
    assert_eq!(
        (e.method.as_str(), e.path.as_str(), e.route.as_str()),
        ("POST", "/invoices", "/invoices")
    );
    assert_eq!(e.status, 502);
    assert_eq!(e.error.as_deref(), Some("upstream failed"));
    assert_eq!(
        e.trace_id.as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    assert_eq!(
        e.fields.get("customer.tier").map(String::as_str),
        Some("gold")
    );
    assert_eq!(e.fields.get("retries").map(String::as_str), Some("2"));
    assert_eq!(
        e.fields.get("span.name").map(String::as_str),
        Some("POST /invoices")
    );
    assert!(!e.fields.contains_key("http.status_code"));
}

/// An export with more request spans than the whole queue holds is refused for
/// good (413, naming `--queue`), not with a 503 its sender would retry
/// forever; one that fits is stored.
#[tokio::test]
async fn an_export_larger_than_the_queue_is_refused_naming_the_flag() {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(3);
    let start_ms = a_minute_ago_ms();
    let export = |n: usize| {
        let spans: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "traceId": format!("{:032x}", i + 1), "spanId": format!("{:016x}", i + 1),
                    "name": "GET /", "kind": 2,
                    "startTimeUnixNano": (start_ms as i128 * 1_000_000).to_string(),
                    "endTimeUnixNano": (start_ms as i128 * 1_000_000 + 1_000_000).to_string()})
            })
            .collect();
        serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
            .to_string()
            .into_bytes()
    };
    let app = otlp_router(rec.clone());
    let (s, msg) = post(app.clone(), "application/json", export(4)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{msg}");
    assert!(
        msg.contains("4 request spans") && msg.contains("--queue"),
        "{msg}"
    );
    let (s, msg) = post(app.clone(), "application/json", export(3)).await;
    assert_eq!(s, StatusCode::OK, "{msg}");
    drop(app);
    drop(rec);
    task.shutdown().await.unwrap();
    assert_eq!(store.count().unwrap(), 3);
}

/// A whole second about a minute ago, in ms: recent enough that the writer
/// prunes nothing of it (it deletes raw events older than 7 days).
fn a_minute_ago_ms() -> i64 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        / 1000
        - 60)
        * 1000
}

/// Posts one JSON export of `spans` (span objects of service `svc`) to a
/// receiver whose queue holds `capacity` events, and
/// returns its status, its body and the events stored.
async fn export_spans(
    capacity: usize,
    spans: Vec<serde_json::Value>,
) -> (StatusCode, String, Vec<capstan_events::Event>) {
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(capacity);
    let body = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": spans}]}]});
    let app = otlp_router(rec.clone());
    let (s, msg) = post(app, "application/json", body.to_string().into_bytes()).await;
    drop(rec);
    task.shutdown().await.unwrap();
    let events = store
        .events_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|se| se.event)
        .collect();
    (s, msg, events)
}

/// A span of `kind` (1 internal, 2 server, 3 client) with these attributes,
/// the `n`th of its trace, under `parent` when given.
fn span(n: u64, kind: i32, parent: Option<u64>, attrs: &[(&str, &str)]) -> serde_json::Value {
    let start = a_minute_ago_ms() as i128 * 1_000_000 + n as i128;
    let mut s = serde_json::json!({
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": format!("{n:016x}"),
        "name": format!("span {n}"), "kind": kind,
        "startTimeUnixNano": start.to_string(),
        "endTimeUnixNano": (start + 2_000_000).to_string(),
        "attributes": attrs.iter().map(|(k, v)| serde_json::json!(
            {"key": k, "value": {"stringValue": v}})).collect::<Vec<_>>()});
    if let Some(p) = parent {
        s["parentSpanId"] = format!("{p:016x}").into();
    }
    s
}

/// The older `http.target` holds the query string: path and route stop
/// before it, so a query is neither a route of its own nor a stored token.
#[tokio::test]
async fn query_strings_and_fragments_are_cut_from_path_and_route() {
    let (s, msg, mut got) = export_spans(
        10,
        vec![
            span(1, 2, None, &[("http.target", "/search?q=abc&token=x")]),
            span(2, 2, None, &[("http.target", "/docs/intro#setup")]),
            span(
                3,
                2,
                None,
                &[("http.route", "/items/{id}?v=2"), ("url.path", "/items/7")],
            ),
            // The newer conventions: the query in attributes of its own.
            span(
                4,
                2,
                None,
                &[
                    ("url.path", "/login"),
                    ("url.query", "token=x"),
                    ("url.full", "https://a.example/login?token=x"),
                    ("http.url", "https://a.example/login?token=x#top"),
                ],
            ),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{msg}");
    got.sort_by_key(|e| e.time_ms);
    let paths: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.path.as_str(), e.route.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("/search", "/search"),
            ("/docs/intro", "/docs/intro"),
            ("/items/7", "/items/{id}"),
            ("/login", "/login")
        ]
    );
    assert_eq!(got[3].fields["url.full"], "https://a.example/login");
    assert_eq!(got[3].fields["http.url"], "https://a.example/login");
    assert!(!got[3].fields.contains_key("url.query"));
    for e in &got {
        assert!(
            e.fields.values().all(|v| !v.contains("token")),
            "{:?}",
            e.fields
        );
    }
}

/// Behind `capstan proxy` (or any caller that sends a traceparent) a service's
/// server span has a parent: it is stored all the same, and counts against the
/// queue; a client or internal span under it is not stored.
#[tokio::test]
async fn server_spans_with_a_parent_are_stored_as_requests() {
    let proxied = |n: u64| {
        vec![
            span(n, 2, Some(0xabc), &[("http.route", "/api/chirps/{id}")]),
            span(n + 1, 3, Some(n), &[("http.url", "http://db/x")]),
            span(n + 2, 1, Some(n), &[]),
        ]
    };
    let (s, msg, got) = export_spans(10, proxied(1)).await;
    assert_eq!(s, StatusCode::OK, "{msg}");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].route, "/api/chirps/{id}");
    assert_eq!(got[0].service, "svc");
    assert_eq!(
        got[0].fields.get("span.name").map(String::as_str),
        Some("span 1")
    );

    // Two such requests do not fit a queue of one: refused whole, naming the flag.
    let mut two = proxied(1);
    two.extend(proxied(10));
    let (s, msg, got) = export_spans(1, two).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{msg}");
    assert!(msg.contains("2 request spans"), "{msg}");
    assert!(got.is_empty());
}

/// A gzip body (the Collector's otlphttp exporter compresses by default) is
/// inflated and stored; what it inflates to is held to the size limit, a
/// body that does not inflate is a 400, and another coding a 415.
#[tokio::test]
async fn gzip_bodies_are_inflated_within_the_limit() {
    use std::io::Write;
    let gzip = |bytes: &[u8]| {
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(bytes).unwrap();
        z.finish().unwrap()
    };
    let send = |app: axum::Router, coding: &'static str, body: Vec<u8>| {
        post_coded(app, "application/json", Some(coding), body)
    };
    let (_dir, store) = temp_store();
    let (rec, task) = store.clone().spawn_recorder(100);
    let app = otlp_router_with_limit(rec.clone(), 1024);
    let export = serde_json::json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
        "scopeSpans": [{"spans": [span(1, 2, Some(9), &[("http.route", "/zipped")])]}]}]});
    let (s, msg) = send(app.clone(), "gzip", gzip(export.to_string().as_bytes())).await;
    assert_eq!(s, StatusCode::OK, "{msg}");
    // The coding's name in any case, or `x-gzip`; a body of two gzip
    // members is inflated whole.
    let text = export.to_string().replace("/zipped", "/members");
    let (head, tail) = text.split_at(text.len() / 2);
    let mut two = gzip(head.as_bytes());
    two.extend(gzip(tail.as_bytes()));
    let (s, msg) = send(app.clone(), "X-GZip", two).await;
    assert_eq!(s, StatusCode::OK, "{msg}");

    // 2,048 bytes inflated from a few dozen: over the 1,024-byte limit.
    let bomb = gzip(&[b' '; 2048]);
    assert!(bomb.len() < 1024);
    let (s, msg) = send(app.clone(), "gzip", bomb).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{msg}");
    let (s, msg) = send(app.clone(), "gzip", b"not gzip at all".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("does not inflate"), "{msg}");
    let (s, msg) = send(app.clone(), "br", export.to_string().into_bytes()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{msg}");

    drop(app);
    drop(rec);
    task.shutdown().await.unwrap();
    let stored = store.events_after(0, 10).unwrap();
    let routes: Vec<_> = stored.iter().map(|s| s.event.route.as_str()).collect();
    assert_eq!(routes, ["/zipped", "/members"]);
}

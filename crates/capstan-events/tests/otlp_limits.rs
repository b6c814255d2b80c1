//! The OTLP/HTTP receiver's bound on what a body within the size limit
//! decodes into: an export of more spans than a request may carry is refused
//! before it is decoded, quickly, without the memory its spans would take,
//! and nothing of it is stored; one at the maximum is taken.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use capstan_events::{otlp_router, Store, DEFAULT_MAX_BODY};
use common::temp_store;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The most spans one export may carry (docs/events.md).
const MAX_SPANS: usize = 50_000;

/// A receiver on loopback writing into `store` through a queue of
/// `capacity` events: its address and its writer task.
async fn serve(
    store: &Store,
    capacity: usize,
) -> (
    std::net::SocketAddr,
    capstan_events::RecorderTask,
    capstan_events::Recorder,
) {
    let (rec, task) = store.clone().spawn_recorder(capacity);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = rec.clone();
    tokio::spawn(async move { axum::serve(listener, otlp_router(served)).await });
    (addr, task, rec)
}

/// One HTTP/1.1 `POST /v1/traces` over a fresh connection: the status and
/// the response body.
async fn post(
    addr: std::net::SocketAddr,
    ctype: &str,
    coding: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: {ctype}\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(c) = coding {
        head.push_str(&format!("content-encoding: {c}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).await.unwrap();
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&resp[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    (status, resp[split + 4..].to_vec())
}

/// Nothing was queued, and so nothing is or will be stored.
fn assert_nothing_stored(store: &Store, rec: &capstan_events::Recorder) {
    assert_eq!(rec.recorded(), 0);
    assert_eq!(store.count().unwrap(), 0);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// A protobuf field of wire type 2: its key, its length, its bytes.
fn delimited(field: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(field << 3 | 2);
    let mut n = payload.len();
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(payload);
}

/// An `ExportTraceServiceRequest` of one resource and one scope whose spans
/// are `spans` (each a field 2 of `ScopeSpans`: `12`, its length, a `Span`),
/// in protobuf.
fn protobuf_export(spans: &[u8]) -> Vec<u8> {
    let mut resource = Vec::new();
    delimited(2, spans, &mut resource);
    let mut req = Vec::new();
    delimited(1, &resource, &mut req);
    req
}

/// The peak resident set size of this process so far (`VmHWM`), in bytes;
/// `None` where /proc does not tell it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Two bytes of protobuf (`12 00`) are an empty span, a root span that would
/// become an event, and some 280 bytes decoded: a 4 KiB gzip body inflating
/// to 4 MiB of them once took seconds and gigabytes before it was refused.
/// Now it is counted without being decoded and refused at once, saying how
/// many spans came and how many may, and nothing of it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_empty_spans_in_gzip_are_refused_before_decoding() {
    let (_dir, store) = temp_store();
    let (addr, _task, rec) = serve(&store, 10_000).await;
    // As many empty spans as fit the inflated-size limit.
    let n = (DEFAULT_MAX_BODY - 16) / 2;
    let raw = protobuf_export(&b"\x12\x00".repeat(n));
    assert!(raw.len() <= DEFAULT_MAX_BODY);
    let body = gzip(&raw);
    assert!(body.len() < 10_000, "{} bytes of gzip", body.len());

    let rss_before = peak_rss();
    let started = Instant::now();
    let (status, resp) = post(addr, "application/x-protobuf", Some("gzip"), &body).await;
    let took = started.elapsed();
    let grew = peak_rss().zip(rss_before).map(|(a, b)| a.saturating_sub(b));
    eprintln!(
        "{n} empty spans in {} bytes of gzip: {status} after {took:?}, peak RSS +{grew:?} bytes",
        body.len()
    );

    assert_eq!(status, 413);
    let err = <common::RpcStatus as prost::Message>::decode(resp.as_slice()).unwrap();
    assert_eq!(err.code, 8, "{err:?}"); // RESOURCE_EXHAUSTED
    assert!(
        err.message.contains(&format!("{n} spans")) && err.message.contains("50000"),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    // Decoded, these spans took over 2 GB; counted, the inflated body (4 MiB)
    // is all there is. The bound is loose so other tests of this binary
    // running alongside cannot fail it.
    if let Some(grew) = grew {
        assert!(grew < 256 << 20, "peak RSS grew by {grew} bytes");
    }

    assert_nothing_stored(&store, &rec);
}

/// OTLP/JSON's empty span (`{}` and a comma) is three bytes: 4 MiB of them are
/// refused the same way, in a JSON `google.rpc.Status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_export_of_too_many_empty_spans_is_refused_before_decoding() {
    let (_dir, store) = temp_store();
    let (addr, _task, rec) = serve(&store, 10_000).await;
    let n = (DEFAULT_MAX_BODY - 100) / 3;
    let mut body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
    for i in 0..n {
        body.extend_from_slice(if i == 0 { b"{}" } else { b",{}" });
    }
    body.extend_from_slice(b"]}]}]}");
    assert!(body.len() <= DEFAULT_MAX_BODY);

    let rss_before = peak_rss();
    let started = Instant::now();
    let (status, resp) = post(addr, "application/json", None, &body).await;
    let took = started.elapsed();
    let grew = peak_rss().zip(rss_before).map(|(a, b)| a.saturating_sub(b));
    eprintln!("{n} empty spans in JSON: {status} after {took:?}, peak RSS +{grew:?} bytes");

    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&resp));
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["code"], 8);
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("{n} spans")) && msg.contains("50000"),
        "{msg}"
    );
    assert!(took < Duration::from_secs(3), "refused after {took:?}");
    if let Some(grew) = grew {
        assert!(grew < 256 << 20, "peak RSS grew by {grew} bytes");
    }

    // The snake_case names are not OTLP/JSON: the decoder ignores them, and
    // so does the count (an empty export, taken).
    let snake = br#"{"resource_spans":[{"scope_spans":[{"spans":[{}]}]}]}"#;
    let (status, resp) = post(addr, "application/json", None, snake).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));

    assert_nothing_stored(&store, &rec);
}

/// An export of exactly the maximum is decoded and its request spans
/// stored; one span more is refused. Most of these spans are children (a
/// parent span id, so not requests), which keeps the test fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_at_the_maximum_is_taken_and_one_span_more_is_not() {
    let (_dir, store) = temp_store();
    let (addr, _task, rec) = serve(&store, 100).await;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let export = |n: usize| {
        let mut spans = Vec::new();
        for i in 0..n {
            let mut span = Vec::new();
            delimited(1, &[7; 16], &mut span); // trace_id
            delimited(2, &(i as u64 + 1).to_be_bytes(), &mut span); // span_id
            if i >= 3 {
                delimited(4, &[9; 8], &mut span); // parent_span_id: a child
            }
            delimited(5, b"GET /items", &mut span); // name
            span.push(7 << 3 | 1); // start_time_unix_nano, fixed64
            span.extend_from_slice(&now_ns.to_le_bytes());
            span.push(8 << 3 | 1); // end_time_unix_nano, fixed64
            span.extend_from_slice(&(now_ns + 1_000_000).to_le_bytes());
            delimited(2, &span, &mut spans);
        }
        protobuf_export(&spans)
    };

    let over = export(MAX_SPANS + 1);
    let (status, resp) = post(addr, "application/x-protobuf", None, &over).await;
    assert_eq!(status, 413);
    let err = <common::RpcStatus as prost::Message>::decode(resp.as_slice()).unwrap();
    assert!(err.message.contains("50001 spans"), "{err:?}");

    let at_max = export(MAX_SPANS);
    assert!(at_max.len() <= DEFAULT_MAX_BODY);
    let (status, resp) = post(addr, "application/x-protobuf", None, &at_max).await;
    assert_eq!(status, 200, "{:?}", String::from_utf8_lossy(&resp));

    assert_eq!(rec.recorded(), 3);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rec.stored() < 3 {
        assert!(Instant::now() < deadline, "3 events written within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = store.events_after(0, 10).unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|s| s.event.route == "GET /items"));
}

/// Wire data that breaks off while the spans are counted is the 400 the
/// decoder answers, in the request's encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_refused_while_counting() {
    let (_dir, store) = temp_store();
    let (addr, _task, rec) = serve(&store, 100).await;
    // A resource whose length runs past the end of the body.
    let mut cut = protobuf_export(&b"\x12\x00".repeat(10));
    cut.truncate(cut.len() - 3);
    let (status, resp) = post(addr, "application/x-protobuf", None, &cut).await;
    assert_eq!(status, 400);
    let err = <common::RpcStatus as prost::Message>::decode(resp.as_slice()).unwrap();
    assert_eq!(err.code, 3, "{err:?}");
    assert!(
        err.message
            .contains("not an OTLP ExportTraceServiceRequest in protobuf"),
        "{err:?}"
    );
    // A span list given as a number.
    let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":7}]}]}"#;
    let (status, resp) = post(addr, "application/json", None, body).await;
    assert_eq!(status, 400);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["code"], 3);
    assert!(v["message"].as_str().unwrap().contains("in JSON"), "{v}");
    assert_nothing_stored(&store, &rec);
}

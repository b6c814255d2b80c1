//! The wire codec against hand-written upstreams on loopback: framing,
//! reuse, refusals and the replay of a request on a closed connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::super::{Client, Error};

/// Reads one request (head and a `content-length` body) from `s`;
/// `None` when the connection ends first.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |n| n.trim().parse::<usize>().unwrap());
            while buf.len() < end + 4 + len {
                let mut more = [0u8; 4096];
                let n = s.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            buf.drain(..end + 4 + len);
            return Some(head);
        }
        let mut more = [0u8; 4096];
        let n = s.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

/// A raw upstream on loopback: every request on every connection is
/// answered with `answer`'s pieces, written one at a time (so they
/// arrive in separate reads); after a piece that is `b"CLOSE"` the
/// connection is closed. Counts accepted connections.
async fn raw(answer: Vec<&'static [u8]>) -> (String, Arc<AtomicUsize>) {
    listen(move |mut s| {
        let answer = answer.clone();
        async move {
            let mut buf = Vec::new();
            while read_request(&mut s, &mut buf).await.is_some() {
                for piece in &answer {
                    if *piece == b"CLOSE" {
                        return;
                    }
                    s.write_all(piece).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
    })
    .await
}

/// A loopback listener handing each connection to `serve`: its address
/// and its count of accepted connections.
async fn listen<F, Fut>(serve: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

fn req(addr: &str, method: Method, body: &'static str) -> Request<crate::proxy::UpstreamBody> {
    Request::builder()
        .method(method)
        .uri(format!("http://{addr}/x"))
        .body(http_body_util::Either::Left(http_body_util::Full::new(
            Bytes::from_static(body.as_bytes()),
        )))
        .unwrap()
}

/// Sends a request, reads its body; the body and whether a second
/// request went out on the same connection.
async fn exchange(answer: Vec<&'static [u8]>, method: Method) -> (u16, Bytes, bool) {
    let (addr, accepted) = raw(answer).await;
    let client = Client::new();
    let resp = client
        .request(req(&addr, method.clone(), ""))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let again = client.request(req(&addr, method, "")).await.unwrap();
    again.into_body().collect().await.unwrap();
    (status, body, accepted.load(Ordering::SeqCst) == 1)
}

#[tokio::test(flavor = "current_thread")]
async fn bodies_are_delimited_as_rfc_9112_says_and_connections_kept_when_allowed() {
    // What, the method, the answer's pieces; the status, body and reuse expected.
    type Case = (
        &'static str,
        Method,
        Vec<&'static [u8]>,
        u16,
        &'static str,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "content-length",
            Method::GET,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhel", b"lo"],
            200,
            "hello",
            true,
        ),
        (
            "chunked, split mid-chunk and mid-CRLF, with an extension",
            Method::GET,
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
                b"lo\r\n6;ext=1\r\n world\r",
                b"\n0\r\n\r\n",
            ],
            200,
            "hello world",
            true,
        ),
        (
            "chunked with trailers: dropped, the connection not reused",
            Method::GET,
            vec![
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n",
                b"0\r\nx-trailer: 1\r\n\r\n",
            ],
            200,
            "ok",
            false,
        ),
        (
            "HEAD: a length, no body",
            Method::HEAD,
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"],
            200,
            "",
            true,
        ),
        (
            "204",
            Method::GET,
            vec![b"HTTP/1.1 204 No Content\r\n\r\n"],
            204,
            "",
            true,
        ),
        (
            "304 with the length of what it did not send",
            Method::GET,
            vec![b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n"],
            304,
            "",
            true,
        ),
        (
            "an interim 100 before the answer",
            Method::GET,
            vec![
                b"HTTP/1.1 100 Continue\r\n\r\n",
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            ],
            200,
            "ok",
            true,
        ),
        (
            "until the connection closes",
            Method::GET,
            vec![b"HTTP/1.1 200 OK\r\n\r\nbye", b"CLOSE"],
            200,
            "bye",
            false,
        ),
        (
            "Connection: close",
            Method::GET,
            vec![
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                b"CLOSE",
            ],
            200,
            "ok",
            false,
        ),
        (
            "HTTP/1.0",
            Method::GET,
            vec![b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", b"CLOSE"],
            200,
            "ok",
            false,
        ),
        (
            "both framings: chunked wins, the connection is not reused",
            Method::GET,
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            ],
            200,
            "ok",
            false,
        ),
    ];
    for (what, method, answer, status, body, reused) in cases {
        let got = exchange(answer, method).await;
        assert_eq!(got, (status, Bytes::from(body), reused), "{what}");
    }
    // With both framings the length is not passed on: it is not the
    // length of what the client will get.
    let (addr, _) = raw(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 99\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ])
    .await;
    let resp = Client::new()
        .request(req(&addr, Method::GET, ""))
        .await
        .unwrap();
    assert!(!resp.headers().contains_key(http::header::CONTENT_LENGTH));
}

#[tokio::test(flavor = "current_thread")]
async fn broken_answers_are_errors_that_say_what_broke() {
    let big: &'static [u8] = Box::leak(
        format!("HTTP/1.1 200 OK\r\nx-big: {}\r\n", "a".repeat(70_000))
            .into_bytes()
            .into_boxed_slice(),
    );
    let head_cases: Vec<(Vec<&'static [u8]>, &str)> = vec![
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"],
            "conflicting Content-Length",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 5x\r\n\r\n"],
            "malformed Content-Length `5x`",
        ),
        (vec![b"SMTP ready\r\n\r\n"], "malformed response head"),
        (vec![big], "response head larger than 64 KiB"),
        (
            vec![b"HTTP/1.1 101 Switching Protocols\r\n\r\n"],
            "asked for no upgrade",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-le", b"CLOSE"],
            "inside the response head",
        ),
        (vec![b"CLOSE"], "closed the connection without answering"),
        (
            vec![b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"],
            "Transfer-Encoding in an HTTP/1.0 response",
        ),
    ];
    for (answer, want) in head_cases {
        let (addr, _) = raw(answer).await;
        let e = Client::new()
            .request(req(&addr, Method::GET, ""))
            .await
            .unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
    let body_cases: Vec<(Vec<&'static [u8]>, &str)> = vec![
        (
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
                b"CLOSE",
            ],
            "ended inside the response body",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"],
            "malformed chunk size",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokay\r\n"],
            "chunk data longer than its size",
        ),
        // httparse alone reads a line with no digits as the last chunk.
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\r\n\r\n"],
            "malformed chunk size",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n5\r\nworld\r\n0\r\n\r\n"],
            "malformed chunk size",
        ),
        (
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"],
            "no byte of the response body for 300ms",
        ),
    ];
    for (answer, want) in body_cases {
        let (addr, accepted) = raw(answer).await;
        let client = Client::new();
        let resp = client.request(req(&addr, Method::GET, "")).await.unwrap();
        let e = resp.into_body().collect().await.unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
        // A connection whose body broke is never reused.
        let _ = client.request(req(&addr, Method::GET, "")).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "{want}");
    }
}

/// An upstream that answers the first request on each connection and
/// closes the connection on reading the second, as one does when its
/// idle timeout and the proxy's reuse cross.
async fn closes_on_second_request() -> (String, Arc<AtomicUsize>) {
    listen(|mut s| async move {
        let mut buf = Vec::new();
        if read_request(&mut s, &mut buf).await.is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
        }
        let _ = read_request(&mut s, &mut buf).await;
    })
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn a_reused_connection_closed_unanswered_is_replayed_only_for_idempotent_methods() {
    for (method, replayed) in [
        (Method::GET, true),
        (Method::PUT, true),
        (Method::POST, false),
    ] {
        let (addr, accepted) = closes_on_second_request().await;
        let client = Client::new();
        let first = client
            .request(req(&addr, method.clone(), "{}"))
            .await
            .unwrap();
        first.into_body().collect().await.unwrap();
        let second = client.request(req(&addr, method.clone(), "{}")).await;
        match second {
            Ok(r) => {
                assert!(replayed, "{method} was sent twice");
                assert_eq!(r.into_body().collect().await.unwrap().to_bytes(), "ok");
                assert_eq!(accepted.load(Ordering::SeqCst), 2, "{method}");
            }
            Err(e) => {
                assert!(!replayed, "{method}: {e}");
                assert!(matches!(e, Error::Closed), "{method}: {e}");
                assert_eq!(accepted.load(Ordering::SeqCst), 1, "{method}");
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_buffered_body_goes_out_with_its_length_and_the_head_carries_no_framing_of_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let head = read_request(&mut s, &mut buf).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        head
    });
    let mut r = req(&addr, Method::POST, "hello");
    r.headers_mut().insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from_static("99"),
    );
    r.headers_mut().insert(
        http::header::TRANSFER_ENCODING,
        http::HeaderValue::from_static("chunked"),
    );
    Client::new().request(r).await.unwrap();
    let head = seen.await.unwrap();
    assert!(head.starts_with("POST /x HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-length: 5\r\n"), "{head}");
    // (The port in the host field may well contain "99".)
    assert!(
        !head.contains(": 99\r\n") && !head.contains("chunked"),
        "{head}"
    );
    assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_body_that_keeps_sending_is_not_cut_off() {
    // Each byte comes within the stall bound (300 ms in tests); the whole
    // body takes longer than it.
    let (addr, _) = listen(|mut s| async move {
        let mut buf = Vec::new();
        read_request(&mut s, &mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n")
            .await
            .unwrap();
        for b in [b"a", b"b", b"c"] {
            tokio::time::sleep(Duration::from_millis(200)).await;
            s.write_all(b).await.unwrap();
        }
    })
    .await;
    let resp = Client::new()
        .request(req(&addr, Method::GET, ""))
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "abc");
}

/// Cookies an HTTP/2 client sent as fields of their own go upstream in one
/// field, joined by "; ": HTTP/1.1 servers read one.
#[test]
fn cookie_fields_go_upstream_joined_in_one() {
    let mut h = http::HeaderMap::new();
    h.append(http::header::COOKIE, "a=1".parse().unwrap());
    h.append(http::header::ACCEPT, "*/*".parse().unwrap());
    h.append(http::header::COOKIE, "b=2".parse().unwrap());
    let mut out = Vec::new();
    super::encode_head(&Method::GET, "/", &h, super::Sending::Length(0), &mut out);
    let head = String::from_utf8(out).unwrap();
    assert_eq!(head.matches("cookie:").count(), 1, "{head}");
    assert!(head.contains("cookie: a=1; b=2\r\n"), "{head}");
    assert!(head.contains("accept: */*\r\n"), "{head}");
}

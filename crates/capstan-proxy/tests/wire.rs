//! Message framing through the proxy: a request body of unknown length goes
//! upstream chunked and whole, and a chunked answer comes back whole.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::read_head;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connects to `addr`, sends `text` and reads the answer's head (within
/// 5 s); the connection and the head.
async fn request_head(addr: &str, text: &str) -> (BufReader<TcpStream>, String) {
    let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let head = common::ask(&mut r, text).await;
    (r, head)
}

/// Answers `200` with `text` on a hand-written upstream's connection.
async fn answer_text(r: &mut BufReader<TcpStream>, text: &str) {
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    );
    r.get_mut().write_all(answer.as_bytes()).await.unwrap();
}

/// Reads a chunked body to its end, trailers included.
async fn read_chunked(r: &mut BufReader<TcpStream>) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            loop {
                let mut t = String::new();
                r.read_line(&mut t).await.unwrap();
                if t == "\r\n" {
                    return body;
                }
            }
        }
        let mut chunk = vec![0u8; size + 2];
        r.read_exact(&mut chunk).await.unwrap();
        body.extend_from_slice(&chunk[..size]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_request_goes_upstream_whole_and_a_chunked_answer_comes_back_whole() {
    // The upstream: answers readiness checks, and reports what a POST sent
    // as a chunked answer with a trailer.
    let up_addr = common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if !head.starts_with("POST ") {
                common::answer_ok(&mut r).await;
                continue;
            }
            let lower = head.to_ascii_lowercase();
            assert!(lower.contains("transfer-encoding: chunked\r\n"), "{head}");
            assert!(!lower.contains("content-length"), "{head}");
            let body = read_chunked(&mut r).await;
            let report = format!(
                "got {} bytes: {}",
                body.len(),
                String::from_utf8_lossy(&body)
            );
            let (a, b) = report.split_at(report.len() / 2);
            let answer = format!(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nx-sum: 1\r\n\r\n",
                a.len(),
                b.len()
            );
            r.get_mut().write_all(answer.as_bytes()).await.unwrap();
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("events.db")).await;

    let s = TcpStream::connect(&addr).await.unwrap();
    let mut r = BufReader::new(s);
    // Two requests on one client connection, the second after the first's
    // answer: the body of unknown length arrives in three chunks.
    for _ in 0..2 {
        r.get_mut()
            .write_all(
                format!(
                    "POST /upload HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        r.get_mut()
            .write_all(b"6\r\n world\r\n3\r\n!!!\r\n0\r\n\r\n")
            .await
            .unwrap();
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
            .await
            .expect("an answer within 5s")
            .expect("an answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let body = tokio::time::timeout(Duration::from_secs(5), read_chunked(&mut r))
            .await
            .expect("the whole body within 5s");
        assert_eq!(
            String::from_utf8_lossy(&body),
            "got 14 bytes: hello world!!!"
        );
    }
    drop(r);
    proxy.stop().await;
}

/// A client that asks to be told to continue is told so by the proxy, and
/// its upload reaches whole an upstream that would answer `Expect` with a
/// 100 of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_expecting_100_continue_goes_upstream_whole() {
    let up_addr = common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if !head.starts_with("POST ") {
                common::answer_ok(&mut r).await;
                continue;
            }
            let expect = head.to_ascii_lowercase().contains("expect:");
            if expect {
                r.get_mut()
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .unwrap();
            }
            let report = format!(
                "got {} bytes, expect {expect}",
                read_chunked(&mut r).await.len()
            );
            answer_text(&mut r, &report).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("events.db")).await;

    let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    r.get_mut()
        .write_all(
            format!(
                "POST /upload HTTP/1.1\r\nhost: {addr}\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let within = |what| move |_| panic!("{what} within 5s");
    let interim = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
        .await
        .unwrap_or_else(within("a 100"))
        .unwrap();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    for _ in 0..3 {
        r.get_mut().write_all(chunk.as_bytes()).await.unwrap();
    }
    r.get_mut().write_all(b"0\r\n\r\n").await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
        .await
        .unwrap_or_else(within("the answer"))
        .unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The proxy answered the expectation itself: it went no further.
    let mut body = vec![0u8; "got 12288 bytes, expect false".len()];
    r.read_exact(&mut body).await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body),
        "got 12288 bytes, expect false"
    );
    drop(r);
    proxy.stop().await;
}

/// An upstream that sends an interim answer (`100 Continue` unasked, as
/// some servers do) while an upload streams in still gets the whole body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_answer_during_an_upload_does_not_cut_it() {
    // Says when its interim answers are out, so the rest of the body
    // surely follows them.
    let sent = Arc::new(tokio::sync::Notify::new());
    let sent_up = sent.clone();
    let up_addr = common::raw_upstream(move |mut r| {
        let sent = sent_up.clone();
        async move {
        while let Some(head) = read_head(&mut r).await {
            if !head.starts_with("POST ") {
                common::answer_ok(&mut r).await;
                continue;
            }
            r.get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n")
                .await
                .unwrap();
            sent.notify_one();
            let report = format!("got {} bytes", read_chunked(&mut r).await.len());
            answer_text(&mut r, &report).await;
        }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("events.db")).await;
    let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    r.get_mut()
        .write_all(
            format!("POST /upload HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    // The rest once the upstream's interim answers are out.
    tokio::time::timeout(Duration::from_secs(5), sent.notified())
        .await
        .expect("interim answers within 5 s");
    r.get_mut()
        .write_all(b"6\r\n world\r\n0\r\n\r\n")
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
        .await
        .expect("an answer within 5 s")
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = vec![0u8; "got 11 bytes".len()];
    r.read_exact(&mut body).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&body), "got 11 bytes");
    drop(r);
    proxy.stop().await;
}

/// An upstream that answers 413 as soon as it has read the head of a
/// request starting with `method` and never reads its body, keeping the
/// connection open; other requests get 200. Its address.
async fn refusing_upstream(method: &'static str) -> String {
    common::raw_upstream(move |mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if head.starts_with(method) {
                r.get_mut()
                    .write_all(
                        b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big!",
                    )
                    .await
                    .unwrap();
                std::future::pending::<()>().await;
            }
            common::answer_ok(&mut r).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_an_upload_early_is_answered_at_once_not_at_the_timeout() {
    let up_addr = refusing_upstream("POST ").await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("events.db")).await;

    // Two uploads of unknown length: one that stops after its first chunk
    // (the proxy waits on the client), one far larger than the socket
    // buffers between the proxy and the upstream (the proxy waits on a write).
    for first_chunk in [5usize, 16 << 20] {
        let (rd, mut wr) = TcpStream::connect(&addr).await.unwrap().into_split();
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n{first_chunk:x}\r\n"
        );
        let sender = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(&vec![b'x'; first_chunk]).await?;
            wr.write_all(b"\r\n").await?;
            std::future::pending::<()>().await;
            Ok::<_, std::io::Error>(wr)
        });
        let mut r = BufReader::new(rd);
        let head = tokio::time::timeout(Duration::from_secs(5), async {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            line
        })
        .await
        .expect("an answer within 5 s, not at the 30 s timeout");
        assert!(head.starts_with("HTTP/1.1 413"), "{first_chunk}: {head}");
        sender.abort();
    }
    proxy.stop().await;
}

/// The same for a buffered body (an idempotent `PUT` within `body_limit`)
/// far larger than the socket buffers: its rest goes out watched too, so the
/// upstream's early `413` is the answer, not a `504` at the route's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_a_large_buffered_body_early_is_answered_at_once() {
    const LEN: usize = 32 << 20;
    let up_addr = refusing_upstream("PUT ").await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release_with(
        &format!("body_limit = {}\ntimeout = \"20s\"", 2 * LEN),
        &up_addr,
        &dir.path().join("events.db"),
    )
    .await;
    let (rd, mut wr) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = format!("PUT /file HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {LEN}\r\n\r\n");
    let sender = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![b'x'; LEN]).await?;
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(wr)
    });
    let mut r = BufReader::new(rd);
    let started = std::time::Instant::now();
    let line = tokio::time::timeout(Duration::from_secs(15), async {
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        line
    })
    .await
    .expect("an answer before the 20 s timeout");
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10));
    sender.abort();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_runs_to_its_answer_when_the_client_stops_sending_or_leaves() {
    // The upstream holds `/slow/...` requests until the test releases them,
    // telling the test when each has arrived.
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let up_release = release.clone();
    let up_addr = common::raw_upstream(move |mut r| {
        let arrived_tx = arrived_tx.clone();
        let release = up_release.clone();
        async move {
            while let Some(head) = read_head(&mut r).await {
                if head.starts_with("GET /slow/") {
                    let _ = arrived_tx.send(());
                    release.acquire().await.unwrap().forget();
                }
                common::answer_ok(&mut r).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.db");
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &events_path).await;
    // Half-closed: the client shuts down its sending side after the request
    // and still reads the whole answer.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("GET /slow/half HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), arrived.recv())
        .await
        .expect("the request upstream within 5 s");
    release.add_permits(1);
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
        .await
        .expect("the answer within 5 s")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");

    // Gone: the client closes its connection while the upstream works; the
    // request still gets its answer from the upstream, and its event.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("GET /slow/gone HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), arrived.recv())
        .await
        .expect("the request upstream within 5 s");
    drop(s);
    release.add_permits(1);
    proxy.stop().await;

    let events = common::events(&events_path);
    let statuses: Vec<(String, u16)> = events
        .iter()
        .filter(|e| e.path.starts_with("/slow/"))
        .map(|e| (e.path.to_string(), e.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("/slow/half".to_string(), 200),
            ("/slow/gone".to_string(), 200)
        ]
    );
}

/// A client whose body stalls before its end, or breaks off, is answered as
/// at fault itself (408, 400 `client_body`), within the route's timeout, and
/// its failure is not counted against the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_body_that_stalls_or_breaks_is_the_clients_fault() {
    // The upstream reads what it is sent and never answers a write.
    let up_addr = common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if head.starts_with("GET ") {
                common::answer_ok(&mut r).await;
                continue;
            }
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink).await;
            return;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.db");
    // Long enough that a loaded machine answers the broken body (400) well
    // before the stalled one's bound (408).
    let (proxy, addr) =
        common::Proxy::one_release_with("timeout = \"1500ms\"", &up_addr, &events_path).await;

    // 10 of the 100 bytes announced, then nothing: buffered, and bounded.
    let (r, head) = request_head(
        &addr,
        &format!("PUT /stall HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 100\r\n\r\n0123456789"),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    // A chunked upload (streamed upstream) whose next chunk size is garbage.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        format!("POST /broken HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"zz\r\n").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("the connection ends within 5 s");

    // A chunked upload (streamed upstream) that stops after its first
    // chunk: the upstream waits on the client, so it is the client's 408,
    // not the release's 504.
    let (r2, head) = request_head(&addr, &format!("POST /stream-stall HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");

    let metrics = proxy.admin_get("/metrics", "t").await;
    let errors: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("capstan_proxy_errors_total{"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("kind=\"client\"") && errors[0].ends_with(" 3"),
        "{errors:?}"
    );
    drop((r, r2));
    proxy.stop().await;
    let events = common::events(&events_path);
    let mut got: Vec<(String, u16, Option<String>)> = events
        .iter()
        .filter(|e| e.method != "GET")
        .map(|e| {
            (
                e.path.to_string(),
                e.status,
                e.error.as_ref().map(|k| k.to_string()),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/broken".to_string(), 400, Some("client_body".to_string())),
            ("/stall".to_string(), 408, Some("client_body".to_string())),
            (
                "/stream-stall".to_string(),
                408,
                Some("client_body".to_string())
            ),
        ]
    );
}

/// A client that goes away in the middle of a mirrored answer's body has
/// its request recorded as cancelled (a 5xx keeps its kind), with no
/// comparison: what it got is no answer to compare the shadow's with, and
/// no divergence of the shadow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_answer_the_client_left_halfway_is_cancelled_not_compared() {
    // Larger than what a socket takes at once, within `body_limit`.
    const LEN: usize = 1024 * 1024;
    // Both releases answer `/big` (200) and `/bad` (500) with the same MiB;
    // the primary sends the first KiB of a `?cut` request's body, then the
    // rest once the test says the client has gone.
    let go_on = Arc::new(tokio::sync::Notify::new());
    let upstream = |primary: bool| {
        let go_on = go_on.clone();
        common::raw_upstream(move |mut r| {
            let go_on = go_on.clone();
            async move {
                while let Some(head) = read_head(&mut r).await {
                    let status = if head.starts_with("GET /big") {
                        "200 OK"
                    } else if head.starts_with("GET /bad") {
                        "500 Internal Server Error"
                    } else {
                        common::answer_ok(&mut r).await;
                        continue;
                    };
                    let body = vec![b'x'; LEN];
                    let head_out = format!("HTTP/1.1 {status}\r\ncontent-length: {LEN}\r\n\r\n");
                    let s = r.get_mut();
                    if s.write_all(head_out.as_bytes()).await.is_err() {
                        return;
                    }
                    if primary && head.contains("?cut ") {
                        let _ = s.write_all(&body[..1024]).await;
                        let _ =
                            tokio::time::timeout(Duration::from_secs(10), go_on.notified()).await;
                        let _ = s.write_all(&body[1024..]).await;
                    } else {
                        let _ = s.write_all(&body).await;
                    }
                }
            }
        })
    };
    let (v1, v2) = (upstream(true).await, upstream(false).await);
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.db");
    let text = common::config(
        &[&v1],
        &[&v2],
        "weights = { \"1.0.0\" = 100, \"2.0.0\" = 0 }\n\
         mirror = { release = \"2.0.0\", percent = 100 }",
        &events_path,
    );
    let proxy = common::Proxy::start(common::settings(&text)).await;
    let addr = proxy.url.trim_start_matches("http://").to_string();

    // One whole answer: compared, equal.
    let whole = reqwest::get(format!("{}/big", proxy.url)).await.unwrap();
    assert_eq!(whole.bytes().await.unwrap().len(), LEN);
    // Two left after their head and first bytes.
    for path in ["/big?cut", "/bad?cut"] {
        let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
        r.get_mut()
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut r).await.expect("an answer");
        assert!(head.starts_with("HTTP/1.1 "), "{head}");
        let mut first = [0u8; 512];
        r.read_exact(&mut first).await.unwrap();
        // Reset, not a clean close: the proxy's next write of the body fails.
        #[allow(deprecated)]
        r.get_ref().set_linger(Some(Duration::ZERO)).unwrap();
        drop(r);
        go_on.notify_one();
    }

    // The events are written once the shadow's answers are in.
    let mut got =
        common::events_once(&events_path, |e| e.path != "/readyz", |got| got.len() == 3).await;
    proxy.stop().await;
    assert_eq!(got.len(), 3, "{got:?}");
    // The whole one has no error; then the cut ones, `/big` first.
    got.sort_by_key(|e| (e.error.is_some(), e.path != "/big"));
    let m = got[0]
        .mirror
        .as_ref()
        .expect("the whole answer is compared");
    assert!(m.status_class_equal && m.body_hash_equal, "{m:?}");
    let left: Vec<_> = got[1..]
        .iter()
        .map(|e| (e.status, e.error.as_deref(), e.mirror.is_some()))
        .collect();
    assert_eq!(
        left,
        [
            (200, Some("client_cancel"), false),
            (500, Some("upstream_5xx"), false)
        ],
        "{got:?}"
    );
}

/// An upstream whose answer head never ends while an upload streams in is
/// cut at the head limit, not buffered without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_head_during_an_upload_is_cut_at_the_limit() {
    let up_addr = common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if !head.starts_with("POST ") {
                common::answer_ok(&mut r).await;
                continue;
            }
            let _ = r.get_mut().write_all(b"HTTP/1.1 200 OK\r\nx: ").await;
            let line = vec![b'a'; 8192];
            for _ in 0..16 {
                if r.get_mut().write_all(&line).await.is_err() {
                    return;
                }
            }
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink).await;
            return;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("events.db")).await;
    let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    // One chunk, then the client waits for the answer.
    r.get_mut()
        .write_all(
            format!("POST /upload HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
        .await
        .expect("an answer within 5 s")
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    drop(r);
    proxy.stop().await;
}

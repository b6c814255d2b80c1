//! Waiting on clients is bounded: a client that sends its request head too
//! slowly, nothing at all, or stops reading its answer has its connection
//! closed, so it cannot hold a connection, a task or an upstream for good.

mod common;

use std::time::Duration;

use common::read_head;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client that never finishes its request head, sends nothing, or leaves
/// its keep-alive connection idle, has the connection closed after
/// `header_timeout`: waiting on clients is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_ends_and_an_idle_connection_are_closed_after_the_header_timeout() {
    let up_addr = common::raw_upstream(|mut r| async move {
        while read_head(&mut r).await.is_some() {
            common::answer_ok(&mut r).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release_with(
        "header_timeout = \"300ms\"",
        &up_addr,
        &dir.path().join("events.db"),
    )
    .await;

    // Half a head, then nothing.
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(format!("GET /x HTTP/1.1\r\nhost: {addr}\r\n").as_bytes())
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s")
        .ok();

    // Nothing at all, and the start of the HTTP/2 preface, then nothing:
    // before the protocol is known, the same bound.
    for first in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let started = std::time::Instant::now();
        s.write_all(first).await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("closed within 5 s")
            .ok();
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    // One request answered, then the connection left idle. Its timer starts
    // after the answer is written, so after `started`.
    let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    let started = std::time::Instant::now();
    r.get_mut()
        .write_all(format!("GET /x HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut r).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut body = [0u8; 2];
    r.read_exact(&mut body).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut rest))
        .await
        .expect("the idle connection closed within 5 s")
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.stop().await;
}

/// A client that stops reading its answer has its connection closed once a
/// write has waited `send_timeout`, and the request is recorded as the
/// client's cancellation: it holds neither the connection nor the
/// upstream's for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_the_send_timeout() {
    const LEN: usize = 64 << 20;
    let up_addr = common::raw_upstream(|mut r| async move {
        if read_head(&mut r).await.is_none() {
            return;
        }
        let s = r.get_mut();
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {LEN}\r\n\r\n");
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..LEN / chunk.len() {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events_path = dir.path().join("events.db");
    let (proxy, addr) =
        common::Proxy::one_release_with("send_timeout = \"300ms\"", &up_addr, &events_path).await;
    let addr: std::net::SocketAddr = addr.parse().unwrap();

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    s.write_all(format!("GET /big HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Reads nothing for well over the bound.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Then what the sockets held, and the end: the proxy closed it. (Kept
    // open, the connection would carry all 64 MiB, then wait for the next
    // request, and this read would not end.)
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("the proxy closed the connection")
        .ok();
    assert!(got.len() < LEN, "{}", got.len());

    let got = common::events_once(&events_path, |e| e.path == "/big", |got| !got.is_empty()).await;
    proxy.stop().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].status, 200);
    assert_eq!(got[0].error.as_deref(), Some("client_cancel"));
    assert!((got[0].bytes_out as usize) < LEN);
}

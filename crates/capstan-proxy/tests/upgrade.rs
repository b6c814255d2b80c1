//! HTTP/1.1 upgrades (WebSocket) pass through the proxy in both directions.

mod common;

use std::time::Duration;

use common::read_head;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_carries_bytes_both_ways() {
    // The upstream: answers its readiness path, and upgrades /ws to an echo.
    let up_addr = common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if head.starts_with("GET /ws ") {
                assert!(
                    head.to_ascii_lowercase().contains("upgrade: websocket"),
                    "{head}"
                );
                r.get_mut()
                    .write_all(
                        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-capstan-ws: yes\r\n\r\n",
                    )
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                loop {
                    let n = r.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    r.get_mut().write_all(&buf[..n]).await.unwrap();
                }
            }
            common::answer_ok(&mut r).await;
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.db");
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &events).await;

    let s = TcpStream::connect(&addr).await.unwrap();
    let mut r = BufReader::new(s);
    r.get_mut()
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut r))
        .await
        .expect("101 within 5s")
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    assert!(!head.contains("x-capstan-ws"), "{head}");
    for msg in [&b"ping"[..], b"second frame"] {
        r.get_mut().write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut got))
            .await
            .expect("echo within 5s")
            .unwrap();
        assert_eq!(got, msg);
    }
    drop(r);
    proxy.stop().await;
    // The upgrade is one event, and the upstream's x-capstan-* header is a
    // field of it rather than a header the client sees.
    let events = common::events(&events);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].status, 101);
    assert_eq!(
        events[0].fields.get("ws").map(String::as_str),
        Some("yes"),
        "{:?}",
        events[0].fields
    );
}

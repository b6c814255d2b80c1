//! HTTP/1.1 upgrades (WebSocket) pass through the proxy in both directions.

mod common;

use std::time::Duration;

use common::read_head;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_connection_carries_bytes_both_ways() {
    let up_addr = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.db");
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &events).await;

    let (mut r, head) = open_tunnel(&addr).await;
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

/// Only WebSocket is tunnelled. An `h2c` upgrade (whose tunnel would carry
/// later requests past routing, events and field stripping) goes on as an
/// ordinary request: the upstream sees no `Upgrade`, the client gets the
/// upstream's ordinary answer, and the connection stays HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upgrade_is_forwarded_as_an_ordinary_request() {
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let up_addr = common::raw_upstream(move |mut r| {
        let seen = seen.clone();
        async move {
            while let Some(head) = read_head(&mut r).await {
                seen.lock().unwrap().push(head.to_ascii_lowercase());
                common::answer_ok(&mut r).await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release(&up_addr, &dir.path().join("e.db")).await;
    let mut r = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    for _ in 0..2 {
        let head = common::ask(
            &mut r,
            &format!(
                "GET /h2c HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAAQAAP__\r\n\r\n"
            ),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 2];
        r.read_exact(&mut body).await.unwrap();
    }
    let head = common::ask(
        &mut r,
        &format!(
            "GET /both HTTP/1.1\r\nhost: {addr}\r\nconnection: upgrade\r\nupgrade: websocket, h2c\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    proxy.stop().await;
    let heads = heads.lock().unwrap();
    assert!(
        heads.iter().any(|h| h.starts_with("get /h2c ")),
        "{heads:?}"
    );
    for h in heads.iter().filter(|h| h.starts_with("get /h2c ")) {
        assert!(!h.contains("upgrade"), "{h}");
        assert!(!h.contains("http2-settings"), "{h}");
    }
    // Offered beside WebSocket, h2c is not passed on either.
    let both: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with("get /both "))
        .collect();
    assert_eq!(both.len(), 1, "{heads:?}");
    assert!(both[0].contains("upgrade: websocket\r\n"), "{}", both[0]);
}

/// `/slow` requests the upstreams have received.
static SLOW_ARRIVED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An upstream that answers its readiness path and upgrades `/ws` to an
/// echo; its address.
async fn echo_upstream() -> String {
    // The upstream: answers its readiness path, upgrades /ws to an echo,
    // and answers /slow after 4 s (counting them in SLOW_ARRIVED).
    common::raw_upstream(|mut r| async move {
        while let Some(head) = read_head(&mut r).await {
            if head.starts_with("GET /slow ") {
                SLOW_ARRIVED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(4)).await;
            }
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
    .await
}

/// Asks for a WebSocket upgrade on `r`, a connection to `addr`; the
/// answer's head.
async fn ask_upgrade(r: &mut BufReader<TcpStream>, addr: &str) -> String {
    common::ask(
        r,
        &format!(
            "GET /ws HTTP/1.1\r\nhost: {addr}\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
    )
    .await
}

/// Opens a WebSocket tunnel through the proxy at `addr`; the connection
/// and the `101`'s head.
async fn open_tunnel(addr: &str) -> (BufReader<TcpStream>, String) {
    let mut r = BufReader::new(TcpStream::connect(addr).await.unwrap());
    let head = ask_upgrade(&mut r, addr).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (r, head)
}

/// After SIGTERM an open tunnel keeps carrying bytes for the drain's time,
/// then is closed, even while a slow request keeps the worker draining: the
/// proxy's stop is bounded by the drain, not by its longest WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_is_carried_through_the_drain_then_closed() {
    let up_addr = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let (proxy, addr) = common::Proxy::one_release_with(
        "drain = \"1500ms\"",
        &up_addr,
        &dir.path().join("events.db"),
    )
    .await;
    let (mut r, _) = open_tunnel(&addr).await;
    // A keep-alive connection, answered once before the stop.
    let mut k = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    k.get_mut()
        .write_all(format!("GET /x HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut k).await.expect("an answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    k.read_exact(&mut [0u8; 2]).await.unwrap();
    // A slow request on every worker (each connection goes to the worker
    // with the fewest), so the tunnel's worker is still draining one.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let client = reqwest::Client::new();
    let slow: Vec<_> = (0..workers)
        .map(|_| tokio::spawn(client.get(format!("{}/slow", proxy.url)).send()))
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while SLOW_ARRIVED.load(std::sync::atomic::Ordering::SeqCst) < workers {
        assert!(
            std::time::Instant::now() < deadline,
            "slow requests within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = std::time::Instant::now();
    let stopped = tokio::spawn(proxy.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: still carried.
    r.get_mut().write_all(b"during the drain").await.unwrap();
    let mut got = vec![0u8; "during the drain".len()];
    tokio::time::timeout(Duration::from_secs(5), r.read_exact(&mut got))
        .await
        .expect("echo within 5s")
        .unwrap();
    assert_eq!(got, b"during the drain");
    // A new upgrade on an open connection is refused: its tunnel would be
    // cut when the drain's time is over.
    let head = ask_upgrade(&mut k, &addr).await;
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    drop(k);
    // Then closed, once the drain's time is over.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut rest))
        .await
        .expect("the tunnel closed within 10 s")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert!(
        slow.iter().all(|s| !s.is_finished()),
        "the tunnel outlived the drain"
    );
    for s in slow {
        assert!(s.await.unwrap().unwrap().status().is_success());
    }
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("stopped within 10 s")
        .unwrap();
}

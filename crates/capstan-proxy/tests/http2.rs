//! Clients speaking HTTP/2 (prior knowledge, as gRPC and service meshes do
//! in clear text): many streams on one connection are routed one by one,
//! and each leaves its own event.

mod common;

use std::collections::HashMap;

use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_one_http2_connection_are_routed_and_recorded_one_by_one() {
    let db = Db::new();
    let (v1, v2) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(2, &db, None).await,
    );
    let events_db = db.path("events.db");
    let proxy = Proxy::start(settings(&config(
        &[&v1.addr],
        &[&v2.addr],
        r#"internal = "2.0.0"
weights = { "1.0.0" = 100, "2.0.0" = 0 }"#,
        &events_db,
    )))
    .await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let url = format!("{}/version", proxy.url);

    // 400 requests, 64 at a time: internal ones on 2.0.0, the rest on 1.0.0.
    let answers: Vec<(u64, reqwest::Version, String)> = futures_util::stream::iter(0..400u64)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let (tp, _) = traceparent(n);
                let mut req = client.get(&url).header("traceparent", tp);
                if n % 4 == 0 {
                    req = req.header("x-internal", "1");
                }
                let r = req.send().await.unwrap();
                assert_eq!(r.status(), 200);
                let version = r.version();
                (n, version, version_of(r).await)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (n, version, release) in &answers {
        assert_eq!(*version, reqwest::Version::HTTP_2, "request {n}");
        let want = if n % 4 == 0 { "2.0.0" } else { "1.0.0" };
        assert_eq!(release, want, "request {n}");
    }
    proxy.stop().await;

    let by_trace: HashMap<String, capstan_events::Event> = events(&events_db)
        .into_iter()
        .filter_map(|e| e.trace_id.clone().map(|t| (t.into(), e)))
        .collect();
    for n in 0..400u64 {
        let (_, trace) = traceparent(n);
        let e = by_trace
            .get(&trace)
            .unwrap_or_else(|| panic!("no event for request {n}"));
        assert_eq!(e.status, 200);
        assert_eq!(e.route, "/version");
        let (release, cohort) = if n % 4 == 0 {
            ("2.0.0", "internal")
        } else {
            ("1.0.0", "public")
        };
        assert_eq!(
            (e.release.as_str(), e.cohort.as_str()),
            (release, cohort),
            "request {n}"
        );
    }
}

/// A request an HTTP/2 client cancels (resets its stream) before the
/// upstream answers still leaves its event: `499`, `client_cancel`, with
/// the time it had taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_before_its_answer_is_recorded_as_cancelled() {
    use tokio::io::AsyncWriteExt;
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<()>();
    let up_addr = raw_upstream(move |mut r| {
        let arrived_tx = arrived_tx.clone();
        async move {
            while let Some(head) = read_head(&mut r).await {
                if head.starts_with("GET /slow") {
                    let _ = arrived_tx.send(());
                    // Answers long after the proxy has given up on it.
                    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
                }
                let _ = r
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let events_db = dir.path().join("events.db");
    let (proxy, _) = Proxy::one_release(&up_addr, &events_db).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let url = format!("{}/slow", proxy.url);
    let request = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::timeout(std::time::Duration::from_secs(5), arrived.recv())
        .await
        .expect("the request upstream within 5 s");
    // Dropping the request resets its stream.
    request.abort();
    let _ = request.await;
    // The event is written once the proxy has handled the reset.
    let slow = events_once(&events_db, |e| e.path == "/slow", |got| !got.is_empty()).await;
    proxy.stop().await;
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert_eq!(slow[0].status, 499);
    assert_eq!(slow[0].error.as_deref(), Some("client_cancel"));
    assert!(slow[0].duration_ms > 0.0);
}

//! The admin API and the failure behaviour of the request path.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_table_is_refused_and_the_old_one_keeps_serving() {
    let db = Db::new();
    let (v1, v2) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(2, &db, None).await,
    );
    let proxy = Proxy::start(settings(&config(
        &[&v1.addr],
        &[&v2.addr],
        r#"weights = { "1.0.0" = 100 }"#,
        &db.path("events.db"),
    )))
    .await;
    let client = reqwest::Client::new();
    let before = proxy.routing().await;

    let r = client
        .put(format!("{}/routing", proxy.admin))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("routing table:"));

    let mut bad = before.clone();
    bad["weights"] = serde_json::json!({"1.0.0": 60, "2.0.0": 30});
    let r = proxy.put_routing(&bad).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "routing table: weights: sum to 90, must be 100"
    );

    let mut bad = before.clone();
    bad["releases"][1]["upstreams"] = before["releases"][0]["upstreams"].clone();
    let r = proxy.put_routing(&bad).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("must not overlap"));

    // A release found in the fleet registry, on a proxy that polls none.
    let mut bad = before.clone();
    bad["releases"][1] = serde_json::json!({"name": "2.0.0", "fleet": {"version": "2.0.0"}});
    let r = proxy.put_routing(&bad).await;
    assert_eq!(r.status(), 400);
    assert!(
        r.text().await.unwrap().contains("has no [fleet] section"),
        "a fleet release without [fleet]"
    );

    let mut bad = before.clone();
    bad["colour"] = serde_json::json!("blue");
    let r = proxy.put_routing(&bad).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown field `colour`"));

    let r = client
        .put(format!("{}/routing", proxy.admin))
        .json(&before)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{}/routing", proxy.admin))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    assert_eq!(proxy.routing().await, before, "the old table is kept");
    let r = client
        .get(format!("{}/version", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(version_of(r).await, "1.0.0");

    // Health and metrics.
    let r = client
        .get(format!("{}/healthz", proxy.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = proxy.admin_get("/metrics", TOKEN).await;
    for needle in [
        r#"capstan_proxy_requests_total{release="1.0.0",cohort="public",status_class="2xx"} 1"#,
        r#"capstan_proxy_request_duration_seconds_count{release="1.0.0",cohort="public"} 1"#,
        "capstan_proxy_events_dropped_total 0",
    ] {
        assert!(metrics.contains(needle), "`{needle}` not in:\n{metrics}");
    }
    proxy.stop().await;
}

/// PATCH /routing: a merge patch changes what it names and keeps the rest;
/// a bad result is refused with the old table kept; patches sent at once
/// all take effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_changes_only_what_it_names_and_none_is_lost() {
    let db = Db::new();
    let proxy = Proxy::start(settings(&config(
        &["127.0.0.1:9"],
        &["127.0.0.1:10"],
        r#"weights = { "1.0.0" = 100, "2.0.0" = 0 }"#,
        &db.path("events.db"),
    )))
    .await;
    let client = reqwest::Client::new();
    let patch = |body: String, token: &'static str| {
        let client = client.clone();
        let url = format!("{}/routing", proxy.admin);
        async move {
            let r = client
                .patch(url)
                .bearer_auth(token)
                .header("content-type", "application/merge-patch+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let before = proxy.routing().await;

    let (status, table) = patch(r#"{"weights": {"1.0.0": 80, "2.0.0": 20}}"#.into(), TOKEN).await;
    assert_eq!(status, 200, "{table}");
    let mut want = before.clone();
    want["weights"] = serde_json::json!({"1.0.0": 80, "2.0.0": 20});
    assert_eq!(table, want);
    assert_eq!(proxy.routing().await, want);

    // null removes a key.
    let (status, _) = patch(
        r#"{"mirror": {"release": "2.0.0", "percent": 5}}"#.into(),
        TOKEN,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(proxy.routing().await["mirror"]["percent"], 5);
    let (status, table) = patch(r#"{"mirror": null}"#.into(), TOKEN).await;
    assert_eq!((status, table), (200, want.clone()));

    // Refused, and nothing changes.
    for (body, needle) in [
        (
            r#"{"weights": {"2.0.0": 10}}"#,
            "routing table: weights: sum to 90, must be 100",
        ),
        (r#"{"colour": "blue"}"#, "unknown field `colour`"),
        (
            r#"{"releases": null}"#,
            "routing table: missing field `releases`",
        ),
        ("[1]", "routing patch: must be a JSON object"),
        (
            r#"{"mirorr": null}"#,
            "routing patch: unknown field `mirorr`",
        ),
        (
            r#"{"sticky": {"cokie": null}}"#,
            "routing patch: unknown field `sticky.cokie`",
        ),
        ("{not json", "routing patch:"),
    ] {
        let (status, err) = patch(body.into(), TOKEN).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["error"].as_str().unwrap().contains(needle),
            "{body}: {err}"
        );
    }
    let (status, _) = patch(r#"{"internal": "2.0.0"}"#.into(), "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(
        proxy.routing().await,
        want,
        "refused patches change nothing"
    );

    // Patches of different fields sent at once: every one is in the result.
    for round in 0..10 {
        let (a, b, c) = tokio::join!(
            patch(r#"{"internal": "2.0.0"}"#.into(), TOKEN),
            patch(r#"{"sticky": {"header": "x-user"}}"#.into(), TOKEN),
            patch(
                r#"{"mirror": {"release": "2.0.0", "percent": 5}}"#.into(),
                TOKEN
            ),
        );
        assert_eq!((a.0, b.0, c.0), (200, 200, 200));
        let t = proxy.routing().await;
        assert_eq!(t["internal"], "2.0.0", "round {round}: {t}");
        assert_eq!(t["sticky"]["header"], "x-user", "round {round}: {t}");
        assert_eq!(t["mirror"]["percent"], 5, "round {round}: {t}");
        let (status, t) = patch(
            r#"{"internal": null, "sticky": null, "mirror": null}"#.into(),
            TOKEN,
        )
        .await;
        assert_eq!((status, t), (200, want.clone()));
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unready_pools_timeouts_and_refused_connections_answer_503_504_and_502() {
    let db = Db::new();
    let v1 = Chirpy::start(1, &db, None).await;
    // An upstream that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let nobody = format!("127.0.0.1:{}", free_port());
    let text = config(
        &[&v1.addr, &nobody],
        &[&silent_addr],
        r#"internal = "2.0.0"
weights = { "1.0.0" = 100 }"#,
        &db.path("events.db"),
    )
    .replace(
        "service = \"chirpy\"",
        "service = \"chirpy\"\ntimeout = \"1s\"",
    )
    .replace(
        "template = \"/users/{id}\"",
        "template = \"/users/{id}\"\ntimeout = \"300ms\"",
    );
    let proxy = Proxy::start(settings(&text)).await;
    let client = reqwest::Client::new();

    // A per-route timeout: 504 after about 300 ms.
    let started = Instant::now();
    let r = client
        .get(format!("{}/users/1", proxy.url))
        .header("x-internal", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(3));
    let body = r.text().await.unwrap();
    assert!(body.contains("did not answer within 300ms"), "{body}");
    // What failed, not where: no upstream's address reaches the client.
    assert!(!body.contains(&silent_addr), "{body}");

    // GETs to 1.0.0 never fail: a refused connect is retried on the other instance.
    for _ in 0..10 {
        let r = client
            .get(format!("{}/version", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // The silent upstream fails its checks: the whole 2.0.0 pool is unready.
    let started = Instant::now();
    loop {
        let r = client
            .get(format!("{}/version", proxy.url))
            .header("x-internal", "1")
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            let body = r.text().await.unwrap();
            assert!(
                body.contains("no ready upstream in release 2.0.0"),
                "{body}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still routed to a silent pool"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A POST is not retried: with the live 1.0.0 instance gone, the refused one answers 502.
    drop(v1);
    let r = client
        .post(format!("{}/users", proxy.url))
        .json(&serde_json::json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 502 || r.status() == 503, "{}", r.status());
    let body = r.text().await.unwrap();
    assert!(!body.contains("127.0.0.1"), "{body}");
    drop(silent);
    proxy.stop().await;
}

/// The workers share one listening socket: a second proxy on a port the first
/// holds is refused with "address in use", and never takes part of its traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_proxy_on_a_taken_port_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("events.db");
    let text = |listen: &str| {
        format!(
            "listen = \"{listen}\"\nservice = \"s\"\n\n[[release]]\nname = \"1.0.0\"\nupstreams = [\"127.0.0.1:9\"]\n\n[events]\nstore = \"{}\"\n",
            store.display()
        )
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let first = tokio::spawn(capstan_proxy::run(
        settings(&text("127.0.0.1:0")),
        async {
            let _ = stopped.await;
        },
        |b| {
            let _ = bound_tx.send(b);
        },
    ));
    let bound = tokio::time::timeout(Duration::from_secs(10), bound_rx)
        .await
        .expect("first proxy bound within 10s")
        .expect("first proxy started");

    let second = tokio::time::timeout(
        Duration::from_secs(10),
        capstan_proxy::run(
            settings(&text(&bound.listen.to_string())),
            std::future::pending::<()>(),
            |_| panic!("the second proxy bound a port the first holds"),
        ),
    )
    .await
    .expect("the second proxy answered within 10s");
    match second {
        Err(capstan_proxy::ServeError::Bind { addr, source }) => {
            assert_eq!(addr, bound.listen);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
        }
        other => panic!("expected a bind error, got {other:?}"),
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .expect("first proxy stopped within 30s")
        .expect("first proxy task")
        .expect("first proxy ran");
}

//! chirpy 1.0.0 and 2.0.0 behind the proxy, all real processes on one SQLite
//! file: cohorts, the split, stickiness, mirroring, changes and failures under
//! load, and the events every request leaves.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_requests_reach_v2_only_and_a_90_10_split_lands_within_2_percent() {
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
weights = { "1.0.0" = 90, "2.0.0" = 10 }
sticky = { header = "x-user" }"#,
        &events_db,
    )))
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/version", proxy.url);

    // Internal: 2.0.0 only, whatever the user key.
    let mut expected: HashMap<String, (&str, &str)> = HashMap::new();
    for n in 0..200u64 {
        let (tp, trace) = traceparent(n);
        let r = client
            .get(&url)
            .header("x-internal", "1")
            .header("x-user", format!("staff-{n}"))
            .header("traceparent", tp)
            .send()
            .await
            .unwrap();
        assert!(
            !r.headers().contains_key("x-capstan-release"),
            "x-capstan-* headers are stripped"
        );
        assert_eq!(version_of(r).await, "2.0.0");
        expected.insert(trace, ("2.0.0", "internal"));
    }

    // Public: 10,000 users, 10 % ± 2 points on 2.0.0.
    let results: Vec<(u64, String)> = futures_util::stream::iter(1000..11_000u64)
        .map(|n| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let r = client
                    .get(&url)
                    .header("x-user", format!("user-{n}"))
                    .header("traceparent", traceparent(n).0)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                (n, version_of(r).await)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let canary = results.iter().filter(|(_, v)| v == "2.0.0").count();
    assert!(
        (800..=1200).contains(&canary),
        "{canary} of 10000 on 2.0.0; expected 1000 ± 200"
    );
    for (n, v) in &results {
        let rel = if v == "2.0.0" { "2.0.0" } else { "1.0.0" };
        expected.insert(traceparent(*n).1, (rel, "public"));
    }
    proxy.stop().await;

    // Every request is in the store with its release, cohort and chirpy's field.
    let events = events(&events_db);
    let by_trace: HashMap<&str, &capstan_events::Event> = events
        .iter()
        .filter_map(|e| Some((e.trace_id.as_deref()?, e)))
        .collect();
    assert_eq!(by_trace.len(), expected.len(), "one event per request");
    for (trace, (release, cohort)) in &expected {
        let e = by_trace
            .get(trace.as_str())
            .unwrap_or_else(|| panic!("no event for trace {trace}"));
        assert_eq!((e.release.as_str(), e.cohort.as_str()), (*release, *cohort));
        assert_eq!(e.fields.get("release").map(String::as_str), Some(*release));
        assert_eq!((e.status, e.route.as_str()), (200, "/version"));
        assert!(e.user.as_deref().is_some_and(|u| !u.contains("user")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_on_the_canary_stays_there_while_its_weight_grows() {
    let db = Db::new();
    let (v1, v2) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(2, &db, None).await,
    );
    let proxy = Proxy::start(settings(&config(
        &[&v1.addr],
        &[&v2.addr],
        r#"weights = { "1.0.0" = 100 }
sticky = { cookie = "uid" }"#,
        &db.path("events.db"),
    )))
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/version", proxy.url);
    let mut table = proxy.routing().await;
    let mut on_canary: HashMap<u64, bool> = HashMap::new();
    for w in [1u32, 5, 25, 50] {
        table["weights"] = serde_json::json!({ "1.0.0": 100 - w, "2.0.0": w });
        let r = proxy.put_routing(&table).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let seen: Vec<(u64, bool)> = futures_util::stream::iter(0..1000u64)
            .map(|u| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let r = client
                        .get(&url)
                        .header("cookie", format!("theme=dark; uid=u{u}"))
                        .send()
                        .await
                        .unwrap();
                    (u, version_of(r).await == "2.0.0")
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        let n = seen.iter().filter(|(_, c)| *c).count();
        let expect = 10 * w as usize;
        assert!(
            n.abs_diff(expect) <= 30 + expect / 5,
            "weight {w}: {n} of 1000 users on 2.0.0"
        );
        for (u, canary) in seen {
            if on_canary.get(&u).copied().unwrap_or(false) {
                assert!(canary, "user u{u} left 2.0.0 when its weight grew to {w}");
            }
            on_canary.insert(u, canary);
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_requests_leave_user_responses_byte_identical() {
    let db = Db::new();
    let (v1, v2) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(2, &db, None).await,
    );
    let events_db = db.path("events.db");
    let proxy = Proxy::start(settings(&config(
        &[&v1.addr],
        &[&v2.addr],
        r#"weights = { "1.0.0" = 100 }
sticky = { header = "x-user" }
mirror = { release = "2.0.0", percent = 100 }"#,
        &events_db,
    )))
    .await;
    let client = reqwest::Client::new();
    // Writes are never mirrored (the shadow shares the database).
    let user: serde_json::Value = client
        .post(format!("{}/users", proxy.url))
        .json(&serde_json::json!({"name": "ada"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = user["id"].as_i64().unwrap();
    for body in ["first", "second"] {
        let r = client
            .post(format!("{}/users/{id}/chirps", proxy.url))
            .json(&serde_json::json!({ "body": body }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let paths = [
        format!("/users/{id}"),
        format!("/users/{id}/chirps"),
        "/version".to_string(),
        "/users/999999".to_string(),
    ];
    // What the user sees with the mirror on, through the proxy, and from 1.0.0 directly.
    let snapshot = |base: String| {
        let (client, paths) = (client.clone(), paths.clone());
        async move {
            let mut out = Vec::new();
            for p in &paths {
                let r = client
                    .get(format!("{base}{p}"))
                    .header("x-user", "ada")
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let mut headers: Vec<(String, String)> = r
                    .headers()
                    .iter()
                    .filter(|(k, _)| *k != "date")
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                    .collect();
                headers.sort();
                out.push((status, headers, r.bytes().await.unwrap()));
            }
            out
        }
    };
    let mirrored = snapshot(proxy.url.clone()).await;
    let mut table = proxy.routing().await;
    table.as_object_mut().unwrap().remove("mirror");
    assert_eq!(proxy.put_routing(&table).await.status(), 200);
    let plain = snapshot(proxy.url.clone()).await;
    assert_eq!(mirrored, plain, "the mirror changed what the user sees");
    let direct = snapshot(format!("http://{}", v1.addr)).await;
    for ((s, _, b), (ds, dh, db)) in mirrored.iter().zip(&direct) {
        assert_eq!((s, b), (ds, db), "proxied body differs from 1.0.0's own");
        assert!(dh.iter().any(|(k, _)| k == "x-capstan-release"));
    }
    proxy.stop().await;

    // The comparisons are recorded with the user's events.
    let events = events(&events_db);
    let compared: Vec<_> = events.iter().filter(|e| e.mirror.is_some()).collect();
    assert_eq!(compared.len(), paths.len(), "{events:#?}");
    for e in compared {
        let m = e.mirror.as_ref().unwrap();
        assert_eq!(e.release, "1.0.0");
        assert!(m.status_class_equal, "{e:?}");
        assert!(m.shadow_status > 0 && m.shadow_ms > 0.0, "{e:?}");
        // 1.0.0 and 2.0.0 name their version: those bodies differ.
        assert_eq!(m.body_hash_equal, e.route != "/version", "{e:?}");
    }
    assert!(events
        .iter()
        .filter(|e| e.method == "POST")
        .all(|e| e.mirror.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_under_load_fail_no_request() {
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
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(format!("{}/version", proxy.url), 16, stop.clone()));
    let mut table = proxy.routing().await;
    for i in 0..20u32 {
        let w = (i * 5) % 101;
        table["weights"] = serde_json::json!({ "1.0.0": 100 - w, "2.0.0": w });
        assert_eq!(proxy.put_routing(&table).await.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let r = load.await.unwrap();
    assert_eq!(r.failed, 0, "{r:?}");
    assert!(r.ok > 100, "{r:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_upstream_costs_at_most_its_in_flight_requests() {
    let db = Db::new();
    let (mut a, b) = (
        Chirpy::start(1, &db, None).await,
        Chirpy::start(1, &db, None).await,
    );
    let v2 = Chirpy::start(2, &db, None).await;
    let proxy = Proxy::start(settings(&config(
        &[&a.addr, &b.addr],
        &[&v2.addr],
        r#"weights = { "1.0.0" = 100 }"#,
        &db.path("events.db"),
    )))
    .await;
    let workers = 16;
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(
        format!("{}/version", proxy.url),
        workers,
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let r = load.await.unwrap();
    assert!(
        r.failed <= workers as u64,
        "{} failed with {workers} in flight: {r:?}",
        r.failed
    );
    assert!(r.ok > 100, "{r:?}");
    let up: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/upstreams", proxy.admin))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let killed = up["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["addr"] == a.addr.as_str())
        .unwrap();
    assert_eq!(killed["ready"], false, "{up}");
    proxy.stop().await;
}

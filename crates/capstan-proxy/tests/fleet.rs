//! Upstreams found in the fleet registry, with real chirpy processes
//! registering in a real database (SQLite, and Postgres through a relay the
//! test can cut): an instance started later receives traffic, an instance
//! that stops (and leaves the fleet) receives none, and an unreachable
//! registry keeps the last known instances serving.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// A password the registry URL carries and no answer may show.
const SECRET: &str = "s3cret-fleet-pw";

fn fleet_config(database: &str, events: &std::path::Path) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
service = "chirpy"

[fleet]
database = "{database}"
app = "chirpy"
refresh = "200ms"
timeout = "2s"
ttl = "3s"

[[release]]
name = "2.0.0"
fleet = true

[events]
store = "{}"

[health]
interval = "200ms"
"#,
        events.display()
    )
}

/// The ready upstreams of the pool, by address.
async fn ready_upstreams(proxy: &Proxy) -> Vec<String> {
    let up: serde_json::Value =
        serde_json::from_str(&proxy.admin_get("/upstreams", TOKEN).await).unwrap();
    let mut out: Vec<String> = up["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["ready"] == true)
        .map(|u| u["addr"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Polls `cond` every 50 ms for at most 15 s; panics with `what`.
async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !cond().await {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not within 15s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends GET /version with the traces of `ns`; every answer must be 200.
async fn send(proxy: &Proxy, ns: std::ops::Range<u64>) {
    let client = reqwest::Client::new();
    for n in ns {
        let r = client
            .get(format!("{}/version", proxy.url))
            .header("traceparent", traceparent(n).0)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap();
        let status = r.status();
        assert_eq!(status, 200, "request {n}: {}", r.text().await.unwrap());
        assert_eq!(version_of(r).await, "2.0.0");
    }
}

/// How the test makes the registry unreachable, and reachable again.
enum Cut {
    /// Rename the SQLite file away and back.
    Rename(PathBuf),
    /// Stop and restart the TCP relay in front of Postgres.
    Relay(Relay),
}

/// A TCP relay in front of the Postgres server, which the test can stop.
struct Relay {
    port: u16,
    target: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Relay {
    async fn start(port: u16, target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let t = target.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let t = t.clone();
                conns.spawn(async move {
                    if let Ok(Ok(mut server)) = tokio::time::timeout(
                        Duration::from_secs(2),
                        tokio::net::TcpStream::connect(&t),
                    )
                    .await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Relay {
            port,
            target,
            task: Some(task),
        }
    }

    /// Closes the listener and every relayed connection.
    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Cut {
    async fn cut(&mut self) {
        match self {
            Cut::Rename(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let from = PathBuf::from(format!("{}{suffix}", p.display()));
                    if from.exists() {
                        std::fs::rename(&from, format!("{}.away{suffix}", p.display())).unwrap();
                    }
                }
            }
            Cut::Relay(r) => r.stop().await,
        }
    }

    async fn restore(&mut self) {
        match self {
            Cut::Rename(p) => {
                for suffix in ["", "-wal", "-shm"] {
                    let away = PathBuf::from(format!("{}.away{suffix}", p.display()));
                    if away.exists() {
                        std::fs::rename(&away, format!("{}{suffix}", p.display())).unwrap();
                    }
                }
            }
            Cut::Relay(r) => *r = Relay::start(r.port, r.target.clone()).await,
        }
    }
}

/// The scenario, on a database chirpy 2.0.0 has migrated: `chirpy_url` is
/// what the instances use, `proxy_url` what the proxy polls.
async fn scenario(chirpy_url: &str, proxy_url: &str, dir: &std::path::Path, mut cut: Cut) {
    let start = |v: u8, env: &'static [(&'static str, &'static str)]| {
        Chirpy::start_on(v, chirpy_url, dir, env)
    };
    // A live 1.0.0 instance: registered, but not of the release's version.
    let old = start(1, &[]).await;
    let mut a = start(2, &[("CHIRPY_DRAIN", "1s")]).await;
    let events_db = dir.join("events.db");
    let proxy = Proxy::start(settings(&fleet_config(proxy_url, &events_db))).await;
    let p = &proxy;

    let only_a = vec![a.addr.clone()];
    let want = &only_a;
    wait_for("the first instance is ready in the pool", || async move {
        ready_upstreams(p).await == *want
    })
    .await;
    send(&proxy, 0..20).await;

    // A second instance joins under load: no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let bg = tokio::spawn(load(format!("{}/version", proxy.url), 8, stop.clone()));
    let b = start(2, &[]).await;
    let mut both = vec![a.addr.clone(), b.addr.clone()];
    both.sort();
    let want = &both;
    wait_for("the second instance joins the pool", || async move {
        ready_upstreams(p).await == *want
    })
    .await;
    send(&proxy, 100..140).await;

    // The first one stops (SIGTERM: it drains and leaves the fleet).
    let a_addr = a.addr.clone();
    let clean = tokio::task::spawn_blocking(move || a.terminate())
        .await
        .unwrap();
    assert!(clean, "chirpy exits cleanly on SIGTERM");
    let gone = &a_addr;
    wait_for("the stopped instance leaves the pool", || async move {
        !p.admin_get("/upstreams", TOKEN)
            .await
            .contains(gone.as_str())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let r = bg.await.unwrap();
    assert_eq!(
        r.failed, 0,
        "an instance joining and leaving fails no request: {r:?}"
    );
    assert!(r.ok > 50, "{r:?}");
    send(&proxy, 200..220).await;

    // The registry becomes unreachable: the last known instance serves on,
    // and the admin API and /metrics say so, without the password.
    cut.cut().await;
    wait_for("healthz reports the registry unreachable", || async move {
        let h: serde_json::Value = reqwest::get(format!("{}/healthz", p.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        h["status"] == "warn" && h["checks"]["fleet"]["consecutive_failures"].as_u64() >= Some(2)
    })
    .await;
    send(&proxy, 300..320).await;
    assert_eq!(ready_upstreams(&proxy).await, vec![b.addr.clone()]);
    let metrics = proxy.admin_get("/metrics", TOKEN).await;
    assert!(metrics.contains("capstan_proxy_fleet_up 0"), "{metrics}");
    let upstreams = proxy.admin_get("/upstreams", TOKEN).await;
    let report: serde_json::Value = serde_json::from_str(&upstreams).unwrap();
    assert!(
        report["fleet"]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{upstreams}"
    );
    let healthz = reqwest::get(format!("{}/healthz", proxy.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for shown in [&metrics, &upstreams, &healthz] {
        assert!(!shown.contains(SECRET), "the password leaked: {shown}");
    }

    // Reachable again: healthy again.
    cut.restore().await;
    wait_for("the registry answers again", || async move {
        p.admin_get("/metrics", TOKEN)
            .await
            .contains("capstan_proxy_fleet_up 1")
    })
    .await;
    proxy.stop().await;
    drop(old);

    // Which instance answered each request.
    let by_trace: HashMap<String, String> = events(&events_db)
        .into_iter()
        .filter_map(|e| Some((e.trace_id?.into(), e.instance.into())))
        .collect();
    let served = |ns: std::ops::Range<u64>| -> Vec<String> {
        ns.map(|n| {
            by_trace
                .get(&traceparent(n).1)
                .cloned()
                .unwrap_or_else(|| panic!("no event for request {n}"))
        })
        .collect()
    };
    assert!(served(0..20).iter().all(|i| *i == a_addr));
    let phase2 = served(100..140);
    let on_b = phase2.iter().filter(|i| **i == b.addr).count();
    assert!(
        (10..=30).contains(&on_b),
        "round robin over two instances: {on_b} of 40 on the new one"
    );
    assert!(
        served(200..220).iter().all(|i| *i == b.addr),
        "the stopped instance got none"
    );
    assert!(served(300..320).iter().all(|i| *i == b.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_registry_instances_join_and_leave_and_an_unreachable_registry_keeps_serving() {
    let db = Db::new();
    let path = db.dir.path().join("chirpy.db");
    scenario(&db.url, &db.url, db.dir.path(), Cut::Rename(path)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_registry_instances_join_and_leave_and_an_unreachable_registry_keeps_serving() {
    let pg = capstan_testkit::TestDb::new("proxy_fleet");
    let out = Command::new(bin_dir().join("chirpy-v2"))
        .args(["migrate", "up"])
        .env("DATABASE_URL", &pg.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "migrate up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // postgres://user[:pw]@host:port/db → the proxy polls through the relay,
    // with a password in its URL (the test server trusts local connections).
    let (scheme, rest) = pg.url.split_once("://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let user = user.split(':').next().unwrap();
    let (target, db_and_params) = rest.split_once('/').unwrap();
    let relay = Relay::start(free_port(), target.to_string()).await;
    let proxy_url = format!(
        "{scheme}://{user}:{SECRET}@127.0.0.1:{}/{db_and_params}",
        relay.port
    );
    let dir = tempfile::tempdir().unwrap();
    scenario(&pg.url, &proxy_url, dir.path(), Cut::Relay(relay)).await;
}

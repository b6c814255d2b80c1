//! Real chirpy processes on a SQLite file, the proxy in this process, and a
//! load generator with many distinct users.

#![allow(dead_code, unused_imports)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use capstan_testkit::chirpy::{bin_dir, Chirpy, Db};
pub use capstan_testkit::free_port;

use capstan_rollout::controller::plan::{Plan, PlanFile};
use capstan_rollout::controller::run;
use capstan_slo::DeployLog;

pub const TOKEN: &str = "test-token";

/// The proxy in this process: 1.0.0 (stable) and 2.0.0 (canary, weight 0),
/// sticky on `x-user`, `x-internal: 1` marks the internal cohort.
pub struct Proxy {
    pub url: String,
    pub admin: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(v1: &str, v2: &str, events: &Path) -> Proxy {
        let text = format!(
            r#"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "{TOKEN}"
service = "chirpy"

[[release]]
name = "1.0.0"
upstreams = ["{v1}"]

[[release]]
name = "2.0.0"
upstreams = ["{v2}"]

[cohort]
headers = [{{ name = "x-internal", value = "1" }}]

[routing]
weights = {{ "1.0.0" = 100, "2.0.0" = 0 }}
sticky = {{ header = "x-user" }}

[events]
store = "{}"

[health]
interval = "200ms"
"#,
            events.display()
        );
        let settings = capstan_proxy::parse_config(Path::new("proxy.toml"), &text)
            .unwrap_or_else(|e| panic!("{e}"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            capstan_proxy::run(
                settings,
                async {
                    let _ = stopped.await;
                },
                |b| {
                    let _ = bound_tx.send(b);
                },
            )
            .await
            .unwrap();
        });
        let b = tokio::time::timeout(Duration::from_secs(10), bound_rx)
            .await
            .expect("proxy bound within 10s")
            .expect("proxy started");
        Proxy {
            url: format!("http://{}", b.listen),
            admin: format!("http://{}", b.admin.unwrap()),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.task.take().unwrap())
            .await
            .expect("proxy stopped within 30s")
            .unwrap();
    }

    pub async fn routing(&self) -> serde_json::Value {
        let r = reqwest::Client::new()
            .get(format!("{}/routing", self.admin))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
    }
}

/// What users saw during a load run.
#[derive(Debug, Default)]
pub struct Seen {
    pub requests: u64,
    pub failed: u64,
    pub users: std::collections::HashSet<u32>,
    pub canary_users: std::collections::HashSet<u32>,
    /// Milliseconds since the start of the load when an internal / a public
    /// user first got the canary.
    pub first_internal_canary_ms: Option<u64>,
    pub first_public_canary_ms: Option<u64>,
}

/// Users `0..users`; every 20th is internal (`x-internal: 1`).
pub fn is_internal(user: u32) -> bool {
    user % 20 == 0
}

/// `workers` loops of `GET /version` with a different user each time, until
/// `stop` is set (and at most `limit`, a bound on the run).
/// Steady load on the proxy from 5,000 users on 6 workers (at most 60 s):
/// set the flag to stop it; the handle gives what the users saw.
pub fn steady_load(s: &Setup) -> (Arc<AtomicBool>, tokio::task::JoinHandle<Seen>) {
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(load(
        s.proxy.url.clone(),
        6,
        5000,
        stop.clone(),
        Duration::from_secs(60),
    ));
    (stop, load)
}

/// Runs the rollout until it ends or stops for a human (at most 45 s).
pub async fn run_to_end(plan: &Plan) -> run::Finished {
    tokio::time::timeout(
        Duration::from_secs(45),
        run::run(plan, &run::RunOptions::default()),
    )
    .await
    .expect("rollout decided within 45s")
    .expect("rollout ran")
}

pub async fn load(
    url: String,
    workers: u32,
    users: u32,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> Seen {
    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (url, stop, client, seen) = (url.clone(), stop.clone(), client.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(w);
            while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let user = (x % u64::from(users)) as u32;
                let mut req = client
                    .get(format!("{url}/version"))
                    .header("x-user", format!("user-{user}"))
                    .timeout(Duration::from_secs(10));
                if is_internal(user) {
                    req = req.header("x-internal", "1");
                }
                let r = req.send().await;
                let (failed, canary) = match r {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        if status.is_server_error() {
                            // Only the canary injects faults.
                            (true, body.contains("injected fault"))
                        } else {
                            (false, body.contains("\"2.0.0\""))
                        }
                    }
                    Err(_) => (true, false),
                };
                let mut s = seen.lock().unwrap();
                s.requests += 1;
                s.users.insert(user);
                if failed {
                    s.failed += 1;
                }
                if canary {
                    s.canary_users.insert(user);
                    let at = started.elapsed().as_millis() as u64;
                    let slot = if is_internal(user) {
                        &mut s.first_internal_canary_ms
                    } else {
                        &mut s.first_public_canary_ms
                    };
                    slot.get_or_insert(at);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(seen)
        .expect("every worker has ended")
        .into_inner()
        .unwrap()
}

/// A plan for chirpy 2.0.0 through `admin`, its files in `dir`, `body` added
/// (latency tolerances wide: loopback latencies are noise).
pub fn plan(dir: &Path, admin: &str, body: &str) -> Plan {
    let text = format!(
        "service = \"chirpy\"\ncanary = \"2.0.0\"\nevents = \"{}\"\nstate = \"{}\"\n{body}\n[proxy]\nadmin_url = \"{admin}\"\ntoken = \"{TOKEN}\"\ntimeout = \"5s\"\n\
         [analysis]\nshift_tolerance = 5.0\np99_tolerance = 50.0\n",
        dir.join("events.db").display(),
        dir.join("rollout.db").display(),
    );
    let p = Path::new("rollout.toml");
    PlanFile::parse(p, &text)
        .and_then(|f| f.validate(p))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub struct Setup {
    pub db: Db,
    pub v1: Chirpy,
    pub v2: Chirpy,
    pub proxy: Proxy,
}

pub async fn setup(fault: Option<&str>) -> Setup {
    let db = Db::new();
    let v1 = Chirpy::start(1, &db, None).await;
    let v2 = Chirpy::start(2, &db, fault).await;
    let proxy = Proxy::start(&v1.addr, &v2.addr, &db.path("events.db")).await;
    Setup { db, v1, v2, proxy }
}

pub fn decisions(s: &Setup) -> Vec<String> {
    let log = DeployLog::open(&s.db.path("events.db")).unwrap();
    log.list(Some("chirpy"), 0, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|d| d.label())
        .collect()
}

pub fn canary_weight(table: &serde_json::Value) -> i64 {
    table["weights"]["2.0.0"].as_i64().unwrap_or(0)
}

/// Watches the canary's weight every 50 ms until `stop`; the weights seen, in order.
pub fn watch_weights(admin: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut seen = vec![0];
        loop {
            // One more reading after the stop: the weights the proxy holds
            // when the test ends are always among those seen.
            let last = stop.load(Ordering::Relaxed);
            if let Ok(r) = client
                .get(format!("{admin}/routing"))
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                if let Ok(b) = r.bytes().await {
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&b) {
                        let w = canary_weight(&v);
                        if seen.last() != Some(&w) {
                            seen.push(w);
                        }
                    }
                }
            }
            if last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    })
}

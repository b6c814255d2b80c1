//! Upstream pools and their health: each upstream is checked through its
//! readiness path; N consecutive results flip its state, and an unready
//! upstream gets no traffic. A connect error on the request path marks it
//! unready at once (the checks bring it back).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::config::HealthSettings;
use crate::routing::RoutingTable;
use crate::HttpClient;

/// One upstream address and its health, shared across routing tables.
#[derive(Debug)]
pub struct Upstream {
    /// `host:port`.
    pub addr: String,
    ready: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    checks: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Upstream {
    fn new(addr: &str) -> Upstream {
        Upstream {
            addr: addr.to_string(),
            // Optimistic: a new upstream takes traffic until a check says otherwise.
            ready: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            checks: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// Whether it gets traffic.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Records one check result and flips the state after enough in a row.
    pub fn observe(&self, result: Result<(), String>, h: &HealthSettings) {
        self.checks.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= h.healthy_threshold && !self.ready.swap(true, Ordering::Relaxed) {
                    tracing::info!(upstream = %self.addr, "upstream ready");
                }
                *self.last_error.lock().expect("lock") = None;
            }
            Err(e) => {
                self.successes.store(0, Ordering::Relaxed);
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= h.unhealthy_threshold && self.ready.swap(false, Ordering::Relaxed) {
                    tracing::warn!(upstream = %self.addr, error = %e, "upstream unready");
                }
                *self.last_error.lock().expect("lock") = Some(e);
            }
        }
    }

    /// A connect error on the request path: out of rotation until checks pass.
    pub fn connect_failed(&self, e: String) {
        self.successes.store(0, Ordering::Relaxed);
        if self.ready.swap(false, Ordering::Relaxed) {
            tracing::warn!(upstream = %self.addr, error = %e, "upstream refused a connection; unready");
        }
        *self.last_error.lock().expect("lock") = Some(e);
    }
}

/// The upstreams of one release.
#[derive(Debug)]
pub struct Pool {
    /// Release name.
    pub release: String,
    /// Its upstreams.
    pub upstreams: Vec<Arc<Upstream>>,
    next: AtomicUsize,
}

impl Pool {
    /// The next ready upstream (round robin), skipping `except`.
    pub fn pick(&self, except: Option<&Arc<Upstream>>) -> Option<Arc<Upstream>> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.upstreams[(start + i) % n])
            .find(|u| u.is_ready() && except.is_none_or(|e| !Arc::ptr_eq(e, u)))
            .cloned()
    }
}

/// A routing table with its pools: what the request path reads.
#[derive(Debug)]
pub struct Snapshot {
    /// The table (validated).
    pub table: RoutingTable,
    /// One pool per release, in table order.
    pub pools: Vec<Pool>,
}

/// Every upstream ever configured, by address, so health survives table changes.
#[derive(Debug, Default)]
pub struct Registry {
    upstreams: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Registry {
    /// The snapshot of a validated `table`, reusing known upstreams' health.
    pub fn snapshot(&self, table: RoutingTable) -> Arc<Snapshot> {
        let mut map = self.upstreams.lock().expect("lock");
        let pools = table
            .releases
            .iter()
            .map(|r| Pool {
                release: r.name.clone(),
                upstreams: r
                    .upstreams
                    .iter()
                    .map(|a| {
                        map.entry(a.clone())
                            .or_insert_with(|| Arc::new(Upstream::new(a)))
                            .clone()
                    })
                    .collect(),
                next: AtomicUsize::new(0),
            })
            .collect();
        Arc::new(Snapshot { table, pools })
    }
}

/// One upstream's health, as `GET /upstreams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// The release whose pool it is in.
    pub release: String,
    /// `host:port`.
    pub addr: String,
    /// Whether it gets traffic.
    pub ready: bool,
    /// Consecutive successful checks.
    pub consecutive_successes: u32,
    /// Consecutive failed checks.
    pub consecutive_failures: u32,
    /// Checks run so far.
    pub checks: u64,
    /// The last failure, while failing.
    pub last_error: Option<String>,
}

impl Snapshot {
    /// Health of every upstream of the current table.
    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.pools
            .iter()
            .flat_map(|p| {
                p.upstreams.iter().map(|u| UpstreamStatus {
                    release: p.release.clone(),
                    addr: u.addr.clone(),
                    ready: u.is_ready(),
                    consecutive_successes: u.successes.load(Ordering::Relaxed),
                    consecutive_failures: u.failures.load(Ordering::Relaxed),
                    checks: u.checks.load(Ordering::Relaxed),
                    last_error: u.last_error.lock().expect("lock").clone(),
                })
            })
            .collect()
    }
}

/// Checks every upstream of the current table each interval, until `stop`.
pub async fn check_loop(
    client: HttpClient,
    tables: watch::Receiver<Arc<Snapshot>>,
    h: HealthSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(h.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let snap = tables.borrow().clone();
        let mut checks = tokio::task::JoinSet::new();
        for u in snap.pools.iter().flat_map(|p| p.upstreams.iter()) {
            let (u, client, h) = (u.clone(), client.clone(), h.clone());
            checks.spawn(async move {
                let r = check_one(&client, &u.addr, &h.path, h.timeout).await;
                u.observe(r, &h);
            });
        }
        while checks.join_next().await.is_some() {}
    }
}

async fn check_one(
    client: &HttpClient,
    addr: &str,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header(http::header::USER_AGENT, "capstan-proxy-health")
        .body(crate::proxy::empty_body())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Ok(Ok(resp)) => {
            let status = resp.status();
            // Read the body so the connection can be reused.
            let _ = tokio::time::timeout(
                timeout,
                http_body_util::BodyExt::collect(http_body_util::Limited::new(
                    resp.into_body(),
                    64 * 1024,
                )),
            )
            .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("{path} answered {status}"))
            }
        }
    }
}

//! Upstream pools and their health: each upstream is checked through its
//! readiness path; N consecutive results flip its state, and an unready
//! upstream gets no traffic. A connect error on the request path marks it
//! unready at once (the checks bring it back).
//!
//! A release's pool is its static upstreams followed by the instances the
//! fleet registry found for it; [`Tables`] rebuilds the snapshot whenever
//! either the routing table or the discovered set changes. Requests hold
//! their snapshot, so an upstream leaving a pool never cuts one short.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use crate::config::HealthSettings;
use crate::metrics::{LatencyLabels, Metrics, RequestLabels, STATUS_CLASSES};
use crate::routing::{Cohort, RoutingTable};
use crate::upstream::Client;

/// One upstream address and its health, shared across routing tables.
#[derive(Debug)]
pub struct Upstream {
    /// `host:port`.
    pub addr: String,
    /// `addr` as a URI authority, parsed once (none: not a valid authority).
    pub authority: Option<http::uri::Authority>,
    ready: AtomicBool,
    successes: AtomicU32,
    failures: AtomicU32,
    checks: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Upstream {
    /// A configured upstream is optimistic (it takes traffic until a check
    /// says otherwise); a discovered one waits for its first passing check.
    fn new(addr: &str, ready: bool) -> Upstream {
        Upstream {
            addr: addr.to_string(),
            authority: addr.parse().ok(),
            ready: AtomicBool::new(ready),
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

    /// An answer from it failed after the connection was made (a malformed
    /// head, a reset): kept as its last error; its readiness is the checks'.
    pub fn answer_failed(&self, e: String) {
        *self.last_error.lock().expect("lock") = Some(e);
    }
}

/// The upstreams of one release.
pub struct Pool {
    /// Release name.
    pub release: String,
    /// Its upstreams: the configured ones, then the discovered ones.
    pub upstreams: Vec<Arc<Upstream>>,
    /// How many of `upstreams` are configured (the rest came from the fleet).
    pub configured: usize,
    next: AtomicUsize,
    /// This release's request counters and latency histograms, looked up in
    /// the metric families once rather than on every request.
    counters: [[OnceLock<Counter>; STATUS_CLASSES.len()]; 2],
    latency: [OnceLock<Histogram>; 2],
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("release", &self.release)
            .field("upstreams", &self.upstreams)
            .finish()
    }
}

impl Pool {
    /// `capstan_proxy_requests_total` of this release, `cohort` and class.
    pub fn requests(&self, cohort: Cohort, status: u16) -> &Counter {
        let class = crate::metrics::status_class_index(status);
        self.counters[cohort as usize][class].get_or_init(|| {
            self.metrics
                .requests
                .get_or_create(&RequestLabels {
                    release: self.release.clone(),
                    cohort: cohort.as_str(),
                    status_class: STATUS_CLASSES[class],
                })
                .clone()
        })
    }

    /// `capstan_proxy_request_duration_seconds` of this release and `cohort`.
    pub fn latency(&self, cohort: Cohort) -> &Histogram {
        self.latency[cohort as usize].get_or_init(|| {
            self.metrics
                .duration
                .get_or_create(&LatencyLabels {
                    release: self.release.clone(),
                    cohort: cohort.as_str(),
                })
                .clone()
        })
    }

    /// The next ready upstream (round robin among the ready ones), skipping
    /// `except`. The turn counts ready upstreams only: counted over all of
    /// them, the one after an unready upstream would take its turns too.
    pub fn pick(&self, except: Option<&Arc<Upstream>>) -> Option<Arc<Upstream>> {
        let eligible =
            |u: &&Arc<Upstream>| u.is_ready() && except.is_none_or(|e| !Arc::ptr_eq(e, u));
        let ready = self.upstreams.iter().filter(eligible).count();
        if ready == 0 {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % ready;
        self.upstreams
            .iter()
            .filter(eligible)
            .nth(turn)
            // Readiness changed between the two passes: any ready one.
            .or_else(|| self.upstreams.iter().find(eligible))
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

/// The addresses the fleet registry holds for each version.
pub type Discovered = BTreeMap<String, Vec<String>>;

/// The upstreams of the current pools, by address, so health survives
/// table changes (an address that leaves every pool is forgotten).
#[derive(Debug, Default)]
pub struct Registry {
    upstreams: Mutex<HashMap<String, Arc<Upstream>>>,
}

impl Registry {
    /// The snapshot of a validated `table` with the `discovered` instances
    /// of its fleet releases, reusing known upstreams' health. An address
    /// already in an earlier pool is not added to a later one.
    pub fn snapshot(
        &self,
        table: RoutingTable,
        discovered: &Discovered,
        metrics: &Arc<Metrics>,
    ) -> Arc<Snapshot> {
        let mut map = self.upstreams.lock().expect("lock");
        let mut used: HashSet<&str> = table
            .releases
            .iter()
            .flat_map(|r| r.upstreams.iter().map(String::as_str))
            .collect();
        let mut fresh: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut take = |a: &str, configured: bool| {
            let u = map
                .get(a)
                .cloned()
                .unwrap_or_else(|| Arc::new(Upstream::new(a, configured)));
            fresh.insert(a.to_string(), u.clone());
            u
        };
        let pools = table
            .releases
            .iter()
            .map(|r| {
                let mut upstreams: Vec<Arc<Upstream>> =
                    r.upstreams.iter().map(|a| take(a, true)).collect();
                let configured = upstreams.len();
                let found = r
                    .fleet
                    .as_ref()
                    .and_then(|f| discovered.get(&f.version))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for a in found {
                    if used.insert(a.as_str()) {
                        upstreams.push(take(a, false));
                    }
                }
                Pool {
                    release: r.name.clone(),
                    upstreams,
                    configured,
                    next: AtomicUsize::new(0),
                    counters: Default::default(),
                    latency: Default::default(),
                    metrics: metrics.clone(),
                }
            })
            .collect();
        *map = fresh;
        Arc::new(Snapshot { table, pools })
    }
}

/// Publishes snapshots: the one place that combines the routing table (set
/// by the admin API) with the discovered instances (set by the fleet
/// poller), so neither change overwrites the other.
#[derive(Debug)]
pub struct Tables {
    registry: Registry,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Arc<Snapshot>>,
    discovered: Mutex<Discovered>,
}

impl Tables {
    /// Publishes `table` (validated) with nothing discovered yet.
    pub fn new(table: RoutingTable, metrics: Arc<Metrics>) -> Tables {
        let registry = Registry::default();
        let snap = registry.snapshot(table, &Discovered::new(), &metrics);
        Tables {
            registry,
            metrics,
            tx: watch::channel(snap).0,
            discovered: Mutex::new(Discovered::new()),
        }
    }

    /// A receiver of every snapshot published from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// Replaces the routing table (validated), keeping the discovered instances.
    pub fn replace_table(&self, table: RoutingTable) {
        let _ = self.update_table(|_| Ok::<_, std::convert::Infallible>(table));
    }

    /// Replaces the routing table with what `change` makes of the current
    /// one (`change` validates), with no other replacement in between: two
    /// changes made at once both take effect. Returns the new table.
    pub fn update_table<E>(
        &self,
        change: impl FnOnce(&RoutingTable) -> Result<RoutingTable, E>,
    ) -> Result<RoutingTable, E> {
        let discovered = self.discovered.lock().expect("lock");
        // The current snapshot's read guard ends with this statement, before the send.
        let table = change(&self.tx.borrow().table)?;
        let snap = self
            .registry
            .snapshot(table.clone(), &discovered, &self.metrics);
        self.tx.send_replace(snap);
        Ok(table)
    }

    /// Replaces the discovered instances; returns whether anything changed.
    pub fn replace_discovered(&self, found: Discovered) -> bool {
        let mut discovered = self.discovered.lock().expect("lock");
        if *discovered == found {
            return false;
        }
        *discovered = found;
        tracing::info!(instances = ?*discovered, "fleet registry: upstreams changed");
        let table = self.tx.borrow().table.clone();
        let snap = self.registry.snapshot(table, &discovered, &self.metrics);
        self.tx.send_replace(snap);
        true
    }
}

/// A worker's view of the current table: the published snapshot, re-read
/// only when a new one was published (one uncontended lock and an atomic
/// load per request instead of a read lock every worker shares).
pub struct SnapshotCache {
    inner: std::sync::Mutex<(watch::Receiver<Arc<Snapshot>>, Arc<Snapshot>)>,
}

impl SnapshotCache {
    /// A cache following `rx`.
    pub fn new(mut rx: watch::Receiver<Arc<Snapshot>>) -> SnapshotCache {
        let snap = rx.borrow_and_update().clone();
        SnapshotCache {
            inner: std::sync::Mutex::new((rx, snap)),
        }
    }

    /// The newest snapshot.
    pub fn get(&self) -> Arc<Snapshot> {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (rx, snap) = &mut *guard;
        if rx.has_changed().unwrap_or(false) {
            *snap = rx.borrow_and_update().clone();
        }
        snap.clone()
    }
}

/// One upstream's health, as `GET /upstreams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    /// The release whose pool it is in.
    pub release: String,
    /// `host:port`.
    pub addr: String,
    /// `configured` (listed in the table) or `fleet` (found in the registry).
    pub source: &'static str,
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
                p.upstreams.iter().enumerate().map(|(i, u)| UpstreamStatus {
                    release: p.release.clone(),
                    addr: u.addr.clone(),
                    source: if i < p.configured {
                        "configured"
                    } else {
                        "fleet"
                    },
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
    client: Client,
    tables: watch::Receiver<Arc<Snapshot>>,
    h: HealthSettings,
    mut stop: watch::Receiver<bool>,
) {
    let mut tables = tables;
    let mut tick = tokio::time::interval(h.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A new table (a discovered instance joined) is checked at once,
        // so a new instance waits one check, not one interval.
        tokio::select! {
            _ = tick.tick() => {}
            r = tables.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
        }
        let snap = tables.borrow_and_update().clone();
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
    client: &Client,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{ReleasePool, RoutingTable};

    /// Round robin shares the traffic evenly among the ready upstreams: the
    /// one after an unready upstream does not take its turns too.
    #[test]
    fn round_robin_is_even_among_the_ready_upstreams() {
        let table = RoutingTable {
            releases: vec![ReleasePool {
                name: "1.0.0".into(),
                upstreams: vec![
                    "10.0.0.1:80".into(),
                    "10.0.0.2:80".into(),
                    "10.0.0.3:80".into(),
                ],
                fleet: None,
            }],
            cohort: Default::default(),
            internal: None,
            weights: [("1.0.0".to_string(), 100)].into(),
            sticky: Default::default(),
            mirror: None,
        };
        let snap =
            Registry::default().snapshot(table, &Discovered::new(), &Arc::new(Metrics::new(false)));
        let pool = &snap.pools[0];
        pool.upstreams[0].connect_failed("refused".into());
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..300 {
            *counts
                .entry(pool.pick(None).unwrap().addr.clone())
                .or_default() += 1;
        }
        assert_eq!(counts.get("10.0.0.1:80"), None);
        assert_eq!(counts["10.0.0.2:80"], 150);
        assert_eq!(counts["10.0.0.3:80"], 150);
        // Skipping one leaves the other.
        let second = pool.upstreams[2].clone();
        for _ in 0..10 {
            assert_eq!(pool.pick(Some(&second)).unwrap().addr, "10.0.0.2:80");
        }
    }
}

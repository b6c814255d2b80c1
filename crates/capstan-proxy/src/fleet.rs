//! Upstream discovery in the fleet registry: every `refresh`, read the live
//! instances of the service (not departed, heartbeat younger than `ttl`,
//! with an address) and hand their addresses, by version, to [`Tables`].
//!
//! A poll is bounded by `timeout`. When it fails the last good set stays in
//! the pools (an unreachable registry never empties a pool), and the
//! failure shows in the admin API's `/healthz` and `/upstreams` and in
//! `capstan_proxy_fleet_up`. Errors are redacted: a password in the
//! database URL never reaches a log or an answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_migrate::InstanceRow;
use capstan_migrate::{Database, DatabaseUrl};
use serde::Serialize;
use tokio::sync::watch;

use crate::config::FleetSettings;
use crate::metrics::Metrics;
use crate::pool::{Discovered, Tables};

/// The poller's state, as the admin API reports it.
#[derive(Debug)]
pub struct FleetStatus {
    database: String,
    service: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_success: Option<Instant>,
    consecutive_failures: u32,
    last_error: Option<String>,
    instances: usize,
}

/// `fleet` in the admin API's `/healthz` and `/upstreams`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// `pass` when the last poll succeeded, `warn` while the proxy serves
    /// the last known instances (or none were ever found).
    pub status: &'static str,
    /// The registry's database, password redacted.
    pub database: String,
    /// The service whose fleet is read.
    pub service: String,
    /// Seconds since the last successful poll (none: never).
    pub last_success_age_secs: Option<f64>,
    /// Failed polls since the last success.
    pub consecutive_failures: u32,
    /// Why the last poll failed, while failing.
    pub last_error: Option<String>,
    /// Addresses the last good poll found.
    pub instances: usize,
}

impl FleetStatus {
    /// The status of a poller of `s` that has not polled yet.
    pub fn new(s: &FleetSettings) -> FleetStatus {
        FleetStatus {
            database: s.database.to_string(),
            service: s.service.clone(),
            state: Mutex::new(State::default()),
        }
    }

    /// What the admin API shows.
    pub fn report(&self) -> FleetReport {
        let st = self.state.lock().expect("lock");
        FleetReport {
            status: if st.last_success.is_some() && st.consecutive_failures == 0 {
                "pass"
            } else {
                "warn"
            },
            database: self.database.clone(),
            service: self.service.clone(),
            last_success_age_secs: st.last_success.map(|t| t.elapsed().as_secs_f64()),
            consecutive_failures: st.consecutive_failures,
            last_error: st.last_error.clone(),
            instances: st.instances,
        }
    }
}

/// The addresses of the live instances in `rows`, by version. An address
/// claimed by two live instances (a port reused before the old row
/// expired) belongs to the one that registered last.
pub fn live_addresses(rows: &[InstanceRow], app: Option<&str>, ttl: Duration) -> Discovered {
    let mut owner: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.is_live(ttl)) {
        if app.is_some_and(|a| a != r.instance.app) {
            continue;
        }
        let Some(addr) = r.instance.address.as_deref().map(str::trim) else {
            continue;
        };
        if addr.is_empty() || addr.contains('/') || addr.contains(char::is_whitespace) {
            continue;
        }
        let prev = owner.get(addr).map(|&(_, started)| started);
        if prev.is_none_or(|p| p <= r.started_at.as_str()) {
            owner.insert(addr, (r.instance.version.as_str(), r.started_at.as_str()));
        }
    }
    let mut out = Discovered::new();
    for (addr, (version, _)) in owner {
        out.entry(version.to_string())
            .or_default()
            .push(addr.to_string());
    }
    out
}

async fn poll_once(conn: &mut Option<Database>, s: &FleetSettings) -> Result<Discovered, String> {
    if let DatabaseUrl::Sqlite { path } = &s.database {
        // A read-only open of a missing file reads as an empty registry;
        // a registry that vanished is a failure, not "no instances".
        if !path.exists() {
            return Err(format!("{}: no such file", s.database));
        }
        // A fresh handle each time: a replaced file is seen.
        *conn = None;
    }
    let db = match conn {
        Some(db) => db,
        None => conn.insert(
            Database::connect_read_only(&s.database)
                .await
                .map_err(|e| e.to_string())?
                .for_service(&s.service),
        ),
    };
    let rows = db.driver().fleet_list().await.map_err(|e| e.to_string())?;
    Ok(live_addresses(&rows, s.app.as_deref(), s.ttl))
}

/// What a poll hands back: the connection to keep, and what it found.
type PollOutcome = (Option<Database>, Result<Discovered, String>);

/// The poller: owns the registry connection between polls.
pub struct Poller {
    settings: FleetSettings,
    tables: Arc<Tables>,
    status: Arc<FleetStatus>,
    metrics: Arc<Metrics>,
    conn: Option<Database>,
    /// A poll that outlived its timeout (SQLite blocks its thread); the
    /// next one waits until it has returned.
    stuck: Option<tokio::task::JoinHandle<PollOutcome>>,
}

impl Poller {
    /// A poller publishing to `tables`.
    pub fn new(
        settings: FleetSettings,
        tables: Arc<Tables>,
        status: Arc<FleetStatus>,
        metrics: Arc<Metrics>,
    ) -> Poller {
        Poller {
            settings,
            tables,
            status,
            metrics,
            conn: None,
            stuck: None,
        }
    }

    /// One bounded poll; publishes what it found or records why it failed.
    pub async fn poll(&mut self) {
        if let Some(h) = &self.stuck {
            if !h.is_finished() {
                self.failed("the previous poll has not returned yet".into());
                return;
            }
            self.stuck = None;
        }
        let timeout = self.settings.timeout;
        let settings = self.settings.clone();
        let mut conn = self.conn.take();
        let handle = tokio::runtime::Handle::current();
        // SQLite answers synchronously: the poll runs on a blocking thread
        // so the runtime (and the timeout) keep running meanwhile.
        let mut job = tokio::task::spawn_blocking(move || {
            let r = handle.block_on(async {
                tokio::time::timeout(timeout, poll_once(&mut conn, &settings))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
            });
            (conn, r)
        });
        match tokio::time::timeout(timeout + Duration::from_millis(100), &mut job).await {
            Ok(Ok((conn, Ok(found)))) => {
                self.conn = conn;
                self.succeeded(found);
            }
            Ok(Ok((_, Err(e)))) => self.failed(e),
            Ok(Err(e)) => self.failed(format!("poll failed: {e}")),
            Err(_) => {
                self.stuck = Some(job);
                self.failed(format!("no answer within {timeout:?}"));
            }
        }
    }

    fn succeeded(&mut self, found: Discovered) {
        let count = found.values().map(Vec::len).sum::<usize>();
        let recovered = {
            let mut st = self.status.state.lock().expect("lock");
            let was_failing = st.consecutive_failures > 0;
            st.last_success = Some(Instant::now());
            st.consecutive_failures = 0;
            st.last_error = None;
            st.instances = count;
            was_failing
        };
        if recovered {
            tracing::info!(database = %self.status.database, "fleet registry answers again");
        }
        let m = &self.metrics;
        m.fleet_up.set(1);
        m.fleet_instances.set(count as i64);
        m.fleet_last_success.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        self.tables.replace_discovered(found);
    }

    fn failed(&mut self, error: String) {
        self.conn = None;
        let error = capstan_migrate::redact_text(&error);
        let first = {
            let mut st = self.status.state.lock().expect("lock");
            st.consecutive_failures += 1;
            st.last_error = Some(error.clone());
            st.consecutive_failures == 1
        };
        self.metrics.fleet_up.set(0);
        self.metrics.fleet_poll_errors.inc();
        if first {
            tracing::warn!(
                database = %self.status.database,
                error = %error,
                "fleet registry unreachable; serving the last known upstreams"
            );
        }
    }

    /// Polls every `refresh` until `stop`.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.settings.refresh);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.poll().await,
                _ = stop.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_migrate::Instance;

    fn row(app: &str, version: &str, addr: Option<&str>, age: f64, started: &str) -> InstanceRow {
        InstanceRow {
            instance: Instance {
                instance_id: format!("{version}-{started}"),
                app: app.into(),
                version: version.into(),
                set_hash: String::new(),
                versions: vec![],
                address: addr.map(Into::into),
            },
            started_at: started.into(),
            last_seen: String::new(),
            age_secs: age,
            departed_at: None,
        }
    }

    #[test]
    fn only_live_instances_with_an_address_count_and_the_newest_owns_an_address() {
        let rows = vec![
            row("chirpy", "1.0.0", Some("127.0.0.1:1"), 1.0, "a"),
            row("chirpy", "1.0.0", Some("127.0.0.1:2"), 99.0, "a"),
            row("chirpy", "1.0.0", None, 1.0, "a"),
            row("other", "1.0.0", Some("127.0.0.1:3"), 1.0, "a"),
            row("chirpy", "1.0.0", Some("127.0.0.1:4"), 1.0, "a"),
            row("chirpy", "2.0.0", Some("127.0.0.1:4"), 1.0, "b"),
        ];
        let found = live_addresses(&rows, Some("chirpy"), Duration::from_secs(30));
        assert_eq!(found["1.0.0"], vec!["127.0.0.1:1"]);
        assert_eq!(found["2.0.0"], vec!["127.0.0.1:4"]);
        let all = live_addresses(&rows, None, Duration::from_secs(30));
        assert_eq!(all["1.0.0"], vec!["127.0.0.1:1", "127.0.0.1:3"]);
    }
}

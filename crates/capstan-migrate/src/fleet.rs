//! The fleet registry: every running instance heartbeats a row saying which
//! migrations its binary embeds, so a contract migration runs only once no live
//! instance still needs what it removes.
//!
//! Liveness is judged by the database's clock (`last_seen` within the TTL), so
//! instances with skewed clocks still agree. A clean shutdown marks the row
//! departed; departed and expired rows are kept for a day for `capstan fleet`.

use std::time::Duration;

pub use crate::driver::{Instance, InstanceRow};
use crate::source::Migration;

/// Default time after which an instance that stopped heartbeating is no longer live.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

/// Default heartbeat interval (a third of the TTL).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// Live instances whose binary does not embed `migration`: they block it.
pub fn blockers<'a>(
    rows: &'a [InstanceRow],
    migration: &Migration,
    ttl: Duration,
) -> Vec<&'a InstanceRow> {
    rows.iter()
        .filter(|r| r.is_live(ttl) && !r.instance.versions.contains(&migration.version))
        .collect()
}

/// The lowest application version seen (live or not) that embeds `version`,
/// to tell an operator which release to deploy.
pub fn first_version_embedding(rows: &[InstanceRow], version: u64) -> Option<String> {
    rows.iter()
        .filter(|r| r.instance.versions.contains(&version))
        .map(|r| format!("{} {}", r.instance.app, r.instance.version))
        .min_by(|a, b| version_key(a).cmp(&version_key(b)))
}

/// Orders `app 1.10.0` after `app 1.9.0`.
fn version_key(s: &str) -> Vec<u64> {
    s.rsplit(' ')
        .next()
        .unwrap_or("")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A registered instance heartbeating in the background on its own connection.
///
/// ```no_run
/// # async fn demo(set: capstan_migrate::MigrationSet, url: capstan_migrate::DatabaseUrl) -> Result<(), capstan_migrate::Error> {
/// use capstan_migrate::{Heartbeat, Instance, DEFAULT_HEARTBEAT};
/// let hb = Heartbeat::start(&url, Instance::new("chirpy", "2.0.0", &set), DEFAULT_HEARTBEAT).await?;
/// // … serve …
/// hb.depart().await?; // clean shutdown: the instance leaves the fleet
/// # Ok(()) }
/// ```
pub struct Heartbeat {
    instance: Instance,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<crate::database::Database>,
}

impl Heartbeat {
    /// Registers `instance` now (failing if the database refuses) and keeps
    /// refreshing its row every `interval`. A failed heartbeat is logged and
    /// retried at the next tick; the instance simply ages meanwhile.
    pub async fn start(
        url: &crate::url::DatabaseUrl,
        instance: Instance,
        interval: Duration,
    ) -> Result<Heartbeat, crate::error::Error> {
        Self::start_for_service(url, crate::driver::DEFAULT_SERVICE, instance, interval).await
    }

    /// [`Heartbeat::start`], registering the instance in `service`'s fleet:
    /// only that service's contract migrations wait for it.
    pub async fn start_for_service(
        url: &crate::url::DatabaseUrl,
        service: &str,
        instance: Instance,
        interval: Duration,
    ) -> Result<Heartbeat, crate::error::Error> {
        let mut db = crate::database::Database::connect(url)
            .await?
            .for_service(service);
        let service = service.to_string();
        db.driver().fleet_register(&instance).await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let me = instance.clone();
        let url = url.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => return db,
                    _ = tick.tick() => {
                        if let Err(e) = db.driver().fleet_register(&me).await {
                            tracing::warn!(error = %e, "fleet heartbeat failed; reconnecting");
                            if let Ok(fresh) = crate::database::Database::connect(&url).await {
                                db = fresh.for_service(&service);
                            }
                        }
                    }
                }
            }
        });
        Ok(Heartbeat {
            instance,
            stop,
            task,
        })
    }

    /// The registered instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Stops heartbeating and marks the instance departed.
    pub async fn depart(self) -> Result<(), crate::error::Error> {
        let _ = self.stop.send(());
        let mut db = self.task.await.map_err(|e| {
            crate::error::Error::Db(crate::driver::DbError::new(
                crate::driver::FailureKind::Connection,
                format!("fleet heartbeat task failed: {e}"),
            ))
        })?;
        db.driver().fleet_depart(&self.instance.instance_id).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, versions: &[u64], age: f64, departed: bool) -> InstanceRow {
        InstanceRow {
            instance: Instance {
                instance_id: id.into(),
                app: "chirpy".into(),
                version: format!("{}.0.0", versions.len()),
                set_hash: String::new(),
                versions: versions.to_vec(),
                address: None,
            },
            started_at: String::new(),
            last_seen: String::new(),
            age_secs: age,
            departed_at: departed.then(String::new),
        }
    }

    #[test]
    fn only_live_instances_without_the_migration_block_it() {
        let m = crate::source::parse_migration(
            std::path::Path::new("0003_drop_name.sql"),
            b"-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;",
        )
        .unwrap();
        let rows = vec![
            row("v1-live", &[1], 1.0, false),
            row("v1-expired", &[1], 120.0, false),
            row("v1-departed", &[1], 1.0, true),
            row("v3-live", &[1, 2, 3], 1.0, false),
        ];
        let b: Vec<&str> = blockers(&rows, &m, DEFAULT_TTL)
            .iter()
            .map(|r| r.instance.instance_id.as_str())
            .collect();
        assert_eq!(b, vec!["v1-live"]);
        assert_eq!(
            first_version_embedding(&rows, 3).as_deref(),
            Some("chirpy 3.0.0")
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_key("a 1.10.0") > version_key("a 1.9.0"));
    }
}

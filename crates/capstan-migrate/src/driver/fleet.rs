//! The fleet registry's rows and the store each driver implements for it.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::DbError;
use crate::source::MigrationSet;

/// What an instance registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instance {
    /// Unique per process (host, pid and a random suffix by default).
    pub instance_id: String,
    /// Application name (`chirpy`).
    pub app: String,
    /// Application version (`2.0.0`).
    pub version: String,
    /// Hash of the embedded migration set.
    pub set_hash: String,
    /// Versions of the embedded migrations.
    pub versions: Vec<u64>,
    /// Where it serves (`host:port`, the `--address` of `fleet run`), so
    /// that a proxy can find the live instances of a version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl Instance {
    /// An instance of `app` `version` embedding `set`, with a fresh id.
    pub fn new(app: &str, version: &str, set: &MigrationSet) -> Self {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        Instance {
            instance_id: format!(
                "{host}-{}-{:06x}",
                std::process::id(),
                rand::random::<u32>() & 0xff_ffff
            ),
            app: app.to_string(),
            version: version.to_string(),
            set_hash: set.set_hash(),
            versions: set.migrations().iter().map(|m| m.version).collect(),
            address: None,
        }
    }
}

/// A registry row as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceRow {
    /// The registered instance.
    #[serde(flatten)]
    pub instance: Instance,
    /// When it registered (UTC, RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (UTC, RFC 3339).
    pub last_seen: String,
    /// Seconds since the last heartbeat, by the database's clock.
    pub age_secs: f64,
    /// When it shut down cleanly, if it did.
    pub departed_at: Option<String>,
}

impl InstanceRow {
    /// Live: not departed and seen within `ttl`.
    pub fn is_live(&self, ttl: Duration) -> bool {
        self.departed_at.is_none() && self.age_secs <= ttl.as_secs_f64()
    }

    /// `chirpy 1.0.0 (host-123-abc, seen 3s ago)`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}, seen {:.0}s ago)",
            self.instance.app, self.instance.version, self.instance.instance_id, self.age_secs
        )
    }
}

#[cfg(any(feature = "postgres", feature = "sqlite"))]
/// An error about capstan's fleet registry `table`: `what` names the row and
/// the column.
pub(crate) fn bad_fleet(table: &str, what: impl std::fmt::Display) -> DbError {
    DbError::new(
        super::FailureKind::BadHistory,
        format!(
            "capstan's fleet registry {table} holds something capstan never writes: {what}. Nothing was run. \
             Someone edited the table by hand; delete the row (a live instance registers again on its next heartbeat)"
        ),
    )
}

/// The fleet registry, as each driver stores it: each service's instances
/// apart (the service the driver acts for).
#[async_trait]
pub trait FleetStore: Send {
    /// Registers or refreshes an instance in the fleet registry (creates
    /// capstan's tables if missing).
    async fn fleet_register(&mut self, instance: &Instance) -> Result<(), DbError>;
    /// Marks an instance departed (clean shutdown).
    async fn fleet_depart(&mut self, instance_id: &str) -> Result<(), DbError>;
    /// Every registry row of the service, live or not, with its age by the
    /// database's clock.
    async fn fleet_list(&mut self) -> Result<Vec<InstanceRow>, DbError>;
}

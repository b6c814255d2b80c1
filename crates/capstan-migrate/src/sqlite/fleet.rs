//! The fleet registry on SQLite (`capstan_fleet`).

use async_trait::async_trait;
use rusqlite::params;

use super::{db_err, SqliteDriver, NOW};
use crate::driver::{bad_fleet, DbError, FleetStore, HistoryStore, Instance, InstanceRow};

#[async_trait]
impl FleetStore for SqliteDriver {
    async fn fleet_register(&mut self, i: &Instance) -> Result<(), DbError> {
        self.ensure_schema().await?;
        let versions = i
            .versions
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        self.conn
            .execute(
                &format!(
                    "INSERT INTO capstan_fleet (instance_id, app, version, set_hash, versions, started_at, last_seen, service, address) \
                     VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, {NOW}, ?6, ?7) \
                     ON CONFLICT (instance_id) DO UPDATE SET last_seen = {NOW}, departed_at = NULL, \
                     app = excluded.app, version = excluded.version, set_hash = excluded.set_hash, versions = excluded.versions, \
                     service = excluded.service, address = excluded.address"
                ),
                params![i.instance_id, i.app, i.version, i.set_hash, versions, self.service, i.address],
            )
            .map_err(|e| db_err(&e))?;
        self.conn
            .execute(
                "DELETE FROM capstan_fleet WHERE julianday('now') - julianday(coalesce(departed_at, last_seen)) > 1",
                [],
            )
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn fleet_depart(&mut self, instance_id: &str) -> Result<(), DbError> {
        self.conn
            .execute(
                &format!("UPDATE capstan_fleet SET departed_at = {NOW} WHERE instance_id = ?1"),
                [instance_id],
            )
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn fleet_list(&mut self) -> Result<Vec<InstanceRow>, DbError> {
        if !self.has_table("capstan_fleet")? {
            return Ok(Vec::new());
        }
        // Tables of an older layout have no address or service column. A
        // row without a service (edited by hand) is read, to be named.
        let (mine, address) = if self.layout()?.is_some() {
            (
                format!("({} OR service IS NULL)", self.mine()?),
                "address, service",
            )
        } else {
            (self.mine()?, "NULL, ''")
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT instance_id, app, version, set_hash, versions, started_at, last_seen, \
                        (julianday('now') - julianday(last_seen)) * 86400.0, departed_at, {address} \
                 FROM capstan_fleet WHERE {mine} ORDER BY started_at, instance_id",
            ))
            .map_err(|e| db_err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                let versions: String = r.get(4)?;
                let _service: String = r.get(10)?;
                Ok(InstanceRow {
                    instance: Instance {
                        instance_id: r.get(0)?,
                        app: r.get(1)?,
                        version: r.get(2)?,
                        set_hash: r.get(3)?,
                        versions: versions.split(',').filter_map(|v| v.parse().ok()).collect(),
                        address: r.get(9)?,
                    },
                    started_at: r.get(5)?,
                    last_seen: r.get(6)?,
                    age_secs: r.get(7)?,
                    departed_at: r.get(8)?,
                })
            })
            .map_err(|e| db_err(&e))?;
        // A value of the wrong type (a NULL) is a hand-edited row: named as such.
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::FromSqlConversionFailure(..) => bad_fleet("capstan_fleet", e),
            e => db_err(&e),
        })
    }
}

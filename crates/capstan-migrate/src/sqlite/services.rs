//! The registry of services on SQLite (`capstan_services`).

use async_trait::async_trait;
use capstan_service::Service;
use rusqlite::params;

use super::{db_err, SqliteDriver, NOW};
use crate::driver::services::{decode, encode};
use crate::driver::{DbError, ServiceStore};

#[async_trait]
impl ServiceStore for SqliteDriver {
    async fn register_service(&mut self, service: &Service, by: &str) -> Result<(), DbError> {
        let (owns, deps) = encode(service);
        self.conn
            .execute(
                &format!(
                    "INSERT INTO capstan_services (name, owns, depends_on, updated_at, updated_by) VALUES (?1, ?2, ?3, {NOW}, ?4) \
                     ON CONFLICT (name) DO UPDATE SET owns = excluded.owns, depends_on = excluded.depends_on, \
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by"
                ),
                params![service.name, owns, deps, by],
            )
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn registered_services(&mut self) -> Result<Vec<Service>, DbError> {
        if !self.has_table("capstan_services")? {
            return Ok(Vec::new());
        }
        let rows =
            self.rows("SELECT name, owns, depends_on FROM capstan_services ORDER BY name")?;
        rows.iter()
            .map(|r| {
                let cell = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                decode("capstan_services", &cell(0), &cell(1), &cell(2))
            })
            .collect()
    }
}

//! The registry of services on SQLite (`capstan_services`).

use async_trait::async_trait;
use capstan_service::Service;
use rusqlite::params;

use super::{db_err, SqliteDriver, NOW};
use crate::driver::services::{decode, encode, in_use_sql};
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

    async fn services_in_use(&mut self) -> Result<Vec<String>, DbError> {
        const TABLES: [(&str, &str); 5] = [
            ("capstan_migrations", "service"),
            ("capstan_log", "service"),
            ("capstan_fleet", "service"),
            ("capstan_archives", "service"),
            ("capstan_services", "name"),
        ];
        let mut present = Vec::new();
        for (table, column) in TABLES {
            if self.has_table(table)? {
                present.push((table, column));
            }
        }
        if present.is_empty() {
            return Ok(Vec::new());
        }
        if self.layout()?.is_none() {
            // Tables of an older layout: every row is the default service's.
            return Ok(vec![crate::driver::DEFAULT_SERVICE.to_string()]);
        }
        let Some(sql) = in_use_sql(&present) else {
            return Ok(Vec::new());
        };
        Ok(self
            .rows(&sql)?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }
}

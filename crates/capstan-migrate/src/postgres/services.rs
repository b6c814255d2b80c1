//! The registry of services on Postgres (`capstan.services`).

use async_trait::async_trait;
use capstan_service::Service;

use super::{db_err, PgDriver};
use crate::driver::services::{decode, encode, in_use_sql};
use crate::driver::{DbError, ServiceStore};

#[async_trait]
impl ServiceStore for PgDriver {
    async fn register_service(&mut self, service: &Service, by: &str) -> Result<(), DbError> {
        self.check_trust().await?;
        let (owns, deps) = encode(service);
        self.client
            .execute(
                "INSERT INTO capstan.services (name, owns, depends_on, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET owns = EXCLUDED.owns, depends_on = EXCLUDED.depends_on, \
                 updated_at = now(), updated_by = EXCLUDED.updated_by",
                &[&service.name, &owns, &deps, &by],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn registered_services(&mut self) -> Result<Vec<Service>, DbError> {
        let exists = self
            .client
            .query_one("SELECT to_regclass('capstan.services') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        let rows = self
            .rows("SELECT name, owns, depends_on FROM capstan.services ORDER BY name")
            .await?;
        rows.iter()
            .map(|r| {
                let cell = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                decode("capstan.services", &cell(0), &cell(1), &cell(2))
            })
            .collect()
    }

    async fn services_in_use(&mut self) -> Result<Vec<String>, DbError> {
        const TABLES: [(&str, &str); 5] = [
            ("capstan.migrations", "service"),
            ("capstan.log", "service"),
            ("capstan.fleet", "service"),
            ("capstan.archive", "service"),
            ("capstan.services", "name"),
        ];
        let mut present = Vec::new();
        for (table, column) in TABLES {
            let row = self
                .client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await
                .map_err(|e| db_err(&e))?;
            if row.get::<_, bool>(0) {
                present.push((table, column));
            }
        }
        if present.is_empty() {
            return Ok(Vec::new());
        }
        if self.layout().await?.is_none() {
            // Tables of an older layout: every row is the default service's.
            return Ok(vec![crate::driver::DEFAULT_SERVICE.to_string()]);
        }
        let Some(sql) = in_use_sql(&present) else {
            return Ok(Vec::new());
        };
        Ok(self
            .rows(&sql)
            .await?
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }
}

//! The registry of services on Postgres (`capstan.services`).

use async_trait::async_trait;
use capstan_service::Service;

use super::{db_err, PgDriver};
use crate::driver::services::{decode, encode};
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
}

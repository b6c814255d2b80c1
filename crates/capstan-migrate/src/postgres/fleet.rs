//! The fleet registry on Postgres (`capstan.fleet`).

use async_trait::async_trait;

use super::{db_err, PgDriver};
use crate::driver::{bad_fleet, DbError, FleetStore, HistoryStore, Instance, InstanceRow};

#[async_trait]
impl FleetStore for PgDriver {
    async fn fleet_register(&mut self, i: &Instance) -> Result<(), DbError> {
        self.ensure_schema().await?;
        let versions: Vec<i64> = i.versions.iter().map(|v| *v as i64).collect();
        self.client
            .execute(
                "INSERT INTO capstan.fleet (instance_id, app, version, set_hash, versions, service, address) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (instance_id) DO UPDATE SET last_seen = now(), departed_at = NULL, \
                 app = EXCLUDED.app, version = EXCLUDED.version, set_hash = EXCLUDED.set_hash, versions = EXCLUDED.versions, \
                 service = EXCLUDED.service, address = EXCLUDED.address",
                &[&i.instance_id, &i.app, &i.version, &i.set_hash, &versions, &self.service, &i.address],
            )
            .await
            .map_err(|e| db_err(&e))?;
        self.client
            .execute(
                "DELETE FROM capstan.fleet WHERE coalesce(departed_at, last_seen) < now() - interval '1 day'",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn fleet_depart(&mut self, instance_id: &str) -> Result<(), DbError> {
        self.check_trust().await?;
        self.client
            .execute(
                "UPDATE capstan.fleet SET departed_at = now() WHERE instance_id = $1",
                &[&instance_id],
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(())
    }

    async fn fleet_list(&mut self) -> Result<Vec<InstanceRow>, DbError> {
        let exists = self
            .client
            .query_one("SELECT to_regclass('capstan.fleet') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        self.check_trust().await?;
        // Tables of an older layout have no address or service column. A
        // row without a service (edited by hand) is read, to be named.
        let (mine, address) = if self.layout().await?.is_some() {
            (
                format!("({} OR service IS NULL)", self.mine().await?),
                "address, service",
            )
        } else {
            (self.mine().await?, "NULL::text, ''")
        };
        const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT instance_id, app, version, set_hash, versions, \
                            to_char(started_at AT TIME ZONE 'UTC', {TS}), to_char(last_seen AT TIME ZONE 'UTC', {TS}), \
                            extract(epoch from now() - last_seen)::float8, to_char(departed_at AT TIME ZONE 'UTC', {TS}), {address} \
                     FROM capstan.fleet WHERE {mine} ORDER BY started_at, instance_id"
                ),
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        // Every value through `try_get`: a hand-edited row is named, not a panic.
        let mut out = Vec::with_capacity(rows.len());
        for (n, r) in rows.iter().enumerate() {
            fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
                r: &'a tokio_postgres::Row,
                n: usize,
                i: usize,
            ) -> Result<T, DbError> {
                r.try_get(i).map_err(|e| {
                    let column = r.columns()[i].name();
                    let why = std::error::Error::source(&e)
                        .map_or_else(|| e.to_string(), |s| s.to_string());
                    bad_fleet(
                        "capstan.fleet",
                        format!("column {column} of row {}: {why}", n + 1),
                    )
                })
            }
            let versions: Vec<Option<i64>> = get(r, n, 4)?;
            let versions = versions
                .into_iter()
                .map(|v| v.filter(|v| *v >= 0).map(|v| v as u64))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| {
                    bad_fleet(
                        "capstan.fleet",
                        format!(
                            "column versions of row {} holds a NULL or a negative version",
                            n + 1
                        ),
                    )
                })?;
            out.push(InstanceRow {
                instance: Instance {
                    instance_id: get(r, n, 0)?,
                    app: get(r, n, 1)?,
                    version: get(r, n, 2)?,
                    set_hash: get(r, n, 3)?,
                    versions,
                    address: {
                        let _service: String = get(r, n, 10)?;
                        get(r, n, 9)?
                    },
                },
                started_at: get(r, n, 5)?,
                last_seen: get(r, n, 6)?,
                age_secs: get(r, n, 7)?,
                departed_at: get(r, n, 8)?,
            });
        }
        Ok(out)
    }
}

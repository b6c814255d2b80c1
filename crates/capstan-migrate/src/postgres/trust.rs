//! What the driver checks before it trusts a connection: capstan's schemas
//! (no other role controls anything in them) and the session (not a
//! transaction-mode pool, which would move the runner lock away).

use super::{db_err, first_value, PgDriver, POOL_PROBE_ROUNDS};
use crate::driver::{DbError, FailureKind};

impl PgDriver {
    /// Refuses capstan's schemas when another role controls anything in
    /// them (see [`TRUST_SQL`]). Checked once per connection, before the
    /// first read or write of capstan's tables: once every object there is
    /// owned by this role (or one of its roles), no other role can add a
    /// trigger, rule or policy to it.
    pub(super) async fn check_trust(&mut self) -> Result<(), DbError> {
        if self.trusted {
            return Ok(());
        }
        let found = self.untrusted().await?;
        if !found.is_empty() {
            return Err(self.untrusted_error(&found).await);
        }
        let exists = self
            .client
            .query_one("SELECT to_regnamespace('capstan') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        // Nothing to trust yet until capstan's schema exists.
        self.trusted = exists.get::<_, bool>(0);
        Ok(())
    }

    /// The findings of [`TRUST_SQL`].
    pub(super) async fn untrusted(&mut self) -> Result<Vec<String>, DbError> {
        let rows = self
            .client
            .query(TRUST_SQL, &[])
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    pub(super) async fn untrusted_error(&mut self, found: &[String]) -> DbError {
        let role = match self
            .client
            .query_one("SELECT current_user::text", &[])
            .await
        {
            Ok(r) => r.get::<_, String>(0),
            Err(_) => "the role capstan runs as".into(),
        };
        DbError::new(
            FailureKind::Untrusted,
            format!(
                "refusing to use capstan's schemas on {}: another role controls objects in them: {}. \
                 Code in them would run with the privileges of {role}, who runs capstan; capstan uses its schemas only when {role} \
                 (or a role it is a member of) owns every object in them and they carry no trigger, rule or policy (capstan creates none). \
                 Nothing was run. Find out who made them and why, then drop them or give them to {role} (ALTER SCHEMA capstan OWNER TO {role}; ALTER TABLE ... OWNER TO {role})",
                self.shown,
                found.join("; ")
            ),
        )
    }

    /// The server process of this connection, after checking that the URL
    /// does not lead to a transaction-mode pool (PgBouncer `pool_mode =
    /// transaction` or `statement`). A client cannot ask the pool its mode,
    /// so the check watches what a session promises: its server process
    /// never changes, and no other client ever gets it. A second connection
    /// is opened and, over [`POOL_PROBE_ROUNDS`] rounds, both ask for their
    /// server process. A pool hands the probe the process this connection
    /// just released (PgBouncer reuses the last released one first), or,
    /// when other clients are busy in the same pool, hands this connection
    /// another process in a later round: either is proof. One round alone
    /// could miss it when several runners start through one pool at once.
    pub(super) async fn refuse_transaction_pool(&mut self) -> Result<String, DbError> {
        let pid_sql = "SELECT pg_backend_pid()";
        let mine = self
            .client
            .simple_query(pid_sql)
            .await
            .map_err(|e| db_err(&e))?;
        let mine = first_value(&mine).unwrap_or_default();
        let Ok(probe) = crate::pgconn::connect(&self.spec).await else {
            return Ok(mine);
        };
        for round in 0..POOL_PROBE_ROUNDS {
            if round > 0 {
                let again = self
                    .client
                    .simple_query(pid_sql)
                    .await
                    .map_err(|e| db_err(&e))?;
                if first_value(&again).as_deref() != Some(mine.as_str()) {
                    return Err(self.transaction_pool_error());
                }
            }
            let Ok(theirs) = probe.client.simple_query(pid_sql).await else {
                break;
            };
            if first_value(&theirs).as_deref() == Some(mine.as_str()) {
                return Err(self.transaction_pool_error());
            }
        }
        Ok(mine)
    }

    /// Stops a run whose statements no longer reach the server process it
    /// started on: only a transaction-mode pool moves a session, and then
    /// the runner lock is no longer where the run is.
    pub(super) async fn still_on_own_session(&mut self) -> Result<(), DbError> {
        let Some(pid) = self.backend_pid.clone() else {
            return Ok(());
        };
        let now = self
            .client
            .simple_query("SELECT pg_backend_pid()")
            .await
            .map_err(|e| db_err(&e))?;
        if first_value(&now).as_deref() == Some(pid.as_str()) {
            Ok(())
        } else {
            Err(self.transaction_pool_error())
        }
    }

    pub(super) fn transaction_pool_error(&self) -> DbError {
        DbError::new(
            FailureKind::Connection,
            format!(
                "{} leads to a transaction-mode connection pool (PgBouncer pool_mode = transaction or statement): two connections shared one server session. capstan needs one server session for a whole run (its runner lock is a session lock, and no-transaction migrations run statement by statement), so nothing was run. Use a direct URL to Postgres, or a session-mode pool (see \"Poolers\" in the README)",
                self.shown
            ),
        )
    }
}

/// Everything in capstan's schemas that the role running capstan does not
/// control: an owner that is neither that role nor a role it is a member of
/// (by `pg_auth_members`, not `pg_has_role`, which makes a superuser a member
/// of every role), and any trigger, rule or policy (capstan creates none).
/// Such an object runs its creator's code with the privileges of whoever runs
/// capstan. One line per finding; no rows when all is well.
const TRUST_SQL: &str = r#"
WITH RECURSIVE mine(oid) AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user
    UNION
    SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN mine ON m.member = mine.oid
),
ns AS (
    SELECT oid, nspname, nspowner FROM pg_catalog.pg_namespace
    WHERE nspname IN ('capstan', 'capstan_archive')
),
rel AS (
    SELECT c.oid, c.relowner, c.relkind,
           quote_ident(ns.nspname) || '.' || quote_ident(c.relname) AS name
    FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
)
SELECT 'schema ' || quote_ident(nspname) || ' is owned by role ' || quote_ident(pg_catalog.pg_get_userbyid(nspowner))
FROM ns WHERE nspowner NOT IN (SELECT oid FROM mine)
UNION ALL
SELECT CASE relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view '
                    WHEN 'i' THEN 'index ' WHEN 'I' THEN 'index ' WHEN 'f' THEN 'foreign table '
                    WHEN 'c' THEN 'type ' ELSE 'table ' END
       || name || ' is owned by role ' || quote_ident(pg_catalog.pg_get_userbyid(relowner))
FROM rel WHERE relowner NOT IN (SELECT oid FROM mine)
UNION ALL
SELECT 'function ' || p.oid::pg_catalog.regprocedure::text || ' is owned by role '
       || quote_ident(pg_catalog.pg_get_userbyid(p.proowner))
FROM pg_catalog.pg_proc p JOIN ns ON ns.oid = p.pronamespace
WHERE p.proowner NOT IN (SELECT oid FROM mine)
UNION ALL
SELECT 'trigger ' || quote_ident(t.tgname) || ' on ' || rel.name || ' (runs '
       || t.tgfoid::pg_catalog.regprocedure::text || ', owned by role '
       || quote_ident(pg_catalog.pg_get_userbyid(f.proowner)) || ')'
FROM pg_catalog.pg_trigger t JOIN rel ON rel.oid = t.tgrelid
JOIN pg_catalog.pg_proc f ON f.oid = t.tgfoid
WHERE NOT t.tgisinternal
UNION ALL
SELECT 'rule ' || quote_ident(r.rulename) || ' on ' || rel.name
FROM pg_catalog.pg_rewrite r JOIN rel ON rel.oid = r.ev_class
WHERE r.rulename <> '_RETURN'
UNION ALL
SELECT 'policy ' || quote_ident(p.polname) || ' on ' || rel.name
FROM pg_catalog.pg_policy p JOIN rel ON rel.oid = p.polrelid
ORDER BY 1
"#;

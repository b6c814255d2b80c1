//! The Postgres driver (`tokio-postgres`, simple-query protocol).
//!
//! A transactional migration runs each statement in its own simple query (as
//! psql does, so every notice and error belongs to a known statement and
//! line), inside one transaction: `BEGIN; SET LOCAL …` rides with the first
//! statement, the history row and `COMMIT` with the last, so the migration and
//! its row commit together and a one-statement migration is one round trip.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_postgres::error::{DbError as PgDbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::connstr::ConnSpec;
use crate::driver::{
    DbError, Driver, ExecFailure, ExecOutcome, FailureKind, Job, LockHolder, Notice,
};
use crate::pgconn::error_text;
use crate::split::Dialect;

mod archive;
mod catalog;
mod exec;
mod fleet;
mod history;
mod trust;

/// capstan's history table, for messages.
const HISTORY_TABLE: &str = "capstan.migrations";

/// Advisory lock key of the default service's runner lock: "capstan" in
/// ASCII (the runner lock of every release before services).
const LOCK_KEY: i64 = 0x0063_6170_7374_616e;

/// The high half of another service's runner lock key ("csvc"); the low
/// half is a hash of the service's name.
const SERVICE_LOCK_HIGH: i64 = 0x6373_7663;

/// The advisory lock key of `service`'s runner lock: runners of one service
/// exclude each other, runners of two services do not.
fn lock_key(service: &str) -> i64 {
    if service == crate::driver::DEFAULT_SERVICE {
        return LOCK_KEY;
    }
    // FNV-1a, 32 bits: stable across builds and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in service.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (SERVICE_LOCK_HIGH << 32) | i64::from(h)
}

/// A connection to a Postgres database.
pub struct PgDriver {
    client: Client,
    spec: ConnSpec,
    shown: String,
    notices: mpsc::UnboundedReceiver<PgDbError>,
    /// Name of the scratch database this driver made, if it is one.
    scratch_name: Option<String>,
    /// capstan's schemas were found to be safe to use on this connection.
    trusted: bool,
    /// `capstan_archive` was made private on this connection.
    archive_private: bool,
    /// The service whose rows this connection reads and writes.
    service: String,
    /// capstan's tables were seen at the current layout.
    layout_current: bool,
    /// The server process behind this connection, once the runner lock was
    /// first tried (and the connection found not to be a transaction pool).
    backend_pid: Option<String>,
}

/// Connects to `raw` (a `postgres://` URL or a `key=value` string, with the
/// `PG*` variables and the password file, see [`crate::connstr`]); `shown`
/// is its redacted form for messages.
pub async fn connect(raw: &str, shown: &str) -> Result<PgDriver, DbError> {
    let spec =
        ConnSpec::parse(raw).map_err(|e| DbError::new(FailureKind::Connection, e.to_string()))?;
    connect_spec(spec, shown.to_string(), None).await
}

async fn connect_spec(
    spec: ConnSpec,
    shown: String,
    scratch_name: Option<String>,
) -> Result<PgDriver, DbError> {
    let connected = crate::pgconn::connect(&spec).await.map_err(|e| {
        let kind = match &e.code {
            Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => FailureKind::PermissionDenied,
            _ => FailureKind::Connection,
        };
        DbError::new(kind, e.message)
    })?;
    let timeout = spec.connect_timeout;
    let driver = PgDriver {
        client: connected.client,
        spec,
        shown,
        notices: connected.notices,
        scratch_name,
        trusted: false,
        archive_private: false,
        service: crate::driver::DEFAULT_SERVICE.to_string(),
        layout_current: false,
        backend_pid: None,
    };
    let setup = driver
        .client
        .batch_execute("SET standard_conforming_strings = on; SET client_min_messages = notice");
    match tokio::time::timeout(timeout, setup).await {
        Ok(r) => r.map_err(|e| db_err(&e))?,
        Err(_) => {
            return Err(DbError::new(
                FailureKind::Connection,
                format!(
                    "{}: connected, but the server did not answer the session setup within {}s (connect_timeout)",
                    driver.shown,
                    timeout.as_secs()
                ),
            ))
        }
    }
    Ok(driver)
}

fn kind_of(db: Option<&PgDbError>, closed: bool) -> FailureKind {
    if closed {
        return FailureKind::Connection;
    }
    match db.map(PgDbError::code) {
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => FailureKind::LockTimeout,
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => FailureKind::Deadlock,
        Some(c) if *c == SqlState::QUERY_CANCELED => FailureKind::StatementTimeout,
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => FailureKind::PermissionDenied,
        Some(_) => FailureKind::Sql,
        None => FailureKind::Connection,
    }
}

fn db_err(e: &tokio_postgres::Error) -> DbError {
    let mut err = DbError::new(kind_of(e.as_db_error(), e.is_closed()), error_text(e));
    if err.kind == FailureKind::PermissionDenied {
        err.message.push_str(
            " (capstan keeps its history in the `capstan` schema: the role needs CREATE on the database, or an administrator can run `CREATE SCHEMA capstan AUTHORIZATION <role>`)",
        );
    }
    err
}

/// The 0-based line within `text` of the error position the server reported,
/// for a query that had `before` characters ahead of `text`.
fn position_line(e: &tokio_postgres::Error, text: &str, before: usize) -> Option<usize> {
    match e.as_db_error()?.position()? {
        ErrorPosition::Original(pos) => {
            let pos = (*pos as usize).checked_sub(before + 1)?;
            if pos > text.chars().count() {
                return None;
            }
            let upto: String = text.chars().take(pos).collect();
            Some(upto.matches('\n').count())
        }
        ErrorPosition::Internal { .. } => None,
    }
}

/// How many times [`PgDriver::refuse_transaction_pool`] compares server
/// processes before it trusts a connection to be a session of its own.
const POOL_PROBE_ROUNDS: usize = 3;

/// The first column of the first row of a simple query's result.
fn first_value(messages: &[SimpleQueryMessage]) -> Option<String> {
    messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl PgDriver {
    fn drain_notices(&mut self) -> Vec<Notice> {
        let mut out = Vec::new();
        while let Ok(n) = self.notices.try_recv() {
            out.push(Notice {
                severity: n.severity().to_string(),
                message: n.message().to_string(),
                statement: None,
            });
        }
        out
    }

    fn failure(&mut self, e: &tokio_postgres::Error) -> ExecFailure {
        let db = e.as_db_error();
        ExecFailure {
            kind: kind_of(db, e.is_closed()),
            message: db.map_or_else(|| error_text(e), |d| d.message().to_string()),
            code: db.map(|d| d.code().code().to_string()),
            detail: db.and_then(|d| d.detail().map(str::to_string)),
            hint: db.and_then(|d| d.hint().map(str::to_string)),
            statement: None,
            line_offset: None,
            notices: self.drain_notices(),
        }
    }

    /// Ends an aborted transaction (a warning if none is open).
    async fn rollback(&mut self, e: &tokio_postgres::Error) {
        if !e.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK").await;
            self.drain_notices();
        }
    }

    /// Runs one read of capstan's tables or the catalog (after the trust
    /// check), every value as text (NULL as `None`).
    async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        self.check_trust().await?;
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|e| db_err(&e))?;
        Ok(messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                }
                _ => None,
            })
            .collect())
    }

    /// Runs `statements` in one transaction (all or nothing) and returns how
    /// many rows each one changed.
    async fn transact(&mut self, statements: &[String]) -> Result<Vec<u64>, DbError> {
        self.check_trust().await?;
        self.client
            .batch_execute("BEGIN")
            .await
            .map_err(|e| db_err(&e))?;
        let mut counts = Vec::with_capacity(statements.len());
        for sql in statements {
            match self.client.simple_query(sql).await {
                Ok(messages) => counts.push(
                    messages
                        .iter()
                        .find_map(|m| match m {
                            SimpleQueryMessage::CommandComplete(n) => Some(*n),
                            _ => None,
                        })
                        .unwrap_or(0),
                ),
                Err(e) => {
                    self.rollback(&e).await;
                    return Err(db_err(&e));
                }
            }
        }
        if let Err(e) = self.client.batch_execute("COMMIT").await {
            self.rollback(&e).await;
            return Err(db_err(&e));
        }
        self.drain_notices();
        Ok(counts)
    }
}

#[async_trait]
impl Driver for PgDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn set_service(&mut self, service: &str) {
        self.service = service.to_string();
    }

    async fn try_lock(&mut self) -> Result<bool, DbError> {
        // One short statement (simple protocol, no prepared statement): a
        // waiting runner polls this from an idle session, so it never holds
        // a snapshot that a `CREATE INDEX CONCURRENTLY` run by the holder
        // would have to wait for (`pg_advisory_lock` would, and deadlock).
        let pid = match &self.backend_pid {
            Some(pid) => pid.clone(),
            None => {
                let pid = self.refuse_transaction_pool().await?;
                self.backend_pid = Some(pid.clone());
                pid
            }
        };
        // Taken only on the server process this connection had: through a
        // transaction pool the statement could land on another one, and the
        // session lock would stay there, in the pool, for every later runner.
        let rows = self
            .client
            .simple_query(&format!(
                "SELECT CASE WHEN pg_backend_pid() = {pid} THEN pg_try_advisory_lock({key})::text ELSE 'moved' END",
                key = lock_key(&self.service)
            ))
            .await
            .map_err(|e| db_err(&e))?;
        match first_value(&rows).as_deref() {
            Some("true") => Ok(true),
            Some("moved") => Err(self.transaction_pool_error()),
            _ => Ok(false),
        }
    }

    async fn unlock(&mut self) -> Result<(), DbError> {
        self.client
            .simple_query(&format!(
                "SELECT pg_advisory_unlock({})",
                lock_key(&self.service)
            ))
            .await
            .map_err(|e| db_err(&e))?;
        self.drain_notices();
        Ok(())
    }

    async fn lock_holder(&mut self) -> Result<Option<LockHolder>, DbError> {
        let key = lock_key(&self.service);
        let sql = format!(
            "SELECT a.pid, a.application_name, a.usename::text || '@' || coalesce(host(a.client_addr), 'local socket'), \
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = {hi} AND l.objid = {lo} AND l.pid <> pg_backend_pid() \
             LIMIT 1",
            hi = (key as u64) >> 32,
            lo = (key as u64) & 0xffff_ffff,
        );
        let rows = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(LockHolder {
                pid: r.get(0).and_then(|p| p.parse().ok()),
                application_name: r.get(1).map(str::to_string),
                client: r.get(2).map(str::to_string),
                since: r.get(3).map(|s| format!("{s} (its session's start)")),
            }),
            _ => None,
        }))
    }

    async fn execute(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        if let Err(e) = self.check_trust().await {
            return Err(ExecFailure::new(e.kind, e.message));
        }
        if let Err(e) = self.still_on_own_session().await {
            return Err(ExecFailure::new(e.kind, e.message));
        }
        self.drain_notices();
        if job.transactional {
            self.execute_transactional(job).await
        } else {
            self.execute_statements(job).await
        }
    }

    async fn create_scratch(&mut self) -> Result<Box<dyn Driver>, DbError> {
        let name = format!(
            "capstan_verify_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        self.client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| {
                let mut err = db_err(&e);
                err.message = format!(
                    "cannot create the scratch database {name} for verify: {} (the role needs CREATEDB)",
                    err.message
                );
                err
            })?;
        let spec = self.spec.with_dbname(&name);
        let shown = format!("scratch database {name} on {}", self.shown);
        let driver = connect_spec(spec, shown, Some(name.clone())).await;
        match driver {
            Ok(mut d) => {
                d.service = self.service.clone();
                Ok(Box::new(d))
            }
            Err(e) => {
                let _ = self
                    .client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                    .await;
                Err(e)
            }
        }
    }

    async fn drop_scratch(&mut self, scratch: Box<dyn Driver>) -> Result<(), DbError> {
        let name = scratch.scratch_name();
        drop(scratch);
        if let Some(name) = name {
            self.client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .map_err(|e| db_err(&e))?;
        }
        Ok(())
    }

    fn scratch_name(&self) -> Option<String> {
        self.scratch_name.clone()
    }
}

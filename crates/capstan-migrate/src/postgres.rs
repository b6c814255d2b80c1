//! The Postgres driver (`tokio-postgres`, simple-query protocol).
//!
//! A transactional migration runs each statement in its own simple query (as
//! psql does, so every notice and error belongs to a known statement and
//! line), inside one transaction: `BEGIN; SET LOCAL …` rides with the first
//! statement, the history row and `COMMIT` with the last, so the migration and
//! its row commit together and a one-statement migration is one round trip.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_postgres::error::{DbError as PgDbError, ErrorPosition, SqlState};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::connstr::ConnSpec;
use crate::driver::{
    bad_fleet, bad_history, check_unique, history_row, section_cells, Cell, SectionUpdate,
    HISTORY_COLUMNS, ROLLING_BACK, SECTION_COLUMNS,
};
use crate::driver::{
    own_number, statement_line, AppliedRow, DbError, Direction, Driver, ExecFailure, ExecOutcome,
    FailureKind, Job, LockHolder, Notice, Record, Snapshot,
};
use crate::fleet::{Instance, InstanceRow};
use crate::indexes::{created_index_name, created_index_names, InvalidIndex};
use crate::split::Dialect;

/// capstan's history table, for messages.
const HISTORY_TABLE: &str = "capstan.migrations";

/// Advisory lock key of the runner lock: "capstan" in ASCII.
const LOCK_KEY: i64 = 0x0063_6170_7374_616e;

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

use crate::pgconn::error_text;

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

/// Quotes a string literal (standard_conforming_strings is on for our session).
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn opt_lit(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".to_string(), lit)
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

    fn log_sql(job: &Job<'_>, action: &str, duration: &str) -> String {
        let m = job.migration;
        format!(
            "INSERT INTO capstan.log (version, name, action, applied_by, binary_version, duration_ms, detail) VALUES ({}, {}, {}, {}, {}, {duration}, {})",
            m.version,
            lit(&m.name),
            lit(action),
            lit(&job.identity.applied_by),
            lit(&job.identity.binary_version),
            opt_lit(job.note),
        )
    }

    /// The change to `capstan.migrations`: upsert the row (up) or delete it (down).
    fn row_sql(job: &Job<'_>, state: &str, duration: &str) -> String {
        let m = job.migration;
        match job.direction {
            Direction::Up => format!(
                "INSERT INTO capstan.migrations (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum) \
                 VALUES ({}, {}, {}, {}, {}, {}, now(), {}, {}, {duration}, {}, {}, {}) \
                 ON CONFLICT (version) DO UPDATE SET state = EXCLUDED.state, duration_ms = EXCLUDED.duration_ms, applied_at = now(), error = EXCLUDED.error",
                m.version,
                lit(&m.name),
                lit(&m.checksum),
                lit(m.phase.as_str()),
                lit(state),
                !job.transactional,
                lit(&job.identity.applied_by),
                lit(&job.identity.binary_version),
                opt_lit(job.note),
                lit(&m.up_checksum),
                opt_lit(m.down_checksum.as_deref()),
            ),
            Direction::Down => format!("DELETE FROM capstan.migrations WHERE version = {}", m.version),
        }
    }

    /// The row change and its log entry.
    fn history_sql(job: &Job<'_>, state: &str, duration: &str) -> String {
        let action = match job.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        format!(
            "{};\n{}",
            Self::row_sql(job, state, duration),
            Self::log_sql(job, action, duration)
        )
    }

    async fn execute_transactional(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        const ELAPSED: &str = "(extract(epoch from clock_timestamp() - now()) * 1000)::bigint";
        let started = Instant::now();
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms';\n",
            ms(job.lock_timeout),
            ms(job.statement_timeout)
        );
        let finish = format!(
            "\n;\n{}; COMMIT",
            Self::history_sql(job, "applied", ELAPSED)
        );
        // One statement per round trip, as psql does, so that a notice or an
        // error belongs to exactly one statement; BEGIN rides with the first
        // and the history row and COMMIT with the last (they raise no notices).
        let mut notices = Vec::new();
        let last = job.statements.len().saturating_sub(1);
        if job.statements.is_empty() {
            if let Err(e) = self.client.batch_execute(&format!("{begin}{finish}")).await {
                let failure = self.failure(&e);
                self.rollback(&e).await;
                return Err(failure);
            }
        }
        for (i, stmt) in job.statements.iter().enumerate() {
            let text = &job.section.sql[stmt.range.clone()];
            let head = if i == 0 { begin.as_str() } else { "" };
            let tail = if i == last { finish.as_str() } else { "" };
            let result = self
                .client
                .batch_execute(&format!("{head}{text}{tail}"))
                .await;
            notices.extend(self.drain_notices().into_iter().map(|mut n| {
                n.statement = Some(i);
                n
            }));
            if let Err(e) = result {
                let mut failure = self.failure(&e);
                failure.statement = Some(i);
                failure.line_offset =
                    position_line(&e, text, head.chars().count()).map(|l| stmt.line_offset + l);
                failure.notices.splice(0..0, notices);
                self.rollback(&e).await;
                return Err(failure);
            }
        }
        Ok(ExecOutcome {
            done_here: true,
            duration: started.elapsed(),
            notices,
        })
    }

    /// Adds the section hash columns to a history table an older capstan
    /// made (its rows keep their whole-file checksums, and get section
    /// hashes at the next `up` or `down`). Call under the runner lock.
    async fn add_section_columns(&mut self) -> Result<(), DbError> {
        let have = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'capstan.migrations'::regclass \
                 AND attname IN ('up_checksum', 'down_checksum') AND NOT attisdropped",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if have.get::<_, i64>(0) == 2 {
            return Ok(());
        }
        self.client
            .batch_execute(
                "ALTER TABLE capstan.migrations ADD COLUMN IF NOT EXISTS up_checksum text, \
                 ADD COLUMN IF NOT EXISTS down_checksum text",
            )
            .await
            .map_err(|e| db_err(&e))
    }

    /// Ends an aborted transaction (a warning if none is open).
    async fn rollback(&mut self, e: &tokio_postgres::Error) {
        if !e.is_closed() {
            let _ = self.client.batch_execute("ROLLBACK").await;
            self.drain_notices();
        }
    }

    /// Refuses capstan's schemas when another role controls anything in
    /// them (see [`TRUST_SQL`]). Checked once per connection, before the
    /// first read or write of capstan's tables: once every object there is
    /// owned by this role (or one of its roles), no other role can add a
    /// trigger, rule or policy to it.
    async fn check_trust(&mut self) -> Result<(), DbError> {
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
    async fn untrusted(&mut self) -> Result<Vec<String>, DbError> {
        let rows = self
            .client
            .query(TRUST_SQL, &[])
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    async fn untrusted_error(&mut self, found: &[String]) -> DbError {
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
    async fn refuse_transaction_pool(&mut self) -> Result<String, DbError> {
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
    async fn still_on_own_session(&mut self) -> Result<(), DbError> {
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

    fn transaction_pool_error(&self) -> DbError {
        DbError::new(
            FailureKind::Connection,
            format!(
                "{} leads to a transaction-mode connection pool (PgBouncer pool_mode = transaction or statement): two connections shared one server session. capstan needs one server session for a whole run (its runner lock is a session lock, and no-transaction migrations run statement by statement), so nothing was run. Use a direct URL to Postgres, or a session-mode pool (see \"Poolers\" in the README)",
                self.shown
            ),
        )
    }

    /// Records why no-transaction `job` stopped at statement `i` in its
    /// history row (the server's DETAIL included: it names a duplicate key).
    async fn record_failure(&mut self, job: &Job<'_>, i: usize, failure: &ExecFailure) {
        let mut why = format!(
            "{}statement {} (line {}) failed: {}",
            match job.direction {
                Direction::Up => String::new(),
                Direction::Down => format!("{ROLLING_BACK}: "),
            },
            own_number(job, i),
            statement_line(job, i),
            failure.message
        );
        if let Some(d) = &failure.detail {
            why.push_str(&format!(" ({d})"));
        }
        let record = format!(
            "RESET lock_timeout; RESET statement_timeout; UPDATE capstan.migrations SET error = {} WHERE version = {}",
            lit(&why),
            job.migration.version
        );
        let _ = self.client.batch_execute(&record).await;
    }

    async fn execute_statements(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        let m = job.migration;
        let started = Instant::now();
        if !job.resumed {
            // Only a row this runner inserts (or an applied row it turns
            // dirty, going down) is its own: a row another runner wrote is
            // never overwritten.
            let mark = match job.direction {
                Direction::Up => {
                    let upsert = Self::row_sql(job, "dirty", "0");
                    let insert = upsert
                        .split_once(" ON CONFLICT")
                        .map_or(upsert.as_str(), |(head, _)| head);
                    format!("{insert} ON CONFLICT (version) DO NOTHING")
                }
                Direction::Down => format!(
                    "UPDATE capstan.migrations SET state = 'dirty', error = {} WHERE version = {} AND state = 'applied'",
                    lit(ROLLING_BACK),
                    m.version
                ),
            };
            match self.client.simple_query(&mark).await {
                Ok(messages) => {
                    let changed = messages
                        .iter()
                        .any(|msg| matches!(msg, SimpleQueryMessage::CommandComplete(n) if *n > 0));
                    if !changed {
                        return Ok(ExecOutcome::default());
                    }
                }
                Err(e) => return Err(self.failure(&e)),
            }
        }
        let timeouts = format!(
            "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
            ms(job.lock_timeout),
            ms(job.statement_timeout)
        );
        if let Err(e) = self.client.batch_execute(&timeouts).await {
            return Err(self.failure(&e));
        }
        let texts: Vec<&str> = job
            .statements
            .iter()
            .map(|s| &job.section.sql[s.range.clone()])
            .collect();
        let indexes = created_index_names(texts.iter().copied());
        let invalid_before = if indexes.is_empty() {
            Vec::new()
        } else {
            self.invalid_indexes()
                .await
                .map_err(|e| ExecFailure::new(e.kind, e.message))?
        };
        let mut notices = Vec::new();
        for (i, stmt) in job.statements.iter().enumerate().skip(job.resume_from) {
            let text = texts[i];
            if crate::interrupt::stop_between_statements() {
                let mut failure = ExecFailure::new(
                    FailureKind::Interrupted,
                    format!(
                        "stopped by {} before this statement; the statements before it are applied",
                        crate::interrupt::signal_name().unwrap_or("a signal")
                    ),
                );
                failure.statement = Some(i);
                failure.notices = notices;
                self.record_failure(job, i, &failure).await;
                return Err(failure);
            }
            // An index build first drops the invalid index of that name a
            // failed attempt left (unused, enforcing nothing), which `IF NOT
            // EXISTS` would otherwise keep and report as done.
            {
                if let Some(name) = created_index_name(text) {
                    let stale: Vec<InvalidIndex> = invalid_before
                        .iter()
                        .filter(|x| x.named_by(&name))
                        .cloned()
                        .collect();
                    for x in stale {
                        if let Err(e) = self.client.batch_execute(&x.drop_sql()).await {
                            let mut failure = self.failure(&e);
                            failure.statement = Some(i);
                            failure.message = format!(
                                "cannot drop the invalid index {} the failed attempt left: {}",
                                x.qualified(),
                                failure.message
                            );
                            return Err(failure);
                        }
                    }
                }
            }
            if let Err(e) = self.client.batch_execute(text).await {
                let mut failure = self.failure(&e);
                failure.statement = Some(i);
                failure.line_offset = position_line(&e, text, 0).map(|l| stmt.line_offset + l);
                failure.notices.splice(0..0, notices);
                if !e.is_closed() {
                    self.record_failure(job, i, &failure).await;
                }
                return Err(failure);
            }
            notices.extend(self.drain_notices().into_iter().map(|mut n| {
                n.statement = Some(i);
                n
            }));
        }
        // An index the migration names, or one it left, must be valid:
        // `IF NOT EXISTS` skips an invalid one left by an earlier attempt.
        if !indexes.is_empty() {
            let now = self
                .invalid_indexes()
                .await
                .map_err(|e| ExecFailure::new(e.kind, e.message))?;
            if let Some(bad) = now
                .iter()
                .find(|x| indexes.iter().any(|n| x.named_by(n)) || !invalid_before.contains(x))
            {
                let i = texts
                    .iter()
                    .position(|t| created_index_name(t).is_some_and(|n| bad.named_by(&n)))
                    .unwrap_or(job.statements.len().saturating_sub(1));
                let mut failure = ExecFailure::new(
                    FailureKind::Sql,
                    format!(
                        "index {} is INVALID (an earlier CREATE INDEX CONCURRENTLY failed, and IF NOT EXISTS kept its remains): it is not used and enforces nothing. Drop it with `{}` and run the migration again",
                        bad.qualified(),
                        bad.drop_sql()
                    ),
                );
                failure.statement = Some(i);
                failure.notices = notices;
                self.record_failure(job, i, &failure).await;
                return Err(failure);
            }
        }
        let duration = started.elapsed();
        let finish = match job.direction {
            Direction::Up => format!(
                "RESET lock_timeout; RESET statement_timeout; BEGIN; UPDATE capstan.migrations SET state = 'applied', error = NULL, duration_ms = {d}, applied_at = now() WHERE version = {v}; {log}; COMMIT",
                d = duration.as_millis(),
                v = m.version,
                log = Self::log_sql(job, "up", &duration.as_millis().to_string()),
            ),
            Direction::Down => format!(
                "RESET lock_timeout; RESET statement_timeout; BEGIN; {}; COMMIT",
                Self::history_sql(job, "applied", &duration.as_millis().to_string())
            ),
        };
        if let Err(e) = self.client.batch_execute(&finish).await {
            return Err(self.failure(&e));
        }
        notices.extend(self.drain_notices());
        Ok(ExecOutcome {
            done_here: true,
            duration,
            notices,
        })
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

/// Makes `capstan_archive` private: every privilege on the schema that a
/// role other than its owner holds (PUBLIC's, an `ALTER DEFAULT PRIVILEGES
/// … ON SCHEMAS` grant, a hand-made one) is revoked, so no archive copy is
/// reachable by anyone else, including copies made before they were private.
const ARCHIVE_PRIVATE_SQL: &str = "
DO $capstan$ DECLARE g oid; BEGIN
    FOR g IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
             WHERE n.nspname = 'capstan_archive' AND a.grantee <> n.nspowner LOOP
        IF g = 0 THEN REVOKE ALL ON SCHEMA capstan_archive FROM PUBLIC;
        ELSE EXECUTE format('REVOKE ALL ON SCHEMA capstan_archive FROM %I', pg_catalog.pg_get_userbyid(g));
        END IF;
    END LOOP;
END $capstan$";

/// Serialises schema creation between runners and registering instances
/// (a transaction-level lock, separate from the runner lock).
const SCHEMA_LOCK_KEY: i64 = LOCK_KEY + 1;

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS capstan;
CREATE TABLE IF NOT EXISTS capstan.migrations (
    version        bigint PRIMARY KEY,
    name           text NOT NULL,
    checksum       text NOT NULL,
    phase          text NOT NULL,
    state          text NOT NULL CHECK (state IN ('applied', 'dirty')),
    no_transaction boolean NOT NULL DEFAULT false,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    applied_by     text NOT NULL,
    binary_version text NOT NULL,
    duration_ms    bigint NOT NULL DEFAULT 0,
    error          text,
    up_checksum    text,
    down_checksum  text
);
CREATE TABLE IF NOT EXISTS capstan.fleet (
    instance_id    text PRIMARY KEY,
    app            text NOT NULL,
    version        text NOT NULL,
    set_hash       text NOT NULL,
    versions       bigint[] NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    departed_at    timestamptz
);
CREATE TABLE IF NOT EXISTS capstan.log (
    id             bigserial PRIMARY KEY,
    version        bigint NOT NULL,
    name           text NOT NULL,
    action         text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    applied_by     text NOT NULL,
    binary_version text NOT NULL,
    duration_ms    bigint NOT NULL DEFAULT 0,
    detail         text
);
CREATE SCHEMA IF NOT EXISTS capstan_archive;
CREATE SEQUENCE IF NOT EXISTS capstan.archive_ids;
CREATE TABLE IF NOT EXISTS capstan.archive (
    id             bigint PRIMARY KEY,
    version        bigint NOT NULL,
    migration      text NOT NULL,
    direction      text NOT NULL,
    line           bigint,
    statement      text NOT NULL,
    kind           text NOT NULL,
    scope          text NOT NULL,
    table_schema   text NOT NULL,
    table_name     text NOT NULL,
    columns        text NOT NULL,
    primary_key    text NOT NULL,
    archive_table  text NOT NULL,
    row_count      bigint NOT NULL,
    size_bytes     bigint NOT NULL,
    max_bytes      bigint,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    archived_by    text NOT NULL,
    binary_version text NOT NULL,
    restored_at    timestamptz,
    restored_by    text,
    CONSTRAINT archive_within_max_size CHECK (max_bytes IS NULL OR size_bytes <= max_bytes)
);
";

const SNAPSHOT_SQL: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive')
      AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'
), ext AS (
    SELECT objid FROM pg_depend WHERE deptype = 'e'
)
SELECT 'schema ' || nspname, '' FROM ns
UNION ALL
SELECT 'extension ' || extname, extversion FROM pg_extension
UNION ALL
SELECT 'relation ' || ns.nspname || '.' || c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
            ELSE c.relkind::text END
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'column ' || ns.nspname || '.' || c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN ns ON ns.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'constraint ' || ns.nspname || '.' || c.relname || '.' || con.conname,
       pg_get_constraintdef(con.oid) || CASE WHEN con.convalidated THEN '' ELSE ' (not validated)' END
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'index ' || ns.nspname || '.' || ci.relname,
       pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN ns ON ns.oid = ci.relnamespace
WHERE ci.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'view ' || ns.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
  AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'sequence ' || ns.nspname || '.' || c.relname,
       format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement
       || ' min ' || s.seqmin || ' max ' || s.seqmax || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN ns ON ns.oid = c.relnamespace
WHERE c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'type ' || ns.nspname || '.' || t.typname,
       CASE t.typtype
         WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                            FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
         WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                       || coalesce(' DEFAULT ' || t.typdefault, '')
                       || coalesce((SELECT ' ' || string_agg(pg_get_constraintdef(dc.oid), ' ' ORDER BY dc.conname)
                                    FROM pg_constraint dc WHERE dc.contypid = t.oid), '')
         WHEN 'r' THEN 'range'
         ELSE 'composite (' || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                        FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
       END
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
  AND t.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'function ' || ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       p.prokind::text || ' returns ' || coalesce(pg_get_function_result(p.oid), 'void') || ' language ' || l.lanname
       || ' ' || md5(coalesce(p.prosrc, '')) || ' ' || p.provolatile::text
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'trigger ' || ns.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
WHERE NOT t.tgisinternal
"#;

#[async_trait]
impl Driver for PgDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn describe(&self) -> String {
        self.shown.clone()
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
                "SELECT CASE WHEN pg_backend_pid() = {pid} THEN pg_try_advisory_lock({LOCK_KEY})::text ELSE 'moved' END"
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
            .simple_query(&format!("SELECT pg_advisory_unlock({LOCK_KEY})"))
            .await
            .map_err(|e| db_err(&e))?;
        self.drain_notices();
        Ok(())
    }

    async fn invalid_indexes(&mut self) -> Result<Vec<InvalidIndex>, DbError> {
        let rows = self
            .client
            .simple_query(
                "SELECT n.nspname, c.relname, t.relname, pg_get_indexdef(c.oid) \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' \
                 ORDER BY 1, 2",
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(InvalidIndex {
                    schema: r.get(0).unwrap_or_default().to_string(),
                    name: r.get(1).unwrap_or_default().to_string(),
                    table: r.get(2).unwrap_or_default().to_string(),
                    definition: r.get(3).unwrap_or_default().to_string(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        use crate::live::{quote_ident, TableSize};
        let rows = self
            .query(
                "SELECT n.nspname, c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                 ORDER BY 1, 2",
            )
            .await?;
        let mut live = crate::live::LiveDb::default();
        for row in rows {
            let [Some(schema), Some(table), Some(estimate), Some(bytes)] = &row[..] else {
                continue;
            };
            let estimate: i64 = estimate.parse().unwrap_or(-1);
            // -1: never vacuumed nor analyzed. Count, but no further than
            // the threshold needs (a bounded scan, not the whole table).
            let rows = if estimate >= 0 {
                estimate as u64
            } else {
                let sql = format!(
                    "SELECT count(*) FROM (SELECT 1 FROM ONLY {}.{} LIMIT {}) s",
                    quote_ident(schema),
                    quote_ident(table),
                    count_up_to.saturating_add(1)
                );
                self.query(&sql)
                    .await?
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u64::MAX)
            };
            let name = if schema == "public" {
                table.clone()
            } else {
                format!("{schema}.{table}")
            };
            live.tables.push(TableSize {
                name,
                rows,
                bytes: bytes.parse().unwrap_or(u64::MAX),
            });
        }
        live.time_zone = self
            .query("SHOW TimeZone")
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten());
        Ok(live)
    }

    async fn lock_holder(&mut self) -> Result<Option<LockHolder>, DbError> {
        let sql = format!(
            "SELECT a.pid, a.application_name, a.usename::text || '@' || coalesce(host(a.client_addr), 'local socket'), \
                    to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = {hi} AND l.objid = {lo} AND l.pid <> pg_backend_pid() \
             LIMIT 1",
            hi = (LOCK_KEY as u64) >> 32,
            lo = (LOCK_KEY as u64) & 0xffff_ffff,
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

    async fn ensure_schema(&mut self) -> Result<(), DbError> {
        let exists = self
            .client
            .query_one(
                "SELECT to_regclass('capstan.migrations') IS NOT NULL AND to_regclass('capstan.log') IS NOT NULL AND to_regclass('capstan.fleet') IS NOT NULL AND to_regclass('capstan.archive') IS NOT NULL AND to_regnamespace('capstan_archive') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if exists.get::<_, bool>(0) {
            self.check_trust().await?;
            self.add_section_columns().await?;
            if !self.archive_private {
                self.client
                    .batch_execute(ARCHIVE_PRIVATE_SQL)
                    .await
                    .map_err(|e| db_err(&e))?;
                self.archive_private = true;
            }
            return Ok(());
        }
        // The schema may have been made by another role in the meantime:
        // `IF NOT EXISTS` would adopt it, so it is checked before COMMIT.
        let sql = format!(
            "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA_SQL}; {ARCHIVE_PRIVATE_SQL}"
        );
        if let Err(e) = self.client.batch_execute(&sql).await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(db_err(&e));
        }
        let found = match self.untrusted().await {
            Ok(found) => found,
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        if !found.is_empty() {
            let err = self.untrusted_error(&found).await;
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(err);
        }
        if let Err(e) = self.client.batch_execute("COMMIT").await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(db_err(&e));
        }
        self.trusted = true;
        self.archive_private = true;
        // `IF NOT EXISTS` kept a history table an older capstan made.
        self.add_section_columns().await
    }

    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError> {
        let exists = self
            .client
            .query_one("SELECT to_regclass('capstan.migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        self.check_trust().await?;
        // The columns' types first: a retyped column is named, not a panic.
        let types = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = 'capstan.migrations'::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        for (column, want) in HISTORY_COLUMNS {
            match types.iter().find(|r| r.get::<_, String>(0) == column) {
                None => {
                    return Err(bad_history(
                        HISTORY_TABLE,
                        format!("it has no column {column}"),
                    ))
                }
                Some(r) if r.get::<_, String>(1) != want => {
                    return Err(bad_history(
                        HISTORY_TABLE,
                        format!(
                            "column {column} has type {}, capstan made it {want}",
                            r.get::<_, String>(1)
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        // A table an older capstan made has no section hash columns yet.
        let sections = if SECTION_COLUMNS
            .iter()
            .all(|c| types.iter().any(|r| r.get::<_, String>(0) == *c))
        {
            "up_checksum::text, down_checksum::text"
        } else {
            "NULL::text, NULL::text"
        };
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT version, name, checksum, phase, state, \
                        to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
                        applied_by, binary_version, duration_ms, no_transaction, error, {sections} \
                 FROM capstan.migrations ORDER BY version"
                ),
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (n, r) in rows.iter().enumerate() {
            let cells = HISTORY_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| {
                    let cell = match *ty {
                        "bigint" => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
                        "boolean" => r.try_get::<_, Option<bool>>(i).map(|v| v.map(Cell::Bool)),
                        _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text)),
                    };
                    cell.map_or(Cell::Other("value of another type"), |c| {
                        c.unwrap_or(Cell::Null)
                    })
                })
                .collect();
            let extra = [HISTORY_COLUMNS.len(), HISTORY_COLUMNS.len() + 1].map(|i| {
                r.try_get::<_, Option<String>>(i)
                    .map_or(Cell::Other("value of another type"), |v| {
                        v.map_or(Cell::Null, Cell::Text)
                    })
            });
            let mut row = history_row(HISTORY_TABLE, n + 1, cells)?;
            section_cells(HISTORY_TABLE, n + 1, &mut row, extra)?;
            out.push(row);
        }
        check_unique(HISTORY_TABLE, &out)?;
        Ok(out)
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

    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError> {
        self.check_trust().await?;
        let mut sql = String::from("BEGIN;\n");
        match change {
            Record::MarkApplied {
                migrations,
                identity,
                action,
            } => {
                for m in migrations {
                    sql.push_str(&format!(
                        "INSERT INTO capstan.migrations (version, name, checksum, phase, state, no_transaction, applied_by, binary_version, duration_ms, up_checksum, down_checksum) \
                         VALUES ({v}, {n}, {c}, {p}, 'applied', {nt}, {by}, {bin}, 0, {up}, {down}) \
                         ON CONFLICT (version) DO UPDATE SET state = 'applied', error = NULL, checksum = EXCLUDED.checksum, \
                         up_checksum = EXCLUDED.up_checksum, down_checksum = EXCLUDED.down_checksum;\n\
                         INSERT INTO capstan.log (version, name, action, applied_by, binary_version) VALUES ({v}, {n}, {a}, {by}, {bin});\n",
                        v = m.version,
                        n = lit(&m.name),
                        c = lit(&m.checksum),
                        up = lit(&m.up_checksum),
                        down = opt_lit(m.down_checksum.as_deref()),
                        p = lit(m.phase.as_str()),
                        nt = m.no_transaction,
                        by = lit(&identity.applied_by),
                        bin = lit(&identity.binary_version),
                        a = lit(action),
                    ));
                }
            }
            Record::Sections { updates, identity } => {
                for SectionUpdate {
                    migration: m,
                    whole,
                    action,
                    detail,
                } in updates
                {
                    sql.push_str(&format!(
                        "UPDATE capstan.migrations SET up_checksum = {}, down_checksum = {}{} WHERE version = {};\n",
                        lit(&m.up_checksum),
                        opt_lit(m.down_checksum.as_deref()),
                        if whole {
                            format!(", checksum = {}", lit(&m.checksum))
                        } else {
                            String::new()
                        },
                        m.version
                    ));
                    if let Some(action) = action {
                        sql.push_str(&format!(
                            "INSERT INTO capstan.log (version, name, action, applied_by, binary_version, detail) VALUES ({}, {}, {}, {}, {}, {});\n",
                            m.version,
                            lit(&m.name),
                            lit(&action),
                            lit(&identity.applied_by),
                            lit(&identity.binary_version),
                            opt_lit(detail.as_deref()),
                        ));
                    }
                }
            }
            Record::Forget {
                version,
                name,
                identity,
                action,
            } => sql.push_str(&format!(
                "DELETE FROM capstan.migrations WHERE version = {version};\n\
                 INSERT INTO capstan.log (version, name, action, applied_by, binary_version) VALUES ({version}, {}, {}, {}, {});\n",
                lit(name),
                lit(action),
                lit(&identity.applied_by),
                lit(&identity.binary_version),
            )),
        }
        sql.push_str("COMMIT;");
        let result = self.client.batch_execute(&sql).await;
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result.map_err(|e| db_err(&e))
    }

    async fn snapshot(&mut self) -> Result<Snapshot, DbError> {
        let rows = self
            .client
            .simple_query(SNAPSHOT_SQL)
            .await
            .map_err(|e| db_err(&e))?;
        let mut snap = Snapshot::default();
        for m in rows {
            if let SimpleQueryMessage::Row(r) = m {
                let k = r.get(0).unwrap_or_default().to_string();
                let v = r.get(1).unwrap_or_default().to_string();
                snap.0.insert(k, v);
            }
        }
        Ok(snap)
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
            Ok(d) => Ok(Box::new(d)),
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

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
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

    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError> {
        let quoted = crate::import::quote_table(table);
        let exists = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let messages = self
            .client
            .simple_query(&tool.history_query(&quoted))
            .await
            .map_err(|e| db_err(&e))?;
        Ok(Some(
            messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => Some(crate::import::ToolHistoryRow {
                        version: r.get(0).unwrap_or_default().to_string(),
                        ok: r.get(1) == Some("1"),
                    }),
                    _ => None,
                })
                .collect(),
        ))
    }

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

    fn scratch_name(&self) -> Option<String> {
        self.scratch_name.clone()
    }

    async fn fleet_register(&mut self, i: &Instance) -> Result<(), DbError> {
        self.ensure_schema().await?;
        let versions: Vec<i64> = i.versions.iter().map(|v| *v as i64).collect();
        self.client
            .execute(
                "INSERT INTO capstan.fleet (instance_id, app, version, set_hash, versions) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (instance_id) DO UPDATE SET last_seen = now(), departed_at = NULL, \
                 app = EXCLUDED.app, version = EXCLUDED.version, set_hash = EXCLUDED.set_hash, versions = EXCLUDED.versions",
                &[&i.instance_id, &i.app, &i.version, &i.set_hash, &versions],
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
        const TS: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT instance_id, app, version, set_hash, versions, \
                            to_char(started_at AT TIME ZONE 'UTC', {TS}), to_char(last_seen AT TIME ZONE 'UTC', {TS}), \
                            extract(epoch from now() - last_seen)::float8, to_char(departed_at AT TIME ZONE 'UTC', {TS}) \
                     FROM capstan.fleet ORDER BY started_at, instance_id"
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

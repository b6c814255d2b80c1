//! The SQLite driver (`rusqlite`, bundled SQLite).
//!
//! SQLite has no advisory lock, and its write lock cannot be held across a
//! no-transaction migration, so the runner lock is an exclusive `flock` on a
//! file next to the database (`app.db-capstan-lock`), held for the whole
//! run and released by the kernel when the runner dies. The file also says
//! who holds it. Each migration still runs in `BEGIN IMMEDIATE` and checks
//! history again under that lock, so concurrent runners apply each
//! migration exactly once.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OpenFlags};

use crate::driver::{
    check_unique, history_row, section_cells, Cell, SectionUpdate, HISTORY_COLUMNS, ROLLING_BACK,
    SECTION_COLUMNS,
};
use crate::driver::{
    own_number, statement_line, AppliedRow, DbError, Direction, Driver, ExecFailure, ExecOutcome,
    FailureKind, Job, LockHolder, Record, Snapshot,
};
use crate::fleet::{Instance, InstanceRow};
use crate::split::Dialect;

/// A connection to a SQLite file.
pub struct SqliteDriver {
    conn: Connection,
    path: PathBuf,
    /// Keeps a scratch database's directory alive; removed on drop.
    scratch: Option<tempfile::TempDir>,
    /// The runner lock file, `None` for an in-memory database.
    lock_path: Option<PathBuf>,
    /// The open lock file while this driver holds the runner lock.
    lock_file: Option<File>,
}

/// The runner lock file of the database at `path`.
pub fn lock_file_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-capstan-lock");
    PathBuf::from(name)
}

/// Opens the SQLite file at `path`. With `create` false and no file there,
/// opens an empty in-memory database instead, so read-only commands report
/// "nothing applied" without creating a file.
pub fn connect(path: &Path, create: bool) -> Result<SqliteDriver, DbError> {
    let shown = format!("sqlite://{}", path.display());
    let in_memory = !create && !path.exists();
    let conn = if in_memory {
        Connection::open_in_memory()
    } else {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(DbError::new(
                    FailureKind::Connection,
                    format!(
                        "cannot open {shown}: directory {} does not exist",
                        parent.display()
                    ),
                ));
            }
        }
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }
    .map_err(|e| DbError::new(kind_of(&e), format!("cannot open {shown}: {e}")))?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| DbError::new(kind_of(&e), e.to_string()))?;
    Ok(SqliteDriver {
        conn,
        path: path.to_path_buf(),
        scratch: None,
        lock_path: (!in_memory).then(|| lock_file_path(path)),
        lock_file: None,
    })
}

fn kind_of(e: &rusqlite::Error) -> FailureKind {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => FailureKind::LockTimeout,
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            FailureKind::PermissionDenied
        }
        Some(ErrorCode::OperationInterrupted) => FailureKind::StatementTimeout,
        _ => FailureKind::Sql,
    }
}

fn db_err(e: &rusqlite::Error) -> DbError {
    DbError::new(kind_of(e), e.to_string())
}

fn failure(e: &rusqlite::Error, statement: Option<usize>) -> ExecFailure {
    let mut f = ExecFailure::new(kind_of(e), e.to_string());
    f.code = e
        .sqlite_error()
        .map(|c| format!("SQLITE_{:?}", c.code).to_uppercase());
    f.statement = statement;
    if let rusqlite::Error::SqlInputError { offset, sql, .. } = e {
        if *offset >= 0 {
            let off = (*offset as usize).min(sql.len());
            f.line_offset = Some(sql[..off].matches('\n').count());
        }
    }
    f
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

impl SqliteDriver {
    /// True when every table of capstan's schema exists.
    fn has_schema(&self) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT count(*) = 4 FROM sqlite_master WHERE type = 'table' AND name IN ('capstan_migrations', 'capstan_log', 'capstan_fleet', 'capstan_archives')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| db_err(&e))
    }

    fn has_table(&self, name: &str) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| db_err(&e))
    }

    /// True when the history table has the section hash columns (a table
    /// an older capstan made lacks them until `ensure_schema`).
    fn has_section_columns(&self) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('capstan_migrations') WHERE name IN ('up_checksum', 'down_checksum')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 2)
            .map_err(|e| db_err(&e))
    }

    fn log(&self, job: &Job<'_>, action: &str, duration: Duration) -> rusqlite::Result<usize> {
        let m = job.migration;
        self.conn.execute(
            &format!(
                "INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, duration_ms, detail) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6, ?7)"
            ),
            params![
                m.version as i64,
                m.name,
                action,
                job.identity.applied_by,
                job.identity.binary_version,
                duration.as_millis() as i64,
                job.note
            ],
        )
    }

    fn write_row(&self, job: &Job<'_>, state: &str, duration: Duration) -> rusqlite::Result<usize> {
        let m = job.migration;
        self.conn.execute(
            &format!(
                "INSERT INTO capstan_migrations (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW}, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (version) DO UPDATE SET state = excluded.state, duration_ms = excluded.duration_ms, applied_at = excluded.applied_at, error = excluded.error"
            ),
            params![
                m.version as i64,
                m.name,
                m.checksum,
                m.phase.as_str(),
                state,
                !job.transactional,
                job.identity.applied_by,
                job.identity.binary_version,
                duration.as_millis() as i64,
                job.note,
                m.up_checksum,
                m.down_checksum
            ],
        )
    }

    fn row_exists(&self, version: u64) -> rusqlite::Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM capstan_migrations WHERE version = ?1",
                [version as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
    }

    fn run_statements(&self, job: &Job<'_>) -> Result<(), ExecFailure> {
        for (i, stmt) in job.statements.iter().enumerate().skip(job.resume_from) {
            let text = &job.section.sql[stmt.range.clone()];
            if crate::interrupt::stop_between_statements() {
                let mut f = ExecFailure::new(
                    FailureKind::Interrupted,
                    format!(
                        "stopped by {} before this statement; the statements before it are applied",
                        crate::interrupt::signal_name().unwrap_or("a signal")
                    ),
                );
                f.statement = Some(i);
                return Err(f);
            }
            // statement_timeout: SQLite has none, so interrupt from the progress handler.
            if !job.statement_timeout.is_zero() {
                let deadline = Instant::now() + job.statement_timeout;
                self.conn
                    .progress_handler(1000, Some(move || Instant::now() > deadline));
            }
            let result = self.conn.execute_batch(text);
            if !job.statement_timeout.is_zero() {
                self.conn.progress_handler(0, None::<fn() -> bool>);
            }
            result.map_err(|e| {
                let mut f = failure(&e, Some(i));
                f.line_offset = f.line_offset.map(|l| l + stmt.line_offset);
                if f.kind == FailureKind::StatementTimeout {
                    f.message = format!(
                        "canceling statement due to statement timeout ({} ms)",
                        job.statement_timeout.as_millis()
                    );
                }
                f
            })?;
        }
        Ok(())
    }

    fn execute_transactional(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        let started = Instant::now();
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| failure(&e, None))?;
        let result = (|| {
            let exists = self
                .row_exists(job.migration.version)
                .map_err(|e| failure(&e, None))?;
            let already = match job.direction {
                Direction::Up => exists,
                Direction::Down => !exists,
            };
            if already {
                return Ok(false);
            }
            self.run_statements(job)?;
            let duration = started.elapsed();
            match job.direction {
                Direction::Up => self.write_row(job, "applied", duration),
                Direction::Down => self.conn.execute(
                    "DELETE FROM capstan_migrations WHERE version = ?1",
                    [job.migration.version as i64],
                ),
            }
            .and_then(|_| {
                self.log(
                    job,
                    match job.direction {
                        Direction::Up => "up",
                        Direction::Down => "down",
                    },
                    duration,
                )
            })
            .map_err(|e| failure(&e, None))?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(|e| failure(&e, None))?;
                Ok(ExecOutcome {
                    done_here: true,
                    duration: started.elapsed(),
                    notices: Vec::new(),
                })
            }
            Ok(false) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Ok(ExecOutcome::default())
            }
            Err(f) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(f)
            }
        }
    }

    fn execute_statements(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        let started = Instant::now();
        let m = job.migration;
        if !job.resumed {
            // Check history and mark the row dirty in one write transaction:
            // a row another runner wrote is never overwritten.
            let marked = (|| {
                self.conn.execute_batch("BEGIN IMMEDIATE")?;
                let exists = self.row_exists(m.version)?;
                let mine = match job.direction {
                    Direction::Up if !exists => {
                        self.write_row(job, "dirty", Duration::ZERO)?;
                        true
                    }
                    Direction::Down if exists => {
                        self.conn.execute(
                            "UPDATE capstan_migrations SET state = 'dirty', error = ?2 WHERE version = ?1 AND state = 'applied'",
                            params![m.version as i64, ROLLING_BACK],
                        )? == 1
                    }
                    _ => false,
                };
                self.conn.execute_batch("COMMIT")?;
                Ok::<bool, rusqlite::Error>(mine)
            })();
            match marked {
                Ok(true) => {}
                Ok(false) => return Ok(ExecOutcome::default()),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(failure(&e, None));
                }
            }
        }
        if let Err(f) = self.run_statements(job) {
            let _ = self.conn.execute(
                "UPDATE capstan_migrations SET error = ?1 WHERE version = ?2",
                params![
                    format!(
                        "{}statement {} (line {}) failed: {}",
                        match job.direction {
                            Direction::Up => String::new(),
                            Direction::Down => format!("{ROLLING_BACK}: "),
                        },
                        own_number(job, f.statement.unwrap_or(0)),
                        statement_line(job, f.statement.unwrap_or(0)),
                        f.message
                    ),
                    m.version as i64
                ],
            );
            return Err(f);
        }
        let duration = started.elapsed();
        let finish = (|| {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            match job.direction {
                Direction::Up => {
                    self.write_row(job, "applied", duration)?;
                    self.log(job, "up", duration)?;
                }
                Direction::Down => {
                    self.conn.execute(
                        "DELETE FROM capstan_migrations WHERE version = ?1",
                        [m.version as i64],
                    )?;
                    self.log(job, "down", duration)?;
                }
            }
            self.conn.execute_batch("COMMIT")
        })();
        if let Err(e) = finish {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(failure(&e, None));
        }
        Ok(ExecOutcome {
            done_here: true,
            duration,
            notices: Vec::new(),
        })
    }
}

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS capstan_migrations (
    version        INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    phase          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
    no_transaction INTEGER NOT NULL DEFAULT 0,
    applied_at     TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    up_checksum    TEXT,
    down_checksum  TEXT
);
CREATE TABLE IF NOT EXISTS capstan_fleet (
    instance_id    TEXT PRIMARY KEY,
    app            TEXT NOT NULL,
    version        TEXT NOT NULL,
    set_hash       TEXT NOT NULL,
    versions       TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    departed_at    TEXT
);
CREATE TABLE IF NOT EXISTS capstan_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    version        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    action         TEXT NOT NULL,
    at             TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    detail         TEXT
);
CREATE TABLE IF NOT EXISTS capstan_archives (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    version        INTEGER NOT NULL,
    migration      TEXT NOT NULL,
    direction      TEXT NOT NULL,
    line           INTEGER,
    statement      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    table_schema   TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    columns        TEXT NOT NULL,
    primary_key    TEXT NOT NULL,
    archive_table  TEXT NOT NULL,
    row_count      INTEGER NOT NULL,
    size_bytes     INTEGER NOT NULL,
    max_bytes      INTEGER,
    archived_at    TEXT NOT NULL,
    archived_by    TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    restored_at    TEXT,
    restored_by    TEXT,
    CONSTRAINT archive_within_max_size CHECK (max_bytes IS NULL OR size_bytes <= max_bytes)
);
";

/// Collapses whitespace so formatting does not count as a schema difference.
fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl Driver for SqliteDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    async fn try_lock(&mut self) -> Result<bool, DbError> {
        let Some(lock_path) = &self.lock_path else {
            return Ok(true);
        };
        if self.lock_file.is_some() {
            return Ok(true);
        }
        let lock_err = |e: std::io::Error| {
            DbError::new(
                FailureKind::PermissionDenied,
                format!(
                    "cannot use the runner lock file {}: {e} (capstan needs to create and lock it next to the database)",
                    lock_path.display()
                ),
            )
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(lock_path)
            .map_err(lock_err)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => return Ok(false),
            Err(fs4::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        // Say who holds it, for a runner that gives up waiting.
        let since: String = self
            .conn
            .query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))
            .unwrap_or_default();
        let note = format!("{}\n{since}\ncapstan\n", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        if let Err(e) = written {
            let _ = fs4::FileExt::unlock(&file);
            return Err(lock_err(e));
        }
        self.lock_file = Some(file);
        Ok(true)
    }

    async fn unlock(&mut self) -> Result<(), DbError> {
        if let Some(file) = self.lock_file.take() {
            let _ = file.set_len(0);
            fs4::FileExt::unlock(&file).map_err(|e| {
                DbError::new(
                    FailureKind::Connection,
                    format!("cannot release the runner lock: {e}"),
                )
            })?;
        }
        Ok(())
    }

    async fn lock_holder(&mut self) -> Result<Option<LockHolder>, DbError> {
        let Some(lock_path) = &self.lock_path else {
            return Ok(None);
        };
        if self.lock_file.is_some() {
            return Ok(None);
        }
        let Ok(mut file) = File::open(lock_path) else {
            return Ok(None);
        };
        if fs4::FileExt::try_lock_shared(&file).is_ok() {
            let _ = fs4::FileExt::unlock(&file);
            return Ok(None);
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let mut lines = text.lines();
        Ok(Some(LockHolder {
            pid: lines.next().and_then(|l| l.parse().ok()),
            since: lines.next().filter(|l| !l.is_empty()).map(str::to_string),
            application_name: lines.next().map(str::to_string),
            client: None,
        }))
    }

    async fn ensure_schema(&mut self) -> Result<(), DbError> {
        if !self.has_schema()? {
            self.conn.execute_batch(SCHEMA_SQL).map_err(|e| {
                let mut err = db_err(&e);
                if err.kind == FailureKind::PermissionDenied {
                    err.message = format!(
                        "cannot write {}: {} (check the file's and its directory's permissions)",
                        self.describe(),
                        err.message
                    );
                }
                err
            })?;
        }
        if self.has_section_columns()? {
            return Ok(());
        }
        // A table an older capstan made: its rows keep their whole-file
        // checksums, and get section hashes at the next `up` or `down`.
        self.conn
            .execute_batch(
                "BEGIN IMMEDIATE; \
                 ALTER TABLE capstan_migrations ADD COLUMN up_checksum TEXT; \
                 ALTER TABLE capstan_migrations ADD COLUMN down_checksum TEXT; \
                 COMMIT",
            )
            .map_err(|e| {
                let _ = self.conn.execute_batch("ROLLBACK");
                db_err(&e)
            })
    }

    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError> {
        if !self.has_table("capstan_migrations")? {
            return Ok(Vec::new());
        }
        let sections = if self.has_section_columns()? {
            SECTION_COLUMNS.join(", ")
        } else {
            "NULL, NULL".to_string()
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT version, name, checksum, phase, state, applied_at, applied_by, binary_version, duration_ms, no_transaction, error, {sections} \
                 FROM capstan_migrations ORDER BY version",
            ))
            .map_err(|e| db_err(&e))?;
        // Every value is checked by hand: SQLite stores any type in any
        // column, and a hand-edited row must be named, not a panic.
        let mut rows = stmt.query([]).map_err(|e| db_err(&e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| db_err(&e))? {
            let mut cells = Vec::with_capacity(HISTORY_COLUMNS.len() + 2);
            for i in 0..HISTORY_COLUMNS.len() + 2 {
                use rusqlite::types::ValueRef;
                cells.push(match r.get_ref(i).map_err(|e| db_err(&e))? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(_) => Cell::Other("real number"),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Cell::Text(t.to_string()),
                        Err(_) => Cell::Other("text that is not UTF-8"),
                    },
                    ValueRef::Blob(_) => Cell::Other("blob"),
                });
            }
            let extra: [Cell; 2] = cells
                .split_off(HISTORY_COLUMNS.len())
                .try_into()
                .map_err(|_| db_err(&rusqlite::Error::InvalidQuery))?;
            let n = out.len() + 1;
            let mut row = history_row("capstan_migrations", n, cells)?;
            section_cells("capstan_migrations", n, &mut row, extra)?;
            out.push(row);
        }
        check_unique("capstan_migrations", &out)?;
        Ok(out)
    }

    async fn execute(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
        let wait = if job.lock_timeout.is_zero() {
            Duration::from_secs(3600)
        } else {
            job.lock_timeout
        };
        self.conn
            .busy_timeout(wait)
            .map_err(|e| failure(&e, None))?;
        if job.transactional {
            self.execute_transactional(job)
        } else {
            self.execute_statements(job)
        }
    }

    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError> {
        let tx = self.conn.transaction().map_err(|e| db_err(&e))?;
        match change {
            Record::MarkApplied {
                migrations,
                identity,
                action,
            } => {
                for m in migrations {
                    tx.execute(
                        &format!(
                            "INSERT INTO capstan_migrations (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, up_checksum, down_checksum) \
                             VALUES (?1, ?2, ?3, ?4, 'applied', ?5, {NOW}, ?6, ?7, 0, ?8, ?9) \
                             ON CONFLICT (version) DO UPDATE SET state = 'applied', error = NULL, checksum = excluded.checksum, \
                             up_checksum = excluded.up_checksum, down_checksum = excluded.down_checksum"
                        ),
                        params![
                            m.version as i64,
                            m.name,
                            m.checksum,
                            m.phase.as_str(),
                            m.no_transaction,
                            identity.applied_by,
                            identity.binary_version,
                            m.up_checksum,
                            m.down_checksum
                        ],
                    )
                    .map_err(|e| db_err(&e))?;
                    tx.execute(
                        &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5)"),
                        params![m.version as i64, m.name, action, identity.applied_by, identity.binary_version],
                    )
                    .map_err(|e| db_err(&e))?;
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
                    tx.execute(
                        "UPDATE capstan_migrations SET up_checksum = ?2, down_checksum = ?3, \
                         checksum = CASE WHEN ?4 THEN ?5 ELSE checksum END WHERE version = ?1",
                        params![
                            m.version as i64,
                            m.up_checksum,
                            m.down_checksum,
                            whole,
                            m.checksum
                        ],
                    )
                    .map_err(|e| db_err(&e))?;
                    if let Some(action) = action {
                        tx.execute(
                            &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, detail) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6)"),
                            params![m.version as i64, m.name, action, identity.applied_by, identity.binary_version, detail],
                        )
                        .map_err(|e| db_err(&e))?;
                    }
                }
            }
            Record::Forget {
                version,
                name,
                identity,
                action,
            } => {
                tx.execute(
                    "DELETE FROM capstan_migrations WHERE version = ?1",
                    [version as i64],
                )
                .map_err(|e| db_err(&e))?;
                tx.execute(
                    &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5)"),
                    params![version as i64, name, action, identity.applied_by, identity.binary_version],
                )
                .map_err(|e| db_err(&e))?;
            }
        }
        tx.commit().map_err(|e| db_err(&e))
    }

    async fn snapshot(&mut self) -> Result<Snapshot, DbError> {
        let mut snap = Snapshot::default();
        let objects: Vec<(String, String, String, Option<String>)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master \
                     WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' \
                     ORDER BY type, name",
                )
                .map_err(|e| db_err(&e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| db_err(&e))?;
            rows.collect::<Result<_, _>>().map_err(|e| db_err(&e))?
        };
        for (kind, name, table, sql) in objects {
            if kind == "table" {
                snap.0.insert(format!("table {name}"), String::new());
                let mut stmt = self
                    .conn
                    .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1) ORDER BY cid")
                    .map_err(|e| db_err(&e))?;
                let cols = stmt
                    .query_map([&name], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .map_err(|e| db_err(&e))?;
                for c in cols {
                    let (col, ty, notnull, default, pk) = c.map_err(|e| db_err(&e))?;
                    let mut def = ty;
                    def.push_str(if notnull { " NOT NULL" } else { " NULL" });
                    if let Some(d) = default {
                        def.push_str(&format!(" DEFAULT {d}"));
                    }
                    if pk > 0 {
                        def.push_str(&format!(" PRIMARY KEY ({pk})"));
                    }
                    snap.0.insert(format!("column {name}.{col}"), def);
                }
                let mut stmt = self
                    .conn
                    .prepare("SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
                    .map_err(|e| db_err(&e))?;
                let fks = stmt
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{}: {} -> {}.{} on update {} on delete {}",
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?
                        ))
                    })
                    .map_err(|e| db_err(&e))?;
                for (i, fk) in fks.enumerate() {
                    snap.0.insert(
                        format!("foreign key {name}.{i}"),
                        fk.map_err(|e| db_err(&e))?,
                    );
                }
            } else {
                let def = sql
                    .map(|s| normalize(&s))
                    .unwrap_or_else(|| "(automatic)".into());
                snap.0.insert(format!("{kind} {name} on {table}"), def);
            }
        }
        Ok(snap)
    }

    async fn create_scratch(&mut self) -> Result<Box<dyn Driver>, DbError> {
        let dir = tempfile::tempdir().map_err(|e| {
            DbError::new(
                FailureKind::Connection,
                format!("cannot create a scratch directory for verify: {e}"),
            )
        })?;
        let mut driver = connect(&dir.path().join("verify.db"), true)?;
        driver.scratch = Some(dir);
        Ok(Box::new(driver))
    }

    async fn drop_scratch(&mut self, scratch: Box<dyn Driver>) -> Result<(), DbError> {
        drop(scratch);
        Ok(())
    }

    /// SQLite has no row estimate: each table is counted, up to `count_up_to
    /// + 1` rows (a bounded scan). Bytes are not measured.
    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        let names = self
            .query(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' ORDER BY name",
            )
            .await?;
        let mut live = crate::live::LiveDb::default();
        for name in names
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {})",
                crate::live::quote_ident(&name),
                count_up_to.saturating_add(1)
            );
            let rows = self
                .query(&sql)
                .await?
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            live.tables.push(crate::live::TableSize {
                name,
                rows,
                bytes: 0,
            });
        }
        Ok(live)
    }

    async fn query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
        use rusqlite::types::ValueRef;
        let mut stmt = self.conn.prepare(sql).map_err(|e| db_err(&e))?;
        let width = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..width)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => None,
                            ValueRef::Integer(n) => Some(n.to_string()),
                            ValueRef::Real(f) => Some(f.to_string()),
                            ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                            ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(|e| db_err(&e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| db_err(&e))
    }

    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError> {
        let name = table.rsplit('.').next().unwrap_or(table);
        let exists: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| db_err(&e))?;
        if exists == 0 {
            return Ok(None);
        }
        let sql = tool.history_query(&crate::import::quote_table(name));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| db_err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(crate::import::ToolHistoryRow {
                    version: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    ok: r.get::<_, i64>(1)? == 1,
                })
            })
            .map_err(|e| db_err(&e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| db_err(&e))
    }

    async fn transact(&mut self, statements: &[String]) -> Result<Vec<u64>, DbError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| db_err(&e))?;
        let mut counts = Vec::with_capacity(statements.len());
        for sql in statements {
            match self.conn.execute(sql, []) {
                Ok(n) => counts.push(n as u64),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(db_err(&e));
                }
            }
        }
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(db_err(&e));
        }
        Ok(counts)
    }

    fn scratch_name(&self) -> Option<String> {
        self.scratch
            .as_ref()
            .map(|_| self.path.display().to_string())
    }

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
                    "INSERT INTO capstan_fleet (instance_id, app, version, set_hash, versions, started_at, last_seen) \
                     VALUES (?1, ?2, ?3, ?4, ?5, {NOW}, {NOW}) \
                     ON CONFLICT (instance_id) DO UPDATE SET last_seen = {NOW}, departed_at = NULL, \
                     app = excluded.app, version = excluded.version, set_hash = excluded.set_hash, versions = excluded.versions"
                ),
                params![i.instance_id, i.app, i.version, i.set_hash, versions],
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
        let mut stmt = self
            .conn
            .prepare(
                "SELECT instance_id, app, version, set_hash, versions, started_at, last_seen, \
                        (julianday('now') - julianday(last_seen)) * 86400.0, departed_at \
                 FROM capstan_fleet ORDER BY started_at, instance_id",
            )
            .map_err(|e| db_err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                let versions: String = r.get(4)?;
                Ok(InstanceRow {
                    instance: Instance {
                        instance_id: r.get(0)?,
                        app: r.get(1)?,
                        version: r.get(2)?,
                        set_hash: r.get(3)?,
                        versions: versions.split(',').filter_map(|v| v.parse().ok()).collect(),
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
            | rusqlite::Error::FromSqlConversionFailure(..) => {
                crate::driver::bad_fleet("capstan_fleet", e)
            }
            e => db_err(&e),
        })
    }
}

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
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::driver::{DbError, Driver, ExecFailure, ExecOutcome, FailureKind, Job, LockHolder};
use crate::split::Dialect;

mod archive;
mod catalog;
mod exec;
mod fleet;
mod history;

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
    /// The service whose rows this connection reads and writes.
    service: String,
    /// capstan's tables were seen at the current layout.
    layout_current: bool,
}

/// The runner lock file of the default service for the database at `path`.
pub fn lock_file_path(path: &Path) -> PathBuf {
    service_lock_file_path(path, crate::driver::DEFAULT_SERVICE)
}

/// The runner lock file of `service` for the database at `path`:
/// `app.db-capstan-lock` for the default service (as before services),
/// `app.db-capstan-lock-NAME` for another.
pub fn service_lock_file_path(path: &Path, service: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-capstan-lock");
    if service != crate::driver::DEFAULT_SERVICE {
        name.push("-");
        name.push(service);
    }
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
        service: crate::driver::DEFAULT_SERVICE.to_string(),
        layout_current: false,
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

    /// Runs one read, every value as text (NULL as `None`).
    fn rows(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, DbError> {
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

    /// Runs `statements` in one transaction (all or nothing) and returns how
    /// many rows each one changed.
    fn transact(&mut self, statements: &[String]) -> Result<Vec<u64>, DbError> {
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
}

#[async_trait]
impl Driver for SqliteDriver {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn set_service(&mut self, service: &str) {
        self.service = service.to_string();
        if self.lock_path.is_some() {
            self.lock_path = Some(service_lock_file_path(&self.path, service));
        }
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

    async fn create_scratch(&mut self) -> Result<Box<dyn Driver>, DbError> {
        let dir = tempfile::tempdir().map_err(|e| {
            DbError::new(
                FailureKind::Connection,
                format!("cannot create a scratch directory for verify: {e}"),
            )
        })?;
        let mut driver = connect(&dir.path().join("verify.db"), true)?;
        driver.set_service(&self.service);
        driver.scratch = Some(dir);
        Ok(Box::new(driver))
    }

    async fn drop_scratch(&mut self, scratch: Box<dyn Driver>) -> Result<(), DbError> {
        drop(scratch);
        Ok(())
    }

    fn scratch_name(&self) -> Option<String> {
        self.scratch
            .as_ref()
            .map(|_| self.path.display().to_string())
    }
}

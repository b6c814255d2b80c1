//! Running jobs on SQLite: each migration in `BEGIN IMMEDIATE`, history
//! checked again under that lock, so concurrent runners apply each
//! migration exactly once.

use std::time::{Duration, Instant};

use rusqlite::params;

use super::{failure, SqliteDriver, NOW};
use crate::driver::{
    own_number, statement_line, Direction, ExecFailure, ExecOutcome, FailureKind, Job, ROLLING_BACK,
};

impl SqliteDriver {
    pub(super) fn log(
        &self,
        job: &Job<'_>,
        action: &str,
        duration: Duration,
    ) -> rusqlite::Result<usize> {
        let m = job.migration;
        self.conn.execute(
            &format!(
                "INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, duration_ms, detail, service) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                m.version as i64,
                m.name,
                action,
                job.identity.applied_by,
                job.identity.binary_version,
                duration.as_millis() as i64,
                job.note,
                self.service
            ],
        )
    }

    pub(super) fn write_row(
        &self,
        job: &Job<'_>,
        state: &str,
        duration: Duration,
    ) -> rusqlite::Result<usize> {
        let m = job.migration;
        self.conn.execute(
            &format!(
                "INSERT INTO capstan_migrations (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum, service) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, {NOW}, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
                 ON CONFLICT (service, version) DO UPDATE SET state = excluded.state, duration_ms = excluded.duration_ms, applied_at = excluded.applied_at, error = excluded.error"
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
                m.down_checksum,
                self.service
            ],
        )
    }

    pub(super) fn row_exists(&self, version: u64) -> rusqlite::Result<bool> {
        self.conn
            .query_row(
                "SELECT count(*) FROM capstan_migrations WHERE version = ?1 AND service = ?2",
                params![version as i64, self.service],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
    }

    pub(super) fn run_statements(&self, job: &Job<'_>) -> Result<(), ExecFailure> {
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

    pub(super) fn execute_transactional(
        &mut self,
        job: &Job<'_>,
    ) -> Result<ExecOutcome, ExecFailure> {
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
                    "DELETE FROM capstan_migrations WHERE version = ?1 AND service = ?2",
                    params![job.migration.version as i64, self.service],
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

    pub(super) fn execute_statements(&mut self, job: &Job<'_>) -> Result<ExecOutcome, ExecFailure> {
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
                            "UPDATE capstan_migrations SET state = 'dirty', error = ?2 WHERE version = ?1 AND service = ?3 AND state = 'applied'",
                            params![m.version as i64, ROLLING_BACK, self.service],
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
                "UPDATE capstan_migrations SET error = ?1 WHERE version = ?2 AND service = ?3",
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
                    m.version as i64,
                    self.service
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
                        "DELETE FROM capstan_migrations WHERE version = ?1 AND service = ?2",
                        params![m.version as i64, self.service],
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

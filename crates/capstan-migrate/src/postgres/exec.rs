//! Running jobs: a transactional migration statement by statement inside
//! one transaction with its history row, a no-transaction one with its
//! dirty mark and the flip to applied.

use std::time::Instant;

use tokio_postgres::SimpleQueryMessage;

use super::{ms, position_line, PgDriver};
use crate::driver::sql::{lit, opt_lit};
use crate::driver::{
    own_number, statement_line, CatalogStore, Direction, ExecFailure, ExecOutcome, FailureKind,
    Job, ROLLING_BACK,
};
use crate::indexes::{created_index_name, created_index_names, InvalidIndex};

impl PgDriver {
    pub(super) fn log_sql(&self, job: &Job<'_>, action: &str, duration: &str) -> String {
        let m = job.migration;
        format!(
            "INSERT INTO capstan.log (service, version, name, action, applied_by, binary_version, duration_ms, detail) VALUES ({}, {}, {}, {}, {}, {}, {duration}, {})",
            lit(&self.service),
            m.version,
            lit(&m.name),
            lit(action),
            lit(&job.identity.applied_by),
            lit(&job.identity.binary_version),
            opt_lit(job.note),
        )
    }

    /// The change to `capstan.migrations`: upsert the row (up) or delete it (down).
    pub(super) fn row_sql(&self, job: &Job<'_>, state: &str, duration: &str) -> String {
        let m = job.migration;
        match job.direction {
            Direction::Up => format!(
                "INSERT INTO capstan.migrations (service, version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum) \
                 VALUES ({}, {}, {}, {}, {}, {}, {}, now(), {}, {}, {duration}, {}, {}, {}) \
                 ON CONFLICT (service, version) DO UPDATE SET state = EXCLUDED.state, duration_ms = EXCLUDED.duration_ms, applied_at = now(), error = EXCLUDED.error",
                lit(&self.service),
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
            Direction::Down => format!(
                "DELETE FROM capstan.migrations WHERE service = {} AND version = {}",
                lit(&self.service),
                m.version
            ),
        }
    }

    /// The row change and its log entry.
    pub(super) fn history_sql(&self, job: &Job<'_>, state: &str, duration: &str) -> String {
        let action = match job.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        format!(
            "{};\n{}",
            self.row_sql(job, state, duration),
            self.log_sql(job, action, duration)
        )
    }

    pub(super) async fn execute_transactional(
        &mut self,
        job: &Job<'_>,
    ) -> Result<ExecOutcome, ExecFailure> {
        const ELAPSED: &str = "(extract(epoch from clock_timestamp() - now()) * 1000)::bigint";
        let started = Instant::now();
        let begin = format!(
            "BEGIN; SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms';\n",
            ms(job.lock_timeout),
            ms(job.statement_timeout)
        );
        let finish = format!("\n;\n{}; COMMIT", self.history_sql(job, "applied", ELAPSED));
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

    /// Records why no-transaction `job` stopped at statement `i` in its
    /// history row (the server's DETAIL included: it names a duplicate key).
    pub(super) async fn record_failure(&mut self, job: &Job<'_>, i: usize, failure: &ExecFailure) {
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
            "RESET lock_timeout; RESET statement_timeout; UPDATE capstan.migrations SET error = {} WHERE service = {} AND version = {}",
            lit(&why),
            lit(&self.service),
            job.migration.version
        );
        let _ = self.client.batch_execute(&record).await;
    }

    pub(super) async fn execute_statements(
        &mut self,
        job: &Job<'_>,
    ) -> Result<ExecOutcome, ExecFailure> {
        let m = job.migration;
        let started = Instant::now();
        if !job.resumed {
            // Only a row this runner inserts (or an applied row it turns
            // dirty, going down) is its own: a row another runner wrote is
            // never overwritten.
            let mark = match job.direction {
                Direction::Up => {
                    let upsert = self.row_sql(job, "dirty", "0");
                    let insert = upsert
                        .split_once(" ON CONFLICT")
                        .map_or(upsert.as_str(), |(head, _)| head);
                    format!("{insert} ON CONFLICT (service, version) DO NOTHING")
                }
                Direction::Down => format!(
                    "UPDATE capstan.migrations SET state = 'dirty', error = {} WHERE service = {} AND version = {} AND state = 'applied'",
                    lit(ROLLING_BACK),
                    lit(&self.service),
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
                "RESET lock_timeout; RESET statement_timeout; BEGIN; UPDATE capstan.migrations SET state = 'applied', error = NULL, duration_ms = {d}, applied_at = now() WHERE service = {svc} AND version = {v}; {log}; COMMIT",
                svc = lit(&self.service),
                d = duration.as_millis(),
                v = m.version,
                log = self.log_sql(job, "up", &duration.as_millis().to_string()),
            ),
            Direction::Down => format!(
                "RESET lock_timeout; RESET statement_timeout; BEGIN; {}; COMMIT",
                self.history_sql(job, "applied", &duration.as_millis().to_string())
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

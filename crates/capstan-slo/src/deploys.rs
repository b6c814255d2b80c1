//! The deploy log: a `deploys` table in the event store's SQLite file.
//! Releases seen in the fleet registry, migrations applied, rollout steps,
//! rollbacks and gate overrides, each with a time, so budget can be charged
//! to the deploy that spent it.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// What kind of deploy event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployKind {
    /// A release first seen in the fleet registry.
    Release,
    /// A migration applied.
    Migration,
    /// A rollout step.
    Rollout,
    /// A rollback.
    Rollback,
    /// The error budget gate overridden.
    Override,
}

impl DeployKind {
    /// Its name in the table and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployKind::Release => "release",
            DeployKind::Migration => "migration",
            DeployKind::Rollout => "rollout",
            DeployKind::Rollback => "rollback",
            DeployKind::Override => "override",
        }
    }

    fn parse(s: &str) -> Option<DeployKind> {
        Some(match s {
            "release" => DeployKind::Release,
            "migration" => DeployKind::Migration,
            "rollout" => DeployKind::Rollout,
            "rollback" => DeployKind::Rollback,
            "override" => DeployKind::Override,
            _ => return None,
        })
    }
}

/// One row of the deploy log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deploy {
    /// When, unix ms.
    pub time_ms: i64,
    /// The service it concerns (`""`: every service).
    pub service: String,
    /// What happened.
    pub kind: DeployKind,
    /// The release, migration version or step.
    pub subject: String,
    /// More: a migration's name and phase, an override's reason.
    pub detail: String,
}

impl Deploy {
    /// A one-line label, like `release 2.1.0` or `migration 12 drop_name (contract)`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}", self.kind.as_str(), self.subject);
        if !self.detail.is_empty() {
            s.push_str(&format!(" ({})", self.detail));
        }
        s
    }
}

/// The deploy log could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployLogError {
    /// SQLite failed.
    #[error("deploy log {}: {source}", path.display())]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
}

/// The deploy log in one SQLite file.
pub struct DeployLog {
    conn: Connection,
    path: PathBuf,
}

impl DeployLog {
    /// Opens the log in `path`, creating the file and table if needed.
    pub fn open(path: &Path) -> Result<DeployLog, DeployLogError> {
        let err = |source| DeployLogError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS deploys (
                id INTEGER PRIMARY KEY,
                time_ms INTEGER NOT NULL,
                service TEXT NOT NULL,
                kind TEXT NOT NULL,
                subject TEXT NOT NULL,
                detail TEXT NOT NULL DEFAULT '',
                source_key TEXT UNIQUE
            );
            CREATE INDEX IF NOT EXISTS deploys_time ON deploys (time_ms);",
        )
        .map_err(err)?;
        Ok(DeployLog {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// Opens the log only if the file exists (read-only commands create nothing).
    pub fn open_existing(path: &Path) -> Result<Option<DeployLog>, DeployLogError> {
        if !path.exists() {
            return Ok(None);
        }
        DeployLog::open(path).map(Some)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> DeployLogError + '_ {
        move |source| DeployLogError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records a deploy. `key`: an identity for events imported from
    /// elsewhere (a migration version, a release); recording the same key
    /// twice keeps the first. Returns whether a row was added.
    pub fn record(&self, d: &Deploy, key: Option<&str>) -> Result<bool, DeployLogError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO deploys (time_ms, service, kind, subject, detail, source_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    d.time_ms,
                    d.service,
                    d.kind.as_str(),
                    d.subject,
                    d.detail,
                    key
                ],
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Deploys in `[from_ms, to_ms)` for `service` (rows for every service
    /// included), oldest first; every service when `None`.
    pub fn list(
        &self,
        service: Option<&str>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Deploy>, DeployLogError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT time_ms, service, kind, subject, detail FROM deploys
                 WHERE time_ms >= ?1 AND time_ms < ?2 AND (?3 IS NULL OR service = ?3 OR service = '')
                 ORDER BY time_ms, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![from_ms, to_ms, service], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (time_ms, service, kind, subject, detail) = row.map_err(self.err())?;
            let Some(kind) = DeployKind::parse(&kind) else {
                continue;
            };
            out.push(Deploy {
                time_ms,
                service,
                kind,
                subject,
                detail,
            });
        }
        Ok(out)
    }

    /// The latest gate override for `service` (or for every service) at or
    /// after `since_ms`.
    pub fn override_since(
        &self,
        service: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<Deploy>, DeployLogError> {
        self.conn
            .query_row(
                "SELECT time_ms, service, subject, detail FROM deploys
                 WHERE kind = 'override' AND time_ms >= ?1
                   AND (service = '' OR ?2 IS NULL OR service = ?2)
                 ORDER BY time_ms DESC, id DESC LIMIT 1",
                params![since_ms, service],
                |r| {
                    Ok(Deploy {
                        time_ms: r.get(0)?,
                        service: r.get(1)?,
                        kind: DeployKind::Override,
                        subject: r.get(2)?,
                        detail: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_lists_and_dedups() {
        let dir = tempfile::tempdir().unwrap();
        let log = DeployLog::open(&dir.path().join("e.db")).unwrap();
        let d = Deploy {
            time_ms: 1000,
            service: "api".into(),
            kind: DeployKind::Migration,
            subject: "3".into(),
            detail: "drop_name, contract".into(),
        };
        assert!(log.record(&d, Some("migration:3")).unwrap());
        assert!(!log.record(&d, Some("migration:3")).unwrap());
        let all = log.list(Some("api"), 0, 2000).unwrap();
        assert_eq!(all, vec![d]);
        assert!(log.list(Some("web"), 0, 2000).unwrap().is_empty());
    }
}

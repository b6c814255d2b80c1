//! The controller's state file (default `capstan-rollout.db`): one row per
//! service with the [`State`] as JSON, written after every decision, and the
//! queue of operator commands the running loop takes one at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Command, State};

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("rollout state {}: {source}", path.display())]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A row could not be decoded.
    #[error("rollout state {}: bad row for {service}: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The service.
        service: String,
        /// What.
        detail: String,
    },
}

/// The state file.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating) the file and its tables.
    pub fn open(path: &Path) -> Result<StateStore, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.into(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS rollouts (
                 service TEXT PRIMARY KEY,
                 state TEXT NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS rollout_commands (
                 id INTEGER PRIMARY KEY,
                 service TEXT NOT NULL,
                 command TEXT NOT NULL,
                 created_ms INTEGER NOT NULL,
                 taken_ms INTEGER
             );",
        )
        .map_err(err)?;
        Ok(StateStore {
            conn,
            path: path.into(),
        })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The state of `service`'s rollout, if any.
    pub fn load(&self, service: &str) -> Result<Option<State>, StoreError> {
        let row: Option<String> = self
            .conn
            .query_row(
                "SELECT state FROM rollouts WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())?;
        row.map(|s| {
            serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                service: service.into(),
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// Every rollout's state, by service.
    pub fn all(&self) -> Result<Vec<State>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT service, state FROM rollouts ORDER BY service")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (service, s) = row.map_err(self.err())?;
            out.push(serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                service,
                detail: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// Writes `state` (durably: synchronous = FULL).
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let json = serde_json::to_string(state).expect("state serializes");
        self.conn
            .execute(
                "INSERT INTO rollouts (service, state, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (service) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                params![state.service, json, state.updated_ms],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Queues an operator command for `service`.
    pub fn push_command(&self, service: &str, c: Command, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO rollout_commands (service, command, created_ms) VALUES (?1, ?2, ?3)",
                params![service, c.as_str(), now_ms],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Takes the oldest untaken command for `service`.
    pub fn take_command(&self, service: &str, now_ms: i64) -> Result<Option<Command>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT id, command FROM rollout_commands WHERE service = ?1 AND taken_ms IS NULL
                 ORDER BY id LIMIT 1",
                [service],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.err())?;
        let Some((id, c)) = row else { return Ok(None) };
        self.conn
            .execute(
                "UPDATE rollout_commands SET taken_ms = ?1 WHERE id = ?2",
                params![now_ms, id],
            )
            .map_err(self.err())?;
        Ok(Command::parse(&c))
    }

    /// Drops untaken commands for `service` (a new rollout starts clean).
    pub fn clear_commands(&self, service: &str, now_ms: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE rollout_commands SET taken_ms = ?1 WHERE service = ?2 AND taken_ms IS NULL",
                params![now_ms, service],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

//! Data access for Postgres and SQLite. What each release reads and writes is
//! the point of the example: 1.0.0 uses `users.name`; 2.0.0 writes both `name`
//! and `handle` and reads `handle` (falling back to `name` for rows written by
//! 1.0.0 during the rollout); 3.0.0 uses `handle` only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::RwLock;

use crate::Release;

/// A user as the API shows it (the API keeps `name` in every release).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
}

/// A chirp with its author's name.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Chirp {
    /// Id.
    pub id: i64,
    /// Author id.
    pub user_id: i64,
    /// Author name.
    pub author: String,
    /// Text.
    pub body: String,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The user does not exist.
    #[error("no user {0}")]
    NoUser(i64),
    /// The database is unavailable.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Db(String),
}

/// Postgres or SQLite.
#[derive(Clone)]
pub enum Store {
    /// One pipelined `tokio-postgres` connection, reconnected when it drops.
    Postgres(Arc<PgStore>),
    /// One SQLite connection.
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
}

/// The Postgres side of [`Store`].
pub struct PgStore {
    spec: capstan_migrate::ConnSpec,
    client: RwLock<Option<Arc<tokio_postgres::Client>>>,
}

impl PgStore {
    async fn client(&self) -> Result<Arc<tokio_postgres::Client>, StoreError> {
        if let Some(c) = self.client.read().await.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut slot = self.client.write().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        // capstan's connector: TLS, the PG* variables, the password file; the
        // whole startup bounded by connect_timeout (here at most 2 s).
        let connected = capstan_migrate::connect_postgres(&self.spec)
            .await
            .map_err(|e| StoreError::Unavailable(e.message))?;
        let client = Arc::new(connected.client);
        *slot = Some(client.clone());
        Ok(client)
    }
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) if !e.is_closed() => StoreError::Db(db.message().to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn sqlite_err(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

/// The table of users the store reads and writes: `CHIRPY_USERS_TABLE`
/// (`table` or `schema.table`, default `users`), so the same binary can use
/// the table under its old name or under the name a move to another
/// service gave it (`users.users`).
pub fn users_table() -> Result<&'static str, StoreError> {
    static TABLE: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| {
            let name = std::env::var("CHIRPY_USERS_TABLE").unwrap_or_else(|_| "users".into());
            let parts: Vec<&str> = name.split('.').collect();
            let plain = |p: &str| {
                p.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            };
            if parts.len() <= 2 && parts.iter().all(|p| plain(p)) {
                Ok(name)
            } else {
                Err(format!(
                    "CHIRPY_USERS_TABLE={name}: use `table` or `schema.table` in lower case letters, digits and `_`"
                ))
            }
        })
        .as_deref()
        .map_err(|e| StoreError::Db(e.clone()))
}

fn new_id() -> i64 {
    (rand::random::<u64>() >> 12) as i64
}

impl Store {
    /// Opens the store for a `postgres://` or `sqlite://` URL.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        users_table()?;
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            let conn = rusqlite::Connection::open(path).map_err(sqlite_err)?;
            conn.busy_timeout(Duration::from_secs(5))
                .map_err(sqlite_err)?;
            conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL;")
                .map_err(sqlite_err)?;
            return Ok(Store::Sqlite(Arc::new(Mutex::new(conn))));
        }
        let mut spec = capstan_migrate::ConnSpec::parse(url)
            .map_err(|e| StoreError::Unavailable(format!("DATABASE_URL: {e}")))?;
        spec.connect_timeout = spec.connect_timeout.min(Duration::from_secs(2));
        Ok(Store::Postgres(Arc::new(PgStore {
            spec,
            client: RwLock::new(None),
        })))
    }

    /// `SELECT 1`: the readiness check of a private dependency.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(pg) => {
                pg.client()
                    .await?
                    .simple_query("SELECT 1")
                    .await
                    .map_err(pg_err)?;
                Ok(())
            }
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                c.query_row("SELECT 1", [], |_| Ok(())).map_err(sqlite_err)
            }
        }
    }

    /// Creates a user.
    pub async fn create_user(&self, release: Release, name: &str) -> Result<User, StoreError> {
        let id = new_id();
        let columns = match release {
            Release::V1 => "(id, name) VALUES ($1, $2)",
            Release::V2 if crate::Fault::from_env() == Some(crate::Fault::SkipNameWrite) => {
                "(id, name, handle) VALUES ($1, '', $2)"
            }
            Release::V2 => "(id, name, handle) VALUES ($1, $2, $2)",
            Release::V3 => "(id, handle) VALUES ($1, $2)",
        };
        let sql = format!("INSERT INTO {} {columns}", users_table()?);
        let sql = sql.as_str();
        match self {
            Store::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(sql, &[&id, &name])
                    .await
                    .map_err(pg_err)?;
            }
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                c.execute(&sql.replace('$', "?"), rusqlite::params![id, name])
                    .map_err(sqlite_err)?;
            }
        }
        Ok(User {
            id,
            name: name.to_string(),
        })
    }

    fn author(release: Release) -> &'static str {
        match release {
            Release::V1 => "u.name",
            Release::V2 => "COALESCE(u.handle, u.name)",
            Release::V3 => "u.handle",
        }
    }

    /// Reads a user.
    pub async fn user(&self, release: Release, id: i64) -> Result<User, StoreError> {
        let sql = format!(
            "SELECT u.id, {} FROM {} u WHERE u.id = $1",
            Self::author(release),
            users_table()?
        );
        let row: Option<(i64, String)> = match self {
            Store::Postgres(pg) => pg
                .client()
                .await?
                .query_opt(&sql, &[&id])
                .await
                .map_err(pg_err)?
                .map(|r| (r.get(0), r.get::<_, Option<String>>(1).unwrap_or_default())),
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                let mut stmt = c.prepare(&sql.replace('$', "?")).map_err(sqlite_err)?;
                let mut rows = stmt.query([id]).map_err(sqlite_err)?;
                match rows.next().map_err(sqlite_err)? {
                    Some(r) => Some((
                        r.get(0).map_err(sqlite_err)?,
                        r.get::<_, Option<String>>(1)
                            .map_err(sqlite_err)?
                            .unwrap_or_default(),
                    )),
                    None => None,
                }
            }
        };
        let (id, name) = row.ok_or(StoreError::NoUser(id))?;
        Ok(User { id, name })
    }

    /// Creates a chirp by `user_id`.
    pub async fn create_chirp(
        &self,
        release: Release,
        user_id: i64,
        body: &str,
    ) -> Result<Chirp, StoreError> {
        let user = self.user(release, user_id).await?;
        let id = new_id();
        let sql = "INSERT INTO chirps (id, user_id, body) VALUES ($1, $2, $3)";
        match self {
            Store::Postgres(pg) => {
                pg.client()
                    .await?
                    .execute(sql, &[&id, &user_id, &body])
                    .await
                    .map_err(pg_err)?;
            }
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                c.execute(&sql.replace('$', "?"), rusqlite::params![id, user_id, body])
                    .map_err(sqlite_err)?;
            }
        }
        Ok(Chirp {
            id,
            user_id,
            author: user.name,
            body: body.to_string(),
        })
    }

    /// A user's chirps, oldest first.
    pub async fn chirps_by(
        &self,
        release: Release,
        user_id: i64,
    ) -> Result<Vec<Chirp>, StoreError> {
        self.user(release, user_id).await?;
        let sql = format!(
            "SELECT c.id, c.user_id, {}, c.body FROM chirps c JOIN {} u ON u.id = c.user_id WHERE c.user_id = $1 ORDER BY c.id",
            Self::author(release),
            users_table()?
        );
        match self {
            Store::Postgres(pg) => Ok(pg
                .client()
                .await?
                .query(&sql, &[&user_id])
                .await
                .map_err(pg_err)?
                .iter()
                .map(|r| Chirp {
                    id: r.get(0),
                    user_id: r.get(1),
                    author: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    body: r.get(3),
                })
                .collect()),
            Store::Sqlite(c) => {
                let c = c.lock().map_err(|_| StoreError::Db("poisoned".into()))?;
                let mut stmt = c.prepare(&sql.replace('$', "?")).map_err(sqlite_err)?;
                let rows = stmt
                    .query_map([user_id], |r| {
                        Ok(Chirp {
                            id: r.get(0)?,
                            user_id: r.get(1)?,
                            author: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            body: r.get(3)?,
                        })
                    })
                    .map_err(sqlite_err)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(sqlite_err)
            }
        }
    }
}

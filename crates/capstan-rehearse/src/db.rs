//! Scratch databases: a SQLite file in a temporary directory, or a database
//! created on a Postgres server and dropped afterwards (also when dropped
//! early, on failure or Ctrl-C).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use capstan_migrate::redact;

use crate::Error;

/// Where scratch databases are made.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file per step, in a temporary directory.
    Sqlite,
    /// A database per step on this server (the URL of any database there; the
    /// role needs CREATEDB).
    Postgres(String),
}

impl Backend {
    /// `sqlite` (or an empty string) or a `postgres://` URL.
    pub fn parse(s: &str) -> Result<Backend, String> {
        if s.is_empty() || s == "sqlite" || s.starts_with("sqlite:") {
            return Ok(Backend::Sqlite);
        }
        if capstan_migrate::is_pg_url(s) || capstan_migrate::is_key_value(s) {
            capstan_migrate::DatabaseUrl::parse(s).map_err(|e| e.to_string())?;
            return Ok(Backend::Postgres(s.to_string()));
        }
        Err(format!(
            "`{}`: use sqlite or a postgres:// URL of the server to create scratch databases on",
            redact(s)
        ))
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// For messages: where the scratch databases live (password hidden).
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite => "SQLite files in a temporary directory".into(),
            Backend::Postgres(u) => format!("databases created and dropped on {}", redact(u)),
        }
    }
}

/// One fresh database.
pub struct Scratch {
    /// Its URL (holds the password; display with [`redact`]).
    pub url: String,
    pg: Option<(Server, String)>,
    _dir: Option<tempfile::TempDir>,
}

fn db_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Database(format!(
        "{what}: {}",
        capstan_migrate::redact_text(&e.to_string())
    ))
}

fn pg_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, Error> {
    Ok(pg_connect_versioned(url).await?.0)
}

/// [`pg_connect`], and the server's major version (from the startup
/// parameters, so no extra query; 0 if unreadable).
async fn pg_connect_versioned(url: &str) -> Result<(tokio_postgres::Client, u32), Error> {
    // TLS, the PG* variables, the password file and connect_timeout, as
    // every capstan connection (the error names the server, not the password).
    let c = capstan_migrate::connect_postgres_str(url)
        .await
        .map_err(|e| db_err("database", e))?;
    let major = c.server_version.as_deref().map_or(0, major_version);
    Ok((c.client, major))
}

/// The server scratch databases are created on, through one connection that
/// the first create opens and every later create and drop reuses.
#[derive(Clone)]
struct Server {
    admin: String,
    conn: Arc<tokio::sync::Mutex<Option<Arc<Admin>>>>,
}

/// The open admin connection.
struct Admin {
    client: tokio_postgres::Client,
    /// `CREATE DATABASE` options for this server's version.
    create_with: &'static str,
}

impl Server {
    /// The server of `admin` (the URL of any database there); connects on first use.
    fn new(admin: &str) -> Server {
        Server {
            admin: admin.to_string(),
            conn: Arc::default(),
        }
    }

    /// The connection, opened (again, if the server closed it) when needed.
    async fn admin(&self) -> Result<Arc<Admin>, Error> {
        let mut slot = self.conn.lock().await;
        if let Some(a) = slot.as_ref().filter(|a| !a.client.is_closed()) {
            return Ok(a.clone());
        }
        let (client, major) = pg_connect_versioned(&self.admin).await?;
        let a = Arc::new(Admin {
            client,
            create_with: create_options(major),
        });
        *slot = Some(a.clone());
        Ok(a)
    }

    async fn create(&self, name: &str) -> Result<(), Error> {
        let a = self.admin().await?;
        let failed = |e: tokio_postgres::Error| {
            db_err(
                &format!("cannot create the scratch database {name} (the role needs CREATEDB)"),
                pg_message(&e),
            )
        };
        // Two queries (neither may run inside a multi-statement transaction),
        // sent together: the drop clears a leftover of the same name.
        let drop_sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let create_sql = format!("CREATE DATABASE {name}{}", a.create_with);
        let (dropped, created) = tokio::join!(
            a.client.batch_execute(&drop_sql),
            a.client.batch_execute(&create_sql)
        );
        dropped.map_err(failed)?;
        created.map_err(failed)
    }

    /// Drops `name`, also while sessions of the binaries that used it are
    /// still open. `DROP DATABASE … WITH (FORCE)` would end them too, but it
    /// looks again whether they are gone only every 100 ms; so the database
    /// first takes no new sessions, its sessions are ended here and watched
    /// closely until gone, and then it is dropped.
    async fn drop_database(&self, name: &str) -> Result<(), Error> {
        let a = self.admin().await?;
        let end_sessions = "SELECT count(pg_terminate_backend(s.pid)) FROM pg_stat_get_activity(NULL) s \
             WHERE s.datid = (SELECT oid FROM pg_database WHERE datname = $1::text) AND s.pid <> pg_backend_pid()";
        let lock_out = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false");
        // A failure here (it may be gone already) leaves it to the drop.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&name];
        let (_, mut sessions) = tokio::join!(
            a.client.batch_execute(&lock_out),
            a.client.query_one(end_sessions, &params)
        );
        let until = Instant::now() + std::time::Duration::from_secs(5);
        while sessions.as_ref().is_ok_and(|r| r.get::<_, i64>(0) > 0) && Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            sessions = a.client.query_one(end_sessions, &params).await;
        }
        a.client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .map_err(|e| db_err(&format!("cannot drop {name}"), pg_message(&e)))
    }
}

/// `15` of the server's `server_version`, `15.4 (Debian 15.4-1)`; 0 if unreadable.
fn major_version(server_version: &str) -> u32 {
    server_version
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `CREATE DATABASE` options for a server of this major version. From 15
/// on the default strategy, WAL_LOG, writes every block of the template to
/// the WAL; FILE_COPY copies its files between two checkpoints, which for a
/// template as small as template1 (7 MB) is the faster of the two.
fn create_options(major: u32) -> &'static str {
    if major >= 15 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    }
}

/// Makes the scratch databases of one rehearsal.
#[derive(Clone)]
pub struct Scratches {
    server: Option<Server>,
}

impl Scratches {
    /// For `backend`; nothing is connected yet.
    pub fn new(backend: &Backend) -> Scratches {
        Scratches {
            server: match backend {
                Backend::Postgres(admin) => Some(Server::new(admin)),
                Backend::Sqlite => None,
            },
        }
    }

    /// Creates a fresh database called `tag` (a SQLite file `tag.db`).
    pub async fn create(&self, tag: &str) -> Result<Scratch, Error> {
        match &self.server {
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("capstan-rehearse-")
                    .tempdir()
                    .map_err(|e| db_err("cannot create a temporary directory", e))?;
                let url = format!(
                    "sqlite://{}",
                    dir.path().join(format!("{tag}.db")).display()
                );
                Ok(Scratch {
                    url,
                    pg: None,
                    _dir: Some(dir),
                })
            }
            Some(server) => {
                let name = tag.to_string();
                let url = capstan_migrate::with_dbname(&server.admin, &name)
                    .map_err(|e| db_err("bad URL", e))?;
                server.create(&name).await?;
                Ok(Scratch {
                    url,
                    pg: Some((server.clone(), name)),
                    _dir: None,
                })
            }
        }
    }

    /// Starts creating a fresh database called `tag` in the background.
    pub fn create_in_background(&self, tag: &str) -> Background<Scratch> {
        let pg = self
            .server
            .as_ref()
            .map(|s| (s.admin.clone(), tag.to_string()));
        let (this, tag) = (self.clone(), tag.to_string());
        Background {
            handle: Some(tokio::spawn(async move { this.create(&tag).await })),
            pg,
        }
    }
}

impl Scratch {
    /// Runs the SQL of `file` (several statements) on the scratch database.
    pub async fn seed(&self, file: &Path) -> Result<(), Error> {
        let sql = std::fs::read_to_string(file)
            .map_err(|e| db_err(&format!("seed {}", file.display()), e))?;
        let what = format!("seed {}", file.display());
        if self.pg.is_some() {
            let client = pg_connect(&self.url).await?;
            client
                .batch_execute(&sql)
                .await
                .map_err(|e| db_err(&what, pg_message(&e)))?;
        } else {
            let path = self.url.trim_start_matches("sqlite://").to_string();
            tokio::task::spawn_blocking(move || {
                let c = rusqlite::Connection::open(path)?;
                c.execute_batch(&sql)
            })
            .await
            .map_err(|e| db_err(&what, e))?
            .map_err(|e| db_err(&what, e))?;
        }
        Ok(())
    }

    /// Drops the database (Postgres; the SQLite directory goes with `self`).
    pub async fn drop_now(mut self) -> Result<(), Error> {
        if let Some((server, name)) = self.pg.take() {
            if let Err(e) = server.drop_database(&name).await {
                // Still ours: `Drop` tries again on a connection of its own.
                self.pg = Some((server, name));
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A unique scratch database name: `PREFIX_<pid>_<n>_<tag>`.
pub fn scratch_name(prefix: &str, tag: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{n}_{tag}", std::process::id())
}

/// Database work running in the background (creating the next step's
/// database, dropping the last one's). Dropped before it is waited for, it
/// stops the work and drops the database by name.
pub struct Background<T> {
    handle: Option<tokio::task::JoinHandle<Result<T, Error>>>,
    pg: Option<(String, String)>,
}

impl<T: Send + 'static> Background<T> {
    /// Waits for the work.
    pub async fn wait(mut self) -> Result<T, Error> {
        let handle = self.handle.take().expect("waited once");
        self.pg = None;
        handle
            .await
            .map_err(|e| Error::Database(format!("database task failed: {e}")))?
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
            if let Some((admin, name)) = self.pg.take() {
                drop_blocking(admin, name);
            }
        }
    }
}

impl Scratch {
    /// Drops the database in the background while `stopping` (the step's
    /// binaries exiting) runs: on Postgres at the same time (their sessions
    /// are ended first), a SQLite file once they have exited. Waited for, it
    /// tells when the drop started and ended.
    pub fn drop_while_stopping(
        self,
        stopping: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Background<(Instant, Instant)> {
        let pg = self.pg.as_ref().map(|(s, n)| (s.admin.clone(), n.clone()));
        let on_server = pg.is_some();
        Background {
            handle: Some(tokio::spawn(async move {
                let dropping = async {
                    let started = Instant::now();
                    self.drop_now().await.map(|()| (started, Instant::now()))
                };
                if on_server {
                    tokio::join!(stopping, dropping).1
                } else {
                    stopping.await;
                    dropping.await
                }
            })),
            pg,
        }
    }
}

/// Drops a Postgres database from a thread with a runtime of its own (for
/// `Drop`, which cannot await).
fn drop_blocking(admin: String, name: String) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let Ok(c) = pg_connect(&admin).await else {
                return;
            };
            // An abandoned CREATE or DROP of it may still be on its way to the
            // server or running there: drop until it has been gone, with no
            // statement naming it running, for 200 ms (at most 5 s in all).
            let mut quiet = 0;
            for _ in 0..100 {
                let _ = c
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let busy = c
                    .query_one(
                        "SELECT (SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query ILIKE '%' || $1::text || '%') + (SELECT count(*) FROM pg_database WHERE datname = $1::text)",
                        &[&name],
                    )
                    .await
                    .map(|r| r.get::<_, i64>(0))
                    .unwrap_or(0);
                quiet = if busy == 0 { quiet + 1 } else { 0 };
                if quiet >= 4 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
    })
    .join();
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Not dropped the orderly way (failure, Ctrl-C).
        if let Some((server, name)) = self.pg.take() {
            drop_blocking(server.admin, name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_copy_only_where_the_server_has_it() {
        assert_eq!(major_version("15.18 (Debian 15.18-0+deb12u1)"), 15);
        assert_eq!(major_version("16beta2"), 16);
        assert_eq!(major_version("9.6.24"), 9);
        assert_eq!(major_version("?"), 0);
        assert_eq!(create_options(15), " STRATEGY FILE_COPY");
        assert_eq!(create_options(14), "");
    }
}

//! `capstan schema dump`: the application's schema as plain SQL, for sqlc and
//! other tools that read a schema file instead of a migration directory.
//!
//! Only the application's objects: capstan's own schemas (`capstan`,
//! `capstan_archive`) and tables (`capstan_*` on SQLite) are left out. The
//! order is deterministic, so the file diffs cleanly in review.
//!
//! - Postgres: `pg_dump --schema-only --no-owner --no-privileges` when a
//!   `pg_dump` is on `PATH` and accepts the server, cleaned of what is not
//!   schema (`SET` lines, `set_config` calls, comments, psql's `\restrict`
//!   meta-commands); otherwise built from the catalog (schemas, enum types,
//!   sequences, tables with their columns and constraints, indexes, views,
//!   foreign keys last).
//! - SQLite: the `sql` of `sqlite_master` (tables, views, indexes, triggers).

use std::time::Duration;

use crate::driver::DbError;
use crate::migrator::Database;
use crate::split::Dialect;
use crate::url::DatabaseUrl;

/// How the dump was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `pg_dump --schema-only`.
    PgDump,
    /// Postgres' catalog (no usable `pg_dump`).
    Catalog,
    /// SQLite's `sqlite_master`.
    SqliteMaster,
}

/// A schema dump.
#[derive(Debug, Clone)]
pub struct Dump {
    /// The SQL, ending in a newline.
    pub sql: String,
    /// How it was made.
    pub method: Method,
    /// Why `pg_dump` was not used, when it was not (e.g. not installed, or
    /// older than the server).
    pub note: Option<String>,
}

/// How long `pg_dump` may take.
const PG_DUMP_LIMIT: Duration = Duration::from_secs(300);

/// Dumps the application's schema of the database behind `db` (`url` is the
/// same database, for `pg_dump`).
pub async fn dump(db: &mut Database, url: &DatabaseUrl) -> Result<Dump, DbError> {
    match db.driver().dialect() {
        Dialect::Sqlite => Ok(Dump {
            sql: join(db.driver().schema_statements().await?),
            method: Method::SqliteMaster,
            note: None,
        }),
        Dialect::Postgres => {
            let DatabaseUrl::Postgres { raw } = url else {
                return Ok(Dump {
                    sql: catalog(db).await?,
                    method: Method::Catalog,
                    note: None,
                });
            };
            match pg_dump(raw).await {
                Ok(text) => Ok(Dump {
                    sql: clean_pg_dump(&text),
                    method: Method::PgDump,
                    note: None,
                }),
                Err(why) => Ok(Dump {
                    sql: catalog(db).await?,
                    method: Method::Catalog,
                    note: Some(why),
                }),
            }
        }
    }
}

/// Runs `pg_dump`; `Err` says why its output cannot be used.
async fn pg_dump(conninfo: &str) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("pg_dump");
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-tablespaces",
        "--exclude-schema=capstan",
        "--exclude-schema=capstan_archive",
    ])
    .arg(format!("--dbname={conninfo}"))
    .stdin(std::process::Stdio::null())
    .kill_on_drop(true);
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", "10");
    }
    let out = match tokio::time::timeout(PG_DUMP_LIMIT, cmd.output()).await {
        Err(_) => return Err(format!("pg_dump took longer than {PG_DUMP_LIMIT:?}")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("no pg_dump on PATH".to_string())
        }
        Ok(Err(e)) => return Err(format!("cannot run pg_dump: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().next().unwrap_or("").trim();
        return Err(format!(
            "pg_dump failed: {}",
            crate::url::redact_text(first)
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| "pg_dump printed invalid UTF-8".to_string())
}

/// Keeps the schema statements of a `pg_dump` script: drops comments, `SET`
/// lines, `set_config` calls and psql meta-commands (`\restrict`), and
/// collapses blank lines.
pub fn clean_pg_dump(text: &str) -> String {
    let mut out = String::new();
    let mut blank = true;
    for line in text.lines() {
        let t = line.trim_start();
        let skip = t.starts_with("--")
            || t.starts_with('\\')
            || (t.starts_with("SET ") && line == t)
            || t.starts_with("SELECT pg_catalog.set_config(");
        if skip {
            continue;
        }
        if line.trim().is_empty() {
            if !blank {
                out.push('\n');
            }
            blank = true;
            continue;
        }
        blank = false;
        out.push_str(line);
        out.push('\n');
    }
    let trimmed = out.trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}\n")
    }
}

async fn catalog(db: &mut Database) -> Result<String, DbError> {
    Ok(join(db.driver().schema_statements().await?))
}
/// One statement per paragraph, each ending in `;`, the file in a newline.
fn join(statements: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for s in statements {
        let s = s.trim_end();
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(s);
        if !s.ends_with(';') {
            out.push(';');
        }
        out.push('\n');
    }
    out
}

/// Writes `sql` to `path` atomically (a temp file in the same directory,
/// then a rename), so a reader never sees half a schema.
pub fn write(path: &std::path::Path, sql: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, sql.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_output_keeps_only_schema_statements() {
        let text = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\n\nSET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\nCREATE TABLE public.users (\n    id bigint NOT NULL\n);\n\n\n-- Name: x\nALTER TABLE ONLY public.users\n    ADD CONSTRAINT users_pkey PRIMARY KEY (id);\n\n\\unrestrict abc\n";
        assert_eq!(
            clean_pg_dump(text),
            "CREATE TABLE public.users (\n    id bigint NOT NULL\n);\n\nALTER TABLE ONLY public.users\n    ADD CONSTRAINT users_pkey PRIMARY KEY (id);\n"
        );
    }
}

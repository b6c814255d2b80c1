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

/// Schemas that are not the application's.
const SKIP: &str = "'pg_catalog', 'information_schema', 'pg_toast', 'capstan', 'capstan_archive'";

/// How long `pg_dump` may take.
const PG_DUMP_LIMIT: Duration = Duration::from_secs(300);

/// Dumps the application's schema of the database behind `db` (`url` is the
/// same database, for `pg_dump`).
pub async fn dump(db: &mut Database, url: &DatabaseUrl) -> Result<Dump, DbError> {
    match db.driver().dialect() {
        Dialect::Sqlite => Ok(Dump {
            sql: sqlite(db).await?,
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

async fn sqlite(db: &mut Database) -> Result<String, DbError> {
    let rows = db
        .driver()
        .query(
            "SELECT sql FROM sqlite_master \
             WHERE sql IS NOT NULL AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 WHEN 'index' THEN 2 ELSE 3 END, name",
        )
        .await?;
    Ok(join(
        rows.into_iter()
            .filter_map(|r| r.into_iter().next().flatten()),
    ))
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

/// `name` or `schema.name` (the `public` schema is left implicit).
const QNAME: &str = "CASE WHEN n.nspname = 'public' THEN quote_ident(c.relname) ELSE quote_ident(n.nspname) || '.' || quote_ident(c.relname) END";

async fn catalog(db: &mut Database) -> Result<String, DbError> {
    let queries = [
        // Schemas other than public.
        format!(
            "SELECT 'CREATE SCHEMA ' || quote_ident(nspname) || ';' FROM pg_namespace n \
             WHERE nspname NOT IN ({SKIP}, 'public') AND nspname NOT LIKE 'pg\\_%' ORDER BY nspname"
        ),
        // Enum types.
        format!(
            "SELECT 'CREATE TYPE ' || CASE WHEN n.nspname = 'public' THEN quote_ident(t.typname) ELSE quote_ident(n.nspname) || '.' || quote_ident(t.typname) END \
                    || ' AS ENUM (' || string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) || ');' \
             FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace \
             WHERE n.nspname NOT IN ({SKIP}) GROUP BY n.nspname, t.typname ORDER BY n.nspname, t.typname"
        ),
        // Sequences no column owns (serial and identity sequences come with their column).
        format!(
            "SELECT 'CREATE SEQUENCE ' || {QNAME} || ';' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'S' AND n.nspname NOT IN ({SKIP}) \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0) \
             ORDER BY n.nspname, c.relname"
        ),
        // Tables: columns in order, then primary key, unique, check and exclusion constraints by name.
        format!(
            "SELECT 'CREATE TABLE ' || {QNAME} || ' (' || E'\\n    ' || concat_ws(E',\\n    ', \
                (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod) \
                    || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED' \
                            WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END \
                    || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END \
                    || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, E',\\n    ' ORDER BY a.attnum) \
                 FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum \
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), \
                (SELECT string_agg('CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid), E',\\n    ' ORDER BY k.conname) \
                 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'x')) \
             ) || E'\\n);' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ({SKIP}) \
             ORDER BY n.nspname, c.relname"
        ),
        // Indexes that no constraint owns.
        format!(
            "SELECT pg_get_indexdef(i.indexrelid) || ';' FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE n.nspname NOT IN ({SKIP}) AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x')) \
             ORDER BY n.nspname, c.relname, ic.relname"
        ),
        // Views and materialized views.
        format!(
            "SELECT CASE c.relkind WHEN 'm' THEN 'CREATE MATERIALIZED VIEW ' ELSE 'CREATE VIEW ' END || {QNAME} \
                    || E' AS\\n' || rtrim(pg_get_viewdef(c.oid, true), ';') || ';' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('v', 'm') AND n.nspname NOT IN ({SKIP}) ORDER BY n.nspname, c.relname"
        ),
        // Foreign keys last: every table exists by then.
        format!(
            "SELECT 'ALTER TABLE ' || {QNAME} || ' ADD CONSTRAINT ' || quote_ident(k.conname) || ' ' || pg_get_constraintdef(k.oid) || ';' \
             FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE k.contype = 'f' AND n.nspname NOT IN ({SKIP}) ORDER BY n.nspname, c.relname, k.conname"
        ),
    ];
    let mut statements = Vec::new();
    for q in &queries {
        let rows = db.driver().query(q).await?;
        statements.extend(
            rows.into_iter()
                .filter_map(|r| r.into_iter().next().flatten()),
        );
    }
    Ok(join(statements))
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

//! capstan's archive on Postgres: copies in the `capstan_archive` schema,
//! entries in `capstan.archive`. A copy is one `DO` block that reads the
//! table as its statement finds it.

use async_trait::async_trait;

use super::PgDriver;
use crate::driver::archive::{
    columns_of, counted, entry_from_row, preview_sql, purge_sql, unfinished,
};
use crate::driver::sql::{
    archive_base, archive_ref, fill, ident, lit, opt_lit, restore_statements, table_ref,
    ENTRY_COLUMNS,
};
use crate::driver::{
    ArchiveEntry, ArchiveStore, ColumnInfo, CopyRequest, CopySpec, DbError, Direction, FailureKind,
    RestoreRequest, Scope, TableInfo, UnfinishedCopy, UnfinishedQuery, RESTORE_GUARD,
};
use crate::split::Dialect;

/// Where the archive entries live.
const ENTRIES: &str = "capstan.archive";

/// The Postgres copy for a destruction: one `DO` block that finds the table `target`
/// as the statement will find it (`to_regclass` at run time), its primary
/// key and columns *then*, decides the scope as the planner's `copy_of` does, holds off
/// writers (`SHARE` lock, in a transactional migration), copies — values of
/// the application's own types as text, so the copy depends on nothing a
/// later migration may drop — makes the copy private, and records the
/// entry. A copy of no rows is dropped again: the entry alone records it.
/// A table that does not exist at that point, or none of whose named
/// columns does, is not archived.
fn pg_copy(
    req: &CopyRequest<'_>,
    target: &str,
    stored: &str,
    archive: &str,
    service: &str,
) -> String {
    let destroyed: Vec<String> = req.destroyed.iter().map(|c| lit(c)).collect();
    let lock = if req.transactional {
        "EXECUTE pg_catalog.format('LOCK TABLE %s IN SHARE MODE', capstan_src::regclass);"
    } else {
        ""
    };
    let template = r#"
DECLARE
  capstan_src oid; capstan_nsp text; capstan_rel text;
  capstan_key text[]; capstan_all text[]; capstan_cols text[]; capstan_scope text;
  capstan_destroyed text[] := ARRAY[@DESTROYED@]::text[];
  capstan_info jsonb := '[]'; capstan_select text[] := '{}';
  capstan_copied bigint; capstan_size bigint := 0; capstan_stored text := @STORED@;
  capstan_grantee oid; capstan_c record;
BEGIN
  SELECT c.oid, n.nspname, c.relname INTO capstan_src, capstan_nsp, capstan_rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.oid = pg_catalog.to_regclass(@TARGET@) AND c.relkind IN ('r', 'p');
  IF capstan_src IS NULL THEN RETURN; END IF;
  @LOCK@
  SELECT coalesce(array_agg(a.attname::text ORDER BY k.ord), '{}') INTO capstan_key
    FROM pg_catalog.pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
   WHERE i.indrelid = capstan_src AND i.indisprimary;
  SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') INTO capstan_all
    FROM pg_catalog.pg_attribute a WHERE a.attrelid = capstan_src AND a.attnum > 0 AND NOT a.attisdropped;
  IF @BY_COLUMNS@ THEN
    SELECT coalesce(array_agg(u.name ORDER BY u.ord), '{}') INTO capstan_cols
      FROM unnest(capstan_destroyed) WITH ORDINALITY AS u(name, ord) WHERE u.name = ANY (capstan_all);
    IF cardinality(capstan_cols) = 0 THEN RETURN; END IF;
  END IF;
  IF @BY_COLUMNS@ AND cardinality(capstan_key) > 0 AND NOT capstan_key && capstan_cols THEN
    capstan_scope := 'columns';
  ELSE
    capstan_scope := 'rows';
    capstan_cols := capstan_all;
  END IF;
  FOR capstan_c IN
    SELECT u.name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS ty, a.attnotnull AS nn,
           t.typnamespace <> 'pg_catalog'::pg_catalog.regnamespace AS own, u.ord <= cardinality(capstan_key) AS is_key
      FROM unnest(CASE WHEN capstan_scope = 'columns' THEN capstan_key || capstan_cols ELSE capstan_cols END)
             WITH ORDINALITY AS u(name, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = capstan_src AND a.attname = u.name
      JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
     ORDER BY u.ord
  LOOP
    capstan_select := capstan_select || CASE WHEN capstan_c.own
      THEN pg_catalog.format('%I::text AS %I', capstan_c.name, capstan_c.name)
      ELSE pg_catalog.format('%I', capstan_c.name) END;
    IF capstan_scope = 'rows' OR NOT capstan_c.is_key THEN
      capstan_info := capstan_info || jsonb_build_array(
        jsonb_build_object('name', capstan_c.name, 'type', capstan_c.ty, 'not_null', capstan_c.nn)
        || CASE WHEN capstan_c.own THEN '{"stored_as": "text"}'::jsonb ELSE '{}'::jsonb END);
    END IF;
  END LOOP;
  EXECUTE pg_catalog.format('CREATE TABLE capstan_archive.%I AS SELECT %s FROM %s',
    capstan_stored, array_to_string(capstan_select, ', '), capstan_src::regclass);
  GET DIAGNOSTICS capstan_copied = ROW_COUNT;
  IF capstan_copied = 0 THEN
    EXECUTE pg_catalog.format('DROP TABLE capstan_archive.%I', capstan_stored);
    capstan_stored := '';
  ELSE
    @PRIVATE@;
    capstan_size := pg_catalog.pg_total_relation_size(@ARCHIVE@::regclass);
  END IF;
  INSERT INTO capstan.archive (@ENTRY_COLUMNS@, service)
  VALUES (@ID@, @VERSION@, @NAME@, @DIR@, @LINE@, @TEXT@, @KIND@, capstan_scope, capstan_nsp, capstan_rel,
          capstan_info::text, to_jsonb(capstan_key)::text, capstan_stored, capstan_copied, capstan_size,
          @MAX@, now(), @BY@, @BINARY@, @SERVICE@);
END"#;
    let by_columns = if req.entry.kind.destroys_columns() {
        "true"
    } else {
        "false"
    };
    let body = fill(
        &req.entry,
        template,
        vec![
            ("@DESTROYED@", destroyed.join(", ")),
            ("@STORED@", lit(stored)),
            ("@TARGET@", lit(target)),
            ("@LOCK@", lock.to_string()),
            ("@BY_COLUMNS@", by_columns.to_string()),
            ("@PRIVATE@", private_sql(archive)),
            ("@ARCHIVE@", lit(archive)),
            ("@ENTRY_COLUMNS@", ENTRY_COLUMNS.to_string()),
            ("@SERVICE@", lit(service)),
        ],
    );
    // A dollar-quote tag the body does not contain.
    let mut tag = "$capstan_archive$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$capstan_archive{n}$");
    }
    format!("DO {tag}{body}\n{tag}")
}

pub(crate) fn private_sql(table: &str) -> String {
    format!(
        "FOR capstan_grantee IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a \
           WHERE c.oid = '{table}'::regclass AND a.grantee <> c.relowner LOOP \
           IF capstan_grantee = 0 THEN EXECUTE 'REVOKE ALL ON {table} FROM PUBLIC'; \
           ELSE EXECUTE format('REVOKE ALL ON {table} FROM %I', pg_catalog.pg_get_userbyid(capstan_grantee)); END IF; \
         END LOOP"
    )
}

#[async_trait]
impl ArchiveStore for PgDriver {
    fn copies_at_run_time(&self) -> bool {
        true
    }

    fn archive_copy_sql(&self, req: &CopyRequest<'_>) -> Vec<String> {
        let stored = archive_base(req.entry.id, req.table, req.destroyed);
        let archive = archive_ref(Dialect::Postgres, &stored);
        let target = match req.info {
            Some(i) => table_ref(Dialect::Postgres, &i.schema, &i.name),
            None => match req.schema {
                Some(s) => format!("{}.{}", ident(s), ident(req.table)),
                None => ident(req.table),
            },
        };
        vec![pg_copy(req, &target, &stored, &archive, &self.service)]
    }

    fn supersede_sql(&self, id: i64, stored_table: &str) -> Vec<String> {
        let mut sql = Vec::new();
        if !stored_table.is_empty() {
            sql.push(format!(
                "DROP TABLE IF EXISTS {}",
                archive_ref(Dialect::Postgres, stored_table)
            ));
        }
        sql.push(format!("DELETE FROM {ENTRIES} WHERE id = {id}"));
        sql
    }

    async fn next_archive_id(&mut self, _previous: Option<i64>) -> Result<i64, DbError> {
        self.rows("SELECT nextval('capstan.archive_ids')")
            .await?
            .first()
            .and_then(|r| r[0].as_deref())
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| DbError::new(FailureKind::Sql, "cannot allocate an archive entry id"))
    }

    async fn unfinished_copies(
        &mut self,
        q: &UnfinishedQuery<'_>,
    ) -> Result<Vec<UnfinishedCopy>, DbError> {
        let direction = match q.direction {
            Direction::Up => "up",
            Direction::Down => "down",
        };
        let mine = self.mine().await?;
        let rows = self
            .rows(&format!(
                "SELECT id, archive_table, columns FROM {ENTRIES} WHERE {mine} AND version = {version} AND direction = {dir} AND line = {line} \
                 AND kind = {kind} AND table_schema = {schema} AND table_name = {table} \
                 AND restored_at IS NULL \
                 AND archived_at > coalesce((SELECT max(at) FROM capstan.log WHERE {mine} AND version = {version} AND action = {dir}), '-infinity'::timestamptz) \
                 ORDER BY id DESC",
                version = q.version,
                dir = lit(direction),
                line = q.line,
                kind = lit(q.kind.as_str()),
                schema = lit(q.schema),
                table = lit(q.table),
            ))
            .await?;
        Ok(unfinished(rows))
    }

    async fn archive_entries(&mut self, id: Option<i64>) -> Result<Vec<ArchiveEntry>, DbError> {
        let exists = self
            .rows("SELECT to_regclass('capstan.archive') IS NOT NULL")
            .await?;
        if exists.first().and_then(|r| r[0].as_deref()) != Some("t") {
            return Ok(Vec::new());
        }
        let mine = self.mine().await?;
        let filter = id.map_or_else(
            || format!("WHERE {mine}"),
            |id| format!("WHERE {mine} AND id = {id}"),
        );
        let rows = self
            .rows(&format!(
                "SELECT id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, \
                   to_char(archived_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), archived_by, binary_version, \
                   to_char(restored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), restored_by, extract(epoch FROM now() - archived_at) \
                 FROM {ENTRIES} {filter} ORDER BY id"
            ))
            .await?;
        rows.iter()
            .enumerate()
            .map(|(n, r)| {
                entry_from_row(ENTRIES, n + 1, r, |stored| {
                    format!("capstan_archive.{stored}")
                })
            })
            .collect()
    }

    async fn copy_columns(
        &mut self,
        entry: &ArchiveEntry,
    ) -> Result<Option<Vec<(String, String)>>, DbError> {
        let rows = self
            .rows(&format!(
                "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
                 FROM (SELECT pg_catalog.to_regclass({}) AS r) c \
                 LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.r AND a.attnum > 0 AND NOT a.attisdropped \
                 WHERE c.r IS NOT NULL ORDER BY a.attnum",
                lit(&archive_ref(Dialect::Postgres, &entry.stored_table))
            ))
            .await?;
        Ok(columns_of(rows))
    }

    async fn archive_preview(
        &mut self,
        entry: &ArchiveEntry,
        cast: &[&ColumnInfo],
        limit: usize,
    ) -> Result<Vec<Vec<Option<String>>>, DbError> {
        let cols: Vec<String> = entry
            .copied_columns()
            .iter()
            .map(|c| match cast.iter().find(|k| &k.name == c) {
                Some(k) => format!("({}::{})::text", ident(c), k.ty),
                None => format!("{}::text", ident(c)),
            })
            .collect();
        let sql = preview_sql(Dialect::Postgres, entry, &cols, limit);
        self.rows(&sql).await
    }

    async fn estimate_copy(
        &mut self,
        info: &TableInfo,
        spec: &CopySpec,
    ) -> Result<(Option<u64>, Option<u64>), DbError> {
        let source = table_ref(Dialect::Postgres, &info.schema, &info.name);
        let size = match spec.scope {
            Scope::Rows => format!("pg_total_relation_size({})", lit(&source)),
            Scope::Columns => {
                let parts: Vec<String> = spec
                    .select
                    .iter()
                    .map(|c| format!("coalesce(pg_column_size({}), 0)", ident(c)))
                    .collect();
                format!("coalesce(sum({} + 24), 0)", parts.join(" + "))
            }
        };
        let rows = self
            .rows(&format!("SELECT count(*), {size} FROM {source}"))
            .await?;
        Ok(counted(&rows))
    }

    async fn restore_archive(&mut self, req: &RestoreRequest<'_>) -> Result<u64, DbError> {
        let entry = req.entry;
        let target = table_ref(Dialect::Postgres, &entry.table_schema, &entry.table_name);
        let mut sql = Vec::new();
        if let Some(rows) = req.guard_rows {
            // Hold off writers and check, inside the transaction, that no
            // row came or went (a CHECK on a temporary table turns a
            // mismatch into an error).
            sql.push(format!("LOCK TABLE {target} IN EXCLUSIVE MODE"));
            sql.push(format!(
                "CREATE TEMP TABLE capstan_restore_guard (rows bigint CONSTRAINT {RESTORE_GUARD} CHECK (rows = {rows})) ON COMMIT DROP"
            ));
            sql.push(format!(
                "INSERT INTO capstan_restore_guard SELECT count(*) FROM {target}"
            ));
        }
        sql.extend(restore_statements(
            Dialect::Postgres,
            entry,
            req.steps,
            req.cast,
        ));
        let write = sql.len().checked_sub(1);
        sql.push(format!(
            "UPDATE {ENTRIES} SET restored_at = now(), restored_by = {} WHERE id = {}",
            opt_lit(Some(req.restored_by)),
            entry.id
        ));
        let counts = self.transact(&sql).await?;
        Ok(write.and_then(|w| counts.get(w)).copied().unwrap_or(0))
    }

    async fn purge_archives(&mut self, entries: &[ArchiveEntry]) -> Result<(), DbError> {
        let sql = purge_sql(Dialect::Postgres, ENTRIES, entries);
        self.transact(&sql).await.map(drop)
    }
}

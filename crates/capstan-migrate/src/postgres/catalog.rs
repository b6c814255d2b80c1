//! The live catalog on Postgres: snapshots for `verify`, invalid indexes,
//! table sizes, a table's columns and key, foreign keys, and the schema as
//! SQL for `schema dump`.

use async_trait::async_trait;
use tokio_postgres::SimpleQueryMessage;

use super::{db_err, PgDriver};
use crate::driver::sql::{ident, lit, table_ref};
use crate::driver::{
    CatalogStore, ColumnInfo, DbError, ForeignKey, MoveFacts, OnDelete, Snapshot, TableInfo,
};
use crate::indexes::InvalidIndex;
use crate::split::Dialect;

/// Schemas that are not the application's.
const SKIP: &str = "'pg_catalog', 'information_schema', 'pg_toast', 'capstan', 'capstan_archive'";

/// `name` or `schema.name` (the `public` schema is left implicit).
const QNAME: &str = "CASE WHEN n.nspname = 'public' THEN quote_ident(c.relname) ELSE quote_ident(n.nspname) || '.' || quote_ident(c.relname) END";

const SNAPSHOT_SQL: &str = r#"
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive')
      AND nspname NOT LIKE 'pg\_toast%' AND nspname NOT LIKE 'pg\_temp%'
), ext AS (
    SELECT objid FROM pg_depend WHERE deptype = 'e'
)
SELECT 'schema ' || nspname, '' FROM ns
UNION ALL
SELECT 'extension ' || extname, extversion FROM pg_extension
UNION ALL
SELECT 'relation ' || ns.nspname || '.' || c.relname,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
            WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' WHEN 'f' THEN 'foreign table'
            ELSE c.relkind::text END
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'column ' || ns.nspname || '.' || c.relname || '.' || a.attname,
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
       || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END
       || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN ns ON ns.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'constraint ' || ns.nspname || '.' || c.relname || '.' || con.conname,
       pg_get_constraintdef(con.oid) || CASE WHEN con.convalidated THEN '' ELSE ' (not validated)' END
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'index ' || ns.nspname || '.' || ci.relname,
       pg_get_indexdef(i.indexrelid) || CASE WHEN i.indisvalid THEN '' ELSE ' (invalid)' END
FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid JOIN ns ON ns.oid = ci.relnamespace
WHERE ci.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'view ' || ns.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
FROM pg_class c JOIN ns ON ns.oid = c.relnamespace WHERE c.relkind IN ('v', 'm')
  AND c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'sequence ' || ns.nspname || '.' || c.relname,
       format_type(s.seqtypid, NULL) || ' start ' || s.seqstart || ' increment ' || s.seqincrement
       || ' min ' || s.seqmin || ' max ' || s.seqmax || CASE WHEN s.seqcycle THEN ' cycle' ELSE '' END
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN ns ON ns.oid = c.relnamespace
WHERE c.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'type ' || ns.nspname || '.' || t.typname,
       CASE t.typtype
         WHEN 'e' THEN 'enum (' || coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                            FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
         WHEN 'd' THEN 'domain ' || format_type(t.typbasetype, t.typtypmod)
                       || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
                       || coalesce(' DEFAULT ' || t.typdefault, '')
                       || coalesce((SELECT ' ' || string_agg(pg_get_constraintdef(dc.oid), ' ' ORDER BY dc.conname)
                                    FROM pg_constraint dc WHERE dc.contypid = t.oid), '')
         WHEN 'r' THEN 'range'
         ELSE 'composite (' || coalesce((SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                        FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '') || ')'
       END
FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
WHERE (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
  AND t.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'function ' || ns.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       p.prokind::text || ' returns ' || coalesce(pg_get_function_result(p.oid), 'void') || ' language ' || l.lanname
       || ' ' || md5(coalesce(p.prosrc, '')) || ' ' || p.provolatile::text
FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE p.oid NOT IN (SELECT objid FROM ext)
UNION ALL
SELECT 'trigger ' || ns.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON ns.oid = c.relnamespace
WHERE NOT t.tgisinternal
"#;

#[async_trait]
impl CatalogStore for PgDriver {
    async fn snapshot(&mut self) -> Result<Snapshot, DbError> {
        let rows = self
            .client
            .simple_query(SNAPSHOT_SQL)
            .await
            .map_err(|e| db_err(&e))?;
        let mut snap = Snapshot::default();
        for m in rows {
            if let SimpleQueryMessage::Row(r) = m {
                let k = r.get(0).unwrap_or_default().to_string();
                let v = r.get(1).unwrap_or_default().to_string();
                snap.0.insert(k, v);
            }
        }
        Ok(snap)
    }

    async fn invalid_indexes(&mut self) -> Result<Vec<InvalidIndex>, DbError> {
        let rows = self
            .client
            .simple_query(
                "SELECT n.nspname, c.relname, t.relname, pg_get_indexdef(c.oid) \
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' \
                 ORDER BY 1, 2",
            )
            .await
            .map_err(|e| db_err(&e))?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(InvalidIndex {
                    schema: r.get(0).unwrap_or_default().to_string(),
                    name: r.get(1).unwrap_or_default().to_string(),
                    table: r.get(2).unwrap_or_default().to_string(),
                    definition: r.get(3).unwrap_or_default().to_string(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        use crate::live::{quote_ident, TableSize};
        let rows = self
            .rows(
                "SELECT n.nspname, c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive') \
                   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
                 ORDER BY 1, 2",
            )
            .await?;
        let mut live = crate::live::LiveDb::default();
        for row in rows {
            let [Some(schema), Some(table), Some(estimate), Some(bytes)] = &row[..] else {
                continue;
            };
            let estimate: i64 = estimate.parse().unwrap_or(-1);
            // -1: never vacuumed nor analyzed. Count, but no further than
            // the threshold needs (a bounded scan, not the whole table).
            let rows = if estimate >= 0 {
                estimate as u64
            } else {
                let sql = format!(
                    "SELECT count(*) FROM (SELECT 1 FROM ONLY {}.{} LIMIT {}) s",
                    quote_ident(schema),
                    quote_ident(table),
                    count_up_to.saturating_add(1)
                );
                self.rows(&sql)
                    .await?
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(u64::MAX)
            };
            let name = if schema == "public" {
                table.clone()
            } else {
                format!("{schema}.{table}")
            };
            live.tables.push(TableSize {
                name,
                rows,
                bytes: bytes.parse().unwrap_or(u64::MAX),
            });
        }
        live.time_zone = self
            .rows("SHOW TimeZone")
            .await?
            .first()
            .and_then(|r| r.first().cloned().flatten());
        Ok(live)
    }

    async fn table_info(
        &mut self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Option<TableInfo>, DbError> {
        let name = match schema {
            Some(s) => format!("{}.{}", ident(s), ident(table)),
            None => ident(table),
        };
        let rows = self
            .rows(&format!(
                "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                   (SELECT k.ord FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                     WHERE i.indrelid = c.oid AND i.indisprimary AND k.attnum = a.attnum), \
                   a.attgenerated <> '' \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid \
                 WHERE c.oid = to_regclass({}) AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                lit(&name)
            ))
            .await?;
        Ok(TableInfo::from_columns(rows.iter().map(|r| {
            (
                r[0].clone().unwrap_or_default(),
                r[1].clone().unwrap_or_default(),
                ColumnInfo {
                    name: r[2].clone().unwrap_or_default(),
                    ty: r[3].clone().unwrap_or_default(),
                    not_null: r[4].as_deref() == Some("t"),
                    stored_as: None,
                },
                r[5].as_deref().and_then(|k| k.parse().ok()),
                r[6].as_deref() == Some("t"),
            )
        })))
    }

    async fn referencing(&mut self, schema: &str, table: &str) -> Result<Vec<ForeignKey>, DbError> {
        let rows = self
            .rows(&format!(
                "SELECT n.nspname, c.relname, con.confdeltype, \
                   (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a \
                     WHERE a.attrelid = con.conrelid AND a.attnum = ANY (con.conkey))::text \
                 FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid \
                   JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE con.contype = 'f' AND con.confrelid = to_regclass({}) \
                 ORDER BY n.nspname, c.relname",
                lit(&table_ref(Dialect::Postgres, schema, table))
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ForeignKey {
                schema: r[0].clone().unwrap_or_default(),
                table: r[1].clone().unwrap_or_default(),
                on_delete: match r[2].as_deref().unwrap_or("") {
                    "c" => OnDelete::Cascade,
                    "n" | "d" => OnDelete::SetNullOrDefault,
                    _ => OnDelete::Keep,
                },
                columns: serde_json::from_str(r[3].as_deref().unwrap_or("[]")).unwrap_or_default(),
            })
            .collect())
    }

    async fn move_facts(
        &mut self,
        schema: &str,
        table: &str,
        to_schema: &str,
    ) -> Result<Option<MoveFacts>, DbError> {
        let name = lit(&table_ref(Dialect::Postgres, schema, table));
        let rows = self
            .rows(&format!(
                "SELECT c.relkind::text, \
                   (SELECT json_agg(i.inhrelid::regclass::text ORDER BY i.inhrelid::regclass::text) FROM pg_inherits i WHERE i.inhparent = c.oid)::text, \
                   EXISTS (SELECT FROM pg_inherits i WHERE i.inhrelid = c.oid), \
                   c.relrowsecurity, \
                   EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), \
                   (SELECT json_agg(DISTINCT v.oid::regclass::text) FROM pg_depend d \
                     JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class \
                     WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = c.oid AND v.oid <> c.oid)::text, \
                   (SELECT json_agg(p.oid::regprocedure::text ORDER BY p.oid::regprocedure::text) FROM pg_proc p \
                     JOIN pg_namespace pn ON pn.oid = p.pronamespace \
                     WHERE pn.nspname NOT IN ({SKIP}) AND p.prokind IN ('f', 'p') \
                       AND NOT EXISTS (SELECT FROM pg_depend e WHERE e.objid = p.oid AND e.deptype = 'e') \
                       AND position(lower(c.relname) IN lower(p.prosrc)) > 0)::text, \
                   (SELECT json_agg(DISTINCT con.conrelid::regclass::text) FROM pg_constraint con \
                     WHERE con.contype = 'f' AND con.confrelid = c.oid)::text, \
                   to_regclass({}) IS NOT NULL \
                 FROM pg_class c WHERE c.oid = to_regclass({name})",
                lit(&table_ref(Dialect::Postgres, to_schema, table)),
            ))
            .await?;
        let Some(r) = rows.into_iter().next() else {
            return Ok(None);
        };
        let list = |v: &Option<String>| -> Vec<String> {
            serde_json::from_str(v.as_deref().unwrap_or("[]")).unwrap_or_default()
        };
        let yes = |v: &Option<String>| v.as_deref() == Some("t");
        Ok(Some(MoveFacts {
            kind: r[0].clone().unwrap_or_default(),
            children: list(&r[1]),
            is_child: yes(&r[2]),
            row_security: yes(&r[3]),
            column_privileges: yes(&r[4]),
            views: list(&r[5]),
            functions: list(&r[6]),
            foreign_keys: list(&r[7]),
            new_name_taken: yes(&r[8]),
        }))
    }

    async fn missing_type(&mut self, types: &[String]) -> Result<Option<String>, DbError> {
        if types.is_empty() {
            return Ok(None);
        }
        let types: Vec<String> = types.iter().map(|t| lit(t)).collect();
        let rows = self
            .rows(&format!(
                "SELECT t FROM unnest(ARRAY[{}]::text[]) AS t WHERE pg_catalog.to_regtype(t) IS NULL",
                types.join(", ")
            ))
            .await?;
        Ok(rows.first().and_then(|r| r[0].clone()))
    }

    async fn count_rows(&mut self, schema: &str, table: &str) -> Result<String, DbError> {
        let target = table_ref(Dialect::Postgres, schema, table);
        let rows = self.rows(&format!("SELECT count(*) FROM {target}")).await?;
        Ok(rows
            .first()
            .and_then(|r| r[0].clone())
            .unwrap_or_else(|| "?".into()))
    }

    async fn schema_statements(&mut self) -> Result<Vec<String>, DbError> {
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
            let rows = self.rows(q).await?;
            statements.extend(
                rows.into_iter()
                    .filter_map(|r| r.into_iter().next().flatten()),
            );
        }
        Ok(statements)
    }
}

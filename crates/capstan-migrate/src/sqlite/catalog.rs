//! The live catalog on SQLite: snapshots for `verify`, table sizes, a
//! table's columns and key, and the schema as SQL for `schema dump`.

use async_trait::async_trait;

use super::{db_err, SqliteDriver};
use crate::driver::sql::{lit, table_ref};
use crate::driver::{CatalogStore, ColumnInfo, DbError, Snapshot, TableInfo};
use crate::split::Dialect;

/// Collapses whitespace so formatting does not count as a schema difference.
fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[async_trait]
impl CatalogStore for SqliteDriver {
    async fn snapshot(&mut self) -> Result<Snapshot, DbError> {
        let mut snap = Snapshot::default();
        let objects: Vec<(String, String, String, Option<String>)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master \
                     WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' \
                     ORDER BY type, name",
                )
                .map_err(|e| db_err(&e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| db_err(&e))?;
            rows.collect::<Result<_, _>>().map_err(|e| db_err(&e))?
        };
        for (kind, name, table, sql) in objects {
            if kind == "table" {
                snap.0.insert(format!("table {name}"), String::new());
                let mut stmt = self
                    .conn
                    .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_xinfo(?1) ORDER BY cid")
                    .map_err(|e| db_err(&e))?;
                let cols = stmt
                    .query_map([&name], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    })
                    .map_err(|e| db_err(&e))?;
                for c in cols {
                    let (col, ty, notnull, default, pk) = c.map_err(|e| db_err(&e))?;
                    let mut def = ty;
                    def.push_str(if notnull { " NOT NULL" } else { " NULL" });
                    if let Some(d) = default {
                        def.push_str(&format!(" DEFAULT {d}"));
                    }
                    if pk > 0 {
                        def.push_str(&format!(" PRIMARY KEY ({pk})"));
                    }
                    snap.0.insert(format!("column {name}.{col}"), def);
                }
                let mut stmt = self
                    .conn
                    .prepare("SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq")
                    .map_err(|e| db_err(&e))?;
                let fks = stmt
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{}: {} -> {}.{} on update {} on delete {}",
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                            r.get::<_, String>(5)?,
                            r.get::<_, String>(6)?
                        ))
                    })
                    .map_err(|e| db_err(&e))?;
                for (i, fk) in fks.enumerate() {
                    snap.0.insert(
                        format!("foreign key {name}.{i}"),
                        fk.map_err(|e| db_err(&e))?,
                    );
                }
            } else {
                let def = sql
                    .map(|s| normalize(&s))
                    .unwrap_or_else(|| "(automatic)".into());
                snap.0.insert(format!("{kind} {name} on {table}"), def);
            }
        }
        Ok(snap)
    }

    /// SQLite has no row estimate: each table is counted, up to `count_up_to
    /// + 1` rows (a bounded scan). Bytes are not measured.
    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        let names = self.rows(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' ORDER BY name",
        )?;
        let mut live = crate::live::LiveDb::default();
        for name in names
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
        {
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {})",
                crate::live::quote_ident(&name),
                count_up_to.saturating_add(1)
            );
            let rows = self
                .rows(&sql)?
                .first()
                .and_then(|r| r.first().cloned().flatten())
                .and_then(|n| n.parse().ok())
                .unwrap_or(u64::MAX);
            live.tables.push(crate::live::TableSize {
                name,
                rows,
                bytes: 0,
            });
        }
        Ok(live)
    }

    async fn table_info(
        &mut self,
        _schema: Option<&str>,
        table: &str,
    ) -> Result<Option<TableInfo>, DbError> {
        // SQLite compares table names without case: `DROP TABLE users`
        // drops `Users`, and the catalog's spelling is the one to keep.
        let kind = self.rows(&format!(
            "SELECT type, name FROM sqlite_master WHERE name = {} COLLATE NOCASE",
            lit(table)
        ))?;
        let Some(stored) = kind
            .first()
            .filter(|r| r[0].as_deref() == Some("table"))
            .and_then(|r| r[1].clone())
        else {
            return Ok(None);
        };
        let rows = self.rows(&format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info({}) ORDER BY cid",
            lit(&stored)
        ))?;
        Ok(TableInfo::from_columns(rows.iter().map(|r| {
            (
                "main".to_string(),
                stored.clone(),
                ColumnInfo {
                    name: r[0].clone().unwrap_or_default(),
                    ty: r[1].clone().unwrap_or_default(),
                    not_null: r[2].as_deref() == Some("1"),
                    stored_as: None,
                },
                r[3].as_deref()
                    .and_then(|k| k.parse::<i64>().ok())
                    .filter(|k| *k > 0),
                false,
            )
        })))
    }

    async fn count_rows(&mut self, schema: &str, table: &str) -> Result<String, DbError> {
        let target = table_ref(Dialect::Sqlite, schema, table);
        let rows = self.rows(&format!("SELECT count(*) FROM {target}"))?;
        Ok(rows
            .first()
            .and_then(|r| r[0].clone())
            .unwrap_or_else(|| "?".into()))
    }

    async fn schema_statements(&mut self) -> Result<Vec<String>, DbError> {
        let rows = self.rows(
            "SELECT sql FROM sqlite_master \
             WHERE sql IS NOT NULL AND name NOT LIKE 'capstan\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'view' THEN 1 WHEN 'index' THEN 2 ELSE 3 END, name",
        )?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect())
    }
}

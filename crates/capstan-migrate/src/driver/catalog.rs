//! What the live catalog says about the application's schema, and the store
//! each driver implements to read it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::DbError;

/// A column as the live catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Name.
    pub name: String,
    /// Type as the database spells it (`text`, `numeric(10,2)`, `INTEGER`).
    #[serde(rename = "type")]
    pub ty: String,
    /// Declared NOT NULL.
    pub not_null: bool,
    /// How the archive copy holds the values when not in `ty` itself:
    /// `text` for a type of the application's own (an enum, a domain, a
    /// composite, an extension's type, or an array of one), so the copy
    /// depends on no object a later migration may drop. `show` and `restore`
    /// cast the text back to `ty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<String>,
}

/// A table as the live catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Its schema (`main` on SQLite).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Columns in order.
    pub columns: Vec<ColumnInfo>,
    /// Primary key columns in key order (empty: none).
    pub primary_key: Vec<String>,
    /// Columns the database computes (`GENERATED ALWAYS AS (…) STORED`):
    /// copied like any other, but never written back.
    pub generated: Vec<String>,
}

impl TableInfo {
    /// The column called `name`; failing an exact match, the one column
    /// whose name differs only in case (SQLite compares identifiers without
    /// case, and the parser folds unquoted ones to lower case).
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            let mut like = self
                .columns
                .iter()
                .filter(|c| c.name.eq_ignore_ascii_case(name));
            match (like.next(), like.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        })
    }
}

impl TableInfo {
    /// A table from its catalog rows, one per column in order: (schema,
    /// table, column, position in the primary key, generated); `None` when
    /// there are none (no such table).
    #[cfg(any(feature = "postgres", feature = "sqlite"))]
    pub(crate) fn from_columns(
        rows: impl IntoIterator<Item = (String, String, ColumnInfo, Option<i64>, bool)>,
    ) -> Option<TableInfo> {
        let mut info: Option<TableInfo> = None;
        let mut keys = Vec::new();
        for (schema, name, col, key, generated) in rows {
            if let Some(k) = key {
                keys.push((k, col.name.clone()));
            }
            let table = info.get_or_insert_with(|| TableInfo {
                schema,
                name,
                columns: Vec::new(),
                primary_key: Vec::new(),
                generated: Vec::new(),
            });
            if generated {
                table.generated.push(col.name.clone());
            }
            table.columns.push(col);
        }
        keys.sort();
        if let Some(i) = info.as_mut() {
            i.primary_key = keys.into_iter().map(|(_, n)| n).collect();
        }
        info
    }
}

/// A catalog snapshot: `object key → definition`, compared by `verify`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot(pub BTreeMap<String, String>);

impl Snapshot {
    /// Every difference between `self` (before) and `after`, one line each.
    pub fn diff(&self, after: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            match after.0.get(k) {
                None => out.push(format!("{k}: missing (was {v})")),
                Some(w) if w != v => out.push(format!("{k}: was {v}, now {w}")),
                _ => {}
            }
        }
        for (k, v) in &after.0 {
            if !self.0.contains_key(k) {
                out.push(format!("{k}: unexpected ({v})"));
            }
        }
        out
    }
}

/// What a foreign key does to its rows when the row it references is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDelete {
    /// `ON DELETE CASCADE`: the referencing rows are deleted too.
    Cascade,
    /// `ON DELETE SET NULL` / `SET DEFAULT`: the key columns are rewritten.
    SetNullOrDefault,
    /// `NO ACTION` / `RESTRICT`: nothing changes (the delete fails instead).
    Keep,
}

/// A foreign key that references a table, as the catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referencing table's schema.
    pub schema: String,
    /// The referencing table.
    pub table: String,
    /// What a delete of the referenced row does.
    pub on_delete: OnDelete,
    /// The referencing columns, in column order.
    pub columns: Vec<String>,
}

/// What a move of a table to another schema (`capstan plan-move`) needs to
/// know about it, as the catalog says it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MoveFacts {
    /// Its `pg_class.relkind`: `r` a table, `p` a partitioned one, `v` a view…
    pub kind: String,
    /// Tables that inherit from it or are its partitions (`schema.table`).
    pub children: Vec<String>,
    /// It inherits from another table or is a partition.
    pub is_child: bool,
    /// Row-level security is enabled on it.
    pub row_security: bool,
    /// Some of its columns carry privileges of their own.
    pub column_privileges: bool,
    /// Views (and materialized views) that read it.
    pub views: Vec<String>,
    /// Functions of the application whose body names the table (they
    /// resolve the name when they run).
    pub functions: Vec<String>,
    /// Tables whose foreign keys reference it.
    pub foreign_keys: Vec<String>,
    /// A relation with the name the table would take exists already.
    pub new_name_taken: bool,
}

/// The live catalog, as each driver reads it.
#[async_trait]
pub trait CatalogStore: Send {
    /// A snapshot of the user's schema (capstan's own tables excluded).
    async fn snapshot(&mut self) -> Result<Snapshot, DbError>;
    /// Every index the database marks invalid on the application's tables
    /// (a failed `CREATE INDEX CONCURRENTLY` leaves one); none on SQLite.
    async fn invalid_indexes(&mut self) -> Result<Vec<crate::indexes::InvalidIndex>, DbError> {
        Ok(Vec::new())
    }
    /// Table sizes and the session time zone, for linting what is about to
    /// run against the database as it is; a table without an estimate is
    /// counted up to `count_up_to + 1` rows. Empty by default.
    async fn live(&mut self, count_up_to: u64) -> Result<crate::live::LiveDb, DbError> {
        let _ = count_up_to;
        Ok(crate::live::LiveDb::default())
    }
    /// A table's columns and primary key; `None` when there is no such
    /// table (`schema` as the statement names it, if it does).
    async fn table_info(
        &mut self,
        schema: Option<&str>,
        table: &str,
    ) -> Result<Option<TableInfo>, DbError>;
    /// The foreign keys that reference table `schema.table`, by referencing
    /// schema and table; none where the database does not enforce them
    /// (SQLite without `PRAGMA foreign_keys`).
    async fn referencing(&mut self, schema: &str, table: &str) -> Result<Vec<ForeignKey>, DbError> {
        let _ = (schema, table);
        Ok(Vec::new())
    }
    /// The first of `types` (as `format_type` spells them) that no longer
    /// exists; `None` when all do, or the database has no such types.
    async fn missing_type(&mut self, types: &[String]) -> Result<Option<String>, DbError> {
        let _ = types;
        Ok(None)
    }
    /// What a move of table `schema.table` into schema `to_schema` needs to
    /// know; `None` when there is no such relation (and on databases without
    /// schemas).
    async fn move_facts(
        &mut self,
        schema: &str,
        table: &str,
        to_schema: &str,
    ) -> Result<Option<MoveFacts>, DbError> {
        let _ = (schema, table, to_schema);
        Ok(None)
    }
    /// The rows of table `schema.table` now, as text (`?` if unreadable).
    async fn count_rows(&mut self, schema: &str, table: &str) -> Result<String, DbError>;
    /// The application's schema as SQL statements, in a deterministic
    /// order (capstan's own objects left out), read from the catalog.
    async fn schema_statements(&mut self) -> Result<Vec<String>, DbError>;
}

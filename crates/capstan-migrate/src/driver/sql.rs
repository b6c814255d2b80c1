//! SQL both drivers write alike: quoting, the placeholders of the archive's
//! entry templates, and the statements of a restore (standard SQL, with
//! each dialect's table names).

use std::collections::BTreeMap;

use super::{ArchiveEntry, ColumnInfo, Direction, NewEntry, RestoreStep};
use crate::split::Dialect;

/// Quotes an identifier (both dialects).
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quotes a string literal (both dialects; standard_conforming_strings on).
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A literal, or `NULL`.
pub(crate) fn opt_lit(s: Option<&str>) -> String {
    s.map_or_else(|| "NULL".into(), lit)
}

/// `schema.table` on Postgres, `table` on SQLite, quoted.
pub(crate) fn table_ref(dialect: Dialect, schema: &str, name: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("{}.{}", ident(schema), ident(name)),
        Dialect::Sqlite => ident(name),
    }
}

/// How to refer to an archive copy stored as `stored`.
pub(crate) fn archive_ref(dialect: Dialect, stored: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("capstan_archive.{}", ident(stored)),
        Dialect::Sqlite => ident(stored),
    }
}

/// The base name of entry `id`'s copy: `a{id}_{table}_{columns}`, lower
/// case, other characters as `_`, at most 48 characters.
pub(crate) fn archive_base(id: i64, table: &str, columns: &[String]) -> String {
    let base: String = format!("a{id}_{table}_{}", columns.join("_"))
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut base = base.trim_end_matches('_').to_string();
    base.truncate(48);
    base
}

/// The columns of an archive entry, in the order the templates list them.
pub(crate) const ENTRY_COLUMNS: &str = "id, version, migration, direction, line, statement, kind, scope, table_schema, table_name, columns, primary_key, archive_table, row_count, size_bytes, max_bytes, archived_at, archived_by, binary_version";

/// The literal values of an entry's columns, by placeholder.
fn literals(entry: &NewEntry<'_>) -> Vec<(&'static str, String)> {
    vec![
        ("@ID@", entry.id.to_string()),
        ("@VERSION@", entry.version.to_string()),
        ("@NAME@", lit(entry.migration)),
        (
            "@DIR@",
            lit(match entry.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            }),
        ),
        ("@LINE@", entry.line.to_string()),
        ("@TEXT@", lit(entry.statement)),
        ("@KIND@", lit(entry.kind.as_str())),
        (
            "@MAX@",
            entry
                .max_bytes
                .map_or_else(|| "NULL".into(), |m| m.to_string()),
        ),
        ("@BY@", lit(&entry.identity.applied_by)),
        ("@BINARY@", lit(&entry.identity.binary_version)),
    ]
}

/// `template` with the entry's placeholders and `extra` filled in, in one
/// pass, so a value that holds a placeholder's text (the statement, a
/// column name) is never expanded.
pub(crate) fn fill(
    entry: &NewEntry<'_>,
    template: &str,
    extra: Vec<(&'static str, String)>,
) -> String {
    let mut values = literals(entry);
    values.extend(extra);
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        let hit = values.iter().find(|(k, _)| rest[at..].starts_with(k));
        match hit {
            Some((k, v)) => {
                out.push_str(&rest[..at]);
                out.push_str(v);
                rest = &rest[at + k.len()..];
            }
            None => {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The copy's value of column `name` (row alias `a`), cast back to its
/// type when the copy holds it as text.
fn copied(cast: &BTreeMap<String, String>, name: &str) -> String {
    match cast.get(name) {
        Some(ty) => format!("a.{}::{ty}", ident(name)),
        None => format!("a.{}", ident(name)),
    }
}

fn key_match(key: &[String], left: &str, cast: &BTreeMap<String, String>) -> String {
    key.iter()
        .map(|k| format!("{left}.{} = {}", ident(k), copied(cast, k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// The statements of `steps`, restoring `entry` into its table.
pub(crate) fn restore_statements(
    dialect: Dialect,
    entry: &ArchiveEntry,
    steps: &[RestoreStep],
    cast: &BTreeMap<String, String>,
) -> Vec<String> {
    let target = table_ref(dialect, &entry.table_schema, &entry.table_name);
    let archive = archive_ref(dialect, &entry.stored_table);
    // Rows go back with their archived identity values (`OVERRIDING SYSTEM
    // VALUE`, or a `GENERATED ALWAYS AS IDENTITY` key refuses them).
    let overriding = match dialect {
        Dialect::Postgres => " OVERRIDING SYSTEM VALUE",
        Dialect::Sqlite => "",
    };
    steps
        .iter()
        .map(|step| match step {
            RestoreStep::AddColumn(c) => format!(
                "ALTER TABLE {target} ADD COLUMN {} {}",
                ident(&c.name),
                c.ty
            ),
            RestoreStep::UpdateByKey { columns, key } => {
                let set: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{} = {}", ident(c), copied(cast, c)))
                    .collect();
                format!(
                    "UPDATE {target} AS t SET {} FROM {archive} AS a WHERE {}",
                    set.join(", "),
                    key_match(key, "t", cast)
                )
            }
            RestoreStep::CreateTable { columns, key } => {
                let mut defs: Vec<String> = columns.iter().map(column_def).collect();
                if !key.is_empty() {
                    let key: Vec<String> = key.iter().map(|k| ident(k)).collect();
                    defs.push(format!("PRIMARY KEY ({})", key.join(", ")));
                }
                format!("CREATE TABLE {target} ({})", defs.join(", "))
            }
            RestoreStep::DeleteAll => format!("DELETE FROM {target}"),
            RestoreStep::Insert {
                columns,
                unless_key,
            } => {
                let into: Vec<String> = columns.iter().map(|c| ident(c)).collect();
                let select: Vec<String> = columns.iter().map(|c| copied(cast, c)).collect();
                let filter = match unless_key {
                    Some(key) => format!(
                        " WHERE NOT EXISTS (SELECT 1 FROM {target} AS x WHERE {})",
                        key_match(key, "x", cast)
                    ),
                    None => String::new(),
                };
                format!(
                    "INSERT INTO {target} ({}){overriding} SELECT {} FROM {archive} AS a{filter}",
                    into.join(", "),
                    select.join(", ")
                )
            }
        })
        .collect()
}

fn column_def(c: &ColumnInfo) -> String {
    format!(
        "{} {}{}",
        ident(&c.name),
        c.ty,
        if c.not_null { " NOT NULL" } else { "" }
    )
}

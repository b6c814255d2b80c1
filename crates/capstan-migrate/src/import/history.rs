//! The old tool's history, for `baseline --from TOOL`.

use super::*;

/// One row of another tool's history table: the version it records, and
/// whether that row says the version is applied (sqlx `success`, goose
/// `is_applied`, golang-migrate not `dirty`; always true for diesel and dbmate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolHistoryRow {
    /// The version, as text.
    pub version: String,
    /// Whether the row counts the version as applied.
    pub ok: bool,
}

impl Tool {
    /// The history table the tool writes by default.
    pub fn history_table(self) -> &'static str {
        match self {
            Tool::Diesel => "__diesel_schema_migrations",
            Tool::Sqlx => "_sqlx_migrations",
            Tool::Goose => "goose_db_version",
            Tool::Dbmate | Tool::GolangMigrate => "schema_migrations",
        }
    }

    /// The query reading `table` (already quoted): version as text and the
    /// applied flag as 1/0, in the order the rows were written where the
    /// table keeps one. Valid on Postgres and SQLite.
    pub fn history_query(self, table: &str) -> String {
        match self {
            Tool::Diesel | Tool::Dbmate => {
                format!("SELECT CAST(version AS TEXT), 1 FROM {table}")
            }
            Tool::Sqlx => format!(
                "SELECT CAST(version AS TEXT), CASE WHEN success THEN 1 ELSE 0 END FROM {table}"
            ),
            Tool::Goose => format!(
                "SELECT CAST(version_id AS TEXT), CASE WHEN is_applied THEN 1 ELSE 0 END FROM {table} ORDER BY id"
            ),
            Tool::GolangMigrate => format!(
                "SELECT CAST(version AS TEXT), CASE WHEN dirty THEN 0 ELSE 1 END FROM {table}"
            ),
        }
    }
}

/// `name` or `schema.name` as a quoted SQL identifier.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub fn quote_table(name: &str) -> String {
    name.split('.')
        .map(|p| format!("\"{}\"", p.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(".")
}

/// A migration of the directory, as baseline maps it: its capstan version
/// and file name, and what it was imported from (see [`imported_from`]).
#[derive(Debug, Clone)]
pub struct Imported {
    /// The capstan version.
    pub version: u64,
    /// The capstan file name.
    pub file_name: String,
    /// The tool and the version its history records, if the file says.
    pub from: Option<(Tool, String)>,
}

/// The capstan version up to which a database the old `tool` migrated is
/// already migrated, from that tool's history `rows` (None: it applied
/// nothing). Pure.
///
/// Refuses, naming versions and files, when a row is failed or dirty, when
/// the history names a version no file was imported from, or when what the
/// tool applied is not a prefix of the directory (the tool ran a later
/// migration while an earlier one is still pending): capstan records a prefix.
pub fn map_history(
    tool: Tool,
    migrations: &[Imported],
    rows: &[ToolHistoryRow],
) -> Result<Option<u64>, String> {
    let number = |v: &str| v.trim_start_matches('0').to_string();
    let key = |v: &str| match tool {
        Tool::Diesel | Tool::Dbmate => v.to_string(),
        _ => number(v),
    };
    let original = |m: &Imported| -> Option<String> {
        m.from
            .as_ref()
            .filter(|(t, _)| *t == tool)
            .map(|(_, v)| key(v))
    };
    // What the tool counts as applied.
    let mut applied: BTreeMap<String, String> = BTreeMap::new(); // key -> as recorded
    match tool {
        Tool::GolangMigrate => {
            let Some(row) = rows.last() else {
                return Ok(None);
            };
            if !row.ok {
                return Err(format!("golang-migrate's history marks version {} dirty (it failed partway): fix the database and clear the flag with `migrate force` first", row.version));
            }
            let current = number(&row.version);
            let known = migrations
                .iter()
                .any(|m| original(m) == Some(current.clone()));
            if !known {
                return Err(format!("the database is at golang-migrate version {}, which no migration in the directory was imported from", row.version));
            }
            let as_num = |k: &str| (k.len(), k.to_string());
            for m in migrations {
                if let Some(k) = original(m) {
                    if as_num(&k) <= as_num(&current) {
                        applied.insert(k.clone(), k);
                    }
                }
            }
        }
        Tool::Goose => {
            let mut last: BTreeMap<String, (String, bool)> = BTreeMap::new();
            for r in rows {
                if number(&r.version).is_empty() {
                    continue; // goose's own version 0 row
                }
                last.insert(number(&r.version), (r.version.clone(), r.ok));
            }
            for (k, (v, ok)) in last {
                if ok {
                    applied.insert(k, v);
                }
            }
        }
        _ => {
            for r in rows {
                if !r.ok {
                    return Err(format!(
                        "{tool}'s history records version {} as failed: fix it with {tool} first",
                        r.version
                    ));
                }
                applied.insert(key(&r.version), r.version.clone());
            }
        }
    }
    if applied.is_empty() {
        return Ok(None);
    }
    let mut prefix_end: Option<usize> = None;
    for (i, m) in migrations.iter().enumerate() {
        match original(m) {
            Some(k) if applied.contains_key(&k) => prefix_end = Some(i),
            _ => break,
        }
    }
    let n = prefix_end.map_or(0, |i| i + 1);
    for (k, v) in &applied {
        match migrations.iter().position(|m| original(m).as_deref() == Some(k)) {
            None => {
                return Err(format!("the database records {tool} version {v}, which no migration in the directory was imported from"))
            }
            Some(i) if i >= n => {
                let gap = &migrations[n];
                let gap_what = match &gap.from {
                    Some((t, gv)) if *t == tool => format!("{} ({tool} version {gv})", gap.file_name),
                    _ => gap.file_name.clone(),
                };
                return Err(format!(
                    "{tool} applied version {v} ({}) but not {gap_what}, which comes before it in {tool}'s order; capstan records applied migrations as a prefix: apply the missing one first, then baseline",
                    migrations[i].file_name
                ));
            }
            Some(_) => {}
        }
    }
    Ok(prefix_end.map(|i| migrations[i].version))
}

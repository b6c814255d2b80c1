//! Reading, restoring and purging archive entries: the planner decides
//! whether a restore can be faithful and which steps it takes; the driver
//! writes and runs them ([`ArchiveStore::restore_archive`]).

use std::collections::BTreeMap;

use crate::driver::{
    ArchiveEntry, ColumnInfo, Driver, FailureKind, Identity, RestoreRequest, RestoreStep, Scope,
    TableInfo, RESTORE_GUARD,
};
use crate::split::Dialect;

use super::{get, list, ArchiveError, RestoreReport};

/// The first rows of an entry's copy (column names, then rows), for `show`,
/// with values stored as text cast back to their type. Refuses when the copy
/// was damaged outside capstan or a type it needs no longer exists.
pub async fn preview(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
    limit: usize,
) -> Result<(Vec<String>, Vec<Vec<Option<String>>>), ArchiveError> {
    let names = entry.copied_columns();
    if names.is_empty() || !entry.has_copy() {
        return Ok((names, Vec::new()));
    }
    check_copy(driver, entry).await?;
    let cast: Vec<&ColumnInfo> = entry
        .columns
        .iter()
        .filter(|c| c.stored_as.is_some())
        .collect();
    check_types(driver, entry, &cast).await?;
    let rows = driver.archive_preview(entry, &cast, limit).await?;
    Ok((names, rows))
}

/// The columns of an entry's copy as the catalog has them now (name, type),
/// refusing when the copy, or one of the columns it should hold, is gone:
/// something outside capstan dropped it (a `DROP TYPE … CASCADE` drops the
/// columns of that type, in copies made before such values were stored as
/// text).
async fn check_copy(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
) -> Result<Vec<(String, String)>, ArchiveError> {
    let refuse = |reason: String| ArchiveError::Refused {
        id: entry.id,
        object: entry.object(),
        reason,
    };
    let Some(have) = driver.copy_columns(entry).await? else {
        return Err(refuse(format!(
            "its copy {} no longer exists: something outside capstan dropped it",
            entry.copy_name()
        )));
    };
    if let Some(lost) = entry
        .copied_columns()
        .into_iter()
        .find(|c| !have.iter().any(|(n, _)| n == c))
    {
        return Err(refuse(format!(
            "its copy {} no longer has column {lost}: something outside capstan dropped it (`DROP TYPE … CASCADE` drops the columns of that type, also in copies made before capstan stored such values as text)",
            entry.copy_name()
        )));
    }
    Ok(have)
}

/// Refuses when the type of one of `columns` no longer exists (Postgres:
/// the copy holds their values as text, and they cannot be cast back).
async fn check_types(
    driver: &mut dyn Driver,
    entry: &ArchiveEntry,
    columns: &[&ColumnInfo],
) -> Result<(), ArchiveError> {
    if columns.is_empty() {
        return Ok(());
    }
    let types: Vec<String> = columns.iter().map(|c| c.ty.clone()).collect();
    let Some(ty) = driver.missing_type(&types).await? else {
        return Ok(());
    };
    let cols: Vec<&str> = columns
        .iter()
        .filter(|c| c.ty == ty)
        .map(|c| c.name.as_str())
        .collect();
    Err(ArchiveError::Refused {
        id: entry.id,
        object: entry.object(),
        reason: format!(
            "type {ty} (of {}) no longer exists, so the archived values cannot be cast back to it; create the type again (e.g. `capstan migrate down` of the migration that dropped it), then retry. The values are kept as text in {}",
            cols.join(", "),
            entry.copy_name()
        ),
    })
}

fn same_type(dialect: Dialect, a: &str, b: &str) -> bool {
    match dialect {
        Dialect::Postgres => a == b,
        Dialect::Sqlite => a.eq_ignore_ascii_case(b),
    }
}

/// The restore of `entry` into the table as it is now (`current`), as steps
/// for one transaction, or why it would not be faithful. Pure.
pub(crate) fn plan_restore(
    dialect: Dialect,
    entry: &ArchiveEntry,
    current: Option<&TableInfo>,
) -> Result<(Vec<RestoreStep>, RestoreReport), String> {
    // An entry of no rows has no copy: the table or columns come back, empty.
    let data = entry.has_copy();
    let mut report = RestoreReport {
        id: entry.id,
        object: entry.object(),
        table_created: false,
        columns_added: Vec::new(),
        rows_restored: 0,
        rows_not_restored: 0,
    };
    let mut steps = Vec::new();
    let check_key = |t: &TableInfo| -> Result<(), String> {
        if t.primary_key != entry.primary_key {
            return Err(format!(
                "the primary key of {} is ({}) now but was ({}) when archived, so archived rows cannot be matched to today's",
                entry.table_name,
                t.primary_key.join(", "),
                entry.primary_key.join(", ")
            ));
        }
        Ok(())
    };
    let check_type = |t: &TableInfo, c: &ColumnInfo| -> Result<bool, String> {
        match t.column(&c.name) {
            None => Ok(false),
            Some(now) if same_type(dialect, &now.ty, &c.ty) => Ok(true),
            Some(now) => Err(format!(
                "{}.{} is {} now but held {} values when archived; change its type back first (e.g. `capstan migrate down` of the migration that changed it), then restore",
                entry.table_name, c.name, now.ty, c.ty
            )),
        }
    };
    // Rows go back without the columns the table computes now.
    let writable = |t: Option<&TableInfo>| -> Vec<String> {
        entry
            .columns
            .iter()
            .filter(|c| t.is_none_or(|t| !t.generated.iter().any(|g| g == &c.name)))
            .map(|c| c.name.clone())
            .collect()
    };
    match (entry.scope, current) {
        (Scope::Columns, None) => {
            return Err(format!(
                "table {} does not exist; re-create it first (e.g. `capstan migrate down`), then restore",
                entry.table_name
            ))
        }
        (Scope::Columns, Some(t)) => {
            check_key(t)?;
            for c in &entry.columns {
                if !check_type(t, c)? {
                    steps.push(RestoreStep::AddColumn(c.clone()));
                    report.columns_added.push(c.name.clone());
                }
            }
            if data {
                steps.push(RestoreStep::UpdateByKey {
                    columns: entry.columns.iter().map(|c| c.name.clone()).collect(),
                    key: entry.primary_key.clone(),
                });
            }
        }
        (Scope::Rows, None) => {
            steps.push(RestoreStep::CreateTable {
                columns: entry.columns.clone(),
                key: entry.primary_key.clone(),
            });
            report.table_created = true;
            if data {
                steps.push(RestoreStep::Insert {
                    columns: writable(None),
                    unless_key: None,
                });
            }
        }
        (Scope::Rows, Some(t)) => {
            check_key(t)?;
            let mut missing = Vec::new();
            for c in &entry.columns {
                if !check_type(t, c)? {
                    missing.push(c);
                }
            }
            if entry.whole_for_columns() {
                // A table without a primary key, archived whole for a column
                // change: put every row back as it was, if no row came or went.
                // A column added since holds values the copy does not have.
                if let Some(extra) = t.columns.iter().find(|now| {
                    !t.generated.contains(&now.name)
                        && !entry.columns.iter().any(|c| c.name == now.name)
                }) {
                    return Err(format!(
                        "{} had no primary key, so it can only be restored whole, and {}.{} came since: its values would be lost. The copy is in {}",
                        entry.table_name, entry.table_name, extra.name, entry.copy_name()
                    ));
                }
                for c in &missing {
                    steps.push(RestoreStep::AddColumn((*c).clone()));
                    report.columns_added.push(c.name.clone());
                }
                steps.push(RestoreStep::DeleteAll);
                if data {
                    steps.push(RestoreStep::Insert {
                        columns: writable(Some(t)),
                        unless_key: None,
                    });
                }
            } else {
                if let Some(c) = missing.first() {
                    return Err(format!(
                        "{}.{} no longer exists; add it back first, then restore",
                        entry.table_name, c.name
                    ));
                }
                if entry.primary_key.is_empty() {
                    if let Some(at) = &entry.restored_at {
                        return Err(format!(
                            "it was restored already ({at}), and {} has no primary key to tell its rows from the archived ones, so restoring again would insert every row a second time",
                            entry.table_name
                        ));
                    }
                }
                if data {
                    steps.push(RestoreStep::Insert {
                        columns: writable(Some(t)),
                        unless_key: (!entry.primary_key.is_empty())
                            .then(|| entry.primary_key.clone()),
                    });
                }
            }
        }
    }
    Ok((steps, report))
}

/// Puts entry `id` back, in one transaction, and marks it restored. Refuses,
/// changing nothing, when today's schema makes a faithful restore impossible.
pub async fn restore(
    driver: &mut dyn Driver,
    id: i64,
    identity: &Identity,
) -> Result<RestoreReport, ArchiveError> {
    let dialect = driver.dialect();
    let entry = get(driver, id).await?.ok_or(ArchiveError::NotFound(id))?;
    let refuse = |reason: String| ArchiveError::Refused {
        id,
        object: entry.object(),
        reason,
    };
    let current = driver
        .table_info(Some(&entry.table_schema), &entry.table_name)
        .await?;
    let whole_for_columns = current.is_some() && entry.whole_for_columns();
    // Values the copy holds as text go back cast to their type, which must
    // exist (so must the type of a column or table re-created).
    let have = if entry.has_copy() {
        check_copy(driver, &entry).await?
    } else {
        Vec::new()
    };
    let all: Vec<&ColumnInfo> = entry.columns.iter().collect();
    check_types(driver, &entry, &all).await?;
    let mut cast: BTreeMap<String, String> = entry
        .columns
        .iter()
        .filter(|c| c.stored_as.is_some())
        .map(|c| (c.name.clone(), c.ty.clone()))
        .collect();
    if let (Dialect::Postgres, Some(t), Scope::Columns) = (dialect, &current, entry.scope) {
        for k in &entry.primary_key {
            let stored = have.iter().find(|(n, _)| n == k).map(|(_, ty)| ty.as_str());
            if let (Some("text"), Some(now)) = (stored, t.column(k)) {
                if now.ty != "text" {
                    cast.insert(k.clone(), now.ty.clone());
                }
            }
        }
    }
    let (steps, mut report) = plan_restore(dialect, &entry, current.as_ref()).map_err(refuse)?;
    // A whole restore replaces the table's rows: inside the transaction, the
    // driver holds off writers and checks that no row came or went since
    // the archive.
    let request = RestoreRequest {
        entry: &entry,
        steps: &steps,
        cast: &cast,
        guard_rows: whole_for_columns.then_some(entry.row_count),
        restored_by: &identity.applied_by,
    };
    let written = match driver.restore_archive(&request).await {
        Ok(n) => n,
        Err(e) if e.message.contains(RESTORE_GUARD) => {
            let now = driver
                .count_rows(&entry.table_schema, &entry.table_name)
                .await?;
            return Err(refuse(format!(
                "{} had no primary key, so it was archived whole ({} rows) and can only be restored whole; it has {now} rows now, so rows came or went since and would be lost. The copy is in {}",
                entry.table_name, entry.row_count, entry.copy_name()
            )));
        }
        // The database refused the restore (a constraint, a cast): nothing
        // was changed, as for any other refusal.
        Err(e) if e.kind == FailureKind::Sql => {
            return Err(refuse(format!("the database refused it: {}", e.message)))
        }
        Err(e) => return Err(e.into()),
    };
    report.rows_restored = match entry.has_copy() {
        true => written,
        false => 0,
    };
    report.rows_not_restored = entry.row_count.saturating_sub(report.rows_restored);
    Ok(report)
}

/// Drops the entries archived at least `older_than` ago, in one transaction;
/// returns them.
pub async fn purge(
    driver: &mut dyn Driver,
    older_than: std::time::Duration,
) -> Result<Vec<ArchiveEntry>, ArchiveError> {
    let old: Vec<ArchiveEntry> = list(driver)
        .await?
        .into_iter()
        .filter(|e| e.age_secs >= older_than.as_secs_f64())
        .collect();
    if old.is_empty() {
        return Ok(old);
    }
    driver.purge_archives(&old).await?;
    Ok(old)
}

//! Planning the archive copies of a migration: which tables and columns
//! its destroying statements take (followed through foreign keys), what
//! each copy holds, and where it goes among the statements. The drivers
//! write the SQL ([`ArchiveStore::archive_copy_sql`]).

use crate::driver::{
    CopyRequest, CopySpec, DbError, Direction, Driver, Identity, Kind, NewEntry, OnDelete, Scope,
    TableInfo, UnfinishedQuery,
};
use crate::source::Section;
use crate::split::Statement;

use super::{Destruction, PlannedArchive};

/// The data a statement destroys in *other* tables through foreign keys:
/// `TRUNCATE … CASCADE` empties every referencing table; an unbounded
/// `DELETE` deletes the referencing rows of `ON DELETE CASCADE` keys and
/// rewrites the key columns of `ON DELETE SET NULL / SET DEFAULT` ones.
/// Followed transitively; each becomes a destruction of its own. (SQLite
/// enforces foreign keys only with `PRAGMA foreign_keys`, which capstan's
/// connection leaves off, so its catalog reports none and nothing cascades.)
async fn dependents(
    driver: &mut dyn Driver,
    d: &Destruction,
    info: &TableInfo,
) -> Result<Vec<Destruction>, DbError> {
    let truncate = d.kind == Kind::Truncate && d.cascade;
    if !(truncate || d.kind == Kind::Delete) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut seen = vec![(info.schema.clone(), info.name.clone())];
    let mut queue = vec![(info.schema.clone(), info.name.clone())];
    while let Some((schema, table)) = queue.pop() {
        for fk in driver.referencing(&schema, &table).await? {
            let (kind, columns) = match (truncate, fk.on_delete) {
                (true, _) | (false, OnDelete::Cascade) => (d.kind, Vec::new()),
                (false, OnDelete::SetNullOrDefault) => (Kind::Update, fk.columns),
                (false, OnDelete::Keep) => continue,
            };
            let child = (fk.schema, fk.table);
            if seen.contains(&child) {
                continue;
            }
            seen.push(child.clone());
            if kind != Kind::Update {
                queue.push(child.clone());
            }
            out.push(Destruction {
                statement: d.statement,
                kind,
                schema: Some(child.0),
                table: child.1,
                columns,
                cascade: false,
            });
        }
    }
    Ok(out)
}

/// `found`, each followed by what it destroys through foreign keys, with
/// its table as the live catalog has it now (`None`: no such table yet).
pub(crate) async fn resolve(
    driver: &mut dyn Driver,
    found: &[Destruction],
) -> Result<Vec<(Destruction, Option<TableInfo>)>, DbError> {
    let mut work = Vec::new();
    for d in found {
        let info = driver.table_info(d.schema.as_deref(), &d.table).await?;
        let children = match &info {
            Some(info) => dependents(driver, d, info).await?,
            None => Vec::new(),
        };
        work.push((d.clone(), info));
        for child in children {
            let info = driver
                .table_info(child.schema.as_deref(), &child.table)
                .await?;
            work.push((child, info));
        }
    }
    Ok(work)
}

/// `work` (from [`resolve`], in statement order) with each table as it is
/// right before its statement: the catalog as it was before the section,
/// less what earlier destructions of the same section took away (a dropped
/// column, and the primary key with it; a dropped table: `None`).
pub(crate) fn model(
    work: Vec<(Destruction, Option<TableInfo>)>,
) -> Vec<(Destruction, Option<TableInfo>)> {
    let mut now: Vec<((String, String), Option<TableInfo>)> = Vec::new();
    work.into_iter()
        .map(|(d, info)| {
            let Some(info) = info else {
                return (d, None);
            };
            let key = (info.schema.clone(), info.name.clone());
            let current = match now.iter().find(|(k, _)| *k == key) {
                Some((_, t)) => t.clone(),
                None => Some(info),
            };
            let after = match (&current, d.kind) {
                (Some(_), Kind::DropTable) => None,
                (Some(t), Kind::DropColumn) => {
                    let mut t = t.clone();
                    let gone: Vec<String> = d
                        .columns
                        .iter()
                        .filter_map(|c| t.column(c).map(|c| c.name.clone()))
                        .collect();
                    if t.primary_key.iter().any(|k| gone.contains(k)) {
                        t.primary_key.clear();
                    }
                    t.columns.retain(|c| !gone.contains(&c.name));
                    t.generated.retain(|g| !gone.contains(g));
                    Some(t)
                }
                (t, _) => t.clone(),
            };
            match now.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = after,
                None => now.push((key, after)),
            }
            (d, current)
        })
        .collect()
}

/// Decides what to copy; `None` when nothing the statement names exists.
pub(crate) fn copy_of(d: &Destruction, info: &TableInfo) -> Option<CopySpec> {
    let destroyed: Vec<_> = d
        .columns
        .iter()
        .filter_map(|c| info.column(c).cloned())
        .collect();
    let by_key = d.kind.destroys_columns()
        && !info.primary_key.is_empty()
        && !destroyed.iter().any(|c| info.primary_key.contains(&c.name));
    if d.kind.destroys_columns() && destroyed.is_empty() {
        return None;
    }
    if by_key {
        let mut select = info.primary_key.clone();
        select.extend(destroyed.iter().map(|c| c.name.clone()));
        Some(CopySpec {
            scope: Scope::Columns,
            columns: destroyed,
            select,
        })
    } else {
        Some(whole(info))
    }
}

/// A copy of every column of every row of `info`.
fn whole(info: &TableInfo) -> CopySpec {
    CopySpec {
        scope: Scope::Rows,
        columns: info.columns.clone(),
        select: info.columns.iter().map(|c| c.name.clone()).collect(),
    }
}

/// One archive copy spliced into a migration, before the statement it protects.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// Index of the destroying statement in the section.
    pub statement: usize,
    /// `users.name`.
    pub object: String,
    /// The entry id.
    pub id: i64,
    /// The SQL, run in order right before the statement.
    pub sql: Vec<String>,
}

/// Everything [`prepare`] needs to know about the migration.
pub(crate) struct PrepareContext<'a> {
    pub version: u64,
    pub name: &'a str,
    pub direction: Direction,
    pub section: &'a Section,
    pub statements: &'a [Statement],
    pub identity: &'a Identity,
    pub max_bytes: Option<u64>,
    pub skip: &'a [String],
    /// The migration runs in one transaction (so a table lock holds until it ends).
    pub transactional: bool,
}

/// Reads the catalog and plans the archive copies for `found`. Returns the
/// copies (their SQL written by the driver) and, for objects the operator
/// excluded with `--no-archive`, the notes to record in history.
///
/// Where copies decide at run time (Postgres), each follows the catalog as
/// its statement finds it (earlier statements of the same migration may
/// have dropped the key, renamed or dropped columns). Elsewhere (SQLite)
/// the copy follows the catalog before the migration, less what earlier
/// destroying statements of the same section removed ([`model`]).
pub(crate) async fn prepare(
    driver: &mut dyn Driver,
    cx: &PrepareContext<'_>,
    found: &[Destruction],
) -> Result<(Vec<Prepared>, Vec<String>), DbError> {
    let at_run_time = driver.copies_at_run_time();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut last_id = None;
    for (d, info) in &model(resolve(driver, found).await?) {
        let Some(stmt) = cx.statements.get(d.statement) else {
            continue;
        };
        let line = cx.section.first_line + stmt.line_offset;
        if let Some(name) = cx.skip.iter().find(|n| d.named_by(n)) {
            notes.push(format!(
                "not archived (--no-archive {name}): {} of {} at line {line}",
                d.kind,
                d.object()
            ));
            continue;
        }
        let copy = info.as_ref().and_then(|i| {
            let copy = copy_of(d, i);
            // Decided ahead of the run: after an earlier `ALTER` of the same
            // section (a rename, a rebuilt table renamed into place), the key
            // or the column may not be called what the catalog said before
            // the run: copy the table whole, as it is when the statement runs.
            let altered_before = !at_run_time
                && cx.statements[..d.statement.min(cx.statements.len())]
                    .iter()
                    .any(|s| s.keyword == "ALTER");
            if altered_before
                && d.kind.destroys_columns()
                && copy.as_ref().is_none_or(|c| c.scope == Scope::Columns)
            {
                return Some((i, whole(i)));
            }
            Some((i, copy?))
        });
        if !at_run_time && copy.is_none() {
            continue;
        }
        // A no-transaction migration that stopped between this copy and the
        // statement it protects (a crash, then `repair`) made an entry that
        // no completed run followed: the run again is the same run, so it
        // keeps one entry, not two.
        let mut supersede = Vec::new();
        if let (false, Some((info, copy))) = (cx.transactional, &copy) {
            let query = UnfinishedQuery {
                version: cx.version,
                direction: cx.direction,
                line,
                kind: d.kind,
                schema: &info.schema,
                table: &info.name,
            };
            // The same columns (by name: Postgres records the types it
            // found at run time, and how it stored them).
            let names = |c: &[crate::driver::ColumnInfo]| {
                c.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
            };
            let old = driver
                .unfinished_copies(&query)
                .await?
                .into_iter()
                .find(|u| names(&u.columns) == names(&copy.columns));
            if let Some(old) = old {
                if matches!(d.kind, Kind::Truncate | Kind::Delete | Kind::Update) {
                    // The rows may already be gone: the first copy is the one
                    // that holds them.
                    notes.push(format!(
                        "archive entry {} (made by an earlier, unfinished run of this migration) kept as the copy of {} of {} at line {line}",
                        old.id,
                        d.kind,
                        d.object()
                    ));
                    continue;
                }
                // The object still exists (the catalog named it), so the
                // statement did not run: a fresh copy replaces the old one.
                supersede = driver.supersede_sql(old.id, &old.stored_table);
            }
        }
        let id = driver.next_archive_id(last_id).await?;
        last_id = Some(id);
        let text = cx.section.sql[stmt.range.clone()].trim();
        let text: String = text.chars().take(2000).collect();
        let request = CopyRequest {
            entry: NewEntry {
                id,
                version: cx.version,
                migration: cx.name,
                direction: cx.direction,
                line,
                statement: &text,
                kind: d.kind,
                max_bytes: cx.max_bytes,
                identity: cx.identity,
            },
            schema: d.schema.as_deref(),
            table: &d.table,
            destroyed: &d.columns,
            info: info.as_ref(),
            copy: copy.as_ref().map(|(_, c)| c),
            transactional: cx.transactional,
        };
        let copy_sql = driver.archive_copy_sql(&request);
        if copy_sql.is_empty() {
            continue;
        }
        let mut sql = supersede;
        sql.extend(copy_sql);
        out.push(Prepared {
            statement: d.statement,
            object: d.object(),
            id,
            sql,
        });
    }
    Ok((out, notes))
}

/// After a migration is done: drops the copy of entry `id` when it holds
/// no rows (its entry alone records the destruction). Postgres drops such a
/// copy in the block that made it.
pub(crate) async fn finish(driver: &mut dyn Driver, id: i64) -> Result<(), DbError> {
    driver.drop_empty_copy(id).await
}

/// A migration section with its archive copies spliced in before the
/// statements they protect. `origin[i]` is the copy that augmented statement
/// `i` belongs to, `None` for the migration's own statements.
pub(crate) struct Spliced {
    pub section: Section,
    pub statements: Vec<Statement>,
    pub origin: Vec<Option<usize>>,
}

/// Splices `prepared` into `section`: the copy's SQL is appended to the text
/// (so ranges stay valid) and its statements are listed before the one they
/// protect, carrying that statement's line.
pub(crate) fn splice(
    section: &Section,
    statements: &[Statement],
    prepared: &[Prepared],
) -> Spliced {
    let mut sql = section.sql.clone();
    let mut out = Vec::new();
    let mut origin = Vec::new();
    for (i, stmt) in statements.iter().enumerate() {
        for (p_index, p) in prepared
            .iter()
            .enumerate()
            .filter(|(_, p)| p.statement == i)
        {
            for text in &p.sql {
                sql.push('\n');
                let start = sql.len();
                sql.push_str(text);
                out.push(Statement {
                    range: start..sql.len(),
                    line_offset: stmt.line_offset,
                    column: stmt.column,
                    keyword: text.split_whitespace().next().unwrap_or("").to_uppercase(),
                });
                origin.push(Some(p_index));
            }
        }
        out.push(stmt.clone());
        origin.push(None);
    }
    Spliced {
        section: Section {
            sql,
            first_line: section.first_line,
        },
        statements: out,
        origin,
    }
}

/// Sizes what `d` would archive from its table `info` as it is now.
pub(crate) async fn estimate(
    driver: &mut dyn Driver,
    d: &Destruction,
    info: Option<&TableInfo>,
    line: usize,
    max_bytes: Option<u64>,
    skip: &[String],
) -> Result<PlannedArchive, DbError> {
    let mut planned = PlannedArchive {
        line,
        kind: d.kind,
        object: d.object(),
        scope: None,
        rows: None,
        bytes: None,
        skipped: skip.iter().any(|n| d.named_by(n)),
        over_limit: false,
    };
    let Some((info, copy)) = info.and_then(|i| Some((i, copy_of(d, i)?))) else {
        return Ok(planned);
    };
    let (rows, bytes) = driver.estimate_copy(info, &copy).await?;
    planned.scope = Some(copy.scope.to_string());
    planned.rows = rows;
    planned.bytes = bytes;
    planned.over_limit =
        !planned.skipped && matches!((planned.bytes, max_bytes), (Some(b), Some(m)) if b > m);
    Ok(planned)
}

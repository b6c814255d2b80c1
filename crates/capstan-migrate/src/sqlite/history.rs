//! capstan's history tables on SQLite (`capstan_migrations`,
//! `capstan_log`), and other tools' history.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{db_err, SqliteDriver, NOW};
use crate::driver::sql::lit;
use crate::driver::{
    check_unique, history_row, newer_layout, section_cells, AppliedRow, Cell, DbError, Driver,
    FailureKind, HistoryStore, Record, SectionUpdate, DEFAULT_SERVICE, HISTORY_COLUMNS, LAYOUT,
    SECTION_COLUMNS,
};

const SCHEMA_SQL: &str = "
CREATE TABLE IF NOT EXISTS capstan_migrations (
    version        INTEGER PRIMARY KEY,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    phase          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
    no_transaction INTEGER NOT NULL DEFAULT 0,
    applied_at     TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    up_checksum    TEXT,
    down_checksum  TEXT
);
CREATE TABLE IF NOT EXISTS capstan_fleet (
    instance_id    TEXT PRIMARY KEY,
    app            TEXT NOT NULL,
    version        TEXT NOT NULL,
    set_hash       TEXT NOT NULL,
    versions       TEXT NOT NULL,
    started_at     TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    departed_at    TEXT
);
CREATE TABLE IF NOT EXISTS capstan_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    version        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    action         TEXT NOT NULL,
    at             TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    detail         TEXT
);
CREATE TABLE IF NOT EXISTS capstan_archives (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    version        INTEGER NOT NULL,
    migration      TEXT NOT NULL,
    direction      TEXT NOT NULL,
    line           INTEGER,
    statement      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    scope          TEXT NOT NULL,
    table_schema   TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    columns        TEXT NOT NULL,
    primary_key    TEXT NOT NULL,
    archive_table  TEXT NOT NULL,
    row_count      INTEGER NOT NULL,
    size_bytes     INTEGER NOT NULL,
    max_bytes      INTEGER,
    archived_at    TEXT NOT NULL,
    archived_by    TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    restored_at    TEXT,
    restored_by    TEXT,
    CONSTRAINT archive_within_max_size CHECK (max_bytes IS NULL OR size_bytes <= max_bytes)
);
";

/// Layout 2 to 3, after the section hash columns (layout 1 to 2): history
/// rebuilt keyed by service and version (SQLite cannot change a primary
/// key in place), every existing row going to the default service; the
/// other tables get their `service`, the fleet its `address`; the registry
/// of services. Runs inside `BEGIN IMMEDIATE`, so it is all or nothing.
const UPGRADE_SQL: &str = "
CREATE TABLE capstan_migrations_layout3 (
    version        INTEGER NOT NULL,
    name           TEXT NOT NULL,
    checksum       TEXT NOT NULL,
    phase          TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('applied', 'dirty')),
    no_transaction INTEGER NOT NULL DEFAULT 0,
    applied_at     TEXT NOT NULL,
    applied_by     TEXT NOT NULL,
    binary_version TEXT NOT NULL,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    up_checksum    TEXT,
    down_checksum  TEXT,
    service        TEXT NOT NULL DEFAULT 'default',
    PRIMARY KEY (service, version)
);
INSERT INTO capstan_migrations_layout3 (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum)
    SELECT version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, error, up_checksum, down_checksum
    FROM capstan_migrations;
DROP TABLE capstan_migrations;
ALTER TABLE capstan_migrations_layout3 RENAME TO capstan_migrations;
ALTER TABLE capstan_log ADD COLUMN service TEXT NOT NULL DEFAULT 'default';
ALTER TABLE capstan_fleet ADD COLUMN service TEXT NOT NULL DEFAULT 'default';
ALTER TABLE capstan_fleet ADD COLUMN address TEXT;
ALTER TABLE capstan_archives ADD COLUMN service TEXT NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS capstan_services (
    name           TEXT PRIMARY KEY,
    owns           TEXT NOT NULL,
    depends_on     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    updated_by     TEXT NOT NULL
);
INSERT OR REPLACE INTO capstan_meta (key, value) VALUES ('schema_version', '3');
";

impl SqliteDriver {
    /// True when every table of capstan's schema exists.
    pub(super) fn has_schema(&self) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT count(*) = 6 FROM sqlite_master WHERE type = 'table' AND name IN ('capstan_migrations', 'capstan_log', 'capstan_fleet', 'capstan_archives', 'capstan_services', 'capstan_meta')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(|e| db_err(&e))
    }

    /// True when the history table has the section hash columns (a table
    /// an older capstan made lacks them until `ensure_schema`).
    pub(super) fn has_section_columns(&self) -> Result<bool, DbError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('capstan_migrations') WHERE name IN ('up_checksum', 'down_checksum')",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 2)
            .map_err(|e| db_err(&e))
    }

    /// The layout of capstan's tables: `None` when there is no meta table
    /// (no tables yet, or tables of layout 1 or 2). Remembered once it is
    /// the current one (a layout never goes back).
    pub(super) fn layout(&mut self) -> Result<Option<i64>, DbError> {
        if self.layout_current {
            return Ok(Some(LAYOUT));
        }
        if !self.has_table("capstan_meta")? {
            return Ok(None);
        }
        let value: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM capstan_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| db_err(&e))?;
        let Some(value) = value else {
            return Ok(None);
        };
        let n = value.parse::<i64>().map_err(|_| {
            DbError::new(
                FailureKind::BadHistory,
                format!(
                    "{}: capstan_meta holds schema_version {value:?}, which capstan never writes. Nothing was run",
                    self.describe()
                ),
            )
        })?;
        if n > LAYOUT {
            return Err(newer_layout(&self.describe(), n));
        }
        self.layout_current = n == LAYOUT;
        Ok(Some(n))
    }

    /// The condition that picks this service's rows of capstan's tables
    /// (`?` is not used: it goes into statements with other parameters).
    /// Tables of an older layout (read before `up` upgrades them) have no
    /// `service` column: every row there is the default service's.
    pub(super) fn mine(&mut self) -> Result<String, DbError> {
        match self.layout()? {
            Some(_) => Ok(format!("service = {}", lit(&self.service))),
            None if self.service == DEFAULT_SERVICE => Ok("1".into()),
            None => Ok("0".into()),
        }
    }

    /// Makes capstan's tables, or upgrades them to [`LAYOUT`], in one
    /// `BEGIN IMMEDIATE` transaction: a second runner waits, then finds the
    /// work done.
    fn make_or_upgrade(&mut self) -> Result<(), DbError> {
        self.conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| db_err(&e))?;
        let done = (|| {
            self.conn
                .execute_batch(SCHEMA_SQL)
                .map_err(|e| db_err(&e))?;
            self.conn
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS capstan_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                )
                .map_err(|e| db_err(&e))?;
            if self.layout()? == Some(LAYOUT) {
                return Ok(());
            }
            if !self.has_section_columns()? {
                // Layout 1: rows keep their whole-file checksums, and get
                // section hashes at the next `up` or `down`.
                self.conn
                    .execute_batch(
                        "ALTER TABLE capstan_migrations ADD COLUMN up_checksum TEXT; \
                         ALTER TABLE capstan_migrations ADD COLUMN down_checksum TEXT;",
                    )
                    .map_err(|e| db_err(&e))?;
            }
            self.conn.execute_batch(UPGRADE_SQL).map_err(|e| db_err(&e))
        })();
        let done = done.and_then(|()| self.conn.execute_batch("COMMIT").map_err(|e| db_err(&e)));
        match done {
            Ok(()) => {
                self.layout_current = true;
                Ok(())
            }
            Err(e) => {
                self.layout_current = false;
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

#[async_trait]
impl HistoryStore for SqliteDriver {
    async fn ensure_schema(&mut self) -> Result<(), DbError> {
        if self.has_schema()? && self.layout()? == Some(LAYOUT) {
            if self.has_section_columns()? {
                return Ok(());
            }
            // Dropped by hand from a current table: its rows keep their
            // whole-file checksums, and get section hashes at the next
            // `up` or `down`.
            return self
                .conn
                .execute_batch(
                    "BEGIN IMMEDIATE; \
                     ALTER TABLE capstan_migrations ADD COLUMN up_checksum TEXT; \
                     ALTER TABLE capstan_migrations ADD COLUMN down_checksum TEXT; \
                     COMMIT",
                )
                .map_err(|e| {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    db_err(&e)
                });
        }
        self.make_or_upgrade().map_err(|mut err| {
            if err.kind == FailureKind::PermissionDenied {
                err.message = format!(
                    "cannot write {}: {} (check the file's and its directory's permissions)",
                    self.describe(),
                    err.message
                );
            }
            err
        })
    }

    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError> {
        if !self.has_table("capstan_migrations")? {
            return Ok(Vec::new());
        }
        let sections = if self.has_section_columns()? {
            SECTION_COLUMNS.join(", ")
        } else {
            "NULL, NULL".to_string()
        };
        let mine = self.mine()?;
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT version, name, checksum, phase, state, applied_at, applied_by, binary_version, duration_ms, no_transaction, error, {sections} \
                 FROM capstan_migrations WHERE {mine} ORDER BY version",
            ))
            .map_err(|e| db_err(&e))?;
        // Every value is checked by hand: SQLite stores any type in any
        // column, and a hand-edited row must be named, not a panic.
        let mut rows = stmt.query([]).map_err(|e| db_err(&e))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(|e| db_err(&e))? {
            let mut cells = Vec::with_capacity(HISTORY_COLUMNS.len() + 2);
            for i in 0..HISTORY_COLUMNS.len() + 2 {
                use rusqlite::types::ValueRef;
                cells.push(match r.get_ref(i).map_err(|e| db_err(&e))? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(n) => Cell::Int(n),
                    ValueRef::Real(_) => Cell::Other("real number"),
                    ValueRef::Text(t) => match std::str::from_utf8(t) {
                        Ok(t) => Cell::Text(t.to_string()),
                        Err(_) => Cell::Other("text that is not UTF-8"),
                    },
                    ValueRef::Blob(_) => Cell::Other("blob"),
                });
            }
            let extra: [Cell; 2] = cells
                .split_off(HISTORY_COLUMNS.len())
                .try_into()
                .map_err(|_| db_err(&rusqlite::Error::InvalidQuery))?;
            let n = out.len() + 1;
            let mut row = history_row("capstan_migrations", n, cells)?;
            section_cells("capstan_migrations", n, &mut row, extra)?;
            out.push(row);
        }
        check_unique("capstan_migrations", &out)?;
        Ok(out)
    }

    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError> {
        let service = self.service.clone();
        let tx = self.conn.transaction().map_err(|e| db_err(&e))?;
        match change {
            Record::MarkApplied {
                migrations,
                identity,
                action,
            } => {
                for m in migrations {
                    tx.execute(
                        &format!(
                            "INSERT INTO capstan_migrations (version, name, checksum, phase, state, no_transaction, applied_at, applied_by, binary_version, duration_ms, up_checksum, down_checksum, service) \
                             VALUES (?1, ?2, ?3, ?4, 'applied', ?5, {NOW}, ?6, ?7, 0, ?8, ?9, ?10) \
                             ON CONFLICT (service, version) DO UPDATE SET state = 'applied', error = NULL, checksum = excluded.checksum, \
                             up_checksum = excluded.up_checksum, down_checksum = excluded.down_checksum"
                        ),
                        params![
                            m.version as i64,
                            m.name,
                            m.checksum,
                            m.phase.as_str(),
                            m.no_transaction,
                            identity.applied_by,
                            identity.binary_version,
                            m.up_checksum,
                            m.down_checksum,
                            service
                        ],
                    )
                    .map_err(|e| db_err(&e))?;
                    tx.execute(
                        &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, service) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6)"),
                        params![m.version as i64, m.name, action, identity.applied_by, identity.binary_version, service],
                    )
                    .map_err(|e| db_err(&e))?;
                }
            }
            Record::Sections { updates, identity } => {
                for SectionUpdate {
                    migration: m,
                    whole,
                    action,
                    detail,
                } in updates
                {
                    tx.execute(
                        "UPDATE capstan_migrations SET up_checksum = ?2, down_checksum = ?3, \
                         checksum = CASE WHEN ?4 THEN ?5 ELSE checksum END WHERE version = ?1 AND service = ?6",
                        params![
                            m.version as i64,
                            m.up_checksum,
                            m.down_checksum,
                            whole,
                            m.checksum,
                            service
                        ],
                    )
                    .map_err(|e| db_err(&e))?;
                    if let Some(action) = action {
                        tx.execute(
                            &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, detail, service) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6, ?7)"),
                            params![m.version as i64, m.name, action, identity.applied_by, identity.binary_version, detail, service],
                        )
                        .map_err(|e| db_err(&e))?;
                    }
                }
            }
            Record::Forget {
                version,
                name,
                identity,
                action,
            } => {
                tx.execute(
                    "DELETE FROM capstan_migrations WHERE version = ?1 AND service = ?2",
                    params![version as i64, service],
                )
                .map_err(|e| db_err(&e))?;
                tx.execute(
                    &format!("INSERT INTO capstan_log (version, name, action, at, applied_by, binary_version, service) VALUES (?1, ?2, ?3, {NOW}, ?4, ?5, ?6)"),
                    params![version as i64, name, action, identity.applied_by, identity.binary_version, service],
                )
                .map_err(|e| db_err(&e))?;
            }
        }
        tx.commit().map_err(|e| db_err(&e))
    }

    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError> {
        let name = table.rsplit('.').next().unwrap_or(table);
        let exists: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get(0),
            )
            .map_err(|e| db_err(&e))?;
        if exists == 0 {
            return Ok(None);
        }
        let sql = tool.history_query(&crate::import::quote_table(name));
        let mut stmt = self.conn.prepare(&sql).map_err(|e| db_err(&e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(crate::import::ToolHistoryRow {
                    version: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    ok: r.get::<_, i64>(1)? == 1,
                })
            })
            .map_err(|e| db_err(&e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| db_err(&e))
    }
}

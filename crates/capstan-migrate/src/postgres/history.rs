//! capstan's history tables on Postgres (`capstan.migrations`,
//! `capstan.log`), the schema that holds them, and other tools' history.

use async_trait::async_trait;
use tokio_postgres::SimpleQueryMessage;

use super::{db_err, PgDriver, HISTORY_TABLE, LOCK_KEY};
use crate::driver::sql::{lit, opt_lit};
use crate::driver::{
    bad_history, check_unique, history_row, section_cells, AppliedRow, Cell, DbError, HistoryStore,
    Record, SectionUpdate, HISTORY_COLUMNS, SECTION_COLUMNS,
};

/// Makes `capstan_archive` private: every privilege on the schema that a
/// role other than its owner holds (PUBLIC's, an `ALTER DEFAULT PRIVILEGES
/// … ON SCHEMAS` grant, a hand-made one) is revoked, so no archive copy is
/// reachable by anyone else, including copies made before they were private.
const ARCHIVE_PRIVATE_SQL: &str = "
DO $capstan$ DECLARE g oid; BEGIN
    FOR g IN SELECT DISTINCT a.grantee FROM pg_catalog.pg_namespace n, pg_catalog.aclexplode(n.nspacl) a
             WHERE n.nspname = 'capstan_archive' AND a.grantee <> n.nspowner LOOP
        IF g = 0 THEN REVOKE ALL ON SCHEMA capstan_archive FROM PUBLIC;
        ELSE EXECUTE format('REVOKE ALL ON SCHEMA capstan_archive FROM %I', pg_catalog.pg_get_userbyid(g));
        END IF;
    END LOOP;
END $capstan$";

/// Serialises schema creation between runners and registering instances
/// (a transaction-level lock, separate from the runner lock).
const SCHEMA_LOCK_KEY: i64 = LOCK_KEY + 1;

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS capstan;
CREATE TABLE IF NOT EXISTS capstan.migrations (
    version        bigint PRIMARY KEY,
    name           text NOT NULL,
    checksum       text NOT NULL,
    phase          text NOT NULL,
    state          text NOT NULL CHECK (state IN ('applied', 'dirty')),
    no_transaction boolean NOT NULL DEFAULT false,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    applied_by     text NOT NULL,
    binary_version text NOT NULL,
    duration_ms    bigint NOT NULL DEFAULT 0,
    error          text,
    up_checksum    text,
    down_checksum  text
);
CREATE TABLE IF NOT EXISTS capstan.fleet (
    instance_id    text PRIMARY KEY,
    app            text NOT NULL,
    version        text NOT NULL,
    set_hash       text NOT NULL,
    versions       bigint[] NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT now(),
    last_seen      timestamptz NOT NULL DEFAULT now(),
    departed_at    timestamptz
);
CREATE TABLE IF NOT EXISTS capstan.log (
    id             bigserial PRIMARY KEY,
    version        bigint NOT NULL,
    name           text NOT NULL,
    action         text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    applied_by     text NOT NULL,
    binary_version text NOT NULL,
    duration_ms    bigint NOT NULL DEFAULT 0,
    detail         text
);
CREATE SCHEMA IF NOT EXISTS capstan_archive;
CREATE SEQUENCE IF NOT EXISTS capstan.archive_ids;
CREATE TABLE IF NOT EXISTS capstan.archive (
    id             bigint PRIMARY KEY,
    version        bigint NOT NULL,
    migration      text NOT NULL,
    direction      text NOT NULL,
    line           bigint,
    statement      text NOT NULL,
    kind           text NOT NULL,
    scope          text NOT NULL,
    table_schema   text NOT NULL,
    table_name     text NOT NULL,
    columns        text NOT NULL,
    primary_key    text NOT NULL,
    archive_table  text NOT NULL,
    row_count      bigint NOT NULL,
    size_bytes     bigint NOT NULL,
    max_bytes      bigint,
    archived_at    timestamptz NOT NULL DEFAULT now(),
    archived_by    text NOT NULL,
    binary_version text NOT NULL,
    restored_at    timestamptz,
    restored_by    text,
    CONSTRAINT archive_within_max_size CHECK (max_bytes IS NULL OR size_bytes <= max_bytes)
);
";

/// Layout 2 to 3 (and 1 to 3: the section hash columns first): every
/// table gets its `service`, every existing row going to the default service;
/// history is keyed by service and version; the fleet records addresses;
/// the registry of services and the meta table that records the layout.
/// Runs inside the schema lock's transaction, so it is all or nothing.
const UPGRADE_SQL: &str = "
ALTER TABLE capstan.migrations ADD COLUMN IF NOT EXISTS up_checksum text,
    ADD COLUMN IF NOT EXISTS down_checksum text,
    ADD COLUMN IF NOT EXISTS service text NOT NULL DEFAULT 'default';
DO $capstan$ DECLARE c text; BEGIN
    SELECT conname INTO c FROM pg_catalog.pg_constraint
     WHERE conrelid = 'capstan.migrations'::regclass AND contype = 'p';
    IF c IS NOT NULL THEN EXECUTE pg_catalog.format('ALTER TABLE capstan.migrations DROP CONSTRAINT %I', c); END IF;
    ALTER TABLE capstan.migrations ADD CONSTRAINT migrations_pkey PRIMARY KEY (service, version);
END $capstan$;
ALTER TABLE capstan.log ADD COLUMN IF NOT EXISTS service text NOT NULL DEFAULT 'default';
ALTER TABLE capstan.fleet ADD COLUMN IF NOT EXISTS service text NOT NULL DEFAULT 'default',
    ADD COLUMN IF NOT EXISTS address text;
ALTER TABLE capstan.archive ADD COLUMN IF NOT EXISTS service text NOT NULL DEFAULT 'default';
CREATE TABLE IF NOT EXISTS capstan.services (
    name           text PRIMARY KEY,
    owns           text NOT NULL,
    depends_on     text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    updated_by     text NOT NULL
);
INSERT INTO capstan.meta (key, value) VALUES ('schema_version', '3')
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
";

/// How long making or upgrading capstan's tables waits for a table lock
/// (a runner of an older capstan may be writing to them).
const UPGRADE_LOCK_TIMEOUT_MS: u64 = 60_000;

/// The table that records the layout.
const META_SQL: &str =
    "CREATE TABLE IF NOT EXISTS capstan.meta (key text PRIMARY KEY, value text NOT NULL)";

impl PgDriver {
    /// Adds the section hash columns when they are missing from a history
    /// table that otherwise has the current layout (dropped by hand: its
    /// rows keep their whole-file checksums, and get section hashes at the
    /// next `up` or `down`). Call under the runner lock.
    async fn add_section_columns(&mut self) -> Result<(), DbError> {
        let have = self
            .client
            .query_one(
                "SELECT count(*) FROM pg_attribute WHERE attrelid = 'capstan.migrations'::regclass \
                 AND attname IN ('up_checksum', 'down_checksum') AND NOT attisdropped",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if have.get::<_, i64>(0) == 2 {
            return Ok(());
        }
        self.client
            .batch_execute(
                "ALTER TABLE capstan.migrations ADD COLUMN IF NOT EXISTS up_checksum text, \
                 ADD COLUMN IF NOT EXISTS down_checksum text",
            )
            .await
            .map_err(|e| db_err(&e))
    }

    /// The layout of capstan's tables: `None` when there is no meta table
    /// (no tables yet, or tables of layout 1 or 2). Remembered once it is
    /// the current one (a layout never goes back).
    pub(super) async fn layout(&mut self) -> Result<Option<i64>, DbError> {
        if self.layout_current {
            return Ok(Some(crate::driver::LAYOUT));
        }
        // Two statements: a query naming a missing table fails to plan.
        let exists = self
            .client
            .query_one("SELECT to_regclass('capstan.meta') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let row = self
            .client
            .query_opt(
                "SELECT value FROM capstan.meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        let found = match row.and_then(|r| r.get::<_, Option<String>>(0)) {
            None => None,
            Some(v) => Some(v.parse::<i64>().map_err(|_| {
                crate::driver::DbError::new(
                    crate::driver::FailureKind::BadHistory,
                    format!(
                        "{}: capstan.meta holds schema_version {v:?}, which capstan never writes. Nothing was run",
                        self.shown
                    ),
                )
            })?),
        };
        match found {
            Some(n) if n > crate::driver::LAYOUT => {
                Err(crate::driver::newer_layout(&self.shown, n))
            }
            Some(n) => {
                self.layout_current = n == crate::driver::LAYOUT;
                Ok(Some(n))
            }
            None => Ok(None),
        }
    }

    /// The condition that picks this service's rows of capstan's tables.
    /// Tables of an older layout (read before `up` upgrades them) have no
    /// `service` column: every row there is the default service's.
    pub(super) async fn mine(&mut self) -> Result<String, DbError> {
        match self.layout().await? {
            Some(_) => Ok(format!("service = {}", lit(&self.service))),
            None if self.service == crate::driver::DEFAULT_SERVICE => Ok("true".into()),
            None => Ok("false".into()),
        }
    }
}

#[async_trait]
impl HistoryStore for PgDriver {
    async fn ensure_schema(&mut self) -> Result<(), DbError> {
        let exists = self
            .client
            .query_one(
                "SELECT to_regclass('capstan.migrations') IS NOT NULL AND to_regclass('capstan.log') IS NOT NULL AND to_regclass('capstan.fleet') IS NOT NULL AND to_regclass('capstan.archive') IS NOT NULL AND to_regnamespace('capstan_archive') IS NOT NULL AND to_regclass('capstan.services') IS NOT NULL",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        if exists.get::<_, bool>(0) {
            self.check_trust().await?;
            if self.layout().await? == Some(crate::driver::LAYOUT) {
                self.add_section_columns().await?;
                if !self.archive_private {
                    self.client
                        .batch_execute(ARCHIVE_PRIVATE_SQL)
                        .await
                        .map_err(|e| db_err(&e))?;
                    self.archive_private = true;
                }
                return Ok(());
            }
        }
        // Made or upgraded in one transaction under the schema lock, which
        // every runner of every service takes here: the second of two
        // runners finds the work done. The schema may have been made by
        // another role in the meantime: `IF NOT EXISTS` would adopt it, so
        // it is checked before anything is altered.
        let sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '{UPGRADE_LOCK_TIMEOUT_MS}ms'; SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}); {SCHEMA_SQL}; {ARCHIVE_PRIVATE_SQL}"
        );
        if let Err(e) = self.client.batch_execute(&sql).await {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(db_err(&e));
        }
        let found = match self.untrusted().await {
            Ok(found) => found,
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        };
        if !found.is_empty() {
            let err = self.untrusted_error(&found).await;
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(err);
        }
        let upgraded = async {
            self.client
                .batch_execute(META_SQL)
                .await
                .map_err(|e| db_err(&e))?;
            if self.layout().await? != Some(crate::driver::LAYOUT) {
                self.client
                    .batch_execute(UPGRADE_SQL)
                    .await
                    .map_err(|e| db_err(&e))?;
            }
            self.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| db_err(&e))
        }
        .await;
        if let Err(e) = upgraded {
            self.layout_current = false;
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        self.layout_current = true;
        self.trusted = true;
        self.archive_private = true;
        Ok(())
    }

    async fn history(&mut self) -> Result<Vec<AppliedRow>, DbError> {
        let exists = self
            .client
            .query_one("SELECT to_regclass('capstan.migrations') IS NOT NULL", &[])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        self.check_trust().await?;
        // The columns' types first: a retyped column is named, not a panic.
        let types = self
            .client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
                 WHERE a.attrelid = 'capstan.migrations'::regclass AND a.attnum > 0 AND NOT a.attisdropped",
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        for (column, want) in HISTORY_COLUMNS {
            match types.iter().find(|r| r.get::<_, String>(0) == column) {
                None => {
                    return Err(bad_history(
                        HISTORY_TABLE,
                        format!("it has no column {column}"),
                    ))
                }
                Some(r) if r.get::<_, String>(1) != want => {
                    return Err(bad_history(
                        HISTORY_TABLE,
                        format!(
                            "column {column} has type {}, capstan made it {want}",
                            r.get::<_, String>(1)
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        // A table an older capstan made has no section hash columns yet.
        let sections = if SECTION_COLUMNS
            .iter()
            .all(|c| types.iter().any(|r| r.get::<_, String>(0) == *c))
        {
            "up_checksum::text, down_checksum::text"
        } else {
            "NULL::text, NULL::text"
        };
        let mine = self.mine().await?;
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT version, name, checksum, phase, state, \
                        to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), \
                        applied_by, binary_version, duration_ms, no_transaction, error, {sections} \
                 FROM capstan.migrations WHERE {mine} ORDER BY version"
                ),
                &[],
            )
            .await
            .map_err(|e| db_err(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for (n, r) in rows.iter().enumerate() {
            let cells = HISTORY_COLUMNS
                .iter()
                .enumerate()
                .map(|(i, (_, ty))| {
                    let cell = match *ty {
                        "bigint" => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Cell::Int)),
                        "boolean" => r.try_get::<_, Option<bool>>(i).map(|v| v.map(Cell::Bool)),
                        _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Cell::Text)),
                    };
                    cell.map_or(Cell::Other("value of another type"), |c| {
                        c.unwrap_or(Cell::Null)
                    })
                })
                .collect();
            let extra = [HISTORY_COLUMNS.len(), HISTORY_COLUMNS.len() + 1].map(|i| {
                r.try_get::<_, Option<String>>(i)
                    .map_or(Cell::Other("value of another type"), |v| {
                        v.map_or(Cell::Null, Cell::Text)
                    })
            });
            let mut row = history_row(HISTORY_TABLE, n + 1, cells)?;
            section_cells(HISTORY_TABLE, n + 1, &mut row, extra)?;
            out.push(row);
        }
        check_unique(HISTORY_TABLE, &out)?;
        Ok(out)
    }

    async fn record(&mut self, change: Record<'_>) -> Result<(), DbError> {
        self.check_trust().await?;
        let svc = lit(&self.service);
        let mut sql = String::from("BEGIN;\n");
        match change {
            Record::MarkApplied {
                migrations,
                identity,
                action,
            } => {
                for m in migrations {
                    sql.push_str(&format!(
                        "INSERT INTO capstan.migrations (service, version, name, checksum, phase, state, no_transaction, applied_by, binary_version, duration_ms, up_checksum, down_checksum) \
                         VALUES ({svc}, {v}, {n}, {c}, {p}, 'applied', {nt}, {by}, {bin}, 0, {up}, {down}) \
                         ON CONFLICT (service, version) DO UPDATE SET state = 'applied', error = NULL, checksum = EXCLUDED.checksum, \
                         up_checksum = EXCLUDED.up_checksum, down_checksum = EXCLUDED.down_checksum;\n\
                         INSERT INTO capstan.log (service, version, name, action, applied_by, binary_version) VALUES ({svc}, {v}, {n}, {a}, {by}, {bin});\n",
                        v = m.version,
                        n = lit(&m.name),
                        c = lit(&m.checksum),
                        up = lit(&m.up_checksum),
                        down = opt_lit(m.down_checksum.as_deref()),
                        p = lit(m.phase.as_str()),
                        nt = m.no_transaction,
                        by = lit(&identity.applied_by),
                        bin = lit(&identity.binary_version),
                        a = lit(action),
                    ));
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
                    sql.push_str(&format!(
                        "UPDATE capstan.migrations SET up_checksum = {}, down_checksum = {}{} WHERE service = {svc} AND version = {};\n",
                        lit(&m.up_checksum),
                        opt_lit(m.down_checksum.as_deref()),
                        if whole {
                            format!(", checksum = {}", lit(&m.checksum))
                        } else {
                            String::new()
                        },
                        m.version
                    ));
                    if let Some(action) = action {
                        sql.push_str(&format!(
                            "INSERT INTO capstan.log (service, version, name, action, applied_by, binary_version, detail) VALUES ({svc}, {}, {}, {}, {}, {}, {});\n",
                            m.version,
                            lit(&m.name),
                            lit(&action),
                            lit(&identity.applied_by),
                            lit(&identity.binary_version),
                            opt_lit(detail.as_deref()),
                        ));
                    }
                }
            }
            Record::Forget {
                version,
                name,
                identity,
                action,
            } => sql.push_str(&format!(
                "DELETE FROM capstan.migrations WHERE service = {svc} AND version = {version};\n\
                 INSERT INTO capstan.log (service, version, name, action, applied_by, binary_version) VALUES ({svc}, {version}, {}, {}, {}, {});\n",
                lit(name),
                lit(action),
                lit(&identity.applied_by),
                lit(&identity.binary_version),
            )),
        }
        sql.push_str("COMMIT;");
        let result = self.client.batch_execute(&sql).await;
        if result.is_err() {
            let _ = self.client.batch_execute("ROLLBACK").await;
        }
        result.map_err(|e| db_err(&e))
    }

    async fn tool_history(
        &mut self,
        tool: crate::import::Tool,
        table: &str,
    ) -> Result<Option<Vec<crate::import::ToolHistoryRow>>, DbError> {
        let quoted = crate::import::quote_table(table);
        let exists = self
            .client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
            .await
            .map_err(|e| db_err(&e))?;
        if !exists.get::<_, bool>(0) {
            return Ok(None);
        }
        let messages = self
            .client
            .simple_query(&tool.history_query(&quoted))
            .await
            .map_err(|e| db_err(&e))?;
        Ok(Some(
            messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => Some(crate::import::ToolHistoryRow {
                        version: r.get(0).unwrap_or_default().to_string(),
                        ok: r.get(1) == Some("1"),
                    }),
                    _ => None,
                })
                .collect(),
        ))
    }
}

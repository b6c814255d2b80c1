//! What `up` and `down` read from the live database before they lint the
//! migrations they will run: the size of each table right now and the session
//! time zone. A lock held on a table of a thousand rows lasts milliseconds.

/// Rows the sizes are counted up to when the catalog has no estimate (a
/// Postgres table never analyzed, every SQLite table), unless `[lint]
/// small_table_rows` asks for more. Matches the linter's default threshold.
pub const DEFAULT_COUNT_UP_TO: u64 = 10_000;

/// One table's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSize {
    /// `schema.name` (`public.` left out on Postgres).
    pub name: String,
    /// Rows: the planner's estimate (`pg_class.reltuples`), or an exact count
    /// stopped at the count limit plus one.
    pub rows: u64,
    /// Bytes of the table, its indexes and TOAST (0 on SQLite: not measured).
    pub bytes: u64,
}

/// What the database says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveDb {
    /// Ordinary tables and materialized views (not partitioned parents, whose
    /// size is their partitions').
    pub tables: Vec<TableSize>,
    /// The `TimeZone` of the session that runs the migrations (Postgres).
    pub time_zone: Option<String>,
}

/// The count limit for a `[lint]` table of `capstan.toml`: its
/// `small_table_rows`, else [`DEFAULT_COUNT_UP_TO`].
#[cfg(feature = "cli")]
pub fn count_up_to(lint: Option<&toml::Table>) -> u64 {
    lint.and_then(|t| t.get("small_table_rows"))
        .and_then(toml::Value::as_integer)
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(DEFAULT_COUNT_UP_TO)
}

/// `"a""b"` for `a"b`: an identifier quoted for both Postgres and SQLite.
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

//! Helpers for tests that need a real Postgres: a database per test from
//! `capstan-testkit` (on the server `CAPSTAN_TEST_PG` names), a client of it,
//! and applying a migration the way capstan runs it.

#![allow(dead_code)]

pub use capstan_testkit::TestDb;

/// A client of a test database.
pub trait Connect {
    /// Connects to it (panics when it cannot: the test needs it).
    fn connect(&self) -> postgres::Client;
}

impl Connect for TestDb {
    fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

/// The up section of a capstan migration (the whole text for plain SQL).
pub fn up_section(migration: &str) -> &str {
    let start = migration
        .find("-- capstan:up\n")
        .map_or(0, |i| i + "-- capstan:up\n".len());
    let rest = &migration[start..];
    match rest.find("-- capstan:down") {
        Some(i) => &rest[..i],
        None => rest,
    }
}

/// Applies a migration's up section the way capstan runs it: in one transaction, or
/// statement by statement for `-- capstan:no-transaction`.
pub fn apply(client: &mut postgres::Client, migration: &str) -> Result<(), String> {
    let up = up_section(migration);
    if migration.contains("-- capstan:no-transaction") {
        for stmt in pg_query::split_with_parser(up).map_err(|e| e.to_string())? {
            client
                .batch_execute(stmt)
                .map_err(|e| format!("{stmt}: {}", db_error(&e)))?;
        }
        Ok(())
    } else {
        client
            .batch_execute(&format!("BEGIN;\n{up}\n;\nCOMMIT;"))
            .map_err(|e| db_error(&e))
    }
}

/// The server's message for an error (the client's Display says only "db error").
pub fn db_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => e.to_string(),
    }
}

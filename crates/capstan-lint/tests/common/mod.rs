//! Helpers for tests that need a real Postgres: `CAPSTAN_TEST_PG` names a superuser URL;
//! each test creates its own uniquely named database and drops it.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

/// The server URL, or a failing test that says how to provide it.
pub fn pg_url() -> String {
    std::env::var("CAPSTAN_TEST_PG").unwrap_or_else(|_| {
        panic!(
            "CAPSTAN_TEST_PG is not set: this test needs a Postgres superuser URL, \
             e.g. CAPSTAN_TEST_PG=postgres://postgres@127.0.0.1:54329/postgres (the project's test script sets it)"
        )
    })
}

/// `url` with its database name replaced.
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// A database that exists for the life of the value.
pub struct TempDb {
    admin: String,
    pub name: String,
    pub url: String,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl TempDb {
    pub fn new(label: &str) -> TempDb {
        let admin = pg_url();
        let name = format!(
            "capstan_lint_{}_{}_{}",
            label.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut c =
            postgres::Client::connect(&admin, postgres::NoTls).expect("connect to CAPSTAN_TEST_PG");
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create test database");
        let url = with_db(&admin, &name);
        TempDb { admin, name, url }
    }

    pub fn connect(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
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

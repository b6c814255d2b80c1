//! Test support shared by the end-to-end tests of every crate: the Postgres
//! server the test script starts (`CAPSTAN_TEST_PG`, a superuser URL) and
//! databases created on it for one test, the one way to run a test on every
//! backend ([`backends!`], [`Backend`]), and helpers to read what a process
//! printed and to wait for a condition.

mod backend;
pub mod chirpy;
pub mod cluster;
mod output;
pub mod prometheus;

use std::process::Command;

pub use backend::{block_on, Backend, BACKENDS};
pub use output::{assert_code, sqlite_query, stderr, stdout, wait_until};

/// The superuser URL of the test server. Panics with advice when it is unset:
/// these tests need a real Postgres (`scripts/test.sh` starts one).
pub fn pg_admin_url() -> String {
    std::env::var("CAPSTAN_TEST_PG").unwrap_or_else(|_| {
        panic!("CAPSTAN_TEST_PG is not set: run the tests with scripts/test.sh, which starts a throwaway Postgres")
    })
}

/// The test server's URL for database `db`.
pub fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let (base, _) = admin.rsplit_once('/').expect("URL has a database");
    format!("{base}/{db}")
}

/// Runs `sql` with psql (unaligned, tuples only, stop on error) and returns
/// the output trimmed; panics with psql's stderr when it fails.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            url,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql failed: {sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A database on the test server, created fresh and dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl TestDb {
    /// Creates `<prefix>_<pid>_<unique>` (dropping a leftover of the same name).
    pub fn new(prefix: &str) -> TestDb {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0);
        let unique = (nanos << 8) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}_{}_{unique:x}", std::process::id());
        let admin = pg_admin_url();
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
        psql(&admin, &format!("CREATE DATABASE {name}"));
        TestDb {
            url: pg_url_for(&name),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                pg_admin_url().as_str(),
                "-X",
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

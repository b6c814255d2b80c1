//! The `capstan` binary's end-to-end fixture: a [`Project`] (a migrations
//! directory and a fresh database on one backend) that runs the real binary.
//! The backend mechanism (`Backend`, `capstan_testkit::backends!`), the
//! Postgres test server and the output helpers come from `capstan-testkit`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch project: a temp dir with `migrations/` and a database.
pub struct Project {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub url: String,
    pg_db: Option<capstan_testkit::TestDb>,
}

#[allow(unused_imports)]
pub use capstan_testkit::{
    assert_code, pg_admin_url, psql, sqlite_query, stderr, stdout, wait_until, Backend, BACKENDS,
};

impl Project {
    /// A fresh project on `backend` (a new database on the test server, or a new file).
    pub fn new(backend: Backend) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("migrations")).expect("mkdir migrations");
        match backend {
            Backend::Postgres => {
                let db = capstan_testkit::TestDb::new("t");
                Project {
                    url: db.url.clone(),
                    dir,
                    backend,
                    pg_db: Some(db),
                }
            }
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("app.db").display());
                Project {
                    dir,
                    backend,
                    url,
                    pg_db: None,
                }
            }
        }
    }

    pub fn migrations(&self) -> PathBuf {
        self.dir.path().join("migrations")
    }

    /// Writes a migration file (no sum update; call `hash`).
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.migrations().join(name), text).expect("write migration");
    }

    /// Writes a migration file and rewrites the sum.
    pub fn add(&self, name: &str, text: &str) {
        self.write(name, text);
        self.hash();
    }

    pub fn hash(&self) {
        let out = self.capstan(&["migrate", "hash"]);
        assert!(out.status.success(), "hash failed: {}", stderr(&out));
    }

    /// A `capstan` command with `--database` and `--dir` set, run in the project dir.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(args)
            .arg("--database")
            .arg(&self.url)
            .arg("--dir")
            .arg(self.migrations())
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env("USER", "tester");
        c
    }

    pub fn capstan(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run capstan")
    }

    /// Runs a query on the project's database; rows as `a|b` lines.
    pub fn query(&self, sql: &str) -> String {
        match self.backend {
            Backend::Postgres => psql(&self.url, sql),
            Backend::Sqlite => sqlite_query(&self.dir.path().join("app.db"), sql),
        }
    }

    /// The history table's name for the backend.
    pub fn history_table(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "capstan.migrations",
            Backend::Sqlite => "capstan_migrations",
        }
    }

    /// `status --json` parsed.
    pub fn status(&self) -> serde_json::Value {
        let out = self.capstan(&["migrate", "status", "--json"]);
        assert!(out.status.success(), "status failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// `(version, state)` of every migration, from `status --json`.
    pub fn states(&self) -> Vec<(u64, String)> {
        self.status()["migrations"]
            .as_array()
            .expect("migrations array")
            .iter()
            .map(|m| {
                (
                    m["version"].as_u64().expect("version"),
                    m["state"].as_str().expect("state").to_string(),
                )
            })
            .collect()
    }
}

impl Project {
    /// The SQLite file of a SQLite project.
    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    /// The Postgres database name of a Postgres project.
    pub fn pg_db(&self) -> Option<&str> {
        self.pg_db.as_ref().map(|db| db.name.as_str())
    }

    /// The log table's name for the backend.
    pub fn log_table(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "capstan.log",
            Backend::Sqlite => "capstan_log",
        }
    }

    /// Runs a query whose single result is an integer.
    pub fn count(&self, sql: &str) -> i64 {
        let out = self.query(sql);
        out.parse()
            .unwrap_or_else(|_| panic!("`{sql}` returned `{out}`, not an integer"))
    }

    /// True when the user table `name` exists (public schema on Postgres).
    pub fn has_table(&self, name: &str) -> bool {
        match self.backend {
            Backend::Postgres => {
                self.query(&format!("SELECT to_regclass('public.{name}') IS NOT NULL")) == "t"
            }
            Backend::Sqlite => {
                self.sqlite_path().exists()
                    && self.count(&format!(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{name}'"
                )) == 1
            }
        }
    }

    /// True when `table` has a column `column`.
    pub fn has_column(&self, table: &str, column: &str) -> bool {
        let sql = match self.backend {
            Backend::Postgres => format!(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{table}' AND column_name = '{column}'"
            ),
            Backend::Sqlite => {
                format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '{column}'")
            }
        };
        self.count(&sql) == 1
    }

    /// Versions recorded in the history table (empty before capstan created it).
    pub fn recorded_versions(&self) -> Vec<u64> {
        let exists = match self.backend {
            Backend::Postgres => self.query("SELECT to_regclass('capstan.migrations') IS NOT NULL") == "t",
            Backend::Sqlite => {
                self.sqlite_path().exists()
                    && self.count(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'capstan_migrations'",
                    ) == 1
            }
        };
        if !exists {
            return Vec::new();
        }
        self.query(&format!(
            "SELECT version FROM {} ORDER BY version",
            self.history_table()
        ))
        .lines()
        .map(|l| l.parse().expect("version"))
        .collect()
    }

    /// A `capstan` child process with stdout and stderr piped.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        self.command(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn capstan")
    }
}

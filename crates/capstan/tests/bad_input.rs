//! Bad input that used to be accepted without a word: an empty database URL,
//! timeouts the database would round to "off" or refuse at run time, entries
//! of the migration directory that are no migration files, directives in
//! upper case, a byte-order mark, a CRLF or unreadable sum file, and `--dir`
//! naming a file. Each is refused at once (exit 3) with a message that names
//! it, or read the way the user meant, on real Postgres and SQLite.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, Backend, Project};

const CREATE_USERS: &str = "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE users;\n";

/// Nothing recorded and no user table.
fn untouched(p: &Project) -> bool {
    p.recorded_versions().is_empty() && !p.has_table("users")
}

#[test]
fn an_empty_database_url_is_refused_not_the_default_sqlite_file() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(["migrate", "up", "--dir"])
            .arg(p.migrations())
            .current_dir(p.dir.path())
            .env_remove("DATABASE_URL");
        if let Some(v) = env {
            c.env("DATABASE_URL", v);
        }
        if let Some(v) = flag {
            c.args(["--database", v]);
        }
        c.output().expect("run capstan")
    };
    for (env, flag, names) in [
        (Some(""), None, "DATABASE_URL"),
        (None, Some(""), "--database"),
        (Some(""), Some(""), "--database"),
        (None, Some("  "), "--database"),
    ] {
        let out = run(env, flag);
        assert_code(&out, 3);
        let err = stderr(&out);
        assert!(err.contains("is empty") && err.contains(names), "{err}");
    }
    std::fs::write(p.dir.path().join("capstan.toml"), "database_url = \"\"\n").unwrap();
    let out = run(None, None);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("capstan.toml (database_url) is empty"));
    assert!(
        !p.dir.path().join("capstan.db").exists(),
        "the default SQLite file was created"
    );
}

fn timeouts_are_checked_when_parsed(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_users.sql", CREATE_USERS);
    for (flag, value, says) in [
        ("--lock-timeout", "500us", "whole number of milliseconds"),
        ("--lock-timeout", "999999999s", "longest timeout"),
        (
            "--statement-timeout",
            "250us",
            "whole number of milliseconds",
        ),
    ] {
        let out = p.capstan(&["migrate", "up", flag, value]);
        assert_code(&out, 3);
        let err = stderr(&out);
        assert!(
            err.contains(flag) && err.contains(value) && err.contains(says),
            "{err}"
        );
        assert!(err.contains("0 turns the timeout off"), "{err}");
    }
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "[migrate]\nlock_timeout = \"999999999s\"\n",
    )
    .unwrap();
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("[migrate] lock_timeout"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(p.dir.path().join("capstan.toml")).unwrap();
    p.write(
        "0001_create_users.sql",
        &format!("-- capstan:lock-timeout 500us\n{CREATE_USERS}"),
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("0001_create_users.sql:1:"),
        "{}",
        stderr(&out)
    );
    assert!(untouched(&p), "{b:?}");
    // 0 keeps its documented meaning: no lock timeout.
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up", "--lock-timeout", "0"]), 0);
}
backends!(timeouts_are_checked_when_parsed);

#[cfg(unix)]
fn entries_named_like_migrations_that_are_no_files_are_named(b: Backend) {
    use std::os::unix::fs::symlink;
    type Setup = fn(&std::path::Path);
    let cases: [(Setup, &str); 5] = [
        (
            |d| std::fs::write(d.join("0002_add_email.SQL"), "-- capstan:up\nSELECT 1;\n").unwrap(),
            "0002_add_email.SQL: the extension is `.SQL`",
        ),
        (
            |d| symlink(d.join("elsewhere.sql"), d.join("0002_add_email.sql")).unwrap(),
            "0002_add_email.sql: a symbolic link to",
        ),
        (
            |d| symlink(d.join("0002_add_email.sql"), d.join("0002_add_email.sql")).unwrap(),
            "0002_add_email.sql: a symbolic link loop",
        ),
        (
            |d| {
                let ok = std::process::Command::new("mkfifo")
                    .arg(d.join("0002_add_email.sql"))
                    .status()
                    .expect("run mkfifo")
                    .success();
                assert!(ok, "mkfifo failed");
            },
            "0002_add_email.sql: a FIFO (named pipe), not a file",
        ),
        (
            |d| std::fs::create_dir(d.join("0002_add_email.sql")).unwrap(),
            "0002_add_email.sql: a directory, not a file",
        ),
    ];
    for (setup, says) in cases {
        let p = Project::new(b);
        p.add("0001_create_users.sql", CREATE_USERS);
        let sum = std::fs::read(p.migrations().join("capstan.sum")).unwrap();
        setup(&p.migrations());
        for cmd in ["up", "hash", "status"] {
            let out = p.capstan(&["migrate", cmd]);
            assert_code(&out, 3);
            assert!(stderr(&out).contains(says), "{b:?} {cmd}: {}", stderr(&out));
        }
        assert_eq!(
            std::fs::read(p.migrations().join("capstan.sum")).unwrap(),
            sum,
            "hash rewrote the sum without the entry"
        );
        assert!(untouched(&p), "{b:?} {says}");
    }
}
backends!(entries_named_like_migrations_that_are_no_files_are_named);

fn directives_in_upper_case_take_effect(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    let index = match b {
        Backend::Postgres => "CREATE INDEX CONCURRENTLY users_name ON users (name);",
        Backend::Sqlite => "CREATE INDEX users_name ON users (name);",
    };
    p.add(
        "0002_index_name.sql",
        &format!("-- CAPSTAN:NO-TRANSACTION\n-- Capstan:Up\n{index}\n-- CAPSTAN:down\nDROP INDEX users_name;\n"),
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    let no_tx = p.query(&format!(
        "SELECT no_transaction FROM {} WHERE version = 2",
        p.history_table()
    ));
    assert!(
        no_tx == "t" || no_tx == "1",
        "{b:?}: recorded as transactional ({no_tx})"
    );
    // The linter reads it the same way: a no-transaction migration,
    // not a concurrent index build inside a transaction.
    if b == Backend::Postgres {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["lint"])
            .arg(p.migrations().join("0002_index_name.sql"))
            .output()
            .expect("run capstan lint");
        let said = format!("{}{}", common::stdout(&out), stderr(&out));
        assert!(!said.contains("concurrently-in-transaction"), "{said}");
        assert!(said.contains("non-idempotent-no-transaction"), "{said}");
    }
    assert_code(&p.capstan(&["migrate", "down", "--to", "1"]), 0);
    // A misspelled directive in upper case is refused like a lower-case one.
    p.write(
        "0002_index_name.sql",
        &format!("-- CAPSTAN:NO-TRANSATION\n-- capstan:up\n{index}\n"),
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("0002_index_name.sql:1: unknown directive"));
}
backends!(directives_in_upper_case_take_effect);

fn a_byte_order_mark_is_not_sql_before_up(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_users.sql", &format!("\u{feff}{CREATE_USERS}"));
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(p.has_table("users"), "{b:?}");
}
backends!(a_byte_order_mark_is_not_sql_before_up);

fn a_crlf_sum_is_accepted_and_an_unreadable_one_is_named(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_users.sql", CREATE_USERS);
    let sum = p.migrations().join("capstan.sum");
    let text = std::fs::read_to_string(&sum).unwrap();
    std::fs::write(&sum, text.replace('\n', "\r\n")).unwrap();
    assert_code(&p.capstan(&["migrate", "status"]), 0);
    std::fs::remove_file(&sum).unwrap();
    std::fs::create_dir(&sum).unwrap();
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("cannot read") && err.contains("capstan.sum"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");
    assert!(untouched(&p));
    std::fs::remove_dir(&sum).unwrap();
    std::fs::write(&sum, text.replace('\n', "\r\n")).unwrap();
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert!(p.has_table("users"), "{b:?}");
}
backends!(a_crlf_sum_is_accepted_and_an_unreadable_one_is_named);

#[test]
fn dir_naming_a_file_says_so() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    let file = p.migrations().join("0001_create_users.sql");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["migrate", "up", "--database", &p.url, "--dir"])
        .arg(&file)
        .output()
        .expect("run capstan");
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(err.contains("is not a directory"), "{err}");
    assert!(!err.contains("does not exist"), "{err}");
}

#[test]
fn rehearse_shows_the_servers_reason_when_it_cannot_log_in() {
    let admin = capstan_testkit::pg_admin_url();
    let url = admin.replacen("postgres@", "no_such_role_capstan:s3cret-pw@", 1);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "rehearse",
            "--release",
            "1=true",
            "--release",
            "2=true",
            "--database",
            &url,
        ])
        .current_dir(dir.path())
        .output()
        .expect("run capstan rehearse");
    assert_code(&out, 4);
    let all = format!("{}{}", common::stdout(&out), stderr(&out));
    assert!(
        all.contains("role \"no_such_role_capstan\" does not exist"),
        "{all}"
    );
    assert!(!all.contains("s3cret-pw"), "{all}");
}

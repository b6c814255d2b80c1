//! The embedded set runs through the mounted `migrate` subcommand and through
//! the library API, on SQLite and on Postgres, with no capstan binary.

use std::process::Command;

use capstan_testkit::{backends, Backend};

fn notes(args: &[&str], url: &str, cwd: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_embedded-migrations"))
        .args(args)
        .env("DATABASE_URL", url)
        .current_dir(cwd)
        .output()
        .expect("run notes")
}

fn check(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = notes(&["migrate", "status", "--json"], url, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["migrations"].as_array().unwrap().len(), 2);
    assert_eq!(v["migrations"][0]["state"], "pending");

    let out = notes(&["migrate", "up", "--to", "1"], url, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = notes(&["run"], url, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("applied 1 migration at start-up"));

    let out = notes(&["migrate", "status", "--json"], url, dir.path());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for m in v["migrations"].as_array().unwrap() {
        assert_eq!(m["state"], "applied");
        assert!(m["applied"]["binary_version"]
            .as_str()
            .unwrap()
            .starts_with("notes "));
    }
    // Editing commands need a source tree.
    let out = notes(&["migrate", "new", "x"], url, dir.path());
    assert_eq!(out.status.code(), Some(2));
}

/// The embedded set on a fresh SQLite file and a fresh Postgres database.
fn embedded_set(b: Backend) {
    match b {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            check(&format!(
                "sqlite://{}",
                dir.path().join("notes.db").display()
            ));
        }
        Backend::Postgres => {
            let db = capstan_testkit::TestDb::new("notes");
            check(&db.url);
        }
    }
}
backends!(embedded_set);

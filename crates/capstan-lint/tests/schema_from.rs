//! `--schema-from DATABASE_URL`: the schema model read from a live database.

mod common;

use capstan_lint::{run_lint as run, LintArgs};
use clap::Parser;
use common::{Connect, TestDb};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    lint: LintArgs,
}

fn lint(args: &[&str]) -> (i32, String, String) {
    let cmd =
        Cmd::try_parse_from(std::iter::once("capstan-lint").chain(args.iter().copied())).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cmd.lint, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn rules(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn live_schema_makes_verdicts_precise() {
    let db = TestDb::new("lint_schema_from");
    db.connect()
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(20), age integer);
             ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL);
             CREATE TYPE mood AS ENUM ('ok');
             CREATE VIEW adults AS SELECT * FROM users WHERE age >= 18;",
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0005_email.sql");
    std::fs::write(
        &file,
        "-- capstan:phase contract\n-- capstan:up\n\
         ALTER TABLE users ALTER COLUMN email TYPE text;\n\
         ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
         ALTER TABLE users ALTER COLUMN age TYPE bigint;\n\
         CREATE TABLE fresh (id bigint);\n\
         CREATE INDEX fresh_id ON fresh (id);\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();

    // Without the live schema, capstan cannot tell the widening from a rewrite, nor see the CHECK.
    let (_, out, _) = lint(&["--format", "json", path]);
    assert_eq!(
        rules(&out),
        [
            "changing-column-type",
            "setting-not-null",
            "changing-column-type"
        ]
    );

    // With it: the widening is free, the CHECK backs SET NOT NULL; int -> bigint still rewrites.
    let (code, out, err) = lint(&["--format", "json", "--schema-from", &db.url, path]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(rules(&out), ["changing-column-type"]);
    assert!(out.contains("from int4 to int8"), "{out}");
}

#[test]
fn unreachable_database_is_bad_input_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_t.sql");
    std::fs::write(&file, "SELECT 1;\n").unwrap();
    let (code, _, err) = lint(&[
        "--schema-from",
        "postgres://app:s3cret@127.0.0.1:1/app",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 3);
    assert!(err.contains("--schema-from: cannot connect"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn already_applied_migrations_do_not_make_live_tables_new() {
    let db = TestDb::new("lint_schema_from_applied");
    db.connect()
        .batch_execute("CREATE TABLE users (id bigint, email text);")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_users.sql"),
        "CREATE TABLE users (id bigint, email text);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_orders.sql"),
        "CREATE TABLE orders (id bigint, user_id bigint);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_idx.sql"),
        "CREATE INDEX orders_user_idx ON orders (user_id);\nCREATE INDEX users_email_idx ON users (email);\n",
    )
    .unwrap();
    let (code, out, err) = lint(&[
        "--format",
        "json",
        "--schema-from",
        &db.url,
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(String, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    // orders is created by a pending migration of the release: exempt. users is live: not.
    assert_eq!(got, [("require-concurrent-index-creation".to_string(), 2)]);
}

//! `capstan migrate import` and `baseline --from TOOL` end to end, on both
//! backends: drops and renames import as contract migrations, a database the
//! old tool migrated partway is adopted from that tool's history table, and
//! a comment-only down runs as a down that does nothing.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

/// Writes `files` (name, text) into a new temp dir.
fn source(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const GOOSE: &[(&str, &str)] = &[
    (
        "00001_users.sql",
        "-- +goose up\nCREATE TABLE users (id int PRIMARY KEY, name text, legacy text);\n-- +goose down\nDROP TABLE users;\n",
    ),
    (
        "00002_email.sql",
        "-- +goose Up\nALTER TABLE users ADD COLUMN email text;\n-- +goose Down\nALTER TABLE users DROP COLUMN email;\n",
    ),
    (
        "00003_drop_legacy.sql",
        "-- +goose Up\n-- squawk-ignore ban-drop-column -- nothing reads it since v2\nALTER TABLE users DROP COLUMN legacy;\n-- +goose Down\nALTER TABLE users ADD COLUMN legacy text;\n",
    ),
    (
        "00004_rename.sql",
        "-- +goose Up\nALTER TABLE users RENAME COLUMN name TO full_name;\n-- +goose Down\nALTER TABLE users RENAME COLUMN full_name TO name;\n",
    ),
    (
        "00005_notes.sql",
        "-- +goose Up\nCREATE TABLE notes (id int);\n-- +goose Down\n-- the table stays: it holds what users wrote\n",
    ),
];

/// Runs several statements on the project's database.
fn exec(p: &Project, sql: &str) {
    match p.backend {
        Backend::Postgres => {
            p.query(sql);
        }
        Backend::Sqlite => rusqlite::Connection::open(p.sqlite_path())
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
    }
}

/// A goose history table holding `applied` (and goose's own version 0).
fn goose_history(p: &Project, applied: &[i64]) {
    let (serial, boolean) = match p.backend {
        Backend::Postgres => ("serial PRIMARY KEY", "boolean"),
        Backend::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "integer"),
    };
    let t = if p.backend == Backend::Postgres {
        "true"
    } else {
        "1"
    };
    let mut sql = format!(
        "CREATE TABLE goose_db_version (id {serial}, version_id bigint NOT NULL, is_applied {boolean} NOT NULL, tstamp timestamp DEFAULT CURRENT_TIMESTAMP); INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, {t});"
    );
    for v in applied {
        sql.push_str(&format!(
            " INSERT INTO goose_db_version (version_id, is_applied) VALUES ({v}, {t});"
        ));
    }
    exec(p, &sql);
}

#[test]
fn drops_and_renames_import_as_contract_and_suppressions_carry_over() {
    let src = source(GOOSE);
    let p = Project::new(Backend::Sqlite);
    std::fs::remove_dir(p.migrations()).unwrap();
    let out = p.capstan(&["migrate", "import", "--from", "goose"]);
    assert_code(&out, 2);
    let out = p.capstan(&[
        "migrate",
        "import",
        "--from",
        "goose",
        src.path().to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    let report = stdout(&out);
    assert!(
        report.contains("00003_drop_legacy.sql -> 0003_drop_legacy.sql (contract)"),
        "{report}"
    );
    assert!(
        report.contains("00004_rename.sql -> 0004_rename.sql (contract)"),
        "{report}"
    );
    assert!(
        report.contains(
            "00003_drop_legacy.sql:3: this statement drops column users.legacy: imported as a contract migration"
        ),
        "{report}"
    );
    for f in ["0001_users.sql", "0002_email.sql", "0005_notes.sql"] {
        let text = std::fs::read_to_string(p.migrations().join(f)).unwrap();
        assert!(!text.contains("capstan:phase"), "{f}: {text}");
    }
    let third = std::fs::read_to_string(p.migrations().join("0003_drop_legacy.sql")).unwrap();
    assert!(
        third.starts_with(
            "-- imported from goose version 3: 00003_drop_legacy.sql\n-- capstan:phase contract\n"
        ),
        "{third}"
    );
    assert!(
        third.contains("-- capstan:ignore dropping-column nothing reads it since v2 (was `squawk-ignore ban-drop-column -- nothing reads it since v2`)\nALTER TABLE users DROP COLUMN legacy;"),
        "{third}"
    );
    // The converted directory lints as capstan reads it: the contract phase
    // is right and the carried-over ignore silences the drop.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["lint", "--format", "json"])
        .arg(p.migrations())
        .output()
        .unwrap();
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = findings["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert!(
        !rules.contains(&"wrong-phase") && !rules.contains(&"dropping-column"),
        "{rules:?}"
    );
}

fn baseline_from_goose_adopts_a_database_goose_migrated_partway(b: Backend) {
    let src = source(GOOSE);
    let p = Project::new(b);
    std::fs::remove_dir(p.migrations()).unwrap();
    let out = p.capstan(&[
        "migrate",
        "import",
        "--from",
        "goose",
        src.path().to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    // goose ran 1..=3 on this database.
    exec(
        &p,
        "CREATE TABLE users (id int PRIMARY KEY, name text, email text)",
    );
    let out = p.capstan(&["migrate", "baseline", "--from", "goose"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("no table goose_db_version"),
        "{}",
        stderr(&out)
    );
    goose_history(&p, &[1, 2, 3]);
    let out = p.capstan(&["migrate", "baseline", "--from", "goose", "--json"]);
    assert_code(&out, 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["baselined"], serde_json::json!([1, 2, 3]), "{b:?}");
    assert_eq!(json["table"], "goose_db_version");
    let states = p.states();
    assert_eq!(
        states.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["applied", "applied", "applied", "pending", "pending"],
        "{b:?}"
    );
    // The rename is a breaking change the pre-`up` lint refuses by itself.
    assert_code(&p.capstan(&["migrate", "up", "--unsafe-ok"]), 0);
    assert!(p.has_column("users", "full_name"), "{b:?}");
    // 0005's down is only a comment: it runs, does nothing, and is recorded.
    let out = p.capstan(&["migrate", "down", "--to", "4"]);
    assert_code(&out, 0);
    assert!(p.has_table("notes"), "{b:?}: the no-op down dropped notes");
    assert_eq!(p.recorded_versions(), [1, 2, 3, 4], "{b:?}");
}
backends!(baseline_from_goose_adopts_a_database_goose_migrated_partway);

fn baseline_from_refuses_a_history_that_is_not_a_prefix_and_changes_nothing(b: Backend) {
    let src = source(GOOSE);
    let p = Project::new(b);
    std::fs::remove_dir(p.migrations()).unwrap();
    let out = p.capstan(&[
        "migrate",
        "import",
        "--from",
        "goose",
        src.path().to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    // goose ran 4 out of order (`-allow-missing`) and never 3.
    goose_history(&p, &[1, 2, 4]);
    let out = p.capstan(&["migrate", "baseline", "--from", "goose"]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(
        err.contains("goose applied version 4 (0004_rename.sql) but not 0003_drop_legacy.sql (goose version 3)"),
        "{err}"
    );
    assert!(p.recorded_versions().is_empty(), "{b:?}");
}
backends!(baseline_from_refuses_a_history_that_is_not_a_prefix_and_changes_nothing);

fn baseline_from_dbmate_follows_dbmates_file_name_order(b: Backend) {
    // dbmate runs 10_ before 9_: a database where dbmate applied only
    // version 10 maps to the first capstan migration.
    let src = source(&[
        (
            "9_nine.sql",
            "-- migrate:up\nCREATE TABLE nine (id int);\n-- migrate:down\nDROP TABLE nine;\n",
        ),
        (
            "10_ten.sql",
            "-- migrate:up\nCREATE TABLE ten (id int);\n-- migrate:down\nDROP TABLE ten;\n",
        ),
    ]);
    let p = Project::new(b);
    std::fs::remove_dir(p.migrations()).unwrap();
    let out = p.capstan(&[
        "migrate",
        "import",
        "--from",
        "dbmate",
        src.path().to_str().unwrap(),
    ]);
    assert_code(&out, 0);
    assert!(p.migrations().join("0001_ten.sql").exists());
    exec(&p, "CREATE TABLE ten (id int); CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); INSERT INTO schema_migrations VALUES ('10')");
    let out = p.capstan(&["migrate", "baseline", "--from", "dbmate"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("up to 0001"), "{}", stdout(&out));
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert!(p.has_table("nine"));
    assert_eq!(p.recorded_versions(), [1, 2]);
}
backends!(baseline_from_dbmate_follows_dbmates_file_name_order);

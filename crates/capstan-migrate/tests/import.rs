//! `capstan migrate import`: each tool's fixture directory converts to the
//! expected capstan files, versions are ordered as numbers, and bad input is
//! refused without writing anything.
//!
//! The expected output lives in `tests/fixtures/import/<tool>/expected/` and
//! `report.txt` beside it. After an intended change, rewrite them with
//! `CAPSTAN_UPDATE_EXPECTED=1 cargo test -p capstan-migrate --test import`
//! and review the diff.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use capstan_migrate::import::{convert, import, ImportError, Tool};
use capstan_migrate::MigrationSet;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// Every file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn check_tool(tool: Tool) {
    let case = fixtures().join(tool.as_str());
    let src = case.join("source");
    let before = snapshot(&src);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("migrations");

    let converted = convert(tool, &src).unwrap();
    let report = import(tool, &src, &dest).unwrap();
    assert_eq!(snapshot(&src), before, "the source directory was changed");
    assert_eq!(report.migrations.len(), converted.len());

    // What is written is a valid capstan directory, sum included.
    let set = MigrationSet::from_dir(&dest).unwrap();
    assert_eq!(set.migrations().len(), converted.len());
    for (m, c) in set.migrations().iter().zip(&converted) {
        assert_eq!(m.file_name, c.file_name);
        assert_eq!(m.no_transaction, c.no_transaction, "{}", c.file_name);
    }

    let report_text = report
        .to_string()
        .replace(&dest.display().to_string(), "<dest>")
        .replace(&src.display().to_string(), "<src>");
    let written = snapshot(&dest);
    let expected_dir = case.join("expected");
    let report_file = case.join("report.txt");
    if std::env::var_os("CAPSTAN_UPDATE_EXPECTED").is_some() {
        let _ = fs::remove_dir_all(&expected_dir);
        fs::create_dir_all(&expected_dir).unwrap();
        for (name, bytes) in &written {
            fs::write(expected_dir.join(name), bytes).unwrap();
        }
        fs::write(&report_file, &report_text).unwrap();
    }
    let expected = snapshot(&expected_dir);
    assert_eq!(
        written.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{tool}: files written"
    );
    for (name, bytes) in &written {
        assert_eq!(
            String::from_utf8_lossy(bytes),
            String::from_utf8_lossy(&expected[name]),
            "{tool}: {name}"
        );
    }
    assert_eq!(
        report_text,
        fs::read_to_string(&report_file).unwrap(),
        "{tool}: report"
    );
}

#[test]
fn diesel_directory_converts_as_expected() {
    check_tool(Tool::Diesel);
}

#[test]
fn sqlx_directory_converts_as_expected() {
    check_tool(Tool::Sqlx);
}

#[test]
fn goose_directory_converts_as_expected() {
    check_tool(Tool::Goose);
}

#[test]
fn dbmate_directory_converts_as_expected() {
    check_tool(Tool::Dbmate);
}

#[test]
fn golang_migrate_directory_converts_as_expected() {
    check_tool(Tool::GolangMigrate);
}

/// Source files: (relative path, content).
type Files<'a> = &'a [(&'a str, &'a str)];

/// Writes `files` (relative path, content) under a new temp dir.
fn source(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    dir
}

/// A minimal migration of `tool` with `version` and `name`: (path, content) pairs.
fn minimal(tool: Tool, version: &str, name: &str) -> Vec<(String, String)> {
    let sql = format!("CREATE TABLE t{version} (id int);\n");
    match tool {
        Tool::Diesel => vec![(format!("{version}_{name}/up.sql"), sql)],
        Tool::Sqlx => vec![(format!("{version}_{name}.sql"), sql)],
        Tool::Goose => vec![(
            format!("{version}_{name}.sql"),
            format!("-- +goose Up\n{sql}"),
        )],
        Tool::Dbmate => vec![(
            format!("{version}_{name}.sql"),
            format!("-- migrate:up\n{sql}\n-- migrate:down\n"),
        )],
        Tool::GolangMigrate => vec![(format!("{version}_{name}.up.sql"), sql)],
    }
}

fn source_of(tool: Tool, versions: &[(&str, &str)]) -> tempfile::TempDir {
    let files: Vec<(String, String)> = versions
        .iter()
        .flat_map(|(v, n)| minimal(tool, v, n))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    source(&refs)
}

#[test]
fn versions_are_ordered_as_each_tool_orders_them() {
    // sqlx, goose and golang-migrate parse versions as integers.
    for tool in [Tool::Sqlx, Tool::Goose, Tool::GolangMigrate] {
        let src = source_of(
            tool,
            &[
                ("10", "ten"),
                ("9", "nine"),
                ("100", "hundred"),
                ("2", "two"),
                ("1", "one"),
            ],
        );
        let converted = convert(tool, src.path()).unwrap();
        let names: Vec<&str> = converted.iter().map(|c| c.file_name.as_str()).collect();
        assert_eq!(
            names,
            [
                "0001_one.sql",
                "0002_two.sql",
                "0003_nine.sql",
                "0004_ten.sql",
                "0005_hundred.sql"
            ],
            "{tool}"
        );
        let versions: Vec<&str> = converted
            .iter()
            .map(|c| c.original_version.as_str())
            .collect();
        assert_eq!(versions, ["1", "2", "9", "10", "100"], "{tool}");
        for c in &converted {
            assert_eq!(
                capstan_migrate::import::imported_from(&c.text),
                Some((tool, c.original_version.clone())),
                "{}",
                c.text
            );
        }
    }
    // diesel compares version strings, dbmate file names: `10_` before `9_`.
    for tool in [Tool::Diesel, Tool::Dbmate] {
        let src = source_of(
            tool,
            &[
                ("10", "ten"),
                ("9", "nine"),
                ("100", "hundred"),
                ("2", "two"),
                ("1", "one"),
            ],
        );
        let converted = convert(tool, src.path()).unwrap();
        let versions: Vec<&str> = converted
            .iter()
            .map(|c| c.original_version.as_str())
            .collect();
        let expected = match tool {
            // diesel: version strings; dbmate: whole file names (`100_` < `10_` < `1_`).
            Tool::Diesel => ["1", "10", "100", "2", "9"],
            _ => ["100", "10", "1", "2", "9"],
        };
        assert_eq!(versions, expected, "{tool}");
    }
}

#[test]
fn diesel_mixed_timestamp_styles_keep_diesels_string_order() {
    // `2019-02-01-0000` is 201902010000 (12 digits): numerically smaller than
    // 20190101000000, but diesel compares strings, so January runs first.
    let src = source(&[
        ("2019-02-01-0000_feb/up.sql", "CREATE TABLE feb (id int);\n"),
        (
            "2019-01-01-000000_jan/up.sql",
            "CREATE TABLE jan (id int);\n",
        ),
        (
            "2019-03-01-000000_mar/up.sql",
            "CREATE TABLE mar (id int);\n",
        ),
        ("2019-04-01-000000_empty/.keep", ""),
    ]);
    fs::remove_file(src.path().join("2019-04-01-000000_empty/.keep")).unwrap();
    let converted = convert(Tool::Diesel, src.path()).unwrap();
    let names: Vec<&str> = converted.iter().map(|c| c.file_name.as_str()).collect();
    assert_eq!(names, ["0001_jan.sql", "0002_feb.sql", "0003_mar.sql"]);
    assert_eq!(converted[1].original_version, "201902010000");
}

#[test]
fn dbmate_nine_runs_after_ten_as_dbmate_sorts_file_names() {
    let src = source(&[
        ("9_nine.sql", "-- migrate:up\nCREATE TABLE nine (id int);\n"),
        ("10_ten.sql", "-- migrate:up\nCREATE TABLE ten (id int);\n"),
        ("01_a.sql", "-- migrate:up\nSELECT 1;\n"),
        ("1_b.sql", "-- migrate:up\nSELECT 1;\n"),
    ]);
    let converted = convert(Tool::Dbmate, src.path()).unwrap();
    let versions: Vec<&str> = converted
        .iter()
        .map(|c| c.original_version.as_str())
        .collect();
    // `01` and `1` are two versions to dbmate (its history keys are strings),
    // and file names compare byte by byte: `10_` before `1_` before `9_`.
    assert_eq!(versions, ["01", "10", "1", "9"]);
}

#[test]
fn goose_annotations_are_read_in_any_case() {
    let src = source(&[(
        "1_a.sql",
        "-- +goose up\n-- +goose no transaction\n-- +goose statementbegin\nCREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\n-- +goose STATEMENTEND\n-- +goose envsub on\nSELECT 1;\n-- +goose ENVSUB OFF\n-- +goose DOWN\nDROP FUNCTION f();\n",
    )]);
    let converted = convert(Tool::Goose, src.path()).unwrap();
    let c = &converted[0];
    assert!(c.no_transaction);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(
        c.text.contains("-- capstan:down\nDROP FUNCTION f();"),
        "{}",
        c.text
    );
    assert!(
        c.notes
            .iter()
            .any(|n| n.contains("1_a.sql:6: goose substituted")),
        "{:?}",
        c.notes
    );
}

#[test]
fn an_unknown_goose_annotation_warns_with_file_and_line_and_imports_the_rest() {
    let src = source(&[
        ("1_a.sql", "-- +goose Up\nCREATE TABLE a (id int);\n"),
        (
            "2_b.sql",
            "-- +goose Up\n-- +goose ENVSUBST ON\nCREATE TABLE b (id int);\n-- +goose Down\nDROP TABLE b;\n",
        ),
        ("3_c.sql", "-- +goose Up\nCREATE TABLE c (id int);\n"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let report = import(Tool::Goose, src.path(), tmp.path()).unwrap();
    assert_eq!(report.migrations.len(), 3);
    let w = &report.migrations[1].warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("2_b.sql:2: unknown goose annotation `+goose ENVSUBST ON`"),
        "{}",
        w[0]
    );
    assert!(
        report.to_string().contains("warning: 2_b.sql:2:"),
        "{report}"
    );
    let text = fs::read_to_string(tmp.path().join("0002_b.sql")).unwrap();
    assert!(
        text.contains("-- +goose ENVSUBST ON\nCREATE TABLE b"),
        "{text}"
    );
    assert!(text.contains("-- capstan:down\nDROP TABLE b;"), "{text}");
}

#[test]
fn a_down_file_with_only_comments_imports_as_a_down_that_does_nothing() {
    for (tool, files) in [
        (
            Tool::Diesel,
            vec![
                ("1_a/up.sql", "CREATE TABLE a (id int);\n"),
                (
                    "1_a/down.sql",
                    "-- This file should undo anything in `up.sql`\n",
                ),
            ],
        ),
        (
            Tool::Sqlx,
            vec![
                ("1_a.up.sql", "CREATE TABLE a (id int);\n"),
                ("1_a.down.sql", "-- nothing to undo\n\n"),
            ],
        ),
        (
            Tool::GolangMigrate,
            vec![
                ("1_a.up.sql", "CREATE TABLE a (id int);\n"),
                ("1_a.down.sql", "  \n"),
            ],
        ),
        (
            Tool::Goose,
            vec![(
                "1_a.sql",
                "-- +goose Up\nCREATE TABLE a (id int);\n-- +goose Down\n-- kept\n",
            )],
        ),
        (
            Tool::Dbmate,
            vec![(
                "1_a.sql",
                "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\n",
            )],
        ),
    ] {
        let src = source(&files);
        let tmp = tempfile::tempdir().unwrap();
        import(tool, src.path(), tmp.path()).unwrap();
        let set = MigrationSet::from_dir(tmp.path()).unwrap();
        let down = set.migrations()[0].down.as_ref();
        assert!(down.is_some(), "{tool}: no down section");
        assert!(
            down.unwrap()
                .statements(capstan_migrate::Dialect::Postgres)
                .unwrap()
                .is_empty(),
            "{tool}"
        );
    }
    // diesel refuses a 0-byte down.sql ("empty migration"): no down section.
    let src = source(&[
        ("1_a/up.sql", "CREATE TABLE a (id int);\n"),
        ("1_a/down.sql", ""),
    ]);
    let converted = convert(Tool::Diesel, src.path()).unwrap();
    assert!(
        !converted[0].text.contains("capstan:down"),
        "{}",
        converted[0].text
    );
}

#[test]
fn squawk_and_atlas_suppressions_become_capstan_ignores_with_their_reason() {
    let src = source(&[(
        "1_a.up.sql",
        "-- atlas:nolint DS103\n\nCREATE TABLE a (id int, b int);\n-- squawk-ignore ban-drop-column, prefer-robust-stmts -- b was never read\nALTER TABLE a DROP COLUMN b;\n-- squawk-ignore\nSELECT 1;\n-- atlas:nolint LT999\nSELECT 2;\n",
    )]);
    let converted = convert(Tool::Sqlx, src.path()).unwrap();
    let text = &converted[0].text;
    assert!(
        text.contains("-- capstan:ignore-file dropping-column (was `atlas:nolint DS103`)\n"),
        "{text}"
    );
    assert!(text.contains("-- capstan:ignore dropping-column,non-idempotent-no-transaction b was never read (was `squawk-ignore ban-drop-column, prefer-robust-stmts -- b was never read`)\nALTER TABLE a DROP COLUMN b;"), "{text}");
    assert!(
        text.contains("-- capstan:ignore all (was `squawk-ignore`)\nSELECT 1;"),
        "{text}"
    );
    assert!(text.contains("-- atlas:nolint LT999\nSELECT 2;"), "{text}");
    assert!(
        converted[0]
            .notes
            .iter()
            .any(|n| n
                .contains("1_a.up.sql:8: `atlas:nolint` names `LT999` with no capstan equivalent")),
        "{:?}",
        converted[0].notes
    );
    // Every line still maps to its source line.
    let at = text
        .lines()
        .position(|l| l.starts_with("ALTER TABLE a DROP"))
        .unwrap();
    assert_eq!(converted[0].origin[at].as_ref().map(|o| o.1), Some(5));
}

#[test]
fn removed_begin_and_commit_keep_the_line_map() {
    let src = source(&[(
        "1_a.up.sql",
        "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n-- end\n",
    )]);
    let converted = convert(Tool::Sqlx, src.path()).unwrap();
    let c = &converted[0];
    for (i, line) in c.text.lines().enumerate() {
        if line == "CREATE TABLE a (id int);" {
            assert_eq!(c.origin[i].as_ref().map(|o| o.1), Some(2));
        }
        if line == "-- end" {
            assert_eq!(c.origin[i].as_ref().map(|o| o.1), Some(4));
        }
    }
    assert_eq!(c.origin.len(), c.text.lines().count());
}

#[test]
fn names_are_made_snake_case() {
    let src = source(&[
        ("1_Add Users-Table.sql", "SELECT 1;"),
        ("2_2fa.sql", "SELECT 1;"),
    ]);
    let converted = convert(Tool::Sqlx, src.path()).unwrap();
    assert_eq!(converted[0].file_name, "0001_add_users_table.sql");
    assert_eq!(converted[1].file_name, "0002_m_2fa.sql");
}

fn err_of(tool: Tool, files: &[(&str, &str)]) -> ImportError {
    let src = source(files);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let err = import(tool, src.path(), &dest).unwrap_err();
    assert!(
        !dest.exists(),
        "{tool}: a refused import created {}",
        dest.display()
    );
    err
}

#[test]
fn file_names_off_the_pattern_are_refused_with_the_pattern() {
    let cases: [(Tool, &str, &str); 7] = [
        (Tool::Diesel, "create_users/up.sql", "create_users"),
        (Tool::Diesel, "v1_create_users/up.sql", "v1_create_users"),
        (Tool::Sqlx, "create_users.sql", "create_users.sql"),
        (Tool::Goose, "0_init.sql", "0_init.sql"),
        (Tool::Goose, "20240101-init.sql", "20240101-init.sql"),
        (Tool::Dbmate, "create_users.sql", "create_users.sql"),
        (
            Tool::GolangMigrate,
            "1_create_users.sql",
            "1_create_users.sql",
        ),
    ];
    for (tool, file, named) in cases {
        let err = err_of(tool, &[(file, "SELECT 1;")]);
        assert!(
            matches!(err, ImportError::BadFileName { .. }),
            "{tool} {file}: {err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(named), "{msg}");
        assert!(
            msg.contains(&format!("not a {tool} migration name; expected ")),
            "{msg}"
        );
    }
    let err = err_of(Tool::GolangMigrate, &[("1_seed.up.json", "{}")]);
    assert!(matches!(err, ImportError::BadFileName { .. }), "{err}");
}

#[test]
fn two_files_with_one_version_are_refused() {
    let cases: [(Tool, Files); 5] = [
        (
            Tool::Diesel,
            &[
                ("2024-01-01-000000_a/up.sql", "SELECT 1;"),
                ("20240101000000_b/up.sql", "SELECT 1;"),
            ],
        ),
        (
            Tool::Sqlx,
            &[("1_a.sql", "SELECT 1;"), ("1_a.up.sql", "SELECT 1;")],
        ),
        (
            Tool::Goose,
            &[
                ("1_a.sql", "-- +goose Up\nSELECT 1;"),
                ("001_b.sql", "-- +goose Up\nSELECT 1;"),
            ],
        ),
        (
            Tool::Dbmate,
            &[
                ("1_a.sql", "-- migrate:up\nSELECT 1;"),
                ("1b.sql", "-- migrate:up\nSELECT 1;"),
            ],
        ),
        (
            Tool::GolangMigrate,
            &[("1_a.up.sql", "SELECT 1;"), ("01_b.up.sql", "SELECT 1;")],
        ),
    ];
    for (tool, files) in cases {
        let err = err_of(tool, files);
        let ImportError::DuplicateVersion { version, .. } = &err else {
            panic!("{tool}: {err}");
        };
        assert!(
            version == "1" || version.ends_with("01") || version == "20240101000000",
            "{tool}: {version}"
        );
        assert!(err.to_string().contains("is used twice"), "{err}");
    }
}

#[test]
fn a_down_file_without_its_up_is_refused() {
    for tool in [Tool::Sqlx, Tool::GolangMigrate] {
        let err = err_of(
            tool,
            &[
                ("1_a.up.sql", "SELECT 1;"),
                ("1_a.down.sql", "SELECT 1;"),
                ("2_b.down.sql", "SELECT 2;"),
            ],
        );
        assert!(
            matches!(err, ImportError::DownWithoutUp { .. }),
            "{tool}: {err}"
        );
        assert!(err.to_string().contains("2_b.down.sql"), "{err}");
    }
}

#[test]
fn invalid_utf8_names_file_and_line() {
    let src = tempfile::tempdir().unwrap();
    fs::write(
        src.path().join("1_a.up.sql"),
        b"CREATE TABLE a (id int);\nINSERT INTO a VALUES ('\xff');\n",
    )
    .unwrap();
    let err = convert(Tool::GolangMigrate, src.path()).unwrap_err();
    assert!(matches!(err, ImportError::NotUtf8 { line: 2, .. }), "{err}");
    assert!(
        err.to_string().contains("1_a.up.sql:2: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn goose_go_migrations_are_refused_by_name() {
    let err = err_of(
        Tool::Goose,
        &[
            ("00001_create_users.sql", "-- +goose Up\nSELECT 1;"),
            ("00002_backfill_names.go", "package migrations\n"),
        ],
    );
    assert!(matches!(err, ImportError::GoMigration { .. }), "{err}");
    assert!(err.to_string().contains("00002_backfill_names.go"), "{err}");

    // Go files that are not migrations are ignored, as goose ignores them.
    let src = source(&[
        ("00001_create_users.sql", "-- +goose Up\nSELECT 1;"),
        ("main.go", "package main\n"),
        ("00002_x_test.go", "package migrations\n"),
    ]);
    assert_eq!(convert(Tool::Goose, src.path()).unwrap().len(), 1);
}

#[test]
fn an_empty_or_missing_directory_is_refused() {
    for tool in Tool::ALL {
        let err = err_of(tool, &[("README.md", "# migrations\n")]);
        assert!(
            matches!(err, ImportError::NothingToImport { .. }),
            "{tool}: {err}"
        );
        assert!(
            err.to_string().contains(&format!("no {tool} migrations")),
            "{err}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = convert(Tool::Sqlx, &missing).unwrap_err();
    assert!(matches!(err, ImportError::Dir { .. }), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn malformed_sources_name_file_and_line() {
    let cases: [(Tool, Files, &str); 6] = [
        (
            Tool::Goose,
            &[("1_a.sql", "-- a comment\nSELECT 1;\n")],
            "1_a.sql:2: SQL before `-- +goose Up`",
        ),
        (
            Tool::Goose,
            &[(
                "1_a.sql",
                "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n",
            )],
            "1_a.sql:2: `-- +goose StatementBegin` without",
        ),
        (
            Tool::Dbmate,
            &[("1_a.sql", "-- only a comment\n")],
            "1_a.sql: no `-- migrate:up` line",
        ),
        (
            Tool::Dbmate,
            &[("1_a.sql", "-- create the table\n-- migrate:down\n")],
            "1_a.sql:2: `-- migrate:down` before",
        ),
        (
            Tool::Diesel,
            &[("1_a/down.sql", "SELECT 1;\n")],
            "1_a: no up.sql",
        ),
        (
            Tool::Sqlx,
            &[("1_a.sql", "SELECT 1;\nSELECT 'oops;\n")],
            "1_a.sql:2: string literal is never closed",
        ),
    ];
    for (tool, files, needle) in cases {
        let err = err_of(tool, files);
        assert!(
            matches!(err, ImportError::Malformed { .. }),
            "{tool}: {err}"
        );
        assert!(
            err.to_string().contains(needle),
            "{tool}: `{err}` should contain `{needle}`"
        );
    }
}

#[test]
fn sql_that_reads_as_a_capstan_directive_is_refused_before_writing() {
    let err = err_of(
        Tool::Sqlx,
        &[(
            "1_a.sql",
            "SELECT 1;\n-- capstan:down\nSELECT 2;\n-- capstan:down\n",
        )],
    );
    assert!(matches!(err, ImportError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("1_a.sql"), "{err}");
}

#[test]
fn import_into_a_directory_with_migrations_changes_nothing() {
    let src = fixtures().join("sqlx/source");
    for existing in ["0001_existing.sql", "capstan.sum"] {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("migrations");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join(existing), "-- capstan:up\nSELECT 1;\n").unwrap();
        fs::write(dest.join("README.md"), "keep me\n").unwrap();
        let before = snapshot(&dest);
        let err = import(Tool::Sqlx, &src, &dest).unwrap_err();
        assert!(
            matches!(err, ImportError::DestinationNotEmpty { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(existing), "{err}");
        assert_eq!(snapshot(&dest), before, "{existing}");
    }

    // Other files do not count as migrations: they are kept.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("README.md"), "keep me\n").unwrap();
    let report = import(Tool::Sqlx, &src, tmp.path()).unwrap();
    assert_eq!(
        fs::read_to_string(tmp.path().join("README.md")).unwrap(),
        "keep me\n"
    );
    assert_eq!(report.migrations.len(), 4);

    // A file in the way of the directory.
    let file = tmp.path().join("README.md");
    let err = import(Tool::Sqlx, &src, &file).unwrap_err();
    assert!(
        matches!(err, ImportError::DestinationNotDir { .. }),
        "{err}"
    );
}

#[test]
fn the_report_serializes_for_json_output() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures().join("golang-migrate/source");
    let report = import(Tool::GolangMigrate, &src, &tmp.path().join("m")).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["tool"], "golang-migrate");
    assert_eq!(
        json["migrations"][2]["file_name"],
        "0003_index_users_email.sql"
    );
    assert_eq!(json["migrations"][2]["no_transaction"], true);
    assert_eq!(json["migrations"][2]["original_version"], "3");
    assert!(json["migrations"][2]["notes"][0]
        .as_str()
        .unwrap()
        .contains("CREATE UNIQUE INDEX CONCURRENTLY"));
}

#[test]
fn an_up_section_without_statements_becomes_a_no_op() {
    let src = source(&[
        ("1_placeholder.sql", "-- nothing yet\n"),
        ("2_b.sql", "SELECT 2;\n"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let report = import(Tool::Sqlx, src.path(), tmp.path()).unwrap();
    let text = fs::read_to_string(tmp.path().join("0001_placeholder.sql")).unwrap();
    assert_eq!(
        text,
        "-- imported from sqlx version 1: 1_placeholder.sql\n-- capstan:up\n-- nothing yet\nSELECT 1;\n"
    );
    assert!(report.migrations[0].notes[0].contains("`SELECT 1;`"));
}

#[test]
fn a_no_transaction_mark_on_one_side_makes_the_file_no_transaction() {
    let src = source(&[
        ("1_a.up.sql", "CREATE TABLE a (id int);\n"),
        (
            "1_a.down.sql",
            "-- no-transaction\nDROP INDEX CONCURRENTLY a_idx;\n",
        ),
    ]);
    let c = &convert(Tool::Sqlx, src.path()).unwrap()[0];
    assert!(c.no_transaction);
    assert!(
        c.notes[0].contains("1_a.down.sql is marked `-- no-transaction`"),
        "{:?}",
        c.notes
    );
    assert!(!c.text.contains("-- no-transaction\n"), "{}", c.text);

    let src = source(&[(
        "1_a.sql",
        "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down transaction:false\nDROP TABLE a;\n",
    )]);
    let c = &convert(Tool::Dbmate, src.path()).unwrap()[0];
    assert!(c.no_transaction);
    assert!(c.notes[0].contains("only the down block"), "{:?}", c.notes);
}

#[test]
fn a_transactional_source_with_concurrently_keeps_its_setting_and_says_why_it_fails() {
    let src = source(&[("1_idx.sql", "CREATE INDEX CONCURRENTLY a_idx ON a (id);\n")]);
    let c = &convert(Tool::Sqlx, src.path()).unwrap()[0];
    assert!(!c.no_transaction);
    assert!(
        c.notes[0].starts_with("1_idx.sql:1: CREATE INDEX CONCURRENTLY cannot run inside a transaction, and sqlx ran this migration in one too"),
        "{:?}",
        c.notes
    );
}

#[test]
fn crlf_files_are_understood() {
    let src = source(&[(
        "1_a.sql",
        "-- +goose Up\r\n-- +goose StatementBegin\r\nCREATE TABLE a (id int);\r\n-- +goose StatementEnd\r\n\r\n-- +goose Down\r\nDROP TABLE a;\r\n",
    )]);
    let tmp = tempfile::tempdir().unwrap();
    import(Tool::Goose, src.path(), tmp.path()).unwrap();
    let set = MigrationSet::from_dir(tmp.path()).unwrap();
    let m = &set.migrations()[0];
    assert_eq!(m.up.sql.trim(), "CREATE TABLE a (id int);");
    assert_eq!(m.down.as_ref().unwrap().sql.trim(), "DROP TABLE a;");
}

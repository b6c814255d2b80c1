//! End-to-end tests of `capstan lint` through `cli::run`, one snapshot per output format.

use capstan_lint::cli::{run, LintArgs};
use clap::Parser;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    lint: LintArgs,
}

/// Runs `capstan lint ARGS`; returns (exit code, stdout, stderr).
fn lint(args: &[&str]) -> (i32, String, String) {
    let cmd = Cmd::try_parse_from(std::iter::once("capstan-lint").chain(args.iter().copied()))
        .expect("arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cmd.lint, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

const APP: &str = "tests/fixtures/app/migrations";

#[test]
fn human_output() {
    let (code, out, err) = lint(&[APP]);
    assert_eq!(code, 1, "{err}");
    insta::assert_snapshot!(out);
}

#[test]
fn json_output() {
    let (code, out, _) = lint(&["--format", "json", APP]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    insta::assert_snapshot!(serde_json::to_string_pretty(&v).unwrap());
}

#[test]
fn sarif_output() {
    let (code, out, _) = lint(&["--format", "sarif", APP]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    check_sarif_shape(&v);
    // The typed SARIF 2.1.0 model (generated from the official schema) accepts it.
    let typed: serde_sarif::sarif::Sarif = serde_json::from_str(&out).expect("valid SARIF 2.1.0");
    assert_eq!(
        typed.runs[0].results.as_ref().map(Vec::len),
        v["runs"][0]["results"].as_array().map(Vec::len)
    );
    // ...and it is strict enough to matter: a bad level or a missing message is rejected.
    for bad in [
        r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"message":{"text":"m"},"level":"loud"}]}]}"#,
        r#"{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"x"}},"results":[{"level":"error"}]}]}"#,
    ] {
        assert!(
            serde_json::from_str::<serde_sarif::sarif::Sarif>(bad).is_err(),
            "{bad}"
        );
    }
    // The rule catalogue is large and generated; snapshot the results.
    insta::assert_snapshot!(serde_json::to_string_pretty(&v["runs"][0]["results"]).unwrap());
}

#[test]
fn github_output() {
    let (code, out, _) = lint(&["--format", "github", APP]);
    assert_eq!(code, 1);
    insta::assert_snapshot!(out);
}

/// The constraints of the SARIF 2.1.0 schema that a producer can get wrong.
fn check_sarif_shape(v: &serde_json::Value) {
    assert_eq!(v["version"], "2.1.0");
    assert!(v["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &v["runs"][0];
    let driver = &run["tool"]["driver"];
    assert!(driver["name"].is_string());
    let rules = driver["rules"].as_array().unwrap();
    for r in rules {
        assert!(r["id"].is_string());
        assert!(r["shortDescription"]["text"].is_string());
        assert!(["none", "note", "warning", "error"]
            .contains(&r["defaultConfiguration"]["level"].as_str().unwrap()));
    }
    for res in run["results"].as_array().unwrap() {
        let id = res["ruleId"].as_str().unwrap();
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], id, "ruleIndex points at the rule");
        assert!(["none", "note", "warning", "error"].contains(&res["level"].as_str().unwrap()));
        assert!(res["message"]["text"].is_string());
        let loc = &res["locations"][0]["physicalLocation"];
        assert!(loc["artifactLocation"]["uri"].is_string());
        let region = &loc["region"];
        for key in ["startLine", "startColumn", "endLine", "endColumn"] {
            assert!(region[key].as_u64().unwrap() >= 1, "{key} >= 1");
        }
        let (sl, el) = (
            region["startLine"].as_u64().unwrap(),
            region["endLine"].as_u64().unwrap(),
        );
        assert!(el >= sl);
        if el == sl {
            assert!(region["endColumn"].as_u64() > region["startColumn"].as_u64());
        }
    }
}

#[test]
fn clean_directory_exits_zero() {
    let (code, out, err) = lint(&["tests/fixtures/clean/migrations"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "no findings in 2 files\n");
}

#[test]
fn single_file_replays_earlier_migrations_of_its_directory() {
    // 0003 alone: users.email is known from 0001, so SET NOT NULL is judged with the model.
    let (code, out, _) = lint(&[
        "--format",
        "json",
        "tests/fixtures/app/migrations/0003_email_required.sql",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["files"], 1);
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        ["unused-ignore", "setting-not-null", "renaming-column"]
    );
}

#[test]
fn sql_postgres_rejects_exits_three_and_still_lints_the_rest() {
    let (code, out, _) = lint(&["tests/fixtures/broken/0001_typo.sql"]);
    // Bad input, as `migrate` says of a file it cannot run (2 is usage).
    assert_eq!(code, 3);
    assert!(
        out.contains(
            "error[syntax-error]: Postgres rejects this SQL: syntax error at or near \";\""
        ),
        "{out}"
    );
    assert!(out.contains("0001_typo.sql:3:25"), "{out}");
}

#[test]
fn fail_on_and_deny_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_t.sql");
    std::fs::write(&file, "CREATE TABLE t (id bigint, at timestamp);\n").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(lint(&[path]).0, 0, "warnings alone do not fail by default");
    assert_eq!(lint(&["--deny-warnings", path]).0, 1);
    assert_eq!(lint(&["--fail-on", "warning", path]).0, 1);
    assert_eq!(
        lint(&["--disable", "prefer-timestamptz", "--fail-on", "info", path]).0,
        0
    );
}

#[test]
fn explain_and_list_rules() {
    let (code, out, _) = lint(&["--explain", "setting-not-null"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("# `setting-not-null`"));
    let (code, _, err) = lint(&["--explain", "no-such-rule"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown rule `no-such-rule`"));
    let (code, out, _) = lint(&["--list-rules"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), capstan_lint::rules::ALL.len());
}

#[test]
fn bad_input_exits_three_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("0001_bad.sql");
    std::fs::write(&file, b"SELECT 1;\nSELECT '\xff';\n").unwrap();
    let (code, _, err) = lint(&[file.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(err.contains("0001_bad.sql:2: invalid UTF-8"), "{err}");

    let (code, _, err) = lint(&["tests/fixtures/does-not-exist"]);
    assert_eq!(code, 3);
    assert!(
        err.contains("does-not-exist: no such file or directory"),
        "{err}"
    );

    let cfg = dir.path().join("capstan.toml");
    std::fs::write(&cfg, "[lint]\npg_verison = 12\n").unwrap();
    let (code, _, err) = lint(&["--config", cfg.to_str().unwrap(), APP]);
    assert_eq!(code, 3);
    assert!(err.contains("pg_verison"), "{err}");
}

#[test]
fn pg_version_changes_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id bigint);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_t.sql"),
        "ALTER TABLE t ADD COLUMN active boolean DEFAULT true;\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    assert_eq!(lint(&["--pg-version", "15", path]).0, 0);
    let (code, out, _) = lint(&["--pg-version", "10", path]);
    assert_eq!(code, 1);
    assert!(out.contains("adding-volatile-default"), "{out}");
    assert_eq!(lint(&["--pg-version", "42", path]).0, 2);
}

#[test]
fn sqlite_dialect_reports_unreadable_sqlite_syntax_as_info() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t.sql"),
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_t.sql"),
        "CREATE INDEX t_a ON t (a);\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    // Postgres: AUTOINCREMENT is a syntax error (exit 3, bad input).
    assert_eq!(lint(&[path]).0, 3);
    // SQLite: unchecked (info), and no Postgres lock rule on the index.
    let (code, out, _) = lint(&["--dialect", "sqlite", "--format", "json", path]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["infos"], 1);
    assert_eq!(v["summary"]["errors"], 0);
}

#[test]
fn release_from_keeps_tables_of_the_release_new() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_old.sql"),
        "CREATE TABLE old (id bigint, a text);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_new.sql"),
        "CREATE TABLE fresh (id bigint, a text);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_idx.sql"),
        "CREATE INDEX fresh_a ON fresh (a);\nCREATE INDEX old_a ON old (a);\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let rules_of = |out: &str| -> Vec<(String, u64)> {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap().to_string(),
                    f["line"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // Without a release boundary, 0002's table is an existing table in 0003.
    let (_, out, _) = lint(&["--format", "json", path]);
    assert_eq!(rules_of(&out).len(), 2);
    // With the release starting at 0002, only the index on the old table is flagged.
    let (_, out, _) = lint(&["--format", "json", "--release-from", "2", path]);
    assert_eq!(
        rules_of(&out),
        [("require-concurrent-index-creation".to_string(), 2)]
    );
}

//! A corpus of real-world-shaped migrations (tests/fixtures/corpus): it lints without a
//! crash or a parse error, and Postgres accepts every statement, so capstan reports a
//! syntax error exactly when Postgres would.

mod common;

use capstan_lint::{Config, Input, Linter};
use common::{apply, db_error, Connect, TestDb};
use std::path::PathBuf;

fn corpus() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn corpus_lints_without_parse_errors_and_with_few_errors() {
    let mut linter = Linter::new(Config::default());
    let mut all = Vec::new();
    for (name, text) in corpus() {
        all.extend(linter.lint(Input {
            file: &name,
            source: &text,
        }));
    }
    let parse: Vec<_> = all
        .iter()
        .filter(|f| f.rule == "syntax-error" || f.rule == "migration-format")
        .collect();
    assert!(parse.is_empty(), "{parse:#?}");
    // The corpus follows the safe patterns; the only expected errors are on purpose.
    let errors: Vec<String> = all
        .iter()
        .filter(|f| f.severity == capstan_lint::Severity::Error)
        .map(|f| format!("{}:{} {}", f.file, f.line, f.rule))
        .collect();
    insta::assert_snapshot!(errors.join("\n"));
}

#[test]
fn postgres_accepts_every_corpus_migration() {
    let db = TestDb::new("lint_corpus");
    let mut client = db.connect();
    for (name, text) in corpus() {
        apply(&mut client, &text).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Statements Postgres rejects: capstan must report each as `syntax-error`, and Postgres
/// must reject each with SQLSTATE 42601 (or 42000-class), so neither side cries wolf.
#[test]
fn rejected_statements_are_syntax_errors_on_both_sides() {
    let bad = [
        "CREATE TABEL t (a int);",
        "ALTER TABLE t ADD COLUMN;",
        "SELECT 'unterminated;",
        "CREATE INDEX ON;",
        "ALTER TABLE t ALTER COLUMN a TYPE;",
        "INSERT INTO t VALUES (1,;",
        "CREATE TABLE t (a int,);",
        "DROP TABLE;",
    ];
    let db = TestDb::new("lint_syntax");
    let mut client = db.connect();
    for sql in bad {
        let findings = capstan_lint::lint(
            Input {
                file: "x.sql",
                source: sql,
            },
            &Config::default(),
        );
        assert!(
            findings.iter().any(|f| f.rule == "syntax-error"),
            "capstan accepted {sql}"
        );
        let err = client.batch_execute(sql).expect_err(sql);
        let code = err
            .as_db_error()
            .map(|d| d.code().code().to_string())
            .unwrap_or_default();
        assert!(code.starts_with("42"), "{sql}: {}", db_error(&err));
    }
}

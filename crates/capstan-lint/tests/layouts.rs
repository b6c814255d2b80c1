//! `capstan lint` on a directory written for another tool (diesel, sqlx,
//! goose, dbmate, golang-migrate): linted in place, up sections as up and
//! down as down, the tool's no-transaction markers honoured, findings on the
//! original files and lines; a directory it cannot read is an error, never
//! "no findings in 0 files".

use capstan_lint::{run_lint as run, LintArgs};
use clap::Parser;

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    lint: LintArgs,
}

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

fn source(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const CREATE: &str =
    "CREATE TABLE users (id bigint PRIMARY KEY, name text); CREATE INDEX users_id_idx ON users (id);";
const INDEX: &str = "CREATE INDEX users_name_idx ON users (name);";
const UNINDEX: &str = "DROP INDEX users_id_idx;";

/// Two migrations of `tool`: a table, then an index made without
/// CONCURRENTLY (a finding in the up section) and dropped the same way in
/// the down section. Returns the files and where the two statements are.
/// Files (path, text), then the up finding's and the down finding's (file, line).
type Layout = (Vec<(String, String)>, (String, usize), (String, usize));

fn layout(tool: &str) -> Layout {
    let f = |a: &str, b: String| (a.to_string(), b);
    match tool {
        "diesel" => (
            vec![
                f("2024-01-01-000000_users/up.sql", format!("{CREATE}\n")),
                f(
                    "2024-01-02-000000_index/up.sql",
                    format!("-- idx\n{INDEX}\n"),
                ),
                f("2024-01-02-000000_index/down.sql", format!("{UNINDEX}\n")),
            ],
            ("2024-01-02-000000_index/up.sql".into(), 2),
            ("2024-01-02-000000_index/down.sql".into(), 1),
        ),
        "sqlx" | "golang-migrate" => (
            vec![
                f("1_users.up.sql", format!("{CREATE}\n")),
                f("2_index.up.sql", format!("-- idx\n{INDEX}\n")),
                f("2_index.down.sql", format!("\n{UNINDEX}\n")),
            ],
            ("2_index.up.sql".into(), 2),
            ("2_index.down.sql".into(), 2),
        ),
        "goose" => (
            vec![
                f("1_users.sql", format!("-- +goose Up\n{CREATE}\n")),
                f(
                    "2_index.sql",
                    format!("-- +goose up\n-- idx\n{INDEX}\n\n-- +goose down\n{UNINDEX}\n"),
                ),
            ],
            ("2_index.sql".into(), 3),
            ("2_index.sql".into(), 6),
        ),
        "dbmate" => (
            vec![
                f("1_users.sql", format!("-- migrate:up\n{CREATE}\n")),
                f(
                    "2_index.sql",
                    format!("-- migrate:up\n{INDEX}\n-- migrate:down\n{UNINDEX}\n"),
                ),
            ],
            ("2_index.sql".into(), 2),
            ("2_index.sql".into(), 4),
        ),
        _ => unreachable!(),
    }
}

#[test]
fn each_tools_layout_is_linted_in_place_on_the_original_files_and_lines() {
    for tool in ["diesel", "sqlx", "goose", "dbmate", "golang-migrate"] {
        let (files, up_at, down_at) = layout(tool);
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let dir = source(&refs);
        let d = dir.path().to_str().unwrap();
        let mut args = vec!["--format", "json", d];
        if matches!(tool, "sqlx" | "golang-migrate") {
            args.extend(["--from", tool]);
        }
        let (code, out, err) = lint(&args);
        assert_ne!(code, 0, "{tool}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect(&err);
        assert_eq!(v["summary"]["files"], 2, "{tool}: {out}");
        let found = |rule: &str| -> Vec<(String, u64, String)> {
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["rule"] == rule)
                .map(|f| {
                    let file = f["file"].as_str().unwrap();
                    let rel = file.strip_prefix(d).unwrap_or(file).trim_start_matches('/');
                    (
                        rel.to_string(),
                        f["line"].as_u64().unwrap(),
                        f["section"].as_str().unwrap_or("up").to_string(),
                    )
                })
                .collect()
        };
        assert_eq!(
            found("require-concurrent-index-creation"),
            [(up_at.0.clone(), up_at.1 as u64, "up".to_string())],
            "{tool}: {out}"
        );
        let down = found("require-concurrent-index-deletion");
        assert_eq!(
            down,
            [(down_at.0.clone(), down_at.1 as u64, "down".to_string())],
            "{tool}: {out}"
        );
        // The human report quotes the original file's line.
        let (_, human, _) = lint(&args[2..]);
        assert!(human.contains(INDEX), "{tool}: {human}");
        assert!(!human.contains("0 files"), "{tool}: {human}");
    }
}

#[test]
fn goose_no_transaction_is_honoured_in_place() {
    let concurrently = "CREATE INDEX CONCURRENTLY users_name_idx ON users (name);";
    let dir = source(&[
        ("1_users.sql", &format!("-- +goose Up\n{CREATE}\n")),
        (
            "2_index.sql",
            &format!("-- +goose NO TRANSACTION\n-- +goose Up\n{concurrently}\n"),
        ),
        (
            "3_index.sql",
            "-- +goose Up\nCREATE INDEX CONCURRENTLY users_id_idx ON users (id);\n",
        ),
    ]);
    let (_, out, err) = lint(&["--format", "json", dir.path().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).expect(&err);
    let in_tx: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "concurrently-in-transaction")
        .map(|f| f["file"].as_str().unwrap())
        .collect();
    assert_eq!(in_tx.len(), 1, "{out}");
    assert!(in_tx[0].ends_with("3_index.sql"), "{out}");
}

#[test]
fn a_directory_capstan_cannot_read_is_an_error_not_zero_files() {
    let dir = source(&[("schema.sql", "CREATE TABLE a (id int);\n")]);
    let (code, out, err) = lint(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 3, "{out}");
    assert!(
        err.contains("no diesel, sqlx, goose, dbmate or golang-migrate layout"),
        "{err}"
    );

    let dir = source(&[
        ("1_a.up.sql", "SELECT 1;\n"),
        ("1_a.down.sql", "SELECT 1;\n"),
    ]);
    let (code, _, err) = lint(&[dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("pass --from sqlx or --from golang-migrate"),
        "{err}"
    );

    // A file its tool refuses names the file and line.
    let dir = source(&[("1_a.sql", "SELECT 1;\n-- +goose Up\n")]);
    let (code, _, err) = lint(&["--from", "goose", dir.path().to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(
        err.contains("1_a.sql:1: SQL before `-- +goose Up`"),
        "{err}"
    );
}

//! `capstan lint` on services sharing a database: the boundary rules, with
//! the acting service found from `--service` or the linted directory.

use capstan_lint::{run_lint as run, LintArgs};
use clap::Parser;
use std::path::Path;

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

/// Two services: `users` owns schema `users`, `chirps` owns schema
/// `chirps` and keeps a foreign key into `users.users`.
fn project(dir: &Path) {
    std::fs::write(
        dir.join("capstan.toml"),
        "[[service]]\nname = \"users\"\ndir = \"users\"\nowns = [\"users\"]\n\n[[service]]\nname = \"chirps\"\ndir = \"chirps\"\nowns = [\"chirps\"]\n",
    )
    .unwrap();
    let users = dir.join("users");
    let chirps = dir.join("chirps");
    std::fs::create_dir(&users).unwrap();
    std::fs::create_dir(&chirps).unwrap();
    std::fs::write(
        users.join("0001_users.sql"),
        "CREATE SCHEMA users;\nCREATE TABLE users.users (id bigint PRIMARY KEY, email text);\n",
    )
    .unwrap();
    std::fs::write(
        chirps.join("0001_chirps.sql"),
        "CREATE SCHEMA chirps;\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint REFERENCES users.users (id));\n",
    )
    .unwrap();
    std::fs::write(
        chirps.join("0002_touch_users.sql"),
        "ALTER TABLE users.users ADD COLUMN x int;\n",
    )
    .unwrap();
    std::fs::write(
        chirps.join("0003_orphans.sql"),
        "CREATE TABLE public.orphans (id bigint PRIMARY KEY);\n",
    )
    .unwrap();
}

fn findings(out: &str) -> Vec<(String, String, String, String)> {
    let v: serde_json::Value = serde_json::from_str(out).expect("JSON");
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            let r = f["rule"].as_str().unwrap();
            r == "service-boundary" || r == "cross-service-reference"
        })
        .map(|f| {
            (
                f["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                f["rule"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
                f["message"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_directory_names_the_service_and_its_boundaries_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path());
    let config = tmp.path().join("capstan.toml");
    let chirps = tmp.path().join("chirps");
    let (code, out, err) = lint(&[
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
        "--no-cache",
        chirps.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    let found = findings(&out);
    assert_eq!(found.len(), 3, "{found:#?}");
    let (file, rule, severity, message) = &found[0];
    assert_eq!(
        (file.as_str(), rule.as_str(), severity.as_str()),
        ("0001_chirps.sql", "cross-service-reference", "warning")
    );
    assert!(
        message.contains("service `chirps`")
            && message.contains("service `users`")
            && message.contains("users.users"),
        "{message}"
    );
    let (file, rule, _, message) = &found[1];
    assert_eq!(
        (file.as_str(), rule.as_str()),
        ("0002_touch_users.sql", "service-boundary")
    );
    assert!(
        message.contains("service `chirps` alters table `users.users`, which service `users` owns"),
        "{message}"
    );
    let (file, rule, _, message) = &found[2];
    assert_eq!(
        (file.as_str(), rule.as_str()),
        ("0003_orphans.sql", "service-boundary")
    );
    assert!(
        message.starts_with(
            "`public.orphans` is owned by no service: add it to a service's `owns` in capstan.toml"
        ),
        "{message}"
    );

    // The users service's own directory is clean.
    let (code, out, err) = lint(&[
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
        "--no-cache",
        tmp.path().join("users").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(findings(&out).is_empty(), "{out}");
}

#[test]
fn an_unknown_service_is_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path());
    let config = tmp.path().join("capstan.toml");
    let (code, _, err) = lint(&[
        "--config",
        config.to_str().unwrap(),
        "--service",
        "nope",
        tmp.path().join("chirps").to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("no service named `nope`") && err.contains("`users`, `chirps`"),
        "{err}"
    );
}

#[test]
fn a_bad_service_key_names_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    project(tmp.path());
    let config = tmp.path().join("capstan.toml");
    std::fs::write(
        &config,
        "[[service]]\nname = \"users\"\nowns = [\"users\"]\n[[service]]\nname = \"chirps\"\nowns = [\"users.users\"]\n",
    )
    .unwrap();
    let (code, _, err) = lint(&[
        "--config",
        config.to_str().unwrap(),
        tmp.path().join("chirps").to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("line 6") && err.contains("overlaps"), "{err}");
}

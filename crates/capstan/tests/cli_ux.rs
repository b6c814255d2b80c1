//! The command line says what it is doing: progress lines, `-q`, one JSON
//! document from `plan --json` even when lint refuses, plural forms, help with
//! examples, shell completions, and no flags that do nothing.

mod common;

use common::{assert_code, stderr, stdout, Backend, Project};

const CREATE_USERS: &str = "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE users;\n";

#[test]
fn each_migration_is_announced_and_a_long_one_reports_elapsed_time() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    p.add(
        "0002_slow.sql",
        "-- capstan:up\nSELECT pg_sleep(1.5);\n-- capstan:down\nSELECT 1;\n",
    );
    let out = p
        .command(&["migrate", "up"])
        .env("CAPSTAN_PROGRESS_INTERVAL", "400ms")
        .output()
        .expect("run capstan");
    assert_code(&out, 0);
    let err = stderr(&out);
    let first = err.find("applying 0001_create_users …").expect(&err);
    let second = err.find("applying 0002_slow …").expect(&err);
    assert!(first < second, "{err}");
    assert!(err.contains("still applying 0002_slow ("), "{err}");
    assert!(!err.contains("still applying 0001"), "{err}");
    assert!(
        stdout(&out).contains("applied 2 migrations in"),
        "{}",
        stdout(&out)
    );

    // -q: results on stdout, no progress on stderr.
    let out = p.capstan(&["migrate", "down", "-q"]);
    assert_code(&out, 0);
    assert!(!stderr(&out).contains("rolling back"), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rolled back 1 migration in"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plan_json_is_one_document_with_lint_shaped_findings_when_lint_refuses() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // A table that serves traffic and holds data: on a small one, lock
    // findings are warnings.
    p.query("INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20000) g");
    p.add(
        "0002_index.sql",
        "-- capstan:up\nCREATE INDEX users_name ON users (name);\n-- capstan:down\nDROP INDEX users_name;\n",
    );

    let out = p.capstan(&["migrate", "plan", "--json"]);
    assert_code(&out, 9);
    let text = stdout(&out);
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect(&text);
    assert_eq!(docs.len(), 1, "exactly one JSON document: {text}");
    let doc = &docs[0];
    assert_eq!(doc["steps"][0]["version"], 2, "{doc}");
    assert_eq!(doc["lint"]["refused"], true, "{doc}");
    let f = &doc["lint"]["findings"][0];
    assert_eq!(f["rule"], "require-concurrent-index-creation", "{doc}");
    assert_eq!(f["severity"], "error", "{doc}");
    assert_eq!(f["line"], 2, "{doc}");
    assert_eq!(f["version"], 2, "{doc}");
    assert!(
        f["file"].as_str().unwrap().ends_with("0002_index.sql"),
        "{doc}"
    );

    // The same shape as `capstan lint --format json`.
    let lint = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["lint", "--format", "json"])
        .arg(p.migrations())
        .output()
        .expect("run capstan lint");
    let lint: serde_json::Value = serde_json::from_slice(&lint.stdout).expect("lint json");
    let mut from_lint = lint["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|x| x["rule"] == "require-concurrent-index-creation")
        .expect("the same finding from lint")
        .clone();
    let mut from_plan = f.clone();
    from_plan.as_object_mut().unwrap().remove("version");
    for v in [&mut from_lint, &mut from_plan] {
        v.as_object_mut().unwrap().remove("file");
    }
    assert_eq!(from_plan, from_lint);

    // `up --json` refuses with one document too, the findings in that shape.
    let out = p.capstan(&["migrate", "up", "--json"]);
    assert_code(&out, 9);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one document");
    assert_eq!(doc["error"]["kind"], "lint");
    assert_eq!(
        doc["error"]["findings"][0]["rule"],
        "require-concurrent-index-creation"
    );

    // Without refusal: the plan still carries an (empty) lint section.
    let out = p.capstan(&["migrate", "plan", "--json", "--unsafe-ok"]);
    assert_code(&out, 0);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one document");
    assert_eq!(doc["lint"]["refused"], false, "{doc}");
}

#[test]
fn help_has_examples_completions_print_and_idle_flags_are_gone() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(args)
            .output()
            .expect("run capstan")
    };
    for cmd in [
        &["--help"][..],
        &["migrate", "--help"],
        &["migrate", "up", "--help"],
        &["migrate", "plan", "--help"],
        &["gate", "--help"],
        &["fleet", "--help"],
        &["lint", "--help"],
        &["archive", "restore", "--help"],
        &["probe", "--help"],
        &["rehearse", "--help"],
    ] {
        let out = run(cmd);
        assert_code(&out, 0);
        assert!(
            stdout(&out).contains("Examples:"),
            "{cmd:?}: {}",
            stdout(&out)
        );
    }
    // Lock and statement timeouts exist where migrations run, nowhere else.
    assert!(stdout(&run(&["migrate", "up", "--help"])).contains("--lock-timeout"));
    for cmd in ["gate", "fleet", "archive"] {
        let help = stdout(&run(&[cmd, "--help"]));
        for flag in ["--lock-timeout", "--lock-retries", "--statement-timeout"] {
            assert!(!help.contains(flag), "{cmd} --help offers {flag}");
        }
        assert_code(&run(&[cmd, "--lock-timeout", "1s"]), 2);
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        assert_code(&out, 0);
        assert!(stdout(&out).contains("migrate"), "{shell}");
    }
    assert_code(&run(&["completions", "tcsh"]), 2);
    // -q and -v are global and exclusive.
    assert_code(&run(&["-q", "-v", "migrate", "status"]), 2);
}

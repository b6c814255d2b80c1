//! End-to-end tests of the `capstan migrate` commands and of bad input, on real
//! Postgres and real SQLite. Every bad input must leave the database untouched.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

const CREATE_USERS: &str = "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE users;\n";
const ADD_EMAIL: &str =
    "-- capstan:up\nALTER TABLE users ADD COLUMN email text;\n-- capstan:down\nALTER TABLE users DROP COLUMN email;\n";
const DROP_NAME: &str = "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users ADD COLUMN name text;\n";

/// True when capstan has recorded nothing and created no user table.
fn untouched(p: &Project) -> bool {
    let tables = match p.backend {
        Backend::Postgres => p.query(
            // capstan_archive holds what `down` archived before dropping it.
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'capstan', 'capstan_archive')",
        ),
        Backend::Sqlite => {
            if !p.dir.path().join("app.db").exists() {
                return true;
            }
            p.query("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'capstan%' AND name NOT LIKE 'sqlite%'")
        }
    };
    let recorded = match p.backend {
        Backend::Postgres => {
            if p.query("SELECT to_regclass('capstan.migrations') IS NULL") == "t" {
                "0".into()
            } else {
                p.query("SELECT count(*) FROM capstan.migrations")
            }
        }
        Backend::Sqlite => {
            let has =
                p.query("SELECT count(*) FROM sqlite_master WHERE name = 'capstan_migrations'");
            if has == "0" {
                "0".into()
            } else {
                p.query("SELECT count(*) FROM capstan_migrations")
            }
        }
    };
    tables == "0" && recorded == "0"
}

fn up_status_down_round_trip_on_both_backends(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.add("0002_add_email.sql", ADD_EMAIL);
    assert_eq!(
        p.states(),
        vec![(1, "pending".into()), (2, "pending".into())]
    );

    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("applied 2 migrations"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        p.states(),
        vec![(1, "applied".into()), (2, "applied".into())]
    );
    p.query("INSERT INTO users (id, name, email) VALUES (1, 'a', 'a@example.com')");

    let out = p.capstan(&["migrate", "down"]);
    assert_code(&out, 0);
    assert_eq!(
        p.states(),
        vec![(1, "applied".into()), (2, "pending".into())]
    );
    let out = p.capstan(&["migrate", "down", "--to", "0"]);
    assert_code(&out, 0);
    assert!(untouched(&p), "{b:?}: down --to 0 leaves nothing");
}
backends!(up_status_down_round_trip_on_both_backends);

fn status_json_has_the_documented_shape(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let s = p.status();
    let m = &s["migrations"][0];
    for key in ["version", "name", "phase", "state"] {
        assert!(!m[key].is_null(), "{b:?}: missing {key} in {s}");
    }
    let applied = &m["applied"];
    for key in [
        "applied_at",
        "applied_by",
        "binary_version",
        "duration_ms",
        "checksum",
    ] {
        assert!(
            !applied[key].is_null(),
            "{b:?}: missing applied.{key} in {s}"
        );
    }
    assert_eq!(
        applied["applied_by"].as_str().unwrap().split('@').next(),
        Some("tester")
    );
}
backends!(status_json_has_the_documented_shape);

/// Registers a live instance that embeds only `versions`, as a running binary would.
fn register(p: &Project, id: &str, version: &str, versions: &[u64]) {
    let list = versions
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    // Create capstan's tables first (a no-op `up --to 0`).
    assert_code(&p.capstan(&["migrate", "up", "--to", "0"]), 0);
    match p.backend {
        Backend::Postgres => p.query(&format!(
            "INSERT INTO capstan.fleet (instance_id, app, version, set_hash, versions) VALUES ('{id}', 'chirpy', '{version}', 'h', '{{{list}}}')"
        )),
        Backend::Sqlite => p.query(&format!(
            "INSERT INTO capstan_fleet (instance_id, app, version, set_hash, versions, started_at, last_seen) VALUES ('{id}', 'chirpy', '{version}', 'h', '{list}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        )),
    };
}

fn contract_migrations_wait_until_no_live_instance_needs_them(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.write("0002_drop_name.sql", DROP_NAME);
    p.add("0003_add_email.sql", ADD_EMAIL);
    register(&p, "v1-pod-a", "1.0.0", &[1]);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 6);
    let text = stdout(&out);
    assert!(text.contains("stopped before 0002_drop_name"), "{text}");
    assert!(
        text.contains("chirpy 1.0.0 (v1-pod-a"),
        "{b:?}: names the blocking instance: {text}"
    );
    assert_eq!(
        p.states(),
        vec![
            (1, "applied".into()),
            (2, "pending".into()),
            (3, "pending".into())
        ]
    );
    let fleet = p.capstan(&["fleet", "--json"]);
    assert_code(&fleet, 0);
    assert!(
        stdout(&fleet).contains("\"live\":true"),
        "{}",
        stdout(&fleet)
    );

    // --wait returns as soon as the instance departs.
    let waiting = p
        .command(&["migrate", "up", "--wait", "--timeout", "60s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let history = p.history_table();
    let depart = match b {
        Backend::Postgres => "UPDATE capstan.fleet SET departed_at = now()",
        Backend::Sqlite => {
            "UPDATE capstan_fleet SET departed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
        }
    };
    p.query(depart);
    let out = waiting.wait_with_output().unwrap();
    assert_code(&out, 0);
    let count = p.query(&format!("SELECT count(*) FROM {history}"));
    assert_eq!(count, "3", "{b:?}");
}
backends!(contract_migrations_wait_until_no_live_instance_needs_them);

fn force_contract_overrides_the_fleet_loudly_and_is_recorded(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.add("0002_drop_name.sql", DROP_NAME);
    register(&p, "v1-pod-b", "1.0.0", &[1]);
    let out = p.capstan(&["migrate", "up", "--force-contract"]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("WARNING: forcing contract migration 0002_drop_name"),
        "{}",
        stderr(&out)
    );
    let note = p.query(&format!(
        "SELECT error FROM {} WHERE version = 2",
        p.history_table()
    ));
    assert!(
        note.contains("forced past live instances") && note.contains("v1-pod-b"),
        "{b:?}: {note}"
    );
}
backends!(force_contract_overrides_the_fleet_loudly_and_is_recorded);

fn gate_reports_pending_and_contract_ahead(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.add("0002_add_email.sql", ADD_EMAIL);
    let out = p.capstan(&["gate", "--app", "chirpy"]);
    assert_code(&out, 8);
    assert!(
        stdout(&out).contains("run `chirpy migrate up`"),
        "{}",
        stdout(&out)
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert_code(&p.capstan(&["gate"]), 0);
    // A newer set applied a contract migration; the old directory is now too old.
    p.add("0003_drop_name.sql", DROP_NAME);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    std::fs::remove_file(p.migrations().join("0003_drop_name.sql")).unwrap();
    p.hash();
    let out = p.capstan(&["gate", "--json"]);
    assert_code(&out, 8);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ahead_contract"][0]["label"], "0003_drop_name", "{v}");
}
backends!(gate_reports_pending_and_contract_ahead);

fn plan_shows_sql_and_changes_nothing(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.add("0002_drop_name.sql", DROP_NAME);
    let out = p.capstan(&["migrate", "plan"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("CREATE TABLE users"), "{text}");
    assert!(
        text.contains("DROP COLUMN"),
        "no live instance blocks it: {text}"
    );
    let out = p.capstan(&["migrate", "plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["steps"].as_array().unwrap().len(), 2);
    assert!(untouched(&p), "{b:?}: plan must not change the database");
}
backends!(plan_shows_sql_and_changes_nothing);

fn down_refuses_before_touching_anything_when_a_down_section_is_missing(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.write(
        "0002_no_down.sql",
        "-- capstan:up\nCREATE TABLE audit (id int);\n",
    );
    p.add("0003_add_email.sql", ADD_EMAIL);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let out = p.capstan(&["migrate", "down", "--to", "0"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("0002_no_down: no `-- capstan:down` section"),
        "{}",
        stderr(&out)
    );
    // 0003 has a down section but must not have been rolled back.
    assert!(p.states().iter().all(|(_, s)| s == "applied"), "{b:?}");
}
backends!(down_refuses_before_touching_anything_when_a_down_section_is_missing);

fn verify_passes_a_sound_set_and_names_what_a_bad_down_leaves_behind(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.write("0002_add_email.sql", ADD_EMAIL);
    p.add("0003_drop_name.sql", DROP_NAME);
    let out = p.capstan(&["migrate", "verify"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("verify passed"), "{}", stdout(&out));

    p.add(
        "0004_bad_down.sql",
        "-- capstan:up\nCREATE TABLE audit (id int);\nCREATE INDEX audit_id ON audit (id);\n-- capstan:down\nDROP INDEX audit_id;\n",
    );
    let out = p.capstan(&["migrate", "verify", "--json"]);
    assert_code(&out, 1);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = &report["steps"][3];
    let diffs = step["differences"].to_string();
    assert!(diffs.contains("audit"), "{b:?}: {diffs}");
    assert!(untouched(&p), "{b:?}: verify runs on a scratch database");
    if b == Backend::Postgres {
        let left = common::psql(
            &common::pg_admin_url(),
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'capstan_verify_%'",
        );
        assert_eq!(left, "0", "scratch databases are dropped");
    }
}
backends!(verify_passes_a_sound_set_and_names_what_a_bad_down_leaves_behind);

#[test]
fn rebase_renumbers_my_migration_after_a_merge() {
    let p = Project::new(Backend::Sqlite);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.add("0002_add_email.sql", ADD_EMAIL);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // After the merge, both branches' 0002 exist and the sum conflicts.
    p.write(
        "0002_add_bio.sql",
        "-- capstan:up\nALTER TABLE users ADD COLUMN bio text;\n",
    );
    let out = p.capstan(&["migrate", "status"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("used twice"), "{}", stderr(&out));
    // Moving the applied one is refused.
    let out = p.capstan(&["migrate", "rebase", "0002_add_email.sql"]);
    assert_code(&out, 5);
    let out = p.capstan(&["migrate", "rebase", "0002_add_bio.sql"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("0003_add_bio.sql"),
        "{}",
        stdout(&out)
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert_eq!(p.states().len(), 3);
}

fn baseline_adopts_an_existing_database(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    p.write("0002_add_email.sql", ADD_EMAIL);
    p.add(
        "0003_add_bio.sql",
        "-- capstan:up\nALTER TABLE users ADD COLUMN bio text;\n",
    );
    p.query("CREATE TABLE users (id integer PRIMARY KEY, name text, email text)");
    let out = p.capstan(&["migrate", "baseline", "2"]);
    assert_code(&out, 0);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert!(p.states().iter().all(|(_, s)| s == "applied"));
    let out = p.capstan(&["migrate", "baseline", "2"]);
    assert_code(&out, 5);
}
backends!(baseline_adopts_an_existing_database);

fn import_from_goose_then_apply(b: Backend) {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../capstan-migrate/tests/fixtures/import/dbmate/source"
    );
    let p = Project::new(b);
    std::fs::remove_dir(p.migrations()).unwrap();
    let out = p.capstan(&["migrate", "import", "--from", "dbmate", fixtures]);
    assert_code(&out, 0);
    let out = p.capstan(&["migrate", "up"]);
    if b == Backend::Sqlite {
        // The fixtures are Postgres SQL; SQLite may reject some of it, but
        // the import itself must produce a valid directory.
        assert_code(&p.capstan(&["migrate", "status"]), 0);
        return;
    }
    assert_code(&out, 0);
    assert!(p.states().iter().all(|(_, s)| s == "applied"));
}
backends!(import_from_goose_then_apply);

#[test]
fn the_embedded_default_is_sqlite_capstan_db_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    assert_code(&run(&["migrate", "new", "create users"]), 0);
    std::fs::write(
        dir.path().join("migrations/0001_create_users.sql"),
        CREATE_USERS,
    )
    .unwrap();
    assert_code(&run(&["migrate", "hash"]), 0);
    let out = run(&["migrate", "status"]);
    assert_code(&out, 0);
    assert!(
        !dir.path().join("capstan.db").exists(),
        "status creates nothing"
    );
    assert_code(&run(&["migrate", "up"]), 0);
    assert!(dir.path().join("capstan.db").exists());
}

#[test]
fn flags_win_over_environment_which_wins_over_capstan_toml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("m")).unwrap();
    std::fs::write(dir.path().join("m/0001_create_users.sql"), CREATE_USERS).unwrap();
    std::fs::write(
        dir.path().join("capstan.toml"),
        "database_url = \"sqlite://from_file.db\"\nmigrations_dir = \"m\"\n",
    )
    .unwrap();
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(["migrate", "hash"]).current_dir(dir.path());
        assert_code(&c.output().unwrap(), 0);
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(["migrate", "up"])
            .current_dir(dir.path())
            .env_remove("DATABASE_URL");
        if let Some(e) = env {
            c.env("DATABASE_URL", e);
        }
        if let Some(f) = flag {
            c.args(["--database", f]);
        }
        assert_code(&c.output().unwrap(), 0);
    };
    run(None, None);
    assert!(dir.path().join("from_file.db").exists());
    run(Some("sqlite://from_env.db"), None);
    assert!(dir.path().join("from_env.db").exists());
    run(Some("sqlite://from_env2.db"), Some("sqlite://from_flag.db"));
    assert!(dir.path().join("from_flag.db").exists());
    assert!(!dir.path().join("from_env2.db").exists());
}

/// Each bad migration directory: exit 3, the message names the file (and line),
/// and nothing is applied — not even the valid migrations before it.
fn bad_migration_files_are_refused_with_file_and_line_and_nothing_is_applied(b: Backend) {
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "0002_x.sql",
            b"-- capstan:phase sideways\n-- capstan:up\nSELECT 1;\n",
            "0002_x.sql:1: unknown phase",
        ),
        (
            "0002_x.sql",
            b"-- capstan:up\nSELECT 1;\n-- capstan:frobnicate\n",
            "0002_x.sql:3: unknown directive",
        ),
        (
            "0002_x.sql",
            b"CREATE TABLE t (id int);\n",
            "0002_x.sql:1: SQL before",
        ),
        (
            "0002_x.sql",
            b"-- capstan:up\n-- nothing here\n",
            "0002_x.sql: the up section holds no SQL",
        ),
        ("0002_x.sql", b"", "0002_x.sql: the file is empty"),
        (
            "0002_x.sql",
            b"-- capstan:up\nSELECT '\xff\xfe';\n",
            "0002_x.sql:2: not valid UTF-8",
        ),
        (
            "0002_X-y.sql",
            b"-- capstan:up\nSELECT 1;\n",
            "0002_X-y.sql: file name must look like",
        ),
        (
            "0001_dup.sql",
            b"-- capstan:up\nSELECT 1;\n",
            "version 0001 is used twice",
        ),
        (
            "0003_gap.sql",
            b"-- capstan:up\nSELECT 1;\n",
            "migration 0002 is missing",
        ),
        (
            "0002_x.sql",
            b"-- capstan:up\nSELECT 'unterminated;\n",
            "0002_x.sql:2: string literal is never closed",
        ),
        (
            "0002_x.sql",
            b"-- capstan:up\nBEGIN;\nSELECT 1;\nCOMMIT;\n",
            "0002_x.sql:2: `BEGIN`",
        ),
    ];
    for (name, text, needle) in cases {
        let p = Project::new(b);
        p.write("0001_create_users.sql", CREATE_USERS);
        std::fs::write(p.migrations().join(name), text).unwrap();
        // Write the sum without validation, so the file itself is what fails.
        let files: Vec<_> = std::fs::read_dir(p.migrations())
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                (path, bytes)
            })
            .collect();
        capstan_migrate::write_sum(&p.migrations(), &files).unwrap();
        let out = p.capstan(&["migrate", "up"]);
        assert_code(&out, 3);
        assert!(
            stderr(&out).contains(needle),
            "{b:?} {name}: expected `{needle}` in\n{}",
            stderr(&out)
        );
        assert!(untouched(&p), "{b:?} {name}: nothing may be applied");
    }
}
backends!(bad_migration_files_are_refused_with_file_and_line_and_nothing_is_applied);

#[test]
fn a_huge_file_is_refused() {
    let p = Project::new(Backend::Sqlite);
    let mut text = b"-- capstan:up\n".to_vec();
    text.resize(17 * 1024 * 1024, b' ');
    p.write("0001_huge.sql", std::str::from_utf8(&text).unwrap());
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("0001_huge.sql"), "{}", stderr(&out));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
}

fn a_missing_or_stale_sum_is_refused_and_nothing_is_applied(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_users.sql", CREATE_USERS);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("capstan.sum: missing"),
        "{}",
        stderr(&out)
    );
    p.hash();
    p.write("0002_add_email.sql", ADD_EMAIL);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("not in the sum 0002_add_email.sql"),
        "{}",
        stderr(&out)
    );
    assert!(untouched(&p), "{b:?}");
}
backends!(a_missing_or_stale_sum_is_refused_and_nothing_is_applied);

#[test]
fn bad_config_names_the_key() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        "[migrate]\nlock_timeuot = \"1s\"\n",
    )
    .unwrap();
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("lock_timeuot"), "{}", stderr(&out));
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert!(untouched(&p));
}

#[test]
fn unreachable_database_and_bad_urls_never_print_the_password() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    for (url, code) in [
        ("postgres://app:hunter2@127.0.0.1:1/app", 4),
        // No host: libpq's default socket directory, where nothing answers.
        ("postgres://app:hunter2@/app", 4),
        ("mysql://app:hunter2@localhost/app", 3),
        (
            "postgres://app:hunter2@127.0.0.1:5432/app?sslmode=verify-full",
            3,
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["migrate", "up", "--dir"])
            .arg(p.migrations())
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        assert_code(&out, code);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            !all.contains("hunter2"),
            "password printed for {url}: {all}"
        );
        assert!(all.contains("***") || code == 3, "{all}");
    }
    let out = p.capstan(&["migrate", "--help"]);
    assert!(!stdout(&out).contains("hunter2"));
}

#[test]
fn permission_denied_is_explained_and_changes_nothing() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    let role = format!("weak_{}", std::process::id());
    p.query(&format!(
        "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"
    ));
    p.query(&format!(
        "REVOKE CREATE ON DATABASE {} FROM PUBLIC",
        p.url.rsplit('/').next().unwrap()
    ));
    p.query("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
    let weak_url = p.url.replacen("postgres@", &format!("{role}@"), 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["migrate", "up", "--database", &weak_url, "--dir"])
        .arg(p.migrations())
        .output()
        .unwrap();
    assert_code(&out, 4);
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("CREATE"), "{}", stderr(&out));
    assert!(untouched(&p));
    p.query(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn a_sqlite_file_in_a_missing_directory_is_refused_cleanly() {
    let p = Project::new(Backend::Sqlite);
    p.add("0001_create_users.sql", CREATE_USERS);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args([
            "migrate",
            "up",
            "--database",
            "sqlite:///nonexistent-dir/x.db",
            "--dir",
        ])
        .arg(p.migrations())
        .output()
        .unwrap();
    assert_code(&out, 4);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

#[test]
fn plan_and_up_refuse_pending_migrations_with_lint_errors_unless_unsafe_ok() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // A table that serves traffic and holds data: on a small one, lock
    // findings are warnings.
    p.query("INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 20000) g");
    // An index built without CONCURRENTLY on a table that already serves traffic.
    p.add(
        "0002_index_name.sql",
        "-- capstan:up\nCREATE INDEX users_name ON users (name);\n-- capstan:down\nDROP INDEX users_name;\n",
    );
    let out = p.capstan(&["migrate", "plan"]);
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains("0002_index_name.sql:2:1: require-concurrent-index-creation"),
        "{}",
        stderr(&out)
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 9);
    assert_eq!(p.states()[1], (2, "pending".to_string()), "nothing was run");

    // A suppression with a reason is honoured.
    p.add(
        "0002_index_name.sql",
        "-- capstan:up\n-- capstan:ignore require-concurrent-index-creation users has ten rows\nCREATE INDEX users_name ON users (name);\n-- capstan:down\nDROP INDEX users_name;\n",
    );
    assert_code(&p.capstan(&["migrate", "plan"]), 0);

    // --unsafe-ok goes ahead and says so in history.
    p.add(
        "0002_index_name.sql",
        "-- capstan:up\nCREATE INDEX users_name ON users (name);\n-- capstan:down\nDROP INDEX users_name;\n",
    );
    let out = p.capstan(&["migrate", "up", "--unsafe-ok"]);
    assert_code(&out, 0);
    assert!(stderr(&out).contains("--unsafe-ok"), "{}", stderr(&out));
    let note = p.query("SELECT error FROM capstan.migrations WHERE version = 2");
    assert!(
        note.contains("unsafe-ok") && note.contains("require-concurrent-index-creation"),
        "{note}"
    );
}

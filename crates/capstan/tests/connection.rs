//! The binary and its database connection: passwords never printed (flag,
//! DATABASE_URL, capstan.toml, --json, rehearse; URLs and key=value strings),
//! a server that accepts TCP and never answers fails within connect_timeout,
//! a bad connect_timeout is bad input, every command says which database it
//! uses and where the URL came from, and Postgres-only migrations are not
//! quietly run on the embedded SQLite default.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{assert_code, stderr, stdout, Backend, Project};

/// A port that accepts TCP connections and never answers (held for the
/// life of the test process).
fn silent_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    port
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    capstan_testkit::free_port()
}

fn capstan(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CAPSTAN_REHEARSE_DATABASE")
        .env("HOME", dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run capstan")
}

fn project_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("migrations");
    std::fs::create_dir(&m).expect("mkdir");
    std::fs::write(
        m.join("0001_init.sql"),
        "-- capstan:up\nCREATE TABLE t (id INTEGER PRIMARY KEY);\n",
    )
    .expect("write");
    let out = capstan(dir.path(), &["migrate", "hash", "--dir", "migrations"], &[]);
    assert_code(&out, 0);
    dir
}

const PASSWORDS: &[&str] = &["p/a?s#s@w:rd", "Zx9@#?/q&w=e", "it's a 'secret' \\ pw"];

fn assert_hidden(out: &Output, pw: &str, what: &str) {
    let encoded =
        percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC).to_string();
    let all = format!("{}{}", stdout(out), stderr(out));
    assert!(
        !all.contains(pw) && !all.contains(&encoded),
        "{what}: the password shows:\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
    assert_ne!(out.status.code(), Some(0), "{what}: should fail");
}

#[test]
fn passwords_never_show_through_any_channel() {
    let dir = project_dir();
    let d = dir.path();
    let silent = silent_port();
    for (i, pw) in PASSWORDS.iter().enumerate() {
        // Every channel against a closed port; a silent server (each try
        // takes connect_timeout) with the first password, status only.
        let ports = if i == 0 {
            vec![closed_port(), silent]
        } else {
            vec![closed_port()]
        };
        for port in ports {
            let every_channel = port != silent;
            let kv_pw = pw.replace('\\', "\\\\").replace('\'', "\\'");
            let strings = [
                format!("postgres://app:{pw}@127.0.0.1:{port}/app?connect_timeout=1"),
                format!("postgresql://app:{pw}@127.0.0.1:{port},127.0.0.1:{port}/app?connect_timeout=1&sslmode=require"),
                format!("host=127.0.0.1 port={port} user=app password='{kv_pw}' connect_timeout=1"),
                // Bad input: refused before connecting, still hidden.
                format!("postgres://app:{pw}@127.0.0.1:{port}/app?sslmode=sometimes"),
                format!("host=127.0.0.1 password='{kv_pw}' connect_timeout=soon"),
            ];
            for s in &strings {
                let cmds: &[&[&str]] = if every_channel {
                    &[
                        &["migrate", "status"],
                        &["migrate", "up"],
                        &["gate"],
                        &["migrate", "status", "--json"],
                    ]
                } else {
                    &[&["migrate", "status", "--json"]]
                };
                for cmd in cmds {
                    let mut args = cmd.to_vec();
                    args.extend(["--dir", "migrations"]);
                    // The flag.
                    let mut with_flag = args.clone();
                    with_flag.extend(["--database", s.as_str()]);
                    assert_hidden(
                        &capstan(d, &with_flag, &[]),
                        pw,
                        &format!("--database {cmd:?}"),
                    );
                    // DATABASE_URL.
                    assert_hidden(
                        &capstan(d, &args, &[("DATABASE_URL", s)]),
                        pw,
                        &format!("DATABASE_URL {cmd:?}"),
                    );
                }
                if !every_channel {
                    continue;
                }
                // capstan.toml (TOML basic string: escape \ and ").
                let toml_value = s.replace('\\', "\\\\").replace('"', "\\\"");
                std::fs::write(
                    d.join("capstan.toml"),
                    format!("database_url = \"{toml_value}\"\n"),
                )
                .expect("write capstan.toml");
                for cmd in [&["migrate", "status"][..], &["migrate", "status", "--json"]] {
                    let mut args = cmd.to_vec();
                    args.extend(["--dir", "migrations"]);
                    assert_hidden(
                        &capstan(d, &args, &[]),
                        pw,
                        &format!("capstan.toml {cmd:?}"),
                    );
                }
                // An unquoted URL in capstan.toml is a TOML error, still hidden.
                std::fs::write(d.join("capstan.toml"), format!("database_url = {s}\n"))
                    .expect("write capstan.toml");
                assert_hidden(
                    &capstan(d, &["migrate", "status", "--dir", "migrations"], &[]),
                    pw,
                    "capstan.toml, unquoted",
                );
                std::fs::remove_file(d.join("capstan.toml")).expect("rm capstan.toml");
                // rehearse's server for scratch databases.
                assert_hidden(
                    &capstan(
                        d,
                        &[
                            "rehearse",
                            "--release",
                            "1.0.0=true",
                            "--release",
                            "2.0.0=true",
                            "--database",
                            s.as_str(),
                        ],
                        &[],
                    ),
                    pw,
                    "rehearse --database",
                );
            }
        }
    }
}

#[test]
fn a_server_that_never_answers_fails_within_connect_timeout() {
    let dir = project_dir();
    let port = silent_port();
    let url = format!("postgres://app@127.0.0.1:{port}/app?connect_timeout=1");
    for cmd in [&["migrate", "up"][..], &["migrate", "status"], &["gate"]] {
        let mut args = cmd.to_vec();
        args.extend(["--dir", "migrations", "--database", url.as_str()]);
        let started = Instant::now();
        let out = capstan(dir.path(), &args, &[]);
        let took = started.elapsed();
        assert_code(&out, 4);
        assert!(took < Duration::from_secs(5), "{cmd:?} took {took:?}");
        assert!(
            stderr(&out).contains("connect_timeout"),
            "{cmd:?}: {}",
            stderr(&out)
        );
    }
    // PGCONNECT_TIMEOUT is read when the URL says nothing.
    let url = format!("postgres://app@127.0.0.1:{port}/app");
    let started = Instant::now();
    let out = capstan(
        dir.path(),
        &[
            "migrate",
            "status",
            "--dir",
            "migrations",
            "--database",
            &url,
        ],
        &[("PGCONNECT_TIMEOUT", "1")],
    );
    assert_code(&out, 4);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_bad_connect_timeout_is_bad_input() {
    let dir = project_dir();
    for (url, env) in [
        ("postgres://app@127.0.0.1/app?connect_timeout=abc", None),
        ("postgres://app@127.0.0.1/app?connect_timeout=0", None),
        ("host=127.0.0.1 connect_timeout=-5", None),
        (
            "postgres://app@127.0.0.1/app",
            Some(("PGCONNECT_TIMEOUT", "ten")),
        ),
        (
            "postgres://app@127.0.0.1/app?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
            None,
        ),
    ] {
        let env: Vec<(&str, &str)> = env.into_iter().collect();
        let out = capstan(
            dir.path(),
            &[
                "migrate",
                "status",
                "--dir",
                "migrations",
                "--database",
                url,
                "--json",
            ],
            &env,
        );
        assert_code(&out, 3);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(v["error"]["kind"], "bad-input", "{url}");
    }
}

#[test]
fn every_command_says_which_database_and_where_it_came_from() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_init.sql", "-- capstan:up\nCREATE TABLE t (id int);\n");
    let shown_db = p.pg_db().expect("a postgres project").to_string();
    // --database (the project's commands pass it).
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("using database postgres://")
            && stderr(&out).contains("(from --database)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&shown_db), "{}", stderr(&out));
    // DATABASE_URL, with --json: the line is on stderr, stdout is JSON only.
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["migrate", "status", "--json", "--dir"])
        .arg(p.migrations())
        .current_dir(p.dir.path())
        .env("DATABASE_URL", &p.url)
        .output()
        .expect("run");
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("(from DATABASE_URL)"),
        "{}",
        stderr(&out)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("stdout is one JSON document");
    // capstan.toml.
    std::fs::write(
        p.dir.path().join("capstan.toml"),
        format!("database_url = \"{}\"\n", p.url),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["migrate", "status", "--dir"])
        .arg(p.migrations())
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run");
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("capstan.toml (database_url)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_embedded_default_is_named_and_refused_for_postgres_sql() {
    // SQLite-friendly SQL: the default works, and says so.
    let dir = project_dir();
    let out = capstan(dir.path(), &["migrate", "up", "--dir", "migrations"], &[]);
    assert_code(&out, 0);
    assert!(
        stderr(&out).contains("using database sqlite://capstan.db (from the embedded default"),
        "{}",
        stderr(&out)
    );
    assert!(dir.path().join("capstan.db").exists());

    // Postgres-only SQL with no URL anywhere: refused, nothing created.
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("migrations");
    std::fs::create_dir(&m).expect("mkdir");
    std::fs::write(
        m.join("0001_init.sql"),
        "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY, prefs jsonb);\n",
    )
    .expect("write");
    assert_code(
        &capstan(dir.path(), &["migrate", "hash", "--dir", "migrations"], &[]),
        0,
    );
    let out = capstan(dir.path(), &["migrate", "up", "--dir", "migrations"], &[]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("embedded default sqlite://capstan.db")
            && err.contains("jsonb")
            && err.contains("0001_init.sql line 2"),
        "{err}"
    );
    assert!(
        !dir.path().join("capstan.db").exists(),
        "capstan.db was created"
    );
    // Asking for SQLite explicitly is honoured.
    let out = capstan(
        dir.path(),
        &[
            "migrate",
            "up",
            "--dir",
            "migrations",
            "--database",
            "sqlite://capstan.db",
        ],
        &[],
    );
    assert_code(&out, 0);
}

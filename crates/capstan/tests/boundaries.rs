//! Services sharing one database: `migrate up` refuses a migration that
//! changes what another service owns (even with `--unsafe-ok`), prints a
//! cross-service reference as a warning, and `capstan deps` maps the
//! couplings from the live catalog and the migration sets.

mod common;

use common::{assert_code, stderr, stdout, Backend, Project};

/// `users` owns schema `users` (its migrations are in `users/`), `chirps`
/// owns schema `chirps` (the project's `migrations/`).
const SERVICES: &str = "[[service]]\nname = \"users\"\ndir = \"users\"\nowns = [\"users\"]\n\n[[service]]\nname = \"chirps\"\ndir = \"migrations\"\nowns = [\"chirps\"]\n";

fn project() -> Project {
    let p = Project::new(Backend::Postgres);
    std::fs::write(p.dir.path().join("capstan.toml"), SERVICES).unwrap();
    std::fs::create_dir(p.dir.path().join("users")).unwrap();
    std::fs::write(
        p.dir.path().join("users/0001_users.sql"),
        "CREATE SCHEMA users;\nCREATE TABLE users.users (id bigint PRIMARY KEY, email text);\n",
    )
    .unwrap();
    // The users service's schema, as its own deploy left it.
    p.query("CREATE SCHEMA users; CREATE TABLE users.users (id bigint PRIMARY KEY, email text);");
    p
}

fn columns(p: &Project) -> String {
    p.query("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_schema = 'users' AND table_name = 'users'")
}

#[test]
fn up_refuses_a_migration_that_alters_another_services_table() {
    let p = project();
    p.add("0001_schema.sql", "-- capstan:up\nCREATE SCHEMA chirps;\n");
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_chirps.sql",
        "-- capstan:up\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users.users (id), body text);\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    // The foreign key is hidden coupling: printed, never refused.
    let err = stderr(&out);
    assert!(
        err.contains("warning: cross-service-reference")
            && err.contains("service `chirps`")
            && err.contains("service `users`"),
        "{err}"
    );

    p.add(
        "0003_touch_users.sql",
        "-- capstan:up\nALTER TABLE users.users ADD COLUMN x int;\n",
    );
    for flags in [
        &["migrate", "up"][..],
        &["migrate", "up", "--unsafe-ok"][..],
    ] {
        let out = p.capstan(flags);
        assert_code(&out, 9);
        let err = stderr(&out);
        assert!(
            err.contains("service-boundary")
                && err.contains(
                    "service `chirps` alters table `users.users`, which service `users` owns"
                ),
            "{err}"
        );
        assert!(err.contains("--unsafe-ok does not override it"), "{err}");
        assert!(err.contains("fix ownership in capstan.toml"), "{err}");
    }
    assert_eq!(columns(&p), "id,email");
    assert_eq!(
        p.count("SELECT count(*) FROM capstan.migrations WHERE version = 3"),
        0
    );
}

#[test]
fn boundaries_hold_on_the_first_migration_too() {
    let p = project();
    p.add(
        "0001_orphans.sql",
        "-- capstan:up\nCREATE TABLE public.orphans (id bigint PRIMARY KEY);\n",
    );
    let out = p.capstan(&["migrate", "up", "--unsafe-ok"]);
    assert_code(&out, 9);
    let err = stderr(&out);
    assert!(
        err.contains(
            "`public.orphans` is owned by no service: add it to a service's `owns` in capstan.toml"
        ),
        "{err}"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM pg_tables WHERE tablename = 'orphans'"),
        0
    );
    let _ = stdout(&out);
}

#[test]
fn the_first_up_reports_cross_service_references_too() {
    let p = project();
    p.add(
        "0001_chirps.sql",
        "-- capstan:up\nCREATE SCHEMA chirps;\nCREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users.users (id));\n",
    );
    // Nothing applied yet: the rules that protect a live schema wait, but
    // the coupling is reported (a warning, not a refusal).
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("warning: cross-service-reference")
            && err.contains("service `chirps`")
            && err.contains("service `users`"),
        "{err}"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM capstan.migrations WHERE service = 'chirps' AND version = 1"),
        1
    );
}

fn deps(p: &Project, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .arg("deps")
        .args(args)
        .current_dir(p.dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run capstan deps")
}

#[test]
fn deps_maps_the_live_catalog() {
    let p = project();
    p.query(
        "CREATE SCHEMA chirps;
         CREATE TABLE chirps.chirps (id bigint PRIMARY KEY, author_id bigint NOT NULL REFERENCES users.users (id), body text);
         CREATE VIEW chirps.authors AS SELECT u.id, u.email FROM users.users u JOIN chirps.chirps c ON c.author_id = u.id;
         CREATE FUNCTION chirps.author_count() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN RETURN (SELECT count(*) FROM users.users); END $$;
         CREATE TABLE public.orphans (id bigint PRIMARY KEY);",
    );
    let out = deps(&p, &["--database", &p.url, "--format", "json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let edges: Vec<(String, String, String, String, String)> = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "catalog")
        .map(|e| {
            let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
            (
                s(&e["kind"]),
                s(&e["from"]["object"]),
                s(&e["from"]["service"]),
                s(&e["to"]["object"]),
                s(&e["to"]["service"]),
            )
        })
        .collect();
    for (kind, from) in [
        ("foreign-key", "chirps.chirps"),
        ("view", "chirps.authors"),
        ("function", "chirps.author_count"),
    ] {
        assert!(
            edges.contains(&(
                kind.into(),
                from.into(),
                "chirps".into(),
                "users.users".into(),
                "users".into()
            )),
            "{kind} from {from} missing in {edges:#?}"
        );
    }
    assert_eq!(edges.len(), 3, "{edges:#?}");
    assert!(
        v["unowned"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["object"] == "public.orphans" && u["kind"] == "table"),
        "{v}"
    );

    let out = deps(&p, &["--database", &p.url, "--format", "dot"]);
    assert_code(&out, 0);
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph services {"), "{dot}");
    assert!(dot.contains("\"chirps\" -> \"users\" [label=\""), "{dot}");
    assert!(
        dot.contains("foreign-key chirps.chirps -> users.users"),
        "{dot}"
    );

    let out = deps(&p, &["--database", &p.url]);
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("chirps -> users\n"), "{text}");
    assert!(
        text.contains("owned by no service:\n  table public.orphans"),
        "{text}"
    );

    assert_code(&deps(&p, &["--database", &p.url, "--fail-on-cross"]), 1);
}

#[test]
fn deps_refuses_bad_input() {
    let p = project();
    let out = deps(&p, &["--service", "nope"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("no service named `nope`"),
        "{}",
        stderr(&out)
    );
    std::fs::write(p.dir.path().join("capstan.toml"), "database_url = \"x\"\n").unwrap();
    let out = deps(&p, &[]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("declares no service"),
        "{}",
        stderr(&out)
    );
}

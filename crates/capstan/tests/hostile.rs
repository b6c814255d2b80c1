//! A database capstan cannot trust: its schemas made or altered by another
//! role, and its history table edited by hand. capstan refuses to use either
//! and says exactly what it found; it never runs another role's code with its
//! own privileges, and never panics on a row it did not write.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

const CREATE_USERS: &str = "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\n-- capstan:down\nDROP TABLE users;\n";

/// A login role made for one test, dropped (with what it owns in the
/// project's database) when the test ends.
struct Role {
    name: String,
    db_url: String,
}

impl Role {
    fn new(p: &Project, prefix: &str, attrs: &str) -> Role {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        p.query(&format!(
            "DROP ROLE IF EXISTS {name}; CREATE ROLE {name} {attrs}"
        ));
        Role {
            name,
            db_url: p.url.clone(),
        }
    }

    /// The project's URL, logging in as this role.
    fn url(&self) -> String {
        self.db_url
            .replacen("postgres@", &format!("{}@", self.name), 1)
    }

    fn is_superuser(&self) -> bool {
        common::psql(
            &self.db_url,
            &format!(
                "SELECT rolsuper FROM pg_roles WHERE rolname = '{}'",
                self.name
            ),
        ) == "t"
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        for (url, sql) in [
            (self.db_url.clone(), format!("DROP OWNED BY {}", self.name)),
            (
                common::pg_admin_url(),
                format!("DROP ROLE IF EXISTS {}", self.name),
            ),
        ] {
            let _ = std::process::Command::new("psql")
                .args([url.as_str(), "-X", "-q", "-c", &sql])
                .output();
        }
    }
}

fn db_name(p: &Project) -> &str {
    p.pg_db().expect("a Postgres project")
}

#[test]
fn a_trigger_planted_in_a_precreated_schema_is_refused_and_runs_nothing() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    // A role with nothing but CREATE on the database prepares capstan's
    // history table with a trigger that makes it superuser when it fires.
    let mallory = Role::new(&p, "mallory", "LOGIN");
    p.query(&format!(
        "GRANT CREATE ON DATABASE {} TO {}",
        db_name(&p),
        mallory.name
    ));
    common::psql(
        &mallory.url(),
        &format!(
            "CREATE SCHEMA capstan;
             CREATE TABLE capstan.migrations (
                 version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 phase text NOT NULL, state text NOT NULL, no_transaction boolean NOT NULL DEFAULT false,
                 applied_at timestamptz NOT NULL DEFAULT now(), applied_by text NOT NULL,
                 binary_version text NOT NULL, duration_ms bigint NOT NULL DEFAULT 0, error text);
             CREATE FUNCTION capstan.promote() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN ALTER ROLE {m} SUPERUSER; RETURN NEW; END $$;
             CREATE TRIGGER promote BEFORE INSERT OR UPDATE ON capstan.migrations
                 FOR EACH ROW EXECUTE FUNCTION capstan.promote();",
            m = mallory.name
        ),
    );

    for args in [&["migrate", "up"][..], &["migrate", "status"][..]] {
        let out = p.capstan(args);
        assert_code(&out, 5);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("schema capstan is owned by role {}", mallory.name)),
            "{err}"
        );
        assert!(
            err.contains("trigger promote on capstan.migrations"),
            "{err}"
        );
        assert!(err.contains("capstan.promote()"), "{err}");
        assert!(
            err.contains(&format!(
                "function capstan.promote() is owned by role {}",
                mallory.name
            )),
            "{err}"
        );
    }
    let out = p.capstan(&["migrate", "up", "--json"]);
    assert_code(&out, 5);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["kind"], "untrusted-schema", "{}", stdout(&out));
    assert_eq!(v["error"]["exit_code"], 5);

    assert!(
        !mallory.is_superuser(),
        "the planted trigger ran as the superuser"
    );
    assert!(!p.has_table("users"), "a migration ran");
    assert_eq!(p.count("SELECT count(*) FROM capstan.migrations"), 0);
    assert_eq!(
        p.query("SELECT to_regclass('capstan.log') IS NULL"),
        "t",
        "capstan created tables in the other role's schema"
    );
}

#[test]
fn a_schema_owned_by_another_role_is_refused() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    let other = Role::new(&p, "other", "LOGIN");
    p.query(&format!(
        "CREATE SCHEMA capstan AUTHORIZATION {}",
        other.name
    ));
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains(&format!("schema capstan is owned by role {}", other.name)),
        "{}",
        stderr(&out)
    );
    assert!(!p.has_table("users"));

    // The archive schema is checked the same way.
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    let other = Role::new(&p, "other", "LOGIN");
    p.query(&format!(
        "CREATE SCHEMA capstan_archive AUTHORIZATION {}",
        other.name
    ));
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains(&format!(
            "schema capstan_archive is owned by role {}",
            other.name
        )),
        "{}",
        stderr(&out)
    );
    assert!(!p.has_table("users"));
}

#[test]
fn a_trigger_added_to_capstans_own_tables_is_refused() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.query(
        "CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
         CREATE TRIGGER audit AFTER INSERT ON capstan.log FOR EACH ROW EXECUTE FUNCTION public.noop();
         CREATE RULE keep AS ON DELETE TO capstan.fleet DO INSTEAD NOTHING;
         CREATE POLICY mine ON capstan.migrations USING (true);",
    );
    p.add(
        "0002_add_email.sql",
        "-- capstan:up\nALTER TABLE users ADD COLUMN email text;\n-- capstan:down\nALTER TABLE users DROP COLUMN email;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(err.contains("trigger audit on capstan.log"), "{err}");
    assert!(err.contains("rule keep on capstan.fleet"), "{err}");
    assert!(err.contains("policy mine on capstan.migrations"), "{err}");
    assert!(!p.has_column("users", "email"));
}

#[test]
fn a_schema_owned_by_a_role_the_runner_belongs_to_is_used() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create_users.sql", CREATE_USERS);
    let team = Role::new(&p, "deployers", "NOLOGIN");
    let app = Role::new(&p, "deploy", "LOGIN");
    p.query(&format!(
        "GRANT {team} TO {app}; GRANT CREATE ON DATABASE {db} TO {app}; GRANT CREATE ON SCHEMA public TO {app};
         CREATE SCHEMA capstan AUTHORIZATION {team}; CREATE SCHEMA capstan_archive AUTHORIZATION {team}",
        team = team.name,
        app = app.name,
        db = db_name(&p)
    ));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["migrate", "up", "--database", &app.url(), "--dir"])
        .arg(p.migrations())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run capstan");
    assert_code(&out, 0);
    assert!(p.has_table("users"));
}

/// A history table edited by hand: how to break it, and what the message must name.
struct Damage {
    what: &'static str,
    postgres: &'static str,
    sqlite: &'static str,
    names: &'static [&'static str],
}

/// SQLite's history table without its constraints (a hand rebuild), so any
/// value can be written.
const SQLITE_UNCONSTRAINED: &str = "ALTER TABLE capstan_migrations RENAME TO old_history; \
     CREATE TABLE capstan_migrations AS SELECT * FROM old_history; DROP TABLE old_history; ";

const DAMAGE: &[Damage] = &[
    Damage {
        what: "a NULL",
        postgres: "ALTER TABLE capstan.migrations ALTER COLUMN phase DROP NOT NULL; UPDATE capstan.migrations SET phase = NULL",
        sqlite: "UPDATE capstan_migrations SET phase = NULL",
        names: &["column phase of row 1 (version 1) is NULL"],
    },
    Damage {
        what: "a negative version",
        postgres: "UPDATE capstan.migrations SET version = -1",
        sqlite: "UPDATE capstan_migrations SET version = -1",
        names: &["column version of row 1 (version -1) is negative (-1)"],
    },
    Damage {
        what: "a garbage phase",
        postgres: "UPDATE capstan.migrations SET phase = 'sideways'",
        sqlite: "UPDATE capstan_migrations SET phase = 'sideways'",
        names: &["column phase of row 1 (version 1) is \"sideways\", not expand or contract"],
    },
    Damage {
        what: "a garbage state",
        postgres: "ALTER TABLE capstan.migrations DROP CONSTRAINT migrations_state_check; UPDATE capstan.migrations SET state = 'done'",
        sqlite: "UPDATE capstan_migrations SET state = 'done'",
        names: &["column state of row 1 (version 1) is \"done\", not applied or dirty"],
    },
    Damage {
        what: "a retyped column",
        postgres: "ALTER TABLE capstan.migrations ALTER COLUMN version TYPE text",
        sqlite: "UPDATE capstan_migrations SET version = 'one'",
        names: &["version"],
    },
    Damage {
        what: "a version recorded twice",
        postgres: "ALTER TABLE capstan.migrations DROP CONSTRAINT migrations_pkey; INSERT INTO capstan.migrations SELECT * FROM capstan.migrations",
        sqlite: "INSERT INTO capstan_migrations SELECT * FROM capstan_migrations",
        names: &["version 1 is recorded more than once"],
    },
];

fn a_hand_edited_history_table_is_named_never_a_panic(b: Backend) {
    for d in DAMAGE {
        let p = Project::new(b);
        p.add("0001_create_users.sql", CREATE_USERS);
        assert_code(&p.capstan(&["migrate", "up"]), 0);
        match b {
            Backend::Postgres => p.query(d.postgres),
            Backend::Sqlite => {
                rusqlite::Connection::open(p.sqlite_path())
                    .and_then(|c| c.execute_batch(&format!("{SQLITE_UNCONSTRAINED}{}", d.sqlite)))
                    .expect("edit history");
                String::new()
            }
        };
        p.add(
            "0002_add_email.sql",
            "-- capstan:up\nALTER TABLE users ADD COLUMN email text;\n-- capstan:down\nALTER TABLE users DROP COLUMN email;\n",
        );
        for cmd in ["status", "up", "plan"] {
            let out = p.capstan(&["migrate", cmd]);
            assert_code(&out, 5);
            let err = stderr(&out);
            assert!(
                err.contains(p.history_table()),
                "{b:?} {}, {cmd}: {err}",
                d.what
            );
            for n in d.names {
                assert!(err.contains(n), "{b:?} {}, {cmd}: {err}", d.what);
            }
        }
        let out = p.capstan(&["migrate", "status", "--json"]);
        assert_code(&out, 5);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{b:?} {}: no JSON ({e}): {}", d.what, stdout(&out)));
        assert_eq!(v["error"]["kind"], "bad-history", "{b:?} {}", d.what);
        assert_eq!(v["error"]["exit_code"], 5);
        let out = p.capstan(&["gate"]);
        assert_code(&out, 5);
        assert!(!p.has_column("users", "email"), "{b:?} {}: up ran", d.what);
    }
}
backends!(a_hand_edited_history_table_is_named_never_a_panic);

/// What `reader` can do with the archive copy of the project's only archive
/// entry: `(schema usage, table select, what a real read returned)`.
fn reader_access(p: &Project, reader: &Role) -> (bool, bool, Result<String, String>) {
    let table =
        p.query("SELECT 'capstan_archive.' || quote_ident(archive_table) FROM capstan.archive");
    assert!(!table.is_empty(), "nothing was archived");
    let usage = p.query(&format!(
        "SELECT has_schema_privilege('{}', 'capstan_archive', 'USAGE')",
        reader.name
    )) == "t";
    let select = p.query(&format!(
        "SELECT has_table_privilege('{}', '{table}', 'SELECT')",
        reader.name
    )) == "t";
    let out = std::process::Command::new("psql")
        .args([
            reader.url().as_str(),
            "-X",
            "-q",
            "-A",
            "-t",
            "-c",
            &format!("SELECT * FROM {table} ORDER BY 1"),
        ])
        .output()
        .expect("run psql");
    let read = if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    (usage, select, read)
}

#[test]
fn default_privileges_do_not_open_the_archive_to_readers() {
    let p = Project::new(Backend::Postgres);
    let reader = Role::new(&p, "reader", "LOGIN");
    // The common setup: everything new is readable by `reader`, except the
    // column it was never granted.
    p.query(&format!(
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {r}; ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO {r}; GRANT USAGE ON SCHEMA public TO {r}",
        r = reader.name
    ));
    p.add(
        "0001_users.sql",
        &format!(
            "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY, name text, ssn text);\n\
             INSERT INTO users VALUES (1, 'ann', '078-05-1120');\n\
             REVOKE SELECT ON users FROM {r};\nGRANT SELECT (id, name) ON users TO {r};\n",
            r = reader.name
        ),
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop_ssn.sql",
        "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN ssn;\n",
    );
    assert_code(
        &p.capstan(&["migrate", "up", "--unsafe-ok", "--force-contract"]),
        0,
    );

    let (usage, select, read) = reader_access(&p, &reader);
    assert!(!usage, "reader may use the archive schema");
    assert!(!select, "reader may select the archive copy");
    assert!(
        read.as_ref()
            .is_err_and(|e| e.contains("permission denied")),
        "reader read the archive: {read:?}"
    );
    // The owner still restores it.
    let out = p.capstan(&["archive", "restore", "1"]);
    assert_code(&out, 0);
    assert_eq!(p.query("SELECT ssn FROM users"), "078-05-1120");

    // An archive schema opened by hand (or before copies were private) is
    // closed again by the next run.
    p.query(&format!(
        "GRANT USAGE ON SCHEMA capstan_archive TO {}, PUBLIC",
        reader.name
    ));
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let (usage, _, read) = reader_access(&p, &reader);
    assert!(!usage, "the archive schema stayed open");
    assert!(read.is_err(), "reader read the archive: {read:?}");
}

#[test]
fn rows_hidden_by_row_level_security_stay_hidden_in_the_archive() {
    let p = Project::new(Backend::Postgres);
    let reader = Role::new(&p, "reader", "LOGIN");
    p.query(&format!(
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO {r}; ALTER DEFAULT PRIVILEGES GRANT USAGE ON SCHEMAS TO {r}; GRANT USAGE ON SCHEMA public TO {r}",
        r = reader.name
    ));
    p.add(
        "0001_notes.sql",
        &format!(
            "-- capstan:up\nCREATE TABLE notes (id bigint PRIMARY KEY, author text NOT NULL, body text);\n\
             INSERT INTO notes VALUES (1, '{r}', 'mine'), (2, 'boss', 'secret');\n\
             ALTER TABLE notes ENABLE ROW LEVEL SECURITY;\n\
             CREATE POLICY own_notes ON notes FOR SELECT USING (author = current_user);\n",
            r = reader.name
        ),
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert_eq!(
        common::psql(&reader.url(), "SELECT body FROM notes ORDER BY id"),
        "mine",
        "row-level security hides the boss's note"
    );
    p.add(
        "0002_drop_notes.sql",
        "-- capstan:phase contract\n-- capstan:up\nDROP TABLE notes;\n",
    );
    assert_code(
        &p.capstan(&["migrate", "up", "--unsafe-ok", "--force-contract"]),
        0,
    );

    let (usage, select, read) = reader_access(&p, &reader);
    assert!(!usage && !select, "reader has access to the archive");
    assert!(
        read.as_ref()
            .is_err_and(|e| e.contains("permission denied")),
        "reader read the archive: {read:?}"
    );
    assert_eq!(
        p.count("SELECT count(*) FROM capstan.archive"),
        1,
        "the drop was archived"
    );
}

fn a_hand_edited_fleet_row_is_named_never_a_panic(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_users.sql", CREATE_USERS);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    match b {
        Backend::Postgres => p.query(
            "ALTER TABLE capstan.fleet ALTER COLUMN app DROP NOT NULL;
             INSERT INTO capstan.fleet (instance_id, app, version, set_hash, versions) VALUES ('i-1', NULL, '1.0', 'h', '{1}')",
        ),
        Backend::Sqlite => {
            rusqlite::Connection::open(p.sqlite_path())
                .and_then(|c| {
                    c.execute_batch(
                        "ALTER TABLE capstan_fleet RENAME TO old_fleet; \
                         CREATE TABLE capstan_fleet AS SELECT * FROM old_fleet; DROP TABLE old_fleet; \
                         INSERT INTO capstan_fleet (instance_id, app, version, set_hash, versions, started_at, last_seen) \
                         VALUES ('i-1', NULL, '1.0', 'h', '1', datetime('now'), datetime('now'))",
                    )
                })
                .expect("edit the fleet registry");
            String::new()
        }
    };
    p.add(
        "0002_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n",
    );
    for args in [&["fleet"][..], &["migrate", "up", "--unsafe-ok"][..]] {
        let out = p.capstan(args);
        assert_code(&out, 5);
        let err = stderr(&out);
        assert!(err.contains("fleet registry"), "{b:?} {args:?}: {err}");
        assert!(err.contains("app"), "{b:?} {args:?}: {err}");
    }
    assert!(p.has_column("users", "name"), "{b:?}: the contract ran");
}
backends!(a_hand_edited_fleet_row_is_named_never_a_panic);

//! The pre-`up` lint against the live database: it lints the up sections
//! `up` runs (a bad down does not block it), `down` reports on the down
//! sections it runs, and a lock finding on a table that is small right now is
//! a warning that says so, while the same finding on a large table refuses.

mod common;

use common::{assert_code, stderr, Backend, Project};

const CREATE: &str = "-- capstan:up\nCREATE TABLE users (id integer PRIMARY KEY, name text);\nCREATE TABLE events (id integer PRIMARY KEY, kind text);\n-- capstan:down\nDROP TABLE events;\nDROP TABLE users;\n";

fn project() -> Project {
    let p = Project::new(Backend::Postgres);
    p.add("0001_create.sql", CREATE);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.query("INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 1204) g");
    p.query("INSERT INTO events SELECT g, 'click' FROM generate_series(1, 30000) g");
    p
}

#[test]
fn a_lock_finding_on_a_small_table_is_a_warning_and_on_a_large_one_refuses() {
    let p = project();
    p.add(
        "0002_users_name.sql",
        "-- capstan:up\nCREATE INDEX users_name ON users (name);\n-- capstan:down\nDROP INDEX users_name;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("warning: require-concurrent-index-creation")
            && err.contains("users has 1,204 rows")
            && err.contains("the SHARE lock is held for milliseconds"),
        "{err}"
    );

    p.add(
        "0003_events_kind.sql",
        "-- capstan:up\nCREATE INDEX events_kind ON events (kind);\n-- capstan:down\nDROP INDEX events_kind;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains("0003_events_kind.sql:2:1: require-concurrent-index-creation"),
        "{}",
        stderr(&out)
    );
    assert_eq!(p.states()[2], (3, "pending".to_string()), "nothing was run");

    // The thresholds come from capstan.toml: 0 rows makes no table small.
    std::fs::write(
        p.migrations().parent().unwrap().join("capstan.toml"),
        "[lint]\nsmall_table_rows = 0\n",
    )
    .unwrap();
    assert_code(&p.capstan(&["migrate", "down"]), 0);
    let out = p.capstan(&["migrate", "plan"]);
    assert_code(&out, 9);
    assert!(
        stderr(&out).contains("0002_users_name.sql:2:1: require-concurrent-index-creation"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_breaking_change_on_a_small_table_still_refuses() {
    let p = project();
    p.add(
        "0002_rename.sql",
        "-- capstan:up\nALTER TABLE users RENAME COLUMN name TO full_name;\n-- capstan:down\nALTER TABLE users RENAME COLUMN full_name TO name;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 9);
    assert!(stderr(&out).contains("renaming-column"), "{}", stderr(&out));
}

#[test]
fn a_bad_down_section_does_not_block_up_and_down_reports_it() {
    let p = project();
    p.add(
        "0002_email.sql",
        "-- capstan:up\nALTER TABLE events ADD COLUMN note text;\n-- capstan:down\nCREATE INDEX events_kind ON events (kind);\nALTER TABLE events DROP COLUMN note;\n",
    );
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert!(!stderr(&out).contains("events_kind"), "{}", stderr(&out));

    let out = p.capstan(&["migrate", "down"]);
    assert_code(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("0002_email.sql:4:1: require-concurrent-index-creation")
            && err.contains("rolling back anyway"),
        "{err}"
    );
    assert_eq!(p.states()[1], (2, "pending".to_string()));
}

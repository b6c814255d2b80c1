//! Checksums and history, end to end on Postgres and SQLite: drift is about
//! the up section that ran; an edited down section is recorded, not refused;
//! rows an older capstan wrote keep working; `hash --accept` records an
//! intended edit; `new` blesses only its own file; a different migration
//! under the same number is a collision; a failed `down` says what happened.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// The log entries of `version` with `action`.
fn log_count(p: &Project, version: u64, action: &str) -> i64 {
    p.count(&format!(
        "SELECT count(*) FROM {} WHERE version = {version} AND action = '{action}'",
        p.log_table()
    ))
}

/// Drops the section hash columns: the history table exactly as the
/// previous release made and filled it (whole-file checksums only).
fn make_history_old_format(p: &Project) {
    match p.backend {
        Backend::Postgres => {
            p.query(
                "ALTER TABLE capstan.migrations DROP COLUMN up_checksum, DROP COLUMN down_checksum",
            );
        }
        Backend::Sqlite => {
            p.query("ALTER TABLE capstan_migrations DROP COLUMN up_checksum");
            p.query("ALTER TABLE capstan_migrations DROP COLUMN down_checksum");
        }
    }
}

fn section_columns(p: &Project) -> i64 {
    match p.backend {
        Backend::Postgres => p.count(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'capstan' AND table_name = 'migrations' AND column_name IN ('up_checksum', 'down_checksum')",
        ),
        Backend::Sqlite => p.count(
            "SELECT count(*) FROM pragma_table_info('capstan_migrations') WHERE name IN ('up_checksum', 'down_checksum')",
        ),
    }
}

const A_BROKEN_DOWN: &str =
    "-- capstan:up\nCREATE TABLE a (id integer);\n-- capstan:down\nDROP TABLE no_such_table;\n";
const A_FIXED_DOWN_CRLF: &str =
    "-- capstan:up   \r\nCREATE TABLE a (id integer);   \r\n\r\n-- capstan:down\r\nDROP TABLE a;\r\n";

fn an_edited_down_section_is_recorded_and_line_endings_are_no_drift(b: Backend) {
    let p = Project::new(b);
    p.add("0001_create_a.sql", A_BROKEN_DOWN);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let out = p.capstan(&["migrate", "down"]);
    assert_code(&out, 1);
    assert!(p.has_table("a"), "{b:?}: the broken down changed nothing");

    // Fix the down section; the editor also wrote CRLF and trailing spaces.
    p.write("0001_create_a.sql", A_FIXED_DOWN_CRLF);
    p.hash();
    let s = p.status();
    assert_eq!(s["migrations"][0]["state"], "applied", "{b:?}: {s}");
    assert_eq!(s["migrations"][0]["down_changed"], true, "{b:?}: {s}");
    let gate = p.capstan(&["gate", "--app", "app"]);
    assert_code(&gate, 0);

    // `up` records the edit (nothing to apply), and says nothing is wrong.
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    assert_eq!(log_count(&p, 1, "down edited"), 1, "{b:?}");
    let s = p.status();
    assert_eq!(s["migrations"][0]["down_changed"], false, "{b:?}: {s}");
    assert!(
        s["migrations"][0]["applied"]["down_checksum"].is_string(),
        "{b:?}: {s}"
    );

    // The fixed down section is the one that runs.
    let out = p.capstan(&["migrate", "down"]);
    assert_code(&out, 0);
    assert!(!p.has_table("a"), "{b:?}: the fixed down ran");
    assert!(p.recorded_versions().is_empty());

    // An edit of the up section is still drift, and names the way out.
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer, x text);\n-- capstan:down\nDROP TABLE a;\n",
    );
    p.hash();
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("--accept"),
        "{b:?}: drift advice names hash --accept: {}",
        stderr(&out)
    );
}

backends!(an_edited_down_section_is_recorded_and_line_endings_are_no_drift);

fn history_from_the_previous_format_keeps_working(b: Backend) {
    let p = Project::new(b);
    p.write("0001_create_a.sql", A_BROKEN_DOWN);
    p.add(
        "0002_create_b.sql",
        "-- capstan:up\nCREATE TABLE b (id integer);\n-- capstan:down\nDROP TABLE b;\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    make_history_old_format(&p);
    let before = p.query(&format!(
        "SELECT version, name, checksum, applied_at, applied_by FROM {} ORDER BY version",
        p.history_table()
    ));

    // Read-only commands accept the whole-file checksum and change nothing.
    assert_eq!(
        p.states(),
        vec![(1, "applied".to_string()), (2, "applied".to_string())]
    );
    assert!(p.status()["migrations"][0]["applied"]["up_checksum"].is_null());
    assert_code(&p.capstan(&["gate", "--app", "app"]), 0);
    assert_eq!(section_columns(&p), 0, "{b:?}: status and gate only read");

    // A CRLF checkout of an old row's file is the same file.
    let crlf =
        "-- capstan:up\r\nCREATE TABLE b (id integer);\r\n-- capstan:down\r\nDROP TABLE b;\r\n";
    p.write("0002_create_b.sql", crlf);
    p.hash();
    assert_eq!(p.states()[1].1, "applied", "{b:?}");

    // The next `up` upgrades in place: columns added, hashes recorded,
    // every row and its history kept.
    p.add(
        "0003_create_c.sql",
        "-- capstan:up\nCREATE TABLE c (id integer);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert_eq!(section_columns(&p), 2);
    let after = p.query(&format!(
        "SELECT version, name, checksum, applied_at, applied_by FROM {} WHERE version < 3 ORDER BY version",
        p.history_table()
    ));
    assert_eq!(before, after, "{b:?}: old rows kept as they were");
    let s = p.status();
    for m in s["migrations"].as_array().unwrap() {
        assert_eq!(m["state"], "applied", "{b:?}: {s}");
        assert!(m["applied"]["up_checksum"].is_string(), "{b:?}: {s}");
    }

    // Now a fix of 0001's down section is allowed.
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n-- capstan:down\nDROP TABLE a;\n",
    );
    p.hash();
    assert_eq!(p.states()[0].1, "applied", "{b:?}");
}

backends!(history_from_the_previous_format_keeps_working);

fn hash_accept_records_an_intended_edit(b: Backend) {
    let p = Project::new(b);
    p.add(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer); -- tpyo\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.write(
        "0002_create_b.sql",
        "-- capstan:up\nCREATE TABLE b (id integer);\n",
    );
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer); -- typo fixed\n",
    );
    let sum = p.migrations().join("capstan.sum");
    let sum_before = std::fs::read_to_string(&sum).unwrap();
    let history_before = p.query(&format!("SELECT * FROM {}", p.history_table()));

    // Bad input changes nothing.
    for (args, code, needle) in [
        (&["--accept", "1"][..], 2, "--reason"),
        (&["--accept", "1", "--reason", "  "][..], 2, "--reason"),
        (&["--accept", "9", "--reason", "x"][..], 5, "0009"),
        (&["--accept", "2", "--reason", "x"][..], 5, "not applied"),
    ] {
        let mut all = vec!["migrate", "hash"];
        all.extend_from_slice(args);
        let out = p.capstan(&all);
        assert_code(&out, code);
        assert!(
            stderr(&out).contains(needle),
            "{b:?} {args:?}: {}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&sum).unwrap(),
            sum_before,
            "{b:?} {args:?}"
        );
        assert_eq!(
            p.query(&format!("SELECT * FROM {}", p.history_table())),
            history_before,
            "{b:?} {args:?}"
        );
        assert_eq!(log_count(&p, 1, "accept"), 0);
    }

    let out = p.capstan(&[
        "migrate",
        "hash",
        "--accept",
        "1",
        "--reason",
        "comment typo",
        "--json",
    ]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["recorded"], true, "{v}");
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(log_count(&p, 1, "accept"), 1);
    let detail = p.query(&format!(
        "SELECT applied_by, detail FROM {} WHERE action = 'accept'",
        p.log_table()
    ));
    assert!(
        detail.starts_with("tester@") && detail.contains("reason: comment typo"),
        "{b:?}: who and why are recorded: {detail}"
    );
    // Only 0001's line of the sum was updated: 0002 is still not in it.
    let sum_text = std::fs::read_to_string(&sum).unwrap();
    assert!(!sum_text.contains("0002_create_b.sql"), "{sum_text}");
    p.hash();
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert_eq!(
        p.states(),
        vec![(1, "applied".to_string()), (2, "applied".to_string())]
    );
}

fn hash_accept_records_an_intended_edit_with_who_and_why(b: Backend) {
    hash_accept_records_an_intended_edit(b);
}
backends!(hash_accept_records_an_intended_edit_with_who_and_why);

#[test]
fn new_adds_only_its_own_hash_to_the_sum() {
    let p = Project::new(Backend::Sqlite);
    p.add(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n",
    );
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer, edited text);\n",
    );
    let sum = p.migrations().join("capstan.sum");
    let line_of = |name: &str| {
        std::fs::read_to_string(&sum)
            .unwrap()
            .lines()
            .find(|l| l.starts_with(name))
            .map(str::to_string)
    };
    let recorded = line_of("0001_create_a.sql");
    assert_code(&p.capstan(&["migrate", "new", "create b"]), 0);
    assert_eq!(
        line_of("0001_create_a.sql"),
        recorded,
        "the edit of 0001 stays unblessed"
    );
    assert!(
        line_of("0002_create_b.sql").is_some(),
        "the new file is in the sum"
    );
}

/// Two branches both add 0002; the other branch's ran on the shared database.
fn a_different_migration_under_the_same_number_is_a_collision(b: Backend) {
    let p = Project::new(b);
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n",
    );
    let theirs = "-- capstan:up\nALTER TABLE a ADD COLUMN email text;\n";
    p.add("0002_add_email.sql", theirs);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    // My branch never had their file.
    std::fs::remove_file(p.migrations().join("0002_add_email.sql")).unwrap();
    p.write(
        "0002_add_bio.sql",
        "-- capstan:up\nALTER TABLE a ADD COLUMN bio text;\n",
    );
    p.hash();

    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 5);
    let err = stderr(&out);
    assert!(
        err.contains("0002_add_email")
            && err.contains("0002_add_bio")
            && err.contains("rebase")
            && !err.contains("edited"),
        "{b:?}: {err}"
    );
    let v = json(&p.capstan(&["migrate", "up", "--json"]));
    assert_eq!(v["error"]["kind"], "collision", "{b:?}: {v}");
    assert!(!p.has_column("a", "bio"));
    assert_eq!(p.states()[1].1, "collision", "{b:?}");

    let out = p.capstan(&["gate", "--app", "app", "--json"]);
    assert_code(&out, 8);
    let v = json(&out);
    assert_eq!(v["collided"][0]["ran"], "0002_add_email", "{b:?}: {v}");
    assert!(v["pending"].as_array().unwrap().is_empty(), "{b:?}: {v}");
    let out = p.capstan(&["gate", "--app", "app"]);
    assert!(
        stdout(&out).contains("not what ran as 0002") && !stdout(&out).contains("migrate up`"),
        "{b:?}: {}",
        stdout(&out)
    );

    let out = p.capstan(&["migrate", "repair"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("collision"),
        "{b:?}: {}",
        stdout(&out)
    );
    let out = p.capstan(&["migrate", "repair", "--mark-applied", "2"]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("0002_add_email") && !stderr(&out).contains("not dirty"),
        "{b:?}: {}",
        stderr(&out)
    );

    // rebase moves mine past what ran, and says what the directory lacks.
    let out = p.capstan(&["migrate", "rebase", "0002_add_bio.sql", "--json"]);
    assert_code(&out, 0);
    let v = json(&out);
    assert_eq!(v["not_in_directory"][0], "0002_add_email", "{b:?}: {v}");
    assert!(p.migrations().join("0003_add_bio.sql").exists());
    // Merge their file in: `up` runs mine.
    p.add("0002_add_email.sql", theirs);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    assert!(p.has_column("a", "bio"));
    assert_eq!(p.recorded_versions(), vec![1, 2, 3]);
}

backends!(a_different_migration_under_the_same_number_is_a_collision);

fn a_failed_down_says_what_happened(b: Backend) {
    let p = Project::new(b);
    p.write(
        "0001_create_a.sql",
        "-- capstan:up\nCREATE TABLE a (id integer);\n-- capstan:down\nDROP TABLE a;\nDROP TABLE no_such_table;\n",
    );
    p.add(
        "0002_create_b.sql",
        "-- capstan:up\nCREATE TABLE b (id integer);\n-- capstan:down\nDROP TABLE b;\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    let out = p.capstan(&["migrate", "down", "--to", "0"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("rolled back 1 migration")
            && !err.contains("applied 1 migration")
            && err.contains("0001_create_a is still applied")
            && !err.contains("nothing of it is applied"),
        "{b:?}: {err}"
    );
    assert!(p.has_table("a"));
    assert_eq!(p.states()[0].1, "applied");

    // Outside a transaction, a down that stops part-way is dirty going down.
    p.write(
        "0001_create_a.sql",
        "-- capstan:no-transaction\n-- capstan:up\nCREATE TABLE a (id integer);\n-- capstan:down\nDROP TABLE a;\nDROP TABLE no_such_table;\n",
    );
    p.hash();
    let out = p.capstan(&["migrate", "down"]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("is now dirty (neither applied nor rolled back)"),
        "{b:?}: {}",
        stderr(&out)
    );
    let out = p.capstan(&["migrate", "repair"]);
    let text = stdout(&out);
    assert!(
        text.contains("its down section ran outside a transaction")
            && text.contains("finish the rollback by hand"),
        "{b:?}: {text}"
    );
    let v = json(&p.capstan(&["migrate", "repair", "--json"]));
    assert_eq!(v["dirty"][0]["direction"], "down", "{b:?}: {v}");
    assert_code(
        &p.capstan(&["migrate", "repair", "--mark-rolled-back", "1"]),
        0,
    );
    assert_eq!(p.states()[0].1, "pending");
}

fn a_failed_down_says_the_migration_is_still_applied(b: Backend) {
    a_failed_down_says_what_happened(b);
}
backends!(a_failed_down_says_the_migration_is_still_applied);

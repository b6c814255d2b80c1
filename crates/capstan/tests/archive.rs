//! Archive before destroying, end to end: the real `capstan` binary against a
//! fresh Postgres database and a fresh SQLite file per test. Each destroying
//! statement kind is archived in its migration's transaction and restored by
//! `capstan archive restore`; refusals change nothing.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

const USERS: &str = "-- capstan:up
CREATE TABLE users (id bigint PRIMARY KEY, name text, age numeric(10,2));
INSERT INTO users VALUES (1, 'ann', 31.5), (2, 'bob', NULL), (3, 'cy', 7.25);
-- capstan:down
DROP TABLE users;
";

const SEED: &str = "1|ann|31.5\n2|bob|\n3|cy|7.25";

/// A project with `users` (3 rows) applied.
fn seeded(b: Backend) -> Project {
    let p = Project::new(b);
    p.add("0001_users.sql", USERS);
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    p
}

/// [`seeded`], then `body` applied as contract migration `file` (it must succeed).
fn seeded_then(b: Backend, file: &str, body: &str) -> Project {
    let p = seeded(b);
    p.add(file, &contract(body));
    assert_code(&up(&p, &[]), 0);
    p
}

/// Writes the project's `capstan.toml`.
fn write_config(p: &Project, toml: &str) {
    std::fs::write(p.dir.path().join("capstan.toml"), toml).unwrap();
}

fn up(p: &Project, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["migrate", "up", "--unsafe-ok", "--force-contract"];
    args.extend_from_slice(extra);
    p.capstan(&args)
}

fn contract(body: &str) -> String {
    format!("-- capstan:phase contract\n-- capstan:up\n{body}\n")
}

fn entries(p: &Project) -> Vec<serde_json::Value> {
    let out = p.capstan(&["archive", "list", "--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("archive list JSON");
    v["entries"].as_array().expect("entries").clone()
}

fn restore(p: &Project, id: i64) -> serde_json::Value {
    let out = p.capstan(&["archive", "restore", &id.to_string(), "--json"]);
    assert_code(&out, 0);
    serde_json::from_slice(&out.stdout).expect("restore JSON")
}

fn users(p: &Project) -> String {
    let age = match p.backend {
        Backend::Postgres => "age::float8",
        Backend::Sqlite => "age",
    };
    p.query(&format!("SELECT id, name, {age} FROM users ORDER BY id"))
}

fn archive_tables(p: &Project) -> i64 {
    match p.backend {
        Backend::Postgres => p.count(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'capstan_archive'",
        ),
        Backend::Sqlite => p.count(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'capstan\\_archive\\_%' ESCAPE '\\'",
        ),
    }
}

fn dropped_column_comes_back_with_every_value(b: Backend) {
    let p = seeded(b);
    p.add(
        "0002_drop_name.sql",
        &contract("ALTER TABLE users DROP COLUMN name;"),
    );
    let out = up(&p, &[]);
    assert_code(&out, 0);
    assert!(
        stderr(&out)
            .contains("0002_drop_name.sql:3: archived users.name before drop-column: 3 rows"),
        "{}",
        stderr(&out)
    );
    assert!(!p.has_column("users", "name"));
    let e = entries(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["kind"], "drop-column");
    assert_eq!(e[0]["scope"], "columns");
    assert_eq!(e[0]["row_count"], 3);
    assert_eq!(e[0]["version"], 2);
    assert_eq!(e[0]["line"], 3);
    assert_eq!(e[0]["primary_key"], serde_json::json!(["id"]));
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["columns_added"], serde_json::json!(["name"]));
    assert_eq!(r["rows_restored"], 3);
    assert_eq!(users(&p), SEED);
    assert!(entries(&p)[0]["restored_at"].is_string());
}
backends!(dropped_column_comes_back_with_every_value);

fn dropped_table_is_re_created_and_refilled(b: Backend) {
    let p = seeded_then(b, "0002_drop_users.sql", "DROP TABLE users;");
    assert!(!p.has_table("users"));
    let e = entries(&p);
    assert_eq!(
        (e[0]["kind"].as_str(), e[0]["scope"].as_str()),
        (Some("drop-table"), Some("rows"))
    );
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["table_created"], true);
    assert_eq!(r["rows_restored"], 3);
    assert_eq!(users(&p), SEED);
}
backends!(dropped_table_is_re_created_and_refilled);

fn emptied_table_is_refilled(b: Backend) {
    // SQLite has no TRUNCATE; DELETE without WHERE is its spelling.
    let (stmt, kind) = match b {
        Backend::Postgres => ("TRUNCATE users;", "truncate"),
        Backend::Sqlite => ("DELETE FROM users;", "delete"),
    };
    let p = seeded_then(b, "0002_empty.sql", stmt);
    assert_eq!(p.count("SELECT count(*) FROM users"), 0);
    let e = entries(&p);
    assert_eq!(e[0]["kind"], kind);
    restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(users(&p), SEED);
}
backends!(emptied_table_is_refilled);

fn unbounded_update_is_reverted_row_by_row(b: Backend) {
    let p = seeded_then(
        b,
        "0002_blank.sql",
        "UPDATE users SET name = 'x', age = 0;\nDELETE FROM users WHERE id = 3;",
    );
    let e = entries(&p);
    assert_eq!(e.len(), 1, "a bounded DELETE is not archived: {e:?}");
    assert_eq!(e[0]["kind"], "update");
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["rows_restored"], 2);
    assert_eq!(
        r["rows_not_restored"], 1,
        "row 3 is gone: its key no longer exists"
    );
    assert_eq!(users(&p), "1|ann|31.5\n2|bob|");
}
backends!(unbounded_update_is_reverted_row_by_row);

#[test]
fn lossy_type_change_is_archived_and_restored_once_the_type_is_back_postgres() {
    let p = seeded_then(Backend::Postgres, "0002_int_age.sql", "ALTER TABLE users ALTER COLUMN age TYPE integer USING age::integer;\nALTER TABLE users ALTER COLUMN name TYPE varchar(100);");
    let e = entries(&p);
    assert_eq!(
        e.len(),
        1,
        "text -> varchar(100) keeps every value or fails: {e:?}"
    );
    assert_eq!(e[0]["kind"], "alter-type");
    let id = e[0]["id"].as_i64().unwrap().to_string();
    let refused = p.capstan(&["archive", "restore", &id]);
    assert_code(&refused, 5);
    assert!(
        stderr(&refused).contains("users.age is integer now but held numeric(10,2) values"),
        "{}",
        stderr(&refused)
    );
    common::psql(
        &p.url,
        "ALTER TABLE users ALTER COLUMN age TYPE numeric(10,2)",
    );
    assert_code(&p.capstan(&["archive", "restore", &id]), 0);
    assert_eq!(users(&p), SEED);
}

fn failing_migration_rolls_its_archive_back(b: Backend) {
    let p = seeded(b);
    p.add(
        "0002_broken.sql",
        &contract("ALTER TABLE users DROP COLUMN name;\nINSERT INTO no_such_table VALUES (1);"),
    );
    let out = up(&p, &[]);
    assert_code(&out, 1);
    assert!(p.has_column("users", "name"), "the drop rolled back");
    assert!(
        entries(&p).is_empty(),
        "the archive entry rolled back with it"
    );
    assert_eq!(
        archive_tables(&p),
        0,
        "the archive copy rolled back with it"
    );
    assert_eq!(users(&p), SEED);
}
backends!(failing_migration_rolls_its_archive_back);

fn restore_into_a_table_that_gained_rows_keeps_them(b: Backend) {
    let p = seeded_then(b, "0002_clear.sql", "DELETE FROM users;");
    p.query("INSERT INTO users (id, name) VALUES (1, 'new ann'), (4, 'dee')");
    let e = entries(&p);
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["rows_restored"], 2);
    assert_eq!(r["rows_not_restored"], 1, "row 1 exists again and is kept");
    assert_eq!(
        p.query("SELECT id, name FROM users ORDER BY id"),
        "1|new ann\n2|bob\n3|cy\n4|dee"
    );
}
backends!(restore_into_a_table_that_gained_rows_keeps_them);

fn restore_refuses_when_it_cannot_be_faithful(b: Backend) {
    let p = seeded_then(
        b,
        "0002_drop_name.sql",
        "ALTER TABLE users DROP COLUMN name;",
    );
    let id = entries(&p)[0]["id"].as_i64().unwrap().to_string();

    // The table is gone: nothing to put the column back into.
    p.query("ALTER TABLE users RENAME TO users_old");
    let out = p.capstan(&["archive", "restore", &id]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("table users does not exist"),
        "{}",
        stderr(&out)
    );

    // The primary key changed: archived rows cannot be matched.
    p.query("CREATE TABLE users (uid bigint PRIMARY KEY, id bigint)");
    p.query("INSERT INTO users VALUES (10, 1)");
    let out = p.capstan(&["archive", "restore", &id, "--json"]);
    assert_code(&out, 5);
    let err: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(err["error"]["kind"], "restore-refused");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("primary key of users is (uid) now but was (id)"),
        "{err}"
    );
    assert!(
        !p.has_column("users", "name"),
        "a refused restore changes nothing"
    );
    assert!(entries(&p)[0]["restored_at"].is_null());

    let out = p.capstan(&["archive", "restore", "99"]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("archive entry 99 does not exist"));
}
backends!(restore_refuses_when_it_cannot_be_faithful);

fn over_the_size_limit_refuses_unless_no_archive_names_it(b: Backend) {
    let p = seeded(b);
    write_config(&p, "[archive]\nmax_size = \"1B\"\n");
    p.add(
        "0002_drop_name.sql",
        &contract("ALTER TABLE users DROP COLUMN name;"),
    );
    let plan = p.capstan(&["migrate", "plan", "--unsafe-ok", "--force-contract"]);
    assert!(
        stdout(&plan)
            .contains("over the limit of 1 B: `up` refuses unless --no-archive users.name"),
        "{}",
        stdout(&plan)
    );
    let out = up(&p, &[]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("0002_drop_name.sql:3: the archive copy of users.name is larger than the archive limit (1 B)"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("--no-archive users.name"));
    assert!(p.has_column("users", "name"), "nothing changed");
    assert_eq!(archive_tables(&p), 0);

    let out = up(&p, &["--no-archive", "user.name"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("--no-archive user.name: nothing this run destroys is called that (it destroys: users.name)"),
        "{}",
        stderr(&out)
    );
    assert!(p.has_column("users", "name"), "a typo changes nothing");
    let out = up(&p, &["--no-archive", "users.name"]);
    assert_code(&out, 0);
    assert!(!p.has_column("users", "name"));
    assert!(entries(&p).is_empty());
    let note = p.query(&format!(
        "SELECT error FROM {} WHERE version = 2",
        p.history_table()
    ));
    assert!(
        note.contains(
            "not archived (--no-archive users.name): drop-column of users.name at line 3"
        ),
        "history records the override: {note}"
    );
}
backends!(over_the_size_limit_refuses_unless_no_archive_names_it);

fn plan_shows_what_will_be_archived_and_its_size(b: Backend) {
    let p = seeded(b);
    p.add(
        "0002_drop_name.sql",
        &contract("ALTER TABLE users DROP COLUMN name;"),
    );
    let out = p.capstan(&[
        "migrate",
        "plan",
        "--json",
        "--unsafe-ok",
        "--force-contract",
    ]);
    assert_code(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = &plan["steps"][0]["archive"][0];
    assert_eq!(a["object"], "users.name");
    assert_eq!(a["kind"], "drop-column");
    assert_eq!(a["rows"], 3);
    assert!(a["bytes"].as_u64().unwrap() > 0);
    assert_eq!(a["line"], 3);
    let human = p.capstan(&["migrate", "plan", "--unsafe-ok", "--force-contract"]);
    assert!(
        stdout(&human).contains("--   line 3: drop-column users.name — archives 3 rows, about"),
        "{}",
        stdout(&human)
    );
    assert!(p.has_column("users", "name"), "plan changes nothing");
    assert!(entries(&p).is_empty());
}
backends!(plan_shows_what_will_be_archived_and_its_size);

fn down_archives_a_created_table_before_dropping_it(b: Backend) {
    let p = seeded(b);
    let out = p.capstan(&["migrate", "down", "--to", "0"]);
    assert_code(&out, 0);
    assert!(!p.has_table("users"));
    let e = entries(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["direction"], "down");
    assert_eq!(e[0]["kind"], "drop-table");
    assert_eq!(e[0]["row_count"], 3);
    restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(users(&p), SEED);
}
backends!(down_archives_a_created_table_before_dropping_it);

fn purge_honours_retention_and_names_what_it_removes(b: Backend) {
    let p = seeded_then(
        b,
        "0002_drop_name.sql",
        "ALTER TABLE users DROP COLUMN name;",
    );
    let out = p.capstan(&["archive", "purge"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("purge needs --older-than DURATION, or `retention`"));
    write_config(&p, "[archive]\nretention = \"1h\"\n");
    let out = p.capstan(&["archive", "purge"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("nothing purged"), "{}", stdout(&out));
    assert_eq!(entries(&p).len(), 1);
    let out = p.capstan(&["archive", "purge", "--older-than", "0s"]);
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("purged entry 1 (users.name from 0002_drop_name, 3 rows"),
        "{}",
        stdout(&out)
    );
    assert!(entries(&p).is_empty());
    assert_eq!(archive_tables(&p), 0);
}
backends!(purge_honours_retention_and_names_what_it_removes);

fn bad_archive_config_names_the_key(b: Backend) {
    let p = seeded(b);
    write_config(&p, "[archive]\nmax_size = \"lots\"\n");
    let out = p.capstan(&["migrate", "status"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("[archive] max_size"),
        "{}",
        stderr(&out)
    );
    write_config(&p, "[archive]\nmax_sise = \"1GiB\"\n");
    let out = p.capstan(&["archive", "list"]);
    assert_code(&out, 3);
    assert!(
        stderr(&out).contains("line 2") && stderr(&out).contains("max_sise"),
        "{}",
        stderr(&out)
    );
}
backends!(bad_archive_config_names_the_key);

#[test]
fn rows_taken_by_foreign_key_cascades_are_archived_too_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_tree.sql",
        "-- capstan:up
CREATE TABLE teams (id bigint PRIMARY KEY, name text);
CREATE TABLE players (id bigint PRIMARY KEY, team_id bigint REFERENCES teams ON DELETE CASCADE, name text);
CREATE TABLE scores (id bigint PRIMARY KEY, player_id bigint REFERENCES players ON DELETE CASCADE, points int);
CREATE TABLE fans (id bigint PRIMARY KEY, team_id bigint REFERENCES teams ON DELETE SET NULL);
INSERT INTO teams VALUES (1, 'red'), (2, 'blue');
INSERT INTO players VALUES (10, 1, 'ann'), (20, 2, 'bob');
INSERT INTO scores VALUES (100, 10, 7), (200, 20, 9);
INSERT INTO fans VALUES (5, 1), (6, 2);
",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add("0002_clear.sql", &contract("DELETE FROM teams;"));
    let plan = p.capstan(&[
        "migrate",
        "plan",
        "--json",
        "--unsafe-ok",
        "--force-contract",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned: Vec<&str> = plan["steps"][0]["archive"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["object"].as_str().unwrap())
        .collect();
    assert_eq!(planned, ["teams", "fans.team_id", "players", "scores"]);
    assert_code(&up(&p, &[]), 0);
    assert_eq!(p.count("SELECT count(*) FROM scores"), 0, "the cascade ran");
    let e = entries(&p);
    let objects: Vec<String> = e
        .iter()
        .map(|x| x["kind"].as_str().unwrap().to_string() + " " + x["table_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        objects,
        [
            "delete teams",
            "update fans",
            "delete players",
            "delete scores"
        ]
    );
    // Parents first, then what referenced them.
    for x in &e {
        restore(&p, x["id"].as_i64().unwrap());
    }
    assert_eq!(
        p.query("SELECT id, team_id FROM fans ORDER BY id"),
        "5|1\n6|2"
    );
    assert_eq!(p.count("SELECT count(*) FROM scores"), 2);
    assert_eq!(p.count("SELECT count(*) FROM players"), 2);

    p.add("0003_truncate.sql", &contract("TRUNCATE teams CASCADE;"));
    assert_code(&up(&p, &[]), 0);
    let kinds: Vec<String> = entries(&p)[4..]
        .iter()
        .map(|x| x["table_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["teams", "fans", "players", "scores"],
        "TRUNCATE … CASCADE empties every referencing table"
    );
}

fn no_transaction_migration_archives_before_its_statement(b: Backend) {
    let p = seeded(b);
    p.add(
        "0002_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n",
    );
    assert_code(&up(&p, &[]), 0);
    let e = entries(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["line"], 4);
    restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(users(&p), SEED);
}
backends!(no_transaction_migration_archives_before_its_statement);

fn a_table_without_primary_key_is_archived_and_restored_whole(b: Backend) {
    let p = Project::new(b);
    p.add(
        "0001_logs.sql",
        "-- capstan:up\nCREATE TABLE logs (line text, level int);\nINSERT INTO logs VALUES ('a', 1), ('b', 2), ('b', 2);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop_level.sql",
        &contract("ALTER TABLE logs DROP COLUMN level;"),
    );
    assert_code(&up(&p, &[]), 0);
    let e = entries(&p);
    assert_eq!(
        e[0]["scope"], "rows",
        "no key to match rows by: every column is kept"
    );
    assert_eq!(e[0]["primary_key"], serde_json::json!([]));
    let id = e[0]["id"].as_i64().unwrap().to_string();

    // A row came since: restoring whole would lose it, so restore refuses.
    p.query("INSERT INTO logs VALUES ('c')");
    let out = p.capstan(&["archive", "restore", &id]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("can only be restored whole; it has 4 rows now"),
        "{}",
        stderr(&out)
    );
    assert!(!p.has_column("logs", "level"));

    p.query("DELETE FROM logs WHERE line = 'c'");
    assert_code(&p.capstan(&["archive", "restore", &id]), 0);
    assert_eq!(
        p.query("SELECT line, level FROM logs ORDER BY line, level"),
        "a|1\nb|2\nb|2"
    );
}
backends!(a_table_without_primary_key_is_archived_and_restored_whole);

/// Applies `setup` (creating and filling a table), then `destroy` as a
/// contract migration; expects one archive entry and, after restoring it,
/// `expected` from `check`.
fn archived_and_restored(b: Backend, setup: &str, destroy: &str, check: &str, expected: &str) {
    let p = Project::new(b);
    p.add("0001_t.sql", &format!("-- capstan:up\n{setup}\n"));
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add("0002_destroy.sql", &contract(destroy));
    assert_code(&up(&p, &[]), 0);
    let e = entries(&p);
    assert_eq!(e.len(), 1, "{b:?}: {destroy} is archived");
    restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(p.query(check), expected, "{b:?}: {destroy} restored");
}

fn an_unquoted_mixed_case_name_is_archived_as_the_catalog_spells_it(b: Backend) {
    // SQLite keeps `Users` and `Name` as written; the parser folds them.
    archived_and_restored(
        b,
        "CREATE TABLE Users (id bigint PRIMARY KEY, Name text);\nINSERT INTO Users VALUES (1, 'ann'), (2, 'bob');",
        "ALTER TABLE Users DROP COLUMN Name;",
        "SELECT id, name FROM users ORDER BY id",
        "1|ann\n2|bob",
    );
}
backends!(an_unquoted_mixed_case_name_is_archived_as_the_catalog_spells_it);

fn a_quoted_table_name_with_a_dot_is_archived(b: Backend) {
    archived_and_restored(
        b,
        "CREATE TABLE \"odd.name\" (id bigint PRIMARY KEY, \"select\" text);\nINSERT INTO \"odd.name\" VALUES (1, 'ann'), (2, 'bob');",
        "DROP TABLE \"odd.name\";",
        "SELECT id, \"select\" FROM \"odd.name\" ORDER BY id",
        "1|ann\n2|bob",
    );
}
backends!(a_quoted_table_name_with_a_dot_is_archived);

fn a_column_named_copied_is_archived(b: Backend) {
    // `copied` is also the name of the Postgres copy's row counter.
    archived_and_restored(
        b,
        "CREATE TABLE t (id bigint PRIMARY KEY, copied text);\nINSERT INTO t VALUES (1, 'ann'), (2, 'bob');",
        "DROP TABLE t;",
        "SELECT id, copied FROM t ORDER BY id",
        "1|ann\n2|bob",
    );
}
backends!(a_column_named_copied_is_archived);

#[test]
fn restore_writes_identity_keys_back_and_leaves_generated_columns_to_the_table_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_t.sql",
        "-- capstan:up\nCREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, up text GENERATED ALWAYS AS (upper(name)) STORED);\nINSERT INTO t (name) VALUES ('ann'), ('bob');\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add("0002_truncate.sql", &contract("TRUNCATE t;"));
    assert_code(&up(&p, &[]), 0);
    let r = restore(&p, entries(&p)[0]["id"].as_i64().unwrap());
    assert_eq!(r["rows_restored"], 2);
    assert_eq!(
        p.query("SELECT id, name, up FROM t ORDER BY id"),
        "1|ann|ANN\n2|bob|BOB"
    );
}

fn rows_without_a_key_are_restored_once(b: Backend) {
    let p = Project::new(b);
    p.add(
        "0001_logs.sql",
        "-- capstan:up\nCREATE TABLE logs (line text, level int);\nINSERT INTO logs VALUES ('a', 1), ('b', 2);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add("0002_delete.sql", &contract("DELETE FROM logs;"));
    assert_code(&up(&p, &[]), 0);
    let id = entries(&p)[0]["id"].as_i64().unwrap();
    restore(&p, id);
    let out = p.capstan(&["archive", "restore", &id.to_string()]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("restored already"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        p.query("SELECT line, level FROM logs ORDER BY line"),
        "a|1\nb|2"
    );
}
backends!(rows_without_a_key_are_restored_once);

fn a_dirty_migration_names_its_own_statement_not_the_archive_copy(b: Backend) {
    let p = seeded(b);
    p.add(
        "0002_half.sql",
        "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\nINSERT INTO nowhere VALUES (1);\n",
    );
    assert_code(&up(&p, &[]), 1);
    assert_eq!(entries(&p).len(), 1, "the copy ran before the drop");
    let out = p.capstan(&["migrate", "repair"]);
    assert!(
        stdout(&out).contains("statement 2 (line 5) failed"),
        "{}",
        stdout(&out)
    );
}
backends!(a_dirty_migration_names_its_own_statement_not_the_archive_copy);

fn an_over_limit_copy_in_a_no_transaction_migration_leaves_nothing_behind(b: Backend) {
    let p = seeded(b);
    write_config(&p, "[archive]\nmax_size = \"1B\"\n");
    p.add(
        "0002_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n",
    );
    let out = up(&p, &[]);
    assert_code(&out, 1);
    assert!(
        stderr(&out).contains("larger than the archive limit"),
        "{}",
        stderr(&out)
    );
    assert!(p.has_column("users", "name"), "the drop did not run");
    assert!(entries(&p).is_empty());
    assert_eq!(archive_tables(&p), 0, "no copy without an entry");
}
backends!(an_over_limit_copy_in_a_no_transaction_migration_leaves_nothing_behind);

#[test]
fn the_key_dropped_before_another_column_changes_is_archived_as_the_table_then_is_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add(
        "0001_t.sql",
        "-- capstan:up\nCREATE TABLE t (id bigint PRIMARY KEY, d timestamp, n text);\nINSERT INTO t VALUES (1, '2024-01-02 03:04:05', 'a'), (2, NULL, 'b');\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop_key.sql",
        &contract("ALTER TABLE t DROP COLUMN id;\nALTER TABLE t ALTER COLUMN d TYPE date;"),
    );
    let out = up(&p, &[]);
    assert_code(&out, 0);
    let e = entries(&p);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        (&e[0]["kind"], &e[0]["scope"], &e[0]["row_count"]),
        (&"drop-column".into(), &"rows".into(), &2.into())
    );
    // The second copy sees the table without its key: every column, whole.
    assert_eq!(e[1]["kind"], "alter-type");
    assert_eq!(e[1]["scope"], "rows");
    assert_eq!(e[1]["primary_key"], serde_json::json!([]));
    let names: Vec<&str> = e[1]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["d", "n"]);
    assert_eq!(
        p.query(&format!(
            "SELECT d, n FROM {} ORDER BY n",
            e[1]["archive_table"].as_str().unwrap()
        )),
        "2024-01-02 03:04:05|a\n|b"
    );
}

const TYPES: &str = "-- capstan:up
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN pos AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE f (id int PRIMARY KEY, m mood, p pos, c pair, ms mood[]);
INSERT INTO f VALUES (1, 'happy', 3, '(1,one)', '{happy,sad}'), (2, NULL, NULL, NULL, NULL);
";

const RECREATE_TYPES: &str = "CREATE TYPE mood AS ENUM ('happy', 'sad'); CREATE DOMAIN pos AS int CHECK (VALUE > 0); CREATE TYPE pair AS (a int, b text)";

#[test]
fn values_of_the_applications_types_are_kept_as_text_so_the_types_can_go_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_f.sql", TYPES);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop.sql",
        &contract("DROP TABLE f;\nDROP TYPE mood;\nDROP DOMAIN pos;\nDROP TYPE pair;"),
    );
    let out = up(&p, &[]);
    assert_code(&out, 0);
    let e = entries(&p);
    assert_eq!(e.len(), 1);
    let id = e[0]["id"].as_i64().unwrap().to_string();
    let stored: Vec<(String, String)> = e[0]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["stored_as"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        [
            ("integer".into(), "-".into()),
            ("mood".into(), "text".into()),
            ("pos".into(), "text".into()),
            ("pair".into(), "text".into()),
            ("mood[]".into(), "text".into()),
        ]
    );

    // The types are gone: show and restore refuse, clearly, with exit 5.
    for cmd in ["show", "restore"] {
        let out = p.capstan(&["archive", cmd, &id, "--json"]);
        assert_code(&out, 5);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "restore-refused");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("type mood (of m) no longer exists")
                && msg.contains("create the type again"),
            "{msg}"
        );
    }
    assert!(!p.has_table("f"), "a refused restore changes nothing");

    p.query(RECREATE_TYPES);
    let out = p.capstan(&["archive", "show", &id, "--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["preview"]["rows"][0],
        serde_json::json!(["1", "happy", "3", "(1,one)", "{happy,sad}"])
    );
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["rows_restored"], 2);
    assert_eq!(
        p.query("SELECT id, m, p, c, ms, pg_typeof(m), pg_typeof(ms) FROM f ORDER BY id"),
        "1|happy|3|(1,one)|{happy,sad}|mood|mood[]\n2|||||mood|mood[]"
    );
}

#[test]
fn drop_type_cascade_leaves_archived_values_alone_postgres() {
    let p = Project::new(Backend::Postgres);
    p.add("0001_f.sql", TYPES);
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop.sql",
        &contract("ALTER TABLE f DROP COLUMN m;\nDROP TYPE mood CASCADE;"),
    );
    assert_code(&up(&p, &[]), 0);
    let e = entries(&p);
    assert_eq!(e.len(), 1);
    assert_eq!(
        p.query(&format!(
            "SELECT id, m FROM {} ORDER BY id",
            e[0]["archive_table"].as_str().unwrap()
        )),
        "1|happy\n2|",
        "the copy keeps its column"
    );
    p.query("CREATE TYPE mood AS ENUM ('happy', 'sad')");
    let r = restore(&p, e[0]["id"].as_i64().unwrap());
    assert_eq!(r["columns_added"], serde_json::json!(["m"]));
    assert_eq!(p.query("SELECT id, m FROM f ORDER BY id"), "1|happy\n2|");
}

fn a_copy_damaged_outside_capstan_is_refused_with_exit_5(b: Backend) {
    let p = seeded_then(
        b,
        "0002_drop_name.sql",
        "ALTER TABLE users DROP COLUMN name;",
    );
    let e = entries(&p);
    let table = e[0]["archive_table"].as_str().unwrap().to_string();
    let id = e[0]["id"].as_i64().unwrap().to_string();
    p.query(&format!("ALTER TABLE {table} DROP COLUMN name"));
    for cmd in ["show", "restore"] {
        let out = p.capstan(&["archive", cmd, &id]);
        assert_code(&out, 5);
        assert!(
            stderr(&out)
                .contains("no longer has column name: something outside capstan dropped it"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    assert!(!p.has_column("users", "name"), "nothing changed");
    p.query(&format!("DROP TABLE {table}"));
    let out = p.capstan(&["archive", "restore", &id]);
    assert_code(&out, 5);
    assert!(
        stderr(&out).contains("no longer exists: something outside capstan dropped it"),
        "{}",
        stderr(&out)
    );
}
backends!(a_copy_damaged_outside_capstan_is_refused_with_exit_5);

fn nothing_is_copied_from_an_empty_table(b: Backend) {
    let p = Project::new(b);
    p.add(
        "0001_e.sql",
        "-- capstan:up\nCREATE TABLE e (id int PRIMARY KEY, x text);\nCREATE TABLE logs (line text);\n",
    );
    assert_code(&p.capstan(&["migrate", "up"]), 0);
    p.add(
        "0002_drop.sql",
        &contract("ALTER TABLE e DROP COLUMN x;\nDROP TABLE e;\nDELETE FROM logs;"),
    );
    let out = up(&p, &[]);
    assert_code(&out, 0);
    assert!(
        stderr(&out)
            .contains("0002_drop.sql:3: recorded e.x before drop-column: no rows, so no copy"),
        "{}",
        stderr(&out)
    );
    let e = entries(&p);
    assert_eq!(e.len(), 3, "each destruction is recorded: {e:?}");
    for entry in &e {
        assert_eq!(entry["row_count"], 0);
        assert!(entry["archive_table"].is_null(), "{entry}");
    }
    assert_eq!(archive_tables(&p), 0, "no copy of no rows");
    let out = p.capstan(&["archive", "show", &e[1]["id"].to_string(), "--json"]);
    assert_code(&out, 0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["preview"]["rows"], serde_json::json!([]));

    let r = restore(&p, e[1]["id"].as_i64().unwrap());
    assert_eq!(
        (&r["table_created"], &r["rows_restored"]),
        (&true.into(), &0.into())
    );
    assert!(p.has_table("e"));
    let r = restore(&p, e[2]["id"].as_i64().unwrap());
    assert_eq!(r["rows_restored"], 0);
    assert_eq!(p.count("SELECT count(*) FROM logs"), 0);
    let out = p.capstan(&["archive", "purge", "--older-than", "0s"]);
    assert_code(&out, 0);
    assert!(entries(&p).is_empty());
}
backends!(nothing_is_copied_from_an_empty_table);

const RENAMED: &str = "CREATE TABLE t (id bigint PRIMARY KEY, a text, b text);\nINSERT INTO t VALUES (1, 'x', 'y'), (2, 'p', NULL);";

fn a_key_renamed_earlier_in_the_migration_is_followed(b: Backend) {
    archived_and_restored(
        b,
        RENAMED,
        "ALTER TABLE t RENAME COLUMN id TO uid;\nALTER TABLE t DROP COLUMN a;",
        "SELECT uid, a, b FROM t ORDER BY uid",
        "1|x|y\n2|p|",
    );
}
backends!(a_key_renamed_earlier_in_the_migration_is_followed);

fn a_column_renamed_then_dropped_is_archived(b: Backend) {
    archived_and_restored(
        b,
        RENAMED,
        "ALTER TABLE t RENAME COLUMN a TO a2;\nALTER TABLE t DROP COLUMN a2;",
        "SELECT id, a2, b FROM t ORDER BY id",
        "1|x|y\n2|p|",
    );
}
backends!(a_column_renamed_then_dropped_is_archived);

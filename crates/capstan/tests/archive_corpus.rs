//! The archive never breaks a valid migration: every migration of a corpus
//! built from the patterns real projects use (a key dropped before another
//! column changes, types of the application's own dropped after their
//! tables, `CASCADE`, partitioned tables, generated columns, views, renames
//! before drops, tables without a key, empty tables) runs with the archive
//! on and with it off, and both leave the same schema (`capstan schema
//! dump`). With the archive on, every entry can be listed and shown (or is
//! refused with exit 5 when a type it needs is gone), never a raw error.

mod common;

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

/// Applies `setup` (migration 1, with its rows), then `destroy` (a contract
/// migration), with the archive `on` or off; returns the project and the
/// schema dump after both.
fn run(b: Backend, on: bool, setup: &str, destroy: &str) -> (Project, String) {
    let p = Project::new(b);
    if !on {
        std::fs::write(
            p.dir.path().join("capstan.toml"),
            "[archive]\nenabled = false\n",
        )
        .unwrap();
    }
    p.add("0001_setup.sql", &format!("-- capstan:up\n{setup}\n"));
    let out = p.capstan(&["migrate", "up"]);
    assert_code(&out, 0);
    p.add(
        "0002_destroy.sql",
        &format!("-- capstan:phase contract\n-- capstan:up\n{destroy}\n"),
    );
    let out = p.capstan(&["migrate", "up", "--unsafe-ok", "--force-contract"]);
    assert!(
        out.status.success(),
        "{b:?}, archive {}: the migration failed:\n{destroy}\n{}",
        if on { "on" } else { "off" },
        stderr(&out)
    );
    let dump = p.capstan(&["schema", "dump"]);
    assert_code(&dump, 0);
    (p, stdout(&dump))
}

/// Runs the case with the archive on and off on `b`, requiring the same
/// schema, and every entry readable.
fn same_schema(b: Backend, setup: &str, destroy: &str) {
    let (p, on) = run(b, true, setup, destroy);
    let (_, off) = run(b, false, setup, destroy);
    assert_eq!(
        on, off,
        "{b:?}: the archive changed the schema of\n{destroy}"
    );
    let out = p.capstan(&["archive", "list", "--json"]);
    assert_code(&out, 0);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = list["entries"].as_array().unwrap();
    for e in entries {
        let id = e["id"].as_i64().unwrap().to_string();
        let out = p.capstan(&["archive", "show", &id, "--json"]);
        let code = out.status.code();
        assert!(
            code == Some(0) || (code == Some(5) && stdout(&out).contains("restore-refused")),
            "{b:?}: show {id} of {destroy}: {code:?}\n{}{}",
            stdout(&out),
            stderr(&out)
        );
        if e["row_count"] == 0 {
            assert!(e["archive_table"].is_null(), "{b:?}: {e}");
        }
    }
    // Nothing but the copies of the entries that hold rows.
    let with_rows = entries.iter().filter(|e| e["row_count"] != 0).count() as i64;
    let copies = match b {
        Backend::Postgres => p.count(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'capstan_archive'",
        ),
        Backend::Sqlite => p.count(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'capstan\\_archive\\_%' ESCAPE '\\'",
        ),
    };
    assert_eq!(copies, with_rows, "{b:?}: one copy per entry with rows");
}

/// One test per case and listed backend (`case::postgres`, `case::sqlite`).
macro_rules! corpus {
    ($($name:ident: [$($backend:ident),+] => $setup:expr, $destroy:expr;)*) => {
        $(
            fn $name(b: Backend) {
                same_schema(b, $setup, $destroy);
            }
            backends!($name: [$($backend),+]);
        )*
    };
}

const T: &str =
    "CREATE TABLE t (id bigint PRIMARY KEY, a text, b text, d timestamp, n numeric(10,2));
INSERT INTO t VALUES (1, 'x', 'y', '2024-01-02 03:04:05', 1.25), (2, 'p', NULL, NULL, 2.5);";

const LOGS: &str = "CREATE TABLE logs (line text, level int, src text);
INSERT INTO logs VALUES ('a', 1, 'web'), ('b', 2, 'cron'), ('b', 2, 'cron');";

const MOOD: &str = "CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN pos AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE f (id int PRIMARY KEY, m mood, p pos, c pair, ms mood[], tags text[]);
INSERT INTO f VALUES (1, 'happy', 3, '(1,one)', '{happy,sad}', '{a,b}'), (2, NULL, NULL, NULL, NULL, NULL);";

const FK: &str = "CREATE TABLE parent (id int PRIMARY KEY, name text);
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent ON DELETE CASCADE, v text);
INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
INSERT INTO child VALUES (10, 1, 'c1'), (11, 2, 'c2');";

corpus! {
    // The key goes first, then another column of the same table changes.
    key_dropped_then_column_retyped: [postgres] => T,
        "ALTER TABLE t DROP COLUMN id;\nALTER TABLE t ALTER COLUMN d TYPE date;";
    key_dropped_and_column_retyped_in_one_statement: [postgres] => T,
        "ALTER TABLE t DROP COLUMN id, ALTER COLUMN d TYPE date;";
    key_dropped_then_column_dropped: [postgres] => T,
        "ALTER TABLE t DROP COLUMN id;\nALTER TABLE t DROP COLUMN a;\nUPDATE t SET b = 'z';";
    key_renamed_then_column_dropped: [postgres, sqlite] => T,
        "ALTER TABLE t RENAME COLUMN id TO uid;\nALTER TABLE t DROP COLUMN a;";
    column_dropped_then_table_dropped: [postgres, sqlite] => T,
        "ALTER TABLE t DROP COLUMN a;\nDROP TABLE t;";
    two_columns_of_a_table_without_key: [postgres, sqlite] => LOGS,
        "ALTER TABLE logs DROP COLUMN level;\nALTER TABLE logs DROP COLUMN src;";
    table_without_key_emptied_then_dropped: [postgres, sqlite] => LOGS,
        "DELETE FROM logs;\nDROP TABLE logs;";
    column_renamed_then_dropped: [postgres, sqlite] => T,
        "ALTER TABLE t RENAME COLUMN a TO a2;\nALTER TABLE t DROP COLUMN a2;";
    column_renamed_then_table_dropped: [postgres, sqlite] => T,
        "ALTER TABLE t RENAME COLUMN a TO a2;\nDROP TABLE t;";
    table_renamed_then_dropped: [postgres, sqlite] => T,
        "ALTER TABLE t RENAME TO t_old;\nDROP TABLE t_old;";
    table_rebuilt_then_column_dropped: [postgres, sqlite] => T,
        "CREATE TABLE t_new (id bigint PRIMARY KEY, a text, b text);\nINSERT INTO t_new SELECT id, a, b FROM t;\nDROP TABLE t;\nALTER TABLE t_new RENAME TO t;\nALTER TABLE t DROP COLUMN b;";
    updated_then_dropped: [postgres, sqlite] => T,
        "UPDATE t SET a = upper(a);\nALTER TABLE t DROP COLUMN a;";
    empty_table_dropped: [postgres, sqlite] => "CREATE TABLE e (id int PRIMARY KEY, x text);\nCREATE TABLE e2 (x text);",
        "ALTER TABLE e DROP COLUMN x;\nDROP TABLE e;\nDELETE FROM e2;\nDROP TABLE e2;";
    // Types of the application's own, dropped with or after their columns.
    table_then_its_types_dropped: [postgres] => MOOD,
        "DROP TABLE f;\nDROP TYPE mood;\nDROP DOMAIN pos;\nDROP TYPE pair;";
    columns_then_their_types_dropped: [postgres] => MOOD,
        "ALTER TABLE f DROP COLUMN m, DROP COLUMN ms;\nDROP TYPE mood;\nALTER TABLE f DROP COLUMN p;\nDROP DOMAIN pos;";
    type_dropped_with_cascade: [postgres] => MOOD,
        "ALTER TABLE f DROP COLUMN c;\nDROP TYPE pair;\nUPDATE f SET m = NULL;\nDROP TYPE mood CASCADE;";
    enum_column_retyped_to_text_then_type_dropped: [postgres] => MOOD,
        "ALTER TABLE f ALTER COLUMN m TYPE text;\nALTER TABLE f DROP COLUMN ms;\nDROP TYPE mood;";
    extension_type_dropped_with_its_extension: [postgres] =>
        "CREATE EXTENSION IF NOT EXISTS citext;\nCREATE TABLE u (id int PRIMARY KEY, email citext);\nINSERT INTO u VALUES (1, 'A@x.org');",
        "ALTER TABLE u DROP COLUMN email;\nDROP EXTENSION citext;";
    jsonb_and_generated_columns: [postgres] =>
        "CREATE TABLE j (id int PRIMARY KEY, doc jsonb, meta jsonb, name text GENERATED ALWAYS AS (doc->>'name') STORED);\nINSERT INTO j (id, doc, meta) VALUES (1, '{\"name\": \"ann\"}', '[1]'), (2, '{}', NULL);",
        "ALTER TABLE j ALTER COLUMN meta TYPE json;\nALTER TABLE j DROP COLUMN doc CASCADE;\nDROP TABLE j;";
    generated_column_sqlite: [postgres, sqlite] =>
        "CREATE TABLE g (id int PRIMARY KEY, a text, up text GENERATED ALWAYS AS (upper(a)) STORED);\nINSERT INTO g (id, a) VALUES (1, 'x'), (2, 'y');",
        "DELETE FROM g;\nDROP TABLE g;";
    column_used_by_a_view: [postgres] => "CREATE TABLE t (id int PRIMARY KEY, a text, b text);\nCREATE VIEW v AS SELECT id, a FROM t;\nINSERT INTO t VALUES (1, 'x', 'y');",
        "ALTER TABLE t DROP COLUMN a CASCADE;\nALTER TABLE t DROP COLUMN b;";
    view_dropped_then_its_column: [postgres, sqlite] => "CREATE TABLE t (id int PRIMARY KEY, a text, b text);\nCREATE VIEW v AS SELECT id, a FROM t;\nINSERT INTO t VALUES (1, 'x', 'y');",
        "DROP VIEW v;\nALTER TABLE t DROP COLUMN a;";
    table_dropped_with_cascade: [postgres] => FK,
        "DROP TABLE parent CASCADE;\nALTER TABLE child DROP COLUMN parent_id;";
    truncate_cascade_then_drop: [postgres] => FK,
        "TRUNCATE parent CASCADE;\nDROP TABLE child;\nDROP TABLE parent;";
    delete_through_cascade_then_drop: [postgres] => FK,
        "DELETE FROM parent;\nALTER TABLE child DROP COLUMN v;";
    child_then_parent_dropped: [postgres, sqlite] => FK,
        "DROP TABLE child;\nDROP TABLE parent;";
    partitioned_table: [postgres] =>
        "CREATE TABLE m (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);\nCREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\nINSERT INTO m VALUES (1, '2024-02-03', 'x'), (2, '2024-05-06', 'y');",
        "ALTER TABLE m DROP COLUMN v;\nDROP TABLE m;";
    partition_detached_then_dropped: [postgres] =>
        "CREATE TABLE m (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);\nCREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\nINSERT INTO m VALUES (1, '2024-02-03', 'x');",
        "ALTER TABLE m DETACH PARTITION m_2024;\nDROP TABLE m_2024;\nTRUNCATE m;";
    schema_qualified_table: [postgres] =>
        "CREATE SCHEMA audit;\nCREATE TABLE audit.ev (id int PRIMARY KEY, what text);\nINSERT INTO audit.ev VALUES (1, 'x');",
        "ALTER TABLE audit.ev DROP COLUMN what;\nDROP TABLE audit.ev;\nDROP SCHEMA audit;";
    lossy_retype_then_key_dropped: [postgres] => T,
        "ALTER TABLE t ALTER COLUMN n TYPE integer;\nALTER TABLE t DROP COLUMN id;\nALTER TABLE t ALTER COLUMN d TYPE date;";
}

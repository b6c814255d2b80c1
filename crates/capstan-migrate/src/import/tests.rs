use super::*;

#[test]
fn tool_names_round_trip() {
    for t in Tool::ALL {
        assert_eq!(t.as_str().parse::<Tool>().unwrap(), t);
    }
    let err = "flyway".parse::<Tool>().unwrap_err();
    assert!(err.to_string().contains("golang-migrate"), "{err}");
    assert_eq!(
        serde_json::to_string(&Tool::GolangMigrate).unwrap(),
        "\"golang-migrate\""
    );
}

#[test]
fn names_become_snake_case() {
    for (from, to) in [
        ("create_users", "create_users"),
        ("Create Users", "create_users"),
        ("add-email--to users!", "add_email_to_users"),
        ("AddUsers", "addusers"),
        ("2fa_secrets", "m_2fa_secrets"),
        ("__x__", "x"),
        ("", "migration"),
        ("été", "t"),
        ("ß", "migration"),
    ] {
        assert_eq!(snake_name(from), to, "{from}");
    }
}

#[test]
fn golang_migrate_names_follow_its_pattern() {
    assert!(matches!(
        golang_migrate_name("000001_create_users.up.sql"),
        Some(("000001", "create_users", Kind::Up, "sql"))
    ));
    assert!(matches!(
        golang_migrate_name("2_a.up.b.down.sql"),
        Some(("2", "a.up.b", Kind::Down, "sql"))
    ));
    assert!(golang_migrate_name("1_create_users.sql").is_none());
    assert!(golang_migrate_name("v1_x.up.sql").is_none());
}

fn part(text: &str) -> (Part, Vec<Statement>) {
    let p = Part::whole(Path::new("x.sql"), "x.sql".into(), text);
    let s = p.statements().unwrap();
    (p, s)
}

#[test]
fn a_wrapping_begin_commit_is_found_with_its_lines() {
    let (p, s) = part("-- c\nBEGIN;\nCREATE TABLE a (id int);\n  COMMIT ;  \n");
    let Control::Wrapped {
        begin,
        commit,
        lines,
    } = control(&p, &s)
    else {
        panic!("not wrapped");
    };
    assert_eq!((p.line(lines.0), p.line(lines.1)), (2, 4));
    let mut t = p.text.clone();
    t.replace_range(commit, "");
    t.replace_range(begin, "");
    assert_eq!(t, "-- c\nCREATE TABLE a (id int);\n");
}

#[test]
fn other_transaction_control_is_the_files_own() {
    for sql in [
        "BEGIN; SELECT 1; COMMIT; BEGIN; SELECT 2; COMMIT;",
        "SELECT 1; SAVEPOINT a; SELECT 2;",
        "BEGIN ISOLATION LEVEL SERIALIZABLE; SELECT 1; COMMIT;",
        "BEGIN; SELECT 1; ROLLBACK;",
    ] {
        let (p, s) = part(sql);
        assert!(matches!(control(&p, &s), Control::Own { .. }), "{sql}");
    }
    let (p, s) = part("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;\nSELECT $$BEGIN;$$;");
    assert!(matches!(control(&p, &s), Control::None));
}

#[test]
fn statements_that_cannot_run_in_a_transaction_are_found() {
    let found = |sql: &str| cannot_run_in_transaction(&words(sql));
    assert_eq!(
        found("create index concurrently i on t (a)"),
        Some("CREATE INDEX CONCURRENTLY")
    );
    assert_eq!(
        found("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)"),
        Some("CREATE UNIQUE INDEX CONCURRENTLY")
    );
    assert_eq!(
        found("DROP INDEX CONCURRENTLY i"),
        Some("DROP INDEX CONCURRENTLY")
    );
    assert_eq!(found("VACUUM ANALYZE t"), Some("VACUUM"));
    assert_eq!(
        found("ALTER SYSTEM SET work_mem = '64MB'"),
        Some("ALTER SYSTEM")
    );
    assert_eq!(found("CREATE DATABASE x"), Some("CREATE DATABASE"));
    assert_eq!(
        found("ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY"),
        Some("DETACH PARTITION … CONCURRENTLY")
    );
    assert_eq!(found("CREATE INDEX i ON t (a)"), None);
    assert_eq!(
        found("INSERT INTO notes VALUES ('create index concurrently')"),
        None
    );
    assert_eq!(found("CREATE INDEX /* CONCURRENTLY */ i ON t (a)"), None);
    assert_eq!(found("REFRESH MATERIALIZED VIEW CONCURRENTLY v"), None);
}

#[test]
fn words_skip_strings_comments_and_dollar_quotes() {
    assert_eq!(
        words("select 'a b' , \"c d\", $x$ e $x$, $1 -- f\n/* g /* h */ */ i"),
        vec!["SELECT", "I"]
    );
}

#[test]
fn dbmate_directives_take_options() {
    assert_eq!(
        dbmate_directive("-- migrate:up transaction:false"),
        Some((true, "transaction:false"))
    );
    assert_eq!(dbmate_directive("--migrate:down"), Some((false, "")));
    assert_eq!(dbmate_directive("-- migrate:upgrade"), None);
    assert_eq!(dbmate_directive("  -- migrate:up"), None);
}

#[test]
fn diesel_metadata_reads_run_in_transaction() {
    let mut notes = Vec::new();
    let p = Path::new("m/metadata.toml");
    assert!(!diesel_metadata(p, "m", "# x\nrun_in_transaction = false # y\n", &mut notes).unwrap());
    assert!(diesel_metadata(
        p,
        "m",
        "run_in_transaction=true\nauthor = \"x\"\n[t]\nrun_in_transaction = false\n",
        &mut notes
    )
    .unwrap());
    assert_eq!(notes.len(), 2, "{notes:?}");
    let err = diesel_metadata(p, "m", "\nrun_in_transaction = maybe\n", &mut notes).unwrap_err();
    assert!(err.to_string().starts_with("m/metadata.toml:2: "), "{err}");
}

fn imported(tool: Tool, versions: &[&str]) -> Vec<Imported> {
    versions
        .iter()
        .enumerate()
        .map(|(i, v)| Imported {
            version: i as u64 + 1,
            file_name: format!("{:04}_m.sql", i + 1),
            from: Some((tool, v.to_string())),
        })
        .collect()
}

fn rows(list: &[(&str, bool)]) -> Vec<ToolHistoryRow> {
    list.iter()
        .map(|(v, ok)| ToolHistoryRow {
            version: v.to_string(),
            ok: *ok,
        })
        .collect()
}

#[test]
fn history_maps_to_the_applied_prefix_in_each_tools_terms() {
    // goose: the latest row per version decides; version 0 is goose's own.
    let goose = imported(Tool::Goose, &["1", "2", "3"]);
    let h = rows(&[
        ("0", true),
        ("1", true),
        ("2", true),
        ("3", true),
        ("3", false),
    ]);
    assert_eq!(map_history(Tool::Goose, &goose, &h), Ok(Some(2)));
    assert_eq!(
        map_history(Tool::Goose, &goose, &rows(&[("0", true)])),
        Ok(None)
    );
    // golang-migrate: one row, everything up to it; dirty is refused.
    let gm = imported(Tool::GolangMigrate, &["1", "5", "9"]);
    assert_eq!(
        map_history(Tool::GolangMigrate, &gm, &rows(&[("5", true)])),
        Ok(Some(2))
    );
    let err = map_history(Tool::GolangMigrate, &gm, &rows(&[("5", false)])).unwrap_err();
    assert!(err.contains("dirty"), "{err}");
    let err = map_history(Tool::GolangMigrate, &gm, &rows(&[("4", true)])).unwrap_err();
    assert!(err.contains("version 4, which no migration"), "{err}");
    // sqlx: a failed row is refused.
    let sqlx = imported(Tool::Sqlx, &["10", "20"]);
    let err = map_history(Tool::Sqlx, &sqlx, &rows(&[("10", false)])).unwrap_err();
    assert!(err.contains("as failed"), "{err}");
    // dbmate compares strings: `01` is not `1`.
    let dbmate = imported(Tool::Dbmate, &["01", "1"]);
    assert_eq!(
        map_history(Tool::Dbmate, &dbmate, &rows(&[("01", true)])),
        Ok(Some(1))
    );
    // Not a prefix: refused, naming both.
    let err = map_history(Tool::Sqlx, &sqlx, &rows(&[("20", true)])).unwrap_err();
    assert!(
        err.contains("applied version 20 (0002_m.sql) but not 0001_m.sql (sqlx version 10)"),
        "{err}"
    );
    // A file imported from another tool is not one of this tool's.
    let mut mixed = imported(Tool::Sqlx, &["10"]);
    mixed.push(Imported {
        version: 2,
        file_name: "0002_new.sql".into(),
        from: None,
    });
    assert_eq!(
        map_history(Tool::Sqlx, &mixed, &rows(&[("10", true)])),
        Ok(Some(1))
    );
}

#[test]
fn the_first_line_names_tool_and_version() {
    assert_eq!(
        imported_from("-- imported from golang-migrate version 7: 7_a.up.sql\n-- capstan:up\n"),
        Some((Tool::GolangMigrate, "7".into()))
    );
    assert_eq!(imported_from("-- imported from goose: 1_a.sql\n"), None);
    assert_eq!(imported_from("-- capstan:up\nSELECT 1;"), None);
}

#[test]
fn goose_annotations_follow_goose() {
    assert_eq!(goose_annotation("-- +goose up"), Ok(Goose::Up));
    assert_eq!(
        goose_annotation("--+goose NO TRANSACTION\r"),
        Ok(Goose::NoTransaction)
    );
    assert_eq!(
        goose_annotation("-- +goose envsub off"),
        Ok(Goose::EnvsubOff)
    );
    assert!(goose_annotation("-- +goose ENVSUBST ON").is_err());
    assert!(goose_annotation("  -- +goose Up").is_err());
    assert!(goose_annotation("-- +goose NO  TRANSACTION").is_err());
    assert!(goose_annotation("-- +goose").is_err());
}

#[test]
fn sections_are_trimmed_to_their_text() {
    assert_eq!(trim_section("\n \n  SELECT 1;\n\n"), "  SELECT 1;");
    assert_eq!(trim_section("\n\n"), "");
}

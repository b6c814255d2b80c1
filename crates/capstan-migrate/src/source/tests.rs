use super::*;

fn parse(name: &str, text: &str) -> Result<Migration, SourceError> {
    parse_migration(Path::new(name), text.as_bytes())
}

#[test]
fn parses_directives_and_sections() {
    let m = parse(
        "0002_drop_name.sql",
        "-- capstan:phase contract\n-- capstan:lock-timeout 2s\n-- capstan:up\nALTER TABLE users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users ADD COLUMN name text;\n",
    )
    .unwrap();
    assert_eq!(m.version, 2);
    assert_eq!(m.name, "drop_name");
    assert_eq!(m.phase, Phase::Contract);
    assert_eq!(m.lock_timeout, Some(Duration::from_secs(2)));
    assert_eq!(m.up.first_line, 4);
    assert_eq!(m.up.sql, "ALTER TABLE users DROP COLUMN name;\n");
    let down = m.down.unwrap();
    assert_eq!(down.first_line, 6);
    assert!(!m.no_transaction);
}

#[test]
fn section_hashes_ignore_line_endings_and_trailing_whitespace_only() {
    let lf = parse(
        "0001_a.sql",
        "-- capstan:up\nCREATE TABLE a (id int);\n-- capstan:down\nDROP TABLE a;\n",
    )
    .unwrap();
    let crlf = parse(
        "0001_a.sql",
        "-- capstan:up\r\n\r\nCREATE TABLE a (id int);  \t\r\n\r\n-- capstan:down\r\nDROP TABLE a;\r\n",
    )
    .unwrap();
    assert_eq!(lf.up_checksum, crlf.up_checksum);
    assert_eq!(lf.down_checksum, crlf.down_checksum);
    assert_ne!(lf.checksum, crlf.checksum);
    assert!(crlf.matches_file_checksum(&checksum(
        "-- capstan:up\n\nCREATE TABLE a (id int);  \t\n\n-- capstan:down\nDROP TABLE a;\n"
            .as_bytes()
    )));
    let edited_down = parse(
        "0001_a.sql",
        "-- capstan:up\nCREATE TABLE a (id int);\n-- capstan:down\nDROP TABLE IF EXISTS a;\n",
    )
    .unwrap();
    assert_eq!(lf.up_checksum, edited_down.up_checksum);
    assert_ne!(lf.down_checksum, edited_down.down_checksum);
    let edited_up = parse("0001_a.sql", "-- capstan:up\nCREATE TABLE a (id  int);\n").unwrap();
    assert_ne!(lf.up_checksum, edited_up.up_checksum, "inner spaces count");
    assert_eq!(edited_up.down_checksum, None);
}

#[test]
fn phase_defaults_to_expand() {
    let m = parse("0001_a.sql", "-- capstan:up\nCREATE TABLE a (id int);").unwrap();
    assert_eq!(m.phase, Phase::Expand);
    assert!(m.down.is_none());
}

#[test]
fn bad_inputs_name_the_line() {
    let cases = [
        (
            "-- capstan:phase sideways\n-- capstan:up\nSELECT 1;",
            1,
            "unknown phase",
        ),
        (
            "-- capstan:frobnicate\n-- capstan:up\nSELECT 1;",
            1,
            "unknown directive",
        ),
        (
            "-- capstan:up\nSELECT 1;\n-- capstan:phase contract\n",
            3,
            "must come before",
        ),
        (
            "-- capstan:lock-timeout soon\n-- capstan:up\nSELECT 1;",
            1,
            "lock-timeout",
        ),
        ("-- capstan:up now\nSELECT 1;", 1, "takes no argument"),
        (
            "-- capstan:down\n-- capstan:up\nSELECT 1;",
            1,
            "before `-- capstan:up`",
        ),
        (
            "CREATE TABLE a (id int);\n-- capstan:up\nSELECT 1;",
            1,
            "SQL before",
        ),
    ];
    for (text, line, needle) in cases {
        let err = parse("0001_a.sql", text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("0001_a.sql:{line}:")), "{msg}");
        assert!(msg.contains(needle), "{msg} should contain {needle}");
    }
}

#[test]
fn missing_or_empty_up_is_refused() {
    assert!(matches!(
        parse("0001_a.sql", "CREATE TABLE a();").unwrap_err(),
        SourceError::Directive { .. }
    ));
    assert!(matches!(
        parse("0001_a.sql", "-- just a comment\n").unwrap_err(),
        SourceError::MissingUp { .. }
    ));
    assert!(matches!(
        parse(
            "0001_a.sql",
            "-- capstan:up\n-- nothing\n-- capstan:down\nDROP TABLE a;"
        )
        .unwrap_err(),
        SourceError::MissingUp { .. }
    ));
    assert!(matches!(
        parse("0001_a.sql", "  \n\n").unwrap_err(),
        SourceError::Empty { .. }
    ));
}

#[test]
fn non_utf8_names_the_line() {
    let err =
        parse_migration(Path::new("0001_a.sql"), b"-- capstan:up\nSELECT '\xff';").unwrap_err();
    assert!(
        matches!(
            err,
            SourceError::NotUtf8 {
                line: 2,
                offset: 22,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn file_names_follow_the_pattern() {
    assert_eq!(
        parse_file_name("0001_create_users.sql"),
        Some((1, "create_users".into()))
    );
    assert_eq!(
        parse_file_name("20240101_x.sql"),
        Some((20240101, "x".into()))
    );
    for bad in [
        "1_a.sql",
        "0001-a.sql",
        "0001_A.sql",
        "0001_.sql",
        "0001_a.txt",
        "abcd_a.sql",
    ] {
        assert_eq!(parse_file_name(bad), None, "{bad}");
    }
}

#[test]
fn transaction_control_is_refused_unless_no_transaction() {
    let err = parse(
        "0001_a.sql",
        "-- capstan:up\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("0001_a.sql:2:"), "{err}");
    parse(
        "0001_a.sql",
        "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY i ON a (id);",
    )
    .unwrap();
}

#[test]
fn unterminated_string_is_refused_with_line() {
    let err = parse("0001_a.sql", "-- capstan:up\nSELECT 1;\nSELECT 'x;\n").unwrap_err();
    assert!(err.to_string().starts_with("0001_a.sql:3:"), "{err}");
}

#[test]
fn sets_refuse_duplicates_and_gaps() {
    let m = |n: &str| parse(n, "-- capstan:up\nSELECT 1;").unwrap();
    let dup = MigrationSet::new(vec![m("0001_a.sql"), m("0001_b.sql")]).unwrap_err();
    assert!(matches!(
        dup,
        SourceError::DuplicateVersion { version: 1, .. }
    ));
    let gap = MigrationSet::new(vec![m("0001_a.sql"), m("0003_c.sql")]).unwrap_err();
    assert!(matches!(gap, SourceError::Gap { missing: 2, .. }));
    let ok = MigrationSet::new(vec![m("0002_b.sql"), m("0001_a.sql")]).unwrap();
    assert_eq!(ok.get(2).unwrap().name, "b");
    assert_eq!(ok.latest(), Some(2));
}

#[test]
fn directives_are_case_insensitive_and_a_bom_is_stripped() {
    let m = parse(
        "0001_a.sql",
        "\u{feff}-- CAPSTAN:NO-TRANSACTION\n-- Capstan:Phase CONTRACT\n-- capstan:UP\nSELECT 1;\n-- CAPSTAN:down\nSELECT 2;\n",
    )
    .unwrap();
    assert!(m.no_transaction);
    assert_eq!(m.phase, Phase::Contract);
    assert_eq!(m.up.sql, "SELECT 1;\n");
    assert!(m.down.is_some());
    assert!(!m.text.starts_with('\u{feff}'));
    let err = parse(
        "0001_a.sql",
        "-- CAPSTAN:no-transation\n-- capstan:up\nSELECT 1;\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("unknown directive `-- capstan:no-transation`"),
        "{err}"
    );
    let err = parse("0001_a.sql", "-- capstan: up\nSELECT 1;\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("without a space"), "{err}");
}

#[test]
fn timeouts_are_whole_milliseconds_within_postgres_range() {
    assert_eq!(parse_timeout("0"), Ok(Duration::ZERO));
    assert_eq!(parse_timeout("2s"), Ok(Duration::from_secs(2)));
    assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_timeout("24days"), Ok(Duration::from_secs(24 * 86400)));
    for bad in ["500us", "1500us", "999999999s", "25days", "soon"] {
        let err = parse_timeout(bad).unwrap_err();
        assert!(err.contains(bad) || bad == "soon", "{bad}: {err}");
    }
    assert!(parse_timeout("500us")
        .unwrap_err()
        .contains("0 turns the timeout off"));
    let err = parse(
        "0001_a.sql",
        "-- capstan:lock-timeout 500us\n-- capstan:up\nSELECT 1;\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("0001_a.sql:1:") && err.contains("milliseconds"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn entries_named_like_migrations_that_are_no_files_are_refused() {
    let refused = |setup: &dyn Fn(&Path), needle: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("0001_a.sql"), "-- capstan:up\nSELECT 1;\n").unwrap();
        setup(dir.path());
        let err = read_dir_files(dir.path()).unwrap_err().to_string();
        assert!(err.contains(needle), "{needle}: {err}");
    };
    use std::os::unix::fs::symlink;
    refused(
        &|d| std::fs::write(d.join("0002_b.SQL"), "-- capstan:up\nSELECT 1;\n").unwrap(),
        "0002_b.SQL: the extension is `.SQL`",
    );
    refused(
        &|d| symlink(d.join("gone.sql"), d.join("0002_b.sql")).unwrap(),
        "0002_b.sql: a symbolic link to",
    );
    refused(
        &|d| {
            symlink(d.join("0003_c.sql"), d.join("0002_b.sql")).unwrap();
            symlink(d.join("0002_b.sql"), d.join("0003_c.sql")).unwrap();
        },
        "a symbolic link loop",
    );
    refused(
        &|d| std::fs::create_dir(d.join("0002_b.sql")).unwrap(),
        "0002_b.sql: a directory, not a file",
    );
    refused(
        &|d| {
            let ok = std::process::Command::new("mkfifo")
                .arg(d.join("0002_b.sql"))
                .status()
                .unwrap()
                .success();
            assert!(ok, "mkfifo failed");
        },
        "0002_b.sql: a FIFO (named pipe), not a file",
    );
    // A link to a regular file is a migration like any other.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("real"), "-- capstan:up\nSELECT 1;\n").unwrap();
    symlink(dir.path().join("real"), dir.path().join("0001_a.sql")).unwrap();
    assert_eq!(read_dir_files(dir.path()).unwrap().len(), 1);
}

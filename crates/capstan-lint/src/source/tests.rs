use super::*;

#[test]
fn splits_sections_and_directives() {
    let text = "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:lock-timeout 2s\n-- capstan:up\nSELECT 1;\n-- capstan:down\nSELECT 2;\n";
    let src = split(text);
    assert_eq!(src.phase, Phase::Contract);
    assert!(src.no_transaction);
    assert_eq!(src.lock_timeout, Some(Duration::from_secs(2)));
    assert_eq!(&text[src.up.start..src.up.end], "SELECT 1;\n");
    let down = src.down.unwrap();
    assert_eq!(&text[down.start..down.end], "SELECT 2;\n");
    assert!(src.problems.is_empty());
}

#[test]
fn plain_sql_is_all_up() {
    let src = split("CREATE TABLE t (id int);\n");
    assert_eq!((src.up.start, src.up.end), (0, 25));
    assert_eq!(src.phase, Phase::Expand);
}

#[test]
fn unknown_directive_and_bad_values_are_problems() {
    let src = split("-- capstan:phase sideways\n-- capstan:no-transation\n-- capstan:up\nSELECT 1;\n-- capstan:phase expand\n");
    assert_eq!(src.problems.len(), 3, "{:?}", src.problems);
    assert!(src.problems[1].message.contains("no-transation"));
}

#[test]
fn directives_are_case_insensitive_and_a_bom_is_not_a_line() {
    let src = split(
        "\u{feff}-- CAPSTAN:Phase CONTRACT\n-- Capstan:NO-TRANSACTION\n-- capstan:UP\nSELECT 1;\n",
    );
    assert!(src.problems.is_empty(), "{:?}", src.problems);
    assert_eq!(src.phase, Phase::Contract);
    assert!(src.no_transaction);
    assert_eq!(src.header_end, src.up.start);
    assert!(
        split("-- CAPSTAN:no-transation\n-- capstan:up\nSELECT 1;\n").problems[0]
            .message
            .contains("no-transation")
    );
}

/// The engine (`capstan_migrate::parse_migration`) owns the format; the linter's
/// copy must read every form the same way: the same directives take
/// effect, and a file one of them refuses the other refuses too.
#[cfg(feature = "migrate")]
#[test]
fn directives_read_as_the_engine_reads_them() {
    let headers = [
        "-- capstan:no-transaction\n",
        "-- CAPSTAN:no-transaction\n",
        "-- Capstan:No-Transaction\n",
        "--capstan:NO-TRANSACTION\n",
        "--   CaPsTaN:no-transaction\n",
        "-- capstan:no-transation\n",
        "-- CAPSTAN:NO-TRANSATION\n",
        "-- capstan:phase contract\n",
        "-- CAPSTAN:PHASE CONTRACT\n",
        "-- capstan:phase Expand\n",
        "-- capstan:phase sideways\n",
        "-- capstan:Phase\n",
        "-- capstan: no-transaction\n",
        "-- capstan:lock-timeout 2s\n",
        "-- CAPSTAN:LOCK-TIMEOUT 500ms\n",
        "-- capstan:lock-timeout soon\n",
        "-- capstan:frobnicate\n",
        "-- capstanx:no-transaction\n",
        "-- not capstan:no-transaction\n",
        "\u{feff}-- capstan:no-transaction\n",
        "\u{feff}-- CAPSTAN:PHASE contract\n",
    ];
    let markers = [
        ("-- capstan:up\n", "-- capstan:down\n"),
        ("-- CAPSTAN:UP\n", "-- Capstan:Down\n"),
    ];
    for header in headers {
        for (up, down) in markers {
            let text = format!("{header}{up}SELECT 1;\n{down}SELECT 2;\n");
            let engine = capstan_migrate::parse_migration(
                std::path::Path::new("0001_x.sql"),
                text.as_bytes(),
            )
            .map(|m| {
                (
                    m.no_transaction,
                    m.phase == capstan_migrate::Phase::Contract,
                    m.down.is_some(),
                )
            });
            let lint = split(&text);
            let linted = if lint.problems.is_empty() {
                Ok((
                    lint.no_transaction,
                    lint.phase == Phase::Contract,
                    lint.down.is_some(),
                ))
            } else {
                Err(lint.problems)
            };
            match (&engine, &linted) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{text:?}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{text:?}: the engine reads {engine:?}, the linter {linted:?}"),
            }
        }
    }
}

#[test]
fn versions_from_file_names() {
    assert_eq!(version_of("0007_add_email.sql"), Some(7));
    assert_eq!(version_of("add_email.sql"), None);
    assert_eq!(version_of("0007.sql"), None);
}

use super::*;

fn problems(text: &str) -> Vec<(usize, String)> {
    scan(text)
        .problems
        .into_iter()
        .map(|p| (p.line, p.message))
        .collect()
}

#[test]
fn reads_header_and_sections() {
    let text = "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:lock-timeout 2s\n-- capstan:statement-timeout 1m\n-- capstan:up\nSELECT 1;\n-- capstan:down\nSELECT 2;\n";
    let l = scan(text);
    assert_eq!(l.problems, vec![]);
    assert_eq!(l.phase, Some(Phase::Contract));
    assert_eq!(l.phase_offset, Some(0));
    assert!(l.no_transaction);
    assert_eq!(l.lock_timeout, Some(Duration::from_secs(2)));
    assert_eq!(l.statement_timeout, Some(Duration::from_secs(60)));
    assert_eq!(l.up.map(|m| m.line), Some(5));
    assert_eq!(&text[l.up_range(text.len()).unwrap()], "SELECT 1;\n");
    assert_eq!(&text[l.down_range(text.len()).unwrap()], "SELECT 2;\n");
}

#[test]
fn bad_directives_name_their_line() {
    let cases = [
        (
            "-- capstan:phase sideways\n-- capstan:up\nSELECT 1;",
            1,
            "unknown phase `sideways`",
        ),
        (
            "-- capstan:phase\n-- capstan:up\nSELECT 1;",
            1,
            "needs one value",
        ),
        (
            "-- capstan:frobnicate\n-- capstan:up\nSELECT 1;",
            1,
            "unknown directive `-- capstan:frobnicate`",
        ),
        (
            "-- capstan:up\nSELECT 1;\n-- capstan:phase contract\n",
            3,
            "must come before",
        ),
        (
            "-- capstan:lock-timeout soon\n-- capstan:up\nSELECT 1;",
            1,
            "needs a duration like `2s` or `500ms`, not `soon`",
        ),
        (
            "-- capstan:lock-timeout 500us\n-- capstan:up\nSELECT 1;",
            1,
            "milliseconds",
        ),
        (
            "-- capstan:statement-timeout 999999999s\n-- capstan:up\nSELECT 1;",
            1,
            "longest timeout",
        ),
        (
            "-- capstan:lock-timeout 1s 2s\n-- capstan:up\nSELECT 1;",
            1,
            "needs one duration",
        ),
        (
            "-- capstan:up now\nSELECT 1;",
            1,
            "takes no argument, found `now`",
        ),
        (
            "-- capstan:no-transaction please\n-- capstan:up\nSELECT 1;",
            1,
            "takes no argument",
        ),
        (
            "-- capstan:down\n-- capstan:up\nSELECT 1;",
            1,
            "before `-- capstan:up`",
        ),
        (
            "-- capstan:up\nSELECT 1;\n-- capstan:up\n",
            3,
            "a second `-- capstan:up`",
        ),
        (
            "-- capstan:up\n-- capstan:down\n-- capstan:down\n",
            3,
            "a second `-- capstan:down`",
        ),
        (
            "-- capstan:phase expand\n-- capstan:phase expand\n-- capstan:up\n",
            2,
            "phase is declared twice",
        ),
        (
            "-- capstan:no-transaction\n-- capstan:no-transaction\n-- capstan:up\n",
            2,
            "declared twice",
        ),
        ("-- capstan: up\nSELECT 1;", 1, "without a space"),
        ("-- capstan:\n-- capstan:up\n", 1, "without a space"),
        (
            "CREATE TABLE a (id int);\n-- capstan:up\nSELECT 1;",
            1,
            "SQL before",
        ),
    ];
    for (text, line, needle) in cases {
        let p = problems(text);
        assert!(!p.is_empty(), "{text:?}");
        assert_eq!(p[0].0, line, "{text:?}: {p:?}");
        assert!(
            p[0].1.contains(needle),
            "{text:?}: {p:?} should contain {needle}"
        );
    }
}

#[test]
fn every_problem_is_listed_in_line_order() {
    let p = problems("-- capstan:phase sideways\n-- capstan:no-transation\n-- capstan:up\nSELECT 1;\n-- capstan:phase expand\n");
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p[1].1.contains("no-transation"));
    let p = problems("-- capstan:bogus\nSELECT 1;\n-- capstan:up\nSELECT 2;\n");
    assert_eq!(p.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn case_insensitive_names_a_bom_and_suppressions() {
    let l = scan("\u{feff}-- CAPSTAN:Phase CONTRACT\n--Capstan:NO-TRANSACTION\n--   capstan:ignore-file all\n-- capstan:lint-off x\n-- capstan:UP\nSELECT 1; -- capstan:ignore x\n");
    assert_eq!(l.problems, vec![]);
    assert_eq!(l.phase, Some(Phase::Contract));
    assert!(l.no_transaction);
    assert_eq!(l.up.map(|m| m.line), Some(5));
    for not_a_directive in [
        "-- capstanx:up",
        "-- not capstan:up",
        "SELECT 1 -- capstan:up",
    ] {
        assert_eq!(directive_body(not_a_directive), None, "{not_a_directive}");
    }
}

#[test]
fn sql_before_up_only_matters_with_an_up_marker() {
    let l = scan("CREATE TABLE a (id int);\n");
    assert_eq!(l.up, None);
    assert_eq!(l.problems[0].kind, ProblemKind::SqlBeforeUp);
    assert!(scan("/* header */\n-- note\n\n-- capstan:up\nSELECT 1;")
        .problems
        .is_empty());
}

//! Properties: whatever the input, the linter returns findings (never panics) whose
//! positions lie inside the file.

use capstan_lint::{Config, Input, Linter};
use proptest::prelude::*;

const FRAGMENTS: &[&str] = &[
    "CREATE TABLE t (a int, b text);",
    "ALTER TABLE t ADD COLUMN c text NOT NULL;",
    "ALTER TABLE t ALTER COLUMN a TYPE bigint;",
    "CREATE INDEX i ON t (a);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON t (b);",
    "DROP TABLE t;",
    "ALTER TABLE t RENAME TO u;",
    "UPDATE t SET a = 1;",
    "INSERT INTO t VALUES (1, 'x;y');",
    "BEGIN;",
    "COMMIT;",
    "-- capstan:up\n",
    "-- capstan:down\n",
    "-- capstan:no-transaction\n",
    "-- capstan:phase contract\n",
    "-- capstan:ignore all\n",
    "-- capstan:ignore nope\n",
    "-- capstan:bogus\n",
    "$$ body ; $$",
    "/* c */",
    "/*",
    "'",
    "\"",
    "--",
    ";",
    "\n",
    "\r\n",
    "  ",
    "é",
    "\u{0}",
    "SELEC",
];

fn source() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(FRAGMENTS), 0..40)
        .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn findings_are_inside_the_file(setup in source(), text in source()) {
        let mut linter = Linter::new(Config::default());
        linter.replay(Input { file: "0001.sql", source: &setup });
        let findings = linter.lint(Input { file: "0002.sql", source: &text });
        let lines = text.split('\n').count();
        for f in findings {
            prop_assert!(f.line >= 1 && f.line <= lines, "{f:?} in {text:?}");
            prop_assert!(f.column >= 1);
            prop_assert!(f.end_line >= f.line);
            let line = text.split('\n').nth(f.line - 1).unwrap();
            prop_assert!(f.column <= line.chars().count() + 1, "{f:?} in {text:?}");
        }
    }
}

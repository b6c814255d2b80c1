//! `unused-ignore`: a suppression comment that silences nothing.

use crate::rule::{no_check, Rule, RuleId, ANY_DIALECT};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::UnusedIgnore,
    severity: Severity::Warning,
    summary: "a `-- capstan:ignore` that matches no finding, or names an unknown rule",
    lock: "",
    why: "Suppressions outlive the code they were written for: after the statement is fixed or moved, a stale \
ignore would silently hide the next real problem on that line. A misspelled rule name suppresses nothing at \
all. Remove the ignore, or fix the rule name (`capstan lint --list-rules`).",
    help: "remove the ignore, or fix the rule name",
    setup: "CREATE TABLE users (id bigint, email text);\n",
    bad: "-- capstan:ignore require-concurrent-index-creation\nCREATE TABLE t (id bigint);\n",
    safe: "-- capstan:ignore require-concurrent-index-creation users is tiny and written once a day\nCREATE INDEX users_email_idx ON users (email);\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check: no_check,
};

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, run};
    use crate::Config;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "-- capstan:ignore require-concurent-index-creation typo\nCREATE INDEX i ON users (email);",
                "-- capstan:up\nSELECT 1;\n-- capstan:ignore\nSELECT 2;",
                "-- capstan:ignore-file ban-cluster\n-- capstan:up\nSELECT 1;",
            ],
            &[
                "-- capstan:ignore-file require-concurrent-index-creation\nCREATE INDEX i ON users (email);",
                "-- capstan:lint-ignore all\nCREATE INDEX i ON users (email);",
                "-- capstan:ignore require-concurrent-index-creation\n-- capstan:up\nCREATE INDEX i ON users (email);\nCREATE INDEX j ON users (id);",
            ],
        ));
    }

    #[test]
    fn ignore_applies_to_the_next_statement_only() {
        let f = run(
            &Config::default(),
            "CREATE TABLE users (id bigint, email text);",
            "-- capstan:ignore require-concurrent-index-creation small table\nCREATE INDEX i ON users (email);\nCREATE INDEX j ON users (id);\n",
        );
        let rules: Vec<(&str, usize)> = f.iter().map(|f| (f.rule.as_str(), f.line)).collect();
        assert_eq!(rules, vec![("require-concurrent-index-creation", 3)]);
    }

    #[test]
    fn top_of_plain_file_followed_by_blank_line_is_file_wide() {
        let f = run(
            &Config::default(),
            "CREATE TABLE users (id bigint, email text);",
            "-- capstan:ignore require-concurrent-index-creation tiny table\n\nCREATE INDEX i ON users (email);\nCREATE INDEX j ON users (id);\n",
        );
        assert!(f.is_empty(), "{f:#?}");
    }
}

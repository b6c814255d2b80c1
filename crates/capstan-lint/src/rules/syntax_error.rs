//! `syntax-error`: SQL that Postgres rejects.

use crate::rule::{no_check, Rule, RuleId, ANY_DIALECT};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::SyntaxError,
    severity: Severity::Error,
    summary: "SQL that the Postgres parser rejects",
    lock: "",
    why: "capstan parses migrations with libpg_query, the parser of Postgres itself, so a statement reported \
here would fail at deploy time exactly the same way. The other statements of the file are still linted. (Only \
the grammar is checked here: a statement that parses may still fail against the real schema.)",
    help: "fix the statement; the position points at the token Postgres complains about",
    setup: "CREATE TABLE users (id bigint);\n",
    bad: "ALTER TABLE users ADD COLUMN;\n",
    safe: "ALTER TABLE users ADD COLUMN bio text;\n",
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
            &["CREATE TABEL t (a int);", "SELECT 1;\nALTER TABLE users ADD COLUMN;\nCREATE INDEX i ON users (email);", "SELECT 'unterminated"],
            &["SELECT 1", "CREATE TABLE t (\"select\" int);", "-- only a comment\n"],
        ));
    }

    #[test]
    fn other_statements_are_still_linted() {
        let f = run(&Config::default(), "", "SELEC 1;\nCREATE INDEX i ON users (email);\n");
        assert!(f.iter().any(|f| f.rule == "syntax-error" && f.line == 1));
        assert!(f.iter().any(|f| f.rule == "require-concurrent-index-creation" && f.line == 2), "{f:#?}");
    }
}

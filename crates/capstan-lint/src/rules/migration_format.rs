//! `migration-format`: a malformed capstan directive.

use crate::rule::{no_check, Rule, RuleId, ANY_DIALECT};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::MigrationFormat,
    severity: Severity::Error,
    summary: "unknown or misplaced `-- capstan:` directive, or a malformed up/down section",
    lock: "",
    why: "Directives decide how capstan runs a migration (in a transaction or not, with which lock timeout, in \
which phase). A misspelled `-- capstan:no-transation` would silently run CREATE INDEX CONCURRENTLY in a \
transaction and fail at deploy time; a directive after `-- capstan:up` is ignored by the runner. Known \
directives: `phase expand|contract`, `no-transaction`, `lock-timeout <duration>`, `up`, `down`, `ignore`.",
    help: "fix the directive; directives go before `-- capstan:up`",
    setup: "",
    bad: "-- capstan:no-transation\n-- capstan:up\nSELECT 1;\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nSELECT 1;\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check: no_check,
};

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::check;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "-- capstan:phase later\n-- capstan:up\nSELECT 1;",
                "-- capstan:up\nSELECT 1;\n-- capstan:lock-timeout 2s\n",
                "-- capstan:lock-timeout soon\n-- capstan:up\nSELECT 1;",
                "-- capstan: no-transaction\n-- capstan:up\nSELECT 1;",
            ],
            &[
                "-- capstan:lock-timeout 500ms\n-- capstan:up\nSELECT 1;",
                "SELECT 1;",
                "-- see capstan:up below\n-- capstan:up\nSELECT 1;",
            ],
        ));
    }
}

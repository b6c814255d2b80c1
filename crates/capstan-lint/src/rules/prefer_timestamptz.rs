//! `prefer-timestamptz`: a `timestamp` (without time zone) column.

use super::family::prefer_type;
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::PreferTimestamptz,
    severity: Severity::Warning,
    summary: "a column of type timestamp (without time zone)",
    lock: "",
    why: "`timestamp` stores a wall-clock reading with no zone: the same value means different instants to \
clients in different zones, and comparisons with now() depend on the session's TimeZone. `timestamptz` stores \
an instant (in UTC) and converts on output, which is what almost every application means. Converting later \
rewrites the table (unless the session time zone is UTC, on Postgres 12+).",
    help: "use timestamptz",
    setup: "",
    bad: "CREATE TABLE events (id bigint, happened_at timestamp);\n",
    safe: "CREATE TABLE events (id bigint, happened_at timestamptz);\n",
    up_only: true,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    prefer_type(&RULE, stmt, ctx, out, |_, ty, _| {
        (ty.name == "timestamp").then(|| "timestamp without time zone: prefer timestamptz".into())
    });
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::check;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "CREATE TABLE t (at timestamp(3));",
                "CREATE TABLE t (at timestamp without time zone);",
                "CREATE TABLE t (at timestamptz);\nALTER TABLE t ALTER COLUMN at TYPE timestamp;",
            ],
            &["CREATE TABLE t (at timestamptz);", "CREATE TABLE t (at timestamp with time zone);", "CREATE TABLE t (d date);"],
        ));
    }
}

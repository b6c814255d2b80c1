//! `prefer-jsonb`: a `json` column.

use super::{flag_column_type, Rule};
use crate::engine::{Ctx, Hits, Stmt};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    name: "prefer-jsonb",
    severity: Severity::Warning,
    summary: "a column of type json",
    lock: "",
    why: "`json` stores the text as given and reparses it on every access; it has no equality operator, so \
SELECT DISTINCT, GROUP BY, UNION and unique indexes fail on it, and it cannot be indexed with GIN. `jsonb` is \
parsed once, compares and indexes well, and is what every JSON operator is optimised for. Changing the type \
later rewrites the table, so choose jsonb now.",
    help: "use jsonb",
    setup: "",
    bad: "CREATE TABLE events (id bigint, payload json);\n",
    safe: "CREATE TABLE events (id bigint, payload jsonb);\n",
    up_only: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    flag_column_type(&RULE, stmt, ctx, out, "json", "json: prefer jsonb (comparable, indexable, parsed once)");
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
                "CREATE TABLE t (a json);",
                "CREATE TABLE users (id bigint);\nALTER TABLE users ADD COLUMN prefs json;",
                "CREATE TABLE t2 (a json[]);",
            ],
            &["CREATE TABLE t (a jsonb);", "SELECT '{}'::json;", "CREATE TABLE t3 (a text);"],
        ));
    }
}

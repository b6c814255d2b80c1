//! `prefer-jsonb`: a `json` column.

use super::family::prefer_type;
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::PreferJsonb,
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
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    prefer_type(&RULE, stmt, ctx, out, |_, ty, _| {
        (ty.name == "json").then(|| "json: prefer jsonb (comparable, indexable, parsed once)".into())
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
                "CREATE TABLE t (a json);",
                "CREATE TABLE users (id bigint);\nALTER TABLE users ADD COLUMN prefs json;",
                "CREATE TABLE t2 (a json[]);",
            ],
            &["CREATE TABLE t (a jsonb);", "SELECT '{}'::json;", "CREATE TABLE t3 (a text);"],
        ));
    }
}

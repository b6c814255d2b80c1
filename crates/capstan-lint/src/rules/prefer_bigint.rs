//! `prefer-bigint`: a key-like column declared as a 32- or 16-bit integer.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use super::family::prefer_type;
use crate::facts::{column_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::PreferBigint,
    severity: Severity::Warning,
    summary: "an identifier column (id, *_id, serial, identity, primary key) declared integer, smallint or serial",
    lock: "",
    why: "A 32-bit key runs out at 2,147,483,647; a busy table gets there, and the fix — changing the column \
(and every foreign key to it) to bigint — rewrites the tables under ACCESS EXCLUSIVE locks. bigint costs 4 more \
bytes per row and never runs out. Only key-like columns are flagged (named id or *_id, serial, identity or \
primary key): a small counter can stay an integer.",
    help: "use bigint (bigint GENERATED ALWAYS AS IDENTITY for keys)",
    setup: "",
    bad: "CREATE TABLE accounts (id serial PRIMARY KEY, owner_id integer);\n",
    safe: "CREATE TABLE accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner_id bigint, login_count integer);\n",
    up_only: true,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    prefer_type(&RULE, stmt, ctx, out, |colname, ty, def| {
        if ty.array || !matches!(ty.name.as_str(), "int4" | "int2" | "serial" | "smallserial") {
            return None;
        }
        let keyish = colname == "id"
            || colname.ends_with("_id")
            || ty.name.ends_with("serial")
            || column_constraints(def).any(|c| matches!(contype(c), ConstrType::ConstrIdentity | ConstrType::ConstrPrimary));
        (keyish && !colname.is_empty()).then(|| {
            "a 32-bit (or smaller) key: it can run out, and widening it later rewrites the table; use bigint".into()
        })
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
                "CREATE TABLE t (id int PRIMARY KEY);",
                "CREATE TABLE t (n smallint GENERATED ALWAYS AS IDENTITY);",
                "CREATE TABLE users (id bigint);\nALTER TABLE users ADD COLUMN team_id integer;",
            ],
            &[
                "CREATE TABLE t (id bigint PRIMARY KEY, attempts int);",
                "CREATE TABLE t (id bigserial);",
                "CREATE TABLE t (ids int[]);",
            ],
        ));
    }
}

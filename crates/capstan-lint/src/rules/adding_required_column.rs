//! `adding-required-column`: `ADD COLUMN ... NOT NULL` without a default on an
//! existing table.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::facts::{added_columns, column_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingRequiredColumn,
    severity: Severity::Error,
    summary: "ADD COLUMN ... NOT NULL without a DEFAULT on an existing table",
    lock: "ACCESS EXCLUSIVE on the table (briefly, if it succeeds)",
    why: "Existing rows would get NULL in a NOT NULL column, so the statement fails on any non-empty table. \
Even where it succeeds (an empty table in staging), every INSERT of the running binary — which does not know \
the column — starts failing. Add the column nullable (or with a constant DEFAULT, which is instant since \
Postgres 11), backfill it, and enforce NOT NULL later in a contract migration (see `setting-not-null`).",
    help: "add it with a constant DEFAULT (instant since Postgres 11), or nullable and enforce NOT NULL later",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ADD COLUMN plan text NOT NULL;\n",
    safe: "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, def) in added_columns(stmt, ctx) {
        let mut not_null = def.is_not_null;
        let mut filled = def.raw_default.is_some();
        for c in column_constraints(def) {
            match contype(c) {
                ConstrType::ConstrNotnull | ConstrType::ConstrPrimary => not_null = true,
                ConstrType::ConstrDefault | ConstrType::ConstrIdentity | ConstrType::ConstrGenerated => filled = true,
                _ => {}
            }
        }
        let ty = def.type_name.as_ref().map(crate::ast::ColType::of).unwrap_or_default();
        if ty.name.ends_with("serial") {
            filled = true;
        }
        if not_null && !filled {
            out.push(
                &RULE,
                stmt.at(def.location),
                format!("adding NOT NULL column {table}.{} without a DEFAULT fails on a non-empty table, and breaks the running binary's INSERTs", def.colname),
            );
        }
    }
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
                "ALTER TABLE users ADD COLUMN plan text NOT NULL, ADD COLUMN x int;",
                "ALTER TABLE orders ADD currency char(3) NOT NULL;",
                "ALTER TABLE legacy ADD COLUMN b int NOT NULL;",
            ],
            &[
                "ALTER TABLE users ADD COLUMN plan text;",
                "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN b int NOT NULL;",
                "ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;",
            ],
        ));
    }
}

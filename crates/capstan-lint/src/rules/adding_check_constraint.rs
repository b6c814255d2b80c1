//! `adding-check-constraint`: a CHECK constraint added to an existing table without
//! `NOT VALID`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingCheckConstraint,
    severity: Severity::Error,
    summary: "CHECK constraint added to an existing table without NOT VALID",
    lock: "ACCESS EXCLUSIVE on the table while every row is checked: blocks every read and write",
    why: "ALTER TABLE ... ADD CHECK scans the whole table to verify existing rows while holding an ACCESS \
EXCLUSIVE lock. Add the constraint NOT VALID (instant; new and updated rows are checked from then on), then \
VALIDATE CONSTRAINT in a separate transaction, which scans under SHARE UPDATE EXCLUSIVE and lets reads and \
writes continue. Tables created in the same migration are exempt.",
    help: "add it NOT VALID, then VALIDATE CONSTRAINT in a separate transaction",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0);\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, c) in added_constraints(stmt, ctx) {
        if contype(c) != ConstrType::ConstrCheck || c.skip_validation {
            continue;
        }
        out.push(
            &RULE,
            stmt.at(c.location),
            format!("adding a CHECK constraint to {table} without NOT VALID locks it against reads and writes while every row is checked"),
        );
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
                "ALTER TABLE users ADD CHECK (age >= 0);",
                "ALTER TABLE users ADD COLUMN score int CHECK (score > 0);",
                "ALTER TABLE public.users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL);",
            ],
            &[
                "CREATE TABLE t (a int CHECK (a > 0));",
                "CREATE TABLE t2 (a int);\nALTER TABLE t2 ADD CONSTRAINT a_pos CHECK (a > 0);",
                "ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age >= 0) NOT VALID;",
            ],
        ));
    }
}

//! `adding-exclusion-constraint`: an EXCLUDE constraint added to an existing table.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingExclusionConstraint,
    severity: Severity::Error,
    summary: "EXCLUDE constraint added to an existing table",
    lock: "ACCESS EXCLUSIVE on the table while the index is built and every row checked: blocks every read and write",
    why: "An exclusion constraint builds its index and checks every existing row under an ACCESS EXCLUSIVE \
lock. There is no online alternative: Postgres does not accept NOT VALID for EXCLUDE constraints, and it cannot \
be attached from a concurrently built index (USING INDEX only takes unique indexes). Either create the \
constraint together with the table, or plan a maintenance window for it (with a short \
`-- capstan:lock-timeout` so it gives up instead of queueing traffic behind it).",
    help: "no online alternative exists: declare it when the table is created, or schedule a maintenance window",
    setup: "CREATE TABLE bookings (id bigint, during tstzrange);\n",
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE bookings ADD CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&);\n",
    safe: "CREATE TABLE rooms (id bigint, during tstzrange, EXCLUDE USING gist (during WITH &&));\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, c) in added_constraints(stmt, ctx) {
        if contype(c) != ConstrType::ConstrExclusion {
            continue;
        }
        out.push(
            &RULE,
            stmt.at(c.location),
            format!("adding an EXCLUDE constraint to {table} locks it against reads and writes while every row is checked, and there is no NOT VALID form"),
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
                "ALTER TABLE bookings ADD EXCLUDE USING gist (during WITH &&);",
                "ALTER TABLE public.bookings ADD CONSTRAINT x EXCLUDE USING gist (during WITH &&) WHERE (id > 0);",
                "ALTER TABLE legacy ADD EXCLUDE (a WITH =);",
            ],
            &[
                "CREATE TABLE t (during tstzrange, EXCLUDE USING gist (during WITH &&));",
                "CREATE TABLE t2 (during tstzrange);\nALTER TABLE t2 ADD EXCLUDE USING gist (during WITH &&);",
                "ALTER TABLE bookings ADD CONSTRAINT id_pos CHECK (id > 0) NOT VALID;",
            ],
        ));
    }
}

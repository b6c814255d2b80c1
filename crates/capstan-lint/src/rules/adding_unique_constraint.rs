//! `adding-unique-constraint`: a UNIQUE constraint added to an existing table without
//! `USING INDEX`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingUniqueConstraint,
    severity: Severity::Error,
    summary: "UNIQUE constraint added to an existing table without USING INDEX",
    lock: "ACCESS EXCLUSIVE on the table while the unique index is built: blocks every read and write",
    why: "ADD UNIQUE builds a unique index while holding an ACCESS EXCLUSIVE lock, so the table is unavailable \
for the whole build. Build the index first with CREATE UNIQUE INDEX CONCURRENTLY (reads and writes continue), \
then attach it with ADD CONSTRAINT ... UNIQUE USING INDEX, which is instant. A unique constraint is also a new \
write restriction: an older binary that writes duplicates will start failing, so it belongs to a contract \
migration. Tables created in the same migration are exempt.",
    help: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, c) in added_constraints(stmt, ctx) {
        if contype(c) != ConstrType::ConstrUnique || !c.indexname.is_empty() {
            continue;
        }
        out.push(
            &RULE,
            stmt.at(c.location),
            format!("adding a UNIQUE constraint to {table} builds its index under an ACCESS EXCLUSIVE lock"),
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
                "ALTER TABLE users ADD UNIQUE (email);",
                "ALTER TABLE users ADD COLUMN handle text UNIQUE;",
                "ALTER TABLE users ADD CONSTRAINT u UNIQUE NULLS NOT DISTINCT (email, name);",
            ],
            &[
                "CREATE TABLE t (a int UNIQUE);",
                "CREATE TABLE t2 (a int);\nALTER TABLE t2 ADD CONSTRAINT t2_a UNIQUE (a);",
                "ALTER TABLE users ADD CONSTRAINT users_name_key UNIQUE USING INDEX users_name_idx;",
            ],
        ));
    }
}

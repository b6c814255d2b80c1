//! `adding-primary-key-constraint`: a PRIMARY KEY added to an existing table without
//! `USING INDEX`.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingPrimaryKeyConstraint,
    severity: Severity::Error,
    summary: "PRIMARY KEY added to an existing table without USING INDEX",
    lock: "ACCESS EXCLUSIVE on the table while the index is built (and the columns are checked for NULLs): blocks every read and write",
    why: "ADD PRIMARY KEY builds a unique index, and sets the key columns NOT NULL (scanning the table if they \
are nullable), all under an ACCESS EXCLUSIVE lock. Make the columns NOT NULL safely first (see \
`setting-not-null`), build the index with CREATE UNIQUE INDEX CONCURRENTLY, then attach it with ADD CONSTRAINT \
... PRIMARY KEY USING INDEX, which is instant. Tables created in the same migration are exempt.",
    help: "CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX",
    setup: "CREATE TABLE events (id bigint NOT NULL, payload jsonb);\n",
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE events ADD PRIMARY KEY (id);\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS events_pkey ON events (id);\nALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_pkey;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, c) in added_constraints(stmt, ctx) {
        if contype(c) != ConstrType::ConstrPrimary || !c.indexname.is_empty() {
            continue;
        }
        out.push(
            &RULE,
            stmt.at(c.location),
            format!("adding a PRIMARY KEY to {table} builds its index under an ACCESS EXCLUSIVE lock"),
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
                "ALTER TABLE events ADD CONSTRAINT events_pk PRIMARY KEY (id);",
                "ALTER TABLE events ADD COLUMN uid bigint PRIMARY KEY;",
                "ALTER TABLE legacy ADD PRIMARY KEY (a, b);",
            ],
            &[
                "CREATE TABLE t (id bigint PRIMARY KEY);",
                "CREATE TABLE t2 (id bigint NOT NULL);\nALTER TABLE t2 ADD PRIMARY KEY (id);",
                "ALTER TABLE events ADD CONSTRAINT events_pk PRIMARY KEY USING INDEX events_id_idx;",
            ],
        ));
    }
}

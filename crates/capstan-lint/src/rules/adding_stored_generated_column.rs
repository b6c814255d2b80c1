//! `adding-stored-generated-column`: a `GENERATED ... STORED` column added to an
//! existing table.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_columns, column_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingStoredGeneratedColumn,
    severity: Severity::Error,
    summary: "ADD COLUMN ... GENERATED ALWAYS AS (...) STORED on an existing table",
    lock: "ACCESS EXCLUSIVE on the table for a full rewrite of it and its indexes: blocks every read and write",
    why: "A stored generated column is computed for every existing row when it is added: Postgres rewrites the \
whole table under an ACCESS EXCLUSIVE lock. Instead add a plain nullable column, fill it for new rows with a \
trigger (or from the application), backfill existing rows in batches, and read it once complete. On Postgres \
18+, a VIRTUAL generated column is computed on read and is added instantly.",
    help: "add a plain column, keep it filled with a trigger or the application, and backfill in batches (or use VIRTUAL on Postgres 18+)",
    setup: STD_SETUP,
    bad: "ALTER TABLE users ADD COLUMN email_lower text GENERATED ALWAYS AS (lower(email)) STORED;\n",
    safe: "ALTER TABLE users ADD COLUMN email_lower text;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, def) in added_columns(stmt, ctx) {
        for c in column_constraints(def) {
            if contype(c) == ConstrType::ConstrGenerated && c.generated_kind != "v" {
                out.push(
                    &RULE,
                    stmt.at(c.location),
                    format!("adding stored generated column {table}.{} rewrites the whole table under an ACCESS EXCLUSIVE lock", def.colname),
                );
            }
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
                "ALTER TABLE orders ADD COLUMN total_cents bigint GENERATED ALWAYS AS (total * 100) STORED;",
                "ALTER TABLE users ADD COLUMN a int GENERATED ALWAYS AS (age + 1) STORED, ADD COLUMN b int;",
                "ALTER TABLE legacy ADD COLUMN g text GENERATED ALWAYS AS (x || y) STORED;",
            ],
            &[
                "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * 2) STORED);",
                "CREATE TABLE t2 (a int);\nALTER TABLE t2 ADD COLUMN b int GENERATED ALWAYS AS (a * 2) STORED;",
                "ALTER TABLE users ADD COLUMN age_next int;",
            ],
        ));
    }
}

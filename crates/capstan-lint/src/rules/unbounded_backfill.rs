//! `unbounded-backfill`: an `UPDATE`/`DELETE` of a whole table in a migration that also
//! changes the schema.

use super::{Rule, STD_SETUP};
use crate::engine::{Ctx, Hits, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    name: "unbounded-backfill",
    severity: Severity::Error,
    summary: "UPDATE/DELETE without WHERE in a migration that also changes the schema",
    lock: "ROW EXCLUSIVE plus a row lock on every row of the table, held until the transaction ends — together with the ACCESS EXCLUSIVE locks of the migration's DDL",
    why: "In one transaction with DDL, a whole-table UPDATE or DELETE holds the DDL's strong locks for as long \
as it takes to touch every row, and locks every row until commit: the table is unusable for the duration, the \
transaction bloats the table and the WAL, and a failure rolls everything back. Backfill in bounded batches (by \
primary key range), outside the DDL migration — a separate data migration or a job — each batch committing on \
its own. Tables created in the same migration are exempt.",
    help: "backfill in bounded batches (WHERE id BETWEEN ...) in a separate migration or job, each batch its own transaction",
    setup: STD_SETUP,
    bad: "ALTER TABLE users ADD COLUMN email_lower text;\nUPDATE users SET email_lower = lower(email);\n",
    safe: "UPDATE users SET email = lower(email) WHERE id BETWEEN 1 AND 10000;\n",
    up_only: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if !ctx.section_has_ddl || !ctx.in_transaction {
        return;
    }
    let (what, rel) = match stmt.node {
        NodeEnum::UpdateStmt(u) if u.where_clause.is_none() => ("UPDATE", u.relation.as_ref()),
        NodeEnum::DeleteStmt(d) if d.where_clause.is_none() => ("DELETE", d.relation.as_ref()),
        _ => return,
    };
    let table = crate::ast::opt_rv_name(rel);
    if ctx.is_new(&table) {
        return;
    }
    out.push(
        &RULE,
        stmt.start,
        format!("{what} of every row of {table} in the same transaction as schema changes holds their locks, and a lock on every row, until it ends"),
    );
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
                "DELETE FROM orders;\nALTER TABLE orders ADD COLUMN note text;",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);\nUPDATE users SET name = '';",
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users u SET plan = 'free' FROM orders o;",
            ],
            &[
                "UPDATE users SET name = '';",
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free' WHERE id < 1000;",
                "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\nUPDATE t SET a = 2;",
            ],
        ));
    }
}

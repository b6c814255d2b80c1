//! `unbounded-backfill`: an `UPDATE`/`DELETE` of a whole table in a migration that also
//! changes the schema.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::UnboundedBackfill,
    severity: Severity::Error,
    summary: "UPDATE/DELETE without WHERE in a migration that also changes the schema",
    lock: "ROW EXCLUSIVE plus a row lock on every row of the table, held until the transaction ends — together with the ACCESS EXCLUSIVE locks of the migration's DDL",
    why: "In one transaction with DDL, a whole-table UPDATE or DELETE holds the DDL's strong locks for as long \
as it takes to touch every row, and locks every row until commit: the table is unusable for the duration, the \
transaction bloats the table and the WAL, and a failure rolls everything back. Backfill in bounded batches (by \
primary key range), outside the DDL migration — a separate data migration or a job — each batch committing on \
its own. Tables created in the same migration are exempt. `WHERE col IS NULL` on a column this migration added without a default bounds nothing: every row \
matches, and it is flagged too.",
    help: "backfill in bounded batches (WHERE id BETWEEN ...) in a separate migration or job, each batch its own transaction",
    setup: STD_SETUP,
    bad: "ALTER TABLE users ADD COLUMN email_lower text;\nUPDATE users SET email_lower = lower(email);\n",
    safe: "UPDATE users SET email = lower(email) WHERE id BETWEEN 1 AND 10000;\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if !ctx.section_has_ddl || !ctx.in_transaction {
        return;
    }
    if let NodeEnum::UpdateStmt(u) = stmt.node {
        let table = crate::ast::opt_rv_name(u.relation.as_ref());
        if let Some(col) = only_new_column_is_null(u.where_clause.as_deref(), &table, ctx) {
            out.push(
                &RULE,
                stmt.start,
                format!("UPDATE of {table} WHERE {col} IS NULL matches every row: {col} was added by this migration without a default, so it is NULL everywhere; in the same transaction as schema changes this holds their locks, and a lock on every row, until it ends"),
            );
            return;
        }
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

/// For `WHERE col IS NULL` (alone or ANDed with other such tests) where `col`
/// was added to the existing `table` by this migration without a default: the
/// column.
fn only_new_column_is_null(
    clause: Option<&pg_query::protobuf::Node>,
    table: &str,
    ctx: &Ctx<'_>,
) -> Option<String> {
    let t = ctx.schema.table(table).filter(|t| !t.new)?;
    let fresh = |col: &str| {
        t.new_columns.iter().any(|c| c == col)
            && t.column(col).is_some_and(|c| !c.has_default)
    };
    match clause?.node.as_ref()? {
        NodeEnum::NullTest(n)
            if n.nulltesttype == pg_query::protobuf::NullTestType::IsNull as i32 =>
        {
            let NodeEnum::ColumnRef(c) = n.arg.as_ref()?.node.as_ref()? else {
                return None;
            };
            let col = c.fields.last().and_then(crate::ast::str_of)?;
            fresh(col).then(|| col.to_string())
        }
        NodeEnum::BoolExpr(b)
            if b.boolop == pg_query::protobuf::BoolExprType::AndExpr as i32 =>
        {
            let cols: Option<Vec<String>> = b
                .args
                .iter()
                .map(|a| only_new_column_is_null(Some(a), table, ctx))
                .collect();
            cols.and_then(|c| c.into_iter().next())
        }
        _ => None,
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
                "DELETE FROM orders;\nALTER TABLE orders ADD COLUMN note text;",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);\nUPDATE users SET name = '';",
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users u SET plan = 'free' FROM orders o;",
                // The column is NULL in every row: the WHERE bounds nothing.
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free' WHERE plan IS NULL;",
            ],
            &[
                "UPDATE users SET name = '';",
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free' WHERE id < 1000;",
                "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\nUPDATE t SET a = 2;",
                // An older column: IS NULL may select a few rows.
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free' WHERE email IS NULL;",
                // Bounded by a key range as well.
                "ALTER TABLE users ADD COLUMN plan text;\nUPDATE users SET plan = 'free' WHERE plan IS NULL AND id < 1000;",
            ],
        ));
    }
}

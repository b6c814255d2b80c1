//! `require-concurrent-index-deletion`: `DROP INDEX` without `CONCURRENTLY`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::ast::object_name;
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RequireConcurrentIndexDeletion,
    severity: Severity::Error,
    summary: "DROP INDEX without CONCURRENTLY",
    lock: "ACCESS EXCLUSIVE on the index's table: blocks every read and write of the table until the drop commits",
    why: "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table. The drop itself is quick, but the lock must \
wait for every running query on the table to finish, and while it waits every new query queues behind it. \
DROP INDEX CONCURRENTLY waits for conflicting transactions without blocking new ones. It cannot run in a \
transaction, so it goes in a `-- capstan:no-transaction` migration. Indexes created in the same migration are exempt.",
    help: "use DROP INDEX CONCURRENTLY IF EXISTS, alone in a `-- capstan:no-transaction` migration",
    setup: STD_SETUP,
    bad: "DROP INDEX orders_status_idx;\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS orders_status_idx;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::DropStmt(d) = stmt.node else {
        return;
    };
    if d.remove_type != ObjectType::ObjectIndex as i32 || d.concurrent {
        return;
    }
    for obj in &d.objects {
        let name = object_name(obj);
        let index = ctx.schema.indexes.get(&name);
        if index.is_some_and(|i| i.new) {
            continue;
        }
        let table = index.map_or_else(|| "its table".to_string(), |i| i.table.clone());
        out.push(
            &RULE,
            stmt.start,
            format!("DROP INDEX {name} without CONCURRENTLY locks {table} against reads and writes"),
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
                "DROP INDEX IF EXISTS orders_status_idx;",
                "DROP INDEX legacy_idx, orders_status_idx;",
                "-- capstan:phase contract\n-- capstan:up\nDROP INDEX public.orders_status_idx CASCADE;",
            ],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS legacy_idx;",
                "CREATE INDEX tmp_idx ON orders (total);\nDROP INDEX tmp_idx;",
                "DROP TABLE IF EXISTS nothing_here;",
            ],
        ));
    }
}

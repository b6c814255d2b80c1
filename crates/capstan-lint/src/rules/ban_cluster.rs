//! `ban-cluster`: `CLUSTER` in a migration.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::BanCluster,
    severity: Severity::Error,
    summary: "CLUSTER",
    lock: "ACCESS EXCLUSIVE on the table for the whole rewrite: blocks every read and write",
    why: "CLUSTER rewrites the table in index order while holding an ACCESS EXCLUSIVE lock, and rebuilds every \
index. On a live table it is an outage as long as the rewrite. There is no online form in core Postgres: use \
pg_repack (--order-by) outside the migration, or rely on a good index instead of physical order. \
(`ALTER TABLE ... CLUSTER ON`, which only records the index, is not flagged.)",
    help: "don't CLUSTER in a migration; use pg_repack outside it",
    setup: STD_SETUP,
    bad: "CLUSTER orders USING orders_status_idx;\n",
    safe: "ALTER TABLE orders CLUSTER ON orders_status_idx;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::ClusterStmt(c) = stmt.node else {
        return;
    };
    let what = c.relation.as_ref().map_or_else(|| "every previously clustered table".to_string(), crate::ast::rv_name);
    out.push(&RULE, stmt.start, format!("CLUSTER rewrites {what} under an ACCESS EXCLUSIVE lock: reads and writes stop until it ends"));
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::check;

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &["CLUSTER orders;", "CLUSTER;", "CLUSTER VERBOSE orders USING orders_status_idx;"],
            &["ANALYZE orders;", "ALTER TABLE orders SET WITHOUT CLUSTER;", "SELECT 1;"],
        ));
    }
}

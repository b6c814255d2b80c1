//! `require-concurrent-refresh`: `REFRESH MATERIALIZED VIEW` without `CONCURRENTLY`.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RequireConcurrentRefresh,
    severity: Severity::Error,
    summary: "REFRESH MATERIALIZED VIEW without CONCURRENTLY",
    lock: "ACCESS EXCLUSIVE on the materialized view: blocks every read of it until the refresh commits",
    why: "A plain refresh recomputes the view's query and swaps the result in under an ACCESS EXCLUSIVE lock: \
every query reading the view waits for the whole computation. REFRESH MATERIALIZED VIEW CONCURRENTLY computes \
the new contents and merges them while reads continue; it needs a unique index on the view (create it once, \
concurrently). Views created in the same migration are exempt.",
    help: "use REFRESH MATERIALIZED VIEW CONCURRENTLY (the view needs a unique index)",
    setup: "CREATE TABLE orders (id bigint PRIMARY KEY, total numeric);\nCREATE MATERIALIZED VIEW order_totals AS SELECT id, total FROM orders;\nCREATE UNIQUE INDEX order_totals_id ON order_totals (id);\n",
    bad: "REFRESH MATERIALIZED VIEW order_totals;\n",
    safe: "REFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::RefreshMatViewStmt(r) = stmt.node else {
        return;
    };
    let name = crate::ast::opt_rv_name(r.relation.as_ref());
    if r.concurrent || r.skip_data || ctx.is_new(&name) {
        return;
    }
    out.push(&RULE, stmt.start, format!("REFRESH MATERIALIZED VIEW {name} without CONCURRENTLY blocks every read of it until the refresh ends"));
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
                "REFRESH MATERIALIZED VIEW public.order_totals;",
                "REFRESH MATERIALIZED VIEW order_totals WITH DATA;",
                "-- capstan:up\nREFRESH MATERIALIZED VIEW reports.daily;",
            ],
            &[
                "REFRESH MATERIALIZED VIEW order_totals WITH NO DATA;",
                "CREATE MATERIALIZED VIEW fresh AS SELECT 1 AS x;\nREFRESH MATERIALIZED VIEW fresh;",
                "-- capstan:no-transaction\n-- capstan:up\nREFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;",
            ],
        ));
    }
}

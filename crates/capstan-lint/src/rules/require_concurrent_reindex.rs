//! `require-concurrent-reindex`: `REINDEX` without `CONCURRENTLY`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RequireConcurrentReindex,
    severity: Severity::Error,
    summary: "REINDEX without CONCURRENTLY",
    lock: "SHARE on the table (blocks writes) and ACCESS EXCLUSIVE on each index being rebuilt (blocks reads that would use it)",
    why: "A plain REINDEX rebuilds the index from scratch while writes to the table wait, and queries that \
want the index block too. Since Postgres 12, REINDEX CONCURRENTLY rebuilds it without blocking reads or writes; \
it cannot run in a transaction. Before 12 there is no concurrent form: build a replacement with CREATE INDEX \
CONCURRENTLY, then DROP INDEX CONCURRENTLY the old one and rename the new one.",
    help: "use REINDEX ... CONCURRENTLY (Postgres 12+) in a `-- capstan:no-transaction` migration",
    setup: STD_SETUP,
    bad: "REINDEX INDEX orders_status_idx;\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nREINDEX INDEX CONCURRENTLY orders_status_idx;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::ReindexStmt(r) = stmt.node else {
        return;
    };
    let concurrent = r.params.iter().any(|p| match p.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => d.defname == "concurrently",
        _ => false,
    });
    if concurrent {
        return;
    }
    let target = r
        .relation
        .as_ref()
        .map(crate::ast::rv_name)
        .unwrap_or_else(|| r.name.clone());
    if ctx.pg >= 12 {
        out.push(&RULE, stmt.start, format!("REINDEX of {target} without CONCURRENTLY blocks writes while it rebuilds"));
    } else {
        out.push_help(
            &RULE,
            stmt.start,
            format!("REINDEX of {target} blocks writes while it rebuilds, and Postgres {} has no REINDEX CONCURRENTLY", ctx.pg),
            "build a replacement with CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY the old one, then rename the new one",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, check_with, pg};

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &["REINDEX TABLE orders;", "REINDEX (VERBOSE) INDEX orders_status_idx;", "REINDEX SCHEMA public;"],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nREINDEX TABLE CONCURRENTLY orders;",
                "-- capstan:no-transaction\n-- capstan:up\nREINDEX (CONCURRENTLY) INDEX orders_status_idx;",
                "ANALYZE orders;",
            ],
        ));
    }

    #[test]
    fn before_12_there_is_no_concurrent_form() {
        insta::assert_snapshot!(check_with(&pg(11), &RULE, &["REINDEX TABLE orders;"], &["ANALYZE orders;"]));
    }
}

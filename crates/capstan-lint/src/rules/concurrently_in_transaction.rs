//! `concurrently-in-transaction`: a `CONCURRENTLY` operation that would run inside a
//! transaction block.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use pg_query::protobuf::{AlterTableType, ObjectType};
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::ConcurrentlyInTransaction,
    severity: Severity::Error,
    summary: "CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY or DETACH ... CONCURRENTLY inside a transaction",
    lock: "",
    why: "Postgres refuses to run these statements inside a transaction block (\"cannot run inside a \
transaction block\"), and capstan runs each migration in a transaction unless it carries \
`-- capstan:no-transaction`. The migration would fail at deploy time. Put the statement in its own migration \
marked `-- capstan:no-transaction` (and outside any explicit BEGIN ... COMMIT).",
    help: "move it to its own migration with `-- capstan:no-transaction`",
    setup: STD_SETUP,
    bad: "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if !ctx.in_transaction {
        return;
    }
    let what = match stmt.node {
        NodeEnum::IndexStmt(i) if i.concurrent => "CREATE INDEX CONCURRENTLY",
        NodeEnum::DropStmt(d) if d.concurrent && d.remove_type == ObjectType::ObjectIndex as i32 => "DROP INDEX CONCURRENTLY",
        NodeEnum::ReindexStmt(r)
            if r.params.iter().any(|p| matches!(p.node.as_ref(), Some(NodeEnum::DefElem(d)) if d.defname == "concurrently")) =>
        {
            "REINDEX CONCURRENTLY"
        }
        _ => {
            let Some((_, _, cmds)) = alter_table(stmt) else {
                return;
            };
            let detach = cmds.iter().any(|c| {
                subtype(c) == AlterTableType::AtDetachPartition
                    && matches!(c.def.as_ref().and_then(|d| d.node.as_ref()), Some(NodeEnum::PartitionCmd(p)) if p.concurrent)
            });
            if !detach {
                return;
            }
            "DETACH PARTITION CONCURRENTLY"
        }
    };
    let whence = if ctx.explicit_depth > 0 {
        "inside the explicit BEGIN block"
    } else {
        "in the transaction capstan opens for this migration (no `-- capstan:no-transaction`)"
    };
    out.push(&RULE, stmt.start, format!("{what} cannot run inside a transaction block, and this one runs {whence}"));
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
                "-- capstan:up\nDROP INDEX CONCURRENTLY orders_status_idx;",
                "REINDEX INDEX CONCURRENTLY orders_status_idx;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (name);\nCOMMIT;",
            ],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS orders_status_idx;",
                "CREATE INDEX users_name_idx ON users (name);",
                "-- capstan:no-transaction\n-- capstan:up\nREINDEX INDEX CONCURRENTLY orders_status_idx;",
            ],
        ));
    }
}

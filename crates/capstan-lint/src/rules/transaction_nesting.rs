//! `transaction-nesting`: `BEGIN`/`COMMIT` that fight the transaction capstan opens, or
//! that are nested or left open.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::protobuf::TransactionStmtKind;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::TransactionNesting,
    severity: Severity::Error,
    summary: "BEGIN/COMMIT inside capstan's transaction, nested BEGIN, COMMIT without BEGIN, or BEGIN never committed",
    lock: "",
    why: "capstan runs each migration in a transaction together with its history row, unless the migration \
says `-- capstan:no-transaction`. A BEGIN inside that transaction is ignored with a warning, and the COMMIT \
that follows commits capstan's transaction early: the statements after it and the history row are no longer \
atomic, and a failure leaves the migration half applied and unrecorded. In a `no-transaction` migration, \
explicit BEGIN ... COMMIT blocks are fine, but must not nest and must be closed.",
    help: "drop BEGIN/COMMIT (capstan already wraps the migration), or use `-- capstan:no-transaction` and balance them",
    setup: STD_SETUP,
    bad: "BEGIN;\nALTER TABLE users ADD COLUMN bio text;\nCOMMIT;\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nALTER TABLE users ADD COLUMN bio text;\nALTER TABLE users ADD COLUMN avatar_url text;\nCOMMIT;\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::TransactionStmt(t) = stmt.node else {
        return;
    };
    let kind = TransactionStmtKind::try_from(t.kind).unwrap_or(TransactionStmtKind::Undefined);
    match kind {
        TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart => {
            if !ctx.no_transaction {
                out.push(
                    &RULE,
                    stmt.start,
                    "BEGIN inside the transaction capstan opens for this migration: Postgres ignores it, and the matching COMMIT ends capstan's transaction early",
                );
            } else if ctx.explicit_depth > 0 {
                out.push(&RULE, stmt.start, "nested BEGIN: Postgres ignores it, and the first COMMIT ends the outer block");
            }
        }
        TransactionStmtKind::TransStmtCommit | TransactionStmtKind::TransStmtRollback => {
            let what = if kind == TransactionStmtKind::TransStmtCommit { "COMMIT" } else { "ROLLBACK" };
            if ctx.explicit_depth == 0 {
                if ctx.no_transaction {
                    out.push(&RULE, stmt.start, format!("{what} without a BEGIN: there is no transaction to end"));
                } else {
                    out.push(
                        &RULE,
                        stmt.start,
                        format!("{what} ends the transaction capstan opened for this migration: what follows, and the history row, are no longer atomic"),
                    );
                }
            }
        }
        _ => {}
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
                "ALTER TABLE users ADD COLUMN bio text;\nCOMMIT;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nALTER TABLE users ADD COLUMN bio text;",
                "-- capstan:no-transaction\n-- capstan:up\nCOMMIT;",
            ],
            &[
                "ALTER TABLE users ADD COLUMN bio text;\nSAVEPOINT a;\nRELEASE SAVEPOINT a;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nSELECT 1;\nCOMMIT;\nBEGIN;\nSELECT 2;\nROLLBACK;",
                "ALTER TABLE users ADD COLUMN bio text;",
            ],
        ));
    }
}

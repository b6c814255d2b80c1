//! `lock-table`: an explicit `LOCK TABLE` in a migration.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::LockTable,
    severity: Severity::Error,
    summary: "explicit LOCK TABLE in SHARE UPDATE EXCLUSIVE mode or stronger",
    lock: "the mode named (ACCESS EXCLUSIVE by default), until the end of the transaction",
    why: "An explicit table lock is held until the migration's transaction ends, so every statement after it — \
and every backfill — runs with the table blocked. LOCK TABLE without a mode takes ACCESS EXCLUSIVE, blocking \
even reads. Let each statement take the lock it needs, for as short as possible; if you need to keep rows \
stable while you work on them, lock just those rows (SELECT ... FOR UPDATE). Weak modes (ACCESS SHARE, ROW \
SHARE, ROW EXCLUSIVE) are not flagged.",
    help: "let each statement take its own lock; lock only the rows you need with SELECT ... FOR UPDATE",
    setup: STD_SETUP,
    bad: "LOCK TABLE orders;\n",
    safe: "SELECT id FROM orders WHERE id = 1 FOR UPDATE;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

const MODES: [&str; 9] = [
    "",
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
];

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::LockStmt(l) = stmt.node else {
        return;
    };
    if l.mode < 4 {
        return;
    }
    let mode = MODES.get(l.mode as usize).copied().unwrap_or("ACCESS EXCLUSIVE");
    let names: Vec<String> = l
        .relations
        .iter()
        .filter_map(|r| match r.node.as_ref() {
            Some(NodeEnum::RangeVar(rv)) => Some(crate::ast::rv_name(rv)),
            _ => None,
        })
        .collect();
    let blocks = if l.mode >= 8 { "every read and write" } else { "writes" };
    out.push(
        &RULE,
        stmt.start,
        format!("LOCK TABLE {} IN {mode} MODE blocks {blocks} until the migration's transaction ends", names.join(", ")),
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
            &["LOCK users;", "LOCK TABLE orders IN SHARE MODE;", "LOCK TABLE users, orders IN EXCLUSIVE MODE NOWAIT;"],
            &["LOCK TABLE orders IN ROW EXCLUSIVE MODE;", "LOCK TABLE orders IN ACCESS SHARE MODE;", "SELECT 1 FROM users FOR UPDATE;"],
        ));
    }
}

//! `truncate-cascade`: `TRUNCATE ... CASCADE`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::protobuf::DropBehavior;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::TruncateCascade,
    severity: Severity::Error,
    summary: "TRUNCATE ... CASCADE",
    lock: "ACCESS EXCLUSIVE on every truncated table, including every table reached through foreign keys",
    why: "CASCADE also empties every table that has a foreign key to the named tables, and every table that \
references those, recursively: the statement does not say which, and the set grows as the schema does. Name \
every table you mean to empty and let TRUNCATE (RESTRICT, the default) fail if something else references them. \
capstan archives the rows of the tables a statement truncates, but only the ones the statement names.",
    help: "list every table to empty explicitly and drop CASCADE",
    setup: STD_SETUP,
    bad: "TRUNCATE users CASCADE;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nTRUNCATE orders;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::TruncateStmt(t) = stmt.node else {
        return;
    };
    if t.behavior != DropBehavior::DropCascade as i32 {
        return;
    }
    let names: Vec<String> = t
        .relations
        .iter()
        .filter_map(|r| match r.node.as_ref() {
            Some(NodeEnum::RangeVar(rv)) => Some(crate::ast::rv_name(rv)),
            _ => None,
        })
        .collect();
    out.push(
        &RULE,
        stmt.start,
        format!("TRUNCATE {} CASCADE also empties every table that references them through a foreign key, recursively", names.join(", ")),
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
            &["TRUNCATE TABLE orders CASCADE;", "TRUNCATE users, orders RESTART IDENTITY CASCADE;", "TRUNCATE ONLY legacy CASCADE;"],
            &["TRUNCATE orders;", "TRUNCATE orders RESTRICT;", "DELETE FROM orders WHERE id = 1;"],
        ));
    }
}

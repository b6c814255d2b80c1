//! `renaming-column`: `RENAME COLUMN` on an existing table.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RenamingColumn,
    severity: Severity::Error,
    summary: "RENAME COLUMN on an existing table",
    lock: "ACCESS EXCLUSIVE on the table, briefly (catalog only)",
    why: "A rename is never compatible with a rolling deploy: the binary running now uses the old name and fails \
as soon as the rename commits, and the new binary uses the new name and fails until it commits — no phase \
ordering helps. Add a column with the new name (expand), write both from the application, backfill in batches, \
switch reads, and drop the old column in a contract migration. Tables created in the same migration are exempt.",
    help: "add a new column, dual-write and backfill, switch reads, then drop the old column in a contract migration",
    setup: STD_SETUP,
    bad: "ALTER TABLE users RENAME COLUMN name TO full_name;\n",
    safe: "-- capstan:up\nALTER TABLE users ADD COLUMN full_name text;\n-- Backfill in batches from a job, e.g.\n-- UPDATE users SET full_name = name WHERE id BETWEEN 1 AND 10000 AND full_name IS NULL;\n-- then drop `name` in a contract migration once no binary reads it.\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::RenameStmt(r) = stmt.node else {
        return;
    };
    if r.rename_type != ObjectType::ObjectColumn as i32 || r.relation_type == ObjectType::ObjectView as i32 {
        return;
    }
    let table = crate::ast::opt_rv_name(r.relation.as_ref());
    if ctx.is_new(&table) {
        return;
    }
    out.push(
        &RULE,
        stmt.start,
        format!("renaming {table}.{} to {} breaks every running binary that uses the old name, and the new binary until it commits", r.subname, r.newname),
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
                "ALTER TABLE users RENAME name TO display_name;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE public.users RENAME COLUMN email TO mail;",
                "ALTER TABLE IF EXISTS legacy RENAME COLUMN a TO b;",
            ],
            &[
                "CREATE TABLE t (a int);\nALTER TABLE t RENAME COLUMN a TO b;",
                "ALTER TABLE users ADD COLUMN display_name text;",
                "ALTER INDEX orders_status_idx RENAME TO orders_by_status;",
            ],
        ));
    }
}

//! `renaming-table`: `ALTER TABLE ... RENAME TO` on an existing table.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::facts::view_created_later;
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RenamingTable,
    severity: Severity::Error,
    summary: "RENAME of an existing table (without a view keeping the old name)",
    lock: "ACCESS EXCLUSIVE on the table, briefly (catalog only)",
    why: "The running binary uses the old name and fails as soon as the rename commits; the new binary fails \
until it commits. Keep the old name working: in the same transaction, rename the table and create a view with \
the old name (a simple `SELECT *` view is updatable, so reads and writes both keep working). Drop the view in a \
contract migration once no binary uses the old name. A rename followed by such a view in the same migration is \
not flagged. Tables created in the same migration are exempt.",
    help: "in the same migration, CREATE VIEW <old name> AS SELECT * FROM <new name>; drop the view later in a contract migration",
    setup: STD_SETUP,
    bad: "ALTER TABLE orders RENAME TO purchases;\n",
    safe: "ALTER TABLE orders RENAME TO purchases;\nCREATE VIEW orders AS SELECT * FROM purchases;\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::RenameStmt(r) = stmt.node else {
        return;
    };
    if r.rename_type != ObjectType::ObjectTable as i32 {
        return;
    }
    let Some(rel) = r.relation.as_ref() else {
        return;
    };
    let table = crate::ast::rv_name(rel);
    if ctx.is_new(&table) {
        return;
    }
    let covered = view_created_later(ctx.rest_sql, rel);
    if covered {
        return;
    }
    out.push(
        &RULE,
        stmt.start,
        format!("renaming table {table} to {} breaks every running binary that uses the old name", r.newname),
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
                "ALTER TABLE users RENAME TO accounts;",
                "ALTER TABLE IF EXISTS public.orders RENAME TO purchases;\nCREATE VIEW other AS SELECT * FROM purchases;",
                "ALTER TABLE legacy RENAME TO old_legacy;",
            ],
            &[
                "CREATE TABLE t (a int);\nALTER TABLE t RENAME TO t2;",
                "ALTER TABLE users RENAME COLUMN name TO n;",
                "ALTER TABLE users RENAME TO accounts;\nCREATE OR REPLACE VIEW users AS SELECT * FROM accounts;",
            ],
        ));
    }
}

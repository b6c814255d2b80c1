//! `validate-in-same-transaction`: `VALIDATE CONSTRAINT` in the same transaction as
//! the `ADD ... NOT VALID` it validates.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::ValidateInSameTransaction,
    severity: Severity::Error,
    summary: "VALIDATE CONSTRAINT in the same transaction as ADD CONSTRAINT ... NOT VALID",
    lock: "the ACCESS EXCLUSIVE (CHECK) or SHARE ROW EXCLUSIVE (FOREIGN KEY) lock taken by the ADD is held during the validation scan",
    why: "NOT VALID exists so that the strong lock of ADD CONSTRAINT is held only for an instant, and the scan \
happens later under the weak lock of VALIDATE CONSTRAINT. In the same transaction, the ADD's lock is still held \
while VALIDATE scans the table, so the split buys nothing: the table is blocked for the whole scan. Commit in \
between: validate in a later migration, or mark the migration `-- capstan:no-transaction` so each statement \
commits on its own.",
    help: "validate in a separate transaction (a later migration, or a `-- capstan:no-transaction` migration)",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if !ctx.in_transaction {
        return;
    }
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    for cmd in cmds {
        if subtype(cmd) != AlterTableType::AtValidateConstraint {
            continue;
        }
        if ctx.not_valid_in_tx.iter().any(|(t, c)| *t == table && *c == cmd.name) {
            out.push(
                &RULE,
                stmt.clause_any(&[format!("VALIDATE CONSTRAINT {}", cmd.name)]),
                format!(
                    "constraint {} was added NOT VALID in this same transaction: its strong lock on {table} is still held while VALIDATE scans the table",
                    cmd.name
                ),
            );
        }
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
                "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT fk;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nALTER TABLE users ADD CONSTRAINT a CHECK (age > 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT a;\nCOMMIT;",
                "ALTER TABLE users ADD CONSTRAINT a CHECK (age > 0) NOT VALID;\nSELECT 1;\nALTER TABLE users VALIDATE CONSTRAINT a;",
            ],
            &[
                "ALTER TABLE users VALIDATE CONSTRAINT older_one;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nALTER TABLE users ADD CONSTRAINT a CHECK (age > 0) NOT VALID;\nCOMMIT;\nALTER TABLE users VALIDATE CONSTRAINT a;",
                "ALTER TABLE users ADD CONSTRAINT a CHECK (age > 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT b;",
            ],
        ));
    }
}

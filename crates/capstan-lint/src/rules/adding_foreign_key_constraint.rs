//! `adding-foreign-key-constraint`: a foreign key added to an existing table without
//! `NOT VALID`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::ConstrType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingForeignKeyConstraint,
    severity: Severity::Error,
    summary: "FOREIGN KEY added to an existing table without NOT VALID",
    lock: "SHARE ROW EXCLUSIVE on the table and on the referenced table while every row is checked: blocks writes to both",
    why: "Adding a foreign key checks every existing row against the referenced table while holding SHARE ROW \
EXCLUSIVE locks on both tables, so writes to both wait for the whole scan. Add it NOT VALID (instant: only new \
rows are checked), then VALIDATE CONSTRAINT in a separate transaction: validation takes only SHARE UPDATE \
EXCLUSIVE on the table (and ROW SHARE on the referenced one), so reads and writes continue. Tables created in \
the same migration are exempt.",
    help: "add it NOT VALID, then VALIDATE CONSTRAINT in a separate transaction",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id);\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE orders ADD CONSTRAINT orders_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\nALTER TABLE orders VALIDATE CONSTRAINT orders_user_id_fkey;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, c) in added_constraints(stmt, ctx) {
        if contype(c) != ConstrType::ConstrForeign || c.skip_validation {
            continue;
        }
        let target = crate::ast::opt_rv_name(c.pktable.as_ref());
        out.push(
            &RULE,
            stmt.at(c.location),
            format!("adding a FOREIGN KEY from {table} to {target} without NOT VALID blocks writes to both tables while every row is checked"),
        );
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
                "ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users;",
                "ALTER TABLE orders ADD COLUMN buyer_id bigint REFERENCES users (id);",
                "ALTER TABLE orders ADD CONSTRAINT fk CHECK (total > 0) NOT VALID, ADD CONSTRAINT fk2 FOREIGN KEY (user_id) REFERENCES users (id);",
            ],
            &[
                "CREATE TABLE payments (id bigint PRIMARY KEY, order_id bigint REFERENCES orders (id));",
                "CREATE TABLE refunds (id bigint);\nALTER TABLE refunds ADD CONSTRAINT r_fk FOREIGN KEY (id) REFERENCES orders (id);",
                "ALTER TABLE orders ADD CONSTRAINT o_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
            ],
        ));
    }
}

//! `changing-schema`: `ALTER ... SET SCHEMA`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{object_kind_name};
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::ChangingSchema,
    severity: Severity::Error,
    summary: "ALTER TABLE/VIEW/TYPE/FUNCTION/... SET SCHEMA",
    lock: "ACCESS EXCLUSIVE on the object, briefly (catalog only)",
    why: "Moving an object to another schema renames it as far as every query is concerned: the running binary \
(and anything resolving it through search_path) stops finding it the moment the move commits. Keep the old \
name working — for a table, a view in the old schema over the moved table — until no binary uses it, and drop \
that in a contract migration; or leave the object where it is and expose it in the new schema through a view.",
    help: "expose the object in the new schema through a view instead (or keep a view under the old name until a contract migration)",
    setup: STD_SETUP,
    bad: "CREATE SCHEMA billing;\nALTER TABLE orders SET SCHEMA billing;\n",
    safe: "CREATE SCHEMA IF NOT EXISTS billing;\nCREATE VIEW billing.orders AS SELECT * FROM public.orders;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::AlterObjectSchemaStmt(a) = stmt.node else {
        return;
    };
    let kind = ObjectType::try_from(a.object_type).unwrap_or(ObjectType::Undefined);
    let name = match (a.relation.as_ref(), a.object.as_ref()) {
        (Some(rel), _) => crate::ast::rv_name(rel),
        (None, Some(obj)) => crate::ast::object_name(obj),
        _ => String::new(),
    };
    if matches!(kind, ObjectType::ObjectTable | ObjectType::ObjectMatview) && ctx.is_new(&name) {
        return;
    }
    out.push(
        &RULE,
        stmt.start,
        format!("moving {} {name} to schema {} breaks running binaries that refer to it by its current name", object_kind_name(kind), a.newschema),
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
                "ALTER TABLE users SET SCHEMA archive;",
                "ALTER TYPE mood SET SCHEMA app;",
                "ALTER FUNCTION f(int) SET SCHEMA app;",
            ],
            &[
                "CREATE TABLE t (a int);\nALTER TABLE t SET SCHEMA app;",
                "CREATE SCHEMA app;",
                "ALTER TABLE users SET (fillfactor = 90);",
            ],
        ));
    }
}

//! `renaming-object`: renaming a schema, view, type, enum value, function, sequence,
//! domain or other object that applications refer to by name.

use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::facts::{object_kind_name};
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RenamingObject,
    severity: Severity::Error,
    summary: "RENAME of a schema, view, type, enum value, function, sequence, domain or similar",
    lock: "ACCESS EXCLUSIVE on the object, briefly (catalog only)",
    why: "Applications refer to these objects by name (a schema in the search path or in queries, a view, a \
function they call, an enum label they write). The running binary breaks as soon as the rename commits and the \
new binary breaks until it does, so no phase ordering makes a rename safe. Create the new object next to the \
old one (a view or function under the new name, a new enum label added with ADD VALUE), move the application \
to it, and drop the old one in a contract migration. Renames of indexes, constraints and triggers are not \
flagged.",
    help: "create the new name alongside the old one, move the application over, drop the old one in a contract migration",
    setup: "CREATE TYPE mood AS ENUM ('happy', 'sad');\nCREATE VIEW active_users AS SELECT 1 AS id;\n",
    bad: "ALTER TYPE mood RENAME VALUE 'sad' TO 'unhappy';\n",
    safe: "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'unhappy';\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    match stmt.node {
        NodeEnum::AlterEnumStmt(e) if !e.old_val.is_empty() => {
            let name = crate::ast::list_name(&e.type_name);
            out.push(
                &RULE,
                stmt.start,
                format!("renaming value '{}' of enum {name} to '{}' breaks running binaries that read or write '{}'", e.old_val, e.new_val, e.old_val),
            );
        }
        NodeEnum::RenameStmt(r) => {
            let kind = ObjectType::try_from(r.rename_type).unwrap_or(ObjectType::Undefined);
            let name = match (r.relation.as_ref(), r.object.as_ref()) {
                (Some(rel), _) => crate::ast::rv_name(rel),
                (None, Some(obj)) => crate::ast::object_name(obj),
                (None, None) => r.subname.clone(),
            };
            let new = match kind {
                ObjectType::ObjectView => ctx.schema.views.get(&name).copied().unwrap_or(false),
                ObjectType::ObjectMatview => ctx.is_new(&name),
                ObjectType::ObjectColumn => {
                    // Columns of views are renamed like columns of tables.
                    if r.relation_type != ObjectType::ObjectView as i32 {
                        return;
                    }
                    ctx.schema.views.get(&name).copied().unwrap_or(false)
                }
                ObjectType::ObjectSchema
                | ObjectType::ObjectType
                | ObjectType::ObjectDomain
                | ObjectType::ObjectFunction
                | ObjectType::ObjectProcedure
                | ObjectType::ObjectRoutine
                | ObjectType::ObjectAggregate
                | ObjectType::ObjectSequence
                | ObjectType::ObjectForeignTable
                | ObjectType::ObjectAttribute => false,
                _ => return,
            };
            if new {
                return;
            }
            out.push(
                &RULE,
                stmt.start,
                format!("renaming {} {name} to {} breaks running binaries that use the old name", object_kind_name(kind), r.newname),
            );
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
                "ALTER SCHEMA billing RENAME TO invoicing;",
                "ALTER VIEW active_users RENAME TO current_users;",
                "ALTER FUNCTION add_one(int) RENAME TO increment;",
                "ALTER TYPE mood RENAME TO feeling;",
                "ALTER SEQUENCE s RENAME TO s2;",
            ],
            &[
                "ALTER INDEX i RENAME TO j;",
                "CREATE VIEW v AS SELECT 1 AS a;\nALTER VIEW v RENAME TO w;",
                "ALTER TABLE users RENAME CONSTRAINT a TO b;",
            ],
        ));
    }
}

//! `dropping-default`: `ALTER COLUMN ... DROP DEFAULT` outside a contract migration.

use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::subtype;
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingDefault,
    severity: Severity::Error,
    summary: "ALTER COLUMN ... DROP DEFAULT in an expand migration",
    lock: "ACCESS EXCLUSIVE on the table, briefly (catalog only)",
    why: "The running binary may omit the column from its INSERTs and rely on the default: without it those rows \
get NULL, or fail if the column is NOT NULL. Stop relying on the default in the application (write the value \
explicitly), then drop it in a `-- capstan:phase contract` migration.",
    help: "write the value explicitly in the application first, then drop the default in a `-- capstan:phase contract` migration",
    setup: "CREATE TABLE users (id bigint, plan text NOT NULL DEFAULT 'free');\n",
    bad: "ALTER TABLE users ALTER COLUMN plan DROP DEFAULT;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER COLUMN plan DROP DEFAULT;\n",
    up_only: true,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some(Removal::Commands { table, cmds, .. }) = removed(stmt, ctx) else {
        return;
    };
    for cmd in cmds {
        if subtype(cmd) == AlterTableType::AtColumnDefault && cmd.def.is_none() {
            let not_null = ctx.schema.table(&table).and_then(|t| t.column(&cmd.name)).is_some_and(|c| c.not_null);
            let effect = if not_null { "fail (the column is NOT NULL)" } else { "store NULL" };
            let n = &cmd.name;
            let at = stmt.clause_any(&[format!("ALTER COLUMN {n} DROP DEFAULT"), format!("ALTER {n} DROP DEFAULT")]);
            out.push(
                &RULE,
                at,
                format!("dropping the default of {table}.{}: INSERTs of the running binary that omit the column will {effect}", cmd.name),
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
                "ALTER TABLE users ALTER plan DROP DEFAULT;",
                "ALTER TABLE users ALTER COLUMN id DROP DEFAULT, ALTER COLUMN plan SET DEFAULT 'pro';",
                "ALTER TABLE legacy ALTER COLUMN a DROP DEFAULT;",
            ],
            &[
                "ALTER TABLE users ALTER COLUMN plan SET DEFAULT 'pro';",
                "CREATE TABLE t (a int DEFAULT 1);\nALTER TABLE t ALTER COLUMN a DROP DEFAULT;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER plan DROP DEFAULT;",
            ],
        ));
    }
}

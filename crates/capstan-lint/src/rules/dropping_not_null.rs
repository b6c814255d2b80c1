//! `dropping-not-null`: `ALTER COLUMN ... DROP NOT NULL` outside a contract migration.

use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::subtype;
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingNotNull,
    severity: Severity::Error,
    summary: "ALTER COLUMN ... DROP NOT NULL in an expand migration",
    lock: "ACCESS EXCLUSIVE on the table, briefly (catalog only)",
    why: "Once NOT NULL is gone, the new binary (or anyone) can write NULLs, and the binary running now — which \
assumes the column is never NULL — may crash or misbehave reading them, including after a rollback. Make every \
running binary tolerate NULL first, then drop the constraint in a `-- capstan:phase contract` migration.",
    help: "make the application tolerate NULL first, then drop NOT NULL in a `-- capstan:phase contract` migration",
    setup: "CREATE TABLE users (id bigint, email text NOT NULL);\n",
    bad: "ALTER TABLE users ALTER COLUMN email DROP NOT NULL;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER COLUMN email DROP NOT NULL;\n",
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
        if subtype(cmd) == AlterTableType::AtDropNotNull {
            let n = &cmd.name;
            let at = stmt.clause_any(&[format!("ALTER COLUMN {n} DROP NOT NULL"), format!("ALTER {n} DROP NOT NULL")]);
            out.push(
                &RULE,
                at,
                format!("dropping NOT NULL from {table}.{} lets NULLs reach binaries that assume there are none; do it in a contract migration", cmd.name),
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
                "ALTER TABLE users ALTER email DROP NOT NULL;",
                "ALTER TABLE public.users ALTER COLUMN email DROP NOT NULL, ALTER COLUMN id SET DEFAULT 1;",
                "ALTER TABLE legacy ALTER COLUMN a DROP NOT NULL;",
            ],
            &[
                "CREATE TABLE t (a int NOT NULL);\nALTER TABLE t ALTER COLUMN a DROP NOT NULL;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER email DROP NOT NULL;",
                "ALTER TABLE users ALTER COLUMN email SET DEFAULT '';",
            ],
        ));
    }
}

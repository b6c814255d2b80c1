//! `dropping-constraint`: dropping a constraint outside a contract migration.

use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::{re_added, subtype};
use crate::finding::Severity;
use crate::schema::ConstraintKind;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingConstraint,
    severity: Severity::Error,
    summary: "DROP CONSTRAINT (primary key, unique, foreign key, exclusion) in an expand migration",
    lock: "ACCESS EXCLUSIVE on the table (and the referenced table for a foreign key), briefly",
    why: "Running binaries may depend on the constraint: INSERT ... ON CONFLICT needs the unique index behind a \
UNIQUE or PRIMARY KEY constraint and fails without it, code may rely on a foreign key's cascade, and a dropped \
primary key breaks logical replication of updates. And once it is gone the new binary can write rows the old \
one does not expect. Drop it in a `-- capstan:phase contract` migration, once no running binary needs it. \
Dropping a CHECK constraint the model knows is not flagged (it only relaxes writes). Nor is a constraint dropped and added back in the same `ALTER TABLE` (same name, or same kind on the \
same columns): one statement, one lock, and no moment without it.",
    help: "drop it in a `-- capstan:phase contract` migration, once no running binary relies on it",
    setup: "CREATE TABLE users (id bigint PRIMARY KEY, email text CONSTRAINT users_email_key UNIQUE, age int CONSTRAINT age_positive CHECK (age > 0));\n",
    bad: "ALTER TABLE users DROP CONSTRAINT users_email_key;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_key;\n",
    up_only: true,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some(Removal::Commands { table, alter, cmds }) = removed(stmt, ctx) else {
        return;
    };
    for cmd in cmds {
        if subtype(cmd) != AlterTableType::AtDropConstraint {
            continue;
        }
        if re_added(&table, &cmd.name, alter, ctx) {
            continue;
        }
        let known = ctx.schema.table(&table).and_then(|t| t.constraint(&cmd.name));
        let what = match known.map(|c| c.kind) {
            Some(ConstraintKind::Check) | Some(ConstraintKind::NotNull) => continue,
            Some(ConstraintKind::PrimaryKey) => "primary key",
            Some(ConstraintKind::Unique) => "unique constraint",
            Some(ConstraintKind::ForeignKey) => "foreign key",
            Some(ConstraintKind::Exclusion) => "exclusion constraint",
            None => "constraint",
        };
        let n = &cmd.name;
        let at = stmt.clause_any(&[format!("DROP CONSTRAINT IF EXISTS {n}"), format!("DROP CONSTRAINT {n}")]);
        out.push(
            &RULE,
            at,
            format!("dropping {what} {} on {table} can break running binaries that rely on it (ON CONFLICT, cascades, replication); drop it in a contract migration", cmd.name),
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
                "ALTER TABLE users DROP CONSTRAINT users_pkey;",
                "ALTER TABLE users DROP CONSTRAINT IF EXISTS unknown_one CASCADE;",
                "ALTER TABLE orders DROP CONSTRAINT orders_user_fkey;",
                // Re-added in another statement: a window without it.
                "ALTER TABLE users DROP CONSTRAINT users_email_key;\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
            ],
            &[
                "ALTER TABLE users DROP CONSTRAINT age_positive;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP CONSTRAINT users_pkey;",
                "CREATE TABLE t (a int UNIQUE);\nALTER TABLE t DROP CONSTRAINT t_a_key;",
                // Dropped and re-added in one statement: never missing.
                "ALTER TABLE users DROP CONSTRAINT users_email_key, ADD CONSTRAINT users_email_key UNIQUE (email);",
                "ALTER TABLE users DROP CONSTRAINT users_email_key, ADD CONSTRAINT users_email_unique UNIQUE (email);",
            ],
        ));
    }
}

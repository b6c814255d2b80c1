//! `enum-add-value`: `ALTER TYPE ... ADD VALUE` where it fails: inside a transaction
//! before Postgres 12, or followed by a use of the new value in the same transaction.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::EnumAddValue,
    severity: Severity::Error,
    summary: "ALTER TYPE ... ADD VALUE in a transaction before Postgres 12, or the new value used in the same transaction",
    lock: "",
    why: "Before Postgres 12, ALTER TYPE ... ADD VALUE cannot run inside a transaction block at all. Since 12 it \
can, but the new label cannot be used until the transaction commits (\"unsafe use of new value\"): an UPDATE or \
INSERT writing it, or a default or CHECK mentioning it, in the same migration fails at deploy time. Add the \
value in its own migration (`-- capstan:no-transaction` before 12), with IF NOT EXISTS so a retry is harmless, \
and use it in a later one. Adding a value is an expand change; removing or renaming one is not possible online.",
    help: "add the value in its own migration (with IF NOT EXISTS) and use it in a later one",
    setup: "CREATE TYPE mood AS ENUM ('happy', 'sad');\nCREATE TABLE users (id bigint PRIMARY KEY, mood mood);\n",
    bad: "ALTER TYPE mood ADD VALUE 'content';\nUPDATE users SET mood = 'content' WHERE id = 1;\n",
    safe: "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'content';\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if let NodeEnum::AlterEnumStmt(e) = stmt.node {
        if e.old_val.is_empty() && ctx.in_transaction && ctx.pg < 12 {
            out.push_help(
                &RULE,
                stmt.start,
                format!("ALTER TYPE {} ADD VALUE cannot run inside a transaction block on Postgres {}", crate::ast::list_name(&e.type_name), ctx.pg),
                "put it in its own `-- capstan:no-transaction` migration",
            );
        }
        return;
    }
    if !ctx.in_transaction {
        return;
    }
    for (ty, val) in ctx.enum_values_in_tx {
        let quoted = format!("'{}'", val.replace('\'', "''"));
        if stmt.sql.contains(&quoted) {
            out.push(
                &RULE,
                stmt.start,
                format!("'{val}' was added to enum {ty} in this same transaction: Postgres refuses to use it before the transaction commits (unsafe use of new value)"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, check_with, pg};

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'sad';\nALTER TABLE users ALTER COLUMN mood SET DEFAULT 'meh';",
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok';\nINSERT INTO users (id, mood) VALUES (7, 'ok');",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nALTER TYPE mood ADD VALUE 'ok';\nUPDATE users SET mood = 'ok' WHERE id = 1;\nCOMMIT;",
            ],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nALTER TYPE mood ADD VALUE 'ok';\nUPDATE users SET mood = 'ok' WHERE id = 1;",
                "ALTER TYPE mood ADD VALUE 'ok';\nUPDATE users SET mood = 'happy' WHERE id = 1;",
                "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok' AFTER 'happy';",
            ],
        ));
    }

    #[test]
    fn add_value_in_transaction_before_12() {
        insta::assert_snapshot!(check_with(
            &pg(11),
            &RULE,
            &["ALTER TYPE mood ADD VALUE 'ok';"],
            &["-- capstan:no-transaction\n-- capstan:up\nALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok';"],
        ));
    }
}

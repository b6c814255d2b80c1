//! `non-idempotent-no-transaction`: a statement without `IF [NOT] EXISTS` in a
//! migration that runs without a transaction.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::NonIdempotentNoTransaction,
    severity: Severity::Warning,
    summary: "CREATE/DROP/ADD without IF [NOT] EXISTS in a `-- capstan:no-transaction` migration",
    lock: "",
    why: "A `no-transaction` migration is not atomic: if it fails halfway, the statements before the failure \
stay applied and capstan records the migration as dirty. After `capstan migrate repair`, the migration runs \
again from the top, and every statement that already succeeded must succeed again — so each needs its \
IF NOT EXISTS / IF EXISTS form. Beware that a failed CREATE INDEX CONCURRENTLY leaves an INVALID index that \
IF NOT EXISTS would then keep: precede it with DROP INDEX CONCURRENTLY IF EXISTS when retrying after a failure.",
    help: "add IF NOT EXISTS / IF EXISTS so a retry after a partial failure succeeds",
    setup: STD_SETUP,
    bad: "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n",
    up_only: false,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if !ctx.no_transaction || ctx.explicit_depth > 0 {
        return;
    }
    let what: Vec<String> = match stmt.node {
        NodeEnum::IndexStmt(i) if !i.if_not_exists => vec!["CREATE INDEX without IF NOT EXISTS".into()],
        NodeEnum::CreateStmt(c) if !c.if_not_exists => vec!["CREATE TABLE without IF NOT EXISTS".into()],
        NodeEnum::CreateSeqStmt(c) if !c.if_not_exists => vec!["CREATE SEQUENCE without IF NOT EXISTS".into()],
        NodeEnum::CreateSchemaStmt(c) if !c.if_not_exists => vec!["CREATE SCHEMA without IF NOT EXISTS".into()],
        NodeEnum::CreateExtensionStmt(c) if !c.if_not_exists => vec!["CREATE EXTENSION without IF NOT EXISTS".into()],
        NodeEnum::CreateTableAsStmt(c) if !c.if_not_exists => vec!["CREATE ... AS without IF NOT EXISTS".into()],
        NodeEnum::ViewStmt(v) if !v.replace => vec!["CREATE VIEW without OR REPLACE".into()],
        NodeEnum::CreateFunctionStmt(f) if !f.replace => vec!["CREATE FUNCTION without OR REPLACE".into()],
        NodeEnum::DropStmt(d) if !d.missing_ok => vec!["DROP without IF EXISTS".into()],
        NodeEnum::AlterEnumStmt(e) if e.old_val.is_empty() && !e.skip_if_new_val_exists => {
            vec!["ALTER TYPE ... ADD VALUE without IF NOT EXISTS".into()]
        }
        NodeEnum::AlterTableStmt(_) => {
            let Some((_, _, cmds)) = alter_table(stmt) else {
                return;
            };
            cmds.iter()
                .filter_map(|c| match subtype(c) {
                    AlterTableType::AtAddColumn if !c.missing_ok => Some("ADD COLUMN without IF NOT EXISTS".to_string()),
                    AlterTableType::AtDropColumn if !c.missing_ok => Some(format!("DROP COLUMN {} without IF EXISTS", c.name)),
                    AlterTableType::AtDropConstraint if !c.missing_ok => Some(format!("DROP CONSTRAINT {} without IF EXISTS", c.name)),
                    _ => None,
                })
                .collect()
        }
        _ => vec![],
    };
    for w in what {
        out.push(&RULE, stmt.start, format!("{w} in a no-transaction migration fails when the migration is retried after a partial failure"));
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
                "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY orders_status_idx;",
                "-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD COLUMN bio text;",
                "-- capstan:no-transaction\n-- capstan:up\nALTER TYPE mood ADD VALUE 'ok';",
                "-- capstan:no-transaction\n-- capstan:up\nCREATE TABLE t (a int);",
            ],
            &[
                "CREATE INDEX CONCURRENTLY users_email_idx ON users (email);",
                "-- capstan:no-transaction\n-- capstan:up\nDROP INDEX CONCURRENTLY IF EXISTS orders_status_idx;\nALTER TABLE users ADD COLUMN IF NOT EXISTS bio text;",
                "-- capstan:no-transaction\n-- capstan:up\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;",
            ],
        ));
    }
}

//! `setting-not-null`: `ALTER COLUMN ... SET NOT NULL` on an existing table.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_constraints, alter_table, contype, subtype};
use crate::finding::Severity;
use crate::schema::Table;
use pg_query::protobuf::{AlterTableType, ConstrType};

pub(crate) static RULE: Rule = Rule {
    id: RuleId::SettingNotNull,
    severity: Severity::Error,
    summary: "SET NOT NULL on an existing column without a validated CHECK (col IS NOT NULL)",
    lock: "ACCESS EXCLUSIVE on the table while every row is scanned: blocks every read and write",
    why: "SET NOT NULL scans the whole table to prove there is no NULL, under an ACCESS EXCLUSIVE lock. Since \
Postgres 12 the scan is skipped when a validated CHECK (col IS NOT NULL) constraint already proves it, and that \
constraint can be added NOT VALID and validated under a weak lock. So: add the CHECK NOT VALID, VALIDATE it in \
a separate transaction, SET NOT NULL (instant), then drop the now-redundant CHECK. Before Postgres 12 there is \
no way around the scan; keep the CHECK constraint instead of SET NOT NULL. SET NOT NULL is also a new write \
restriction: an older binary that writes NULLs starts failing, so it belongs in a contract migration.",
    help: "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it separately, then SET NOT NULL and drop the CHECK (Postgres 12+)",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\nALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_not_null;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn proven(table: Option<&Table>, column: &str) -> bool {
    table.is_some_and(|t| {
        t.column(column).is_some_and(|c| c.not_null)
            || t.constraints
                .iter()
                .any(|c| c.validated && c.not_null_column.as_deref() == Some(column))
    })
}

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    if ctx.is_new(&table) {
        return;
    }
    let t = ctx.schema.table(&table);
    let mut columns: Vec<String> = cmds
        .iter()
        .filter(|c| subtype(c) == AlterTableType::AtSetNotNull)
        .map(|c| c.name.clone())
        .collect();
    // Postgres 18: ADD CONSTRAINT name NOT NULL col
    for (_, c) in added_constraints(stmt, ctx) {
        if contype(c) == ConstrType::ConstrNotnull {
            columns.extend(c.keys.iter().filter_map(crate::ast::str_of).map(str::to_string));
        }
    }
    for (nth, col) in columns.into_iter().enumerate() {
        let at = stmt.clause("SET NOT NULL", nth);
        if t.is_some_and(|t| t.column(&col).is_some_and(|c| c.not_null)) {
            continue;
        }
        let backed = proven(t, &col);
        if backed && ctx.pg >= 12 {
            continue;
        }
        if backed {
            out.push_help(
                &RULE,
                at,
                format!("SET NOT NULL on {table}.{col} scans the whole table under an ACCESS EXCLUSIVE lock: Postgres {} ignores the CHECK constraint that proves it (12+ uses it)", ctx.pg),
                "keep the validated CHECK (col IS NOT NULL) constraint instead of SET NOT NULL until you run Postgres 12+",
            );
        } else {
            out.push(
                &RULE,
                at,
                format!("SET NOT NULL on {table}.{col} scans the whole table under an ACCESS EXCLUSIVE lock (no validated CHECK ({col} IS NOT NULL) backs it)"),
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
                "ALTER TABLE users ALTER name SET NOT NULL;",
                "ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL) NOT VALID;\nALTER TABLE users ALTER COLUMN email SET NOT NULL;",
                "ALTER TABLE legacy ALTER COLUMN a SET NOT NULL;",
            ],
            &[
                "ALTER TABLE users ALTER COLUMN id SET NOT NULL;",
                "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;",
                "ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL);\nALTER TABLE users ALTER COLUMN email SET NOT NULL;",
            ],
        ));
    }

    #[test]
    fn check_constraint_does_not_help_before_12() {
        insta::assert_snapshot!(check_with(
            &pg(11),
            &RULE,
            &["ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL);\nALTER TABLE users ALTER COLUMN email SET NOT NULL;"],
            &[],
        ));
    }
}

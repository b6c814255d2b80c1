//! `set-logged-unlogged`: `ALTER TABLE ... SET LOGGED` / `SET UNLOGGED`.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::SetLoggedUnlogged,
    severity: Severity::Error,
    summary: "ALTER TABLE ... SET LOGGED or SET UNLOGGED on an existing table",
    lock: "ACCESS EXCLUSIVE on the table for a full rewrite: blocks every read and write",
    why: "Switching a table between logged and unlogged rewrites it completely under an ACCESS EXCLUSIVE lock; \
SET LOGGED also writes the whole table to the WAL, which can flood replicas and archiving. An unlogged table is \
also emptied after a crash and is not replicated. Decide at creation time (CREATE UNLOGGED TABLE), or create a \
new table with the other setting and move the data over in batches.",
    help: "choose at creation time, or copy into a new table in batches",
    setup: STD_SETUP,
    bad: "ALTER TABLE orders SET UNLOGGED;\n",
    safe: "CREATE UNLOGGED TABLE cache_entries (key text PRIMARY KEY, value jsonb);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    if ctx.is_new(&table) {
        return;
    }
    for cmd in cmds {
        let what = match subtype(cmd) {
            AlterTableType::AtSetLogged => "SET LOGGED",
            AlterTableType::AtSetUnLogged => "SET UNLOGGED",
            _ => continue,
        };
        out.push(&RULE, stmt.clause(what, 0), format!("{what} rewrites all of {table} under an ACCESS EXCLUSIVE lock"));
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
            &["ALTER TABLE users SET LOGGED;", "ALTER TABLE IF EXISTS orders SET UNLOGGED;", "ALTER TABLE legacy SET LOGGED, SET (fillfactor = 80);"],
            &[
                "CREATE UNLOGGED TABLE t (a int);\nALTER TABLE t SET LOGGED;",
                "ALTER TABLE users SET (autovacuum_enabled = true);",
                "CREATE UNLOGGED TABLE scratch (a int);",
            ],
        ));
    }
}

//! `dropping-column`: `DROP COLUMN` outside a contract migration.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::{archive_note, subtype};
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingColumn,
    severity: Severity::Error,
    summary: "DROP COLUMN in an expand migration",
    lock: "ACCESS EXCLUSIVE on the table, briefly (no rewrite), but it must wait for every running query on the table",
    why: "The binary running now may still read or write the column: its queries fail (\"column does not exist\") \
the moment the drop commits, and an ORM that selects every mapped column breaks on every query of the table. \
Stop using the column in the application first, ship that binary, then drop the column in a \
`-- capstan:phase contract` migration, which capstan applies only once every running instance embeds it. \
capstan archives the column's data before dropping it, so `capstan archive restore` can bring it back.",
    help: "stop using the column, then drop it in a `-- capstan:phase contract` migration",
    setup: STD_SETUP,
    bad: "ALTER TABLE users DROP COLUMN name;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN IF EXISTS name;\n",
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
        if subtype(cmd) == AlterTableType::AtDropColumn {
            let n = &cmd.name;
            let at = stmt.clause_any(&[format!("DROP COLUMN IF EXISTS {n}"), format!("DROP COLUMN {n}"), format!("DROP {n}")]);
            out.push(
                &RULE,
                at,
                format!(
                    "dropping column {table}.{} breaks the running binary if it still reads or writes it; drop it in a contract migration ({})",
                    cmd.name,
                    archive_note("column")
                ),
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
                "ALTER TABLE users DROP COLUMN IF EXISTS email;",
                "-- capstan:phase expand\n-- capstan:up\nALTER TABLE users DROP name, DROP COLUMN age;",
                "ALTER TABLE legacy DROP COLUMN a CASCADE;",
            ],
            &[
                "CREATE TABLE t (a int, b int);\nALTER TABLE t DROP COLUMN b;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users DROP COLUMN age;",
                "ALTER TABLE users ADD COLUMN bio text;",
            ],
        ));
    }
}

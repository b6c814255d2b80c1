//! `dropping-table`: `DROP TABLE` outside a contract migration.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::archive_note;
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingTable,
    severity: Severity::Error,
    summary: "DROP TABLE in an expand migration",
    lock: "ACCESS EXCLUSIVE on the table (and on tables whose foreign keys reference it), waiting for every running query on them",
    why: "The binary running now may still use the table: its queries fail the moment the drop commits, and \
rolling the binary back would not bring the table back. Stop using the table in the application first, ship \
that binary, then drop it in a `-- capstan:phase contract` migration, which capstan applies only once every \
running instance embeds it. capstan archives the table's rows before dropping it, so `capstan archive restore` \
can bring them back. Tables created in the same migration are exempt.",
    help: "stop using the table, then drop it in a `-- capstan:phase contract` migration",
    setup: STD_SETUP,
    bad: "DROP TABLE orders;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nDROP TABLE IF EXISTS orders;\n",
    up_only: true,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some(Removal::Objects { kind: ObjectType::ObjectTable, names, .. }) = removed(stmt, ctx) else {
        return;
    };
    for name in names {
        if ctx.is_new(&name) {
            continue;
        }
        out.push(
            &RULE,
            stmt.start,
            format!(
                "dropping table {name} breaks the running binary if it still uses it; drop it in a contract migration ({})",
                archive_note("table")
            ),
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
            &["DROP TABLE IF EXISTS users CASCADE;", "DROP TABLE orders, users;", "DROP TABLE app.legacy;"],
            &[
                "CREATE TABLE tmp (a int);\nDROP TABLE tmp;",
                "-- capstan:phase contract\n-- capstan:up\nDROP TABLE users;",
                "DROP VIEW IF EXISTS nothing;",
            ],
        ));
    }
}

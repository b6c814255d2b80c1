//! `wrong-phase`: a contract statement in a migration declared (or defaulting to)
//! `expand`, or a `contract` migration with no contract statement.

use super::{Rule, STD_SETUP};
use crate::engine::{Ctx, Hits, Stmt};
use crate::finding::{SectionKind, Severity};
use crate::phase::{archive_note, classify, Class};
use crate::source::Phase;
use pg_query::protobuf::{AlterTableType, ObjectType};
use pg_query::NodeEnum;

/// Rules whose finding already says "move this to a contract migration": when one of
/// them fires on a statement, this rule stays quiet about it.
pub(crate) const SUPERSEDED_BY: &[&str] = &[
    "dropping-column",
    "dropping-table",
    "dropping-object",
    "dropping-constraint",
    "dropping-default",
    "dropping-not-null",
    "renaming-column",
    "renaming-table",
    "renaming-object",
    "changing-schema",
];

pub(crate) static RULE: Rule = Rule {
    name: "wrong-phase",
    severity: Severity::Error,
    summary: "a contract statement in an expand migration (or a contract migration with nothing to contract)",
    lock: "",
    why: "capstan applies expand migrations as soon as they are pending, while the previous binary is still \
running, and holds contract migrations until every running instance embeds them. A statement that removes or \
restricts something the running binary may use — a drop, a rename, a type change, SET/DROP NOT NULL, a new \
CHECK/UNIQUE/FOREIGN KEY, a new NOT NULL column without default, TRUNCATE — breaks that binary if it runs in the \
expand phase. Split the migration: keep the expand part, and move the contract statement to its own migration \
declared `-- capstan:phase contract`. Conversely, a migration declared contract that contains no contract \
statement waits for the fleet for nothing.",
    help: "split it: move this statement into its own migration declared `-- capstan:phase contract`",
    setup: STD_SETUP,
    bad: "-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID;\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID;\n",
    up_only: true,
    check,
};

fn drops_data(node: &NodeEnum) -> Option<&'static str> {
    match node {
        NodeEnum::DropStmt(d) if d.remove_type == ObjectType::ObjectTable as i32 => Some("table"),
        NodeEnum::DropStmt(d) if d.remove_type == ObjectType::ObjectSchema as i32 => Some("schema"),
        NodeEnum::TruncateStmt(_) => Some("truncate"),
        NodeEnum::AlterTableStmt(a) => a
            .cmds
            .iter()
            .any(|c| matches!(c.node.as_ref(), Some(NodeEnum::AlterTableCmd(c)) if c.subtype == AlterTableType::AtDropColumn as i32))
            .then_some("column"),
        _ => None,
    }
}

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if ctx.section != SectionKind::Up || ctx.phase != Phase::Expand {
        return;
    }
    let (class, why) = classify(stmt, ctx);
    if class != Class::Contract {
        return;
    }
    let note = drops_data(stmt.node)
        .map(|k| format!(" It drops data: {}.", archive_note(k)))
        .unwrap_or_default();
    out.push(
        &RULE,
        stmt.start,
        format!("this statement {why}: a contract change in an expand migration, which runs while older binaries still depend on the old shape; split it into its own `-- capstan:phase contract` migration.{note}"),
    );
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
                "-- capstan:phase expand\n-- capstan:up\nALTER TABLE users ALTER COLUMN email SET NOT NULL;",
                "TRUNCATE orders;",
                "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
                "ALTER TABLE users ADD COLUMN plan text NOT NULL;",
                "-- capstan:no-transaction\n-- capstan:up\nCREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u ON users (email);",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ADD COLUMN bio text;",
            ],
            &[
                "ALTER TABLE users ADD COLUMN bio text;",
                "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a SET NOT NULL;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n-- capstan:down\nALTER TABLE users ALTER COLUMN email DROP NOT NULL;",
            ],
        ));
    }
}

//! `wrong-phase`: a contract statement in a migration declared (or defaulting to)
//! `expand`, or a `contract` migration with no contract statement.

use super::{STD_SETUP};
use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use crate::facts::{archive_note};
use crate::finding::{SectionKind, Severity};
use crate::phase::{classify, Class};
use capstan_format::Phase;
use pg_query::protobuf::{AlterTableType, ObjectType};
use pg_query::NodeEnum;

/// Rules whose finding already says "move this to a contract migration": when one of
/// them fires on a statement, this rule stays quiet about it.
pub(crate) const SUPERSEDED_BY: &[RuleId] = &[
    RuleId::DroppingColumn,
    RuleId::DroppingTable,
    RuleId::DroppingObject,
    RuleId::DroppingConstraint,
    RuleId::DroppingDefault,
    RuleId::DroppingNotNull,
    RuleId::RenamingColumn,
    RuleId::RenamingTable,
    RuleId::RenamingObject,
    RuleId::ChangingSchema,
];

pub(crate) static RULE: Rule = Rule {
    id: RuleId::WrongPhase,
    severity: Severity::Error,
    summary: "a contract statement in an expand migration (or a contract migration with nothing to contract)",
    lock: "",
    why: "capstan applies expand migrations as soon as they are pending, while the previous binary is still \
running, and holds contract migrations until every running instance embeds them. A statement that removes or \
restricts something the running binary may use — a drop, a rename, a type change, SET/DROP NOT NULL, a new \
CHECK/UNIQUE/FOREIGN KEY, a new NOT NULL column without default, TRUNCATE — breaks that binary if it runs in the \
expand phase. Split the migration: keep the expand part, and move the contract statement to its own migration \
declared `-- capstan:phase contract`. Conversely, a migration declared contract that contains no contract \
statement waits for the fleet for nothing. A restriction that already holds is not a contract change: \
`SET NOT NULL` on a column with a validated `CHECK (col IS NOT NULL)`, `ADD CONSTRAINT ... UNIQUE USING \
INDEX` on a unique index an earlier migration built, a constraint dropped and re-added in one `ALTER \
TABLE`, an object dropped and created again in the same transaction, `DROP ... IF EXISTS` of an object \
the model does not hold.",
    help: "split it: move this statement into its own migration declared `-- capstan:phase contract`",
    setup: STD_SETUP,
    bad: "-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID;\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID;\n",
    up_only: true,
    dialects: ANY_DIALECT,
    size_bound: false,
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
    use crate::rules::testing::{check, run};

    fn phase_findings(setup: &str, sql: &str) -> Vec<String> {
        run(&crate::Config::default(), setup, sql)
            .into_iter()
            .filter(|f| f.rule == RULE.name())
            .map(|f| f.message)
            .collect()
    }

    /// Regression: a restriction that already holds is no contract change.
    #[test]
    fn a_constraint_whose_restriction_already_holds_is_not_contract() {
        let setup = "CREATE TABLE users (id bigint, email text);\n\
            ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
            ALTER TABLE users VALIDATE CONSTRAINT email_nn;\n\
            CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email);\n";
        for sql in [
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\nALTER TABLE users DROP CONSTRAINT email_nn;",
            "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;",
        ] {
            assert_eq!(phase_findings(setup, sql), Vec::<String>::new(), "{sql}");
        }
        // Not yet validated, or another column: still a new restriction.
        let unvalidated = "CREATE TABLE users (id bigint, email text);\n\
            ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n";
        assert_eq!(
            phase_findings(unvalidated, "ALTER TABLE users ALTER COLUMN email SET NOT NULL;").len(),
            1
        );
        assert_eq!(
            phase_findings(setup, "ALTER TABLE users ALTER COLUMN id SET NOT NULL;").len(),
            1
        );
        // A unique index made in this migration: the restriction is new.
        assert_eq!(
            phase_findings(
                "CREATE TABLE users (id bigint, email text);\n",
                "CREATE UNIQUE INDEX users_email_idx ON users (email);\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;"
            )
            .len(),
            2
        );
    }

    /// Regression: replacing an object, or dropping one that is not there,
    /// is no contract change either.
    #[test]
    fn replaced_or_absent_objects_are_not_contract() {
        let setup = "CREATE TABLE users (id bigint, email text);\n\
            CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';\n\
            CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n\
            CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint CONSTRAINT orders_user_fkey REFERENCES users (id));\n";
        for sql in [
            "DROP TRIGGER users_touch ON users;\nCREATE TRIGGER users_touch AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();",
            "DROP FUNCTION IF EXISTS never_made();",
            "ALTER TABLE orders DROP CONSTRAINT orders_user_fkey, ADD CONSTRAINT orders_user_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE NOT VALID;",
        ] {
            assert_eq!(phase_findings(setup, sql), Vec::<String>::new(), "{sql}");
        }
    }

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

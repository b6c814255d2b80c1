//! `dropping-object`: dropping a schema, view, function, type, sequence, domain,
//! extension, trigger or other object outside a contract migration.

use crate::rule::{ANY_DIALECT, Ctx, Hits, Rule, RuleId, Stmt};
use super::family::{removed, Removal};
use crate::facts::{archive_note, not_a_removal, object_kind_name};
use crate::finding::Severity;
use pg_query::protobuf::ObjectType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::DroppingObject,
    severity: Severity::Error,
    summary: "DROP SCHEMA/VIEW/FUNCTION/TYPE/SEQUENCE/DOMAIN/EXTENSION/TRIGGER/... in an expand migration",
    lock: "ACCESS EXCLUSIVE on the object (a DROP TRIGGER also locks its table), waiting for running queries that use it",
    why: "The running binary may still call the function, select from the view, cast to the type or rely on the \
trigger; it breaks the moment the drop commits (and CASCADE may remove more than the statement names). Stop \
using the object first, then drop it in a `-- capstan:phase contract` migration, which capstan applies only once \
every running instance embeds it. DROP SCHEMA ... CASCADE also drops tables: capstan archives the tables it \
knows before dropping them. Tables and indexes have their own rules. DROP DATABASE is \
flagged in every phase: it never belongs in a migration. Not flagged: a trigger, function, view or type dropped and created again later in the same transaction \
(replaced in one step, never missing), and `DROP ... IF EXISTS` of a view, function, trigger or type the \
schema model does not hold (nothing is removed).",
    help: "stop using it, then drop it in a `-- capstan:phase contract` migration",
    setup: "CREATE VIEW active_users AS SELECT 1 AS id;\nCREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 1';\n",
    bad: "DROP VIEW active_users;\n",
    safe: "-- capstan:phase contract\n-- capstan:up\nDROP VIEW IF EXISTS active_users;\n",
    up_only: true,
    dialects: ANY_DIALECT,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    if let NodeEnum::DropdbStmt(d) = stmt.node {
        // Never part of a migration, whatever the phase.
        out.push(
            &RULE,
            stmt.start,
            format!("DROP DATABASE {} in a migration destroys every table at once; no archive can follow it", d.dbname),
        );
        return;
    }
    let Some(Removal::Objects { drop, kind, names }) = removed(stmt, ctx) else {
        return;
    };
    // Tables, indexes and constraints have their own rules.
    if matches!(kind, ObjectType::ObjectTable | ObjectType::ObjectIndex | ObjectType::ObjectTabconstraint) {
        return;
    }
    for name in names {
        if not_a_removal(drop, kind, &name, ctx) {
            continue;
        }
        let new = match kind {
            ObjectType::ObjectView => ctx.schema.views.get(&name).copied().unwrap_or(false),
            ObjectType::ObjectMatview => ctx.is_new(&name),
            _ => false,
        };
        if new {
            continue;
        }
        let what = object_kind_name(kind);
        let note = if kind == ObjectType::ObjectSchema { archive_note("schema") } else { archive_note("") };
        out.push(
            &RULE,
            stmt.start,
            format!("dropping {what} {name} breaks the running binary if it still uses it; drop it in a contract migration ({note})"),
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
                "DROP FUNCTION add_one(int);",
                "DROP SCHEMA reporting CASCADE;",
                "DROP TYPE mood;",
                "DROP SEQUENCE IF EXISTS s;",
                "DROP EXTENSION pg_trgm;",
                "DROP TRIGGER t ON users;",
                "DROP DOMAIN email_address;",
                // Created again, but only after the transaction ended.
                "-- capstan:no-transaction\n-- capstan:up\nDROP VIEW active_users;\nCREATE VIEW active_users AS SELECT 2 AS id;",
                "DROP VIEW IF EXISTS active_users;",
                "-- capstan:phase contract\n-- capstan:up\nDROP DATABASE IF EXISTS app;",
            ],
            &[
                "CREATE VIEW v AS SELECT 1;\nDROP VIEW v;",
                "-- capstan:phase contract\n-- capstan:up\nDROP FUNCTION add_one(int);",
                "DROP INDEX CONCURRENTLY IF EXISTS i;",
                // Replaced in the same transaction: nothing disappears.
                "DROP TRIGGER IF EXISTS users_touch ON users;\nCREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION add_one();",
                "DROP FUNCTION add_one(int);\nCREATE FUNCTION add_one(i int) RETURNS int LANGUAGE sql AS 'SELECT i + 2';",
                "DROP VIEW active_users;\nCREATE VIEW active_users AS SELECT 2 AS id;",
                // IF EXISTS of an object no migration created.
                "DROP VIEW IF EXISTS never_made;",
                "DROP FUNCTION IF EXISTS never_made(int);",
                "DROP TRIGGER IF EXISTS never_made ON users;",
            ],
        ));
    }
}

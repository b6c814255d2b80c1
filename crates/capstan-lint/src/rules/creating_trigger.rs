//! `creating-trigger`: `CREATE TRIGGER` on a table that is already in use.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::CreatingTrigger,
    severity: Severity::Warning,
    summary: "CREATE TRIGGER on an existing table",
    lock: "SHARE ROW EXCLUSIVE on the table: blocks writes (briefly), and waits for every running write first",
    why: "Creating a trigger needs a lock that conflicts with every write, so it waits for running writes and \
holds up new ones meanwhile; keep it alone in its migration with a short `-- capstan:lock-timeout`. More \
importantly, a trigger changes what every write does — including the writes of the binary running now, which \
was not tested with it: make sure it is correct for the old binary's writes too (a BEFORE trigger that rejects \
rows is a new write restriction). Tables created in the same migration are exempt.",
    help: "keep it alone in a migration with a short `-- capstan:lock-timeout`, and make sure the running binary's writes work with it",
    setup: STD_SETUP,
    bad: "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.created_at := now(); RETURN NEW; END $$;\nCREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n",
    safe: "CREATE TABLE audit_log (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz);\nCREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RETURN NEW; END $$;\nCREATE TRIGGER audit_log_stamp BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION stamp();\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::CreateTrigStmt(t) = stmt.node else {
        return;
    };
    let table = crate::ast::opt_rv_name(t.relation.as_ref());
    if ctx.is_new(&table) {
        return;
    }
    out.push(
        &RULE,
        stmt.start,
        format!("creating trigger {} on {table} blocks its writes while it waits for the lock, and changes what the running binary's writes do", t.trigname),
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
                "CREATE TRIGGER t AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION f();",
                "CREATE OR REPLACE TRIGGER t BEFORE DELETE ON users FOR EACH STATEMENT EXECUTE PROCEDURE f();",
                "CREATE CONSTRAINT TRIGGER c AFTER UPDATE ON orders DEFERRABLE FOR EACH ROW EXECUTE FUNCTION f();",
            ],
            &[
                "CREATE TABLE t (a int);\nCREATE TRIGGER tt BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();",
                "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
                "DROP TRIGGER IF EXISTS nothing ON users;",
            ],
        ));
    }
}

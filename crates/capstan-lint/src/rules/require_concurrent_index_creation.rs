//! `require-concurrent-index-creation`: `CREATE INDEX` without `CONCURRENTLY` on a
//! table that is already in use.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::ast::opt_rv_name;
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RequireConcurrentIndexCreation,
    severity: Severity::Error,
    summary: "CREATE INDEX without CONCURRENTLY on an existing table",
    lock: "SHARE on the table for the whole build: INSERT, UPDATE and DELETE wait (reads go on); every query queued behind it waits too",
    why: "A plain CREATE INDEX reads the whole table while holding a SHARE lock. On a busy table the build takes \
minutes, and every write — and, through the lock queue, every later query — waits for it: the service stalls. \
CREATE INDEX CONCURRENTLY builds the index in several passes under SHARE UPDATE EXCLUSIVE, which lets reads and \
writes continue. It cannot run inside a transaction, so it goes in its own `-- capstan:no-transaction` migration; \
if it fails it leaves an INVALID index behind, which `IF NOT EXISTS` would keep, so drop it (DROP INDEX \
CONCURRENTLY IF EXISTS) before retrying. Tables created in the same migration are exempt.",
    help: "use CREATE INDEX CONCURRENTLY, alone in a `-- capstan:no-transaction` migration",
    setup: STD_SETUP,
    bad: "CREATE INDEX users_email_idx ON users (email);\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::IndexStmt(i) = stmt.node else {
        return;
    };
    let table = opt_rv_name(i.relation.as_ref());
    if i.concurrent || ctx.is_new(&table) {
        return;
    }
    let what = if i.unique { "CREATE UNIQUE INDEX" } else { "CREATE INDEX" };
    let only = i.relation.as_ref().is_some_and(|r| !r.inh);
    if ctx.schema.table(&table).is_some_and(|t| t.partitioned) {
        if only {
            // ON ONLY the parent: an instant, invalid index, completed by attaching
            // concurrently built partition indexes.
            return;
        }
        out.push_help(
            &RULE,
            stmt.start,
            format!("{what} on partitioned table {table} builds the index on every partition while blocking their writes (CONCURRENTLY is not supported on partitioned tables)"),
            "CREATE INDEX ... ON ONLY the parent (instant), CREATE INDEX CONCURRENTLY on each partition, then ALTER INDEX <parent index> ATTACH PARTITION <partition index> for each",
        );
        return;
    }
    let name = if i.idxname.is_empty() { String::new() } else { format!(" {}", i.idxname) };
    out.push(
        &RULE,
        stmt.start,
        format!("{what}{name} without CONCURRENTLY blocks writes to {table} for the whole index build"),
    );
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, run};
    use crate::Config;

    #[test]
    fn partitioned_tables_get_the_on_only_recipe() {
        let setup = "CREATE TABLE ev (at date) PARTITION BY RANGE (at);";
        let f = run(&Config::default(), setup, "CREATE INDEX ev_at ON ev (at);");
        assert_eq!(f[0].rule, RULE.name());
        assert!(f[0].help.as_deref().unwrap().contains("ON ONLY"));
        let f = run(&Config::default(), setup, "CREATE INDEX ev_at ON ONLY ev (at);");
        assert!(f.iter().all(|f| f.rule != RULE.name()), "{f:#?}");
    }

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "CREATE UNIQUE INDEX users_email_key ON users (lower(email));",
                "-- capstan:up\nCREATE INDEX ON orders USING gin (to_tsvector('english', status));",
                "CREATE INDEX legacy_a ON legacy (a);",
            ],
            &[
                "CREATE TABLE t (id bigint, a text);\nCREATE INDEX t_a ON t (a);",
                "-- capstan:no-transaction\n-- capstan:up\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_name_idx ON users (name);",
                "CREATE TABLE app.t (id bigint);\nCREATE UNIQUE INDEX t_id ON app.t (id);",
            ],
        ));
    }
}

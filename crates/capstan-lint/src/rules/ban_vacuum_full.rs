//! `ban-vacuum-full`: `VACUUM FULL` in a migration.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::finding::Severity;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::BanVacuumFull,
    severity: Severity::Error,
    summary: "VACUUM FULL",
    lock: "ACCESS EXCLUSIVE on each table for the whole rewrite: blocks every read and write",
    why: "VACUUM FULL rewrites the table into a new file, holding an ACCESS EXCLUSIVE lock for the whole copy, \
and needs room for a second copy on disk. On a live table it is an outage. Plain VACUUM (or autovacuum) reclaims \
space for reuse without blocking; to actually shrink a bloated table online use an extension such as pg_repack \
outside the migration. (VACUUM also cannot run in a transaction block.)",
    help: "use plain VACUUM (ANALYZE) in a `-- capstan:no-transaction` migration, or pg_repack outside migrations",
    setup: STD_SETUP,
    bad: "-- capstan:no-transaction\n-- capstan:up\nVACUUM FULL orders;\n",
    safe: "-- capstan:no-transaction\n-- capstan:up\nVACUUM (ANALYZE) orders;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, _ctx: &Ctx<'_>, out: &mut Hits) {
    let NodeEnum::VacuumStmt(v) = stmt.node else {
        return;
    };
    let full = v.options.iter().any(|o| match o.node.as_ref() {
        Some(NodeEnum::DefElem(d)) => {
            d.defname == "full"
                && !matches!(d.arg.as_ref().and_then(|a| a.node.as_ref()), Some(NodeEnum::String(s)) if s.sval == "false" || s.sval == "off")
                && !matches!(d.arg.as_ref().and_then(|a| a.node.as_ref()), Some(NodeEnum::Boolean(b)) if !b.boolval)
        }
        _ => false,
    });
    if full {
        out.push(&RULE, stmt.start, "VACUUM FULL rewrites each table under an ACCESS EXCLUSIVE lock: reads and writes stop until it ends");
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
                "-- capstan:no-transaction\n-- capstan:up\nVACUUM (FULL, ANALYZE) users;",
                "-- capstan:no-transaction\n-- capstan:up\nVACUUM FULL;",
                "-- capstan:no-transaction\n-- capstan:up\nVACUUM FULL VERBOSE users, orders;",
            ],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nVACUUM users;",
                "-- capstan:no-transaction\n-- capstan:up\nVACUUM (FULL false) users;",
                "ANALYZE users;",
            ],
        ));
    }
}

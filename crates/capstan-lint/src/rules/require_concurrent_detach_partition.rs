//! `require-concurrent-detach-partition`: `DETACH PARTITION` without `CONCURRENTLY`.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::RequireConcurrentDetachPartition,
    severity: Severity::Error,
    summary: "ALTER TABLE ... DETACH PARTITION without CONCURRENTLY",
    lock: "ACCESS EXCLUSIVE on the partitioned table and the partition: blocks every read and write of all partitions",
    why: "Detaching a partition locks the whole partitioned table. Since Postgres 14, DETACH PARTITION ... \
CONCURRENTLY takes only SHARE UPDATE EXCLUSIVE on the parent and waits for running queries instead of \
blocking new ones; it cannot run in a transaction block. Before 14 there is no online form: schedule the detach \
in a quiet window with a short lock_timeout.",
    help: "use DETACH PARTITION ... CONCURRENTLY (Postgres 14+) in a `-- capstan:no-transaction` migration",
    setup: "CREATE TABLE events (id bigint, at date NOT NULL) PARTITION BY RANGE (at);\nCREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n",
    bad: "ALTER TABLE events DETACH PARTITION events_2024;\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE events DETACH PARTITION events_2024 CONCURRENTLY;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: false,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    for cmd in cmds {
        if subtype(cmd) != AlterTableType::AtDetachPartition {
            continue;
        }
        let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        if p.concurrent {
            continue;
        }
        let part = crate::ast::opt_rv_name(p.name.as_ref());
        let at = stmt.clause("DETACH PARTITION", 0);
        if ctx.pg >= 14 {
            out.push(&RULE, at, format!("DETACH PARTITION {part} without CONCURRENTLY locks all of {table} against reads and writes"));
        } else {
            out.push_help(
                &RULE,
                at,
                format!("DETACH PARTITION {part} locks all of {table} against reads and writes, and Postgres {} has no concurrent detach", ctx.pg),
                "run it in a quiet window with a short `-- capstan:lock-timeout`, or upgrade to Postgres 14+ for DETACH ... CONCURRENTLY",
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
                "ALTER TABLE public.events DETACH PARTITION events_2024;",
                "-- capstan:phase contract\n-- capstan:up\nALTER TABLE events DETACH PARTITION public.events_2024;",
                "ALTER TABLE IF EXISTS events DETACH PARTITION events_2024;",
            ],
            &[
                "-- capstan:no-transaction\n-- capstan:up\nALTER TABLE events DETACH PARTITION events_2024 FINALIZE;",
                "ALTER TABLE events ADD COLUMN note text;",
                "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
            ],
        ));
    }

    #[test]
    fn before_14() {
        insta::assert_snapshot!(check_with(&pg(13), &RULE, &["ALTER TABLE events DETACH PARTITION events_2024;"], &[]));
    }
}

//! `attach-partition-without-check`: `ATTACH PARTITION` of a table with no validated
//! CHECK constraint proving its rows fit the bounds.

use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{alter_table, subtype};
use crate::finding::Severity;
use crate::schema::ConstraintKind;
use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AttachPartitionWithoutCheck,
    severity: Severity::Error,
    summary: "ATTACH PARTITION without a validated CHECK constraint matching the partition bounds",
    lock: "ACCESS EXCLUSIVE on the partition being attached (SHARE UPDATE EXCLUSIVE on the parent since Postgres 12) while every row is scanned",
    why: "ATTACH PARTITION scans the whole table being attached to prove each row fits the partition bounds, \
under a lock that blocks it. If a validated CHECK constraint already implies the bounds, Postgres skips the \
scan. Add that CHECK NOT VALID, VALIDATE it separately (online), attach, then drop the CHECK. A table created in \
the same migration (still empty) is exempt. capstan checks that a validated CHECK exists on the partition; it \
cannot prove that it matches the bounds.",
    help: "add a CHECK matching the bounds NOT VALID, VALIDATE it separately, then ATTACH and drop the CHECK",
    setup: "CREATE TABLE events (id bigint, at date NOT NULL) PARTITION BY RANGE (at);\nCREATE TABLE events_2025 (id bigint, at date NOT NULL);\n",
    bad: "ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\n",
    safe: "-- capstan:phase contract\n-- capstan:no-transaction\n-- capstan:up\nALTER TABLE events_2025 ADD CONSTRAINT events_2025_bounds CHECK (at >= '2025-01-01' AND at < '2026-01-01') NOT VALID;\nALTER TABLE events_2025 VALIDATE CONSTRAINT events_2025_bounds;\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\nALTER TABLE events_2025 DROP CONSTRAINT IF EXISTS events_2025_bounds;\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    for cmd in cmds {
        if subtype(cmd) != AlterTableType::AtAttachPartition {
            continue;
        }
        let Some(NodeEnum::PartitionCmd(p)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        let part = crate::ast::opt_rv_name(p.name.as_ref());
        if ctx.is_new(&part) {
            continue;
        }
        let proven = ctx
            .schema
            .table(&part)
            .is_some_and(|t| t.constraints.iter().any(|c| c.kind == ConstraintKind::Check && c.validated));
        if !proven {
            out.push(
                &RULE,
                stmt.clause("ATTACH PARTITION", 0),
                format!("attaching {part} to {table} scans all of {part} under a lock that blocks it: no validated CHECK constraint proves its rows fit the bounds"),
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
                "ALTER TABLE events ATTACH PARTITION events_2025 DEFAULT;",
                "ALTER TABLE events_2025 ADD CONSTRAINT b CHECK (at >= '2025-01-01') NOT VALID;\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
                "ALTER TABLE events ATTACH PARTITION legacy_events FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');",
            ],
            &[
                "CREATE TABLE events_2026 (id bigint, at date NOT NULL);\nALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');",
                "ALTER TABLE events_2025 ADD CONSTRAINT b CHECK (at >= '2025-01-01' AND at < '2026-01-01');\nALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
                "CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01');",
            ],
        ));
    }
}

//! `changing-column-type`: `ALTER COLUMN ... TYPE` that rewrites or rescans the table.
//!
//! Schema-aware: the old type comes from the model, so widening a `varchar`, turning
//! `varchar` into `text`, raising a `numeric` precision and the other binary-coercible
//! changes Postgres does without a rewrite are not flagged.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{TypeChange, alter_table, subtype, type_change};
use crate::ast::ColType;
use crate::finding::Severity;
use pg_query::protobuf::AlterTableType;
use pg_query::NodeEnum;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::ChangingColumnType,
    severity: Severity::Error,
    summary: "ALTER COLUMN ... TYPE that rewrites the table (or rescans it)",
    lock: "ACCESS EXCLUSIVE on the table for the rewrite of the table and all its indexes: blocks every read and write",
    why: "Most type changes rewrite the whole table and rebuild every index under an ACCESS EXCLUSIVE lock, and \
the running binary may not understand the new type either. Postgres skips the rewrite only for \
binary-compatible changes: varchar(n) to a larger varchar(m), varchar to text, text to unlimited varchar, a \
larger numeric precision with the same scale, a larger timestamp/time/interval precision, cidr to inet. \
Shrinking a limit (or adding one) needs no rewrite but scans every row under the same lock. Instead add a new \
column of the new type, keep both written, backfill in batches, switch reads, and drop the old column in a \
contract migration. timestamp ↔ timestamptz rewrites no rows on Postgres 12+ when the session time zone \
has offset zero (from a `SET TIME ZONE` in the migration, the live server, or `[lint] time_zone`): the \
finding then says it rebuilds the column's indexes.",
    help: "add a new column of the new type, backfill it in batches, switch the application, then drop the old one in a contract migration",
    setup: STD_SETUP,
    bad: "-- capstan:phase contract\n-- capstan:up\nALTER TABLE users ALTER COLUMN age TYPE bigint;\n",
    safe: "-- capstan:up\n-- Step 1 (expand): a column of the new type, written by the new binary alongside `age`.\nALTER TABLE users ADD COLUMN age_big bigint;\n-- Step 2: backfill in batches from a job, e.g.\n-- UPDATE users SET age_big = age WHERE id BETWEEN 1 AND 10000 AND age_big IS NULL;\n-- Step 3 (contract, once no binary reads `age`): drop `age`.\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

/// For `timestamp` ↔ `timestamptz` on Postgres 12+ with a session time zone
/// of offset zero, which Postgres converts without touching the rows: the zone.
fn zone_free(old: &ColType, new: &ColType, ctx: &Ctx<'_>) -> Option<String> {
    let pair = matches!(
        (old.name.as_str(), new.name.as_str()),
        ("timestamp", "timestamptz") | ("timestamptz", "timestamp")
    );
    let zone = ctx.time_zone?;
    (pair && old.array == new.array && ctx.pg >= 12 && crate::live::is_utc(zone))
        .then(|| zone.to_string())
}

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return;
    };
    if ctx.is_new(&table) {
        return;
    }
    for cmd in cmds {
        if subtype(cmd) != AlterTableType::AtAlterColumnType {
            continue;
        }
        let Some(NodeEnum::ColumnDef(def)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
            continue;
        };
        let Some(new) = def.type_name.as_ref().map(ColType::of) else {
            continue;
        };
        let col = &cmd.name;
        let at = stmt.at(def.location);
        let old = ctx.schema.table(&table).and_then(|t| t.column(col)).map(|c| c.ty.clone());
        if def.raw_default.is_some() {
            out.push(
                &RULE,
                at,
                format!("changing {table}.{col} to {} with USING rewrites the whole table under an ACCESS EXCLUSIVE lock", new.display()),
            );
            continue;
        }
        match old {
            None => out.push(
                &RULE,
                at,
                format!(
                    "changing {table}.{col} to {} rewrites the table under an ACCESS EXCLUSIVE lock unless the change is binary-compatible, and capstan cannot see the column's current type (lint the whole migration directory, or use --schema-from)",
                    new.display()
                ),
            ),
            Some(old) => match type_change(&old, &new) {
                TypeChange::Free => {}
                TypeChange::Scan => out.push(
                    &RULE,
                    at,
                    format!(
                        "changing {table}.{col} from {} to {} scans every row under an ACCESS EXCLUSIVE lock (and fails if a value does not fit)",
                        old.display(),
                        new.display()
                    ),
                ),
                TypeChange::Rewrite if zone_free(&old, &new, ctx).is_some() => out.push(
                    &RULE,
                    at,
                    format!(
                        "changing {table}.{col} from {} to {} rewrites no rows (Postgres 12+ with the session time zone {}), but rebuilds the indexes on the column under an ACCESS EXCLUSIVE lock",
                        old.display(),
                        new.display(),
                        zone_free(&old, &new, ctx).unwrap_or_default()
                    ),
                ),
                TypeChange::Rewrite => out.push(
                    &RULE,
                    at,
                    format!(
                        "changing {table}.{col} from {} to {} rewrites the whole table and its indexes under an ACCESS EXCLUSIVE lock",
                        old.display(),
                        new.display()
                    ),
                ),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RULE;
    use crate::rules::testing::{check, run};
    use crate::Config;

    /// Regression: timestamp → timestamptz in a UTC session was reported as a
    /// table rewrite; Postgres 12+ only rebuilds the column's indexes then.
    #[test]
    fn timestamptz_in_a_utc_session_is_not_a_rewrite() {
        let setup = "CREATE TABLE events (id bigint, at timestamp);\n";
        let sql = "ALTER TABLE events ALTER COLUMN at TYPE timestamptz;\n";
        let message = |config: &Config, sql: &str| {
            run(config, setup, sql)
                .into_iter()
                .find(|f| f.rule == RULE.name())
                .map(|f| f.message)
                .unwrap_or_default()
        };
        // Unknown zone: a rewrite.
        assert!(message(&Config::default(), sql).contains("rewrites the whole table"));
        // The migration's own SET TIME ZONE.
        let m = message(&Config::default(), &format!("SET TIME ZONE 'UTC';\n{sql}"));
        assert!(m.contains("rewrites no rows") && m.contains("rebuilds the indexes"), "{m}");
        // capstan.toml's time_zone.
        let mut utc = Config {
            time_zone: Some("Etc/UTC".into()),
            ..Config::default()
        };
        assert!(message(&utc, sql).contains("rewrites no rows"));
        // Before Postgres 12: a rewrite whatever the zone.
        utc.set_pg_version(11).unwrap();
        assert!(message(&utc, sql).contains("rewrites the whole table"));
        // The live server's zone (`migrate up`).
        let mut linter = crate::Linter::new(Config::default()).with_live(crate::Live {
            time_zone: Some("UTC".into()),
            ..crate::Live::default()
        });
        linter.replay(crate::Input { file: "1.sql", source: setup });
        let found = linter.lint(crate::Input { file: "2.sql", source: sql });
        assert!(found.iter().any(|f| f.message.contains("rewrites no rows")), "{found:?}");
    }

    #[test]
    fn cases() {
        insta::assert_snapshot!(check(
            &RULE,
            &[
                "ALTER TABLE users ALTER COLUMN name TYPE varchar(10);",
                "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,4);",
                "ALTER TABLE users ALTER COLUMN email TYPE citext;",
                "ALTER TABLE users ALTER COLUMN age TYPE text USING age::text;",
                "ALTER TABLE legacy ALTER COLUMN a TYPE bigint;",
                "ALTER TABLE users ALTER COLUMN created_at TYPE timestamp;",
                // Without a UTC session the rows are rewritten.
                "SET TIME ZONE 'Europe/Paris';\nALTER TABLE users ALTER COLUMN created_at TYPE timestamp;",
            ],
            &[
                "ALTER TABLE users ALTER COLUMN name TYPE varchar(50);",
                "ALTER TABLE users ALTER COLUMN name TYPE text;",
                "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2);",
                "ALTER TABLE orders ALTER COLUMN total TYPE numeric;",
                "CREATE TABLE t (a int);\nALTER TABLE t ALTER COLUMN a TYPE bigint;",
            ],
        ));
    }
}

//! `adding-volatile-default`: `ADD COLUMN` with a default that forces a table rewrite.

use super::{STD_SETUP};
use crate::rule::{Ctx, Hits, POSTGRES_ONLY, Rule, RuleId, Stmt};
use crate::facts::{added_columns, column_constraints, contype};
use crate::finding::Severity;
use pg_query::protobuf::{ConstrType, Node};
use pg_query::NodeRef;

pub(crate) static RULE: Rule = Rule {
    id: RuleId::AddingVolatileDefault,
    severity: Severity::Error,
    summary: "ADD COLUMN with a volatile DEFAULT (any DEFAULT before Postgres 11) on an existing table",
    lock: "ACCESS EXCLUSIVE on the table for a full rewrite of it and its indexes: blocks every read and write",
    why: "Since Postgres 11, ADD COLUMN with a non-volatile default (a constant, now(), a stable expression) \
only records the value in the catalog: instant. A volatile default — random(), gen_random_uuid(), \
clock_timestamp(), nextval(), or any function not declared STABLE/IMMUTABLE — must be computed per row, so \
Postgres rewrites the whole table under an ACCESS EXCLUSIVE lock. Before Postgres 11 every non-NULL default \
rewrites. Add the column without the default (or with a constant one), SET DEFAULT afterwards for new rows, and \
backfill existing rows in batches.",
    help: "add the column without the volatile default, then SET DEFAULT and backfill existing rows in batches",
    setup: STD_SETUP,
    bad: "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();\n",
    safe: "ALTER TABLE users ADD COLUMN token uuid;\nALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();\n",
    up_only: false,
    dialects: POSTGRES_ONLY,
    size_bound: true,
    check,
};

/// Functions known not to be volatile (safe as an instant default).
const NON_VOLATILE: &[&str] = &[
    "now", "transaction_timestamp", "statement_timestamp", "current_timestamp", "localtimestamp", "current_date",
    "lower", "upper", "length", "concat", "concat_ws", "format", "md5", "abs", "round", "trunc", "substr",
    "substring", "replace", "btrim", "ltrim", "rtrim", "to_char", "to_date", "to_timestamp", "to_json",
    "to_jsonb", "json_build_object", "jsonb_build_object", "json_build_array", "jsonb_build_array",
    "make_date", "make_time", "make_timestamp", "make_timestamptz", "make_interval", "date_trunc", "timezone",
    "array_fill", "uuid_nil", "int4", "int8", "numeric", "text", "bool",
];

/// The first function call in `expr` that may be volatile.
pub(crate) fn volatile_call(expr: &Node) -> Option<String> {
    let mut found = None;
    crate::ast::any_node(expr, &mut |n| {
        if let NodeRef::FuncCall(f) = n {
            let name = f.funcname.iter().filter_map(crate::ast::str_of).next_back().unwrap_or("");
            if !NON_VOLATILE.contains(&name) {
                found = Some(format!("{name}()"));
                return true;
            }
        }
        false
    });
    found
}

fn is_null(expr: &Node) -> bool {
    matches!(expr.node.as_ref(), Some(pg_query::NodeEnum::AConst(c)) if c.isnull)
}

fn check(stmt: &Stmt<'_>, ctx: &Ctx<'_>, out: &mut Hits) {
    for (table, def) in added_columns(stmt, ctx) {
        let Some((c, expr)) = column_constraints(def)
            .filter(|c| contype(c) == ConstrType::ConstrDefault)
            .find_map(|c| c.raw_expr.as_deref().map(|e| (c, e)))
        else {
            continue;
        };
        if is_null(expr) {
            continue;
        }
        if ctx.pg < 11 {
            out.push(
                &RULE,
                stmt.at(c.location),
                format!("on Postgres {}, ADD COLUMN {table}.{} with a DEFAULT rewrites the whole table under an ACCESS EXCLUSIVE lock", ctx.pg, def.colname),
            );
        } else if let Some(call) = volatile_call(expr) {
            out.push(
                &RULE,
                stmt.at(c.location),
                format!("the DEFAULT of {table}.{} calls {call}, which may be volatile: Postgres rewrites the whole table under an ACCESS EXCLUSIVE lock to fill it", def.colname),
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
                "ALTER TABLE users ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();",
                "ALTER TABLE users ADD COLUMN r float8 NOT NULL DEFAULT random();",
                "ALTER TABLE users ADD COLUMN code text DEFAULT my_code_generator(id);",
            ],
            &[
                "ALTER TABLE users ADD COLUMN joined_at timestamptz NOT NULL DEFAULT now();",
                "ALTER TABLE users ADD COLUMN flags jsonb DEFAULT '{}'::jsonb;",
                "CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
            ],
        ));
    }

    #[test]
    fn any_default_rewrites_before_11() {
        insta::assert_snapshot!(check_with(
            &pg(10),
            &RULE,
            &["ALTER TABLE users ADD COLUMN active boolean DEFAULT true;"],
            &["ALTER TABLE users ADD COLUMN active boolean DEFAULT NULL;"],
        ));
    }
}

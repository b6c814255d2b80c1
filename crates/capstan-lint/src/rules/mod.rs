//! The rules. One rule, one file: each file holds the rule's documentation (the fields
//! of its [`Rule`]), its check and its tests. [`ALL`] lists them; `docs/rules/` is
//! generated from these fields.

use crate::engine::{Ctx, Hits, Stmt};
use crate::finding::Severity;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, ObjectType,
};
use pg_query::NodeEnum;

/// A lint rule and its documentation.
pub struct Rule {
    /// Stable kebab-case name.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// The lock the flagged statement takes and what it blocks (empty when not about locks).
    pub lock: &'static str,
    /// Why it hurts running or older binaries.
    pub why: &'static str,
    /// The short advice printed with every finding.
    pub help: &'static str,
    /// Schema the examples assume (an earlier migration).
    pub setup: &'static str,
    /// A migration the rule flags.
    pub bad: &'static str,
    /// The safe alternative, as a complete migration file; empty when none exists.
    pub safe: &'static str,
    /// Whether the rule is only about the up section (phase, hygiene of new objects).
    pub up_only: bool,
    pub(crate) check: fn(&Stmt<'_>, &Ctx<'_>, &mut Hits),
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name).finish()
    }
}

pub(crate) fn no_check(_: &Stmt<'_>, _: &Ctx<'_>, _: &mut Hits) {}

macro_rules! rules {
    ($($m:ident),* $(,)?) => {
        $(pub(crate) mod $m;)*
        /// Every rule, in documentation order.
        pub static ALL: &[&Rule] = &[$(&$m::RULE),*];
    };
}

rules! {
    require_concurrent_index_creation,
    require_concurrent_index_deletion,
    require_concurrent_reindex,
    require_concurrent_detach_partition,
    require_concurrent_refresh,
    concurrently_in_transaction,
    ban_vacuum_full,
    ban_cluster,
    adding_foreign_key_constraint,
    adding_check_constraint,
    adding_unique_constraint,
    adding_primary_key_constraint,
    adding_exclusion_constraint,
    validate_in_same_transaction,
    setting_not_null,
    adding_required_column,
    adding_volatile_default,
    adding_stored_generated_column,
    adding_serial_or_identity_column,
    changing_column_type,
    dropping_column,
    dropping_table,
    dropping_object,
    dropping_constraint,
    dropping_default,
    dropping_not_null,
    renaming_column,
    renaming_table,
    renaming_object,
    changing_schema,
    truncate_cascade,
    domain_check_constraint,
    enum_add_value,
    attach_partition_without_check,
    lock_table,
    creating_trigger,
    set_logged_unlogged,
    prefer_jsonb,
    transaction_nesting,
    non_idempotent_no_transaction,
    unbounded_backfill,
    prefer_bigint,
    prefer_identity,
    prefer_timestamptz,
    prefer_text,
    identifier_too_long,
    wrong_phase,
    syntax_error,
    migration_format,
    unused_ignore,
}

/// The rules that apply to SQLite migrations (`dialect = "sqlite"`): phase
/// classification, compatibility of drops, renames and new required columns,
/// transaction structure and backfills. SQLite has no concurrent DDL, NOT VALID
/// constraints or lock modes, so the Postgres locking rules do not apply.
pub static SQLITE: &[&str] = &[
    "wrong-phase",
    "dropping-column",
    "dropping-table",
    "dropping-object",
    "dropping-constraint",
    "dropping-default",
    "dropping-not-null",
    "renaming-column",
    "renaming-table",
    "renaming-object",
    "adding-required-column",
    "transaction-nesting",
    "non-idempotent-no-transaction",
    "unbounded-backfill",
    "syntax-error",
    "migration-format",
    "unused-ignore",
];

/// The rules whose harm grows with the size of the table: they hold a lock
/// while every row is rewritten, scanned, indexed or updated. With live sizes
/// (`migrate up`), a finding of one of them on a small table is a warning.
/// The rules about compatibility with running binaries (drops, renames, phase)
/// are not here: their harm does not depend on size.
pub static SIZE_BOUND: &[&str] = &[
    "require-concurrent-index-creation",
    "require-concurrent-index-deletion",
    "require-concurrent-reindex",
    "require-concurrent-refresh",
    "ban-vacuum-full",
    "ban-cluster",
    "adding-foreign-key-constraint",
    "adding-check-constraint",
    "adding-unique-constraint",
    "adding-primary-key-constraint",
    "adding-exclusion-constraint",
    "validate-in-same-transaction",
    "setting-not-null",
    "adding-volatile-default",
    "adding-stored-generated-column",
    "adding-serial-or-identity-column",
    "changing-column-type",
    "set-logged-unlogged",
    "unbounded-backfill",
    "attach-partition-without-check",
];

/// Finds a rule by name.
pub fn find(name: &str) -> Option<&'static Rule> {
    ALL.iter().copied().find(|r| r.name == name)
}

/// Human name of an object type, e.g. `table`, `materialized view`.
pub(crate) fn object_kind_name(kind: ObjectType) -> &'static str {
    match kind {
        ObjectType::ObjectTable => "table",
        ObjectType::ObjectColumn => "column",
        ObjectType::ObjectIndex => "index",
        ObjectType::ObjectView => "view",
        ObjectType::ObjectMatview => "materialized view",
        ObjectType::ObjectSchema => "schema",
        ObjectType::ObjectFunction => "function",
        ObjectType::ObjectProcedure => "procedure",
        ObjectType::ObjectRoutine => "routine",
        ObjectType::ObjectAggregate => "aggregate",
        ObjectType::ObjectType => "type",
        ObjectType::ObjectSequence => "sequence",
        ObjectType::ObjectDomain => "domain",
        ObjectType::ObjectExtension => "extension",
        ObjectType::ObjectTrigger => "trigger",
        ObjectType::ObjectTabconstraint => "constraint",
        ObjectType::ObjectForeignTable => "foreign table",
        ObjectType::ObjectPolicy => "policy",
        ObjectType::ObjectRule => "rule",
        ObjectType::ObjectCollation => "collation",
        ObjectType::ObjectOperator => "operator",
        ObjectType::ObjectPublication => "publication",
        ObjectType::ObjectEventTrigger => "event trigger",
        ObjectType::ObjectStatisticExt => "statistics object",
        _ => "object",
    }
}

/// The `ALTER TABLE` commands of a statement, with the table name.
pub(crate) fn alter_table<'a>(
    stmt: &Stmt<'a>,
) -> Option<(String, &'a AlterTableStmt, Vec<&'a AlterTableCmd>)> {
    let NodeEnum::AlterTableStmt(a) = stmt.node else {
        return None;
    };
    let table = crate::ast::opt_rv_name(a.relation.as_ref());
    let cmds = a
        .cmds
        .iter()
        .filter_map(|c| match c.node.as_ref() {
            Some(NodeEnum::AlterTableCmd(c)) => Some(c.as_ref()),
            _ => None,
        })
        .collect();
    Some((table, a, cmds))
}

/// The subtype of an `ALTER TABLE` command.
pub(crate) fn subtype(cmd: &AlterTableCmd) -> AlterTableType {
    AlterTableType::try_from(cmd.subtype).unwrap_or(AlterTableType::Undefined)
}

/// `ALTER TABLE ... ADD COLUMN` definitions on an existing (not new) table, with the table.
pub(crate) fn added_columns<'a>(stmt: &Stmt<'a>, ctx: &Ctx<'_>) -> Vec<(String, &'a ColumnDef)> {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return vec![];
    };
    if ctx.is_new(&table) {
        return vec![];
    }
    cmds.into_iter()
        .filter(|c| subtype(c) == AlterTableType::AtAddColumn)
        .filter_map(|c| match c.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::ColumnDef(d)) => Some((table.clone(), d.as_ref())),
            _ => None,
        })
        .collect()
}

/// Inline constraints of a column definition.
pub(crate) fn column_constraints(def: &ColumnDef) -> impl Iterator<Item = &Constraint> {
    def.constraints
        .iter()
        .filter_map(|c| match c.node.as_ref() {
            Some(NodeEnum::Constraint(c)) => Some(c.as_ref()),
            _ => None,
        })
}

/// The constraint type of a constraint.
pub(crate) fn contype(c: &Constraint) -> ConstrType {
    ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined)
}

/// Constraints added to an existing table by `ALTER TABLE` (table-level and inline in
/// `ADD COLUMN`), with the table and the location to report.
pub(crate) fn added_constraints<'a>(
    stmt: &Stmt<'a>,
    ctx: &Ctx<'_>,
) -> Vec<(String, &'a Constraint)> {
    let Some((table, _, cmds)) = alter_table(stmt) else {
        return vec![];
    };
    if ctx.is_new(&table) {
        return vec![];
    }
    let mut out = Vec::new();
    for cmd in cmds {
        match (subtype(cmd), cmd.def.as_ref().and_then(|d| d.node.as_ref())) {
            (AlterTableType::AtAddConstraint, Some(NodeEnum::Constraint(c))) => {
                out.push((table.clone(), c.as_ref()))
            }
            (AlterTableType::AtAddColumn, Some(NodeEnum::ColumnDef(d))) => {
                out.extend(column_constraints(d).map(|c| (table.clone(), c)))
            }
            _ => {}
        }
    }
    out
}

/// The schema most rule examples start from.
pub(crate) const STD_SETUP: &str = "\
CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text, name varchar(20), age integer, created_at timestamptz);
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_id bigint, total numeric(10,2), status text);
CREATE INDEX orders_status_idx ON orders (status);
";

/// For the hygiene rules that flag one column type: reports every column the
/// statement declares with type `type_name`, as `TABLE.COLUMN is ADVICE`, at the
/// type.
pub(crate) fn flag_column_type(
    rule: &'static Rule,
    stmt: &Stmt<'_>,
    ctx: &Ctx<'_>,
    out: &mut Hits,
    type_name: &str,
    advice: &str,
) {
    for (table, colname, def) in declared_columns(stmt, ctx) {
        let Some(tn) = def.type_name.as_ref() else {
            continue;
        };
        if crate::ast::ColType::of(tn).name == type_name {
            out.push(
                rule,
                stmt.at(tn.location),
                format!("{table}.{colname} is {advice}"),
            );
        }
    }
}

/// Every column definition a statement declares (new tables, added columns, and the
/// new type of `ALTER COLUMN ... TYPE`), with its table and column name. An
/// `ALTER COLUMN ... TYPE` that keeps the column's type (widening a legacy
/// `varchar(20)` to `varchar(255)`) declares nothing: the type was chosen by the
/// migration that created the column.
pub(crate) fn declared_columns<'a>(
    stmt: &Stmt<'a>,
    ctx: &Ctx<'_>,
) -> Vec<(String, String, &'a ColumnDef)> {
    match stmt.node {
        NodeEnum::CreateStmt(c) => {
            let table = crate::ast::opt_rv_name(c.relation.as_ref());
            c.table_elts
                .iter()
                .filter_map(|e| match e.node.as_ref() {
                    Some(NodeEnum::ColumnDef(d)) => {
                        Some((table.clone(), d.colname.clone(), d.as_ref()))
                    }
                    _ => None,
                })
                .collect()
        }
        NodeEnum::AlterTableStmt(_) => {
            let Some((table, _, cmds)) = alter_table(stmt) else {
                return vec![];
            };
            cmds.into_iter()
                .filter(|c| {
                    matches!(
                        subtype(c),
                        AlterTableType::AtAddColumn | AlterTableType::AtAlterColumnType
                    )
                })
                .filter_map(|c| match c.def.as_ref().and_then(|d| d.node.as_ref()) {
                    Some(NodeEnum::ColumnDef(d))
                        if subtype(c) == AlterTableType::AtAlterColumnType
                            && ctx
                                .schema
                                .table(&table)
                                .and_then(|t| t.column(&c.name))
                                .zip(d.type_name.as_ref())
                                .is_some_and(|(old, new)| {
                                    old.ty.name == crate::ast::ColType::of(new).name
                                }) =>
                    {
                        None
                    }
                    Some(NodeEnum::ColumnDef(d)) => {
                        let name = if d.colname.is_empty() {
                            c.name.clone()
                        } else {
                            d.colname.clone()
                        };
                        Some((table.clone(), name, d.as_ref()))
                    }
                    _ => None,
                })
                .collect()
        }
        _ => vec![],
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the rule tests.
    use super::Rule;
    use crate::{Config, Finding, Input, Linter};
    use std::fmt::Write;

    /// Lints `sql` as migration 2, after replaying `setup` as migration 1.
    pub fn run(config: &Config, setup: &str, sql: &str) -> Vec<Finding> {
        let mut linter = Linter::new(config.clone());
        if !setup.is_empty() {
            linter.replay(Input {
                file: "0001_setup.sql",
                source: setup,
            });
        }
        linter.lint(Input {
            file: "0002_case.sql",
            source: sql,
        })
    }

    /// Asserts that `rule` fires on every `fire` case and on its documented bad example,
    /// and not on any `pass` case nor on its documented safe alternative; returns a
    /// rendering for a snapshot.
    pub fn check(rule: &Rule, fire: &[&str], pass: &[&str]) -> String {
        check_with(&Config::default(), rule, fire, pass)
    }

    /// [`check`] with a configuration (e.g. another Postgres version).
    pub fn check_with(config: &Config, rule: &Rule, fire: &[&str], pass: &[&str]) -> String {
        let mut snap = String::new();
        let bad = (!rule.bad.is_empty()).then_some(rule.bad);
        for sql in fire.iter().copied().chain(bad) {
            let all = run(config, rule.setup, sql);
            let mine: Vec<&Finding> = all.iter().filter(|f| f.rule == rule.name).collect();
            assert!(
                !mine.is_empty(),
                "{} should fire on:\n{sql}\nfindings: {all:#?}",
                rule.name
            );
            writeln!(snap, "---- fires on:\n{}", sql.trim_end()).unwrap();
            for f in mine {
                writeln!(
                    snap,
                    "{}:{} {} {}: {}",
                    f.line, f.column, f.severity, f.rule, f.message
                )
                .unwrap();
            }
        }
        // The documented safe alternative targets the default Postgres version.
        let safe = (!rule.safe.is_empty() && *config == Config::default()).then_some(rule.safe);
        for sql in pass.iter().copied().chain(safe) {
            let all = run(config, rule.setup, sql);
            let mine: Vec<&Finding> = all.iter().filter(|f| f.rule == rule.name).collect();
            assert!(
                mine.is_empty(),
                "{} should not fire on:\n{sql}\nfindings: {mine:#?}",
                rule.name
            );
            writeln!(snap, "---- passes:\n{}", sql.trim_end()).unwrap();
        }
        snap
    }

    /// A configuration for another Postgres major version.
    pub fn pg(version: u32) -> Config {
        let mut c = Config::default();
        c.set_pg_version(version).unwrap();
        c
    }
}

#[cfg(test)]
mod catalogue_tests {
    use super::ALL;
    use crate::finding::Severity;

    /// The documented safe alternative is clean under every rule, not just its own: the
    /// advice must not trade one finding for another.
    #[test]
    fn safe_alternatives_are_clean_under_every_rule() {
        let mut dirty = Vec::new();
        for rule in ALL {
            if rule.safe.is_empty() {
                continue;
            }
            let f = super::testing::run(&crate::Config::default(), rule.setup, rule.safe);
            for f in f.iter().filter(|f| f.severity >= Severity::Warning) {
                dirty.push(format!("{}: {} {}", rule.name, f.rule, f.message));
            }
        }
        assert!(dirty.is_empty(), "{}", dirty.join("\n"));
    }
}

//! What a statement does, read with the schema model: the questions the rules,
//! the phase classifier (`phase`) and the destroy detector share
//! (which `ALTER TABLE` commands it runs, which columns and constraints it
//! adds, whether a type change is free, whether a drop removes anything).
//!
//! It sits just above the rule API ([`crate::rule`]) and below everything that
//! uses it: no rule, and not the engine.

use crate::ast::ColType;
use crate::rule::{Ctx, Stmt};
use crate::schema::ConstraintKind;
use pg_query::protobuf::{
    AlterTableCmd, AlterTableStmt, AlterTableType, ColumnDef, ConstrType, Constraint, ObjectType,
};
use pg_query::NodeEnum;

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
                                .is_some_and(|(old, new)| old.ty.name == ColType::of(new).name) =>
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

/// What capstan's archive does with the data a statement drops.
pub(crate) fn archive_note(kind: &str) -> &'static str {
    match kind {
        "column" | "table" | "truncate" => {
            "capstan archives the dropped data first, so `capstan archive restore` can bring it back"
        }
        "schema" => "capstan archives the tables it knows in this schema; objects it cannot see are not archived",
        "type" => "the archive keeps the values of the columns that used the type as text only",
        _ => "no table data is lost",
    }
}

/// What changing a column's type costs.
pub(crate) enum TypeChange {
    /// Nothing: the types are binary-compatible, no row is read.
    Free,
    /// Every row is read (a new limit is checked), none is rewritten.
    Scan,
    /// The table and its indexes are rewritten.
    Rewrite,
}

/// Whether changing a column from `old` to `new` needs neither a rewrite nor a scan
/// (and so keeps every value, and the running binary, working).
pub(crate) fn compatible(old: &ColType, new: &ColType) -> bool {
    matches!(type_change(old, new), TypeChange::Free)
}

/// What changing a column from `old` to `new` costs on Postgres.
pub(crate) fn type_change(old: &ColType, new: &ColType) -> TypeChange {
    use TypeChange::*;
    if old == new {
        return Free;
    }
    if old.array != new.array {
        return Rewrite;
    }
    let limit = |t: &ColType| t.mods.first().copied();
    match (old.name.as_str(), new.name.as_str()) {
        ("varchar", "varchar") | ("varbit", "varbit") => match (limit(old), limit(new)) {
            (_, None) => Free,
            (Some(a), Some(b)) if b >= a => Free,
            _ => Scan,
        },
        ("varchar", "text") | ("text", "text") | ("cidr", "inet") => Free,
        ("text", "varchar") => {
            if limit(new).is_none() {
                Free
            } else {
                Scan
            }
        }
        ("numeric", "numeric") => match (old.mods.as_slice(), new.mods.as_slice()) {
            (_, []) => Free,
            ([p1], [p2]) if p2 >= p1 => Free,
            ([p1, s1], [p2, s2]) if s1 == s2 && p2 >= p1 => Free,
            ([p1], [p2, 0]) if p2 >= p1 => Free,
            _ => Rewrite,
        },
        (a, b)
            if a == b
                && matches!(
                    a,
                    "timestamp" | "timestamptz" | "time" | "timetz" | "interval"
                ) =>
        {
            match (limit(old), limit(new)) {
                (_, None) => Free,
                (Some(x), Some(y)) if y >= x => Free,
                _ => Rewrite,
            }
        }
        _ => Rewrite,
    }
}

/// Whether dropping `name` removes nothing a running binary sees: `DROP ...
/// IF EXISTS` of an object the schema model does not hold (for the kinds it
/// tracks: views, functions, triggers, types), or an object the rest of the
/// same transaction creates again (a trigger, function, view or type
/// replaced in one step).
pub(crate) fn not_a_removal(
    d: &pg_query::protobuf::DropStmt,
    kind: ObjectType,
    name: &str,
    ctx: &Ctx<'_>,
) -> bool {
    (d.missing_ok && ctx.schema.has_object(kind, name) == Some(false))
        || (ctx.in_transaction && created_later(ctx.rest_sql, kind, name))
}

/// Whether `rest` (the rest of the section) creates an object of this kind
/// and name again before the transaction ends.
fn created_later(rest: &str, kind: ObjectType, name: &str) -> bool {
    let norm = |n: String| n.strip_prefix("public.").map(str::to_string).unwrap_or(n);
    let name = norm(name.to_string());
    if rest.len() > 1 << 20 || !rest.to_ascii_lowercase().contains("create") {
        return false;
    }
    let Ok(parsed) = pg_query::parse(rest, 0) else {
        return false;
    };
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        use crate::ast::{list_name, opt_rv_name};
        let created = match (kind, node) {
            (_, NodeEnum::TransactionStmt(_)) => return false,
            (ObjectType::ObjectView, NodeEnum::ViewStmt(v)) => opt_rv_name(v.view.as_ref()),
            (ObjectType::ObjectMatview, NodeEnum::CreateTableAsStmt(c)) => {
                opt_rv_name(c.into.as_ref().and_then(|i| i.rel.as_ref()))
            }
            (
                ObjectType::ObjectFunction
                | ObjectType::ObjectProcedure
                | ObjectType::ObjectRoutine,
                NodeEnum::CreateFunctionStmt(f),
            ) => list_name(&f.funcname),
            (ObjectType::ObjectTrigger, NodeEnum::CreateTrigStmt(t)) => {
                format!("{}.{}", opt_rv_name(t.relation.as_ref()), t.trigname)
            }
            (ObjectType::ObjectType | ObjectType::ObjectDomain, NodeEnum::CreateEnumStmt(e)) => {
                list_name(&e.type_name)
            }
            (ObjectType::ObjectType, NodeEnum::CompositeTypeStmt(c)) => {
                opt_rv_name(c.typevar.as_ref())
            }
            (ObjectType::ObjectDomain, NodeEnum::CreateDomainStmt(c)) => list_name(&c.domainname),
            _ => continue,
        };
        if norm(created) == name {
            return true;
        }
    }
    false
}

/// Whether the same `ALTER TABLE` adds a constraint back in place of the one
/// it drops: under the same name, or (for a constraint the model knows) of the
/// same kind on the same columns. One statement is one lock: no moment exists
/// where the constraint is missing.
pub(crate) fn re_added(
    table: &str,
    dropped: &str,
    a: &pg_query::protobuf::AlterTableStmt,
    ctx: &Ctx<'_>,
) -> bool {
    let known = ctx.schema.table(table).and_then(|t| t.constraint(dropped));
    a.cmds.iter().any(|c| {
        let Some(pg_query::NodeEnum::AlterTableCmd(c)) = c.node.as_ref() else {
            return false;
        };
        if subtype(c) != AlterTableType::AtAddConstraint {
            return false;
        }
        let Some(pg_query::NodeEnum::Constraint(k)) = c.def.as_ref().and_then(|d| d.node.as_ref())
        else {
            return false;
        };
        if k.conname == dropped {
            return true;
        }
        let Some(known) = known else {
            return false;
        };
        let (kind, cols) = match contype(k) {
            pg_query::protobuf::ConstrType::ConstrPrimary => (ConstraintKind::PrimaryKey, &k.keys),
            pg_query::protobuf::ConstrType::ConstrUnique => (ConstraintKind::Unique, &k.keys),
            pg_query::protobuf::ConstrType::ConstrForeign => {
                (ConstraintKind::ForeignKey, &k.fk_attrs)
            }
            _ => return false,
        };
        let cols: Vec<&str> = cols.iter().filter_map(crate::ast::str_of).collect();
        kind == known.kind
            && !cols.is_empty()
            && cols == known.columns.iter().map(String::as_str).collect::<Vec<_>>()
    })
}

/// Whether the rest of the section creates a view named like the renamed table.
pub(crate) fn view_created_later(rest: &str, rel: &pg_query::protobuf::RangeVar) -> bool {
    let rest = rest.to_ascii_lowercase();
    let names = [
        rel.relname.to_ascii_lowercase(),
        crate::ast::rv_name(rel).to_ascii_lowercase(),
        format!("public.{}", rel.relname.to_ascii_lowercase()),
    ];
    let mut from = 0;
    while let Some(i) = rest[from..].find("view") {
        let after = &rest[from + i + 4..];
        let trimmed = after.trim_start();
        if after.len() != trimmed.len() {
            let name: String = trimmed
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.' || *c == '"')
                .collect();
            let name = name.replace('"', "");
            if names.contains(&name) {
                return true;
            }
        }
        from += i + 4;
    }
    false
}

/// Whether a statement changes the schema (as opposed to data or session state).
pub(crate) fn is_ddl(node: &NodeEnum) -> bool {
    !matches!(
        node,
        NodeEnum::InsertStmt(_)
            | NodeEnum::UpdateStmt(_)
            | NodeEnum::DeleteStmt(_)
            | NodeEnum::SelectStmt(_)
            | NodeEnum::MergeStmt(_)
            | NodeEnum::TransactionStmt(_)
            | NodeEnum::VariableSetStmt(_)
            | NodeEnum::VariableShowStmt(_)
            | NodeEnum::CopyStmt(_)
            | NodeEnum::CallStmt(_)
            | NodeEnum::DoStmt(_)
            | NodeEnum::ExplainStmt(_)
            | NodeEnum::NotifyStmt(_)
            | NodeEnum::CommentStmt(_)
            | NodeEnum::GrantStmt(_)
            | NodeEnum::GrantRoleStmt(_)
            | NodeEnum::VacuumStmt(_)
            | NodeEnum::LockStmt(_)
    )
}

//! Phase classification: is a statement an expand change (the running binary keeps
//! working), a contract change (something an older binary may still use is removed or
//! restricted), or neutral (data and maintenance)?

use crate::ast::{object_name, opt_rv_name};
use crate::rule::{Ctx, Stmt};
use pg_query::protobuf::{AlterTableType, ConstrType, ObjectType};
use pg_query::NodeEnum;

/// The class of one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Expand,
    Contract,
    Neutral,
}

fn constraint_restricts(c: &pg_query::protobuf::Constraint) -> Option<&'static str> {
    Some(match ConstrType::try_from(c.contype).ok()? {
        ConstrType::ConstrCheck => "adds a CHECK constraint (a new write restriction)",
        ConstrType::ConstrForeign => "adds a FOREIGN KEY (a new write restriction)",
        ConstrType::ConstrUnique => "adds a UNIQUE constraint (a new write restriction)",
        ConstrType::ConstrPrimary => "adds a PRIMARY KEY (a new write restriction)",
        ConstrType::ConstrExclusion => "adds an EXCLUDE constraint (a new write restriction)",
        ConstrType::ConstrNotnull => "adds a NOT NULL constraint (a new write restriction)",
        _ => return None,
    })
}

/// Whether a constraint added to `table` restricts nothing new: `UNIQUE USING
/// INDEX` on a unique index that already exists (writers are held to it
/// already), or a UNIQUE, PRIMARY KEY or FOREIGN KEY that the same `ALTER
/// TABLE` drops under the same name first (a constraint redefined in place).
fn already_holds(
    table: &str,
    c: &pg_query::protobuf::Constraint,
    stmt: &pg_query::protobuf::AlterTableStmt,
    ctx: &Ctx<'_>,
) -> bool {
    let kind = ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined);
    if kind == ConstrType::ConstrUnique && !c.indexname.is_empty() {
        let index = crate::ast::qualify(
            stmt.relation
                .as_ref()
                .map(|r| r.schemaname.as_str())
                .unwrap_or(""),
            &c.indexname,
        );
        if ctx
            .schema
            .indexes
            .get(&index)
            .is_some_and(|i| i.unique && !i.new)
        {
            return true;
        }
    }
    matches!(
        kind,
        ConstrType::ConstrUnique | ConstrType::ConstrPrimary | ConstrType::ConstrForeign
    ) && !c.conname.is_empty()
        && stmt.cmds.iter().any(|x| {
            matches!(x.node.as_ref(), Some(NodeEnum::AlterTableCmd(x))
                if x.subtype == AlterTableType::AtDropConstraint as i32 && x.name == c.conname)
        })
        && ctx.schema.table(table).is_some()
}

/// Classifies a statement, with the reason when it is a contract change.
pub(crate) fn classify(stmt: &Stmt<'_>, ctx: &Ctx<'_>) -> (Class, String) {
    use Class::*;
    let contract = |why: String| (Contract, why);
    match stmt.node {
        NodeEnum::DropStmt(d) => {
            let kind = ObjectType::try_from(d.remove_type).unwrap_or(ObjectType::Undefined);
            let names: Vec<String> = d.objects.iter().map(object_name).collect();
            let all_new = names.iter().all(|n| match kind {
                ObjectType::ObjectTable | ObjectType::ObjectMatview => ctx.is_new(n),
                ObjectType::ObjectIndex => ctx.schema.indexes.get(n).is_some_and(|i| i.new),
                ObjectType::ObjectView => ctx.schema.views.get(n).copied().unwrap_or(false),
                _ => false,
            });
            if all_new
                || names
                    .iter()
                    .all(|n| crate::facts::not_a_removal(d, kind, n, ctx))
            {
                return (Neutral, String::new());
            }
            if kind == ObjectType::ObjectIndex
                && names
                    .iter()
                    // An index the model does not know gets the benefit of the doubt: most
                    // are not unique, and a unique one backing ON CONFLICT is usually a
                    // constraint, which has its own rule.
                    .all(|n| ctx.schema.indexes.get(n).is_none_or(|i| !i.unique))
            {
                return (Neutral, String::new());
            }
            contract(format!(
                "drops {} {}",
                crate::facts::object_kind_name(kind),
                names.join(", ")
            ))
        }
        NodeEnum::RenameStmt(r) => {
            let rel = opt_rv_name(r.relation.as_ref());
            if !rel.is_empty() && ctx.is_new(&rel) {
                return (Expand, String::new());
            }
            let kind = ObjectType::try_from(r.rename_type).unwrap_or(ObjectType::Undefined);
            if kind == ObjectType::ObjectTable
                && r.relation
                    .as_ref()
                    .is_some_and(|rel| crate::facts::view_created_later(ctx.rest_sql, rel))
            {
                // The old name lives on as a view: compatible with the running binary.
                return (Expand, String::new());
            }
            if matches!(
                kind,
                ObjectType::ObjectIndex
                    | ObjectType::ObjectTabconstraint
                    | ObjectType::ObjectTrigger
            ) {
                return (Neutral, String::new());
            }
            contract(format!(
                "renames {} to {}",
                crate::facts::object_kind_name(kind),
                r.newname
            ))
        }
        NodeEnum::AlterObjectSchemaStmt(_) => {
            contract("moves an object to another schema (SET SCHEMA)".into())
        }
        NodeEnum::AlterEnumStmt(e) if !e.old_val.is_empty() => contract(format!(
            "renames enum value '{}' to '{}'",
            e.old_val, e.new_val
        )),
        NodeEnum::TruncateStmt(_) => contract("empties tables (TRUNCATE)".into()),
        NodeEnum::IndexStmt(i) => {
            let table = opt_rv_name(i.relation.as_ref());
            if i.unique && !ctx.is_new(&table) {
                contract(format!(
                    "creates a unique index on {table} (a new write restriction)"
                ))
            } else {
                (Expand, String::new())
            }
        }
        NodeEnum::AlterDomainStmt(d) => match d.subtype.as_str() {
            "C" | "O" => contract("adds a domain constraint (a new write restriction)".into()),
            "X" => contract("drops a domain constraint".into()),
            "N" => contract("drops NOT NULL from a domain".into()),
            _ => (Neutral, String::new()),
        },
        NodeEnum::AlterTableStmt(a) => {
            let table = opt_rv_name(a.relation.as_ref());
            if ctx.is_new(&table) {
                return (Expand, String::new());
            }
            let mut class = Neutral;
            for cmd in &a.cmds {
                let Some(NodeEnum::AlterTableCmd(cmd)) = cmd.node.as_ref() else {
                    continue;
                };
                let def = cmd.def.as_ref().and_then(|d| d.node.as_ref());
                let why = match AlterTableType::try_from(cmd.subtype)
                    .unwrap_or(AlterTableType::Undefined)
                {
                    AlterTableType::AtDropColumn => {
                        Some(format!("drops column {table}.{}", cmd.name))
                    }
                    AlterTableType::AtAlterColumnType => {
                        let old = ctx
                            .schema
                            .table(&table)
                            .and_then(|t| t.column(&cmd.name))
                            .map(|c| &c.ty);
                        let new = match def {
                            Some(NodeEnum::ColumnDef(d)) if d.raw_default.is_none() => {
                                d.type_name.as_ref().map(crate::ast::ColType::of)
                            }
                            _ => None,
                        };
                        match (old, new) {
                            (Some(old), Some(new)) if crate::facts::compatible(old, &new) => {
                                if class == Neutral {
                                    class = Expand;
                                }
                                None
                            }
                            _ => Some(format!("changes the type of {table}.{}", cmd.name)),
                        }
                    }
                    AlterTableType::AtSetNotNull
                        if ctx.schema.table(&table).is_some_and(|t| {
                            t.column(&cmd.name).is_some_and(|c| c.not_null)
                                || t.constraints.iter().any(|k| {
                                    k.validated
                                        && k.not_null_column.as_deref() == Some(cmd.name.as_str())
                                })
                        }) =>
                    {
                        // A validated CHECK (col IS NOT NULL) already holds every
                        // writer to it: nothing new is restricted.
                        None
                    }
                    AlterTableType::AtSetNotNull => Some(format!(
                        "sets {table}.{} NOT NULL (a new write restriction)",
                        cmd.name
                    )),
                    AlterTableType::AtDropNotNull => Some(format!(
                        "drops NOT NULL from {table}.{} (older binaries may not expect NULLs)",
                        cmd.name
                    )),
                    AlterTableType::AtColumnDefault if def.is_none() => Some(format!(
                        "drops the default of {table}.{} (older binaries may rely on it)",
                        cmd.name
                    )),
                    AlterTableType::AtDropConstraint
                        if crate::facts::re_added(&table, &cmd.name, a, ctx) =>
                    {
                        None
                    }
                    AlterTableType::AtDropConstraint => {
                        let check = ctx
                            .schema
                            .table(&table)
                            .and_then(|t| t.constraint(&cmd.name))
                            .is_some_and(|c| c.kind == crate::schema::ConstraintKind::Check);
                        // Dropping a CHECK only relaxes writes.
                        (!check).then(|| format!("drops constraint {} on {table}", cmd.name))
                    }
                    AlterTableType::AtDetachPartition => {
                        Some(format!("detaches a partition from {table}"))
                    }
                    AlterTableType::AtDropIdentity | AlterTableType::AtDropExpression => {
                        Some(format!("drops the generation of {table}.{}", cmd.name))
                    }
                    AlterTableType::AtAddConstraint => match def {
                        Some(NodeEnum::Constraint(c)) if already_holds(&table, c, a, ctx) => None,
                        Some(NodeEnum::Constraint(c)) => {
                            constraint_restricts(c).map(|w| format!("{w} on {table}"))
                        }
                        _ => None,
                    },
                    AlterTableType::AtAddColumn => match def {
                        Some(NodeEnum::ColumnDef(c)) => {
                            let mut not_null = c.is_not_null;
                            let mut default = c.raw_default.is_some();
                            let mut restricts = None;
                            for k in &c.constraints {
                                if let Some(NodeEnum::Constraint(k)) = k.node.as_ref() {
                                    match ConstrType::try_from(k.contype) {
                                        Ok(ConstrType::ConstrNotnull) => not_null = true,
                                        Ok(ConstrType::ConstrDefault | ConstrType::ConstrIdentity | ConstrType::ConstrGenerated) => default = true,
                                        Ok(ConstrType::ConstrCheck | ConstrType::ConstrUnique | ConstrType::ConstrPrimary | ConstrType::ConstrForeign) => {
                                            restricts = Some(format!("adds column {table}.{} with a constraint (a new write restriction)", c.colname))
                                        }
                                        _ => {}
                                    }
                                }
                            }
                            if c.type_name.as_ref().is_some_and(|t| {
                                crate::ast::ColType::of(t).name.ends_with("serial")
                            }) {
                                default = true;
                            }
                            if not_null && !default {
                                Some(format!(
                                    "adds NOT NULL column {table}.{} without a default (older binaries' INSERTs fail)",
                                    c.colname
                                ))
                            } else {
                                if class == Neutral {
                                    class = Expand;
                                }
                                restricts
                            }
                        }
                        _ => None,
                    },
                    AlterTableType::AtColumnDefault => {
                        if class == Neutral {
                            class = Expand;
                        }
                        None
                    }
                    _ => None,
                };
                if let Some(why) = why {
                    return contract(why);
                }
            }
            (class, String::new())
        }
        NodeEnum::CreateStmt(_)
        | NodeEnum::ViewStmt(_)
        | NodeEnum::CreateEnumStmt(_)
        | NodeEnum::AlterEnumStmt(_)
        | NodeEnum::CreateSeqStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::CreateSchemaStmt(_)
        | NodeEnum::CreateDomainStmt(_)
        | NodeEnum::CreateFunctionStmt(_)
        | NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateTableAsStmt(_) => (Expand, String::new()),
        _ => (Neutral, String::new()),
    }
}
